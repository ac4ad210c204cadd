//! HTTP/2 ping checks (Consul's `CheckH2PING`): open an HTTP/2 connection to `H2PING`
//! (`host:port`; with TLS unless `H2PingUseTLS` is false, offering ALPN `h2`) and send one
//! PING frame. The PONG passes (`HTTP2 ping was successful`); a failed dial, handshake or
//! ping is critical, all bounded by the check's timeout.

use super::go_io_error;
use super::tls::{Connector, TlsSettings};
use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::model::status;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub(crate) struct H2PingProbe {
    address: String,
    tls: Option<Connector>,
    timeout: Duration,
}

impl H2PingProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::H2Ping {
            address,
            use_tls,
            tls_server_name,
            tls_skip_verify,
        } = &spec.kind
        else {
            return Err("not an H2PING check".to_string());
        };
        let tls = if *use_tls {
            let settings = TlsSettings {
                server_name: tls_server_name.clone(),
                skip_verify: *tls_skip_verify,
            };
            Some(Connector::new(&settings, address, b"h2")?)
        } else {
            None
        };
        Ok(H2PingProbe {
            address: address.clone(),
            tls,
            timeout: spec.timeout,
        })
    }

    fn dial_error(&self, e: &std::io::Error) -> String {
        format!(
            "Failed to dial to {0}: dial tcp {0}: {1}",
            self.address,
            go_io_error(e, true)
        )
    }

    async fn ping(&self) -> Result<(), String> {
        match &self.tls {
            None => {
                let tcp = TcpStream::connect(&self.address)
                    .await
                    .map_err(|e| self.dial_error(&e))?;
                ping_over(tcp).await
            }
            Some(c) => {
                let tls = c.connect().await.map_err(|e| self.dial_error(&e))?;
                ping_over(tls).await
            }
        }
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        match tokio::time::timeout(self.timeout, self.ping()).await {
            Ok(Ok(())) => (status::PASSING, "HTTP2 ping was successful".to_string()),
            Ok(Err(msg)) => (status::CRITICAL, msg),
            Err(_) => (
                status::CRITICAL,
                "HTTP2 ping failed: context deadline exceeded".to_string(),
            ),
        }
    }
}

/// The HTTP/2 handshake and one PING on `io`.
async fn ping_over<T>(io: T) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("Failed to create client connection {e}"))?;
    let mut pinger = conn
        .ping_pong()
        .ok_or_else(|| "Failed to create client connection: no ping handle".to_string())?;
    // The connection future processes frames (the PONG among them) while it is polled.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = pinger
        .ping(h2::Ping::opaque())
        .await
        .map(|_pong| ())
        .map_err(|e| format!("HTTP2 ping failed: {e}"));
    drop(send);
    driver.abort();
    result
}
