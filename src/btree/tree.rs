//! The public handles on a tree: [`Tree`] for reading a snapshot, [`TreeMut`] inside a write
//! transaction, and [`Cursor`] for walking either.

use std::ops::RangeBounds;

use crate::btree::cursor::{self, Range, RawCursor};
use crate::btree::source::{NodeRef, Source};
use crate::btree::tree_mut::{self, Dirty, TreeRoot};
use crate::error::{Error, Result};
use crate::limits::{VALUE_LEN_MAX, key_len_max};

/// A read-only view of one named tree in a snapshot. Keys and values borrow from the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Tree<'a> {
    src: Source<'a>,
    root: Option<NodeRef>,
    len: u64,
}

impl<'a> Tree<'a> {
    pub(crate) fn new(src: Source<'a>, root: Option<NodeRef>, len: u64) -> Tree<'a> {
        Tree { src, root, len }
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        cursor::get(self.src, self.root, key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// The entries whose keys fall in `range`, in key order; iterate from either end.
    pub fn range<K, R>(&self, range: R) -> Result<Range<'a>>
    where
        K: AsRef<[u8]> + ?Sized,
        R: RangeBounds<K>,
    {
        Ok(Range::new(self.src, self.root, range))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Range<'a> {
        Range::new::<[u8]>(self.src, self.root, ..)
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let mut c = self.cursor();
        c.first()
    }

    /// The entry with the largest key.
    pub fn last(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let mut c = self.cursor();
        c.last()
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cursor over this tree, not yet positioned.
    pub fn cursor(&self) -> Cursor<'a> {
        Cursor {
            raw: RawCursor::new(self.src, self.root),
        }
    }
}

/// A movable position in a tree. Every move returns the entry it lands on, or `None` past an end.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    raw: RawCursor<'a>,
}

impl<'a> Cursor<'a> {
    fn here(&self, valid: bool) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if valid { self.raw.current() } else { Ok(None) }
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let v = self.raw.first()?;
        self.here(v)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let v = self.raw.last()?;
        self.here(v)
    }

    /// Moves to the first entry whose key is not less than `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let v = self.raw.seek(key)?;
        self.here(v)
    }

    /// Moves to the next entry. On an unpositioned cursor, returns `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let v = self.raw.next()?;
        self.here(v)
    }

    /// Moves to the previous entry. On an unpositioned cursor, returns `None`.
    pub fn prev(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let v = self.raw.prev()?;
        self.here(v)
    }
}

/// A tree opened for writing inside a [`crate::WriteTxn`]. Reads see this transaction's writes.
#[derive(Debug)]
pub struct TreeMut<'t> {
    pub(crate) dirty: &'t mut Dirty,
    pub(crate) pages: crate::btree::source::Pages<'t>,
    pub(crate) root: &'t mut TreeRoot,
}

impl TreeMut<'_> {
    /// A read view of this tree as the transaction has it now.
    pub fn as_tree(&self) -> Tree<'_> {
        let src = Source {
            pages: self.pages,
            arena: &self.dirty.arena,
        };
        Tree::new(src, self.root.root, self.root.len)
    }

    /// Stores `value` under `key`, replacing any value there.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key, self.pages.page_size)?;
        if value.len() > VALUE_LEN_MAX {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: VALUE_LEN_MAX,
            });
        }
        tree_mut::insert(self.dirty, self.pages, self.root, key, value)
    }

    /// Removes `key`. Returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        check_key(key, self.pages.page_size)?;
        tree_mut::remove(self.dirty, self.pages, self.root, key)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        self.as_tree().get(key)
    }

    /// The entries whose keys fall in `range`, in key order; iterate from either end.
    pub fn range<K, R>(&self, range: R) -> Result<Range<'_>>
    where
        K: AsRef<[u8]> + ?Sized,
        R: RangeBounds<K>,
    {
        let src = Source {
            pages: self.pages,
            arena: &self.dirty.arena,
        };
        Ok(Range::new(src, self.root.root, range))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Range<'_> {
        self.as_tree().iter()
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.root.len
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.root.len == 0
    }
}

/// Refuses empty keys and keys over the limit for `page_size`.
pub(crate) fn check_key(key: &[u8], page_size: u32) -> Result<()> {
    let max = key_len_max(page_size);
    if key.is_empty() || key.len() > max {
        return Err(Error::KeyLength {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

/// Refuses empty tree names and names over the key limit.
pub(crate) fn check_key_name(name: &[u8], page_size: u32) -> Result<()> {
    let max = key_len_max(page_size);
    if name.is_empty() || name.len() > max {
        return Err(Error::TreeNameLength {
            len: name.len(),
            max,
        });
    }
    Ok(())
}
