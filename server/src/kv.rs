//! etcd's KV service: Range, Put, DeleteRange, Txn and Compact on the store.
//!
//! Range's sort and min/max revision filters are applied here, after the store's read, exactly
//! where etcd applies them (its `applierV3.Range`): with either, the whole range is read, then
//! filtered, sorted and cut to the limit, and `count` stays the count of the whole range.

use std::cmp::Ordering;
use std::ops::Bound;

use folio::{CompareValue, KeyRange, Op, OpResponse, PutOptions, RangeOptions};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::errors::{self, from_folio};
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request as ReqOp;
use crate::pb::etcdserverpb::response_op::Response as RespOp;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use crate::pb::mvccpb;
use crate::state::Shared;

/// The KV service.
pub struct KvService {
    shared: Shared,
}

impl KvService {
    /// A KV service on `shared`.
    pub fn new(shared: Shared) -> KvService {
        KvService { shared }
    }
}

/// The keys a request names, as etcd reads `key` and `range_end`: one key when `range_end` is
/// empty, every key from `key` on when it is `"\0"`, else `[key, range_end)`.
pub fn key_range(key: &[u8], range_end: &[u8]) -> KeyRange {
    match range_end {
        [] => KeyRange::key(key),
        [0] => KeyRange::bounds::<[u8]>((Bound::Included(key), Bound::Unbounded)),
        end => KeyRange::bounds::<[u8]>((Bound::Included(key), Bound::Excluded(end))),
    }
}

/// A folio key-value as etcd's.
pub fn to_pb(kv: folio::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// What a range does after the store's read: filter, sort, cut to the limit.
#[derive(Clone, Debug)]
pub struct RangePost {
    limit: usize,
    order: SortOrder,
    target: SortTarget,
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl RangePost {
    /// Whether the store must read the whole range (its own limit would cut before the
    /// filters and the sort): etcd's rule.
    pub(crate) fn reads_all(&self) -> bool {
        self.order != SortOrder::None
            || self.min_mod != 0
            || self.max_mod != 0
            || self.min_create != 0
            || self.max_create != 0
    }

    /// The keys to return and `more`, from the store's answer.
    fn finish(
        &self,
        mut kvs: Vec<folio::KeyValue>,
        store_more: bool,
    ) -> (Vec<folio::KeyValue>, bool) {
        if !self.reads_all() {
            return (kvs, store_more);
        }
        kvs.retain(|kv| {
            (self.min_mod == 0 || kv.mod_revision >= self.min_mod)
                && (self.max_mod == 0 || kv.mod_revision <= self.max_mod)
                && (self.min_create == 0 || kv.create_revision >= self.min_create)
                && (self.max_create == 0 || kv.create_revision <= self.max_create)
        });
        // Keys come from the store in ascending key order already.
        let by_key_ascending = self.order == SortOrder::None
            || (self.order == SortOrder::Ascend && self.target == SortTarget::Key);
        if !by_key_ascending {
            let target = self.target;
            let cmp = move |a: &folio::KeyValue, b: &folio::KeyValue| -> Ordering {
                match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                }
            };
            if self.order == SortOrder::Descend {
                kvs.sort_by(|a, b| cmp(b, a));
            } else {
                kvs.sort_by(cmp);
            }
        }
        let more = self.limit > 0 && kvs.len() > self.limit;
        if more {
            kvs.truncate(self.limit);
        }
        (kvs, more)
    }
}

/// Checks a range request as etcd does and plans its read.
pub fn plan_range(r: &RangeRequest) -> Result<(KeyRange, RangeOptions, RangePost), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    let mut order = SortOrder::try_from(r.sort_order).map_err(|_| errors::invalid_sort_option())?;
    let target = SortTarget::try_from(r.sort_target).map_err(|_| errors::invalid_sort_option())?;
    // etcd: a sort target other than the key with no order sorts ascending.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    let post = RangePost {
        limit: usize::try_from(r.limit.max(0)).unwrap_or(usize::MAX),
        order,
        target,
        min_mod: r.min_mod_revision,
        max_mod: r.max_mod_revision,
        min_create: r.min_create_revision,
        max_create: r.max_create_revision,
    };
    let mut options = RangeOptions::at(r.revision);
    if !post.reads_all() {
        options = options.limit(post.limit);
    }
    if r.count_only {
        options = options.count_only();
    }
    if r.keys_only {
        options = options.keys_only();
    }
    Ok((key_range(&r.key, &r.range_end), options, post))
}

/// etcd's range response from the store's, with the header `header` makes of its revision.
pub(crate) fn range_response(
    header: impl FnOnce(i64) -> Option<ResponseHeader>,
    post: &RangePost,
    r: folio::RangeResponse,
) -> RangeResponse {
    let (kvs, more) = post.finish(r.kvs, r.more);
    RangeResponse {
        header: header(r.revision),
        kvs: kvs.into_iter().map(to_pb).collect(),
        more,
        count: i64::try_from(r.count).unwrap_or(i64::MAX),
    }
}

/// Checks a put as etcd does.
pub(crate) fn check_put(p: &PutRequest) -> Result<(), Status> {
    if p.key.is_empty() {
        return Err(errors::empty_key());
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(errors::value_provided());
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(errors::lease_provided());
    }
    Ok(())
}

/// A put with `ignore_value` or `ignore_lease`: the key's current value or lease is kept, in a
/// transaction that holds only while the key is unchanged (retried when a writer got between).
fn put_keeping(shared: &Shared, p: &PutRequest) -> Result<PutResponse, Status> {
    let store = shared.store();
    loop {
        let now = store
            .range(&p.key[..], RangeOptions::current())
            .map_err(from_folio)?;
        let Some(current) = now.kvs.into_iter().next() else {
            return Err(errors::key_not_found());
        };
        let value = if p.ignore_value {
            &current.value
        } else {
            &p.value
        };
        let lease = if p.ignore_lease {
            current.lease
        } else {
            p.lease
        };
        let done = store
            .txn()
            .when([folio::Compare::mod_revision(&p.key).eq(current.mod_revision)])
            .then([Op::Put {
                key: p.key.clone(),
                value: value.clone(),
                options: PutOptions {
                    lease,
                    prev_kv: false,
                },
            }])
            .commit()
            .map_err(from_folio)?;
        if done.succeeded {
            return Ok(PutResponse {
                header: shared.header(done.revision),
                prev_kv: p.prev_kv.then(|| to_pb(current)),
            });
        }
    }
}

/// etcd's compare as folio's.
fn compare(c: &Compare) -> Result<folio::Compare, Status> {
    let target = CompareTarget::try_from(c.target)
        .map_err(|_| Status::invalid_argument("etcdserver: invalid compare target"))?;
    let number = |want: fn(&TargetUnion) -> Option<i64>| {
        CompareValue::Number(c.target_union.as_ref().and_then(want).unwrap_or(0))
    };
    let (t, against) = match target {
        CompareTarget::Version => (
            folio::Compare::version(&c.key),
            number(|u| match u {
                TargetUnion::Version(n) => Some(*n),
                _ => None,
            }),
        ),
        CompareTarget::Create => (
            folio::Compare::create_revision(&c.key),
            number(|u| match u {
                TargetUnion::CreateRevision(n) => Some(*n),
                _ => None,
            }),
        ),
        CompareTarget::Mod => (
            folio::Compare::mod_revision(&c.key),
            number(|u| match u {
                TargetUnion::ModRevision(n) => Some(*n),
                _ => None,
            }),
        ),
        CompareTarget::Value => (
            folio::Compare::value(&c.key),
            CompareValue::Bytes(match &c.target_union {
                Some(TargetUnion::Value(v)) => v.clone(),
                _ => Vec::new(),
            }),
        ),
        CompareTarget::Lease => (
            folio::Compare::lease(&c.key),
            number(|u| match u {
                TargetUnion::Lease(n) => Some(*n),
                _ => None,
            }),
        ),
    };
    // etcd's range_end: empty for the one key, "\0" for every key from it on.
    let t = t.range_end(&c.range_end);
    let result = CompareResult::try_from(c.result)
        .map_err(|_| Status::invalid_argument("etcdserver: invalid compare result"))?;
    Ok(match result {
        CompareResult::Equal => t.eq(against),
        CompareResult::NotEqual => t.ne(against),
        CompareResult::Less => t.lt(against),
        CompareResult::Greater => t.gt(against),
    })
}

/// One operation of a txn branch as folio's, with what its range needs afterwards.
fn op(r: &RequestOp) -> Result<(Op, Option<RangePost>), Status> {
    match &r.request {
        Some(ReqOp::RequestRange(rr)) => {
            let (range, options, post) = plan_range(rr)?;
            Ok((Op::Range { range, options }, Some(post)))
        }
        Some(ReqOp::RequestPut(p)) => {
            check_put(p)?;
            if p.ignore_value || p.ignore_lease {
                return Err(errors::unsupported(
                    "ignore_value or ignore_lease in a txn's put",
                ));
            }
            let options = PutOptions {
                lease: p.lease,
                prev_kv: p.prev_kv,
            };
            Ok((
                Op::Put {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    options,
                },
                None,
            ))
        }
        Some(ReqOp::RequestDeleteRange(d)) => {
            if d.key.is_empty() {
                return Err(errors::empty_key());
            }
            Ok((
                Op::DeleteRange {
                    range: key_range(&d.key, &d.range_end),
                    prev_kv: d.prev_kv,
                },
                None,
            ))
        }
        Some(ReqOp::RequestTxn(_)) => Err(errors::unsupported("a txn nested in a txn")),
        None => Err(Status::invalid_argument("etcdserver: empty request in txn")),
    }
}

/// folio's key bound on every key a txn stores (its puts'; a txn's ranges, deletes and compares
/// only look keys up, and a key too long to be stored is simply not found).
fn check_txn_key_lens(shared: &Shared, t: &TxnRequest) -> Result<(), Status> {
    for o in t.success.iter().chain(&t.failure) {
        if let Some(ReqOp::RequestPut(p)) = &o.request {
            shared.check_key_len(&p.key)?;
        }
    }
    Ok(())
}

/// Whether a branch writes.
fn writes(ops: &[RequestOp]) -> bool {
    ops.iter().any(|o| {
        matches!(
            o.request,
            Some(ReqOp::RequestPut(_) | ReqOp::RequestDeleteRange(_) | ReqOp::RequestTxn(_))
        )
    })
}

/// Whether every range of a txn (that only reads) asks to be serializable (etcd's
/// `isTxnSerializable`).
fn serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|o| match &o.request {
            Some(ReqOp::RequestRange(r)) => r.serializable,
            _ => true,
        })
}

/// A txn request's compares and branches mapped onto some engine's types (the store's, or the
/// Raft log's commands) by `compare` and `op`, and what each branch's ranges need afterwards:
/// the mapping both the single server and a cluster member use.
pub(crate) struct TxnPlan<C, O> {
    pub(crate) compares: Vec<C>,
    pub(crate) success: Vec<O>,
    pub(crate) failure: Vec<O>,
    pub(crate) posts: TxnPosts,
}

/// The post-processing of each operation of a txn's two branches (`Some` for a range).
pub(crate) struct TxnPosts {
    success: Vec<Option<RangePost>>,
    failure: Vec<Option<RangePost>>,
}

/// Maps a txn request with `compare` and `op`.
pub(crate) fn plan_txn<C, O>(
    t: &TxnRequest,
    compare: impl Fn(&Compare) -> Result<C, Status>,
    op: impl Fn(&RequestOp) -> Result<(O, Option<RangePost>), Status>,
) -> Result<TxnPlan<C, O>, Status> {
    let branch = |ops: &[RequestOp]| -> Result<(Vec<O>, Vec<Option<RangePost>>), Status> {
        Ok(ops
            .iter()
            .map(&op)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip())
    };
    let compares = t.compare.iter().map(compare).collect::<Result<_, _>>()?;
    let (success, success_posts) = branch(&t.success)?;
    let (failure, failure_posts) = branch(&t.failure)?;
    Ok(TxnPlan {
        compares,
        success,
        failure,
        posts: TxnPosts {
            success: success_posts,
            failure: failure_posts,
        },
    })
}

/// The header of a response inside a txn: etcd fills in only the revision there (its
/// `executeTxn`); the cluster, member and raft term are the txn response's own header's.
fn header_in_txn(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

impl TxnPosts {
    /// The etcd answer to a txn whose branch (the success one if `done.succeeded`) answered
    /// with `done.responses`.
    pub(crate) fn response(self, shared: &Shared, done: folio::TxnResponse) -> TxnResponse {
        let posts = if done.succeeded {
            self.success
        } else {
            self.failure
        };
        let responses = done
            .responses
            .into_iter()
            .zip(posts)
            .map(|(r, post)| {
                let response = match r {
                    OpResponse::Range(rr) => {
                        let post = post.expect("a range op has its post-processing");
                        RespOp::ResponseRange(range_response(header_in_txn, &post, rr))
                    }
                    OpResponse::Put(p) => RespOp::ResponsePut(PutResponse {
                        header: header_in_txn(p.revision),
                        prev_kv: p.prev_kv.map(to_pb),
                    }),
                    OpResponse::DeleteRange(d) => {
                        RespOp::ResponseDeleteRange(DeleteRangeResponse {
                            header: header_in_txn(d.revision),
                            deleted: i64::try_from(d.deleted).unwrap_or(i64::MAX),
                            prev_kvs: d.prev_kvs.into_iter().map(to_pb).collect(),
                        })
                    }
                };
                ResponseOp {
                    response: Some(response),
                }
            })
            .collect();
        TxnResponse {
            header: shared.header(done.revision),
            succeeded: done.succeeded,
            responses,
        }
    }
}

/// Runs a txn request.
fn txn(shared: &Shared, t: &TxnRequest) -> Result<TxnResponse, Status> {
    let max = shared.max_txn_ops();
    if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
        return Err(errors::too_many_ops());
    }
    let plan = plan_txn(t, compare, op)?;
    let done = shared
        .store()
        .txn()
        .when(plan.compares)
        .then(plan.success)
        .otherwise(plan.failure)
        .commit()
        .map_err(from_folio)?;
    Ok(plan.posts.response(shared, done))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.into_inner();
        let (range, options, post) = plan_range(&r)?;
        if let Some(m) = self.shared.member()
            && !r.serializable
        {
            m.barrier().await?;
        }
        self.shared
            .blocking(move |s| {
                let got = s.store().range(range, options).map_err(from_folio)?;
                Ok(Response::new(range_response(
                    |rev| s.header(rev),
                    &post,
                    got,
                )))
            })
            .await
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = request.into_inner();
        check_put(&p)?;
        let cost = p.encoded_len();
        self.shared.check_size(cost)?;
        self.shared.check_key_len(&p.key)?;
        self.shared.check_quota(cost)?;
        if let Some(m) = self.shared.member() {
            return crate::replicated::put(&self.shared, m, p)
                .await
                .map(Response::new);
        }
        self.shared
            .blocking(move |s| {
                if p.ignore_value || p.ignore_lease {
                    return put_keeping(s, &p).map(Response::new);
                }
                let options = PutOptions {
                    lease: p.lease,
                    prev_kv: p.prev_kv,
                };
                let done = s
                    .store()
                    .put_with(&p.key, &p.value, options)
                    .map_err(from_folio)?;
                Ok(Response::new(PutResponse {
                    header: s.header(done.revision),
                    prev_kv: done.prev_kv.map(to_pb),
                }))
            })
            .await
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = request.into_inner();
        if d.key.is_empty() {
            return Err(errors::empty_key());
        }
        self.shared.check_size(d.encoded_len())?;
        if let Some(m) = self.shared.member() {
            return crate::replicated::delete_range(&self.shared, m, d)
                .await
                .map(Response::new);
        }
        self.shared
            .blocking(move |s| {
                let done = s
                    .store()
                    .delete_range_with(key_range(&d.key, &d.range_end), d.prev_kv)
                    .map_err(from_folio)?;
                Ok(Response::new(DeleteRangeResponse {
                    header: s.header(done.revision),
                    deleted: i64::try_from(done.deleted).unwrap_or(i64::MAX),
                    prev_kvs: done.prev_kvs.into_iter().map(to_pb).collect(),
                }))
            })
            .await
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let t = request.into_inner();
        let cost = t.encoded_len();
        self.shared.check_size(cost)?;
        check_txn_key_lens(&self.shared, &t)?;
        let writing = writes(&t.success) || writes(&t.failure);
        if writing {
            self.shared.check_quota(cost)?;
        }
        if let Some(m) = self.shared.member() {
            let max = self.shared.max_txn_ops();
            if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
                return Err(errors::too_many_ops());
            }
            if writing {
                return crate::replicated::txn(&self.shared, m, t)
                    .await
                    .map(Response::new);
            }
            // A txn that only reads is served by this member's store, as etcd does: after a
            // read barrier unless every range in it is serializable.
            if !serializable(&t) {
                m.barrier().await?;
            }
        }
        self.shared
            .blocking(move |s| txn(s, &t).map(Response::new))
            .await
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let rev = request.into_inner().revision;
        if let Some(m) = self.shared.member() {
            m.write(folio_raft::Command::Compact { revision: rev })
                .await?;
            crate::info!("compacted to revision {rev} through raft (requested by a client)");
            return Ok(Response::new(CompactionResponse {
                header: self.shared.header_now(),
            }));
        }
        self.shared
            .blocking(move |s| {
                let started = std::time::Instant::now();
                s.store().compact(rev).map_err(from_folio)?;
                crate::info!(
                    "compacted to revision {rev} in {:.3} s (requested by a client)",
                    started.elapsed().as_secs_f64()
                );
                Ok(Response::new(CompactionResponse {
                    header: s.header_now(),
                }))
            })
            .await
    }
}
