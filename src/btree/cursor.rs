//! A cursor over a tree: a stack of (node, index) from the root to a leaf entry, and double-ended
//! range iteration built from two cursors that meet in the middle.
//!
//! A corrupted tree can make a walk endless without any descent passing [`TREE_DEPTH_MAX`]: a
//! subtree shared by many parents, at every level, is visited a number of times exponential in
//! the depth. So a cursor that steps from one leaf to the next checks that the keys go on rising
//! across leaves (the new leaf's first key past the old leaf's last, its own last not below its
//! first), and refuses an empty leaf page below the root (commits never write one): a leaf reached
//! a second time is then a [`crate::Error::Corrupted`] at once. Two key reads per leaf, none per
//! entry.

use std::ops::{Bound, RangeBounds};

use crate::btree::node::PageView;
use crate::btree::source::{NodeAccess, NodeRef, Source};
use crate::error::{PageId, Result, corrupted};
use crate::limits::TREE_DEPTH_MAX;

/// A position in a tree. Valid when the top of the stack is a leaf and its index is in range.
#[derive(Clone, Debug)]
pub(crate) struct RawCursor<'a> {
    src: Source<'a>,
    root: Option<NodeRef>,
    stack: Vec<(NodeAccess<'a>, usize)>,
}

impl<'a> RawCursor<'a> {
    pub fn new(src: Source<'a>, root: Option<NodeRef>) -> RawCursor<'a> {
        RawCursor {
            src,
            root,
            stack: Vec::with_capacity(8),
        }
    }

    /// The entry under the cursor, with its value resolved, or `None` when unpositioned.
    pub fn current(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        match self.stack.last() {
            Some((node, i)) if node.is_leaf() && *i < node.len() => {
                let (key, value) = node.key_value(*i)?;
                Ok(Some((key, self.src.pages.value(value)?)))
            }
            _ => Ok(None),
        }
    }

    /// The page under the cursor, for error reports (0 for a dirty node or no position).
    pub fn page(&self) -> PageId {
        match self.stack.last() {
            Some((NodeAccess::Page(PageView::Leaf(l)), _)) => l.id(),
            Some((NodeAccess::Page(PageView::Branch(b)), _)) => b.id(),
            _ => 0,
        }
    }

    /// The key under the cursor.
    pub fn key(&self) -> Result<Option<&'a [u8]>> {
        match self.stack.last() {
            Some((node, i)) if node.is_leaf() && *i < node.len() => Ok(Some(node.key(*i)?)),
            _ => Ok(None),
        }
    }

    fn push(&mut self, r: NodeRef, at_end: bool) -> Result<NodeAccess<'a>> {
        if self.stack.len() >= TREE_DEPTH_MAX {
            let page = match r {
                NodeRef::Page(p) => p,
                NodeRef::Dirty(_) => 0,
            };
            return Err(corrupted(page, "tree is deeper than the limit (a cycle?)"));
        }
        let node = self.src.node(r)?;
        let i = if at_end {
            node.len().saturating_sub(1)
        } else {
            0
        };
        self.stack.push((node, i));
        Ok(node)
    }

    /// Descends from the top of the stack to a leaf, always taking the first (or last) child.
    fn descend_edge(&mut self, last: bool) -> Result<()> {
        loop {
            let (node, i) = *self.stack.last().expect("descend from a node");
            if node.is_leaf() {
                return Ok(());
            }
            self.push(node.child(i)?, last)?;
        }
    }

    /// Moves to the first entry. Returns whether there is one.
    pub fn first(&mut self) -> Result<bool> {
        self.edge(false)
    }

    /// Moves to the last entry. Returns whether there is one.
    pub fn last(&mut self) -> Result<bool> {
        self.edge(true)
    }

    fn edge(&mut self, last: bool) -> Result<bool> {
        self.stack.clear();
        let Some(root) = self.root else {
            return Ok(false);
        };
        self.push(root, last)?;
        self.descend_edge(last)?;
        self.settle(!last)
    }

    /// Descends towards `key`, leaving the leaf index at the first key not less than `key`.
    /// Returns whether that key is equal.
    fn descend_to(&mut self, key: &[u8]) -> Result<bool> {
        self.stack.clear();
        let Some(root) = self.root else {
            return Ok(false);
        };
        let mut node = self.push(root, false)?;
        loop {
            if node.is_leaf() {
                let (i, found) = node.search(key)?;
                self.stack.last_mut().expect("leaf").1 = i;
                return Ok(found);
            }
            let i = node.child_index(key)?;
            self.stack.last_mut().expect("branch").1 = i;
            node = self.push(node.child(i)?, false)?;
        }
    }

    /// Moves to the first entry with a key not less than `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.descend_to(key)?;
        self.settle(true)
    }

    /// Moves to the last entry with a key not greater than `key` (or less than, if not `inclusive`).
    pub fn seek_back(&mut self, key: &[u8], inclusive: bool) -> Result<bool> {
        let found = self.descend_to(key)?;
        if found && inclusive {
            return Ok(true);
        }
        self.prev()
    }

    /// If the cursor sits past the end of a leaf (or in an empty one), moves it to the next valid
    /// entry (forward) or back to the previous one. Returns whether it is valid.
    fn settle(&mut self, forward: bool) -> Result<bool> {
        match self.stack.last() {
            None => Ok(false),
            Some((node, i)) if *i < node.len() => Ok(true),
            Some(_) if forward => self.next_leaf(),
            Some(_) => self.prev(),
        }
    }

    /// Moves to the next entry. Returns whether there is one.
    pub fn next(&mut self) -> Result<bool> {
        match self.stack.last_mut() {
            None => return Ok(false),
            Some((node, i)) => {
                if *i + 1 < node.len() {
                    *i += 1;
                    return Ok(true);
                }
            }
        }
        self.next_leaf()
    }

    /// Climbs to the nearest ancestor with a later child and descends to that child's first leaf
    /// entry; skips empty leaves.
    fn next_leaf(&mut self) -> Result<bool> {
        let mut bound = self.leaf_key(true)?;
        loop {
            self.stack.pop();
            loop {
                let Some((node, i)) = self.stack.last_mut() else {
                    return Ok(false);
                };
                if *i + 1 < node.len() {
                    *i += 1;
                    break;
                }
                self.stack.pop();
            }
            self.descend_edge(false)?;
            if self.entered_leaf(&mut bound, true)? {
                return Ok(true);
            }
        }
    }

    /// The last (or first) key of the leaf under the cursor, if it has one.
    fn leaf_key(&self, last: bool) -> Result<Option<&'a [u8]>> {
        match self.stack.last() {
            Some((node, _)) if node.is_leaf() && node.len() > 0 => {
                let i = if last { node.len() - 1 } else { 0 };
                node.key(i).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Checks the leaf just descended to against `bound`, the nearest key of the leaves left
    /// behind (see the module docs), and moves the bound to its far end. Returns whether the leaf
    /// has entries.
    fn entered_leaf(&mut self, bound: &mut Option<&'a [u8]>, forward: bool) -> Result<bool> {
        let (node, _) = *self.stack.last().expect("descended to a leaf");
        if node.len() == 0 {
            if self.stack.len() > 1 && matches!(node, NodeAccess::Page(_)) {
                return Err(corrupted(self.page(), "an empty leaf page below the root"));
            }
            return Ok(false);
        }
        let (near, far) = if forward {
            (node.key(0)?, node.key(node.len() - 1)?)
        } else {
            (node.key(node.len() - 1)?, node.key(0)?)
        };
        let rising = |a: &[u8], b: &[u8]| if forward { a < b } else { a > b };
        if bound.is_some_and(|b| !rising(b, near)) || rising(far, near) {
            return Err(corrupted(
                self.page(),
                "keys out of order between leaves (a page reached twice?)",
            ));
        }
        *bound = Some(far);
        Ok(true)
    }

    /// Moves to the previous entry. Returns whether there is one.
    pub fn prev(&mut self) -> Result<bool> {
        match self.stack.last_mut() {
            None => return Ok(false),
            Some((node, i)) => {
                if *i > 0 && node.len() > 0 {
                    *i = (*i).min(node.len()) - 1;
                    return Ok(true);
                }
            }
        }
        let mut bound = self.leaf_key(false)?;
        loop {
            self.stack.pop();
            loop {
                let Some((_, i)) = self.stack.last_mut() else {
                    return Ok(false);
                };
                if *i > 0 {
                    *i -= 1;
                    break;
                }
                self.stack.pop();
            }
            self.descend_edge(true)?;
            if self.entered_leaf(&mut bound, false)? {
                return Ok(true);
            }
        }
    }
}

/// A double-ended iterator over the entries of a tree whose keys fall in a range, in key order.
///
/// Keys and values borrow from the transaction: no copies are made.
pub struct Range<'a> {
    front: RawCursor<'a>,
    back: RawCursor<'a>,
    /// The key under each cursor (front, back) as last read, `None` once it has moved: a step
    /// compares with the other cursor's key, which a run of steps one way does not change.
    keys: [Option<&'a [u8]>; 2],
    /// Set once the two cursors have met (or an error ended the iteration).
    done: bool,
    started: bool,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
}

impl<'a> Range<'a> {
    pub(crate) fn new<K: AsRef<[u8]> + ?Sized>(
        src: Source<'a>,
        root: Option<NodeRef>,
        range: impl RangeBounds<K>,
    ) -> Range<'a> {
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Range {
            front: RawCursor::new(src, root),
            back: RawCursor::new(src, root),
            keys: [None; 2],
            done: false,
            started: false,
            start: owned(range.start_bound()),
            end: owned(range.end_bound()),
        }
    }

    /// Positions both cursors on first use, so building a range cannot fail.
    fn start(&mut self) -> Result<()> {
        self.started = true;
        let front_ok = match &self.start {
            Bound::Unbounded => self.front.first()?,
            Bound::Included(k) => self.front.seek(k)?,
            Bound::Excluded(k) => {
                let k = k.clone();
                self.front.seek(&k)? && (self.front.key()? != Some(&k[..]) || self.front.next()?)
            }
        };
        let back_ok = match &self.end {
            Bound::Unbounded => self.back.last()?,
            Bound::Included(k) => self.back.seek_back(k, true)?,
            Bound::Excluded(k) => self.back.seek_back(k, false)?,
        };
        let crossed = match (self.front.key()?, self.back.key()?) {
            (Some(f), Some(b)) => f > b,
            _ => true,
        };
        self.done = !front_ok || !back_ok || crossed;
        Ok(())
    }

    fn step(&mut self, forward: bool) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if !self.started {
            self.start()?;
        }
        if self.done {
            return Ok(None);
        }
        let [front_key, back_key] = &mut self.keys;
        let (this, this_key, other, other_key) = if forward {
            (&mut self.front, front_key, &self.back, back_key)
        } else {
            (&mut self.back, back_key, &self.front, front_key)
        };
        // The two cursors start in order and stop when they meet, so one can only run off the tree
        // or pass the other when keys are out of order: bytes on disk are bad.
        let lost = |page| corrupted(page, "range cursors passed each other: keys out of order");
        let Some(entry) = this.current()? else {
            return Err(lost(this.page()));
        };
        let other_key = match *other_key {
            Some(k) => k,
            None => {
                let Some(k) = other.key()? else {
                    return Err(lost(this.page()));
                };
                *other_key = Some(k);
                k
            }
        };
        let passed = if forward {
            entry.0 > other_key
        } else {
            entry.0 < other_key
        };
        if passed {
            return Err(lost(this.page()));
        }
        if entry.0 == other_key {
            self.done = true;
        } else {
            *this_key = None;
            let moved = if forward { this.next()? } else { this.prev()? };
            if !moved {
                return Err(lost(this.page()));
            }
        }
        Ok(Some(entry))
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.step(true);
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let r = self.step(false);
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}

/// Looks a key up, returning its value. Descends without a cursor, so a lookup allocates nothing.
pub(crate) fn get<'a>(
    src: Source<'a>,
    root: Option<NodeRef>,
    key: &[u8],
) -> Result<Option<&'a [u8]>> {
    let Some(mut r) = root else { return Ok(None) };
    for _ in 0..TREE_DEPTH_MAX {
        let node = src.node(r)?;
        if node.is_leaf() {
            let (i, found) = node.search(key)?;
            return if found {
                src.pages.value(node.value(i)?).map(Some)
            } else {
                Ok(None)
            };
        }
        r = node.child(node.child_index(key)?)?;
    }
    let page = match r {
        NodeRef::Page(p) => p,
        NodeRef::Dirty(_) => 0,
    };
    Err(corrupted(page, "tree is deeper than the limit (a cycle?)"))
}
