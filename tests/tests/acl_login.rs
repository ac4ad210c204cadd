//! JWT auth methods, binding rules, `login`/`logout` and templated policies through the HTTP
//! API and the CLI of a real agent. The bearer tokens are signed by the `openssl` command with
//! the test-only keys in `tests/fixtures/jwt/`, as an outside identity provider would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use base64::Engine;
use registry_tests::acl::{call, cli, deny_agent, token_with_rules};
use registry_tests::{workspace_root, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

const ISSUER: &str = "https://idp.test";

fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/jwt").join(name)
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RS256 JWT of `claims` signed with the key file `key` by `openssl dgst`.
fn sign(key: &str, claims: &Value) -> Result<String> {
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(fixture(key))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running openssl (the tests sign their JWTs with it)")?;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("openssl dgst -sign failed");
    }
    Ok(format!("{input}.{}", b64url(&out.stdout)))
}

fn claims(sub: &str, groups: &[&str], exp_in: i64) -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "aud": ["registry"], "sub": sub, "groups": groups,
        "iat": t, "nbf": t, "exp": t + exp_in,
    })
}

fn method_config() -> Result<Value> {
    Ok(json!({
        "JWTValidationPubKeys": [std::fs::read_to_string(fixture("issuer-pub.pem"))?],
        "BoundIssuer": ISSUER,
        "BoundAudiences": ["registry"],
        "ClaimMappings": {"sub": "name"},
        "ListClaimMappings": {"groups": "groups"},
        "ExpirationLeeway": "1s",
        "NotBeforeLeeway": "1s",
        "ClockSkewLeeway": "1s",
    }))
}

async fn put_ok(a: &TestAgent, path: &str, body: &Value) -> Result<Value> {
    let r = call(a, Method::PUT, path, Some("root"), Some(&body.to_string())).await?;
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
    Ok(r.json())
}

async fn login(a: &TestAgent, method: &str, jwt: &str) -> Result<registry_tests::acl::R> {
    let body = json!({"AuthMethod": method, "BearerToken": jwt, "Meta": {"pod": "p1"}});
    call(
        a,
        Method::POST,
        "/v1/acl/login",
        None,
        Some(&body.to_string()),
    )
    .await
}

#[tokio::test]
async fn jwt_login_binds_claims_through_rules_and_logout_deletes_the_token() -> Result<()> {
    let a = deny_agent().await?;
    // Nothing may leave the machine: remote key sources are refused.
    let remote =
        json!({"Name": "remote", "Type": "jwt", "Config": {"JWKSURL": "https://127.0.0.1:1/keys"}});
    let r = call(
        &a,
        Method::PUT,
        "/v1/acl/auth-method",
        Some("root"),
        Some(&remote.to_string()),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("JWKSURL is not supported"), "{}", r.body);
    let m = json!({
        "Name": "corp", "Type": "jwt", "DisplayName": "Corp IdP", "MaxTokenTTL": "5m",
        "TokenLocality": "global", "Config": method_config()?,
    });
    let (reader, _) = token_with_rules(&a, "acl-reader", "acl = \"read\"").await?;
    let r = call(
        &a,
        Method::PUT,
        "/v1/acl/auth-method",
        Some(&reader),
        Some(&m.to_string()),
    )
    .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let made = put_ok(&a, "/v1/acl/auth-method", &m).await?;
    assert_eq!(made["MaxTokenTTL"], "5m0s");
    assert_eq!(made["Config"]["BoundIssuer"], ISSUER);
    let listed = call(&a, Method::GET, "/v1/acl/auth-methods", Some(&reader), None).await?;
    assert_eq!(listed.json()[0]["Name"], "corp");
    assert!(listed.json()[0].get("Config").is_none());

    put_ok(
        &a,
        "/v1/acl/policy",
        &json!({"Name": "jwt-kv", "Rules": "key_prefix \"jwt/\" { policy = \"write\" }"}),
    )
    .await?;
    let rule = |sel: &str, t: &str, n: &str| json!({"AuthMethod": "corp", "Selector": sel, "BindType": t, "BindName": n});
    let r1 = put_ok(
        &a,
        "/v1/acl/binding-rule",
        &rule("\"ops\" in list.groups", "service", "svc-${value.name}"),
    )
    .await?;
    put_ok(
        &a,
        "/v1/acl/binding-rule",
        &rule("value.name == \"web\"", "policy", "jwt-kv"),
    )
    .await?;
    put_ok(
        &a,
        "/v1/acl/binding-rule",
        &rule("\"admins\" in list.groups", "role", "admins"),
    )
    .await?;
    let mut tpl = rule("\"ops\" in list.groups", "templated-policy", "builtin/node");
    tpl["BindVars"] = json!({"Name": "node-${value.name}"});
    put_ok(&a, "/v1/acl/binding-rule", &tpl).await?;
    for bad in [
        rule("value.name ==", "service", "x"),
        rule("", "bogus", "x"),
        json!({"AuthMethod": "nope", "BindType": "service", "BindName": "x"}),
    ] {
        let r = call(
            &a,
            Method::PUT,
            "/v1/acl/binding-rule",
            Some("root"),
            Some(&bad.to_string()),
        )
        .await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let rules = call(
        &a,
        Method::GET,
        "/v1/acl/binding-rules?authmethod=corp",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(rules.json().as_array().unwrap().len(), 4);
    let id = r1["ID"].as_str().unwrap();
    let read = call(
        &a,
        Method::GET,
        &format!("/v1/acl/binding-rule/{id}"),
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(read.json()["BindName"], "svc-${value.name}");

    // A good token: bound as the rules say.
    let jwt = sign("issuer-key.pem", &claims("web", &["ops", "dev"], 60))?;
    let r = login(&a, "corp", &jwt).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["AuthMethod"], "corp");
    assert_eq!(t["ServiceIdentities"][0]["ServiceName"], "svc-web");
    assert_eq!(t["Policies"][0]["Name"], "jwt-kv");
    assert!(t.get("Roles").is_none(), "{t}");
    assert_eq!(t["TemplatedPolicies"][0]["TemplateName"], "builtin/node");
    assert_eq!(
        t["TemplatedPolicies"][0]["TemplateVariables"]["name"],
        "node-web"
    );
    assert_eq!(t["Local"], false);
    assert_eq!(t["ExpirationTTL"], "5m0s");
    assert!(t["ExpirationTime"].as_str().is_some());
    assert!(t["Description"].as_str().unwrap().contains("p1"), "{t}");
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let r = call(&a, Method::PUT, "/v1/kv/jwt/a", Some(&secret), Some("1")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&a, Method::PUT, "/v1/kv/other", Some(&secret), Some("1")).await?;
    assert_eq!(r.status, 403);
    let svc = json!({"Name": "svc-web"}).to_string();
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(&secret),
        Some(&svc),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);

    // Refusals: another key, issuer, audience, an expired token, no matching rule, no method.
    let mut wrong_iss = claims("web", &["ops"], 60);
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = claims("web", &["ops"], 60);
    wrong_aud["aud"] = json!("other");
    for (what, jwt) in [
        (
            "other key",
            sign("other-key.pem", &claims("web", &["ops"], 60))?,
        ),
        ("issuer", sign("issuer-key.pem", &wrong_iss)?),
        ("audience", sign("issuer-key.pem", &wrong_aud)?),
        (
            "expired",
            sign("issuer-key.pem", &claims("web", &["ops"], -30))?,
        ),
        (
            "no rule",
            sign("issuer-key.pem", &claims("db", &["dev"], 60))?,
        ),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let r = login(&a, "corp", &jwt).await?;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(
            r.body.starts_with("Permission denied"),
            "{what}: {}",
            r.body
        );
    }
    let r = login(&a, "nope", &jwt).await?;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));

    // Logout deletes only tokens made by login.
    let r = call(&a, Method::POST, "/v1/acl/logout", Some("root"), None).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "Permission denied: token wasn't created via login");
    let r = call(&a, Method::POST, "/v1/acl/logout", Some(&secret), None).await?;
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    let r = call(&a, Method::GET, "/v1/acl/token/self", Some(&secret), None).await?;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));

    // Deleting the method takes its rules and its login tokens with it.
    let r = login(&a, "corp", &jwt).await?;
    let second = r.json()["SecretID"].as_str().unwrap().to_string();
    let r = call(
        &a,
        Method::DELETE,
        "/v1/acl/auth-method/corp",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(r.status, 200);
    let r = call(&a, Method::GET, "/v1/acl/token/self", Some(&second), None).await?;
    assert_eq!(r.status, 403);
    let rules = call(&a, Method::GET, "/v1/acl/binding-rules", Some("root"), None).await?;
    assert_eq!(rules.json(), json!([]));
    Ok(())
}

#[tokio::test]
async fn templated_policies_render_and_grant_their_rules() -> Result<()> {
    let a = deny_agent().await?;
    let r = call(
        &a,
        Method::GET,
        "/v1/acl/templated-policies",
        Some("root"),
        None,
    )
    .await?;
    let all = r.json();
    for name in [
        "builtin/service",
        "builtin/node",
        "builtin/dns",
        "builtin/nomad-server",
        "builtin/nomad-client",
        "builtin/workload-identity",
        "builtin/api-gateway",
    ] {
        assert_eq!(all[name]["TemplateName"], name, "{all}");
    }
    assert_eq!(all["builtin/dns"]["Schema"], "");
    let r = call(
        &a,
        Method::GET,
        "/v1/acl/templated-policy/name/builtin/service",
        Some("root"),
        None,
    )
    .await?;
    assert!(r.json()["Template"]
        .as_str()
        .unwrap()
        .contains("{{.Name}}-sidecar-proxy"));
    let r = call(
        &a,
        Method::GET,
        "/v1/acl/templated-policy/name/builtin/nope",
        Some("root"),
        None,
    )
    .await?;
    assert_eq!(r.status, 404);
    let r = call(
        &a,
        Method::POST,
        "/v1/acl/templated-policy/preview/builtin/service",
        Some("root"),
        Some(r#"{"Name":"api"}"#),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = r.json();
    assert!(
        p["Rules"]
            .as_str()
            .unwrap()
            .contains("service \"api-sidecar-proxy\""),
        "{p}"
    );
    assert!(p["Name"].as_str().unwrap().starts_with("synthetic-policy-"));
    let r = call(
        &a,
        Method::POST,
        "/v1/acl/templated-policy/preview/builtin/service",
        Some("root"),
        Some("{}"),
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.body);

    for bad in [
        json!([{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "a\" { policy = \"write\" }"}}]),
        json!([{"TemplateName": "builtin/nope"}]),
    ] {
        let body = json!({"TemplatedPolicies": bad}).to_string();
        let r = call(&a, Method::PUT, "/v1/acl/token", Some("root"), Some(&body)).await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let body = json!({"TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}]});
    let t = put_ok(&a, "/v1/acl/token", &body).await?;
    assert_eq!(
        t["TemplatedPolicies"][0]["TemplateVariables"]["name"],
        "api"
    );
    let secret = t["SecretID"].as_str().unwrap();
    let api = json!({"Name": "api"}).to_string();
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(secret),
        Some(&api),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let other = json!({"Name": "other"}).to_string();
    let r = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(secret),
        Some(&other),
    )
    .await?;
    assert_eq!(r.status, 403, "{}", r.body);

    // On a role: builtin/dns reads the whole catalog.
    let role = put_ok(
        &a,
        "/v1/acl/role",
        &json!({"Name": "dns", "TemplatedPolicies": [{"TemplateName": "builtin/dns"}]}),
    )
    .await?;
    assert_eq!(role["TemplatedPolicies"][0]["TemplateName"], "builtin/dns");
    let t = put_ok(&a, "/v1/acl/token", &json!({"Roles": [{"Name": "dns"}]})).await?;
    let r = call(
        &a,
        Method::GET,
        "/v1/catalog/services",
        t["SecretID"].as_str(),
        None,
    )
    .await?;
    assert_eq!(r.status, 200);
    assert!(r.header("x-consul-results-filtered-by-acls").is_none());
    assert!(r.json().get("api").is_some(), "{}", r.body);
    let r = call(&a, Method::GET, "/v1/catalog/services", None, None).await?;
    assert_eq!(
        r.header("x-consul-results-filtered-by-acls").as_deref(),
        Some("true")
    );
    Ok(())
}

#[tokio::test]
async fn cli_manages_auth_methods_rules_templates_and_logs_in_and_out() -> Result<()> {
    let a = deny_agent().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.json");
    std::fs::write(&config, method_config()?.to_string())?;
    let root = [("CONSUL_HTTP_TOKEN", "root")];
    let ok = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        out
    };
    let cfg_arg = format!("@{}", config.display());
    let out = ok(cli(
        &a,
        &[
            "acl",
            "auth-method",
            "create",
            "-type",
            "jwt",
            "-name",
            "cli-idp",
            "-max-token-ttl",
            "10m",
            "-config",
            &cfg_arg,
        ],
        &root,
    )
    .await?);
    assert!(
        out.contains("Name:          cli-idp") && out.contains("MaxTokenTTL:   10m0s"),
        "{out}"
    );
    let out = ok(cli(
        &a,
        &[
            "acl",
            "auth-method",
            "update",
            "-name",
            "cli-idp",
            "-description",
            "updated",
        ],
        &root,
    )
    .await?);
    assert!(
        out.contains("Description:   updated") && out.contains("BoundIssuer"),
        "{out}"
    );
    let out = ok(cli(&a, &["acl", "auth-method", "list"], &root).await?);
    assert!(out.contains("cli-idp:"), "{out}");
    let out = ok(cli(
        &a,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "cli-idp",
            "-bind-type",
            "service",
            "-bind-name",
            "svc-${value.name}",
            "-selector",
            "\"ops\" in list.groups",
        ],
        &root,
    )
    .await?);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_string())
        .unwrap();
    let out = ok(cli(
        &a,
        &["acl", "binding-rule", "list", "-method", "cli-idp"],
        &root,
    )
    .await?);
    assert!(out.contains(&id), "{out}");
    let out = ok(cli(
        &a,
        &["acl", "binding-rule", "read", "-id", &id, "-format", "json"],
        &root,
    )
    .await?);
    assert_eq!(serde_json::from_str::<Value>(&out)?["BindType"], "service");
    let out = ok(cli(&a, &["acl", "templated-policy", "list"], &root).await?);
    assert!(
        out.contains("builtin/service:") && out.contains("builtin/api-gateway:"),
        "{out}"
    );
    let out = ok(cli(
        &a,
        &["acl", "templated-policy", "read", "-name", "builtin/dns"],
        &root,
    )
    .await?);
    assert!(out.contains("query_prefix"), "{out}");
    let out = ok(cli(
        &a,
        &[
            "acl",
            "templated-policy",
            "preview",
            "-name",
            "builtin/service",
            "-var",
            "name:api",
        ],
        &root,
    )
    .await?);
    assert!(out.contains("api-sidecar-proxy"), "{out}");
    let out = ok(cli(
        &a,
        &[
            "acl",
            "token",
            "create",
            "-templated-policy",
            "builtin/node",
            "-var",
            "name:n1",
        ],
        &root,
    )
    .await?);
    assert!(
        out.contains("Templated Policies:\n   builtin/node\n      Name: n1"),
        "{out}"
    );

    let jwt_file = dir.path().join("jwt");
    std::fs::write(
        &jwt_file,
        sign("issuer-key.pem", &claims("web", &["ops"], 60))?,
    )?;
    let sink = dir.path().join("sink");
    let (j, s) = (jwt_file.display().to_string(), sink.display().to_string());
    ok(cli(
        &a,
        &[
            "login",
            "-method",
            "cli-idp",
            "-bearer-token-file",
            &j,
            "-token-sink-file",
            &s,
        ],
        &[],
    )
    .await?);
    let secret = std::fs::read_to_string(&sink)?;
    let out = ok(cli(
        &a,
        &["acl", "token", "read", "-self"],
        &[("CONSUL_HTTP_TOKEN", &secret)],
    )
    .await?);
    assert!(
        out.contains("Auth Method:      cli-idp") && out.contains("svc-web"),
        "{out}"
    );
    let (code, _, err) = cli(&a, &["logout"], &root).await?;
    assert_eq!(code, 1);
    assert!(err.contains("wasn't created via login"), "{err}");
    ok(cli(&a, &["logout", "-token-file", &s], &[]).await?);
    let (code, _, err) = cli(
        &a,
        &["acl", "token", "read", "-self"],
        &[("CONSUL_HTTP_TOKEN", &secret)],
    )
    .await?;
    assert_eq!(code, 1);
    assert!(err.contains("ACL not found"), "{err}");
    let out = ok(cli(&a, &["acl", "binding-rule", "delete", "-id", &id], &root).await?);
    assert!(out.contains("deleted successfully"), "{out}");
    let out = ok(cli(
        &a,
        &["acl", "auth-method", "delete", "-name", "cli-idp"],
        &root,
    )
    .await?);
    assert!(out.contains("deleted successfully"), "{out}");
    Ok(())
}
