//! Copy-on-write changes to a tree, and writing them out at commit.
//!
//! Invariants:
//! 1. A page reachable from a committed meta is never written again. The first write to a node
//!    copies it into the arena ([`touch`]) and records its page as freed by this transaction.
//! 2. Dirty nodes may grow past a page while a transaction runs; they are split only at commit.
//! 3. At commit, [`rebalance`] removes empty nodes and merges dirty nodes under a quarter page
//!    with a sibling; then [`spill`] writes children before parents, splitting nodes into pages,
//!    and a root that splits gains a new root above it.
//! 4. A branch's key `i` is never greater than any key under child `i`, and every key under child
//!    `i` is less than key `i + 1`. Spill sets each new separator to its page's actual first key.
//! 5. Every descent over pages on disk ([`touch_path`], [`free_all`]) stops at
//!    [`TREE_DEPTH_MAX`] levels, and a transaction frees each page at most once ([`Dirty::free`]):
//!    a corrupted tree (a branch that points at itself or an ancestor, two branches that share a
//!    child, two leaves that share an overflow run) is an [`crate::Error::Corrupted`], never a
//!    loop or a page freed twice.

use crate::btree::cursor::RawCursor;
use crate::btree::node::{self, PageView, ValueRef};
use crate::btree::source::{Node, NodeRef, Pages, Source, Value};
use std::collections::BTreeMap;

use crate::error::{PageId, Result, corrupted};
use crate::limits::{
    OVERFLOW_REF_LEN, TREE_DEPTH_MAX, inline_entry_max, merge_threshold, page_capacity,
};

/// The dirty state of one write transaction, shared by all its trees.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Nodes copied or created by this transaction.
    pub arena: Vec<Node>,
    /// Page runs this transaction stopped using: (first page, pages).
    pub freed: Vec<(PageId, u64)>,
    /// `freed` by first page, to refuse a page freed twice.
    freed_index: BTreeMap<PageId, u64>,
}

impl Dirty {
    /// Records that this transaction stops using the run `start..start + len` (already bounded
    /// by the snapshot's pages). A run that shares a page with one freed before means the tree
    /// reaches that page twice: the file is corrupt.
    pub fn free(&mut self, start: PageId, len: u64) -> Result<()> {
        let end = start.saturating_add(len);
        if let Some((&s, &l)) = self.freed_index.range(..end).next_back()
            && s.saturating_add(l) > start
        {
            return Err(corrupted(
                start.max(s),
                "the tree reaches this page twice (a cycle, or a page shared by two parents)",
            ));
        }
        self.freed_index.insert(start, len);
        self.freed.push((start, len));
        Ok(())
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
}

/// Pages written by a commit, to be sorted and written in page order.
pub(crate) type PageWrites = Vec<(PageId, Vec<u8>)>;

/// Copies a node into the arena (once) and returns its arena index.
fn touch(d: &mut Dirty, pages: Pages<'_>, r: NodeRef) -> Result<usize> {
    let id = match r {
        NodeRef::Dirty(i) => return Ok(i),
        NodeRef::Page(id) => id,
    };
    let node = match pages.node(id)? {
        PageView::Leaf(l) => {
            let mut entries = Vec::with_capacity(l.len());
            for i in 0..l.len() {
                let value = match l.value(i)? {
                    ValueRef::Inline(b) => Value::Bytes(b.to_vec()),
                    ValueRef::Overflow { page, len } => Value::Overflow { page, len },
                };
                entries.push((l.key(i)?.to_vec(), value));
            }
            Node::Leaf(entries)
        }
        PageView::Branch(b) => {
            let mut entries = Vec::with_capacity(b.len());
            for i in 0..b.len() {
                entries.push((b.key(i)?.to_vec(), NodeRef::Page(b.child(i)?)));
            }
            Node::Branch(entries)
        }
    };
    d.free(id, 1)?;
    d.arena.push(node);
    Ok(d.arena.len() - 1)
}

fn branch_index(entries: &[(Vec<u8>, NodeRef)], key: &[u8]) -> usize {
    match entries.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
        Ok(i) => i,
        Err(i) => i.saturating_sub(1),
    }
}

/// Copies the path from the root to the leaf that holds (or would hold) `key` into the arena and
/// returns the leaf's index.
fn touch_path(d: &mut Dirty, pages: Pages<'_>, t: &mut TreeRoot, key: &[u8]) -> Result<usize> {
    let root = t.root.expect("a path needs a root");
    let mut id = touch(d, pages, root)?;
    t.root = Some(NodeRef::Dirty(id));
    for _ in 1..TREE_DEPTH_MAX {
        let (i, child) = match &d.arena[id] {
            Node::Leaf(_) => return Ok(id),
            Node::Branch(entries) => {
                let i = branch_index(entries, key);
                (i, entries[i].1)
            }
        };
        let c = touch(d, pages, child)?;
        if let Node::Branch(entries) = &mut d.arena[id] {
            entries[i].1 = NodeRef::Dirty(c);
        }
        id = c;
    }
    match &d.arena[id] {
        Node::Leaf(_) => Ok(id),
        Node::Branch(entries) => Err(too_deep(entries[branch_index(entries, key)].1)),
    }
}

/// Frees the overflow run of a value this transaction drops, once its bounds are checked: a run
/// named by a corrupted leaf must not free the metas or pages past the end.
fn free_value(d: &mut Dirty, pages: Pages<'_>, v: &Value) -> Result<()> {
    if let Value::Overflow { page, len } = v {
        let n = node::overflow_pages(*len as usize, pages.page_size);
        pages.run(*page, n)?;
        d.free(*page, n)?;
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
    let entry = Value::Bytes(value.to_vec());
    if t.root.is_none() {
        d.arena.push(Node::Leaf(vec![(key.to_vec(), entry)]));
        t.root = Some(NodeRef::Dirty(d.arena.len() - 1));
        t.len = 1;
        return Ok(());
    }
    let leaf = touch_path(d, pages, t, key)?;
    let Node::Leaf(entries) = &mut d.arena[leaf] else {
        unreachable!("path ends at a leaf")
    };
    match entries.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
        Ok(i) => {
            let old = std::mem::replace(&mut entries[i].1, entry);
            free_value(d, pages, &old)?;
        }
        Err(i) => {
            entries.insert(i, (key.to_vec(), entry));
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
        let leaf = touch_path(d, pages, t, key)?;
        let Node::Leaf(entries) = &mut d.arena[leaf] else {
            unreachable!("path ends at a leaf")
        };
        let i = entries
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .expect("key was found");
        let (_, old) = entries.remove(i);
        free_value(d, pages, &old)?;
        t.len = t.len.checked_sub(1).ok_or_else(|| bad_count(t))?;
        return Ok(true);
    }
    Ok(false)
}

/// A tree whose recorded entry count cannot be right (it would pass zero or `u64::MAX`).
fn bad_count(t: &TreeRoot) -> crate::error::Error {
    let page = match t.root {
        Some(NodeRef::Page(p)) => p,
        _ => 0,
    };
    corrupted(
        page,
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
                                free_value(d, pages, &Value::Overflow { page, len })?;
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
            NodeRef::Dirty(i) => match std::mem::replace(&mut d.arena[i], Node::Leaf(Vec::new())) {
                Node::Leaf(entries) => {
                    for (_, v) in &entries {
                        free_value(d, pages, v)?;
                    }
                }
                Node::Branch(entries) => {
                    stack.extend(entries.into_iter().map(|(_, c)| (c, depth + 1)))
                }
            },
        }
    }
    Ok(())
}

/// Whether a value is small enough to stay in its leaf.
fn fits_inline(key: &[u8], value: &[u8], page_size: u32) -> bool {
    node::leaf_entry_len(key.len(), value.len()) <= inline_entry_max(page_size)
}

/// Bytes each leaf entry takes in its page: inline, or with an overflow reference.
fn entry_sizes(entries: &[(Vec<u8>, Value)], page_size: u32) -> Vec<usize> {
    let stored = |k: &[u8], v: &Value| match v {
        Value::Bytes(b) if fits_inline(k, b, page_size) => b.len(),
        _ => OVERFLOW_REF_LEN,
    };
    entries
        .iter()
        .map(|(k, v)| node::leaf_entry_len(k.len(), stored(k, v)))
        .collect()
}

fn node_size(n: &Node, page_size: u32) -> usize {
    match n {
        Node::Leaf(e) => entry_sizes(e, page_size).iter().sum(),
        Node::Branch(e) => e.iter().map(|(k, _)| node::branch_entry_len(k.len())).sum(),
    }
}

fn node_len(n: &Node) -> usize {
    match n {
        Node::Leaf(e) => e.len(),
        Node::Branch(e) => e.len(),
    }
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
    if matches!(d.arena[root], Node::Branch(_)) {
        rebalance(d, pages, root)?;
    }
    // A root branch with one child gives way to the child; an empty root empties the tree.
    loop {
        match &d.arena[root] {
            Node::Branch(e) if e.len() == 1 => match e[0].1 {
                NodeRef::Dirty(c) => root = c,
                NodeRef::Page(p) => {
                    t.root = Some(NodeRef::Page(p));
                    return Ok(());
                }
            },
            n if node_len(n) == 0 => {
                debug_assert_eq!(t.len, 0, "an empty root with entries counted");
                t.root = None;
                return Ok(());
            }
            _ => break,
        }
    }
    let mut pieces = spill(d, pages, root, alloc, out)?;
    while pieces.len() > 1 {
        let entries = pieces
            .into_iter()
            .map(|(k, p)| (k, NodeRef::Page(p)))
            .collect();
        d.arena.push(Node::Branch(entries));
        pieces = spill(d, pages, d.arena.len() - 1, alloc, out)?;
    }
    t.root = Some(NodeRef::Page(pieces[0].1));
    Ok(())
}

/// Removes empty children of branch `id` and merges small dirty children with a sibling, from the
/// leaves up.
fn rebalance(d: &mut Dirty, pages: Pages<'_>, id: usize) -> Result<()> {
    let Node::Branch(mut entries) = std::mem::replace(&mut d.arena[id], Node::Leaf(Vec::new()))
    else {
        unreachable!("rebalance a branch")
    };
    for (_, child) in &entries {
        if let NodeRef::Dirty(c) = *child
            && matches!(d.arena[c], Node::Branch(_))
        {
            rebalance(d, pages, c)?;
        }
    }
    let threshold = merge_threshold(pages.page_size);
    let mut i = 0;
    while i < entries.len() {
        let NodeRef::Dirty(c) = entries[i].1 else {
            i += 1;
            continue;
        };
        if node_len(&d.arena[c]) == 0 {
            entries.remove(i);
            continue;
        }
        let size = node_size(&d.arena[c], pages.page_size);
        if size >= threshold || entries.len() == 1 {
            i += 1;
            continue;
        }
        let (l, r) = if i + 1 < entries.len() {
            (i, i + 1)
        } else {
            (i - 1, i)
        };
        let left = touch(d, pages, entries[l].1)?;
        let right = touch(d, pages, entries[r].1)?;
        entries[l].1 = NodeRef::Dirty(left);
        let moved = std::mem::replace(&mut d.arena[right], Node::Leaf(Vec::new()));
        let separator = entries.remove(r).0;
        match (&mut d.arena[left], moved) {
            (Node::Leaf(a), Node::Leaf(b)) => a.extend(b),
            (Node::Branch(a), Node::Branch(mut b)) => {
                // The right node's first key may be stale; the parent's separator bounds it.
                if let Some(first) = b.first_mut() {
                    first.0 = separator;
                }
                a.extend(b);
            }
            _ => unreachable!("siblings have the same height"),
        }
        i = l;
    }
    d.arena[id] = Node::Branch(entries);
    Ok(())
}

/// Splits entries of the given sizes into runs that each fit `cap` bytes, balanced so that a node
/// just over a page splits in halves and a large bulk node packs its pages nearly full.
fn split_points(sizes: &[usize], cap: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = sizes.iter().sum();
    if total <= cap {
        return std::iter::once(0..sizes.len()).collect();
    }
    let target = total.div_ceil(total.div_ceil(cap));
    let mut out = Vec::new();
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
    out
}

/// Writes dirty node `id` (children first) and returns its pages with their first keys.
fn spill(
    d: &mut Dirty,
    pages: Pages<'_>,
    id: usize,
    alloc: &mut dyn Allocate,
    out: &mut PageWrites,
) -> Result<Vec<(Vec<u8>, PageId)>> {
    let page_size = pages.page_size;
    let cap = page_capacity(page_size);
    let node = std::mem::replace(&mut d.arena[id], Node::Leaf(Vec::new()));
    let mut result = Vec::new();
    match node {
        Node::Leaf(mut entries) => {
            for (k, v) in entries.iter_mut() {
                if let Value::Bytes(b) = v
                    && !fits_inline(k, b, page_size)
                {
                    let n = node::overflow_pages(b.len(), page_size);
                    let p = alloc.allocate(n)?;
                    out.push((p, node::encode_overflow(p, page_size, b)));
                    *v = Value::Overflow {
                        page: p,
                        len: b.len() as u32,
                    };
                }
            }
            let sizes = entry_sizes(&entries, page_size);
            for piece in split_points(&sizes, cap) {
                let p = alloc.allocate(1)?;
                let slice = &entries[piece];
                out.push((
                    p,
                    node::encode_leaf(
                        p,
                        page_size,
                        slice.iter().map(|(k, v)| (k.as_slice(), v.as_ref())),
                    ),
                ));
                result.push((slice[0].0.clone(), p));
            }
        }
        Node::Branch(entries) => {
            let mut flat: Vec<(Vec<u8>, PageId)> = Vec::with_capacity(entries.len());
            for (k, child) in entries {
                match child {
                    NodeRef::Page(p) => flat.push((k, p)),
                    NodeRef::Dirty(c) => flat.extend(spill(d, pages, c, alloc, out)?),
                }
            }
            let sizes: Vec<usize> = flat
                .iter()
                .map(|(k, _)| node::branch_entry_len(k.len()))
                .collect();
            for piece in split_points(&sizes, cap) {
                let p = alloc.allocate(1)?;
                let slice = &flat[piece];
                out.push((
                    p,
                    node::encode_branch(
                        p,
                        page_size,
                        slice.iter().map(|(k, c)| (k.as_slice(), *c)),
                    ),
                ));
                result.push((slice[0].0.clone(), p));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::split_points;

    #[test]
    fn a_node_just_over_a_page_splits_in_halves_and_a_bulk_node_packs_full() {
        assert_eq!(split_points(&[10; 10], 100), vec![0..10]);
        assert_eq!(split_points(&[10; 11], 100), vec![0..6, 6..11]);
        let bulk = split_points(&[10; 1000], 100);
        assert_eq!(bulk.len(), 100);
        assert!(bulk.iter().all(|r| r.len() == 10));
    }
}
