// Services: the list with health summaries (/v1/internal/ui/services) and one service's
// instances with their checks and output (/v1/health/service/:name). Both live.

import { h, replace, badge, summary, tags, details, notice, filterBox, table, worst } from '../dom.js';
import { watch } from '../api.js';

function health(s) {
  if (s.ChecksCritical) return 'critical';
  if (s.ChecksWarning) return 'warning';
  if (s.ChecksPassing) return 'passing';
  return 'none';
}

/** The services list. */
export function list(main, _params, ctx) {
  document.title = 'Services - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading services…'));
  let data = null;
  let filter = ctx.param('filter');
  const draw = () => {
    if (!data) return;
    const q = filter.toLowerCase();
    const shown = data.filter((s) => !q || s.Name.toLowerCase().includes(q)
      || s.Tags.some((t) => t.toLowerCase().includes(q)));
    count.textContent = `${data.length}`;
    body.removeAttribute('aria-busy');
    if (shown.length === 0) {
      replace(body, h('p', { class: 'empty' }, data.length ? 'No service matches the filter.' : 'No services are registered.'));
      return;
    }
    replace(body, table('Services and their health',
      ['Service', 'Health', 'Instances', 'Tags'],
      shown.map((s) => ({
        attrs: { dataset: { service: s.Name, health: health(s) } },
        cells: [
          h('a', { href: ctx.link(`services/${encodeURIComponent(s.Name)}`) }, s.Name),
          summary(s.ChecksPassing, s.ChecksWarning, s.ChecksCritical),
          `${s.InstanceCount}`,
          tags(s.Tags),
        ],
      }))));
  };
  replace(main,
    h('div', { class: 'view-head' },
      h('h1', {}, 'Services ', count),
      filterBox('service-filter', 'Filter by name or tag', filter, (v) => {
        filter = v;
        ctx.setParam('filter', v);
        draw();
      })),
    body);
  watch('/v1/internal/ui/services', {
    signal: ctx.signal,
    onData: (d) => { data = d || []; draw(); },
    onError: (e) => replace(body, notice('error', `Could not load services: ${e.message}`)),
  });
}

function checkItem(c) {
  return h('li', { class: `check ${c.Status}`, dataset: { check: c.CheckID, status: c.Status } },
    h('div', { class: 'check-head' },
      badge(c.Status),
      h('span', { class: 'check-name' }, c.Name || c.CheckID),
      h('span', { class: 'muted' }, c.ServiceID ? 'service check' : 'node check'),
      c.Type ? h('span', { class: 'muted' }, c.Type) : null),
    c.Notes ? h('p', { class: 'notes' }, c.Notes) : null,
    h('pre', { class: 'output', 'aria-label': `Output of ${c.Name || c.CheckID}` }, c.Output || 'No output.'));
}

/** A list of checks with their output, or a note when there are none. */
export function checkList(checks) {
  if (!checks || checks.length === 0) return h('p', { class: 'muted' }, 'No health checks.');
  const order = { critical: 0, warning: 1, passing: 2 };
  const sorted = [...checks].sort((a, b) => (order[a.Status] ?? 0) - (order[b.Status] ?? 0)
    || (a.Name || '').localeCompare(b.Name || ''));
  return h('ul', { class: 'checks' }, sorted.map(checkItem));
}

function instance(ctx, inst) {
  const s = inst.Service;
  const n = inst.Node;
  const status = worst(inst.Checks.map((c) => c.Status));
  const addr = s.Address || n.Address;
  return h('article', { class: `card instance ${status}`, dataset: { instance: s.ID, node: n.Node, health: status } },
    h('header', { class: 'card-head' },
      h('h2', {}, s.ID),
      badge(status)),
    details([
      ['Node', h('a', { href: ctx.link(`nodes/${encodeURIComponent(n.Node)}`) }, n.Node)],
      ['Address', s.Port ? `${addr}:${s.Port}` : addr],
      ['Tags', s.Tags && s.Tags.length ? tags(s.Tags) : ''],
      ...Object.entries(s.Meta || {}).map(([k, v]) => [`Meta: ${k}`, v]),
    ]),
    h('h3', {}, 'Health checks'),
    checkList(inst.Checks));
}

/** One service: its instances, each with its checks and their output. */
export function detail(main, { name }, ctx) {
  document.title = `${name} - Services - registry`;
  const body = h('div', { class: 'view-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading instances…'));
  const status = h('span', { class: 'head-status' });
  replace(main,
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' },
      h('ol', {}, h('li', {}, h('a', { href: ctx.link('services') }, 'Services')), h('li', {}, h('span', { 'aria-current': 'page' }, name)))),
    h('div', { class: 'view-head' }, h('div', { class: 'title-line' }, h('h1', {}, name), status)),
    body);
  watch(`/v1/health/service/${encodeURIComponent(name)}`, {
    signal: ctx.signal,
    onData: (list) => {
      body.removeAttribute('aria-busy');
      list = list || [];
      const all = list.flatMap((i) => i.Checks.map((c) => c.Status));
      replace(status, list.length ? badge(worst(all)) : null,
        h('span', { class: 'muted' }, ` ${list.length} instance${list.length === 1 ? '' : 's'}`));
      if (list.length === 0) {
        replace(body, h('p', { class: 'empty' }, 'No instances of this service are registered.'));
        return;
      }
      replace(body, h('div', { class: 'cards' }, list.map((i) => instance(ctx, i))));
    },
    onError: (e) => replace(body, notice('error', `Could not load ${name}: ${e.message}`)),
  });
}
