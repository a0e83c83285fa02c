//! An etcd v3-compatible gRPC server on a folio [`Store`](folio::Store), for one member.
//!
//! It speaks etcd's API (`proto/`, written from etcd's published `rpc.proto` and `kv.proto`)
//! so that `etcdctl` and etcd's client libraries work against it unchanged: the same methods,
//! response headers, gRPC codes and error messages, and request limits. What it serves:
//!
//! - KV: Range (every option: prefix and range ends, revision, limit, sort, count-only,
//!   keys-only, min/max revision filters), Put (prev_kv, ignore_value, ignore_lease),
//!   DeleteRange, Txn, Compact ([`kv`]);
//! - Maintenance: Status, Defragment (folio's online defrag), Hash, HashKV, Snapshot, Alarm with
//!   the space quota's NOSPACE alarm ([`maintenance`]);
//! - Watch: the bidirectional stream with create (start revision, prev_kv, filters, progress
//!   notify), cancel and progress requests ([`watch`]);
//! - Lease: Grant, Revoke, the KeepAlive stream, TimeToLive, Leases, and expiry ([`lease`]);
//! - Cluster: MemberList for the one member ([`cluster`]).
//!
//! Beyond etcd it defragments by itself when the reclaimable share of the file passes a
//! threshold ([`auto`]): safe because folio's defrag holds writers only for its last catch-up.
//! User and role authentication (etcd's Auth service) is out of scope: Authenticate answers as
//! etcd's does with authentication not enabled, and every RPC not served is named in its
//! `Unimplemented` answer ([`unserved`]).
//!
//! The store is synchronous: every call into it runs on tokio's blocking pool, so a sync or a
//! defrag never holds up the threads that serve the network.

// tonic's own signatures return `Result<_, Status>`, and Status is large; the helpers that build
// those results follow them rather than box every error.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod auto;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod kv;
pub mod lease;
pub mod log;
pub mod maintenance;
pub mod member;
pub mod replicated;
pub mod server;
pub mod state;
pub mod tls;
pub mod unserved;
pub mod watch;

pub use config::Config;
pub use server::{Running, start};

/// The protocol buffers of etcd's API, generated at build time from `proto/`.
pub mod pb {
    /// etcd's `mvccpb` package: key-values and watch events.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcd's `etcdserverpb` package: the services and their messages.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
