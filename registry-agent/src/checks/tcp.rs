//! TCP checks: passing when a connection to `host:port` opens within the timeout
//! (`TCP connect <addr>: Success`), critical otherwise with Go's dial error text.

use super::go_io_error;
use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::model::status;
use std::time::Duration;
use tokio::net::TcpStream;

pub(crate) struct TcpProbe {
    address: String,
    timeout: Duration,
}

impl TcpProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::Tcp {
            address, use_tls, ..
        } = &spec.kind
        else {
            return Err("not a TCP check".to_string());
        };
        if *use_tls {
            tracing::warn!(check = %spec.check_id(), "TCPUseTLS is not supported; checking the plain TCP connect");
        }
        Ok(TcpProbe {
            address: address.clone(),
            timeout: spec.timeout,
        })
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        match tokio::time::timeout(self.timeout, TcpStream::connect(&self.address)).await {
            Ok(Ok(_conn)) => (
                status::PASSING,
                format!("TCP connect {}: Success", self.address),
            ),
            Ok(Err(e)) => (
                status::CRITICAL,
                format!("dial tcp {}: {}", self.address, go_io_error(&e, true)),
            ),
            Err(_) => (
                status::CRITICAL,
                format!("dial tcp {}: i/o timeout", self.address),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_proto::model::HealthCheck;

    fn spec(address: String) -> CheckSpec {
        CheckSpec {
            check: HealthCheck {
                check_id: "tcp".into(),
                ..Default::default()
            },
            kind: CheckKind::Tcp {
                address,
                use_tls: false,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            ttl: Duration::ZERO,
            deregister_critical_service_after: None,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            output_max_size: 4096,
        }
    }

    #[tokio::test]
    async fn connect_and_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let probe = TcpProbe::new(&spec(addr.clone())).unwrap();
        let (st, out) = probe.run().await;
        assert_eq!(st, "passing");
        assert_eq!(out, format!("TCP connect {addr}: Success"));

        drop(listener);
        let (st, out) = probe.run().await;
        assert_eq!(st, "critical");
        assert_eq!(out, format!("dial tcp {addr}: connect: connection refused"));
    }
}
