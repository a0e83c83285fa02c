//! The KV service driven by a gRPC client: every option of Range, Put, DeleteRange, Txn and
//! Compact, and etcd's errors for what etcd refuses.

mod support;

use folio_server::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use folio_server::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use folio_server::pb::etcdserverpb::request_op::Request as ReqOp;
use folio_server::pb::etcdserverpb::response_op::Response as RespOp;
use folio_server::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest,
};
use support::{assert_etcd_error, get, keys, prefix, put};
use tonic::Code;

/// A put answers with etcd's header (cluster, member, revision, term) and a range reads the key
/// back with its revisions and version.
#[tokio::test]
async fn a_put_is_read_back_with_etcds_header_and_revisions() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    let p = kv.put(put("a", "1")).await.unwrap().into_inner();
    let h = p.header.unwrap();
    assert!(h.cluster_id != 0 && h.member_id != 0);
    assert_eq!((h.revision, h.raft_term), (2, 1));
    kv.put(put("a", "2")).await.unwrap();
    let r = kv.range(get("a")).await.unwrap().into_inner();
    assert_eq!(r.header.unwrap().revision, 3);
    let a = &r.kvs[0];
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        (&b"2"[..], 2, 3, 2)
    );
    assert_eq!((r.count, r.more), (1, false));
    server.stop().await;
}

/// Prefix, from-key, limit (with `more` and the full `count`), an old revision, keys-only and
/// count-only, as etcd answers them.
#[tokio::test]
async fn range_options_answer_as_etcd() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for k in ["p/a", "p/b", "p/c", "q"] {
        kv.put(put(k, k)).await.unwrap();
    }
    let r = kv.range(prefix("p/")).await.unwrap().into_inner();
    assert_eq!(keys(&r), ["p/a", "p/b", "p/c"]);
    let from = RangeRequest {
        key: b"p/b".to_vec(),
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(
        keys(&kv.range(from).await.unwrap().into_inner()),
        ["p/b", "p/c", "q"]
    );
    let limited = RangeRequest {
        limit: 2,
        ..prefix("p/")
    };
    let r = kv.range(limited).await.unwrap().into_inner();
    assert_eq!((keys(&r).len(), r.more, r.count), (2, true, 3));
    let old = RangeRequest {
        revision: 3,
        ..prefix("p/")
    };
    assert_eq!(
        keys(&kv.range(old).await.unwrap().into_inner()),
        ["p/a", "p/b"]
    );
    let r = kv
        .range(RangeRequest {
            keys_only: true,
            ..prefix("p/")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 3);
    let r = kv
        .range(RangeRequest {
            count_only: true,
            ..prefix("p/")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.kvs.len(), r.count), (0, 3));
    server.stop().await;
}

/// Sorting by each target and order, and the min/max revision filters, are applied before the
/// limit, while `count` stays the count of the whole range (etcd's applier).
#[tokio::test]
async fn range_sorts_and_filters_before_the_limit() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    kv.put(put("k/a", "3")).await.unwrap(); // rev 2
    kv.put(put("k/b", "1")).await.unwrap(); // rev 3
    kv.put(put("k/c", "2")).await.unwrap(); // rev 4
    kv.put(put("k/b", "4")).await.unwrap(); // rev 5
    let sorted = |order: SortOrder, target: SortTarget, limit: i64| RangeRequest {
        sort_order: order as i32,
        sort_target: target as i32,
        limit,
        ..prefix("k/")
    };
    let r = kv
        .range(sorted(SortOrder::Descend, SortTarget::Key, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["k/c".to_string(), "k/b".to_string()], true, 3)
    );
    let r = kv
        .range(sorted(SortOrder::Ascend, SortTarget::Value, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys(&r), ["k/c", "k/a", "k/b"]);
    let r = kv
        .range(sorted(SortOrder::Descend, SortTarget::Mod, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys(&r), ["k/b"]);
    // A target with no order sorts ascending, as etcd.
    let r = kv
        .range(sorted(SortOrder::None, SortTarget::Version, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys(&r).last().unwrap(), "k/b");
    let r = kv
        .range(sorted(SortOrder::Ascend, SortTarget::Create, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys(&r), ["k/a", "k/b", "k/c"]);
    let filtered = RangeRequest {
        min_mod_revision: 3,
        max_mod_revision: 4,
        ..prefix("k/")
    };
    let r = kv.range(filtered).await.unwrap().into_inner();
    assert_eq!((keys(&r), r.count), (vec!["k/c".to_string()], 3));
    let filtered = RangeRequest {
        min_create_revision: 3,
        limit: 1,
        ..prefix("k/")
    };
    let r = kv.range(filtered).await.unwrap().into_inner();
    assert_eq!((keys(&r), r.more), (vec!["k/b".to_string()], true));
    let bad = RangeRequest {
        sort_order: 7,
        ..prefix("k/")
    };
    assert_etcd_error(
        kv.range(bad).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: invalid sort option",
    );
    server.stop().await;
}

/// Reads below the compacted revision and past the current one get etcd's errors, and so does
/// compacting twice to the same revision or to the future.
#[tokio::test]
async fn compacted_and_future_revisions_get_etcds_errors() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for v in ["1", "2", "3"] {
        kv.put(put("a", v)).await.unwrap();
    }
    let c = kv
        .compact(CompactionRequest {
            revision: 3,
            physical: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.header.unwrap().revision, 4);
    let at = |revision| RangeRequest {
        revision,
        ..get("a")
    };
    assert_etcd_error(
        kv.range(at(2)).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_etcd_error(
        kv.range(at(9)).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_eq!(
        kv.range(at(3)).await.unwrap().into_inner().kvs[0].value,
        b"2"
    );
    let again = CompactionRequest {
        revision: 3,
        physical: false,
    };
    assert_etcd_error(
        kv.compact(again).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let future = CompactionRequest {
        revision: 99,
        physical: false,
    };
    assert_etcd_error(
        kv.compact(future).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    server.stop().await;
}

/// prev_kv, ignore_value and ignore_lease on puts, and etcd's errors for the requests it refuses.
#[tokio::test]
async fn put_options_and_refusals_match_etcd() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    kv.put(put("a", "1")).await.unwrap();
    let p = kv
        .put(PutRequest {
            prev_kv: true,
            ..put("a", "2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.prev_kv.unwrap().value, b"1");
    let keep = PutRequest {
        ignore_value: true,
        prev_kv: true,
        ..put("a", "")
    };
    let p = kv.put(keep).await.unwrap().into_inner();
    assert_eq!(p.prev_kv.unwrap().value, b"2");
    let r = kv.range(get("a")).await.unwrap().into_inner();
    assert_eq!(
        (r.kvs[0].value.as_slice(), r.kvs[0].version),
        (&b"2"[..], 3)
    );
    let missing = PutRequest {
        ignore_value: true,
        ..put("nope", "")
    };
    assert_etcd_error(
        kv.put(missing).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    let both = PutRequest {
        ignore_value: true,
        ..put("a", "x")
    };
    assert_etcd_error(
        kv.put(both).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    let both = PutRequest {
        ignore_lease: true,
        lease: 5,
        ..put("a", "")
    };
    assert_etcd_error(
        kv.put(both).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    );
    assert_etcd_error(
        kv.put(put("", "x")).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_etcd_error(
        kv.range(get("")).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    let leased = PutRequest {
        lease: 0x1234,
        ..put("a", "x")
    };
    assert_etcd_error(
        kv.put(leased).await.unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    server.stop().await;
}

/// DeleteRange returns how many keys went and, when asked, their last values; deleting
/// nothing leaves the revision as it was.
#[tokio::test]
async fn delete_range_returns_the_deleted_keys() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for k in ["d/a", "d/b", "e"] {
        kv.put(put(k, "v")).await.unwrap();
    }
    let p = prefix("d/");
    let del = DeleteRangeRequest {
        key: p.key,
        range_end: p.range_end,
        prev_kv: true,
    };
    let d = kv.delete_range(del.clone()).await.unwrap().into_inner();
    assert_eq!(
        (d.deleted, d.prev_kvs.len(), d.header.unwrap().revision),
        (2, 2, 5)
    );
    let d = kv.delete_range(del).await.unwrap().into_inner();
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 5));
    let empty = DeleteRangeRequest::default();
    assert_etcd_error(
        kv.delete_range(empty).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    server.stop().await;
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(ReqOp::RequestPut(put(k, v))),
    }
}

fn op_get(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(ReqOp::RequestRange(r)),
    }
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, against: TargetUnion) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(against),
        range_end: Vec::new(),
    }
}

/// A txn runs the branch its compares choose, in one revision, with each operation's answer;
/// duplicate keys and too many operations get etcd's errors and change nothing.
#[tokio::test]
async fn txn_branches_and_refusals_match_etcd() {
    let mut server = support::start_with(|c| c.max_txn_ops = 4).await;
    let mut kv = server.kv().await;
    kv.put(put("t", "1")).await.unwrap(); // rev 2
    let t = TxnRequest {
        compare: vec![
            cmp(
                "t",
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value(b"1".to_vec()),
            ),
            cmp(
                "t",
                CompareTarget::Version,
                CompareResult::Greater,
                TargetUnion::Version(0),
            ),
            cmp(
                "t",
                CompareTarget::Mod,
                CompareResult::Less,
                TargetUnion::ModRevision(3),
            ),
            cmp(
                "t",
                CompareTarget::Create,
                CompareResult::NotEqual,
                TargetUnion::CreateRevision(9),
            ),
        ],
        success: vec![
            op_put("t", "2"),
            op_put("u", "2"),
            // Every key, from "\0" on, in descending key order.
            op_get(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                sort_order: SortOrder::Descend as i32,
                ..Default::default()
            }),
        ],
        failure: vec![op_put("f", "x")],
    };
    let r = kv.txn(t.clone()).await.unwrap().into_inner();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    match &r.responses[2].response {
        Some(RespOp::ResponseRange(rr)) => assert_eq!(keys(rr), ["u", "t"]),
        other => panic!("{other:?}"),
    }
    let r = kv.txn(t).await.unwrap().into_inner();
    assert!(!r.succeeded);
    assert!(matches!(
        r.responses[0].response,
        Some(RespOp::ResponsePut(_))
    ));
    let dup = TxnRequest {
        success: vec![op_put("d", "1"), op_put("d", "2")],
        ..Default::default()
    };
    assert_etcd_error(
        kv.txn(dup).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    let many = TxnRequest {
        success: (0..5).map(|i| op_put(&format!("m{i}"), "v")).collect(),
        ..Default::default()
    };
    assert_etcd_error(
        kv.txn(many).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    assert!(
        kv.range(get("d"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
    );
    assert!(
        kv.range(get("m0"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
    );
    server.stop().await;
}

/// The responses inside a txn carry only the revision in their headers, as etcd's (its
/// `executeTxn`; `etcdctl txn -w json` shows `"header":{"revision":4}` in each); the txn's own
/// header is whole. folio-server repeated the whole header (cluster, member, raft term) in each.
#[tokio::test]
async fn responses_inside_a_txn_carry_only_the_revision() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    kv.put(put("c", "1")).await.unwrap(); // rev 2
    let t = TxnRequest {
        success: vec![
            op_put("a", "1"),
            op_get(get("b")),
            RequestOp {
                request: Some(ReqOp::RequestDeleteRange(DeleteRangeRequest {
                    key: b"c".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    let r = kv.txn(t).await.unwrap().into_inner();
    let h = r.header.unwrap();
    assert!(h.cluster_id != 0 && h.member_id != 0);
    assert_eq!((h.revision, h.raft_term), (3, 1));
    let only_revision = Some(ResponseHeader {
        revision: 3,
        ..Default::default()
    });
    for op in &r.responses {
        let header = match &op.response {
            Some(RespOp::ResponsePut(p)) => &p.header,
            Some(RespOp::ResponseRange(rr)) => &rr.header,
            Some(RespOp::ResponseDeleteRange(d)) => &d.header,
            other => panic!("{other:?}"),
        };
        assert_eq!(header, &only_revision, "{op:?}");
    }
    assert_eq!(r.responses.len(), 3);
    server.stop().await;
}
