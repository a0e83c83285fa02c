//! B+tree operation streams against a `BTreeMap` model, with injected I/O failures and crashes.
//!
//! Each transaction puts, overwrites and deletes keys (values small or overflowing) in two trees,
//! may delete or recreate a tree, and commits or aborts. A fault may be armed on any later storage
//! call: `Fail` (the call errs, later ones work) or `Crash` (the machine stops). After a failed
//! commit the database is reopened from its file; after a crash, from the crash image (sometimes
//! with a torn prefix of the last unsynced write). Either way the reopened database must check
//! clean and hold exactly the last acknowledged commit or the one in flight.
#![no_main]

use std::collections::BTreeMap;

use folio::Db;
use folio::sim::{Fault, SimStorage};
use folio_fuzz::{Input, Removed, temp_path};

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

const TREES: [&[u8]; 2] = [b"t", b"u"];

fn key(b: u8) -> Vec<u8> {
    let i = b % 64;
    let mut k = format!("k{i:02}").into_bytes();
    k.resize(3 + (i as usize * 7) % 60, b'-');
    k
}

fn value(len_code: u8, fill: u8) -> Vec<u8> {
    let len = match len_code % 8 {
        0..=4 => (len_code as usize) % 40,
        5 | 6 => 100 + len_code as usize * 3,
        _ => 600 + len_code as usize * 20, // an overflow run at page size 512
    };
    vec![fill; len]
}

fn contents(db: &Db) -> Model {
    let tx = db.begin_read().expect("begin_read");
    let mut model = Model::new();
    for name in tx.tree_names().expect("tree_names") {
        let tree = tx.tree(&name).expect("tree").expect("listed");
        let entries: BTreeMap<_, _> = tree
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<folio::Result<_>>()
            .expect("read tree");
        assert_eq!(tree.len(), entries.len() as u64, "tree length");
        model.insert(name, entries);
    }
    model
}

/// Opens the database held by `sim`, retrying while an armed fault makes the open fail.
fn open(sim: &SimStorage) -> Db {
    for _ in 0..3 {
        match Db::builder().open_with(Box::new(sim.clone())) {
            Ok(db) => return db,
            Err(_) => sim.disarm(),
        }
    }
    panic!("a sound database does not reopen")
}

/// Reopens after a failed commit or a crash, checks, and returns which state the file holds.
fn recover(
    sim: &mut SimStorage,
    guard: &mut Removed,
    torn: Option<usize>,
    acked: &Model,
    in_flight: Option<&Model>,
) -> (Db, Model) {
    if sim.crashed() {
        let image = sim.crash_image(torn);
        let path = temp_path("crash");
        *sim = SimStorage::with_image(&path, &image).expect("image");
        *guard = Removed(path);
    }
    sim.disarm();
    let db = open(sim);
    let report = db.check().expect("check");
    assert!(report.is_clean(), "after recovery: {report}");
    let found = contents(&db);
    assert!(
        &found == acked || Some(&found) == in_flight,
        "recovered neither the acknowledged commit nor the one in flight"
    );
    (db, found)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let path = temp_path("model");
    let mut guard = Removed(path.clone());
    let mut sim = SimStorage::create(&path).expect("create");
    let mut db = Db::builder()
        .page_size(512)
        .create_with(Box::new(sim.clone()))
        .expect("create db");
    let mut model = Model::new();
    let mut txns = 0;
    while !input.is_empty() && txns < 64 {
        txns += 1;
        // An armed fault for this transaction's commit, or none.
        let arm = input.byte();
        let torn = match input.byte() {
            t if t < 128 => None,
            t => Some(t as usize * 13),
        };
        match arm % 4 {
            1 => sim.arm(1 + u64::from(arm / 4 % 12), Fault::Fail),
            2 => sim.arm(1 + u64::from(arm / 4 % 12), Fault::Crash),
            _ => {}
        }
        let mut pending = model.clone();
        let mut tx = db.begin_write().expect("begin_write");
        for _ in 0..(input.byte() % 24) {
            let op = input.byte();
            let name = TREES[(op & 1) as usize];
            match op / 2 % 8 {
                0..=3 => {
                    let (k, v) = (key(input.byte()), value(input.byte(), op));
                    tx.open_tree(name)
                        .expect("open_tree")
                        .put(&k, &v)
                        .expect("put");
                    pending.entry(name.to_vec()).or_default().insert(k, v);
                }
                4 | 5 => {
                    let k = key(input.byte());
                    let had = tx
                        .open_tree(name)
                        .expect("open_tree")
                        .delete(&k)
                        .expect("delete");
                    let entries = pending.entry(name.to_vec()).or_default();
                    assert_eq!(had, entries.remove(&k).is_some(), "delete found");
                }
                6 => {
                    let existed = tx.delete_tree(name).expect("delete_tree");
                    assert_eq!(existed, pending.remove(name).is_some(), "delete_tree found");
                }
                _ => {
                    let tree = tx.open_tree(name).expect("open_tree");
                    let entries = pending.entry(name.to_vec()).or_default();
                    let seen: Vec<_> = tree
                        .iter()
                        .map(|e| e.map(|(k, _)| k.to_vec()))
                        .collect::<folio::Result<_>>()
                        .expect("iterate");
                    assert!(
                        seen.iter().eq(entries.keys()),
                        "a write transaction reads its writes"
                    );
                }
            }
        }
        let commit = input.byte() % 8 != 0;
        if !commit {
            drop(tx);
            sim.disarm();
            continue;
        }
        match tx.commit() {
            Ok(()) => model = pending,
            Err(_) => {
                drop(db);
                let (reopened, found) = recover(&mut sim, &mut guard, torn, &model, Some(&pending));
                db = reopened;
                model = found;
            }
        }
        if sim.crashed() {
            // The crash hit after the commit returned (it cannot: nothing runs between), or
            // during nothing at all; recover the same way.
            drop(db);
            let (reopened, found) = recover(&mut sim, &mut guard, torn, &model, None);
            db = reopened;
            model = found;
        }
        sim.disarm();
        if txns % 8 == 0 {
            assert_eq!(contents(&db), model, "contents after commit {txns}");
        }
    }
    assert_eq!(contents(&db), model, "final contents");
    let report = db.check().expect("check");
    assert!(report.is_clean(), "{report}");
});
