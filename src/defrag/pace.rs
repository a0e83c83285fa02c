//! Pacing a defrag's own disk traffic, so that commits do not queue behind it.
//!
//! An online defrag shares the disk with the commits it lets go on. Unpaced, it writes its new
//! file and reads it back into the cache as fast as the disk goes, in 8 MiB requests, and a
//! commit's sync waits behind every request queued ahead of it (and, on a disk with a volatile
//! cache, flushes whatever the defrag wrote since the last flush). A pace spreads that traffic to
//! a rate, in pieces of at most [`DEFRAG_PACE_PIECE`] bytes, so that a sync finds at most a piece
//! or two ahead of it. The defrag takes longer; the writers' pause does not change.
//!
//! The rate holds only while writers write: given the database's commit counter and whether a
//! write transaction is open or waiting, a pace that has seen no commit and no open write
//! transaction for [`DEFRAG_PACE_IDLE`] lets the defrag go at the disk's speed, and starts the
//! rate afresh when a writer comes back (no credit is saved up while idle, so the first pieces
//! after that are not a burst).
//!
//! An open write transaction counts, not only a commit: on a cold cache a writer can spend longer
//! than that reading its own tree pages, and a pace that took the missing commits for an idle
//! database went at the disk's speed exactly when the writers needed the disk, so that they
//! stalled longer still (puts of 0.8–0.9 s early in a cold defrag of 1 GiB).

use std::time::{Duration, Instant};

use crate::limits::{DEFRAG_PACE_IDLE, DEFRAG_PACE_PIECE};

/// Reads the database's commit counter, which moves while writers commit, and whether a write
/// transaction is open or waiting for the writer lock now.
pub(crate) type Commits<'a> = &'a (dyn Fn() -> (u64, bool) + Sync);

/// A rate in bytes per second (or none), and how much has gone at it since it started.
pub(crate) struct Pace<'a> {
    rate: Option<u64>,
    /// Without it, the rate always holds.
    commits: Option<Commits<'a>>,
    started: Instant,
    bytes: u64,
    /// The commit counter as last read, and when it was last seen to move.
    seen: u64,
    moved_at: Option<Instant>,
    /// Whether the rate held at the last request (always, without `commits`).
    holding: bool,
}

impl<'a> Pace<'a> {
    /// A pace at `rate` that always holds.
    pub fn new(rate: Option<u64>) -> Pace<'a> {
        Pace {
            rate,
            commits: None,
            started: Instant::now(),
            bytes: 0,
            seen: 0,
            moved_at: None,
            holding: true,
        }
    }

    /// A pace at `rate` that holds only while `commits` moves or says a writer is busy.
    pub fn while_committing(rate: Option<u64>, commits: Commits<'a>) -> Pace<'a> {
        Pace {
            seen: commits().0,
            commits: Some(commits),
            holding: false,
            ..Pace::new(rate)
        }
    }

    /// Whether a rate is set (it holds only while writers write).
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// How many of `len` bytes to move in one request: all of them when unpaced or while no
    /// writer commits.
    pub fn piece(&self, len: usize) -> usize {
        match self.rate {
            Some(_) if self.holding => len.min(DEFRAG_PACE_PIECE),
            _ => len,
        }
    }

    /// Counts `bytes` as moved and, while writers commit, sleeps until the rate allows the next
    /// request.
    pub fn moved(&mut self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        self.holding = self.writers_active();
        if !self.holding {
            self.started = Instant::now();
            self.bytes = 0;
            return;
        }
        self.bytes = self.bytes.saturating_add(bytes as u64);
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    fn writers_active(&mut self) -> bool {
        let Some(commits) = self.commits else {
            return true;
        };
        let (now, writing) = commits();
        if now != self.seen || writing {
            self.seen = now;
            if self
                .moved_at
                .is_none_or(|t| t.elapsed() >= DEFRAG_PACE_IDLE)
            {
                // The first sign of a writer after a quiet spell: the rate starts from here.
                self.started = Instant::now();
                self.bytes = 0;
            }
            self.moved_at = Some(Instant::now());
        }
        self.moved_at
            .is_some_and(|t| t.elapsed() < DEFRAG_PACE_IDLE)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    #[test]
    fn an_unpaced_request_is_whole_and_a_paced_one_is_cut_to_a_piece() {
        let len = 3 * DEFRAG_PACE_PIECE + 1;
        assert_eq!(Pace::new(None).piece(len), len);
        assert_eq!(Pace::new(Some(1 << 30)).piece(len), DEFRAG_PACE_PIECE);
        assert_eq!(Pace::new(Some(1 << 30)).piece(100), 100);
    }

    #[test]
    fn a_pace_waits_until_its_bytes_are_due() {
        // 1 MiB at 16 MiB/s is due 62.5 ms after the start: the call returns no sooner.
        let mut pace = Pace::new(Some(16 << 20));
        pace.moved(1 << 20);
        assert!(pace.started.elapsed() >= Duration::from_micros(62_500));
        // Unpaced, nothing is counted and nothing waits.
        let mut none = Pace::new(None);
        none.moved(usize::MAX);
        assert_eq!(none.bytes, 0);
    }

    /// What it guards: the default pace must not slow a defrag that has no writer beside it
    /// (an offline one, or an idle database), and must hold as soon as a writer commits.
    #[test]
    fn a_pace_holds_only_while_the_commit_counter_moves() {
        let counter = AtomicU64::new(7);
        let commits = || (counter.load(Ordering::Relaxed), false);
        // 1 MiB per second: a held pace would sleep about a second per MiB.
        let mut pace = Pace::while_committing(Some(1 << 20), &commits);
        let start = Instant::now();
        for _ in 0..64 {
            pace.moved(1 << 20);
        }
        assert_eq!(
            pace.bytes, 0,
            "no commit: nothing is counted against the rate"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no commit: no wait"
        );
        assert_eq!(
            pace.piece(8 << 20),
            8 << 20,
            "no commit: requests are whole"
        );

        // A commit: from now on the bytes count, and the second MiB waits for its second.
        counter.store(8, Ordering::Relaxed);
        pace.moved(1 << 19);
        assert_eq!(pace.bytes, 1 << 19);
        assert!(pace.started.elapsed() >= Duration::from_millis(500));
        assert_eq!(
            pace.piece(8 << 20),
            DEFRAG_PACE_PIECE,
            "while committing: pieces"
        );
    }

    /// What broke: on a cold cache writers spent longer than the idle time reading their own tree
    /// pages, no commit landed, and the pace let the defrag go at the disk's speed just when the
    /// writers needed the disk (puts of 0.8–0.9 s).
    #[test]
    fn a_pace_holds_while_a_writer_is_busy_even_when_no_commit_lands() {
        let writing = AtomicBool::new(true);
        let commits = || (7, writing.load(Ordering::Relaxed));
        let mut pace = Pace::while_committing(Some(1 << 20), &commits);
        pace.moved(1 << 19);
        assert_eq!(pace.bytes, 1 << 19, "a busy writer: the bytes count");
        assert_eq!(
            pace.piece(8 << 20),
            DEFRAG_PACE_PIECE,
            "a busy writer: pieces"
        );
        std::thread::sleep(DEFRAG_PACE_IDLE * 2);
        pace.moved(1);
        assert!(
            pace.holding,
            "still busy after the idle time: the pace holds"
        );

        writing.store(false, Ordering::Relaxed);
        std::thread::sleep(DEFRAG_PACE_IDLE * 2);
        pace.moved(1 << 20);
        assert!(
            !pace.holding,
            "no writer and no commit for the idle time: unpaced"
        );
        assert_eq!(pace.piece(8 << 20), 8 << 20);
    }

    /// A storage whose syncs wait while `held` is set, counting the syncs that wait.
    #[derive(Debug)]
    struct HeldSync {
        sim: crate::page_file::SimStorage,
        held: std::sync::Arc<(AtomicBool, AtomicU64)>,
    }

    impl crate::page_file::Storage for HeldSync {
        fn len(&self) -> crate::Result<u64> {
            self.sim.len()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> crate::Result<()> {
            self.sim.read_at(buf, offset)
        }
        fn write_at(&self, data: &[u8], offset: u64) -> crate::Result<()> {
            self.sim.write_at(data, offset)
        }
        fn set_len(&self, len: u64) -> crate::Result<()> {
            self.sim.set_len(len)
        }
        fn sync(&self) -> crate::Result<()> {
            if self.held.0.load(Ordering::SeqCst) {
                self.held.1.fetch_add(1, Ordering::SeqCst);
                while self.held.0.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            }
            self.sim.sync()
        }
        fn map(&self) -> crate::Result<memmap2::Mmap> {
            self.sim.map()
        }
        fn path(&self) -> std::path::PathBuf {
            self.sim.path()
        }
        fn create_sibling(
            &self,
            path: &std::path::Path,
        ) -> crate::Result<Box<dyn crate::page_file::Storage>> {
            self.sim.create_sibling(path)
        }
        fn rename(&self, to: &std::path::Path) -> crate::Result<()> {
            self.sim.rename(to)
        }
        fn remove_sibling(&self, path: &std::path::Path) -> crate::Result<()> {
            self.sim.remove_sibling(path)
        }
        fn sync_dir(&self) -> crate::Result<()> {
            self.sim.sync_dir()
        }
    }

    /// What broke: a group commit waiting for its sync counted as no writer, so writers that
    /// all waited for a slow sync (300 ms and more on a loaded machine) looked idle to the pace,
    /// which then let the defrag's traffic go at the disk's speed just as they waited on the disk.
    #[test]
    fn a_database_reports_a_writer_busy_while_its_group_commit_waits_for_its_sync() {
        let dir = tempfile::tempdir().unwrap();
        let held = std::sync::Arc::new((AtomicBool::new(false), AtomicU64::new(0)));
        let storage = HeldSync {
            sim: crate::page_file::SimStorage::create(&dir.path().join("group.folio")).unwrap(),
            held: held.clone(),
        };
        let db = crate::Db::builder()
            .durability(crate::Durability::Group)
            .create_with(Box::new(storage))
            .unwrap();
        held.0.store(true, Ordering::SeqCst);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut tx = db.begin_write().unwrap();
                tx.open_tree(b"t").unwrap().put(b"k", b"v").unwrap();
                tx.commit().unwrap();
            });
            while held.1.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let busy = db.inner.write_activity().1;
            held.0.store(false, Ordering::SeqCst);
            writer.join().unwrap();
            assert!(busy, "a commit waiting for its sync is a writer at work");
        });
        assert!(!db.inner.write_activity().1, "the commit is durable: idle");
    }

    #[test]
    fn a_database_reports_a_writer_busy_from_begin_write_to_the_end_of_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(dir.path().join("busy.folio")).unwrap();
        let before = db.inner.write_activity();
        assert!(!before.1, "no write transaction");
        let mut tx = db.begin_write().unwrap();
        assert_eq!(db.inner.write_activity(), (before.0, true));
        tx.open_tree(b"t").unwrap().put(b"k", b"v").unwrap();
        tx.commit().unwrap();
        assert_eq!(db.inner.write_activity(), (before.0 + 1, false));
        drop(db.begin_write().unwrap());
        assert!(!db.inner.write_activity().1, "dropped uncommitted");
    }
}
