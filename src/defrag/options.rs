//! What a defrag is asked to do, what it tells while it runs, and what it reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{
    DEFRAG_FILL_DEFAULT, DEFRAG_FILL_MIN, DEFRAG_PACE_DEFAULT, DEFRAG_PAUSE_BUDGET_DEFAULT,
    DEFRAG_ROUNDS_DEFAULT,
};

/// A defrag's progress: source pages copied so far, of those the snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragProgress {
    /// Pages of the source (tree pages and overflow runs) copied so far.
    pub pages_done: u64,
    /// Pages of the source to copy in all.
    pub pages_total: u64,
}

/// One catch-up round of an online defrag: what it copied into the new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragRound {
    /// Entries put or deleted in the new file (a created or deleted tree counts as one).
    pub entries: u64,
    /// Bytes of keys and values put.
    pub bytes: u64,
    /// From the snapshot it began with to its last commit in the new file, less
    /// [`DefragRound::write_back`]: what the round would cost with writers held.
    pub duration: Duration,
    /// Whether it ran with writers held: the last round, before the swap.
    pub last: bool,
    /// Commits it was applied in: one with writers held or unpaced, else one per piece of its
    /// pages written back (about 1 MiB each; see [`DefragOptions::pace`]).
    pub commits: u32,
    /// How long it spent writing its commits back to the disk (syncing the new file after each)
    /// and waiting for the pace between them; zero for the last round, which syncs nothing.
    pub write_back: Duration,
}

type ProgressFn = Arc<dyn Fn(DefragProgress) + Send + Sync>;
type RoundFn = Arc<dyn Fn(&DefragRound) + Send + Sync>;

/// Options for [`crate::defrag`], [`crate::Db::defrag`] and [`crate::Store::defrag`].
#[derive(Clone)]
pub struct DefragOptions {
    pub(crate) fill: f64,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) on_round: Option<RoundFn>,
    pub(crate) warm_cache: bool,
    pub(crate) pause_budget: Duration,
    pub(crate) rounds_max: u32,
    pub(crate) give_up: bool,
    pub(crate) pace: Option<u64>,
}

impl Default for DefragOptions {
    fn default() -> Self {
        DefragOptions {
            fill: DEFRAG_FILL_DEFAULT,
            progress: None,
            on_round: None,
            warm_cache: true,
            pause_budget: DEFRAG_PAUSE_BUDGET_DEFAULT,
            rounds_max: DEFRAG_ROUNDS_DEFAULT,
            give_up: false,
            pace: Some(DEFRAG_PACE_DEFAULT),
        }
    }
}

impl fmt::Debug for DefragOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefragOptions")
            .field("fill", &self.fill)
            .field("progress", &self.progress.is_some())
            .field("on_round", &self.on_round.is_some())
            .field("warm_cache", &self.warm_cache)
            .field("pause_budget", &self.pause_budget)
            .field("rounds_max", &self.rounds_max)
            .field("give_up", &self.give_up)
            .field("pace", &self.pace)
            .finish()
    }
}

impl DefragOptions {
    /// How full to pack leaf and branch pages, from 0.5 to 1.0 (the default). Lower leaves room
    /// for later inserts to land without splitting.
    pub fn fill(mut self, fill: f64) -> Self {
        self.fill = fill;
        self
    }

    /// Calls `f` as the copy goes on (every 2,048 source pages, and once at the end). It runs on
    /// the defragging thread while the copy runs, with no lock held; it should return quickly,
    /// since the copy waits for it.
    pub fn progress(mut self, f: impl Fn(DefragProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Calls `f` after each catch-up round, on the defragging thread. After every round but the
    /// last no lock is held, and `f` may write to the database (the next round copies it); after
    /// the last one writers are held and have been since the round began: `f` must not write
    /// then (see [`DefragRound::last`]).
    pub fn on_round(mut self, f: impl Fn(&DefragRound) + Send + Sync + 'static) -> Self {
        self.on_round = Some(Arc::new(f));
        self
    }

    /// How long the last catch-up round, the one that holds writers, may be expected to take
    /// (default 5 ms). A round that took as long or longer is followed by another without
    /// holding writers, while the rounds shrink and up to [`DefragOptions::rounds_max`]; zero
    /// always runs them all. The writers' pause is
    /// this plus the syncs and the rename.
    pub fn pause_budget(mut self, budget: Duration) -> Self {
        self.pause_budget = budget;
        self
    }

    /// The most catch-up rounds run without holding writers (default 16; at least 1). After
    /// them the defrag holds writers for the last round whatever it costs, or, with
    /// [`DefragOptions::give_up`], fails with [`crate::Error::DefragBehind`].
    pub fn rounds_max(mut self, rounds: u32) -> Self {
        self.rounds_max = rounds.max(1);
        self
    }

    /// Whether to fail rather than hold writers for longer than the pause budget when the rounds
    /// did not get within it (default: no, finish anyway). The database is then as it was.
    pub fn give_up(mut self, give_up: bool) -> Self {
        self.give_up = give_up;
        self
    }

    pub(crate) fn round(&self, round: &DefragRound) {
        if let Some(f) = &self.on_round {
            f(round);
        }
    }

    /// Whether to read the new file into the page cache before the swap (the default: yes, when
    /// it fits in half of the available memory). Readers and writers are not held up by it: it
    /// runs between the copy and the catch-up rounds. The defrag writes its file around the
    /// cache, at the disk's speed and without taking page-cache memory; without this, the first
    /// read of each page after the swap comes from the disk.
    pub fn warm_cache(mut self, warm: bool) -> Self {
        self.warm_cache = warm;
        self
    }

    /// Spreads the defrag's own disk traffic (writing the new file, reading it into the cache,
    /// reading the old one ahead from a cold cache, writing the catch-up rounds back) to at most
    /// `bytes_per_second` while writers are committing, in requests of at most 1 MiB (a catch-up
    /// round: commits of about 1 MiB of pages, each followed by a sync of the new file); or lets
    /// it go as fast as the disk does (`None`). The default is
    /// [`crate::limits::DEFRAG_PACE_DEFAULT`] (64 MiB/s).
    ///
    /// Commits that go on during an online defrag share the disk with it: unpaced, each
    /// commit's sync waits behind the defrag's queued requests, and on this project's test
    /// machine the longest put went from 90 ms to 390 ms and the write rate fell to 30%. Paced,
    /// their latency stays near what it is without a defrag; the writers' pause does not change.
    /// The pace holds only while writers write (a commit, or a write transaction open, in the
    /// last [`crate::limits::DEFRAG_PACE_IDLE`]): a defrag with no writer beside it, such as an
    /// offline one, goes at the disk's speed.
    pub fn pace(mut self, bytes_per_second: Option<u64>) -> Self {
        self.pace = bytes_per_second;
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let fill = self.fill;
        if !(DEFRAG_FILL_MIN..=1.0).contains(&fill) {
            return Err(crate::Error::InvalidOption(format!(
                "defrag fill {fill} must be from {DEFRAG_FILL_MIN} to 1.0"
            )));
        }
        if self.pace == Some(0) {
            return Err(crate::Error::InvalidOption(
                "a defrag pace of 0 bytes per second would never finish".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn report(&self, progress: DefragProgress) {
        if let Some(f) = &self.progress {
            f(progress);
        }
    }
}

/// What a defrag did.
#[derive(Clone, Debug, PartialEq)]
pub struct DefragReport {
    /// The file's length before, in bytes.
    pub size_before: u64,
    /// The file's length after, in bytes: exactly its pages, with none free.
    pub size_after: u64,
    /// Bytes of the pages that were live in the source: metas, tree pages, overflow runs and the
    /// freelist (what a copy that kept the source's layout would have to write).
    pub live_bytes: u64,
    /// Pages written to the new file by the bulk copy, metas included.
    pub pages_written: u64,
    /// From the start to the swap made durable: the copy, every catch-up round, the swap and
    /// its finish.
    pub duration: Duration,
    /// How long writers were held: the last catch-up round and the swap, in memory. (The sync of
    /// the new file, its rename and the directory sync follow with writers free; they hold only
    /// the acknowledgement of the commits made meanwhile: see `finish`.)
    pub pause: Duration,
    /// From the writers' release to the new file's being durably in place (synced, renamed over
    /// the database, the rename synced). Writers commit meanwhile, but none of those commits is
    /// acknowledged before it ends, so a put in flight across the swap can take this long more.
    pub finish: Duration,
    /// The catch-up rounds, in order; the last one ran with writers held.
    pub rounds: Vec<DefragRound>,
    /// How long reading the new file into the page cache took, before the swap, with readers and
    /// writers going on; `None` when it was not done (see [`DefragOptions::warm_cache`]).
    pub warm: Option<Duration>,
}

impl DefragReport {
    /// Bytes written to the new file.
    pub fn bytes_written(&self) -> u64 {
        self.size_after
    }

    /// Entries and bytes the catch-up rounds copied, in all.
    pub fn caught_up(&self) -> (u64, u64) {
        self.rounds
            .iter()
            .fold((0, 0), |(e, b), r| (e + r.entries, b + r.bytes))
    }

    /// Seconds per GB (10^9 bytes) written: the figure to compare with a plain copy.
    pub fn seconds_per_gb(&self) -> f64 {
        let gb = self.bytes_written() as f64 / 1e9;
        if gb == 0.0 {
            0.0
        } else {
            self.duration.as_secs_f64() / gb
        }
    }
}

impl fmt::Display for DefragReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → {} bytes ({} live in the source), {} pages written in {:.3} s ({:.2} s/GB)",
            self.size_before,
            self.size_after,
            self.live_bytes,
            self.pages_written,
            self.duration.as_secs_f64(),
            self.seconds_per_gb()
        )?;
        let (entries, bytes) = self.caught_up();
        write!(
            f,
            "; writers held {:.1} ms, then the swap made durable in {:.1} ms; {} catch-up round{} copied {entries} entries ({bytes} bytes)",
            self.pause.as_secs_f64() * 1e3,
            self.finish.as_secs_f64() * 1e3,
            self.rounds.len(),
            if self.rounds.len() == 1 { "" } else { "s" },
        )?;
        if let Some(warm) = self.warm {
            write!(f, "; page cache warmed in {:.3} s", warm.as_secs_f64())?;
        }
        Ok(())
    }
}
