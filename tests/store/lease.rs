//! The threat: leases (etcd's lessor) that lose or keep the wrong keys. A lease must delete every
//! key attached to it, in one revision, when it is revoked or its TTL runs out (time comes from an
//! injected clock, so nothing here sleeps); a put naming a missing lease must change nothing; a
//! key belongs to the lease of its last put; a reopened store keeps its leases and gives each its
//! full TTL again (as etcd does); bad bytes in the lease tree fail the open, never panic.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use folio::limits::LEASE_TTL_MAX;
use folio::{
    Compare, Db, DefragOptions, Durability, Error, KeyRange, ManualClock, Op, PutOptions,
    RangeOptions, Store, StoreOptions,
};

fn open(path: &Path, clock: &Arc<ManualClock>) -> Store {
    let db = Db::builder()
        .durability(Durability::None)
        .open(path)
        .expect("open the database");
    Store::with_db_options(
        db,
        StoreOptions {
            clock: clock.clone(),
            ..StoreOptions::default()
        },
    )
    .expect("open the store")
}

fn put_leased(store: &Store, key: &[u8], lease: i64) -> folio::Result<i64> {
    let options = PutOptions {
        lease,
        prev_kv: false,
    };
    Ok(store.put_with(key, b"v", options)?.revision)
}

fn keys_at(store: &Store, range: impl Into<KeyRange>, rev: i64) -> Vec<Vec<u8>> {
    store
        .range(range, RangeOptions::at(rev))
        .expect("range")
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

fn lease_keys(store: &Store, id: i64) -> Vec<Vec<u8>> {
    store.lease_time_to_live(id, true).expect("ttl").keys
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn assert_clean(store: &Store) {
    let report = store.db().check().expect("check");
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_lease_expires_its_ttl_after_the_last_keep_alive_and_takes_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    let grant = store.lease_grant(7, 10).unwrap();
    assert_eq!((grant.id, grant.ttl), (7, 10));
    put_leased(&store, b"/leased/a", 7).unwrap();
    put_leased(&store, b"/leased/b", 7).unwrap();
    store.put(b"/plain", b"v").unwrap();

    clock.advance(secs(4));
    let status = store.lease_time_to_live(7, false).unwrap();
    assert_eq!((status.ttl, status.granted_ttl), (6, 10));
    assert!(status.keys.is_empty(), "keys only when asked for");
    assert_eq!(store.lease_keep_alive(7).unwrap(), 10);
    assert_eq!(store.lease_time_to_live(7, false).unwrap().ttl, 10);

    clock.advance(secs(9));
    assert_eq!(store.expire_leases().unwrap(), Vec::<i64>::new());
    assert_eq!(store.leases().unwrap(), [7]);
    clock.advance(secs(1));
    assert_eq!(store.lease_time_to_live(7, false).unwrap().ttl, -1);
    let before = store.current_revision();
    assert_eq!(store.expire_leases().unwrap(), [7]);
    assert_eq!(store.current_revision(), before + 1, "one revision");
    assert_eq!(keys_at(&store, .., 0), [b"/plain".to_vec()]);
    assert_eq!(keys_at(&store, .., before).len(), 3);
    assert_eq!(store.leases().unwrap(), Vec::<i64>::new());
    assert!(matches!(
        store.lease_time_to_live(7, true),
        Err(Error::LeaseNotFound { id: 7 })
    ));
    assert_eq!(store.expire_leases().unwrap(), Vec::<i64>::new());
    assert_clean(&store);
}

#[test]
fn expiry_while_another_thread_writes_deletes_every_attached_key_in_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    let id = store.lease_grant(0, 5).unwrap().id;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut written = Vec::new();
            for i in 0u32.. {
                let key = format!("/leased/{i:06}");
                match put_leased(&store, key.as_bytes(), id) {
                    Ok(rev) => written.push((key, rev)),
                    Err(Error::LeaseNotFound { id: gone }) => {
                        assert_eq!(gone, id);
                        return (written, key);
                    }
                    Err(e) => panic!("put: {e}"),
                }
                store
                    .put(format!("/plain/{i:06}").as_bytes(), b"v")
                    .unwrap();
            }
            unreachable!()
        })
    };
    // Let the writer get going, then run the clock out.
    while store.current_revision() < 40 {
        std::thread::yield_now();
    }
    clock.advance(secs(5));
    assert_eq!(store.expire_leases().unwrap(), [id]);
    let (written, refused) = writer.join().unwrap();
    assert!(
        written.len() >= 10,
        "{} puts before the expiry",
        written.len()
    );

    // The refused put changed nothing, at any revision.
    let now = store.current_revision();
    assert!(keys_at(&store, refused.as_bytes(), now).is_empty());
    // Every leased key was there the revision before the revoke and none is at it.
    let last_put = written.iter().map(|(_, rev)| *rev).max().unwrap();
    let revoke = (last_put + 1..=now)
        .find(|&r| keys_at(&store, KeyRange::prefix(b"/leased/"), r).is_empty())
        .expect("the revoke's revision");
    let before: Vec<Vec<u8>> = written.iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
    assert_eq!(
        keys_at(&store, KeyRange::prefix(b"/leased/"), revoke - 1),
        before
    );
    // The plain keys are all still there.
    let plain = store
        .range(KeyRange::prefix(b"/plain/"), RangeOptions::current())
        .unwrap();
    assert!(plain.count as usize >= written.len());
    assert_clean(&store);
}

#[test]
fn a_revoke_in_a_history_of_transactions_is_one_revision_of_deletes_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    let lease = store.lease_grant(0, 60).unwrap().id;
    let t1 = store
        .txn()
        .then([
            Op::put_with_lease(b"a", b"1", lease),
            Op::put(b"b", b"1"),
            Op::put_with_lease(b"c", b"1", lease),
        ])
        .commit()
        .unwrap();
    let t2 = store
        .txn()
        .when([Compare::lease(b"a").eq(lease)])
        .then([Op::put_with_lease(b"d", b"2", lease), Op::put(b"b", b"2")])
        .commit()
        .unwrap();
    assert!(t2.succeeded);
    assert_eq!(t2.revision, t1.revision + 1);
    let revoked = store.lease_revoke(lease).unwrap();
    assert_eq!(revoked, t2.revision + 1);
    let t3 = store.txn().then([Op::put(b"e", b"3")]).commit().unwrap();
    assert_eq!(t3.revision, revoked + 1);

    assert_eq!(keys_at(&store, .., t2.revision), [b"a", b"b", b"c", b"d"]);
    assert_eq!(keys_at(&store, .., revoked), [b"b".to_vec()]);
    assert_eq!(keys_at(&store, .., t3.revision), [b"b", b"e"]);
    // The records before the revoke still name the lease.
    let old = store.range(b"a", RangeOptions::at(t1.revision)).unwrap();
    assert_eq!(old.kvs[0].lease, lease);
    // A lease with no keys revokes without a revision.
    let empty = store.lease_grant(0, 60).unwrap().id;
    assert_eq!(store.lease_revoke(empty).unwrap(), t3.revision);
    assert_eq!(store.current_revision(), t3.revision);
    assert!(store.leases().unwrap().is_empty());
    assert_clean(&store);
}

#[test]
fn a_reopened_store_keeps_its_leases_and_their_keys_through_a_defrag_and_gives_each_its_full_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let clock = Arc::new(ManualClock::new());
    let (short, long) = {
        let store = open(&path, &clock);
        let short = store.lease_grant(0, 10).unwrap().id;
        let long = store.lease_grant(0, 100).unwrap().id;
        put_leased(&store, b"s1", short).unwrap();
        put_leased(&store, b"moved", short).unwrap();
        put_leased(&store, b"moved", long).unwrap();
        put_leased(&store, b"l1", long).unwrap();
        put_leased(&store, b"gone", long).unwrap();
        store.delete_range(b"gone").unwrap();
        clock.advance(secs(9));
        assert_eq!(store.lease_time_to_live(short, false).unwrap().ttl, 1);
        // The lease tree is copied by a defrag as any tree is.
        store.defrag(&DefragOptions::default()).unwrap();
        (short, long)
    };
    let store = open(&path, &clock);
    let mut ids = vec![short, long];
    ids.sort_unstable();
    assert_eq!(store.leases().unwrap(), ids);
    let s = store.lease_time_to_live(short, true).unwrap();
    assert_eq!((s.ttl, s.granted_ttl), (10, 10), "a full TTL again");
    assert_eq!(s.keys, [b"s1".to_vec()]);
    assert_eq!(
        lease_keys(&store, long),
        [b"l1".to_vec(), b"moved".to_vec()]
    );

    clock.advance(secs(10));
    assert_eq!(store.expire_leases().unwrap(), [short]);
    assert_eq!(keys_at(&store, .., 0), [b"l1".to_vec(), b"moved".to_vec()]);
    assert_eq!(store.leases().unwrap(), [long]);
    // A chosen id is never one in use.
    let third = store.lease_grant(0, 10).unwrap().id;
    assert!(third != long && third > 0);
    assert_clean(&store);
}

#[test]
fn a_put_with_a_lease_that_does_not_exist_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    store.put(b"k", b"before").unwrap();
    let rev = store.current_revision();
    assert!(matches!(
        put_leased(&store, b"k", 42),
        Err(Error::LeaseNotFound { id: 42 })
    ));
    assert!(matches!(
        put_leased(&store, b"new", 42),
        Err(Error::LeaseNotFound { id: 42 })
    ));
    // In a transaction, the whole transaction fails, earlier operations too.
    let txn = store
        .txn()
        .then([
            Op::put(b"other", b"v"),
            Op::delete_range(b"k"),
            Op::put_with_lease(b"third", b"v", 42),
        ])
        .commit();
    assert!(matches!(txn, Err(Error::LeaseNotFound { id: 42 })));
    // A revoked lease is as missing.
    let gone = store.lease_grant(0, 10).unwrap().id;
    store.lease_revoke(gone).unwrap();
    assert!(matches!(
        put_leased(&store, b"k", gone),
        Err(Error::LeaseNotFound { .. })
    ));
    assert_eq!(store.current_revision(), rev);
    let all = store.range(.., RangeOptions::current()).unwrap();
    assert_eq!(all.kvs.len(), 1);
    assert_eq!(
        (all.kvs[0].value.as_slice(), all.kvs[0].lease),
        (&b"before"[..], 0)
    );
    assert_clean(&store);
}

#[test]
fn a_put_moves_a_key_to_its_new_lease_and_a_delete_detaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    let (l1, l2) = (
        store.lease_grant(1, 60).unwrap().id,
        store.lease_grant(2, 60).unwrap().id,
    );
    put_leased(&store, b"k", l1).unwrap();
    assert_eq!(lease_keys(&store, l1), [b"k".to_vec()]);
    put_leased(&store, b"k", l2).unwrap();
    assert!(lease_keys(&store, l1).is_empty());
    assert_eq!(lease_keys(&store, l2), [b"k".to_vec()]);
    // Revoking the old lease leaves the key alone.
    let rev = store.current_revision();
    assert_eq!(store.lease_revoke(l1).unwrap(), rev);
    assert_eq!(keys_at(&store, .., 0), [b"k".to_vec()]);
    // A put without a lease detaches it.
    store.put(b"k", b"plain").unwrap();
    assert!(lease_keys(&store, l2).is_empty());
    put_leased(&store, b"k", l2).unwrap();
    store.delete_range(b"k").unwrap();
    assert!(lease_keys(&store, l2).is_empty());
    // The key put again, without the lease, outlives it.
    store.put(b"k", b"again").unwrap();
    clock.advance(secs(60));
    assert_eq!(store.expire_leases().unwrap(), [l2]);
    assert_eq!(keys_at(&store, .., 0), [b"k".to_vec()]);
    assert_clean(&store);
}

#[test]
fn a_compare_on_a_lease_holds_for_the_lease_of_the_keys_last_put() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    let lease = store.lease_grant(0, 60).unwrap().id;
    put_leased(&store, b"/a/leased", lease).unwrap();
    store.put(b"/a/plain", b"v").unwrap();
    let holds = |c: Compare| store.txn().when([c]).commit().unwrap().succeeded;
    assert!(holds(Compare::lease(b"/a/leased").eq(lease)));
    assert!(!holds(Compare::lease(b"/a/leased").eq(0)));
    assert!(holds(Compare::lease(b"/a/leased").gt(0)));
    assert!(holds(Compare::lease(b"/a/plain").eq(0)));
    assert!(
        holds(Compare::lease(b"/missing").eq(0)),
        "a missing key has lease 0"
    );
    // Over a range: it must hold for every key.
    assert!(!holds(Compare::lease(b"/a/").prefix().eq(lease)));
    assert!(holds(Compare::lease(b"/a/").prefix().ne(-1)));
    assert!(holds(Compare::lease(b"/a/l").range_end(b"/a/m").eq(lease)));
    // A compaction leaves the lease as it is.
    store.compact(store.current_revision()).unwrap();
    assert!(holds(Compare::lease(b"/a/leased").eq(lease)));
    assert_eq!(lease_keys(&store, lease), [b"/a/leased".to_vec()]);
    assert_clean(&store);
}

#[test]
fn each_lease_error_names_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("kv.folio"), &clock);
    store.lease_grant(5, 10).unwrap();
    let e = store.lease_grant(5, 10).unwrap_err();
    assert!(matches!(e, Error::LeaseExists { id: 5 }), "{e}");
    assert!(e.to_string().contains("lease 5 is in use"), "{e}");
    for ttl in [0, -1, LEASE_TTL_MAX + 1] {
        let e = store.lease_grant(0, ttl).unwrap_err();
        assert!(
            matches!(e, Error::LeaseTtl { ttl: t, .. } if t == ttl),
            "{e}"
        );
    }
    store.lease_grant(6, LEASE_TTL_MAX).unwrap();
    for e in [
        store.lease_revoke(9).unwrap_err(),
        store.lease_keep_alive(9).unwrap_err(),
        store.lease_time_to_live(9, false).unwrap_err(),
    ] {
        assert!(matches!(e, Error::LeaseNotFound { id: 9 }), "{e}");
        assert!(e.to_string().contains("lease 9 does not exist"), "{e}");
    }
    // A keep-alive too late revokes the lease (and its keys) and fails, as etcd's.
    put_leased(&store, b"k", 5).unwrap();
    clock.advance(secs(10));
    assert!(matches!(
        store.lease_keep_alive(5),
        Err(Error::LeaseNotFound { id: 5 })
    ));
    assert!(keys_at(&store, .., 0).is_empty());
    assert_eq!(store.leases().unwrap(), [6]);
    assert_clean(&store);
}

#[test]
fn a_malformed_lease_tree_fails_the_open_with_malformed_store_and_never_panics() {
    type Entries<'a> = &'a [(&'a [u8], &'a [u8])];
    let bad: [(&str, Entries<'_>); 5] = [
        ("a key shorter than a lease id", &[(b"abc", b"")]),
        ("a TTL of 3 bytes", &[(&7i64.to_be_bytes(), b"abc")]),
        (
            "a negative TTL",
            &[(&7i64.to_be_bytes(), &(-5i64).to_le_bytes())],
        ),
        (
            "a key attached to no lease",
            &[(b"\0\0\0\0\0\0\0\x07key", b"")],
        ),
        (
            "a key attached to two leases",
            &[
                (&7i64.to_be_bytes(), &60i64.to_le_bytes()),
                (b"\0\0\0\0\0\0\0\x07key", b""),
                (&8i64.to_be_bytes(), &60i64.to_le_bytes()),
                (b"\0\0\0\0\0\0\0\x08key", b""),
            ],
        ),
    ];
    for (what, entries) in bad {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.folio");
        let clock = Arc::new(ManualClock::new());
        {
            let store = open(&path, &clock);
            let mut tx = store.db().begin_write().unwrap();
            {
                let mut tree = tx.open_tree(b"mvcc.lease").unwrap();
                for (k, v) in entries {
                    tree.put(k, v).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let db = Db::builder()
            .durability(Durability::None)
            .open(&path)
            .unwrap();
        match Store::with_db(db) {
            Err(Error::MalformedStore(reason)) => println!("{what}: {reason}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}
