//! Reading the source ahead of the walk, in file order.
//!
//! The walk visits pages in key order, which in a fragmented file is random order on disk: from a
//! cold cache, one small read at a time. So when the live pages fit comfortably in memory, a
//! second thread asks the kernel to read them in file order (`madvise(WILLNEED)` over each run of
//! live pages, skipping the free extents the freelist names, small gaps read through), and the
//! disk streams while the walk runs and mostly finds its pages already in the page cache. When
//! they do not fit, the walk instead asks for each branch's children as it reaches them.

use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{Advice, Mmap};

use crate::defrag::pace::Pace;
use crate::error::PageId;
use crate::limits::{DEFRAG_READAHEAD_CHUNK, DEFRAG_READAHEAD_GAP_MAX, DEFRAG_READAHEAD_MAX};

/// Byte ranges `(offset, len)` of the pages in `[2, page_count)` that are not in `unused` (sorted
/// runs of free, pending and freelist pages), in file order, with gaps of up to
/// [`DEFRAG_READAHEAD_GAP_MAX`] bytes joined: reading through a small gap costs less than a seek.
pub(crate) fn live_ranges(
    page_count: u64,
    page_size: u32,
    unused: &[(PageId, u64)],
) -> Vec<(u64, u64)> {
    let page_size = page_size as u64;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut push = |start: PageId, end: PageId| {
        if start >= end {
            return;
        }
        let (offset, len) = (start * page_size, (end - start) * page_size);
        match ranges.last_mut() {
            Some((o, l)) if offset - (*o + *l) <= DEFRAG_READAHEAD_GAP_MAX => {
                *l = offset + len - *o
            }
            _ => ranges.push((offset, len)),
        }
    };
    let mut next = 2;
    for &(start, len) in unused {
        let end = start.saturating_add(len).min(page_count);
        push(next, start.clamp(next, page_count));
        next = next.max(end);
    }
    push(next, page_count);
    ranges
}

/// Whether reading `bytes` ahead fits in memory: no more than half of what Linux reports as
/// available (or [`DEFRAG_READAHEAD_MAX`] where it reports nothing), so that pages read ahead are
/// not evicted before the walk reaches them.
pub(crate) fn fits_in_memory(bytes: u64) -> bool {
    bytes <= memory_available().map_or(DEFRAG_READAHEAD_MAX, |m| m / 2)
}

fn memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads all of `map` into the page cache and maps it, a chunk at a time, when it fits in half of
/// the available memory; returns whether it did. A defrag writes its new file around the cache,
/// and readers would otherwise take the first read of every page from the disk. The caller must
/// keep the pages of `map` from being rewritten meanwhile (by holding a read transaction).
/// Its requests go at `pace`.
pub(crate) fn warm(map: &Mmap, pace: &mut Pace) -> bool {
    if !fits_in_memory(map.len() as u64) {
        return false;
    }
    let mut at = 0;
    while at < map.len() {
        let n = pace.piece((map.len() - at).min(DEFRAG_READAHEAD_CHUNK));
        if !populate(map, at, n) {
            return false;
        }
        pace.moved(n);
        at += n;
    }
    true
}

/// Reads `len` bytes of `map` from `offset` into memory and maps them: with one call where the
/// kernel can (`MADV_POPULATE_READ`, Linux 5.14 and later), else by touching each page. Returns
/// false if the kernel could not read them (an I/O error): touching those pages would raise
/// SIGBUS, so they are left for a reader to meet.
fn populate(map: &Mmap, offset: usize, len: usize) -> bool {
    #[cfg(target_os = "linux")]
    match map.advise_range(Advice::PopulateRead, offset, len) {
        Ok(()) => return true,
        // An older kernel that does not know the advice: touch the pages instead.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(_) => return false,
    }
    let touched = map[offset..offset + len]
        .iter()
        .step_by(4096)
        .fold(0u8, |acc, b| acc ^ b);
    std::hint::black_box(touched);
    true
}

/// Asks the kernel to read `ranges` of `map`, in order, a chunk at a time, until done or until
/// `stop` is set, its requests at `pace`. A hint: a failed call changes nothing but speed.
pub(crate) fn run(map: &Mmap, ranges: &[(u64, u64)], stop: &AtomicBool, pace: &mut Pace) {
    for &(offset, len) in ranges {
        let end = (offset + len).min(map.len() as u64);
        let mut at = offset;
        while at < end {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let n = pace.piece((end - at).min(DEFRAG_READAHEAD_CHUNK as u64) as usize);
            let _ = map.advise_range(Advice::WillNeed, at as usize, n);
            pace.moved(n);
            at += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_ranges_skip_unused_runs_and_join_small_gaps() {
        let page = 4096;
        // Pages 2..100 with 10..20 unused (a 40 KiB gap: joined) and 30..1000 beyond a big one.
        let ranges = live_ranges(2000, page, &[(10, 10), (30, 970)]);
        assert_eq!(
            ranges,
            vec![(2 * 4096, 28 * 4096), (1000 * 4096, 1000 * 4096)]
        );
        // Nothing unused: one range from page 2; everything unused: none.
        assert_eq!(live_ranges(50, page, &[]), vec![(2 * 4096, 48 * 4096)]);
        assert_eq!(live_ranges(50, page, &[(2, 48)]), vec![]);
        // Runs past the frontier (a damaged freelist) are clipped, not trusted.
        assert_eq!(
            live_ranges(50, page, &[(40, 100)]),
            vec![(2 * 4096, 38 * 4096)]
        );
    }
}
