//! End to end: k8s-sync with no kubeconfig finds the cluster the way a pod does, from
//! `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account's files under
//! `/var/run/secrets/kubernetes.io/serviceaccount` (token, ca.crt, namespace). The fake API
//! server serves HTTPS with a test CA and answers 401 without the account's token. The files
//! are mounted in a private mount namespace (`unshare`), so the machine's `/run` is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::*;

const T: Duration = Duration::from_secs(30);
const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn tools() -> bool {
    let ok = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("openssl", "version")
        && Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// What does this test do? Through the in-cluster path only (no kubeconfig, `HOME` without
/// one), k8s-sync verifies the fake's certificate with the account's ca.crt, authenticates
/// with its token (the fake refuses anything else), and syncs a Service to the registry. A
/// second run with a wrong token is refused by the fake and never becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_service_account_credentials() {
    if !tools() {
        assert!(
            !strict(),
            "openssl and unshare --mount are required (REGISTRY_TESTS_STRICT=1)"
        );
        eprintln!("openssl or unshare missing: skipping");
        return;
    }
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(certs_dir.path()).unwrap();
    let token = "sa-token-0123456789";
    let fake = FakeApi::start_with(Some(&certs), Some(token))
        .await
        .unwrap();
    // The test's own client is held to the same rules.
    fake.apply(service("default", "pod-web")).await.unwrap();
    fake.apply(slice(
        "default",
        "pod-web",
        "pod-web-1",
        &[("10.6.0.1", true)],
    ))
    .await
    .unwrap();
    let port = fake.url.rsplit(':').next().unwrap().to_string();
    assert!(fake.url.starts_with("https://127.0.0.1:"), "{}", fake.url);
    let anon = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap()
        .get(format!("{}/api/v1/services", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anon.status().as_u16(),
        401,
        "the fake must refuse a client without the token"
    );

    let agent = TestAgent::dev().await.unwrap();
    let run = |name: &str, tok: &str| {
        let sa = certs_dir.path().join(format!("sa-{name}"));
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::write(sa.join("token"), tok).unwrap();
        std::fs::copy(&certs.ca, sa.join("ca.crt")).unwrap();
        std::fs::write(sa.join("namespace"), "default").unwrap();
        let home = certs_dir.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let listen = format!("127.0.0.1:{}", free_tcp_port());
        let out = std::fs::File::create(certs_dir.path().join(format!("{name}.log"))).unwrap();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p {SA} && cp {sa}/token {sa}/ca.crt {sa}/namespace {SA}/ && exec \"$0\" \"$@\"",
            sa = sa.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_k8s-sync"))
            .args([
                "-http-addr",
                &agent.http_addr(),
                "-allow-k8s-namespace=*",
                "-consul-node-name",
                &format!("sync-{name}"),
                "-listen",
                &listen,
                "-sync-period=2s",
            ])
            .env_remove("KUBECONFIG")
            .env("HOME", &home)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &port)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        (ChildGuard(child), listen)
    };
    let (_good, good_listen) = run("good", token);
    let (_bad, bad_listen) = run("bad", "not-the-token");
    let ready = |listen: String| async move {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("http://{listen}/readyz"))
            .send()
            .await?;
        anyhow::Ok(r.status().as_u16())
    };
    let log = |name: &str| {
        std::fs::read_to_string(certs_dir.path().join(format!("{name}.log"))).unwrap_or_default()
    };
    eventually(
        T,
        "the Service synced through the in-cluster config",
        || async {
            let v = agent
                .get("/v1/catalog/node-services/sync-good")
                .await?
                .json();
            let n = v["Services"].as_array().map_or(0, Vec::len);
            Ok((n == 1).then_some(()))
        },
    )
    .await;
    assert_eq!(
        passing(&agent, "pod-web").await.unwrap(),
        vec!["10.6.0.1".to_string()],
        "{}",
        log("good")
    );
    eventually(T, "ready", || async {
        Ok((ready(good_listen.clone()).await? == 200).then_some(()))
    })
    .await;
    // The wrong token: refused by the fake, so never ready and nothing on its node.
    assert_ne!(
        ready(bad_listen.clone()).await.unwrap(),
        200,
        "{}",
        log("bad")
    );
    let v = agent
        .get("/v1/catalog/node-services/sync-bad")
        .await
        .unwrap()
        .json();
    assert!(v["Services"].as_array().is_none_or(Vec::is_empty), "{v}");
    eventually(T, "the refusal in the log", || async {
        Ok(log("bad").contains("401").then_some(()))
    })
    .await;
}

/// Kills the child on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
