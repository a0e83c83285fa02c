//! LMDB through heed: default environment flags (sync on commit), one unnamed database.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, CompactionOption, Database, Env, EnvOpenOptions};

use super::{Compact, Engine, Scanned, sync_dir};
use crate::Result;
use crate::data::Change;

/// LMDB reserves its address space up front; this is room for every workload here.
const MAP_SIZE: usize = 8 << 30;

pub struct LmdbEngine {
    dir: PathBuf,
    env: Env,
    db: Database<'static, Bytes, Bytes>,
}

impl Engine for LmdbEngine {
    const NAME: &'static str = "LMDB";

    fn file(dir: &Path) -> PathBuf {
        dir.join("data.mdb")
    }

    fn open(dir: &Path) -> Result<Self> {
        // SAFETY: heed's `open` is unsafe because the map must not be changed behind LMDB's back:
        // this process is the only user of `dir`, opens it once at a time, and never writes the
        // file except through LMDB (the compacted copy replaces it only while it is closed).
        let env = unsafe { EnvOpenOptions::new().map_size(MAP_SIZE).open(dir)? };
        let wtxn = env.write_txn()?;
        let db = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database::<Bytes, Bytes>(wtxn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit();
        Ok(LmdbEngine {
            dir: dir.to_path_buf(),
            env,
            db,
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for change in changes {
            match *change {
                Change::Put(key, value) => self.db.put(&mut wtxn, key, value)?,
                Change::Delete(key) => {
                    self.db.delete(&mut wtxn, key)?;
                }
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    fn get<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<u64> {
        let rtxn = self.env.read_txn()?;
        let mut bytes = 0;
        for key in keys {
            bytes += self.db.get(&rtxn, key)?.map_or(0, |v| v.len() as u64);
        }
        Ok(bytes)
    }

    fn scan<'k>(&self, starts: impl Iterator<Item = &'k [u8]>, len: usize) -> Result<Scanned> {
        let rtxn = self.env.read_txn()?;
        let mut scanned = Scanned::default();
        for start in starts {
            for entry in self
                .db
                .range(&rtxn, &(Bound::Included(start), Bound::Unbounded))?
                .take(len)
            {
                let (k, v) = entry?;
                scanned.entries += 1;
                scanned.bytes += (k.len() + v.len()) as u64;
            }
        }
        Ok(scanned)
    }
}

impl Compact for LmdbEngine {
    const COMPACTION: &'static str = "compacting copy + rename";

    /// `mdb_env_copy2` with `MDB_CP_COMPACT` into a new file, sync it (LMDB does not), close the
    /// environment, rename the copy over `data.mdb`, sync the directory, reopen.
    fn compact(self) -> Result<Self> {
        let LmdbEngine { dir, env, db: _ } = self;
        let copy = dir.join("data.mdb.compact");
        let file = env.copy_to_path(&copy, CompactionOption::Enabled)?;
        file.sync_all()?;
        drop(file);
        env.prepare_for_closing().wait();
        std::fs::rename(&copy, Self::file(&dir))?;
        sync_dir(&dir)?;
        Self::open(&dir)
    }
}
