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
//!
//! Allocation is best fit in O(log n): the smallest extent at least as long as the request.
//!
//! On disk the list is one run (kind freelist): the header's count is unused, then a `u64` extent
//! count and that many `(start u64, len u64)` pairs, sorted and disjoint. It records every page that
//! is free once no reader is open: free extents and every pending page alike. Its decoder (in
//! `codec`) is linted against indexing and unchecked arithmetic.

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
        Some(start)
    }

    /// Returns a run to the free extents at once (it was never visible to any reader). Refuses a
    /// run that shares a page with a free or pending one (invariant 4).
    pub fn free_now(&mut self, start: PageId, len: u64) -> Result<()> {
        self.check_not_free(start, len)?;
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
        Ok(())
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
                self.free_now(start, len)?;
            }
        }
        Ok(())
    }

    /// Free pages (not counting pending ones).
    pub fn free_page_count(&self) -> u64 {
        self.extents.values().sum()
    }

    /// Pending pages.
    pub fn pending_page_count(&self) -> u64 {
        self.pending.values().flatten().map(|r| r.1).sum()
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
    }

    fn remove_extent(&mut self, start: PageId, len: u64) {
        self.extents.remove(&start);
        self.by_len.remove(&(len, start));
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
}
