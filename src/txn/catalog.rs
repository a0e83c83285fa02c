//! The catalog: a tree whose keys are tree names and whose values are tree descriptors.
//!
//! ```text
//! descriptor: root page u64 LE (0 for an empty tree) | entry count u64 LE
//! ```
//!
//! A descriptor comes from disk, so this module is linted against indexing and unchecked
//! arithmetic. Its entry count is never trusted to size anything: the write path counts with
//! checked arithmetic and the checker and defrag compare it with what they find.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::btree::source::NodeRef;
use crate::btree::tree::Tree;
use crate::btree::tree_mut::TreeRoot;
use crate::error::{PageId, Result, corrupted};
use crate::page_file::page::u64_at;

/// Where a named tree lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub root: PageId,
    pub len: u64,
}

pub(crate) const DESCRIPTOR_LEN: usize = 16;

impl Descriptor {
    pub fn decode(raw: &[u8], catalog_page: PageId) -> Result<Descriptor> {
        match (raw.len(), u64_at(raw, 0), u64_at(raw, 8)) {
            (DESCRIPTOR_LEN, Some(root), Some(len)) => Ok(Descriptor { root, len }),
            _ => Err(corrupted(
                catalog_page,
                format!("tree descriptor of {} bytes", raw.len()),
            )),
        }
    }

    #[allow(clippy::indexing_slicing)] // an encoder: a fixed array
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut b = [0u8; DESCRIPTOR_LEN];
        b[..8].copy_from_slice(&self.root.to_le_bytes());
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn root(&self) -> Option<NodeRef> {
        (self.root != 0).then_some(NodeRef::Page(self.root))
    }

    pub fn tree_root(&self) -> TreeRoot {
        TreeRoot {
            root: self.root(),
            len: self.len,
        }
    }

    /// The descriptor of a committed tree (its root must be a page or absent).
    pub fn of(t: &TreeRoot) -> Descriptor {
        let root = match t.root {
            None => 0,
            Some(NodeRef::Page(p)) => p,
            Some(NodeRef::Dirty(_)) => unreachable!("descriptor of an uncommitted tree"),
        };
        Descriptor { root, len: t.len }
    }
}

/// Every name in a catalog.
pub(crate) fn names(catalog: Tree<'_>) -> Result<Vec<Vec<u8>>> {
    catalog.iter().map(|e| e.map(|(k, _)| k.to_vec())).collect()
}
