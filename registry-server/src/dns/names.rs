//! Query names: which domain a name belongs to and what it asks for.
//!
//! The forms follow Consul's `agent/dns.go` dispatch (lower-cased, labels scanned from the
//! right for the first keyword):
//!
//! | form | lookup |
//! |---|---|
//! | `<svc>.service[.<dc>].<domain>`, `…service.<dc>.dc.<domain>` | service |
//! | `<tag>.<svc>.service…` (`a.b.<svc>.service` is tag `a.b`) | service with a tag |
//! | `_<svc>._<tag>[.service][.<dc>].<domain>` (`_tcp` = any tag; `service` optional for SRV) | service |
//! | `<node>.node[.<dc>].<domain>` (dots join into one node name) | node |
//! | `<hex>.addr[.<dc>].<domain>` (8 or 32 hex digits; also `a.b.c.d.addr`) | fixed address |
//! | `<svc>.connect…`, `.ingress`, `.virtual` | parsed, not served (NXDOMAIN) |
//! | `<rev-ip>.in-addr.arpa.`, `<nibbles>.ip6.arpa.` | reverse (PTR) |
//! | the domain itself, `service.<domain>`, `node.<domain>`, `<dc>.<domain>` | empty non-terminal |
//!
//! The empty non-terminals answer NOERROR without data rather than Consul's NXDOMAIN, so
//! that resolvers applying RFC 8020 (NXDOMAIN means nothing below) or QNAME minimisation
//! keep asking for the names underneath.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which datacenter (or peer) a query names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// This server's datacenter (none given, or the local one by name).
    Local,
    /// Another datacenter, lower-case.
    Remote(String),
    /// A cluster peer (`<peer>.peer`), lower-case.
    Peer(String),
}

/// What a name inside the domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The domain itself or a name that only has names below it.
    EmptyNonTerminal,
    /// Instances of a service, optionally with one tag (both lower-case).
    Service {
        /// Service name.
        name: String,
        /// Tag filter.
        tag: Option<String>,
        /// Datacenter.
        locality: Locality,
    },
    /// A node by name (lower-case).
    Node {
        /// Node name.
        name: String,
        /// Datacenter.
        locality: Locality,
    },
    /// A prepared query by ID or name (lower-case).
    Query {
        /// Query ID or name.
        name: String,
        /// Datacenter.
        locality: Locality,
    },
    /// An address spelled in the name.
    Addr(IpAddr),
    /// A form this server parses but does not serve yet (prepared query, connect, ingress,
    /// virtual).
    Unsupported(&'static str),
    /// Nothing can exist under this name.
    Invalid,
}

/// Where a query name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Inside the domain (`alt` when it matched the alternate domain).
    Domain {
        /// The name was under `alt_domain`.
        alt: bool,
        /// What it asks for.
        lookup: Lookup,
    },
    /// Under `arpa.`: a reverse lookup; `None` when the name is not a full address.
    Reverse(Option<IpAddr>),
    /// Outside every domain served: recursors or REFUSED.
    External,
}

/// The domains served, as lower-case labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domains {
    /// Primary domain labels (`["consul"]`).
    pub primary: Vec<String>,
    /// Alternate domain labels (empty: none).
    pub alt: Vec<String>,
}

impl Domains {
    /// Parses `consul.` / `alt.example.` style strings; a trailing dot is optional.
    pub fn new(domain: &str, alt: &str) -> Domains {
        Domains {
            primary: split_domain(domain),
            alt: split_domain(alt),
        }
    }

    /// The domain as a dotted, fully qualified string.
    pub fn fqdn(&self, alt: bool) -> String {
        let labels = if alt { &self.alt } else { &self.primary };
        let mut s = String::new();
        for l in labels {
            s.push_str(l);
            s.push('.');
        }
        if s.is_empty() {
            s.push('.');
        }
        s
    }

    /// Labels of the response domain.
    pub fn labels(&self, alt: bool) -> &[String] {
        if alt {
            &self.alt
        } else {
            &self.primary
        }
    }
}

fn split_domain(d: &str) -> Vec<String> {
    d.trim_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .collect()
}

const TYPE_SRV: u16 = 33;

/// Routes a query name given as lower-case labels (leftmost first).
pub fn route(labels: &[&str], qtype: u16, domains: &Domains, local_dc: &str) -> Route {
    let ends_with = |d: &[String]| {
        !d.is_empty()
            && labels.len() >= d.len()
            && labels[labels.len() - d.len()..]
                .iter()
                .zip(d)
                .all(|(a, b)| *a == b.as_str())
    };
    let primary = ends_with(&domains.primary);
    let alt = ends_with(&domains.alt);
    let (alt, dlen) = match (primary, alt) {
        (true, true) if domains.alt.len() > domains.primary.len() => (true, domains.alt.len()),
        (true, _) => (false, domains.primary.len()),
        (false, true) => (true, domains.alt.len()),
        (false, false) => {
            if labels.last() == Some(&"arpa") {
                return Route::Reverse(parse_arpa(labels));
            }
            return Route::External;
        }
    };
    let lookup = parse_lookup(&labels[..labels.len() - dlen], qtype, local_dc);
    Route::Domain { alt, lookup }
}

/// The other datacenter a query name (lower-case wire format) asks about, if any.
pub fn remote_datacenter(
    qname_lower: &[u8],
    qtype: u16,
    domains: &Domains,
    local_dc: &str,
) -> Option<String> {
    let labels = super::wire::labels_of(qname_lower)?;
    match route(&labels, qtype, domains, local_dc) {
        Route::Domain {
            lookup:
                Lookup::Service {
                    locality: Locality::Remote(dc),
                    ..
                }
                | Lookup::Node {
                    locality: Locality::Remote(dc),
                    ..
                }
                | Lookup::Query {
                    locality: Locality::Remote(dc),
                    ..
                },
            ..
        } => Some(dc),
        _ => None,
    }
}

/// Parses the labels in front of the domain.
pub fn parse_lookup(labels: &[&str], qtype: u16, local_dc: &str) -> Lookup {
    if labels.is_empty() {
        return Lookup::EmptyNonTerminal;
    }
    let mut found = None;
    for i in (0..labels.len()).rev() {
        let l = labels[i];
        match l {
            "service" | "connect" | "virtual" | "ingress" | "node" | "query" | "addr" => {
                found = Some((l, &labels[..i], &labels[i + 1..]));
                break;
            }
            _ if qtype == TYPE_SRV && l.starts_with('_') => {
                found = Some(("service", &labels[..=i], &labels[i + 1..]));
                break;
            }
            _ => {}
        }
    }
    let Some((kind, parts, suffix)) = found else {
        return match parse_locality(labels, local_dc) {
            Some(_) => Lookup::EmptyNonTerminal,
            None => Lookup::Invalid,
        };
    };
    if kind == "addr" {
        return parse_addr(parts).map_or(Lookup::Invalid, Lookup::Addr);
    }
    let Some(locality) = parse_locality(suffix, local_dc) else {
        return Lookup::Invalid;
    };
    if parts.is_empty() {
        return Lookup::EmptyNonTerminal;
    }
    match kind {
        "service" => {
            let n = parts.len();
            let (name, tag) = if n == 2 && parts[0].starts_with('_') && parts[1].starts_with('_') {
                let tag = &parts[1][1..];
                let tag = (tag != "tcp").then(|| tag.to_string());
                (parts[0][1..].to_string(), tag)
            } else {
                let tag = (n >= 2).then(|| parts[..n - 1].join("."));
                (parts[n - 1].to_string(), tag)
            };
            if name.is_empty() || tag.as_deref() == Some("") {
                return Lookup::Invalid;
            }
            Lookup::Service {
                name,
                tag,
                locality,
            }
        }
        "node" => Lookup::Node {
            name: parts.join("."),
            locality,
        },
        "query" => Lookup::Query {
            name: parts.join("."),
            locality,
        },
        "connect" => Lookup::Unsupported("connect"),
        "ingress" => Lookup::Unsupported("ingress"),
        _ => Lookup::Unsupported("virtual"),
    }
}

/// `[]`, `[<dc>]`, and pairs of `<x>.dc` / `<x>.peer` / `<x>.port` (Consul's parseLocality).
fn parse_locality(labels: &[&str], local_dc: &str) -> Option<Locality> {
    let dc = |d: &str| {
        if d.eq_ignore_ascii_case(local_dc) {
            Locality::Local
        } else {
            Locality::Remote(d.to_string())
        }
    };
    match labels.len() {
        0 => Some(Locality::Local),
        1 => Some(dc(labels[0])),
        2 | 4 | 6 => {
            let (mut d, mut peer) = (None, None);
            for pair in labels.chunks(2) {
                match pair[1] {
                    "dc" => d = Some(pair[0]),
                    "peer" => peer = Some(pair[0]),
                    "port" => {}
                    _ => return None,
                }
            }
            match (d, peer) {
                (Some(_), Some(_)) => None,
                (_, Some(p)) => Some(Locality::Peer(p.to_string())),
                (Some(x), None) => Some(dc(x)),
                (None, None) => Some(Locality::Local),
            }
        }
        _ => None,
    }
}

/// `c000020a` (IPv4), 32 hex digits (IPv6), or the four labels of a dotted IPv4 address.
fn parse_addr(parts: &[&str]) -> Option<IpAddr> {
    match parts {
        [hex] if hex.len() == 8 => {
            let b = decode_hex::<4>(hex)?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        [hex] if hex.len() == 32 => {
            let b = decode_hex::<16>(hex)?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        [a, b, c, d] => {
            let o = [
                a.parse().ok()?,
                b.parse().ok()?,
                c.parse().ok()?,
                d.parse().ok()?,
            ];
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        _ => None,
    }
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// The address of a full `in-addr.arpa.` or `ip6.arpa.` name.
fn parse_arpa(labels: &[&str]) -> Option<IpAddr> {
    let n = labels.len();
    if n < 2 {
        return None;
    }
    match labels[n - 2] {
        "in-addr" if n == 6 => {
            let mut o = [0u8; 4];
            for (i, l) in labels[..4].iter().enumerate() {
                if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                    return None;
                }
                o[3 - i] = l.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        "ip6" if n == 34 => {
            let mut b = [0u8; 16];
            for (i, l) in labels[..32].iter().enumerate() {
                if l.len() != 1 {
                    return None;
                }
                let v = u8::try_from(l.chars().next()?.to_digit(16)?).ok()?;
                // labels[0] is the lowest nibble of the last byte.
                let pos = 31 - i;
                if pos % 2 == 0 {
                    b[pos / 2] |= v << 4;
                } else {
                    b[pos / 2] |= v;
                }
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The reverse name of an address, without the trailing dot (`4.3.2.1.in-addr.arpa`).
pub fn arpa_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The `<hex>.addr` label of an address (`c000020a`).
pub fn hex_label(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const A: u16 = 1;
    const SRV: u16 = 33;

    fn r(name: &str, qtype: u16) -> Route {
        let d = Domains::new("consul.", "alt.example");
        let lower = name.to_ascii_lowercase();
        let labels: Vec<&str> = lower.trim_end_matches('.').split('.').collect();
        route(&labels, qtype, &d, "dc1")
    }

    fn svc(name: &str, tag: Option<&str>, locality: Locality) -> Lookup {
        Lookup::Service {
            name: name.into(),
            tag: tag.map(Into::into),
            locality,
        }
    }

    fn dom(lookup: Lookup) -> Route {
        Route::Domain { alt: false, lookup }
    }

    #[test]
    fn service_forms() {
        use Locality::*;
        assert_eq!(r("web.service.consul.", A), dom(svc("web", None, Local)));
        assert_eq!(r("WEB.Service.CONSUL", A), dom(svc("web", None, Local)));
        assert_eq!(r("web.service.dc1.consul", A), dom(svc("web", None, Local)));
        assert_eq!(r("web.service.DC1.consul", A), dom(svc("web", None, Local)));
        assert_eq!(
            r("web.service.dc2.consul", A),
            dom(svc("web", None, Remote("dc2".into())))
        );
        assert_eq!(
            r("web.service.dc2.dc.consul", A),
            dom(svc("web", None, Remote("dc2".into())))
        );
        assert_eq!(
            r("web.service.dc1.dc.consul", A),
            dom(svc("web", None, Local))
        );
        assert_eq!(
            r("web.service.p1.peer.consul", A),
            dom(svc("web", None, Peer("p1".into())))
        );
        assert_eq!(
            r("v1.web.service.consul", A),
            dom(svc("web", Some("v1"), Local))
        );
        assert_eq!(
            r("a.b.web.service.consul", A),
            dom(svc("web", Some("a.b"), Local))
        );
        assert_eq!(
            r("web.service.x.y.z.consul", A),
            dom(Lookup::Invalid),
            "three suffix labels are not a locality"
        );
        assert_eq!(
            r("web.service.dc1.peer.p.dc.consul", A),
            dom(Lookup::Invalid),
            "dc and peer together"
        );
    }

    #[test]
    fn rfc2782_forms() {
        use Locality::*;
        assert_eq!(
            r("_web._tcp.service.consul", SRV),
            dom(svc("web", None, Local))
        );
        assert_eq!(
            r("_web._v1.service.consul", SRV),
            dom(svc("web", Some("v1"), Local))
        );
        assert_eq!(
            r("_web._udp.service.consul", SRV),
            dom(svc("web", Some("udp"), Local))
        );
        assert_eq!(r("_web._tcp.consul", SRV), dom(svc("web", None, Local)));
        assert_eq!(r("_web._tcp.dc1.consul", SRV), dom(svc("web", None, Local)));
        assert_eq!(
            r("_web._tcp.dc2.consul", SRV),
            dom(svc("web", None, Remote("dc2".into())))
        );
        // Without the `service` label only SRV questions are service lookups.
        assert_eq!(r("_web._tcp.consul", A), dom(Lookup::Invalid));
        assert_eq!(r("_._tcp.service.consul", SRV), dom(Lookup::Invalid));
    }

    #[test]
    fn node_addr_and_others() {
        use Locality::*;
        assert_eq!(
            r("n1.node.consul", A),
            dom(Lookup::Node {
                name: "n1".into(),
                locality: Local
            })
        );
        assert_eq!(
            r("my.dotted.node.dc1.consul", A),
            dom(Lookup::Node {
                name: "my.dotted".into(),
                locality: Local
            })
        );
        assert_eq!(
            r("c000020a.addr.consul", A),
            dom(Lookup::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(
            r("C000020A.addr.dc1.consul", A),
            dom(Lookup::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(
            r("20010db8000000000000000000000001.addr.consul", A),
            dom(Lookup::Addr("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            r("192.0.2.10.addr.consul", A),
            dom(Lookup::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(r("zz00020a.addr.consul", A), dom(Lookup::Invalid));
        assert_eq!(r("c00002.addr.consul", A), dom(Lookup::Invalid));
        assert_eq!(
            r("q.query.consul", A),
            dom(Lookup::Query {
                name: "q".into(),
                locality: Locality::Local
            })
        );
        assert_eq!(
            r("web.connect.consul", A),
            dom(Lookup::Unsupported("connect"))
        );
        assert_eq!(r("junk.consul", A), dom(Lookup::EmptyNonTerminal));
        assert_eq!(r("a.b.c.consul", A), dom(Lookup::Invalid));
    }

    #[test]
    fn empty_non_terminals() {
        for n in [
            "consul.",
            "service.consul",
            "node.consul",
            "addr.consul",
            "dc1.consul",
            "service.dc1.consul",
        ] {
            let want = if n == "addr.consul" {
                Lookup::Invalid
            } else {
                Lookup::EmptyNonTerminal
            };
            assert_eq!(r(n, A), dom(want), "{n}");
        }
    }

    #[test]
    fn domains_and_reverse() {
        assert_eq!(
            r("web.service.alt.example.", A),
            Route::Domain {
                alt: true,
                lookup: svc("web", None, Locality::Local)
            }
        );
        assert_eq!(r("example.org.", A), Route::External);
        assert_eq!(r("consulx.", A), Route::External);
        assert_eq!(r(".", A), Route::External);
        assert_eq!(
            r("10.2.0.192.in-addr.arpa.", 12),
            Route::Reverse(Some("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(r("2.0.192.in-addr.arpa.", 12), Route::Reverse(None));
        assert_eq!(r("010.2.0.192.in-addr.arpa.", 12), Route::Reverse(None));
        let v6: IpAddr = "2001:db8::ff01".parse().unwrap();
        let name = arpa_name(v6);
        assert_eq!(r(&name, 12), Route::Reverse(Some(v6)));
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(arpa_name(v4), "2.0.0.127.in-addr.arpa");
        assert_eq!(r(&arpa_name(v4), 12), Route::Reverse(Some(v4)));
        assert_eq!(hex_label("192.0.2.10".parse().unwrap()), "c000020a");
    }

    #[test]
    fn multi_label_domain() {
        let d = Domains::new("Registry.Example.", "");
        assert_eq!(d.fqdn(false), "registry.example.");
        let labels = ["web", "service", "registry", "example"];
        assert_eq!(
            route(&labels, A, &d, "dc1"),
            Route::Domain {
                alt: false,
                lookup: svc("web", None, Locality::Local)
            }
        );
        assert_eq!(
            route(&["web", "service", "example"], A, &d, "dc1"),
            Route::External
        );
    }
}
