//! etcd's Maintenance service: Status, Defragment, Hash, HashKV, Snapshot and Alarm.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use folio::{Db, DefragOptions, DefragReport, Durability};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::errors::{self, from_folio};
use crate::pb::etcdserverpb::alarm_request::AlarmAction;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::state::{ETCD_VERSION, Shared};

/// Bytes of database each Snapshot message carries (etcd's `snapshotSendBufferSize`).
pub const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Bytes of the SHA-256 that ends a snapshot stream.
pub const SNAPSHOT_HASH_LEN: usize = 32;

/// Bytes of entries a snapshot copies per write transaction, so the copy's memory is bounded.
const SNAPSHOT_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The prefix of a snapshot's file in the data directory while it is streamed.
pub const SNAPSHOT_PREFIX: &str = "snapshot.";

/// The Maintenance service.
pub struct MaintenanceService {
    shared: Shared,
}

impl MaintenanceService {
    /// A Maintenance service on `shared`.
    pub fn new(shared: Shared) -> MaintenanceService {
        MaintenanceService { shared }
    }
}

/// Defragments the store online, one defrag at a time, and logs it with the writers' pause.
pub fn defrag(shared: &Shared, why: &str) -> Result<DefragReport, Status> {
    let _one = shared.defrag_lock();
    // The file's length, as the report's sizes at the end.
    crate::info!("defrag started ({why}): {} bytes", shared.file_len());
    let report = shared
        .store()
        .defrag(&DefragOptions::default())
        .map_err(|e| {
            crate::error!("defrag failed: {e}");
            from_folio(e)
        })?;
    crate::info!(
        "defrag finished ({why}): {} -> {} bytes in {:.3} s, writers paused {:.1} ms, {} catch-up rounds",
        report.size_before,
        report.size_after,
        report.duration.as_secs_f64(),
        report.pause.as_secs_f64() * 1000.0,
        report.rounds.len()
    );
    Ok(report)
}

/// Copies the newest commit of `db`, tree by tree and entry by entry, into a new folio file at
/// `path` (created 0600): a consistent snapshot that opens as a folio database.
pub fn copy_to(db: &Db, path: &Path) -> folio::Result<()> {
    let out = Db::builder()
        .durability(Durability::None)
        .page_size(db.page_size())
        .file_mode(0o600)
        .open(path)?;
    let tx = db.begin_read()?;
    for name in tx.tree_names()? {
        let Some(tree) = tx.tree(&name)? else {
            continue;
        };
        let mut entries = tree.iter();
        loop {
            let mut w = out.begin_write()?;
            let mut done = true;
            {
                let mut t = w.open_tree(&name)?;
                let mut bytes = 0;
                for entry in entries.by_ref() {
                    let (k, v) = entry?;
                    t.put(k, v)?;
                    bytes += k.len() + v.len();
                    if bytes >= SNAPSHOT_BATCH_BYTES {
                        done = false;
                        break;
                    }
                }
            }
            w.commit()?;
            if done {
                break;
            }
        }
    }
    out.sync()
}

/// A name for a new snapshot file in the data directory.
fn snapshot_path(dir: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{SNAPSHOT_PREFIX}{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Streams the file at `path` to `tx` in chunks, then removes it. Stops early (and still
/// removes it) when the client goes away.
fn stream_file(
    shared: &Shared,
    path: &Path,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    // The database's bytes, then their SHA-256, as etcd sends a snapshot (`etcdctl snapshot
    // save` refuses a stream without it, and keeps it at the end of the file it saves).
    let mut remaining = file.metadata()?.len() + SNAPSHOT_HASH_LEN as u64;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let header = shared.header_now();
    while remaining > SNAPSHOT_HASH_LEN as u64 {
        let n = ((remaining - SNAPSHOT_HASH_LEN as u64) as usize).min(SNAPSHOT_CHUNK);
        file.read_exact(&mut buf[..n])?;
        sha.update(&buf[..n]);
        remaining -= n as u64;
        let msg = SnapshotResponse {
            header,
            remaining_bytes: remaining,
            blob: buf[..n].to_vec(),
            version: String::new(),
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            return Ok(false);
        }
    }
    let msg = SnapshotResponse {
        header,
        remaining_bytes: 0,
        blob: sha.finish().as_ref().to_vec(),
        version: String::new(),
    };
    Ok(tx.blocking_send(Ok(msg)).is_ok())
}

/// The tree the store persists its key index in: derived from `mvcc.key`, and written at a
/// close or on request, so two members holding the same data may differ in it.
const PERSISTED_INDEX_TREE: &[u8] = b"mvcc.index";

/// The CRC-32 of every tree's name, keys and values in the newest commit: etcd's Hash of the
/// whole backend (but for the persisted key index, see [`PERSISTED_INDEX_TREE`]).
fn hash_all(db: &Db) -> folio::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let tx = db.begin_read()?;
    for name in tx.tree_names()? {
        if name == PERSISTED_INDEX_TREE {
            continue;
        }
        h.update(&name);
        if let Some(tree) = tx.tree(&name)? {
            for entry in tree.iter() {
                let (k, v) = entry?;
                h.update(k);
                h.update(v);
            }
        }
    }
    Ok(h.finalize())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let r = request.into_inner();
        let s = &self.shared;
        let member = |alarm: AlarmType| AlarmMember {
            member_id: s.member_id(),
            alarm: alarm as i32,
        };
        let action = AlarmAction::try_from(r.action)
            .map_err(|_| Status::invalid_argument("etcdserver: invalid alarm action"))?;
        let alarm = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
        let alarms = match action {
            AlarmAction::Get => s.alarms().into_iter().map(member).collect(),
            AlarmAction::Activate if alarm != AlarmType::None => {
                if s.raise(alarm) {
                    crate::warn!("alarm {} raised by a client", alarm.as_str_name());
                }
                vec![member(alarm)]
            }
            AlarmAction::Deactivate if s.clear(alarm) => {
                crate::info!("alarm {} disarmed", alarm.as_str_name());
                vec![member(alarm)]
            }
            _ => Vec::new(),
        };
        Ok(Response::new(AlarmResponse {
            header: s.header_now(),
            alarms,
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.shared
            .blocking(|s| {
                let stats = s.store().db().stats().map_err(from_folio)?;
                let revision = s.store().current_revision();
                let index = u64::try_from(revision).unwrap_or(0);
                // A replicated member reports its Raft's leader, indexes and term.
                let (leader, raft_index, raft_applied_index, raft_term) = match s.member() {
                    Some(m) => {
                        let st = m.status();
                        (
                            st.leader.unwrap_or(0),
                            st.raft_index,
                            st.applied_index,
                            st.term,
                        )
                    }
                    None => (s.member_id(), index, index, crate::state::RAFT_TERM),
                };
                Ok(Response::new(StatusResponse {
                    header: s.header(revision),
                    version: ETCD_VERSION.to_string(),
                    db_size: i64::try_from(s.db_size()).unwrap_or(i64::MAX),
                    leader,
                    raft_index,
                    raft_term,
                    raft_applied_index,
                    errors: s
                        .alarms()
                        .into_iter()
                        .map(|a| format!("memberID:{} alarm:{} ", s.member_id(), a.as_str_name()))
                        .collect(),
                    db_size_in_use: i64::try_from(stats.live_bytes()).unwrap_or(i64::MAX),
                    is_learner: false,
                    storage_version: String::new(),
                    db_size_quota: i64::try_from(s.quota_bytes()).unwrap_or(i64::MAX),
                    downgrade_info: None,
                }))
            })
            .await
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.shared
            .blocking(|s| {
                defrag(s, "requested by a client")?;
                Ok(Response::new(DefragmentResponse {
                    header: s.header_now(),
                }))
            })
            .await
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.shared
            .blocking(|s| {
                let header = s.header_now();
                let hash = hash_all(s.store().db()).map_err(from_folio)?;
                Ok(Response::new(HashResponse { header, hash }))
            })
            .await
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        self.shared
            .blocking(move |s| {
                let h = s.store().hash_by_rev(rev).map_err(from_folio)?;
                Ok(Response::new(HashKvResponse {
                    header: s.header(h.revision),
                    hash: h.hash,
                    compact_revision: h.compact_revision,
                    hash_revision: h.hash_revision,
                }))
            })
            .await
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let s = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let path = snapshot_path(s.data_dir());
            let started = Instant::now();
            let made = copy_to(s.store().db(), &path).map_err(from_folio);
            let sent = made.and_then(|()| {
                stream_file(&s, &path, &tx)
                    .map_err(|e| Status::unknown(format!("etcdserver: snapshot: {e}")))
            });
            match sent {
                Ok(true) => crate::info!(
                    "snapshot sent at revision {} in {:.3} s",
                    s.store().current_revision(),
                    started.elapsed().as_secs_f64()
                ),
                Ok(false) => crate::warn!("snapshot abandoned: the client went away"),
                Err(e) => {
                    crate::error!("snapshot failed: {}", e.message());
                    let _ = tx.blocking_send(Err(e));
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        if request.into_inner().target_id != self.shared.member_id() {
            return Err(errors::bad_leader_transferee());
        }
        Ok(Response::new(MoveLeaderResponse {
            header: self.shared.header_now(),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(errors::unsupported("Downgrade"))
    }
}
