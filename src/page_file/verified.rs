//! The pages of one file whose checksum has been verified, so that a reader verifies a page the
//! first time it is read and not again until the writer rewrites it.
//!
//! One [`VerifiedPages`] belongs to one file: every snapshot of that file holds the same one (an
//! `Arc` in `Snapshot`), a defrag's new file starts with an empty one, and a reopen starts afresh.
//! It is a bitmap of atomics indexed by page id, lock-free for readers and the writer alike, in
//! buckets that double in size (bucket `b` covers `4096 << b` pages), allocated on first use, so
//! that it grows with the file without ever moving a bit.
//!
//! What a bit means: page `p`'s bit is set only after the run starting at `p` (one page for a
//! branch or leaf; the run the header names for an overflow value) matched its stored checksum,
//! and the bytes of that run have not been rewritten since.
//!
//! Invariants (numbered as the file's; `docs/design.md` invariant 6 relies on them):
//! 1. **The writer clears the bit of every page it writes before it writes it** (reused or new,
//!    every page of a run; `Sink::write` in `txn::write`). The snapshot that makes the new bytes
//!    reachable is published after the write, under the lock a reader takes it from, so a reader
//!    that can reach the new bytes sees the bit cleared (or set again by someone who verified the
//!    new bytes).
//! 2. **No reader sets a stale bit.** A reader sets a bit after it verified bytes reachable from
//!    its snapshot. Its snapshot pins those pages: a page is rewritten only once no registered
//!    reader's snapshot can reach it (`docs/design.md` invariant 2), so the bytes it verified are
//!    still the bytes on disk when it sets the bit, and the writer's clear of a later rewrite comes
//!    after. The writer itself reads only pages reachable from its base snapshot, which it never
//!    writes in the same commit. Tools that read unregistered or from a file under repair (`check`,
//!    the page map, defrag's copy) never set bits. (A branch whose checksum was forged to point at
//!    a free page could make a reader verify a page while it is rewritten; crc32 does not defend
//!    against forgery, and every decode still bounds what it reads.)
//! 3. **A stale bit on a page nothing reaches is harmless.** A freed run may be reused in parts (a
//!    leaf on its second page): only the pages written are cleared, and the first page keeps its
//!    bit while it is free. A page becomes reachable again only by being written, which clears it.
//!
//! What it trusts: that bytes verified once do not change while they are reachable. A write into
//! the file from outside (another process ignoring the lock, or a disk that flips bits in the
//! page cache's back) after a page was read is not noticed until the next open, `check` or
//! defrag, which verify every page. `Builder::verify_checksums(false)` turns verification off.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::PageId;

/// log2 of the pages in the first bucket.
const FIRST_LOG2: u32 = 12;
/// Buckets: enough for any file folio can address (`4096 × (2^40 − 1)` pages).
const BUCKETS: usize = 40;

/// The verified pages of one file. See the module docs for what a bit means and who may set it.
#[derive(Debug)]
pub(crate) struct VerifiedPages {
    buckets: [OnceLock<Box<[AtomicU64]>>; BUCKETS],
}

impl Default for VerifiedPages {
    fn default() -> Self {
        VerifiedPages {
            buckets: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// Where page `id`'s bit lives: its bucket, the word in it and the bit's mask.
fn locate(id: PageId) -> Option<(usize, usize, u64)> {
    let i = id.checked_add(1 << FIRST_LOG2)?;
    let bucket = (63 - i.leading_zeros() - FIRST_LOG2) as usize;
    if bucket >= BUCKETS {
        return None;
    }
    let offset = i - (1u64 << (bucket as u32 + FIRST_LOG2));
    Some((bucket, (offset / 64) as usize, 1 << (offset % 64)))
}

impl VerifiedPages {
    /// Whether the run starting at `id` has been verified since it was last written.
    pub fn contains(&self, id: PageId) -> bool {
        let Some((bucket, word, bit)) = locate(id) else {
            return false;
        };
        self.buckets[bucket]
            .get()
            .is_some_and(|words| words[word].load(Ordering::Acquire) & bit != 0)
    }

    /// Records that the run starting at `id` matched its checksum. Only for bytes reachable from a
    /// registered snapshot (invariant 2).
    pub fn insert(&self, id: PageId) {
        let Some((bucket, word, bit)) = locate(id) else {
            return;
        };
        let words = self.buckets[bucket].get_or_init(|| {
            let len = 1usize << (bucket as u32 + FIRST_LOG2 - 6);
            (0..len).map(|_| AtomicU64::new(0)).collect()
        });
        words[word].fetch_or(bit, Ordering::Release);
    }

    /// Forgets pages `first..first + len`, which the writer is about to write (invariant 1).
    pub fn forget(&self, first: PageId, len: u64) {
        for id in first..first.saturating_add(len) {
            if let Some((bucket, word, bit)) = locate(id)
                && let Some(words) = self.buckets[bucket].get()
            {
                words[word].fetch_and(!bit, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_has_its_own_bit_across_bucket_boundaries() {
        let v = VerifiedPages::default();
        let ids = [
            0,
            1,
            63,
            64,
            4095,
            4096,
            8191,
            8192,
            12287,
            12288,
            1 << 30,
            (1 << 33) + 5,
        ];
        for &id in &ids {
            assert!(!v.contains(id));
            v.insert(id);
        }
        for &id in &ids {
            assert!(v.contains(id), "{id}");
            for near in [id.wrapping_sub(1), id + 1] {
                assert_eq!(v.contains(near), ids.contains(&near), "{near} beside {id}");
            }
        }
        v.forget(4095, 2);
        assert!(!v.contains(4095) && !v.contains(4096));
        assert!(v.contains(63) && v.contains(8191));
        // Past what any file can hold: never remembered, never a panic.
        v.insert(u64::MAX);
        assert!(!v.contains(u64::MAX));
        v.forget(u64::MAX - 1, 5);
    }
}
