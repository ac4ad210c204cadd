//! Helpers of the ACL tests: an agent with `default_policy = "deny"` and the management token
//! `root`, raw HTTP calls with a token, tokens made from rules, and the CLI against an agent.

use crate::TestAgent;
use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// The ACL configuration of [`deny_agent`].
pub const DENY: &str = "acl {\n enabled = true\n default_policy = \"deny\"\n tokens {\n  initial_management = \"root\"\n }\n}";

/// An answer, read whole.
pub struct R {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: String,
}

impl R {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// A header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// One request, with `token` as `X-Consul-Token`.
pub async fn call(
    a: &TestAgent,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<R> {
    let mut req = a
        .client()
        .request(method, format!("{}{}", a.base_url(), path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await?;
    Ok(R {
        status,
        headers,
        body,
    })
}

/// A dev agent with `default_policy = "deny"` whose management token is `root`.
pub async fn deny_agent() -> Result<TestAgent> {
    let a = TestAgent::dev_with_args(&["-hcl", DENY]).await?;
    // The leader creates the initial management token right after it is elected.
    a.eventually(
        Duration::from_secs(10),
        "initial management token",
        || async {
            let r = call(&a, Method::GET, "/v1/acl/token/self", Some("root"), None).await?;
            Ok((r.status == 200).then_some(()))
        },
    )
    .await?;
    Ok(a)
}

/// Creates a policy and a token linked to it by name; returns the token's secret.
pub async fn token_with_rules(a: &TestAgent, name: &str, rules: &str) -> Result<(String, String)> {
    let p = call(
        a,
        Method::PUT,
        "/v1/acl/policy",
        Some("root"),
        Some(&json!({"Name": name, "Rules": rules}).to_string()),
    )
    .await?;
    assert_eq!(p.status, 200, "{}", p.body);
    let t = call(
        a,
        Method::PUT,
        "/v1/acl/token",
        Some("root"),
        Some(&json!({"Description": name, "Policies": [{"Name": name}]}).to_string()),
    )
    .await?;
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    Ok((
        t["SecretID"].as_str().unwrap().to_string(),
        t["AccessorID"].as_str().unwrap().to_string(),
    ))
}

/// Runs `registry <args>` against the agent with `CONSUL_HTTP_ADDR` and optional env.
pub async fn cli(
    a: &TestAgent,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(crate::registry_bin()?)
        .args(args)
        .env("CONSUL_HTTP_ADDR", a.http_addr())
        .env_remove("CONSUL_HTTP_TOKEN")
        .envs(env.iter().copied())
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
