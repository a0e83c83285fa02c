//! The page header every page starts with, and its checksum. The byte layout is specified in
//! `docs/format.md`; the offsets here are its only home in code.
//!
//! ```text
//! offset size field
//!      0    8 page id (u64 LE): this page's own number, so a misdirected write is caught
//!      8    1 kind: 1 meta, 2 branch, 3 leaf, 4 overflow, 5 freelist, 6 freelist delta
//!      9    1 reserved, zero
//!     10    2 count (u16 LE): entries in a branch or leaf
//!     12    4 overflow (u32 LE): pages that follow this one in the same run
//!     16    4 crc32 (u32 LE) of the whole run with these four bytes taken as zero
//!     20    4 reserved, zero
//! ```
//!
//! Decoding is linted against indexing and unchecked arithmetic: bytes from disk reach every
//! reader here, so a bad offset must be an error, never a panic. Encoders, which write buffers
//! this build sized, say so where they opt out.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

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
    /// The first page of the run holding the whole free-page list.
    Freelist = 5,
    /// The first page of a run holding one commit's changes to the free-page list, and a link to
    /// the list before them (format version 2).
    FreelistDelta = 6,
}

impl PageKind {
    fn from_u8(b: u8) -> Option<PageKind> {
        Some(match b {
            1 => PageKind::Meta,
            2 => PageKind::Branch,
            3 => PageKind::Leaf,
            4 => PageKind::Overflow,
            5 => PageKind::Freelist,
            6 => PageKind::FreelistDelta,
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
            PageKind::FreelistDelta => "freelist delta",
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
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder: `page` is ours
    pub fn write(&self, page: &mut [u8]) {
        page[..PAGE_HEADER_LEN].fill(0);
        page[OFF_ID..OFF_ID + 8].copy_from_slice(&self.id.to_le_bytes());
        page[OFF_KIND] = self.kind as u8;
        page[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&self.count.to_le_bytes());
        page[OFF_OVERFLOW..OFF_OVERFLOW + 4].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// Reads and validates the header of the page that should be `id`.
    pub fn read(page: &[u8], id: PageId) -> Result<Header> {
        let Some(header) = page.get(..PAGE_HEADER_LEN) else {
            return Err(corrupted(id, "page shorter than its header"));
        };
        let stored_id = read_u64(header, OFF_ID, id)?;
        if stored_id != id {
            return Err(corrupted(id, format!("page header names page {stored_id}")));
        }
        let kind_byte = field::<1>(header, OFF_KIND).map_or(0, |[b]| b);
        let kind = PageKind::from_u8(kind_byte)
            .ok_or_else(|| corrupted(id, format!("unknown page kind {kind_byte}")))?;
        Ok(Header {
            id,
            kind,
            count: read_u16(header, OFF_COUNT, id)?,
            overflow: read_u32(header, OFF_OVERFLOW, id)?,
        })
    }
}

/// The checksum of a run of pages, with the header's crc field counted as zero (a run shorter
/// than a header is hashed as it is).
pub(crate) fn checksum(run: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    match (run.get(..OFF_CRC), run.get(OFF_CRC_END..)) {
        (Some(before), Some(after)) => {
            h.update(before);
            h.update(&[0; 4]);
            h.update(after);
        }
        _ => h.update(run),
    }
    h.finalize()
}

pub(crate) const OFF_CRC_END: usize = OFF_CRC + 4;

/// Stores the checksum of `run` in its header.
#[allow(clippy::indexing_slicing)] // an encoder: `run` is ours and holds a header
pub(crate) fn seal(run: &mut [u8]) {
    let crc = checksum(run);
    run[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Gives a run copied unchanged its new id `to`. `first` is the run's first page (the only one
/// that changes) and `run_len` the run's length in bytes. The checksum is fixed without reading
/// the run again: the crc32 of two messages of one length that differ only in the id bytes differs
/// by the crc32 of their difference, less the crc32 of as many zeros. The caller has verified the
/// run's checksum; `zeros` caches the crc32 of zero runs by length.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // the caller verified the run
pub(crate) fn move_run(first: &mut [u8], run_len: usize, to: PageId, zeros: &mut ZeroCrcs) {
    let from = u64_at(first, OFF_ID).expect("a verified run holds a header");
    let stored = u32_at(first, OFF_CRC).expect("a verified run holds a header");
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
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // `n` ≤ `left`, `zeros`
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
    let stored = read_u32(run, OFF_CRC, id)?;
    let actual = checksum(run);
    if stored != actual {
        return Err(corrupted(
            id,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    Ok(())
}

/// The `N` bytes of `b` at `off`, or `None` when they run past its end.
#[inline]
pub(crate) fn field<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The little-endian `u16` at `off`, or `None` past the end of `b`.
#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    field(b, off).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `off`, or `None` past the end of `b`.
#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    field(b, off).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `off`, or `None` past the end of `b`.
#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    field(b, off).map(u64::from_le_bytes)
}

#[cold]
#[inline(never)]
fn past_end(id: PageId, off: usize) -> crate::error::Error {
    corrupted(
        id,
        format!("a field at byte {off} runs past the end of the page"),
    )
}

/// The little-endian `u16` at `off` of page `id`; past the end of `b` it is a corruption.
#[inline]
pub(crate) fn read_u16(b: &[u8], off: usize, id: PageId) -> Result<u16> {
    u16_at(b, off).ok_or_else(|| past_end(id, off))
}

/// The little-endian `u32` at `off` of page `id`; past the end of `b` it is a corruption.
#[inline]
pub(crate) fn read_u32(b: &[u8], off: usize, id: PageId) -> Result<u32> {
    u32_at(b, off).ok_or_else(|| past_end(id, off))
}

/// The little-endian `u64` at `off` of page `id`; past the end of `b` it is a corruption.
#[inline]
pub(crate) fn read_u64(b: &[u8], off: usize, id: PageId) -> Result<u64> {
    u64_at(b, off).ok_or_else(|| past_end(id, off))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
