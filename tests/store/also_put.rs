//! The replica hooks of the library: `TxnBuilder::also_put`, which commits an entry of another
//! tree in the same database commit as a store write (how a replica records the last log entry
//! it applied), and `ReadTxn::copy_to`, the packed copy a replica sends as its snapshot. Before
//! them a replica had to record its applied index in a second commit, so a crash between the two
//! applied an entry twice on restart.

use folio::{Db, Error, Op, RangeOptions, Store};

const APPLIED: &[u8] = b"raft.applied";

fn applied(store: &Store) -> Option<Vec<u8>> {
    let tx = store.db().begin_read().unwrap();
    let tree = tx.tree(APPLIED).unwrap()?;
    tree.get(b"last").unwrap().map(<[u8]>::to_vec)
}

#[test]
fn also_put_lands_in_the_same_commit_as_the_store_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    {
        let store = Store::open(&path).unwrap();
        let txid = store.db().begin_read().unwrap().txid();
        let r = store
            .txn()
            .then([Op::put(b"k", b"v")])
            .also_put(APPLIED, b"last", b"7")
            .commit()
            .unwrap();
        assert_eq!(r.revision, 2);
        // One database commit holds both.
        assert_eq!(store.db().begin_read().unwrap().txid(), txid + 1);
        assert_eq!(applied(&store).as_deref(), Some(&b"7"[..]));
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(applied(&store).as_deref(), Some(&b"7"[..]));
    assert_eq!(
        store.range(b"k", RangeOptions::current()).unwrap().kvs[0].value,
        b"v"
    );
}

#[test]
fn also_put_alone_commits_without_advancing_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let rev = store.put(b"a", b"1").unwrap();
    // A failed compare with an empty else branch writes no store key.
    let r = store
        .txn()
        .when([folio::Compare::value(b"a").eq(b"2")])
        .then([Op::put(b"a", b"3")])
        .also_put(APPLIED, b"last", b"8")
        .commit()
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!((r.revision, store.current_revision()), (rev, rev));
    assert_eq!(applied(&store).as_deref(), Some(&b"8"[..]));
    // The next write takes the next revision: none was skipped.
    assert_eq!(store.put(b"a", b"4").unwrap(), rev + 1);
}

#[test]
fn a_failed_transaction_leaves_out_its_also_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let too_large = vec![0u8; folio::limits::STORE_VALUE_LEN_MAX + 1];
    let err = store
        .txn()
        .then([Op::put(b"k", &too_large)])
        .also_put(APPLIED, b"last", b"9")
        .commit()
        .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    assert_eq!(applied(&store), None);
    assert_eq!(store.current_revision(), 1);
}

#[test]
fn also_put_into_a_store_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let err = store
        .txn()
        .then([Op::put(b"k", b"v")])
        .also_put(b"mvcc.meta", b"compact.finished", b"\0")
        .commit()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
    assert_eq!(store.current_revision(), 1);
}

#[test]
fn a_packed_copy_of_a_store_snapshot_is_the_same_store_at_that_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let unsynced = Db::builder().durability(folio::Durability::None);
    let store = Store::open_with(dir.path().join("kv.folio"), &unsynced).unwrap();
    for i in 0..2000u32 {
        store
            .put(format!("key{:05}", i % 700).as_bytes(), &[7u8; 300])
            .unwrap();
    }
    store
        .delete_range(b"key00100".as_slice()..b"key00200")
        .unwrap();
    let rev = store.current_revision();
    let want = store.hash_by_rev(rev).unwrap();
    let snapshot = store.db().begin_read().unwrap();
    // Writes after the snapshot stay out of the copy.
    store.put(b"later", b"x").unwrap();
    let copy_path = dir.path().join("copy.folio");
    let len = snapshot.copy_to(&copy_path).unwrap();
    drop(snapshot);
    assert_eq!(len, std::fs::metadata(&copy_path).unwrap().len());
    assert!(
        len < std::fs::metadata(dir.path().join("kv.folio"))
            .unwrap()
            .len()
    );
    let copy = Store::with_db(Db::open(&copy_path).unwrap()).unwrap();
    assert_eq!(copy.current_revision(), rev);
    assert_eq!(copy.hash_by_rev(rev).unwrap(), want);
    assert!(
        copy.range(b"later", RangeOptions::current())
            .unwrap()
            .kvs
            .is_empty()
    );
    assert!(copy.db().check().unwrap().is_clean());
    // An existing file is not overwritten.
    assert!(
        store
            .db()
            .begin_read()
            .unwrap()
            .copy_to(&copy_path)
            .is_err()
    );
}
