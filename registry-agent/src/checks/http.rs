//! HTTP checks (Consul's `CheckHTTP`): a request with the check's method (GET), headers and
//! body; 2xx passes, 429 warns, anything else (or a failed request) is critical.
//!
//! As in Consul: keep-alive is off, `User-Agent: Consul Health Check` and
//! `Accept: text/plain, text/*, */*` unless the check sets them, a `Host` header overrides
//! the request's host, the timeout (10s) covers the whole exchange, redirects are followed
//! (up to 10) unless `DisableRedirects`, and the output is
//! `HTTP <method> <url>: <code> <reason> Output: <last OutputMaxSize bytes of the body>`.

use super::{go_io_error, TailBuffer};
use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::model::status;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use std::error::Error as _;

/// `User-Agent` of HTTP checks.
pub const USER_AGENT_VALUE: &str = "Consul Health Check";
/// Default `Accept` of HTTP checks.
pub const ACCEPT_VALUE: &str = "text/plain, text/*, */*";

pub(crate) struct HttpProbe {
    client: reqwest::Client,
    url: String,
    method: String,
    headers: HeaderMap,
    body: String,
    output_max_size: usize,
}

/// Go's `http.Client` error prefix: the method with only its first letter upper-case.
fn go_op(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + chars.as_str(),
        None => lower,
    }
}

fn build_headers(spec_headers: &std::collections::BTreeMap<String, Vec<String>>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in spec_headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::warn!(header = %name, "invalid header name in HTTP check; skipped");
            continue;
        };
        for v in values {
            match HeaderValue::from_str(v) {
                Ok(v) => {
                    headers.append(name.clone(), v);
                }
                Err(_) => {
                    tracing::warn!(header = %name, "invalid header value in HTTP check; skipped")
                }
            }
        }
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
    }
    headers
}

impl HttpProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::Http {
            url,
            method,
            header,
            body,
            tls_skip_verify,
            disable_redirects,
            ..
        } = &spec.kind
        else {
            return Err("not an HTTP check".to_string());
        };
        let redirect = if *disable_redirects {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(10)
        };
        let client = reqwest::Client::builder()
            .timeout(spec.timeout)
            .redirect(redirect)
            .danger_accept_invalid_certs(*tls_skip_verify)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let method = if method.is_empty() {
            "GET".to_string()
        } else {
            method.clone()
        };
        Ok(HttpProbe {
            client,
            url: url.clone(),
            method,
            headers: build_headers(header),
            body: body.clone(),
            output_max_size: spec.output_max_size,
        })
    }

    /// Go's `*url.Error` text for a failed request.
    fn request_error(&self, e: &reqwest::Error) -> String {
        let op = go_op(&self.method);
        let url = &self.url;
        if e.is_timeout() {
            return format!(
                "{op} {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            );
        }
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                let host = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| {
                        let host = u.host_str()?.to_string();
                        Some(format!("{host}:{}", u.port_or_known_default()?))
                    })
                    .unwrap_or_default();
                return format!("{op} {url:?}: dial tcp {host}: {}", go_io_error(io, true));
            }
            source = s.source();
        }
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        format!("{op} {url:?}: {text}")
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        let method = match reqwest::Method::from_bytes(self.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return (
                    status::CRITICAL,
                    format!("net/http: invalid method {:?}", self.method),
                )
            }
        };
        let mut req = self
            .client
            .request(method, &self.url)
            .headers(self.headers.clone());
        if !self.body.is_empty() {
            req = req.body(self.body.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (status::CRITICAL, self.request_error(&e)),
        };
        let code = resp.status();
        let mut body = TailBuffer::new(self.output_max_size);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.write(&chunk),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "HTTP check: error while reading body");
                    break;
                }
            }
        }
        let reason = code.canonical_reason().unwrap_or("");
        let output = format!(
            "HTTP {} {}: {} {reason} Output: {}",
            self.method,
            self.url,
            code.as_u16(),
            body.text()
        );
        let st = if code.is_success() {
            status::PASSING
        } else if code.as_u16() == 429 {
            status::WARNING
        } else {
            status::CRITICAL
        };
        (st, output)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_proto::model::HealthCheck;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec(url: String, disable_redirects: bool) -> CheckSpec {
        CheckSpec {
            check: HealthCheck {
                check_id: "http".into(),
                ..Default::default()
            },
            kind: CheckKind::Http {
                url,
                method: "GET".into(),
                header: BTreeMap::from([("X-Test".to_string(), vec!["yes".to_string()])]),
                body: String::new(),
                tls_server_name: String::new(),
                tls_skip_verify: false,
                disable_redirects,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            ttl: Duration::ZERO,
            deregister_critical_service_after: None,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            output_max_size: 8,
        }
    }

    /// Serves one canned response per connection and returns the requests it saw.
    async fn serve(responses: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for r in responses {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(r.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            }
            seen
        });
        (format!("http://{addr}/health"), task)
    }

    #[tokio::test]
    async fn status_mapping_and_output() {
        let (url, task) = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello world!",
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
        ])
        .await;
        let probe = HttpProbe::new(&spec(url.clone(), false)).unwrap();
        let (st, out) = probe.run().await;
        assert_eq!(st, "passing");
        // The output keeps the last OutputMaxSize (8) bytes of the body.
        assert_eq!(out, format!("HTTP GET {url}: 200 OK Output: o world!"));
        let (st, out) = probe.run().await;
        assert_eq!(st, "warning");
        assert_eq!(
            out,
            format!("HTTP GET {url}: 429 Too Many Requests Output: ")
        );
        let (st, _) = probe.run().await;
        assert_eq!(st, "critical");
        let seen = task.await.unwrap();
        let first = seen[0].to_ascii_lowercase();
        assert!(first.starts_with("get /health http/1.1"), "{first}");
        assert!(first.contains("user-agent: consul health check"), "{first}");
        assert!(first.contains("accept: text/plain, text/*, */*"), "{first}");
        assert!(first.contains("x-test: yes"), "{first}");
    }

    #[tokio::test]
    async fn redirects_not_followed_when_disabled() {
        let (url, task) = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ])
        .await;
        let probe = HttpProbe::new(&spec(url, true)).unwrap();
        let (st, out) = probe.run().await;
        assert_eq!(st, "critical");
        assert!(out.contains(": 302 Found Output: "), "{out}");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/");
        let probe = HttpProbe::new(&spec(url.clone(), false)).unwrap();
        let (st, out) = probe.run().await;
        assert_eq!(st, "critical");
        assert_eq!(
            out,
            format!("Get {url:?}: dial tcp {addr}: connect: connection refused")
        );
    }
}
