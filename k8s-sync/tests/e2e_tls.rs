//! End to end: k8s-sync reaches an `https://` registry address (`CONSUL_HTTP_ADDR`) verified
//! with the CA of `CONSUL_CACERT`. The HTTPS endpoint is a small stand-in that answers the
//! catalog reads of `-purge-k8s-services-from-node` (an empty node), served by Python's `ssl`
//! with a CA and certificate made by `openssl`, so the test depends only on k8s-sync's client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use harness::*;

const SERVER: &str = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"Node": None, "Services": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// What does this test do? A CA and a server certificate for 127.0.0.1 are made; k8s-sync's
/// purge against `https://127.0.0.1:<port>` succeeds with `CONSUL_CACERT` naming the CA (and
/// with `-ca-file`), and fails on the certificate without it.
#[test]
fn https_registry_address_verified_with_consul_cacert() {
    let tools = Command::new("openssl").arg("version").output().is_ok()
        && Command::new("python3").arg("-V").output().is_ok();
    if !tools {
        assert!(
            !strict(),
            "openssl and python3 are required (REGISTRY_TESTS_STRICT=1)"
        );
        eprintln!("openssl or python3 missing: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d).unwrap();
    let mut server = Command::new("python3")
        .args(["-c", SERVER])
        .arg(&certs.cert)
        .arg(&certs.key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("https://127.0.0.1:{}", line.trim());
    let ca = certs.ca.display().to_string();

    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_k8s-sync"));
        c.args(["-purge-k8s-services-from-node"])
            .args(extra)
            .env_remove("CONSUL_CACERT")
            .env_remove("CONSUL_HTTP_ADDR")
            .env("KUBECONFIG", "/nonexistent/kubeconfig");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let ok = run(&[("CONSUL_HTTP_ADDR", &url), ("CONSUL_CACERT", &ca)], &[]);
    let text =
        String::from_utf8_lossy(&ok.stdout).to_string() + &String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "with CONSUL_CACERT: {text}");
    assert!(text.contains("deregistered=0"), "{text}");
    let flag = run(&[("CONSUL_HTTP_ADDR", &url)], &["-ca-file", &ca]);
    assert!(flag.status.success(), "with -ca-file: {flag:?}");
    let bad = run(&[("CONSUL_HTTP_ADDR", &url)], &[]);
    let text =
        String::from_utf8_lossy(&bad.stderr).to_string() + &String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success(),
        "an unverified certificate must fail: {text}"
    );
    let missing = run(
        &[
            ("CONSUL_HTTP_ADDR", &url),
            ("CONSUL_CACERT", "/nonexistent/ca.pem"),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&missing.stderr).to_string();
    assert!(
        !missing.status.success() && text.contains("reading the CA file"),
        "{text}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
