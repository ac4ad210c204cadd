//! The member list computed from chitchat's state: one entry per node name, from the newest
//! generation of that node whose status is known, with Serf's statuses.
//!
//! Chitchat knows node instances (`ChitchatId`: name, generation, address) and whether its
//! failure detector thinks each is live; the members' own key-value state says whether they
//! left. [`Tracker`] adds what chitchat does not keep: since when an instance has been dead
//! (for `reconnect_timeout`), whether it was ever live (a node just learned of is not yet
//! "failed"), and the force-leave markers other members published.

use registry_server::leader::members::{GossipMember, MemberStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Key of a member's own status: `leaving` or `left` once it leaves (absent while alive).
pub const STATUS_KEY: &str = "status";
/// Key of a member's tags, as compact JSON.
pub const TAGS_KEY: &str = "tags";
/// Prefix of force-leave markers: `fl:<node>` = `<generation>` or `<generation>:prune`.
pub const FORCE_LEAVE_PREFIX: &str = "fl:";

/// One node instance as chitchat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Node name.
    pub name: String,
    /// Generation (start time of that run, in ms).
    pub generation: u64,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Live according to the failure detector (always true for this node).
    pub live: bool,
    /// `status` key.
    pub status: Option<String>,
    /// `tags` key.
    pub tags: Option<String>,
}

/// A force-leave marker: instances of `name` up to `generation` are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForceLeft {
    /// Highest generation force-left.
    pub generation: u64,
    /// Remove the member from the list entirely (`-prune`).
    pub prune: bool,
}

/// Parses a force-leave marker value.
pub fn parse_force_left(v: &str) -> Option<ForceLeft> {
    let (g, prune) = match v.strip_suffix(":prune") {
        Some(g) => (g, true),
        None => (v, false),
    };
    Some(ForceLeft {
        generation: g.parse().ok()?,
        prune,
    })
}

/// Timing of status decisions.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A failed member is reaped after this long.
    pub reconnect_timeout: Duration,
    /// An instance never seen live is ignored for this long after it was first seen.
    pub discover_grace: Duration,
}

/// Per-instance history the member list needs.
#[derive(Debug, Default)]
pub struct Tracker {
    first_seen: HashMap<(String, u64), Instant>,
    ever_live: HashSet<(String, u64)>,
    dead_since: HashMap<(String, u64), Instant>,
}

impl Tracker {
    /// The member list for `observed`, sorted by name.
    pub fn members(
        &mut self,
        now: Instant,
        observed: &[Observed],
        force_left: &HashMap<String, ForceLeft>,
        timing: Timing,
    ) -> Vec<GossipMember> {
        let mut by_name: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
        let mut present = HashSet::new();
        for o in observed {
            by_name.entry(o.name.as_str()).or_default().push(o);
            let key = (o.name.clone(), o.generation);
            self.first_seen.entry(key.clone()).or_insert(now);
            if o.live {
                self.ever_live.insert(key.clone());
                self.dead_since.remove(&key);
            } else {
                self.dead_since.entry(key.clone()).or_insert(now);
            }
            present.insert(key);
        }
        self.first_seen.retain(|k, _| present.contains(k));
        self.ever_live.retain(|k| present.contains(k));
        self.dead_since.retain(|k, _| present.contains(k));

        let mut out = Vec::new();
        for (name, mut runs) in by_name {
            runs.sort_by_key(|o| std::cmp::Reverse(o.generation));
            let chosen = runs.iter().find_map(|o| {
                let key = (o.name.clone(), o.generation);
                let status = self.status_of(now, o, &key, force_left.get(name), timing)?;
                Some((o, status))
            });
            let Some((o, status)) = chosen else { continue };
            let Some(status) = status else { continue };
            let tags = o
                .tags
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            out.push(GossipMember {
                name: name.to_string(),
                addr: o.addr.ip(),
                port: o.addr.port(),
                status,
                tags,
            });
        }
        out
    }

    /// `None`: not determined yet (try an older run); `Some(None)`: pruned, not listed.
    fn status_of(
        &self,
        now: Instant,
        o: &Observed,
        key: &(String, u64),
        force_left: Option<&ForceLeft>,
        timing: Timing,
    ) -> Option<Option<MemberStatus>> {
        match o.status.as_deref() {
            Some("left") => return Some(Some(MemberStatus::Left)),
            Some("leaving") if o.live => return Some(Some(MemberStatus::Leaving)),
            Some("leaving") => return Some(Some(MemberStatus::Left)),
            _ => {}
        }
        if o.live {
            return Some(Some(MemberStatus::Alive));
        }
        if let Some(fl) = force_left.filter(|fl| fl.generation >= o.generation) {
            return Some((!fl.prune).then_some(MemberStatus::Left));
        }
        if !self.ever_live.contains(key) {
            let seen = self.first_seen.get(key).copied().unwrap_or(now);
            if now.duration_since(seen) < timing.discover_grace {
                return None;
            }
        }
        let since = self.dead_since.get(key).copied().unwrap_or(now);
        if now.duration_since(since) >= timing.reconnect_timeout {
            Some(Some(MemberStatus::Reaped))
        } else {
            Some(Some(MemberStatus::Failed))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn obs(name: &str, generation: u64, live: bool) -> Observed {
        Observed {
            name: name.into(),
            generation,
            addr: "127.0.0.2:8301".parse().unwrap(),
            live,
            status: None,
            tags: Some(r#"{"role":"node","dc":"dc1"}"#.into()),
        }
    }

    const T: Timing = Timing {
        reconnect_timeout: Duration::from_secs(60),
        discover_grace: Duration::from_secs(10),
    };

    fn status(ms: &[GossipMember], name: &str) -> Option<MemberStatus> {
        ms.iter().find(|m| m.name == name).map(|m| m.status)
    }

    #[test]
    fn alive_failed_reaped() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let none = HashMap::new();
        let ms = t.members(t0, &[obs("a", 1, true)], &none, T);
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Alive));
        assert_eq!(ms[0].tags["role"], "node");
        let ms = t.members(t0 + Duration::from_secs(1), &[obs("a", 1, false)], &none, T);
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Failed));
        let ms = t.members(
            t0 + Duration::from_secs(62),
            &[obs("a", 1, false)],
            &none,
            T,
        );
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Reaped));
        // Back before being forgotten: alive again.
        let ms = t.members(t0 + Duration::from_secs(63), &[obs("a", 1, true)], &none, T);
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Alive));
    }

    #[test]
    fn a_restart_is_the_newest_generation_once_known() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let none = HashMap::new();
        t.members(t0, &[obs("a", 1, true)], &none, T);
        // The new run is not live yet: the old run's status stands.
        let ms = t.members(t0, &[obs("a", 1, false), obs("a", 2, false)], &none, T);
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Failed));
        let ms = t.members(t0, &[obs("a", 1, false), obs("a", 2, true)], &none, T);
        assert_eq!(status(&ms, "a"), Some(MemberStatus::Alive));
    }

    #[test]
    fn unknown_instances_wait_for_the_grace() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let none = HashMap::new();
        assert!(t.members(t0, &[obs("b", 1, false)], &none, T).is_empty());
        let ms = t.members(
            t0 + Duration::from_secs(11),
            &[obs("b", 1, false)],
            &none,
            T,
        );
        assert_eq!(status(&ms, "b"), Some(MemberStatus::Failed));
    }

    #[test]
    fn left_leaving_and_force_leave() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let none = HashMap::new();
        let mut o = obs("a", 1, true);
        o.status = Some("leaving".into());
        assert_eq!(
            status(&t.members(t0, &[o.clone()], &none, T), "a"),
            Some(MemberStatus::Leaving)
        );
        o.status = Some("left".into());
        assert_eq!(
            status(&t.members(t0, &[o], &none, T), "a"),
            Some(MemberStatus::Left)
        );

        let mut fl = HashMap::new();
        fl.insert("c".to_string(), parse_force_left("5").unwrap());
        t.members(t0, &[obs("c", 5, true)], &fl, T);
        let ms = t.members(t0, &[obs("c", 5, false)], &fl, T);
        assert_eq!(status(&ms, "c"), Some(MemberStatus::Left));
        // A newer run is not affected.
        let ms = t.members(t0, &[obs("c", 5, false), obs("c", 6, true)], &fl, T);
        assert_eq!(status(&ms, "c"), Some(MemberStatus::Alive));
        fl.insert("c".to_string(), parse_force_left("6:prune").unwrap());
        let ms = t.members(t0, &[obs("c", 6, false)], &fl, T);
        assert_eq!(status(&ms, "c"), None);
        assert_eq!(parse_force_left("x"), None);
    }
}
