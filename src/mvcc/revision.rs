//! Revisions and the records stored under them.
//!
//! A revision is `(main, sub)`: every write transaction takes the next main revision, and each
//! change inside it the next sub revision. In the `key` tree a revision is the key:
//!
//! ```text
//! main u64 BE | sub u64 BE | b't' for a tombstone (absent otherwise)
//! ```
//! so byte order is revision order. The value is the record:
//!
//! ```text
//! key_len u32 LE | key | create_revision i64 LE | mod_revision i64 LE | version i64 LE
//!                | lease i64 LE | value (the rest)
//! ```
//! A tombstone's record holds the key and zeros.

use crate::error::{Error, Result};
use crate::limits::STORE_RECORD_FIXED_LEN as FIXED_LEN;

/// A point in the store's history: the main revision of a write transaction and the position of
/// one change inside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The write transaction's revision.
    pub main: i64,
    /// The change's position inside it, from 0.
    pub sub: i64,
}

pub(crate) const REVISION_LEN: usize = 16;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    /// The `key` tree key for this revision.
    pub(crate) fn encode(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REVISION_LEN + 1);
        b.extend_from_slice(&(self.main as u64).to_be_bytes());
        b.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Decodes a `key` tree key; returns the revision and whether it marks a tombstone.
    pub(crate) fn decode(b: &[u8]) -> Result<(Revision, bool)> {
        let tombstone = match b.len() {
            REVISION_LEN => false,
            17 if b[REVISION_LEN] == TOMBSTONE_MARK => true,
            _ => return Err(malformed(format!("revision key of {} bytes", b.len()))),
        };
        let main = u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) as i64;
        let sub = u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")) as i64;
        Ok((Revision { main, sub }, tombstone))
    }
}

/// A key's value at one revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The main revision that created the key (in its current life, since its last delete).
    pub create_revision: i64,
    /// The main revision of the last change to the key.
    pub mod_revision: i64,
    /// Puts since the key was created: 1 on creation.
    pub version: i64,
    /// The value (empty with `keys_only`).
    pub value: Vec<u8>,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl KeyValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_LEN + self.key.len() + self.value.len());
        b.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.key);
        for n in [
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease,
        ] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.extend_from_slice(&self.value);
        b
    }

    /// Decodes a record; with `keys_only`, leaves the value empty.
    pub(crate) fn decode(b: &[u8], keys_only: bool) -> Result<KeyValue> {
        if b.len() < FIXED_LEN {
            return Err(malformed(format!("record of {} bytes", b.len())));
        }
        let klen = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
        if b.len() < FIXED_LEN + klen {
            return Err(malformed(format!(
                "record of {} bytes with a key of {klen}",
                b.len()
            )));
        }
        let key = b[4..4 + klen].to_vec();
        let n = |i: usize| {
            let at = 4 + klen + i * 8;
            i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
        };
        let value = if keys_only {
            Vec::new()
        } else {
            b[FIXED_LEN + klen..].to_vec()
        };
        Ok(KeyValue {
            key,
            create_revision: n(0),
            mod_revision: n(1),
            version: n(2),
            lease: n(3),
            value,
        })
    }
}

/// The head of a record: what the key index needs of it, read in place (no copy of the key,
/// the value left unread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHead<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub version: i64,
}

impl<'a> RecordHead<'a> {
    /// Decodes the head of a record, checked as [`KeyValue::decode`] checks it.
    pub(crate) fn decode(b: &'a [u8]) -> Result<RecordHead<'a>> {
        let short = || malformed(format!("record of {} bytes", b.len()));
        let klen = u32::from_le_bytes(b.get(..4).ok_or_else(short)?.try_into().expect("4 bytes"));
        let fixed = (klen as usize)
            .checked_add(FIXED_LEN)
            .filter(|&n| n <= b.len())
            .ok_or_else(|| {
                malformed(format!("record of {} bytes with a key of {klen}", b.len()))
            })?;
        let key = &b[4..fixed - (FIXED_LEN - 4)];
        let n = |i: usize| {
            let at = 4 + key.len() + i * 8;
            i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
        };
        Ok(RecordHead {
            key,
            create_revision: n(0),
            version: n(2),
        })
    }
}

/// Decodes the `key` tree entry `k` → `v` read after `previous` in a forward walk: its revision,
/// whether it is a tombstone, and its record's head. Revisions must rise strictly; `previous`
/// becomes this one.
pub(crate) fn next_record<'a>(
    k: &[u8],
    v: &'a [u8],
    previous: &mut Option<Revision>,
) -> Result<(Revision, bool, RecordHead<'a>)> {
    let (rev, tombstone) = Revision::decode(k)?;
    if previous.is_some_and(|p| p >= rev) {
        return Err(malformed(format!(
            "revision {rev:?} after {previous:?} in the key tree"
        )));
    }
    *previous = Some(rev);
    Ok((rev, tombstone, RecordHead::decode(v)?))
}

/// Bytes of the store's own trees that make no sense: the tree pages were valid, so this is a bug
/// or a file written by something else. (Not [`Error::Corrupted`]: the page is not known here, and
/// page 0 is a real meta page.)
pub(crate) fn malformed(what: String) -> Error {
    Error::MalformedStore(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_bytes_sort_in_revision_order_and_round_trip() {
        let a = Revision { main: 2, sub: 300 };
        let b = Revision { main: 3, sub: 0 };
        assert!(a.encode(false) < b.encode(false));
        assert!(a.encode(true) < b.encode(false));
        assert_eq!(Revision::decode(&a.encode(true)).unwrap(), (a, true));
        assert_eq!(Revision::decode(&b.encode(false)).unwrap(), (b, false));
        assert!(Revision::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn records_round_trip_and_short_records_are_errors() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 4,
            mod_revision: 9,
            version: 3,
            value: b"v".to_vec(),
            lease: 7,
        };
        let b = kv.encode();
        assert_eq!(KeyValue::decode(&b, false).unwrap(), kv);
        assert_eq!(KeyValue::decode(&b, true).unwrap().value, b"");
        assert!(KeyValue::decode(&b[..10], false).is_err());
        let head = RecordHead::decode(&b).unwrap();
        assert_eq!(
            (head.key, head.create_revision, head.version),
            (&b"k"[..], 4, 3)
        );
        for len in [0, 3, 10, b.len() - 2] {
            assert!(RecordHead::decode(&b[..len]).is_err(), "{len} bytes");
        }
    }
}
