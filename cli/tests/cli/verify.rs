//! `folio get` printed a flipped value with exit 0 (issue 11, defect 2): the command opened
//! stores without verifying page checksums and had no way to ask for it. Now every read verifies
//! by default: for a flip of a byte in any kind of page (a sample of offsets in the first page of
//! each kind, and a seeded random sample over the whole file), `get`, `range` and `dump` print
//! exactly what they print for the undamaged store, or fail with a corruption, never other data.
//! `--no-verify` is the documented way back to unverified reads.

use std::path::Path;

use crate::common::{folio, open_db, open_store, pod, temp_db};
use folio::PageUse;

/// A seed from the clock, or `FOLIO_FLIP_SEED`; printed.
fn seed() -> u64 {
    let seed = std::env::var("FOLIO_FLIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            t ^ u64::from(std::process::id())
        });
    println!("seed {seed} (rerun with FOLIO_FLIP_SEED={seed})");
    seed
}

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value of `len` printable bytes.
fn text(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + seed) % 26) as u8)
        .collect()
}

/// A store of 200 pods and one value of 6,000 bytes (an overflow run), updated once so that it
/// has a freelist: leaves, a branch, overflow pages and a freelist page.
fn build(path: &Path) {
    let store = open_store(path);
    for i in 0..200 {
        store.put(&pod(i), &text(30, i as usize)).unwrap();
    }
    store.put(b"big", &text(6000, 1)).unwrap();
    store.put(&pod(3), b"updated").unwrap();
    store.db().sync().unwrap();
    let stats = store.db().stats().unwrap();
    assert!(
        stats.branch_pages > 0 && stats.overflow_pages > 1 && stats.freelist_pages > 0,
        "the fixture lacks a kind of page: {stats:?}"
    );
}

/// The reads compared: two gets, a range of everything, a tree dump and the overview.
fn commands(db: &Path) -> Vec<Vec<String>> {
    let db = db.display().to_string();
    let pod0 = String::from_utf8(pod(0)).unwrap();
    [
        vec!["get", &db, &pod0],
        vec!["get", &db, "big"],
        vec!["range", &db, "--prefix", ""],
        vec!["dump", &db, "--tree", "mvcc.key", "--value-bytes", "10000"],
        vec!["dump", &db],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn every_cli_read_of_a_damaged_store_prints_the_right_data_or_fails_with_a_corruption() {
    let (dir, path) = temp_db("store.folio");
    build(&path);
    let bytes = std::fs::read(&path).unwrap();
    let page_size = open_db(&path).page_size() as usize;
    let map = open_db(&path).page_map().unwrap();
    // What the reads print for the undamaged store, at the path the damaged copies will have.
    let damaged = dir.path().join("damaged.folio");
    std::fs::write(&damaged, &bytes).unwrap();
    let want: Vec<String> = commands(&damaged)
        .iter()
        .map(|c| folio(c).ok().to_string())
        .collect();

    // The first page of each kind at chosen offsets (header fields, the first slot, the middle,
    // the end), the second page of the overflow run, then random bytes anywhere.
    let mut flips: Vec<(usize, usize)> = Vec::new();
    for kind in [
        PageUse::Branch,
        PageUse::Leaf,
        PageUse::Overflow,
        PageUse::Freelist,
    ] {
        let run = map.runs.iter().find(|r| r.page_use == kind).unwrap();
        let mut pages = vec![run.start as usize];
        if kind == PageUse::Overflow {
            pages.push(run.start as usize + 1);
        }
        for page in pages {
            for offset in [0, 8, 10, 12, 16, 24, 40, page_size / 2, page_size - 1] {
                flips.push((page, offset));
            }
        }
    }
    let mut state = seed();
    for _ in 0..30 {
        let at = 2 * page_size + (next(&mut state) as usize) % (bytes.len() - 2 * page_size);
        flips.push((at / page_size, at % page_size));
    }

    let (mut failed, mut same) = (0, 0);
    for (page, offset) in flips {
        let mask = (next(&mut state) % 255 + 1) as u8;
        let mut copy = bytes.clone();
        copy[page * page_size + offset] ^= mask;
        std::fs::write(&damaged, &copy).unwrap();
        for (command, want) in commands(&damaged).iter().zip(&want) {
            let run = folio(command);
            let what = format!("byte {offset} of page {page} xor {mask:#04x}: {command:?}");
            if run.code == Some(0) {
                run.no_panic();
                assert!(run.stdout == *want, "{what} printed other data: {run:#?}");
                same += 1;
            } else {
                let line = run.fails();
                assert!(line.contains("corrupted page"), "{what}: {line}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && same > 0, "{failed} failed, {same} as before");
}

#[test]
fn no_verify_reads_a_damaged_value_that_a_default_read_refuses() {
    let (_dir, path) = temp_db("store.folio");
    build(&path);
    let big = open_db(&path)
        .page_map()
        .unwrap()
        .runs
        .iter()
        .find(|r| r.page_use == PageUse::Overflow)
        .unwrap()
        .start;
    crate::common::damage_page(&path, big);
    let db = path.display().to_string();
    let line = folio(["get", &db, "big"]).fails().to_string();
    assert!(line.contains(&format!("corrupted page {big}")), "{line}");
    let flipped = folio(["get", "--no-verify", &db, "big"]);
    let value = flipped.ok().trim_end();
    assert!(
        value.len() >= 6000 && value.as_bytes() != text(6000, 1),
        "--no-verify should read the damaged value as it is: {value:?}"
    );
}
