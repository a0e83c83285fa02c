//! A file storage whose writes and syncs are counted, for the examples that report them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use folio::storage::{FileStorage, Storage};

/// What the file was asked to do.
#[derive(Debug, Default)]
pub struct Counts {
    /// Write calls.
    pub writes: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Syncs.
    pub syncs: AtomicU64,
    /// Nanoseconds spent in syncs.
    pub sync_nanos: AtomicU64,
    /// Writes to the first two pages (the meta slots, with 4 KiB pages): one per commit made
    /// durable by a round of its own, or per group-commit round.
    pub metas: AtomicU64,
}

/// The file, with its writes and syncs counted.
#[derive(Debug)]
pub struct Counted {
    /// The file.
    pub file: FileStorage,
    /// What it was asked to do, shared with whoever reads the counts.
    pub counts: Arc<Counts>,
}

impl Storage for Counted {
    fn len(&self) -> folio::Result<u64> {
        self.file.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> folio::Result<()> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> folio::Result<()> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        self.counts
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if offset < 2 * 4096 {
            self.counts.metas.fetch_add(1, Ordering::Relaxed);
        }
        self.file.write_at(data, offset)
    }
    fn set_len(&self, len: u64) -> folio::Result<()> {
        self.file.set_len(len)
    }
    fn sync(&self) -> folio::Result<()> {
        self.counts.syncs.fetch_add(1, Ordering::Relaxed);
        let start = std::time::Instant::now();
        let result = self.file.sync();
        self.counts
            .sync_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }
    fn map(&self) -> folio::Result<memmap2::Mmap> {
        self.file.map()
    }
    fn path(&self) -> PathBuf {
        self.file.path()
    }
    fn create_sibling(&self, path: &Path) -> folio::Result<Box<dyn Storage>> {
        self.file.create_sibling(path)
    }
    fn rename(&self, to: &Path) -> folio::Result<()> {
        self.file.rename(to)
    }
    fn remove_sibling(&self, path: &Path) -> folio::Result<()> {
        self.file.remove_sibling(path)
    }
    fn sync_dir(&self) -> folio::Result<()> {
        self.file.sync_dir()
    }
}
