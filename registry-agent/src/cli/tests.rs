//! Command-line parsing: single-dash and double-dash flags, `=` and separate values, Go
//! boolean forms, flag order of config paths, positional arguments after the first one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn argv(line: &str) -> Vec<String> {
    std::iter::once("registry")
        .chain(line.split_whitespace())
        .map(String::from)
        .collect()
}

fn agent(line: &str) -> (agent::AgentArgs, clap::ArgMatches) {
    let (cli, matches) = parse(&argv(line)).expect(line);
    match cli.command {
        Command::Agent(args) => {
            let sub = matches.subcommand_matches("agent").cloned().expect("agent");
            (*args, sub)
        }
        other => panic!("not agent: {other:?}"),
    }
}

#[test]
fn single_dash_and_equals_forms_agree() {
    let forms = [
        "agent -server -bootstrap-expect 3 -data-dir /d -node n1 -bind 10.0.0.1",
        "agent -server -bootstrap-expect=3 -data-dir=/d -node=n1 -bind=10.0.0.1",
        "agent --server --bootstrap-expect 3 --data-dir /d --node n1 --bind 10.0.0.1",
        "agent --server=true --bootstrap-expect=3 --data-dir=/d --node=n1 --bind=10.0.0.1",
    ];
    for line in forms {
        let (args, _) = agent(line);
        assert_eq!(args.server, Some(true), "{line}");
        assert_eq!(args.bootstrap_expect, Some(3), "{line}");
        assert_eq!(args.data_dir, Some(PathBuf::from("/d")), "{line}");
        assert_eq!(args.node.as_deref(), Some("n1"), "{line}");
        assert_eq!(args.bind.as_deref(), Some("10.0.0.1"), "{line}");
    }
}

#[test]
fn every_agent_flag_parses() {
    let line = "agent -dev -server -bootstrap -bootstrap-expect 2 -data-dir /d -node n \
        -node-id 9f0e8bd1-5c3c-4b4c-9a3f-1f2e3d4c5b6a -bind 10.0.0.1 -client 0.0.0.0 \
        -advertise 10.0.0.2 -http-port 1 -dns-port -1 -server-port 3 -serf-lan-port 4 \
        -serf-wan-port 5 -grpc-port 6 -datacenter dc2 -domain reg -config-file a.json \
        -config-dir conf.d -config-format hcl -log-level debug -log-json -retry-join x \
        -retry-join y -retry-join-wan w -join j -retry-interval 5s -retry-max 3 -ui \
        -node-meta rack:r1 -node-meta zone:z:1 -recursor 8.8.8.8 -encrypt abc \
        -hcl server=true";
    let (args, _) = agent(line);
    assert_eq!(args.dev, Some(true));
    assert_eq!(args.bootstrap, Some(true));
    assert_eq!(args.dns_port, Some(-1));
    assert_eq!(
        (
            args.http_port,
            args.server_port,
            args.serf_lan_port,
            args.serf_wan_port,
            args.grpc_port
        ),
        (Some(1), Some(3), Some(4), Some(5), Some(6))
    );
    assert_eq!(args.config_format.as_deref(), Some("hcl"));
    assert_eq!(args.log_json, Some(true));
    assert_eq!(args.retry_join, ["x", "y"]);
    assert_eq!(args.retry_join_wan, ["w"]);
    assert_eq!(args.join, ["j"]);
    assert_eq!(args.retry_interval, Some(Duration::from_secs(5)));
    assert_eq!(args.retry_max, Some(3));
    assert_eq!(args.ui, Some(true));
    assert_eq!(args.recursor, ["8.8.8.8"]);
    assert_eq!(args.encrypt.as_deref(), Some("abc"));
    assert_eq!(args.hcl, ["server=true"]);
    let partial = args.to_partial();
    assert_eq!(
        partial.node_meta.get("rack").map(String::as_str),
        Some("r1")
    );
    assert_eq!(
        partial.node_meta.get("zone").map(String::as_str),
        Some("z:1")
    );
    assert_eq!(partial.start_join, ["j"]);
    assert_eq!(partial.ports.dns, Some(-1));
    assert_eq!(partial.datacenter.as_deref(), Some("dc2"));
}

#[test]
fn booleans_take_go_forms() {
    let (args, _) = agent("agent -server=false -ui=1 -bootstrap=F");
    assert_eq!(args.server, Some(false));
    assert_eq!(args.ui, Some(true));
    assert_eq!(args.bootstrap, Some(false));
    let (args, _) = agent("agent");
    assert_eq!(args.server, None, "an absent flag leaves the file's value");
    assert!(parse(&argv("agent -server=maybe")).is_err());
}

#[test]
fn a_bool_flag_does_not_swallow_the_next_flag() {
    let (args, _) = agent("agent -dev -node x");
    assert_eq!(args.dev, Some(true));
    assert_eq!(args.node.as_deref(), Some("x"));
}

#[test]
fn config_paths_keep_command_line_order() {
    let (args, matches) =
        agent("agent -config-dir d1 -config-file f1 -config-dir d2 -config-file=f2");
    assert_eq!(
        args.config_paths(Some(&matches)),
        ["d1", "f1", "d2", "f2"].map(PathBuf::from)
    );
}

#[test]
fn unknown_flags_fail() {
    let err = parse(&argv("agent -bogus")).expect_err("unknown flag");
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    assert!(parse(&argv("agent -bootstrap-expect three")).is_err());
}

#[test]
fn kv_flags_and_positionals() {
    let (cli, _) = parse(&argv("kv put -cas -modify-index=12 -flags 42 app/key -")).expect("put");
    let Command::Kv {
        command: kv::KvCommand::Put(put),
    } = cli.command
    else {
        panic!("not kv put")
    };
    let debug = format!("{put:?}");
    assert!(debug.contains("cas: Some(true)"), "{debug}");
    assert!(debug.contains("modify_index: 12"), "{debug}");
    assert!(debug.contains("flags: 42"), "{debug}");
    assert!(debug.contains("args: [\"app/key\", \"-\"]"), "{debug}");

    let (cli, _) = parse(&argv(
        "kv get -recurse -separator=: -http-addr 127.0.0.1:18500 app",
    ))
    .expect("get");
    let debug = format!("{:?}", cli.command);
    assert!(debug.contains("recurse: Some(true)"), "{debug}");
    assert!(debug.contains("separator: \":\""), "{debug}");
    assert!(debug.contains("127.0.0.1:18500"), "{debug}");
    assert!(debug.contains("args: [\"app\"]"), "{debug}");

    // As in Go, flags after the first positional argument are data, not flags.
    let (cli, _) = parse(&argv("kv put key -value-with-dash")).expect("dash value");
    assert!(format!("{:?}", cli.command).contains("args: [\"key\", \"-value-with-dash\"]"));

    let (cli, _) = parse(&argv("kv delete -recurse --cas=false prefix/")).expect("delete");
    let debug = format!("{:?}", cli.command);
    assert!(debug.contains("recurse: Some(true)") && debug.contains("cas: Some(false)"));
}

#[test]
fn client_commands_parse() {
    for line in [
        "members",
        "members -detailed -status=alive -wan",
        "catalog services -tags -node n1",
        "catalog nodes -detailed -service=web -node-meta a=b",
        "catalog datacenters",
        "leave -http-addr=http://127.0.0.1:8500",
        "info --http-addr 127.0.0.1:8500",
        "version",
        "-version",
        "--version",
        "-v",
    ] {
        assert!(parse(&argv(line)).is_ok(), "{line}");
    }
    let (cli, _) = parse(&argv("-v")).expect("-v");
    assert!(matches!(cli.command, Command::Version(_)));
}

#[test]
fn help_is_a_help_request() {
    for line in ["agent -help", "agent --help", "agent -h", "kv put -help"] {
        let err = parse(&argv(line)).expect_err(line);
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
    }
    let help = Cli::command()
        .find_subcommand_mut("agent")
        .map(|c| c.render_long_help().to_string())
        .unwrap_or_default();
    for flag in [
        "--bootstrap-expect",
        "--retry-join",
        "--config-dir",
        "--node-meta",
        "--dev",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn agent_flags_build_a_dev_config() {
    let (args, matches) = agent("agent -dev -node dev1 -http-port 18500");
    let options = args.load_options(Some(&matches));
    let built = crate::config::load(options, &crate::config::SystemEnvironment).expect("dev");
    assert!(built.config.dev);
    assert_eq!(built.config.node_name, "dev1");
    assert_eq!(built.config.ports.http, 18500);
}

#[test]
fn agent_without_data_dir_fails() {
    let (args, matches) = agent("agent -server -bind 127.0.0.1");
    let err = crate::config::load(
        args.load_options(Some(&matches)),
        &crate::config::SystemEnvironment,
    )
    .expect_err("no data dir");
    assert_eq!(err.to_string(), "config: data_dir cannot be empty");
}
