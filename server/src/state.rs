//! What every service shares: the store, the member's identity, the limits and the alarms.
//!
//! The store sits behind a [`Backend`]: a single member's store, written directly, or a
//! replicated member ([`crate::member::Member`]) whose writes go through Raft. The services ask
//! [`Shared::member`] which one they serve and take the replicated path when there is one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use folio::Store;
use parking_lot::Mutex;
use tonic::Status;

use crate::errors;
use crate::pb::etcdserverpb::{AlarmType, ResponseHeader};

/// The raft term a single member reports: it never holds an election.
pub const RAFT_TERM: u64 = 1;

/// The etcd API version the server reports in Status.
pub const ETCD_VERSION: &str = "3.5.0";

/// The state the services share, cheap to clone.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

/// Where the services' reads and writes go.
pub enum Backend {
    /// One member without Raft: its store, written directly.
    Single(Store),
    /// A member of a replicated cluster: writes through Raft, reads from its own store.
    Replicated(Arc<crate::member::Member>),
}

struct Inner {
    backend: Backend,
    db_path: PathBuf,
    data_dir: PathBuf,
    name: String,
    client_urls: Vec<String>,
    cluster_id: u64,
    member_id: u64,
    max_request_bytes: usize,
    max_txn_ops: usize,
    quota_bytes: u64,
    alarms: Mutex<BTreeSet<i32>>,
    defrag: Mutex<()>,
}

/// The identity and limits a [`Shared`] is built with.
pub struct Settings {
    /// The member's name.
    pub name: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The client URLs MemberList reports.
    pub client_urls: Vec<String>,
    /// etcd's `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// The space quota in bytes.
    pub quota_bytes: u64,
}

/// 64-bit FNV-1a: a member id that stays the same across restarts with the same name and URLs.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h.max(1)
}

impl Shared {
    /// Shares `store`, kept in the file at `db_path`, under `settings`.
    pub fn new(store: Store, db_path: PathBuf, settings: Settings) -> Shared {
        let urls = settings.client_urls.join(",");
        let member_id = fnv64(&[settings.name.as_bytes(), urls.as_bytes()]);
        let cluster_id = fnv64(&[b"folio-cluster", &member_id.to_be_bytes()]);
        Shared::with(
            Backend::Single(store),
            db_path,
            settings,
            cluster_id,
            member_id,
        )
    }

    /// Shares a replicated `member`, whose store is kept in the file at `db_path`.
    pub fn replicated(
        member: Arc<crate::member::Member>,
        db_path: PathBuf,
        settings: Settings,
    ) -> Shared {
        let (cluster_id, member_id) = (member.cluster_id(), member.id());
        Shared::with(
            Backend::Replicated(member),
            db_path,
            settings,
            cluster_id,
            member_id,
        )
    }

    fn with(
        backend: Backend,
        db_path: PathBuf,
        settings: Settings,
        cluster_id: u64,
        member_id: u64,
    ) -> Shared {
        Shared {
            inner: Arc::new(Inner {
                backend,
                db_path,
                data_dir: settings.data_dir,
                name: settings.name,
                client_urls: settings.client_urls,
                cluster_id,
                member_id,
                max_request_bytes: settings.max_request_bytes,
                max_txn_ops: settings.max_txn_ops,
                quota_bytes: settings.quota_bytes,
                alarms: Mutex::new(BTreeSet::new()),
                defrag: Mutex::new(()),
            }),
        }
    }

    /// The store (a replicated member's may be replaced by a snapshot install: take it anew
    /// for each request).
    pub fn store(&self) -> Store {
        match &self.inner.backend {
            Backend::Single(store) => store.clone(),
            Backend::Replicated(m) => m.store(),
        }
    }

    /// The replicated member, when the server is one.
    pub fn member(&self) -> Option<&Arc<crate::member::Member>> {
        match &self.inner.backend {
            Backend::Single(_) => None,
            Backend::Replicated(m) => Some(m),
        }
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// The raft term: the member's current one, or [`RAFT_TERM`] for a single member.
    pub fn raft_term(&self) -> u64 {
        match &self.inner.backend {
            Backend::Single(_) => RAFT_TERM,
            Backend::Replicated(m) => m.status().term,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> &std::path::Path {
        &self.inner.db_path
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The member's client URLs.
    pub fn client_urls(&self) -> &[String] {
        &self.inner.client_urls
    }

    /// The member's id.
    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    /// etcd's `--max-txn-ops`.
    pub fn max_txn_ops(&self) -> usize {
        self.inner.max_txn_ops
    }

    /// The longest key the store keeps (its page size's; etcd has no such bound).
    pub fn key_len_max(&self) -> usize {
        self.store().db().key_len_max()
    }

    /// The space quota in bytes.
    pub fn quota_bytes(&self) -> u64 {
        self.inner.quota_bytes
    }

    /// A response header at `revision`, as etcd fills it.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            revision,
            raft_term: self.raft_term(),
        })
    }

    /// A response header at the store's current revision.
    pub fn header_now(&self) -> Option<ResponseHeader> {
        self.header(self.store().current_revision())
    }

    /// etcd's request size check: a write request longer than `--max-request-bytes` is refused.
    pub fn check_size(&self, encoded_len: usize) -> Result<(), Status> {
        if encoded_len > self.inner.max_request_bytes {
            return Err(errors::request_too_large());
        }
        Ok(())
    }

    /// folio's key bound on the keys a write stores: etcd takes any key that fits the request,
    /// folio only keys up to [`Shared::key_len_max`]. Checked after [`Shared::check_size`], as
    /// etcd's refusal of an oversized request comes first.
    pub fn check_key_len(&self, key: &[u8]) -> Result<(), Status> {
        let max = self.key_len_max();
        if key.len() > max {
            return Err(errors::key_too_large(key.len(), max));
        }
        Ok(())
    }

    /// The database's size as etcd reports it and its quota compares: bytes up to the
    /// allocation frontier ([`folio::Db::allocated_bytes`], bbolt's size). Not the file's length:
    /// a folio file grows by doubling, so that would raise NOSPACE with half the quota used.
    pub fn db_size(&self) -> u64 {
        self.store().db().allocated_bytes()
    }

    /// The database file's length in bytes, unused tail included.
    pub fn file_len(&self) -> u64 {
        std::fs::metadata(&self.inner.db_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// etcd's quota check before a write of `cost` bytes: refused while the NOSPACE alarm is
    /// raised, and when the database's size ([`Shared::db_size`]) would pass the quota (which
    /// raises it).
    pub fn check_quota(&self, cost: usize) -> Result<(), Status> {
        if self.alarmed(AlarmType::Nospace) {
            return Err(errors::no_space());
        }
        let size = self.db_size();
        if size.saturating_add(cost as u64) > self.inner.quota_bytes {
            if self.raise(AlarmType::Nospace) {
                crate::warn!(
                    "alarm NOSPACE raised: the database is {size} bytes and the quota {} bytes; writes are refused until compaction, defrag and `etcdctl alarm disarm`",
                    self.inner.quota_bytes
                );
            }
            return Err(errors::no_space());
        }
        Ok(())
    }

    /// Held while a defrag runs, so a client's and the automatic one never overlap.
    pub fn defrag_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.defrag.lock()
    }

    /// Whether `alarm` is raised.
    pub fn alarmed(&self, alarm: AlarmType) -> bool {
        self.inner.alarms.lock().contains(&(alarm as i32))
    }

    /// Raises `alarm`; true if it was not raised before.
    pub fn raise(&self, alarm: AlarmType) -> bool {
        self.inner.alarms.lock().insert(alarm as i32)
    }

    /// Clears `alarm`; true if it was raised.
    pub fn clear(&self, alarm: AlarmType) -> bool {
        self.inner.alarms.lock().remove(&(alarm as i32))
    }

    /// The raised alarms.
    pub fn alarms(&self) -> Vec<AlarmType> {
        self.inner
            .alarms
            .lock()
            .iter()
            .filter_map(|&a| AlarmType::try_from(a).ok())
            .collect()
    }

    /// Runs `f` (a call into the synchronous store) on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| Status::internal(format!("etcdserver: request task failed: {e}")))?
    }
}
