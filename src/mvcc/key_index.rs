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
//! 4. A [`KeyIndex`] holds its generations packed (`packed.rs`): one allocation of a few bytes per
//!    revision. Reads (`get`, `is_alive`) walk the packed bytes without allocating; a put rewrites
//!    the last generation's header and appends; other changes unpack the generations, change them
//!    as above and pack them again. The packing is canonical, so two equal histories have equal
//!    bytes.
//!
//! The keys and their histories live in an [`Index`] (`map.rs`), an ordered map. It is persisted
//! in its own tree with the revision it reflects (`persist.rs`); on open (`open.rs`) the persisted
//! index is loaded and the records after it replayed, or, when it cannot be trusted, the index is
//! rebuilt from the `key` tree by `rebuild.rs`, which reads only the head of each record.

mod map;
#[cfg(test)]
mod model_tests;
mod open;
mod packed;
pub(crate) mod persist;
mod rebuild;
#[cfg(test)]
mod test_writes;

use std::collections::HashSet;
use std::fmt;

use crate::mvcc::revision::Revision;

pub(crate) use map::Index;
pub use open::IndexOrigin;
pub(crate) use open::open;
pub(crate) use rebuild::rebuild;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Generation {
    /// The version of the newest revision in `revs`.
    version: i64,
    /// The revision that created the key in this life (its `sub` is always 0: only the main
    /// revision is recorded, as in a record's `create_revision`).
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

/// The history of one key, packed (invariant 4).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    packed: Box<[u8]>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::pack(&[Generation::default()])
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.unpack()).finish()
    }
}

impl KeyIndex {
    fn pack(generations: &[Generation]) -> KeyIndex {
        debug_assert!(!generations.is_empty(), "always one generation");
        let mut out = Vec::with_capacity(16);
        packed::encode(generations, &mut out);
        KeyIndex {
            packed: out.into_boxed_slice(),
        }
    }

    fn unpack(&self) -> Vec<Generation> {
        packed::decode(&self.packed)
    }

    /// Unpacks, lets `f` change the generations, and packs them again if they changed.
    fn change<R>(&mut self, f: impl FnOnce(&mut Vec<Generation>) -> R) -> R {
        let mut generations = self.unpack();
        let r = f(&mut generations);
        let mut out = Vec::with_capacity(self.packed.len() + 8);
        packed::encode(&generations, &mut out);
        if *out != *self.packed {
            self.packed = out.into_boxed_slice();
        }
        r
    }

    /// Records a put at `rev`; returns what is visible at `rev` afterwards.
    ///
    /// The hot path of every write, so it does not unpack: it finds the last generation in the
    /// packed bytes, writes its header anew (one more revision, one more version) and appends
    /// `rev`, in one allocation.
    pub fn put(&mut self, rev: Revision) -> VisibleRevision {
        // The last generation: where it and its revisions start, its header, first and last
        // revisions.
        let mut r = packed::Reader::new(&self.packed);
        let mut last = None;
        while !r.is_empty() {
            let at = r.position();
            let h = r.header();
            let revs_at = r.position();
            let (mut first, mut newest) = (None, None);
            for _ in 0..h.len {
                let rev = r.revision(newest);
                first = first.or(Some(rev));
                newest = Some(rev);
            }
            last = Some((at, revs_at, h, first, newest));
        }
        let (at, revs_at, h, first, newest) = last.expect("always one generation");
        debug_assert!(newest.is_none_or(|n| n < rev), "revisions rise");
        let (first, created, version) = match first {
            None => (rev.main, rev.main, 1),
            Some(first) => (
                first.main,
                h.created.unwrap_or(first.main),
                h.version.wrapping_add(1),
            ),
        };
        let mut out = Vec::with_capacity(self.packed.len() + 24);
        out.extend_from_slice(&self.packed[..at]);
        packed::put_header(&mut out, h.len + 1, version, created, first);
        out.extend_from_slice(&self.packed[revs_at..]);
        packed::put_revision(&mut out, newest, rev);
        self.packed = out.into_boxed_slice();
        VisibleRevision {
            modified: rev,
            created: Revision {
                main: created,
                sub: 0,
            },
            version,
        }
    }

    /// Records a delete at `rev`. The key must be alive.
    pub fn tombstone(&mut self, rev: Revision) {
        debug_assert!(self.is_alive(), "tombstone of a deleted key");
        self.change(|gens| {
            put(gens, rev);
            gens.push(Generation::default());
        })
    }

    /// Removes every revision above `main` (those of a write that failed). Returns whether the key
    /// is left with no history at all.
    pub fn unwind(&mut self, main: i64) -> bool {
        self.change(|gens| unwind(gens, main))
    }

    /// Whether the key exists now (its last generation is not empty).
    pub fn is_alive(&self) -> bool {
        let mut r = packed::Reader::new(&self.packed);
        let mut alive = false;
        while !r.is_empty() {
            let h = r.header();
            let mut previous = None;
            for _ in 0..h.len {
                previous = Some(r.revision(previous));
            }
            alive = h.len > 0;
        }
        alive
    }

    /// What is visible of the key at `at`, if it exists then.
    pub fn get(&self, at: i64) -> Option<VisibleRevision> {
        // The newest generation that began at or before `at`, walked oldest first.
        struct Candidate {
            created: Revision,
            version: i64,
            /// Revisions in the generation, and how many of them are at or below `at`.
            len: usize,
            at_or_below: usize,
            visible: Revision,
            newest: Revision,
        }
        let mut r = packed::Reader::new(&self.packed);
        let mut candidate: Option<Candidate> = None;
        let mut followed = false;
        while !r.is_empty() {
            let h = r.header();
            if h.len == 0 {
                followed = true;
                break;
            }
            let first = r.revision(None);
            if first.main > at {
                followed = true;
                break;
            }
            let (mut newest, mut visible, mut at_or_below) = (first, first, 1);
            for _ in 1..h.len {
                newest = r.revision(Some(newest));
                if newest.main <= at {
                    visible = newest;
                    at_or_below += 1;
                }
            }
            candidate = Some(Candidate {
                created: Revision {
                    main: h.created.unwrap_or(first.main),
                    sub: 0,
                },
                version: h.version,
                len: h.len,
                at_or_below,
                visible,
                newest,
            });
        }
        let c = candidate?;
        if followed && c.newest.main <= at {
            // This generation ended (in a tombstone) at or before `at`.
            return None;
        }
        Some(VisibleRevision {
            modified: c.visible,
            created: c.created,
            version: c.version.wrapping_sub((c.len - c.at_or_below) as i64),
        })
    }

    /// Compacts at `at` (see the module docs), adding the revisions kept at or below `at` to
    /// `keep`. Returns whether the key is gone from the index.
    ///
    /// Every generation still alive at `at` keeps its newest revision at or below it. Normally
    /// that is one generation; a store written before transactions refused to touch a key twice
    /// may hold a delete and a put of one key at one main revision, and then both the tombstone
    /// and the put at `at` are kept.
    pub fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) -> bool {
        self.change(|gens| compact(gens, at, keep))
    }

    /// The revision visible at `at` if it is at or below `floor`: what a hash at `at` over a
    /// store compacted at `floor` includes of this key from at or below the floor (etcd's
    /// `keyIndex.keep`, which leaves out a tombstone).
    pub fn kept_at(&self, at: i64, floor: i64) -> Option<Revision> {
        self.get(at).map(|v| v.modified).filter(|r| r.main <= floor)
    }
}

fn put(gens: &mut [Generation], rev: Revision) -> VisibleRevision {
    let g = gens.last_mut().expect("always one generation");
    debug_assert!(
        g.revs.last().is_none_or(|&last| last < rev),
        "revisions rise"
    );
    if g.revs.is_empty() {
        // The key is created at a main revision (`created.sub` is always 0).
        g.created = Revision {
            main: rev.main,
            sub: 0,
        };
    }
    g.revs.push(rev);
    g.version += 1;
    VisibleRevision {
        modified: rev,
        created: g.created,
        version: g.version,
    }
}

fn unwind(gens: &mut Vec<Generation>, main: i64) -> bool {
    loop {
        let n = gens.len();
        let newest = gens[n - 1].revs.last().map(|r| r.main);
        // An empty last generation follows a tombstone: unwind the tombstone if it is new.
        let ended_above = n > 1 && gens[n - 2].revs.last().is_some_and(|r| r.main > main);
        match newest {
            Some(m) if m > main => {
                let g = &mut gens[n - 1];
                g.revs.pop();
                g.version -= 1;
                if g.revs.is_empty() {
                    *g = Generation::default();
                }
            }
            None if ended_above => {
                gens.pop();
            }
            _ => break,
        }
    }
    gens.len() == 1 && gens[0].revs.is_empty()
}

fn compact(gens: &mut Vec<Generation>, at: i64, keep: &mut HashSet<Revision>) -> bool {
    let last = gens.len() - 1;
    let mut i = 0;
    gens.retain_mut(|g| {
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
    gens.len() == 1 && gens[0].revs.is_empty()
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
