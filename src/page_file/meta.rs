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
//!     80    4 proof length (u32 LE): runs in the proof below, 0 when there is none
//!     84    4 proof crc32 (u32 LE): of the proof's bytes
//!     88    8 reserved, zero
//!     96      the proof: per run, first page (u64 LE), pages (u32 LE), the run's crc32 (u32 LE)
//! ```
//! The crc32 in the header covers bytes 0..96 (META_LEN); the page past the proof is zero.
//!
//! A meta with a proof was written by a round that synced once (see `txn::sync`, rule 2): the
//! proof names every run written since the meta before it was made durable that this meta's
//! commit still uses, with the checksum each was sealed with. Such a meta counts only when every
//! run it names holds exactly that ([`read_newest`]); otherwise its commit's pages did not all
//! reach the disk, the commit was never acknowledged, and the other slot, which was durable before
//! this one was written, is the database.
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
pub(crate) const OFF_PROOF_LEN: usize = 80;
const OFF_PROOF_CRC: usize = 84;
const OFF_MAGIC_END: usize = OFF_MAGIC + MAGIC.len();
const _: () = assert!(OFF_PROOF_CRC + 4 <= META_LEN);

/// Bytes of one run in a meta's proof: first page `u64`, pages `u32`, crc32 `u32`.
pub(crate) const PROOF_ENTRY_LEN: usize = 16;

/// A run a commit wrote, as a meta's proof names it: where it lies and the checksum it was sealed
/// with (the crc32 in its first page's header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Proven {
    pub page: PageId,
    pub pages: u32,
    pub crc: u32,
}

/// How many runs a meta page of `page_size` bytes can prove.
#[allow(clippy::arithmetic_side_effects)] // a page size is at least PAGE_SIZE_MIN > META_LEN
pub(crate) const fn proof_capacity(page_size: u32) -> usize {
    (page_size as usize - META_LEN) / PROOF_ENTRY_LEN
}

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

    /// Encodes this meta as the page `slot` (0 or 1), with no proof.
    pub fn encode(&self, slot: PageId) -> Vec<u8> {
        self.encode_proven(slot, &[])
    }

    /// Encodes this meta as the page `slot` (0 or 1) with the proof `proof` (at most
    /// [`proof_capacity`] runs).
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // an encoder
    pub fn encode_proven(&self, slot: PageId, proof: &[Proven]) -> Vec<u8> {
        assert!(
            proof.len() <= proof_capacity(self.page_size),
            "a proof of {} runs does not fit a meta page",
            proof.len()
        );
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
        let proof_end = META_LEN + proof.len() * PROOF_ENTRY_LEN;
        for (run, at) in proof.iter().zip((META_LEN..).step_by(PROOF_ENTRY_LEN)) {
            buf[at..at + 8].copy_from_slice(&run.page.to_le_bytes());
            buf[at + 8..at + 12].copy_from_slice(&run.pages.to_le_bytes());
            buf[at + 12..at + 16].copy_from_slice(&run.crc.to_le_bytes());
        }
        let proof_crc = crc32fast::hash(&buf[META_LEN..proof_end]);
        buf[OFF_PROOF_LEN..OFF_PROOF_LEN + 4].copy_from_slice(&(proof.len() as u32).to_le_bytes());
        buf[OFF_PROOF_CRC..OFF_PROOF_CRC + 4].copy_from_slice(&proof_crc.to_le_bytes());
        page::seal(&mut buf[..META_LEN]);
        buf
    }
}

/// A meta slot that decoded: the meta, and the length and checksum of its proof, which lies past
/// the checksummed part and is read only for the slot chosen.
#[derive(Clone, Copy, Debug)]
struct Decoded {
    meta: Meta,
    proof_len: usize,
    proof_crc: u32,
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

fn decode(buf: &[u8], slot: PageId) -> Result<Decoded, SlotError> {
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
    let proof_len = get32(OFF_PROOF_LEN)? as usize;
    if proof_len > proof_capacity(page_size) {
        return Err(SlotError::Damaged(format!(
            "a proof of {proof_len} runs does not fit a page of {page_size} bytes"
        )));
    }
    Ok(Decoded {
        meta: m,
        proof_len,
        proof_crc: get32(OFF_PROOF_CRC)?,
    })
}

/// Decodes one meta slot from the start of its page, for tools that show a single slot.
pub(crate) fn decode_slot(buf: &[u8], slot: PageId) -> Result<Meta> {
    decode(buf, slot).map(|d| d.meta).map_err(|e| match e {
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

/// Reads both meta slots and picks the valid one with the higher txid, unless it carries a proof
/// that the file does not bear out: then the other slot's. Returns the meta, the slot it came
/// from, and whether it carries a proof. A chosen meta whose pages the file does not hold is
/// [`Error::Truncated`].
pub(crate) fn read_newest(storage: &dyn Storage) -> Result<(Meta, PageId, bool)> {
    let file_len = storage.len()?;
    let (newest, other) = choose(storage, file_len)?;
    let (meta, slot, proved) = match unproven(storage, file_len, newest)? {
        None => (newest.0.meta, newest.1, newest.0.proof_len > 0),
        // The newest meta's commit never fully reached the disk, so it was never acknowledged;
        // the other slot was made durable before it was written. That slot is not proved again:
        // a later commit may have reused pages its commits wrote and the newest stopped using.
        Some(why) => match other {
            Ok((d, slot)) => (d.meta, slot, d.proof_len > 0),
            Err(other_why) => {
                let (first, second) = if newest.1 == 0 {
                    (why, other_why)
                } else {
                    (other_why, why)
                };
                return Err(Error::MetaDamaged { first, second });
            }
        },
    };
    let needed = meta.bytes_needed();
    if needed > file_len {
        return Err(Error::Truncated {
            expected: needed,
            actual: file_len,
        });
    }
    Ok((meta, slot, proved))
}

/// Bytes of runs a proof may name at most, so that checking one reads little at open: a round
/// whose commits wrote more syncs twice instead (`txn::sync`). A meta naming more is damaged.
pub(crate) const PROOF_BYTES_MAX: u64 = 4 << 20;

/// Why the proof of `meta`, read from `slot`, does not hold (every run it names must lie in the
/// file and hold the checksum it names), or `None` when it holds or there is none.
#[allow(clippy::arithmetic_side_effects)] // offsets bounded by the file's length, checked first
fn unproven(
    storage: &dyn Storage,
    file_len: u64,
    (d, slot): (Decoded, PageId),
) -> Result<Option<String>> {
    if d.proof_len == 0 {
        return Ok(None);
    }
    let page_size = u64::from(d.meta.page_size);
    // `decode` bounded the proof by the page, and the page count by what a file can hold.
    let end = META_LEN + d.proof_len * PROOF_ENTRY_LEN;
    if slot * page_size + end as u64 > file_len {
        return Ok(Some("its proof runs past the end of the file".into()));
    }
    if d.meta.bytes_needed() > file_len {
        return Ok(Some(format!(
            "its commit's pages did not all reach the disk: it needs {} bytes, the file holds {file_len}",
            d.meta.bytes_needed()
        )));
    }
    let mut buf = vec![0u8; end];
    storage.read_at(&mut buf, slot * page_size)?;
    let Some(proof) = buf.get(META_LEN..end) else {
        return Ok(Some("its proof runs past its page".into()));
    };
    if crc32fast::hash(proof) != d.proof_crc {
        return Ok(Some("its proof's checksum does not match".into()));
    }
    let mut runs = Vec::with_capacity(d.proof_len);
    let mut bytes = 0u64;
    for entry in proof.chunks_exact(PROOF_ENTRY_LEN) {
        let run = Proven {
            page: read_u64(entry, 0, slot)?,
            pages: read_u32(entry, 8, slot)?,
            crc: read_u32(entry, 12, slot)?,
        };
        let inside = run.pages > 0
            && run.page >= 2
            && run
                .page
                .checked_add(u64::from(run.pages))
                .is_some_and(|end| end <= d.meta.page_count);
        if !inside {
            return Ok(Some(format!(
                "its proof names pages {}+{} outside its {} pages",
                run.page, run.pages, d.meta.page_count
            )));
        }
        bytes += u64::from(run.pages) * page_size;
        runs.push(run);
    }
    if bytes > PROOF_BYTES_MAX {
        return Ok(Some(format!(
            "its proof names {bytes} bytes of runs, more than any commit proves"
        )));
    }
    let mut run_buf = Vec::new();
    for run in runs {
        run_buf.resize(run.pages as usize * page_size as usize, 0);
        storage.read_at(&mut run_buf, run.page * page_size)?;
        let sealed = page::verify(&run_buf, run.page).is_ok()
            && page::u32_at(&run_buf, page::OFF_CRC) == Some(run.crc);
        if !sealed {
            return Ok(Some(format!(
                "its commit's pages did not all reach the disk (the run at page {} does not hold what it wrote)",
                run.page
            )));
        }
    }
    Ok(None)
}

/// A slot that decoded, and where it came from.
type Candidate = (Decoded, PageId);

/// Decodes both slots: the valid one with the higher txid, and the other one or why it is not
/// valid.
fn choose(
    storage: &dyn Storage,
    file_len: u64,
) -> Result<(Candidate, std::result::Result<Candidate, String>)> {
    if file_len == 0 {
        return Err(Error::EmptyFile);
    }
    let slot0 = read_slot(storage, 0, file_len)?;
    let first = decode(&slot0, 0);
    // Slot 1 sits one page in. Take the page size from slot 0, or, when slot 0 is bad, look for
    // slot 1 at every possible page size.
    let second = match &first {
        Ok(d) => decode(
            &read_slot(storage, u64::from(d.meta.page_size), file_len)?,
            1,
        ),
        Err(_) => {
            let mut found = Err(SlotError::NoMagic);
            let sizes = (0..u32::BITS)
                .filter_map(|shift| 1u32.checked_shl(shift))
                .filter(|size| (PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(size));
            for size in sizes {
                match decode(&read_slot(storage, u64::from(size), file_len)?, 1) {
                    Ok(d) if d.meta.page_size == size => {
                        found = Ok(d);
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
        (Ok(a), Ok(b)) if a.meta.page_size != b.meta.page_size => Err(Error::MetaDamaged {
            first: format!("page size {}", a.meta.page_size),
            second: format!("page size {}", b.meta.page_size),
        }),
        // Of two metas of one commit, the one without a proof (written at a clean close, see
        // `txn::sync` rule 8) needs no proving.
        (Ok(a), Ok(b)) => Ok(if (b.meta.txid, a.proof_len) > (a.meta.txid, b.proof_len) {
            ((b, 1), Ok((a, 0)))
        } else {
            ((a, 0), Ok((b, 1)))
        }),
        (Ok(a), Err(e)) => Ok(((a, 0), Err(describe(Err(e))))),
        (Err(e), Ok(b)) => Ok(((b, 1), Err(describe(Err(e))))),
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

fn describe(r: Result<Decoded, SlotError>) -> String {
    match r {
        Ok(_) => "valid".into(),
        Err(SlotError::NoMagic) => "no folio header".into(),
        Err(SlotError::Damaged(why)) => why,
        Err(SlotError::Version(v)) => format!("version {v}"),
    }
}
