//! `folio defrag`: the holes go, the data stays, and a file in use is refused.

use crate::common::{
    folio, folio_on, folio_once, fragmented_store, line, open_db, open_store, temp_db,
};

/// The number in the map's summary line `… · N holes`.
fn holes(map_output: &str) -> u64 {
    let summary = line(map_output, "live ");
    let (_, tail) = summary.rsplit_once("· ").unwrap();
    tail.split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

#[test]
fn defrag_closes_every_hole_that_map_shows_and_keeps_every_key() {
    let (_dir, path) = temp_db("kv.folio");
    let rev = fragmented_store(&path, 1200);
    let before = folio(["map".as_ref(), path.as_os_str()]);
    assert!(holes(before.ok()) > 1, "the fixture has holes: {before:?}");
    assert!(before.stdout.contains('.'), "free pages drawn: {before:?}");
    let keys_before = folio_on("range", &path, &["--keys-only"]);
    let size_before = std::fs::metadata(&path).unwrap().len();

    let out = folio(["defrag".as_ref(), path.as_os_str()]);
    let text = out.ok();
    assert!(
        text.starts_with(&format!("defragmented {}\nsize    ", path.display())),
        "{text}"
    );
    assert!(text.contains(" -> "), "{text}");
    assert!(text.contains("given back"), "{text}");
    assert!(std::fs::metadata(&path).unwrap().len() < size_before);

    let after = folio(["map".as_ref(), path.as_os_str()]);
    assert_eq!(holes(after.ok()), 0, "{after:?}");
    let cells: String = after
        .stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("legend"))
        .collect();
    assert!(!cells.contains('.') && !cells.contains('_'), "{after:?}");
    folio(["check".as_ref(), path.as_os_str()]).ok();
    let keys_after = folio_on("range", &path, &["--keys-only"]);
    assert_eq!(keys_after.ok(), keys_before.ok());
    let store = open_store(&path);
    assert_eq!(store.current_revision(), rev);
    assert_eq!(store.db().stats().unwrap().reclaimable_bytes(), 0);
}

#[test]
fn map_at_one_scale_shows_the_file_shorter_and_without_mixed_cells_after_defrag() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 1200);
    let map = |path: &std::path::Path| {
        let out = folio_on("map", path, &["--pages-per-cell", "4"]);
        let rows: Vec<String> = out
            .ok()
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("legend"))
            .map(|l| l.trim_start().split_once(' ').unwrap().1.to_string())
            .collect();
        rows
    };
    let before = map(&path);
    assert!(
        before
            .concat()
            .chars()
            .any(|c| c.is_ascii_lowercase() || c == '.'),
        "{before:?}"
    );
    folio(["defrag".as_ref(), path.as_os_str()]).ok();
    let after = map(&path);
    assert!(
        after.concat().len() < before.concat().len(),
        "{before:?} {after:?}"
    );
    assert!(
        after.concat().chars().all(|c| c.is_ascii_uppercase()),
        "only whole cells of live pages: {after:?}"
    );
}

#[test]
fn defrag_with_a_lower_fill_leaves_room_in_the_pages() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 1200);
    folio_on("defrag", &path, &["--fill", "0.5"]).ok();
    let packed_half = open_db(&path).stats().unwrap();
    folio(["defrag".as_ref(), path.as_os_str()]).ok();
    let packed_full = open_db(&path).stats().unwrap();
    assert!(packed_half.leaf_pages > packed_full.leaf_pages);
    let out = folio_on("defrag", &path, &["--fill", "0.2"]);
    assert_eq!(out.code, Some(2), "a usage error: {out:?}");
    assert!(out.stderr.contains("0.2 is not from 0.5 to 1.0"), "{out:?}");
}

#[test]
fn defrag_refuses_a_database_a_running_process_has_open_and_leaves_it_alone() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let bytes = std::fs::read(&path).unwrap();
    let held = open_db(&path);
    let out = folio_once(["defrag".as_ref(), path.as_os_str()], b"");
    let message = out.fails();
    assert!(
        message.contains("database is locked by another process"),
        "{message}"
    );
    assert!(message.contains("stop it first"), "{message}");
    drop(held);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["kv.folio"], "no temporary file is left behind");
}

/// A defrag of a file of a few pages printed thousands of seconds per GB: its time is the syncs
/// and the rename, not the copy.
#[test]
fn defrag_of_a_tiny_file_prints_its_time_but_no_rate_per_gb() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 30);
    let out = folio(["defrag".as_ref(), path.as_os_str()]);
    let time = line(out.ok(), "time ");
    assert!(
        time.ends_with(
            " s (no rate per GB: under 8.0 MiB written, the time is mostly syncs and the rename)"
        ),
        "{time}"
    );
    assert!(!out.stdout.contains("per GB written"), "{out:?}");
}

/// The rate per GB is still printed where it means something: 8 MiB written or more.
#[test]
fn defrag_that_writes_8_mib_or_more_prints_its_rate_per_gb() {
    let (_dir, path) = temp_db("kv.folio");
    {
        let store = open_store(&path);
        // 2,500 values of 4 KiB, each an overflow run of two pages: about 20 MiB.
        for chunk in (0..2_500u32).collect::<Vec<_>>().chunks(250) {
            let ops = chunk
                .iter()
                .map(|&i| folio::Op::put(&crate::common::pod(i), &[b'v'; 4096]));
            store.txn().then(ops).commit().unwrap();
        }
    }
    let out = folio(["defrag".as_ref(), path.as_os_str()]);
    let text = out.ok();
    let time = line(text, "time ");
    assert!(time.ends_with(" s per GB written"), "{time}");
    assert!(!text.contains("no rate per GB"), "{text}");
}
