//! The persisted key index: the packed index written into its own tree, with the revision it
//! reflects, so an open can load it instead of reading every record (see `open.rs` for when it
//! is trusted, and `docs/design.md`, the key index, for when it is written).
//!
//! The tree `mvcc.index` holds a header and the index in chunks:
//!
//! ```text
//! key "header" (64 bytes, little-endian)
//!   OFFSET SIZE DESCRIPTION
//!   0      4    format, 1
//!   4      4    chunks: how many chunk entries follow
//!   8      8    revision: the store's current revision the index reflects (every record at or
//!               below it is in the index, none above)
//!   16     8    compacted: the store's compacted revision then
//!   24     8    key records: the entries of the `key` tree then
//!   32     8    keys in the index
//!   40     8    revisions in the index (every key's, summed)
//!   48     8    bytes in all the chunks
//!   56     4    crc32 of the chunks' bytes, in chunk order
//!   60     4    crc32 of bytes 0..60
//! key u32 big-endian chunk number, from 0 (4 bytes, so never "header")
//!   entry*      whole entries (one is never split), up to CHUNK_BYTES unless one entry is longer
//!   entry := key length (varint), key, history length (varint), packed history (`packed.rs`)
//! ```
//! Keys rise strictly across all chunks; no key has an empty history. Everything read back is
//! checked (the crc, the counts, the key order and every history's structure, see
//! [`packed::check`]) before it is used: a file that fails any check is a [`Rejected`] reason to
//! rebuild, never a wrong index and never a panic.

use crate::btree::tree::Tree;
use crate::mvcc::key_index::{Index, KeyIndex, packed};
use crate::txn::WriteTxn;

/// The tree the persisted index lives in.
pub(crate) const INDEX_TREE: &[u8] = b"mvcc.index";
/// The key of the header in [`INDEX_TREE`].
const HEADER_KEY: &[u8] = b"header";
/// The format written; an index of any other is rebuilt.
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 64;
/// The size a chunk is filled to: a few pages of one overflow run, read in place on load.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Why a persisted index cannot be used: the open rebuilds the index and reports this.
pub(crate) type Rejected = String;

/// What the header of a persisted index says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub chunks: u32,
    pub revision: i64,
    pub compacted: i64,
    pub key_records: u64,
    pub keys: u64,
    pub revisions: u64,
    pub bytes: u64,
    pub crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&FORMAT.to_le_bytes());
        b[4..8].copy_from_slice(&self.chunks.to_le_bytes());
        b[8..16].copy_from_slice(&self.revision.to_le_bytes());
        b[16..24].copy_from_slice(&self.compacted.to_le_bytes());
        b[24..32].copy_from_slice(&self.key_records.to_le_bytes());
        b[32..40].copy_from_slice(&self.keys.to_le_bytes());
        b[40..48].copy_from_slice(&self.revisions.to_le_bytes());
        b[48..56].copy_from_slice(&self.bytes.to_le_bytes());
        b[56..60].copy_from_slice(&self.crc.to_le_bytes());
        let own = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&own.to_le_bytes());
        b
    }

    #[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    fn decode(b: &[u8]) -> Result<Header, Rejected> {
        if b.len() != HEADER_LEN {
            return Err(format!("the header is {} bytes, not {HEADER_LEN}", b.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes_at(b, at));
        let u64_at = |at: usize| u64::from_le_bytes(bytes_at(b, at));
        if u32_at(60) != crc32fast::hash(b.get(..60).unwrap_or_default()) {
            return Err("the header's checksum does not match".into());
        }
        let format = u32_at(0);
        if format != FORMAT {
            return Err(format!("format {format}, this build reads {FORMAT}"));
        }
        Ok(Header {
            chunks: u32_at(4),
            revision: u64_at(8) as i64,
            compacted: u64_at(16) as i64,
            key_records: u64_at(24),
            keys: u64_at(32),
            revisions: u64_at(40),
            bytes: u64_at(48),
            crc: u32_at(56),
        })
    }
}

/// `N` bytes of `b` from `at`, zeros if `b` is shorter (a header's fixed fields, its length
/// checked first).
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Writes `index`, which reflects every record up to `revision` and a compaction at `compacted`,
/// into `tx` in place of the index persisted before; `key_records` is the entry count of the
/// `key` tree in `tx`. Keys with no revisions (none are kept; see `KeyIndex::unwind`) are left
/// out. Returns the header written.
pub(crate) fn write(
    tx: &mut WriteTxn<'_>,
    index: &Index,
    revision: i64,
    compacted: i64,
    key_records: u64,
) -> crate::error::Result<Header> {
    tx.delete_tree(INDEX_TREE)?;
    let mut tree = tx.open_tree(INDEX_TREE)?;
    let mut header = Header {
        revision,
        compacted,
        key_records,
        ..Header::default()
    };
    let mut crc = crc32fast::Hasher::new();
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 1024);
    let mut flush = |chunk: &mut Vec<u8>, header: &mut Header| -> crate::error::Result<()> {
        tree.put(&header.chunks.to_be_bytes(), chunk)?;
        crc.update(chunk);
        header.chunks += 1;
        header.bytes += chunk.len() as u64;
        chunk.clear();
        Ok(())
    };
    for (key, history) in index.range::<[u8], _>(..) {
        let revisions = packed::count(&history.packed);
        if revisions == 0 {
            continue;
        }
        let len = key.len() + history.packed.len() + 20;
        if !chunk.is_empty() && chunk.len() + len > CHUNK_BYTES {
            flush(&mut chunk, &mut header)?;
        }
        put_varint(&mut chunk, key.len() as u64);
        chunk.extend_from_slice(key);
        put_varint(&mut chunk, history.packed.len() as u64);
        chunk.extend_from_slice(&history.packed);
        header.keys += 1;
        header.revisions += revisions;
    }
    if !chunk.is_empty() {
        flush(&mut chunk, &mut header)?;
    }
    header.crc = crc.finalize();
    tree.put(HEADER_KEY, &header.encode())?;
    Ok(header)
}

/// The header of the index persisted in `tree`, if there is one.
pub(crate) fn header(tree: &Tree<'_>) -> Result<Header, Rejected> {
    match tree.get(HEADER_KEY) {
        Ok(Some(b)) => Header::decode(b),
        Ok(None) => Err("the persisted index has no header".into()),
        Err(e) => Err(format!("reading the header: {e}")),
    }
}

/// Loads the index persisted in `tree` under `header`, every check made (see the module docs).
/// No history may hold a revision above the header's. Decodes the two halves of the chunks on
/// two threads.
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(crate) fn load(tree: &Tree<'_>, header: &Header) -> Result<Index, Rejected> {
    // The chunks, in place, in order.
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(header.chunks.min(1 << 20) as usize);
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let mut cursor = tree.cursor();
    let mut entry = cursor.first();
    loop {
        let (k, v) = match entry {
            Ok(Some(kv)) => kv,
            Ok(None) => break,
            Err(e) => return Err(format!("reading the chunks: {e}")),
        };
        entry = cursor.next();
        let Ok(n) = <[u8; 4]>::try_from(k).map(u32::from_be_bytes) else {
            continue; // the header
        };
        if n as usize != chunks.len() {
            return Err(format!("chunk {n} where chunk {} belongs", chunks.len()));
        }
        crc.update(v);
        bytes = bytes.saturating_add(v.len() as u64);
        chunks.push(v);
    }
    if chunks.len() as u64 != u64::from(header.chunks) || bytes != header.bytes {
        return Err(format!(
            "{} chunks of {bytes} bytes, the header says {} of {}",
            chunks.len(),
            header.chunks,
            header.bytes
        ));
    }
    if crc.finalize() != header.crc {
        return Err("the chunks' checksum does not match the header's".into());
    }
    // Split the chunks where half the bytes are behind.
    let mut behind = 0u64;
    let split = chunks
        .iter()
        .position(|c| {
            behind = behind.saturating_add(c.len() as u64);
            behind > bytes / 2
        })
        .map_or(chunks.len(), |i| i.saturating_add(1));
    let (low, high) = chunks.split_at(split);
    // Each entry takes at least 3 bytes (two lengths and a history): that bounds the allocation.
    let keys = usize::try_from(header.keys.min(bytes / 3)).unwrap_or(0);
    let (low, high) = std::thread::scope(|s| {
        let high = s.spawn(|| decode(high, header.revision, Vec::new()));
        let low = decode(low, header.revision, Vec::with_capacity(keys));
        (low, high.join().expect("decoding does not panic"))
    });
    let ((mut entries, low_revisions), (upper, high_revisions)) = (low?, high?);
    if let (Some(last), Some(first)) = (entries.last(), upper.first())
        && last.0 >= first.0
    {
        return Err("keys do not rise from one chunk to the next".into());
    }
    entries.extend(upper);
    let revisions = low_revisions.saturating_add(high_revisions);
    if entries.len() as u64 != header.keys || revisions != header.revisions {
        return Err(format!(
            "{} keys of {revisions} revisions, the header says {} of {}",
            entries.len(),
            header.keys,
            header.revisions
        ));
    }
    Ok(Index::from_sorted(entries))
}

/// Decodes `chunks` onto `entries`; returns them and how many revisions they hold.
#[allow(clippy::type_complexity)]
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
fn decode(
    chunks: &[&[u8]],
    revision_max: i64,
    mut entries: Vec<(Box<[u8]>, KeyIndex)>,
) -> Result<(Vec<(Box<[u8]>, KeyIndex)>, u64), Rejected> {
    let mut revisions = 0u64;
    for chunk in chunks {
        let mut at = 0usize;
        while at < chunk.len() {
            let key = take(chunk, &mut at, "key")?;
            let history = take(chunk, &mut at, "history")?;
            if let Some(previous) = entries.last()
                && *previous.0 >= *key
            {
                return Err(format!(
                    "key {} does not rise after {}",
                    key.escape_ascii(),
                    previous.0.escape_ascii()
                ));
            }
            let n = packed::check(history, revision_max)
                .map_err(|why| format!("the history of {}: {why}", key.escape_ascii()))?;
            if n == 0 {
                return Err(format!("key {} has no revisions", key.escape_ascii()));
            }
            revisions = revisions.saturating_add(n);
            entries.push((
                Box::from(key),
                KeyIndex {
                    packed: Box::from(history),
                },
            ));
        }
    }
    Ok((entries, revisions))
}

/// The length-prefixed bytes at `*at` in `chunk` (a `what`); moves `*at` past them.
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
fn take<'a>(chunk: &'a [u8], at: &mut usize, what: &str) -> Result<&'a [u8], Rejected> {
    let (len, n) = packed::read_varint(chunk.get(*at..).unwrap_or_default())
        .ok_or_else(|| format!("a chunk holds a malformed {what} length"))?;
    let past = || format!("a {what} runs past the end of its chunk");
    let start = at.checked_add(n).ok_or_else(past)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .ok_or_else(past)?;
    let bytes = chunk.get(start..end).ok_or_else(past)?;
    *at = end;
    Ok(bytes)
}

/// [`crate::fuzzing::key_index_chunk`]: decodes one chunk and walks what it decoded.
pub(crate) fn fuzz_chunk(bytes: &[u8], revision_max: i64) -> Result<(usize, u64), Rejected> {
    let (entries, revisions) = decode(&[bytes], revision_max, Vec::new())?;
    for (_, history) in &entries {
        let _ = history.is_alive();
        let _ = history.unpack();
        for at in (0..=revision_max.saturating_add(1)).take(64) {
            let _ = history.get(at);
        }
    }
    Ok((entries.len(), revisions))
}

#[cfg(test)]
mod tests {
    //! The chunk decoder on damaged input: every change to a sound chunk is rejected or decodes
    //! to histories the index reads without a panic (the packed decoder trusts its input).
    //! Seeded: the seed is printed, and `FOLIO_SEED=<seed>` reruns one.

    use super::*;
    use crate::mvcc::revision::Revision;

    #[test]
    fn a_damaged_chunk_is_rejected_or_decodes_to_histories_the_index_can_read() {
        let seed = crate::testing::seed("index chunk decoder");
        let mut rng = crate::testing::Rng(seed);
        let mut next = move |n: u64| rng.below(n);
        // A sound chunk: keys with puts, deletes and a compacted history.
        let mut chunk = Vec::new();
        let mut revisions = 0;
        for i in 0..20i64 {
            let mut k = KeyIndex::default();
            k.put(Revision {
                main: i + 1,
                sub: 0,
            });
            k.put(Revision {
                main: i + 30,
                sub: 1,
            });
            if i % 3 == 0 {
                k.tombstone(Revision {
                    main: i + 60,
                    sub: 0,
                });
                revisions += 1;
            }
            if i % 5 == 0 {
                k.compact(i + 30, &mut std::collections::HashSet::new());
                revisions -= 1;
            }
            revisions += 2;
            let key = format!("key-{i:02}");
            put_varint(&mut chunk, key.len() as u64);
            chunk.extend_from_slice(key.as_bytes());
            put_varint(&mut chunk, k.packed.len() as u64);
            chunk.extend_from_slice(&k.packed);
        }
        assert_eq!(fuzz_chunk(&chunk, 100), Ok((20, revisions)));
        assert!(
            fuzz_chunk(&chunk, 50).is_err(),
            "a revision above the header's"
        );
        let mut rejected = 0;
        for _ in 0..20_000 {
            let mut damaged = chunk.clone();
            for _ in 0..1 + next(3) {
                let at = next(damaged.len() as u64) as usize;
                damaged[at] = next(256) as u8;
            }
            damaged.truncate(damaged.len() - next(3) as usize);
            rejected += usize::from(fuzz_chunk(&damaged, 100).is_err());
        }
        assert!(
            rejected > 1000,
            "seed {seed}: only {rejected} damaged chunks rejected"
        );
    }
}
