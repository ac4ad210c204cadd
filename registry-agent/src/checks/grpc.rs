//! gRPC checks (Consul's `CheckGRPC`): call `grpc.health.v1.Health/Check` on the `GRPC`
//! target `host:port[/service]` over HTTP/2, a fresh connection per run. `SERVING` passes
//! (`gRPC check <target>: success`); any other status (`gRPC <target> serving status:
//! NOT_SERVING`), an RPC error or a connection failure is critical. The whole run is bounded
//! by the check's timeout (10s by default).
//!
//! The client is `tonic-health`'s generated `grpc.health.v1` client over a `tonic` channel.
//! With `GRPCUseTLS` the connection is made by [`super::tls`] (ALPN `h2`, honouring
//! `TLSServerName` and `TLSSkipVerify`).

use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::model::status;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub(crate) struct GrpcProbe {
    /// The target as given (`host:port[/service]`), for outputs.
    target: String,
    /// `host:port`.
    server: String,
    /// The service asked about ("" = the whole server).
    service: String,
    tls: Option<super::tls::TlsSettings>,
    timeout: Duration,
}

impl GrpcProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::Grpc {
            target,
            use_tls,
            tls_server_name,
            tls_skip_verify,
        } = &spec.kind
        else {
            return Err("not a gRPC check".to_string());
        };
        let (server, service) = match target.split_once('/') {
            Some((s, svc)) => (s.to_string(), svc.to_string()),
            None => (target.clone(), String::new()),
        };
        // Validate the address shape once, so a typo shows at registration.
        Endpoint::from_shared(format!("http://{server}"))
            .map_err(|e| format!("invalid gRPC target {target:?}: {e}"))?;
        let tls = use_tls.then(|| super::tls::TlsSettings {
            server_name: tls_server_name.clone(),
            skip_verify: *tls_skip_verify,
        });
        Ok(GrpcProbe {
            target: target.clone(),
            server,
            service,
            tls,
            timeout: spec.timeout,
        })
    }

    async fn channel(&self) -> Result<Channel, String> {
        // Always an `http` URI: with `GRPCUseTLS` our own connector does the TLS handshake,
        // and tonic (when built with its TLS features, as workspace-wide feature unification
        // can do) refuses an `https` URI that it is not configured to secure itself.
        let endpoint = Endpoint::from_shared(format!("http://{}", self.server))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let connected = match &self.tls {
            None => endpoint.connect().await,
            Some(tls) => {
                let connector = super::tls::Connector::new(tls, &self.server, b"h2")?;
                endpoint.connect_with_connector(connector).await
            }
        };
        connected.map_err(|e| format!("connection error: {}", error_chain(&e)))
    }

    async fn check(&self) -> Result<(), String> {
        let channel = self.channel().await?;
        let mut client = HealthClient::new(channel);
        let reply = client
            .check(HealthCheckRequest {
                service: self.service.clone(),
            })
            .await
            .map_err(|s| {
                format!(
                    "rpc error: code = {:?} desc = {}",
                    s.code(),
                    if s.message().is_empty() {
                        error_chain(&s)
                    } else {
                        s.message().to_string()
                    }
                )
            })?
            .into_inner();
        let serving = ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown);
        if serving == ServingStatus::Serving {
            Ok(())
        } else {
            Err(format!(
                "gRPC {} serving status: {}",
                self.target,
                serving.as_str_name()
            ))
        }
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        match tokio::time::timeout(self.timeout, self.check()).await {
            Ok(Ok(())) => (
                status::PASSING,
                format!("gRPC check {}: success", self.target),
            ),
            Ok(Err(msg)) => (status::CRITICAL, msg),
            Err(_) => (
                status::CRITICAL,
                "rpc error: code = DeadlineExceeded desc = context deadline exceeded".to_string(),
            ),
        }
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little alone).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
