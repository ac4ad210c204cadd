// Sessions and the locks they hold: /v1/session/list, and the KV entries whose Session is
// set (/v1/kv/?recurse). Both live. A session can be invalidated from here.

import { h, replace, notice, table, duration } from '../dom.js';
import { watch, putJSON, keyPath } from '../api.js';

/**
 * A table of sessions. `locks` maps a session ID to the keys it holds, or is null when
 * the locks are not shown.
 */
export function sessionTable(ctx, sessions, locks) {
  if (sessions.length === 0) return h('p', { class: 'empty' }, 'No sessions.');
  const headers = ['Session', 'Name', 'Node', 'Behavior', 'TTL', 'Lock delay', 'Checks'];
  if (locks) headers.push('Locks held');
  headers.push('Actions');
  return table('Sessions', headers, sessions.map((s) => {
    const cells = [
      h('code', { title: s.ID }, s.ID.slice(0, 8)),
      s.Name || h('span', { class: 'muted' }, '—'),
      h('a', { href: ctx.link(`nodes/${encodeURIComponent(s.Node)}`) }, s.Node),
      s.Behavior,
      duration(s.TTL),
      duration(s.LockDelay),
      (s.NodeChecks || s.Checks || []).join(', ') || h('span', { class: 'muted' }, '—'),
    ];
    if (locks) {
      const held = locks.get(s.ID) || [];
      cells.push(held.length === 0
        ? h('span', { class: 'muted' }, 'none')
        : h('ul', { class: 'plain' }, held.map((k) => h('li', {},
          h('a', { href: ctx.link(`kv/${keyPath(k)}/edit`) }, k)))));
    }
    cells.push(h('button', {
      type: 'button',
      class: 'danger small',
      'aria-label': `Invalidate session ${s.ID}`,
      onclick: async (e) => {
        if (!window.confirm(`Invalidate session ${s.ID}? Locks it holds are released (or their keys deleted, by its behavior).`)) return;
        e.target.disabled = true;
        try {
          await putJSON(`/v1/session/destroy/${encodeURIComponent(s.ID)}`);
          ctx.announce(`Session ${s.ID.slice(0, 8)} invalidated.`);
        } catch (err) {
          e.target.disabled = false;
          ctx.announce(`Could not invalidate the session: ${err.message}`);
        }
      },
    }, 'Invalidate'));
    return { attrs: { dataset: { session: s.ID } }, cells };
  }));
}

/** All sessions with the locks they hold. */
export function list(main, _params, ctx) {
  document.title = 'Sessions - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading sessions…'));
  replace(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Sessions ', count)),
    h('p', { class: 'muted intro' }, 'Sessions tie locks on keys to the health of nodes and checks. Invalidating a session releases its locks.'),
    body);
  let sessions = null;
  let locks = new Map();
  const draw = () => {
    if (!sessions) return;
    body.removeAttribute('aria-busy');
    count.textContent = `${sessions.length}`;
    replace(body, sessionTable(ctx, sessions, locks));
  };
  watch('/v1/session/list', {
    signal: ctx.signal,
    onData: (d) => { sessions = d || []; draw(); },
    onError: (e) => replace(body, notice('error', `Could not load sessions: ${e.message}`)),
  });
  watch('/v1/kv/', {
    query: { recurse: true },
    signal: ctx.signal,
    ok404: true,
    onData: (entries) => {
      locks = new Map();
      for (const e of entries || []) {
        if (!e.Session) continue;
        if (!locks.has(e.Session)) locks.set(e.Session, []);
        locks.get(e.Session).push(e.Key);
      }
      draw();
    },
  });
}
