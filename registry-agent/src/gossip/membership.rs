//! [`GossipMembership`]: the agent endpoints' view of the LAN pool (`/v1/agent/members`,
//! `join`, `leave`, `force-leave`) backed by [`Gossip`].
//!
//! On a server, joining and leaving also act on the Raft cluster (`registry join` adds the
//! server to the cluster it reaches, `registry leave` removes it from the voters first), as
//! a Consul server's leader does when a server member joins or leaves.

use super::keyring::Op;
use super::Gossip;
use crate::agent::members::{alive_member, Member, Membership};
use futures::future::BoxFuture;
use registry_server::agent_api::KeyringOp;
use registry_server::leader::members::MemberStatus;
use std::sync::Arc;

/// Membership from LAN gossip.
pub struct GossipMembership {
    gossip: Arc<Gossip>,
    /// This node's own members (the WAN pool when this server has none).
    local: Arc<dyn Membership>,
    /// The WAN pool (servers).
    wan: Option<Arc<Gossip>>,
    /// The Raft cluster, on a server.
    cluster: Option<Arc<registry_server::cluster::Cluster>>,
}

impl GossipMembership {
    /// Wraps `gossip`; `local` answers for the WAN pool, `cluster` (servers) is joined and
    /// left along with the LAN pool.
    pub fn new(
        gossip: Arc<Gossip>,
        local: Arc<dyn Membership>,
        cluster: Option<Arc<registry_server::cluster::Cluster>>,
    ) -> Self {
        GossipMembership {
            gossip,
            local,
            cluster,
            wan: None,
        }
    }

    /// Adds the server's WAN pool (`members -wan`, `join -wan`, `force-leave` of `node.dc`).
    pub fn with_wan(mut self, wan: Option<Arc<Gossip>>) -> Self {
        self.wan = wan;
        self
    }
}

/// The members `pool` lists (reaped ones left out), with `me` first when the pool's view has
/// not listed this node yet (before its first refresh).
fn listed(pool: &Gossip, me: Vec<Member>) -> Vec<Member> {
    let mut out: Vec<Member> = pool
        .members()
        .into_iter()
        .filter(|m| m.status != MemberStatus::Reaped)
        .map(|m| {
            let mut out = alive_member(m.name, m.addr, m.port, m.tags);
            out.status = m.status.code();
            out
        })
        .collect();
    for me in me {
        if !out.iter().any(|m| m.name == me.name) {
            out.insert(0, me);
        }
    }
    out
}

impl Membership for GossipMembership {
    fn lan_members(&self) -> Vec<Member> {
        listed(&self.gossip, self.local.lan_members())
    }

    fn wan_members(&self) -> Vec<Member> {
        let Some(wan) = &self.wan else {
            return self.local.wan_members();
        };
        listed(wan, self.local.wan_members())
    }

    fn join<'a>(&'a self, addr: &'a str, wan: bool) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            if wan {
                return match &self.wan {
                    Some(pool) => pool
                        .join(addr)
                        .await
                        .map_err(|e| format!("1 error occurred:\n\t* {e}\n\n")),
                    None => self.local.join(addr, wan).await,
                };
            }
            let Some(cluster) = &self.cluster else {
                return self
                    .gossip
                    .join(addr)
                    .await
                    .map_err(|e| format!("1 error occurred:\n\t* {e}\n\n"));
            };
            // A server also joins the Raft cluster of the server it reached; either is enough.
            let (lan, raft) = futures::join!(self.gossip.join(addr), cluster.join(addr));
            match (lan, raft) {
                (Ok(n), _) => Ok(n),
                (Err(e), Ok(())) => {
                    tracing::warn!(%addr, error = %e, "joined the Raft cluster but not gossip");
                    Ok(1)
                }
                (Err(_), Err(e)) => Err(format!(
                    "1 error occurred:\n\t* Failed to join {addr}: {e}\n\n"
                )),
            }
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if let Some(cluster) = &self.cluster {
                cluster.leave().await.map_err(|e| e.to_string())?;
            }
            if let Some(wan) = &self.wan {
                wan.leave().await;
            }
            self.gossip.leave().await;
            Ok(())
        })
    }

    fn force_leave<'a>(&'a self, node: &'a str, prune: bool) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // WAN members are named `node.dc`: a name only the WAN pool knows is left there.
            match &self.wan {
                Some(wan) if wan.knows(node) && !self.gossip.knows(node) => {
                    wan.force_leave(node, prune).await
                }
                _ => self.gossip.force_leave(node, prune).await,
            }
        })
    }

    fn keyring(
        &self,
        op: KeyringOp,
    ) -> BoxFuture<'_, Result<serde_json::Value, registry_server::ServerError>> {
        Box::pin(async move {
            match op {
                KeyringOp::List { local_only } => self.gossip.keyring_list(local_only).await,
                KeyringOp::Install(k) => self
                    .gossip
                    .keyring_change(Op::Install, &k)
                    .await
                    .map(|_| serde_json::Value::Null),
                KeyringOp::Use(k) => self
                    .gossip
                    .keyring_change(Op::Use, &k)
                    .await
                    .map(|_| serde_json::Value::Null),
                KeyringOp::Remove(k) => self
                    .gossip
                    .keyring_change(Op::Remove, &k)
                    .await
                    .map(|_| serde_json::Value::Null),
            }
        })
    }
}
