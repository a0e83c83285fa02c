//! The freelist on disk: a chain of one full list and the deltas written after it.
//!
//! Writing the whole list at every commit costs what the list holds, not what the commit changed:
//! on a fragmented file of a few GiB that is megabytes per commit. So a commit writes only its own
//! changes (a *delta*: the runs it took from the list and the runs it added to it), linked to the
//! chain element before it. Now and then a commit writes the whole list again instead and retires
//! the chain: its pages are freed under that commit like any other page it stopped using.
//!
//! Invariants:
//! 1. The meta's freelist page is the chain's *head*: a delta or the full list. Each delta links
//!    to the element before it, and the chain ends at one full list. A delta records its *depth*,
//!    its place counted from the full list (1 for the first delta), at most
//!    [`FREELIST_DELTAS_MAX`]; a walk from the head checks that each step is one shallower, so it
//!    ends within that many steps whatever the bytes say.
//! 2. Applying the deltas oldest first to the full list gives the meta's *persisted set*: every
//!    page free or pending when it was written (see the freelist's invariant 5). A change that
//!    took a run takes pages that are all in the set; one that added a run adds pages none of
//!    which is in it. A delta that breaks either is corrupt.
//! 3. No page of any chain element is in the persisted set: each was taken when it was written,
//!    and goes pending only when a later commit retires the chain, so the older meta, which may
//!    still name it after a crash, finds it whole (the freelist's invariant 3).
//! 4. A commit writes the full list when there is no chain, when the chain holds
//!    [`FREELIST_DELTAS_MAX`] deltas, or when the deltas' pages with its own would outnumber the
//!    full list's. So the deltas never hold more pages than the full list, and a commit writes,
//!    on average over a chain, its delta and the full list's pages divided by the chain's length.
//!
//! A delta run:
//! ```text
//! offset size field (after the 24-byte page header, kind = freelist delta, count = 0)
//!     24    8 previous (u64 LE): the first page of the chain element before this one
//!     32    8 depth (u64 LE): 1 to FREELIST_DELTAS_MAX
//!     40    8 change count n (u64 LE)
//!     48  16n the changes, oldest first: start (u64 LE), then pages (u64 LE) with bit 63 set when
//!             the run was taken from the list and clear when it was added to it
//! ```
//! The decoder is linted against indexing and unchecked arithmetic: its bytes come from disk.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::{Change, FreeList};
use crate::btree::source::Pages;
use crate::error::{PageId, Result, corrupted};
use crate::limits::{FREELIST_DELTAS_MAX, PAGE_HEADER_LEN};
use crate::page_file::page::{self, Header, PageKind, read_u64};

const OFF_PREVIOUS: usize = PAGE_HEADER_LEN;
const OFF_DEPTH: usize = PAGE_HEADER_LEN + 8;
const OFF_COUNT: usize = PAGE_HEADER_LEN + 16;
const OFF_CHANGES: usize = PAGE_HEADER_LEN + 24;
/// Bytes of one change: start and pages, `u64` each.
const CHANGE_LEN: usize = 16;
/// The bit of a change's page count that says the run was taken from the list.
const TAKEN: u64 = 1 << 63;

/// Where the chain's elements lie, as the writer keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Each element's run (first page, pages): the full list first, then the deltas, oldest first.
    runs: Vec<(PageId, u64)>,
}

impl Chain {
    /// A chain of just the full list written at `start`.
    pub fn full(start: PageId, pages: u64) -> Chain {
        Chain {
            runs: vec![(start, pages)],
        }
    }

    /// The head (what the meta names), if there is a chain.
    pub fn head(&self) -> Option<PageId> {
        self.runs.last().map(|r| r.0)
    }

    /// Deltas after the full list: the next delta's depth less one.
    pub fn depth(&self) -> u64 {
        self.runs.len().saturating_sub(1) as u64
    }

    /// Every element's run, the full list first.
    pub fn runs(&self) -> &[(PageId, u64)] {
        &self.runs
    }

    /// Pages of every element.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.1).fold(0, u64::saturating_add)
    }

    /// Whether the next commit, whose delta would take `delta_pages`, writes the full list
    /// instead (invariant 4).
    pub fn wants_full(&self, delta_pages: u64) -> bool {
        let Some((&(_, full), deltas)) = self.runs.split_first() else {
            return true;
        };
        let delta_total = deltas
            .iter()
            .map(|r| r.1)
            .fold(delta_pages, u64::saturating_add);
        deltas.len() as u64 >= FREELIST_DELTAS_MAX || delta_total > full
    }

    /// Adds a delta written at `start` as the new head.
    pub fn push_delta(&mut self, start: PageId, pages: u64) {
        debug_assert!(!self.runs.is_empty(), "a delta follows a full list");
        self.runs.push((start, pages));
    }
}

/// Pages a delta of `changes` changes takes.
#[allow(clippy::arithmetic_side_effects)] // the changes are in memory: their count is small
pub(crate) fn delta_pages(changes: usize, page_size: u32) -> u64 {
    (OFF_CHANGES + changes * CHANGE_LEN).div_ceil(page_size as usize) as u64
}

/// Encodes `changes` into `buf`, a delta run of `pages` pages at page `id` linked to `previous`
/// at `depth`, writing every byte of it.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
pub(crate) fn encode_delta(
    changes: &[Change],
    previous: PageId,
    depth: u64,
    id: PageId,
    buf: &mut [u8],
    pages: u64,
) {
    debug_assert!(OFF_CHANGES + changes.len() * CHANGE_LEN <= buf.len());
    debug_assert!((1..=FREELIST_DELTAS_MAX).contains(&depth));
    Header {
        id,
        kind: PageKind::FreelistDelta,
        count: 0,
        overflow: (pages - 1) as u32,
    }
    .write(buf);
    buf[OFF_PREVIOUS..OFF_PREVIOUS + 8].copy_from_slice(&previous.to_le_bytes());
    buf[OFF_DEPTH..OFF_DEPTH + 8].copy_from_slice(&depth.to_le_bytes());
    buf[OFF_COUNT..OFF_COUNT + 8].copy_from_slice(&(changes.len() as u64).to_le_bytes());
    let mut off = OFF_CHANGES;
    for &change in changes {
        let (start, len, taken) = change.run();
        debug_assert!(len > 0 && len < TAKEN);
        let len = if taken { len | TAKEN } else { len };
        buf[off..off + 8].copy_from_slice(&start.to_le_bytes());
        buf[off + 8..off + 16].copy_from_slice(&len.to_le_bytes());
        off += CHANGE_LEN;
    }
    buf[off..].fill(0);
    page::seal(buf);
}

/// A decoded delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    /// The first page of the element before it.
    pub previous: PageId,
    /// Its place counted from the full list (1 for the first delta).
    pub depth: u64,
    /// Each change, oldest first: start, pages, and whether the run was taken (else added).
    pub changes: Vec<(PageId, u64, bool)>,
}

/// Decodes and validates a delta run (`run` is the whole run, header first) of a database of
/// `page_count` pages: every run lies in `2..page_count`, the link too, and the depth is in range.
pub(crate) fn decode_delta(run: &[u8], id: PageId, page_count: u64) -> Result<Delta> {
    page::verify(run, id)?;
    let header = Header::read(run, id)?;
    if header.kind != PageKind::FreelistDelta {
        return Err(corrupted(
            id,
            format!(
                "expected a freelist delta page, found {}",
                header.kind.name()
            ),
        ));
    }
    let previous = read_u64(run, OFF_PREVIOUS, id)?;
    let depth = read_u64(run, OFF_DEPTH, id)?;
    let n = read_u64(run, OFF_COUNT, id)?;
    if previous < 2 || previous >= page_count {
        return Err(corrupted(
            id,
            format!("freelist delta links to page {previous}, outside the database"),
        ));
    }
    if !(1..=FREELIST_DELTAS_MAX).contains(&depth) {
        return Err(corrupted(
            id,
            format!("freelist delta at depth {depth}, outside 1 to {FREELIST_DELTAS_MAX}"),
        ));
    }
    let body = run.get(OFF_CHANGES..).unwrap_or_default();
    let held = body.len() / CHANGE_LEN;
    if n > held as u64 {
        return Err(corrupted(
            id,
            format!("freelist delta claims {n} changes, more than its run holds"),
        ));
    }
    let mut changes = Vec::with_capacity(held.min(n as usize));
    for change in body.chunks_exact(CHANGE_LEN).take(held.min(n as usize)) {
        let start = read_u64(change, 0, id)?;
        let word = read_u64(change, 8, id)?;
        let (len, taken) = (word & !TAKEN, word & TAKEN != 0);
        let end = start.checked_add(len);
        if len == 0 || start < 2 || end.is_none_or(|end| end > page_count) {
            return Err(corrupted(
                id,
                format!("freelist delta change {start}+{len} is out of range"),
            ));
        }
        changes.push((start, len, taken));
    }
    Ok(Delta {
        previous,
        depth,
        changes,
    })
}

/// The run of the chain element at `id`: its header's page count, bounds-checked.
fn element<'a>(pages: &Pages<'a>, id: PageId) -> Result<(Header, &'a [u8])> {
    let header = Header::read(pages.run(id, 1)?, id)?;
    let len = u64::from(header.overflow).saturating_add(1);
    Ok((header, pages.run(id, len)?))
}

/// Reads the chain whose head is page `head`: the persisted set as a list in which every page is
/// free (as it is once no reader is open), and where the chain lies. Checks invariants 1 to 3.
pub(crate) fn load(pages: &Pages<'_>, head: PageId) -> Result<(FreeList, Chain)> {
    let page_count = pages.page_count;
    let mut deltas = Vec::new();
    let mut runs = Vec::new();
    let mut id = head;
    let mut depth_expected: Option<u64> = None;
    let mut list = loop {
        let (header, run) = element(pages, id)?;
        let run_pages = u64::from(header.overflow).saturating_add(1);
        match header.kind {
            PageKind::Freelist => {
                if let Some(depth) = depth_expected.filter(|&d| d != 0) {
                    return Err(corrupted(
                        id,
                        format!("the freelist chain reaches its full list at depth {depth}"),
                    ));
                }
                runs.push((id, run_pages));
                break FreeList::decode(run, id, page_count)?;
            }
            PageKind::FreelistDelta => {
                let delta = decode_delta(run, id, page_count)?;
                if let Some(expected) = depth_expected.filter(|&d| d != delta.depth) {
                    return Err(corrupted(
                        id,
                        format!(
                            "freelist delta at depth {} where the chain needs depth {expected}",
                            delta.depth
                        ),
                    ));
                }
                runs.push((id, run_pages));
                depth_expected = delta.depth.checked_sub(1);
                let previous = delta.previous;
                deltas.push((id, delta));
                id = previous;
            }
            other => {
                return Err(corrupted(
                    id,
                    format!("expected a freelist page, found {}", other.name()),
                ));
            }
        }
    };
    for (id, delta) in deltas.iter().rev() {
        apply(&mut list, delta, *id)?;
    }
    runs.reverse();
    for &(start, len) in &runs {
        let end = start.saturating_add(len);
        if let Some(p) = super::overlapping(&list.extents, start, end) {
            return Err(corrupted(
                start,
                format!(
                    "the freelist lists pages from {p} as free, inside its own run {start}+{len}"
                ),
            ));
        }
    }
    Ok((list, Chain { runs }))
}

/// Applies one delta to the persisted set (invariant 2).
fn apply(list: &mut FreeList, delta: &Delta, id: PageId) -> Result<()> {
    for &(start, len, taken) in &delta.changes {
        if taken {
            if !list.take_range(start, len) {
                return Err(corrupted(
                    id,
                    format!("a freelist delta takes pages {start}+{len} that are not all free"),
                ));
            }
        } else {
            list.check_not_free(start, len).map_err(|e| {
                corrupted(id, format!("a freelist delta adds pages already free: {e}"))
            })?;
            list.insert_free(start, len);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
