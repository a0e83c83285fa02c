//! The difference between two snapshots of one file, at a cost that follows what changed rather
//! than the size of the trees.
//!
//! Why page ids: the B+tree is copy-on-write, so a commit writes every page it changes (and every
//! page above it) to a new page and leaves every other page where it was. While the older
//! snapshot is pinned (a registered reader), no page it can reach is freed for reuse, so a page id
//! reachable from both snapshots holds the same bytes in both, and so does the whole subtree under
//! it. Two trees are diffed by walking them level by level together and dropping every page id
//! that both levels hold: what is left are the pages some commit rewrote, and the entries of the
//! leaves left at the bottom are the candidates, compared key by key.
//!
//! Invariants:
//! 1. The older snapshot is pinned for as long as the difference is used (the caller's reader).
//! 2. Every level of a tree is at one height (a B+tree is balanced), so a page shared by both
//!    trees is at the same height in both; the taller tree is walked down first until the two
//!    levels are at the same height. A branch where a leaf should be, or a leaf where a branch
//!    should be, is corruption.
//! 3. Every page read is verified (as the bulk copy does), and the keys of the leaves left at the
//!    bottom must be strictly increasing: a page reached twice, or keys out of order, are
//!    corruption.

use std::collections::HashSet;

use crate::btree::node::{PageView, ValueRef};
use crate::btree::source::Pages;
use crate::error::{PageId, Result, corrupted};
use crate::limits::TREE_DEPTH_MAX;
use crate::txn::catalog::Descriptor;

/// One side of a diff: a tree's pages and root (`None` for an empty or missing tree).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Side<'a> {
    pub pages: Pages<'a>,
    pub root: Option<PageId>,
}

/// A key whose value differs: `None` where the key is absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delta<'a> {
    pub key: &'a [u8],
    pub old: Option<ValueRef<'a>>,
    pub new: Option<ValueRef<'a>>,
}

/// What changed in one named tree.
#[derive(Debug)]
pub(crate) enum TreeChange<'a> {
    /// The tree is gone.
    Deleted,
    /// The tree exists in the newer snapshot (perhaps new, perhaps empty), with these keys put
    /// (to the newer value) or deleted (`None`).
    Changed(Vec<(&'a [u8], Option<&'a [u8]>)>),
}

/// Every named tree that differs between `old` and `new` (catalog roots), with what changed.
pub(crate) fn catalog<'a>(old: Side<'a>, new: Side<'a>) -> Result<Vec<(&'a [u8], TreeChange<'a>)>> {
    let mut changes = Vec::new();
    for d in deltas(old, new)? {
        let descriptor = |side: Side<'a>, v: Option<ValueRef<'a>>| -> Result<Option<Descriptor>> {
            let Some(v) = v else { return Ok(None) };
            let page = side.root.unwrap_or(0);
            match v {
                ValueRef::Inline(raw) => Descriptor::decode(raw, page).map(Some),
                ValueRef::Overflow { .. } => {
                    Err(corrupted(page, "a tree descriptor in an overflow run"))
                }
            }
        };
        let before = descriptor(old, d.old)?;
        let Some(after) = descriptor(new, d.new)? else {
            changes.push((d.key, TreeChange::Deleted));
            continue;
        };
        let tree = |pages: Pages<'a>, desc: Option<Descriptor>| Side {
            pages,
            root: desc.and_then(|d| (d.root != 0).then_some(d.root)),
        };
        let entries = deltas(tree(old.pages, before), tree(new.pages, Some(after)))?
            .into_iter()
            .filter_map(|d| match d.new {
                None => Some(Ok((d.key, None))),
                Some(v) if d.old.is_some_and(|o| same(o, v)) => None,
                Some(v) => Some(new.pages.value(v).map(|v| (d.key, Some(v)))),
            })
            .collect::<Result<_>>()?;
        changes.push((d.key, TreeChange::Changed(entries)));
    }
    Ok(changes)
}

/// Whether two stored values are the same. An overflow run at the same page is the same run
/// (invariant 1); a different run may hold equal bytes, and is then copied again, which is
/// harmless.
fn same(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::Inline(a), ValueRef::Inline(b)) => a == b,
        (ValueRef::Overflow { page: p, len: l }, ValueRef::Overflow { page: q, len: m }) => {
            p == q && l == m
        }
        _ => false,
    }
}

/// The keys of two trees whose entries differ, in key order (a key with the same inline value on
/// both sides may be among them: the caller compares).
pub(crate) fn deltas<'a>(old: Side<'a>, new: Side<'a>) -> Result<Vec<Delta<'a>>> {
    let mut o = Level::new(old)?;
    let mut n = Level::new(new)?;
    // Invariant 2: walk the taller one down until the two levels are at the same height (or, if
    // the other tree is empty, down to its leaves).
    while o.height > n.height.max(1) {
        o.descend()?;
    }
    while n.height > o.height.max(1) {
        n.descend()?;
    }
    while o.height > 0 && n.height > 0 {
        let shared: HashSet<PageId> = o.pages.iter().copied().collect();
        let both: HashSet<PageId> = n
            .pages
            .iter()
            .copied()
            .filter(|p| shared.contains(p))
            .collect();
        o.pages.retain(|p| !both.contains(p));
        n.pages.retain(|p| !both.contains(p));
        if o.height == 1 {
            break;
        }
        o.descend()?;
        n.descend()?;
    }
    let (old, new) = (o.entries()?, n.entries()?);
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let delta = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                i += 1;
                j += 1;
                Delta {
                    key: a.0,
                    old: Some(a.1),
                    new: Some(b.1),
                }
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                i += 1;
                Delta {
                    key: a.0,
                    old: Some(a.1),
                    new: None,
                }
            }
            (Some(a), None) => {
                i += 1;
                Delta {
                    key: a.0,
                    old: Some(a.1),
                    new: None,
                }
            }
            (_, Some(b)) => {
                j += 1;
                Delta {
                    key: b.0,
                    old: None,
                    new: Some(b.1),
                }
            }
            (None, None) => unreachable!("one side has entries left"),
        };
        out.push(delta);
    }
    Ok(out)
}

/// One level of a tree being walked down: its pages in key order, and their height (1 for
/// leaves, 0 for an empty tree).
struct Level<'a> {
    pages_of: Pages<'a>,
    pages: Vec<PageId>,
    height: usize,
}

impl<'a> Level<'a> {
    fn new(side: Side<'a>) -> Result<Level<'a>> {
        let Some(root) = side.root else {
            return Ok(Level {
                pages_of: side.pages,
                pages: Vec::new(),
                height: 0,
            });
        };
        // The height: down the first child of every branch.
        let mut height = 1;
        let mut id = root;
        while let PageView::Branch(b) = side.pages.node(id)? {
            if height >= TREE_DEPTH_MAX {
                return Err(corrupted(root, "tree deeper than the limit"));
            }
            if b.len() == 0 {
                return Err(corrupted(id, "an empty branch"));
            }
            id = b.child(0)?;
            height += 1;
        }
        Ok(Level {
            pages_of: side.pages,
            pages: vec![root],
            height,
        })
    }

    /// Replaces every page of the level (all branches) by its children.
    fn descend(&mut self) -> Result<()> {
        let mut below = Vec::with_capacity(self.pages.len() * 8);
        for &id in &self.pages {
            match self.pages_of.node(id)? {
                PageView::Branch(b) => {
                    for i in 0..b.len() {
                        below.push(b.child(i)?);
                    }
                }
                PageView::Leaf(_) => return Err(corrupted(id, "a leaf above the leaf level")),
            }
        }
        self.pages = below;
        self.height -= 1;
        Ok(())
    }

    /// The entries of the level's pages (all leaves), in key order.
    fn entries(&self) -> Result<Vec<(&'a [u8], ValueRef<'a>)>> {
        let mut out: Vec<(&'a [u8], ValueRef<'a>)> = Vec::new();
        for &id in &self.pages {
            let PageView::Leaf(leaf) = self.pages_of.node(id)? else {
                return Err(corrupted(id, "a branch at the leaf level"));
            };
            for i in 0..leaf.len() {
                let key = leaf.key(i)?;
                if out.last().is_some_and(|(prev, _)| *prev >= key) {
                    return Err(corrupted(
                        id,
                        format!("leaf keys out of order at entry {i}"),
                    ));
                }
                out.push((key, leaf.value(i)?));
            }
        }
        Ok(out)
    }
}
