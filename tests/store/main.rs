//! The MVCC store: revisions and transactions, compaction, the model test, etcd's semantics,
//! leases and etcd's range options.
//!
//! One test binary per area, each file a module: every binary links the crate and its
//! dev-dependencies, so few binaries build and link in a fraction of the time of one per file.

#[path = "../common/mod.rs"]
mod common;

mod also_put;
mod combine;
mod index_persist;
mod lease;
mod mvcc_basics;
mod mvcc_compaction;
mod mvcc_etcd;
mod mvcc_model;
mod range_options;
mod watch;
