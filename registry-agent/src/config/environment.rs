//! What the configuration needs from the host: its name, its interface addresses and the
//! persisted node ID. A trait, so that tests can supply a fixed host.

use super::error::ConfigError;
use super::runtime::Storage;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Host facts used while building a `RuntimeConfig`.
pub trait Environment {
    /// The host name, if it can be read.
    fn hostname(&self) -> Option<String>;
    /// Addresses of the host's non-loopback interfaces.
    fn interface_addrs(&self) -> Vec<IpAddr>;
    /// The node ID kept with the storage: read, or created and saved on first start.
    fn stored_node_id(&self, storage: &Storage) -> Result<String, ConfigError>;
}

/// The real host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn hostname(&self) -> Option<String> {
        hostname::get().ok()?.into_string().ok()
    }

    fn interface_addrs(&self) -> Vec<IpAddr> {
        if_addrs::get_if_addrs()
            .map(|interfaces| {
                interfaces
                    .into_iter()
                    .filter(|i| !i.is_loopback())
                    .map(|i| i.ip())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stored_node_id(&self, storage: &Storage) -> Result<String, ConfigError> {
        match storage {
            Storage::InMemory => Ok(uuid::Uuid::new_v4().to_string()),
            Storage::Directory(dir) => load_or_create_node_id(dir),
        }
    }
}

/// Reads `<dir>/node-id`, or writes a new random UUID there (durably: see
/// [`write_atomic`](crate::agent::persist::write_atomic)). An empty file is a creation that
/// never reached the disk (a power loss before the sync, from versions that did not sync it)
/// and is replaced like a missing one.
pub fn load_or_create_node_id(dir: &Path) -> Result<String, ConfigError> {
    let file = dir.join("node-id");
    let io = |source| ConfigError::Io {
        path: file.clone(),
        source,
    };
    let stored = match std::fs::read_to_string(&file) {
        Ok(text) if text.trim().is_empty() => {
            tracing::warn!(path = %file.display(), "node ID file is empty; writing a new node ID");
            Err(std::io::ErrorKind::NotFound.into())
        }
        other => other,
    };
    match stored {
        Ok(text) => {
            let id = text.trim();
            uuid::Uuid::parse_str(id)
                .map(|uuid| uuid.to_string())
                .map_err(|_| {
                    ConfigError::invalid(format!("node ID in {:?} is not a UUID: {id:?}", file))
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            crate::agent::persist::write_atomic(dir, "node-id", id.as_bytes()).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// Private (RFC 6890, not globally routable) IPv4 ranges, as Consul's `GetPrivateIP` uses.
const PRIVATE_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
];

/// Whether an IPv4 address is in a private range.
pub fn is_private_v4(ip: Ipv4Addr) -> bool {
    PRIVATE_V4.iter().any(|(net, bits)| {
        let mask = u32::MAX << (32 - u32::from(*bits));
        u32::from(ip) & mask == u32::from(*net)
    })
}

/// The host's single private IPv4 address, with Consul's errors when there are none or many.
pub fn private_ipv4(addrs: &[IpAddr]) -> Result<IpAddr, ConfigError> {
    let mut found: Vec<IpAddr> = Vec::new();
    for addr in addrs {
        if let IpAddr::V4(v4) = addr {
            if is_private_v4(*v4) && !found.contains(addr) {
                found.push(*addr);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ConfigError::invalid(
            "No private IPv4 address found. Please configure one with 'bind' and/or 'advertise'.",
        )),
        _ => Err(ConfigError::invalid(format!(
            "Multiple private IPv4 addresses found ({}). Please configure one with 'bind' and/or 'advertise'.",
            found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The host's single public IPv6 address, for `bind_addr = "::"`.
pub fn public_ipv6(addrs: &[IpAddr]) -> Result<IpAddr, ConfigError> {
    let mut found: Vec<IpAddr> = Vec::new();
    for addr in addrs {
        if let IpAddr::V6(v6) = addr {
            let segment = v6.segments()[0];
            let link_local = segment & 0xffc0 == 0xfe80;
            let unique_local = segment & 0xfe00 == 0xfc00;
            if !v6.is_loopback() && !link_local && !unique_local && !found.contains(addr) {
                found.push(*addr);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ConfigError::invalid("No public IPv6 address found")),
        _ => Err(ConfigError::invalid(
            "Multiple public IPv6 addresses found. Please configure one with 'bind' and/or 'advertise'.",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn picks_the_single_private_address() {
        let addrs = [ip("8.8.8.8"), ip("10.1.2.3"), ip("fe80::1")];
        assert_eq!(private_ipv4(&addrs).expect("one"), ip("10.1.2.3"));
        assert!(private_ipv4(&[ip("8.8.8.8")]).is_err());
        let many = private_ipv4(&[ip("10.0.0.1"), ip("192.168.1.1")]).expect_err("many");
        assert!(many.to_string().contains("Multiple private IPv4"));
        assert!(is_private_v4("172.31.255.255".parse().expect("ip")));
        assert!(!is_private_v4("172.32.0.1".parse().expect("ip")));
    }

    #[test]
    fn node_id_is_created_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("data");
        let first = load_or_create_node_id(&sub).expect("create");
        let second = load_or_create_node_id(&sub).expect("reuse");
        assert_eq!(first, second);
        assert!(
            !sub.join("node-id.tmp").exists(),
            "written through a renamed temporary"
        );
        std::fs::write(sub.join("node-id"), "junk").expect("write");
        assert!(load_or_create_node_id(&sub).is_err());
    }

    /// A power loss right after the file was created leaves it empty (found by jepsen's
    /// lose-unsynced nemesis): the agent writes a new ID instead of refusing to start.
    #[test]
    fn an_empty_node_id_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("node-id"), "").expect("write");
        let id = load_or_create_node_id(dir.path()).expect("replaced");
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        let stored = std::fs::read_to_string(dir.path().join("node-id")).expect("read");
        assert_eq!(stored, id);
        assert_eq!(load_or_create_node_id(dir.path()).expect("reuse"), id);
    }
}
