//! How the commands open files: racing `put --create`s, reading commands on a read-only file and
//! beside each other, the lock wait, and `put` refusing to make a store without `--create`.
//!
//! What broke: `rm -f n.folio; folio put n.folio a 1 & folio put n.folio b 2 & wait` lost an
//! acknowledged put in 22 of 40 rounds and could leave a 0-byte file (both creators used
//! `n.folio.creating`); reading commands took the exclusive lock and wrote, so they failed on a
//! file the user could only read and beside each other; two short commands on one file failed at
//! once instead of waiting; `folio put key db value` made a new store named like the key.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::{folio, folio_on, folio_once, fragmented_store, temp_db};
use folio::Db;

fn spawn(args: &[&std::ffi::OsStr]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn folio")
}

/// The reproduction, 100 rounds: both puts are acknowledged and both are in the store,
/// and the path never names an empty file, not even while the two run.
#[test]
fn two_racing_put_creates_keep_both_puts_and_never_leave_an_empty_file() {
    let (_dir, path) = temp_db("n.folio");
    let p = path.as_os_str();
    for round in 0..100 {
        let _ = std::fs::remove_file(&path);
        // A lock wait far past how long a put holds the file, so that the loser of the race
        // always waits for the winner rather than giving up on a busy machine.
        let wait: &[&std::ffi::OsStr] = &["--lock-wait".as_ref(), "60".as_ref()];
        let mut a = spawn(
            &[
                &[
                    "put".as_ref(),
                    "--create".as_ref(),
                    p,
                    "a".as_ref(),
                    "1".as_ref(),
                ],
                wait,
            ]
            .concat(),
        );
        let mut b = spawn(
            &[
                &[
                    "put".as_ref(),
                    "--create".as_ref(),
                    p,
                    "b".as_ref(),
                    "2".as_ref(),
                ],
                wait,
            ]
            .concat(),
        );
        while a.try_wait().unwrap().is_none() || b.try_wait().unwrap().is_none() {
            if let Ok(m) = std::fs::metadata(&path) {
                assert_ne!(m.len(), 0, "round {round}: an empty file at the path");
            }
        }
        for (name, child) in [("a", a), ("b", b)] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: put {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_ne!(std::fs::metadata(&path).unwrap().len(), 0, "round {round}");
        let range = folio(["range".as_ref(), p, "--prefix".as_ref(), "".as_ref()]);
        assert_eq!(range.ok(), "a\t1\nb\t2\n", "round {round}");
    }
    let dir = path.parent().unwrap();
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        1,
        "temporaries left"
    );
}

/// Every reading command, each with a read-only handle held in this process beside it (a shared
/// lock), on a file whose mode forbids writing.
#[test]
fn reading_commands_share_a_read_only_file_and_change_nothing() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 60);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    file.set_modified(past).unwrap();
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let reader = Db::builder().read_only(true).open(&path).unwrap();
    let p = path.as_os_str();
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["map"],
        vec!["check"],
        vec!["dump"],
        vec!["dump", "--tree", "mvcc.key"],
        vec!["get", "/registry/pods/ns-1/pod-00001"],
        vec!["range", "--prefix", "/registry/"],
        vec!["range", "--count-only"],
    ] {
        let mut full: Vec<&OsStr> = vec![args[0].as_ref(), p];
        full.extend(args[1..].iter().map(OsStr::new));
        full.extend([OsStr::new("--lock-wait"), OsStr::new("0")]);
        folio_once(&full, b"").ok();
    }
    // A writer cannot have it while a reader does.
    let out = folio_once(
        [
            "put".as_ref(),
            p,
            "k".as_ref(),
            "v".as_ref(),
            "--lock-wait".as_ref(),
            "0".as_ref(),
        ],
        b"",
    );
    assert!(out.fails().contains("database is locked"), "{out:?}");
    drop(reader);
    assert!(std::fs::read(&path).unwrap() == bytes, "the bytes changed");
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), past);
}

/// A command started while this process holds the file waits (by default) and runs once the
/// file is let go.
#[test]
fn a_command_waits_by_default_for_a_lock_that_is_let_go() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 20);
    let held = Db::open(&path).unwrap();
    let child = spawn(&["range".as_ref(), path.as_os_str(), "--count-only".as_ref()]);
    // Not a timing: the command succeeds whether it found the lock held or already let go.
    std::thread::sleep(Duration::from_millis(200));
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "13\n");
}

/// `folio put k.folio? …` with the arguments mistyped must not make a store named like a key.
#[test]
fn put_without_create_refuses_a_missing_file_and_says_how_to_make_one() {
    let (dir, path) = temp_db("kv.folio");
    let out = folio_on("put", &path, &["k", "v"]);
    assert_eq!(
        out.fails(),
        format!(
            "folio: no database at {}; pass --create to make one",
            path.display()
        )
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // With --create it is made; after that, put writes without it.
    let create = [
        "put".as_ref(),
        "--create".as_ref(),
        path.as_os_str(),
        "k".as_ref(),
        "v".as_ref(),
    ];
    assert_eq!(folio(create).ok(), "revision 2\n");
    let again = ["put".as_ref(), path.as_os_str(), "k".as_ref(), "w".as_ref()];
    assert_eq!(folio(again).ok(), "revision 3\n");
    let mistyped = dir.path().join("k");
    let out = folio([
        "put".as_ref(),
        mistyped.as_os_str(),
        path.as_os_str(),
        "v".as_ref(),
    ]);
    assert!(out.fails().contains("pass --create"), "{out:?}");
    assert!(!mistyped.exists());
}

#[test]
fn the_help_tells_of_the_lock_wait_and_of_put_create() {
    let help = folio(["--help"]);
    assert!(help.ok().contains("--lock-wait"), "{help:?}");
    assert!(help.stdout.contains("read-only"), "{help:?}");
    let put = folio(["put", "--help"]);
    assert!(put.ok().contains("--create"), "{put:?}");
}

/// A lock that is never let go: the command gives up after its wait and says why.
#[test]
fn a_command_whose_lock_is_never_let_go_fails_with_locked() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 20);
    let _held = Db::open(&path).unwrap();
    let out = folio_once(
        [
            "get".as_ref(),
            path.as_os_str(),
            "k".as_ref(),
            "--lock-wait".as_ref(),
            "0.05".as_ref(),
        ],
        b"",
    );
    assert!(
        out.fails().ends_with(
            "database is locked by another process or by another open handle in this process (a folio file has one read-write handle or any number of read-only ones at a time)"
        ),
        "{out:?}"
    );
}
