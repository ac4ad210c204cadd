//! ACLs through the HTTP API of a real agent: bootstrap, tokens, policies and roles, the
//! rules enforced on every route (403 texts, silently filtered lists and their headers),
//! blocking queries that re-check their token, and the disabled and default-allow modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::acl::{call, cli, deny_agent, token_with_rules, DENY, R};
use registry_tests::{workspace_root, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn bootstrap_once_then_answers_with_the_reset_index() -> Result<()> {
    let a = TestAgent::dev_with_args(&[
        "-hcl",
        "acl {\n enabled = true\n default_policy = \"deny\"\n}",
    ])
    .await?;
    let first = a
        .eventually(Duration::from_secs(10), "bootstrap", || async {
            let r = call(&a, Method::PUT, "/v1/acl/bootstrap", None, None).await?;
            Ok((r.status == 200).then_some(r))
        })
        .await?;
    let t = first.json();
    assert_eq!(t["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(t["Policies"][0]["Name"], "global-management");
    assert_eq!(
        t["Policies"][0]["ID"],
        "00000000-0000-0000-0000-000000000001"
    );
    let secret = t["SecretID"].as_str().unwrap();
    let idx = t["CreateIndex"].as_u64().unwrap();
    let again = call(&a, Method::PUT, "/v1/acl/bootstrap", None, None).await?;
    assert_eq!(again.status, 403);
    assert_eq!(
        again.body,
        format!("Permission denied: ACL bootstrap no longer allowed (reset index: {idx})")
    );
    let me = call(&a, Method::GET, "/v1/acl/token/self", Some(secret), None).await?;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["AccessorID"], t["AccessorID"]);
    let unknown = call(&a, Method::GET, "/v1/kv/x", Some("no-such-secret"), None).await?;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (403, "ACL not found")
    );
    Ok(())
}

#[tokio::test]
async fn tokens_policies_and_roles_grant_what_their_rules_say() -> Result<()> {
    let a = deny_agent().await?;
    let (app, app_accessor) = token_with_rules(
        &a,
        "app-rw",
        "key_prefix \"app/\" { policy = \"write\" }\nkey \"app/secret\" { policy = \"deny\" }",
    )
    .await?;
    assert_eq!(
        call(&a, Method::PUT, "/v1/kv/app/x", Some(&app), Some("1"))
            .await?
            .status,
        200
    );
    let r = call(&a, Method::PUT, "/v1/kv/other", Some(&app), Some("1")).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, format!("Permission denied: token with AccessorID '{app_accessor}' lacks permission 'key:write' on \"other\""));
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("deny")
    );
    assert_eq!(
        call(&a, Method::PUT, "/v1/kv/app/secret", Some(&app), Some("1"))
            .await?
            .status,
        403
    );
    // The token travels in any of Consul's three places.
    let bearer = a
        .client()
        .put(format!("{}/v1/kv/app/y", a.base_url()))
        .header("Authorization", format!("Bearer {app}"))
        .body("2")
        .send()
        .await?;
    assert_eq!(bearer.status().as_u16(), 200);
    let q = call(
        &a,
        Method::GET,
        &format!("/v1/kv/app/y?token={app}"),
        None,
        None,
    )
    .await?;
    assert_eq!(q.status, 200);

    // Lists are filtered silently, and say so.
    call(
        &a,
        Method::PUT,
        "/v1/kv/app/secret",
        Some("root"),
        Some("s"),
    )
    .await?;
    let all = call(&a, Method::GET, "/v1/kv/app/?recurse", Some(&app), None).await?;
    assert_eq!(all.status, 200);
    let keys: Vec<String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, vec!["app/x", "app/y"]);
    assert_eq!(
        all.header("x-consul-results-filtered-by-acls").as_deref(),
        Some("true")
    );
    let root_all = call(&a, Method::GET, "/v1/kv/app/?recurse", Some("root"), None).await?;
    assert_eq!(root_all.json().as_array().unwrap().len(), 3);
    assert!(root_all
        .header("x-consul-results-filtered-by-acls")
        .is_none());
    let ks = call(&a, Method::GET, "/v1/kv/?keys", Some(&app), None).await?;
    assert_eq!(ks.json(), json!(["app/x", "app/y"]));
    // A recursive delete needs write on everything below the prefix.
    assert_eq!(
        call(&a, Method::DELETE, "/v1/kv/app/?recurse", Some(&app), None)
            .await?
            .status,
        403
    );

    // The token can read itself but not manage ACLs.
    let me = call(&a, Method::GET, "/v1/acl/token/self", Some(&app), None).await?;
    assert_eq!(me.json()["Policies"][0]["Name"], "app-rw");
    let r = call(&a, Method::GET, "/v1/acl/tokens", Some(&app), None).await?;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("lacks permission 'acl:read'"), "{}", r.body);

    // Policies: read by ID and name, update, list without rules.
    let p = call(
        &a,
        Method::GET,
        "/v1/acl/policy/name/app-rw",
        Some("root"),
        None,
    )
    .await?
    .json();
    let pid = p["ID"].as_str().unwrap().to_string();
    assert!(p["Rules"].as_str().unwrap().contains("app/"));
    let upd = call(
        &a,
        Method::PUT,
        &format!("/v1/acl/policy/{pid}"),
        Some("root"),
        Some(
            &json!({"Name": "app-rw", "Rules": "key_prefix \"\" { policy = \"read\" }"})
                .to_string(),
        ),
    )
    .await?;
    assert_eq!(upd.status, 200, "{}", upd.body);
    assert_eq!(
        call(&a, Method::PUT, "/v1/kv/app/x", Some(&app), Some("1"))
            .await?
            .status,
        403
    );
    assert_eq!(
        call(&a, Method::GET, "/v1/kv/other?recurse", Some(&app), None)
            .await?
            .status,
        404
    );
    let list = call(&a, Method::GET, "/v1/acl/policies", Some("root"), None)
        .await?
        .json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.get("Rules").is_none()));
    let bad = call(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        Some("root"),
        Some(&json!({"Name": "bad", "Rules": "key \"x\" { policy = \"admin\" }"}).to_string()),
    )
    .await?;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("Failed to parse ACL rules"),
        "{}",
        bad.body
    );

    // Roles carry policies to their tokens; service identities grant their service.
    let svc_policy = call(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        Some("root"),
        Some(&json!({"Name": "ops", "Rules": "operator = \"read\""}).to_string()),
    )
    .await?
    .json();
    let role = call(
        &a,
        Method::PUT,
        "/v1/acl/role",
        Some("root"),
        Some(&json!({"Name": "ops-role", "Policies": [{"ID": svc_policy["ID"]}]}).to_string()),
    )
    .await?;
    assert_eq!(role.status, 200, "{}", role.body);
    let role = role.json();
    assert_eq!(role["Policies"][0]["Name"], "ops");
    let byname = call(
        &a,
        Method::GET,
        "/v1/acl/role/name/ops-role",
        Some("root"),
        None,
    )
    .await?
    .json();
    assert_eq!(byname["ID"], role["ID"]);
    let rt = call(
        &a,
        Method::PUT,
        "/v1/acl/token",
        Some("root"),
        Some(
            &json!({
                "Roles": [{"Name": "ops-role"}],
                "ServiceIdentities": [{"ServiceName": "web"}]
            })
            .to_string(),
        ),
    )
    .await?
    .json();
    let rts = rt["SecretID"].as_str().unwrap();
    assert_eq!(
        call(
            &a,
            Method::GET,
            "/v1/operator/raft/configuration",
            Some(rts),
            None
        )
        .await?
        .status,
        200
    );
    assert_eq!(
        call(
            &a,
            Method::GET,
            "/v1/operator/raft/configuration",
            Some(&app),
            None
        )
        .await?
        .status,
        403
    );
    let reg = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(rts),
        Some(&json!({"Name": "web", "Port": 80}).to_string()),
    )
    .await?;
    assert_eq!(reg.status, 200, "{}", reg.body);
    let reg = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(rts),
        Some(&json!({"Name": "db", "Port": 80}).to_string()),
    )
    .await?;
    assert_eq!(reg.status, 403);
    let roles = call(&a, Method::GET, "/v1/acl/roles", Some("root"), None)
        .await?
        .json();
    assert_eq!(roles.as_array().unwrap().len(), 1);

    // Clone, filter the list by policy, delete; a deleted token is unknown.
    let cl = call(
        &a,
        Method::PUT,
        &format!("/v1/acl/token/{app_accessor}/clone"),
        Some("root"),
        Some(r#"{"Description":"copy"}"#),
    )
    .await?
    .json();
    assert_eq!(cl["Description"], "copy");
    assert_eq!(cl["Policies"][0]["ID"], pid.as_str());
    assert_ne!(cl["SecretID"].as_str().unwrap(), app);
    let by_policy = call(
        &a,
        Method::GET,
        &format!("/v1/acl/tokens?policy={pid}"),
        Some("root"),
        None,
    )
    .await?
    .json();
    assert_eq!(by_policy.as_array().unwrap().len(), 2);
    let del = call(
        &a,
        Method::DELETE,
        &format!("/v1/acl/token/{app_accessor}"),
        Some("root"),
        None,
    )
    .await?;
    assert_eq!((del.status, del.body.trim()), (200, "true"));
    let gone = call(&a, Method::GET, "/v1/kv/app/x", Some(&app), None).await?;
    assert_eq!((gone.status, gone.body.as_str()), (403, "ACL not found"));
    let r = call(
        &a,
        Method::GET,
        &format!("/v1/acl/token/{app_accessor}"),
        Some("root"),
        None,
    )
    .await?;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    // The anonymous token and the built-in policy cannot be deleted.
    let r = call(
        &a,
        Method::DELETE,
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(r.status, 400);
    let r = call(
        &a,
        Method::DELETE,
        "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn a_blocking_query_rechecks_its_token_when_it_wakes() -> Result<()> {
    let a = deny_agent().await?;
    let (t, accessor) =
        token_with_rules(&a, "kv-read", "key_prefix \"\" { policy = \"read\" }").await?;
    call(&a, Method::PUT, "/v1/kv/w", Some("root"), Some("1")).await?;
    let r = call(&a, Method::GET, "/v1/kv/w", Some(&t), None).await?;
    assert_eq!(r.status, 200);
    let idx: u64 = r.header("x-consul-index").unwrap().parse()?;
    let base = a.base_url();
    let client = a.client().clone();
    let t2 = t.clone();
    let waiter = tokio::spawn(async move {
        client
            .get(format!("{base}/v1/kv/w?index={idx}&wait=20s"))
            .header("X-Consul-Token", t2)
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(
        &a,
        Method::DELETE,
        &format!("/v1/acl/token/{accessor}"),
        Some("root"),
        None,
    )
    .await?;
    call(&a, Method::PUT, "/v1/kv/w", Some("root"), Some("2")).await?;
    let resp = waiter.await??;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.text().await?, "ACL not found");
    Ok(())
}

#[tokio::test]
async fn default_allow_and_disabled_modes() -> Result<()> {
    let a = TestAgent::dev_with_args(&[
        "-hcl",
        "acl {\n enabled = true\n default_policy = \"allow\"\n}",
    ])
    .await?;
    let r = call(&a, Method::PUT, "/v1/kv/x", None, Some("1")).await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("allow")
    );
    // The default policy never grants ACL management.
    let r = call(&a, Method::GET, "/v1/acl/policies", None, None).await?;
    assert_eq!(r.status, 403);
    let plain = TestAgent::dev().await?;
    let r = call(&plain, Method::PUT, "/v1/acl/bootstrap", None, None).await?;
    assert_eq!((r.status, r.body.as_str()), (401, "ACL support disabled"));
    let r = call(&plain, Method::PUT, "/v1/kv/x", Some("whatever"), Some("1")).await?;
    assert_eq!(r.status, 200);
    assert!(r.header("x-consul-default-acl-policy").is_none());
    Ok(())
}

/// Consul's deprecated top-level keys still configure ACLs: `acl_datacenter` turns them on,
/// `acl_default_policy` and `acl_master_token` act as their `acl { }` counterparts.
#[tokio::test]
async fn deprecated_top_level_acl_keys_still_apply() -> Result<()> {
    let a = TestAgent::dev_with_args(&[
        "-hcl",
        "acl_datacenter = \"dc1\"\nacl_default_policy = \"deny\"\nacl_master_token = \"legacy-root\"",
    ])
    .await?;
    let r = call(&a, Method::PUT, "/v1/kv/x", None, Some("1")).await?;
    assert!(denied(&r), "{} {}", r.status, r.body);
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("deny")
    );
    // The initial management token is written through Raft once a leader is elected.
    let mut last = None;
    for _ in 0..100 {
        let r = call(&a, Method::PUT, "/v1/kv/x", Some("legacy-root"), Some("1")).await?;
        if r.status == 200 {
            last = None;
            break;
        }
        last = Some((r.status, r.body));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, None, "the legacy management token never worked");
    Ok(())
}

/// A refusal for lack of permission (an unknown policy answers "ACL not found", also 403).
fn denied(r: &R) -> bool {
    r.status == 403 && r.body.starts_with("Permission denied")
}

/// Every `.route(path, methods)` of the route table.
fn table_routes() -> Vec<(String, Vec<Method>)> {
    let src = std::fs::read_to_string(workspace_root().join("registry-server/src/http/routes.rs"))
        .unwrap();
    let mut out = Vec::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + 7..];
        let q1 = rest.find('"').unwrap();
        let after = &rest[q1 + 1..];
        let q2 = after.find('"').unwrap();
        let path = after[..q2].to_string();
        let end = [".route(", ".route_layer(", ".fallback("]
            .iter()
            .filter_map(|w| after.find(w))
            .min()
            .unwrap_or(after.len());
        let body = &after[q2..end];
        let mut methods = Vec::new();
        for (w, m) in [
            ("get(", Method::GET),
            ("put(", Method::PUT),
            ("post(", Method::POST),
            ("delete(", Method::DELETE),
        ] {
            if body.contains(w) {
                methods.push(m);
            }
        }
        out.push((path, methods));
    }
    out
}

fn concrete(path: &str, node: &str) -> String {
    let mut p = path.to_string();
    for (param, value) in [
        ("{*key}", "app/k"),
        ("{*rest}", "x"),
        ("{*name}", "builtin/service"),
        ("{id}", "x"),
        ("{name}", "web"),
        ("{node}", node),
        ("{addr}", "127.0.0.1:1"),
        ("{state}", "any"),
        ("{service}", "web"),
        ("{kind}", "default"),
        ("{gateway}", "web"),
    ] {
        p = p.replace(param, value);
    }
    // The log stream answers a bad level with a 400 at once instead of streaming; the ACL
    // decision comes first either way.
    if p == "/v1/agent/monitor" {
        p.push_str("?loglevel=nope");
    }
    assert!(!p.contains('{'), "unhandled parameter in {path}");
    p
}

/// Routes any token may call (Consul checks nothing for them, or refuses them for bad input).
const OPEN: &[&str] = &[
    "/v1/status/leader",
    "/v1/status/peers",
    "/v1/catalog/datacenters",
    // Server WAN coordinates and the ACL replication status: no token, as in Consul.
    "/v1/coordinate/datacenters",
    "/v1/acl/replication",
    "/v1/acl/bootstrap",
    // The bearer JWT is the credential; the body here has none and is refused (400).
    "/v1/acl/login",
    "/v1/session/destroy/",
    "/v1/session/info/",
    "/v1/session/node/",
    "/v1/session/renew/",
    "/v1/session/info/{id}",
    "/v1/session/destroy/{id}",
    "/v1/session/renew/{id}",
    // Lists: answered, filtered.
    "/v1/agent/checks",
    "/v1/agent/members",
    "/v1/agent/services",
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/event/list",
    "/v1/health/state/{state}",
    "/v1/session/list",
    "/v1/agent/version",
    "/v1/internal/ui/services",
    "/v1/internal/ui/nodes",
    // Prepared queries: lists filtered by `query` rules; an unnamed or unknown query needs
    // nothing (its ID is its secret); execute and explain are open, as in Consul.
    "/v1/query",
    "/v1/query/{id}",
    "/v1/query/{id}/execute",
    "/v1/query/{id}/explain",
    "/v1/coordinate/nodes",
];

/// Routes whose effect would end the test (or the agent) when they succeed.
const DESTRUCTIVE: &[&str] = &[
    "/v1/agent/leave",
    "/v1/snapshot",
    "/v1/operator/raft/peer",
    "/v1/operator/raft/transfer-leader",
    "/v1/agent/token/{kind}",
];

#[tokio::test]
async fn every_route_gets_an_acl_decision() -> Result<()> {
    let a = deny_agent().await?;
    let node = a.node.clone();
    let (read, _) = token_with_rules(&a, "reader", "key_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\nagent_prefix \"\" { policy = \"read\" }\nsession_prefix \"\" { policy = \"read\" }\nevent_prefix \"\" { policy = \"read\" }\nquery_prefix \"\" { policy = \"read\" }\noperator = \"read\"\nacl = \"read\"\nkeyring = \"read\"").await?;
    let (write, _) = token_with_rules(&a, "writer", "key_prefix \"\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"write\" }\nnode_prefix \"\" { policy = \"write\" }\nagent_prefix \"\" { policy = \"write\" }\nsession_prefix \"\" { policy = \"write\" }\nevent_prefix \"\" { policy = \"write\" }\nquery_prefix \"\" { policy = \"write\" }\noperator = \"write\"\nacl = \"write\"\nkeyring = \"write\"").await?;
    call(&a, Method::PUT, "/v1/kv/app/k", Some("root"), Some("v")).await?;
    let routes = table_routes();
    assert!(routes.len() > 60, "only {} routes found", routes.len());
    let mut checked = 0;
    for (template, methods) in &routes {
        let path = concrete(template, &node);
        let open = OPEN.contains(&template.as_str());
        if template == "/v1/agent/service/{id}" {
            // An unknown ID answers 404 before any permission question; make it known.
            let r = call(
                &a,
                Method::PUT,
                "/v1/agent/service/register",
                Some("root"),
                Some(r#"{"ID":"x","Name":"web"}"#),
            )
            .await?;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        for m in methods {
            // A preview renders a template: `acl:read`, as Consul asks.
            let is_read = *m == Method::GET || template.contains("/preview/");
            let named_body = match template.as_str() {
                "/v1/txn" => r#"[{"KV":{"Verb":"set","Key":"app/k","Value":"dg=="}}]"#.to_string(),
                "/v1/catalog/register" => {
                    json!({"Node": "ghost", "Address": "127.0.0.9", "Service": {"Service": "web"}})
                        .to_string()
                }
                "/v1/catalog/deregister" => r#"{"Node":"ghost"}"#.to_string(),
                "/v1/agent/service/register" => r#"{"Name":"web2","ID":"web2"}"#.to_string(),
                "/v1/agent/check/register" => r#"{"Name":"c","TTL":"10s"}"#.to_string(),
                _ => "{}".to_string(),
            };
            let body = (!is_read).then_some(named_body.as_str());
            if template == "/v1/acl/logout" {
                // Logout deletes only a token made by login: none of these is.
                for tok in [None, Some(read.as_str()), Some(write.as_str())] {
                    let r = call(&a, m.clone(), &path, tok, body).await?;
                    assert_eq!(r.status, 403, "{}", r.body);
                    assert!(
                        r.body == "ACL not found"
                            || r.body == "Permission denied: token wasn't created via login",
                        "{}",
                        r.body
                    );
                }
                checked += 1;
                continue;
            }
            if template == "/v1/acl/bootstrap" {
                // Open, and refused for everyone once bootstrapped (by `initial_management`).
                for tok in [None, Some(read.as_str()), Some(write.as_str())] {
                    let r = call(&a, m.clone(), &path, tok, body).await?;
                    assert!(
                        r.body.contains("ACL bootstrap no longer allowed"),
                        "{}",
                        r.body
                    );
                }
                checked += 1;
                continue;
            }
            // No token: everything but the open routes is refused.
            let r = call(&a, m.clone(), &path, None, body).await?;
            if open {
                assert!(!denied(&r), "{m} {path} without a token: {}", r.body);
            } else {
                assert_eq!(
                    r.status, 403,
                    "{m} {path} without a token: {} {}",
                    r.status, r.body
                );
                assert!(r.body.starts_with("Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission"),
                    "{m} {path}: {}", r.body);
            }
            assert_eq!(
                r.header("x-consul-default-acl-policy").as_deref(),
                Some("deny"),
                "{m} {path}"
            );
            // A read token: reads pass, writes are refused (snapshots need management).
            let r = call(&a, m.clone(), &path, Some(&read), body).await?;
            let read_ok = open || (is_read && template != "/v1/snapshot");
            if read_ok {
                assert!(!denied(&r), "{m} {path} with a read token: {}", r.body);
            } else {
                assert_eq!(
                    r.status, 403,
                    "{m} {path} with a read token: {} {}",
                    r.status, r.body
                );
            }
            // A write token passes everywhere (the routes that would stop the agent are not
            // sent with it).
            if !DESTRUCTIVE.contains(&template.as_str()) || is_read {
                let r = call(&a, m.clone(), &path, Some(&write), body).await?;
                assert!(!denied(&r), "{m} {path} with a write token: {}", r.body);
            }
            checked += 1;
        }
    }
    assert!(checked > 70, "{checked}");
    // Lists answer without a token, filtered, and say so.
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/nodes",
        "/v1/agent/members",
    ] {
        let r = call(&a, Method::GET, path, None, None).await?;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("x-consul-results-filtered-by-acls").as_deref(),
            Some("true"),
            "{path}: {}",
            r.body
        );
        let v = r.json();
        assert!(
            v.as_array()
                .map(Vec::is_empty)
                .or(v.as_object().map(|o| o.is_empty()))
                .unwrap(),
            "{path}: {v}"
        );
        let r = call(&a, Method::GET, path, Some(&read), None).await?;
        assert!(
            r.header("x-consul-results-filtered-by-acls").is_none(),
            "{path}"
        );
    }
    Ok(())
}

fn dig_short(a: &TestAgent, name: &str) -> Option<String> {
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &a.dns_port.to_string(),
            name,
            "A",
            "+short",
            "+tries=1",
            "+time=2",
        ])
        .output();
    match out {
        Ok(o) => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Err(_) if std::env::var("REGISTRY_TESTS_STRICT").as_deref() == Ok("1") => {
            panic!("dig is required (dnsutils)")
        }
        Err(_) => None,
    }
}

#[tokio::test]
async fn dns_answers_what_the_agent_default_token_may_read() -> Result<()> {
    let a = deny_agent().await?;
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some("root"),
        Some(r#"{"Name":"web","Port":80,"Address":"127.0.0.7"}"#),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    // The anonymous token reads nothing under default deny: no answer.
    let Some(first) = dig_short(&a, "web.service.consul") else {
        eprintln!("skipping: dig is not installed");
        return Ok(());
    };
    assert_eq!(first, "", "anonymous sees no services");
    let (reader, _) = token_with_rules(
        &a,
        "dns",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await?;
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/token/default",
        Some("root"),
        Some(&json!({"Token": reader}).to_string()),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(dig_short(&a, "web.service.consul").unwrap(), "127.0.0.7");
    // The default token also serves HTTP requests that carry none.
    let r = call(&a, Method::GET, "/v1/catalog/service/web", None, None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["ServiceAddress"], "127.0.0.7");
    // Setting an agent token needs acl:write.
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/token/default",
        Some(&reader),
        Some("{}"),
    )
    .await?;
    assert_eq!(r.status, 403);
    Ok(())
}

#[tokio::test]
async fn cli_bootstraps_and_manages_policies_tokens_and_roles() -> Result<()> {
    let a = TestAgent::dev_with_args(&[
        "-hcl",
        "acl {\n enabled = true\n default_policy = \"deny\"\n}",
    ])
    .await?;
    let boot = a
        .eventually(Duration::from_secs(10), "acl bootstrap", || async {
            let r = cli(&a, &["acl", "bootstrap", "-format=json"], &[]).await?;
            Ok((r.0 == 0).then_some(r.1))
        })
        .await?;
    let boot: Value = serde_json::from_str(&boot)?;
    let root = boot["SecretID"].as_str().unwrap().to_string();
    let (code, _, err) = cli(&a, &["acl", "bootstrap"], &[]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("ACL bootstrap no longer allowed"), "{err}");

    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.hcl");
    std::fs::write(&rules, "key_prefix \"cli/\" { policy = \"write\" }\n")?;
    let (code, out, err) = cli(
        &a,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "cli-kv",
            &format!("-rules=@{}", rules.display()),
        ],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Name:         cli-kv"), "{out}");
    assert!(out.contains("key_prefix \"cli/\""), "{out}");
    let (code, out, err) = cli(
        &a,
        &[
            "acl",
            "role",
            "create",
            "-name",
            "cli-role",
            "-policy-name",
            "cli-kv",
        ],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cli-kv"), "{out}");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &root)?;
    let (code, out, err) = cli(
        &a,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "from cli",
            "-role-name",
            "cli-role",
            "-format=json",
            &format!("-token-file={}", token_file.display()),
        ],
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out)?;
    assert_eq!(t["Roles"][0]["Name"], "cli-role");
    let secret = t["SecretID"].as_str().unwrap();
    // The new token writes under cli/ only, through the kv command's -token flag.
    let (code, _, err) = cli(
        &a,
        &["kv", "put", &format!("-token={secret}"), "cli/a", "1"],
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &a,
        &["kv", "put", &format!("-token={secret}"), "other", "1"],
        &[],
    )
    .await?;
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    let (code, out, _) = cli(
        &a,
        &["acl", "token", "read", "-self"],
        &[("CONSUL_HTTP_TOKEN", secret)],
    )
    .await?;
    assert_eq!(code, 0);
    assert!(out.contains("Description:      from cli"), "{out}");
    let (code, out, _) = cli(
        &a,
        &["acl", "policy", "list"],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 0);
    assert!(
        out.contains("global-management:") && out.contains("cli-kv:"),
        "{out}"
    );
    let accessor = t["AccessorID"].as_str().unwrap();
    let (code, out, err) = cli(
        &a,
        &["acl", "token", "delete", "-id", accessor],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted successfully"), "{out}");
    let (code, _, _) = cli(
        &a,
        &["acl", "policy", "delete", "-name", "cli-kv"],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 0);
    let (code, _, err) = cli(
        &a,
        &["acl", "policy", "read", "-name", "cli-kv"],
        &[("CONSUL_HTTP_TOKEN", &root)],
    )
    .await?;
    assert_eq!(code, 1);
    assert!(err.contains("No such policy with name \"cli-kv\""), "{err}");
    Ok(())
}

#[tokio::test]
async fn acl_state_survives_a_restart_and_travels_in_snapshots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = TestAgent::with_data_dir_env(dir.path(), &["-hcl", DENY], &[]).await?;
    a.eventually(
        Duration::from_secs(10),
        "initial management token",
        || async {
            let r = call(&a, Method::GET, "/v1/acl/token/self", Some("root"), None).await?;
            Ok((r.status == 200).then_some(()))
        },
    )
    .await?;
    let (secret, accessor) =
        token_with_rules(&a, "kept", "key_prefix \"\" { policy = \"read\" }").await?;
    // A snapshot taken now carries the token and the policy.
    let snap = a
        .client()
        .get(format!("{}/v1/snapshot", a.base_url()))
        .header("X-Consul-Token", "root")
        .send()
        .await?;
    assert_eq!(snap.status().as_u16(), 200);
    let snap = snap.bytes().await?;
    let r = call(&a, Method::GET, "/v1/snapshot", Some(&secret), None).await?;
    assert_eq!(r.status, 403, "snapshots need a management token");
    a.restart().await?;
    a.eventually(Duration::from_secs(10), "token after restart", || async {
        let r = call(&a, Method::GET, "/v1/acl/token/self", Some(&secret), None).await?;
        Ok((r.status == 200).then_some(()))
    })
    .await?;
    // Delete the token, restore the snapshot: it is back.
    call(
        &a,
        Method::DELETE,
        &format!("/v1/acl/token/{accessor}"),
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(
        call(&a, Method::GET, "/v1/kv/x", Some(&secret), None)
            .await?
            .status,
        403
    );
    let r = a
        .client()
        .put(format!("{}/v1/snapshot", a.base_url()))
        .header("X-Consul-Token", "root")
        .body(snap.to_vec())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await?);
    let r = call(
        &a,
        Method::GET,
        "/v1/acl/policy/name/kept",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&a, Method::GET, "/v1/kv/x", Some(&secret), None).await?;
    assert_eq!(r.status, 404, "{}", r.body);
    Ok(())
}
