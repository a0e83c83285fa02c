//! Who fans out: the receivers, unless one sleeps or nobody comes (watch.rs, invariant 7).

use std::sync::Arc;

use crate::mvcc::store::Store;
use crate::mvcc::types::KeyRange;
use crate::mvcc::watch::{RELEASE_BACKLOG_REVISIONS, WatchOptions, WatchResponse};

/// What would break: a writer that fans out every revision pays for every watcher on its commit
/// path (the first version did; with 1,000 watchers the writers' CPU per put doubled).
#[test]
fn a_writer_leaves_the_fan_out_to_the_next_receive_when_no_receiver_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let w = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new())
        .unwrap();
    let rev = store.put(b"k1", b"v").unwrap();
    let hub = &store.inner.watch;
    assert!(hub.released.load(std::sync::atomic::Ordering::SeqCst) < rev);
    assert_eq!(
        hub.queue.lock().len(),
        1,
        "released to the queue, not fanned out"
    );
    match w.try_recv().unwrap() {
        Some(WatchResponse::Events { revision, events }) => {
            assert_eq!((revision, events.len()), (rev, 1));
        }
        other => panic!("the receive pumps and finds the event: {other:?}"),
    }
    assert!(hub.queue.lock().is_empty());
}

/// What would break: with watchers that nobody reads, released revisions would pile up in the
/// queue without bound; a writer pumps once the backlog passes its bound.
#[test]
fn released_revisions_nobody_receives_stay_within_the_backlog_bound() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 puts without 6,000 syncs.
    let builder = crate::Db::builder().durability(crate::Durability::None);
    let store = Store::open_with(dir.path().join("kv.folio"), &builder).unwrap();
    let _unread = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new())
        .unwrap();
    let hub = &store.inner.watch;
    let mut longest = 0;
    for i in 0..3 * RELEASE_BACKLOG_REVISIONS {
        store.put(format!("k{i}").as_bytes(), b"v").unwrap();
        longest = longest.max(hub.queue.lock().len());
    }
    assert!(longest > 1, "receivers, not writers, fan out");
    assert!(
        longest <= RELEASE_BACKLOG_REVISIONS as usize + 1,
        "{longest} revisions queued"
    );
}

/// What would break: a pump that fills one inbox per watcher costs the receivers a lock, a push
/// and a shared count per watcher and revision (with 1,000 watchers, about 140 per put, that was
/// most of the consumers' time); watchers of one range with the same options share one group,
/// whose feed gets the revision once, and a slow member overflows without the others.
#[test]
fn watchers_of_one_range_share_a_group_whose_feed_gets_each_revision_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let watchers: Vec<_> = (0..100)
        .map(|_| {
            store
                .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(2))
                .unwrap()
        })
        .collect();
    let other = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(3))
        .unwrap();
    assert!(Arc::ptr_eq(&watchers[0].group, &watchers[99].group));
    assert!(
        !Arc::ptr_eq(&watchers[0].group, &other.group),
        "another buffer"
    );
    assert_eq!(watchers[0].group.feed.lock().members.len(), 100);
    let rev = store.put(b"k1", b"v").unwrap();
    store.inner.watch.pump();
    assert_eq!(watchers[0].group.feed.lock().feed.end(), 1, "appended once");
    for w in &watchers[..99] {
        match w.try_recv().unwrap() {
            Some(WatchResponse::Events { revision, .. }) => assert_eq!(revision, rev),
            other => panic!("the feed's event: {other:?}"),
        }
    }
    // Three more revisions: the feed keeps two events, so the one member that did not read the
    // first overflows; the others read on from the feed.
    for i in 0..3 {
        store.put(format!("k{i}").as_bytes(), b"v").unwrap();
        store.inner.watch.pump();
        for w in &watchers[..99] {
            assert!(w.try_recv().unwrap().is_some());
            assert!(w.receiving.lock().synced);
        }
    }
    let slow = &watchers[99];
    assert!(slow.try_recv().unwrap().is_some());
    assert!(slow.receiving.lock().next > rev);
    assert_eq!(store.watcher_count(), 101);
    drop(watchers);
    drop(other);
    assert_eq!(store.watcher_count(), 0);
    assert!(
        store
            .inner
            .watch
            .hub
            .lock()
            .index
            .find(&KeyRange::prefix(b"k"), |_| true)
            .is_none(),
        "the last member takes its group out of the index"
    );
}
