//! DNS wire format: reading a query (names through hickory-proto's decoder) and writing the
//! pieces of cached answers.
//!
//! A query is read into a [`Request`] without allocating: header fields, the question name
//! twice (as sent, and lower-cased as the cache key), type, class and the EDNS0 OPT record.
//! Anything that does not parse as one question with well-formed records is a
//! [`ParseError`], answered with FORMERR (or dropped when not even a header is there).

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// Longest name on the wire (RFC 1035).
pub const MAX_NAME: usize = 255;
/// Header length.
pub const HEADER_LEN: usize = 12;
/// Offset of the question name in every message.
pub const QNAME_OFFSET: usize = 12;

/// Record types used here.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Alias.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Reverse pointer.
    pub const PTR: u16 = 12;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service locator.
    pub const SRV: u16 = 33;
    /// EDNS0 pseudo-record.
    pub const OPT: u16 = 41;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type.
    pub const ANY: u16 = 255;
}

/// Response codes used here.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// Malformed query.
    pub const FORMERR: u8 = 1;
    /// Server failure.
    pub const SERVFAIL: u8 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// Not implemented.
    pub const NOTIMP: u8 = 4;
    /// Refused.
    pub const REFUSED: u8 = 5;
    /// Bad EDNS version (extended: 16).
    pub const BADVERS: u16 = 16;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class ANY.
pub const CLASS_ANY: u16 = 255;
/// EDNS0 client-subnet option code.
pub const OPT_ECS: u16 = 8;
/// Longest client-subnet option echoed (family 2 + prefixes 2 + 16 address bytes).
pub const MAX_ECS: usize = 20;

/// The EDNS0 OPT record of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size (values below 512 count as 512).
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// The client-subnet option data, echoed with scope 0.
    pub ecs: Option<([u8; MAX_ECS], u8)>,
}

/// A parsed query; borrowed from nothing, so it can outlive the receive buffer.
#[derive(Clone)]
pub struct Request {
    /// Message ID.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled.
    pub cd: bool,
    qname: [u8; MAX_NAME],
    lower: [u8; MAX_NAME],
    qname_len: u8,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// The OPT record, if any.
    pub edns: Option<Edns>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("qname", &display_name(self.qname_wire()))
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("edns", &self.edns)
            .finish()
    }
}

impl Request {
    /// The question name in wire format, as sent (uncompressed).
    pub fn qname_wire(&self) -> &[u8] {
        &self.qname[..usize::from(self.qname_len)]
    }

    /// The question name in wire format, ASCII lower-cased.
    pub fn qname_lower(&self) -> &[u8] {
        &self.lower[..usize::from(self.qname_len)]
    }

    /// The largest UDP answer this client takes: 512 without EDNS, else its offer
    /// (at least 512, at most 65467 as in Consul).
    pub fn udp_limit(&self) -> usize {
        match &self.edns {
            Some(e) => usize::from(e.udp_size).clamp(512, 65535 - 68),
            None => 512,
        }
    }
}

/// Why a packet gets no normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not worth an answer: shorter than a header, or a response.
    Drop,
    /// Answer with this rcode and no question (`id`, `opcode`, `rd` from the header).
    Reject {
        /// Message ID.
        id: u16,
        /// Opcode.
        opcode: u8,
        /// Recursion desired.
        rd: bool,
        /// Response code.
        rcode: u8,
    },
}

/// Reads a query. Only the first question is kept (there must be exactly one).
pub fn parse_request(buf: &[u8]) -> Result<Request, ParseError> {
    if buf.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let f1 = buf[2];
    if f1 & 0x80 != 0 {
        return Err(ParseError::Drop);
    }
    let opcode = (f1 >> 3) & 0x0f;
    let rd = f1 & 0x01 != 0;
    let cd = buf[3] & 0x10 != 0;
    let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let reject = |rcode| ParseError::Reject {
        id,
        opcode,
        rd,
        rcode,
    };
    if opcode != 0 {
        return Err(reject(rcode::NOTIMP));
    }
    if qd != 1 {
        return Err(reject(rcode::FORMERR));
    }
    let mut d = BinDecoder::new(buf);
    d.read_slice(HEADER_LEN)
        .map_err(|_| reject(rcode::FORMERR))?;
    let name = Name::read(&mut d).map_err(|_| reject(rcode::FORMERR))?;
    let mut req = Request {
        id,
        opcode,
        rd,
        cd,
        qname: [0; MAX_NAME],
        lower: [0; MAX_NAME],
        qname_len: 0,
        qtype: 0,
        qclass: 0,
        edns: None,
    };
    let mut len = 0usize;
    for label in name.iter() {
        let l = label.len();
        if l == 0 || l > 63 || len + l + 2 > MAX_NAME {
            return Err(reject(rcode::FORMERR));
        }
        req.qname[len] = l as u8;
        req.qname[len + 1..len + 1 + l].copy_from_slice(label);
        len += l + 1;
    }
    // Root terminator (already zero).
    len += 1;
    req.qname_len = u8::try_from(len).map_err(|_| reject(rcode::FORMERR))?;
    for i in 0..len {
        // Length bytes are < 64 and never in b'A'..=b'Z', so lower-casing the whole wire
        // name only touches label characters.
        req.lower[i] = req.qname[i].to_ascii_lowercase();
    }
    let rd_u16 = |d: &mut BinDecoder<'_>| {
        d.read_u16()
            .map(|v| v.unverified())
            .map_err(|_| reject(rcode::FORMERR))
    };
    req.qtype = rd_u16(&mut d)?;
    req.qclass = rd_u16(&mut d)?;
    // Answer and authority records of a query carry nothing we use: skip them.
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        skip_record(&mut d).ok_or_else(|| reject(rcode::FORMERR))?;
    }
    for _ in 0..ar {
        let start = d.index();
        let owner_root = d.peek().map(|b| b.unverified()) == Some(0);
        let (t, class, ttl, rdata) = skip_record(&mut d).ok_or_else(|| reject(rcode::FORMERR))?;
        if t != rtype::OPT {
            continue;
        }
        if req.edns.is_some() || !owner_root || d.index() < start {
            return Err(reject(rcode::FORMERR));
        }
        let mut ecs = None;
        let mut opts = rdata;
        while opts.len() >= 4 {
            let code = u16::from_be_bytes([opts[0], opts[1]]);
            let olen = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
            if opts.len() < 4 + olen {
                return Err(reject(rcode::FORMERR));
            }
            let data = &opts[4..4 + olen];
            if code == OPT_ECS && (4..=MAX_ECS).contains(&olen) {
                let mut b = [0u8; MAX_ECS];
                b[..olen].copy_from_slice(data);
                ecs = Some((b, olen as u8));
            }
            opts = &opts[4 + olen..];
        }
        if !opts.is_empty() {
            return Err(reject(rcode::FORMERR));
        }
        req.edns = Some(Edns {
            udp_size: class,
            version: (ttl >> 16) as u8,
            ecs,
        });
    }
    Ok(req)
}

/// Skips one resource record; returns its type, class, TTL and RDATA.
fn skip_record<'a>(d: &mut BinDecoder<'a>) -> Option<(u16, u16, u32, &'a [u8])> {
    Name::read(d).ok()?;
    let t = d.read_u16().ok()?.unverified();
    let class = d.read_u16().ok()?.unverified();
    let ttl = d.read_u32().ok()?.unverified();
    let len = d.read_u16().ok()?.unverified();
    let rdata = d.read_slice(usize::from(len)).ok()?.unverified();
    Some((t, class, ttl, rdata))
}

/// A wire-format name as dotted text (for logs).
pub fn display_name(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < wire.len() {
        let l = usize::from(wire[i]);
        if l == 0 {
            break;
        }
        let end = (i + 1 + l).min(wire.len());
        s.push_str(&String::from_utf8_lossy(&wire[i + 1..end]));
        s.push('.');
        i = end;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// The labels of a wire-format name, as `&str` when they are UTF-8.
pub fn labels_of(wire: &[u8]) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let l = usize::from(wire[i]);
        if l == 0 {
            return Some(out);
        }
        let label = wire.get(i + 1..i + 1 + l)?;
        out.push(std::str::from_utf8(label).ok()?);
        i += 1 + l;
    }
    Some(out)
}

/// The question name's labels and where each suffix starts in the message, so that names
/// ending in the same labels can point into the question.
#[derive(Debug, Clone)]
pub struct QCtx {
    /// Lower-case labels, leftmost first.
    labels: Vec<Vec<u8>>,
    /// Message offset of the suffix starting at each label.
    offsets: Vec<u16>,
    /// Length of the question name on the wire.
    pub wire_len: usize,
}

impl QCtx {
    /// From the lower-cased question name in wire format.
    pub fn new(qname_lower: &[u8]) -> QCtx {
        let mut labels = Vec::new();
        let mut offsets = Vec::new();
        let mut i = 0;
        while i < qname_lower.len() {
            let l = usize::from(qname_lower[i]);
            if l == 0 {
                break;
            }
            offsets.push((QNAME_OFFSET + i) as u16);
            labels.push(qname_lower[i + 1..(i + 1 + l).min(qname_lower.len())].to_vec());
            i += 1 + l;
        }
        QCtx {
            labels,
            offsets,
            wire_len: qname_lower.len(),
        }
    }
}

/// A name that cannot be written (empty or over-long label, too long overall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadName;

/// Writes `name` (dotted, trailing dot optional), pointing at the longest suffix it shares
/// with the question. Returns the bytes written.
pub fn put_name(buf: &mut Vec<u8>, name: &str, q: &QCtx) -> Result<usize, BadName> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&[u8]> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('.').map(str::as_bytes).collect()
    };
    let mut total = 1;
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err(BadName);
        }
        total += l.len() + 1;
    }
    if total > MAX_NAME {
        return Err(BadName);
    }
    // Longest common suffix with the question.
    let mut k = 0;
    while k < labels.len()
        && k < q.labels.len()
        && labels[labels.len() - 1 - k].eq_ignore_ascii_case(&q.labels[q.labels.len() - 1 - k])
    {
        k += 1;
    }
    let start = buf.len();
    for l in &labels[..labels.len() - k] {
        buf.push(l.len() as u8);
        buf.extend_from_slice(l);
    }
    if k > 0 {
        let off = q.offsets[q.labels.len() - k];
        buf.extend_from_slice(&(0xC000 | off).to_be_bytes());
    } else {
        buf.push(0);
    }
    Ok(buf.len() - start)
}

/// Writes type, class IN, TTL and a placeholder RDLENGTH; returns where RDATA starts.
pub fn put_rr_fixed(buf: &mut Vec<u8>, t: u16, ttl: u32) -> usize {
    buf.extend_from_slice(&t.to_be_bytes());
    buf.extend_from_slice(&CLASS_IN.to_be_bytes());
    buf.extend_from_slice(&ttl.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.len()
}

/// Fills in RDLENGTH for RDATA that started at `rdata_start`.
pub fn finish_rr(buf: &mut [u8], rdata_start: usize) {
    let len = (buf.len() - rdata_start) as u16;
    buf[rdata_start - 2..rdata_start].copy_from_slice(&len.to_be_bytes());
}

/// A pointer to the question name (owner of most answers).
pub const QNAME_PTR: [u8; 2] = [0xC0, QNAME_OFFSET as u8];

/// TXT RDATA: `text` as character-strings of at most 255 bytes each.
pub fn put_txt_rdata(buf: &mut Vec<u8>, text: &[u8]) {
    if text.is_empty() {
        buf.push(0);
        return;
    }
    for chunk in text.chunks(255) {
        buf.push(chunk.len() as u8);
        buf.extend_from_slice(chunk);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, Query};
    use hickory_proto::rr::RecordType;
    use proptest::prelude::*;

    fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        let labels: Vec<&[u8]> = name
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::as_bytes)
            .collect();
        let mut n = Name::from_labels(labels).unwrap();
        n.set_fqdn(true);
        m.add_query(Query::query(n, t));
        if let Some(sz) = edns {
            let mut e = HEdns::new();
            e.set_max_payload(sz);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_query() {
        let q = query("Web.Service.Consul.", RecordType::SRV, Some(1232));
        let r = parse_request(&q).unwrap();
        assert_eq!(r.id, 0x1234);
        assert!(r.rd);
        assert_eq!(r.qtype, rtype::SRV);
        assert_eq!(r.qclass, CLASS_IN);
        assert_eq!(display_name(r.qname_wire()), "Web.Service.Consul.");
        assert_eq!(display_name(r.qname_lower()), "web.service.consul.");
        assert_eq!(r.edns.unwrap().udp_size, 1232);
        assert_eq!(r.udp_limit(), 1232);
        let r = parse_request(&query(".", RecordType::NS, None)).unwrap();
        assert_eq!(r.qname_wire(), &[0]);
        assert_eq!(r.udp_limit(), 512);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(parse_request(&[0; 5]), Err(ParseError::Drop)));
        let mut q = query("a.consul.", RecordType::A, None);
        q[2] |= 0x80; // a response
        assert!(matches!(parse_request(&q), Err(ParseError::Drop)));
        let mut q = query("a.consul.", RecordType::A, None);
        q[5] = 2; // two questions, only one present
        assert!(matches!(
            parse_request(&q),
            Err(ParseError::Reject {
                rcode: rcode::FORMERR,
                ..
            })
        ));
        let mut q = query("a.consul.", RecordType::A, None);
        q[2] |= 5 << 3; // UPDATE
        assert!(matches!(
            parse_request(&q),
            Err(ParseError::Reject {
                rcode: rcode::NOTIMP,
                ..
            })
        ));
        let q = query("a.consul.", RecordType::A, None);
        assert!(parse_request(&q[..q.len() - 1]).is_err());
    }

    #[test]
    fn names_point_into_the_question() {
        let q = QCtx::new(&[
            3, b'w', b'e', b'b', 7, b's', b'e', b'r', b'v', b'i', b'c', b'e', 6, b'c', b'o', b'n',
            b's', b'u', b'l', 0,
        ]);
        let mut b = Vec::new();
        put_name(&mut b, "n1.node.dc1.consul.", &q).unwrap();
        // "n1" "node" "dc1" then a pointer to "consul" at 12 + 4 + 8.
        assert_eq!(
            b,
            [
                &[2u8, b'n', b'1', 4, b'n', b'o', b'd', b'e', 3, b'd', b'c', b'1'][..],
                &[0xC0, 24]
            ]
            .concat()
        );
        b.clear();
        put_name(&mut b, "WEB.service.consul", &q).unwrap();
        assert_eq!(b, [0xC0, 12]);
        b.clear();
        put_name(&mut b, "example.org.", &q).unwrap();
        assert_eq!(b.len(), 13);
        assert_eq!(put_name(&mut b, "a..b", &q), Err(BadName));
        assert_eq!(put_name(&mut b, &"x".repeat(64), &q), Err(BadName));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn mutated_queries_never_panic(
            name in "[a-zA-Z0-9_-]{1,20}(\\.[a-zA-Z0-9_-]{1,20}){0,4}\\.",
            edns in proptest::option::of(0u16..5000),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut q = query(&name, RecordType::SRV, edns);
            for (pos, val) in flips {
                let i = pos % q.len();
                q[i] = val;
            }
            let n = q.len();
            q.truncate(n - cut % (n / 2 + 1));
            if let Ok(r) = parse_request(&q) {
                prop_assert_eq!(r.qname_wire().len(), r.qname_lower().len());
                prop_assert!(r.udp_limit() >= 512);
            }
        }
    }
}
