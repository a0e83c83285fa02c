//! Branch and leaf pages: zero-copy views that validate every offset they follow, and the encoders
//! that write them.
//!
//! ```text
//! leaf   : header | count × slot u16 | entries: flags u8, key_len u16, value_len u32, key,
//!                                      then the value (flags 0) or its overflow page u64 (flags 1)
//! branch : header | count × slot u16 | entries: child u64, key_len u16, key
//! ```
//! Slots hold entry offsets from the start of the page, in key order. A branch's key `i` is the
//! smallest key under child `i` when it was written; key 0 also stands for everything below it.
//!
//! The views read bytes from disk, so this module is linted against indexing and unchecked
//! arithmetic; the encoders, which fill pages this build sized, opt out one by one.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::cmp::Ordering;

use crate::error::{PageId, Result, corrupted};
use crate::limits::{
    BRANCH_ENTRY_HEADER_LEN, LEAF_ENTRY_HEADER_LEN, OVERFLOW_REF_LEN, PAGE_HEADER_LEN, SLOT_LEN,
};
use crate::page_file::page::{self, Header, PageKind, field, read_u16, read_u32, read_u64};

const FLAG_OVERFLOW: u8 = 1;

/// A value as a leaf stores it: inline bytes, or the first page of an overflow run and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueRef<'a> {
    Inline(&'a [u8]),
    Overflow { page: PageId, len: u32 },
}

/// A validated view of a leaf page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafView<'a> {
    page: &'a [u8],
    id: PageId,
    count: usize,
}

/// A validated view of a branch page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BranchView<'a> {
    page: &'a [u8],
    id: PageId,
    count: usize,
}

/// Either kind of node page.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PageView<'a> {
    Leaf(LeafView<'a>),
    Branch(BranchView<'a>),
}

impl<'a> PageView<'a> {
    /// Views `page` (exactly one page, already bounds-checked) as a node.
    pub fn new(page: &'a [u8], id: PageId) -> Result<PageView<'a>> {
        let h = Header::read(page, id)?;
        if h.overflow != 0 {
            return Err(corrupted(id, "a node page claims overflow pages"));
        }
        let count = usize::from(h.count);
        if slots_end(count).is_none_or(|end| end > page.len()) {
            return Err(corrupted(id, format!("{count} slots do not fit the page")));
        }
        match h.kind {
            PageKind::Leaf => Ok(PageView::Leaf(LeafView { page, id, count })),
            PageKind::Branch if count == 0 => Err(corrupted(id, "empty branch page")),
            PageKind::Branch => Ok(PageView::Branch(BranchView { page, id, count })),
            other => Err(corrupted(
                id,
                format!("expected a tree page, found {}", other.name()),
            )),
        }
    }
}

/// Where the entries begin: after the header and `count` slots (`None` if that overflows).
#[inline]
fn slots_end(count: usize) -> Option<usize> {
    count.checked_mul(SLOT_LEN)?.checked_add(PAGE_HEADER_LEN)
}

/// The offset slot `i` holds, checked to lie past the slots with `min_len` bytes of the page
/// after it.
#[inline]
fn slot(page: &[u8], id: PageId, count: usize, i: usize, min_len: usize) -> Result<usize> {
    if i < count
        && let Some(at) = slots_end(i)
        && let Some(off) = page::u16_at(page, at)
        && let Some(entries) = slots_end(count)
    {
        let off = usize::from(off);
        if off >= entries
            && off
                .checked_add(min_len)
                .is_some_and(|end| end <= page.len())
        {
            return Ok(off);
        }
    }
    Err(bad_slot(id, count, i))
}

#[cold]
#[inline(never)]
fn bad_slot(id: PageId, count: usize, i: usize) -> crate::error::Error {
    if i >= count {
        corrupted(id, format!("entry {i} of a page with {count}"))
    } else {
        corrupted(id, format!("slot {i} points outside the page"))
    }
}

#[inline]
fn bytes(page: &[u8], id: PageId, off: usize, len: usize) -> Result<&[u8]> {
    match off.checked_add(len).and_then(|end| page.get(off..end)) {
        Some(b) => Ok(b),
        None => Err(corrupted(id, "entry runs past the end of the page")),
    }
}

/// `base + delta`, or a corruption of page `id` when it overflows.
#[inline]
fn offset(base: usize, delta: usize, id: PageId) -> Result<usize> {
    base.checked_add(delta)
        .ok_or_else(|| corrupted(id, "entry runs past the end of the page"))
}

impl<'a> LeafView<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn id(&self) -> PageId {
        self.id
    }

    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let (id, page) = (self.id, self.page);
        let off = slot(page, id, self.count, i, LEAF_ENTRY_HEADER_LEN)?;
        let klen = usize::from(read_u16(page, offset(off, 1, id)?, id)?);
        bytes(page, id, offset(off, LEAF_ENTRY_HEADER_LEN, id)?, klen)
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.page
    }

    /// Entry `i`, validated whole: its offset in the page, its length there, and its key.
    pub fn entry(&self, i: usize) -> Result<(usize, usize, &'a [u8])> {
        let (id, page) = (self.id, self.page);
        let off = slot(page, id, self.count, i, LEAF_ENTRY_HEADER_LEN)?;
        let [flags] = field::<1>(page, off).ok_or_else(|| corrupted(id, "entry past the page"))?;
        let klen = usize::from(read_u16(page, offset(off, 1, id)?, id)?);
        let vlen = read_u32(page, offset(off, 3, id)?, id)?;
        let stored = match flags {
            0 => usize::try_from(vlen).map_err(|_| corrupted(id, "value too long"))?,
            FLAG_OVERFLOW => OVERFLOW_REF_LEN,
            f => {
                return Err(corrupted(
                    id,
                    format!("leaf entry {i} has unknown flags {f:#x}"),
                ));
            }
        };
        let key = bytes(page, id, offset(off, LEAF_ENTRY_HEADER_LEN, id)?, klen)?;
        let len = offset(offset(LEAF_ENTRY_HEADER_LEN, klen, id)?, stored, id)?;
        bytes(page, id, off, len)?;
        Ok((off, len, key))
    }

    #[inline]
    pub fn value(&self, i: usize) -> Result<ValueRef<'a>> {
        self.key_value(i).map(|(_, v)| v)
    }

    /// Entry `i`'s key and stored value, reading its slot and header once.
    #[inline]
    pub fn key_value(&self, i: usize) -> Result<(&'a [u8], ValueRef<'a>)> {
        let (id, page) = (self.id, self.page);
        let off = slot(page, id, self.count, i, LEAF_ENTRY_HEADER_LEN)?;
        let [flags] = field::<1>(page, off).ok_or_else(|| corrupted(id, "entry past the page"))?;
        let klen = usize::from(read_u16(page, offset(off, 1, id)?, id)?);
        let vlen = read_u32(page, offset(off, 3, id)?, id)?;
        let key_at = offset(off, LEAF_ENTRY_HEADER_LEN, id)?;
        let key = bytes(page, id, key_at, klen)?;
        let at = offset(key_at, klen, id)?;
        let value = match flags {
            0 => {
                let vlen = usize::try_from(vlen).map_err(|_| corrupted(id, "value too long"))?;
                ValueRef::Inline(bytes(page, id, at, vlen)?)
            }
            FLAG_OVERFLOW => {
                let p = bytes(page, id, at, OVERFLOW_REF_LEN)?;
                ValueRef::Overflow {
                    page: read_u64(p, 0, id)?,
                    len: vlen,
                }
            }
            f => {
                return Err(corrupted(
                    self.id,
                    format!("leaf entry {i} has unknown flags {f:#x}"),
                ));
            }
        };
        Ok((key, value))
    }
}

impl<'a> BranchView<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn id(&self) -> PageId {
        self.id
    }

    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let (id, page) = (self.id, self.page);
        let off = slot(page, id, self.count, i, BRANCH_ENTRY_HEADER_LEN)?;
        let klen = usize::from(read_u16(page, offset(off, 8, id)?, id)?);
        bytes(page, id, offset(off, BRANCH_ENTRY_HEADER_LEN, id)?, klen)
    }

    #[inline]
    pub fn child(&self, i: usize) -> Result<PageId> {
        let off = slot(self.page, self.id, self.count, i, BRANCH_ENTRY_HEADER_LEN)?;
        read_u64(self.page, off, self.id)
    }
}

/// Binary search over `count` sorted keys fetched by `key_at`.
pub(crate) fn search<'k>(
    count: usize,
    key: &[u8],
    key_at: impl Fn(usize) -> Result<&'k [u8]>,
) -> Result<(usize, bool)> {
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        // lo < hi, so neither step can overflow.
        let mid = lo.midpoint(hi);
        match key_at(mid)?.cmp(key) {
            Ordering::Less => lo = mid.saturating_add(1),
            Ordering::Equal => return Ok((mid, true)),
            Ordering::Greater => hi = mid,
        }
    }
    Ok((lo, false))
}

/// Bytes a leaf entry takes in its page, slot included, given how its value is stored.
#[allow(clippy::arithmetic_side_effects)] // lengths of at most a `u32` and a page: no overflow
pub(crate) fn leaf_entry_len(key_len: usize, stored_value_len: usize) -> usize {
    SLOT_LEN + LEAF_ENTRY_HEADER_LEN + key_len + stored_value_len
}

/// Bytes a branch entry takes in its page, slot included.
#[allow(clippy::arithmetic_side_effects)] // lengths of at most a `u32` and a page: no overflow
pub(crate) fn branch_entry_len(key_len: usize) -> usize {
    SLOT_LEN + BRANCH_ENTRY_HEADER_LEN + key_len
}

/// Encodes a leaf page into `buf` (exactly one page, zeroed).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
pub(crate) fn encode_leaf_into<'e>(
    buf: &mut [u8],
    id: PageId,
    entries: impl ExactSizeIterator<Item = (&'e [u8], ValueRef<'e>)>,
) {
    let count = entries.len();
    Header {
        id,
        kind: PageKind::Leaf,
        count: count as u16,
        overflow: 0,
    }
    .write(buf);
    let mut off = PAGE_HEADER_LEN + count * SLOT_LEN;
    for (i, (key, value)) in entries.enumerate() {
        let s = PAGE_HEADER_LEN + i * SLOT_LEN;
        buf[s..s + 2].copy_from_slice(&(off as u16).to_le_bytes());
        let (flags, vlen) = match value {
            ValueRef::Inline(v) => (0, v.len() as u32),
            ValueRef::Overflow { len, .. } => (FLAG_OVERFLOW, len),
        };
        buf[off] = flags;
        buf[off + 1..off + 3].copy_from_slice(&(key.len() as u16).to_le_bytes());
        buf[off + 3..off + 7].copy_from_slice(&vlen.to_le_bytes());
        off += LEAF_ENTRY_HEADER_LEN;
        buf[off..off + key.len()].copy_from_slice(key);
        off += key.len();
        let page_bytes;
        let stored: &[u8] = match value {
            ValueRef::Inline(v) => v,
            ValueRef::Overflow { page, .. } => {
                page_bytes = page.to_le_bytes();
                &page_bytes
            }
        };
        buf[off..off + stored.len()].copy_from_slice(stored);
        off += stored.len();
        debug_assert!(off <= buf.len(), "leaf entries overflow page {id}");
    }
    page::seal(buf);
}

/// Encodes a branch page into `buf` (exactly one page, zeroed).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
pub(crate) fn encode_branch_into<'e>(
    buf: &mut [u8],
    id: PageId,
    entries: impl ExactSizeIterator<Item = (&'e [u8], PageId)>,
) {
    let count = entries.len();
    Header {
        id,
        kind: PageKind::Branch,
        count: count as u16,
        overflow: 0,
    }
    .write(buf);
    let mut off = PAGE_HEADER_LEN + count * SLOT_LEN;
    for (i, (key, child)) in entries.enumerate() {
        let s = PAGE_HEADER_LEN + i * SLOT_LEN;
        buf[s..s + 2].copy_from_slice(&(off as u16).to_le_bytes());
        buf[off..off + 8].copy_from_slice(&child.to_le_bytes());
        buf[off + 8..off + 10].copy_from_slice(&(key.len() as u16).to_le_bytes());
        off += BRANCH_ENTRY_HEADER_LEN;
        buf[off..off + key.len()].copy_from_slice(key);
        off += key.len();
        debug_assert!(off <= buf.len(), "branch entries overflow page {id}");
    }
    page::seal(buf);
}

/// Pages an overflow run needs for a value of `len` bytes.
#[allow(clippy::arithmetic_side_effects)] // lengths of at most a `u32` and a page: no overflow
pub(crate) fn overflow_pages(len: usize, page_size: u32) -> u64 {
    (PAGE_HEADER_LEN + len).div_ceil(page_size as usize) as u64
}

/// Encodes an overflow run holding `value` into `buf` (exactly the run, whatever it holds: every
/// byte is written).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
pub(crate) fn encode_overflow_into(buf: &mut [u8], id: PageId, page_size: u32, value: &[u8]) {
    let pages = overflow_pages(value.len(), page_size);
    debug_assert_eq!(buf.len() as u64, pages * page_size as u64);
    Header {
        id,
        kind: PageKind::Overflow,
        count: 0,
        overflow: (pages - 1) as u32,
    }
    .write(buf);
    buf[PAGE_HEADER_LEN..PAGE_HEADER_LEN + value.len()].copy_from_slice(value);
    buf[PAGE_HEADER_LEN + value.len()..].fill(0);
    page::seal(buf);
}
