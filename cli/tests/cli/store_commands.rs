//! `folio get`, `put`, `del` and `range`: the MVCC store from the shell.

use std::ffi::OsStr;

use crate::common::{folio, folio_on, folio_with_input, open_db, open_store, pod, temp_db};

#[test]
fn put_creates_a_store_and_get_reads_it_back() {
    let (_dir, path) = temp_db("new.folio");
    let out = folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "/a".as_ref(),
        "one".as_ref(),
    ]);
    assert_eq!(out.ok(), "revision 2\n");
    let out = folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "/a".as_ref(),
        "two".as_ref(),
    ]);
    assert_eq!(out.ok(), "revision 3\n");
    assert_eq!(folio_on("get", &path, &["/a"]).ok(), "two\n");
    let old = folio_on("get", &path, &["/a", "--rev", "2"]);
    assert_eq!(old.ok(), "one\n");
    assert!(open_db(&path).check().unwrap().is_clean());
}

#[test]
fn put_reads_the_value_from_stdin_and_get_raw_writes_it_back_exactly() {
    let (_dir, path) = temp_db("kv.folio");
    let value = b"line 1\nline 2\x00\xff";
    let out = folio_with_input(
        [
            "put".as_ref(),
            "--create".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
        ],
        value,
    );
    out.ok();
    assert_eq!(out.stderr, "", "no hint when the value comes from a pipe");
    let shown = folio_on("get", &path, &["k"]);
    assert_eq!(shown.ok(), "line 1\\nline 2\\x00\\xff\n");
    let raw = std::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "get".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
            "--raw".as_ref(),
        ])
        .output()
        .unwrap();
    assert!(raw.status.success());
    assert_eq!(raw.stdout, value);
}

/// `get` exited 1 both for a key that is not there and for a real error, so a script could not
/// tell "absent" from "broken": not found is exit code 3, an error stays 1.
#[test]
fn get_of_a_missing_key_exits_3_and_a_real_error_exits_1() {
    let (_dir, path) = temp_db("kv.folio");
    folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "a".as_ref(),
        "1".as_ref(),
    ])
    .ok();
    let out = folio_on("get", &path, &["b"]);
    assert!(
        out.not_found()
            .ends_with("key \"b\" not found at revision 2"),
        "{out:?}"
    );
    let missing = path.with_file_name("missing.folio");
    let out = folio(["get".as_ref(), missing.as_os_str(), "b".as_ref()]);
    assert!(out.fails().ends_with("no such file"), "{out:?}");
    let out = folio_on("get", &path, &["a", "--rev", "9"]);
    assert!(out.fails().contains("is in the future"), "{out:?}");
}

/// `put` with no value waited on a terminal with no word of what it waited for.
#[test]
fn put_with_a_terminal_on_stdin_says_it_reads_the_value_until_ctrl_d() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (_dir, path) = temp_db("kv.folio");
    let mut terminal = crate::common::terminal();
    let stdin = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&terminal.slave)
        .expect("open the terminal side");
    let child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "put".as_ref(),
            "--create".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
        ])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A line typed, then Ctrl-D on a line of its own: the end of the input.
    terminal.master.write_all(b"typed\n\x04").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "folio put: reading the value from the terminal until Ctrl-D (or give it after the key)\n"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "revision 2\n");
    assert_eq!(folio_on("get", &path, &["k"]).ok(), "typed\\n\n");
}

#[test]
fn range_reads_a_prefix_with_limit_keys_only_and_count_only() {
    let (_dir, path) = temp_db("kv.folio");
    {
        let store = open_store(&path);
        for i in 0..30 {
            store.put(&pod(i), format!("v{i}").as_bytes()).unwrap();
        }
    }
    let all = folio(["range".as_ref(), path.as_os_str()]);
    assert_eq!(all.ok().lines().count(), 30);
    assert!(
        all.stdout
            .starts_with("/registry/pods/ns-0/pod-00000\tv0\n"),
        "{all:?}"
    );

    let prefix = folio_on("range", &path, &["--prefix", "/registry/pods/ns-3/"]);
    assert_eq!(
        prefix.ok(),
        "/registry/pods/ns-3/pod-00003\tv3\n/registry/pods/ns-3/pod-00013\tv13\n/registry/pods/ns-3/pod-00023\tv23\n"
    );

    let limited = folio_on("range", &path, &["--limit", "2", "--keys-only"]);
    assert_eq!(
        limited.stdout,
        "/registry/pods/ns-0/pod-00000\n/registry/pods/ns-0/pod-00010\n"
    );
    assert_eq!(limited.code, Some(0));
    assert!(limited.stderr.contains("2 of 30 keys shown"), "{limited:?}");

    let count = folio_on(
        "range",
        &path,
        &["--prefix", "/registry/pods/ns-1", "--count-only"],
    );
    assert_eq!(count.ok(), "3\n");

    let between = folio_on(
        "range",
        &path,
        &[
            "/registry/pods/ns-1/",
            "/registry/pods/ns-2/",
            "--keys-only",
        ],
    );
    assert_eq!(between.ok().lines().count(), 3);
}

#[test]
fn range_at_an_old_revision_sees_the_old_values() {
    let (_dir, path) = temp_db("kv.folio");
    folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "old".as_ref(),
    ])
    .ok();
    folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "new".as_ref(),
    ])
    .ok();
    folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "j".as_ref(),
        "later".as_ref(),
    ])
    .ok();
    let out = folio_on("range", &path, &["--rev", "2"]);
    assert_eq!(out.ok(), "k\told\n");
}

#[test]
fn del_removes_a_key_a_range_or_a_prefix() {
    let (_dir, path) = temp_db("kv.folio");
    {
        let store = open_store(&path);
        for i in 0..30 {
            store.put(&pod(i), b"v").unwrap();
        }
    }
    let key = String::from_utf8(pod(5)).unwrap();
    assert_eq!(
        folio(["del".as_ref(), path.as_os_str(), key.as_ref()]).ok(),
        "deleted 1 key, revision 32\n"
    );
    let out = folio_on("del", &path, &["/registry/pods/ns-1/", "--prefix"]);
    assert_eq!(out.ok(), "deleted 3 keys, revision 33\n");
    let out = folio_on(
        "del",
        &path,
        &["/registry/pods/ns-2/", "/registry/pods/ns-4/"],
    );
    assert_eq!(out.ok(), "deleted 6 keys, revision 34\n");
    let count = folio_on("range", &path, &["--count-only"]);
    assert_eq!(count.ok(), "20\n");
    let gone = folio(["get".as_ref(), path.as_os_str(), key.as_ref()]);
    gone.not_found();
    let before = folio([
        "get".as_ref(),
        path.as_os_str(),
        key.as_ref(),
        "--rev".as_ref(),
        "31".as_ref(),
    ]);
    assert_eq!(before.ok(), "v\n");
}

#[test]
fn reads_below_the_compacted_revision_or_past_the_current_one_fail_clearly() {
    let (_dir, path) = temp_db("kv.folio");
    for v in ["1", "2", "3"] {
        folio([
            "put".as_ref(),
            "--create".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
            v.as_ref(),
        ])
        .ok();
    }
    folio_on("compact", &path, &["--rev", "3"]).ok();
    let out = folio_on("get", &path, &["k", "--rev", "2"]);
    assert!(
        out.fails()
            .ends_with("revision 2 has been compacted (the oldest readable revision is 3)"),
        "{out:?}"
    );
    let out = folio_on("range", &path, &["--rev", "9"]);
    assert!(
        out.fails()
            .ends_with("revision 9 is in the future (the current revision is 4)"),
        "{out:?}"
    );
}

#[test]
fn store_commands_refuse_a_database_that_is_not_a_store_and_leave_it_unchanged() {
    let (_dir, path) = temp_db("plain.folio");
    {
        let db = open_db(&path);
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"users").unwrap().put(b"alice", b"1").unwrap();
        tx.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for args in [
        vec!["get", "alice"],
        vec!["put", "alice", "2"],
        vec!["put", "--create", "alice", "2"],
        vec!["del", "alice"],
        vec!["range"],
        vec!["compact", "--keep", "1"],
    ] {
        let mut full = vec![OsStr::new(args[0]), path.as_os_str()];
        full.extend(args[1..].iter().map(OsStr::new));
        let out = folio(full);
        assert_eq!(
            out.fails(),
            format!(
                "folio: {}: not a folio store: the database holds other trees (users) but not the store's mvcc.key and mvcc.meta; open it with Db, or make the store in a new file",
                path.display()
            ),
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is untouched"
    );
}

/// A database with no trees is no store for the reading and writing commands (they would make the
/// store's trees in it), but `put --create` makes the store there, as `Store::open` does.
#[test]
fn an_empty_database_is_a_store_only_for_put_create() {
    let (_dir, path) = temp_db("empty.folio");
    drop(open_db(&path));
    for args in [vec!["get", "k"], vec!["put", "k", "v"], vec!["range"]] {
        let mut full = vec![OsStr::new(args[0]), path.as_os_str()];
        full.extend(args[1..].iter().map(OsStr::new));
        let out = folio(full);
        assert!(
            out.fails().ends_with(
                "not a folio store (a folio database with no trees; `folio put --create` makes a store in it)"
            ),
            "{args:?}: {out:?}"
        );
    }
    let out = folio([
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "v".as_ref(),
    ]);
    assert_eq!(out.ok(), "revision 2\n");
    assert_eq!(folio_on("get", &path, &["k"]).ok(), "v\n");
}
