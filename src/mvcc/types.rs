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

    /// Whether the range is exactly one key ([`KeyRange::key`]).
    pub(crate) fn is_one_key(&self) -> bool {
        matches!((&self.start, &self.end), (Bound::Included(s), Bound::Included(e)) if s == e)
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

/// The order of a range's keys, as etcd's `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Key order; with a sort target other than [`SortTarget::Key`], ascending by that target
    /// (as etcd).
    #[default]
    None,
    /// Ascending by the sort target; keys with equal targets in key order.
    Ascend,
    /// Descending by the sort target: exactly the reverse of [`SortOrder::Ascend`].
    Descend,
}

/// What a range is sorted by, as etcd's `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// How to read a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub(crate) revision: i64,
    pub(crate) limit: usize,
    pub(crate) count_only: bool,
    pub(crate) keys_only: bool,
    pub(crate) sort_order: SortOrder,
    pub(crate) sort_target: SortTarget,
    pub(crate) min_mod_revision: i64,
    pub(crate) max_mod_revision: i64,
    pub(crate) min_create_revision: i64,
    pub(crate) max_create_revision: i64,
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

    /// Sort the keys returned, as etcd: all the keys of the range (that pass the revision
    /// filters) are sorted, then the limit is applied. A target other than the key with
    /// [`SortOrder::None`] sorts ascending.
    pub fn sort(mut self, order: SortOrder, target: SortTarget) -> RangeOptions {
        self.sort_order = order;
        self.sort_target = target;
        self
    }

    /// Return only keys last modified at or after `rev` (0: no bound). Like the other revision
    /// filters, it applies before the limit and leaves `count` as it is (as etcd).
    pub fn min_mod_revision(mut self, rev: i64) -> RangeOptions {
        self.min_mod_revision = rev;
        self
    }

    /// Return only keys last modified at or before `rev` (0: no bound).
    pub fn max_mod_revision(mut self, rev: i64) -> RangeOptions {
        self.max_mod_revision = rev;
        self
    }

    /// Return only keys created at or after `rev` (0: no bound).
    pub fn min_create_revision(mut self, rev: i64) -> RangeOptions {
        self.min_create_revision = rev;
        self
    }

    /// Return only keys created at or before `rev` (0: no bound).
    pub fn max_create_revision(mut self, rev: i64) -> RangeOptions {
        self.max_create_revision = rev;
        self
    }
}

/// The answer to a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, in key order (none with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// How many keys the range holds at that revision, regardless of the limit and of the
    /// revision filters (as etcd).
    pub count: u64,
    /// Whether the limit left keys out (keys the revision filters passed).
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

/// Options of a [`crate::Store`]. Build them from the default:
/// `StoreOptions { compaction_batch: 100, ..StoreOptions::default() }`.
#[derive(Clone)]
pub struct StoreOptions {
    /// Revisions compaction deletes per write transaction; writers run between batches.
    pub compaction_batch: usize,
    /// The time leases expire by ([`crate::Store::expire_leases`]): the real monotonic clock by
    /// default; tests inject a [`crate::ManualClock`].
    pub clock: std::sync::Arc<dyn crate::mvcc::lease::Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compaction_batch: crate::limits::COMPACTION_BATCH_DEFAULT,
            clock: std::sync::Arc::new(crate::mvcc::lease::MonotonicClock::new()),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("compaction_batch", &self.compaction_batch)
            .field("clock", &self.clock.now())
            .finish()
    }
}

/// Two options are equal when they hold the same batch and the same clock.
impl PartialEq for StoreOptions {
    fn eq(&self, other: &Self) -> bool {
        self.compaction_batch == other.compaction_batch
            && std::sync::Arc::ptr_eq(&self.clock, &other.clock)
    }
}

impl Eq for StoreOptions {}

/// What a compare looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Value,
    Version,
    CreateRevision,
    ModRevision,
    Lease,
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

/// A condition of a transaction on one key or a range of keys, as etcd's `Compare`.
///
/// On a missing key, version, revisions and lease compare as 0, and a value compare is false.
/// Over a range ([`CompareTarget::range_end`]) it holds when it holds for every key of the range
/// that exists; over a range with no key, as over a missing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub(crate) key: Vec<u8>,
    /// The range compared when not the one key: etcd's `range_end`.
    pub(crate) range: Option<KeyRange>,
    pub(crate) target: Target,
    pub(crate) relation: Relation,
    pub(crate) against: CompareValue,
}

/// The first half of a [`Compare`]: the key (or range) and what to look at.
#[derive(Clone, Debug)]
pub struct CompareTarget {
    key: Vec<u8>,
    range: Option<KeyRange>,
    target: Target,
}

impl Compare {
    /// Compare the key's value.
    pub fn value(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            range: None,
            target: Target::Value,
        }
    }

    /// Compare the key's version.
    pub fn version(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            range: None,
            target: Target::Version,
        }
    }

    /// Compare the key's create revision.
    pub fn create_revision(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            range: None,
            target: Target::CreateRevision,
        }
    }

    /// Compare the key's mod revision.
    pub fn mod_revision(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            range: None,
            target: Target::ModRevision,
        }
    }

    /// Compare the id of the lease the key is attached to (0 for none).
    pub fn lease(key: &[u8]) -> CompareTarget {
        CompareTarget {
            key: key.to_vec(),
            range: None,
            target: Target::Lease,
        }
    }
}

impl CompareTarget {
    /// Compare every key in `[key, end)` rather than the one key, as etcd's `range_end`: the
    /// compare holds when it holds for each key of the range. An `end` of `[0]` means every key
    /// from `key` on; an empty `end`, the one key.
    pub fn range_end(mut self, end: &[u8]) -> CompareTarget {
        self.range = match end {
            [] => None,
            [0] => Some(KeyRange::bounds::<&[u8]>(self.key.as_slice()..)),
            end => Some(KeyRange::bounds::<&[u8]>(self.key.as_slice()..end)),
        };
        self
    }

    /// Compare every key starting with the key (a prefix), as `range_end` with the prefix's end.
    pub fn prefix(mut self) -> CompareTarget {
        self.range = Some(KeyRange::prefix(&self.key));
        self
    }

    fn make(self, relation: Relation, against: impl Into<CompareValue>) -> Compare {
        Compare {
            key: self.key,
            range: self.range,
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
