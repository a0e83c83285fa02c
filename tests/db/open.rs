//! Opening and creating files: racing creators, read-only opens, the lock wait, and what the
//! errors of an open say.
//!
//! What broke: two creators of one new database both used `<db>.creating` and each removed it
//! first, so one linked the other's inode into place and went on committing to a file no path
//! named (acknowledged commits lost, a 0-byte file at the path); there was no read-only open, so a
//! user who may only read a file could not use it; an open failed at once on a held lock; a
//! second open in the same process said "another process"; I/O errors did not name the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use folio::{Db, DefragOptions, Error, Store};

/// Long enough that no open in these tests gives up on a lock a live holder will let go.
const PATIENCE: Duration = Duration::from_secs(120);

/// Opens `path` as `Db::open` does, trying again while another handle holds it (without the
/// lock wait, so that this test's claim about creation does not depend on it).
fn open_retrying(path: &Path) -> Db {
    let start = std::time::Instant::now();
    loop {
        match Db::builder().open(path) {
            Err(Error::Locked) if start.elapsed() < PATIENCE => std::thread::yield_now(),
            r => return r.expect("open"),
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Threads racing to create one new database, each through its own open: every commit each one
/// was told of is in the one file at the path, the path never names an empty or half-made file,
/// and no temporary file is left.
#[test]
fn racing_creators_make_one_database_and_lose_no_acknowledged_commit() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 25;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.folio");
        let start = Arc::new(Barrier::new(THREADS + 1));
        let done = Arc::new(AtomicBool::new(false));
        // Watches the path all through the race: once there, it is a whole database.
        let watcher = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !done.load(Ordering::Relaxed) {
                    if let Ok(m) = std::fs::metadata(&path) {
                        assert!(m.len() >= 2 * 4096, "round {round}: {} bytes", m.len());
                        seen += 1;
                    }
                }
                seen
            })
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let db = open_retrying(&path);
                    let mut tx = db.begin_write().unwrap();
                    tx.open_tree(b"t")
                        .unwrap()
                        .put(format!("k{i}").as_bytes(), b"v")
                        .unwrap();
                    tx.commit().unwrap();
                })
            })
            .collect();
        start.wait();
        for t in threads {
            t.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap();

        assert_eq!(names(dir.path()), ["new.folio"], "round {round}");
        let db = Db::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let tree = tx.tree(b"t").unwrap().expect("the tree");
        for i in 0..THREADS {
            assert!(
                tree.get(format!("k{i}").as_bytes()).unwrap().is_some(),
                "round {round}: the commit of thread {i} is lost"
            );
        }
        assert!(db.check().unwrap().is_clean());
    }
}

/// A database with one committed key, closed.
fn made(path: &Path) {
    let db = Db::open(path).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t").unwrap().put(b"k", b"v").unwrap();
    tx.commit().unwrap();
}

#[test]
fn read_only_opens_share_the_file_and_keep_a_writer_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    made(&path);
    let reader = || Db::builder().read_only(true).open(&path);
    let (a, b) = (reader().unwrap(), reader().unwrap());
    for db in [&a, &b] {
        assert!(db.is_read_only());
        let tx = db.begin_read().unwrap();
        assert_eq!(
            tx.tree(b"t").unwrap().unwrap().get(b"k").unwrap(),
            Some(&b"v"[..])
        );
    }
    let err = Db::open(&path).unwrap_err();
    assert!(matches!(err, Error::Locked), "{err}");
    drop((a, b));
    let writer = Db::open(&path).unwrap();
    assert!(!writer.is_read_only());
    let err = reader().unwrap_err();
    assert!(matches!(err, Error::Locked), "{err}");
}

/// A session through a read-only open, on a file its mode says no one may write, with a defrag's
/// leftover beside it: every write is refused with `ReadOnly`, and neither the file's bytes nor
/// its modification time nor the leftover change.
#[test]
fn a_read_only_session_changes_nothing_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    {
        let store = Store::open(&path).unwrap();
        for i in 0..20 {
            store.put(format!("k{i}").as_bytes(), b"v").unwrap();
        }
    }
    let leftover = dir.path().join("db.folio.defrag");
    std::fs::write(&leftover, b"an unfinished defrag").unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    file.set_modified(past).unwrap();
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    {
        let db = Db::builder().read_only(true).open(&path).unwrap();
        let store = Store::with_db(db.clone()).unwrap();
        let r = store
            .range(folio::KeyRange::all(), folio::RangeOptions::current())
            .unwrap();
        assert_eq!(r.kvs.len(), 20);
        assert!(db.check().unwrap().is_clean());
        db.stats().unwrap();
        db.sync().unwrap();
        for err in [
            db.begin_write().map(drop).unwrap_err(),
            store.put(b"k0", b"w").map(drop).unwrap_err(),
            store.compact(2).unwrap_err(),
            db.defrag(&DefragOptions::default()).map(drop).unwrap_err(),
        ] {
            assert!(matches!(err, Error::ReadOnly), "{err}");
        }
    }

    assert!(std::fs::read(&path).unwrap() == bytes, "the bytes changed");
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), past);
    assert!(leftover.exists(), "the read-only open removed the leftover");
    assert_eq!(names(dir.path()), ["db.folio", "db.folio.defrag"]);
}

#[test]
fn a_read_only_open_of_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.folio");
    let err = Db::builder().read_only(true).open(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(names(dir.path()).is_empty());
}

/// The holder lets go while the other open waits for the lock; the waiter then opens it.
#[test]
fn an_open_waiting_for_a_lock_opens_once_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    made(&path);
    for read_only in [false, true] {
        let holder = Db::open(&path).unwrap();
        // Held: an open that does not wait fails.
        let err = Db::builder().read_only(read_only).open(&path).unwrap_err();
        assert!(matches!(err, Error::Locked), "{err}");
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                Db::builder()
                    .read_only(read_only)
                    .lock_timeout(PATIENCE)
                    .open(&path)
            })
        };
        // Not a timing: the waiter opens whether it began waiting before or after this.
        std::thread::sleep(Duration::from_millis(100));
        drop(holder);
        let db = waiter.join().unwrap().expect("the waiter opens");
        assert_eq!(db.is_read_only(), read_only);
    }
}

#[test]
fn an_open_whose_lock_is_never_let_go_fails_with_locked_once_it_has_waited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    made(&path);
    let _holder = Db::open(&path).unwrap();
    for read_only in [false, true] {
        let err = Db::builder()
            .read_only(read_only)
            .lock_timeout(Duration::from_millis(30))
            .open(&path)
            .unwrap_err();
        assert!(matches!(err, Error::Locked), "{err}");
    }
}

/// The second handle is in this very process: the message must not blame another process alone.
#[test]
fn a_second_open_in_the_same_process_is_named_as_a_possible_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    let _first = Db::open(&path).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert!(matches!(err, Error::Locked), "{err}");
    assert!(
        err.to_string().starts_with(
            "database is locked by another process or by another open handle in this process"
        ),
        "{err}"
    );
}

/// I/O errors from opening or creating a file name the file, and keep their kind.
#[test]
fn io_errors_of_an_open_name_the_file_and_keep_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no-such-dir").join("db.folio");
    let missing = dir.path().join("missing.folio");
    let a_dir = dir.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();
    for (path, result) in [
        (&missing_dir, Db::open(&missing_dir)),
        (&missing, Db::builder().open_existing(&missing)),
        (&missing, Db::builder().read_only(true).open(&missing)),
        (&a_dir, Db::open(&a_dir)),
    ] {
        let err = result.unwrap_err();
        let Error::Io(io) = &err else {
            panic!("{}: not an I/O error: {err:?}", path.display())
        };
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err} does not name {}",
            path.display()
        );
        if path != &a_dir {
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound, "{err}");
        }
    }
    assert_eq!(names(dir.path()), ["a-dir"]);
}

/// A page size set on the builder was silently ignored for an existing file of another page
/// size; now the open says so, and an unset page size opens a file of any page size.
#[test]
fn a_page_size_set_for_an_existing_file_of_another_page_size_is_an_invalid_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small-pages.folio");
    drop(Db::builder().page_size(1024).open(&path).unwrap());
    let err = Db::builder().page_size(8192).open(&path).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid option: page size 8192 was set, but the database at {} has pages of 1024 bytes, fixed when it was made (leave the page size unset to open it)",
            path.display()
        )
    );
    let err = Db::builder()
        .page_size(4096)
        .read_only(true)
        .open_existing(&path)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
    assert_eq!(
        Db::builder()
            .page_size(1024)
            .open(&path)
            .unwrap()
            .page_size(),
        1024
    );
    assert_eq!(Db::open(&path).unwrap().page_size(), 1024);
}

/// Sets the format version of both metas of the file at `path` to `version`, with good checksums.
fn set_format_version(path: &Path, version: u32, page_size: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for slot in 0..2 {
        let meta = &mut bytes[slot * page_size..slot * page_size + 96];
        meta[32..36].copy_from_slice(&version.to_le_bytes());
        meta[16..20].fill(0);
        let crc = crc32fast::hash(meta);
        meta[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// What changed: format version 2 added freelist deltas, version 3 the meta's proof. A version 1
/// file is a version 3 file whose freelist chain is one full list and whose metas carry no proof,
/// so this build must open it, read it, and commit to it (writing version 3 from then on), and an
/// older build must then refuse it.
#[test]
fn a_version_1_file_opens_commits_and_is_written_as_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.folio");
    let db = Db::builder().page_size(512).open(&path).unwrap();
    for round in 0..2u8 {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for i in 0..200u32 {
            t.put(&i.to_be_bytes(), &[round; 40]).unwrap();
        }
        tx.commit().unwrap();
    }
    // Commit until the freelist chain's head is a full list (kind 5), as the head of every
    // version 1 file is.
    let head_kind = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let txid =
            |slot: usize| u64::from_le_bytes(bytes[slot * 512 + 40..][..8].try_into().unwrap());
        let newest = usize::from(txid(1) > txid(0));
        let head = u64::from_le_bytes(bytes[newest * 512 + 56..][..8].try_into().unwrap());
        bytes[head as usize * 512 + 8]
    };
    while head_kind(&path) != 5 {
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"t").unwrap().put(b"x", b"y").unwrap();
        tx.commit().unwrap();
    }
    drop(db);
    set_format_version(&path, 1, 512);

    let db = Db::open(&path).unwrap();
    assert!(db.check().unwrap().is_clean());
    assert_eq!(
        db.begin_read()
            .unwrap()
            .tree(b"t")
            .unwrap()
            .unwrap()
            .get(&7u32.to_be_bytes())
            .unwrap(),
        Some(&[1u8; 40][..])
    );
    for round in 2..6u8 {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for i in (0..200u32).step_by(usize::from(round)) {
            t.put(&i.to_be_bytes(), &[round; 40]).unwrap();
        }
        tx.commit().unwrap();
    }
    drop(db);
    let bytes = std::fs::read(&path).unwrap();
    let versions: Vec<u32> = (0..2)
        .map(|slot| u32::from_le_bytes(bytes[slot * 512 + 32..][..4].try_into().unwrap()))
        .collect();
    assert_eq!(versions, vec![3, 3], "both metas rewritten as version 3");
    let db = Db::open(&path).unwrap();
    assert!(db.check().unwrap().is_clean());
    let read = db.begin_read().unwrap();
    let t = read.tree(b"t").unwrap().unwrap();
    assert_eq!(t.get(&10u32.to_be_bytes()).unwrap(), Some(&[5u8; 40][..]));
    assert_eq!(t.get(&7u32.to_be_bytes()).unwrap(), Some(&[1u8; 40][..]));
}

/// `run_spare` past 90% is refused before anything is made; 90% itself opens.
#[test]
fn a_run_spare_above_ninety_percent_is_an_invalid_option_and_no_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spare.folio");
    let err = Db::builder().run_spare(91).open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid option: run spare 91% must be at most 90%"
    );
    assert!(!path.exists());
    let db = Db::builder().run_spare(90).open(&path).unwrap();
    assert!(db.check().unwrap().is_clean());
    drop(db);
    let file = folio::storage::FileStorage::open(&path).unwrap();
    let err = Db::builder()
        .run_spare(200)
        .open_with(Box::new(file))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
}
