// The application shell: history routing under the content path, navigation, focus and
// announcements. Each view is a function (main, params, ctx) that renders into <main> and
// starts its blocking-query watches with ctx.signal, which aborts when the route changes.

import { h, replace } from './dom.js';
import { onConnection, onAcl, aclState, token, clearToken } from './api.js';
import * as services from './views/services.js';
import * as nodes from './views/nodes.js';
import * as kv from './views/kv.js';
import * as sessions from './views/sessions.js';
import * as members from './views/members.js';
import * as acls from './views/acl.js';

const meta = document.querySelector('meta[name="registry-ui"]');
const base = meta.dataset.contentPath;
const dc = meta.dataset.datacenter;
const main = document.getElementById('main');
const announcer = document.getElementById('announce');

let current = null;

/** The UI URL of a route path such as "services/web" (segments already encoded). */
export function link(path) {
  return `${base}${encodeURIComponent(dc)}/${path}`;
}

/** Reads a route query parameter (deep-linked UI state such as a filter). */
export function param(name) {
  return new URLSearchParams(location.search).get(name) || '';
}

/** Replaces a route query parameter without adding a history entry. */
export function setParam(name, value) {
  const q = new URLSearchParams(location.search);
  if (value) q.set(name, value);
  else q.delete(name);
  const s = q.toString();
  history.replaceState(history.state, '', location.pathname + (s ? `?${s}` : ''));
}

/** Says something to screen readers (and keeps it for tests in #announce). */
export function announce(text) {
  announcer.textContent = '';
  // A fresh text node so that repeating the same message is announced again.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

/** Goes to a UI URL (a full path under the content path). */
export function navigate(to, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  render(true);
}

function segments() {
  let path = location.pathname;
  if (!path.startsWith(base)) return [];
  path = path.slice(base.length);
  return path.split('/').map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
}

function route() {
  const seg = segments();
  if (seg.length === 0 || seg[0] === '') return { redirect: link('services') };
  const [, section, ...rest] = seg;
  const tail = rest.join('/');
  switch (section) {
    case 'services':
      if (!tail) return { section, view: services.list };
      return { section, view: services.detail, params: { name: rest[0] } };
    case 'nodes':
      if (!tail) return { section, view: nodes.list };
      return { section, view: nodes.detail, params: { node: rest[0] } };
    case 'kv': {
      if (tail === '' || tail.endsWith('/')) return { section, view: kv.folder, params: { prefix: tail } };
      if (tail === 'create') return { section, view: kv.create, params: { prefix: '' } };
      if (tail.endsWith('/create')) return { section, view: kv.create, params: { prefix: tail.slice(0, -'create'.length) } };
      if (tail.endsWith('/edit')) return { section, view: kv.edit, params: { key: tail.slice(0, -'/edit'.length) } };
      return { section, view: kv.edit, params: { key: tail } };
    }
    case 'sessions':
      return { section, view: sessions.list };
    case 'members':
      return { section, view: members.list };
    case 'login':
      return { section, view: acls.login };
    case 'acls':
      if (rest[0] === 'tokens' && rest[1]) return { section: 'tokens', view: acls.tokenDetail, params: { id: rest[1] } };
      if (rest[0] === 'tokens') return { section: 'tokens', view: acls.tokens };
      if (rest[0] === 'policies' && rest[1]) return { section: 'policies', view: acls.policyDetail, params: { id: rest[1] } };
      if (rest[0] === 'policies') return { section: 'policies', view: acls.policies };
      return { redirect: link('acls/tokens') };
    case undefined:
    case '':
      return { redirect: link('services') };
    default:
      return { section: null, view: notFound };
  }
}

function notFound(el) {
  document.title = 'Not found - registry';
  replace(el,
    h('h1', { tabindex: '-1' }, 'Page not found'),
    h('p', {}, 'Nothing lives at this address. ', h('a', { href: link('services') }, 'Go to the services'), '.'));
}

function render(moveFocus) {
  const r = route();
  if (r.redirect) {
    history.replaceState(null, '', r.redirect);
    return render(moveFocus);
  }
  if (current) current.abort();
  current = new AbortController();
  for (const a of document.querySelectorAll('nav[aria-label="Main"] a')) {
    if (a.dataset.section === r.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  current.section = r.section;
  drawSession();
  const ctx = { signal: current.signal, link, navigate, announce, param, setParam, dc, base };
  try {
    r.view(main, r.params || {}, ctx);
  } catch (err) {
    replace(main, h('h1', {}, 'Something went wrong'), h('p', { role: 'alert' }, String(err)));
  }
  if (moveFocus) {
    // Focus the new page's heading so keyboard and screen-reader users start there.
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    } else {
      main.focus();
    }
  }
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const to = new URL(a.href, location.href);
  if (to.origin !== location.origin || !to.pathname.startsWith(base)) return;
  if (to.pathname === location.pathname && to.search === location.search && to.hash) return;
  e.preventDefault();
  navigate(to.pathname + to.search);
});

window.addEventListener('popstate', () => render(true));
// A page leaving for the back/forward cache keeps its open requests, and blocking queries
// would hold the browser's few connections to the agent: end them, and start again if the
// page comes back.
window.addEventListener('pagehide', () => { if (current) current.abort(); });
window.addEventListener('pageshow', (e) => { if (e.persisted) render(false); });

const conn = document.getElementById('conn');
onConnection((state) => {
  if (conn.dataset.state === state) return;
  conn.dataset.state = state;
  conn.textContent = state === 'live' ? 'Live' : 'Reconnecting…';
});

// ACLs: the agent says they are on (X-Consul-Default-ACL-Policy on its answers, or a 403).
// Then the token views and a log in / log out control appear; without a token under a
// "deny" default, or when a request is denied, the login form opens with the page to come
// back to.
const session = document.getElementById('acl-session');

function drawSession() {
  const { enabled } = aclState();
  for (const li of document.querySelectorAll('[data-acl]')) li.hidden = !enabled;
  session.hidden = !enabled;
  if (!enabled) return;
  const t = token();
  if (t) {
    session.replaceChildren(
      h('span', { class: 'who', title: t.AccessorID }, h('span', { class: 'visually-hidden' }, 'Logged in as '), t.Description || t.AccessorID.slice(0, 8)),
      h('button', { type: 'button', class: 'small', id: 'logout', onclick: logout }, 'Log out'));
  } else {
    session.replaceChildren(h('a', { id: 'login-link', href: loginLink() }, 'Log in'));
  }
}

function here() {
  return location.pathname + location.search;
}

function loginLink() {
  const p = location.pathname.startsWith(link('login')) ? '' : here();
  return `${link('login')}${p ? `?next=${encodeURIComponent(p)}` : ''}`;
}

function toLogin() {
  if (current && current.section === 'login') return;
  navigate(loginLink(), { replace: true });
}

function logout() {
  clearToken();
  announce('Logged out.');
  drawSession();
  if (aclState().policy === 'deny') toLogin();
  else render(true);
}

onAcl(({ enabled, policy, denied, message }) => {
  drawSession();
  if (!enabled) return;
  if (denied && token() && /ACL not found/i.test(message || '')) {
    // The stored token is gone (deleted or expired): forget it, as Consul's UI does.
    clearToken();
    drawSession();
    toLogin();
  } else if (!token() && (denied || policy === 'deny')) {
    toLogin();
  }
});

render(false);
