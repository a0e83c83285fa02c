//! The checker: every page reachable exactly once or free exactly once, keys in order, checksums
//! valid, entry counts right. One checker serves the CLI, strict mode and every test.
//!
//! The same walk gathers the figures for [`crate::Stats`] and records what each page is used for,
//! which [`crate::PageMap`] shows.

use std::fmt;

use crate::btree::node::{PageView, ValueRef};
use crate::btree::source::Pages;
use crate::error::{Error, PageId, Result};
use crate::inspect::PageUse;
use crate::limits::{PAGE_HEADER_LEN, TREE_DEPTH_MAX};
use crate::page_file::freelist::chain;
use crate::page_file::page::{self, PageKind};
use crate::stats::{Stats, TreeStats};
use crate::txn::catalog::Descriptor;
use crate::txn::db::{Db, Snapshot};

/// One thing the checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The page concerned, when there is one.
    pub page: Option<PageId>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(p) => write!(f, "page {p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// The commit checked.
    pub txid: u64,
    /// Pages examined (reachable or free).
    pub pages_checked: u64,
    /// Every problem found; empty when the database is sound.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(
                f,
                "ok: commit {}, {} pages checked",
                self.txid, self.pages_checked
            );
        }
        write!(
            f,
            "{} problem(s) at commit {}:",
            self.problems.len(),
            self.txid
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// The walk over one snapshot.
struct Walker<'a> {
    pages: Pages<'a>,
    /// The kind of use of each page: 0 unseen, else a `PageKind` or `FREE`.
    seen: Vec<u8>,
    problems: Vec<Problem>,
    stats: Stats,
}

const FREE: u8 = 0xff;
/// Stop listing problems after this many; the rest are counted in one line.
const PROBLEMS_MAX: usize = 1000;

impl<'a> Walker<'a> {
    fn problem(&mut self, page: Option<PageId>, message: impl Into<String>) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(Problem {
                page,
                message: message.into(),
            });
        }
    }

    /// Marks a run as used by `kind`; reports pages already used or out of range.
    fn mark(&mut self, id: PageId, len: u64, kind: u8) -> bool {
        if id < 2 || id.saturating_add(len) > self.pages.page_count {
            self.problem(
                Some(id),
                format!("run of {len} pages lies outside the database"),
            );
            return false;
        }
        for p in id..id + len {
            let prev = self.seen[p as usize];
            if prev != 0 {
                let what = if prev == FREE || kind == FREE {
                    "both in use and free"
                } else {
                    "reachable twice"
                };
                self.problem(Some(p), format!("page is {what}"));
                return false;
            }
            self.seen[p as usize] = kind;
        }
        true
    }

    fn verify(&mut self, id: PageId, len: u64) -> bool {
        match self
            .pages
            .run(id, len)
            .and_then(|run| page::verify(run, id))
        {
            Ok(()) => true,
            Err(Error::Corrupted { page, reason }) => {
                self.problem(Some(page), reason);
                false
            }
            Err(e) => {
                self.problem(Some(id), e.to_string());
                false
            }
        }
    }

    /// Walks a tree from `root`, checking that every key lies in `[lo, hi)` and every leaf is at
    /// the same depth. Returns the entries counted.
    fn tree(&mut self, root: PageId, stats: &mut TreeStats) -> u64 {
        let mut leaf_depth = None;
        self.node(root, None, None, 1, &mut leaf_depth, stats)
    }

    fn node(
        &mut self,
        id: PageId,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        leaf_depth: &mut Option<usize>,
        stats: &mut TreeStats,
    ) -> u64 {
        if depth > TREE_DEPTH_MAX {
            self.problem(Some(id), "tree deeper than the limit");
            return 0;
        }
        let pages = self.pages;
        let view = match pages.node(id) {
            Ok(v) => v,
            Err(e) => {
                self.problem(Some(id), e.to_string());
                return 0;
            }
        };
        let kind = match view {
            PageView::Leaf(_) => PageKind::Leaf,
            PageView::Branch(_) => PageKind::Branch,
        };
        if !self.mark(id, 1, kind as u8) || !self.verify(id, 1) {
            return 0;
        }
        stats.depth = stats.depth.max(depth as u32);
        let in_bounds = |k: &[u8]| lo.is_none_or(|lo| k >= lo) && hi.is_none_or(|hi| k < hi);
        match view {
            PageView::Leaf(leaf) => {
                stats.leaf_pages += 1;
                if *leaf_depth.get_or_insert(depth) != depth {
                    self.problem(Some(id), "leaves at different depths");
                }
                let mut prev: Option<&[u8]> = None;
                let mut used = PAGE_HEADER_LEN;
                for i in 0..leaf.len() {
                    let (key, value) = match (leaf.key(i), leaf.value(i)) {
                        (Ok(k), Ok(v)) => (k, v),
                        (Err(e), _) | (_, Err(e)) => {
                            self.problem(Some(id), e.to_string());
                            return i as u64;
                        }
                    };
                    if prev.is_some_and(|p| p >= key) {
                        self.problem(Some(id), format!("leaf keys out of order at entry {i}"));
                    }
                    if !in_bounds(key) {
                        self.problem(
                            Some(id),
                            format!("leaf key at entry {i} lies outside its parent's range"),
                        );
                    }
                    prev = Some(key);
                    used += crate::btree::node::leaf_entry_len(key.len(), 0);
                    match value {
                        ValueRef::Inline(v) => used += v.len(),
                        ValueRef::Overflow { page, len } => {
                            used += crate::limits::OVERFLOW_REF_LEN;
                            let run =
                                crate::btree::node::overflow_pages(len as usize, pages.page_size);
                            stats.overflow_pages += run;
                            if let Err(e) = pages.overflow(page, len) {
                                self.problem(Some(page), e.to_string());
                            } else if self.mark(page, run, PageKind::Overflow as u8) {
                                self.verify(page, run);
                            }
                        }
                    }
                }
                stats.used_bytes += used as u64;
                leaf.len() as u64
            }
            PageView::Branch(branch) => {
                stats.branch_pages += 1;
                let mut count = 0;
                let mut keys = Vec::with_capacity(branch.len());
                for i in 0..branch.len() {
                    match (branch.key(i), branch.child(i)) {
                        (Ok(k), Ok(c)) => keys.push((k, c)),
                        (Err(e), _) | (_, Err(e)) => {
                            self.problem(Some(id), e.to_string());
                            return 0;
                        }
                    }
                }
                stats.used_bytes += (PAGE_HEADER_LEN
                    + keys
                        .iter()
                        .map(|(k, _)| crate::btree::node::branch_entry_len(k.len()))
                        .sum::<usize>()) as u64;
                for i in 0..keys.len() {
                    let (key, child) = keys[i];
                    if i > 0 && keys[i - 1].0 >= key {
                        self.problem(Some(id), format!("branch keys out of order at entry {i}"));
                    }
                    if i > 0 && !in_bounds(key) {
                        self.problem(
                            Some(id),
                            format!("branch key at entry {i} lies outside its parent's range"),
                        );
                    }
                    let child_lo = if i == 0 { lo } else { Some(key) };
                    let child_hi = keys.get(i + 1).map(|(k, _)| *k).or(hi);
                    count += self.node(child, child_lo, child_hi, depth + 1, leaf_depth, stats);
                }
                count
            }
        }
    }

    /// Walks the freelist chain whose head is `head`: its runs are freelist pages, and the pages
    /// it records are free.
    fn freelist(&mut self, head: PageId) {
        let (list, chain) = match chain::load(&self.pages, head) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.problem(Some(head), e.to_string());
                return;
            }
        };
        for &(id, len) in chain.runs() {
            if self.mark(id, len, PageKind::Freelist as u8) {
                self.stats.freelist_pages += len;
            }
        }
        for (start, n) in list.extents() {
            self.stats.free_pages += n;
            self.mark(start, n, FREE);
        }
    }
}

/// What one walk over a snapshot found: the checker's report, the statistics, and what each page
/// is used for.
pub(crate) struct Walk {
    pub report: CheckReport,
    pub stats: Stats,
    /// Per page below the snapshot's page count: 0 unseen, else a `PageKind` or `FREE`.
    seen: Vec<u8>,
}

impl Walk {
    /// What page `id` (below the snapshot's page count) is used for, as the walk found it.
    pub fn page_use(&self, id: PageId) -> PageUse {
        if id < 2 {
            return PageUse::Meta;
        }
        match self.seen[id as usize] {
            0 => PageUse::Unaccounted,
            FREE => PageUse::Free,
            k if k == PageKind::Branch as u8 => PageUse::Branch,
            k if k == PageKind::Leaf as u8 => PageUse::Leaf,
            k if k == PageKind::Overflow as u8 => PageUse::Overflow,
            k if k == PageKind::Freelist as u8 => PageUse::Freelist,
            k => unreachable!("the walker marks pages with tree kinds or FREE, not {k}"),
        }
    }
}

/// Checks one snapshot, and gathers its statistics and each page's use on the way.
pub(crate) fn walk(snapshot: &Snapshot, file_len: u64) -> Walk {
    let meta = snapshot.meta;
    let pages = snapshot.pages(false);
    let mut w = Walker {
        pages,
        seen: vec![0; meta.page_count as usize],
        problems: Vec::new(),
        stats: Stats {
            txid: meta.txid,
            page_size: meta.page_size,
            file_bytes: file_len,
            page_count: meta.page_count,
            meta_pages: 2,
            ..Stats::default()
        },
    };
    if meta.catalog_root != 0 {
        let mut catalog = TreeStats {
            name: Vec::new(),
            len: meta.catalog_len,
            ..TreeStats::default()
        };
        let counted = w.tree(meta.catalog_root, &mut catalog);
        if counted != meta.catalog_len {
            w.problem(
                Some(meta.catalog_root),
                format!(
                    "catalog holds {counted} trees but the meta records {}",
                    meta.catalog_len
                ),
            );
        }
        w.stats.catalog = catalog;
        let tree = crate::btree::tree::Tree::new(
            crate::btree::source::Source { pages, arena: &[] },
            Some(crate::btree::source::NodeRef::Page(meta.catalog_root)),
            0,
        );
        let mut named = Vec::new();
        for entry in tree.iter() {
            match entry.and_then(|(k, v)| Ok((k, Descriptor::decode(v, meta.catalog_root)?))) {
                Ok((name, d)) => named.push((name.to_vec(), d)),
                Err(e) => {
                    w.problem(Some(meta.catalog_root), format!("catalog: {e}"));
                    break;
                }
            }
        }
        for (name, d) in named {
            let mut ts = TreeStats {
                name: name.clone(),
                len: d.len,
                ..TreeStats::default()
            };
            let counted = if d.root == 0 {
                0
            } else {
                w.tree(d.root, &mut ts)
            };
            if counted != d.len {
                let shown = String::from_utf8_lossy(&name).into_owned();
                w.problem(
                    Some(d.root),
                    format!(
                        "tree {shown:?} holds {counted} entries but records {}",
                        d.len
                    ),
                );
            }
            w.stats.trees.push(ts);
        }
    }
    if meta.freelist != 0 {
        w.freelist(meta.freelist);
    }
    let mut unaccounted = 0u64;
    let mut first_unaccounted = None;
    for p in 2..meta.page_count {
        if w.seen[p as usize] == 0 {
            unaccounted += 1;
            first_unaccounted.get_or_insert(p);
        }
    }
    if let Some(first) = first_unaccounted {
        w.problem(
            Some(first),
            format!("{unaccounted} page(s) neither reachable nor free, the first is this one"),
        );
    }
    if file_len < meta.page_count * meta.page_size as u64 {
        w.problem(
            None,
            format!(
                "file of {file_len} bytes is shorter than its {} pages",
                meta.page_count
            ),
        );
    }
    if w.problems.len() >= PROBLEMS_MAX {
        w.problems.push(Problem {
            page: None,
            message: "more problems were found and not listed".into(),
        });
    }
    w.stats.finish();
    let report = CheckReport {
        txid: meta.txid,
        pages_checked: w.seen.iter().filter(|&&s| s != 0).count() as u64 + 2,
        problems: w.problems,
    };
    Walk {
        report,
        stats: w.stats,
        seen: w.seen,
    }
}

impl Db {
    /// Checks the newest commit: every page reachable exactly once or free exactly once, keys in
    /// order within pages and between levels, every checksum valid, entry counts right.
    /// Problems are reported, not returned as errors; an `Err` means the check could not run.
    pub fn check(&self) -> Result<CheckReport> {
        let tx = self.begin_read()?;
        Ok(walk(tx.snapshot(), self.inner.storage().len()?).report)
    }

    /// Page counts by kind, fill, free space, and per-tree figures for the newest commit.
    pub fn stats(&self) -> Result<Stats> {
        let tx = self.begin_read()?;
        let mut stats = walk(tx.snapshot(), self.inner.storage().len()?).stats;
        stats.pending_pages = self.inner.pending_pages();
        Ok(stats)
    }
}
