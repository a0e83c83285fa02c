//! Commits made durable by one sync (`txn::sync`, rule 2), under power loss.
//!
//! Each batch records several group commits before one round makes them durable, and each commit
//! rewrites the same keys, so the later commits of a batch free the pages the earlier ones wrote:
//! the round's proof must name only the runs the newest commit still uses, because the next batch
//! reuses the freed ones once the round is durable. Some batches write more runs than a proof
//! holds, so their round syncs twice. A crash at every call of the workload, then every image a
//! power loss could leave there (only what was synced, and the unsynced sectors reordered): each
//! opens, passes `check`, and holds the state after one whole commit, no older than the last one
//! acknowledged. At 512-byte pages (a sector: a meta is torn whole or not at all) and at 4 KiB
//! (a meta's checksummed part and its proof lie in different sectors, so a reordered image can
//! keep one and not the other). Seeded: the test prints its seed, and `FOLIO_SEED=<seed>` reruns
//! it.

use crate::page_file::meta;
use crate::page_file::sim::{Fault, SimStorage};
use crate::testing::{Rng, seed};
use crate::txn::db::Db;
use crate::txn::sync::Durability;

const KEYS: u32 = 12;

/// Commits per batch and values' length, by batch: small commits a proof covers, and one batch
/// whose three commits each write more runs than a 512-byte meta can name.
const BATCHES: [(usize, usize); 6] = [(3, 20), (2, 40), (4, 20), (3, 400), (3, 30), (2, 20)];

/// The value every key holds after commit `j` (counting from 1).
fn value(j: u64, len: usize) -> Vec<u8> {
    let mut v = j.to_be_bytes().to_vec();
    v.resize(len, b'v');
    v
}

/// Runs the workload on `db` until a call fails. Returns the commits acknowledged (durable) and
/// the commits made (visible).
fn run(db: &Db) -> (u64, u64) {
    let (mut acked, mut made) = (0, 0);
    for (commits, len) in BATCHES {
        let mut visible = Vec::new();
        for _ in 0..commits {
            let mut tx = match db.begin_write() {
                Ok(tx) => tx,
                Err(_) => return (acked, made),
            };
            tx.set_durability(Durability::Group);
            {
                let mut t = tx.open_tree(b"t").unwrap();
                for k in 0..KEYS {
                    t.put(&k.to_be_bytes(), &value(made + 1, len)).unwrap();
                }
            }
            match tx.commit_visible() {
                Ok(v) => visible.push(v),
                Err(_) => return (acked, made),
            }
            made += 1;
        }
        for v in visible {
            if v.wait().is_err() {
                return (acked, made);
            }
        }
        acked = made;
    }
    (acked, made)
}

/// The commit whose state `db` holds (0: none), after checking that it is one whole commit.
fn state_of(db: &Db, what: &str) -> u64 {
    let report = db
        .check()
        .unwrap_or_else(|e| panic!("{what}: check failed: {e}"));
    assert!(report.is_clean(), "{what}: {report}");
    let read = db.begin_read().unwrap();
    let Some(t) = read.tree(b"t").unwrap() else {
        return 0;
    };
    let values: Vec<Vec<u8>> = (0..KEYS)
        .map(|k| {
            t.get(&k.to_be_bytes())
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: key {k} missing"))
                .to_vec()
        })
        .collect();
    let j = u64::from_be_bytes(values[0][..8].try_into().unwrap());
    assert!(
        values.iter().all(|v| v[..8] == values[0][..8]),
        "{what}: keys from different commits"
    );
    j
}

/// The proof length of the newest meta in `image`.
fn newest_proof_len(image: &[u8], page_size: u32) -> u32 {
    let at = |slot: usize, off: usize, n: usize| &image[slot * page_size as usize + off..][..n];
    let txid = |slot| u64::from_le_bytes(at(slot, 40, 8).try_into().unwrap());
    let proof_len = |slot| u32::from_le_bytes(at(slot, 80, 4).try_into().unwrap());
    match txid(0).cmp(&txid(1)) {
        std::cmp::Ordering::Less => proof_len(1),
        std::cmp::Ordering::Equal => proof_len(0).min(proof_len(1)),
        std::cmp::Ordering::Greater => proof_len(0),
    }
}

fn create(path: &std::path::Path, page_size: u32) -> (SimStorage, Db) {
    let sim = SimStorage::create(path).unwrap();
    let db = Db::builder()
        .page_size(page_size)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    (sim, db)
}

#[test]
fn a_power_loss_at_any_call_of_one_sync_group_commits_keeps_a_whole_commit_no_older_than_acknowledged()
 {
    crash_at_every_call(512);
}

#[test]
fn with_4_kib_pages_a_power_loss_at_any_call_of_one_sync_group_commits_keeps_a_whole_commit() {
    crash_at_every_call(4096);
}

fn crash_at_every_call(page_size: u32) {
    let mut rng = Rng(seed(&format!(
        "one-sync group commits, {page_size}-byte pages"
    )));
    let dir = tempfile::tempdir().unwrap();

    // The fault-free run: how many calls it makes (the close's included), and that the last
    // batch was proved.
    let (sim, db) = create(&dir.path().join("dry"), page_size);
    let base = sim.calls();
    let total = BATCHES.iter().map(|b| b.0 as u64).sum::<u64>();
    assert_eq!(
        run(&db),
        (total, total),
        "the dry run acknowledges every commit"
    );
    assert!(
        newest_proof_len(&sim.crash_image(None), page_size) > 0,
        "a batch of small commits after the big ones is proved"
    );
    drop(db);
    let calls = sim.calls() - base;
    assert_eq!(
        newest_proof_len(&sim.crash_image(None), page_size),
        0,
        "a clean close leaves the last commit's meta without a proof (rule 8)"
    );
    if page_size == 512 {
        assert!(
            meta::proof_capacity(page_size) < 30,
            "the big batch writes more runs than a proof holds"
        );
    }

    let mut proved_images = 0;
    for n in 1..=calls {
        let name = format!("crash-{n}");
        let (sim, db) = create(&dir.path().join(&name), page_size);
        sim.arm(n, Fault::Crash);
        let (acked, made) = run(&db);
        drop(db);
        assert!(sim.crashed(), "call {n}: the armed call was never made");
        let mut images = vec![("synced only".to_string(), sim.crash_image(None))];
        if sim.unsynced_blocks() > 0 {
            for _ in 0..6 {
                let s = rng.next();
                images.push((format!("reordered {s}"), sim.crash_image_reordered(s)));
            }
        }
        for (i, (label, image)) in images.into_iter().enumerate() {
            let what = format!("crash at call {n} (acknowledged {acked}, made {made}), {label}");
            proved_images += u64::from(newest_proof_len(&image, page_size) > 0);
            let copy =
                SimStorage::with_image(&dir.path().join(format!("{name}-{i}")), &image).unwrap();
            let db = Db::builder()
                .open_with(Box::new(copy))
                .unwrap_or_else(|e| panic!("{what}: does not open: {e}"));
            let j = state_of(&db, &what);
            assert!(
                (acked..=made).contains(&j),
                "{what}: holds commit {j}, not one of {acked}..={made}"
            );
        }
    }
    assert!(proved_images > 0, "no image's newest meta carried a proof");
}
