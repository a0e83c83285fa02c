//! Every error is one line a person understands, with a non-zero exit code, and never a panic; and
//! no command but `put --create` creates a database.

use std::path::Path;

use crate::common::{folio, folio_on, folio_once, fragmented_store, open_db, temp_db};

/// Every subcommand that reads or changes an existing file, with the arguments it needs.
fn commands_on(path: &Path) -> Vec<Vec<std::ffi::OsString>> {
    let p = path.as_os_str();
    [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["map"],
        vec!["check"],
        vec!["defrag"],
        vec!["compact", "--keep", "1"],
        vec!["dump"],
        vec!["dump", "--page", "2"],
        vec!["dump", "--tree", "t"],
        vec!["get", "k"],
        vec!["del", "k"],
        vec!["range"],
    ]
    .into_iter()
    .map(|args| {
        let mut v = vec![args[0].into(), p.to_owned()];
        v.extend(args[1..].iter().map(Into::into));
        v
    })
    .collect()
}

#[test]
fn a_missing_file_is_no_such_file_and_is_not_created() {
    let (_dir, path) = temp_db("missing.folio");
    for args in commands_on(&path) {
        let out = folio(&args);
        assert_eq!(
            out.fails(),
            format!("folio: {}: no such file", path.display()),
            "{args:?}"
        );
        assert!(!path.exists(), "{args:?} created the file");
    }
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_such_and_left_alone() {
    let (_dir, path) = temp_db("notes.txt");
    let text = "these are notes, not a database\n".repeat(300);
    std::fs::write(&path, &text).unwrap();
    for args in commands_on(&path) {
        let out = folio(&args);
        assert!(
            out.fails()
                .ends_with("not a folio database (no folio header in either meta page)"),
            "{args:?}: {out:?}"
        );
    }
    let out = folio_on("put", &path, &["k", "v"]);
    assert!(out.fails().contains("not a folio database"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn an_empty_file_is_named_as_such() {
    let (_dir, path) = temp_db("empty.folio");
    std::fs::write(&path, b"").unwrap();
    for args in commands_on(&path) {
        let out = folio(&args);
        assert!(
            out.fails().contains("the file is empty"),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    for args in commands_on(dir.path()) {
        let out = folio(&args);
        assert!(
            out.fails()
                .ends_with("is a directory, not a folio database"),
            "{args:?}: {out:?}"
        );
    }
    let out = folio_on("put", dir.path(), &["k", "v"]);
    assert!(
        out.fails()
            .ends_with("is a directory, not a folio database"),
        "{out:?}"
    );
}

#[test]
fn a_database_open_in_another_process_is_reported_as_locked() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 50);
    let held = open_db(&path);
    let mut commands = commands_on(&path);
    commands.push(vec![
        "put".into(),
        path.clone().into(),
        "k".into(),
        "v".into(),
    ]);
    for mut args in commands {
        args.extend(["--lock-wait".into(), "0".into()]);
        let out = folio_once(&args, b"");
        assert!(
            out.fails().starts_with(&format!(
                "folio: {}: database is locked by another process or by another open handle in this process (a folio file has one read-write handle or any number of read-only ones at a time)",
                path.display()
            )),
            "{args:?}: {out:?}"
        );
    }
    drop(held);
    folio(["check".as_ref(), path.as_os_str()]).ok();
}

#[test]
fn a_truncated_file_says_how_much_is_missing() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 100);
    let len = std::fs::metadata(&path).unwrap().len();
    let page_count = open_db(&path).page_map().unwrap().page_count;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len.min(page_count * 4096) - 3 * 4096).unwrap();
    let out = folio(["stats".as_ref(), path.as_os_str()]);
    assert!(
        out.fails().contains("the file is truncated: it holds"),
        "{out:?}"
    );
}

#[test]
fn put_into_a_missing_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("kv.folio");
    let out = folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "v".as_ref(),
    ]);
    assert!(
        out.fails()
            .contains("cannot create the store: no such directory"),
        "{out:?}"
    );
}

#[test]
fn usage_errors_exit_with_2_and_help_with_0() {
    let out = folio(["frobnicate"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("unrecognized subcommand"), "{out:?}");
    let out = folio(["stats"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = folio(["get", "x.folio", "k", "--rev", "0"]);
    assert_eq!(out.code, Some(2), "revisions start at 1: {out:?}");
    let help = folio(["--help"]);
    assert!(help.ok().contains("Commands:"), "{help:?}");
    for command in [
        "stats", "map", "check", "compact", "dump", "get", "put", "del", "range",
    ] {
        assert!(help.stdout.contains(command), "{command} in the help");
    }
}

/// The exit codes were nowhere written down, and "not found" shared 1 with every error.
#[test]
fn the_help_lists_every_exit_code() {
    let help = folio(["--help"]);
    let text = help.ok();
    let codes = &text[text.find("Exit codes:").expect("an exit codes section")..];
    for line in [
        "  0  done",
        "  1  an error",
        "  2  a usage error",
        "  3  not found",
    ] {
        assert!(codes.contains(line), "{line:?} in:\n{codes}");
    }
    let get = folio(["get", "--help"]);
    assert!(get.ok().contains("exit code 3"), "{get:?}");
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    use std::process::{Command, Stdio};
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 600);
    // `folio dump --tree` writes far more than a pipe holds; the reader goes away at once.
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "dump".as_ref(),
            path.as_os_str(),
            "--tree".as_ref(),
            "mvcc.key".as_ref(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
}
