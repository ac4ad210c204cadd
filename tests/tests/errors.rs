//! Cross-cutting HTTP behaviour: consistency flags, unknown datacenters, unknown paths, wrong
//! methods, malformed bodies, bad parameters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{Method, TestAgent};
use serde_json::json;

#[tokio::test]
async fn stale_and_consistent_together_is_400() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("k", "v").await?;
    for path in [
        "/v1/kv/k?stale&consistent",
        "/v1/catalog/services?stale&consistent",
        "/v1/catalog/nodes?consistent&stale",
        "/v1/health/service/consul?stale&consistent",
    ] {
        let r = a.get(path).await?;
        assert_eq!(r.status, 400, "{path}: {:?}", r.text());
    }
    // Each alone is fine, and the effective consistency is reported.
    let r = a.get("/v1/kv/k?stale").await?;
    r.assert_status(200).assert_read_headers();
    let r = a.get("/v1/kv/k?consistent").await?;
    r.assert_status(200).assert_read_headers();
    let r = a.get("/v1/catalog/services?stale").await?;
    r.assert_status(200).assert_read_headers();
    Ok(())
}

#[tokio::test]
async fn unknown_datacenter_is_500_no_path() -> Result<()> {
    let a = TestAgent::dev().await?;
    for path in [
        "/v1/kv/k?dc=other",
        "/v1/catalog/services?dc=other",
        "/v1/catalog/nodes?dc=other",
        "/v1/health/service/consul?dc=other",
    ] {
        let r = a.get(path).await?;
        assert_eq!(r.status, 500, "{path}: {:?}", r.text());
        assert!(
            r.text().contains("No path to datacenter"),
            "{path}: body {:?}",
            r.text()
        );
    }
    let r = a.put("/v1/kv/k?dc=other", "v").await?;
    assert_eq!(r.status, 500, "{:?}", r.text());
    assert!(r.text().contains("No path to datacenter"));
    // The local datacenter by name works.
    a.get("/v1/catalog/services?dc=dc1")
        .await?
        .assert_status(200);
    Ok(())
}

#[tokio::test]
async fn unknown_path_is_404() -> Result<()> {
    let a = TestAgent::dev().await?;
    for path in ["/v1/nope", "/v1/catalog/nope", "/v1/agent/nope/x"] {
        let r = a.get(path).await?;
        assert_eq!(r.status, 404, "{path}: {:?}", r.text());
        assert!(
            r.text().contains("Invalid URL path"),
            "{path}: body {:?}",
            r.text()
        );
    }
    Ok(())
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() -> Result<()> {
    let a = TestAgent::dev().await?;
    let cases: [(Method, &str, &str); 5] = [
        (Method::DELETE, "/v1/catalog/services", "GET"),
        (Method::PUT, "/v1/health/service/web", "GET"),
        (Method::GET, "/v1/agent/service/register", "PUT"),
        (Method::POST, "/v1/status/leader", "GET"),
        (Method::GET, "/v1/catalog/register", "PUT"),
    ];
    for (method, path, allowed) in cases {
        let r = a.request(method.clone(), path, None).await?;
        assert_eq!(r.status, 405, "{method} {path}: {:?}", r.text());
        let allow = r
            .header("Allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
    }
    // OPTIONS answers with Allow.
    let r = a
        .request(Method::OPTIONS, "/v1/catalog/services", None)
        .await?;
    assert_eq!(r.status, 200, "{:?}", r.text());
    let allow = r.header("Allow").expect("OPTIONS Allow header");
    assert!(allow.contains("GET"), "{allow:?}");
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_400() -> Result<()> {
    let a = TestAgent::dev().await?;
    for path in [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/agent/check/update/x",
    ] {
        let r = a.put(path, "{\"Name\": ").await?;
        assert_eq!(r.status, 400, "{path}: {:?}", r.text());
        let r = a.put(path, "[1, 2").await?;
        assert_eq!(r.status, 400, "{path}: {:?}", r.text());
    }
    // Wrong type for a field.
    let r = a
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "x", "Port": "eighty"}),
        )
        .await?;
    assert_eq!(r.status, 400, "{:?}", r.text());
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_rejected() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("k", "v").await?;
    let r = a.get("/v1/kv/k?index=1&wait=forever").await?;
    assert_eq!(r.status, 400, "{:?}", r.text());
    assert!(r.text().contains("Invalid wait time"), "{:?}", r.text());
    let r = a.get("/v1/kv/k?index=notanumber").await?;
    assert_eq!(r.status, 400, "{:?}", r.text());
    // Consul returns the strconv error as-is for bad ?flags / ?cas, which makes a 500; 400 is
    // better. Either way the write must not happen.
    for q in ["flags=-1", "flags=18446744073709551616", "cas=abc"] {
        let r = a.put(&format!("/v1/kv/k?{q}"), "changed").await?;
        assert!(
            r.status == 400 || r.status == 500,
            "?{q}: {} {:?}",
            r.status,
            r.text()
        );
    }
    let v = a.get("/v1/kv/k?raw").await?;
    assert_eq!(v.text(), "v", "rejected writes left the value alone");
    Ok(())
}

#[tokio::test]
async fn oversized_kv_value_is_413() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.put("/v1/kv/huge", vec![b'x'; 600 * 1024]).await?;
    assert_eq!(r.status, 413, "{:?}", r.text());
    a.get("/v1/kv/huge").await?.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn errors_are_plain_text() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/kv/k?stale&consistent").await?;
    assert_eq!(r.status, 400);
    assert!(!r.text().trim().is_empty(), "error bodies carry a message");
    assert!(
        !r.content_type().starts_with("application/json"),
        "error bodies are plain text, got {:?}",
        r.content_type()
    );
    Ok(())
}
