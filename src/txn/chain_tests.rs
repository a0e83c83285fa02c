//! The freelist chain through real commits: after every commit, the chain the meta names, loaded
//! as an open loads it, must give exactly the persisted set the writer holds (free and pending
//! pages), and must lie where the writer thinks it does. Seeded: the test prints its seed, and
//! `FOLIO_SEED=<seed>` reruns it.

use crate::page_file::freelist::chain;
use crate::testing::{Rng, seed};
use crate::txn::db::Db;

/// Loads the newest commit's chain and compares it with the writer's list and chain.
fn assert_chain_matches_the_writer(db: &Db, step: usize) -> u64 {
    let w = db.inner.writer.lock();
    let meta = w.latest.meta;
    assert_ne!(
        meta.freelist, 0,
        "step {step}: every commit writes a freelist"
    );
    let (list, loaded) = chain::load(&w.latest.pages(true), meta.freelist)
        .unwrap_or_else(|e| panic!("step {step}: {e}"));
    assert_eq!(
        list.extents().collect::<Vec<_>>(),
        w.freelist.persisted_runs(),
        "step {step}: the loaded list"
    );
    assert_eq!(loaded, w.chain, "step {step}: the chain");
    loaded.depth()
}

#[test]
fn the_freelist_an_open_loads_is_the_one_the_writer_holds_after_every_commit() {
    let mut rng = Rng(seed("freelist chain"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.folio");
    let (mut deepest, mut full_lists) = (0, 0);
    for open in 0..4 {
        let db = Db::builder().page_size(512).open(&path).unwrap();
        if open > 0 {
            assert_chain_matches_the_writer(&db, open * 150);
            let report = db.check().unwrap();
            assert!(report.is_clean(), "open {open}: {report}");
        }
        let mut reader = None;
        for step in open * 150..(open + 1) * 150 {
            // A reader held across commits keeps their freed pages pending.
            if rng.below(8) == 0 {
                reader = None;
            } else if reader.is_none() && rng.below(8) == 0 {
                reader = Some(db.begin_read().unwrap());
            }
            let mut tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_tree(b"t").unwrap();
                for _ in 0..1 + rng.below(20) {
                    let key = format!("{:05}", rng.below(3000));
                    if rng.below(3) == 0 {
                        t.delete(key.as_bytes()).unwrap();
                    } else {
                        let len = [8, 100, 700][rng.below(3) as usize];
                        t.put(key.as_bytes(), &vec![b'v'; len]).unwrap();
                    }
                }
            }
            tx.commit().unwrap();
            let depth = assert_chain_matches_the_writer(&db, step);
            deepest = deepest.max(depth);
            full_lists += u64::from(depth == 0);
        }
        drop(reader);
    }
    assert!(
        deepest >= 3 && full_lists >= 10,
        "the test reached chains {deepest} deltas deep and wrote {full_lists} full lists"
    );
}
