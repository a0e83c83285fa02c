//! `folio compact`: to a revision, or keeping the last N.

use crate::common::{folio, folio_on, open_store, temp_db};

/// A store with one key written at revisions 2..=11 (values "1" to "10").
fn ten_revisions(path: &std::path::Path) {
    let store = open_store(path);
    for v in 1..=10 {
        store.put(b"k", v.to_string().as_bytes()).unwrap();
    }
}

#[test]
fn compact_rev_drops_the_revisions_below_it() {
    let (_dir, path) = temp_db("kv.folio");
    ten_revisions(&path);
    let out = folio_on("compact", &path, &["--rev", "6"]);
    assert_eq!(
        out.ok(),
        "compacted at revision 6: reads below it now fail; stored revisions 10 -> 6 (current revision 11)\n"
    );
    let kept = folio_on("get", &path, &["k", "--rev", "6"]);
    assert_eq!(kept.ok(), "5\n");
    folio_on("get", &path, &["k", "--rev", "5"]).fails();
}

#[test]
fn compact_keep_leaves_the_last_n_revisions_readable() {
    let (_dir, path) = temp_db("kv.folio");
    ten_revisions(&path);
    let out = folio_on("compact", &path, &["--keep", "3"]);
    assert!(out.ok().starts_with("compacted at revision 9:"), "{out:?}");
    for (rev, value) in [("9", "8\n"), ("10", "9\n"), ("11", "10\n")] {
        let r = folio([
            "get".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
            "--rev".as_ref(),
            rev.as_ref(),
        ]);
        assert_eq!(r.ok(), value);
    }
    folio_on("get", &path, &["k", "--rev", "8"]).fails();
    let again = folio_on("compact", &path, &["--keep", "3"]);
    assert!(again.ok().starts_with("nothing to compact"), "{again:?}");
}

#[test]
fn compact_refuses_a_compacted_or_future_revision_and_bad_arguments() {
    let (_dir, path) = temp_db("kv.folio");
    ten_revisions(&path);
    folio_on("compact", &path, &["--rev", "5"]).ok();
    let out = folio_on("compact", &path, &["--rev", "4"]);
    assert!(
        out.fails().contains("revision 4 has been compacted"),
        "{out:?}"
    );
    let out = folio_on("compact", &path, &["--rev", "12"]);
    assert!(
        out.fails().contains("revision 12 is in the future"),
        "{out:?}"
    );
    let out = folio_on("compact", &path, &["--keep", "0"]);
    assert_eq!(out.code, Some(2), "a usage error: {out:?}");
    assert!(out.stderr.contains("--keep"), "{out:?}");
    let neither = folio(["compact".as_ref(), path.as_os_str()]);
    assert_eq!(neither.code, Some(2), "a usage error: {neither:?}");
    assert!(neither.stderr.contains("--rev"));
    let both = folio([
        "compact",
        path.to_str().unwrap(),
        "--rev",
        "6",
        "--keep",
        "2",
    ]);
    assert_eq!(both.code, Some(2), "{both:?}");
}
