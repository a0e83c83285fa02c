//! Free space: extents of free pages, and the pages each commit freed, held pending until no
//! reader can still see them.
//!
//! Invariants:
//! 1. Free extents never overlap and never touch: two adjacent extents are merged on insert.
//! 2. `by_len` holds exactly the `(len, start)` of every extent in `extents`.
//! 3. A page freed by commit T is pending until T is durable and no reader's snapshot is older
//!    than T; only then may a later commit overwrite it.
//! 4. A page is free or pending at most once. Freeing a page that is already free or pending is
//!    refused with [`crate::Error::Corrupted`] in every build (a corrupted tree that names a page
//!    twice must not make the allocator hand it out twice); `pending_pages` indexes the pending
//!    runs so that the check costs O(log n).
//! 5. `log` holds every change made to the *persisted set* (free and pending pages alike, what the
//!    file records) since the last [`FreeList::keep_changes`] or [`FreeList::undo_changes`], in
//!    order. A commit writes it as a delta ([`chain`]) and a failed commit undoes it, so neither
//!    costs more than what the commit changed. Releasing pending pages changes nothing persisted
//!    and is not logged.
//!
//! Allocation is best fit in O(log n): the smallest extent at least as long as the request.
//!
//! On disk the list is a chain ([`chain`]): a full list, then deltas. The full list is one run (kind
//! freelist): the header's count is unused, then a `u64` extent count and that many `(start u64,
//! len u64)` pairs, sorted and disjoint. It records every page that is free once no reader is open:
//! free extents and every pending page alike. Its decoder (in `codec`) is linted against indexing
//! and unchecked arithmetic.

pub(crate) mod chain;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{PageId, Result, corrupted};

/// Free pages and pages pending release.
#[derive(Debug, Default, Clone)]
pub(crate) struct FreeList {
    extents: BTreeMap<PageId, u64>,
    by_len: BTreeSet<(u64, PageId)>,
    pending: BTreeMap<u64, Vec<(PageId, u64)>>,
    /// Every pending run, by first page: `pending` indexed by page.
    pending_pages: BTreeMap<PageId, u64>,
    /// The changes to the persisted set not yet kept or undone (invariant 5).
    log: Vec<Change>,
    /// Pages in `extents`, and pages in `pending`: kept as they change, so that counting them
    /// costs nothing.
    free_pages: u64,
    pending_count: u64,
}

/// One change to the persisted set (free and pending pages), as [`FreeList`] logs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A run taken from the free extents.
    Took(PageId, u64),
    /// A run left pending under a commit id.
    Pending(u64, PageId, u64),
}

impl Change {
    /// The run, and whether it left the persisted set (`true`) or joined it.
    pub fn run(self) -> (PageId, u64, bool) {
        match self {
            Change::Took(s, n) => (s, n, true),
            Change::Pending(_, s, n) => (s, n, false),
        }
    }
}

/// The run of `runs` (disjoint, keyed by first page) that shares a page with `start..end`.
fn overlapping(runs: &BTreeMap<PageId, u64>, start: PageId, end: PageId) -> Option<PageId> {
    let (&s, &len) = runs.range(..end).next_back()?;
    (s.saturating_add(len) > start).then_some(s)
}

impl FreeList {
    /// Takes a run of `n` contiguous free pages, if one exists.
    pub fn allocate(&mut self, n: u64) -> Option<PageId> {
        debug_assert!(n > 0);
        let &(len, start) = self.by_len.range((n, 0)..).next()?;
        self.remove_extent(start, len);
        if len > n {
            self.insert_extent(start + n, len - n);
        }
        self.log.push(Change::Took(start, n));
        Some(start)
    }

    /// Takes the front of the smallest free extent at least `min` pages long: `max` pages of it,
    /// or all of it if it is shorter. Returns the run taken.
    pub fn allocate_run(&mut self, min: u64, max: u64) -> Option<(PageId, u64)> {
        debug_assert!(0 < min && min <= max);
        let &(len, start) = self.by_len.range((min, 0)..).next()?;
        let n = len.min(max);
        self.remove_extent(start, len);
        if len > n {
            self.insert_extent(start + n, len - n);
        }
        self.log.push(Change::Took(start, n));
        Some((start, n))
    }

    /// Gives back the last `len` pages, from `start`, of a run taken since the last keep or undo:
    /// the newest logged take that ends where they end is shortened (dropped if it is all of
    /// it), and the pages are free again, as if never taken. `false`, changing nothing, if no
    /// such take is logged.
    pub fn untake(&mut self, start: PageId, len: u64) -> bool {
        let end = start + len;
        let found = self
            .log
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, &c)| match c {
                Change::Took(s, n) if s <= start && s + n == end => Some((i, s)),
                _ => None,
            });
        let Some((i, s)) = found else {
            debug_assert!(false, "untake of {start}+{len}, which was not taken");
            return false;
        };
        if s == start {
            self.log.remove(i);
        } else {
            self.log[i] = Change::Took(s, start - s);
        }
        self.insert_free(start, len);
        true
    }

    /// Adds a run to the free extents at once, unlogged: how tests set a list up. Refuses a run
    /// that shares a page with a free or pending one (invariant 4).
    #[cfg(test)]
    pub fn free_now(&mut self, start: PageId, len: u64) -> Result<()> {
        self.check_not_free(start, len)?;
        self.insert_free(start, len);
        Ok(())
    }

    /// Adds a run that shares no page with a free or pending one to the free extents, merged
    /// with its neighbours (invariant 1). Not logged.
    fn insert_free(&mut self, start: PageId, len: u64) {
        let (mut start, mut len) = (start, len);
        if let Some((&prev, &plen)) = self.extents.range(..start).next_back()
            && prev + plen == start
        {
            self.remove_extent(prev, plen);
            start = prev;
            len += plen;
        }
        if let Some(&next_len) = self.extents.get(&(start + len)) {
            self.remove_extent(start + len, next_len);
            len += next_len;
        }
        self.insert_extent(start, len);
    }

    /// Removes `start..start + len` from the free extents, if it lies inside one; returns whether
    /// it did. Not logged.
    fn take_range(&mut self, start: PageId, len: u64) -> bool {
        let Some((&s, &n)) = self.extents.range(..=start).next_back() else {
            return false;
        };
        let (Some(end), Some(extent_end)) = (start.checked_add(len), s.checked_add(n)) else {
            return false;
        };
        if len == 0 || end > extent_end {
            return false;
        }
        self.remove_extent(s, n);
        if start > s {
            self.insert_extent(s, start - s);
        }
        if extent_end > end {
            self.insert_extent(end, extent_end - end);
        }
        true
    }

    /// The changes logged since the last keep or undo, oldest first (invariant 5).
    pub fn changes(&self) -> &[Change] {
        &self.log
    }

    /// Keeps the logged changes: the commit that made them is written.
    pub fn keep_changes(&mut self) {
        self.log.clear();
    }

    /// Undoes the logged changes, newest first: the list is as it was at the last keep (pending
    /// releases aside, which stay released).
    pub fn undo_changes(&mut self) {
        while let Some(change) = self.log.pop() {
            match change {
                Change::Took(start, len) => self.insert_free(start, len),
                Change::Pending(txid, start, len) => {
                    self.pending_pages.remove(&start);
                    if let Some(runs) = self.pending.get_mut(&txid) {
                        if let Some(i) = runs.iter().rposition(|&r| r == (start, len)) {
                            runs.swap_remove(i);
                            self.pending_count -= len;
                        }
                        if runs.is_empty() {
                            self.pending.remove(&txid);
                        }
                    }
                }
            }
        }
    }

    /// Fails unless `start..start + len` is a non-empty run of pages past the metas of which none
    /// is free or pending.
    fn check_not_free(&self, start: PageId, len: u64) -> Result<()> {
        let Some(end) = start.checked_add(len).filter(|_| len > 0 && start >= 2) else {
            return Err(corrupted(
                start,
                format!("cannot free the page run {start}+{len}"),
            ));
        };
        if let Some(p) = overlapping(&self.extents, start, end) {
            return Err(corrupted(
                start.max(p),
                format!("page freed twice: {start}+{len} overlaps free pages from {p}"),
            ));
        }
        if let Some(p) = overlapping(&self.pending_pages, start, end) {
            return Err(corrupted(
                start.max(p),
                format!("page freed twice: {start}+{len} overlaps pending pages from {p}"),
            ));
        }
        Ok(())
    }

    /// Records runs freed by commit `txid`; they stay pending until [`FreeList::release`]. Refuses,
    /// changing nothing, runs that share a page with each other or with a free or pending run.
    pub fn add_pending(&mut self, txid: u64, mut runs: Vec<(PageId, u64)>) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        runs.sort_unstable();
        let mut prev_end = 0;
        for &(start, len) in &runs {
            self.check_not_free(start, len)?;
            if start < prev_end {
                return Err(corrupted(
                    start,
                    format!("page freed twice in one commit: {start}+{len}"),
                ));
            }
            prev_end = start + len;
        }
        self.pending_pages.extend(runs.iter().copied());
        self.pending_count += runs.iter().map(|r| r.1).sum::<u64>();
        self.log.extend(
            runs.iter()
                .map(|&(start, len)| Change::Pending(txid, start, len)),
        );
        self.pending.entry(txid).or_default().extend(runs);
        Ok(())
    }

    /// Frees every run pending from commits at or below `txid`.
    pub fn release(&mut self, txid: u64) -> Result<()> {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > txid {
                break;
            }
            for (start, len) in entry.remove() {
                self.pending_pages.remove(&start);
                self.pending_count -= len;
                self.check_not_free(start, len)?;
                self.insert_free(start, len);
            }
        }
        Ok(())
    }

    /// Free pages (not counting pending ones).
    pub fn free_page_count(&self) -> u64 {
        debug_assert_eq!(self.free_pages, self.extents.values().sum::<u64>());
        self.free_pages
    }

    /// Pending pages.
    pub fn pending_page_count(&self) -> u64 {
        debug_assert_eq!(
            self.pending_count,
            self.pending.values().flatten().map(|r| r.1).sum::<u64>()
        );
        self.pending_count
    }

    /// Every free and pending run merged, sorted: the list as it is written to disk.
    pub fn persisted_runs(&self) -> Vec<(PageId, u64)> {
        // Free extents come sorted; pending runs are few. Merge the two, joining adjacent runs.
        let mut pending: Vec<(PageId, u64)> = self.pending.values().flatten().copied().collect();
        pending.sort_unstable();
        let mut sorted = Vec::with_capacity(self.extents.len() + pending.len());
        let mut free = self.extents.iter().map(|(&s, &l)| (s, l)).peekable();
        let mut pending = pending.into_iter().peekable();
        loop {
            let next = match (free.peek(), pending.peek()) {
                (Some(f), Some(p)) if f <= p => free.next(),
                (Some(_), Some(_)) | (None, Some(_)) => pending.next(),
                (Some(_), None) => free.next(),
                (None, None) => break,
            };
            let (start, len) = next.expect("peeked");
            match sorted.last_mut() {
                Some((s, l)) if *s + *l == start => *l += len,
                _ => sorted.push((start, len)),
            }
        }
        debug_assert!(
            sorted.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0),
            "overlapping free runs"
        );
        sorted
    }

    /// Iterates the free extents (not pending runs).
    pub fn extents(&self) -> impl Iterator<Item = (PageId, u64)> + '_ {
        self.extents.iter().map(|(&s, &l)| (s, l))
    }

    fn insert_extent(&mut self, start: PageId, len: u64) {
        self.extents.insert(start, len);
        self.by_len.insert((len, start));
        self.free_pages += len;
    }

    fn remove_extent(&mut self, start: PageId, len: u64) {
        self.extents.remove(&start);
        self.by_len.remove(&(len, start));
        self.free_pages -= len;
    }
}

/// The on-disk form of the list. Bytes from disk reach the decoder, so it is linted against
/// indexing and unchecked arithmetic.
mod codec {
    #![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

    use super::FreeList;
    use crate::error::{PageId, Result, corrupted};
    use crate::limits::PAGE_HEADER_LEN;
    use crate::page_file::page::{self, Header, PageKind, read_u64};

    /// Bytes of one extent: start and length, `u64` each.
    const EXTENT_LEN: usize = 16;
    /// Where the extents begin: after the header and the `u64` extent count.
    const OFF_EXTENTS: usize = PAGE_HEADER_LEN + 8;

    impl FreeList {
        /// Pages needed to store `runs` extents.
        #[allow(clippy::arithmetic_side_effects)] // the list is in memory: `runs` is small
        pub fn run_pages(runs: usize, page_size: u32) -> u64 {
            let bytes = OFF_EXTENTS + runs * EXTENT_LEN;
            bytes.div_ceil(page_size as usize) as u64
        }

        /// Encodes `runs` into a freelist run starting at page `id`, `pages` pages long.
        #[cfg(test)]
        #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
        pub fn encode(runs: &[(PageId, u64)], id: PageId, pages: u64, page_size: u32) -> Vec<u8> {
            debug_assert!(FreeList::run_pages(runs.len(), page_size) <= pages);
            let mut buf = vec![0u8; (pages * page_size as u64) as usize];
            FreeList::encode_into(runs, id, &mut buf, pages);
            buf
        }

        /// Encodes `runs` into `buf`, a freelist run of `pages` pages starting at page `id`, writing
        /// every byte of it.
        #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
        pub fn encode_into(runs: &[(PageId, u64)], id: PageId, buf: &mut [u8], pages: u64) {
            debug_assert!(OFF_EXTENTS + runs.len() * EXTENT_LEN <= buf.len());
            Header {
                id,
                kind: PageKind::Freelist,
                count: 0,
                overflow: (pages - 1) as u32,
            }
            .write(buf);
            let mut off = PAGE_HEADER_LEN;
            buf[off..off + 8].copy_from_slice(&(runs.len() as u64).to_le_bytes());
            off += 8;
            for &(start, len) in runs {
                buf[off..off + 8].copy_from_slice(&start.to_le_bytes());
                buf[off + 8..off + 16].copy_from_slice(&len.to_le_bytes());
                off += EXTENT_LEN;
            }
            buf[off..].fill(0);
            page::seal(buf);
        }

        /// Decodes and validates a freelist run (`run` is the whole run, header first). Every run
        /// must lie in `2..page_count`, sorted and disjoint.
        pub fn decode(run: &[u8], id: PageId, page_count: u64) -> Result<FreeList> {
            page::verify(run, id)?;
            let header = Header::read(run, id)?;
            if header.kind != PageKind::Freelist {
                return Err(corrupted(
                    id,
                    format!("expected a freelist page, found {}", header.kind.name()),
                ));
            }
            let n = read_u64(run, PAGE_HEADER_LEN, id)?;
            let body = run.get(OFF_EXTENTS..).unwrap_or_default();
            let held = body.len() / EXTENT_LEN;
            if n > held as u64 {
                return Err(corrupted(
                    id,
                    format!("freelist claims {n} extents, more than its run holds"),
                ));
            }
            let mut list = FreeList::default();
            let mut prev_end = 2;
            for extent in body.chunks_exact(EXTENT_LEN).take(held.min(n as usize)) {
                let start = read_u64(extent, 0, id)?;
                let len = read_u64(extent, 8, id)?;
                // Checked: an extent whose end passes u64 must not pass as ending at u64::MAX.
                let end = start.checked_add(len);
                if len == 0 || start < prev_end || end.is_none_or(|end| end > page_count) {
                    return Err(corrupted(
                        id,
                        format!("freelist extent {start}+{len} is out of order or range"),
                    ));
                }
                list.insert_extent(start, len);
                prev_end = end.unwrap_or(u64::MAX);
            }
            Ok(list)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Rng, seed};

    #[test]
    fn adjacent_frees_merge_and_best_fit_takes_the_smallest_extent() {
        let mut f = FreeList::default();
        f.free_now(10, 2).unwrap();
        f.free_now(12, 3).unwrap();
        f.free_now(20, 1).unwrap();
        assert_eq!(f.extents().collect::<Vec<_>>(), vec![(10, 5), (20, 1)]);
        assert_eq!(f.allocate(1), Some(20));
        assert_eq!(f.allocate(2), Some(10));
        assert_eq!(f.extents().collect::<Vec<_>>(), vec![(12, 3)]);
        assert_eq!(f.allocate(4), None);
    }

    #[test]
    fn a_run_is_the_front_of_the_smallest_extent_long_enough_and_at_most_max_pages() {
        let mut f = FreeList::default();
        for (start, len) in [(10, 3), (20, 8), (40, 30), (100, 500)] {
            f.free_now(start, len).unwrap();
        }
        assert_eq!(f.allocate_run(4, 16), Some((20, 8)));
        assert_eq!(f.allocate_run(16, 16), Some((40, 16)));
        assert_eq!(f.allocate_run(16, 64), Some((100, 64)));
        assert_eq!(f.allocate_run(600, 600), None);
        assert_eq!(f.free_page_count(), 3 + 14 + 436);
        assert_eq!(
            f.changes(),
            &[
                Change::Took(20, 8),
                Change::Took(40, 16),
                Change::Took(100, 64)
            ]
        );
        // The unused end of a run goes back as if never taken, merged with what is beside it.
        assert!(f.untake(110, 54));
        assert!(f.untake(40, 16));
        assert_eq!(f.changes(), &[Change::Took(20, 8), Change::Took(100, 10)]);
        assert_eq!(f.free_page_count(), 3 + 30 + 490);
        assert_eq!(
            f.extents().collect::<Vec<_>>(),
            vec![(10, 3), (40, 30), (110, 490)]
        );
        f.undo_changes();
        assert_eq!(f.free_page_count(), 3 + 8 + 30 + 500);
        assert_eq!(
            f.extents().collect::<Vec<_>>(),
            vec![(10, 3), (20, 8), (40, 30), (100, 500)]
        );
    }

    #[test]
    fn pending_pages_are_released_only_up_to_the_given_commit() {
        let mut f = FreeList::default();
        f.add_pending(5, vec![(3, 1)]).unwrap();
        f.add_pending(7, vec![(4, 1)]).unwrap();
        f.release(6).unwrap();
        assert_eq!(f.free_page_count(), 1);
        assert_eq!(f.pending_page_count(), 1);
        assert_eq!(f.persisted_runs(), vec![(3, 2)]);
    }

    #[test]
    fn encoding_round_trips_and_rejects_overlaps() {
        let runs = vec![(2, 3), (9, 1)];
        let buf = FreeList::encode(&runs, 4, 1, 512);
        let back = FreeList::decode(&buf, 4, 20).unwrap();
        assert_eq!(back.extents().collect::<Vec<_>>(), runs);
        let bad = FreeList::encode(&[(2, 3), (4, 1)], 4, 1, 512);
        assert!(FreeList::decode(&bad, 4, 20).is_err());
        let out_of_range = FreeList::encode(&[(2, 30)], 4, 1, 512);
        assert!(FreeList::decode(&out_of_range, 4, 20).is_err());
    }

    /// What broke: a double free was only a `debug_assert`, so a release build merged the page
    /// into the free extents twice and could hand it out twice.
    #[test]
    fn freeing_a_page_already_free_or_pending_is_refused_and_changes_nothing() {
        let mut f = FreeList::default();
        f.free_now(10, 4).unwrap();
        f.add_pending(5, vec![(20, 2)]).unwrap();
        let before = (f.persisted_runs(), f.pending_page_count());
        assert!(f.free_now(12, 1).is_err(), "inside a free extent");
        assert!(
            f.free_now(8, 3).is_err(),
            "overlapping a free extent's start"
        );
        assert!(f.free_now(21, 1).is_err(), "a pending page");
        assert!(
            f.add_pending(6, vec![(13, 1)]).is_err(),
            "pending a free page"
        );
        assert!(
            f.add_pending(6, vec![(20, 1)]).is_err(),
            "pending a pending page"
        );
        assert!(
            f.add_pending(6, vec![(30, 2), (31, 1)]).is_err(),
            "twice in one batch"
        );
        assert!(f.add_pending(6, vec![(1, 1)]).is_err(), "a meta page");
        assert!(
            f.add_pending(6, vec![(u64::MAX, 2)]).is_err(),
            "a run past u64"
        );
        assert_eq!((f.persisted_runs(), f.pending_page_count()), before);
        f.release(5).unwrap();
        assert_eq!(f.allocate(2), Some(20));
        assert_eq!(f.allocate(4), Some(10));
        assert_eq!(f.allocate(1), None, "every page handed out once");
    }

    /// Everything a list holds, to compare two of them.
    /// Free extents, and pending runs by commit.
    type State = (Vec<(PageId, u64)>, Vec<(u64, Vec<(PageId, u64)>)>);

    fn state(f: &FreeList) -> State {
        let mut pending: Vec<_> = f
            .pending
            .iter()
            .map(|(&t, runs)| {
                let mut runs = runs.clone();
                runs.sort_unstable();
                (t, runs)
            })
            .collect();
        pending.sort_unstable();
        assert_eq!(
            f.by_len.len(),
            f.extents.len(),
            "by_len indexes every extent"
        );
        assert_eq!(
            f.pending_pages.len(),
            f.pending.values().map(Vec::len).sum::<usize>(),
            "pending_pages indexes every pending run"
        );
        (f.extents().collect(), pending)
    }

    /// Random commits of allocations and frees; each either keeps its changes, and then its log
    /// replayed on the persisted set before it gives the persisted set after it (what a delta
    /// must do), or undoes them, and then the list is exactly as before (what a failed commit
    /// must do, now that it no longer restores a copy).
    #[test]
    fn a_commit_s_logged_changes_replay_onto_the_persisted_set_and_undo_exactly() {
        let mut rng = Rng(seed("freelist"));
        let mut f = FreeList::default();
        f.free_now(2, 200).unwrap();
        let mut frontier = 202;
        let mut used: Vec<(PageId, u64)> = Vec::new();
        let (mut kept, mut undone) = (0, 0);
        for txid in 1..400u64 {
            f.release(txid.saturating_sub(1 + rng.below(3))).unwrap();
            let before = state(&f);
            let persisted_before = f.persisted_runs();
            let mut used_now = used.clone();
            for _ in 0..rng.below(6) {
                let n = 1 + rng.below(3);
                let start = f.allocate(n).unwrap_or_else(|| {
                    frontier += n;
                    frontier - n
                });
                used_now.push((start, n));
            }
            // Free a few runs in use.
            let mut pending = Vec::new();
            for _ in 0..rng.below(4) {
                if used_now.is_empty() {
                    break;
                }
                let i = rng.below(used_now.len() as u64) as usize;
                pending.push(used_now.swap_remove(i));
            }
            f.add_pending(txid, pending).unwrap();
            if rng.below(4) == 0 {
                f.undo_changes();
                assert_eq!(state(&f), before, "txid {txid}: undo");
                assert!(f.changes().is_empty());
                undone += 1;
            } else {
                let mut replay = FreeList::default();
                for &(s, n) in &persisted_before {
                    replay.insert_free(s, n);
                }
                for &change in f.changes() {
                    match change.run() {
                        (s, n, true) => {
                            assert!(replay.take_range(s, n), "txid {txid}: took {s}+{n}")
                        }
                        (s, n, false) => {
                            replay.check_not_free(s, n).unwrap();
                            replay.insert_free(s, n);
                        }
                    }
                }
                assert_eq!(
                    replay.extents().collect::<Vec<_>>(),
                    f.persisted_runs(),
                    "txid {txid}: replay"
                );
                f.keep_changes();
                used = used_now;
                kept += 1;
            }
        }
        assert!(kept > 100 && undone > 30, "{kept} kept, {undone} undone");
    }
}
