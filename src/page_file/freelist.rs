//! Free space: extents of free pages, and the pages each commit freed, held pending until no
//! reader can still see them.
//!
//! Invariants:
//! 1. Free extents never overlap and never touch: two adjacent extents are merged on insert.
//! 2. `by_len` holds exactly the `(len, start)` of every extent in `extents`.
//! 3. A page freed by commit T is pending until T is durable and no reader's snapshot is older
//!    than T; only then may a later commit overwrite it.
//!
//! Allocation is best fit in O(log n): the smallest extent at least as long as the request.
//!
//! On disk the list is one run (kind freelist): the header's count is unused, then a `u64` extent
//! count and that many `(start u64, len u64)` pairs, sorted and disjoint. It records every page that
//! is free once no reader is open: free extents and every pending page alike.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{PageId, Result, corrupted};
use crate::limits::PAGE_HEADER_LEN;
use crate::page_file::page::{self, Header, PageKind, u64_at};

/// Free pages and pages pending release.
#[derive(Debug, Default, Clone)]
pub(crate) struct FreeList {
    extents: BTreeMap<PageId, u64>,
    by_len: BTreeSet<(u64, PageId)>,
    pending: BTreeMap<u64, Vec<(PageId, u64)>>,
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

    /// Returns a run to the free extents at once (it was never visible to any reader).
    pub fn free_now(&mut self, start: PageId, len: u64) {
        debug_assert!(len > 0);
        let (mut start, mut len) = (start, len);
        if let Some((&prev, &plen)) = self.extents.range(..start).next_back() {
            debug_assert!(prev + plen <= start, "freeing page {start} twice");
            if prev + plen == start {
                self.remove_extent(prev, plen);
                start = prev;
                len += plen;
            }
        }
        if let Some(&next_len) = self.extents.get(&(start + len)) {
            self.remove_extent(start + len, next_len);
            len += next_len;
        }
        self.insert_extent(start, len);
    }

    /// Records runs freed by commit `txid`; they stay pending until [`FreeList::release`].
    pub fn add_pending(&mut self, txid: u64, runs: Vec<(PageId, u64)>) {
        if !runs.is_empty() {
            self.pending.entry(txid).or_default().extend(runs);
        }
    }

    /// Frees every run pending from commits at or below `txid`.
    pub fn release(&mut self, txid: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > txid {
                break;
            }
            for (start, len) in entry.remove() {
                self.free_now(start, len);
            }
        }
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

    /// Pages needed to store `runs` extents.
    pub fn run_pages(runs: usize, page_size: u32) -> u64 {
        let bytes = PAGE_HEADER_LEN + 8 + runs * 16;
        bytes.div_ceil(page_size as usize) as u64
    }

    /// Encodes `runs` into a freelist run starting at page `id`, `pages` pages long.
    pub fn encode(runs: &[(PageId, u64)], id: PageId, pages: u64, page_size: u32) -> Vec<u8> {
        debug_assert!(FreeList::run_pages(runs.len(), page_size) <= pages);
        let mut buf = vec![0u8; (pages * page_size as u64) as usize];
        Header {
            id,
            kind: PageKind::Freelist,
            count: 0,
            overflow: (pages - 1) as u32,
        }
        .write(&mut buf);
        let mut off = PAGE_HEADER_LEN;
        buf[off..off + 8].copy_from_slice(&(runs.len() as u64).to_le_bytes());
        off += 8;
        for &(start, len) in runs {
            buf[off..off + 8].copy_from_slice(&start.to_le_bytes());
            buf[off + 8..off + 16].copy_from_slice(&len.to_le_bytes());
            off += 16;
        }
        page::seal(&mut buf);
        buf
    }

    /// Decodes and validates a freelist run (`run` is the whole run, header first). Every run must
    /// lie in `2..page_count`, sorted and disjoint.
    pub fn decode(run: &[u8], id: PageId, page_count: u64) -> Result<FreeList> {
        page::verify(run, id)?;
        let header = Header::read(run, id)?;
        if header.kind != PageKind::Freelist {
            return Err(corrupted(
                id,
                format!("expected a freelist page, found {}", header.kind.name()),
            ));
        }
        let n = u64_at(run, PAGE_HEADER_LEN);
        let body = &run[PAGE_HEADER_LEN + 8..];
        if n > (body.len() / 16) as u64 {
            return Err(corrupted(
                id,
                format!("freelist claims {n} extents, more than its run holds"),
            ));
        }
        let mut list = FreeList::default();
        let mut prev_end = 2;
        for i in 0..n as usize {
            let start = u64_at(body, i * 16);
            let len = u64_at(body, i * 16 + 8);
            let end = start.saturating_add(len);
            if len == 0 || start < prev_end || end > page_count {
                return Err(corrupted(
                    id,
                    format!("freelist extent {start}+{len} is out of order or range"),
                ));
            }
            list.insert_extent(start, len);
            prev_end = end;
        }
        Ok(list)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_frees_merge_and_best_fit_takes_the_smallest_extent() {
        let mut f = FreeList::default();
        f.free_now(10, 2);
        f.free_now(12, 3);
        f.free_now(20, 1);
        assert_eq!(f.extents().collect::<Vec<_>>(), vec![(10, 5), (20, 1)]);
        assert_eq!(f.allocate(1), Some(20));
        assert_eq!(f.allocate(2), Some(10));
        assert_eq!(f.extents().collect::<Vec<_>>(), vec![(12, 3)]);
        assert_eq!(f.allocate(4), None);
    }

    #[test]
    fn pending_pages_are_released_only_up_to_the_given_commit() {
        let mut f = FreeList::default();
        f.add_pending(5, vec![(3, 1)]);
        f.add_pending(7, vec![(4, 1)]);
        f.release(6);
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
}
