//! The `registry` command line, mirroring Consul's: `agent`, `members`, `kv`, `catalog`,
//! `snapshot`, `operator`, `services`, `maint`, `watch`, `monitor`, `debug`, `leave`, `info`
//! and `version`, with Go-style single-dash flags (see [`dash`]); `k8s-sync` hands over to the
//! k8s-sync executable ([`k8s_sync`]).

pub mod acl;
pub mod acl_auth;
pub mod acl_show;
pub mod agent;
pub mod agent_flags;
pub mod autopilot_state;
pub mod catalog;
pub mod config_entry;
pub mod dash;
pub mod debug;
pub mod gossip;
pub mod http;
pub mod k8s_sync;
pub mod keyring;
pub mod kv;
pub mod kv_transfer;
pub mod lock;
pub mod maint;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod ops;
pub mod rtt;
pub mod services;
pub mod snapshot;
pub mod table;
pub mod tls;
pub mod ui;
pub mod validate;
pub mod watch;

#[cfg(test)]
mod tests;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The `registry` command.
#[derive(Parser, Debug)]
#[command(
    name = "registry",
    about = "A Consul-compatible service registry: agent and command-line client.",
    disable_version_flag = true,
    after_help = "Flags take one dash or two (-server, --server); values follow an '=' or come \
                  as the next argument (-bootstrap-expect=3, -bootstrap-expect 3). Boolean \
                  flags accept -flag=false. Client commands read CONSUL_HTTP_ADDR, \
                  CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT and \
                  CONSUL_HTTP_SSL (or the same names with REGISTRY_ for CONSUL_). \
                  `registry k8s-sync [flags]` runs the Kubernetes sync (the k8s-sync \
                  executable installed next to registry; `registry k8s-sync -help`)."
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs an agent (server or client) until interrupted.
    Agent(Box<agent::AgentArgs>),
    /// Lists the members of the cluster.
    Members(members::MembersArgs),
    /// Estimates the network round-trip time between two nodes.
    Rtt(rtt::RttArgs),
    /// Reads and writes the key-value store.
    Kv {
        /// The KV operation.
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// Runs a command while holding a lock (or, with -n, a semaphore slot) on a KV prefix.
    Lock(lock::LockArgs),
    /// Lists catalog services, nodes and datacenters.
    Catalog {
        /// The catalog listing.
        #[command(subcommand)]
        command: catalog::CatalogCommand,
    },
    /// Writes, reads, lists and deletes config entries.
    Config {
        /// The config entry operation.
        #[command(subcommand)]
        command: config_entry::ConfigCommand,
    },
    /// Saves, restores and inspects snapshots of the servers' state.
    Snapshot {
        /// The snapshot operation.
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Operator tools for the servers: the Raft peer set (list-peers, remove-peer,
    /// transfer-leader), the autopilot configuration (get-config, set-config) and
    /// autopilot's view of the servers (state).
    Operator {
        /// The operator area.
        #[command(subcommand)]
        command: operator::OperatorCommand,
    },
    /// Registers and deregisters services with the local agent.
    Services {
        /// The services operation.
        #[command(subcommand)]
        command: services::ServicesCommand,
    },
    /// Controls node or service maintenance mode.
    Maint(maint::MaintArgs),
    /// Tells the local agent to join a cluster through the given addresses.
    Join(ops::JoinArgs),
    /// Gracefully leaves the cluster and shuts the agent down.
    Leave(ops::LeaveArgs),
    /// Checks configuration files and directories as the agent reads them at start.
    Validate(validate::ValidateArgs),
    /// Tells the local agent to re-read its configuration files.
    Reload(ops::ReloadArgs),
    /// Fires a user event to every agent of the datacenter.
    Event(gossip::EventArgs),
    /// Forces a failed member out of the cluster (left; with -prune, forgotten).
    #[command(name = "force-leave")]
    ForceLeave(gossip::ForceLeaveArgs),
    /// Generates a new gossip encryption key (32 bytes, base64).
    Keygen,
    /// Manages gossip layer encryption keys.
    Keyring(keyring::KeyringArgs),
    /// Prints debugging information about the agent.
    Info(ops::InfoArgs),
    /// Watches a key, a key prefix, the services or nodes, one service's instances, checks
    /// or user events, and runs a handler (the data as JSON on its standard input) on every
    /// change; without a handler, prints the current data as JSON and exits.
    Watch(watch::WatchArgs),
    /// Streams the agent's log at a chosen level until interrupted.
    Monitor(monitor::MonitorArgs),
    /// Captures the agent's state, metrics and log for a while into an archive for
    /// debugging.
    Debug(debug::DebugArgs),
    /// Manages ACL tokens, policies and roles, and bootstraps the ACL system.
    Acl {
        /// The ACL area.
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// Creates a certificate authority and agent certificates for TLS.
    Tls {
        /// The TLS area.
        #[command(subcommand)]
        command: tls::TlsCommand,
    },
    /// Exchanges a bearer token for an ACL token through an auth method.
    Login(acl_auth::LoginArgs),
    /// Destroys the ACL token a `login` created.
    Logout(acl::Common),
    /// Prints the registry version.
    Version(ops::VersionArgs),
    /// Exits 0 once the agent knows a Raft leader (`/v1/status/leader`, which needs no ACL
    /// token), else 1: the Kubernetes readiness probe of the Helm chart.
    #[command(hide = true)]
    Ready(ops::LeaveArgs),
}

/// Go's `strconv.ParseBool`, as a clap value parser for boolean flags.
pub fn go_bool(text: &str) -> Result<bool, String> {
    crate::config::partial::parse_bool(text)
        .ok_or_else(|| format!("invalid boolean value {text:?}"))
}

/// The parsed command line and the raw matches (for argument order).
pub fn parse(args: &[String]) -> Result<(Cli, clap::ArgMatches), clap::Error> {
    let mut command = Cli::command();
    command.build();
    let normalized = dash::normalize_args(&command, args);
    let matches = command.try_get_matches_from(normalized)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

/// Runs the command line and returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    if args.get(1).map(String::as_str) == Some("k8s-sync") {
        return k8s_sync::run(&args[2..]);
    }
    let (cli, matches) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
        }
    };
    match cli.command {
        Command::Agent(args) => agent::run(&args, matches.subcommand_matches("agent")),
        Command::Validate(args) => validate::run(&args),
        Command::Version(args) => ops::version(&args),
        Command::Tls { command } => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            tls::run(command, &mut ui::Ui::new(&mut out, &mut err))
        }
        Command::Keygen => keyring::keygen(),
        other => run_client(other),
    }
}

/// Runs an HTTP client command on a small runtime, writing to stdout and stderr.
fn run_client(command: Command) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut ui = ui::Ui::new(&mut out, &mut err);
    runtime.block_on(async {
        match command {
            Command::Members(args) => members::run(args, &mut ui).await,
            Command::Rtt(args) => rtt::run(args, &mut ui).await,
            Command::Join(args) => ops::join(args, &mut ui).await,
            Command::Kv { command } => kv::run(command, &mut ui).await,
            Command::Lock(args) => lock::run(args, &mut ui).await,
            Command::Catalog { command } => catalog::run(command, &mut ui).await,
            Command::Config { command } => config_entry::run(command, &mut ui).await,
            Command::Snapshot { command } => snapshot::run(command, &mut ui).await,
            Command::Operator { command } => operator::run(command, &mut ui).await,
            Command::Leave(args) => ops::leave(args, &mut ui).await,
            Command::Ready(args) => ops::ready(args, &mut ui).await,
            Command::Event(args) => gossip::event(args, &mut ui).await,
            Command::ForceLeave(args) => gossip::force_leave(args, &mut ui).await,
            Command::Info(args) => ops::info(args, &mut ui).await,
            Command::Watch(args) => watch::run(args, &mut ui).await,
            Command::Monitor(args) => monitor::run(args, &mut ui).await,
            Command::Debug(args) => debug::run(args, &mut ui).await,
            Command::Services { command } => services::run(command, &mut ui).await,
            Command::Maint(args) => maint::run(args, &mut ui).await,
            Command::Reload(args) => ops::reload(args, &mut ui).await,
            Command::Acl { command } => acl::run(command, &mut ui).await,
            Command::Keyring(args) => keyring::run(args, &mut ui).await,
            Command::Login(args) => acl_auth::login(args, &mut ui).await,
            Command::Logout(args) => acl_auth::logout(args, &mut ui).await,
            Command::Agent(_)
            | Command::Version(_)
            | Command::Validate(_)
            | Command::Tls { .. }
            | Command::Keygen => 1,
        }
    })
}
