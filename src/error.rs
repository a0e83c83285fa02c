//! The error type shared by every layer.

use std::io;

/// A page number: the page's offset in the file divided by the page size.
pub type PageId = u64;

/// Everything that can go wrong in folio.
///
/// Bad bytes on disk are [`Error::Corrupted`], never a panic. Each variant says what happened and,
/// where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// Another handle holds the database file's lock: another process, or another open of the same
    /// file in this process (each open is a handle of its own). A file has one read-write handle or
    /// any number of read-only ones at a time; [`crate::Builder::lock_timeout`] waits for it.
    #[error(
        "database is locked by another process or by another open handle in this process (a folio file has one read-write handle or any number of read-only ones at a time)"
    )]
    Locked,

    /// A write was asked of a database opened with [`crate::Builder::read_only`]: a write
    /// transaction, a compaction or a defrag.
    #[error("the database is open read-only: writes, compaction and defrag need a read-write open")]
    ReadOnly,

    /// The file exists but holds zero bytes: it was never a folio database, or was truncated to
    /// nothing. folio never leaves an empty file behind, so this one came from elsewhere.
    #[error("the file is empty: it is not a folio database (remove it to create a new database)")]
    EmptyFile,

    /// An online defrag asked to give up ([`crate::DefragOptions::give_up`]) did: its catch-up
    /// rounds did not get within the pause budget. The database is as it was; try again when
    /// writes are slower, or allow a longer pause.
    #[error(
        "defrag gave up after {rounds} catch-up rounds: writers commit faster than it catches up (the last round took {last_ms} ms, over the pause budget)"
    )]
    DefragBehind {
        /// Catch-up rounds run.
        rounds: u32,
        /// How long the last of them took, in milliseconds.
        last_ms: u64,
    },

    /// Neither meta page carries folio's magic number.
    #[error("not a folio database (no folio header in either meta page)")]
    NotADatabase,

    /// Both meta pages carry folio's magic number but neither passes its checksum.
    #[error(
        "both meta pages are damaged (page 0: {first}; page 1: {second}); the database cannot be opened"
    )]
    MetaDamaged {
        /// Why the first meta page was rejected.
        first: String,
        /// Why the second meta page was rejected.
        second: String,
    },

    /// The file is shorter than its meta page says it must be.
    #[error("the file is truncated: it holds {actual} bytes but the database needs {expected}")]
    Truncated {
        /// Bytes the meta page requires.
        expected: u64,
        /// Bytes actually in the file.
        actual: u64,
    },

    /// The file was written by a format version this build cannot read.
    #[error("unsupported file format version {0} (this build reads versions {oldest} to {newest})", oldest = crate::limits::FORMAT_VERSION_OLDEST, newest = crate::limits::FORMAT_VERSION)]
    UnsupportedVersion(u32),

    /// A page's bytes fail validation: a bad checksum, an offset out of bounds, a wrong kind.
    #[error("corrupted page {page}: {reason}")]
    Corrupted {
        /// The page whose bytes are bad.
        page: PageId,
        /// What is wrong with it.
        reason: String,
    },

    /// A key was empty or longer than the limit for this page size.
    #[error("key length {len} is out of range: keys must be 1 to {max} bytes")]
    KeyLength {
        /// The key's length.
        len: usize,
        /// The longest key this database accepts.
        max: usize,
    },

    /// A value was longer than the limit: [`crate::limits::VALUE_LEN_MAX`] in a tree,
    /// [`crate::limits::STORE_VALUE_LEN_MAX`] in a [`crate::Store`].
    #[error("value length {len} is over the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The longest value folio accepts.
        max: usize,
    },

    /// A tree name was empty or too long.
    #[error("tree name length {len} is out of range: names must be 1 to {max} bytes")]
    TreeNameLength {
        /// The name's length.
        len: usize,
        /// The longest name this database accepts.
        max: usize,
    },

    /// Growing the file would pass the maximum size set with [`crate::Builder::max_size`].
    #[error("database full: the commit needs {needed} bytes but the maximum size is {max} bytes")]
    DatabaseFull {
        /// File size the commit would need.
        needed: u64,
        /// The configured maximum.
        max: u64,
    },

    /// A builder option was out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// A [`crate::Store`] was opened on a database that holds named trees but not a store's
    /// (`mvcc.key` and `mvcc.meta`). A store makes its trees only in a database with no trees, so
    /// it never adds them beside trees someone else made.
    #[error(
        "not a folio store: the database holds other trees ({}) but not the store's mvcc.key and mvcc.meta; open it with Db, or make the store in a new file",
        .trees.join(", ")
    )]
    NotAStore {
        /// The names of the trees the database holds, escaped as text.
        trees: Vec<String>,
    },

    /// A read or compaction asked for a revision the store has compacted away.
    #[error(
        "revision {requested} has been compacted (the oldest readable revision is {compacted})"
    )]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compacted revision.
        compacted: i64,
    },

    /// A read or compaction asked for a revision the store has not reached yet.
    #[error("revision {requested} is in the future (the current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },

    /// Strict mode ([`crate::Builder::strict`]) found a problem in a commit before its meta was
    /// written: nothing was committed, and the database is as it was before the transaction.
    #[error("strict check failed, commit {txid} was not made: {problems}")]
    CheckFailed {
        /// The commit that was refused.
        txid: u64,
        /// What the checker found.
        problems: String,
    },

    /// A branch of a store transaction writes one key twice: two puts of it, or a put inside one
    /// of its delete ranges. As etcd, the whole transaction is refused and changes nothing.
    #[error(
        "duplicate key given in txn request: a branch writes key \"{}\" twice (two puts, or a put inside one of its delete ranges)",
        .key.escape_ascii()
    )]
    DuplicateKey {
        /// The key written twice.
        key: Vec<u8>,
    },

    /// A put or a lease call named a lease the store does not hold: never granted, revoked, or
    /// expired. A put that fails this way changes nothing.
    #[error("requested lease not found: lease {id} does not exist (grant it first)")]
    LeaseNotFound {
        /// The lease asked for.
        id: i64,
    },

    /// A grant asked for a lease id already in use.
    #[error("lease already exists: lease {id} is in use (grant with id 0 to have one chosen)")]
    LeaseExists {
        /// The id asked for.
        id: i64,
    },

    /// A grant asked for a TTL out of range.
    #[error("lease TTL {ttl} is out of range: a lease lives 1 to {max} seconds")]
    LeaseTtl {
        /// The TTL asked for, in seconds.
        ttl: i64,
        /// The longest TTL, [`crate::limits::LEASE_TTL_MAX`].
        max: i64,
    },

    /// The database's MVCC trees are not a well-formed store: one of the store's trees is missing
    /// or holds bytes a store never writes. The pages passed their checks, so the bytes were
    /// written this way, by something other than [`crate::Store`] or by a bug.
    #[error("not a well-formed folio store: {0}")]
    MalformedStore(String),

    /// An earlier commit failed after it began writing its meta page, so the state on disk is
    /// unknown to this process. Reads of existing snapshots still work; reopen the database to write.
    #[error(
        "a previous commit failed while making itself durable; reopen the database to continue writing"
    )]
    Poisoned,
}

/// The result type of every fallible folio call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for building an [`Error::Corrupted`]. Cold: the page views call it on paths that a
/// sound page never takes, and keeping its formatting out of line keeps their checks cheap.
#[cold]
#[inline(never)]
pub(crate) fn corrupted(page: PageId, reason: impl Into<String>) -> Error {
    Error::Corrupted {
        page,
        reason: reason.into(),
    }
}
