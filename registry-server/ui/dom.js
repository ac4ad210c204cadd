// Small DOM helpers shared by the views: element construction, status badges, formatting.

/**
 * Builds an element. `attrs` keys starting with "on" add listeners; `class`, `text`,
 * `html` are not special beyond being attributes, except `text` (textContent). Children
 * may be strings, nodes, arrays, null or false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. If the focus was inside, it moves to the matching
 * control of the new content (same element, link target and label), so a live update never
 * throws a keyboard user back to the top of the page. */
export function replace(el, ...children) {
  const active = document.activeElement;
  const had = active && active !== el && el.contains(active) ? identity(active) : null;
  el.replaceChildren();
  append(el, children);
  if (had) {
    const match = [...el.querySelectorAll(had.tag)].find((c) => identity(c).id === had.id);
    if (match) match.focus({ preventScroll: true });
  }
  return el;
}

function identity(node) {
  const row = node.closest('tr, li, article');
  // The row's identity, not its state (health and status change with live updates).
  const rowId = row
    ? Object.entries(row.dataset).filter(([k]) => k !== 'health' && k !== 'status').join(';')
    : '';
  return {
    tag: node.tagName.toLowerCase(),
    id: [rowId, node.getAttribute('href'), node.getAttribute('aria-label'), node.textContent].join('\u0000'),
  };
}

const LABELS = { passing: 'Passing', warning: 'Warning', critical: 'Critical', none: 'No checks' };
const ICONS = { passing: '✓', warning: '!', critical: '✕', none: '–' };

/** A health status badge: icon and word, so status never relies on colour alone. */
export function badge(status, count) {
  const s = LABELS[status] ? status : 'critical';
  const text = count === undefined ? LABELS[s] : `${count} ${LABELS[s].toLowerCase()}`;
  return h('span', { class: `badge ${s}`, dataset: { status: s } },
    h('span', { 'aria-hidden': 'true', class: 'icon' }, ICONS[s]), text);
}

/** The worst of a list of check statuses ("none" for no checks). */
export function worst(statuses) {
  if (statuses.length === 0) return 'none';
  if (statuses.some((s) => s === 'critical' || !LABELS[s])) return 'critical';
  if (statuses.some((s) => s === 'warning')) return 'warning';
  return 'passing';
}

/** Badges for passing/warning/critical counts, only the non-zero ones. */
export function summary(passing, warning, critical) {
  const out = [];
  if (critical) out.push(badge('critical', critical));
  if (warning) out.push(badge('warning', warning));
  if (passing) out.push(badge('passing', passing));
  if (out.length === 0) out.push(badge('none'));
  return h('span', { class: 'badges' }, out);
}

/** Tags as a list of small labels. */
export function tags(list) {
  if (!list || list.length === 0) return h('span', { class: 'muted' }, '—');
  return h('ul', { class: 'tags', 'aria-label': 'Tags' }, list.map((t) => h('li', {}, t)));
}

/** A definition list from [term, value] pairs, skipping empty values. */
export function details(pairs) {
  return h('dl', { class: 'details' },
    pairs.filter(([, v]) => v !== '' && v !== null && v !== undefined)
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A message block: `kind` is info, error or success. Errors are announced at once. */
export function notice(kind, ...children) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `notice ${kind}`, role }, children);
}

/** A text filter box; `onInput` receives the lower-cased value. */
export function filterBox(id, label, value, onInput) {
  return h('div', { class: 'filter' },
    h('label', { for: id }, label),
    h('input', {
      id, type: 'search', value: value || '', autocomplete: 'off', spellcheck: 'false',
      oninput: (e) => onInput(e.target.value),
    }));
}

/** A table with a caption, header cells and rows of cells. Cells carry data-label for the
 * stacked phone layout. */
export function table(caption, headers, rows, attrs = {}) {
  return h('table', { class: 'list', ...attrs },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map(({ cells, attrs: rowAttrs }) =>
      h('tr', rowAttrs || {}, cells.map((c, i) =>
        i === 0
          ? h('th', { scope: 'row', 'data-label': headers[i] }, c)
          : h('td', { 'data-label': headers[i] }, c))))));
}

/** Seconds-style duration from Go's string ("15s") or nanoseconds. */
export function duration(v) {
  if (typeof v === 'number') return v === 0 ? '—' : `${v / 1e9}s`;
  return v || '—';
}
