//! The requests and responses of the MVCC store, shaped like etcd's.

use std::ops::{Bound, RangeBounds};

use crate::mvcc::revision::KeyValue;

/// Borrowed bounds over byte strings, as `BTreeMap::range` takes them.
pub(crate) type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A range of keys: one key, a prefix, or any bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Exactly `key`.
    pub fn key(key: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Included(key.to_vec()),
            end: Bound::Included(key.to_vec()),
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < u8::MAX {
                end.push(last + 1);
                return KeyRange {
                    start: Bound::Included(prefix.to_vec()),
                    end: Bound::Excluded(end),
                };
            }
        }
        KeyRange {
            start: Bound::Included(prefix.to_vec()),
            end: Bound::Unbounded,
        }
    }

    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// From any bounds over byte strings.
    pub fn bounds<K: AsRef<[u8]> + ?Sized>(range: impl RangeBounds<K>) -> KeyRange {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        KeyRange {
            start: own(range.start_bound()),
            end: own(range.end_bound()),
        }
    }

    /// The bounds as borrowed slices, or `None` when the range is empty (a `BTreeMap` panics on
    /// such bounds).
    pub(crate) fn as_bounds(&self) -> Option<ByteBounds<'_>> {
        fn b(x: &Bound<Vec<u8>>) -> Bound<&[u8]> {
            match x {
                Bound::Included(k) => Bound::Included(k.as_slice()),
                Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            }
        }
        let empty = match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        (!empty).then(|| (b(&self.start), b(&self.end)))
    }
}

impl From<&[u8]> for KeyRange {
    fn from(key: &[u8]) -> KeyRange {
        KeyRange::key(key)
    }
}

impl<const N: usize> From<&[u8; N]> for KeyRange {
    fn from(key: &[u8; N]) -> KeyRange {
        KeyRange::key(key)
    }
}

macro_rules! key_range_from {
    ($($t:ty),*) => {$(
        impl<'a> From<$t> for KeyRange {
            fn from(r: $t) -> KeyRange {
                KeyRange::bounds::<&[u8]>(r)
            }
        }
    )*};
}
key_range_from!(
    std::ops::Range<&'a [u8]>,
    std::ops::RangeInclusive<&'a [u8]>,
    std::ops::RangeFrom<&'a [u8]>,
    std::ops::RangeTo<&'a [u8]>,
    std::ops::RangeToInclusive<&'a [u8]>
);

impl From<std::ops::RangeFull> for KeyRange {
    fn from(_: std::ops::RangeFull) -> KeyRange {
        KeyRange::all()
    }
}

/// How to read a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub(crate) revision: i64,
    pub(crate) limit: usize,
    pub(crate) count_only: bool,
    pub(crate) keys_only: bool,
}

impl RangeOptions {
    /// Read at the current revision.
    pub fn current() -> RangeOptions {
        RangeOptions::default()
    }

    /// Read at revision `rev` (0 means the current revision).
    pub fn at(rev: i64) -> RangeOptions {
        RangeOptions {
            revision: rev,
            ..RangeOptions::default()
        }
    }

    /// Return at most `n` keys (0 means no limit); `count` still counts them all.
    pub fn limit(mut self, n: usize) -> RangeOptions {
        self.limit = n;
        self
    }

    /// Return only the count.
    pub fn count_only(mut self) -> RangeOptions {
        self.count_only = true;
        self
    }

    /// Return keys and revisions without values.
    pub fn keys_only(mut self) -> RangeOptions {
        self.keys_only = true;
        self
    }
}

/// The answer to a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, in key order (none with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// How many keys the range holds at that revision, regardless of the limit.
    pub count: u64,
    /// Whether the limit left keys out.
    pub more: bool,
    /// The store's current revision when the read was made.
    pub revision: i64,
}

/// Options for [`crate::Store::put_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The lease to attach the key to (0 for none).
    pub lease: i64,
    /// Return the key's previous value.
    pub prev_kv: bool,
}

/// The answer to a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The revision the put was written at.
    pub revision: i64,
    /// The key's previous value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// The answer to a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The revision of the delete, or the current revision when nothing was deleted.
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: u64,
    /// The deleted keys' last values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// The answer to [`crate::Store::hash_by_rev`], as etcd's `HashKVResponse`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashResponse {
    /// crc32 of the store at `hash_revision`, taken against `compact_revision`.
    pub hash: u32,
    /// The store's current revision (etcd's header revision).
    pub revision: i64,
    /// The compaction revision the hash was taken against: the store's compacted revision (-1
    /// before any compaction), or, for a hash a compaction recorded, the one before it. Hashes of
    /// one revision agree between stores when this agrees.
    pub compact_revision: i64,
    /// The revision hashed (the current one when 0 was asked for).
    pub hash_revision: i64,
}

/// Options of a [`crate::Store`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Revisions compaction deletes per write transaction; writers run between batches.
    pub compaction_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compaction_batch: crate::limits::COMPACTION_BATCH_DEFAULT,
        }
    }
}

/// What a compare looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Value,
    Version,
    CreateRevision,
    ModRevision,
}

/// How a compare compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Relation {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// A value to compare against: bytes for [`Compare::value`], a number for the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareValue {
    /// A value's bytes.
    Bytes(Vec<u8>),
    /// A version or revision.
    Number(i64),
}

impl From<i64> for CompareValue {
    fn from(n: i64) -> Self {
        CompareValue::Number(n)
    }
}

impl From<&[u8]> for CompareValue {
    fn from(b: &[u8]) -> Self {
        CompareValue::Bytes(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for CompareValue {
    fn from(b: &[u8; N]) -> Self {
        CompareValue::Bytes(b.to_vec())
    }
}

/// A condition of a transaction on one key, as etcd's `Compare`.
///
/// On a missing key, version and revisions compare as 0, and a value compare is false.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub(crate) key: Vec<u8>,
    pub(crate) target: Target,
    pub(crate) relation: Relation,
    pub(crate) against: CompareValue,
}

/// The first half of a [`Compare`]: the key and what to look at.
#[derive(Clone, Debug)]
pub struct CompareTarget {
    key: Vec<u8>,
    target: Target,
}

impl Compare {
    /// Compare the key's value.
    pub fn value(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            target: Target::Value,
        }
    }

    /// Compare the key's version.
    pub fn version(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            target: Target::Version,
        }
    }

    /// Compare the key's create revision.
    pub fn create_revision(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            target: Target::CreateRevision,
        }
    }

    /// Compare the key's mod revision.
    pub fn mod_revision(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            target: Target::ModRevision,
        }
    }
}

impl CompareTarget {
    fn make(self, relation: Relation, against: impl Into<CompareValue>) -> Compare {
        Compare {
            key: self.key,
            target: self.target,
            relation,
            against: against.into(),
        }
    }

    /// Holds when the target equals `v`.
    pub fn eq(self, v: impl Into<CompareValue>) -> Compare {
        self.make(Relation::Equal, v)
    }

    /// Holds when the target differs from `v`.
    pub fn ne(self, v: impl Into<CompareValue>) -> Compare {
        self.make(Relation::NotEqual, v)
    }

    /// Holds when the target is less than `v`.
    pub fn lt(self, v: impl Into<CompareValue>) -> Compare {
        self.make(Relation::Less, v)
    }

    /// Holds when the target is greater than `v`.
    pub fn gt(self, v: impl Into<CompareValue>) -> Compare {
        self.make(Relation::Greater, v)
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put a key.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Options.
        options: PutOptions,
    },
    /// Delete a range of keys.
    DeleteRange {
        /// The keys.
        range: KeyRange,
        /// Return the deleted values.
        prev_kv: bool,
    },
    /// Read a range of keys (seeing the transaction's earlier writes).
    Range {
        /// The keys.
        range: KeyRange,
        /// How to read them.
        options: RangeOptions,
    },
}

impl Op {
    /// Put `value` under `key`.
    pub fn put(key: &[u8], value: &[u8]) -> Op {
        Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            options: PutOptions::default(),
        }
    }

    /// Put `value` under `key`, attached to `lease`.
    pub fn put_with_lease(key: &[u8], value: &[u8], lease: i64) -> Op {
        Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            options: PutOptions {
                lease,
                prev_kv: false,
            },
        }
    }

    /// Delete every key in `range`.
    pub fn delete_range(range: impl Into<KeyRange>) -> Op {
        Op::DeleteRange {
            range: range.into(),
            prev_kv: false,
        }
    }

    /// Read `range`.
    pub fn range(range: impl Into<KeyRange>, options: RangeOptions) -> Op {
        Op::Range {
            range: range.into(),
            options,
        }
    }
}

/// The answer to one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResponse {
    /// A put's answer.
    Put(PutResponse),
    /// A delete's answer.
    DeleteRange(DeleteResponse),
    /// A read's answer.
    Range(RangeResponse),
}

/// The answer to a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (and so the `then` branch ran).
    pub succeeded: bool,
    /// The transaction's revision, or the current one when it wrote nothing.
    pub revision: i64,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}
