//! The in-memory key index: for each key, the revisions at which it changed, grouped into
//! generations. A generation is one life of the key, from the put that created it to the delete
//! (tombstone) that ended it. It answers "which revision of this key is visible at revision R".
//!
//! A worked example, for key `foo` (as in etcd's `key_index.go`):
//!
//! ```text
//! put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)
//!
//! generations:
//!     {empty}                 <- the key is deleted now; the next put starts a generation here
//!     {4.0, 5.0(t)}
//!     {1.0, 2.0, 3.0(t)}
//! ```
//! - At revision 2 the visible revision is 2.0 (version 2, created at 1).
//! - At revision 3 nothing is visible: the first generation ended at 3.
//! - At revision 4 the visible revision is 4.0 (version 1, created at 4).
//!
//! Compaction at C drops every generation that ended (in a tombstone) before C, and in each
//! generation left keeps its newest revision at or below C and everything after it. A tombstone
//! exactly at C is kept, as etcd does since 3.5.16 (`keyIndex.doCompact` looks for the first
//! generation whose tombstone is `>= atRev`), so a watcher from C still sees the delete at C. The
//! revisions kept at or below C are the ones the `key` tree must keep:
//!
//! ```text
//! compact(2): {empty} {4.0, 5.0(t)} {2.0, 3.0(t)}     keeps 2.0
//! compact(4): {empty} {4.0, 5.0(t)}                   keeps 4.0
//! compact(5): {empty} {5.0(t)}                        keeps 5.0(t)
//! compact(6): {empty}                                 the key is removed from the index
//! ```
//!
//! Invariants:
//! 1. Revisions rise through a generation and from one generation to the next.
//! 2. Every generation but the last ends with a tombstone; the last is empty exactly when the key is
//!    deleted (or was never written).
//! 3. A generation's `version` is the version of its newest revision; compaction trims the oldest
//!    revisions but keeps `created` and `version`, so versions stay right.

use std::collections::HashSet;

use crate::mvcc::revision::Revision;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Generation {
    /// The version of the newest revision in `revs`.
    version: i64,
    /// The revision that created the key in this life.
    created: Revision,
    revs: Vec<Revision>,
}

/// What is visible of a key at one revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VisibleRevision {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

/// The history of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            generations: vec![Generation::default()],
        }
    }
}

impl KeyIndex {
    /// Records a put at `rev`; returns what is visible at `rev` afterwards.
    pub fn put(&mut self, rev: Revision) -> VisibleRevision {
        let g = self.generations.last_mut().expect("always one generation");
        debug_assert!(
            g.revs.last().is_none_or(|&last| last < rev),
            "revisions rise"
        );
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.version += 1;
        VisibleRevision {
            modified: rev,
            created: g.created,
            version: g.version,
        }
    }

    /// Records a delete at `rev`. The key must be alive.
    pub fn tombstone(&mut self, rev: Revision) {
        debug_assert!(self.is_alive(), "tombstone of a deleted key");
        self.put(rev);
        self.generations.push(Generation::default());
    }

    /// Records a revision read back from the `key` tree on open (in revision order).
    pub fn restore(&mut self, rev: Revision, tombstone: bool, created: Revision, version: i64) {
        let g = self.generations.last_mut().expect("always one generation");
        if g.revs.is_empty() {
            // After a compaction the generation's first revisions may be gone: take what the
            // record says.
            g.created = created;
        }
        g.revs.push(rev);
        g.version = version;
        if tombstone {
            self.generations.push(Generation::default());
        }
    }

    /// Removes every revision above `main` (those of a write that failed). Returns whether the key
    /// is left with no history at all.
    pub fn unwind(&mut self, main: i64) -> bool {
        loop {
            let n = self.generations.len();
            let newest = self.generations[n - 1].revs.last().map(|r| r.main);
            // An empty last generation follows a tombstone: unwind the tombstone if it is new.
            let ended_above = n > 1
                && self.generations[n - 2]
                    .revs
                    .last()
                    .is_some_and(|r| r.main > main);
            match newest {
                Some(m) if m > main => {
                    let g = &mut self.generations[n - 1];
                    g.revs.pop();
                    g.version -= 1;
                    if g.revs.is_empty() {
                        *g = Generation::default();
                    }
                }
                None if ended_above => {
                    self.generations.pop();
                }
                _ => break,
            }
        }
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// Whether the key exists now (its last generation is not empty).
    pub fn is_alive(&self) -> bool {
        !self
            .generations
            .last()
            .expect("always one generation")
            .revs
            .is_empty()
    }

    /// What is visible of the key at `at`, if it exists then.
    pub fn get(&self, at: i64) -> Option<VisibleRevision> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(newest)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && newest.main <= at {
                // This generation ended (in a tombstone) at or before `at`.
                return None;
            }
            if first.main <= at {
                let n = g.revs.partition_point(|r| r.main <= at);
                return Some(VisibleRevision {
                    modified: g.revs[n - 1],
                    created: g.created,
                    version: g.version - (g.revs.len() - n) as i64,
                });
            }
        }
        None
    }

    /// Compacts at `at` (see the module docs), adding the revisions kept at or below `at` to
    /// `keep`. Returns whether the key is gone from the index.
    ///
    /// Every generation still alive at `at` keeps its newest revision at or below it. Normally
    /// that is one generation; a store written before transactions refused to touch a key twice
    /// may hold a delete and a put of one key at one main revision, and then both the tombstone
    /// and the put at `at` are kept.
    pub fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) -> bool {
        let last = self.generations.len() - 1;
        let mut i = 0;
        self.generations.retain_mut(|g| {
            let ended = i != last;
            i += 1;
            if ended && g.revs.last().is_some_and(|tomb| tomb.main < at) {
                return false;
            }
            if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
                keep.insert(g.revs[n]);
                g.revs.drain(..n);
            }
            true
        });
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// The revision visible at `at` if it is at or below `floor`: what a hash at `at` over a
    /// store compacted at `floor` includes of this key from at or below the floor (etcd's
    /// `keyIndex.keep`, which leaves out a tombstone).
    pub fn kept_at(&self, at: i64, floor: i64) -> Option<Revision> {
        self.get(at).map(|v| v.modified).filter(|r| r.main <= floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision { main, sub: 0 }
    }

    /// The example of the module docs.
    fn foo() -> KeyIndex {
        let mut k = KeyIndex::default();
        k.put(r(1));
        k.put(r(2));
        k.tombstone(r(3));
        k.put(r(4));
        k.tombstone(r(5));
        k
    }

    #[test]
    fn the_visible_revision_follows_generations() {
        let k = foo();
        assert_eq!(k.get(0), None);
        assert_eq!(
            k.get(2),
            Some(VisibleRevision {
                modified: r(2),
                created: r(1),
                version: 2
            })
        );
        assert_eq!(k.get(3), None);
        assert_eq!(
            k.get(4),
            Some(VisibleRevision {
                modified: r(4),
                created: r(4),
                version: 1
            })
        );
        assert_eq!(k.get(9), None);
        assert!(!k.is_alive());
    }

    #[test]
    fn compaction_keeps_what_the_module_docs_say() {
        let mut keep = HashSet::new();
        let mut k = foo();
        assert!(!k.compact(2, &mut keep));
        assert_eq!(keep, HashSet::from([r(2)]));
        assert_eq!(
            k.get(2),
            Some(VisibleRevision {
                modified: r(2),
                created: r(1),
                version: 2
            })
        );
        keep.clear();
        assert!(!k.compact(4, &mut keep));
        assert_eq!(keep, HashSet::from([r(4)]));
        assert_eq!(
            k.get(4),
            Some(VisibleRevision {
                modified: r(4),
                created: r(4),
                version: 1
            })
        );
        keep.clear();
        assert!(!k.compact(5, &mut keep), "the tombstone at 5 is kept");
        assert_eq!(keep, HashSet::from([r(5)]));
        assert_eq!(k.get(5), None);
        keep.clear();
        assert!(k.compact(6, &mut keep));
        assert!(keep.is_empty());
    }

    #[test]
    fn unwinding_a_failed_write_restores_the_history_before_it() {
        let mut k = foo();
        let before = k.clone();
        k.put(r(6));
        k.tombstone(Revision { main: 6, sub: 1 });
        k.put(Revision { main: 6, sub: 2 });
        assert!(!k.unwind(5));
        assert_eq!(k, before);
        let mut fresh = KeyIndex::default();
        fresh.put(r(7));
        assert!(fresh.unwind(6));
    }

    #[test]
    fn compacting_at_a_delete_and_put_in_one_transaction_keeps_the_put() {
        // Such histories come only from stores written before duplicate keys were refused.
        let mut k = KeyIndex::default();
        k.put(r(1));
        k.tombstone(Revision { main: 2, sub: 0 });
        k.put(Revision { main: 2, sub: 1 });
        let mut keep = HashSet::new();
        assert!(!k.compact(2, &mut keep));
        assert_eq!(
            keep,
            HashSet::from([Revision { main: 2, sub: 0 }, Revision { main: 2, sub: 1 }])
        );
        assert_eq!(k.get(2).map(|v| v.version), Some(1));
    }

    /// etcd 3.5.16 and later keep a tombstone at the compaction revision (etcd PR 18274).
    #[test]
    fn compacting_at_a_tombstone_keeps_it_and_the_next_compaction_drops_it() {
        let mut keep = HashSet::new();
        let mut k = foo();
        assert!(!k.compact(3, &mut keep));
        assert_eq!(keep, HashSet::from([r(3)]));
        assert_eq!(k.get(3), None);
        assert_eq!(k.get(4).map(|v| v.version), Some(1));
        keep.clear();
        assert!(!k.compact(4, &mut keep));
        assert_eq!(keep, HashSet::from([r(4)]));
        assert_eq!(k.get(4).map(|v| v.modified), Some(r(4)));
    }

    #[test]
    fn a_hash_keeps_only_the_revision_visible_at_its_revision_and_never_a_tombstone() {
        let k = foo();
        assert_eq!(k.kept_at(2, 2), Some(r(2)));
        assert_eq!(
            k.kept_at(2, 1),
            None,
            "2.0 is above the floor, hashed anyway"
        );
        assert_eq!(k.kept_at(3, 3), None, "a tombstone is not kept");
        assert_eq!(k.kept_at(4, 4), Some(r(4)));
    }
}
