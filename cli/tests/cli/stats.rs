//! `folio stats`: the figures an operator reads, as text and as JSON.

use crate::common::{folio, folio_on, fragmented_store, line, open_db, temp_db};

#[test]
fn stats_shows_pages_free_space_trees_and_the_store_revisions() {
    let (_dir, path) = temp_db("kv.folio");
    let rev = fragmented_store(&path, 600);
    let out = folio(["stats".as_ref(), path.as_os_str()]);
    let text = out.ok();
    for line in [
        "size ",
        "pages        meta 2 · branch ",
        "live ",
        "free ",
        "reclaimable ",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(text.contains("KiB"), "sizes are human-readable:\n{text}");
    let tree_line = line(text, "mvcc.key");
    assert!(
        tree_line.ends_with('%'),
        "fill is a percentage: {tree_line}"
    );
    // 600 pods, a third deleted: 400 keys left, compacted at the last revision.
    assert!(
        text.contains(&format!(
            "store        revision {rev}, compacted at {rev}, 400 keys"
        )),
        "{text}"
    );
}

/// A new store's file has one free page and one unused page at its end: "1 page", not "1 pages".
#[test]
fn stats_counts_one_page_in_the_singular() {
    let (_dir, path) = temp_db("kv.folio");
    folio_on("put", &path, &["--create", "/registry/pods/a", "v1"]).ok();
    let out = folio(["stats".as_ref(), path.as_os_str()]);
    let text = out.ok();
    let free = line(text, "free ");
    assert_eq!(
        free, "free         4.0 KiB (1 page) in the freelist, 4.0 KiB (1 page) unused at the end",
        "{text}"
    );
    assert!(!text.contains(" 1 pages"), "{text}");
}

#[test]
fn stats_json_carries_the_same_figures_as_the_library() {
    let (_dir, path) = temp_db("kv.folio");
    let rev = fragmented_store(&path, 300);
    let expected = open_db(&path).stats().unwrap();
    let out = folio_on("stats", &path, &["--json"]);
    let doc: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(doc["file_bytes"], expected.file_bytes);
    assert_eq!(doc["page_size"], expected.page_size);
    assert_eq!(doc["pages"]["leaf"], expected.leaf_pages);
    assert_eq!(doc["pages"]["free"], expected.free_pages);
    assert_eq!(doc["live_bytes"], expected.live_bytes());
    assert_eq!(doc["reclaimable_bytes"], expected.reclaimable_bytes());
    assert!(
        expected.reclaimable_bytes() > 0,
        "the fixture is fragmented"
    );
    let key_tree = doc["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mvcc.key")
        .expect("the key tree");
    assert!(key_tree["depth"].as_u64().unwrap() >= 1);
    assert!(key_tree["fill"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["store"]["revision"], rev);
    assert_eq!(doc["store"]["compacted_revision"], rev);
    assert_eq!(doc["store"]["keys"], 200);
}

#[test]
fn stats_of_a_plain_database_has_its_trees_and_no_store() {
    let (_dir, path) = temp_db("plain.folio");
    {
        let db = open_db(&path);
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"users\x00bin")
            .unwrap()
            .put(b"alice", b"1")
            .unwrap();
        tx.commit().unwrap();
    }
    let out = folio(["stats".as_ref(), path.as_os_str()]);
    let text = out.ok();
    assert!(
        text.contains("users\\x00bin"),
        "tree names are escaped:\n{text}"
    );
    assert!(!text.contains("store "), "{text}");
    let json = folio_on("stats", &path, &["--json"]);
    let doc: serde_json::Value = serde_json::from_str(json.ok()).unwrap();
    assert!(doc["store"].is_null());
    assert_eq!(doc["trees"][0]["entries"], 1);
}

/// A store of one key said "1 keys", and its trees "1 entries": a count of one reads in the
/// singular in every command that counts.
#[test]
fn a_count_of_one_reads_in_the_singular() {
    let (_dir, path) = temp_db("kv.folio");
    folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "v".as_ref(),
    ])
    .ok();
    let stats = folio(["stats".as_ref(), path.as_os_str()]);
    assert!(stats.ok().ends_with(", 1 key\n"), "{stats:?}");
    let dump = folio(["dump".as_ref(), path.as_os_str()]);
    assert!(dump.ok().contains("  mvcc.key  1 entry\n"), "{dump:?}");
    let tree = folio_on("dump", &path, &["--tree", "mvcc.key"]);
    assert!(
        tree.ok().starts_with("tree mvcc.key: 1 entry\n"),
        "{tree:?}"
    );
    let del = folio_on("del", &path, &["k"]);
    assert_eq!(del.ok(), "deleted 1 key, revision 3\n");

    let dir = tempfile::tempdir().unwrap();
    let bench = folio([
        "bench".as_ref(),
        "--keys".as_ref(),
        "1".as_ref(),
        "--batch".as_ref(),
        "1".as_ref(),
        "--dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        bench
            .ok()
            .starts_with("folio bench: 1 key, 100-byte values, 1 operation per transaction,"),
        "{bench:?}"
    );
    assert!(!bench.stdout.contains(" 1 pages"), "{bench:?}");
}
