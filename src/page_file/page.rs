//! The page header every page starts with, and its checksum. The byte layout is specified in
//! `docs/format.md`; the offsets here are its only home in code.
//!
//! ```text
//! offset size field
//!      0    8 page id (u64 LE): this page's own number, so a misdirected write is caught
//!      8    1 kind: 1 meta, 2 branch, 3 leaf, 4 overflow, 5 freelist
//!      9    1 reserved, zero
//!     10    2 count (u16 LE): entries in a branch or leaf
//!     12    4 overflow (u32 LE): pages that follow this one in the same run
//!     16    4 crc32 (u32 LE) of the whole run with these four bytes taken as zero
//!     20    4 reserved, zero
//! ```

use crate::error::{PageId, Result, corrupted};
use crate::limits::PAGE_HEADER_LEN;

pub(crate) const OFF_ID: usize = 0;
pub(crate) const OFF_KIND: usize = 8;
pub(crate) const OFF_COUNT: usize = 10;
pub(crate) const OFF_OVERFLOW: usize = 12;
pub(crate) const OFF_CRC: usize = 16;

const _: () = assert!(OFF_CRC + 4 + 4 == PAGE_HEADER_LEN);

/// What a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageKind {
    /// One of the two meta pages (0 and 1).
    Meta = 1,
    /// An interior node of a B+tree.
    Branch = 2,
    /// A leaf node of a B+tree.
    Leaf = 3,
    /// The first page of a run holding one large value.
    Overflow = 4,
    /// The first page of the run holding the free-page list.
    Freelist = 5,
}

impl PageKind {
    fn from_u8(b: u8) -> Option<PageKind> {
        Some(match b {
            1 => PageKind::Meta,
            2 => PageKind::Branch,
            3 => PageKind::Leaf,
            4 => PageKind::Overflow,
            5 => PageKind::Freelist,
            _ => return None,
        })
    }

    /// A short lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            PageKind::Meta => "meta",
            PageKind::Branch => "branch",
            PageKind::Leaf => "leaf",
            PageKind::Overflow => "overflow",
            PageKind::Freelist => "freelist",
        }
    }
}

/// The decoded header of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: PageId,
    pub kind: PageKind,
    pub count: u16,
    pub overflow: u32,
}

impl Header {
    /// Writes this header into the first bytes of `page`; the checksum is written by [`seal`].
    pub fn write(&self, page: &mut [u8]) {
        page[..PAGE_HEADER_LEN].fill(0);
        page[OFF_ID..OFF_ID + 8].copy_from_slice(&self.id.to_le_bytes());
        page[OFF_KIND] = self.kind as u8;
        page[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&self.count.to_le_bytes());
        page[OFF_OVERFLOW..OFF_OVERFLOW + 4].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// Reads and validates the header of the page that should be `id`.
    pub fn read(page: &[u8], id: PageId) -> Result<Header> {
        if page.len() < PAGE_HEADER_LEN {
            return Err(corrupted(id, "page shorter than its header"));
        }
        let stored_id = u64_at(page, OFF_ID);
        if stored_id != id {
            return Err(corrupted(id, format!("page header names page {stored_id}")));
        }
        let kind = PageKind::from_u8(page[OFF_KIND])
            .ok_or_else(|| corrupted(id, format!("unknown page kind {}", page[OFF_KIND])))?;
        Ok(Header {
            id,
            kind,
            count: u16_at(page, OFF_COUNT),
            overflow: u32_at(page, OFF_OVERFLOW),
        })
    }
}

/// The checksum of a run of pages, with the header's crc field counted as zero.
pub(crate) fn checksum(run: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&run[..OFF_CRC]);
    h.update(&[0; 4]);
    h.update(&run[OFF_CRC + 4..]);
    h.finalize()
}

/// Stores the checksum of `run` in its header.
pub(crate) fn seal(run: &mut [u8]) {
    let crc = checksum(run);
    run[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Gives a run copied unchanged its new id `to`. `first` is the run's first page (the only one
/// that changes) and `run_len` the run's length in bytes. The checksum is fixed without reading
/// the run again: the crc32 of two messages of one length that differ only in the id bytes differs
/// by the crc32 of their difference, less the crc32 of as many zeros. The caller has verified the
/// run's checksum; `zeros` caches the crc32 of zero runs by length.
pub(crate) fn move_run(first: &mut [u8], run_len: usize, to: PageId, zeros: &mut ZeroCrcs) {
    let from = u64_at(first, OFF_ID);
    let stored = u32_at(first, OFF_CRC);
    let mut delta = crc32fast::Hasher::new();
    delta.update(&(from ^ to).to_le_bytes());
    delta.combine(&crc32fast::Hasher::new_with_initial_len(
        zeros.crc(run_len - 8),
        (run_len - 8) as u64,
    ));
    let crc = stored ^ delta.finalize() ^ zeros.crc(run_len);
    first[OFF_ID..OFF_ID + 8].copy_from_slice(&to.to_le_bytes());
    first[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The crc32 of runs of zero bytes, by length: each length hashed once (runs come in few lengths).
#[derive(Debug, Default)]
pub(crate) struct ZeroCrcs(std::collections::HashMap<usize, u32>);

impl ZeroCrcs {
    fn crc(&mut self, len: usize) -> u32 {
        *self.0.entry(len).or_insert_with(|| {
            let zeros = [0u8; 4096];
            let mut h = crc32fast::Hasher::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len());
                h.update(&zeros[..n]);
                left -= n;
            }
            h.finalize()
        })
    }
}

/// Checks the stored checksum of a run against its bytes.
pub(crate) fn verify(run: &[u8], id: PageId) -> Result<()> {
    let stored = u32_at(run, OFF_CRC);
    let actual = checksum(run);
    if stored != actual {
        return Err(corrupted(
            id,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    Ok(())
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("two bytes"))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("four bytes"))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_run_has_the_checksum_that_sealing_it_anew_gives() {
        let mut zeros = ZeroCrcs::default();
        for (len, from, to) in [
            (512, 7u64, 9u64),
            (4096 * 3, 123_456, 2),
            (1024, 2, u64::MAX),
        ] {
            let mut run: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            Header {
                id: from,
                kind: PageKind::Overflow,
                count: 0,
                overflow: 2,
            }
            .write(&mut run);
            seal(&mut run);
            let mut moved = run.clone();
            move_run(&mut moved[..512], len, to, &mut zeros);
            let mut sealed = run.clone();
            sealed[OFF_ID..OFF_ID + 8].copy_from_slice(&to.to_le_bytes());
            seal(&mut sealed);
            assert_eq!(moved, sealed, "len {len}, {from} -> {to}");
            verify(&moved, to).unwrap();
        }
    }
}
