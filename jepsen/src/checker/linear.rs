//! A linearizability checker: Wing and Gong's search with Lowe's memoisation, as in Porcupine.
//!
//! The history of one object is a list of operations with an invocation time and, when known,
//! a completion time. Calls and returns are laid out in time order in a linked list; the
//! search repeatedly takes a call, applies it to the model, and if the model accepts it and the
//! pair (set of operations linearized, model state) was not seen before, removes the call and
//! its return from the list and goes on from the head. Reaching a return whose call was not
//! linearized means backtracking. An operation whose outcome is unknown has its return at the
//! end of time: it may take effect at any point after its call, or never (the model's step for
//! such an operation may leave the state unchanged).
//!
//! The search is exponential in the worst case, so it is bounded by a number of steps and a
//! deadline; running out gives [`Verdict::Unknown`] rather than a guess.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// An operation with its observed result.
    type Op;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op` if `op` (with its result) is legal in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of the history handed to the checker.
#[derive(Debug, Clone)]
pub struct Entry<O> {
    /// Invocation time.
    pub call: u64,
    /// Completion time; `None` when unknown (the operation may be linearized at any point
    /// after its call).
    pub ret: Option<u64>,
    /// The operation.
    pub op: O,
    /// Identifies the operation in the caller's history (for reports).
    pub id: usize,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations respects real time and the model.
    Linearizable,
    /// None does. `stuck` is the id of an operation that could not be placed after the
    /// longest linearizable prefix found, `prefix` that prefix's length.
    NotLinearizable { stuck: usize, prefix: usize },
    /// The search ran out of steps or time.
    Unknown { reason: String },
}

/// Bounds on the search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most model steps tried.
    pub max_steps: u64,
    /// Longest time spent.
    pub max_time: Duration,
    /// Most operations accepted in one history.
    pub max_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 20_000_000,
            max_time: Duration::from_secs(60),
            max_ops: 20_000,
        }
    }
}

const NONE: usize = usize::MAX;

/// Checks one object's history against `model`.
pub fn check<M: Model>(model: &M, history: &[Entry<M::Op>], limits: Limits) -> Verdict {
    let n = history.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    if n > limits.max_ops {
        return Verdict::Unknown {
            reason: format!("{n} operations, more than the limit of {}", limits.max_ops),
        };
    }
    // Events: (time, is_return, op). Calls before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in history.iter().enumerate() {
        events.push((e.call, false, i));
        events.push((e.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort_by_key(|&(t, r, i)| (t, r, i));
    let len = events.len();
    let head = len;
    let mut next = vec![NONE; len + 1];
    let mut prev = vec![NONE; len + 1];
    let mut ret_of = vec![NONE; n];
    for (pos, &(_, is_ret, op)) in events.iter().enumerate() {
        if is_ret {
            ret_of[op] = pos;
        }
    }
    // Linked list head -> 0 -> 1 -> ... -> len-1.
    next[head] = 0;
    for pos in 0..len {
        prev[pos] = if pos == 0 { head } else { pos - 1 };
        next[pos] = if pos + 1 < len { pos + 1 } else { NONE };
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, pos: usize| {
        let (p, nx) = (prev[pos], next[pos]);
        next[p] = nx;
        if nx != NONE {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, pos: usize| {
        let (p, nx) = (prev[pos], next[pos]);
        next[p] = pos;
        if nx != NONE {
            prev[nx] = pos;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = next[head];
    let mut steps: u64 = 0;
    let started = Instant::now();
    let mut best = (0usize, NONE);

    while next[head] != NONE {
        steps += 1;
        if steps > limits.max_steps {
            return Verdict::Unknown {
                reason: format!("search gave up after {} steps", limits.max_steps),
            };
        }
        if steps.is_multiple_of(4096) && started.elapsed() > limits.max_time {
            return Verdict::Unknown {
                reason: format!("search gave up after {:?}", limits.max_time),
            };
        }
        if entry == NONE {
            // Only returns can end the list, so this cannot happen; treat as a dead end.
            return Verdict::Unknown {
                reason: "internal: ran off the event list".into(),
            };
        }
        let (_, is_ret, op) = events[entry];
        if !is_ret {
            if let Some(new_state) = model.step(&state, &history[op].op) {
                let mut with = linearized.clone();
                with[op / 64] |= 1 << (op % 64);
                if cache.insert((with.clone(), new_state.clone())) {
                    stack.push((entry, state));
                    state = new_state;
                    linearized = with;
                    lift(&mut next, &mut prev, entry);
                    lift(&mut next, &mut prev, ret_of[op]);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            if stack.len() >= best.0 {
                best = (stack.len(), op);
            }
            let Some((call, old_state)) = stack.pop() else {
                let stuck = if best.1 == NONE { op } else { best.1 };
                return Verdict::NotLinearizable {
                    stuck: history[stuck].id,
                    prefix: best.0,
                };
            };
            let (_, _, undone) = events[call];
            linearized[undone / 64] &= !(1 << (undone % 64));
            state = old_state;
            unlift(&mut next, &mut prev, ret_of[undone]);
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Verdict::Linearizable
}

/// A read/write/compare-and-set register holding an optional integer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// An operation on a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp {
    /// A read that returned this value.
    Read(Option<i64>),
    /// A write of this value (`unknown`: it may not have happened; writes are always legal).
    Write(i64),
    /// Set to `new` if the value is `expected`. `unknown` when the outcome is not known: then
    /// it may also have had no effect.
    Cas {
        expected: Option<i64>,
        new: i64,
        unknown: bool,
    },
}

impl Model for Register {
    type State = Option<i64>;
    type Op = RegOp;
    fn init(&self) -> Option<i64> {
        None
    }
    fn step(&self, state: &Option<i64>, op: &RegOp) -> Option<Option<i64>> {
        match op {
            RegOp::Read(v) => (v == state).then_some(*state),
            RegOp::Write(v) => Some(Some(*v)),
            RegOp::Cas {
                expected,
                new,
                unknown,
            } => {
                if expected == state {
                    Some(Some(*new))
                } else if *unknown {
                    Some(*state)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(call: u64, ret: Option<u64>, op: RegOp, id: usize) -> Entry<RegOp> {
        Entry { call, ret, op, id }
    }

    fn run(h: &[Entry<RegOp>]) -> Verdict {
        check(&Register, h, Limits::default())
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            e(0, Some(1), RegOp::Read(None), 0),
            e(2, Some(3), RegOp::Write(1), 1),
            e(4, Some(5), RegOp::Read(Some(1)), 2),
            e(
                6,
                Some(7),
                RegOp::Cas {
                    expected: Some(1),
                    new: 2,
                    unknown: false,
                },
                3,
            ),
            e(8, Some(9), RegOp::Read(Some(2)), 4),
        ];
        assert_eq!(run(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            e(0, Some(1), RegOp::Write(1), 0),
            e(2, Some(3), RegOp::Write(2), 1),
            // Invoked after write 2 completed, yet sees 1.
            e(4, Some(5), RegOp::Read(Some(1)), 2),
        ];
        match run(&h) {
            Verdict::NotLinearizable { stuck, .. } => assert_eq!(stuck, 2),
            v => panic!("expected not linearizable, got {v:?}"),
        }
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // Write 2 overlaps both reads: one sees 1, the next sees 2, then 1 again is illegal.
        let ok = vec![
            e(0, Some(1), RegOp::Write(1), 0),
            e(2, Some(10), RegOp::Write(2), 1),
            e(3, Some(4), RegOp::Read(Some(1)), 2),
            e(5, Some(6), RegOp::Read(Some(2)), 3),
        ];
        assert_eq!(run(&ok), Verdict::Linearizable);
        let mut bad = ok.clone();
        bad.push(e(7, Some(8), RegOp::Read(Some(1)), 4));
        assert!(matches!(run(&bad), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_write_may_or_may_not_happen() {
        let seen = vec![
            e(0, None, RegOp::Write(7), 0),
            e(5, Some(6), RegOp::Read(Some(7)), 1),
        ];
        assert_eq!(run(&seen), Verdict::Linearizable);
        let unseen = vec![
            e(0, None, RegOp::Write(7), 0),
            e(5, Some(6), RegOp::Read(None), 1),
        ];
        assert_eq!(run(&unseen), Verdict::Linearizable);
        let unknown_cas = vec![
            e(0, Some(1), RegOp::Write(1), 0),
            e(
                2,
                None,
                RegOp::Cas {
                    expected: Some(5),
                    new: 6,
                    unknown: true,
                },
                1,
            ),
            e(3, Some(4), RegOp::Read(Some(1)), 2),
        ];
        assert_eq!(run(&unknown_cas), Verdict::Linearizable);
    }

    #[test]
    fn failed_cas_condition_is_illegal() {
        let h = vec![
            e(0, Some(1), RegOp::Write(1), 0),
            e(
                2,
                Some(3),
                RegOp::Cas {
                    expected: Some(9),
                    new: 2,
                    unknown: false,
                },
                1,
            ),
        ];
        assert!(matches!(run(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn step_bound_gives_unknown() {
        let mut h = Vec::new();
        // Many concurrent writes and reads: a large search space.
        for i in 0..40 {
            h.push(e(0, Some(100), RegOp::Write(i), h.len()));
        }
        h.push(e(101, Some(102), RegOp::Read(Some(12345)), h.len()));
        let v = check(
            &Register,
            &h,
            Limits {
                max_steps: 1_000,
                ..Limits::default()
            },
        );
        assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
        let v = check(
            &Register,
            &h,
            Limits {
                max_ops: 10,
                ..Limits::default()
            },
        );
        assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
    }
}
