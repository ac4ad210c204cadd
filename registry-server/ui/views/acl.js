// ACLs: the token login form, and read-only views of tokens (/v1/acl/tokens, one token with
// its policies and roles) and policies (/v1/acl/policies, one policy with its rules).
//
// The ACL list endpoints answer without an index (they are not blocking queries), so these
// views read once when opened; "Reload" reads again.

import { h, replace, details, notice, table } from '../dom.js';
import { getJSON, request, setToken, token } from '../api.js';

const muted = (t) => h('span', { class: 'muted' }, t);

/** `/login?next=<UI path>`: asks for a token's SecretID, checks it with /v1/acl/token/self,
 * stores it and goes on to `next`. */
export function login(main, _params, ctx) {
  document.title = 'Log in - registry';
  const next = ctx.param('next');
  const msg = h('div', { id: 'login-message' });
  const input = h('input', {
    id: 'acl-secret', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'acl-secret-hint',
  });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', {
    class: 'login',
    onsubmit: async (e) => {
      e.preventDefault();
      const secret = input.value.trim();
      if (!secret) return;
      button.disabled = true;
      replace(msg);
      try {
        const res = await request('GET', '/v1/acl/token/self', { secret, signal: ctx.signal });
        const t = await res.json();
        setToken({ ...t, SecretID: t.SecretID || secret });
        ctx.announce(`Logged in with ${t.Description || t.AccessorID}.`);
        ctx.navigate(next && next.startsWith(ctx.base) ? next : ctx.link('services'), { replace: true });
      } catch (err) {
        button.disabled = false;
        const why = err.status === 403
          ? 'The agent does not accept this token (ACL not found). Check the SecretID.'
          : `Could not log in: ${err.message}`;
        replace(msg, notice('error', why));
        input.focus();
      }
    },
  },
  h('label', { for: 'acl-secret' }, 'Token SecretID'),
  h('p', { id: 'acl-secret-hint', class: 'muted hint' },
    'ACLs are enabled on this agent. The token is kept in this browser (localStorage) and sent with every request until you log out.'),
  input,
  h('div', { class: 'actions' }, button));
  const current = token();
  replace(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Log in')),
    current ? notice('info', `You are logged in with ${current.Description || current.AccessorID}. Logging in again replaces that token.`) : null,
    msg,
    form);
}

function reloadButton(fn) {
  return h('button', { type: 'button', class: 'small', onclick: fn }, 'Reload');
}

/** Shows a read's failure: 403 means the token lacks acl:read. */
function failure(what, err) {
  if (err.status === 403) {
    return notice('error', `Your token may not read ${what} (it needs acl = "read"). `,
      'Log in with another token to see them.');
  }
  return notice('error', `Could not load ${what}: ${err.message}`);
}

function policyLinks(ctx, list) {
  if (!list || list.length === 0) return muted('—');
  return h('ul', { class: 'plain' }, list.map((p) => h('li', {},
    h('a', { href: ctx.link(`acls/policies/${encodeURIComponent(p.ID)}`) }, p.Name))));
}

function roleNames(list) {
  if (!list || list.length === 0) return muted('—');
  return h('ul', { class: 'plain' }, list.map((r) => h('li', {}, r.Name || r.ID)));
}

/** Reads `load()` into `body` now and on "Reload". */
function readInto(ctx, body, load, draw, what) {
  const run = async () => {
    body.setAttribute('aria-busy', 'true');
    try {
      const data = await load();
      if (ctx.signal.aborted) return;
      body.removeAttribute('aria-busy');
      draw(data);
    } catch (err) {
      if (ctx.signal.aborted) return;
      body.removeAttribute('aria-busy');
      replace(body, failure(what, err));
    }
  };
  run();
  return run;
}

/** All tokens. */
export function tokens(main, _params, ctx) {
  document.title = 'Tokens - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body' }, h('p', { class: 'muted' }, 'Loading tokens…'));
  const mine = (token() || {}).AccessorID;
  const reload = readInto(ctx, body, () => getJSON('/v1/acl/tokens', { signal: ctx.signal }), (list) => {
    list = list || [];
    count.textContent = `${list.length}`;
    if (list.length === 0) { replace(body, h('p', { class: 'empty' }, 'No tokens.')); return; }
    replace(body, table('ACL tokens', ['Token', 'Description', 'Policies', 'Roles', 'Scope'],
      list.map((t) => ({
        attrs: { dataset: { token: t.AccessorID } },
        cells: [
          h('span', {},
            h('a', { href: ctx.link(`acls/tokens/${encodeURIComponent(t.AccessorID)}`) },
              h('code', {}, t.AccessorID.slice(0, 8)),
              h('span', { class: 'visually-hidden' }, ` (${t.AccessorID})`)),
            t.AccessorID === mine ? h('span', { class: 'badge passing you' }, 'Your token') : null),
          t.Description || muted('—'),
          policyLinks(ctx, t.Policies),
          roleNames(t.Roles),
          t.Local ? 'Local' : 'Global',
        ],
      }))));
  }, 'tokens');
  replace(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Tokens ', count), h('div', { class: 'actions' }, reloadButton(() => reload()))),
    h('p', { class: 'muted intro' }, 'Read-only. Secrets are not shown.'),
    body);
}

/** One token with its policies and roles (each role with its own policies). */
export function tokenDetail(main, { id }, ctx) {
  document.title = `Token ${id.slice(0, 8)} - registry`;
  const body = h('div', { class: 'view-body' }, h('p', { class: 'muted' }, 'Loading the token…'));
  const load = async () => {
    const t = await getJSON(`/v1/acl/token/${encodeURIComponent(id)}`, { signal: ctx.signal });
    const roles = await Promise.all((t.Roles || []).map((r) =>
      getJSON(`/v1/acl/role/${encodeURIComponent(r.ID)}`, { signal: ctx.signal, ok404: true })
        .then((full) => full || r, () => r)));
    return { t, roles };
  };
  const reload = readInto(ctx, body, load, ({ t, roles }) => {
    replace(body,
      details([
        ['AccessorID', h('code', {}, t.AccessorID)],
        ['SecretID', muted('hidden')],
        ['Description', t.Description || muted('—')],
        ['Scope', t.Local ? 'Local to this datacenter' : 'Global'],
        ['Created', t.CreateTime || muted('—')],
        ['Expires', t.ExpirationTime || muted('never')],
      ]),
      h('h2', {}, 'Policies'),
      (t.Policies || []).length
        ? table('Policies of the token', ['Policy', 'ID'], t.Policies.map((p) => ({
          attrs: { dataset: { policy: p.ID } },
          cells: [h('a', { href: ctx.link(`acls/policies/${encodeURIComponent(p.ID)}`) }, p.Name), h('code', {}, p.ID)],
        })))
        : h('p', { class: 'empty' }, 'No policies of its own.'),
      h('h2', {}, 'Roles'),
      roles.length
        ? table('Roles of the token', ['Role', 'Description', 'Policies'], roles.map((r) => ({
          attrs: { dataset: { role: r.ID } },
          cells: [r.Name || r.ID, r.Description || muted('—'), policyLinks(ctx, r.Policies)],
        })))
        : h('p', { class: 'empty' }, 'No roles.'));
  }, 'this token');
  replace(main,
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' },
      h('ol', {}, h('li', {}, h('a', { href: ctx.link('acls/tokens') }, 'Tokens')), h('li', { 'aria-current': 'page' }, id.slice(0, 8)))),
    h('div', { class: 'view-head' }, h('h1', {}, `Token ${id.slice(0, 8)}`), h('div', { class: 'actions' }, reloadButton(() => reload()))),
    body);
}

/** All policies. */
export function policies(main, _params, ctx) {
  document.title = 'Policies - registry';
  const count = h('span', { class: 'count' });
  const body = h('div', { class: 'view-body' }, h('p', { class: 'muted' }, 'Loading policies…'));
  const reload = readInto(ctx, body, () => getJSON('/v1/acl/policies', { signal: ctx.signal }), (list) => {
    list = list || [];
    count.textContent = `${list.length}`;
    if (list.length === 0) { replace(body, h('p', { class: 'empty' }, 'No policies.')); return; }
    replace(body, table('ACL policies', ['Policy', 'Description', 'Datacenters'],
      list.map((p) => ({
        attrs: { dataset: { policy: p.ID } },
        cells: [
          h('a', { href: ctx.link(`acls/policies/${encodeURIComponent(p.ID)}`) }, p.Name),
          p.Description || muted('—'),
          (p.Datacenters || []).join(', ') || 'All',
        ],
      }))));
  }, 'policies');
  replace(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Policies ', count), h('div', { class: 'actions' }, reloadButton(() => reload()))),
    h('p', { class: 'muted intro' }, 'Read-only.'),
    body);
}

/** One policy with its rules. */
export function policyDetail(main, { id }, ctx) {
  document.title = 'Policy - registry';
  const heading = h('h1', {}, 'Policy');
  const body = h('div', { class: 'view-body' }, h('p', { class: 'muted' }, 'Loading the policy…'));
  const reload = readInto(ctx, body, () => getJSON(`/v1/acl/policy/${encodeURIComponent(id)}`, { signal: ctx.signal }), (p) => {
    heading.textContent = `Policy ${p.Name}`;
    document.title = `Policy ${p.Name} - registry`;
    replace(body,
      details([
        ['ID', h('code', {}, p.ID)],
        ['Description', p.Description || muted('—')],
        ['Datacenters', (p.Datacenters || []).join(', ') || 'All'],
      ]),
      h('h2', { id: 'rules-heading' }, 'Rules'),
      h('pre', { class: 'output rules', tabindex: '0', 'aria-labelledby': 'rules-heading' }, p.Rules || ''));
  }, 'this policy');
  replace(main,
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' },
      h('ol', {}, h('li', {}, h('a', { href: ctx.link('acls/policies') }, 'Policies')), h('li', { 'aria-current': 'page' }, id.slice(0, 8)))),
    h('div', { class: 'view-head' }, heading, h('div', { class: 'actions' }, reloadButton(() => reload()))),
    body);
}
