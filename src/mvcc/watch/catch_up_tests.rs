//! Where a watcher that fell behind catches up from: the hub's shared log of released events
//! while it reaches back far enough, the key tree beyond it (watch.rs, `catch_up`; log.rs).

use std::sync::Arc;

use crate::mvcc::store::Store;
use crate::mvcc::types::KeyRange;
use crate::mvcc::watch::log::EventLog;
use crate::mvcc::watch::{WatchOptions, WatchResponse, Watcher};

/// Every response `w` has ready, as (revision, key) pairs.
fn received(w: &Watcher) -> Vec<(i64, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(r) = w.try_recv().unwrap() {
        match r {
            WatchResponse::Events { events, .. } => {
                got.extend(events.into_iter().map(|e| (e.kv.mod_revision, e.kv.key)));
            }
            other => panic!("only events expected, got {other:?}"),
        }
    }
    got
}

/// What would break: each lagging watcher read the revisions it missed from the key tree on its
/// own (a read transaction, a decode and a copy per record), so 1,000 lagging watchers read the
/// same records 1,000 times and pinned old pages the writers' freelist had to carry.
#[test]
fn a_watcher_that_fell_behind_catches_up_with_the_logs_own_events_not_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    let w = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(1))
        .unwrap();
    let revs: Vec<i64> = (0..3)
        .map(|i| store.put(format!("k{i}").as_bytes(), b"v").unwrap())
        .collect();
    // The feed keeps one buffer's worth (the last revision): the watcher overflowed, catches
    // up one buffer's worth (the first revision) and stays unsynced.
    assert_eq!(received_one(&w), revs[0]);
    let mut cur = w.receiving.lock();
    assert!(!cur.synced);
    w.catch_up(&mut cur).unwrap();
    let hub = store.inner.watch.hub.lock();
    let inbox = w.shared.inbox.lock();
    assert_eq!(
        inbox.batches.len(),
        1,
        "one buffer's worth: {:?}",
        inbox.batches
    );
    let (rev, events) = &inbox.batches[0];
    assert_eq!(*rev, revs[1]);
    let logged = hub
        .log
        .get(revs[1])
        .expect("the log holds the missed revision");
    assert!(Arc::ptr_eq(events, logged), "shares the log's events");
}

/// The revision of the one response `w` has ready first.
fn received_one(w: &Watcher) -> i64 {
    match w.try_recv().unwrap() {
        Some(WatchResponse::Events { revision, .. }) => revision,
        other => panic!("events expected, got {other:?}"),
    }
}

/// What would break: a watcher that fell behind further than the log reaches must go on from the
/// key tree, and one that the log reaches again must switch back, each revision once and in order.
#[test]
fn a_watcher_behind_the_logs_reach_catches_up_from_the_tree_then_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.folio")).unwrap();
    {
        // A log that keeps about two events, so that it forgets most of what the watcher missed.
        let mut hub = store.inner.watch.hub.lock();
        let from = hub.durable + 1;
        hub.log = EventLog::new(from, 2 * 140);
    }
    let w = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(2))
        .unwrap();
    let mut want = Vec::new();
    let mut got = Vec::new();
    for round in 0..4 {
        for i in 0..10 {
            let key = format!("k{round}-{i}").into_bytes();
            want.push((store.put(&key, b"v").unwrap(), key));
            store.put(b"other", b"v").unwrap();
        }
        got.extend(received(&w));
    }
    got.extend(received(&w));
    assert_eq!(got, want);
    assert!(!store.inner.watch.hub.lock().log.covers(want[0].0));
}
