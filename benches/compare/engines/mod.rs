//! The engines under comparison, each behind [`Engine`] so that every workload is written once.
//!
//! All three commit durably (data synced before `commit` returns) and read through a memory map
//! (folio, LMDB) or their own cache (redb), with default settings otherwise.

mod folio_engine;
mod lmdb_engine;
mod redb_engine;

use std::path::{Path, PathBuf};

pub use folio_engine::FolioEngine;
pub use lmdb_engine::LmdbEngine;
pub use redb_engine::RedbEngine;

use crate::Result;
use crate::data::Change;

/// What a scan read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub entries: u64,
    /// Key and value bytes.
    pub bytes: u64,
}

impl std::ops::AddAssign for Scanned {
    fn add_assign(&mut self, other: Scanned) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

/// What the workloads need from an engine.
pub trait Engine: Sized + Sync {
    /// The engine's name in tables.
    const NAME: &'static str;

    /// The file that holds the data in `dir`: what compaction rewrites and the plain copy copies.
    fn file(dir: &Path) -> PathBuf;

    /// Opens the database in `dir`, creating an empty one if there is none, with durable commits.
    fn open(dir: &Path) -> Result<Self>;

    /// Applies `changes` in one write transaction, durable when this returns.
    fn commit(&mut self, changes: &[Change]) -> Result<()>;

    /// Looks up each key, all in one read transaction; returns the bytes of the values found.
    fn get<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<u64>;

    /// From each start key, reads up to `len` entries in key order, all in one read transaction.
    fn scan<'k>(&self, starts: impl Iterator<Item = &'k [u8]>, len: usize) -> Result<Scanned>;
}

/// An engine's own way to turn a fragmented file into a compact one.
pub trait Compact: Engine {
    /// What the way is called, in tables.
    const COMPACTION: &'static str;

    /// Rewrites the database into a compact file, durably, leaving it at [`Engine::file`];
    /// returns the engine open on it.
    fn compact(self) -> Result<Self>;
}

/// Syncs a directory, so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
