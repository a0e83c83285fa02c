//! The catch-up rounds' write-back, as the disk sees it.
//!
//! What broke: each catch-up round made without writers held was one commit to the new file,
//! unsynced, followed by one sync of all of it. The first round after a copy carries what the
//! writers committed during the whole copy (9-24 MiB in the `online_defrag` example), and the
//! puts whose own syncs came during that one large flush took twice the usual longest put (ext4's
//! journal is shared by the two files). Now, while writers are at work, a round is applied in
//! pieces of about a pace piece (1 MiB) of pages, each its own commit followed by a sync.
//!
//! The test watches the new file's calls: no more than about a piece (at most two) is
//! written between two of its syncs after the copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use folio::sim::SimStorage;
use folio::storage::Storage;
use folio::{Db, DefragOptions};

use crate::common::contents;

/// Each storage of the watched machine: its path, and the bytes written to it since its last
/// sync, with the most ever seen between two syncs from when `after_copy` was set.
#[derive(Debug, Default)]
struct Log {
    files: Mutex<Vec<(PathBuf, u64, u64)>>,
    after_copy: AtomicBool,
}

impl Log {
    fn wrote(&self, path: PathBuf, len: u64) {
        let mut files = self.files.lock().unwrap();
        match files.iter_mut().find(|f| f.0 == path) {
            Some(f) => f.1 += len,
            None => files.push((path, len, 0)),
        }
    }

    fn synced(&self, path: PathBuf) {
        let after_copy = self.after_copy.load(Ordering::SeqCst);
        let mut files = self.files.lock().unwrap();
        if let Some(f) = files.iter_mut().find(|f| f.0 == path) {
            if after_copy {
                f.2 = f.2.max(f.1);
            }
            f.1 = 0;
        }
    }

    /// The most bytes written to a file whose name ends with `suffix` between two of its syncs.
    fn largest_sync(&self, suffix: &str) -> u64 {
        let files = self.files.lock().unwrap();
        files
            .iter()
            .filter(|f| f.0.to_string_lossy().ends_with(suffix))
            .map(|f| f.2)
            .max()
            .expect("the file was written")
    }
}

/// A storage whose writes and syncs, and its siblings', go to a [`Log`].
#[derive(Debug)]
struct Logged {
    inner: Box<dyn Storage>,
    log: Arc<Log>,
}

impl Storage for Logged {
    fn len(&self) -> folio::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> folio::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> folio::Result<()> {
        self.log.wrote(self.path(), data.len() as u64);
        self.inner.write_at(data, offset)
    }
    fn write_bulk(&self, data: &[u8], offset: u64) -> folio::Result<()> {
        self.log.wrote(self.path(), data.len() as u64);
        self.inner.write_bulk(data, offset)
    }
    fn set_len(&self, len: u64) -> folio::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> folio::Result<()> {
        self.inner.sync()?;
        self.log.synced(self.path());
        Ok(())
    }
    fn map(&self) -> folio::Result<memmap2::Mmap> {
        self.inner.map()
    }
    fn path(&self) -> PathBuf {
        self.inner.path()
    }
    fn create_sibling(&self, path: &Path) -> folio::Result<Box<dyn Storage>> {
        Ok(Box::new(Logged {
            inner: self.inner.create_sibling(path)?,
            log: self.log.clone(),
        }))
    }
    fn rename(&self, to: &Path) -> folio::Result<()> {
        self.inner.rename(to)
    }
    fn remove_sibling(&self, path: &Path) -> folio::Result<()> {
        self.inner.remove_sibling(path)
    }
    fn sync_dir(&self) -> folio::Result<()> {
        self.inner.sync_dir()
    }
}

/// The most a paced round's piece may write: twice the pace's piece (1 MiB). A piece is cut when
/// its values and a page per dirty node reach the piece, which leaves out the room values leave
/// in their pages (a 3 KiB value fills a 4 KiB leaf alone: a third more), the pages above the
/// leaves, the freelist's delta and the meta.
const PIECE_WRITTEN_MAX: u64 = 2 << 20;

/// What it guards: with a writer at work, a catch-up round of several MiB is written back in
/// synced pieces, never in one large flush (see the file's docs), and the pieces lose nothing.
#[test]
fn a_catch_up_round_with_writers_at_work_is_written_back_in_synced_pieces_of_about_a_mib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pieces.folio");
    let log = Arc::new(Log::default());
    let storage = Logged {
        inner: Box::new(SimStorage::create(&path).unwrap()),
        log: log.clone(),
    };
    let db = Db::builder()
        .durability(folio::Durability::None)
        .create_with(Box::new(storage))
        .unwrap();
    {
        // A small base: the copy writes less than a piece.
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"base").unwrap();
        for i in 0..100u32 {
            t.put(format!("b{i:05}").as_bytes(), &[7; 100]).unwrap();
        }
        tx.commit().unwrap();
    }

    // During the copy: 2,000 commits of 3 KiB each (6 MiB for the first round), then a writer
    // that keeps a write transaction open until the first round is done, so that the pace holds
    // (a writer is at work) for all of that round, whatever the machine's timing.
    let (release, released) = mpsc::channel::<()>();
    let release = Mutex::new(Some(release));
    let released = Mutex::new(Some(released));
    let busy = Arc::new(Mutex::new(None::<std::thread::JoinHandle<()>>));
    let (writer, busy_writer, after_copy) = (db.clone(), busy.clone(), log.clone());
    let options = DefragOptions::default()
        .warm_cache(false)
        .pause_budget(std::time::Duration::ZERO)
        .rounds_max(2)
        .progress(move |p| {
            if p.pages_done != p.pages_total {
                return;
            }
            for i in 0..2000u32 {
                let mut tx = writer.begin_write().unwrap();
                tx.open_tree(b"during")
                    .unwrap()
                    .put(format!("d{i:06}").as_bytes(), &[i as u8; 3 << 10])
                    .unwrap();
                tx.commit().unwrap();
            }
            let released = released.lock().unwrap().take().unwrap();
            let (began, begun) = mpsc::channel();
            let db = writer.clone();
            *busy_writer.lock().unwrap() = Some(std::thread::spawn(move || {
                let tx = db.begin_write().unwrap();
                began.send(()).unwrap();
                // Until the first round is done (its sender dropped).
                let _ = released.recv();
                drop(tx);
            }));
            begun.recv().unwrap();
            after_copy.after_copy.store(true, Ordering::SeqCst);
        })
        .on_round(move |_| drop(release.lock().unwrap().take()));
    let report = db.defrag(&options).unwrap();
    busy.lock().unwrap().take().unwrap().join().unwrap();

    let first = report.rounds[0];
    assert_eq!(first.entries, 2000, "{report}");
    let largest = log.largest_sync(".defrag");
    assert!(
        largest <= PIECE_WRITTEN_MAX,
        "{largest} bytes written to the new file between two of its syncs: {report:?}"
    );
    assert!(
        first.commits >= 5,
        "6 MiB with a writer at work: pieces, not one commit: {report:?}"
    );
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.tree(b"during").unwrap().unwrap().len(), 2000);
    drop(tx);
    assert!(db.check().unwrap().is_clean());
    let before = contents(&db);
    drop(db);
    let reopened = Db::open(&path).unwrap();
    assert_eq!(contents(&reopened), before);
}
