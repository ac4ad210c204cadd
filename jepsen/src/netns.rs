//! The test network: one network namespace per server (`jepsen-n1` ... `jepsen-n5`, address
//! `10.77.0.i/24` on its `eth0`) and a control namespace `jepsen-ctl` holding the bridge
//! `jbr` (address `10.77.0.254`) that every server's veth pair plugs into. The test's clients
//! run inside the control namespace, so nothing is added to the host's own network: the
//! addresses exist only inside these namespaces.
//!
//! With `--agents N`, client agents get machines of their own too (`jepsen-a1` ...,
//! `10.77.0.101` ...), and the clients talk to them instead of the servers.
//!
//! Partitions are `iptables` rules in each server's namespace that drop packets from the
//! servers it must not hear (traffic from the control address always passes, so clients keep
//! reaching every server, like Jepsen's control node). Everything here is torn down at exit,
//! and again at start if an earlier run was killed before it could clean up.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Prefix of every namespace this module creates.
pub const PREFIX: &str = "jepsen-";
/// The control namespace (bridge and clients).
pub const CTL: &str = "jepsen-ctl";
/// Address of the control namespace on the bridge.
pub const CTL_ADDR: &str = "10.77.0.254";

/// Namespace of server `i` (1-based).
pub fn ns(i: usize) -> String {
    format!("{PREFIX}n{i}")
}

/// Address of server `i` (1-based).
pub fn addr(i: usize) -> String {
    format!("10.77.0.{i}")
}

/// Namespace of client agent `j` (1-based): a machine of its own, as in production.
pub fn agent_ns(j: usize) -> String {
    format!("{PREFIX}a{j}")
}

/// Address of client agent `j` (1-based).
pub fn agent_addr(j: usize) -> String {
    format!("10.77.0.{}", 100 + j)
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `args` inside namespace `name`.
pub fn in_ns(name: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["netns", "exec", name];
    all.extend_from_slice(args);
    sh("ip", &all)
}

/// Namespaces left by this harness.
fn ours() -> Result<Vec<String>> {
    let list = sh("ip", &["netns", "list"])?;
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect())
}

/// Kills every process in this harness's namespaces and deletes the namespaces (and with them
/// the veth pairs and the bridge).
pub fn cleanup() -> Result<()> {
    for name in ours()? {
        if let Ok(pids) = sh("ip", &["netns", "pids", &name]) {
            for pid in pids.split_whitespace() {
                let _ = sh("kill", &["-CONT", pid]);
                let _ = sh("kill", &["-KILL", pid]);
            }
        }
        // Processes take a moment to die; deleting the name does not wait for them.
        sh("ip", &["netns", "delete", &name])?;
    }
    Ok(())
}

/// Creates the control namespace with its bridge, `servers` server namespaces and `agents`
/// client-agent namespaces.
pub fn setup(servers: usize, agents: usize) -> Result<()> {
    cleanup()?;
    sh("ip", &["netns", "add", CTL])?;
    in_ns(CTL, &["ip", "link", "set", "lo", "up"])?;
    sh("ip", &["-n", CTL, "link", "add", "jbr", "type", "bridge"])?;
    sh(
        "ip",
        &[
            "-n",
            CTL,
            "addr",
            "add",
            &format!("{CTL_ADDR}/24"),
            "dev",
            "jbr",
        ],
    )?;
    sh("ip", &["-n", CTL, "link", "set", "jbr", "up"])?;
    let machines = (1..=servers)
        .map(|i| (ns(i), format!("jv{i}"), addr(i)))
        .chain((1..=agents).map(|j| (agent_ns(j), format!("ja{j}"), agent_addr(j))));
    for (name, veth, address) in machines {
        sh("ip", &["netns", "add", &name])?;
        sh(
            "ip",
            &[
                "-n", CTL, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ],
        )?;
        sh("ip", &["-n", CTL, "link", "set", &veth, "master", "jbr"])?;
        sh("ip", &["-n", CTL, "link", "set", &veth, "up"])?;
        sh(
            "ip",
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ],
        )?;
        sh("ip", &["-n", &name, "link", "set", "eth0", "up"])?;
        sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Makes server `i` drop every packet from the servers in `from` (replacing earlier rules).
pub fn block(i: usize, from: &BTreeSet<usize>) -> Result<()> {
    let name = ns(i);
    in_ns(&name, &["iptables", "-w", "-F", "INPUT"])?;
    for j in from {
        in_ns(
            &name,
            &[
                "iptables",
                "-w",
                "-A",
                "INPUT",
                "-s",
                &addr(*j),
                "-j",
                "DROP",
            ],
        )?;
    }
    Ok(())
}

/// Removes every partition rule.
pub fn heal(servers: usize) -> Result<()> {
    for i in 1..=servers {
        in_ns(&ns(i), &["iptables", "-w", "-F", "INPUT"])?;
    }
    Ok(())
}
