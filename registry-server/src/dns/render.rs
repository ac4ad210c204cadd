//! Turning a cached [`Answer`] into the bytes of one reply: header, the question as the
//! client spelled it, the answer units in a fresh random order, cut to the transport's size
//! and the answer limits, then the EDNS0 OPT record.

use super::answer::{Answer, Owner};
use super::wire::{rtype, Request, HEADER_LEN, OPT_ECS};

/// Largest DNS message (TCP).
pub const MAX_MESSAGE: usize = 65535;
/// Consul's cap on answers in a UDP reply without EDNS.
const MAX_UDP_ANSWER_LIMIT: usize = 8;
/// Offsets a compression pointer can reach.
const MAX_POINTER: usize = 0x3FFF;

/// Per-worker scratch state for rendering: random source and reusable vectors.
#[derive(Debug)]
pub struct Renderer {
    rng: u64,
    order: Vec<u32>,
    ans_at: Vec<usize>,
    /// Per unit group: additionals already counted or written.
    seen: Vec<bool>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new(rand::random::<u64>() | 1)
    }
}

/// How the reply travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the 512-byte or EDNS0 size limit and `udp_answer_limit` apply.
    Udp,
    /// TCP: up to 64 KiB.
    Tcp,
}

/// Options of one rendering besides the answer.
#[derive(Debug, Clone, Copy)]
pub struct RenderOpts {
    /// Transport.
    pub transport: Transport,
    /// The RA bit.
    pub recursion_available: bool,
    /// `udp_answer_limit`.
    pub udp_answer_limit: usize,
    /// Set TC when `udp_answer_limit` cut the answer.
    pub truncate_on_limit: bool,
    /// Extended response code bits (the upper 8 of 12), for BADVERS.
    pub ext_rcode: u8,
}

impl Renderer {
    /// With a given seed (tests); use `default()` otherwise.
    pub fn new(seed: u64) -> Renderer {
        Renderer {
            rng: seed | 1,
            order: Vec::new(),
            ans_at: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// Writes the reply to `req` into `out`.
    pub fn render(&mut self, out: &mut Vec<u8>, req: &Request, a: &Answer, o: &RenderOpts) {
        out.clear();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        out.extend_from_slice(req.qname_wire());
        out.extend_from_slice(&req.qtype.to_be_bytes());
        out.extend_from_slice(&req.qclass.to_be_bytes());
        let head = out.len();
        let opt_len = match &req.edns {
            Some(e) => 11 + e.ecs.map_or(0, |(_, l)| 4 + usize::from(l)),
            None => 0,
        };
        let max = match o.transport {
            Transport::Udp => req.udp_limit(),
            Transport::Tcp => MAX_MESSAGE,
        };

        // Which units, in which order.
        let n = a.units.len();
        let mut k = n;
        if a.limit > 0 {
            k = k.min(a.limit);
        }
        let mut count_cut = false;
        if o.transport == Transport::Udp && max == 512 {
            let m = o.udp_answer_limit.clamp(1, MAX_UDP_ANSWER_LIMIT);
            if k > m {
                k = m;
                count_cut = true;
            }
        }
        self.order.clear();
        self.order.extend(0..n as u32);
        if a.shuffle && n > 1 {
            for i in 0..k.min(n - 1) {
                let j = i + self.below(n - i);
                self.order.swap(i, j);
            }
        }

        // Fit the size: first everything, then without authority and unit-less extras,
        // then fewer units (never fewer than one).
        let mut with_auth = true;
        let mut with_extra = true;
        let mut fit = self.fitting(a, head, k, max, opt_len + a.auth.len() + a.extra.len());
        if fit < k && !a.units.is_empty() {
            with_auth = a.auth.is_empty();
            fit = self.fitting(a, head, k, max, opt_len + a.extra.len());
            if fit < k {
                with_extra = a.extra.is_empty();
                fit = self.fitting(a, head, k, max, opt_len);
            }
        }
        let size_cut = fit < k;
        let k = fit.max(1).min(k);

        // Answers.
        let mut ancount = 0u16;
        self.ans_at.clear();
        for &i in &self.order[..k] {
            let u = &a.units[i as usize];
            self.ans_at.push(out.len());
            out.extend_from_slice(&u.ans);
            ancount += u.ans_count;
        }
        let mut nscount = 0u16;
        if with_auth {
            out.extend_from_slice(&a.auth);
            nscount = a.auth_count;
        }
        let mut arcount = 0u16;
        self.reset_seen(a);
        for pos in 0..k {
            let u = &a.units[self.order[pos] as usize];
            if !self.first_of_group(u.group) {
                continue;
            }
            let base = self.ans_at[pos];
            for add in u.adds.iter() {
                match &add.owner {
                    Owner::Bytes(b) => out.extend_from_slice(b),
                    Owner::Target { rel, len } => {
                        let at = base + usize::from(*rel);
                        if at <= MAX_POINTER {
                            out.extend_from_slice(&(0xC000 | at as u16).to_be_bytes());
                        } else {
                            let r = usize::from(*rel);
                            out.extend_from_slice(&u.ans[r..r + usize::from(*len)]);
                        }
                    }
                }
                out.extend_from_slice(&add.rest);
                arcount += 1;
            }
        }
        if with_extra {
            out.extend_from_slice(&a.extra);
            arcount += a.extra_count;
        }
        if let Some(e) = &req.edns {
            out.push(0);
            out.extend_from_slice(&rtype::OPT.to_be_bytes());
            out.extend_from_slice(&e.udp_size.max(512).to_be_bytes());
            out.extend_from_slice(&[o.ext_rcode, 0, 0, 0]);
            match e.ecs {
                Some((data, len)) => {
                    let len = usize::from(len);
                    out.extend_from_slice(&((4 + len) as u16).to_be_bytes());
                    out.extend_from_slice(&OPT_ECS.to_be_bytes());
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                    let start = out.len();
                    out.extend_from_slice(&data[..len]);
                    // SCOPE PREFIX-LENGTH 0: the answer holds for every client.
                    out[start + 3] = 0;
                }
                None => out.extend_from_slice(&[0, 0]),
            }
            arcount += 1;
        }

        let tc = size_cut || (count_cut && o.truncate_on_limit);
        out[0..2].copy_from_slice(&req.id.to_be_bytes());
        out[2] = 0x80
            | (req.opcode << 3)
            | if a.aa { 0x04 } else { 0 }
            | if tc { 0x02 } else { 0 }
            | u8::from(req.rd);
        out[3] = if o.recursion_available { 0x80 } else { 0 }
            | if req.cd { 0x10 } else { 0 }
            | (a.rcode & 0x0f);
        out[4..6].copy_from_slice(&1u16.to_be_bytes());
        out[6..8].copy_from_slice(&ancount.to_be_bytes());
        out[8..10].copy_from_slice(&nscount.to_be_bytes());
        out[10..12].copy_from_slice(&arcount.to_be_bytes());
    }

    /// How many of the first `k` units (in the current order) fit in `max` bytes next to
    /// `head` bytes of header and question and `fixed` other bytes.
    fn fitting(&mut self, a: &Answer, head: usize, k: usize, max: usize, fixed: usize) -> usize {
        // Answers come first, so a unit's answer offset is known from the ones before it;
        // an additional owner is a 2-byte pointer unless that offset is out of reach.
        let mut ans_end = head;
        let mut adds = 0usize;
        self.reset_seen(a);
        for pos in 0..k {
            let u = &a.units[self.order[pos] as usize];
            let at = ans_end;
            ans_end += u.ans.len();
            let adds_of_unit: &[_] = if self.first_of_group(u.group) {
                &u.adds
            } else {
                &[]
            };
            for add in adds_of_unit {
                adds += add.rest.len()
                    + match &add.owner {
                        Owner::Bytes(b) => b.len(),
                        Owner::Target { rel, len } => {
                            if at + usize::from(*rel) <= MAX_POINTER {
                                2
                            } else {
                                usize::from(*len)
                            }
                        }
                    };
            }
            if ans_end + adds + fixed > max {
                return pos;
            }
        }
        k
    }
}

impl Renderer {
    fn reset_seen(&mut self, a: &Answer) {
        self.seen.clear();
        self.seen.resize(a.groups as usize, false);
    }

    /// Whether `group` is seen for the first time (always true for lone units).
    fn first_of_group(&mut self, group: u32) -> bool {
        match self.seen.get_mut(group as usize) {
            Some(s) => !std::mem::replace(s, true),
            None => true,
        }
    }
}

/// A reply with only a header (FORMERR / NOTIMP for a query whose question could not be
/// read).
pub fn render_reject(out: &mut Vec<u8>, id: u16, opcode: u8, rd: bool, rcode: u8, ra: bool) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | ((opcode & 0x0f) << 3) | u8::from(rd));
    out.push(if ra { 0x80 } else { 0 } | (rcode & 0x0f));
    out.extend_from_slice(&[0u8; 8]);
}
