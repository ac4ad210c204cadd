//! Every call k8s-sync makes to the registry, over its Consul-compatible HTTP API v1 only
//! (`/v1/catalog/node-services`, `/v1/health/node`, `/v1/txn`, `/v1/catalog/services`
//! blocking queries, `/v1/status/leader`). Nothing else in the crate speaks HTTP to the
//! registry, so this module can be swapped for a shared client crate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::translate::{
    Instance, CHECK_CRITICAL_OUTPUT, CHECK_NAME, CHECK_PASSING_OUTPUT, CHECK_TYPE, SOURCE_KEY,
    SOURCE_VALUE,
};

/// The most operations the registry (like Consul) accepts in one transaction.
pub const MAX_TXN_OPS: usize = 64;

/// A service instance as the catalog holds it on k8s-sync's node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogService {
    /// Service ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Meta.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Port.
    #[serde(default)]
    pub port: i32,
    /// Address.
    #[serde(default)]
    pub address: String,
    /// Weights.
    #[serde(default)]
    pub weights: Option<Weights>,
}

/// Service weights.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight when passing.
    pub passing: i32,
    /// Weight when warning.
    pub warning: i32,
}

/// A health check on k8s-sync's node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogCheck {
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Status.
    pub status: String,
    /// Output.
    #[serde(default)]
    pub output: String,
    /// The service it belongs to.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
}

/// What the catalog holds on k8s-sync's node.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    /// Whether the node exists with the expected address and meta.
    pub node_ok: bool,
    /// Services carrying our tag, by service ID.
    pub services: BTreeMap<String, CatalogService>,
    /// Checks by check ID.
    pub checks: BTreeMap<String, CatalogCheck>,
}

/// One write in a `/v1/txn` batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Register the node (address 127.0.0.1, meta external-source=kubernetes).
    Node,
    /// Register or replace an instance and its readiness check.
    Set(Box<Instance>),
    /// Register or replace only an instance's readiness check.
    SetCheck(Box<Instance>),
    /// Deregister a service instance (and its checks) by ID.
    Delete(String),
}

impl Op {
    /// How many transaction operations this write takes.
    pub fn weight(&self) -> usize {
        match self {
            Op::Set(i) if i.check.is_some() => 2,
            _ => 1,
        }
    }
}

/// A client for one registry agent.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    node: String,
}

/// `%`-encodes a path segment or query value (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Registry {
    /// A client for `addr` (`host:port` or a URL) that manages node `node`.
    pub fn new(addr: &str, token: Option<String>, node: &str) -> Result<Registry> {
        Self::with_tls(addr, token, node, None, false)
    }

    /// Like [`Registry::new`], with `ca_pem` (PEM, one or more certificates) as the roots that
    /// verify an `https://` address (`CONSUL_CACERT`), and `https` as the scheme of an address
    /// given without one (`CONSUL_HTTP_SSL`).
    pub fn with_tls(
        addr: &str,
        token: Option<String>,
        node: &str,
        ca_pem: Option<&[u8]>,
        https: bool,
    ) -> Result<Registry> {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else if https {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Http {
                what: "CA file".into(),
                source: e,
            })?;
            if certs.is_empty() {
                return Err(Error::Decode {
                    what: "CA file".into(),
                    message: "no PEM certificate in it".into(),
                });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(660))
            .build()
            .map_err(|e| Error::Http {
                what: "client".into(),
                source: e,
            })?;
        Ok(Registry {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
            node: node.to_string(),
        })
    }

    /// The ACL token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The node name this client writes to.
    pub fn node(&self) -> &str {
        &self.node
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Vec<u8>, Option<u64>)> {
        let what = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| Error::Http {
            what: what.clone(),
            source: e,
        })?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Http { what, source: e })?;
        Ok((status, body.to_vec(), index))
    }

    /// One request with this client's token: the status and the body decoded as JSON
    /// (`null` when empty or not JSON, e.g. a plain-text error, which is in `Err`'s body).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let what = format!("{method} {path}");
        let (status, body, _) = self.send(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(Error::Status {
                what,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    async fn get_json(&self, path: &str) -> Result<(Value, Option<u64>)> {
        let (status, body, index) = self.send(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            return Err(Error::Status {
                what: format!("GET {path}"),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let v = serde_json::from_slice(&body).map_err(|e| Error::Decode {
            what: format!("GET {path}"),
            message: e.to_string(),
        })?;
        Ok((v, index))
    }

    /// Whether the registry answers and knows a leader.
    pub async fn ready(&self) -> bool {
        matches!(self.get_json("/v1/status/leader").await, Ok((Value::String(s), _)) if !s.is_empty())
    }

    async fn get_typed<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (status, body, _) = self.send(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            return Err(Error::Status {
                what: format!("GET {path}"),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            what: format!("GET {path}"),
            message: e.to_string(),
        })
    }

    /// The node and the services carrying `tag` on it, plus the node's checks. Decoded
    /// straight into typed records: at 50,000 instances the answers are tens of MB.
    pub async fn node_state(&self, tag: &str) -> Result<NodeState> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct NodeOut {
            #[serde(default)]
            address: String,
            #[serde(default)]
            meta: Option<BTreeMap<String, String>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct NodeServices {
            #[serde(default)]
            node: Option<NodeOut>,
            #[serde(default)]
            services: Option<Vec<CatalogService>>,
        }
        let filter = encode(&format!("{tag:?} in Tags"));
        let path = format!(
            "/v1/catalog/node-services/{}?filter={filter}",
            encode(&self.node)
        );
        let v: Option<NodeServices> = self.get_typed(&path).await?;
        let mut st = NodeState::default();
        if let Some(v) = v {
            if let Some(node) = v.node {
                st.node_ok = node.address == "127.0.0.1"
                    && node
                        .meta
                        .as_ref()
                        .and_then(|m| m.get(SOURCE_KEY))
                        .is_some_and(|s| s == SOURCE_VALUE);
            }
            st.services = v
                .services
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect();
        }
        if st.node_ok || !st.services.is_empty() {
            let hpath = format!("/v1/health/node/{}", encode(&self.node));
            let checks: Vec<CatalogCheck> = self.get_typed(&hpath).await?;
            st.checks = checks
                .into_iter()
                .map(|c| (c.check_id.clone(), c))
                .collect();
        }
        Ok(st)
    }

    /// How many services the node holds (any tag); `None` when the node does not exist.
    pub async fn node_service_count(&self) -> Result<Option<usize>> {
        let path = format!("/v1/catalog/node-services/{}", encode(&self.node));
        let (v, _) = self.get_json(&path).await?;
        if v.is_null() || v.get("Node").is_none_or(Value::is_null) {
            return Ok(None);
        }
        Ok(Some(
            v.get("Services")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        ))
    }

    /// `PUT /v1/catalog/deregister` of the whole node (its services and checks with it).
    pub async fn deregister_node(&self) -> Result<()> {
        let body = json!({"Node": self.node});
        let (status, resp, _) = self
            .send(reqwest::Method::PUT, "/v1/catalog/deregister", Some(body))
            .await?;
        if status != 200 {
            return Err(Error::Status {
                what: "PUT /v1/catalog/deregister".into(),
                status,
                body: String::from_utf8_lossy(&resp).into_owned(),
            });
        }
        Ok(())
    }

    fn txn_ops(&self, op: &Op) -> Vec<Value> {
        let node = &self.node;
        let check = |i: &Instance| {
            i.check.as_ref().map(|c| {
                json!({"Check": {"Verb": "set", "Check": {
                    "Node": node, "CheckID": c.id, "Name": CHECK_NAME, "Type": CHECK_TYPE,
                    "Status": if c.passing { "passing" } else { "critical" },
                    "Output": if c.passing { CHECK_PASSING_OUTPUT } else { CHECK_CRITICAL_OUTPUT },
                    "ServiceID": i.id,
                }}})
            })
        };
        match op {
            Op::Node => vec![json!({"Node": {"Verb": "set", "Node": {
                "Node": node, "Address": "127.0.0.1", "Meta": {SOURCE_KEY: SOURCE_VALUE}}}})],
            Op::Set(i) => {
                let mut svc = json!({
                    "ID": i.id, "Service": i.service, "Tags": i.tags, "Meta": i.meta,
                    "Port": i.port, "Address": i.address,
                });
                if let Some(w) = i.weight {
                    svc["Weights"] = json!({"Passing": w, "Warning": 1});
                }
                let mut ops =
                    vec![json!({"Service": {"Verb": "set", "Node": node, "Service": svc}})];
                ops.extend(check(i));
                ops
            }
            Op::SetCheck(i) => check(i).into_iter().collect(),
            Op::Delete(id) => vec![json!({"Service": {"Verb": "delete", "Node": node,
                                                      "Service": {"ID": id}}})],
        }
    }

    /// Applies `ops` in one transaction (at most [`MAX_TXN_OPS`] operations).
    pub async fn txn(&self, ops: &[Op]) -> Result<()> {
        let body: Vec<Value> = ops.iter().flat_map(|o| self.txn_ops(o)).collect();
        if body.is_empty() {
            return Ok(());
        }
        let (status, resp, _) = self
            .send(reqwest::Method::PUT, "/v1/txn", Some(Value::Array(body)))
            .await?;
        match status {
            200 => Ok(()),
            409 => Err(Error::TxnRejected(
                String::from_utf8_lossy(&resp).into_owned(),
            )),
            _ => Err(Error::Status {
                what: "PUT /v1/txn".into(),
                status,
                body: String::from_utf8_lossy(&resp).into_owned(),
            }),
        }
    }

    /// `GET /v1/catalog/services` as a blocking query: names → tags, and the index.
    pub async fn services_blocking(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<(BTreeMap<String, Vec<String>>, u64)> {
        let path = format!(
            "/v1/catalog/services?index={index}&wait={}s&stale",
            wait.as_secs().max(1)
        );
        let (v, idx) = self.get_json(&path).await?;
        let map: BTreeMap<String, Vec<String>> =
            serde_json::from_value(v).map_err(|e| Error::Decode {
                what: format!("GET {path}"),
                message: e.to_string(),
            })?;
        Ok((map, idx.unwrap_or(0)))
    }
}

/// Splits writes into transactions of at most [`MAX_TXN_OPS`] operations, the node first.
pub fn batches(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = Vec::new();
    let mut cur: Vec<Op> = Vec::new();
    let mut n = 0;
    for op in ops {
        let w = op.weight();
        if n + w > MAX_TXN_OPS && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
        n += w;
        cur.push(op);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
