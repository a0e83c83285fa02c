//! MVCC `Store` operation streams against a model that keeps every revision's key space: puts,
//! range deletes, transactions of several puts and deletes, compactions, reads at any readable
//! revision (with limits), and reopening the store from its file.
//!
//! The model leaves to the ordinary tests what they model in full (compaction at or below the
//! compacted revision, a transaction that touches one key twice, hashes: `tests/mvcc_model.rs`).
#![no_main]

use std::collections::BTreeMap;

use folio::sim::SimStorage;
use folio::{Db, KeyRange, Op, RangeOptions, Store};
use folio_fuzz::{Input, Removed, temp_path};

/// A key's state in one revision: value, create revision, mod revision, version.
type Entry = (Vec<u8>, i64, i64, i64);
type Space = BTreeMap<Vec<u8>, Entry>;

fn key(b: u8) -> Vec<u8> {
    format!("/k/{:02}", b % 24).into_bytes()
}

struct Model {
    /// The key space at each revision; index 0 stands for revision 1 (a new store's).
    history: Vec<Space>,
    compacted: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.history.len() as i64
    }

    fn at(&self, rev: i64) -> &Space {
        &self.history[rev as usize - 1]
    }

    /// Applies one write transaction's puts and deletes (keys distinct); returns whether it
    /// changed anything (and so took a revision).
    fn apply(&mut self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[(Vec<u8>, Vec<u8>)]) -> bool {
        let rev = self.current() + 1;
        let mut space = self.at(self.current()).clone();
        let mut changed = false;
        for (start, end) in deletes {
            let doomed: Vec<_> = space
                .range(start.clone()..end.clone())
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                space.remove(&k);
                changed = true;
            }
        }
        for (k, v) in puts {
            let entry = match space.get(k) {
                Some((_, create, _, version)) => (v.clone(), *create, rev, version + 1),
                None => (v.clone(), rev, rev, 1),
            };
            space.insert(k.clone(), entry);
            changed = true;
        }
        if changed {
            self.history.push(space);
        }
        changed
    }
}

fn check_range(store: &Store, model: &Model, rev: i64, start: &[u8], end: &[u8], limit: usize) {
    let mut options = RangeOptions::at(rev);
    if limit > 0 {
        options = options.limit(limit);
    }
    let r = store
        .range(KeyRange::bounds(start..end), options)
        .unwrap_or_else(|e| panic!("range at {rev} (compacted {}): {e}", model.compacted));
    let expected: Vec<_> = model.at(rev).range(start.to_vec()..end.to_vec()).collect();
    assert_eq!(r.count, expected.len() as u64, "count at {rev}");
    let shown = if limit > 0 {
        limit.min(expected.len())
    } else {
        expected.len()
    };
    assert_eq!(r.more, shown < expected.len(), "more at {rev}");
    assert_eq!(r.kvs.len(), shown, "kvs at {rev}");
    for (kv, (k, (v, create, modr, version))) in r.kvs.iter().zip(expected) {
        assert_eq!(&kv.key, k);
        assert_eq!(&kv.value, v, "value of {k:?} at {rev}");
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (*create, *modr, *version),
            "revisions of {k:?} at {rev}"
        );
    }
}

fn open(sim: &SimStorage) -> Store {
    let db = Db::builder()
        .open_with(Box::new(sim.clone()))
        .expect("reopen");
    Store::with_db(db).expect("store")
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let path = temp_path("mvcc");
    let _guard = Removed(path.clone());
    let sim = SimStorage::create(&path).expect("create");
    let db = Db::builder()
        .page_size(512)
        .create_with(Box::new(sim.clone()))
        .expect("db");
    let mut store = Store::with_db(db).expect("store");
    // As in etcd, a new store has compacted nothing: its compacted revision is -1.
    let mut model = Model {
        history: vec![Space::new()],
        compacted: -1,
    };
    let mut ops = 0;
    while !input.is_empty() && ops < 200 {
        ops += 1;
        let op = input.byte();
        match op % 8 {
            0 | 1 => {
                let (k, v) = (key(input.byte()), vec![op; input.byte() as usize % 90]);
                let rev = store.put(&k, &v).expect("put");
                model.apply(&[(k, v)], &[]);
                assert_eq!(rev, model.current(), "put revision");
            }
            2 => {
                let (a, b) = (key(input.byte()), key(input.byte()));
                let (start, end) = if a <= b { (a, b) } else { (b, a) };
                let r = store
                    .delete_range(KeyRange::bounds(start.as_slice()..end.as_slice()))
                    .expect("delete_range");
                let before = model
                    .at(model.current())
                    .range(start.clone()..end.clone())
                    .count();
                model.apply(&[], &[(start, end)]);
                assert_eq!(r.deleted, before as u64, "deleted");
                assert_eq!(r.revision, model.current(), "delete revision");
            }
            3 => {
                // A transaction of puts and deletes of distinct keys.
                let mut puts: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut deletes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut used = std::collections::BTreeSet::new();
                for _ in 0..input.byte() % 6 {
                    let k = key(input.byte());
                    if !used.insert(k.clone()) {
                        continue;
                    }
                    if input.byte() % 3 == 0 {
                        let mut end = k.clone();
                        end.push(0);
                        deletes.push((k, end));
                    } else {
                        puts.push((k, vec![op; input.byte() as usize % 40]));
                    }
                }
                let txn_ops: Vec<Op> = deletes
                    .iter()
                    .map(|(s, e)| Op::delete_range(KeyRange::bounds(s.as_slice()..e.as_slice())))
                    .chain(puts.iter().map(|(k, v)| Op::put(k, v)))
                    .collect();
                let r = store.txn().then(txn_ops).commit().expect("txn");
                assert!(r.succeeded);
                model.apply(&puts, &deletes);
                assert_eq!(r.revision, model.current(), "txn revision");
            }
            4 => {
                let current = model.current();
                if current > model.compacted + 1 {
                    let span = (current - model.compacted) as u64;
                    let rev = model.compacted + 1 + (u64::from(input.u16()) % span) as i64;
                    store.compact(rev).expect("compact");
                    model.compacted = rev;
                    assert_eq!(store.compacted_revision(), rev, "compacted revision");
                }
            }
            5 | 6 => {
                let low = model.compacted.max(1);
                let span = (model.current() - low + 1) as u64;
                let rev = low + (u64::from(input.u16()) % span) as i64;
                let (a, b) = (key(input.byte()), key(input.byte()));
                let (start, end) = if a <= b { (a, b) } else { (b, a) };
                check_range(&store, &model, rev, &start, &end, input.byte() as usize % 5);
            }
            _ => {
                drop(store);
                store = open(&sim);
                assert_eq!(
                    store.current_revision(),
                    model.current(),
                    "revision after reopen"
                );
                assert_eq!(
                    store.compacted_revision(),
                    model.compacted,
                    "compacted after reopen"
                );
            }
        }
    }
    let current = model.current();
    check_range(&store, &model, current, b"", b"\xff", 0);
    assert!(store.db().check().expect("check").is_clean());
});
