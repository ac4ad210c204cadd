//! Golden tests: a JSON and an HCL file setting every key give the same configuration, flags
//! override files, unknown keys name the key and the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A host with a fixed name and addresses; node IDs are fixed too.
struct FakeEnv {
    addrs: Vec<IpAddr>,
}

impl Environment for FakeEnv {
    fn hostname(&self) -> Option<String> {
        Some("host-1".to_string())
    }
    fn interface_addrs(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }
    fn stored_node_id(&self, _: &Storage) -> Result<String, ConfigError> {
        Ok("00000000-0000-4000-8000-000000000001".to_string())
    }
}

fn env() -> FakeEnv {
    FakeEnv {
        addrs: vec![
            "10.1.1.1".parse().expect("ip"),
            "8.8.4.4".parse().expect("ip"),
        ],
    }
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn load_with(paths: Vec<PathBuf>, flags: PartialConfig, dev: bool) -> Result<Built, ConfigError> {
    load(
        LoadOptions {
            dev,
            paths,
            flags,
            ..LoadOptions::default()
        },
        &env(),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

#[test]
fn golden_json_sets_every_key() {
    let built =
        load_with(vec![testdata("full.json")], PartialConfig::default(), false).expect("load");
    let c = &built.config;
    assert!(!c.dev);
    assert_eq!(c.node_name, "node-a");
    assert_eq!(c.node_id, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
    assert_eq!(c.datacenter, "east-1");
    assert_eq!(c.storage, Storage::Directory("/var/lib/registry".into()));
    assert_eq!(c.client_addr, ip("0.0.0.0"));
    assert_eq!(c.bind_addr, ip("10.0.0.5"));
    assert_eq!(c.advertise_addr, ip("10.0.0.6"));
    assert_eq!(
        c.ports,
        runtime::Ports {
            http: 18500,
            dns: 0,
            server: 18300,
            serf_lan: 18301,
            serf_wan: 18302,
            grpc: 18502,
            https: 0
        }
    );
    assert!(c.server);
    assert!(!c.bootstrap);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.join.retry_join, ["10.0.0.7", "10.0.0.8"]);
    assert_eq!(c.join.retry_join_wan, ["192.168.0.1"]);
    assert_eq!(c.join.start_join, ["10.0.0.9"]);
    assert_eq!(c.join.retry_interval, Duration::from_secs(15));
    assert_eq!(c.join.retry_max, 4);
    assert_eq!(c.log_level, LogLevel::Warn);
    assert!(c.log_json);
    assert_eq!(c.dns.domain, "registry.");
    assert_eq!(
        c.node_meta,
        BTreeMap::from([
            ("rack".to_string(), "r1".to_string()),
            ("zone".to_string(), "z2".to_string())
        ])
    );
    assert!(c.ui, "ui_config.enabled wins over ui");
    assert!(c.enable_script_checks);
    assert!(!c.dns.allow_stale);
    assert_eq!(c.dns.max_stale, Duration::from_secs(10));
    assert_eq!(c.dns.node_ttl, Duration::from_secs(30));
    assert_eq!(
        c.dns.service_ttl,
        BTreeMap::from([
            ("*".to_string(), Duration::from_secs(5)),
            ("web".to_string(), Duration::from_secs(60))
        ])
    );
    assert!(c.dns.only_passing);
    assert_eq!(c.dns.udp_answer_limit, 5);
    assert_eq!(c.dns.a_record_limit, 7);
    assert!(c.dns.enable_truncate);
    assert_eq!(
        c.dns.recursors,
        vec![
            "8.8.8.8:53".parse().expect("addr"),
            "1.1.1.1:5353".parse().expect("addr")
        ]
    );
    assert_eq!(c.raft.snapshot_threshold, 1000);
    assert_eq!(c.raft.snapshot_interval, Duration::from_secs(60));
    assert_eq!(c.raft.trailing_logs, 500);
    assert_eq!(c.raft.multiplier, 1);
    assert_eq!(
        c.telemetry.prometheus_retention_time,
        Duration::from_secs(86_400)
    );
    assert!(c.telemetry.disable_hostname);
    assert_eq!(
        c.services,
        vec![
            json!({"name": "web", "port": 80, "tags": ["v1"],
                   "check": {"http": "http://localhost/health", "interval": "10s"}}),
            json!({"name": "db", "port": 5432,
                   "checks": [{"tcp": "localhost:5432", "interval": "5s"}]}),
            json!({"name": "cache", "port": 6379}),
        ]
    );
    assert_eq!(
        c.checks,
        vec![
            json!({"id": "mem", "name": "Memory", "ttl": "30s"}),
            json!({"id": "disk", "name": "Disk", "ttl": "60s"}),
        ]
    );
    assert_eq!(c.config_files, vec![testdata("full.json")]);
    // The gossip key is used now: no warning, and it is never printed.
    assert!(!built.warnings.iter().any(|w| w.contains("encrypt")));
    assert!(c.encrypt.key.is_some());
    assert!(c.encrypt.verify_incoming && c.encrypt.verify_outgoing);
    assert!(!format!("{:?}", c.encrypt).contains(c.encrypt.key.as_deref().unwrap_or("-")));
}

#[test]
fn encrypt_keys_are_checked() {
    let bad = PartialConfig {
        encrypt: Some("c2hvcnQ=".to_string()),
        ..PartialConfig::default()
    };
    let err = load_with(vec![], bad, true).expect_err("a 5-byte key");
    assert!(err.to_string().contains("encrypt has invalid key"), "{err}");
    let rolling = PartialConfig {
        encrypt: Some("HH9f3S6PSg2gjCqWmR+DwA==".to_string()),
        encrypt_verify_incoming: Some(false),
        encrypt_verify_outgoing: Some(false),
        ..PartialConfig::default()
    };
    let c = load_with(vec![], rolling, true).expect("config").config;
    assert!(!c.encrypt.verify_incoming && !c.encrypt.verify_outgoing);
}

#[test]
fn golden_hcl_matches_json() {
    let json =
        load_with(vec![testdata("full.json")], PartialConfig::default(), false).expect("json");
    let hcl = load_with(vec![testdata("full.hcl")], PartialConfig::default(), false).expect("hcl");
    let mut hcl_config = hcl.config;
    hcl_config.config_files = json.config.config_files.clone();
    assert_eq!(hcl_config, json.config);
}

#[test]
fn defaults_are_consuls() {
    let flags = PartialConfig {
        data_dir: Some("/tmp/d".into()),
        ..PartialConfig::default()
    };
    let c = load_with(Vec::new(), flags, false).expect("load").config;
    assert_eq!(c.node_name, "host-1");
    assert_eq!(c.node_id, "00000000-0000-4000-8000-000000000001");
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.client_addr, ip("127.0.0.1"));
    assert_eq!(c.bind_addr, ip("0.0.0.0"));
    assert_eq!(c.advertise_addr, ip("10.1.1.1"), "the private IPv4 address");
    assert_eq!(
        (
            c.ports.http,
            c.ports.dns,
            c.ports.server,
            c.ports.serf_lan,
            c.ports.serf_wan,
            c.ports.grpc
        ),
        (8500, 8600, 8300, 8301, 8302, 0)
    );
    assert!(!c.server);
    assert_eq!(c.dns.domain, "consul.");
    assert_eq!(c.dns.udp_answer_limit, 3);
    assert!(c.dns.allow_stale);
    assert_eq!(c.raft.snapshot_threshold, 16384);
    assert_eq!(c.raft.snapshot_interval, Duration::from_secs(30));
    assert_eq!(c.raft.trailing_logs, 10240);
    assert_eq!(c.raft.multiplier, 5);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.join.retry_interval, Duration::from_secs(30));
}

#[test]
fn dev_mode() {
    let c = load_with(Vec::new(), PartialConfig::default(), true)
        .expect("load")
        .config;
    assert!(c.dev && c.server && c.bootstrap && c.ui);
    assert_eq!(c.storage, Storage::InMemory);
    assert_eq!(c.node_name, "host-1");
    assert_eq!(c.http_addr(), "127.0.0.1:8500".parse().expect("addr"));
    assert_eq!(c.ports.dns, 8600);
    assert_eq!(c.ports.grpc, 8502);
    assert_eq!(c.advertise_addr, ip("127.0.0.1"));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.raft.multiplier, 1);

    let server = to_server_config(&c);
    assert!(server.dev);
    assert_eq!(server.bootstrap_expect, 1);
    assert_eq!(server.data_dir, None);
    assert_eq!(server.http_addr(), "127.0.0.1:8500".parse().expect("addr"));
}

#[test]
fn flags_override_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.hcl");
    std::fs::write(
        &file,
        "node_name = \"from-file\"\ndata_dir = \"/d\"\nretry_join = [\"a\"]\nports {\n  http = 1\n}\n",
    )
    .expect("write");
    let mut flags = PartialConfig {
        node_name: Some("from-flag".to_string()),
        retry_join: vec!["b".to_string()],
        ..PartialConfig::default()
    };
    flags.ports.http = Some(2);
    let c = load_with(vec![file], flags, false).expect("load").config;
    assert_eq!(c.node_name, "from-flag");
    assert_eq!(c.ports.http, 2);
    assert_eq!(c.join.retry_join, ["a", "b"]);
    assert_eq!(c.storage, Storage::Directory("/d".into()));
}

#[test]
fn later_files_override_earlier_and_dirs_are_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("b.json"),
        r#"{"node_name": "b", "data_dir": "/x"}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("a.hcl"),
        "node_name = \"a\"\nserver = true\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    let c = load_with(
        vec![dir.path().to_path_buf()],
        PartialConfig::default(),
        false,
    )
    .expect("load")
    .config;
    assert_eq!(c.node_name, "b");
    assert!(c.server);
    assert_eq!(c.config_files.len(), 2);
}

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.hcl");
    std::fs::write(&file, "server = true\nfoo = \"bar\"\n").expect("write");
    let err = load_with(vec![file.clone()], PartialConfig::default(), false).expect_err("foo");
    assert_eq!(
        err.to_string(),
        format!("config: unknown key \"foo\" in {}", file.display())
    );
    let json = dir.path().join("y.json");
    std::fs::write(&json, r#"{"dns_config": {"bogus": 1}}"#).expect("write");
    let err = load_with(vec![json.clone()], PartialConfig::default(), false).expect_err("bogus");
    assert_eq!(
        err.to_string(),
        format!(
            "config: unknown key \"dns_config.bogus\" in {}",
            json.display()
        )
    );
}

#[test]
fn validation_messages_follow_consul() {
    let cases: Vec<(serde_json::Value, bool, &str)> = vec![
        (json!({}), false, "data_dir cannot be empty"),
        (
            json!({"data_dir": "/d", "bootstrap_expect": 3}),
            false,
            "'bootstrap_expect > 0' requires 'server = true'",
        ),
        (
            json!({"data_dir": "/d", "server": true, "bootstrap": true, "bootstrap_expect": 3}),
            false,
            "mutually exclusive",
        ),
        (
            json!({"data_dir": "/d", "bootstrap": true}),
            false,
            "'bootstrap = true' requires 'server = true'",
        ),
        (
            json!({"bootstrap_expect": 3}),
            true,
            "not allowed in dev mode",
        ),
        (
            json!({"data_dir": "/d", "datacenter": "dc 1"}),
            false,
            "datacenter can only contain",
        ),
        (
            json!({"data_dir": "/d", "node_id": "nope"}),
            false,
            "node_id \"nope\" is not a valid UUID",
        ),
        (
            json!({"data_dir": "/d", "ports": {"http": 70000}}),
            false,
            "ports.http cannot be 70000",
        ),
        (
            json!({"data_dir": "/d", "performance": {"raft_multiplier": 11}}),
            false,
            "raft_multiplier cannot be 11",
        ),
        (
            json!({"data_dir": "/d", "log_level": "loud"}),
            false,
            "Invalid log level: loud",
        ),
        (
            json!({"data_dir": "/d", "node_meta": {"consul-x": "1"}}),
            false,
            "reserved",
        ),
        (
            json!({"data_dir": "/d", "advertise_addr": "0.0.0.0"}),
            false,
            "Advertise address cannot be",
        ),
        (
            json!({"data_dir": "/d", "bind_addr": "{{ GetPrivateIP }}"}),
            false,
            "bind_addr",
        ),
        (
            json!({"data_dir": "/d", "recursors": ["nope"]}),
            false,
            "recursors",
        ),
    ];
    for (value, dev, expected) in cases {
        let text = value.to_string();
        let source = source::parse_source(&text, Format::Json, "t.json").expect("parse");
        let err = build(dev, vec![source], Vec::new(), &env()).expect_err(&text);
        assert!(
            err.to_string().contains(expected),
            "{text}: {err} does not contain {expected}"
        );
    }
}

#[test]
fn bootstrap_expect_one_is_bootstrap() {
    let source = source::parse_source(
        r#"{"data_dir": "/d", "server": true, "bootstrap_expect": 1}"#,
        Format::Json,
        "t.json",
    )
    .expect("parse");
    let built = build(false, vec![source], Vec::new(), &env()).expect("build");
    assert!(built.config.bootstrap);
    assert_eq!(built.config.bootstrap_expect, 0);
    assert_eq!(to_server_config(&built.config).bootstrap_expect, 1);
}

#[test]
fn multiple_private_addresses_need_bind() {
    let many = FakeEnv {
        addrs: vec![ip("10.0.0.1"), ip("192.168.0.1")],
    };
    let source = source::parse_source(r#"{"data_dir": "/d"}"#, Format::Json, "t").expect("parse");
    let err = build(false, vec![source.clone()], Vec::new(), &many).expect_err("many");
    assert!(err.to_string().contains("Multiple private IPv4 addresses"));
    let mut bound = source;
    bound.bind_addr = Some("192.168.0.1".to_string());
    let c = build(false, vec![bound], Vec::new(), &many)
        .expect("bound")
        .config;
    assert_eq!(c.advertise_addr, ip("192.168.0.1"));
}

#[test]
fn server_config_conversion() {
    let c = load_with(vec![testdata("full.json")], PartialConfig::default(), false)
        .expect("load")
        .config;
    let s = to_server_config(&c);
    assert_eq!(s.node_name, "node-a");
    assert_eq!(s.datacenter, "east-1");
    assert!(s.server && !s.dev);
    assert_eq!(s.bootstrap_expect, 3);
    assert_eq!(s.data_dir, Some("/var/lib/registry".into()));
    assert_eq!(s.bind_addr, ip("10.0.0.6"));
    assert_eq!(s.client_addr, ip("0.0.0.0"));
    assert_eq!((s.http_port, s.dns_port, s.server_port), (18500, 0, 18300));
    assert_eq!((s.serf_lan_port, s.serf_wan_port), (18301, 18302));
    assert_eq!(s.retry_join, ["10.0.0.9", "10.0.0.7", "10.0.0.8"]);
    assert_eq!(s.raft_snapshot_threshold, 1000);
    assert_eq!(s.raft_snapshot_interval, Duration::from_secs(60));
    assert_eq!(s.raft_trailing_logs, 500);
    assert_eq!(s.node_meta.len(), 2);
}

#[test]
fn hcl_fragment_wins_over_flags() {
    let flags = PartialConfig {
        data_dir: Some("/d".into()),
        node_name: Some("flag".to_string()),
        ..PartialConfig::default()
    };
    let built = load(
        LoadOptions {
            flags,
            hcl: vec!["node_name = \"fragment\"".to_string()],
            ..LoadOptions::default()
        },
        &env(),
    )
    .expect("load");
    assert_eq!(built.config.node_name, "fragment");
}

#[test]
fn autopilot_block_seeds_the_server_config() {
    let opts = LoadOptions {
        dev: true,
        hcl: vec![r#"autopilot {
                 cleanup_dead_servers = false
                 last_contact_threshold = "1s"
                 max_trailing_logs = 500
                 min_quorum = 3
                 server_stabilization_time = "30s"
                 redundancy_zone_tag = "zone"
               }"#
        .to_string()],
        ..LoadOptions::default()
    };
    let c = load(opts, &env()).expect("load").config;
    let a = &c.autopilot;
    assert!(!a.cleanup_dead_servers);
    assert_eq!(a.last_contact_threshold, Duration::from_secs(1));
    assert_eq!(a.max_trailing_logs, 500);
    assert_eq!(a.min_quorum, 3);
    assert_eq!(a.server_stabilization_time, Duration::from_secs(30));
    assert_eq!(a.redundancy_zone_tag, "zone");
    assert!(!a.disable_upgrade_migration);
    assert_eq!(to_server_config(&c).autopilot, *a);

    // Unset: Consul's defaults.
    let d = load_with(Vec::new(), PartialConfig::default(), true)
        .expect("load")
        .config
        .autopilot;
    assert_eq!(d, runtime::AutopilotConfig::default());
    assert!(d.cleanup_dead_servers);
    assert_eq!(d.last_contact_threshold, Duration::from_millis(200));
    assert_eq!(d.max_trailing_logs, 250);
    assert_eq!(d.server_stabilization_time, Duration::from_secs(10));

    let bad = LoadOptions {
        dev: true,
        hcl: vec!["autopilot {\n bogus = 1\n}".to_string()],
        ..LoadOptions::default()
    };
    let err = load(bad, &env()).expect_err("unknown key");
    assert!(err.to_string().contains("autopilot.bogus"), "{err}");
}

#[test]
fn gossip_and_leave_settings() {
    let client = PartialConfig {
        data_dir: Some("/tmp/d".into()),
        ..PartialConfig::default()
    };
    let client = load_with(Vec::new(), client, false).expect("load").config;
    assert_eq!(client.gossip.interval, Duration::from_millis(200));
    assert_eq!(
        client.gossip.reconnect_timeout,
        Duration::from_secs(72 * 3600)
    );
    assert!(client.gossip.leave_on_terminate, "clients leave on SIGTERM");
    assert!(!client.gossip.skip_leave_on_interrupt);
    assert!(!client.gossip.rejoin_after_leave);

    let server = PartialConfig {
        server: Some(true),
        data_dir: Some("/tmp/d".into()),
        gossip_interval: Some(Duration::from_millis(500)),
        rejoin_after_leave: Some(true),
        ..PartialConfig::default()
    };
    let server = load_with(Vec::new(), server, false).expect("load").config;
    assert!(!server.gossip.leave_on_terminate);
    assert!(
        server.gossip.skip_leave_on_interrupt,
        "servers stay on SIGINT"
    );
    assert!(server.gossip.rejoin_after_leave);
    assert_eq!(server.gossip.interval, Duration::from_millis(500));

    let short = PartialConfig {
        data_dir: Some("/tmp/d".into()),
        reconnect_timeout: Some(Duration::from_secs(3600)),
        ..PartialConfig::default()
    };
    let e = load_with(Vec::new(), short, false).expect_err("below 8h");
    assert!(
        e.to_string().contains("reconnect_timeout must be >= 8h"),
        "{e}"
    );
}
