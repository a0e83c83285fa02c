//! folio: one named tree, `Durability::Immediate`; `Db::defrag` for a compact file.

use std::path::{Path, PathBuf};

use folio::{Db, DefragOptions, Durability};

use super::{Compact, Engine, Scanned};
use crate::Result;
use crate::data::Change;

const TREE: &[u8] = b"bench";

pub struct FolioEngine {
    db: Db,
}

impl FolioEngine {
    fn tree_missing() -> Box<dyn std::error::Error + Send + Sync> {
        "the bench tree is missing: read before any load".into()
    }
}

impl Engine for FolioEngine {
    const NAME: &'static str = "folio";

    fn file(dir: &Path) -> PathBuf {
        dir.join("bench.folio")
    }

    fn open(dir: &Path) -> Result<Self> {
        let db = Db::builder()
            .durability(Durability::Immediate)
            .open(Self::file(dir))?;
        Ok(FolioEngine { db })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        {
            let mut tree = tx.open_tree(TREE)?;
            for change in changes {
                match *change {
                    Change::Put(key, value) => tree.put(key, value)?,
                    Change::Delete(key) => {
                        tree.delete(key)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let tree = tx.tree(TREE)?.ok_or_else(Self::tree_missing)?;
        let mut bytes = 0;
        for key in keys {
            bytes += tree.get(key)?.map_or(0, |v| v.len() as u64);
        }
        Ok(bytes)
    }

    fn scan<'k>(&self, starts: impl Iterator<Item = &'k [u8]>, len: usize) -> Result<Scanned> {
        let tx = self.db.begin_read()?;
        let tree = tx.tree(TREE)?.ok_or_else(Self::tree_missing)?;
        let mut scanned = Scanned::default();
        for start in starts {
            for entry in tree.range(start..)?.take(len) {
                let (k, v) = entry?;
                scanned.entries += 1;
                scanned.bytes += (k.len() + v.len()) as u64;
            }
        }
        Ok(scanned)
    }
}

impl Compact for FolioEngine {
    const COMPACTION: &'static str = "defrag";

    /// Online, with default options (pages packed full): bulk-loads the newest snapshot into
    /// `<file>.defrag`, syncs it, renames it over the database and syncs the directory.
    fn compact(self) -> Result<Self> {
        self.db.defrag(&DefragOptions::default())?;
        Ok(self)
    }
}
