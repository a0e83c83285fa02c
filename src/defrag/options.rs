//! What a defrag is asked to do, what it tells while it runs, and what it reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{DEFRAG_FILL_DEFAULT, DEFRAG_FILL_MIN};

/// A defrag's progress: source pages copied so far, of those the snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragProgress {
    /// Pages of the source (tree pages and overflow runs) copied so far.
    pub pages_done: u64,
    /// Pages of the source to copy in all.
    pub pages_total: u64,
}

type ProgressFn = Arc<dyn Fn(DefragProgress) + Send + Sync>;

/// Options for [`crate::defrag`], [`crate::Db::defrag`] and [`crate::Store::defrag`].
#[derive(Clone)]
pub struct DefragOptions {
    pub(crate) fill: f64,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) warm_cache: bool,
}

impl Default for DefragOptions {
    fn default() -> Self {
        DefragOptions {
            fill: DEFRAG_FILL_DEFAULT,
            progress: None,
            warm_cache: true,
        }
    }
}

impl fmt::Debug for DefragOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefragOptions")
            .field("fill", &self.fill)
            .field("progress", &self.progress.is_some())
            .field("warm_cache", &self.warm_cache)
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
    /// the defragging thread while the write lock is held: it must not begin a write transaction.
    pub fn progress(mut self, f: impl Fn(DefragProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Whether to read the new file into the page cache after the swap, before returning (the
    /// default: yes, when it fits in half of the available memory). Readers and writers are not
    /// held up by it: the write lock is released first. The defrag writes its file around the
    /// cache, at the disk's speed and without taking page-cache memory while writers wait; without
    /// this, the first read of each page after it comes from the disk.
    pub fn warm_cache(mut self, warm: bool) -> Self {
        self.warm_cache = warm;
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let fill = self.fill;
        if !(DEFRAG_FILL_MIN..=1.0).contains(&fill) {
            return Err(crate::Error::InvalidOption(format!(
                "defrag fill {fill} must be from {DEFRAG_FILL_MIN} to 1.0"
            )));
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
    /// Pages written to the new file, metas included.
    pub pages_written: u64,
    /// From taking the write lock to the swap: how long writers waited.
    pub duration: Duration,
    /// How long reading the new file into the page cache took after the swap, with readers and
    /// writers already going on; `None` when it was not done (see
    /// [`DefragOptions::warm_cache`]).
    pub warm: Option<Duration>,
}

impl DefragReport {
    /// Bytes written to the new file.
    pub fn bytes_written(&self) -> u64 {
        self.size_after
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
        if let Some(warm) = self.warm {
            write!(f, "; page cache warmed in {:.3} s", warm.as_secs_f64())?;
        }
        Ok(())
    }
}
