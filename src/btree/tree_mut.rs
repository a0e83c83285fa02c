//! Copy-on-write changes to a tree, and writing them out at commit.
//!
//! Dirty nodes are kept in page form ([`crate::btree::dirty`]): copying a page into the arena
//! copies its entries' bytes, an insert appends one entry and moves offsets, and spill copies
//! each entry into its page. Emptied nodes and the commit's page buffer are reused by the next
//! node and the next transaction ([`Dirty::into_spare`], [`PageWrites`]).
//!
//! Invariants:
//! 1. A page reachable from a committed meta is never written again. The first write to a node
//!    copies it into the arena ([`touch`]) and records its page as freed by this transaction.
//! 2. Dirty nodes may grow past a page while a transaction runs; they are split only at commit.
//! 3. At commit, [`rebalance`] removes empty nodes and merges dirty nodes under a quarter page
//!    with a sibling (except at the right edge, invariant 6); then [`spill`] writes children
//!    before parents, splitting nodes into pages, and a root that splits gains a new root above
//!    it.
//! 4. A branch's key `i` is never greater than any key under child `i`, and every key under child
//!    `i` is less than key `i + 1`. Spill sets each new separator to its page's actual first key.
//! 5. Every descent over pages on disk ([`touch_path`], [`free_all`]) stops at
//!    [`TREE_DEPTH_MAX`] levels, and a transaction frees each page at most once ([`Dirty::free`]):
//!    a corrupted tree (a branch that points at itself or an ancestor, two branches that share a
//!    child, two leaves that share an overflow run) is an [`crate::Error::Corrupted`], never a
//!    loop or a page freed twice.
//! 6. The *right edge* is the last node of each level (the root, its last child, and so on): where
//!    appends go, as every put to the store's revision tree does. Spill fills the pages of a
//!    node there as full as they go, leaving the last one the rest, and rebalance leaves that last
//!    node small rather than merge it into its full sibling, so appends leave full pages behind
//!    them. Elsewhere, and for a leaf at the edge that took an insert before its last entry (its
//!    inserts were not appends), a node just over a page splits in halves, so that random
//!    inserts do not split again at once. (Halves everywhere left the revision tree's leaves
//!    half full: with 1 KiB values two records to a page of room for three.)

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use crate::btree::cursor::RawCursor;
use crate::btree::dirty::{DIRTY_CHILD, Node};
use crate::btree::node::{self, PageView, ValueRef};
use crate::btree::source::{NodeRef, Pages, Source};
use crate::error::{PageId, Result, corrupted};
use crate::limits::{TREE_DEPTH_MAX, merge_threshold, page_capacity};
use crate::page_file::meta::Proven;
use crate::page_file::page;

/// Buffer bytes of emptied nodes a write transaction hands on to the next one.
const SPARE_BYTES_MAX: usize = 32 << 20;

/// The dirty state of one write transaction, shared by all its trees.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Nodes copied or created by this transaction.
    pub arena: Vec<Node>,
    /// Emptied nodes whose buffers new nodes reuse.
    spare: Vec<Node>,
    /// Page runs this transaction stopped using: (first page, pages).
    pub freed: Vec<(PageId, u64)>,
    /// Every page of `freed`, to refuse a page freed twice (a set of pages rather than an ordered
    /// map of runs: a bulk load frees a page per leaf it touches, and the map's lookups were a
    /// measurable part of each put).
    freed_pages: HashSet<PageId, BuildHasherDefault<PageIdHasher>>,
    /// Spill's scratch: the page bytes of each entry of one node, and where its pages split.
    sizes: Vec<usize>,
    pieces: Vec<Range<usize>>,
    /// Spill's scratch: the overflow runs written for one page's entries.
    overflows: Vec<PageId>,
}

impl Dirty {
    /// An empty state that reuses the nodes `spare` (from [`Dirty::into_spare`]).
    pub fn with_spare(spare: Vec<Node>) -> Dirty {
        Dirty {
            spare,
            ..Dirty::default()
        }
    }

    /// Ends the transaction's use of its nodes: they go back to a spare list (up to
    /// [`SPARE_BYTES_MAX`] of buffers) for the next transaction.
    pub fn into_spare(mut self) -> Vec<Node> {
        let mut bytes: usize = self.spare.iter().map(Node::capacity).sum();
        for n in self.arena.drain(..) {
            let c = n.capacity();
            if c > 0 && bytes + c <= SPARE_BYTES_MAX {
                bytes += c;
                self.spare.push(n);
            }
        }
        self.spare
    }

    /// An empty node, reusing a spare one's buffers when there is one.
    fn take_node(&mut self, leaf: bool, page_size: u32) -> Node {
        let mut n = self.spare.pop().unwrap_or_default();
        n.reset(leaf, page_size);
        n
    }

    /// Gives a node's buffers back for reuse.
    fn recycle(&mut self, n: Node) {
        if n.capacity() > 0 {
            self.spare.push(n);
        }
    }

    /// Adds a node to the arena; returns its index.
    fn push(&mut self, n: Node) -> usize {
        debug_assert!((self.arena.len() as u64) < DIRTY_CHILD);
        self.arena.push(n);
        self.arena.len() - 1
    }

    /// Records that this transaction stops using the run `start..start + len` (already bounded
    /// by the snapshot's pages). A run that shares a page with one freed before means the tree
    /// reaches that page twice: the file is corrupt.
    pub fn free(&mut self, start: PageId, len: u64) -> Result<()> {
        let end = start.saturating_add(len);
        // Checked whole before any page is recorded, so that a refused run records nothing.
        if let Some(twice) = (start..end).find(|p| self.freed_pages.contains(p)) {
            return Err(corrupted(
                twice,
                "the tree reaches this page twice (a cycle, or a page shared by two parents)",
            ));
        }
        self.freed_pages.extend(start..end);
        self.freed.push((start, len));
        Ok(())
    }
}

/// A hasher for page ids: small integers bounded by the file, which one multiplication
/// (Fibonacci hashing) spreads well enough, at a fraction of SipHash's cost.
#[derive(Default)]
struct PageIdHasher(u64);

impl Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

fn too_deep(r: NodeRef) -> crate::error::Error {
    let page = match r {
        NodeRef::Page(p) => p,
        NodeRef::Dirty(_) => 0,
    };
    corrupted(page, "tree is deeper than the limit (a cycle?)")
}

/// The root and entry count of a tree as a write transaction has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeRoot {
    pub root: Option<NodeRef>,
    pub len: u64,
}

/// Hands out pages at commit.
pub(crate) trait Allocate {
    /// A run of `n` contiguous pages.
    fn allocate(&mut self, n: u64) -> Result<PageId>;

    /// Called after each page is encoded into `out` (with the overflow runs of its values): may
    /// write the runs `out` holds to the file and empty it ([`PageWrites::mark_written`]).
    fn encoded(&mut self, out: &mut PageWrites) -> Result<()>;
}

/// Pages written by a commit, encoded end to end into a buffer that the next commit reuses, and
/// written in page order a batch at a time, so that the buffer stays small enough for the CPU's
/// cache to hold it between the encoder's writes and the kernel's copy.
#[derive(Debug, Default)]
pub(crate) struct PageWrites {
    /// Holds the runs in `..used`; past that, bytes of an earlier batch.
    buf: Vec<u8>,
    used: usize,
    /// (first page, pages, offset in `buf`) of each run not written yet.
    runs: Vec<(PageId, u64, usize)>,
    /// The runs of this commit already written, with the checksums they were sealed with.
    written: Vec<Proven>,
    /// The most bytes held at once since the last [`PageWrites::clear`].
    peak: usize,
}

/// Buffer bytes a commit's [`PageWrites`] keeps for the next commit whatever it used.
const PAGE_WRITES_KEPT_MAX: usize = 64 << 20;

impl PageWrites {
    /// Forgets every run, keeping the buffer unless it is large and the commit that just used
    /// it held less than half of it at once (a batch is small, but a large value's overflow run
    /// is held whole). Dropping the buffer made each commit fault in, zero and copy a new one as
    /// it grew.
    pub fn clear(&mut self) {
        let peak = self.peak.max(self.used);
        if self.buf.len() > PAGE_WRITES_KEPT_MAX && peak < self.buf.len() / 2 {
            self.buf = Vec::new();
        }
        self.used = 0;
        self.peak = 0;
        self.runs.clear();
        self.written.clear();
    }

    /// Bytes of runs not written yet.
    pub fn pending_bytes(&self) -> usize {
        self.used
    }

    /// Records the runs held as written (for [`PageWrites::proven`]) and empties the buffer for
    /// the next batch.
    pub fn mark_written(&mut self) {
        for i in 0..self.runs.len() {
            let proof = self.proof(self.runs[i]);
            self.written.push(proof);
        }
        self.runs.clear();
        self.peak = self.peak.max(self.used);
        self.used = 0;
    }

    /// Adds the run of `pages` pages starting at `id` and returns it to be filled. It may hold
    /// an earlier commit's bytes: the encoder writes every byte of it.
    pub fn add(&mut self, id: PageId, pages: u64, page_size: u32) -> &mut [u8] {
        let off = self.used;
        let len = pages as usize * page_size as usize;
        if self.buf.len() < off + len {
            self.buf.resize(off + len, 0);
        }
        self.used = off + len;
        self.runs.push((id, pages, off));
        &mut self.buf[off..off + len]
    }

    /// Sorts the runs by page.
    pub fn sort(&mut self) {
        self.runs.sort_unstable_by_key(|r| r.0);
    }

    /// The runs as (first page, pages, offset of their bytes), in the order added or as sorted.
    pub fn raw_runs(&self) -> impl Iterator<Item = (PageId, u64, usize)> + '_ {
        self.runs.iter().copied()
    }

    /// `len` bytes of the buffer from `off`.
    pub fn bytes(&self, off: usize, len: usize) -> &[u8] {
        &self.buf[off..off + len]
    }

    /// How many runs this commit has, written or not.
    pub fn run_count(&self) -> usize {
        self.written.len() + self.runs.len()
    }

    /// Each run of this commit, written or not, with the checksum it was sealed with, for a
    /// meta's proof (`txn::sync`, rule 2). Every run must be sealed.
    pub fn proven(&self) -> impl Iterator<Item = Proven> + '_ {
        let held = self.runs.iter().map(|&run| self.proof(run));
        self.written.iter().copied().chain(held)
    }

    fn proof(&self, (page, pages, off): (PageId, u64, usize)) -> Proven {
        Proven {
            page,
            pages: u32::try_from(pages).expect("a run of a commit is shorter than 2^32 pages"),
            crc: page::u32_at(&self.buf[off..], page::OFF_CRC).expect("a run holds a header"),
        }
    }
}

/// Copies a node into the arena (once) and returns its arena index.
fn touch(d: &mut Dirty, pages: Pages<'_>, r: NodeRef) -> Result<usize> {
    let id = match r {
        NodeRef::Dirty(i) => return Ok(i),
        NodeRef::Page(id) => id,
    };
    let view = pages.node(id)?;
    let mut node = d.take_node(matches!(view, PageView::Leaf(_)), pages.page_size);
    if let Err(e) = copy_page(&mut node, view, id).and_then(|()| d.free(id, 1)) {
        d.recycle(node);
        return Err(e);
    }
    Ok(d.push(node))
}

/// Copies the entries of page `id` into `node` (empty, of the page's kind), validating each.
fn copy_page(node: &mut Node, view: PageView<'_>, id: PageId) -> Result<()> {
    // The write path searches the copy, so its keys must be in order (as `check` requires of
    // every page): a forged page whose keys are not is a corruption, not a search that misses.
    let out_of_order = || corrupted(id, "keys out of order in the page");
    let mut prev: Option<&[u8]> = None;
    match view {
        PageView::Leaf(l) => node.copy_leaf(&l)?,
        PageView::Branch(b) => {
            for i in 0..b.len() {
                let key = b.key(i)?;
                if prev.is_some_and(|p| p >= key) {
                    return Err(out_of_order());
                }
                prev = Some(key);
                let child = b.child(i)?;
                if child & DIRTY_CHILD != 0 {
                    return Err(corrupted(
                        id,
                        format!("branch entry {i} names page {child}, past any file"),
                    ));
                }
                node.push_branch(key, NodeRef::Page(child));
            }
        }
    }
    Ok(())
}

/// Copies the path from the root to the leaf that holds (or would hold) `key` into the arena and
/// returns the leaf's index.
fn touch_path(d: &mut Dirty, pages: Pages<'_>, t: &mut TreeRoot, key: &[u8]) -> Result<usize> {
    let root = t.root.expect("a path needs a root");
    let mut id = touch(d, pages, root)?;
    t.root = Some(NodeRef::Dirty(id));
    for _ in 1..TREE_DEPTH_MAX {
        let node = &d.arena[id];
        if node.is_leaf() {
            return Ok(id);
        }
        let i = node.child_index(key);
        let child = node.child(i);
        let c = touch(d, pages, child)?;
        if child != NodeRef::Dirty(c) {
            d.arena[id].set_child(i, NodeRef::Dirty(c));
        }
        id = c;
    }
    let node = &d.arena[id];
    if node.is_leaf() {
        Ok(id)
    } else {
        Err(too_deep(node.child(node.child_index(key))))
    }
}

/// Frees the overflow run of a value this transaction drops, once its bounds are checked: a run
/// named by a corrupted leaf must not free the metas or pages past the end.
fn free_value(d: &mut Dirty, pages: Pages<'_>, overflow: Option<(PageId, u32)>) -> Result<()> {
    if let Some((page, len)) = overflow {
        let n = node::overflow_pages(len as usize, pages.page_size);
        pages.run(page, n)?;
        d.free(page, n)?;
    }
    Ok(())
}

/// Stores `value` under `key` (both already validated).
pub(crate) fn insert(
    d: &mut Dirty,
    pages: Pages<'_>,
    t: &mut TreeRoot,
    key: &[u8],
    value: &[u8],
) -> Result<()> {
    if t.root.is_none() {
        let mut n = d.take_node(true, pages.page_size);
        n.push_leaf(key, ValueRef::Inline(value));
        t.root = Some(NodeRef::Dirty(d.push(n)));
        t.len = 1;
        return Ok(());
    }
    let leaf = touch_path(d, pages, t, key)?;
    let node = &mut d.arena[leaf];
    match node.search(key) {
        (i, true) => {
            let old = node.overflow(i);
            node.replace_value(i, value);
            free_value(d, pages, old)?;
        }
        (i, false) => {
            node.insert_leaf(i, key, ValueRef::Inline(value));
            t.len = t.len.checked_add(1).ok_or_else(|| bad_count(t))?;
        }
    }
    Ok(())
}

/// Removes `key`; returns whether it was present. Copies nothing when it is absent.
pub(crate) fn remove(
    d: &mut Dirty,
    pages: Pages<'_>,
    t: &mut TreeRoot,
    key: &[u8],
) -> Result<bool> {
    let src = Source {
        pages,
        arena: &d.arena,
    };
    let mut c = RawCursor::new(src, t.root);
    if c.seek(key)? && c.key()? == Some(key) {
        let root = *t;
        let leaf = touch_path(d, pages, t, key)?;
        let node = &mut d.arena[leaf];
        // The cursor found the key and the path leads to the same leaf, whose keys `touch` found
        // in order: the search cannot miss.
        let (i, found) = node.search(key);
        if !found {
            let reason = "a key the cursor found is not in the leaf its path leads to";
            return Err(corrupted(root_page(&root), reason));
        }
        let old = node.overflow(i);
        node.remove(i);
        free_value(d, pages, old)?;
        t.len = t.len.checked_sub(1).ok_or_else(|| bad_count(t))?;
        return Ok(true);
    }
    Ok(false)
}

/// The tree's root page, to name in an error (0 when the root is a node of this transaction).
fn root_page(t: &TreeRoot) -> PageId {
    match t.root {
        Some(NodeRef::Page(p)) => p,
        _ => 0,
    }
}

/// A tree whose recorded entry count cannot be right (it would pass zero or `u64::MAX`).
fn bad_count(t: &TreeRoot) -> crate::error::Error {
    corrupted(
        root_page(t),
        format!("the tree records {} entries, which cannot be right", t.len),
    )
}

/// Frees every page of a tree (for deleting a whole tree). Each page is freed once: a page
/// reached twice, or a tree deeper than [`TREE_DEPTH_MAX`], is a corruption (see invariant 5).
pub(crate) fn free_all(d: &mut Dirty, pages: Pages<'_>, r: NodeRef) -> Result<()> {
    let mut stack = vec![(r, 1)];
    while let Some((r, depth)) = stack.pop() {
        if depth > TREE_DEPTH_MAX {
            return Err(too_deep(r));
        }
        match r {
            NodeRef::Page(id) => {
                let view = pages.node(id)?;
                d.free(id, 1)?;
                match view {
                    PageView::Leaf(l) => {
                        for i in 0..l.len() {
                            if let ValueRef::Overflow { page, len } = l.value(i)? {
                                free_value(d, pages, Some((page, len)))?;
                            }
                        }
                    }
                    PageView::Branch(b) => {
                        for i in 0..b.len() {
                            stack.push((NodeRef::Page(b.child(i)?), depth + 1));
                        }
                    }
                }
            }
            NodeRef::Dirty(i) => {
                let node = std::mem::take(&mut d.arena[i]);
                for e in 0..node.len() {
                    if node.is_leaf() {
                        free_value(d, pages, node.overflow(e))?;
                    } else {
                        stack.push((node.child(e), depth + 1));
                    }
                }
                d.recycle(node);
            }
        }
    }
    Ok(())
}

/// Writes a tree's dirty nodes to new pages; returns the new root page (`None` when empty).
pub(crate) fn commit_tree(
    d: &mut Dirty,
    pages: Pages<'_>,
    t: &mut TreeRoot,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
) -> Result<()> {
    let Some(NodeRef::Dirty(mut root)) = t.root else {
        return Ok(());
    };
    if !d.arena[root].is_leaf() {
        rebalance(d, pages, root, true)?;
    }
    // A root branch with one child gives way to the child; an empty root empties the tree.
    loop {
        let n = &d.arena[root];
        if n.len() == 0 {
            debug_assert_eq!(t.len, 0, "an empty root with entries counted");
            t.root = None;
            return Ok(());
        }
        if n.is_leaf() || n.len() > 1 {
            break;
        }
        match n.child(0) {
            NodeRef::Dirty(c) => root = c,
            NodeRef::Page(p) => {
                t.root = Some(NodeRef::Page(p));
                return Ok(());
            }
        }
    }
    let mut pieces = d.take_node(false, pages.page_size);
    spill(d, pages, root, alloc, out, &mut pieces, true)?;
    while pieces.len() > 1 {
        let id = d.push(pieces);
        pieces = d.take_node(false, pages.page_size);
        spill(d, pages, id, alloc, out, &mut pieces, true)?;
    }
    t.root = Some(pieces.child(0));
    d.recycle(pieces);
    Ok(())
}

/// Removes empty children of branch `id` and merges small dirty children with a sibling, from the
/// leaves up. `right_edge`: whether `id` is the last node of its level (invariant 6).
fn rebalance(d: &mut Dirty, pages: Pages<'_>, id: usize, right_edge: bool) -> Result<()> {
    // The last child that stays: empty children go below.
    let n = &d.arena[id];
    let last = (0..n.len())
        .rev()
        .find(|&i| !matches!(n.child(i), NodeRef::Dirty(c) if d.arena[c].len() == 0))
        .unwrap_or(0);
    for i in 0..d.arena[id].len() {
        if let NodeRef::Dirty(c) = d.arena[id].child(i)
            && !d.arena[c].is_leaf()
        {
            rebalance(d, pages, c, right_edge && i == last)?;
        }
    }
    let threshold = merge_threshold(pages.page_size);
    let mut i = 0;
    while i < d.arena[id].len() {
        let NodeRef::Dirty(c) = d.arena[id].child(i) else {
            i += 1;
            continue;
        };
        if d.arena[c].len() == 0 {
            d.arena[id].remove(i);
            continue;
        }
        let siblings = d.arena[id].len();
        let edge = right_edge && i + 1 == siblings;
        if siblings == 1 || edge || d.arena[c].page_bytes() >= threshold {
            i += 1;
            continue;
        }
        let (l, r) = if i + 1 < siblings {
            (i, i + 1)
        } else {
            (i - 1, i)
        };
        let left = touch(d, pages, d.arena[id].child(l))?;
        let right = touch(d, pages, d.arena[id].child(r))?;
        d.arena[id].set_child(l, NodeRef::Dirty(left));
        let mut moved = std::mem::take(&mut d.arena[right]);
        if !moved.is_leaf() && moved.len() > 0 {
            // The right node's first key may be stale; the parent's separator bounds it.
            let separator = d.arena[id].key(r).to_vec();
            moved.set_key(0, &separator);
        }
        d.arena[id].remove(r);
        debug_assert_eq!(d.arena[left].is_leaf(), moved.is_leaf(), "siblings differ");
        d.arena[left].append(&moved);
        d.recycle(moved);
        i = l;
    }
    Ok(())
}

/// Splits entries of the given sizes into runs that each fit `cap` bytes, balanced so that a node
/// just over a page splits in halves and a large bulk node packs its pages nearly full; at the
/// tree's right edge, every run as full as it goes and the last one the rest (invariant 6).
/// Writes the runs to `out` (cleared first).
fn split_points(sizes: &[usize], cap: usize, right_edge: bool, out: &mut Vec<Range<usize>>) {
    out.clear();
    let total: usize = sizes.iter().sum();
    if total <= cap {
        out.push(0..sizes.len());
        return;
    }
    let target = match right_edge {
        true => cap,
        false => total.div_ceil(total.div_ceil(cap)),
    };
    let (mut start, mut acc) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        if acc > 0 && (acc + s > cap || acc >= target) {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += s;
    }
    out.push(start..sizes.len());
}

/// Writes dirty node `id` (children first) and adds its pages, with their first keys, to the
/// branch `parent`. `right_edge`: whether `id` is the last node of its level (invariant 6).
fn spill(
    d: &mut Dirty,
    pages: Pages<'_>,
    id: usize,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
    parent: &mut Node,
    right_edge: bool,
) -> Result<()> {
    let mut node = std::mem::take(&mut d.arena[id]);
    let result = if node.is_leaf() {
        write_node(d, pages.page_size, &node, alloc, out, parent, right_edge)
    } else {
        spill_branch(d, pages, &mut node, alloc, out, parent, right_edge)
    };
    d.recycle(node);
    result
}

/// Spills a branch's dirty children, then writes the branch with their new pages in their place:
/// each dirty child's entry becomes the entries of the pages it was written to, and the entries
/// of clean children are left as they are (a large tree's dirty branches have mostly clean
/// children, and rebuilding the branch read and re-encoded each of them).
fn spill_branch(
    d: &mut Dirty,
    pages: Pages<'_>,
    node: &mut Node,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
    parent: &mut Node,
    right_edge: bool,
) -> Result<()> {
    let mut written = d.take_node(false, pages.page_size);
    let mut i = 0;
    while i < node.len() {
        let NodeRef::Dirty(c) = node.child(i) else {
            i += 1;
            continue;
        };
        let edge = right_edge && i + 1 == node.len();
        written.reset(false, pages.page_size);
        if let Err(e) = spill(d, pages, c, alloc, out, &mut written, edge) {
            d.recycle(written);
            return Err(e);
        }
        debug_assert!(written.len() > 0, "a spilled node writes a page");
        node.set_child(i, written.child(0));
        if node.key(i) != written.key(0) {
            node.set_key(i, written.key(0));
        }
        for j in 1..written.len() {
            node.insert_branch(i + j, written.key(j), written.child(j));
        }
        i += written.len();
    }
    d.recycle(written);
    write_node(d, pages.page_size, node, alloc, out, parent, right_edge)
}

/// Writes `node` (a leaf, or a branch whose children are all pages) to as many pages as it
/// needs, and adds them to `parent`.
fn write_node(
    d: &mut Dirty,
    page_size: u32,
    node: &Node,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
    parent: &mut Node,
    right_edge: bool,
) -> Result<()> {
    let cap = page_capacity(page_size);
    let mut pieces = std::mem::take(&mut d.pieces);
    if node.page_bytes() <= cap {
        pieces.clear();
        pieces.push(0..node.len());
    } else {
        d.sizes.clear();
        d.sizes.extend((0..node.len()).map(|i| node.page_len(i)));
        let packed = right_edge && !(node.is_leaf() && node.inserted_inside());
        split_points(&d.sizes, cap, packed, &mut pieces);
    }
    let mut result = Ok(());
    for piece in pieces.iter().cloned() {
        result = write_page(d, page_size, node, piece.clone(), alloc, out)
            .map(|p| parent.push_branch(node.key(piece.start), NodeRef::Page(p)))
            .and_then(|()| alloc.encoded(out));
        if result.is_err() {
            break;
        }
    }
    d.pieces = pieces;
    result
}

/// Writes the entries `piece` of `node` to a new page, and any value too large to stay inline to
/// a new overflow run first; returns the page.
fn write_page(
    d: &mut Dirty,
    page_size: u32,
    node: &Node,
    piece: Range<usize>,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
) -> Result<PageId> {
    d.overflows.clear();
    if node.is_leaf() && node.may_spill() {
        for i in piece.clone() {
            if let ValueRef::Inline(v) = node.value(i)
                && !crate::btree::dirty::fits_inline(node.key(i).len(), v.len(), page_size)
            {
                let n = node::overflow_pages(v.len(), page_size);
                let p = alloc.allocate(n)?;
                node::encode_overflow_into(out.add(p, n, page_size), p, page_size, v);
                d.overflows.push(p);
            }
        }
    }
    let p = alloc.allocate(1)?;
    node.write_page(piece, p, page_size, &d.overflows, out.add(p, 1, page_size));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::split_points;

    #[test]
    fn a_node_just_over_a_page_splits_in_halves_and_a_bulk_node_packs_full() {
        let mut out = Vec::new();
        split_points(&[10; 10], 100, false, &mut out);
        assert_eq!(out, vec![0..10]);
        split_points(&[10; 11], 100, false, &mut out);
        assert_eq!(out, vec![0..6, 6..11]);
        split_points(&[10; 1000], 100, false, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out.iter().all(|r| r.len() == 10));
    }

    #[test]
    fn a_node_at_the_right_edge_fills_its_pages_and_leaves_the_rest_last() {
        let mut out = Vec::new();
        split_points(&[10; 10], 100, true, &mut out);
        assert_eq!(out, vec![0..10]);
        // An append to a full page: the page stays as it was, the new entry starts the next.
        split_points(&[10; 11], 100, true, &mut out);
        assert_eq!(out, vec![0..10, 10..11]);
        split_points(&[10; 995], 100, true, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out[..99].iter().all(|r| r.len() == 10));
        assert_eq!(out[99], 990..995);
        // Entries of uneven sizes: each run as long as fits.
        split_points(&[60, 30, 20, 50, 40, 70], 100, true, &mut out);
        assert_eq!(out, vec![0..2, 2..4, 4..5, 5..6]);
    }
}
