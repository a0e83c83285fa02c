//! Entry points for the fuzz targets in `fuzz/`. **Not an API**: hidden from the docs, exempt from
//! semver, and free to change with the decoders it wraps.
//!
//! The decoders are crate-private; each function here runs one of them over arbitrary bytes the
//! way the engine does, and returns what it decoded or the error. A fuzz target fails only on a
//! panic, a hang or an allocation failure: every `Err` is a correct answer to bad bytes.

use crate::btree::node::{PageView, ValueRef};
use crate::btree::source::{Pages, Verify};
use crate::error::{PageId, Result};
use crate::page_file::freelist::FreeList;
use crate::page_file::meta;
use crate::page_file::page::{self, Header};

/// The page id a buffer claims in its header (so that the decoders' id check can pass).
fn claimed_id(bytes: &[u8]) -> PageId {
    page::u64_at(bytes, 0).unwrap_or(0)
}

/// Decodes a page header and verifies the checksum of `bytes` as one run.
pub fn page_header(bytes: &[u8]) -> Result<(u8, u16, u32)> {
    let id = claimed_id(bytes);
    let h = Header::read(bytes, id)?;
    page::verify(bytes, id)?;
    Ok((h.kind as u8, h.count, h.overflow))
}

/// Views `bytes` as a branch or leaf page and reads every key, value and child. Returns the
/// number of entries read.
pub fn node(bytes: &[u8]) -> Result<usize> {
    let id = claimed_id(bytes);
    match PageView::new(bytes, id)? {
        PageView::Branch(b) => {
            for i in 0..b.len() {
                b.key(i)?;
                b.child(i)?;
            }
            crate::btree::node::search(b.len(), b"m", |i| b.key(i))?;
            Ok(b.len())
        }
        PageView::Leaf(l) => {
            for i in 0..l.len() {
                l.key(i)?;
                if let ValueRef::Overflow { len, .. } = l.value(i)? {
                    crate::btree::node::overflow_pages(len as usize, 512);
                }
            }
            crate::btree::node::search(l.len(), b"m", |i| l.key(i))?;
            Ok(l.len())
        }
    }
}

/// Treats `file` as the pages of a database of `page_size` bytes per page (a power of two from
/// 512 to 32768) and reads the overflow value of `len` bytes whose run starts at page `id`, with
/// checksums verified or not.
pub fn overflow(
    file: &[u8],
    page_size: u32,
    id: PageId,
    len: u32,
    verify_checksums: bool,
) -> Result<usize> {
    let page_size = page_size.clamp(512, 32768).next_power_of_two();
    let pages = Pages {
        data: file,
        page_size,
        page_count: (file.len() / page_size as usize) as u64,
        verify: if verify_checksums {
            Verify::Always
        } else {
            Verify::Off
        },
    };
    pages.overflow(id, len).map(<[u8]>::len)
}

/// Decodes a freelist run for a database of `page_count` pages; returns its free extents.
pub fn freelist(bytes: &[u8], page_count: u64) -> Result<Vec<(PageId, u64)>> {
    let list = FreeList::decode(bytes, claimed_id(bytes), page_count)?;
    Ok(list.extents().collect())
}

/// One change of a freelist delta: its first page, its pages, and whether the run was taken
/// from the list (else added to it).
pub type DeltaChange = (PageId, u64, bool);

/// Decodes a freelist delta run for a database of `page_count` pages; returns its link, its
/// depth and its changes.
pub fn freelist_delta(bytes: &[u8], page_count: u64) -> Result<(PageId, u64, Vec<DeltaChange>)> {
    let delta =
        crate::page_file::freelist::chain::decode_delta(bytes, claimed_id(bytes), page_count)?;
    Ok((delta.previous, delta.depth, delta.changes))
}

/// The fields of a decoded meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFields {
    /// Bytes per page.
    pub page_size: u32,
    /// The commit.
    pub txid: u64,
    /// Root of the catalog.
    pub catalog_root: PageId,
    /// Trees in the catalog.
    pub catalog_len: u64,
    /// First page of the freelist run.
    pub freelist: PageId,
    /// Pages in use.
    pub page_count: u64,
}

/// Decodes `bytes` as meta slot `slot`; when it decodes, encodes it again and checks that the
/// encoding decodes to the same fields (panics if not: that is a bug).
pub fn meta(bytes: &[u8], slot: PageId) -> Result<MetaFields> {
    let m = meta::decode_slot(bytes, slot)?;
    let again = meta::decode_slot(&m.encode(slot), slot).expect("an encoded meta decodes");
    assert_eq!(m, again, "meta round trip");
    Ok(MetaFields {
        page_size: m.page_size,
        txid: m.txid,
        catalog_root: m.catalog_root,
        catalog_len: m.catalog_len,
        freelist: m.freelist,
        page_count: m.page_count,
    })
}

/// Stores a correct checksum in the header of the run `run` (at least a header long), as an
/// attacker forging a page would.
pub fn seal(run: &mut [u8]) {
    if run.len() >= crate::limits::PAGE_HEADER_LEN {
        page::seal(run);
    }
}

/// Decodes `bytes` as one chunk of a persisted key index (`mvcc/key_index/persist.rs`) whose
/// revisions are at most `revision_max`, as an open loads it, then asks every decoded history
/// what an open store would: what is visible at every revision up to `revision_max + 1` (at
/// most 64 of them) and whether the key is alive. Returns the keys and revisions decoded, or
/// why the chunk was rejected.
pub fn key_index_chunk(
    bytes: &[u8],
    revision_max: i64,
) -> std::result::Result<(usize, u64), String> {
    crate::mvcc::key_index::persist::fuzz_chunk(bytes, revision_max)
}
