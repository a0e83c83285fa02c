//! The MVCC store: etcd's revisioned key-value model on top of the B+tree.

pub(crate) mod combine;
pub(crate) mod compaction;
pub(crate) mod hash;
pub(crate) mod key_index;
pub(crate) mod lease;
pub(crate) mod range;
pub(crate) mod revision;
pub(crate) mod store;
pub(crate) mod types;
pub(crate) mod watch;
pub(crate) mod write;

pub use compaction::Compaction;
pub use key_index::IndexOrigin;
pub use lease::{Clock, LeaseGrant, LeaseStatus, ManualClock, MonotonicClock};
pub use range::RangeStream;
pub use revision::{KeyValue, Revision};
pub use store::Store;
pub use types::{
    Compare, CompareTarget, CompareValue, DeleteResponse, HashResponse, KeyRange, Op, OpResponse,
    PutOptions, PutResponse, RangeOptions, RangeResponse, SortOrder, SortTarget, StoreOptions,
    TxnResponse,
};
pub use watch::{
    BatchResponse, Event, EventBatch, EventKind, EventRef, SharedEvent, SharedResponse,
    WatchOptions, WatchResponse, Watcher,
};
pub use write::TxnBuilder;
