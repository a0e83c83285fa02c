//! A node of a write transaction, kept in page form: its entries encoded exactly as a page encodes
//! them (see [`crate::btree::node`]), end to end in one buffer, and one offset per entry in key
//! order. Inserting an entry appends its bytes and moves offsets, never entries; a replaced or
//! removed entry leaves dead bytes that [`Node::compact`] reclaims. Spill copies the entries into
//! their page, one `memcpy` for each run of them that lies end to end here (a copied page's
//! entries do), and nothing here allocates per entry.
//!
//! ```text
//! data : entry | entry | dead entry | entry ...   (in the order written)
//! slots: (key prefix, offset, length) of each live entry in `data`, in key order
//! ```
//!
//! A slot carries the first 8 bytes of its key as a big-endian integer (zero-padded), so that a
//! search compares integers in the slot array and reads an entry's bytes only when two prefixes
//! tie: a binary search over a node's slots touches one small array instead of one entry per
//! probe scattered through `data` (the write path's descents were bound by those cache misses).
//!
//! Invariants:
//! 1. Every slot is the offset of one whole entry inside `data`: an entry copied from a page was
//!    validated by the page's view first ([`Node::push_leaf`], [`Node::push_branch`] take what
//!    the view returned), and every other entry was encoded here.
//! 2. A leaf entry with flags 0 holds its value in `data` whatever its length: a dirty node may
//!    hold a value too large for a page, which spill moves to an overflow run.
//! 3. A branch entry's child is a page id, or [`DIRTY_CHILD`] plus an arena index. A page read
//!    from disk whose child id has that bit set is refused as corrupt before it is copied here
//!    (`tree_mut::touch`), so the bit never misreads a page id.
//! 4. Every slot's prefix is [`key_prefix`] of its entry's key, and its length the entry's.
//! 5. `dead` counts the bytes of `data` that no slot points at, and `bytes` the bytes the live
//!    entries take in pages (slots included, large values as overflow references), so that
//!    rebalance and spill know a node's size without walking it.
//! 6. If an entry holds inline a value that does not fit inline in a page, `may_spill` is set
//!    (it may stay set after that entry is gone), so that spill looks for values to move to
//!    overflow runs only in nodes that may have one: that look reads every entry's header, a
//!    cache miss each in a large transaction's cold nodes.

use std::cmp::Ordering;
use std::ops::Range;

use crate::btree::node::{self, LeafView, ValueRef};
use crate::btree::source::NodeRef;
use crate::error::{PageId, Result, corrupted};
use crate::limits::{
    BRANCH_ENTRY_HEADER_LEN, LEAF_ENTRY_HEADER_LEN, OVERFLOW_REF_LEN, PAGE_HEADER_LEN, SLOT_LEN,
};
use crate::page_file::page::{self, Header, PageKind};

/// The bit of a dirty branch's child field that marks an arena index rather than a page id.
pub(crate) const DIRTY_CHILD: u64 = 1 << 63;

const FLAG_INLINE: u8 = 0;
const FLAG_OVERFLOW: u8 = 1;

/// A dirty leaf or branch in page form.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    leaf: bool,
    data: Vec<u8>,
    slots: Vec<Slot>,
    dead: usize,
    page_size: u32,
    bytes: usize,
    /// Whether some entry may hold an inline value too large for a page (invariant 6).
    may_spill: bool,
    /// Whether an entry was inserted before the last one since the node was made: then its
    /// inserts were not appends, and spill splits it in halves even at the tree's right edge
    /// (`tree_mut`, invariant 6).
    inserted_inside: bool,
}

/// Where a live entry lies in `data`, its length there, and the start of its key (invariant
/// 4): spill lays out and splits pages from the slots alone, without reading entries' headers.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    prefix: u64,
    off: usize,
    len: usize,
}

/// The first 8 bytes of `key` as a big-endian integer, zero-padded: when two keys' prefixes
/// differ, they order the keys as the keys' bytes do (a key that pads with zeros is a prefix of
/// the other up to there, so the shorter, smaller key has the smaller prefix); when they are
/// equal, the keys must be compared.
#[inline]
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

impl Node {
    /// Empties the node (keeping its buffers) and makes it a leaf or a branch.
    pub fn reset(&mut self, leaf: bool, page_size: u32) {
        self.leaf = leaf;
        self.page_size = page_size;
        self.bytes = 0;
        self.may_spill = false;
        self.inserted_inside = false;
        self.data.clear();
        self.slots.clear();
        self.dead = 0;
    }

    /// Bytes of buffer this node holds on to, for capping what a transaction keeps for reuse.
    pub fn capacity(&self) -> usize {
        self.data.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn off(&self, i: usize) -> usize {
        self.slots[i].off
    }

    /// The whole of entry `i` as a page stores it.
    pub fn entry(&self, i: usize) -> &[u8] {
        let Slot { off, len, .. } = self.slots[i];
        debug_assert_eq!(len, self.entry_len_at(off), "slot {i}'s length");
        &self.data[off..off + len]
    }

    fn entry_len_at(&self, off: usize) -> usize {
        let d = &self.data;
        if self.leaf {
            let klen = u16_at(d, off + 1);
            let stored = match d[off] {
                FLAG_INLINE => u32_at(d, off + 3) as usize,
                _ => OVERFLOW_REF_LEN,
            };
            LEAF_ENTRY_HEADER_LEN + klen + stored
        } else {
            BRANCH_ENTRY_HEADER_LEN + u16_at(d, off + 8)
        }
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        let off = self.off(i);
        let d = &self.data;
        if self.leaf {
            let klen = u16_at(d, off + 1);
            &d[off + LEAF_ENTRY_HEADER_LEN..off + LEAF_ENTRY_HEADER_LEN + klen]
        } else {
            let klen = u16_at(d, off + 8);
            &d[off + BRANCH_ENTRY_HEADER_LEN..off + BRANCH_ENTRY_HEADER_LEN + klen]
        }
    }

    /// The value of leaf entry `i`: bytes held here, or an overflow run on disk.
    pub fn value(&self, i: usize) -> ValueRef<'_> {
        debug_assert!(self.leaf);
        let off = self.off(i);
        let d = &self.data;
        let klen = u16_at(d, off + 1);
        let vlen = u32_at(d, off + 3);
        let at = off + LEAF_ENTRY_HEADER_LEN + klen;
        match d[off] {
            FLAG_INLINE => ValueRef::Inline(&d[at..at + vlen as usize]),
            _ => ValueRef::Overflow {
                page: u64_at(d, at),
                len: vlen,
            },
        }
    }

    /// The overflow run of leaf entry `i`'s value, if it has one.
    pub fn overflow(&self, i: usize) -> Option<(PageId, u32)> {
        match self.value(i) {
            ValueRef::Overflow { page, len } => Some((page, len)),
            ValueRef::Inline(_) => None,
        }
    }

    /// Child `i` of a branch.
    pub fn child(&self, i: usize) -> NodeRef {
        debug_assert!(!self.leaf);
        let raw = u64_at(&self.data, self.off(i));
        if raw & DIRTY_CHILD != 0 {
            NodeRef::Dirty((raw & !DIRTY_CHILD) as usize)
        } else {
            NodeRef::Page(raw)
        }
    }

    /// Points child `i` of a branch at `child`.
    pub fn set_child(&mut self, i: usize, child: NodeRef) {
        debug_assert!(!self.leaf);
        let off = self.off(i);
        self.data[off..off + 8].copy_from_slice(&encode_child(child).to_le_bytes());
    }

    /// The first index whose key is not less than `key`, and whether it is equal.
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        let prefix = key_prefix(key);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo.midpoint(hi);
            let order = match self.slots[mid].prefix.cmp(&prefix) {
                Ordering::Equal => self.key(mid).cmp(key),
                decided => decided,
            };
            match order {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return (mid, true),
                Ordering::Greater => hi = mid,
            }
        }
        (lo, false)
    }

    /// For a branch: the child to descend into for `key`.
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            (i, true) => i,
            (i, false) => i.saturating_sub(1),
        }
    }

    /// Appends a leaf entry's bytes to `data` and returns its offset.
    fn append_leaf(&mut self, key: &[u8], value: ValueRef<'_>) -> usize {
        let off = self.data.len();
        if let ValueRef::Inline(v) = value {
            self.may_spill |= !fits_inline(key.len(), v.len(), self.page_size);
        }
        let (flags, vlen) = match value {
            ValueRef::Inline(v) => (FLAG_INLINE, v.len() as u32),
            ValueRef::Overflow { len, .. } => (FLAG_OVERFLOW, len),
        };
        self.data.push(flags);
        self.data
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.data.extend_from_slice(&vlen.to_le_bytes());
        self.data.extend_from_slice(key);
        match value {
            ValueRef::Inline(v) => self.data.extend_from_slice(v),
            ValueRef::Overflow { page, .. } => self.data.extend_from_slice(&page.to_le_bytes()),
        }
        off
    }

    /// Appends a branch entry's bytes to `data` and returns its offset.
    fn append_branch(&mut self, key: &[u8], child: NodeRef) -> usize {
        let off = self.data.len();
        self.data
            .extend_from_slice(&encode_child(child).to_le_bytes());
        self.data
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.data.extend_from_slice(key);
        off
    }

    /// Makes this empty leaf a copy of leaf page `l`: one copy of the page's bytes from its
    /// slots to the end of its last entry (not the free space after it), and an offset per
    /// entry. Every entry is validated first, and the keys must rise (the write path searches the
    /// copy). Entries that overlap in a forged page are harmless here: a leaf's entries are never
    /// written in place.
    pub fn copy_leaf(&mut self, l: &LeafView<'_>) -> Result<()> {
        debug_assert!(self.leaf && self.slots.is_empty());
        let base = PAGE_HEADER_LEN + l.len() * SLOT_LEN;
        let mut prev: Option<&[u8]> = None;
        let (mut live, mut end, mut bytes) = (0usize, base, 0usize);
        for i in 0..l.len() {
            let (off, len, key) = l.entry(i)?;
            if prev.is_some_and(|p| p >= key) {
                return Err(corrupted(l.id(), "keys out of order in the page"));
            }
            prev = Some(key);
            // `entry` refused an offset inside the slots.
            self.slots.push(Slot {
                prefix: key_prefix(key),
                off: off - base,
                len,
            });
            live += len;
            end = end.max(off + len);
            // What `page_len_at` would find: the bytes stored after the key stay if they fit
            // inline (an overflow reference always does), else they become a reference.
            let stored = len - LEAF_ENTRY_HEADER_LEN - key.len();
            bytes += if fits_inline(key.len(), stored, self.page_size) {
                node::leaf_entry_len(key.len(), stored)
            } else {
                // A page of another page size, or forged: spill moves the value out.
                self.may_spill = true;
                node::leaf_entry_len(key.len(), OVERFLOW_REF_LEN)
            };
        }
        let region = l
            .bytes()
            .get(base..end)
            .ok_or_else(|| corrupted(l.id(), "slots run past the page"))?;
        self.data.extend_from_slice(region);
        self.dead = self.data.len().saturating_sub(live);
        self.bytes = bytes;
        debug_assert_eq!(
            self.bytes,
            (0..self.len()).map(|i| self.page_len(i)).sum::<usize>()
        );
        Ok(())
    }

    /// Adds a leaf entry after the last (keys must come in order).
    pub fn push_leaf(&mut self, key: &[u8], value: ValueRef<'_>) {
        debug_assert!(self.leaf);
        let off = self.append_leaf(key, value);
        self.add_slot(self.slots.len(), key, off);
    }

    /// Adds a branch entry after the last (keys must come in order).
    pub fn push_branch(&mut self, key: &[u8], child: NodeRef) {
        debug_assert!(!self.leaf);
        let off = self.append_branch(key, child);
        self.add_slot(self.slots.len(), key, off);
    }

    /// Inserts a leaf entry at index `i`.
    pub fn insert_leaf(&mut self, i: usize, key: &[u8], value: ValueRef<'_>) {
        debug_assert!(self.leaf);
        self.inserted_inside |= i < self.slots.len();
        let off = self.append_leaf(key, value);
        self.add_slot(i, key, off);
    }

    /// Inserts a branch entry at index `i`.
    pub fn insert_branch(&mut self, i: usize, key: &[u8], child: NodeRef) {
        debug_assert!(!self.leaf);
        let off = self.append_branch(key, child);
        self.add_slot(i, key, off);
    }

    /// Counts the entry just appended at `off`, with key `key`, as entry `i`.
    fn add_slot(&mut self, i: usize, key: &[u8], off: usize) {
        self.bytes += self.page_len_at(off);
        let slot = Slot {
            prefix: key_prefix(key),
            off,
            len: self.data.len() - off,
        };
        self.slots.insert(i, slot);
    }

    /// Replaces the value of leaf entry `i`, keeping its key.
    pub fn replace_value(&mut self, i: usize, value: &[u8]) {
        debug_assert!(self.leaf);
        let old = self.off(i);
        let old_len = self.entry_len_at(old);
        let klen = u16_at(&self.data, old + 1);
        self.may_spill |= !fits_inline(klen, value.len(), self.page_size);
        let off = self.data.len();
        self.data.push(FLAG_INLINE);
        self.data.extend_from_slice(&(klen as u16).to_le_bytes());
        self.data
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        let key = old + LEAF_ENTRY_HEADER_LEN;
        self.data.extend_from_within(key..key + klen);
        self.data.extend_from_slice(value);
        self.slots[i].off = off;
        self.slots[i].len = self.data.len() - off;
        self.bytes = self.bytes + self.page_len_at(off) - self.page_len_at(old);
        self.dead += old_len;
        self.compact_if_sparse();
    }

    /// Replaces the key of branch entry `i`, keeping its child.
    pub fn set_key(&mut self, i: usize, key: &[u8]) {
        debug_assert!(!self.leaf);
        let old = self.off(i);
        let child = self.child(i);
        self.dead += self.entry_len_at(old);
        self.bytes -= self.page_len_at(old);
        let off = self.append_branch(key, child);
        self.slots[i] = Slot {
            prefix: key_prefix(key),
            off,
            len: self.data.len() - off,
        };
        self.bytes += self.page_len_at(off);
        self.compact_if_sparse();
    }

    /// Removes entry `i`.
    pub fn remove(&mut self, i: usize) {
        let off = self.slots.remove(i).off;
        self.dead += self.entry_len_at(off);
        self.bytes -= self.page_len_at(off);
        self.compact_if_sparse();
    }

    /// Appends every entry of `other` (of the same kind, all keys greater) after this node's.
    pub fn append(&mut self, other: &Node) {
        debug_assert_eq!(self.leaf, other.leaf);
        self.may_spill |= other.may_spill;
        self.inserted_inside |= other.inserted_inside;
        for i in 0..other.len() {
            let off = self.data.len();
            self.data.extend_from_slice(other.entry(i));
            self.slots.push(Slot {
                off,
                ..other.slots[i]
            });
        }
        self.bytes += other.bytes;
    }

    /// Bytes entry `i` takes in a page, slot included: a value too large to stay inline counts as
    /// an overflow reference.
    pub fn page_len(&self, i: usize) -> usize {
        if self.may_spill {
            self.page_len_at(self.off(i))
        } else {
            // Every entry stays as it is (invariant 6).
            self.slots[i].len + SLOT_LEN
        }
    }

    fn page_len_at(&self, off: usize) -> usize {
        let d = &self.data;
        if self.leaf {
            let klen = u16_at(d, off + 1);
            let vlen = u32_at(d, off + 3) as usize;
            let stored = if d[off] == FLAG_INLINE && fits_inline(klen, vlen, self.page_size) {
                vlen
            } else {
                OVERFLOW_REF_LEN
            };
            node::leaf_entry_len(klen, stored)
        } else {
            node::branch_entry_len(u16_at(d, off + 8))
        }
    }

    /// Whether an entry was inserted before the last one since the node was made (its inserts
    /// were not all appends).
    pub fn inserted_inside(&self) -> bool {
        self.inserted_inside
    }

    /// Whether some entry may hold a value that spill must move to an overflow run (invariant 6);
    /// when this is false, none does.
    pub fn may_spill(&self) -> bool {
        self.may_spill
    }

    /// Bytes the whole node takes in pages.
    pub fn page_bytes(&self) -> usize {
        self.bytes
    }

    /// Encodes entries `piece` as page `id` into `buf` (one page, whatever it holds: every byte is
    /// written), each entry copied as it is, except that a leaf value too large to stay inline becomes a reference to the next run
    /// of `overflows` (one for each such value, in order).
    pub fn write_page(
        &self,
        piece: Range<usize>,
        id: PageId,
        page_size: u32,
        overflows: &[PageId],
        buf: &mut [u8],
    ) {
        let count = piece.len();
        let kind = if self.leaf {
            PageKind::Leaf
        } else {
            PageKind::Branch
        };
        Header {
            id,
            kind,
            count: u16::try_from(count).expect("a page's entries fit its count"),
            overflow: 0,
        }
        .write(buf);
        let mut off = PAGE_HEADER_LEN + count * SLOT_LEN;
        let mut overflows = overflows.iter();
        // Entries that lie end to end in `data` (a copied page's, in key order) are copied
        // together: `run` is the pending part of `data`, to go to `buf` at `run_to`.
        let (mut run, mut run_to) = (0..0, off);
        for (j, i) in piece.enumerate() {
            let s = PAGE_HEADER_LEN + j * SLOT_LEN;
            buf[s..s + SLOT_LEN].copy_from_slice(&(off as u16).to_le_bytes());
            let Slot { off: from, len, .. } = self.slots[i];
            debug_assert_eq!(len, self.entry_len_at(from), "slot {i}'s length");
            let spilled = self.may_spill && self.leaf && self.data[from] == FLAG_INLINE && {
                let klen = u16_at(&self.data, from + 1);
                !fits_inline(klen, u32_at(&self.data, from + 3) as usize, page_size)
            };
            if !spilled && run.end == from && !run.is_empty() {
                run.end += len;
                off += len;
                continue;
            }
            buf[run_to..run_to + run.len()].copy_from_slice(&self.data[run.clone()]);
            if spilled {
                let entry = &self.data[from..from + len];
                let page = overflows
                    .next()
                    .expect("an overflow run for each large value");
                let head = LEAF_ENTRY_HEADER_LEN + u16_at(entry, 1);
                buf[off] = FLAG_OVERFLOW;
                buf[off + 1..off + head].copy_from_slice(&entry[1..head]);
                buf[off + head..off + head + OVERFLOW_REF_LEN].copy_from_slice(&page.to_le_bytes());
                off += head + OVERFLOW_REF_LEN;
                (run, run_to) = (0..0, off);
            } else {
                (run, run_to) = (from..from + len, off);
                off += len;
            }
            debug_assert!(off <= page_size as usize, "entries overflow page {id}");
        }
        buf[run_to..run_to + run.len()].copy_from_slice(&self.data[run]);
        debug_assert!(off <= page_size as usize, "entries overflow page {id}");
        debug_assert!(overflows.next().is_none(), "an overflow run left unused");
        buf[off..page_size as usize].fill(0);
        page::seal(&mut buf[..page_size as usize]);
    }

    /// Rewrites the live entries end to end once dead bytes are most of `data`.
    fn compact_if_sparse(&mut self) {
        if self.dead > 4096 && self.dead > self.data.len() / 2 {
            self.compact();
        }
    }

    /// Rewrites the live entries end to end, dropping the dead bytes.
    pub fn compact(&mut self) {
        let mut data = Vec::with_capacity(self.data.len() - self.dead);
        for i in 0..self.len() {
            let off = data.len();
            data.extend_from_slice(self.entry(i));
            self.slots[i].off = off;
        }
        self.data = data;
        self.dead = 0;
    }
}

/// Whether a leaf entry with a `key_len`-byte key and a `value_len`-byte value stays inline in its
/// page (else its value goes to an overflow run).
pub(crate) fn fits_inline(key_len: usize, value_len: usize, page_size: u32) -> bool {
    node::leaf_entry_len(key_len, value_len) <= crate::limits::inline_entry_max(page_size)
}

fn encode_child(child: NodeRef) -> u64 {
    match child {
        NodeRef::Page(p) => {
            debug_assert!(p & DIRTY_CHILD == 0, "page id with the dirty bit");
            p
        }
        NodeRef::Dirty(i) => i as u64 | DIRTY_CHILD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_in_key_order_through_inserts_replacements_and_removals() {
        let mut n = Node::default();
        n.reset(true, 4096);
        for k in [b"b", b"d", b"f"] {
            let (i, found) = n.search(k);
            assert!(!found);
            n.insert_leaf(i, k, ValueRef::Inline(k));
        }
        let (i, _) = n.search(b"a");
        n.insert_leaf(i, b"a", ValueRef::Inline(b"1"));
        n.replace_value(2, b"big value");
        n.remove(1);
        let keys: Vec<&[u8]> = (0..n.len()).map(|i| n.key(i)).collect();
        assert_eq!(keys, [b"a", b"d", b"f"]);
        assert_eq!(n.value(1), ValueRef::Inline(b"big value"));
        n.compact();
        assert_eq!(n.value(1), ValueRef::Inline(b"big value"));
        assert_eq!(n.value(0), ValueRef::Inline(b"1"));
        assert_eq!(n.dead, 0);
        let bytes: usize = (0..n.len()).map(|i| n.page_len(i)).sum();
        assert_eq!(n.page_bytes(), bytes);
    }

    /// Search compares the slots' 8-byte key prefixes first (invariant 4): keys that tie on
    /// them, keys shorter than 8 bytes, and keys that differ only by trailing zero bytes must
    /// still be found and kept in byte order.
    #[test]
    fn search_orders_keys_that_tie_on_their_prefix_or_are_short() {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in 0..=10usize {
            for fill in [0u8, 1, 0x7f, 0x80, 0xff] {
                for last in [0u8, 1, 0xff] {
                    let mut k = vec![fill; len];
                    if let Some(l) = k.last_mut() {
                        *l = last;
                    }
                    keys.push(k);
                }
            }
        }
        keys.extend([
            b"prefix-0a".to_vec(),
            b"prefix-0".to_vec(),
            b"prefix-0\0".to_vec(),
        ]);
        keys.sort();
        keys.dedup();
        // Insert in a scrambled order (a fixed permutation: the keys, not a seed, are the test).
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| (i * 7919) % keys.len());
        let mut n = Node::default();
        n.reset(true, 4096);
        for &i in &order {
            let (at, found) = n.search(&keys[i]);
            assert!(!found, "{:?} found before it was inserted", keys[i]);
            n.insert_leaf(at, &keys[i], ValueRef::Inline(b"v"));
        }
        let stored: Vec<&[u8]> = (0..n.len()).map(|i| n.key(i)).collect();
        assert_eq!(stored, keys.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(n.search(k), (i, true), "{k:?}");
        }
        for (a, b) in keys.iter().zip(&keys[1..]) {
            assert!(key_prefix(a) <= key_prefix(b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn a_branch_tells_dirty_children_from_pages() {
        let mut n = Node::default();
        n.reset(false, 4096);
        n.push_branch(b"a", NodeRef::Page(7));
        n.push_branch(b"m", NodeRef::Dirty(3));
        assert_eq!(n.child(0), NodeRef::Page(7));
        assert_eq!(n.child(1), NodeRef::Dirty(3));
        n.set_child(0, NodeRef::Dirty(9));
        n.set_key(1, b"n");
        assert_eq!((n.child(0), n.key(1)), (NodeRef::Dirty(9), &b"n"[..]));
        assert_eq!(n.child(1), NodeRef::Dirty(3));
    }
}
