//! What the replicated log carries: commands on the store and their answers. Ranges are etcd's
//! (a key and a range end: empty for the key alone, `\0` for every key from it on), so the
//! server's requests map onto them one to one. The enums are `non_exhaustive`, so that more
//! (a leader-decided lease expiry, for one) can join them.

use std::ops::Bound;

use folio::{Compare, KeyRange, Op, OpResponse, RangeOptions};
use serde::{Deserialize, Serialize};

/// A write to the replicated store: one log entry, applied as one store transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// Put `value` under `key`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease to attach it to (0 for none).
        lease: i64,
    },
    /// Delete the keys in `key`..`range_end` (etcd's range).
    DeleteRange {
        /// The first key.
        key: Vec<u8>,
        /// The range end, etcd's way.
        range_end: Vec<u8>,
    },
    /// Compare, then run one branch or the other, atomically.
    Txn {
        /// Every one must hold for `success` to run.
        compares: Vec<CompareSpec>,
        /// Run when every compare holds.
        success: Vec<OpSpec>,
        /// Run otherwise.
        failure: Vec<OpSpec>,
    },
    /// Compact the store's history up to `revision`.
    Compact {
        /// The revision to compact to.
        revision: i64,
    },
    /// Grant a lease of `ttl` seconds. With `id` 0 the lease takes the entry's log index as its
    /// id, the same on every member.
    LeaseGrant {
        /// The lease's id, or 0.
        id: i64,
        /// Its time to live, in seconds.
        ttl: i64,
    },
    /// Revoke a lease: delete every key attached to it, in one revision, and the lease.
    LeaseRevoke {
        /// The lease's id.
        id: i64,
    },
}

/// What a compare looks at, and how it compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value (compared with [`CompareSpec::value`]).
    Value,
    /// The version (compared with [`CompareSpec::number`]).
    Version,
    /// The create revision.
    CreateRevision,
    /// The mod revision.
    ModRevision,
}

/// The relation a compare asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    /// Equal.
    Equal,
    /// Not equal.
    NotEqual,
    /// Less.
    Less,
    /// Greater.
    Greater,
}

/// One compare of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareSpec {
    /// The key compared.
    pub key: Vec<u8>,
    /// What of it.
    pub target: CompareTarget,
    /// How.
    pub relation: Relation,
    /// Against this value, for [`CompareTarget::Value`].
    pub value: Vec<u8>,
    /// Against this number, for the others.
    pub number: i64,
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpSpec {
    /// Put a key.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease (0 for none).
        lease: i64,
    },
    /// Delete a range (etcd's).
    DeleteRange {
        /// The first key.
        key: Vec<u8>,
        /// The range end, etcd's way.
        range_end: Vec<u8>,
    },
    /// Read a range (etcd's) at the transaction's revision.
    Range {
        /// The first key.
        key: Vec<u8>,
        /// The range end, etcd's way.
        range_end: Vec<u8>,
    },
}

/// A key as the replicated store answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created it.
    pub create_revision: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// Its number of changes since it was created.
    pub version: i64,
    /// Its lease (0 for none).
    pub lease: i64,
}

/// The answer to one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OpResult {
    /// A put.
    Put,
    /// A delete, with how many keys it deleted.
    DeleteRange {
        /// Keys deleted.
        deleted: u64,
    },
    /// A read.
    Range {
        /// The keys read.
        kvs: Vec<Kv>,
    },
    /// A lease granted.
    LeaseGranted {
        /// Its id.
        id: i64,
        /// Its time to live, in seconds.
        ttl: i64,
    },
}

/// The answer to a [`Command`], the same on every member that applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The store's revision after the command (the command's own, if it wrote).
    pub revision: i64,
    /// For a transaction, whether its compares held.
    pub succeeded: bool,
    /// For a transaction, one answer per operation of the branch that ran.
    pub results: Vec<OpResult>,
    /// The store refused the command (a duplicate key in a transaction, a compaction below the
    /// compacted revision, ...): it changed nothing, and every member refused it the same way.
    pub error: Option<String>,
}

/// etcd's range: `key` alone when `range_end` is empty, every key from `key` on when it is
/// `\0`, and `key..range_end` otherwise.
pub fn key_range(key: &[u8], range_end: &[u8]) -> KeyRange {
    match range_end {
        [] => KeyRange::key(key),
        [0] => KeyRange::bounds::<[u8]>((Bound::Included(key), Bound::Unbounded)),
        end => KeyRange::bounds::<[u8]>((Bound::Included(key), Bound::Excluded(end))),
    }
}

impl Kv {
    pub(crate) fn from_store(kv: folio::KeyValue) -> Kv {
        Kv {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

impl CompareSpec {
    pub(crate) fn to_store(&self) -> Compare {
        let t = match self.target {
            CompareTarget::Value => Compare::value(&self.key),
            CompareTarget::Version => Compare::version(&self.key),
            CompareTarget::CreateRevision => Compare::create_revision(&self.key),
            CompareTarget::ModRevision => Compare::mod_revision(&self.key),
        };
        macro_rules! rel {
            ($v:expr) => {
                match self.relation {
                    Relation::Equal => t.eq($v),
                    Relation::NotEqual => t.ne($v),
                    Relation::Less => t.lt($v),
                    Relation::Greater => t.gt($v),
                }
            };
        }
        match self.target {
            CompareTarget::Value => rel!(self.value.as_slice()),
            _ => rel!(self.number),
        }
    }
}

impl OpSpec {
    pub(crate) fn to_store(&self) -> Op {
        match self {
            OpSpec::Put { key, value, lease } => Op::put_with_lease(key, value, *lease),
            OpSpec::DeleteRange { key, range_end } => Op::delete_range(key_range(key, range_end)),
            OpSpec::Range { key, range_end } => {
                Op::range(key_range(key, range_end), RangeOptions::current())
            }
        }
    }
}

impl OpResult {
    pub(crate) fn from_store(r: OpResponse) -> OpResult {
        match r {
            OpResponse::Put(_) => OpResult::Put,
            OpResponse::DeleteRange(d) => OpResult::DeleteRange { deleted: d.deleted },
            OpResponse::Range(r) => OpResult::Range {
                kvs: r.kvs.into_iter().map(Kv::from_store).collect(),
            },
        }
    }
}
