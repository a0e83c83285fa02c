//! A linearizability checker for histories of a key-value register map, after Wing and Gong
//! (1993) with Lowe's memoization (as in porcupine and Knossos).
//!
//! A history is a list of [`Operation`]s, each with the time it was called and the time it
//! returned (`None` when its outcome is unknown: it may have taken effect at any time after its
//! call, or never). Every operation here touches one key, so the history is checked one key at a
//! time (linearizability is compositional), each as a single register.
//!
//! The search: linearize, one at a time, an operation that was called before every operation
//! not yet linearized had returned (a candidate for the next point); apply it to the register;
//! keep it if its recorded output matches; backtrack otherwise. States already seen (the set of
//! linearized operations and the register's value) are not explored again. The history is
//! linearizable when every operation that returned is linearized.

use std::collections::{BTreeMap, HashSet};

/// What an operation did to its key, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Wrote a value.
    Put(Vec<u8>),
    /// Read the value (`None`: the key was absent).
    Get(Option<Vec<u8>>),
    /// Compare-and-set: if the value was `expect`, wrote `new`; `succeeded` says whether it did.
    /// An operation whose outcome is unknown has no meaningful `succeeded`.
    Cas {
        /// The value compared against (`None`: absent).
        expect: Option<Vec<u8>>,
        /// The value written on success.
        new: Vec<u8>,
        /// Whether the compare held.
        succeeded: bool,
    },
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that ran it (for reports).
    pub client: usize,
    /// The key.
    pub key: Vec<u8>,
    /// What it did and saw.
    pub action: Action,
    /// When it was called.
    pub call: u64,
    /// When it returned; `None` when its outcome is unknown.
    pub ret: Option<u64>,
}

/// The first key whose operations admit no linearization, if any.
pub fn check(history: &[Operation]) -> Result<(), Vec<u8>> {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if !check_register(&ops) {
            return Err(key.to_vec());
        }
    }
    Ok(())
}

/// Applies `op` to the register `value`; `None` when the recorded output does not match.
fn step(value: &Option<Vec<u8>>, op: &Operation) -> Option<Option<Vec<u8>>> {
    let known = op.ret.is_some();
    match &op.action {
        Action::Put(v) => Some(Some(v.clone())),
        Action::Get(seen) => (!known || seen == value).then(|| value.clone()),
        Action::Cas {
            expect,
            new,
            succeeded,
        } => {
            let holds = expect == value;
            if known && holds != *succeeded {
                None
            } else if holds {
                Some(Some(new.clone()))
            } else {
                Some(value.clone())
            }
        }
    }
}

fn check_register(ops: &[&Operation]) -> bool {
    let n = ops.len();
    let mut done = vec![false; n];
    let mut seen: HashSet<(Vec<u64>, Option<Vec<u8>>)> = HashSet::new();
    search(ops, &mut done, &None, &mut seen)
}

fn bits(done: &[bool]) -> Vec<u64> {
    let mut b = vec![0u64; done.len().div_ceil(64)];
    for (i, d) in done.iter().enumerate() {
        if *d {
            b[i / 64] |= 1 << (i % 64);
        }
    }
    b
}

fn search(
    ops: &[&Operation],
    done: &mut Vec<bool>,
    value: &Option<Vec<u8>>,
    seen: &mut HashSet<(Vec<u64>, Option<Vec<u8>>)>,
) -> bool {
    // Every operation that returned is linearized: the rest may never have happened.
    let open: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
    let Some(horizon) = open.iter().filter_map(|&i| ops[i].ret).min() else {
        return true;
    };
    if !seen.insert((bits(done), value.clone())) {
        return false;
    }
    for i in open {
        if ops[i].call > horizon {
            continue;
        }
        if let Some(next) = step(value, ops[i]) {
            done[i] = true;
            let ok = search(ops, done, &next, seen);
            done[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, action: Action) -> Operation {
        Operation {
            client: 0,
            key: b"k".to_vec(),
            action,
            call,
            ret,
        }
    }

    fn put(v: &str) -> Action {
        Action::Put(v.as_bytes().to_vec())
    }

    fn get(v: Option<&str>) -> Action {
        Action::Get(v.map(|v| v.as_bytes().to_vec()))
    }

    fn cas(expect: Option<&str>, new: &str, succeeded: bool) -> Action {
        Action::Cas {
            expect: expect.map(|v| v.as_bytes().to_vec()),
            new: new.as_bytes().to_vec(),
            succeeded,
        }
    }

    #[test]
    fn a_sequential_history_that_reads_its_writes_is_linearizable() {
        let h = [
            op(0, Some(1), get(None)),
            op(2, Some(3), put("a")),
            op(4, Some(5), get(Some("a"))),
            op(6, Some(7), cas(Some("a"), "b", true)),
            op(8, Some(9), get(Some("b"))),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let h = [
            op(0, Some(1), put("a")),
            op(2, Some(3), put("b")),
            op(4, Some(5), get(Some("a"))),
        ];
        assert_eq!(check(&h), Err(b"k".to_vec()));
    }

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        let h = [
            op(0, Some(10), put("a")),
            op(1, Some(9), put("b")),
            op(11, Some(12), get(Some("a"))),
        ];
        assert_eq!(check(&h), Ok(()));
        let h = [
            op(0, Some(10), put("a")),
            op(1, Some(9), put("b")),
            op(11, Some(12), get(Some("b"))),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn two_reads_cannot_see_concurrent_writes_in_opposite_orders_once_both_finished() {
        // a and b both finish before the reads; the reads, one after the other, see b then a.
        let h = [
            op(0, Some(5), put("a")),
            op(0, Some(5), put("b")),
            op(6, Some(7), get(Some("b"))),
            op(8, Some(9), get(Some("a"))),
        ];
        assert_eq!(check(&h), Err(b"k".to_vec()));
    }

    #[test]
    fn a_compare_and_set_must_agree_with_the_value_it_compared() {
        let h = [
            op(0, Some(1), put("a")),
            op(2, Some(3), cas(Some("x"), "y", true)),
        ];
        assert_eq!(check(&h), Err(b"k".to_vec()));
        let h = [
            op(0, Some(1), put("a")),
            op(2, Some(3), cas(Some("a"), "y", false)),
        ];
        assert_eq!(check(&h), Err(b"k".to_vec()));
        let h = [
            op(0, Some(1), put("a")),
            op(2, Some(3), cas(Some("x"), "y", false)),
            op(4, Some(5), get(Some("a"))),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
        let late = [
            op(0, None, put("a")),
            op(5, Some(6), get(None)),
            op(7, Some(8), get(Some("a"))),
        ];
        assert_eq!(check(&late), Ok(()));
        let never = [op(0, None, put("a")), op(5, Some(6), get(None))];
        assert_eq!(check(&never), Ok(()));
        // But once seen it cannot be unseen.
        let flicker = [
            op(0, None, put("a")),
            op(5, Some(6), get(Some("a"))),
            op(7, Some(8), get(None)),
        ];
        assert_eq!(check(&flicker), Err(b"k".to_vec()));
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut h = vec![op(0, Some(1), put("a")), op(2, Some(3), get(Some("a")))];
        h.push(Operation {
            key: b"j".to_vec(),
            ..op(0, Some(1), get(Some("ghost")))
        });
        assert_eq!(check(&h), Err(b"j".to_vec()));
    }
}
