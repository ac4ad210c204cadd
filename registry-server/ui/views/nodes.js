// Nodes: the list with health (/v1/internal/ui/nodes) and one node's checks, services and
// lock sessions (/v1/internal/ui/node/:node, /v1/session/node/:node). All live.

import { h, replace, badge, summary, tags, details, notice, filterBox, table, worst } from '../dom.js';
import { watch } from '../api.js';
import { checkList } from './services.js';
import { sessionTable } from './sessions.js';

function counts(checks) {
  const c = { passing: 0, warning: 0, critical: 0 };
  for (const k of checks) {
    if (k.Status === 'passing') c.passing += 1;
    else if (k.Status === 'warning') c.warning += 1;
    else c.critical += 1;
  }
  return c;
}

/** The nodes list. */
export function list(main, _params, ctx) {
  document.title = 'Nodes - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading nodes…'));
  let data = null;
  let filter = ctx.param('filter');
  const draw = () => {
    if (!data) return;
    const q = filter.toLowerCase();
    const shown = data.filter((n) => !q || n.Node.toLowerCase().includes(q) || n.Address.includes(q));
    count.textContent = `${data.length}`;
    body.removeAttribute('aria-busy');
    if (shown.length === 0) {
      replace(body, h('p', { class: 'empty' }, data.length ? 'No node matches the filter.' : 'No nodes are registered.'));
      return;
    }
    replace(body, table('Nodes and their health',
      ['Node', 'Health', 'Address', 'Services'],
      shown.map((n) => {
        const c = counts(n.Checks);
        return {
          attrs: { dataset: { node: n.Node, health: worst(n.Checks.map((k) => k.Status)) } },
          cells: [
            h('a', { href: ctx.link(`nodes/${encodeURIComponent(n.Node)}`) }, n.Node),
            summary(c.passing, c.warning, c.critical),
            n.Address,
            `${n.Services.length}`,
          ],
        };
      })));
  };
  replace(main,
    h('div', { class: 'view-head' },
      h('h1', {}, 'Nodes ', count),
      filterBox('node-filter', 'Filter by name or address', filter, (v) => {
        filter = v;
        ctx.setParam('filter', v);
        draw();
      })),
    body);
  watch('/v1/internal/ui/nodes', {
    signal: ctx.signal,
    onData: (d) => { data = d || []; draw(); },
    onError: (e) => replace(body, notice('error', `Could not load nodes: ${e.message}`)),
  });
}

/** One node: health checks with output, services, lock sessions, metadata. */
export function detail(main, { node }, ctx) {
  document.title = `${node} - Nodes - registry`;
  const status = h('span', { class: 'head-status' });
  const info = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading node…'));
  const checks = h('div', {});
  const services = h('div', {});
  const sessions = h('div', {}, h('p', { class: 'muted' }, 'Loading sessions…'));
  replace(main,
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' },
      h('ol', {}, h('li', {}, h('a', { href: ctx.link('nodes') }, 'Nodes')), h('li', {}, h('span', { 'aria-current': 'page' }, node)))),
    h('div', { class: 'view-head' }, h('div', { class: 'title-line' }, h('h1', {}, node), status)),
    info,
    h('section', { 'aria-labelledby': 'node-checks' }, h('h2', { id: 'node-checks' }, 'Health checks'), checks),
    h('section', { 'aria-labelledby': 'node-services' }, h('h2', { id: 'node-services' }, 'Services'), services),
    h('section', { 'aria-labelledby': 'node-sessions' }, h('h2', { id: 'node-sessions' }, 'Lock sessions'), sessions));
  watch(`/v1/internal/ui/node/${encodeURIComponent(node)}`, {
    signal: ctx.signal,
    ok404: true,
    onData: (n) => {
      info.removeAttribute('aria-busy');
      if (!n) {
        replace(status);
        replace(info, notice('info', 'This node is not registered.'));
        replace(checks);
        replace(services);
        return;
      }
      replace(status, badge(worst(n.Checks.map((c) => c.Status))));
      replace(info, details([
        ['Address', n.Address],
        ['ID', n.ID],
        ['Datacenter', n.Datacenter],
        ...Object.entries(n.Meta || {}).map(([k, v]) => [`Meta: ${k}`, v]),
      ]));
      replace(checks, checkList(n.Checks));
      replace(services, n.Services.length === 0
        ? h('p', { class: 'muted' }, 'No services on this node.')
        : table(`Services on ${node}`, ['Service', 'ID', 'Port', 'Tags'],
          n.Services.map((s) => ({
            attrs: { dataset: { service: s.Service } },
            cells: [
              h('a', { href: ctx.link(`services/${encodeURIComponent(s.Service)}`) }, s.Service),
              s.ID,
              s.Port ? `${s.Port}` : '—',
              tags(s.Tags),
            ],
          }))));
    },
    onError: (e) => replace(info, notice('error', `Could not load ${node}: ${e.message}`)),
  });
  watch(`/v1/session/node/${encodeURIComponent(node)}`, {
    signal: ctx.signal,
    onData: (list) => replace(sessions, sessionTable(ctx, list || [], null)),
    onError: (e) => replace(sessions, notice('error', `Could not load sessions: ${e.message}`)),
  });
}
