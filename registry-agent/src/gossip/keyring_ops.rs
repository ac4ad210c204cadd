//! Keyring operations across the pool (`/v1/operator/keyring`, `registry keyring`): the
//! listing counts the key fingerprints every alive member publishes; a change is published
//! as a `kr:<id>` request in this member's gossip state, applied here at once and by every
//! member when gossip brings it, and the call returns when every alive member publishes a
//! keyring that reflects it (or fails after [`CHANGE_TIMEOUT`]).

use super::keyring::{Keyring, Op, Request, KEYRING_KEY, REQUEST_PREFIX};
use super::Gossip;
use crate::gossip::crypto::GossipKey;
use registry_server::error::ServerError;
use registry_server::leader::members::MemberStatus;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How long a change may take to reach every alive member.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
const NO_KEYRING_LIST: &str = "Keyring is empty (encryption not enabled)";
const NO_KEYRING_CHANGE: &str = "No keyring to modify (encryption not enabled)";

impl Gossip {
    /// Consul's multi-error text for a failure in this pool, answered with status 500.
    fn pool_error(&self, msg: &str) -> ServerError {
        ServerError::Internal(format!(
            "1 error occurred:\n\t* {} (LAN) error: {msg}\n\n",
            self.cfg.datacenter
        ))
    }

    /// The published keyring of every alive member (name -> fingerprints, primary first),
    /// newest generation of each name.
    async fn published_keyrings(&self) -> BTreeMap<String, Option<String>> {
        let alive: Vec<String> = self
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.name)
            .collect();
        let cc = self.chitchat.lock().await;
        let mut newest: HashMap<String, (u64, Option<String>)> = HashMap::new();
        for (id, st) in cc.node_states() {
            let e = newest.entry(id.node_id.to_string()).or_insert((0, None));
            if id.generation_id >= e.0 {
                *e = (id.generation_id, st.get(KEYRING_KEY).map(str::to_string));
            }
        }
        alive
            .into_iter()
            .map(|name| {
                let fps = newest.get(&name).and_then(|(_, v)| v.clone());
                (name, fps)
            })
            .collect()
    }

    /// `GET /v1/operator/keyring`: Consul's `KeyringResponse` list (this LAN pool).
    pub async fn keyring_list(&self, local_only: bool) -> Result<Value, ServerError> {
        let Some(ring) = self.cfg.keyring.clone() else {
            return Err(self.pool_error(NO_KEYRING_LIST));
        };
        let published: Vec<String> = if local_only {
            vec![ring.published()]
        } else {
            let mut all: Vec<String> = self
                .published_keyrings()
                .await
                .into_values()
                .flatten()
                .collect();
            if all.is_empty() {
                all.push(ring.published());
            }
            all
        };
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        let mut primary: BTreeMap<String, u64> = BTreeMap::new();
        for list in &published {
            for (i, fp) in list.split(',').filter(|s| !s.is_empty()).enumerate() {
                let name = ring.name_of(fp);
                if i == 0 {
                    *primary.entry(name.clone()).or_default() += 1;
                }
                *keys.entry(name).or_default() += 1;
            }
        }
        Ok(json!([{
            "WAN": false,
            "Datacenter": self.cfg.datacenter,
            "Segment": "",
            "Messages": Map::new(),
            "Keys": keys,
            "PrimaryKeys": primary,
            "NumNodes": published.len(),
        }]))
    }

    /// `POST`/`PUT`/`DELETE /v1/operator/keyring`: installs, uses or removes `key` on every
    /// member of the pool.
    pub async fn keyring_change(&self, op: Op, key: &str) -> Result<(), ServerError> {
        let Some(ring) = self.cfg.keyring.clone() else {
            return Err(self.pool_error(NO_KEYRING_CHANGE));
        };
        let key =
            GossipKey::from_base64(key).map_err(|e| ServerError::BadRequest(e.to_string()))?;
        let req = ring.request(op, &key).map_err(|e| self.pool_error(&e))?;
        let id = format!("{REQUEST_PREFIX}{}", uuid::Uuid::new_v4());
        self.applied.lock().insert(id.clone());
        ring.apply(&req).map_err(|e| self.pool_error(&e))?;
        let value =
            serde_json::to_string(&req).map_err(|e| ServerError::Internal(e.to_string()))?;
        {
            let mut cc = self.chitchat.lock().await;
            let me = cc.self_node_state();
            me.set(KEYRING_KEY, ring.published());
            me.set_with_ttl(id, value);
        }
        tracing::info!(op = ?op, key = %req.fp, "keyring change published to the pool");
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let lagging: Vec<String> = self
                .published_keyrings()
                .await
                .into_iter()
                .filter(|(_, fps)| !fps.as_deref().is_some_and(|f| Keyring::satisfied(&req, f)))
                .map(|(name, _)| name)
                .collect();
            if lagging.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let total = self.published_keyrings().await.len();
                tracing::warn!(?lagging, "keyring change did not reach every member");
                return Err(self.pool_error(&format!(
                    "{}/{} nodes reported failure",
                    lagging.len(),
                    total
                )));
            }
            tokio::time::sleep(self.cfg.interval).await;
        }
    }
}

/// Applies the keyring requests other members publish (each once), then republishes this
/// member's fingerprints.
pub(super) async fn apply_requests(
    me: Weak<Gossip>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    while let Some((id, value)) = rx.recv().await {
        let Some(g) = me.upgrade() else { return };
        let Some(ring) = g.cfg.keyring.clone() else {
            continue;
        };
        if !g.applied.lock().insert(id.clone()) {
            continue;
        }
        let req: Request = match serde_json::from_str(&value) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%id, error = %e, "ignoring a malformed keyring request");
                continue;
            }
        };
        match ring.apply(&req) {
            Ok(_) => {
                g.chitchat
                    .lock()
                    .await
                    .self_node_state()
                    .set(KEYRING_KEY, ring.published());
            }
            Err(e) => tracing::warn!(%id, op = ?req.op, error = %e, "keyring request not applied"),
        }
    }
}
