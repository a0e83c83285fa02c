//! Where nodes come from: pages of a mapped snapshot, or dirty nodes of a write transaction.
//!
//! A cursor walks both the same way through [`Source::node`], so a write transaction reads its own
//! writes and a read transaction borrows straight from the mapping.

use crate::btree::dirty::Node;
use crate::btree::node::{PageView, ValueRef};
use crate::error::{PageId, Result, corrupted};
use crate::limits::PAGE_HEADER_LEN;
use crate::page_file::page::{self, Header, PageKind};
use crate::page_file::verified::VerifiedPages;

/// Which checksums [`Pages`] verifies.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Verify<'a> {
    /// None (`Builder::verify_checksums(false)`, and tools that verify for themselves).
    Off,
    /// Each page (or run) the first time it is read after it was written, remembered in the file's
    /// bitmap: the default for readers and the writer of a registered snapshot.
    Once(&'a VerifiedPages),
    /// Every page read, every time, remembering nothing (defrag's copy).
    Always,
}

/// The pages of one snapshot: a mapping, bounded by the snapshot's page count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pages<'a> {
    pub data: &'a [u8],
    pub page_size: u32,
    pub page_count: u64,
    pub verify: Verify<'a>,
}

impl<'a> Pages<'a> {
    /// The bytes of a run of `len` pages starting at `id`, bounds-checked.
    pub fn run(&self, id: PageId, len: u64) -> Result<&'a [u8]> {
        if id < 2 || len == 0 || id.checked_add(len).is_none_or(|end| end > self.page_count) {
            return Err(corrupted(
                id,
                format!(
                    "page run {id}+{len} is outside the database ({} pages)",
                    self.page_count
                ),
            ));
        }
        let start = id as usize * self.page_size as usize;
        let end = start + len as usize * self.page_size as usize;
        self.data
            .get(start..end)
            .ok_or_else(|| corrupted(id, "page lies beyond the end of the mapped file"))
    }

    /// Verifies the checksum of `run`, which starts at page `id`, as [`Pages::verify`] says.
    fn verify(&self, run: &[u8], id: PageId) -> Result<()> {
        match self.verify {
            Verify::Off => Ok(()),
            Verify::Always => page::verify(run, id),
            Verify::Once(verified) if verified.contains(id) => Ok(()),
            Verify::Once(verified) => {
                page::verify(run, id)?;
                verified.insert(id);
                Ok(())
            }
        }
    }

    /// A branch or leaf page, viewed in place.
    pub fn node(&self, id: PageId) -> Result<PageView<'a>> {
        let bytes = self.run(id, 1)?;
        self.verify(bytes, id)?;
        PageView::new(bytes, id)
    }

    /// The bytes of a value stored in an overflow run.
    pub fn overflow(&self, id: PageId, len: u32) -> Result<&'a [u8]> {
        let first = self.run(id, 1)?;
        let h = Header::read(first, id)?;
        if h.kind != PageKind::Overflow {
            return Err(corrupted(
                id,
                format!("expected an overflow page, found {}", h.kind.name()),
            ));
        }
        let pages = crate::btree::node::overflow_pages(len as usize, self.page_size);
        if h.overflow as u64 + 1 != pages {
            return Err(corrupted(
                id,
                format!(
                    "overflow run of {} pages cannot hold {len} bytes",
                    h.overflow as u64 + 1
                ),
            ));
        }
        let run = self.run(id, pages)?;
        // The whole run, remembered by its first page: the header just read is part of what the
        // checksum covers, so a remembered run has this length.
        self.verify(run, id)?;
        Ok(&run[PAGE_HEADER_LEN..PAGE_HEADER_LEN + len as usize])
    }

    /// Resolves a stored value to its bytes.
    #[inline]
    pub fn value(&self, v: ValueRef<'a>) -> Result<&'a [u8]> {
        match v {
            ValueRef::Inline(b) => Ok(b),
            ValueRef::Overflow { page, len } => self.overflow(page, len),
        }
    }
}

/// A pointer to a node: a page on disk, or a dirty node in the write transaction's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeRef {
    Page(PageId),
    Dirty(usize),
}

/// A node as a cursor sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NodeAccess<'a> {
    Page(PageView<'a>),
    Dirty(&'a Node),
}

impl<'a> NodeAccess<'a> {
    #[inline]
    pub fn is_leaf(&self) -> bool {
        match self {
            NodeAccess::Page(p) => matches!(p, PageView::Leaf(_)),
            NodeAccess::Dirty(n) => n.is_leaf(),
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self {
            NodeAccess::Page(PageView::Leaf(l)) => l.len(),
            NodeAccess::Page(PageView::Branch(b)) => b.len(),
            NodeAccess::Dirty(n) => n.len(),
        }
    }

    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        match self {
            NodeAccess::Page(PageView::Leaf(l)) => l.key(i),
            NodeAccess::Page(PageView::Branch(b)) => b.key(i),
            NodeAccess::Dirty(n) => Ok(n.key(i)),
        }
    }

    /// The stored value of leaf entry `i`.
    #[inline]
    pub fn value(&self, i: usize) -> Result<ValueRef<'a>> {
        match self {
            NodeAccess::Page(PageView::Leaf(l)) => l.value(i),
            NodeAccess::Dirty(n) if n.is_leaf() => Ok(n.value(i)),
            _ => unreachable!("value() on a branch"),
        }
    }

    /// The key and stored value of leaf entry `i`.
    #[inline]
    pub fn key_value(&self, i: usize) -> Result<(&'a [u8], ValueRef<'a>)> {
        match self {
            NodeAccess::Page(PageView::Leaf(l)) => l.key_value(i),
            NodeAccess::Dirty(n) if n.is_leaf() => Ok((n.key(i), n.value(i))),
            _ => unreachable!("key_value() on a branch"),
        }
    }

    /// Child `i` of a branch.
    pub fn child(&self, i: usize) -> Result<NodeRef> {
        match self {
            NodeAccess::Page(PageView::Branch(b)) => b.child(i).map(NodeRef::Page),
            NodeAccess::Dirty(n) if !n.is_leaf() => Ok(n.child(i)),
            _ => unreachable!("child() on a leaf"),
        }
    }

    /// First index whose key is not less than `key`, and whether it is equal.
    pub fn search(&self, key: &[u8]) -> Result<(usize, bool)> {
        match self {
            NodeAccess::Dirty(n) => Ok(n.search(key)),
            NodeAccess::Page(_) => crate::btree::node::search(self.len(), key, |i| self.key(i)),
        }
    }

    /// For a branch: the child to descend into for `key`.
    pub fn child_index(&self, key: &[u8]) -> Result<usize> {
        let (i, found) = self.search(key)?;
        Ok(if found { i } else { i.saturating_sub(1) })
    }
}

/// Pages plus, in a write transaction, the arena of dirty nodes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub pages: Pages<'a>,
    pub arena: &'a [Node],
}

impl<'a> Source<'a> {
    pub fn node(&self, r: NodeRef) -> Result<NodeAccess<'a>> {
        match r {
            NodeRef::Page(id) => self.pages.node(id).map(NodeAccess::Page),
            NodeRef::Dirty(i) => Ok(NodeAccess::Dirty(&self.arena[i])),
        }
    }
}
