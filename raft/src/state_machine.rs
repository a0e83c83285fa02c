//! The store as the state machine, and its snapshots.
//!
//! Applying an entry is one store transaction at its own revision, and the entry's log id is put
//! into the tree `raft.applied` of the store's database in the same commit
//! ([`folio::TxnBuilder::also_put`]): after a crash the store holds every entry up to the
//! recorded one and none after it, so openraft replays exactly the entries after it. openraft
//! hands `apply` a batch of committed entries; a run of them is applied in one database commit
//! ([`folio::Store::commit_batch`]: one sync for the run, each entry still its own revision and
//! its own answer), the last one's log id recorded in it, so a crash leaves all of the run or
//! none of it. An entry that writes no store key (a blank entry, a membership change, a
//! transaction whose branch only reads) still commits its log id. If the store refuses an entry
//! of a run (a key put twice in a branch, a range below the compacted revision, ...), nothing of
//! the run is committed and its entries are applied one by one instead, so the refusal is that
//! entry's answer, the same on every member. The commands of two commits are `Compact`
//! (compaction deletes in batches of their own) and the lease grant and revoke (the store's lease
//! calls are writes of their own): they end a run and are applied alone, each recording its log
//! id after it finishes, and a replay of it after a crash in between is refused by the store
//! (compacted already, the lease exists, no such lease) and changes nothing, so every member
//! ends in the same state.
//!
//! A [`Command::Batch`] entry (client writes the leader's proposer put in one entry) is one
//! store transaction per command in the same commit, each at its own revision with its own
//! answer. If the store refuses one of its commands, the entry is applied command by command,
//! one commit each: each records in `raft.applied/partial` the entry's log id and how many of
//! its commands are done, and the last records the entry's log id as applied. A crash between
//! two of them leaves the entry unapplied as far as openraft knows; its replay reads the
//! partial mark and skips the commands done, so none is applied twice or skipped. A snapshot
//! copies the mark with the data, so a member that installs it skips the same commands.
//!
//! A snapshot is a packed copy of one read snapshot of the store's database
//! ([`folio::ReadTxn::copy_to`], the defrag's bulk loader), in `snapshots/` of the data dir: the
//! applied log id and the membership it holds are those of the copy, so they always agree with
//! its data. It is sent as a file, in chunks, and received into a file; installing it renames a
//! copy of the received file over the store's (atomic: after a crash the path holds the old store
//! or the new one, whole) and reopens the store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use folio::{Op, Store};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};

use crate::command::{Command, MEMBERS_TREE, MemberInfo, OpResult, Refusal, Response, key_range};
use crate::log_store::io_err;
use crate::{NodeId, Peer, TypeConfig};

/// The tree of the store's database that records what was applied.
pub const APPLIED_TREE: &[u8] = b"raft.applied";
const LAST_APPLIED: &[u8] = b"last";
const MEMBERSHIP: &[u8] = b"membership";
const PARTIAL: &[u8] = b"partial";

type Membership = StoredMembership<NodeId, Peer>;

#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    store: RwLock<Store>,
    /// The newest snapshot built or installed, and its file.
    current: Mutex<Option<(SnapshotMeta<NodeId, Peer>, PathBuf)>>,
    /// The file the snapshot being received is written to.
    receiving: Mutex<Option<PathBuf>>,
    counter: AtomicU64,
    /// How many snapshot installs have replaced the store; receivers learn of each.
    installs: tokio::sync::watch::Sender<u64>,
}

/// The member's store, as openraft's state machine.
#[derive(Clone, Debug)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join("store.folio")
}

fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// How long an open waits for the lock of a file a stopping member of this process still holds.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_store(path: &Path) -> folio::Result<Store> {
    let builder = folio::Db::builder()
        .durability(folio::Durability::Group)
        .lock_timeout(LOCK_WAIT);
    Store::open_with(path, &builder)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The log id and membership recorded in a read snapshot of the store's database.
fn recorded(tx: &folio::ReadTxn<'_>) -> folio::Result<(Option<LogId<NodeId>>, Membership)> {
    let Some(tree) = tx.tree(APPLIED_TREE)? else {
        return Ok((None, Membership::default()));
    };
    let parse = |raw: Option<&[u8]>| -> folio::Result<Option<serde_json::Value>> {
        raw.map(serde_json::from_slice)
            .transpose()
            .map_err(|e| folio::Error::MalformedStore(format!("raft.applied: {e}")))
    };
    let last = parse(tree.get(LAST_APPLIED)?)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| folio::Error::MalformedStore(format!("raft.applied: {e}")))?;
    let membership = parse(tree.get(MEMBERSHIP)?)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| folio::Error::MalformedStore(format!("raft.applied: {e}")))?
        .unwrap_or_default();
    Ok((last, membership))
}

/// Whether the store refused a command by its content, the same way on every member (so the
/// refusal is the command's answer), rather than failing to do it (which stops the member).
fn refused(e: &folio::Error) -> bool {
    use folio::Error as E;
    matches!(
        e,
        E::KeyLength { .. }
            | E::ValueTooLarge { .. }
            | E::Compacted { .. }
            | E::FutureRevision { .. }
            | E::DuplicateKey { .. }
            | E::InvalidOption(_)
            | E::LeaseNotFound { .. }
            | E::LeaseExists { .. }
            | E::LeaseTtl { .. }
    )
}

/// Whether an entry's command takes two store commits (see the module docs): those are
/// applied alone, never in a batch.
fn two_commits(entry: &Entry<TypeConfig>) -> bool {
    matches!(
        entry.payload,
        EntryPayload::Normal(
            Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseRevoke { .. }
        )
    )
}

/// `txn` with `log_id` recorded as the last applied in the same commit.
fn mark<'s>(
    txn: folio::TxnBuilder<'s>,
    log_id: &LogId<NodeId>,
) -> Result<folio::TxnBuilder<'s>, StorageError<NodeId>> {
    let last = serde_json::to_vec(log_id).map_err(io_err)?;
    Ok(txn.also_put(APPLIED_TREE, LAST_APPLIED, &last))
}

/// How far a batch entry applied command by command got: its log id and how many of its
/// commands are committed (see [`Shared::apply_batch_alone`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Partial {
    log_id: LogId<NodeId>,
    done: usize,
}

/// `txn` with "`done` commands of the batch entry `log_id` are applied" in the same commit.
fn mark_partial<'s>(
    txn: folio::TxnBuilder<'s>,
    log_id: &LogId<NodeId>,
    done: usize,
) -> Result<folio::TxnBuilder<'s>, StorageError<NodeId>> {
    let raw = serde_json::to_vec(&Partial {
        log_id: *log_id,
        done,
    })
    .map_err(io_err)?;
    Ok(txn.also_put(APPLIED_TREE, PARTIAL, &raw))
}

/// How many commands of the batch entry `log_id` a crash left applied (0 if none).
fn partial_done(store: &Store, log_id: &LogId<NodeId>) -> Result<usize, StorageError<NodeId>> {
    let tx = store.db().begin_read().map_err(io_err)?;
    let Some(tree) = tx.tree(APPLIED_TREE).map_err(io_err)? else {
        return Ok(0);
    };
    let Some(raw) = tree.get(PARTIAL).map_err(io_err)? else {
        return Ok(0);
    };
    let p: Partial = serde_json::from_slice(raw).map_err(io_err)?;
    Ok(if p.log_id == *log_id { p.done } else { 0 })
}

/// What a command that cannot join a batch answers when a batch entry holds it (a batch is
/// made by the proposer of batchable commands only; this keeps a foreign one deterministic).
const NOT_BATCHABLE: &str = "a batch holds only puts, deletes and transactions";

/// The store transaction a batchable command is (`None` for any other command).
fn command_txn<'s>(store: &'s Store, command: &Command) -> Option<folio::TxnBuilder<'s>> {
    Some(match command {
        Command::Put { key, value, lease } => {
            store.txn().then([Op::put_with_lease(key, value, *lease)])
        }
        Command::DeleteRange { key, range_end } => store
            .txn()
            .then([Op::delete_range(key_range(key, range_end))]),
        Command::Txn {
            compares,
            success,
            failure,
        } => store
            .txn()
            .when(compares.iter().map(|c| c.to_store()))
            .then(success.iter().map(|o| o.to_store()))
            .otherwise(failure.iter().map(|o| o.to_store())),
        _ => return None,
    })
}

/// The store transactions an entry is, in order, the last with its log id recorded; `None`
/// for the commands of two commits. A batch entry is one transaction per command (a command
/// that cannot be batched an empty one).
fn as_txns<'s>(
    store: &'s Store,
    entry: &Entry<TypeConfig>,
) -> Result<Option<Vec<folio::TxnBuilder<'s>>>, StorageError<NodeId>> {
    let mut txns = match &entry.payload {
        EntryPayload::Blank => vec![store.txn()],
        EntryPayload::Membership(m) => {
            let stored = Membership::new(Some(entry.log_id), m.clone());
            let raw = serde_json::to_vec(&stored).map_err(io_err)?;
            vec![store.txn().also_put(APPLIED_TREE, MEMBERSHIP, &raw)]
        }
        EntryPayload::Normal(Command::SetMember {
            id,
            name,
            client_urls,
        }) => {
            let info = MemberInfo {
                name: name.clone(),
                client_urls: client_urls.clone(),
            };
            let raw = serde_json::to_vec(&info).map_err(io_err)?;
            vec![store.txn().also_put(MEMBERS_TREE, &id.to_be_bytes(), &raw)]
        }
        EntryPayload::Normal(Command::Batch { commands }) if !commands.is_empty() => commands
            .iter()
            .map(|c| command_txn(store, c).unwrap_or_else(|| store.txn()))
            .collect(),
        EntryPayload::Normal(Command::Batch { .. }) => vec![store.txn()],
        EntryPayload::Normal(
            Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseRevoke { .. },
        ) => return Ok(None),
        EntryPayload::Normal(command) => {
            vec![command_txn(store, command).expect("every other command is one store transaction")]
        }
    };
    let last = txns.pop().expect("an entry is at least one transaction");
    txns.push(mark(last, &entry.log_id)?);
    Ok(Some(txns))
}

/// A command's answer, from its store transaction's.
fn command_answer(command: Option<&Command>, r: folio::TxnResponse) -> Response {
    match command {
        Some(Command::Put { .. } | Command::DeleteRange { .. } | Command::Txn { .. }) => Response {
            revision: r.revision,
            succeeded: r.succeeded,
            results: r.responses.into_iter().map(OpResult::from_store).collect(),
            ..Response::default()
        },
        Some(Command::Batch { .. }) | None => Response {
            revision: r.revision,
            ..Response::default()
        },
        Some(_) => Response {
            revision: r.revision,
            error: Some(NOT_BATCHABLE.into()),
            ..Response::default()
        },
    }
}

/// An entry's answer, from its store transactions' (as many as [`as_txns`] made).
fn answer(entry: &Entry<TypeConfig>, rs: Vec<folio::TxnResponse>) -> Response {
    match &entry.payload {
        EntryPayload::Normal(Command::Batch { commands }) => {
            let batch: Vec<Response> = commands
                .iter()
                .zip(rs)
                .map(|(c, r)| command_answer(Some(c), r))
                .collect();
            Response {
                revision: batch.last().map_or(0, |r| r.revision),
                batch,
                ..Response::default()
            }
        }
        EntryPayload::Normal(c) if c.batchable() => {
            let r = rs.into_iter().next().expect("one transaction");
            command_answer(Some(c), r)
        }
        _ => command_answer(None, rs.into_iter().next().expect("one transaction")),
    }
}

impl StateMachine {
    /// Opens the store in `dir` (made if missing) and the newest snapshot beside it.
    pub fn open(dir: &Path) -> folio::Result<StateMachine> {
        StateMachine::with_store(dir, open_store(&store_path(dir))?)
    }

    /// The state machine over `store`, opened by the caller (on a [`folio::sim::SimStorage`],
    /// say) at `dir`'s `store.folio`, with the snapshots in `dir` as [`StateMachine::open`]
    /// keeps them. A snapshot install reopens the store from that path.
    pub fn with_store(dir: &Path, store: Store) -> folio::Result<StateMachine> {
        std::fs::create_dir_all(snapshot_dir(dir))?;
        let current = std::fs::read(snapshot_dir(dir).join("current.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice::<SnapshotMeta<NodeId, Peer>>(&raw).ok())
            .map(|meta| {
                let path = snapshot_dir(dir).join(format!("{}.folio", meta.snapshot_id));
                (meta, path)
            })
            .filter(|(_, path)| path.exists());
        Ok(StateMachine {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                store: RwLock::new(store),
                current: Mutex::new(current),
                receiving: Mutex::new(None),
                counter: AtomicU64::new(0),
                installs: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The store as it is now (a snapshot install replaces it).
    pub fn store(&self) -> Store {
        self.shared.store()
    }

    /// A receiver that changes each time a snapshot install replaces the store (its value
    /// counts the installs). The old store gets nothing after an install, so what holds it
    /// across one (a [`folio::Watcher`]) must take [`StateMachine::store`] again: subscribe
    /// before taking the store, and no install goes unseen.
    pub fn installs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.installs.subscribe()
    }
}

impl Shared {
    pub(crate) fn store(&self) -> Store {
        self.store.read().expect("store lock").clone()
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies a batch of entries: each run of entries that are store transactions (every
    /// entry but the commands of two commits) in one store commit, the others alone.
    fn apply_batch(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError<NodeId>> {
        let mut responses = Vec::with_capacity(entries.len());
        let mut run = Vec::new();
        for entry in entries {
            if two_commits(&entry) {
                responses.extend(self.apply_run(std::mem::take(&mut run))?);
                responses.push(self.apply_one(entry)?);
            } else {
                run.push(entry);
            }
        }
        responses.extend(self.apply_run(run)?);
        Ok(responses)
    }

    /// Applies entries that are store transactions (a batch entry one per command) in one
    /// store commit, the last one's log id recorded in it; if the store refuses one of them, it
    /// applies the entries one by one instead, so that the refused one answers with its refusal
    /// and the others as alone.
    fn apply_run(
        &self,
        run: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError<NodeId>> {
        if run.len() <= 1 {
            return run.into_iter().map(|e| self.apply_one(e)).collect();
        }
        let store = self.store();
        let mut txns = Vec::new();
        let mut counts = Vec::with_capacity(run.len());
        for e in &run {
            let of_entry = as_txns(&store, e)?.expect("a run holds no command of two commits");
            counts.push(of_entry.len());
            txns.extend(of_entry);
        }
        match store.commit_batch(&txns) {
            Ok(done) => {
                let mut done = done.into_iter();
                Ok(run
                    .iter()
                    .zip(counts)
                    .map(|(e, n)| answer(e, done.by_ref().take(n).collect()))
                    .collect())
            }
            Err(e) if refused(&e) => {
                drop(txns);
                run.into_iter().map(|e| self.apply_one(e)).collect()
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Applies a batch entry's commands one commit each, because the store refused one of them
    /// in the entry's single commit: each commit records how many of the entry's commands are
    /// done (`raft.applied/partial`), the last one the entry's log id. After a crash in
    /// between, the replay of the entry skips the commands done (their answers are lost with
    /// the clients that waited for them), so none is applied twice or skipped.
    fn apply_batch_alone(
        &self,
        entry: &Entry<TypeConfig>,
        commands: &[Command],
    ) -> Result<Response, StorageError<NodeId>> {
        let store = self.store();
        let skip = partial_done(&store, &entry.log_id)?;
        let mut batch = Vec::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            if i < skip {
                batch.push(Response::default());
                continue;
            }
            let marked = |txn| {
                if i + 1 == commands.len() {
                    mark(txn, &entry.log_id)
                } else {
                    mark_partial(txn, &entry.log_id, i + 1)
                }
            };
            let txn = command_txn(&store, c).unwrap_or_else(|| store.txn());
            let r = match marked(txn)?.commit() {
                Ok(r) => command_answer(Some(c), r),
                Err(e) if refused(&e) => {
                    let r = marked(store.txn())?.commit().map_err(io_err)?;
                    Response {
                        revision: r.revision,
                        error: Some(e.to_string()),
                        refusal: Refusal::of(&e),
                        ..Response::default()
                    }
                }
                Err(e) => return Err(io_err(e)),
            };
            batch.push(r);
        }
        Ok(Response {
            revision: store.current_revision(),
            batch,
            ..Response::default()
        })
    }

    /// Applies one entry: one store commit with its log id (see the module docs).
    fn apply_one(&self, entry: Entry<TypeConfig>) -> Result<Response, StorageError<NodeId>> {
        let store = self.store();
        let only_mark = |store: &Store| -> Result<Response, StorageError<NodeId>> {
            let r = mark(store.txn(), &entry.log_id)?.commit().map_err(io_err)?;
            Ok(Response {
                revision: r.revision,
                ..Response::default()
            })
        };
        if let Some(txns) = as_txns(&store, &entry)? {
            let done = if txns.len() == 1 {
                let txn = txns.into_iter().next().expect("one transaction");
                txn.commit().map(|r| vec![r])
            } else {
                store.commit_batch(&txns)
            };
            return match done {
                Ok(rs) => Ok(answer(&entry, rs)),
                Err(e) if refused(&e) => match &entry.payload {
                    EntryPayload::Normal(Command::Batch { commands }) => {
                        self.apply_batch_alone(&entry, commands)
                    }
                    _ => Ok(Response {
                        error: Some(e.to_string()),
                        refusal: Refusal::of(&e),
                        ..only_mark(&store)?
                    }),
                },
                Err(e) => Err(io_err(e)),
            };
        }
        match &entry.payload {
            EntryPayload::Normal(Command::LeaseGrant { id, ttl }) => {
                let id = if *id == 0 {
                    i64::try_from(entry.log_id.index).map_err(io_err)?
                } else {
                    *id
                };
                let (results, error) = match store.lease_grant(id, *ttl) {
                    Ok(g) => (
                        vec![OpResult::LeaseGranted {
                            id: g.id,
                            ttl: g.ttl,
                        }],
                        None,
                    ),
                    Err(e) if refused(&e) => (Vec::new(), Some(e)),
                    Err(e) => return Err(io_err(e)),
                };
                Ok(Response {
                    results,
                    refusal: error.as_ref().and_then(Refusal::of),
                    error: error.map(|e| e.to_string()),
                    ..only_mark(&store)?
                })
            }
            EntryPayload::Normal(Command::LeaseRevoke { id }) => {
                let error = match store.lease_revoke(*id) {
                    Ok(_) => None,
                    Err(e) if refused(&e) => Some(e),
                    Err(e) => return Err(io_err(e)),
                };
                Ok(Response {
                    refusal: error.as_ref().and_then(Refusal::of),
                    error: error.map(|e| e.to_string()),
                    ..only_mark(&store)?
                })
            }
            EntryPayload::Normal(Command::Compact { revision }) => {
                let error = match store.compact(*revision) {
                    Ok(()) => None,
                    Err(e) if refused(&e) => Some(e),
                    Err(e) => return Err(io_err(e)),
                };
                Ok(Response {
                    refusal: error.as_ref().and_then(Refusal::of),
                    error: error.map(|e| e.to_string()),
                    ..only_mark(&store)?
                })
            }
            _ => unreachable!("every other entry is one store transaction"),
        }
    }

    /// Copies the store's newest commit into a new snapshot file and makes it the current one.
    fn build(&self) -> Result<(SnapshotMeta<NodeId, Peer>, PathBuf), StorageError<NodeId>> {
        let store = self.store();
        let tx = store.db().begin_read().map_err(io_err)?;
        let (last, membership) = recorded(&tx).map_err(io_err)?;
        let id = match last {
            Some(l) => format!(
                "{}-{}-{}-{}",
                l.leader_id.term,
                l.leader_id.node_id,
                l.index,
                self.next_id()
            ),
            None => format!("0-0-0-{}", self.next_id()),
        };
        let dir = snapshot_dir(&self.dir);
        let tmp = dir.join(format!("{id}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        tx.copy_to(&tmp).map_err(io_err)?;
        drop(tx);
        let path = dir.join(format!("{id}.folio"));
        std::fs::rename(&tmp, &path).map_err(io_err)?;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: id,
        };
        self.set_current(meta.clone(), path.clone())?;
        Ok((meta, path))
    }

    /// Records `meta` as the current snapshot and removes the one before it (a sender still
    /// reading it keeps its open file).
    fn set_current(
        &self,
        meta: SnapshotMeta<NodeId, Peer>,
        path: PathBuf,
    ) -> Result<(), StorageError<NodeId>> {
        let dir = snapshot_dir(&self.dir);
        let tmp = dir.join("current.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&meta).map_err(io_err)?).map_err(io_err)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        std::fs::rename(&tmp, dir.join("current.json")).map_err(io_err)?;
        sync_dir(&dir).map_err(io_err)?;
        let old = self
            .current
            .lock()
            .expect("snapshot lock")
            .replace((meta, path.clone()));
        if let Some((_, old)) = old
            && old != path
        {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Installs the received snapshot file `received`: checks it is a store that recorded
    /// `meta`'s log id, renames a copy of it over the store's file, and reopens the store.
    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Peer>,
        received: PathBuf,
    ) -> Result<(), StorageError<NodeId>> {
        {
            let db = folio::Db::builder()
                .open_existing(&received)
                .map_err(io_err)?;
            let store = Store::with_db(db).map_err(io_err)?;
            let tx = store.db().begin_read().map_err(io_err)?;
            let (last, _) = recorded(&tx).map_err(io_err)?;
            if last != meta.last_log_id {
                return Err(io_err(format!(
                    "the snapshot {} holds log id {last:?}, not {:?}",
                    meta.snapshot_id, meta.last_log_id
                )));
            }
        }
        let target = store_path(&self.dir);
        let staged = self.dir.join("store.folio.install");
        let _ = std::fs::remove_file(&staged);
        std::fs::copy(&received, &staged).map_err(io_err)?;
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        let mut store = self.store.write().expect("store lock");
        std::fs::rename(&staged, &target).map_err(io_err)?;
        sync_dir(&self.dir).map_err(io_err)?;
        *store = open_store(&target).map_err(io_err)?;
        drop(store);
        self.installs.send_modify(|n| *n += 1);
        let path = snapshot_dir(&self.dir).join(format!("{}.folio", meta.snapshot_id));
        std::fs::rename(&received, &path).map_err(io_err)?;
        self.set_current(meta.clone(), path)
    }
}

async fn open_snapshot(
    meta: SnapshotMeta<NodeId, Peer>,
    path: &Path,
) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(file),
    })
}

/// Runs `f`, which does file I/O for a while (a snapshot's copy or install), off the runtime's
/// worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError<NodeId>> + Send + 'static,
) -> Result<T, StorageError<NodeId>> {
    tokio::task::spawn_blocking(f).await.map_err(io_err)?
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        let (meta, path) = blocking(move || shared.build()).await?;
        open_snapshot(meta, &path).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let store = self.shared.store();
        let tx = store.db().begin_read().map_err(io_err)?;
        recorded(&tx).map_err(io_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.shared.apply_batch(entries.into_iter().collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let path =
            snapshot_dir(&self.shared.dir).join(format!("recv-{}.part", self.shared.next_id()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(io_err)?;
        let old = self
            .shared
            .receiving
            .lock()
            .expect("receiving lock")
            .replace(path);
        if let Some(old) = old {
            let _ = std::fs::remove_file(old);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Peer>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot.sync_all().await.map_err(io_err)?;
        drop(snapshot);
        let received = self
            .shared
            .receiving
            .lock()
            .expect("receiving lock")
            .take()
            .ok_or_else(|| io_err("no snapshot was being received"))?;
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || shared.install(&meta, received)).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = self.shared.current.lock().expect("snapshot lock").clone();
        match current {
            None => Ok(None),
            Some((meta, path)) => match open_snapshot(meta, &path).await {
                Ok(s) => Ok(Some(s)),
                // Replaced by a newer one meanwhile: openraft asks again or builds one.
                Err(_) if !path.exists() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }
}
