//! The two meta pages: the root of everything. A commit writes the slot that does not hold the
//! newest durable meta; open takes the valid slot with the higher transaction id.
//!
//! ```text
//! offset size field (after the 24-byte page header, kind = meta, overflow = 0)
//!     24    8 magic "FOLIO\0DB"
//!     32    4 format version (u32 LE)
//!     36    4 page size (u32 LE)
//!     40    8 txid (u64 LE): the commit this meta describes
//!     48    8 catalog root page (u64 LE), 0 when there are no trees
//!     56    8 freelist page (u64 LE), 0 when nothing is free
//!     64    8 page count (u64 LE): pages in use, the allocation frontier
//!     72    8 catalog entry count (u64 LE): the number of named trees
//!     80   16 reserved, zero
//! ```
//! The crc32 in the header covers bytes 0..96 (META_LEN); the rest of the page is zero.
//!
//! crc32 is easy to forge, so a meta with a good checksum is still bounded before anything trusts
//! it: its page count against [`page_count_max`] at decode (so `page_count × page_size` cannot
//! wrap) and against the file's length when it is chosen ([`read_newest`]), and its catalog
//! length against what that many pages could hold ([`entries_max`]). Decoding is linted against
//! indexing and unchecked arithmetic.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::error::{Error, PageId, Result, corrupted};
use crate::limits::{
    FORMAT_VERSION, FORMAT_VERSION_OLDEST, META_LEN, PAGE_SIZE_MAX, PAGE_SIZE_MIN, entries_max,
    page_count_max,
};
use crate::page_file::page::{self, Header, PageKind, field, read_u32, read_u64};
use crate::page_file::storage::Storage;

/// The magic number in every meta page.
pub(crate) const MAGIC: &[u8; 8] = b"FOLIO\0DB";

const OFF_MAGIC: usize = 24;
pub(crate) const OFF_VERSION: usize = 32;
const OFF_PAGE_SIZE: usize = 36;
const OFF_TXID: usize = 40;
const OFF_CATALOG: usize = 48;
const OFF_FREELIST: usize = 56;
const OFF_PAGE_COUNT: usize = 64;
const OFF_CATALOG_LEN: usize = 72;
const OFF_MAGIC_END: usize = OFF_MAGIC + MAGIC.len();
const _: () = assert!(OFF_CATALOG_LEN + 8 <= META_LEN);

/// The decoded contents of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub txid: u64,
    /// Root page of the catalog tree, or 0 when there are no named trees.
    pub catalog_root: PageId,
    /// Entries in the catalog: the number of named trees.
    pub catalog_len: u64,
    /// First page of the freelist run, or 0 when nothing is free.
    pub freelist: PageId,
    /// Pages in use: every page id is below this.
    pub page_count: u64,
}

impl Meta {
    /// The bytes the pages of this meta take: its page count times its page size. Decoding bounds
    /// the page count so that this cannot wrap.
    pub fn bytes_needed(&self) -> u64 {
        self.page_count.saturating_mul(u64::from(self.page_size))
    }

    /// Encodes this meta as the page `slot` (0 or 1).
    #[allow(clippy::indexing_slicing)] // an encoder: `buf` is a page this build sized
    pub fn encode(&self, slot: PageId) -> Vec<u8> {
        let mut buf = vec![0u8; self.page_size as usize];
        Header {
            id: slot,
            kind: PageKind::Meta,
            count: 0,
            overflow: 0,
        }
        .write(&mut buf);
        buf[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(MAGIC);
        buf[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf[OFF_PAGE_SIZE..OFF_PAGE_SIZE + 4].copy_from_slice(&self.page_size.to_le_bytes());
        buf[OFF_TXID..OFF_TXID + 8].copy_from_slice(&self.txid.to_le_bytes());
        buf[OFF_CATALOG..OFF_CATALOG + 8].copy_from_slice(&self.catalog_root.to_le_bytes());
        buf[OFF_FREELIST..OFF_FREELIST + 8].copy_from_slice(&self.freelist.to_le_bytes());
        buf[OFF_PAGE_COUNT..OFF_PAGE_COUNT + 8].copy_from_slice(&self.page_count.to_le_bytes());
        buf[OFF_CATALOG_LEN..OFF_CATALOG_LEN + 8].copy_from_slice(&self.catalog_len.to_le_bytes());
        page::seal(&mut buf[..META_LEN]);
        buf
    }
}

/// Why one meta slot could not be used.
#[derive(Debug)]
enum SlotError {
    /// No magic: this is not a folio meta at all.
    NoMagic,
    /// Folio's magic, but the bytes are bad.
    Damaged(String),
    /// Folio's magic and a good checksum, but a newer format.
    Version(u32),
}

impl SlotError {
    /// A slot rejected for a corruption: its reason alone (the slot is named where it is shown).
    fn damaged(e: Error) -> SlotError {
        match e {
            Error::Corrupted { reason, .. } => SlotError::Damaged(reason),
            e => SlotError::Damaged(e.to_string()),
        }
    }
}

fn decode(buf: &[u8], slot: PageId) -> Result<Meta, SlotError> {
    let Some(meta) = buf.get(..META_LEN) else {
        return Err(SlotError::NoMagic);
    };
    if field::<8>(meta, OFF_MAGIC).as_ref() != Some(MAGIC) {
        return Err(SlotError::NoMagic);
    }
    page::verify(meta, slot).map_err(SlotError::damaged)?;
    let header = Header::read(meta, slot).map_err(SlotError::damaged)?;
    if header.kind != PageKind::Meta {
        return Err(SlotError::Damaged("not a meta page".into()));
    }
    let get32 = |off| read_u32(meta, off, slot).map_err(SlotError::damaged);
    let get64 = |off| read_u64(meta, off, slot).map_err(SlotError::damaged);
    let version = get32(OFF_VERSION)?;
    if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(SlotError::Version(version));
    }
    let page_size = get32(OFF_PAGE_SIZE)?;
    if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
        return Err(SlotError::Damaged(format!(
            "page size {page_size} out of range"
        )));
    }
    let m = Meta {
        page_size,
        txid: get64(OFF_TXID)?,
        catalog_root: get64(OFF_CATALOG)?,
        freelist: get64(OFF_FREELIST)?,
        page_count: get64(OFF_PAGE_COUNT)?,
        catalog_len: get64(OFF_CATALOG_LEN)?,
    };
    if m.page_count > page_count_max(page_size) {
        return Err(SlotError::Damaged(format!(
            "page count {} is more than any file holds at page size {page_size}",
            m.page_count
        )));
    }
    let in_range = |p: PageId| p == 0 || (2..m.page_count).contains(&p);
    if m.page_count < 2 || !in_range(m.catalog_root) || !in_range(m.freelist) {
        return Err(SlotError::Damaged("page number out of range".into()));
    }
    let catalog_max = if m.catalog_root == 0 {
        0
    } else {
        entries_max(m.page_count, page_size)
    };
    if m.catalog_len > catalog_max {
        return Err(SlotError::Damaged(format!(
            "catalog length {} is more than {} pages hold",
            m.catalog_len, m.page_count
        )));
    }
    Ok(m)
}

/// Decodes one meta slot from the start of its page, for tools that show a single slot.
pub(crate) fn decode_slot(buf: &[u8], slot: PageId) -> Result<Meta> {
    decode(buf, slot).map_err(|e| match e {
        SlotError::Version(v) => Error::UnsupportedVersion(v),
        e => corrupted(slot, describe(Err(e))),
    })
}

fn read_slot(storage: &dyn Storage, offset: u64, file_len: u64) -> Result<Vec<u8>> {
    let n =
        usize::try_from((META_LEN as u64).min(file_len.saturating_sub(offset))).unwrap_or(META_LEN);
    let mut buf = vec![0u8; n];
    storage.read_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads both meta slots and picks the valid one with the higher txid. Returns the meta and the
/// slot it came from. A chosen meta whose pages the file does not hold is [`Error::Truncated`].
pub(crate) fn read_newest(storage: &dyn Storage) -> Result<(Meta, PageId)> {
    let file_len = storage.len()?;
    let (meta, slot) = choose(storage, file_len)?;
    let needed = meta.bytes_needed();
    if needed > file_len {
        return Err(Error::Truncated {
            expected: needed,
            actual: file_len,
        });
    }
    Ok((meta, slot))
}

fn choose(storage: &dyn Storage, file_len: u64) -> Result<(Meta, PageId)> {
    if file_len == 0 {
        return Err(Error::EmptyFile);
    }
    let slot0 = read_slot(storage, 0, file_len)?;
    let first = decode(&slot0, 0);
    // Slot 1 sits one page in. Take the page size from slot 0, or, when slot 0 is bad, look for
    // slot 1 at every possible page size.
    let second = match &first {
        Ok(m) => decode(&read_slot(storage, u64::from(m.page_size), file_len)?, 1),
        Err(_) => {
            let mut found = Err(SlotError::NoMagic);
            let sizes = (0..u32::BITS)
                .filter_map(|shift| 1u32.checked_shl(shift))
                .filter(|size| (PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(size));
            for size in sizes {
                match decode(&read_slot(storage, u64::from(size), file_len)?, 1) {
                    Ok(m) if m.page_size == size => {
                        found = Ok(m);
                        break;
                    }
                    Err(e @ (SlotError::Damaged(_) | SlotError::Version(_))) => found = Err(e),
                    _ => {}
                }
            }
            found
        }
    };
    match (first, second) {
        // A good checksum with another version means a newer build wrote this file: falling back
        // to the other slot would roll its commits back, and the next commit would overwrite it.
        (Err(SlotError::Version(v)), _) | (_, Err(SlotError::Version(v))) => {
            Err(Error::UnsupportedVersion(v))
        }
        (Ok(a), Ok(b)) if a.page_size != b.page_size => Err(Error::MetaDamaged {
            first: format!("page size {}", a.page_size),
            second: format!("page size {}", b.page_size),
        }),
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { (b, 1) } else { (a, 0) }),
        (Ok(a), Err(_)) => Ok((a, 0)),
        (Err(_), Ok(b)) => Ok((b, 1)),
        (Err(SlotError::NoMagic), Err(SlotError::NoMagic)) => {
            if file_len < META_LEN as u64 && could_be_meta_start(&slot0) {
                Err(Error::Truncated {
                    expected: 2 * u64::from(PAGE_SIZE_MIN),
                    actual: file_len,
                })
            } else {
                Err(Error::NotADatabase)
            }
        }
        (a, b) => Err(Error::MetaDamaged {
            first: describe(a),
            second: describe(b),
        }),
    }
}

/// Whether the bytes of a file too short to hold a meta agree with the start of meta page 0 (its
/// header and magic), so that the file may be a folio database cut short rather than another file.
fn could_be_meta_start(prefix: &[u8]) -> bool {
    let crc = page::OFF_CRC..page::OFF_CRC_END;
    let magic = OFF_MAGIC..OFF_MAGIC_END;
    let expected = |i: usize| match i {
        page::OFF_KIND => PageKind::Meta as u8,
        i if magic.contains(&i) => MAGIC.get(i.wrapping_sub(OFF_MAGIC)).copied().unwrap_or(0),
        _ => 0,
    };
    prefix
        .iter()
        .take(magic.end)
        .enumerate()
        .all(|(i, &b)| crc.contains(&i) || b == expected(i))
}

fn describe(r: Result<Meta, SlotError>) -> String {
    match r {
        Ok(_) => "valid".into(),
        Err(SlotError::NoMagic) => "no folio header".into(),
        Err(SlotError::Damaged(why)) => why,
        Err(SlotError::Version(v)) => format!("version {v}"),
    }
}
