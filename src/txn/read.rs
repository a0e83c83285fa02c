//! Read transactions: a snapshot, registered so its pages are not reused while it lives.

use std::sync::Arc;

use crate::btree::source::{NodeRef, Source};
use crate::btree::tree::{Tree, check_key_name};
use crate::error::Result;
use crate::txn::catalog::{self, Descriptor};
use crate::txn::db::{Inner, Snapshot};

/// A consistent, read-only view of the database as of one commit.
#[derive(Debug)]
pub struct ReadTxn<'db> {
    db: &'db Inner,
    snapshot: Arc<Snapshot>,
}

impl<'db> ReadTxn<'db> {
    pub(crate) fn new(db: &'db Inner, snapshot: Arc<Snapshot>) -> ReadTxn<'db> {
        ReadTxn { db, snapshot }
    }

    pub(crate) fn source(&self) -> Source<'_> {
        Source {
            pages: self.snapshot.pages(self.db.options.verify_checksums),
            arena: &[],
        }
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The id of the commit this snapshot shows.
    pub fn txid(&self) -> u64 {
        self.snapshot.meta.txid
    }

    fn catalog(&self) -> Tree<'_> {
        let root = (self.snapshot.meta.catalog_root != 0)
            .then_some(NodeRef::Page(self.snapshot.meta.catalog_root));
        Tree::new(self.source(), root, 0)
    }

    /// The tree named `name`, or `None` if there is none.
    pub fn tree(&self, name: &[u8]) -> Result<Option<Tree<'_>>> {
        check_key_name(name, self.snapshot.meta.page_size)?;
        let Some(raw) = self.catalog().get(name)? else {
            return Ok(None);
        };
        let d = Descriptor::decode(raw, self.snapshot.meta.catalog_root)?;
        Ok(Some(Tree::new(self.source(), d.root(), d.len)))
    }

    /// The names of every tree, in order.
    pub fn tree_names(&self) -> Result<Vec<Vec<u8>>> {
        catalog::names(self.catalog())
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        self.db.unregister_reader(self.snapshot.meta.txid);
    }
}
