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

/// Asks the kernel, while it lives, to read only the page a fault needs from `map` (not the
/// pages around it), and restores the default advice as it drops.
///
/// An online copy's walk takes pages in key order, which in a fragmented file is random order on
/// disk, and the kernel answers a fault on a file mapping by reading the pages around it too
/// (`read_ahead_kb`: 128 KiB by default, 8 MiB on the disk these figures were taken on). From a
/// cold cache the walk's faults then read the file many times faster than the pace allows, out of
/// reach of the pace, and the writers' own reads queue behind them (puts of 0.35–1.2 s early in a
/// cold copy of 1 GiB). With this advice the walk's faults read one page each; the read-ahead
/// thread streams the rest at the pace. The advice is on the mapping, which writers and readers
/// of the same snapshot share: their faults read one page too while it holds, which is what a
/// B+tree's point reads want. bbolt advises random access on its mapping always.
pub(crate) struct RandomAccess<'a>(&'a Mmap);

impl<'a> RandomAccess<'a> {
    /// Advises random access on all of `map`: a hint, so a refusal changes nothing but speed.
    pub fn new(map: &'a Mmap) -> RandomAccess<'a> {
        let _ = map.advise(Advice::Random);
        RandomAccess(map)
    }
}

impl Drop for RandomAccess<'_> {
    fn drop(&mut self) {
        let _ = self.0.advise(Advice::Normal);
    }
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

#[cfg(all(test, target_os = "linux"))]
mod advice_tests {
    use super::*;

    /// The kernel's flags for the mapping that starts at `addr` (`/proc/self/smaps`'s `VmFlags`).
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let start = line.split('-').next().unwrap_or("");
            if usize::from_str_radix(start, 16) != Ok(addr) {
                continue;
            }
            let flags = lines.find(|l| l.starts_with("VmFlags:")).unwrap();
            return flags.split_whitespace().skip(1).map(String::from).collect();
        }
        panic!("no mapping at {addr:#x} in /proc/self/smaps");
    }

    /// What it guards: an online copy's faults must read only their page while writers share the
    /// disk (a fault that read its neighbours too stalled puts for up to 1.2 s in a cold copy),
    /// and the mapping must get the kernel's default back after, for whoever keeps using it.
    #[test]
    fn random_access_is_advised_while_the_guard_lives_and_undone_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let map = crate::page_file::storage::map_file(&file).unwrap();
        let addr = map.as_ptr() as usize;
        let random = |flags: &[String]| flags.iter().any(|f| f == "rr");
        assert!(!random(&vm_flags(addr)), "a new mapping has the default");
        {
            let _guard = RandomAccess::new(&map);
            assert!(
                random(&vm_flags(addr)),
                "random access while the guard lives"
            );
        }
        assert!(!random(&vm_flags(addr)), "the default again after");
    }
}
