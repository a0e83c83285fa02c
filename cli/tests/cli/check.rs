//! `folio check`: exit code 0 for a sound file; 1, with every problem listed, for a damaged one.

use crate::common::{
    damage_page, folio, fragmented_store, open_db, store_with_damaged_leaf, temp_db,
};
use folio::PageUse;

#[test]
fn check_exits_zero_on_a_sound_database() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let out = folio(["check".as_ref(), path.as_os_str()]);
    assert!(out.ok().contains("ok: commit"), "{out:?}");
    assert!(out.stdout.contains("no problems"));
}

#[test]
fn check_exits_nonzero_and_lists_the_corrupt_page() {
    let (_dir, path, leaf) = store_with_damaged_leaf(300);
    let out = folio(["check".as_ref(), path.as_os_str()]);
    let message = out.fails();
    assert!(message.contains("check found "), "{message}");
    assert!(
        out.stdout
            .contains(&format!("page {leaf}: checksum mismatch")),
        "the problem names the page: {out:?}"
    );
}

#[test]
fn check_lists_every_problem_not_just_the_first() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 600);
    let map = open_db(&path).page_map().unwrap();
    let leaves: Vec<u64> = map
        .runs
        .iter()
        .filter(|r| r.page_use == PageUse::Leaf)
        .flat_map(|r| r.start..r.end())
        .take(3)
        .collect();
    assert_eq!(leaves.len(), 3);
    for &p in &leaves {
        damage_page(&path, p);
    }
    let out = folio(["check".as_ref(), path.as_os_str()]);
    // Three damaged leaves, and the tree they belong to miscounts its entries.
    assert!(out.fails().contains("check found 4 problems"), "{out:?}");
    for p in leaves {
        assert!(out.stdout.contains(&format!("page {p}: ")), "{out:?}");
    }
}
