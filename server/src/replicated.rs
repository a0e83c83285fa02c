//! etcd's write requests as [`folio_raft::Command`]s, and the commands' answers as etcd's
//! responses: the KV and Lease services' path on a replicated member ([`crate::member`]).
//!
//! Nothing is lost on the way: a Put or a DeleteRange is a transaction of one operation, so
//! that it keeps `prev_kv`; a Txn's compares keep their range end and lease target, its puts
//! and deletes their `prev_kv`, and its ranges their revision, limit, count-only and keys-only
//! (sort and the revision filters are applied here to the answer, as etcd applies them after
//! its read). A put with `ignore_value` or `ignore_lease` is a compare-and-put on the key's mod
//! revision, retried while a writer gets in between. Nested txns stay refused, as on a single
//! member: the store's transactions do not nest.

use tonic::Status;

use folio_raft::{
    Command, CompareSpec, CompareTarget as RaftTarget, Kv, OpResult, OpSpec, RangeSpec, Relation,
};

use crate::errors;
use crate::kv::{RangePost, check_put, plan_range, plan_txn};
use crate::member::Member;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request as ReqOp;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use crate::pb::mvccpb;
use crate::state::Shared;

/// A replicated key-value as etcd's.
pub fn kv_to_pb(kv: Kv) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

fn kv_to_store(kv: Kv) -> folio::KeyValue {
    folio::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A put (already checked by the caller) through Raft.
pub async fn put(shared: &Shared, m: &Member, p: PutRequest) -> Result<PutResponse, Status> {
    if p.ignore_value || p.ignore_lease {
        return put_keeping(shared, m, p).await;
    }
    let r = m
        .write(Command::Txn {
            compares: Vec::new(),
            success: vec![OpSpec::Put {
                key: p.key,
                value: p.value,
                lease: p.lease,
                prev_kv: p.prev_kv,
            }],
            failure: Vec::new(),
        })
        .await?;
    let prev_kv = match r.results.into_iter().next() {
        Some(OpResult::Put { prev_kv }) => prev_kv.map(kv_to_pb),
        _ => None,
    };
    Ok(PutResponse {
        header: shared.header(r.revision),
        prev_kv,
    })
}

/// A put with `ignore_value` or `ignore_lease`: a compare-and-put on the key's mod revision,
/// read from this member's store after a read barrier, retried while a writer got between.
async fn put_keeping(shared: &Shared, m: &Member, p: PutRequest) -> Result<PutResponse, Status> {
    loop {
        m.barrier().await?;
        let now = m
            .store()
            .range(&p.key[..], folio::RangeOptions::current())
            .map_err(errors::from_folio)?;
        let Some(current) = now.kvs.into_iter().next() else {
            return Err(errors::key_not_found());
        };
        let value = if p.ignore_value {
            current.value.clone()
        } else {
            p.value.clone()
        };
        let lease = if p.ignore_lease {
            current.lease
        } else {
            p.lease
        };
        let r = m
            .write(Command::Txn {
                compares: vec![CompareSpec {
                    key: p.key.clone(),
                    target: RaftTarget::ModRevision,
                    relation: Relation::Equal,
                    value: Vec::new(),
                    number: current.mod_revision,
                    range_end: Vec::new(),
                }],
                success: vec![OpSpec::Put {
                    key: p.key.clone(),
                    value,
                    lease,
                    prev_kv: false,
                }],
                failure: Vec::new(),
            })
            .await?;
        if r.succeeded {
            return Ok(PutResponse {
                header: shared.header(r.revision),
                prev_kv: p.prev_kv.then(|| crate::kv::to_pb(current)),
            });
        }
    }
}

/// A delete (already checked by the caller) through Raft.
pub async fn delete_range(
    shared: &Shared,
    m: &Member,
    d: DeleteRangeRequest,
) -> Result<DeleteRangeResponse, Status> {
    let r = m
        .write(Command::Txn {
            compares: Vec::new(),
            success: vec![OpSpec::DeleteRange {
                key: d.key,
                range_end: d.range_end,
                prev_kv: d.prev_kv,
            }],
            failure: Vec::new(),
        })
        .await?;
    let (deleted, prev_kvs) = match r.results.into_iter().next() {
        Some(OpResult::DeleteRange { deleted, prev_kvs }) => (deleted, prev_kvs),
        _ => (0, Vec::new()),
    };
    Ok(DeleteRangeResponse {
        header: shared.header(r.revision),
        deleted: i64::try_from(deleted).unwrap_or(i64::MAX),
        prev_kvs: prev_kvs.into_iter().map(kv_to_pb).collect(),
    })
}

/// etcd's compare as the log's.
fn compare(c: &Compare) -> Result<CompareSpec, Status> {
    let target = CompareTarget::try_from(c.target)
        .map_err(|_| Status::invalid_argument("etcdserver: invalid compare target"))?;
    let result = CompareResult::try_from(c.result)
        .map_err(|_| Status::invalid_argument("etcdserver: invalid compare result"))?;
    let (target, number, value) = match (target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(n))) => (RaftTarget::Version, *n, None),
        (CompareTarget::Version, _) => (RaftTarget::Version, 0, None),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(n))) => {
            (RaftTarget::CreateRevision, *n, None)
        }
        (CompareTarget::Create, _) => (RaftTarget::CreateRevision, 0, None),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(n))) => {
            (RaftTarget::ModRevision, *n, None)
        }
        (CompareTarget::Mod, _) => (RaftTarget::ModRevision, 0, None),
        (CompareTarget::Lease, Some(TargetUnion::Lease(n))) => (RaftTarget::Lease, *n, None),
        (CompareTarget::Lease, _) => (RaftTarget::Lease, 0, None),
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
            (RaftTarget::Value, 0, Some(v.clone()))
        }
        (CompareTarget::Value, _) => (RaftTarget::Value, 0, Some(Vec::new())),
    };
    Ok(CompareSpec {
        key: c.key.clone(),
        target,
        relation: match result {
            CompareResult::Equal => Relation::Equal,
            CompareResult::NotEqual => Relation::NotEqual,
            CompareResult::Less => Relation::Less,
            CompareResult::Greater => Relation::Greater,
        },
        value: value.unwrap_or_default(),
        number,
        range_end: c.range_end.clone(),
    })
}

/// One operation of a txn branch as the log's, with what its range needs afterwards.
fn op(r: &RequestOp) -> Result<(OpSpec, Option<RangePost>), Status> {
    match &r.request {
        Some(ReqOp::RequestRange(rr)) => {
            let (_, _, post) = plan_range(rr)?;
            let options = RangeSpec {
                revision: rr.revision,
                limit: if post.reads_all() {
                    0
                } else {
                    u64::try_from(rr.limit.max(0)).unwrap_or(0)
                },
                count_only: rr.count_only,
                keys_only: rr.keys_only,
            };
            Ok((
                OpSpec::Range {
                    key: rr.key.clone(),
                    range_end: rr.range_end.clone(),
                    options,
                },
                Some(post),
            ))
        }
        Some(ReqOp::RequestPut(p)) => {
            check_put(p)?;
            if p.ignore_value || p.ignore_lease {
                return Err(errors::unsupported(
                    "ignore_value or ignore_lease in a txn's put",
                ));
            }
            Ok((
                OpSpec::Put {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    lease: p.lease,
                    prev_kv: p.prev_kv,
                },
                None,
            ))
        }
        Some(ReqOp::RequestDeleteRange(d)) => {
            if d.key.is_empty() {
                return Err(errors::empty_key());
            }
            Ok((
                OpSpec::DeleteRange {
                    key: d.key.clone(),
                    range_end: d.range_end.clone(),
                    prev_kv: d.prev_kv,
                },
                None,
            ))
        }
        Some(ReqOp::RequestTxn(_)) => Err(errors::unsupported("a txn nested in a txn")),
        None => Err(Status::invalid_argument("etcdserver: empty request in txn")),
    }
}

/// A txn that writes, through Raft (the caller checked its size, quota and op count).
pub async fn txn(shared: &Shared, m: &Member, t: TxnRequest) -> Result<TxnResponse, Status> {
    let plan = plan_txn(&t, compare, op)?;
    let r = m
        .write(Command::Txn {
            compares: plan.compares,
            success: plan.success,
            failure: plan.failure,
        })
        .await?;
    let revision = r.revision;
    let responses = r
        .results
        .into_iter()
        .map(|result| op_response(result, revision))
        .collect::<Result<Vec<_>, Status>>()?;
    let done = folio::TxnResponse {
        succeeded: r.succeeded,
        revision,
        responses,
    };
    Ok(plan.posts.response(shared, done))
}

/// The store's answer an operation of a txn applied at `revision` gave, from the log's.
fn op_response(result: OpResult, revision: i64) -> Result<folio::OpResponse, Status> {
    Ok(match result {
        OpResult::Range { kvs, count, more } => folio::OpResponse::Range(folio::RangeResponse {
            kvs: kvs.into_iter().map(kv_to_store).collect(),
            count,
            more,
            revision,
        }),
        OpResult::Put { prev_kv } => folio::OpResponse::Put(folio::PutResponse {
            revision,
            prev_kv: prev_kv.map(kv_to_store),
        }),
        OpResult::DeleteRange { deleted, prev_kvs } => {
            folio::OpResponse::DeleteRange(folio::DeleteResponse {
                revision,
                deleted,
                prev_kvs: prev_kvs.into_iter().map(kv_to_store).collect(),
            })
        }
        other => {
            return Err(Status::internal(format!(
                "etcdserver: unexpected answer in a txn: {other:?}"
            )));
        }
    })
}
