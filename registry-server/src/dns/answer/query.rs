//! `<query>.query[.<dc>].consul`: the answer of a prepared query, in the same SRV and A/AAAA
//! forms as a service lookup, with the query's `DNS.TTL` (else the service TTL). The
//! query's own filters decide which instances answer (its `OnlyPassing`, tags, metadata),
//! as Consul's DNS does; the DNS `only_passing` setting does not apply.

use super::{Answer, Builder, Dep, Healthy};
use crate::dns::wire::{rcode, rtype};
use crate::prepared;
use registry_proto::duration::parse_go_duration;
use registry_proto::model::status;

impl Builder<'_> {
    pub(super) fn query(&self, name: &str, alt: bool) -> (Answer, Dep) {
        let query = match prepared::resolve(self.db, name, "") {
            Ok(Some(q)) => q,
            _ => {
                let dep = Dep::Query {
                    service: String::new(),
                };
                return (self.negative(rcode::NXDOMAIN, alt), dep);
            }
        };
        let dep = Dep::Query {
            service: query.service.service.clone(),
        };
        let mut items = prepared::select(self.db, &query);
        if !query.service.near.is_empty() && !query.service.near.starts_with('_') {
            prepared::order(self.db, &mut items, &query.service.near, 0);
        }
        let healthy: Vec<Healthy<'_>> = items
            .iter()
            .map(|(node, svc, checks)| {
                let warning = checks.iter().any(|c| c.status == status::WARNING);
                let w = if warning {
                    svc.weights.warning
                } else {
                    svc.weights.passing
                };
                Healthy {
                    node,
                    svc,
                    weight: u16::try_from(w.max(0)).unwrap_or(u16::MAX),
                }
            })
            .collect();
        if healthy.is_empty() {
            return (self.negative(rcode::NXDOMAIN, alt), dep);
        }
        let ttl = match parse_go_duration(&query.dns.ttl) {
            Ok(d) if !query.dns.ttl.is_empty() => u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
            _ => self.s.cfg.service_ttl_secs(&query.service.service),
        };
        let mut a = Answer::empty(rcode::NOERROR, true);
        a.shuffle = query.service.near.is_empty();
        match self.qtype {
            rtype::SRV => self.srv_units(&mut a, &healthy, ttl, alt),
            rtype::A | rtype::AAAA | rtype::ANY => {
                a.limit = self.s.cfg.a_record_limit;
                self.addr_units(&mut a, &healthy, ttl);
            }
            _ => {}
        }
        if a.units.is_empty() {
            return (self.negative(rcode::NOERROR, alt), dep);
        }
        (a, dep)
    }
}
