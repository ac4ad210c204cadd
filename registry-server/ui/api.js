// The HTTP API as the views use it: plain requests and blocking-query watches.
//
// A watch is Consul's blocking query loop: the first request has no index; each later one
// sends ?index=<last X-Consul-Index>&wait=<WAIT> and the agent holds it until the result
// changes or the wait ends. The callback runs only when the index moved, so an unchanged
// answer (a wait that timed out) redraws nothing. An index that goes backwards (a restored
// snapshot) restarts from 0, as Consul's documentation asks. Errors back off exponentially
// (1 s to 30 s) and show in the connection indicator; this is retrying, not polling.

export const WAIT = '5m';

export class HttpError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

const conn = { failing: new Set(), listeners: new Set() };

// The ACL token, kept in localStorage under Consul UI's key ("consul:token", a JSON object
// with AccessorID and SecretID) and sent as X-Consul-Token on every request.
const TOKEN_KEY = 'consul:token';

/** The stored token ({AccessorID, SecretID, Description}) or null. */
export function token() {
  try {
    const t = JSON.parse(localStorage.getItem(TOKEN_KEY) || 'null');
    return t && typeof t.SecretID === 'string' && t.SecretID ? t : null;
  } catch {
    return null;
  }
}

/** Stores the token the user logged in with. */
export function setToken(t) {
  localStorage.setItem(TOKEN_KEY, JSON.stringify({
    AccessorID: t.AccessorID, SecretID: t.SecretID, Description: t.Description || '',
  }));
}

/** Forgets the stored token (log out). */
export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

// What the agent said about ACLs: enabled when it answers with X-Consul-Default-ACL-Policy;
// listeners also hear about every 403 (with its message).
const acl = { enabled: false, policy: '', listeners: new Set() };

/** Subscribes to ACL news: fn({enabled, policy, denied, message}). */
export function onAcl(fn) {
  acl.listeners.add(fn);
}

/** The ACL state seen so far ({enabled, policy}). */
export function aclState() {
  return { enabled: acl.enabled, policy: acl.policy };
}

function noteAcl(res, message) {
  const policy = res.headers.get('X-Consul-Default-ACL-Policy') || '';
  const denied = res.status === 403;
  if (!denied && (policy !== '') === acl.enabled && policy === acl.policy) return;
  acl.enabled = acl.enabled || policy !== '' || denied;
  acl.policy = policy || acl.policy;
  for (const fn of acl.listeners) fn({ enabled: acl.enabled, policy: acl.policy, denied, message });
}

/** Subscribes to the connection state ("live" or "reconnecting"). */
export function onConnection(fn) {
  conn.listeners.add(fn);
}

function setFailing(id, failing) {
  const before = conn.failing.size;
  if (failing) conn.failing.add(id);
  else conn.failing.delete(id);
  if (before !== conn.failing.size || (!failing && before === 0)) {
    const state = conn.failing.size ? 'reconnecting' : 'live';
    for (const fn of conn.listeners) fn(state);
  }
}

/** The URL of an API path with query parameters (values of `true` become bare flags). */
export function url(path, query = {}) {
  const parts = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === false) continue;
    parts.push(v === true ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `${path}?${parts.join('&')}` : path;
}

/** Percent-encodes a KV key for a URL path, keeping its slashes. */
export function keyPath(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** A request; resolves to the Response, rejects with HttpError on a non-2xx status. */
export async function request(method, path, { query, body, signal, ok404 = false, secret } = {}) {
  const headers = { Accept: 'application/json' };
  const t = secret === undefined ? token() : null;
  const sent = secret === undefined ? (t && t.SecretID) : secret;
  if (sent) headers['X-Consul-Token'] = sent;
  const res = await fetch(url(path, query), {
    method,
    body,
    signal,
    headers,
    cache: 'no-store',
  });
  if (!res.ok && !(ok404 && res.status === 404)) {
    const text = (await res.text()).trim();
    // A trial token (the login form's) is not the UI's state: only report the stored one.
    if (secret === undefined) noteAcl(res, text);
    throw new HttpError(res.status, text || `${method} ${path}: HTTP ${res.status}`);
  }
  if (secret === undefined) noteAcl(res, '');
  return res;
}

/** GET returning parsed JSON. */
export async function getJSON(path, opts = {}) {
  const res = await request('GET', path, opts);
  return res.status === 404 ? null : res.json();
}

/** PUT returning parsed JSON (`true`/`false` for KV writes with ?cas). */
export async function putJSON(path, body, opts = {}) {
  const res = await request('PUT', path, { ...opts, body });
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** DELETE returning parsed JSON. */
export async function del(path, opts = {}) {
  const res = await request('DELETE', path, opts);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

let watchIds = 0;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/**
 * Watches `path` with blocking queries until `signal` aborts. `onData(data, index)` runs
 * with the parsed body (null for a 404 when `ok404`), `onError(err)` on failures.
 */
export function watch(path, { query = {}, signal, onData, onError, ok404 = false }) {
  const id = ++watchIds;
  (async () => {
    let index = 0;
    let first = true;
    let backoff = 0;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        const q = index ? { ...query, index, wait: WAIT } : query;
        const res = await request('GET', path, { query: q, signal, ok404 });
        const next = Number(res.headers.get('X-Consul-Index')) || 0;
        const data = res.status === 404 ? null : await res.json();
        if (signal.aborted) break;
        setFailing(id, false);
        backoff = 0;
        const changed = first || next !== index;
        first = false;
        index = next < index ? 0 : next;
        if (changed) onData(data, next);
        else if (Date.now() - started < 500) {
          // The agent answered at once with nothing new: never spin.
          await sleep(1000, signal);
        }
      } catch (err) {
        if (signal.aborted) break;
        setFailing(id, true);
        if (onError) onError(err);
        backoff = Math.min(backoff ? backoff * 2 : 1000, 30000);
        await sleep(backoff, signal);
      }
    }
    setFailing(id, false);
  })();
}

/** Decodes a KV value (base64) to text, or null when it is not UTF-8. */
export function decodeValue(b64) {
  if (!b64) return '';
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** Byte length of a base64 value. */
export function valueSize(b64) {
  return b64 ? atob(b64).length : 0;
}
