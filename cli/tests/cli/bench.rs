//! `folio bench`: every phase runs and reports a rate, and the store it leaves is sound.

use crate::common::{folio, folio_on, line, temp_db};

#[test]
fn bench_runs_every_phase_and_leaves_a_sound_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = folio([
        "bench".as_ref(),
        "--keys".as_ref(),
        "2000".as_ref(),
        "--batch".as_ref(),
        "100".as_ref(),
        "--value-bytes".as_ref(),
        "50".as_ref(),
        "--dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    let text = out.ok();
    assert!(
        text.starts_with("folio bench: 2,000 keys, 50-byte values, 100 operations per transaction"),
        "{text}"
    );
    for (phase, ops, unit) in [
        ("write", "2,000", "puts/s"),
        ("update", "2,000", "puts/s"),
        ("delete", "1,000", "deletes/s"),
        // 5,000 revisions less the 1,000 live keys' newest and the last delete transaction's
        // 100 tombstones, which sit at the compaction revision and are kept (etcd 3.5.16).
        ("compact", "3,900", "revisions/s"),
        ("get", "1,000", "gets/s"),
    ] {
        let row = line(text, phase);
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words[1], ops, "{row}");
        assert_eq!(words.last(), Some(&unit), "{row}");
    }
    assert!(text.contains("before defrag: "), "{text}");
    // 2,000 small keys make a file far under the 8 MiB a rate per GB needs.
    assert!(
        text.contains("(no rate per GB: under 8.0 MiB written"),
        "{text}"
    );
    assert!(!text.contains(" s per GB written"), "{text}");
    assert!(text.contains("check   ok: "), "{text}");

    let path = dir.path().join("bench.folio");
    // The last line is the file as the close left it, key index and all.
    let len = std::fs::metadata(&path).unwrap().len();
    let closed = text.lines().last().unwrap_or_default();
    assert!(closed.starts_with("closed: file "), "{text}");
    let words: Vec<&str> = closed.split_whitespace().collect();
    let shown: f64 = words[2].parse().unwrap_or_else(|_| panic!("{closed:?}"));
    let unit = match words[3] {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        other => panic!("unit {other} in {closed:?}"),
    };
    assert!(
        (shown * unit - len as f64).abs() <= 0.01 * len as f64,
        "{closed:?} for a file of {len} bytes"
    );
    folio(["check".as_ref(), path.as_os_str()]).ok();
    let count = folio_on("range", &path, &["--count-only"]);
    assert_eq!(count.ok(), "1000\n");
    let map = folio(["map".as_ref(), path.as_os_str()]);
    assert!(
        map.ok().contains("· 0 holes"),
        "defragmented at the end: {map:?}"
    );

    let again = folio([
        "bench".as_ref(),
        "--keys".as_ref(),
        "10".as_ref(),
        "--dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        again
            .fails()
            .ends_with("bench.folio: already exists; bench needs a new file"),
        "{again:?}"
    );
}

#[test]
fn bench_without_a_directory_cleans_up_after_itself() {
    let out = folio(["bench", "--keys", "300", "--batch", "50"]);
    let text = out.ok();
    let path = text
        .lines()
        .next()
        .and_then(|l| l.rsplit_once(", in "))
        .map(|(_, p)| std::path::PathBuf::from(p))
        .expect("the path in the first line");
    assert!(!path.exists(), "{} is removed", path.display());
    assert!(!path.parent().unwrap().exists());
}

/// `bench --dir` naming a file said "no such directory", though the path was there.
#[test]
fn bench_dir_naming_a_file_says_it_is_not_a_directory() {
    let (_dir, file) = temp_db("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = folio(["bench".as_ref(), "--dir".as_ref(), file.as_os_str()]);
    assert_eq!(
        out.fails(),
        format!(
            "folio: {}: not a directory; --dir names the directory bench makes its store in",
            file.display()
        )
    );
    let missing = file.with_file_name("missing");
    let out = folio(["bench".as_ref(), "--dir".as_ref(), missing.as_os_str()]);
    assert_eq!(
        out.fails(),
        format!("folio: {}: no such directory", missing.display())
    );
}
