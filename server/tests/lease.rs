//! The Lease service driven by a gRPC client: grant, keep-alive, time-to-live with keys, list,
//! revoke, expiry, etcd's answers for a lease that does not exist, and txn compares on a lease
//! and over a range of keys.

mod support;

use std::time::Duration;

use folio_server::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use folio_server::pb::etcdserverpb::lease_client::LeaseClient;
use folio_server::pb::etcdserverpb::request_op::Request as ReqOp;
use folio_server::pb::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RequestOp, TxnRequest,
};
use support::{assert_etcd_error, get, put};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// The lease's time-to-live, with its keys if `keys`.
async fn time_to_live(
    lease: &mut LeaseClient<tonic::transport::Channel>,
    id: i64,
    keys: bool,
) -> folio_server::pb::etcdserverpb::LeaseTimeToLiveResponse {
    lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
        .await
        .unwrap()
        .into_inner()
}

/// A lease's whole life: granted, keys attached, kept alive, listed, looked at, revoked (which
/// deletes its keys); and etcd's answers once it is gone.
#[tokio::test]
async fn a_lease_is_granted_kept_alive_and_revoked_with_its_keys() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    let mut lease = LeaseClient::new(server.channel().await);
    let g = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(g.id != 0 && g.ttl == 60);
    kv.put(PutRequest {
        lease: g.id,
        ..put("l/a", "1")
    })
    .await
    .unwrap();
    kv.put(PutRequest {
        lease: g.id,
        ..put("l/b", "1")
    })
    .await
    .unwrap();
    let t = time_to_live(&mut lease, g.id, true).await;
    assert_eq!((t.granted_ttl, t.keys.len()), (60, 2));
    assert!(t.ttl > 0 && t.ttl <= 60);
    let ids: Vec<i64> = lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, [g.id]);

    let (tx, rx) = mpsc::channel(4);
    let mut alive = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(LeaseKeepAliveRequest { id: g.id }).await.unwrap();
    let k = alive.message().await.unwrap().unwrap();
    assert_eq!((k.id, k.ttl), (g.id, 60));
    // etcd: keep-alive of a lease that does not exist answers TTL 0.
    tx.send(LeaseKeepAliveRequest { id: 999 }).await.unwrap();
    assert_eq!(alive.message().await.unwrap().unwrap().ttl, 0);

    let same = LeaseGrantRequest { ttl: 5, id: g.id };
    assert_etcd_error(
        lease.lease_grant(same).await.unwrap_err(),
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    let r = lease
        .lease_revoke(LeaseRevokeRequest { id: g.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.header.unwrap().revision, 4);
    assert!(
        kv.range(get("l/a"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
    );
    assert_etcd_error(
        lease
            .lease_revoke(LeaseRevokeRequest { id: g.id })
            .await
            .unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    // etcd: time-to-live of a lease that does not exist answers TTL -1.
    let t = time_to_live(&mut lease, g.id, false).await;
    assert_eq!(t.ttl, -1);
    let missing = PutRequest {
        lease: g.id,
        ..put("l/c", "1")
    };
    assert_etcd_error(
        kv.put(missing).await.unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    server.stop().await;
}

/// A TTL under etcd's minimum (2 s at its default flags) is raised to it, as etcd's lessor does:
/// `etcdctl lease grant 0`, `-5` and `1` print "granted with TTL(2s)" against etcd. folio-server
/// refused them with "etcdserver: too large lease TTL". Only a TTL past etcd's maximum gets that.
#[tokio::test]
async fn a_ttl_under_the_minimum_is_raised_to_it_and_only_one_over_the_maximum_is_refused() {
    let mut server = support::start().await;
    let mut lease = LeaseClient::new(server.channel().await);
    for ttl in [0, -5, 1, i64::MIN] {
        let g = lease
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(g.ttl, 2, "TTL {ttl}");
        let t = time_to_live(&mut lease, g.id, false).await;
        assert_eq!(t.granted_ttl, 2, "TTL {ttl}");
    }
    let longest = 9_000_000_000;
    let g = lease
        .lease_grant(LeaseGrantRequest {
            ttl: longest,
            id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.ttl, longest);
    assert_etcd_error(
        lease
            .lease_grant(LeaseGrantRequest {
                ttl: longest + 1,
                id: 0,
            })
            .await
            .unwrap_err(),
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );
    server.stop().await;
}

/// A lease nobody keeps alive expires and its keys are deleted.
#[tokio::test]
async fn an_expired_lease_takes_its_keys_with_it() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    let mut lease = LeaseClient::new(server.channel().await);
    let g = lease
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .unwrap()
        .into_inner();
    kv.put(PutRequest {
        lease: g.id,
        ..put("e", "1")
    })
    .await
    .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if kv
            .range(get("e"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the key of an expired lease is deleted");
    let ids = lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert!(ids.is_empty());
    server.stop().await;
}

/// Txn compares on a key's lease and over a range of keys hold as etcd's.
#[tokio::test]
async fn txn_compares_on_a_lease_and_over_a_range() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    let mut lease = LeaseClient::new(server.channel().await);
    let g = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner();
    kv.put(PutRequest {
        lease: g.id,
        ..put("r/a", "1")
    })
    .await
    .unwrap();
    kv.put(put("r/b", "1")).await.unwrap();
    let txn = |c: Compare| TxnRequest {
        compare: vec![c],
        success: vec![RequestOp {
            request: Some(ReqOp::RequestPut(put("yes", "1"))),
        }],
        failure: vec![],
    };
    let on_lease = Compare {
        key: b"r/a".to_vec(),
        target: CompareTarget::Lease as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::Lease(g.id)),
        range_end: Vec::new(),
    };
    assert!(kv.txn(txn(on_lease)).await.unwrap().into_inner().succeeded);
    let every_value = |v: &[u8]| Compare {
        key: b"r/".to_vec(),
        target: CompareTarget::Value as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::Value(v.to_vec())),
        range_end: b"r0".to_vec(),
    };
    assert!(
        kv.txn(txn(every_value(b"1")))
            .await
            .unwrap()
            .into_inner()
            .succeeded
    );
    kv.put(put("r/c", "2")).await.unwrap();
    assert!(
        !kv.txn(txn(every_value(b"1")))
            .await
            .unwrap()
            .into_inner()
            .succeeded
    );
    server.stop().await;
}
