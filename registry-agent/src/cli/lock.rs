//! `registry lock [options] PREFIX CHILD...`: runs a child process while holding a lock
//! (`-n 1`) or a semaphore slot (`-n N`), as `consul lock` does.
//!
//! The lock follows the Go `api.Lock` protocol so that it interoperates with Consul's own
//! clients: a session (TTL 15 s, renewed every TTL/2), the key `PREFIX/.lock` acquired with
//! flags `0x2ddccbc058a50c18`, blocking reads while someone else holds it, a 5 s pause after a
//! failed acquire (lock-delay), and a consistent blocking watch on the key to notice a lost
//! lock. The semaphore follows `api.Semaphore`: a `delete` session, a contender entry
//! `PREFIX/<session>`, and the holder set `{"Limit":N,"Holders":{...}}` at `PREFIX/.lock`
//! (flags `0xe0f69a2baa414de0`) updated with check-and-set.
//!
//! When the lock is lost or the command is interrupted, the child gets SIGTERM and, after a
//! 5 s grace period, SIGKILL. The lock is then released and, when unused, its key removed.

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use base64::Engine;
use clap::Args;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Flags of keys used as Go `api.Lock` locks.
pub const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Flags of keys used as Go `api.Semaphore` semaphores.
pub const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The key within the prefix (`api.DefaultSemaphoreKey`).
pub const LOCK_KEY: &str = ".lock";

const SESSION_TTL: &str = "15s";
const SESSION_TTL_DURATION: Duration = Duration::from_secs(15);
/// How long each blocking read waits (`DefaultLockWaitTime`).
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Pause after a failed acquire, so lock-delay is not hammered (`DefaultLockRetryTime`).
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// Time between SIGTERM and SIGKILL (`lockKillGracePeriod`).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Pause between monitor retries after a 500 (`defaultMonitorRetryTime`).
const MONITOR_RETRY_WAIT: Duration = Duration::from_secs(1);

/// `lock` flags.
#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Exit 2 if the child process exited with an error (otherwise the child's failure is
    /// not propagated).
    #[arg(long = "child-exit-code", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    child_exit_code: Option<bool>,
    /// Limit on the number of concurrent holders; above 1 a semaphore is used.
    #[arg(
        short = 'n',
        long = "n",
        default_value_t = 1,
        value_name = "N",
        allow_negative_numbers = true
    )]
    limit: i64,
    /// Number of 500 errors tolerated while monitoring the lock (1 s apart).
    #[arg(
        long = "monitor-retry",
        default_value_t = 3,
        value_name = "N",
        allow_negative_numbers = true
    )]
    monitor_retry: i64,
    /// Name of the lock session (default derived from the child command).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Pass stdin to the child process.
    #[arg(long = "pass-stdin", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    pass_stdin: Option<bool>,
    /// Run the command through a shell ($SHELL, else /bin/sh).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    shell: Option<bool>,
    /// Maximum time to wait for the lock (a Go duration; 0 waits forever).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Deprecated alias of -timeout.
    #[arg(long = "try", value_name = "DURATION")]
    try_: Option<String>,
    /// Print what the command does.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    verbose: Option<bool>,
    /// PREFIX and the child command.
    #[arg(value_name = "PREFIX CHILD", num_args = 0.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    args: Vec<String>,
}

/// A KV entry as the API returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    session: String,
    #[serde(default)]
    modify_index: u64,
}

impl Pair {
    fn value_bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }
}

/// The semaphore's holder set (`semaphoreLock`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
struct SemaphoreLock {
    #[serde(rename = "Limit")]
    limit: i64,
    #[serde(rename = "Holders")]
    holders: BTreeMap<String, bool>,
}

/// Why acquisition ended without the lock.
enum AcquireError {
    /// Interrupted or timed out.
    Stopped,
    /// A failure, with its text.
    Failed(String),
}

/// Reads of the lock's keys, which need `X-Consul-Index` (never `?stale`).
#[derive(Clone)]
struct Reads {
    api: registry_client::Client,
}

impl Reads {
    fn new(flags: &HttpFlags, server: &ServerFlags) -> Result<Reads, String> {
        let cfg = super::http::client_config(flags, Some(server));
        Ok(Reads {
            api: registry_client::Client::new(&cfg)?,
        })
    }

    /// GET `path` with `query`: status, `X-Consul-Index` and body.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, u64, Vec<u8>), String> {
        let r = self
            .api
            .get(path, query, &registry_client::QueryOptions::default())
            .await?;
        let index = r.meta().index;
        Ok((r.status, index, r.body))
    }
}

fn status_error(status: u16, body: &[u8]) -> String {
    format!(
        "Unexpected response code: {status} ({})",
        String::from_utf8_lossy(body)
    )
}

/// Lock or semaphore, and the session that holds it.
#[derive(Clone)]
struct Holder {
    client: Client,
    reads: Reads,
    prefix: String,
    limit: i64,
    session: String,
    verbose: bool,
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_path(key))
}

/// Go's `path.Join(prefix, name)` for the simple prefixes keys use.
fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}/{name}")
    }
}

impl Holder {
    fn lock_key(&self) -> String {
        join(&self.prefix, LOCK_KEY)
    }

    /// GET a single key, blocking on `index` when non-zero: the pair (if any) and the index.
    async fn get_key(
        &self,
        key: &str,
        index: u64,
        wait: Duration,
        consistent: bool,
    ) -> Result<(Option<Pair>, u64), (u16, String)> {
        let q = read_query(index, wait, consistent, false);
        let (status, idx, body) = self
            .reads
            .get(&kv_path(key), &q)
            .await
            .map_err(|e| (0, e))?;
        match status {
            404 => Ok((None, idx)),
            200 => {
                let pairs: Vec<Pair> = serde_json::from_slice(&body)
                    .map_err(|e| (200, format!("Failed to decode response: {e}")))?;
                Ok((pairs.into_iter().next(), idx))
            }
            s => Err((s, status_error(s, &body))),
        }
    }

    /// GET a prefix recursively, blocking on `index` when non-zero.
    async fn list(
        &self,
        index: u64,
        wait: Duration,
        consistent: bool,
    ) -> Result<(Vec<Pair>, u64), (u16, String)> {
        let q = read_query(index, wait, consistent, true);
        let (status, idx, body) = self
            .reads
            .get(&kv_path(&self.prefix), &q)
            .await
            .map_err(|e| (0, e))?;
        match status {
            404 => Ok((Vec::new(), idx)),
            200 => Ok((
                serde_json::from_slice(&body)
                    .map_err(|e| (200, format!("Failed to decode response: {e}")))?,
                idx,
            )),
            s => Err((s, status_error(s, &body))),
        }
    }

    /// PUT a key with query parameters; the `true`/`false` answer.
    async fn put(
        &self,
        key: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<bool, String> {
        let r = self
            .client
            .send(Method::PUT, &kv_path(key), query, Some(body))
            .await?;
        if r.status != 200 {
            return Err(r.status_error());
        }
        Ok(r.text().trim() == "true")
    }

    async fn delete(&self, key: &str, query: &[(&str, String)]) -> Result<bool, String> {
        let r = self
            .client
            .send(Method::DELETE, &kv_path(key), query, None)
            .await?;
        if r.status != 200 {
            return Err(r.status_error());
        }
        Ok(r.text().trim() == "true")
    }

    /// Acquires the lock or a semaphore slot, until `deadline` if any.
    async fn acquire(
        &self,
        deadline: Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), AcquireError> {
        if self.limit == 1 {
            self.acquire_lock(deadline, stop).await
        } else {
            self.acquire_semaphore(deadline, stop).await
        }
    }

    fn wait_for(deadline: Option<Instant>) -> Result<Duration, AcquireError> {
        match deadline {
            None => Ok(LOCK_WAIT),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(AcquireError::Stopped)
                } else {
                    Ok(left.min(LOCK_WAIT))
                }
            }
        }
    }

    async fn acquire_lock(
        &self,
        deadline: Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), AcquireError> {
        let key = self.lock_key();
        let mut index = 0;
        loop {
            if *stop.borrow() {
                return Err(AcquireError::Stopped);
            }
            let wait = Self::wait_for(deadline)?;
            let got = tokio::select! {
                r = self.get_key(&key, index, wait, false) => r,
                _ = stop.changed() => return Err(AcquireError::Stopped),
            };
            let (pair, idx) =
                got.map_err(|(_, e)| AcquireError::Failed(format!("failed to read lock: {e}")))?;
            if let Some(p) = &pair {
                if p.flags != LOCK_FLAG_VALUE {
                    return Err(AcquireError::Failed(
                        "Existing key does not match lock use".into(),
                    ));
                }
                if !p.session.is_empty() {
                    // Held by someone else: block until it changes.
                    index = idx;
                    continue;
                }
            }
            let q = [
                ("acquire", self.session.clone()),
                ("flags", LOCK_FLAG_VALUE.to_string()),
            ];
            let locked = self
                .put(&key, &q, Vec::new())
                .await
                .map_err(|e| AcquireError::Failed(format!("failed to acquire lock: {e}")))?;
            if locked {
                return Ok(());
            }
            // Probably lock-delay: do not spin.
            index = 0;
            let pause = match deadline {
                Some(d) => LOCK_RETRY.min(d.saturating_duration_since(Instant::now())),
                None => LOCK_RETRY,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return Err(AcquireError::Stopped),
            }
        }
    }

    fn decode_semaphore(&self, pair: Option<&Pair>) -> Result<SemaphoreLock, String> {
        let value = pair.map(Pair::value_bytes).unwrap_or_default();
        if value.is_empty() {
            return Ok(SemaphoreLock {
                limit: self.limit,
                holders: BTreeMap::new(),
            });
        }
        serde_json::from_slice(&value).map_err(|e| format!("lock decoding failed: {e}"))
    }

    fn prune(lock: &mut SemaphoreLock, pairs: &[Pair]) {
        let alive: std::collections::BTreeSet<&str> = pairs
            .iter()
            .filter(|p| !p.session.is_empty())
            .map(|p| p.session.as_str())
            .collect();
        lock.holders.retain(|h, _| alive.contains(h.as_str()));
    }

    async fn acquire_semaphore(
        &self,
        deadline: Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), AcquireError> {
        let contender = join(&self.prefix, &self.session);
        let q = [
            ("acquire", self.session.clone()),
            ("flags", SEMAPHORE_FLAG_VALUE.to_string()),
        ];
        match self.put(&contender, &q, Vec::new()).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(AcquireError::Failed(
                    "failed to make contender entry: <nil>".into(),
                ))
            }
            Err(e) => {
                return Err(AcquireError::Failed(format!(
                    "failed to make contender entry: {e}"
                )))
            }
        }
        let key = self.lock_key();
        let mut index = 0;
        loop {
            if *stop.borrow() {
                return Err(AcquireError::Stopped);
            }
            let wait = Self::wait_for(deadline)?;
            let got = tokio::select! {
                r = self.list(index, wait, false) => r,
                _ = stop.changed() => return Err(AcquireError::Stopped),
            };
            let (pairs, idx) =
                got.map_err(|(_, e)| AcquireError::Failed(format!("failed to read prefix: {e}")))?;
            let lock_pair = pairs.iter().find(|p| p.key == key);
            if lock_pair.is_some_and(|p| p.flags != SEMAPHORE_FLAG_VALUE) {
                return Err(AcquireError::Failed(
                    "Existing key does not match semaphore use".into(),
                ));
            }
            let mut lock = self
                .decode_semaphore(lock_pair)
                .map_err(AcquireError::Failed)?;
            if lock.limit != self.limit {
                return Err(AcquireError::Failed(format!(
                    "semaphore limit conflict (lock: {}, local: {})",
                    lock.limit, self.limit
                )));
            }
            Self::prune(&mut lock, &pairs);
            if i64::try_from(lock.holders.len()).unwrap_or(i64::MAX) >= lock.limit {
                index = idx;
                continue;
            }
            lock.holders.insert(self.session.clone(), true);
            let body = serde_json::to_vec(&lock)
                .map_err(|e| AcquireError::Failed(format!("lock encoding failed: {e}")))?;
            let q = [
                ("cas", lock_pair.map_or(0, |p| p.modify_index).to_string()),
                ("flags", SEMAPHORE_FLAG_VALUE.to_string()),
            ];
            let set = self
                .put(&key, &q, body)
                .await
                .map_err(|e| AcquireError::Failed(format!("failed to update lock: {e}")))?;
            if set {
                return Ok(());
            }
            // Raced with another contender: read again.
            index = 0;
        }
    }

    /// Whether we still hold: `Ok(false)` once the lock or slot is gone.
    async fn still_held(&self, index: &mut u64) -> Result<bool, (u16, String)> {
        if self.limit == 1 {
            let (pair, idx) = self
                .get_key(&self.lock_key(), *index, LOCK_WAIT, true)
                .await?;
            *index = idx;
            Ok(pair.is_some_and(|p| p.session == self.session))
        } else {
            let (pairs, idx) = self.list(*index, LOCK_WAIT, true).await?;
            *index = idx;
            let key = self.lock_key();
            let mut lock = match self.decode_semaphore(pairs.iter().find(|p| p.key == key)) {
                Ok(l) => l,
                Err(_) => return Ok(false),
            };
            Self::prune(&mut lock, &pairs);
            Ok(lock.holders.contains_key(&self.session))
        }
    }

    /// Watches the lock; resolves when it is lost (after `retries` tolerated 500s).
    async fn monitor(self, retries: i64) {
        let mut index = 0;
        let mut left = retries;
        loop {
            match self.still_held(&mut index).await {
                Ok(true) => left = retries,
                Ok(false) => return,
                Err((500, _)) if left > 0 => {
                    left -= 1;
                    tokio::time::sleep(MONITOR_RETRY_WAIT).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Releases the lock or slot.
    async fn release(&self) -> Result<(), String> {
        if self.limit == 1 {
            let q = [
                ("release", self.session.clone()),
                ("flags", LOCK_FLAG_VALUE.to_string()),
            ];
            self.put(&self.lock_key(), &q, Vec::new())
                .await
                .map(|_| ())
                .map_err(|e| format!("failed to release lock: {e}"))
        } else {
            let key = self.lock_key();
            loop {
                let (pair, _) = self
                    .get_key(&key, 0, LOCK_WAIT, false)
                    .await
                    .map_err(|(_, e)| e)?;
                let mut lock = self.decode_semaphore(pair.as_ref())?;
                if lock.holders.remove(&self.session).is_none() {
                    break;
                }
                let body =
                    serde_json::to_vec(&lock).map_err(|e| format!("lock encoding failed: {e}"))?;
                let q = [
                    ("cas", pair.map_or(0, |p| p.modify_index).to_string()),
                    ("flags", SEMAPHORE_FLAG_VALUE.to_string()),
                ];
                if self
                    .put(&key, &q, body)
                    .await
                    .map_err(|e| format!("failed to update lock: {e}"))?
                {
                    break;
                }
            }
            self.delete(&join(&self.prefix, &self.session), &[])
                .await
                .map(|_| ())
        }
    }

    /// Removes the lock key when nobody uses it: `Ok(true)` removed or absent, `Ok(false)`
    /// in use.
    async fn cleanup(&self) -> Result<bool, String> {
        let key = self.lock_key();
        if self.limit == 1 {
            let (pair, _) = self
                .get_key(&key, 0, LOCK_WAIT, false)
                .await
                .map_err(|(_, e)| format!("failed to read lock: {e}"))?;
            let Some(p) = pair else { return Ok(true) };
            if p.flags != LOCK_FLAG_VALUE {
                return Err("Existing key does not match lock use".into());
            }
            if !p.session.is_empty() {
                return Ok(false);
            }
            self.delete(&key, &[("cas", p.modify_index.to_string())])
                .await
                .map_err(|e| format!("failed to remove lock: {e}"))
        } else {
            let (pairs, _) = self
                .list(0, LOCK_WAIT, false)
                .await
                .map_err(|(_, e)| format!("failed to read prefix: {e}"))?;
            let Some(p) = pairs.iter().find(|p| p.key == key) else {
                return Ok(true);
            };
            if p.flags != SEMAPHORE_FLAG_VALUE {
                return Err("Existing key does not match semaphore use".into());
            }
            let mut lock = self.decode_semaphore(Some(p))?;
            Self::prune(&mut lock, &pairs);
            if !lock.holders.is_empty() {
                return Ok(false);
            }
            self.delete(&key, &[("cas", p.modify_index.to_string())])
                .await
                .map_err(|e| format!("failed to remove semaphore: {e}"))
        }
    }
}

/// Query of a KV read: blocking when `index` is non-zero.
fn read_query(
    index: u64,
    wait: Duration,
    consistent: bool,
    recurse: bool,
) -> Vec<(&'static str, String)> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if recurse {
        q.push(("recurse", String::new()));
    }
    if index > 0 {
        q.push(("index", index.to_string()));
        q.push(("wait", format!("{}ms", wait.as_millis())));
    }
    if consistent {
        q.push(("consistent", String::new()));
    }
    q
}

/// Creates the lock session: TTL 15 s, behavior `delete` for semaphores.
async fn create_session(client: &Client, name: &str, semaphore: bool) -> Result<String, String> {
    let mut body = serde_json::json!({"Name": name, "TTL": SESSION_TTL});
    if semaphore {
        body["Behavior"] = Value::from("delete");
    }
    let r = client
        .send(
            Method::PUT,
            "/v1/session/create",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await?;
    if r.status != 200 {
        return Err(r.status_error());
    }
    let v: Value = r.json()?;
    v.get("ID")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "session create answered without an ID".to_string())
}

/// Renews the session every TTL/2 until `done`, then destroys it.
async fn renew_session(client: Client, id: String, mut done: watch::Receiver<bool>) {
    let mut ttl = SESSION_TTL_DURATION;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 2) => {
                let path = format!("/v1/session/renew/{id}");
                match client.send(Method::PUT, &path, &[], None).await {
                    Ok(r) if r.status == 200 => {
                        // The server may raise the TTL.
                        let server_ttl = r
                            .json::<Value>()
                            .ok()
                            .and_then(|v| v.get(0)?.get("TTL")?.as_str().map(str::to_string))
                            .and_then(|t| crate::config::duration::parse_duration(&t).ok());
                        if let Some(t) = server_ttl.filter(|t| !t.is_zero()) {
                            ttl = t;
                        }
                    }
                    _ => return,
                }
            }
            _ = done.changed() => {
                let path = format!("/v1/session/destroy/{id}");
                let _ = client.send(Method::PUT, &path, &[], None).await;
                return;
            }
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`) to a process.
async fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid} failed"))
    }
}

fn parse_timeout(args: &LockArgs) -> Result<Duration, String> {
    let text = args
        .timeout
        .as_deref()
        .or(args.try_.as_deref())
        .unwrap_or("0");
    if text.trim_start().starts_with('-') {
        return Err("Timeout must be positive".into());
    }
    crate::config::duration::parse_duration(text)
        .map_err(|e| format!("invalid value {text:?} for flag -timeout: {e}"))
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `lock`.
pub async fn run(args: LockArgs, ui: &mut Ui<'_>) -> i32 {
    if args.limit <= 0 {
        return ui.fail("Lock holder limit must be positive");
    }
    if args.args.len() < 2 {
        return ui.fail("Key prefix and child command must be specified");
    }
    let prefix = args.args[0].trim_start_matches('/').to_string();
    let child: Vec<String> = args.args[1..].to_vec();
    let timeout = match parse_timeout(&args) {
        Ok(t) => t,
        Err(e) => return ui.fail(&e),
    };
    if args.monitor_retry < 0 {
        return ui.fail("Number for 'monitor-retry' must be >= 0");
    }
    let verbose = args.verbose.unwrap_or(false);
    let name = args
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("Consul lock for '{}' at '{prefix}'", child.join(" ")));
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    if let Err(e) = client.get_ok("/v1/agent/self", &[]).await {
        return ui.fail(&format!("Error querying Consul agent: {e}"));
    }
    if verbose {
        if args.limit == 1 {
            ui.output(&format!(
                "Setting up lock at path: {}",
                join(&prefix, LOCK_KEY)
            ));
        } else {
            ui.output(&format!(
                "Setting up semaphore (limit {}) at prefix: {prefix}",
                args.limit
            ));
        }
    }

    // Interrupts stop acquisition and, later, the child.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let interrupt = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let session = match create_session(&client, &name, args.limit > 1).await {
        Ok(s) => s,
        Err(e) => {
            interrupt.abort();
            return ui.fail(&format!(
                "Lock acquisition failed: failed to create session: {e}"
            ));
        }
    };
    let (done_tx, done_rx) = watch::channel(false);
    let renewer = tokio::spawn(renew_session(client.clone(), session.clone(), done_rx));
    let reads = match Reads::new(&args.http, &args.server) {
        Ok(r) => r,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let holder = Holder {
        client: client.clone(),
        reads,
        prefix,
        limit: args.limit,
        session,
        verbose,
    };
    let finish = |renewer: tokio::task::JoinHandle<()>, done_tx: watch::Sender<bool>| async move {
        let _ = done_tx.send(true);
        let _ = renewer.await;
    };

    if verbose {
        ui.output("Attempting lock acquisition");
    }
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    match holder.acquire(deadline, &mut stop_rx).await {
        Ok(()) => {}
        Err(e) => {
            // The contender entry of a semaphore goes with the session (behavior delete).
            finish(renewer, done_tx).await;
            interrupt.abort();
            return match e {
                AcquireError::Stopped => {
                    ui.fail("Shutdown triggered or timeout during lock acquisition")
                }
                AcquireError::Failed(e) => ui.fail(&format!("Lock acquisition failed: {e}")),
            };
        }
    }

    let mut child_code = 0;
    if *stop_rx.borrow() {
        ui.error("Shutdown triggered during lock acquisition");
    } else {
        let monitor = tokio::spawn(holder.clone().monitor(args.monitor_retry));
        child_code = supervise(&child, &args, verbose, monitor, &mut stop_rx, ui).await;
    }

    // Release, then remove the key if nobody else uses it.
    let mut code = 0;
    if let Err(e) = holder.release().await {
        ui.error(&format!("Lock release failed: {e}"));
        code = 1;
    } else {
        match holder.cleanup().await {
            Ok(true) => {
                if holder.verbose {
                    ui.output("Cleanup succeeded");
                }
            }
            Ok(false) => {
                if holder.verbose {
                    ui.output("Cleanup aborted, lock in use");
                }
            }
            Err(e) => {
                ui.error(&format!("Lock cleanup failed: {e}"));
                code = 1;
            }
        }
    }
    finish(renewer, done_tx).await;
    interrupt.abort();
    if code != 0 {
        return code;
    }
    if args.child_exit_code.unwrap_or(false) {
        child_code
    } else {
        0
    }
}

/// Runs the child until it exits, the lock is lost or an interrupt arrives; returns 2 when
/// the child failed, else 0.
async fn supervise(
    child: &[String],
    args: &LockArgs,
    verbose: bool,
    mut monitor: tokio::task::JoinHandle<()>,
    stop: &mut watch::Receiver<bool>,
    ui: &mut Ui<'_>,
) -> i32 {
    if verbose {
        ui.output("Starting handler");
    }
    let mut cmd = if args.shell.unwrap_or(true) {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_string());
        let mut c = tokio::process::Command::new(shell);
        c.arg("-c").arg(child.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&child[0]);
        c.args(&child[1..]);
        c
    };
    cmd.env("CONSUL_LOCK_HELD", "true");
    if args.pass_stdin.unwrap_or(false) {
        cmd.stdin(std::process::Stdio::inherit());
    } else {
        cmd.stdin(std::process::Stdio::null());
    }
    let mut proc = match cmd.spawn() {
        Ok(p) => p,
        Err(e) => {
            ui.error(&format!("Error starting handler: {e}"));
            monitor.abort();
            return 2;
        }
    };
    let pid = proc.id();
    tokio::select! {
        status = proc.wait() => {
            monitor.abort();
            if verbose {
                ui.output("Child terminated, releasing lock");
            }
            return match status {
                Ok(s) if s.success() => 0,
                Ok(s) => {
                    ui.error(&format!("Error running handler: {}", exit_text(s)));
                    2
                }
                Err(e) => {
                    ui.error(&format!("Error running handler: {e}"));
                    2
                }
            };
        }
        _ = &mut monitor => {
            if verbose {
                ui.output("Lock lost, killing child");
            }
        }
        _ = stop.changed() => {
            monitor.abort();
            if verbose {
                ui.output("Shutdown triggered, killing child");
            }
        }
    }
    let Some(pid) = pid else { return 0 };
    if verbose {
        ui.output(&format!("Terminating child pid {pid}"));
    }
    if let Err(e) = signal(pid, "TERM").await {
        ui.error(&format!("Failed to terminate {pid}: {e}"));
    }
    match tokio::time::timeout(KILL_GRACE, proc.wait()).await {
        Ok(_) => {
            if verbose {
                ui.output("Child terminated");
            }
        }
        Err(_) => {
            if verbose {
                ui.output(&format!(
                    "Child did not exit after grace period of {}s",
                    KILL_GRACE.as_secs()
                ));
                ui.output(&format!("Killing child pid {pid}"));
            }
            let _ = proc.start_kill();
            let _ = proc.wait().await;
        }
    }
    0
}

fn exit_text(s: std::process::ExitStatus) -> String {
    match s.code() {
        Some(c) => format!("exit status {c}"),
        None => "signal: killed".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_flags() {
        assert_eq!(join("service/pg", LOCK_KEY), "service/pg/.lock");
        assert_eq!(join("service/pg/", "abc"), "service/pg/abc");
        assert_eq!(LOCK_FLAG_VALUE, 3304740253564472344);
        assert_eq!(SEMAPHORE_FLAG_VALUE, 16210313421097356768);
    }

    #[test]
    fn semaphore_lock_json_matches_go() {
        let mut l = SemaphoreLock {
            limit: 2,
            holders: BTreeMap::new(),
        };
        l.holders.insert("b".into(), true);
        l.holders.insert("a".into(), true);
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#
        );
        let pairs = vec![Pair {
            key: "p/a".into(),
            session: "a".into(),
            ..Default::default()
        }];
        Holder::prune(&mut l, &pairs);
        assert_eq!(l.holders.keys().collect::<Vec<_>>(), vec!["a"]);
    }
}
