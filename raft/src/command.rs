//! What the replicated log carries: commands on the store and their answers. Ranges are etcd's
//! (a key and a range end: empty for the key alone, `\0` for every key from it on), so the
//! server's requests map onto them one to one, options included (a put's and a delete's
//! `prev_kv`, a range's revision, limit, count-only and keys-only, a compare over a key range or
//! on a lease). The enums are `non_exhaustive`, so that more can join them. Fields added after
//! the first release are `#[serde(default)]`, so entries logged before them still decode.
//!
//! Keys and values are bytes, written as base64 strings in the JSON the log and the members'
//! messages carry ([`bytes`]): a 1.5 MiB value is 2 MiB on the wire, where JSON's array of
//! numbers made it about 6 MiB. The decoder also takes the arrays of numbers that logs written
//! before this change hold, so an old log is read as it is.
//!
//! [`Command::Batch`] is several commands proposed as one log entry (see `node`'s proposer):
//! openraft 0.9 syncs the leader's log once per entry, in its core loop, so an entry per client
//! write made one leader sync per write, one after the other.

use std::ops::Bound;

use folio::{Compare, KeyRange, Op, OpResponse, PutOptions, RangeOptions};
use serde::{Deserialize, Serialize};

/// A write to the replicated store: one log entry, applied as one store transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// Put `value` under `key`.
    Put {
        /// The key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "bytes")]
        value: Vec<u8>,
        /// The lease to attach it to (0 for none).
        lease: i64,
    },
    /// Delete the keys in `key`..`range_end` (etcd's range).
    DeleteRange {
        /// The first key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// The range end, etcd's way.
        #[serde(with = "bytes")]
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
    /// Record what a member tells the cluster about itself (etcd's member attributes, which
    /// etcd publishes through Raft too): its name and client URLs, in the tree
    /// [`MEMBERS_TREE`] of the store's database. It writes no store revision.
    SetMember {
        /// The member's id.
        id: u64,
        /// Its name.
        name: String,
        /// The URLs its clients reach it at.
        client_urls: Vec<String>,
    },
    /// Several commands in one log entry, applied in order in one store commit, each at its own
    /// revision with its own answer ([`Response::batch`]), as if each were an entry of its own.
    /// Only [`Command::batchable`] commands are batched.
    Batch {
        /// The commands, in order.
        commands: Vec<Command>,
    },
}

impl Command {
    /// Whether the command may join a [`Command::Batch`]: one store transaction that depends
    /// on nothing but the store (not on its entry's log index, as a lease grant's id does).
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Command::Put { .. } | Command::DeleteRange { .. } | Command::Txn { .. }
        )
    }

    /// About how many bytes the command takes in a log entry (its keys and values), for the
    /// proposer's cap on a batch.
    pub fn size_hint(&self) -> usize {
        let op = |o: &OpSpec| match o {
            OpSpec::Put { key, value, .. } => key.len() + value.len() + 96,
            OpSpec::DeleteRange { key, range_end, .. } | OpSpec::Range { key, range_end, .. } => {
                key.len() + range_end.len() + 96
            }
        };
        match self {
            Command::Put { key, value, .. } => key.len() + value.len() + 96,
            Command::DeleteRange { key, range_end } => key.len() + range_end.len() + 96,
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                compares
                    .iter()
                    .map(|c| c.key.len() + c.value.len() + c.range_end.len() + 96)
                    .sum::<usize>()
                    + success.iter().map(op).sum::<usize>()
                    + failure.iter().map(op).sum::<usize>()
            }
            Command::Batch { commands } => commands.iter().map(Command::size_hint).sum(),
            Command::SetMember {
                name, client_urls, ..
            } => name.len() + client_urls.iter().map(String::len).sum::<usize>() + 96,
            Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => {
                96
            }
        }
    }
}

/// Bytes in the JSON of the log and of the members' messages: a base64 string (standard
/// alphabet, padded). Decoding also takes an array of numbers, as logs written before bytes
/// were base64 hold them, and bytes as such in a format that has them.
pub(crate) mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_any(Bytes)
        } else {
            d.deserialize_byte_buf(Bytes)
        }
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes as a base64 string or an array of numbers")
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            STANDARD
                .decode(v)
                .map_err(|e| E::custom(format!("bytes in base64: {e}")))
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// The tree of the store's database that holds the members' attributes
/// ([`Command::SetMember`]): member id (8 bytes, big-endian) → [`MemberInfo`] as JSON.
pub const MEMBERS_TREE: &[u8] = b"raft.members";

/// What a member published about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// The URLs its clients reach it at.
    pub client_urls: Vec<String>,
}

/// The attributes every member published, by member id, as `store` holds them.
pub fn members(store: &folio::Store) -> folio::Result<std::collections::BTreeMap<u64, MemberInfo>> {
    let mut out = std::collections::BTreeMap::new();
    let tx = store.db().begin_read()?;
    let Some(tree) = tx.tree(MEMBERS_TREE)? else {
        return Ok(out);
    };
    for entry in tree.iter() {
        let (k, v) = entry?;
        let id: [u8; 8] = k.try_into().map_err(|_| {
            folio::Error::MalformedStore("raft.members: a key of the wrong length".into())
        })?;
        let info: MemberInfo = serde_json::from_slice(v)
            .map_err(|e| folio::Error::MalformedStore(format!("raft.members: {e}")))?;
        out.insert(u64::from_be_bytes(id), info);
    }
    Ok(out)
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
    /// The lease (compared with [`CompareSpec::number`]).
    Lease,
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
    #[serde(with = "bytes")]
    pub key: Vec<u8>,
    /// What of it.
    pub target: CompareTarget,
    /// How.
    pub relation: Relation,
    /// Against this value, for [`CompareTarget::Value`].
    #[serde(with = "bytes")]
    pub value: Vec<u8>,
    /// Against this number, for the others.
    pub number: i64,
    /// etcd's range end: empty for the one key, `\0` for every key from it on, else the end
    /// of the range of keys compared.
    #[serde(default, with = "bytes")]
    pub range_end: Vec<u8>,
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpSpec {
    /// Put a key.
    Put {
        /// The key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "bytes")]
        value: Vec<u8>,
        /// The lease (0 for none).
        lease: i64,
        /// Answer with the key's previous value.
        #[serde(default)]
        prev_kv: bool,
    },
    /// Delete a range (etcd's).
    DeleteRange {
        /// The first key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// The range end, etcd's way.
        #[serde(with = "bytes")]
        range_end: Vec<u8>,
        /// Answer with the deleted keys' values.
        #[serde(default)]
        prev_kv: bool,
    },
    /// Read a range (etcd's) at the transaction's revision.
    Range {
        /// The first key.
        #[serde(with = "bytes")]
        key: Vec<u8>,
        /// The range end, etcd's way.
        #[serde(with = "bytes")]
        range_end: Vec<u8>,
        /// How to read it.
        #[serde(default)]
        options: RangeSpec,
    },
}

/// The store's options of a read inside a transaction (etcd's sort and revision filters are
/// applied by the caller to the answer, as etcd applies them after its read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSpec {
    /// The revision to read at (0 for the transaction's own).
    pub revision: i64,
    /// At most this many keys (0 for all).
    pub limit: u64,
    /// Count the keys only.
    pub count_only: bool,
    /// Keys without their values.
    pub keys_only: bool,
}

/// Why the store refused a command, the same way on every member: what a server needs to
/// answer with the right error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// A read or compaction below the compacted revision.
    Compacted,
    /// A read of a revision after the current one.
    FutureRevision,
    /// A transaction branch writes a key twice.
    DuplicateKey,
    /// No such lease.
    LeaseNotFound,
    /// The lease id is taken.
    LeaseExists,
    /// A lease TTL out of range.
    LeaseTtl,
    /// A key or value past the store's bounds.
    TooLarge,
    /// An option the store does not take.
    Invalid,
}

impl Refusal {
    /// The refusal a store error is, if it is one (see [`Response::error`]).
    pub fn of(e: &folio::Error) -> Option<Refusal> {
        use folio::Error as E;
        Some(match e {
            E::Compacted { .. } => Refusal::Compacted,
            E::FutureRevision { .. } => Refusal::FutureRevision,
            E::DuplicateKey { .. } => Refusal::DuplicateKey,
            E::LeaseNotFound { .. } => Refusal::LeaseNotFound,
            E::LeaseExists { .. } => Refusal::LeaseExists,
            E::LeaseTtl { .. } => Refusal::LeaseTtl,
            E::KeyLength { .. } | E::ValueTooLarge { .. } => Refusal::TooLarge,
            E::InvalidOption(_) => Refusal::Invalid,
            _ => return None,
        })
    }
}

/// A key as the replicated store answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    /// The key.
    #[serde(with = "bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "bytes")]
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
    Put {
        /// The key's previous value, when asked for and it had one.
        prev_kv: Option<Kv>,
    },
    /// A delete, with how many keys it deleted.
    DeleteRange {
        /// Keys deleted.
        deleted: u64,
        /// Their values, when asked for.
        prev_kvs: Vec<Kv>,
    },
    /// A read.
    Range {
        /// The keys read.
        kvs: Vec<Kv>,
        /// How many keys the range holds (before the limit).
        count: u64,
        /// Whether the limit left keys out.
        more: bool,
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
    /// What kind of refusal [`Response::error`] is.
    #[serde(default)]
    pub refusal: Option<Refusal>,
    /// For a [`Command::Batch`], each command's answer, in order (the fields above are then
    /// the last one's revision and nothing else).
    #[serde(default)]
    pub batch: Vec<Response>,
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
            CompareTarget::Lease => Compare::lease(&self.key),
        };
        let t = if self.range_end.is_empty() {
            t
        } else {
            t.range_end(&self.range_end)
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
            OpSpec::Put {
                key,
                value,
                lease,
                prev_kv,
            } => Op::Put {
                key: key.clone(),
                value: value.clone(),
                options: PutOptions {
                    lease: *lease,
                    prev_kv: *prev_kv,
                },
            },
            OpSpec::DeleteRange {
                key,
                range_end,
                prev_kv,
            } => Op::DeleteRange {
                range: key_range(key, range_end),
                prev_kv: *prev_kv,
            },
            OpSpec::Range {
                key,
                range_end,
                options,
            } => {
                let mut o = RangeOptions::at(options.revision)
                    .limit(usize::try_from(options.limit).unwrap_or(usize::MAX));
                if options.count_only {
                    o = o.count_only();
                }
                if options.keys_only {
                    o = o.keys_only();
                }
                Op::range(key_range(key, range_end), o)
            }
        }
    }
}

impl OpResult {
    pub(crate) fn from_store(r: OpResponse) -> OpResult {
        match r {
            OpResponse::Put(p) => OpResult::Put {
                prev_kv: p.prev_kv.map(Kv::from_store),
            },
            OpResponse::DeleteRange(d) => OpResult::DeleteRange {
                deleted: d.deleted,
                prev_kvs: d.prev_kvs.into_iter().map(Kv::from_store).collect(),
            },
            OpResponse::Range(r) => OpResult::Range {
                kvs: r.kvs.into_iter().map(Kv::from_store).collect(),
                count: r.count,
                more: r.more,
            },
        }
    }
}
