//! The MVCC store's basic paths: revisions, versions and generations, transactions, compaction,
//! reopen. Revisions are numbered as in etcd: a new store is at revision 1.

use folio::{Compare, Error, KeyRange, Op, OpResponse, PutOptions, RangeOptions, Store};

#[test]
fn puts_deletes_and_reads_at_old_revisions_follow_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.current_revision(), 1, "a new store is at revision 1");
    let r2 = store.put(b"a", b"1").unwrap();
    let r3 = store.put(b"a", b"2").unwrap();
    let r4 = store.put(b"b", b"x").unwrap();
    assert_eq!((r2, r3, r4), (2, 3, 4));
    let now = store
        .range(KeyRange::all(), RangeOptions::current())
        .unwrap();
    assert_eq!(now.count, 2);
    let a = &now.kvs[0];
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    let del = store.delete_range(b"a").unwrap();
    assert_eq!((del.deleted, del.revision), (1, 5));
    let nothing = store.delete_range(b"zzz").unwrap();
    assert_eq!(
        (nothing.deleted, nothing.revision),
        (0, 5),
        "deleting nothing keeps the revision"
    );
    let r6 = store.put(b"a", b"3").unwrap();
    let again = store.range(b"a", RangeOptions::current()).unwrap();
    assert_eq!(
        (again.kvs[0].create_revision, again.kvs[0].version),
        (r6, 1)
    );
    assert_eq!(store.range(b"a", RangeOptions::at(5)).unwrap().count, 0);
    assert_eq!(
        store.range(b"a", RangeOptions::at(2)).unwrap().kvs[0].value,
        b"1"
    );
    let future = store.range(b"a", RangeOptions::at(9));
    assert!(matches!(
        future,
        Err(Error::FutureRevision {
            requested: 9,
            current: 6
        })
    ));
    let limited = store
        .range(KeyRange::all(), RangeOptions::current().limit(1))
        .unwrap();
    assert_eq!(
        (limited.kvs.len(), limited.count, limited.more),
        (1, 2, true)
    );
    let counted = store
        .range(
            KeyRange::all(),
            RangeOptions::current().limit(1).count_only(),
        )
        .unwrap();
    assert_eq!(
        (counted.kvs.len(), counted.count, counted.more),
        (0, 2, false)
    );
    let keys = store
        .range(KeyRange::all(), RangeOptions::current().keys_only())
        .unwrap();
    assert!(keys.kvs.iter().all(|kv| kv.value.is_empty()));
    let hash_before = store.hash_by_rev(0).unwrap().hash;
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.current_revision(), 6);
    assert_eq!(store.hash_by_rev(0).unwrap().hash, hash_before);
    let a = store.range(b"a", RangeOptions::current()).unwrap();
    let a = &a.kvs[0];
    assert_eq!(
        (a.create_revision, a.version, a.value.as_slice()),
        (6, 1, &b"3"[..])
    );
    let hash_at_5 = store.hash_by_rev(5).unwrap();
    assert_eq!(hash_at_5.compact_revision, -1, "never compacted");
    store.compact(5).unwrap();
    let below = store.range(b"a", RangeOptions::at(4));
    assert!(matches!(
        below,
        Err(Error::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    // As etcd: the compaction recorded the hash of 5, which answers as before it.
    assert_eq!(store.hash_by_rev(5).unwrap(), hash_at_5);
    assert!(matches!(
        store.hash_by_rev(4),
        Err(Error::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    assert_eq!(
        store
            .range(KeyRange::all(), RangeOptions::at(5))
            .unwrap()
            .count,
        1
    );
    assert!(store.db().check().unwrap().is_clean());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        (store.compacted_revision(), store.current_revision()),
        (5, 6)
    );
    let at5 = store.range(KeyRange::all(), RangeOptions::at(5)).unwrap();
    assert_eq!(at5.kvs[0].key, b"b");
}

#[test]
fn a_transaction_writes_at_one_revision_and_reads_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let r2 = store.put(b"k", b"v").unwrap();
    let t = store
        .txn()
        .when([
            Compare::mod_revision(b"k").eq(r2),
            Compare::value(b"k").eq(b"v"),
        ])
        .then([
            Op::put(b"k", b"w"),
            Op::put(b"other", b"o"),
            Op::range(KeyRange::all(), RangeOptions::current()),
        ])
        .otherwise([Op::delete_range(b"k")])
        .commit()
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, 3);
    let OpResponse::Range(seen) = &t.responses[2] else {
        panic!("a range response")
    };
    assert_eq!(seen.count, 2);
    assert_eq!(seen.kvs[0].value, b"w");
    let failed = store
        .txn()
        .when([Compare::value(b"missing").eq(b"x")])
        .then([Op::put(b"k", b"no")])
        .commit()
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(
        failed.revision, 3,
        "a transaction that writes nothing keeps the revision"
    );
    store.lease_grant(7, 60).unwrap();
    let prev = store
        .put_with(
            b"k",
            b"z",
            PutOptions {
                prev_kv: true,
                lease: 7,
            },
        )
        .unwrap();
    assert_eq!(prev.prev_kv.unwrap().value, b"w");
    assert_eq!(
        store.range(b"k", RangeOptions::current()).unwrap().kvs[0].lease,
        7
    );
}

#[test]
fn a_failed_write_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    store.put(b"k", b"v").unwrap();
    let too_long = vec![b'k'; 5000];
    let err = store
        .txn()
        .then([Op::put(b"k", b"w"), Op::put(&too_long, b"x")])
        .commit();
    assert!(matches!(err, Err(Error::KeyLength { .. })));
    assert_eq!(store.current_revision(), 2);
    let k = store.range(b"k", RangeOptions::current()).unwrap();
    assert_eq!(
        (k.kvs[0].version, k.kvs[0].value.as_slice()),
        (1, &b"v"[..])
    );
    assert_eq!(store.put(b"k", b"w").unwrap(), 3);
    assert_eq!(
        store.range(b"k", RangeOptions::current()).unwrap().kvs[0].version,
        2
    );
}

/// What broke: in group mode the strict check ran after the commit was published. When it failed,
/// the store unwound its key index for a commit that was already on disk, and the next write
/// reused that commit's revision. The check now runs before the meta is written, so a failed check
/// commits nothing.
#[test]
fn a_failed_strict_check_in_group_mode_commits_nothing_and_the_revision_is_not_used() {
    use folio::{Db, Durability};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let marker = [0xa7u8; 600];
    let rev = {
        let store = Store::open(&path).unwrap();
        store.put(b"a", b"1").unwrap();
        let mut tx = store.db().begin_write().unwrap();
        tx.open_tree(b"other").unwrap().put(b"x", &marker).unwrap();
        tx.commit().unwrap();
        store.current_revision()
    };
    // Damage the other tree's leaf, which the store's writes never touch: only the strict check
    // reads it.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker value is in the file");
    bytes[at + 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    {
        let db = Db::builder()
            .durability(Durability::Group)
            .strict(true)
            .open(&path)
            .unwrap();
        let store = Store::with_db(db).unwrap();
        let err = store.put(b"b", b"2").unwrap_err();
        assert!(matches!(err, Error::CheckFailed { .. }), "{err}");
        assert_eq!(
            store.current_revision(),
            rev,
            "the failed put took no revision"
        );
        assert!(
            store
                .range(b"b", RangeOptions::current())
                .unwrap()
                .kvs
                .is_empty()
        );
    }
    let store = Store::with_db(Db::builder().open(&path).unwrap()).unwrap();
    assert_eq!(
        store.current_revision(),
        rev,
        "nothing of the failed put reached the disk"
    );
    assert!(
        store
            .range(b"b", RangeOptions::current())
            .unwrap()
            .kvs
            .is_empty()
    );
}

/// `Store::open` on a plain database that held trees of its own silently added the store's trees
/// beside them (and the `folio` command then refused the file as a store and as a plain one).
/// The store is made only in a database with no trees; any other is refused and left unchanged.
#[test]
fn a_store_refuses_a_database_of_other_trees_and_leaves_it_unchanged() {
    use folio::Db;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.folio");
    {
        let db = Db::open(&path).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"users").unwrap().put(b"alice", b"1").unwrap();
        tx.open_tree(b"odd\nname").unwrap().put(b"k", b"v").unwrap();
        tx.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { trees } if trees == &["odd\\nname", "users"]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "not a folio store: the database holds other trees (odd\\nname, users) but not the store's mvcc.key and mvcc.meta; open it with Db, or make the store in a new file"
    );
    let err = Store::with_db(Db::open(&path).unwrap()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is untouched"
    );

    // A database with no trees becomes a store, and trees of one's own may then live beside it.
    let path = dir.path().join("empty.folio");
    drop(Db::open(&path).unwrap());
    let store = Store::open(&path).unwrap();
    let mut tx = store.db().begin_write().unwrap();
    tx.open_tree(b"mine").unwrap().put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    let rev = store.put(b"a", b"1").unwrap();
    drop(store);
    assert_eq!(Store::open(&path).unwrap().current_revision(), rev);
}
