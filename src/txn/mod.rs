//! Transactions: many concurrent readers, one writer, and the commit that joins them.

pub(crate) mod catalog;
#[cfg(test)]
mod chain_tests;
pub(crate) mod db;
#[cfg(test)]
mod proof_tests;
pub(crate) mod read;
pub(crate) mod swap;
pub(crate) mod sync;
pub(crate) mod write;

pub use db::{Builder, Db};
pub use read::ReadTxn;
pub use sync::Durability;
pub use write::WriteTxn;
