//! The defrag recipe: copy a pinned snapshot into a new file while writers go on, catch up with
//! what they committed, and swap the new file in under a short pause.
//!
//! One step each (see [`Db::defrag`]):
//! 1. pin a snapshot: a registered reader, so no page it can reach is reused while it lives;
//! 2. create `<file>.defrag` beside the database and bulk-load the snapshot into it
//!    (`load::copy`), then sync it and open it as a database of its own (`txn::swap::NewFile`);
//!    writers commit to the old file meanwhile;
//! 3. read the new file into the page cache (it was written around it), so that readers after
//!    the swap do not wait for the disk;
//! 4. catch up, without holding writers: take a newer snapshot, diff it against the pinned one by
//!    page id (`diff`), apply the difference to the new file in commits whose last takes the
//!    newer snapshot's txid, writing each back (a sync of the new file, then the pace's wait) so
//!    that no sync of it is large (`catch_up`), and pin the newer snapshot in place of the older;
//!    repeat while a round takes longer than the pause budget, the rounds shrink, and the round
//!    limit allows;
//! 5. hold writers; the last catch-up round, which brings the new file to the newest commit;
//! 6. swap (`txn::swap`): the next writer and new readers use the new file; readers that began
//!    earlier keep the old file. Nothing is synced or renamed with writers held;
//! 7. release writers; finish the swap (sync the new file, rename it over the database, sync the
//!    directory), unless the first commit round after the swap already did: no commit the old
//!    file had not made durable is acknowledged before it; release the old file gently
//!    (`release`): its blocks are freed in steps once no reader maps it.
//!
//! Until the rename in step 7 the database's path holds the old file, with every commit
//! acknowledged so far: a failure before the swap removes the new file and returns the error, and
//! a crash leaves the old database and at most a leftover `.defrag` file that the next open
//! removes. The new file is synced before the rename, which is atomic: after a crash the path
//! holds either file, each whole and synced, each with every acknowledged commit. If the finish
//! fails, the database is poisoned and the old file closed whole (see `txn::swap`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::defrag::diff::{self, Side, TreeChange};
use crate::defrag::options::{DefragOptions, DefragReport, DefragRound};
use crate::defrag::pace::Pace;
use crate::defrag::{load, readahead, release};
use crate::error::{Error, Result};
use crate::limits::DEFRAG_PACE_PIECE;
use crate::txn::ReadTxn;
use crate::txn::db::{Db, Snapshot};
use crate::txn::swap::NewFile;

/// Defragments the database at `path`, which no process may have open: rewrites its live pages
/// into a fresh, contiguous file and renames that over it. Fails with [`crate::Error::Locked`]
/// if another process has it open, and with an I/O error (not found) if there is no file.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("data.folio");
/// # {
/// #     let db = folio::Db::open(&path)?;
/// #     let mut tx = db.begin_write()?;
/// #     tx.open_tree(b"t")?.put(b"k", b"v")?;
/// #     tx.commit()?;
/// # }
/// let report = folio::defrag(&path, &folio::DefragOptions::default())?;
/// assert_eq!(report.size_after, std::fs::metadata(&path)?.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn defrag(path: impl AsRef<Path>, options: &DefragOptions) -> Result<DefragReport> {
    Db::builder().open_existing(path)?.defrag(options)
}

impl Db {
    /// Rewrites the live pages into a fresh, contiguous, fully packed file and swaps it in
    /// atomically (see the module docs for each step and what a crash leaves).
    ///
    /// Writers go on while the copy runs, committing to the old file; the defrag then catches up
    /// with what they committed, and holds them only for its last catch-up round and the swap
    /// (the report's [`DefragReport::pause`]). Readers are never held: a snapshot taken before
    /// the swap keeps reading the old file to its end. The new file is written around the page
    /// cache; before the swap, with writers going on, this reads it into the cache, unless
    /// [`DefragOptions::warm_cache`] says not to. On an error the database goes on as before,
    /// unless the error is [`crate::Error::Poisoned`]-worthy (the swap's finish, which syncs and
    /// renames the new file after the writers are released, failed), in which case later commits
    /// fail until a reopen. A write transaction open on this
    /// thread would deadlock the last step: commit or drop it first.
    pub fn defrag(&self, options: &DefragOptions) -> Result<DefragReport> {
        options.validate()?;
        let _one = self.one_defrag();
        let started = Instant::now();

        // 1. Pin a snapshot, and read its free space with it.
        let (mut base, usage, size_before) = {
            let held = self.hold_writers()?;
            let base = self.begin_read()?;
            debug_assert_eq!(base.txid(), held.latest().meta.txid);
            (base, held.usage(), self.inner.storage().len()?)
        };
        let source = base.snapshot();
        let page_size = source.meta.page_size as u64;
        let pages_total =
            (source.meta.page_count - 2).saturating_sub(usage.freelist_pages + usage.free_pages);
        let live_bytes = (2 + usage.freelist_pages + pages_total) * page_size;

        // 2. The new file, beside the old one: copy, sync, open. Writers go on; the defrag's
        //    disk traffic keeps to its pace while they commit.
        let commits = || self.inner.write_activity();
        let mut pages_written = 0;
        let new = NewFile::create(self, |out| {
            let meta = load::copy(
                source,
                out,
                options,
                pages_total,
                &usage.unused,
                Some(&commits),
            )?;
            pages_written = meta.page_count;
            Ok(())
        })?;

        // 3. Warm the page cache with the new file (it was written around it), so that readers
        //    after the swap do not wait for the disk. Writers go on. The pace goes on into the
        //    catch-up rounds' write-back.
        let mut pace = Pace::while_committing(options.pace, &commits);
        let warm = if options.warm_cache {
            let started = Instant::now();
            let reader = new.db().begin_read()?;
            readahead::warm(&reader.snapshot().map, &mut pace).then(|| started.elapsed())
        } else {
            None
        };

        // 4. Catch up while writers go on, each round written back in paced pieces.
        let mut rounds: Vec<DefragRound> = Vec::new();
        loop {
            let next = self.begin_read()?;
            let round = catch_up(&base, &next, &new, Some(&mut pace))?;
            base = next;
            options.round(&round);
            // A round that copied more than a non-empty one before it: writers outpace the
            // catch-up, and more rounds would not shrink the last one.
            let shrinking = rounds
                .last()
                .is_none_or(|p| p.entries == 0 || round.entries < p.entries);
            rounds.push(round);
            if round.duration < options.pause_budget {
                break;
            }
            if !shrinking || rounds.len() >= options.rounds_max as usize {
                if options.give_up {
                    // `new` is removed as it drops.
                    return Err(Error::DefragBehind {
                        rounds: rounds.len() as u32,
                        last_ms: round.duration.as_millis() as u64,
                    });
                }
                break;
            }
        }

        // 5. Hold writers: the last round.
        let mut held = self.hold_writers()?;
        let paused = Instant::now();
        let last = self.begin_read()?;
        let round = catch_up(&base, &last, &new, None)?;
        drop(base);
        options.round(&round);
        rounds.push(round);

        // 6. Swap.
        let swapped = held.swap(new)?;
        let size_after = swapped.snapshot.meta.page_count * page_size;
        drop(held);
        let pause = paused.elapsed();
        // The new file is synced, renamed over the database and the rename made durable here, or
        // in the first commit round after the swap, with writers free: until then none of their
        // commits is acknowledged.
        let finished = self.inner.finish_swap();
        let (duration, finish) = (started.elapsed(), paused.elapsed() - pause);

        // 7. Release the old file; it waits for no one, writers are free. The release thread
        // takes its references to the old mappings first, so that it, not this call, unmaps them.
        // If the finish failed, a crash may still bring the old file back: it is closed whole;
        // and the new file, if it still has its temporary name, is removed (best effort: a
        // leftover is removed by the next open), as the path holds the old file.
        if finished.is_ok() {
            release::release(swapped.old_storage, swapped.old_maps);
        } else {
            let new = self.inner.storage();
            if new.path() != swapped.old_storage.path() {
                let _ = new.remove_sibling(&new.path());
            }
        }
        drop((last, swapped.old_snapshot, swapped.old_freelist));
        finished?;
        Ok(DefragReport {
            size_before,
            size_after,
            live_bytes,
            pages_written,
            duration,
            pause,
            finish,
            rounds,
            warm,
        })
    }
}

/// One catch-up round: what `next` holds beyond `base` (both snapshots of the database, `base`
/// pinned), applied to the new file `file`, its last commit with `next`'s txid.
///
/// With writers held (`pace` is `None`: the last round) it is one commit, and nothing is synced.
/// Otherwise, paced, it is written back as it goes: the difference is applied in pieces of about
/// [`DEFRAG_PACE_PIECE`] bytes of pages, each its own commit followed by a sync of the new file
/// and the pace's wait (while writers are at work), so that the writers' syncs, which share the
/// file system's journal with it, never queue behind one large flush. The pieces'
/// commits take txids between `base`'s and `next`'s (`txn::swap`, invariant 1): a round whose
/// snapshots are fewer commits apart than it has pieces puts the rest into its last commit.
fn catch_up(
    base: &ReadTxn<'_>,
    next: &ReadTxn<'_>,
    file: &NewFile,
    mut pace: Option<&mut Pace<'_>>,
) -> Result<DefragRound> {
    let started = Instant::now();
    let mut round = DefragRound {
        entries: 0,
        bytes: 0,
        duration: Default::default(),
        last: pace.is_none(),
        commits: 0,
        write_back: Default::default(),
    };
    let (old, new) = (base.snapshot(), next.snapshot());
    if new.meta.txid > old.meta.txid {
        let changes = diff::catalog(side(old), side(new))?;
        let page_size = file.db().page_size() as u64;
        if let Some(pace) = pace.as_deref_mut() {
            // Whether writers are at work now: the pace waits between pieces only then.
            pace.moved(0);
        }
        let mut piece = Piece {
            txid: old.meta.txid,
            bytes: 0,
            dirty: 0,
        };
        let mut tx = file.db().begin_write()?;
        for (name, change) in changes {
            match change {
                TreeChange::Deleted => {
                    tx.delete_tree(name)?;
                    round.entries += 1;
                }
                TreeChange::Changed(entries) => {
                    let mut rest = entries.as_slice();
                    loop {
                        let mut tree = tx.open_tree(name)?;
                        let mut applied = 0;
                        let mut full = false;
                        for &(key, value) in rest {
                            match value {
                                Some(value) => {
                                    tree.put(key, value)?;
                                    round.bytes += (key.len() + value.len()) as u64;
                                    piece.bytes += (key.len() + value.len()) as u64;
                                }
                                None => {
                                    tree.delete(key)?;
                                }
                            }
                            round.entries += 1;
                            applied += 1;
                            // The transaction's dirty nodes, each at least a page to write.
                            piece.dirty = tree.dirty.arena.len() as u64 * page_size;
                            full = piece.full(pace.as_deref(), new.meta.txid);
                            if full {
                                break;
                            }
                        }
                        rest = &rest[applied..];
                        if !full {
                            break;
                        }
                        let pace = pace.as_deref_mut().expect("only a paced round is cut");
                        piece.txid += 1;
                        tx.commit_as(piece.txid)?;
                        round.commits += 1;
                        round.write_back += write_back(file, pace, &mut piece)?;
                        tx = file.db().begin_write()?;
                    }
                }
            }
        }
        tx.commit_as(new.meta.txid)?;
        round.commits += 1;
        if let Some(pace) = pace {
            round.write_back += write_back(file, pace, &mut piece)?;
        }
    }
    round.duration = started.elapsed().saturating_sub(round.write_back);
    Ok(round)
}

/// The piece of a catch-up round being applied, since the new file's last commit.
struct Piece {
    /// The txid of that commit.
    txid: u64,
    /// Bytes of keys and values put since.
    bytes: u64,
    /// The page bytes of the transaction's dirty nodes (a node is at least a page to write).
    dirty: u64,
}

impl Piece {
    /// What the piece's commit will write, about: its values (a node that grew past a page
    /// writes them) and a page per dirty node (a node changed in place writes its whole page).
    fn estimate(&self) -> u64 {
        self.bytes.saturating_add(self.dirty)
    }

    /// Whether to commit and write back the piece now: in a paced round (not the last, and a
    /// rate set), with a txid left between the last commit and the round's last (`last_txid`),
    /// once it reaches [`DEFRAG_PACE_PIECE`]. Whether the pace holds does not matter: writers
    /// that all wait for a slow sync commit nothing for a while, and that is when a large flush
    /// would hurt them most; without writers a round has little to cut.
    fn full(&self, pace: Option<&Pace<'_>>, last_txid: u64) -> bool {
        pace.is_some_and(Pace::is_paced)
            && self.txid + 1 < last_txid
            && self.estimate() >= DEFRAG_PACE_PIECE as u64
    }
}

/// Syncs the new file after a piece's commit and waits for the pace; returns how long both took.
fn write_back(file: &NewFile, pace: &mut Pace<'_>, piece: &mut Piece) -> Result<Duration> {
    let started = Instant::now();
    file.write_back()?;
    pace.moved(usize::try_from(piece.estimate()).unwrap_or(usize::MAX));
    (piece.bytes, piece.dirty) = (0, 0);
    Ok(started.elapsed())
}

/// A snapshot's catalog, for a diff; every page read is verified.
fn side(s: &Snapshot) -> Side<'_> {
    Side {
        pages: s.pages(true),
        root: (s.meta.catalog_root != 0).then_some(s.meta.catalog_root),
    }
}
