// The key/value browser and editor. Folders list one level (?keys&separator=/). Saves and
// deletes are check-and-set on the ModifyIndex the editor was opened with (?cas=N), so a
// change made meanwhile by someone else is never overwritten silently: the editor says so,
// shows the current value and offers to overwrite it deliberately. Creating uses ?cas=0,
// which fails when the key exists.

import { h, replace, notice, table } from '../dom.js';
import { watch, getJSON, putJSON, del, keyPath, decodeValue, valueSize } from '../api.js';

function crumbs(ctx, path, { current = true } = {}) {
  const parts = path.split('/').filter(Boolean);
  const items = [h('li', {}, h('a', { href: ctx.link('kv/') }, 'Key/Value'))];
  let acc = '';
  parts.forEach((p, i) => {
    const isFolder = i < parts.length - 1 || path.endsWith('/');
    acc += p + (isFolder ? '/' : '');
    const last = i === parts.length - 1;
    items.push(h('li', {}, last && current
      ? h('span', { 'aria-current': 'page' }, p)
      : h('a', { href: ctx.link(`kv/${keyPath(acc)}`) }, p)));
  });
  return h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('ol', {}, items));
}

function parentOf(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

function editLink(ctx, key) {
  return key.endsWith('/') ? ctx.link(`kv/${keyPath(key)}`) : ctx.link(`kv/${keyPath(key)}/edit`);
}

/** A folder: its keys and sub-folders, one level. */
export function folder(main, { prefix }, ctx) {
  document.title = `${prefix || 'Key/Value'} - registry`;
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading keys…'));
  const status = h('div', {});
  const title = prefix ? prefix.split('/').filter(Boolean).pop() : 'Key/Value';
  replace(main,
    prefix ? crumbs(ctx, prefix) : null,
    h('div', { class: 'view-head' },
      h('h1', {}, title),
      h('div', { class: 'actions' },
        h('a', { class: 'button primary', href: ctx.link(prefix ? `kv/${keyPath(prefix)}create` : 'kv/create') }, 'Create'),
        prefix ? h('button', {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            if (!window.confirm(`Delete the folder ${prefix} and every key under it?`)) return;
            try {
              await del(`/v1/kv/${keyPath(prefix)}`, { query: { recurse: true } });
              ctx.announce(`Deleted folder ${prefix}.`);
              ctx.navigate(ctx.link(`kv/${keyPath(parentOf(prefix))}`));
            } catch (err) {
              replace(status, notice('error', `Could not delete ${prefix}: ${err.message}`));
            }
          },
        }, 'Delete folder') : null)),
    status,
    body);
  watch(`/v1/kv/${keyPath(prefix)}`, {
    query: { keys: true, separator: '/' },
    signal: ctx.signal,
    ok404: true,
    onData: (keys) => {
      body.removeAttribute('aria-busy');
      const children = (keys || []).filter((k) => k !== prefix);
      if (children.length === 0) {
        replace(body, h('p', { class: 'empty' }, prefix ? 'This folder is empty.' : 'There are no keys yet.'));
        return;
      }
      const sorted = children.sort((a, b) => (b.endsWith('/') - a.endsWith('/')) || a.localeCompare(b));
      replace(body, table(`Keys under ${prefix || 'the root'}`, ['Key', 'Kind', 'Actions'],
        sorted.map((k) => {
          const name = k.slice(prefix.length);
          const isFolder = k.endsWith('/');
          return {
            attrs: { dataset: { key: k } },
            cells: [
              h('a', { href: editLink(ctx, k), class: isFolder ? 'folder' : 'key' },
                h('span', { 'aria-hidden': 'true', class: 'icon' }, isFolder ? '▸ ' : ''), name),
              isFolder ? 'Folder' : 'Key',
              h('button', {
                type: 'button',
                class: 'danger small',
                'aria-label': `Delete ${k}`,
                onclick: async () => {
                  if (!window.confirm(isFolder ? `Delete the folder ${k} and every key under it?` : `Delete ${k}?`)) return;
                  try {
                    await del(`/v1/kv/${keyPath(k)}`, { query: isFolder ? { recurse: true } : {} });
                    ctx.announce(`Deleted ${k}.`);
                  } catch (err) {
                    replace(status, notice('error', `Could not delete ${k}: ${err.message}`));
                  }
                },
              }, 'Delete'),
            ],
          };
        })));
    },
    onError: (e) => replace(body, notice('error', `Could not load keys: ${e.message}`)),
  });
}

/** The form to create a key (or, with a trailing slash, a folder) in a folder. */
export function create(main, { prefix }, ctx) {
  document.title = 'Create key - registry';
  const status = h('div', {});
  const keyInput = h('input', {
    id: 'kv-key', name: 'key', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'kv-key-hint',
  });
  const valueInput = h('textarea', { id: 'kv-value', name: 'value', rows: '10', spellcheck: 'false' });
  const form = h('form', {
    class: 'editor',
    onsubmit: async (e) => {
      e.preventDefault();
      const name = keyInput.value.replace(/^\/+/, '');
      if (!name) {
        replace(status, notice('error', 'Enter a key name.'));
        keyInput.focus();
        return;
      }
      const key = prefix + name;
      const isFolder = key.endsWith('/');
      try {
        const ok = await putJSON(`/v1/kv/${keyPath(key)}`, isFolder ? '' : valueInput.value, { query: { cas: 0 } });
        if (!ok) {
          replace(status, notice('error', `${key} already exists. `,
            h('a', { href: editLink(ctx, key) }, 'Open it'), ' to edit it.'));
          return;
        }
        ctx.announce(`Created ${key}.`);
        ctx.navigate(isFolder ? ctx.link(`kv/${keyPath(key)}`) : ctx.link(`kv/${keyPath(key)}/edit`));
      } catch (err) {
        replace(status, notice('error', `Could not create ${key}: ${err.message}`));
      }
    },
  },
  h('div', { class: 'field' },
    h('label', { for: 'kv-key' }, 'Key or folder name'),
    h('div', { class: 'prefixed' }, prefix ? h('span', { class: 'prefix' }, prefix) : null, keyInput),
    h('p', { id: 'kv-key-hint', class: 'hint' }, 'End the name with / to create a folder.')),
  h('div', { class: 'field' },
    h('label', { for: 'kv-value' }, 'Value'),
    valueInput),
  h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'primary' }, 'Save'),
    h('a', { class: 'button', href: ctx.link(`kv/${keyPath(prefix)}`) }, 'Cancel')));
  replace(main,
    crumbs(ctx, prefix, { current: false }),
    h('h1', {}, 'Create key'),
    status,
    form);
}

/** The editor of one key. */
export function edit(main, { key }, ctx) {
  document.title = `${key} - Key/Value - registry`;
  const status = h('div', {});
  const info = h('div', { class: 'meta-line' });
  const valueInput = h('textarea', { id: 'kv-value', name: 'value', rows: '12', spellcheck: 'false' });
  const saveButton = h('button', { type: 'submit', class: 'primary' }, 'Save');
  const deleteButton = h('button', { type: 'button', class: 'danger' }, 'Delete');
  // The ModifyIndex the user's copy is based on: every write is a CAS on it.
  let base = null;
  let dirty = false;
  let binary = false;

  const showEntry = (entry) => {
    base = entry.ModifyIndex;
    const text = decodeValue(entry.Value);
    binary = text === null;
    valueInput.value = binary ? '' : text;
    valueInput.disabled = binary;
    saveButton.disabled = binary;
    dirty = false;
    const lock = entry.Session
      ? h('span', { class: 'lock' }, 'Locked by session ', h('code', {}, entry.Session))
      : null;
    replace(info,
      h('span', {}, `Modify index ${entry.ModifyIndex}`),
      h('span', {}, `Flags ${entry.Flags}`),
      h('span', {}, `${valueSize(entry.Value)} bytes`),
      lock);
    if (binary) replace(status, notice('info', 'This value is not UTF-8 text and cannot be edited here.'));
  };

  const conflict = (verb, current) => {
    const children = [
      h('strong', {}, `Not ${verb}: `),
      current
        ? `${key} was changed by someone else after you opened it (your copy is of modify index ${base}, the key is now at ${current.ModifyIndex}). `
        : `${key} was deleted by someone else after you opened it. `,
    ];
    if (current) {
      const text = decodeValue(current.Value);
      children.push(h('p', {}, 'Its current value:'), h('pre', { class: 'output' }, text === null ? '(binary)' : text || '(empty)'));
    }
    children.push(h('div', { class: 'actions' },
      verb === 'saved'
        ? h('button', { type: 'button', class: 'danger', onclick: () => save(current ? current.ModifyIndex : 0) }, 'Overwrite with my value')
        : null,
      current ? h('button', { type: 'button', onclick: () => { showEntry(current); replace(status); ctx.announce('Loaded the current value.'); } }, 'Discard my changes and load it') : null));
    replace(status, notice('error', children));
    status.querySelector('[role="alert"]')?.focus?.();
  };

  const save = async (cas) => {
    try {
      const ok = await putJSON(`/v1/kv/${keyPath(key)}`, valueInput.value, { query: { cas } });
      if (!ok) {
        conflict('saved', await getJSON(`/v1/kv/${keyPath(key)}`, { ok404: true }).then((d) => (d ? d[0] : null)));
        return;
      }
      dirty = false;
      const fresh = await getJSON(`/v1/kv/${keyPath(key)}`, { ok404: true });
      if (fresh) showEntry(fresh[0]);
      replace(status, notice('success', `Saved ${key}.`));
      ctx.announce(`Saved ${key}.`);
    } catch (err) {
      replace(status, notice('error', `Could not save ${key}: ${err.message}`));
    }
  };

  deleteButton.addEventListener('click', async () => {
    if (!window.confirm(`Delete ${key}?`)) return;
    try {
      const ok = await del(`/v1/kv/${keyPath(key)}`, { query: { cas: base ?? 0 } });
      if (!ok) {
        conflict('deleted', await getJSON(`/v1/kv/${keyPath(key)}`, { ok404: true }).then((d) => (d ? d[0] : null)));
        return;
      }
      ctx.announce(`Deleted ${key}.`);
      ctx.navigate(ctx.link(`kv/${keyPath(parentOf(key))}`));
    } catch (err) {
      replace(status, notice('error', `Could not delete ${key}: ${err.message}`));
    }
  });

  valueInput.addEventListener('input', () => { dirty = true; });
  const form = h('form', {
    class: 'editor',
    onsubmit: (e) => { e.preventDefault(); save(base); },
  },
  h('div', { class: 'field' }, h('label', { for: 'kv-value' }, 'Value'), valueInput),
  h('div', { class: 'actions' }, saveButton, deleteButton));

  const name = key.split('/').pop();
  replace(main, crumbs(ctx, key), h('h1', {}, name), info, status, form);

  watch(`/v1/kv/${keyPath(key)}`, {
    signal: ctx.signal,
    ok404: true,
    onData: (d) => {
      const entry = d ? d[0] : null;
      if (!entry) {
        if (base === null) {
          replace(main, crumbs(ctx, key), h('h1', {}, name),
            notice('info', `${key} does not exist. `,
              h('a', { href: ctx.link(`kv/${keyPath(parentOf(key))}create`) }, 'Create a key'), ' in its folder.'));
        } else {
          replace(status, notice('info', `${key} has been deleted.`));
        }
        return;
      }
      if (base === null || (!dirty && entry.ModifyIndex !== base)) {
        // Opened, or changed elsewhere while the user had no edits: show the new value.
        showEntry(entry);
      } else if (entry.ModifyIndex !== base && dirty) {
        replace(status, notice('info', `${key} changed after you opened it (now at modify index ${entry.ModifyIndex}). Saving will ask before overwriting it.`));
      }
    },
    onError: (e) => replace(status, notice('error', `Could not load ${key}: ${e.message}`)),
  });
}
