//! The server driven by a Rust etcd client nobody here wrote (the `etcd-client` crate, 0.15):
//! every RPC family through its API, the way a Rust program would use an etcd cluster. The other
//! test files speak the protocol through our own generated client, which shares our reading of
//! the `.proto` files; this one catches what a real client library expects beyond the bytes (a
//! watch's `created` response first, the compacted response's revision, keep-alive's stream,
//! status fields it reads by name).

mod support;

use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, EventType, GetOptions,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

/// A client of `server`.
async fn client(server: &support::TestServer) -> Client {
    Client::connect([server.url.as_str()], None).await.unwrap()
}

/// The keys of a get, as strings.
fn keys(r: &etcd_client::GetResponse) -> Vec<&str> {
    r.kvs().iter().map(|kv| kv.key_str().unwrap()).collect()
}

/// The gRPC status inside a client error.
#[track_caller]
fn status(e: Error) -> tonic::Status {
    match e {
        Error::GRpcStatus(s) => s,
        other => panic!("not a gRPC status: {other:?}"),
    }
}

/// The revision of the store now.
async fn revision(c: &mut Client) -> i64 {
    c.get(
        "",
        Some(GetOptions::new().with_all_keys().with_count_only()),
    )
    .await
    .unwrap()
    .header()
    .unwrap()
    .revision()
}

/// Range with each of its options (ranges, prefix, limit, sort, count and keys only, revision,
/// mod and create revision filters), through the client's option builders.
#[tokio::test]
async fn range_options_answer_through_the_client() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let first = c.put("a", "1", None).await.unwrap();
    let first_rev = first.header().unwrap().revision();
    for (k, v) in [("b", "2"), ("c", "3"), ("d", "4")] {
        c.put(k, v, None).await.unwrap();
    }
    c.put("a", "10", None).await.unwrap();

    let r = c
        .get("b", Some(GetOptions::new().with_range("d")))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["b", "c"]);
    let r = c
        .get("", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c", "d"]);
    let r = c
        .get("b", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["b", "c", "d"]);

    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(2)))
        .await
        .unwrap();
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["a", "b"], true, 4));
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(3),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["d", "c", "b"]);
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Value, SortOrder::Ascend),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c", "d"], "'10' < '2' < '3' < '4'");

    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.count(), r.kvs().len()), (4, 0));
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_keys_only()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c", "d"]);
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));

    let r = c
        .get("a", Some(GetOptions::new().with_revision(first_rev)))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value_str().unwrap(), "1");
    assert_eq!(
        (r.kvs()[0].create_revision(), r.kvs()[0].mod_revision()),
        (first_rev, first_rev)
    );
    let now = c.get("a", None).await.unwrap();
    let a = &now.kvs()[0];
    assert_eq!(
        (a.value_str().unwrap(), a.version(), a.create_revision()),
        ("10", 2, first_rev)
    );
    assert_eq!(a.mod_revision(), now.header().unwrap().revision());

    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_min_mod_revision(first_rev + 2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "c", "d"]);
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_max_create_revision(first_rev + 1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b"]);
    server.stop().await;
}

/// Put and delete give back the previous pairs when asked, and their errors are etcd's.
#[tokio::test]
async fn put_and_delete_return_the_previous_pairs() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let r = c
        .put("k", "v1", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(r.prev_key().is_none(), "a new key has no previous pair");
    let r = c
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(r.prev_key().unwrap().value_str().unwrap(), "v1");
    c.put("k", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap();
    assert_eq!(
        c.get("k", None).await.unwrap().kvs()[0]
            .value_str()
            .unwrap(),
        "v2",
        "ignore_value keeps the value"
    );
    let e = status(
        c.put("absent", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
    );
    support::assert_etcd_error(e, tonic::Code::InvalidArgument, "etcdserver: key not found");

    for k in ["p/1", "p/2", "p/3"] {
        c.put(k, k, None).await.unwrap();
    }
    let r = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(r.deleted(), 3);
    let prev: Vec<_> = r
        .prev_kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(prev, ["p/1", "p/2", "p/3"]);
    let r = c.delete("p/1", None).await.unwrap();
    assert_eq!((r.deleted(), r.prev_kvs().len()), (0, 0));
    server.stop().await;
}

/// A txn takes its branch by its compares, answers each op in order, and its refusals are etcd's.
#[tokio::test]
async fn txn_branches_and_answers_through_the_client() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let put = c.put("x", "1", None).await.unwrap();
    let rev = put.header().unwrap().revision();

    let txn = Txn::new()
        .when([
            Compare::value("x", CompareOp::Equal, "1"),
            Compare::mod_revision("x", CompareOp::Equal, rev),
            Compare::version("missing", CompareOp::Equal, 0),
        ])
        .and_then([
            TxnOp::put("x", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("x", None),
            TxnOp::delete("y", None),
        ])
        .or_else([TxnOp::put("failed", "1", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), rev + 1);
    match r.op_responses().as_slice() {
        [
            TxnOpResponse::Put(p),
            TxnOpResponse::Get(g),
            TxnOpResponse::Delete(d),
        ] => {
            assert_eq!(p.prev_key().unwrap().value_str().unwrap(), "1");
            assert_eq!(
                g.kvs()[0].value_str().unwrap(),
                "2",
                "a later op sees an earlier one"
            );
            assert_eq!(d.deleted(), 0);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    let txn = Txn::new()
        .when([Compare::value("x", CompareOp::Greater, "5")])
        .and_then([TxnOp::put("x", "wrong", None)])
        .or_else([
            TxnOp::put("else", "yes", None),
            TxnOp::get("x", Some(GetOptions::new().with_keys_only())),
        ]);
    let r = c.txn(txn).await.unwrap();
    assert!(!r.succeeded());
    match r.op_responses().as_slice() {
        [TxnOpResponse::Put(_), TxnOpResponse::Get(g)] => {
            assert_eq!(g.kvs()[0].key(), b"x");
            assert!(g.kvs()[0].value().is_empty(), "keys only");
        }
        other => panic!("unexpected responses {other:?}"),
    }
    assert_eq!(c.get("x", None).await.unwrap().kvs()[0].value(), b"2");
    assert_eq!(c.get("else", None).await.unwrap().kvs()[0].value(), b"yes");

    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    support::assert_etcd_error(
        status(c.txn(dup).await.unwrap_err()),
        tonic::Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    server.stop().await;
}

/// A watch sees puts and deletes with their previous pairs; a watch from a compacted revision is
/// created, then cancelled with the compact revision, and a watch resumed from that revision
/// gets every event since, the put at the compacted revision first. (What broke: the server
/// refused a start at the compacted revision itself with a second compacted response, where etcd
/// serves it, so a client resuming where it was told got nowhere.)
#[tokio::test]
async fn a_watch_resumes_from_the_compact_revision_it_was_told() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let (mut watcher, mut stream) = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    let first = c
        .put("w/a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("w/a", "2", None).await.unwrap();
    c.delete("w/a", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("events within 10 s")
            .unwrap()
            .expect("the stream stays open");
        assert_eq!(r.watch_id(), watcher.watch_id());
        for e in r.events() {
            let kv = e.kv().unwrap();
            let prev = e.prev_kv().map(|p| p.value_str().unwrap().to_string());
            seen.push((e.event_type(), kv.mod_revision(), prev));
        }
    }
    assert_eq!(
        seen,
        [
            (EventType::Put, first, None),
            (EventType::Put, first + 1, Some("1".into())),
            (EventType::Delete, first + 2, Some("2".into())),
        ]
    );
    watcher.cancel().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(r.canceled());

    for i in 0..5 {
        c.put("w/b", format!("{i}"), None).await.unwrap();
    }
    let compact_at = revision(&mut c).await - 2;
    c.compact(compact_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    let (_w, mut stream) = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(first)),
        )
        .await
        .expect("the client sees `created` first, as from etcd");
    let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(r.canceled());
    assert_eq!(r.compact_revision(), compact_at);
    assert!(r.events().is_empty());

    let (_w, mut stream) = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(r.compact_revision()),
            ),
        )
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the resumed watch replays within 10 s")
            .unwrap()
            .unwrap();
        assert!(!r.canceled(), "{}", r.cancel_reason());
        for e in r.events() {
            values.push(e.kv().unwrap().value_str().unwrap().to_string());
        }
    }
    assert_eq!(
        values,
        ["2", "3", "4"],
        "every put from the compact revision on"
    );
    server.stop().await;
}

/// Grant, keep-alive, time-to-live with keys, the lease list and revoke, through the client.
#[tokio::test]
async fn a_lease_is_granted_kept_alive_listed_and_revoked_through_the_client() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let g = c.lease_grant(60, None).await.unwrap();
    assert!(g.id() != 0);
    assert_eq!(g.ttl(), 60);
    for k in ["l/1", "l/2"] {
        c.put(k, "v", Some(PutOptions::new().with_lease(g.id())))
            .await
            .unwrap();
    }
    assert_eq!(c.get("l/1", None).await.unwrap().kvs()[0].lease(), g.id());

    let (mut keeper, mut alive) = c.lease_keep_alive(g.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let k = tokio::time::timeout(Duration::from_secs(10), alive.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((k.id(), k.ttl()), (g.id(), 60));

    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!((t.id(), t.granted_ttl()), (g.id(), 60));
    assert!(t.ttl() > 0 && t.ttl() <= 60, "{}", t.ttl());
    let mut ks: Vec<_> = t.keys().to_vec();
    ks.sort();
    assert_eq!(ks, [b"l/1".to_vec(), b"l/2".to_vec()]);
    let ids: Vec<_> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(ids, [g.id()]);

    c.lease_revoke(g.id()).await.unwrap();
    let r = c
        .get("l/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(r.kvs().is_empty(), "revoking deletes the lease's keys");
    let t = c.lease_time_to_live(g.id(), None).await.unwrap();
    assert_eq!(t.ttl(), -1, "etcd's ttl of a lease that is gone");
    support::assert_etcd_error(
        status(c.lease_revoke(g.id()).await.unwrap_err()),
        tonic::Code::NotFound,
        "etcdserver: requested lease not found",
    );
    server.stop().await;
}

/// A lease nobody keeps alive expires and takes its keys, as the client sees it.
#[tokio::test]
async fn an_expired_lease_takes_its_keys_through_the_client() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let g = c.lease_grant(1, None).await.unwrap();
    c.put("e", "1", Some(PutOptions::new().with_lease(g.id())))
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if c.get("e", None).await.unwrap().kvs().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the key of an expired lease is deleted within 10 s");
    assert!(c.leases().await.unwrap().leases().is_empty());
    server.stop().await;
}

/// Status, HashKV, Defragment and Snapshot through the client's maintenance calls, and the member
/// list of the single member.
#[tokio::test]
async fn maintenance_and_member_list_answer_through_the_client() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    for i in 0..200 {
        c.put(format!("m/{i:03}"), vec![b'v'; 1000], None)
            .await
            .unwrap();
    }
    c.delete("m/1", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let rev = revision(&mut c).await;

    let s = c.status().await.unwrap();
    let member = s.header().unwrap().member_id();
    assert!(!s.version().is_empty());
    assert_eq!(s.leader(), member, "a single member leads itself");
    assert!(s.db_size() > 200 * 1000, "{}", s.db_size());
    assert!(
        s.raft_used_db_size() > 0 && s.raft_used_db_size() <= s.db_size(),
        "{} of {}",
        s.raft_used_db_size(),
        s.db_size()
    );
    assert!(s.raft_term() >= 1 && s.raft_index() >= 1);

    let h = c.hash_kv(0).await.unwrap();
    assert_eq!(h.header().unwrap().revision(), rev);
    assert_eq!(c.hash_kv(rev).await.unwrap().hash(), h.hash());
    c.defragment().await.unwrap();
    assert_eq!(
        c.hash_kv(rev).await.unwrap().hash(),
        h.hash(),
        "defrag changes no key"
    );
    c.put("m/new", "x", None).await.unwrap();
    assert_ne!(c.hash_kv(0).await.unwrap().hash(), h.hash());
    assert_eq!(
        c.get(
            "m/",
            Some(GetOptions::new().with_prefix().with_count_only())
        )
        .await
        .unwrap()
        .count(),
        101
    );

    let mut snap = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(part) = snap.message().await.unwrap() {
        bytes.extend_from_slice(part.blob());
    }
    let (db, sha) = bytes.split_at(bytes.len() - folio_server::maintenance::SNAPSHOT_HASH_LEN);
    assert_eq!(
        sha,
        ring::digest::digest(&ring::digest::SHA256, db).as_ref()
    );
    let path = server.dir.path().join("snap.folio");
    std::fs::write(&path, db).unwrap();
    let store = folio::Store::open(&path).unwrap();
    assert!(store.db().check().unwrap().is_clean());
    assert_eq!(store.current_revision(), rev + 1);

    let members = c.member_list().await.unwrap();
    match members.members() {
        [m] => {
            assert_eq!(m.id(), member);
            assert_eq!(m.name(), "default");
            // What the test configuration advertises (`Config::for_test`), as etcd echoes its
            // --advertise-client-urls.
            assert_eq!(m.client_urls(), ["http://127.0.0.1:0"]);
        }
        other => panic!("one member expected: {other:?}"),
    }
    server.stop().await;
}

/// Authenticate answers as etcd's with authentication not enabled, FailedPrecondition
/// "etcdserver: authentication is not enabled", which etcd's clients take as "go on without a
/// token" (`etcdctl --user root:pw get foo` then gets); the other RPCs no service here serves
/// answer Unimplemented with a message naming them. Both answered Unimplemented with no message:
/// etcdctl with a user exited 2 before its get, and nobody could tell what was not served.
#[tokio::test]
async fn authenticate_says_auth_is_off_and_unserved_rpcs_are_named() {
    let mut server = support::start().await;
    let mut c = client(&server).await;
    let e = status(
        c.auth_client()
            .authenticate("root".to_string(), "pw".to_string())
            .await
            .unwrap_err(),
    );
    support::assert_etcd_error(
        e,
        tonic::Code::FailedPrecondition,
        "etcdserver: authentication is not enabled",
    );
    support::assert_etcd_error(
        status(c.user_add("bob", "pw", None).await.unwrap_err()),
        tonic::Code::Unimplemented,
        "folio-server: etcdserverpb.Auth/UserAdd (etcd's user and role authentication) is not supported",
    );
    support::assert_etcd_error(
        status(c.auth_disable().await.unwrap_err()),
        tonic::Code::Unimplemented,
        "folio-server: etcdserverpb.Auth/AuthDisable (etcd's user and role authentication) is not supported",
    );
    // A service nothing here serves at all: etcd's lock service.
    support::assert_etcd_error(
        status(c.lock("l", None).await.unwrap_err()),
        tonic::Code::Unimplemented,
        "folio-server: v3lockpb.Lock/Lock is not supported",
    );
    c.put("still", "served", None).await.unwrap();
    server.stop().await;
}
