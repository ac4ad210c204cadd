//! UDP checks (Consul's `CheckUDP`): send a datagram to `host:port` and wait up to the
//! timeout for one byte back. A reply or silence passes (`UDP connect <addr>: Success`);
//! an error (an ICMP port-unreachable shows up as "connection refused") is critical.

use super::go_io_error;
use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::model::status;
use std::time::Duration;
use tokio::net::UdpSocket;

pub(crate) struct UdpProbe {
    address: String,
    timeout: Duration,
}

impl UdpProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::Udp { address } = &spec.kind else {
            return Err("not a UDP check".to_string());
        };
        Ok(UdpProbe {
            address: address.clone(),
            timeout: spec.timeout,
        })
    }

    fn success(&self) -> (&'static str, String) {
        (
            status::PASSING,
            format!("UDP connect {}: Success", self.address),
        )
    }

    fn failure(&self, op: &str, e: &std::io::Error) -> (&'static str, String) {
        (
            status::CRITICAL,
            format!("{op} udp {}: {}", self.address, go_io_error(e, false)),
        )
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        let target = match tokio::net::lookup_host(&self.address).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a,
                None => {
                    return (
                        status::CRITICAL,
                        format!("dial udp {}: no such host", self.address),
                    )
                }
            },
            Err(e) => return self.failure("dial", &e),
        };
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => return self.failure("dial", &e),
        };
        if let Err(e) = socket.connect(target).await {
            return self.failure("dial", &e);
        }
        if let Err(e) = socket.send(&[]).await {
            return self.failure("write", &e);
        }
        let mut buf = [0u8; 1];
        match tokio::time::timeout(self.timeout, socket.recv(&mut buf)).await {
            Ok(Ok(_)) | Err(_) => self.success(),
            Ok(Err(e)) => self.failure("read", &e),
        }
    }
}
