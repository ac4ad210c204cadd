//! Check runners seen through the HTTP API: gRPC health checks (plain and TLS) against a real
//! `grpc.health.v1` server, HTTP/2 ping checks, and alias checks following a local service
//! and a catalog node through blocking queries. Statuses are also read from the catalog
//! (`/v1/health/checks/:service`), so each assertion covers the sync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use registry_tests::{free_tcp_port, TestAgent};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

const WAIT: Duration = Duration::from_secs(20);

/// A `grpc.health.v1` server on a free loopback port; stopped on drop.
struct GrpcHealthServer {
    addr: SocketAddr,
    reporter: HealthReporter,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcHealthServer {
    /// Serves plain HTTP/2, or TLS with the PEM `cert`/`key` when given.
    async fn start(tls: Option<(&Path, &Path)>) -> Result<GrpcHealthServer> {
        let (reporter, service) = tonic_health::server::health_reporter();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse()?;
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = tls {
            let identity =
                tonic::transport::Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?);
            builder =
                builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let router = builder.add_service(service);
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_shutdown(addr, async {
                    let _ = stopped.await;
                })
                .await;
        });
        // Wait until it accepts connections.
        registry_tests::eventually(WAIT, "gRPC server listening", || async move {
            Ok(tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()))
        })
        .await?;
        Ok(GrpcHealthServer {
            addr,
            reporter,
            stop: Some(stop),
            task,
        })
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The catalog's checks of `service`, by check ID.
async fn catalog_checks(a: &TestAgent, service: &str) -> Result<Value> {
    let v = a.get_json(&format!("/v1/health/checks/{service}")).await?;
    let mut out = serde_json::Map::new();
    for c in v.as_array().context("checks array")? {
        out.insert(c["CheckID"].as_str().unwrap_or("").to_string(), c.clone());
    }
    Ok(Value::Object(out))
}

/// Waits until check `id` of `service` has `status` both in the agent and in the catalog,
/// and an output for which `output_ok` holds in the agent; returns the output. (An
/// output-only change reaches the catalog only after `check_update_interval`, 5m.)
async fn wait_check(
    a: &TestAgent,
    service: &str,
    id: &str,
    status: &str,
    output_ok: impl Fn(&str) -> bool,
) -> Result<String> {
    let what = format!("check {id} of {service} {status}");
    let output_ok = &output_ok;
    a.eventually(WAIT, &what, || async move {
        let catalog = catalog_checks(a, service).await?;
        let local = a.get_json("/v1/agent/checks").await?;
        let c = &local[id];
        let out = c["Output"].as_str().unwrap_or("");
        if c["Status"] == status && catalog[id]["Status"] == status && output_ok(out) {
            Ok(Some(out.to_string()))
        } else {
            bail!(
                "now {} {:?} (catalog: {})",
                c["Status"],
                out,
                catalog[id]["Status"]
            )
        }
    })
    .await
}

#[tokio::test]
async fn grpc_and_h2ping_checks_follow_a_real_health_server() -> Result<()> {
    let a = TestAgent::dev().await?;
    let server = GrpcHealthServer::start(None).await?;
    server
        .reporter
        .set_service_status("web", ServingStatus::Serving)
        .await;
    let target = server.addr.to_string();
    let dead = format!("127.0.0.1:{}", free_tcp_port());
    a.register_service(&json!({
        "Name": "g",
        "Checks": [
            {"CheckID": "grpc-web", "Name": "grpc web", "GRPC": format!("{target}/web"), "Interval": "1s"},
            {"CheckID": "grpc-all", "Name": "grpc all", "GRPC": target, "Interval": "1s"},
            {"CheckID": "grpc-unknown", "Name": "grpc unknown", "GRPC": format!("{target}/nope"), "Interval": "1s"},
            {"CheckID": "grpc-dead", "Name": "grpc dead", "GRPC": dead, "Interval": "1s", "Timeout": "2s"},
            {"CheckID": "h2", "Name": "h2", "H2PING": target, "H2PingUseTLS": false, "Interval": "1s"},
            {"CheckID": "h2-dead", "Name": "h2 dead", "H2PING": dead, "H2PingUseTLS": false, "Interval": "1s"},
        ]
    }))
    .await?;

    let checks = a.get_json("/v1/agent/checks").await?;
    assert_eq!(checks["grpc-web"]["Type"], "grpc", "{checks}");
    assert_eq!(checks["h2"]["Type"], "h2ping", "{checks}");

    let ok = format!("gRPC check {target}/web: success");
    wait_check(&a, "g", "grpc-web", "passing", |o| o == ok).await?;
    let ok_all = format!("gRPC check {target}: success");
    wait_check(&a, "g", "grpc-all", "passing", |o| o == ok_all).await?;
    // tonic-health answers NotFound for a service it does not know.
    wait_check(&a, "g", "grpc-unknown", "critical", |o| {
        o.contains("code = NotFound")
    })
    .await?;
    wait_check(&a, "g", "grpc-dead", "critical", |o| {
        o.contains("connection error")
    })
    .await?;
    wait_check(&a, "g", "h2", "passing", |o| {
        o == "HTTP2 ping was successful"
    })
    .await?;
    let refused = format!("Failed to dial to {dead}: dial tcp {dead}: connect: connection refused");
    wait_check(&a, "g", "h2-dead", "critical", |o| o == refused).await?;

    // The application reports NOT_SERVING: critical, with the status in the output.
    server
        .reporter
        .set_service_status("web", ServingStatus::NotServing)
        .await;
    let not_serving = format!("gRPC {target}/web serving status: NOT_SERVING");
    wait_check(&a, "g", "grpc-web", "critical", |o| o == not_serving).await?;
    server
        .reporter
        .set_service_status("web", ServingStatus::Serving)
        .await;
    wait_check(&a, "g", "grpc-web", "passing", |o| o == ok).await?;

    // The server goes away: every check against it turns critical.
    server.shutdown().await;
    wait_check(&a, "g", "grpc-all", "critical", |_| true).await?;
    wait_check(&a, "g", "h2", "critical", |o| {
        o.starts_with("Failed to dial to")
    })
    .await?;
    Ok(())
}

/// A self-signed certificate for `localhost` / 127.0.0.1, made with the `openssl` tool.
fn self_signed(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl (needed to make a test certificate)")?;
    if !out.status.success() {
        bail!("openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((cert, key))
}

#[tokio::test]
async fn grpc_and_h2ping_checks_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path())?;
    let a = TestAgent::dev().await?;
    let server = GrpcHealthServer::start(Some((&cert, &key))).await?;
    let target = server.addr.to_string();
    a.register_service(&json!({
        "Name": "t",
        "Checks": [
            {"CheckID": "grpc-tls", "Name": "grpc tls", "GRPC": target, "GRPCUseTLS": true,
             "TLSSkipVerify": true, "Interval": "1s"},
            // The certificate is self-signed: without TLSSkipVerify the handshake fails.
            {"CheckID": "grpc-verify", "Name": "grpc verify", "GRPC": target, "GRPCUseTLS": true,
             "Interval": "1s"},
            // Plain text against a TLS server fails too.
            {"CheckID": "grpc-plain", "Name": "grpc plain", "GRPC": target, "Interval": "1s",
             "Timeout": "2s"},
            // H2PingUseTLS defaults to true.
            {"CheckID": "h2-tls", "Name": "h2 tls", "H2PING": target, "TLSSkipVerify": true,
             "Interval": "1s"},
        ]
    }))
    .await?;
    let ok = format!("gRPC check {target}: success");
    wait_check(&a, "t", "grpc-tls", "passing", |o| o == ok).await?;
    wait_check(&a, "t", "grpc-verify", "critical", |o| {
        o.contains("connection error") && o.to_lowercase().contains("certificate")
    })
    .await?;
    wait_check(&a, "t", "grpc-plain", "critical", |_| true).await?;
    wait_check(&a, "t", "h2-tls", "passing", |o| {
        o == "HTTP2 ping was successful"
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn alias_check_follows_a_local_service() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "web", "Check": {"CheckID": "web-ttl", "TTL": "60s"}}))
        .await?;
    a.register_service(&json!({
        "Name": "web-alias",
        "Check": {"CheckID": "alias-local", "Name": "alias", "AliasService": "web"}
    }))
    .await?;
    let checks = a.get_json("/v1/agent/checks").await?;
    assert_eq!(checks["alias-local"]["Type"], "alias", "{checks}");

    // The TTL check starts critical, and so does the alias.
    wait_check(&a, "web-alias", "alias-local", "critical", |o| {
        o.starts_with("Aliased check \"Service 'web' check\" failing")
    })
    .await?;
    a.put("/v1/agent/check/pass/web-ttl?note=fine", "")
        .await?
        .assert_status(200);
    wait_check(&a, "web-alias", "alias-local", "passing", |o| {
        o == "All checks passing."
    })
    .await?;
    a.put("/v1/agent/check/warn/web-ttl?note=slow", "")
        .await?
        .assert_status(200);
    wait_check(&a, "web-alias", "alias-local", "warning", |o| {
        o == "Aliased check \"Service 'web' check\" failing: slow"
    })
    .await?;
    a.put("/v1/agent/check/fail/web-ttl?note=down", "")
        .await?
        .assert_status(200);
    wait_check(&a, "web-alias", "alias-local", "critical", |o| {
        o == "Aliased check \"Service 'web' check\" failing: down"
    })
    .await?;
    // The aliased service goes away.
    a.put("/v1/agent/service/deregister/web", "")
        .await?
        .assert_status(200);
    wait_check(&a, "web-alias", "alias-local", "critical", |o| {
        o.starts_with("Service web could not be found on node")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn alias_check_follows_a_catalog_node_through_blocking_queries() -> Result<()> {
    let a = TestAgent::dev().await?;
    let register_ext = |status: &'static str, output: &'static str| {
        json!({
            "Node": "ext", "Address": "127.0.0.9",
            "Service": {"ID": "db1", "Service": "db", "Port": 5432},
            "Check": {"CheckID": "db-check", "Name": "db alive", "ServiceID": "db1",
                      "Status": status, "Output": output},
        })
    };
    a.put_json("/v1/catalog/register", &register_ext("passing", "ok"))
        .await?
        .assert_status(200);
    a.register_service(&json!({"Name": "front"})).await?;
    for (id, service) in [("alias-db", "db1"), ("alias-missing", "nope")] {
        a.put_json(
            "/v1/agent/check/register",
            &json!({"ID": id, "Name": id, "ServiceID": "front",
                    "AliasNode": "ext", "AliasService": service}),
        )
        .await?
        .assert_status(200);
    }
    wait_check(&a, "front", "alias-db", "passing", |o| {
        o == "All checks passing."
    })
    .await?;
    wait_check(&a, "front", "alias-missing", "critical", |o| {
        o == "Service nope could not be found on node ext"
    })
    .await?;
    // A catalog write on the aliased node wakes the alias's blocking query at once.
    a.put_json("/v1/catalog/register", &register_ext("critical", "refused"))
        .await?
        .assert_status(200);
    wait_check(&a, "front", "alias-db", "critical", |o| {
        o == "Aliased check \"db alive\" failing: refused"
    })
    .await?;
    a.put_json("/v1/catalog/register", &register_ext("passing", "ok"))
        .await?
        .assert_status(200);
    wait_check(&a, "front", "alias-db", "passing", |_| true).await?;
    Ok(())
}
