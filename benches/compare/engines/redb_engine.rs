//! redb: one table, `Durability::Immediate` on every write transaction, default cache size.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{Compact, Engine, Scanned};
use crate::Result;
use crate::data::Change;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

pub struct RedbEngine {
    db: Database,
}

impl Engine for RedbEngine {
    const NAME: &'static str = "redb";

    fn file(dir: &Path) -> PathBuf {
        dir.join("bench.redb")
    }

    fn open(dir: &Path) -> Result<Self> {
        Ok(RedbEngine {
            db: Database::create(Self::file(dir))?,
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for change in changes {
                match *change {
                    Change::Put(key, value) => {
                        table.insert(key, value)?;
                    }
                    Change::Delete(key) => {
                        table.remove(key)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut bytes = 0;
        for key in keys {
            bytes += table.get(key)?.map_or(0, |v| v.value().len() as u64);
        }
        Ok(bytes)
    }

    fn scan<'k>(&self, starts: impl Iterator<Item = &'k [u8]>, len: usize) -> Result<Scanned> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut scanned = Scanned::default();
        for start in starts {
            for entry in table.range::<&[u8]>(start..)?.take(len) {
                let (k, v) = entry?;
                scanned.entries += 1;
                scanned.bytes += (k.value().len() + v.value().len()) as u64;
            }
        }
        Ok(scanned)
    }
}

impl Compact for RedbEngine {
    const COMPACTION: &'static str = "Database::compact";

    /// In place: redb moves pages down and truncates the file, in durable transactions.
    fn compact(mut self) -> Result<Self> {
        self.db.compact()?;
        Ok(self)
    }
}
