// Gossip members as this agent sees them (/v1/agent/members): name, address, status
// (alive, leaving, left, failed), role (server or client, from the "role" tag) and datacenter.
//
// /v1/agent/members is not a blocking query (it answers at once, without an index), so the
// view watches /v1/internal/ui/nodes instead, whose index moves whenever the leader
// reconciles a member into the catalog (its serfHealth check turns critical when the member
// fails, the node goes when it leaves), and reads the members again on every change.

import { h, replace, notice, filterBox, table } from '../dom.js';
import { watch, getJSON } from '../api.js';

// Serf's member status codes as /v1/agent/members reports them.
const STATUS = { 0: 'none', 1: 'alive', 2: 'leaving', 3: 'left', 4: 'failed' };
const LOOK = {
  alive: ['passing', '✓', 'Alive'],
  leaving: ['warning', '!', 'Leaving'],
  left: ['none', '–', 'Left'],
  failed: ['critical', '✕', 'Failed'],
  none: ['none', '–', 'Unknown'],
};

/** A member's status as a word ("alive", "failed", ...). */
export function memberStatus(m) {
  if (typeof m.Status === 'string') return LOOK[m.Status.toLowerCase()] ? m.Status.toLowerCase() : 'none';
  return STATUS[m.Status] || 'none';
}

/** "server" for a server's role tag ("consul"), else "client". */
export function memberRole(m) {
  return (m.Tags || {}).role === 'consul' ? 'server' : 'client';
}

function statusBadge(s) {
  const [cls, icon, word] = LOOK[s] || LOOK.none;
  return h('span', { class: `badge ${cls}`, dataset: { status: s } },
    h('span', { 'aria-hidden': 'true', class: 'icon' }, icon), word);
}

/** The members list. */
export function list(main, _params, ctx) {
  document.title = 'Members - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading members…'));
  let data = null;
  let filter = ctx.param('filter');
  const draw = () => {
    if (!data) return;
    const q = filter.toLowerCase();
    const shown = data.filter((m) => !q || m.Name.toLowerCase().includes(q) || String(m.Addr).includes(q)
      || memberStatus(m) === q || memberRole(m) === q);
    count.textContent = `${data.length}`;
    body.removeAttribute('aria-busy');
    if (shown.length === 0) {
      replace(body, h('p', { class: 'empty' }, data.length ? 'No member matches the filter.' : 'No gossip members.'));
      return;
    }
    replace(body, table('Gossip members',
      ['Member', 'Status', 'Address', 'Role', 'Datacenter'],
      shown.map((m) => {
        const s = memberStatus(m);
        const tags = m.Tags || {};
        return {
          attrs: { dataset: { member: m.Name, status: s, role: memberRole(m) } },
          cells: [
            h('a', { href: ctx.link(`nodes/${encodeURIComponent(m.Name)}`) }, m.Name),
            statusBadge(s),
            m.Port ? `${m.Addr}:${m.Port}` : m.Addr,
            memberRole(m) === 'server' ? 'Server' : 'Client',
            tags.dc || ctx.dc,
          ],
        };
      })));
  };
  replace(main,
    h('div', { class: 'view-head' },
      h('h1', {}, 'Members ', count),
      filterBox('member-filter', 'Filter by name, address, status or role', filter, (v) => {
        filter = v;
        ctx.setParam('filter', v);
        draw();
      })),
    h('p', { class: 'muted intro' }, 'The agents in this datacenter\'s gossip pool, as this agent sees them.'),
    body);
  let reading = null;
  const read = async () => {
    // One read at a time; a change during a read triggers one more.
    if (reading) { reading.again = true; return; }
    reading = { again: false };
    try {
      do {
        reading.again = false;
        const d = await getJSON('/v1/agent/members', { signal: ctx.signal });
        if (ctx.signal.aborted) return;
        data = (d || []).slice().sort((a, b) => a.Name.localeCompare(b.Name));
        draw();
      } while (reading.again && !ctx.signal.aborted);
    } catch (e) {
      if (!ctx.signal.aborted) replace(body, notice('error', `Could not load members: ${e.message}`));
    } finally {
      reading = null;
    }
  };
  watch('/v1/internal/ui/nodes', {
    signal: ctx.signal,
    onData: () => read(),
    onError: (e) => replace(body, notice('error', `Could not load members: ${e.message}`)),
  });
}
