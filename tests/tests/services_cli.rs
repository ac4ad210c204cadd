//! `registry services register|deregister` and `registry maint` against a real agent: flags,
//! HCL and JSON definition files, Consul's output texts and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{registry_bin, TestAgent};
use serde_json::json;

/// Runs `registry <command words> -http-addr=... <flags and files>`; (exit code, stdout,
/// stderr). As with Go's flag package, flags must come before the first file.
async fn cli(a: &TestAgent, args: &[&str]) -> Result<(i32, String, String)> {
    let words = if args.first() == Some(&"services") {
        2
    } else {
        1
    };
    let mut all: Vec<String> = args[..words].iter().map(|s| s.to_string()).collect();
    all.push(format!("-http-addr={}", a.http_addr()));
    all.extend(args[words..].iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new(registry_bin()?)
        .args(&all)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn services_register_and_deregister_from_flags_and_files() -> Result<()> {
    let a = TestAgent::dev().await?;

    // From flags.
    let (code, out, err) = cli(
        &a,
        &[
            "services",
            "register",
            "-name=web",
            "-id=web1",
            "-port=8080",
            "-address=10.0.0.5",
            "-tag=a",
            "-tag",
            "b",
            "-meta=env=prod",
            "-tagged-address=lan=10.0.0.6:81",
        ],
    )
    .await?;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "Registered service: web\n", "")
    );
    let svcs = a.get_json("/v1/agent/services").await?;
    let web = &svcs["web1"];
    assert_eq!(web["Service"], "web", "{svcs}");
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Address"], "10.0.0.5");
    assert_eq!(web["Tags"], json!(["a", "b"]));
    assert_eq!(web["Meta"], json!({"env": "prod"}));
    assert_eq!(
        web["TaggedAddresses"]["lan"],
        json!({"Address": "10.0.0.6", "Port": 81})
    );
    let catalog = a.get_json("/v1/catalog/service/web").await?;
    assert_eq!(catalog[0]["ServiceID"], "web1", "{catalog}");

    // From files: JSON and HCL agent configuration, with a flag filling in.
    let dir = tempfile::tempdir()?;
    let json_file = dir.path().join("db.json");
    std::fs::write(
        &json_file,
        r#"{"service": {"name": "db", "port": 5432, "tags": ["primary"], "check": {"ttl": "30s"}}}"#,
    )?;
    let hcl_file = dir.path().join("cache.hcl");
    std::fs::write(
        &hcl_file,
        "services {\n  name = \"cache\"\n  id = \"cache1\"\n  port = 6379\n}\n\
         services {\n  name = \"queue\"\n  port = 5672\n  check {\n    tcp = \"127.0.0.1:5672\"\n    \
         interval = \"10s\"\n  }\n}\n",
    )?;
    let (code, out, err) = cli(
        &a,
        &[
            "services",
            "register",
            "-tag=extra",
            json_file.to_str().unwrap(),
            hcl_file.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Registered service: db\nRegistered service: cache\nRegistered service: queue\n"
    );
    let svcs = a.get_json("/v1/agent/services").await?;
    assert_eq!(svcs["db"]["Tags"], json!(["primary", "extra"]), "{svcs}");
    assert_eq!(svcs["cache1"]["Port"], 6379, "{svcs}");
    assert_eq!(svcs["queue"]["Tags"], json!(["extra"]), "{svcs}");
    let checks = a.get_json("/v1/agent/checks").await?;
    assert_eq!(checks["service:db"]["Type"], "ttl", "{checks}");
    assert_eq!(checks["service:queue"]["Type"], "tcp", "{checks}");
    assert_eq!(checks["service:queue"]["Interval"], "10s", "{checks}");

    // Argument errors, as Consul words them.
    let (code, _, err) = cli(&a, &["services", "register"]).await?;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Service registration requires at least one argument or flags.\n"
    );
    let (code, _, err) = cli(
        &a,
        &[
            "services",
            "register",
            "-name=x",
            json_file.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Service registration requires arguments or -id, not both.\n"
    );
    // The agent's validation error comes back.
    let (code, _, err) = cli(
        &a,
        &["services", "register", "-name=bad", "-address=0.0.0.0"],
    )
    .await?;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error registering service \"bad\": Unexpected response code: 400"),
        "{err}"
    );

    // Deregistration by ID and by file.
    let (code, out, _) = cli(&a, &["services", "deregister", "-id=web1"]).await?;
    assert_eq!((code, out.as_str()), (0, "Deregistered service: web1\n"));
    let (code, out, err) = cli(
        &a,
        &[
            "services",
            "deregister",
            json_file.to_str().unwrap(),
            hcl_file.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Deregistered service: db\nDeregistered service: cache1\nDeregistered service: queue\n"
    );
    let svcs = a.get_json("/v1/agent/services").await?;
    assert_eq!(svcs, json!({}), "all gone");
    let catalog = a.get_json("/v1/catalog/service/web").await?;
    assert_eq!(catalog, json!([]));

    let (code, _, err) = cli(&a, &["services", "deregister"]).await?;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Service deregistration requires at least one argument or -id.\n"
    );
    let (code, _, err) = cli(
        &a,
        &[
            "services",
            "deregister",
            "-id=x",
            json_file.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Service deregistration requires arguments or -id, not both.\n"
    );
    let (code, _, err) = cli(&a, &["services", "deregister", "-id=nope"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("Unexpected response code: 404"), "{err}");
    Ok(())
}

#[tokio::test]
async fn maint_enables_lists_and_disables() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "web", "ID": "web1", "Port": 80}))
        .await?;

    // Nothing in maintenance: nothing listed.
    let (code, out, err) = cli(&a, &["maint"]).await?;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));

    let (code, out, _) = cli(&a, &["maint", "-enable", "-reason", "disk swap"]).await?;
    assert_eq!(
        (code, out.as_str()),
        (0, "Node maintenance is now enabled\n")
    );
    let (code, out, _) = cli(&a, &["maint", "-enable", "-service=web1"]).await?;
    assert_eq!(
        (code, out.as_str()),
        (0, "Service maintenance is now enabled for \"web1\"\n")
    );
    let (code, out, _) = cli(&a, &["maint"]).await?;
    assert_eq!(code, 0);
    let node = &a.node;
    assert!(
        out.contains(&format!("Node:\n  Name:   {node}\n  Reason: disk swap\n\n")),
        "{out}"
    );
    assert!(
        out.contains(
            "Service:\n  ID:     web1\n  Reason: Maintenance mode is enabled for this service"
        ),
        "{out}"
    );
    // The maintenance checks are in the catalog: the instance is out of ?passing.
    let passing = a.get_json("/v1/health/service/web?passing").await?;
    assert_eq!(passing, json!([]));

    let (code, out, _) = cli(&a, &["maint", "-disable", "-service=web1"]).await?;
    assert_eq!(
        (code, out.as_str()),
        (0, "Service maintenance is now disabled for \"web1\"\n")
    );
    let (code, out, _) = cli(&a, &["maint", "-disable"]).await?;
    assert_eq!(
        (code, out.as_str()),
        (0, "Node maintenance is now disabled\n")
    );
    let (code, out, _) = cli(&a, &["maint"]).await?;
    assert_eq!((code, out.as_str()), (0, ""));
    let passing = a.get_json("/v1/health/service/web?passing").await?;
    assert_eq!(passing[0]["Service"]["ID"], "web1", "{passing}");

    // Errors.
    for (args, want) in [
        (
            vec!["maint", "-enable", "-disable"],
            "Only one of -enable or -disable may be provided\n",
        ),
        (
            vec!["maint", "-reason=x"],
            "Reason may only be provided with -enable\n",
        ),
        (
            vec!["maint", "-service=web1"],
            "Service requires either -enable or -disable\n",
        ),
    ] {
        let (code, out, err) = cli(&a, &args).await?;
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (1, "", want),
            "{args:?}"
        );
    }
    let (code, _, err) = cli(&a, &["maint", "-enable", "-service=nope"]).await?;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error enabling service maintenance: Unexpected response code: 404"),
        "{err}"
    );
    Ok(())
}
