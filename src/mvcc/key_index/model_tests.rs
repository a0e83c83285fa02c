//! The packed index against a model that keeps every event of every key in a `BTreeMap` and
//! answers by brute force. Random histories of puts, deletes, failed writes (unwound) and
//! compactions, seeded: each case prints its seed, and `FOLIO_SEED=<seed>` reruns one.

use std::collections::{BTreeMap, HashSet};

use crate::mvcc::key_index::{Index, KeyIndex};
use crate::mvcc::revision::Revision;
use crate::testing::Rng;

/// Every change of every key, never trimmed, and the last compaction.
#[derive(Default)]
struct Model {
    events: BTreeMap<Vec<u8>, Vec<(Revision, bool)>>,
    compacted: i64,
}

/// (modified, created main, version), what the store uses of a visible revision.
type Seen = (Revision, i64, i64);

impl Model {
    fn visible(&self, key: &[u8], at: i64) -> Option<Seen> {
        let events = self.events.get(key)?;
        let n = events.partition_point(|(r, _)| r.main <= at);
        let (modified, tombstone) = *events.get(n.checked_sub(1)?)?;
        if tombstone {
            return None;
        }
        let start = events[..n].iter().rposition(|e| e.1).map_or(0, |t| t + 1);
        Some((modified, events[start].0.main, (n - start) as i64))
    }

    fn alive(&self, key: &[u8]) -> bool {
        self.events
            .get(key)
            .and_then(|e| e.last())
            .is_some_and(|e| !e.1)
    }

    /// Whether the index still holds `key`: it has changed, and not only before a compaction
    /// that found it deleted.
    fn indexed(&self, key: &[u8]) -> bool {
        self.events
            .get(key)
            .and_then(|e| e.last())
            .is_some_and(|&(r, tombstone)| !tombstone || r.main >= self.compacted)
    }

    /// What a compaction at `at` keeps at or below it: each key's newest revision at or below
    /// `at`, a tombstone only when it is at `at`.
    fn kept(&self, at: i64) -> HashSet<Revision> {
        self.events
            .values()
            .filter_map(|e| {
                let n = e.partition_point(|(r, _)| r.main <= at);
                let (r, tombstone) = *e.get(n.checked_sub(1)?)?;
                (!tombstone || r.main == at).then_some(r)
            })
            .collect()
    }
}

fn seen(ki: &KeyIndex, at: i64) -> Option<Seen> {
    ki.get(at).map(|v| (v.modified, v.created.main, v.version))
}

fn check(index: &Index, model: &Model, current: i64, seed: u64) {
    let keys: Vec<Vec<u8>> = model.events.keys().cloned().collect();
    for key in &keys {
        let ki = index.get(key);
        assert_eq!(
            ki.is_some(),
            model.indexed(key),
            "seed {seed}: whether {key:?} is indexed"
        );
        let Some(ki) = ki else { continue };
        assert_eq!(
            ki.is_alive(),
            model.alive(key),
            "seed {seed}: {key:?} alive"
        );
        assert_eq!(
            KeyIndex::pack(&ki.unpack()),
            *ki,
            "seed {seed}: packing is canonical"
        );
        for at in model.compacted.max(0)..=current + 1 {
            assert_eq!(
                seen(ki, at),
                model.visible(key, at),
                "seed {seed}: {key:?} at {at}, index {ki:?}"
            );
        }
    }
    assert_eq!(
        index.len(),
        keys.iter().filter(|k| model.indexed(k)).count(),
        "seed {seed}"
    );
}

fn run(seed: u64) {
    let mut rng = Rng(seed);
    let mut index = Index::default();
    let mut model = Model {
        compacted: -1,
        ..Model::default()
    };
    let mut current = 1;
    let names: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'k', b'a' + i]).collect();
    for _ in 0..60 {
        if rng.below(6) == 0 {
            // A compaction at or above the last one.
            let at = model.compacted.max(0)
                + rng.below((current - model.compacted.max(0) + 1) as u64) as i64;
            let want = model.kept(at);
            model.compacted = at;
            let mut keep = HashSet::new();
            let mut gone = Vec::new();
            for (k, ki) in index.range_mut::<[u8], _>(..) {
                if ki.compact(at, &mut keep) {
                    gone.push(k.to_vec());
                }
            }
            for k in &gone {
                index.remove(k);
            }
            assert_eq!(keep, want, "seed {seed}: kept by compact({at})");
        } else {
            // A write of one to three keys at the next main revision; one in seven fails.
            let main = current + 1;
            let fails = rng.below(7) == 0;
            let mut touched: Vec<Vec<u8>> = Vec::new();
            let mut changes = Vec::new();
            for sub in 0..1 + rng.below(3) as i64 {
                let key = &names[rng.below(names.len() as u64) as usize];
                if touched.contains(key) {
                    continue;
                }
                touched.push(key.clone());
                let rev = Revision { main, sub };
                let alive = index.get(key).is_some_and(|ki| ki.is_alive());
                let tombstone = alive && rng.below(3) == 0;
                if tombstone {
                    index.get_mut(key).expect("alive").tombstone(rev);
                } else {
                    let v = index.entry(key.clone()).or_default().put(rev);
                    let (m, created, version) = seen_after_put(&model, key, rev);
                    assert_eq!(
                        (v.modified, v.created.main, v.version),
                        (m, created, version),
                        "seed {seed}: put {key:?} at {rev:?}"
                    );
                }
                changes.push((key.clone(), rev, tombstone));
            }
            if fails {
                for key in &touched {
                    if index.get_mut(key).is_some_and(|ki| ki.unwind(current)) {
                        index.remove(key);
                    }
                }
            } else {
                for (key, rev, tombstone) in changes {
                    model.events.entry(key).or_default().push((rev, tombstone));
                }
                current = main;
            }
        }
        check(&index, &model, current, seed);
    }
}

/// What a put of `key` at `rev` makes visible, by the model.
fn seen_after_put(model: &Model, key: &[u8], rev: Revision) -> Seen {
    match model.visible(key, rev.main) {
        Some((_, created, version)) => (rev, created, version + 1),
        None => (rev, rev.main, 1),
    }
}

#[test]
fn the_packed_index_answers_as_a_model_of_every_event() {
    let seeds: Vec<u64> = match std::env::var("FOLIO_SEED") {
        Ok(s) => vec![s.parse().expect("FOLIO_SEED=<u64>")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64;
            (0..300).map(|i| base.wrapping_add(i)).collect()
        }
    };
    println!("seeds {} to {}", seeds[0], seeds[seeds.len() - 1]);
    for seed in seeds {
        run(seed);
    }
}
