//! Durability: who writes the meta page, when, and which pages are safe to reuse.
//!
//! State machine (one `SyncState` per database, under one mutex):
//! 1. A commit writes its pages, then records its meta as `committed`.
//! 2. A *round* makes a commit durable: write its meta into the slot that does not hold the newest
//!    written meta, then sync. A meta must never count before its commit's pages are on disk.
//!    Usually the round writes the newest commit's meta with a *proof*: every run written since
//!    the newest durable meta that this commit still uses, each with the checksum it was sealed
//!    with (`unproven`, kept as commits are recorded: a commit adds the runs it wrote and drops
//!    the runs it stopped using). Meta and pages are then made durable by one sync, and open takes
//!    a meta with a proof only if every run it names holds what it says, else the other slot
//!    (`page_file::meta`), which the last round made durable before this one wrote anything. When
//!    no proof can be written (a commit since the durable one wrote more runs or bytes than a
//!    proof holds, or was written with [`Durability::None`]: `unprovable`), the round writes the
//!    meta of `covered`, the newest commit whose pages a finished sync covered, or, when no commit
//!    past the durable one is covered, syncs the data first and covers the newest. One round runs
//!    at a time (`leader`); a commit that finds a round running waits for it and starts another
//!    only if it is still not durable. So with [`Durability::Group`], every writer that committed
//!    while a round ran shares the next.
//!
//!    Why a proof is enough: a run it names was written at a page free in the durable meta, and a
//!    page the durable meta uses is reused only after a later meta is durable (rule 3), so a crash
//!    before the round's sync leaves the durable meta whole; and the proof names every page the
//!    new meta uses that the durable one does not.
//! 3. `safe` is the newest commit whose freed pages may be reused: the newest synced meta (or,
//!    with [`Durability::None`], the newest written one). A page freed by commit T is reachable from
//!    the meta before T; once the meta for T or later is durable, a crash can never fall back to a
//!    meta that needs it.
//! 4. Any failed sync or meta write poisons the database: the state on disk is unknown to this
//!    process, so it refuses further commits until reopened.
//! 5. The state owns the storage its rounds write to. A round takes the storage and the meta it
//!    writes under the same lock, so it writes a commit's meta into the file that commit's pages
//!    went to. A defrag's swap replaces both at once ([`SyncState::restart`]); a waiter that began
//!    before the swap and leads a round after it writes the new file, never the old one. A round
//!    that was already running on the old file when the swap came finishes there and changes
//!    nothing here: the swap's new file holds its commit durably (see `txn::swap`).
//! 6. A round releases the writers whose commits it made durable, and they commit again at once,
//!    but only after the next round has begun: a round begins the moment the last one ends. Such a
//!    commit then misses the next round's sync and waits three rounds rather than two, so 8
//!    writers shared each sync less than 2 ways. So the next round waits, before it begins, in a
//!    *join window*: until as many commits are recorded as the last round made durable, or a
//!    quarter of the last round's sync time has passed (at most `JOIN_WINDOW_MAX`), whichever
//!    comes first. A lone writer is its own joiner and never waits. The window only delays a
//!    round: nothing is acknowledged before its sync.
//! 7. A defrag's swap hands the new file over to this state before it is synced or named: the
//!    swap's *finish* (sync the new file, rename it over the database, sync the directory) is left
//!    to the first round after it, or to the defrag ([`SyncState::finish_swap`]), so that writers
//!    are not held for two syncs. Until the finish has run, a crash leaves the old file at the
//!    database's path, so only what the old file made durable is durable (`State::is_durable`),
//!    and every round that makes a commit durable runs the finish first while it is owed.
//! 8. A proof cannot tell a commit that never fully reached the disk from one whose page went bad
//!    on disk after it was acknowledged: either way open takes the other slot. So the newest meta
//!    carries a proof only until the database closes: the close writes the same meta without one
//!    into the other slot and syncs ([`SyncState::settle`]), and a page that goes bad after a clean
//!    close is reported as a corruption, as every other page is. Only a crash leaves a proved
//!    meta on disk, and then rolling back its round is what a crash before its sync would do.
//! 9. A writer that is about to commit for many (the store's combined writes, `mvcc::combine`)
//!    first waits until the newest group commit (`grouped`) is durable: its commit could not
//!    share that round anyway, and the writers who come meanwhile commit with it. The newest group
//!    commit's writer waits for it, so a round comes; if none is running, the wait ends after
//!    [`JOIN_WINDOW_MAX`] all the same, and at once if a waiter holds a join window open for
//!    more commits (then this one should be among them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, PageId, Result};
use crate::limits::{JOIN_WINDOW_MAX, JOIN_WINDOW_SYNC_DIVISOR};
use crate::page_file::meta::{self, Meta, Proven};
use crate::page_file::storage::Storage;

/// When a commit's data reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Sync before `commit` returns: one sync per commit; two when a commit since the last
    /// durable one wrote more runs or bytes than a meta's proof names, or used
    /// [`Durability::None`] (see `txn::sync`, rule 2). Survives power loss.
    #[default]
    Immediate,
    /// Sync before `commit` returns, sharing the syncs with every writer that commits meanwhile:
    /// concurrent writers pay for one round between them. Survives power loss. New readers may see
    /// a commit a moment before it is durable.
    Group,
    /// Never sync (the meta is written, not synced). Survives a process crash, not a power loss:
    /// after a power loss the file may be damaged, not merely older, because later commits reuse
    /// pages before anything is synced (as with LMDB's no-sync mode); the damage may also show
    /// as a rollback past commits made durable before, when a proved meta's runs were reused.
    /// For bulk loads that can be redone; [`crate::Db::sync`] makes everything so far durable.
    None,
}

#[derive(Debug)]
struct State {
    /// The file commits go to now.
    storage: Arc<dyn Storage>,
    committed: Meta,
    /// The newest commit whose pages a finished sync made durable (see rule 2).
    covered: Meta,
    /// The slot holding the newest written meta.
    written_slot: PageId,
    synced: u64,
    safe: u64,
    leader: bool,
    poisoned: bool,
    /// Raised by every [`SyncState::restart`]: a round that began under an older one wrote a file
    /// that is no longer the database's, and leaves this state alone.
    generation: u64,
    /// What the last round left for the next one to wait for (rule 6); `None` before the first
    /// round and after a swap.
    join: Option<JoinWindow>,
    /// Whether a waiter is waiting in the join window now.
    joining: bool,
    /// How long the last round's sync took (zero before the first).
    last_sync: Duration,
    /// After a swap, until its finish has run (rule 7).
    owed: Option<Owed>,
    /// The runs a proof of the newest commit names (rule 2), by first page: written since the
    /// newest durable meta by the commit given, and still in use.
    unproven: BTreeMap<PageId, Unproven>,
    /// The newest commit no proof can cover (rule 2): a round proves a meta only once this commit
    /// is durable.
    unprovable: u64,
    /// Whether the newest written meta carries a proof (rule 8).
    written_proved: bool,
    /// The newest commit made with [`Durability::Group`]: its writer will wait for it, so a
    /// round will make it durable (rule 9).
    grouped: u64,
}

/// A run in [`State::unproven`].
#[derive(Clone, Copy, Debug)]
struct Unproven {
    pages: u32,
    crc: u32,
    txid: u64,
}

/// What a commit wrote and what it stopped using, for the proof of the meta that makes it
/// durable (rule 2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Written<'a> {
    /// The runs it wrote, each with its checksum.
    pub runs: &'a [Proven],
    /// The runs it freed: (first page, pages).
    pub freed: &'a [(PageId, u64)],
}

/// The window the next round waits in for the writers the last round released (rule 6).
#[derive(Clone, Copy, Debug)]
struct JoinWindow {
    /// Commits the last round made durable: about as many writers as it released.
    released: u64,
    /// The newest commit recorded when the last round ended.
    committed: u64,
    /// When the window closes: the end of the last round plus a quarter of its sync.
    closes: Instant,
}

impl JoinWindow {
    /// Whether a waiter should hold off the next round a little longer: the window is open and
    /// fewer commits were recorded since it opened than the last round released writers.
    fn open(&self, committed: u64, now: Instant) -> bool {
        committed.saturating_sub(self.committed) < self.released && now < self.closes
    }
}

/// A swap's finish, owed by the state of the file it swapped in (rule 7).
#[derive(Debug)]
struct Owed {
    /// The newest commit the old file made durable: no later one is durable until the finish.
    old_synced: u64,
    /// The database's path, which the new file takes.
    rename_to: PathBuf,
}

/// A swap's finish: the new file synced, renamed over the database, and the rename made durable.
fn finish(storage: &dyn Storage, rename_to: &Path) -> Result<()> {
    storage.sync()?;
    storage.rename(rename_to)?;
    storage.sync_dir()
}

impl State {
    /// `storage`, whose newest meta, `meta`, is durable in `slot`.
    fn durable(storage: Arc<dyn Storage>, meta: Meta, slot: PageId, generation: u64) -> State {
        State {
            generation,
            storage,
            committed: meta,
            covered: meta,
            written_slot: slot,
            synced: meta.txid,
            safe: meta.txid,
            leader: false,
            poisoned: false,
            join: None,
            last_sync: Duration::ZERO,
            joining: false,
            owed: None,
            unproven: BTreeMap::new(),
            unprovable: 0,
            written_proved: false,
            grouped: 0,
        }
    }

    /// Records what commit `txid` wrote and freed (`None`: no proof can cover it).
    fn record(&mut self, txid: u64, page_size: u32, written: Option<Written<'_>>) {
        let page_bytes = u64::from(page_size);
        let Some(w) = written else {
            self.unprovable = txid;
            self.unproven.clear();
            return;
        };
        for &(start, len) in w.freed {
            // A freed range holds whole runs as written: one that began before it or ran past
            // it would stay named by the proof after its pages were freed (and then reused).
            debug_assert!(
                self.unproven
                    .range(..start)
                    .next_back()
                    .is_none_or(|(&p, u)| p + u64::from(u.pages) <= start),
                "freed {start}+{len} cuts a written run"
            );
            debug_assert!(
                self.unproven
                    .range(start..start.saturating_add(len))
                    .all(|(&p, u)| p + u64::from(u.pages) <= start + len),
                "freed {start}+{len} cuts a written run"
            );
            let gone: Vec<PageId> = self
                .unproven
                .range(start..start.saturating_add(len))
                .map(|(&p, _)| p)
                .collect();
            for p in gone {
                self.unproven.remove(&p);
            }
        }
        // At most a proof's capacity of runs: summed at each commit rather than kept.
        let pages: u64 = (self.unproven.values().map(|u| u.pages))
            .chain(w.runs.iter().map(|r| r.pages))
            .map(u64::from)
            .sum();
        if self.unproven.len() + w.runs.len() > meta::proof_capacity(page_size)
            || pages * page_bytes > meta::PROOF_BYTES_MAX
        {
            self.unprovable = txid;
            self.unproven.clear();
            return;
        }
        for r in w.runs {
            let old = self.unproven.insert(
                r.page,
                Unproven {
                    pages: r.pages,
                    crc: r.crc,
                    txid,
                },
            );
            debug_assert!(old.is_none(), "page {} written twice before a sync", r.page);
        }
    }

    /// Forgets the runs of commits up to `txid`, now durable.
    fn proven(&mut self, txid: u64) {
        self.unproven.retain(|_, u| u.txid > txid);
    }

    /// The proof a round writing the newest commit's meta would carry, if one can be written.
    fn proof(&self) -> Option<Vec<Proven>> {
        (self.unprovable <= self.synced).then(|| {
            self.unproven
                .iter()
                .map(|(&page, u)| Proven {
                    page,
                    pages: u.pages,
                    crc: u.crc,
                })
                .collect()
        })
    }

    /// Whether commit `txid` is durable (rules 2 and 7).
    fn is_durable(&self, txid: u64) -> bool {
        txid <= self.synced && self.owed.as_ref().is_none_or(|o| txid <= o.old_synced)
    }
}

/// The coordinator of meta writes and syncs, and the owner of the storage they go to.
pub(crate) struct SyncState {
    state: Mutex<State>,
    round_done: Condvar,
    /// Signalled when a commit is recorded while a waiter holds a join window open (rule 6).
    recorded: Condvar,
    /// Runs once, when a waiter has decided to lead a round and before the round takes its storage
    /// and meta: the one place where another thread's swap can slip in. For interleaving tests.
    #[cfg(test)]
    before_round: Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// How long the join windows of rounds ending from now on stay open, in place of a share of
    /// the sync time (a fake storage's sync takes none): for tests that wait for a joiner.
    #[cfg(test)]
    join_window: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SyncState {
    /// The state of `storage`, whose newest meta, `meta`, is durable in `slot`.
    pub fn new(storage: Arc<dyn Storage>, meta: Meta, slot: PageId) -> SyncState {
        SyncState {
            state: Mutex::new(State::durable(storage, meta, slot, 0)),
            round_done: Condvar::new(),
            recorded: Condvar::new(),
            #[cfg(test)]
            before_round: Mutex::new(None),
            #[cfg(test)]
            join_window: Mutex::new(None),
        }
    }

    /// The storage commits go to now.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.state.lock().storage.clone()
    }

    /// Starts over on `storage`, a new file whose newest meta, `meta`, is written in `slot` (a
    /// defrag's swap), and returns the storage it replaces. Every later round writes the new file.
    /// The old file's commits need not be durable there: `meta` is at least as new as every one
    /// of them and durable in the new file, so a waiter for any of them finds it durable. A round
    /// still running on the old file is not waited for (it would cost the swap two syncs): it
    /// finishes on the old file and leaves the new state alone (see `generation`).
    ///
    /// `storage` is neither synced nor in place yet: it owes the swap's finish (rule 7), which
    /// syncs it and renames it to `rename_to`. Until that has run, only the commits the old file
    /// made durable count as durable.
    pub fn restart(
        &self,
        storage: Arc<dyn Storage>,
        meta: Meta,
        slot: PageId,
        rename_to: PathBuf,
    ) -> Arc<dyn Storage> {
        let mut s = self.state.lock();
        debug_assert!(meta.txid >= s.committed.txid, "the new file is behind");
        debug_assert!(s.owed.is_none(), "a swap before the last one finished");
        let generation = s.generation + 1;
        let mut new = State::durable(storage, meta, slot, generation);
        new.owed = Some(Owed {
            old_synced: s
                .owed
                .as_ref()
                .map_or(s.synced, |o| o.old_synced.min(s.synced)),
            rename_to,
        });
        // A poisoned state stays poisoned: the old file's trouble is not undone by a swap.
        new.poisoned = s.poisoned;
        std::mem::replace(&mut *s, new).storage
    }

    /// Runs a swap's finish if it is still owed (rule 7), as a round of its own: syncs the new
    /// file, renames it over the database and syncs the directory. Makes every commit up to the
    /// swap durable; a failure poisons the database.
    pub fn finish_swap(&self) -> Result<()> {
        let (storage, rename_to, generation) = {
            let mut s = self.state.lock();
            while s.leader {
                self.round_done.wait(&mut s);
            }
            if s.poisoned {
                return Err(Error::Poisoned);
            }
            let Some(owed) = &s.owed else {
                return Ok(());
            };
            let rename_to = owed.rename_to.clone();
            s.leader = true;
            (s.storage.clone(), rename_to, s.generation)
        };
        let result = finish(&*storage, &rename_to);
        let mut s = self.state.lock();
        if s.generation == generation {
            s.leader = false;
            match &result {
                Ok(()) => s.owed = None,
                Err(_) => s.poisoned = true,
            }
        }
        self.round_done.notify_all();
        result
    }

    /// The newest committed meta and the slot holding the newest written meta, once no round runs.
    pub fn written(&self) -> (Meta, PageId) {
        let mut s = self.state.lock();
        while s.leader {
            self.round_done.wait(&mut s);
        }
        (s.committed, s.written_slot)
    }

    /// Records that the caller has taken over syncing the storage after the newest commit's meta
    /// was written (with [`Durability::None`]): a defrag's new file, whose sync is the swap's
    /// finish (rule 7). Nothing is left for this state to sync.
    pub fn synced_by_caller(&self) {
        let mut s = self.state.lock();
        debug_assert!(!s.leader && !s.poisoned);
        s.covered = s.committed;
        s.synced = s.committed.txid;
        s.safe = s.committed.txid;
        let txid = s.committed.txid;
        s.proven(txid);
    }

    /// Records that the durable meta this state starts from carries a proof (a crash left it).
    pub fn opened_proved(&self) {
        self.state.lock().written_proved = true;
    }

    /// At close, once every commit is durable: if the newest meta carries a proof, writes the
    /// same meta without one into the other slot and syncs (rule 8). A failure poisons, and
    /// leaves the proved meta, which is whole.
    pub fn settle(&self) -> Result<()> {
        let (storage, meta, slot, generation) = {
            let mut s = self.state.lock();
            while s.leader {
                self.round_done.wait(&mut s);
            }
            if s.poisoned {
                return Err(Error::Poisoned);
            }
            if !s.written_proved || s.owed.is_some() || !s.is_durable(s.committed.txid) {
                return Ok(());
            }
            s.leader = true;
            (
                s.storage.clone(),
                s.committed,
                1 - s.written_slot,
                s.generation,
            )
        };
        let result = storage
            .write_at(&meta.encode(slot), slot * meta.page_size as u64)
            .and_then(|()| storage.sync());
        let mut s = self.state.lock();
        if s.generation == generation {
            s.leader = false;
            match &result {
                Ok(()) => {
                    s.written_slot = slot;
                    s.written_proved = false;
                }
                Err(_) => s.poisoned = true,
            }
        }
        self.round_done.notify_all();
        result
    }

    /// Refuses every later commit until a reopen: the state on disk is unknown to this process.
    pub fn poison(&self) {
        self.state.lock().poisoned = true;
    }

    pub fn check_poisoned(&self) -> Result<()> {
        if self.state.lock().poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// The newest commit whose freed pages may be reused.
    pub fn safe(&self) -> u64 {
        self.state.lock().safe
    }

    /// Records a commit whose pages are written, with what it wrote and freed (`None` when no
    /// proof can cover it: rule 2), and whether it was made with [`Durability::Group`] (its
    /// writer will wait for it: rule 9).
    pub fn set_committed(&self, meta: Meta, written: Option<Written<'_>>, grouped: bool) {
        let mut s = self.state.lock();
        debug_assert!(meta.txid > s.committed.txid);
        s.record(meta.txid, meta.page_size, written);
        if grouped {
            s.grouped = meta.txid;
        }
        s.committed = meta;
        if s.join.is_some() {
            self.recorded.notify_all();
        }
    }

    /// The newest commit whose pages are written.
    pub fn committed_txid(&self) -> u64 {
        self.state.lock().committed.txid
    }

    /// Whether a commit is newer than the last synced meta.
    pub fn unsynced(&self) -> bool {
        let s = self.state.lock();
        !s.poisoned && !s.is_durable(s.committed.txid)
    }

    /// Writes the meta of the newest commit without syncing ([`Durability::None`]).
    pub fn write_meta_unsynced(&self) -> Result<()> {
        self.lead(false).map(|_| ())
    }

    /// Waits until the newest group commit is durable (rule 9): while a round runs; for at most
    /// [`JOIN_WINDOW_MAX`] while none does; not at all while a waiter holds a join window open.
    ///
    /// Returns whether it ended because a waiter holds a join window open for more commits
    /// (rule 6): then the caller should commit at once, to be in the coming round.
    pub fn wait_for_round(&self) -> bool {
        let mut s = self.state.lock();
        let target = s.grouped;
        let idle_until = Instant::now() + JOIN_WINDOW_MAX;
        // A waiter holding a join window open (rule 6) waits for commits: this one among them.
        while !s.poisoned && !s.is_durable(target) && !s.joining {
            if s.leader {
                self.round_done.wait(&mut s);
            } else if self.round_done.wait_until(&mut s, idle_until).timed_out() && !s.leader {
                break;
            }
        }
        s.joining && !s.poisoned
    }

    /// How long the last round's sync took (zero before the first round).
    pub fn last_sync(&self) -> Duration {
        self.state.lock().last_sync
    }

    /// Runs rounds until `txid` is durable.
    pub fn wait_synced(&self, txid: u64) -> Result<()> {
        loop {
            {
                let mut s = self.state.lock();
                while s.leader {
                    self.round_done.wait(&mut s);
                }
                if s.poisoned {
                    return Err(Error::Poisoned);
                }
                if s.is_durable(txid) {
                    return Ok(());
                }
                if s.synced >= txid {
                    // Only a swap's finish is missing (rule 7).
                    drop(s);
                    self.finish_swap()?;
                    continue;
                }
                // Rule 6: give the writers the last round released a moment to join this one.
                while let Some(join) = s.join
                    && !s.leader
                    && join.open(s.committed.txid, Instant::now())
                {
                    if !s.joining {
                        // A combining writer waiting for this round commits now (rule 9).
                        self.round_done.notify_all();
                    }
                    s.joining = true;
                    self.recorded.wait_until(&mut s, join.closes);
                    s.joining = false;
                }
                if s.leader || s.synced >= txid {
                    continue;
                }
            }
            #[cfg(test)]
            {
                let hook = self.before_round.lock().take();
                if let Some(mut hook) = hook {
                    hook();
                }
            }
            self.lead(true)?;
        }
    }

    /// One round: waits for any running round, then writes (and with `sync`, makes durable) a
    /// commit's meta into the current storage: with `sync`, the newest commit with its proof, or
    /// without one the newest covered commit (rule 2); else the newest committed. Returns the
    /// txid written.
    fn lead(&self, sync: bool) -> Result<u64> {
        let (storage, proof, covered, committed, slot, generation, owed) = {
            let mut s = self.state.lock();
            while s.leader {
                self.round_done.wait(&mut s);
            }
            if s.poisoned {
                return Err(Error::Poisoned);
            }
            s.leader = true;
            let proof = if sync { s.proof() } else { None };
            let covered =
                (sync && proof.is_none() && s.covered.txid > s.synced).then_some(s.covered);
            (
                s.storage.clone(),
                proof,
                covered,
                s.committed,
                1 - s.written_slot,
                s.generation,
                s.owed
                    .as_ref()
                    .filter(|_| sync)
                    .map(|o| o.rename_to.clone()),
            )
        };
        let meta = covered.unwrap_or(committed);
        let result = (|| {
            if let Some(rename_to) = &owed {
                // Rule 7: a swap's finish first.
                finish(&*storage, rename_to)?;
            }
            if sync && proof.is_none() && covered.is_none() {
                storage.sync()?;
            }
            let page = meta.encode_proven(slot, proof.as_deref().unwrap_or_default());
            storage.write_at(&page, slot * meta.page_size as u64)?;
            if !sync {
                return Ok(None);
            }
            // Every commit recorded by now has written its pages: the sync covers them.
            let covers = {
                let s = self.state.lock();
                (s.generation == generation).then_some(s.committed)
            };
            let started = Instant::now();
            storage.sync()?;
            Ok(covers.map(|c| (c, started.elapsed())))
        })();
        let mut s = self.state.lock();
        if s.generation != generation {
            // A swap replaced the file under this round. The new file holds this round's commit,
            // durably: the round's outcome on the old file no longer matters.
            self.round_done.notify_all();
            return Ok(meta.txid);
        }
        s.leader = false;
        let result = match result {
            Ok(covers) => {
                if owed.is_some() {
                    s.owed = None;
                }
                s.written_slot = slot;
                s.written_proved = proof.as_ref().is_some_and(|p| !p.is_empty());
                s.safe = s.safe.max(meta.txid);
                if sync {
                    let released = meta.txid.saturating_sub(s.synced);
                    s.synced = s.synced.max(meta.txid);
                    s.proven(meta.txid);
                    let (covers, took) = covers.unwrap_or((meta, Duration::ZERO));
                    if covers.txid > s.covered.txid {
                        s.covered = covers;
                    }
                    s.last_sync = took;
                    let window = (took / JOIN_WINDOW_SYNC_DIVISOR).min(JOIN_WINDOW_MAX);
                    #[cfg(test)]
                    let window = self.join_window.lock().unwrap_or(window);
                    s.join = Some(JoinWindow {
                        released,
                        committed: s.committed.txid,
                        closes: Instant::now() + window,
                    });
                }
                Ok(meta.txid)
            }
            Err(e) => {
                s.poisoned = true;
                Err(e)
            }
        };
        self.round_done.notify_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use memmap2::Mmap;

    use super::*;

    type Hook = Mutex<Option<Box<dyn FnOnce() + Send>>>;

    /// A storage that only logs the calls a round makes, by file name, and may run a hook (once)
    /// in the middle of its first sync.
    struct Logged {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        on_sync: Hook,
        /// Whether its directory sync fails.
        dir_fails: bool,
    }

    impl std::fmt::Debug for Logged {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.name)
        }
    }

    impl Logged {
        fn new(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Logged {
            Logged {
                name,
                log: log.clone(),
                on_sync: Mutex::new(None),
                dir_fails: false,
            }
        }

        fn record(&self, call: String) -> Result<()> {
            self.log.lock().push(format!("{} {call}", self.name));
            Ok(())
        }
    }

    impl Storage for Logged {
        fn len(&self) -> Result<u64> {
            Ok(2 * 4096)
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> Result<()> {
            unimplemented!("a sync round never reads")
        }
        fn write_at(&self, _: &[u8], offset: u64) -> Result<()> {
            self.record(format!("write@{offset}"))
        }
        fn set_len(&self, _: u64) -> Result<()> {
            unimplemented!("a sync round never resizes")
        }
        fn sync(&self) -> Result<()> {
            let hook = self.on_sync.lock().take();
            if let Some(hook) = hook {
                hook();
            }
            self.record("sync".into())
        }
        fn map(&self) -> Result<Mmap> {
            unimplemented!("a sync round never maps")
        }
        fn path(&self) -> PathBuf {
            PathBuf::from(self.name)
        }
        fn create_sibling(&self, _: &Path) -> Result<Box<dyn Storage>> {
            unimplemented!()
        }
        fn rename(&self, _: &Path) -> Result<()> {
            self.record("rename".into())
        }
        fn remove_sibling(&self, _: &Path) -> Result<()> {
            unimplemented!()
        }
        fn sync_dir(&self) -> Result<()> {
            if self.dir_fails {
                self.record("sync_dir failed".into())?;
                return Err(Error::Io(std::io::Error::other("the directory sync fails")));
            }
            self.record("sync_dir".into())
        }
    }

    /// What a storage logs for a swap's finish on the new file and then one round there.
    const FINISH_THEN_ROUND: [&str; 6] = [
        "new sync",
        "new rename",
        "new sync_dir",
        "new sync",
        "new write@0",
        "new sync",
    ];

    fn meta(txid: u64) -> Meta {
        Meta {
            page_size: 4096,
            txid,
            catalog_root: 0,
            catalog_len: 0,
            freelist: 0,
            page_count: 2,
        }
    }

    /// What broke: a group-commit waiter took the old file's storage before it waited. A defrag
    /// could swap files while the waiter was between deciding to lead a round and leading it; the
    /// waiter then synced the old, unlinked file, wrote the next commit's meta into it, and marked
    /// that commit (made on the new file) durable, though nothing of the new file was synced.
    #[test]
    fn a_round_led_after_a_swap_syncs_the_new_file_and_never_the_old() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let old: Arc<dyn Storage> = Arc::new(Logged::new("old", &log));
        let new: Arc<dyn Storage> = Arc::new(Logged::new("new", &log));
        let sync = Arc::new(SyncState::new(old, meta(1), 1));
        // Writer A's group commit 2, on the old file, not durable yet.
        sync.set_committed(meta(2), None, false);
        // A decides to lead a round; before the round starts, a defrag runs to its swap (it makes
        // everything durable on the old file, then restarts on the new one) and writer B commits
        // 3 on the new file.
        let (defrag, new_file) = (sync.clone(), new.clone());
        *sync.before_round.lock() = Some(Box::new(move || {
            defrag.wait_synced(2).expect("the defrag's round");
            defrag.restart(new_file.clone(), meta(2), 1, "db".into());
            defrag.set_committed(meta(3), None, false);
        }));
        sync.wait_synced(2).expect("A's wait");

        let log = log.lock().clone();
        let swap = log
            .iter()
            .position(|c| c.starts_with("new"))
            .expect("the round after the swap wrote the new file");
        assert_eq!(
            log[..swap],
            ["old sync", "old write@0", "old sync"],
            "before the swap: the defrag's round on the old file"
        );
        assert_eq!(
            log[swap..],
            FINISH_THEN_ROUND,
            "after the swap: A's round runs the swap's finish, then makes commit 3 durable in \
             the new file, and only there"
        );
        // B's commit is durable: its wait returns without another round.
        sync.wait_synced(3).expect("B's wait");
        assert_eq!(sync.state.lock().synced, 3);
    }

    /// What broke: every round synced the data, wrote the meta and synced again, though the sync
    /// that ends a round already covers the pages of every commit recorded while the round ran.
    /// With writers committing all the time, each round paid two syncs where one would do. The
    /// next round now writes such a commit's meta and syncs once.
    #[test]
    fn a_commit_recorded_while_a_round_ran_is_made_durable_by_the_next_with_one_sync() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let storage = Arc::new(Logged::new("db", &log));
        let sync = Arc::new(SyncState::new(storage.clone(), meta(1), 1));
        sync.set_committed(meta(2), None, false);
        // Commit 3 writes its pages and is recorded while the round for commit 2 syncs its data.
        let writer = sync.clone();
        *storage.on_sync.lock() =
            Some(Box::new(move || writer.set_committed(meta(3), None, false)));
        sync.wait_synced(2).expect("the round for commit 2");
        sync.wait_synced(3).expect("the round for commit 3");
        assert_eq!(
            log.lock().clone(),
            [
                "db sync",
                "db write@0",
                "db sync",
                "db write@4096",
                "db sync"
            ],
            "the second round's meta needs no sync before it"
        );
        assert_eq!(sync.written(), (meta(3), 1));
    }

    /// What broke: a round began the moment the one before it ended, before the writers that
    /// round released could commit again, so their next commits missed its sync and each waited
    /// three rounds instead of two (8 threads of durable puts shared a sync only 1.7 ways; the
    /// lone writer's 2 syncs per put made that 3.4x fewer syncs, not the 4x and more wanted).
    /// The round now waits in a join window for as many commits as the last round released.
    /// Here writer A's commit 2 is made durable while B's commit 3 is recorded; B's round must
    /// wait for A's next commit, 4, so that its sync covers 4 and one more round (one sync) makes
    /// 4 durable: 2 syncs for both, where starting at once took 3.
    #[test]
    fn a_round_waits_for_the_writer_the_last_round_released_so_its_sync_covers_its_next_commit() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let storage = Arc::new(Logged::new("db", &log));
        let sync = Arc::new(SyncState::new(storage.clone(), meta(1), 1));
        // Long enough never to close on a loaded machine: the test waits for the commit instead.
        *sync.join_window.lock() = Some(Duration::from_secs(600));
        sync.set_committed(meta(2), None, false);
        // B's commit 3 is recorded while A's round syncs its data.
        let b = sync.clone();
        *storage.on_sync.lock() = Some(Box::new(move || b.set_committed(meta(3), None, false)));
        sync.wait_synced(2).expect("A's round for commit 2");
        let b = sync.clone();
        let b = std::thread::spawn(move || b.wait_synced(3).expect("B's wait"));
        // A, released, commits again once B waits in the window (or, were there no window, has
        // run its round without A's commit).
        while {
            let s = sync.state.lock();
            !s.joining && s.synced < 3
        } {
            std::thread::yield_now();
        }
        // Nobody joins after B's round: A's own wait must not hold a long window open.
        *sync.join_window.lock() = Some(Duration::ZERO);
        sync.set_committed(meta(4), None, false);
        b.join().expect("B");
        sync.wait_synced(4).expect("A's wait for commit 4");
        assert_eq!(
            log.lock().clone(),
            [
                "db sync",
                "db write@0",
                "db sync",
                "db write@4096",
                "db sync",
                "db write@0",
                "db sync"
            ],
            "B's round writes the meta of 3 and its sync covers 4; the next writes 4's meta"
        );
    }

    /// What broke: a swap waited for a round running on the old file (two syncs of a file about
    /// to be dropped, with every writer held). It no longer waits; the round must then finish on
    /// the old file without touching the new state: had it recorded the slot it wrote in the old
    /// file, the next round would overwrite the new file's only durable meta.
    #[test]
    fn a_round_running_on_the_old_file_during_a_swap_leaves_the_new_state_alone() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let old = Arc::new(Logged::new("old", &log));
        let new: Arc<dyn Storage> = Arc::new(Logged::new("new", &log));
        let sync = Arc::new(SyncState::new(old.clone(), meta(1), 1));
        sync.set_committed(meta(2), None, false);
        // In the middle of the round that makes commit 2 durable in the old file, a defrag swaps
        // in a new file holding commit 2 durably in slot 1, and a writer commits 3 there.
        let swap = sync.clone();
        *old.on_sync.lock() = Some(Box::new(move || {
            swap.restart(new, meta(2), 1, "db".into());
            swap.set_committed(meta(3), None, false);
        }));
        drop(old);
        sync.wait_synced(2).expect("the round on the old file");
        assert_eq!(sync.written(), (meta(3), 1), "the new state is untouched");
        sync.wait_synced(3).expect("a round on the new file");
        let log = log.lock().clone();
        assert_eq!(
            log,
            [
                &["old sync", "old write@0", "old sync"][..],
                &FINISH_THEN_ROUND
            ]
            .concat(),
            "the swap's finish runs, then the round after the swap writes the new file's other \
             slot"
        );
    }

    /// What it guards: a defrag's swap no longer syncs and renames the new file with writers
    /// held; that finish is left to the first round after it (or the defrag). Until then a crash
    /// leaves the old file in place, so a commit the old file had not synced, or one made on the
    /// new file, must not count as durable.
    #[test]
    fn after_a_swap_only_what_the_old_file_synced_is_durable_until_the_swap_is_finished() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let old: Arc<dyn Storage> = Arc::new(Logged::new("old", &log));
        let new: Arc<dyn Storage> = Arc::new(Logged::new("new", &log));
        let sync = SyncState::new(old, meta(1), 1);
        // Commit 2 is written to the old file, not synced there; the swap's new file holds it.
        sync.set_committed(meta(2), None, false);
        sync.restart(new, meta(2), 1, "db".into());
        assert!(sync.state.lock().is_durable(1));
        assert!(
            !sync.state.lock().is_durable(2),
            "2 is durable only once the rename is"
        );
        assert!(sync.unsynced());
        sync.set_committed(meta(3), None, false);
        sync.wait_synced(2).expect("the swap's finish");
        assert!(sync.state.lock().is_durable(2));
        assert!(!sync.state.lock().is_durable(3));
        sync.wait_synced(3).expect("a round for commit 3");
        assert_eq!(
            log.lock().clone(),
            FINISH_THEN_ROUND,
            "the wait for 2 runs the finish alone; the round for 3 does not run it again"
        );
        assert!(!sync.unsynced());
        sync.finish_swap().expect("nothing owed: nothing done");
        assert_eq!(log.lock().len(), 6);

        // A finish that fails poisons: nothing after the swap is ever acknowledged.
        let log = Arc::new(Mutex::new(Vec::new()));
        let old: Arc<dyn Storage> = Arc::new(Logged::new("old", &log));
        let mut failing = Logged::new("new", &log);
        failing.dir_fails = true;
        let sync = SyncState::new(old, meta(1), 1);
        sync.restart(Arc::new(failing), meta(1), 1, "db".into());
        sync.set_committed(meta(2), None, false);
        assert!(matches!(sync.wait_synced(2), Err(Error::Io(_))));
        assert!(matches!(sync.wait_synced(2), Err(Error::Poisoned)));
        assert!(matches!(sync.finish_swap(), Err(Error::Poisoned)));
        assert!(!sync.state.lock().is_durable(2));
        assert_eq!(
            log.lock().clone(),
            ["new sync", "new rename", "new sync_dir failed"]
        );
    }
}
