//! `folio dump`: pages and trees decoded, keys shown safely, damaged pages as clear errors.

use crate::common::{
    first_page, folio, folio_on, fragmented_store, open_db, store_with_damaged_leaf, temp_db,
};
use folio::PageUse;

#[test]
fn dump_without_options_shows_both_metas_and_the_trees() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 100);
    let out = folio(["dump".as_ref(), path.as_os_str()]);
    let text = out.ok();
    assert!(text.contains("page 0: meta, checksum 0x"), "{text}");
    assert!(text.contains("page 1: meta, checksum 0x"), "{text}");
    assert!(text.contains("the current meta: txid "), "{text}");
    assert!(text.contains("2 trees:"), "{text}");
    assert!(text.contains("  mvcc.key  "), "{text}");
    // After a clean close both slots may hold the newest commit: one is current, and the other
    // is told apart by its proof.
    assert_eq!(text.matches("the current meta").count(), 1, "{text}");
}

#[test]
fn dump_shows_a_meta_proof_and_names_the_slot_without_one_current() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 10);
    let out = folio(["put".as_ref(), path.as_os_str(), "k".as_ref(), "v".as_ref()]);
    out.ok();
    let out = folio(["dump".as_ref(), path.as_os_str()]);
    let text = out.ok();
    let metas: Vec<&str> = text.lines().filter(|l| l.contains(": meta, ")).collect();
    assert_eq!(metas.len(), 2, "{text}");
    let proved: Vec<&&str> = metas
        .iter()
        .filter(|l| l.contains(", a proof of "))
        .collect();
    assert_eq!(
        proved.len(),
        1,
        "one slot keeps the proved meta of the put: {text}"
    );
    assert!(!proved[0].contains("the current meta"), "{text}");
}

#[test]
fn dump_page_decodes_a_leaf_with_its_entries() {
    let (_dir, path) = temp_db("plain.folio");
    {
        let db = open_db(&path);
        let mut tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_tree(b"t").unwrap();
            t.put(b"text-key", b"text value").unwrap();
            t.put(b"bin\x00\xff\n\x1b", b"\x01\x02").unwrap();
        }
        tx.commit().unwrap();
    }
    let map = open_db(&path).page_map().unwrap();
    let leaves: Vec<u64> = map
        .runs
        .iter()
        .filter(|r| r.page_use == PageUse::Leaf)
        .flat_map(|r| r.start..r.end())
        .collect();
    let text: String = leaves
        .iter()
        .map(|p| {
            folio([
                "dump".as_ref(),
                path.as_os_str(),
                "--page".as_ref(),
                p.to_string().as_ref(),
            ])
            .ok()
            .to_string()
        })
        .collect();
    assert!(text.contains("leaf, checksum 0x"), "{text}");
    assert!(text.contains("text-key = text value"), "{text}");
    assert!(
        text.contains("bin\\x00\\xff\\n\\x1b = \\x01\\x02"),
        "escaped: {text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no raw escape byte reaches the terminal"
    );
}

#[test]
fn dump_page_names_a_free_page_and_an_unused_one() {
    let (_dir, path) = temp_db("kv.folio");
    // Not 300 pods: their pages fill the file's 64 exactly, leaving no unused page.
    fragmented_store(&path, 400);
    let free = first_page(&path, PageUse::Free);
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        free.to_string().as_ref(),
    ]);
    assert!(
        out.ok().starts_with(&format!("page {free}: free")),
        "{out:?}"
    );
    let unused = first_page(&path, PageUse::Unused);
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        unused.to_string().as_ref(),
    ]);
    assert!(
        out.ok().starts_with(&format!("page {unused}: unused")),
        "{out:?}"
    );
}

#[test]
fn dump_page_shows_an_overflow_run_and_points_from_its_inner_pages_to_its_start() {
    let (_dir, path) = temp_db("big.folio");
    {
        let db = open_db(&path);
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"t")
            .unwrap()
            .put(b"big", &vec![7u8; 20_000])
            .unwrap();
        tx.commit().unwrap();
    }
    let start = first_page(&path, PageUse::Overflow);
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        start.to_string().as_ref(),
    ]);
    assert!(
        out.ok().contains(&format!(
            "the first of a run of 5 pages ({start} to {})",
            start + 4
        )),
        "{out:?}"
    );
    let inner = start + 2;
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        inner.to_string().as_ref(),
    ]);
    assert!(
        out.ok()
            .contains(&format!("page 3 of the run that starts at page {start}")),
        "{out:?}"
    );
    let leaf = first_page(&path, PageUse::Leaf);
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        leaf.to_string().as_ref(),
    ]);
    assert!(
        out.ok().contains(&format!(
            "big = (20,000 bytes in the overflow run at page {start})"
        )),
        "{out:?}"
    );
}

#[test]
fn dump_page_of_a_damaged_page_is_an_error_that_names_it() {
    let (_dir, path, leaf) = store_with_damaged_leaf(100);
    let out = folio([
        "dump".as_ref(),
        path.as_os_str(),
        "--page".as_ref(),
        leaf.to_string().as_ref(),
    ]);
    let message = out.fails();
    assert!(
        message.contains(&format!("corrupted page {leaf}: checksum mismatch")),
        "{message}"
    );
}

#[test]
fn dump_page_past_the_end_of_the_file_is_an_error() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 50);
    let out = folio_on("dump", &path, &["--page", "999999"]);
    assert!(
        out.fails()
            .contains("page 999999 is past the end of the file"),
        "{out:?}"
    );
}

#[test]
fn dump_tree_lists_its_entries_in_key_order_and_cuts_long_values() {
    let (_dir, path) = temp_db("plain.folio");
    {
        let db = open_db(&path);
        let mut tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_tree(b"t").unwrap();
            t.put(b"b", &[b'x'; 100]).unwrap();
            t.put(b"a\t", b"short").unwrap();
        }
        tx.commit().unwrap();
    }
    let out = folio_on("dump", &path, &["--tree", "t", "--value-bytes", "10"]);
    let expected = "tree t: 2 entries\na\\t = short\nb = xxxxxxxxxx… (100 bytes)\n";
    assert_eq!(out.ok(), expected);
}

#[test]
fn dump_tree_that_does_not_exist_names_the_trees_there_are() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 10);
    let out = folio_on("dump", &path, &["--tree", "nope"]);
    assert!(
        out.not_found()
            .ends_with("no tree named \"nope\" (the trees are: mvcc.key, mvcc.meta)"),
        "{out:?}"
    );
}
