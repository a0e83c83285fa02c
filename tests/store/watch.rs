//! The threat: a watcher misses a change, sees one twice or out of order, sees a commit that a
//! crash could still lose, or holds up a writer. Unit tests of each behaviour of `Store::watch`
//! and each error, then the model test (issue 14, Done-when 1): random histories from several
//! threads, with compactions, an online defrag and a reopen, against watchers at random start
//! revisions over random ranges with tiny buffers.
//!
//! Rerunning the model test: it prints its seed; `FOLIO_WATCH_SEED=<seed>` repeats it and
//! `FOLIO_WATCH_CASES=<n>` runs more cases.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use crate::common::mvcc::{Live, apply};
use crate::common::rng::SplitMix64;
use crate::common::{StorageCall, Watch, Watched, random_seed};
use folio::sim::SimStorage;
use folio::{
    BatchResponse, DefragOptions, Durability, Error, Event, EventKind, KeyRange, KeyValue, Op,
    OpResponse, PutOptions, RangeOptions, SharedEvent, SharedResponse, Store, WatchOptions,
    WatchResponse, Watcher,
};

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(50);

fn open(path: &Path) -> Store {
    Store::open(path).unwrap()
}

/// Receives until every event up to `rev` has been received; returns the events.
fn events_up_to(w: &Watcher, rev: i64) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        w.request_progress();
        match w.recv_timeout(LONG).unwrap().expect("a response") {
            WatchResponse::Events { events, revision } => {
                assert!(events.iter().all(|e| e.kv.mod_revision <= revision));
                out.extend(events);
            }
            WatchResponse::Progress { revision } if revision >= rev => return out,
            WatchResponse::Progress { .. } => {}
            WatchResponse::Compacted { compact_revision } => {
                panic!("compacted at {compact_revision}")
            }
        }
    }
}

fn summary(events: &[Event]) -> Vec<(EventKind, Vec<u8>, i64)> {
    events
        .iter()
        .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
        .collect()
}

#[test]
fn a_watch_over_a_key_a_prefix_or_a_range_sees_only_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let key = store.watch(b"/a/1", WatchOptions::new()).unwrap();
    let prefix = store
        .watch(KeyRange::prefix(b"/a/"), WatchOptions::new())
        .unwrap();
    let range = store
        .watch(&b"/a/2"[..]..&b"/b/"[..], WatchOptions::new())
        .unwrap();
    let mut revs = BTreeMap::new();
    for k in [&b"/a/1"[..], b"/a/2", b"/a/10", b"/b/", b"/b/1", b"/a"] {
        revs.insert(k.to_vec(), store.put(k, b"v").unwrap());
    }
    let last = store.current_revision();
    let keys = |w: &Watcher| -> Vec<Vec<u8>> {
        events_up_to(w, last)
            .into_iter()
            .map(|e| e.kv.key)
            .collect()
    };
    assert_eq!(keys(&key), [b"/a/1".to_vec()]);
    assert_eq!(
        keys(&prefix),
        [b"/a/1".to_vec(), b"/a/2".to_vec(), b"/a/10".to_vec()]
    );
    assert_eq!(keys(&range), [b"/a/2".to_vec()]);
}

#[test]
fn a_watch_from_now_sees_only_later_revisions_and_one_from_the_past_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let r2 = store.put(b"k", b"1").unwrap();
    let r3 = store.put(b"k", b"2").unwrap();
    let now = store.watch(b"k", WatchOptions::new()).unwrap();
    let past = store
        .watch(b"k", WatchOptions::new().start_revision(r2))
        .unwrap();
    let r4 = store.put(b"k", b"3").unwrap();
    let r5 = store.delete_range(b"k").unwrap().revision;
    let want_now = vec![
        (EventKind::Put, b"k".to_vec(), r4),
        (EventKind::Delete, b"k".to_vec(), r5),
    ];
    assert_eq!(summary(&events_up_to(&now, r5)), want_now);
    let mut want_past = vec![
        (EventKind::Put, b"k".to_vec(), r2),
        (EventKind::Put, b"k".to_vec(), r3),
    ];
    want_past.extend(want_now);
    assert_eq!(summary(&events_up_to(&past, r5)), want_past);
}

/// `Watcher::next_revision` is where a watch resumes (a replica's server watches its new store
/// from there when a snapshot replaces the old one): a watcher started there gets exactly what
/// the first one had not given, nothing before it and nothing twice.
#[test]
fn a_watch_started_at_a_watchers_next_revision_gets_exactly_what_it_had_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    store.put(b"k/0", b"before").unwrap();
    let first = store
        .watch(KeyRange::prefix(b"k/"), WatchOptions::new())
        .unwrap();
    assert_eq!(first.next_revision(), store.current_revision() + 1);
    let r1 = store.put(b"k/a", b"1").unwrap();
    store.put(b"other", b"x").unwrap();
    match first.recv_timeout(LONG).unwrap().expect("a response") {
        WatchResponse::Events { revision, events } => {
            assert_eq!(events[0].kv.mod_revision, r1);
            // Past what it gave, and not past what was written (the put to `other` holds no
            // event of its range, so it may or may not be passed yet).
            let next = first.next_revision();
            assert!(
                next > revision && next <= store.current_revision() + 1,
                "{next}"
            );
        }
        other => panic!("expected events, got {other:?}"),
    }
    let r2 = store.put(b"k/b", b"2").unwrap();
    let r3 = store.delete_range(b"k/a").unwrap().revision;
    let resumed = store
        .watch(
            KeyRange::prefix(b"k/"),
            WatchOptions::new().start_revision(first.next_revision()),
        )
        .unwrap();
    let want = vec![
        (EventKind::Put, b"k/b".to_vec(), r2),
        (EventKind::Delete, b"k/a".to_vec(), r3),
    ];
    assert_eq!(summary(&events_up_to(&first, r3)), want);
    assert_eq!(summary(&events_up_to(&resumed, r3)), want);
    assert!(first.next_revision() > r3);
}

#[test]
fn every_event_of_a_revision_arrives_in_one_response() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    store.put(b"a", b"0").unwrap();
    store.put(b"b", b"0").unwrap();
    let w = store.watch(KeyRange::all(), WatchOptions::new()).unwrap();
    let t = store
        .txn()
        .then([
            Op::put(b"c", b"1"),
            Op::delete_range(&b"a"[..]..=&b"b"[..]),
            Op::put(b"d", b"1"),
        ])
        .commit()
        .unwrap();
    match w.recv_timeout(LONG).unwrap().unwrap() {
        WatchResponse::Events { revision, events } => {
            assert_eq!(revision, t.revision);
            assert_eq!(
                summary(&events),
                [
                    (EventKind::Put, b"c".to_vec(), t.revision),
                    (EventKind::Delete, b"a".to_vec(), t.revision),
                    (EventKind::Delete, b"b".to_vec(), t.revision),
                    (EventKind::Put, b"d".to_vec(), t.revision),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn events_carry_the_whole_record_and_the_previous_one_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    store.lease_grant(7, 60).unwrap(); // a grant takes no revision
    let r2 = store.put(b"k", b"1").unwrap();
    let with = store
        .watch(b"k", WatchOptions::new().start_revision(r2).prev_kv(true))
        .unwrap();
    let without = store
        .watch(b"k", WatchOptions::new().start_revision(r2))
        .unwrap();
    let options = PutOptions {
        lease: 7,
        prev_kv: false,
    };
    let r3 = store.put_with(b"k", b"2", options).unwrap().revision;
    let r4 = store.delete_range(b"k").unwrap().revision;
    let v1 = KeyValue {
        key: b"k".to_vec(),
        create_revision: r2,
        mod_revision: r2,
        version: 1,
        value: b"1".to_vec(),
        lease: 0,
    };
    let v2 = KeyValue {
        mod_revision: r3,
        version: 2,
        value: b"2".to_vec(),
        lease: 7,
        ..v1.clone()
    };
    let gone = KeyValue {
        key: b"k".to_vec(),
        mod_revision: r4,
        ..KeyValue::default()
    };
    let put = |kv: &KeyValue, prev: Option<&KeyValue>| Event {
        kind: EventKind::Put,
        kv: kv.clone(),
        prev_kv: prev.cloned(),
    };
    assert_eq!(
        events_up_to(&with, r4),
        [
            put(&v1, None),
            put(&v2, Some(&v1)),
            Event {
                kind: EventKind::Delete,
                kv: gone.clone(),
                prev_kv: Some(v2.clone()),
            }
        ]
    );
    let plain = events_up_to(&without, r4);
    assert!(plain.iter().all(|e| e.prev_kv.is_none()));
    assert_eq!(plain[1].kv, v2);
    assert_eq!(plain[2].kv, gone);
}

#[test]
fn filters_drop_puts_or_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let no_puts = store
        .watch(b"k", WatchOptions::new().filter_puts(true))
        .unwrap();
    let no_deletes = store
        .watch(b"k", WatchOptions::new().filter_deletes(true))
        .unwrap();
    let r_put = store.put(b"k", b"1").unwrap();
    let r_del = store.delete_range(b"k").unwrap().revision;
    let kinds = |w: &Watcher| -> Vec<(EventKind, i64)> {
        events_up_to(w, r_del)
            .iter()
            .map(|e| (e.kind, e.kv.mod_revision))
            .collect()
    };
    assert_eq!(kinds(&no_puts), [(EventKind::Delete, r_del)]);
    assert_eq!(kinds(&no_deletes), [(EventKind::Put, r_put)]);
}

#[test]
fn a_start_revision_below_the_compacted_one_is_refused_with_the_compact_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    for i in 0..4 {
        store.put(b"k", &[i]).unwrap();
    }
    store.compact(4).unwrap();
    for start in [1, 3] {
        let err = store
            .watch(b"k", WatchOptions::new().start_revision(start))
            .unwrap_err();
        assert!(
            matches!(err, Error::Compacted { requested, compacted: 4 } if requested == start),
            "{err:?}"
        );
    }
    let w = store
        .watch(b"k", WatchOptions::new().start_revision(5))
        .unwrap();
    assert_eq!(
        summary(&events_up_to(&w, 5)),
        [(EventKind::Put, b"k".to_vec(), 5)]
    );
}

/// What broke: a watch from exactly the compacted revision was refused, where etcd serves it
/// (its `chooseAll` ends only a watcher with `minRev < compactRev`): every record of the
/// compacted revision is still readable, a delete's tombstone too, so the server had to read
/// that revision's puts itself and lost its deletes.
#[test]
fn a_watch_from_exactly_the_compacted_revision_gets_that_revisions_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let r_a = store.put(b"a", b"1").unwrap();
    store.put(b"b", b"1").unwrap();
    let r_put = store
        .txn()
        .then([Op::put(b"a", b"2"), Op::delete_range(b"b")])
        .commit()
        .unwrap()
        .revision;
    let r_later = store.put(b"a", b"3").unwrap();
    store.compact(r_put).unwrap();
    assert!(matches!(
        store.watch(KeyRange::all(), WatchOptions::new().start_revision(r_a)),
        Err(Error::Compacted { .. })
    ));
    let w = store
        .watch(KeyRange::all(), WatchOptions::new().start_revision(r_put))
        .unwrap();
    assert_eq!(
        summary(&events_up_to(&w, r_later)),
        [
            (EventKind::Put, b"a".to_vec(), r_put),
            (EventKind::Delete, b"b".to_vec(), r_put),
            (EventKind::Put, b"a".to_vec(), r_later),
        ]
    );
    // A watcher left behind at exactly the compacted revision goes on from there too.
    let slow = store
        .watch(KeyRange::all(), WatchOptions::new().buffer(1))
        .unwrap();
    let r_next = store.put(b"c", b"1").unwrap(); // buffered
    let r_last = store.put(b"c", b"2").unwrap(); // the buffer is full: left behind here
    store.compact(r_last).unwrap();
    assert_eq!(
        summary(&events_up_to(&slow, r_last)),
        [
            (EventKind::Put, b"c".to_vec(), r_next),
            (EventKind::Put, b"c".to_vec(), r_last),
        ]
    );
}

/// What would break: the shared receive must deliver what the owned one does (the same events,
/// previous records included), with one copy of each event's bytes for every watcher.
#[test]
fn shared_events_equal_the_owned_ones_and_share_their_bytes_between_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let options = || WatchOptions::new().prev_kv(true);
    let owned = store.watch(KeyRange::prefix(b"k"), options()).unwrap();
    let shared = [
        store.watch(KeyRange::prefix(b"k"), options()).unwrap(),
        store.watch(KeyRange::all(), options()).unwrap(),
    ];
    store.put(b"k1", b"1").unwrap();
    store.put(b"k1", b"2").unwrap();
    let last = store.delete_range(b"k1").unwrap().revision;
    let want = events_up_to(&owned, last);
    assert_eq!(want.len(), 3);
    let received: Vec<Vec<SharedEvent>> = shared
        .iter()
        .map(|w| {
            let mut got = Vec::new();
            while got.len() < want.len() {
                match w.recv_timeout_shared(LONG).unwrap() {
                    Some(SharedResponse::Events { events, .. }) => got.extend(events),
                    other => panic!("events expected, got {other:?}"),
                }
            }
            got
        })
        .collect();
    for got in &received {
        let as_owned: Vec<Event> = got.iter().map(SharedEvent::to_event).collect();
        assert_eq!(as_owned, want);
    }
    for (a, b) in received[0].iter().zip(&received[1]) {
        assert!(std::ptr::eq(a.kv(), b.kv()), "one record for both watchers");
        assert_eq!((a.kind(), a.prev_kv()), (b.kind(), b.prev_kv()));
    }
}

/// What would break: the batch receive must deliver what the owned one does (the same events,
/// previous records included) while lending each revision's events as the store holds them, one
/// record for every watcher.
#[test]
fn batched_events_equal_the_owned_ones_and_lend_one_record_to_every_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let options = || WatchOptions::new().prev_kv(true);
    let owned = store.watch(KeyRange::prefix(b"k"), options()).unwrap();
    let batched = [
        store.watch(KeyRange::prefix(b"k"), options()).unwrap(),
        store.watch(KeyRange::all(), options()).unwrap(),
    ];
    store.put(b"k1", b"1").unwrap();
    store
        .txn()
        .then([Op::put(b"k1", b"2"), Op::put(b"k2", b"1")])
        .commit()
        .unwrap();
    let last = store.delete_range(b"k1").unwrap().revision;
    let want = events_up_to(&owned, last);
    assert_eq!(want.len(), 4);
    let received: Vec<Vec<(EventKind, *const KeyValue, Event)>> = batched
        .iter()
        .map(|w| {
            let mut got = Vec::new();
            while got.len() < want.len() {
                match w.recv_timeout_batch(LONG).unwrap() {
                    Some(BatchResponse::Events(batch)) => {
                        assert_eq!(batch.len(), batch.iter().count());
                        assert!(!batch.is_empty());
                        let last_rev = batch.iter().last().unwrap().kv().mod_revision;
                        assert_eq!(batch.revision(), last_rev);
                        got.extend(
                            batch
                                .iter()
                                .map(|e| (e.kind(), std::ptr::from_ref(e.kv()), e.to_event())),
                        );
                    }
                    other => panic!("events expected, got {other:?}"),
                }
            }
            got
        })
        .collect();
    for got in &received {
        let as_owned: Vec<Event> = got.iter().map(|(_, _, e)| e.clone()).collect();
        assert_eq!(as_owned, want);
    }
    for (a, b) in received[0].iter().zip(&received[1]) {
        assert!(std::ptr::eq(a.1, b.1), "one record for both watchers");
    }
}

/// What would break: watchers of one range share one feed, read at their own cursors; a member
/// that reads nothing must overflow alone (and catch up, in order, with nothing twice), while a
/// member that keeps reading gets every event straight from the feed.
#[test]
fn a_slow_watcher_sharing_a_range_with_a_fast_one_overflows_alone_and_catches_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let options = || WatchOptions::new().buffer(3);
    let fast = store.watch(KeyRange::prefix(b"k"), options()).unwrap();
    let slow = store.watch(KeyRange::prefix(b"k"), options()).unwrap();
    let mut want = Vec::new();
    let mut got_fast = Vec::new();
    for i in 0..40u32 {
        let key = format!("k{}", i % 5).into_bytes();
        let rev = store.put(&key, &i.to_le_bytes()).unwrap();
        want.push((EventKind::Put, key, rev));
        store.put(b"other", b"v").unwrap();
        got_fast.extend(events_up_to(&fast, rev));
    }
    assert_eq!(summary(&got_fast), want);
    let got_slow = events_up_to(&slow, store.current_revision());
    assert_eq!(summary(&got_slow), want);
}

/// What would break: `try_recv` answers "nothing" without a lock when nothing changed since its
/// last look; it must still see at once a progress request, a release and a catch-up that came
/// before it in its own thread.
#[test]
fn try_recv_sees_at_once_a_request_a_put_and_a_catch_up_that_came_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let first = store.put(b"k0", b"v").unwrap();
    let w = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new())
        .unwrap();
    assert_eq!(w.try_recv().unwrap(), None);
    w.request_progress();
    assert_eq!(
        w.try_recv().unwrap(),
        Some(WatchResponse::Progress { revision: first })
    );
    assert_eq!(w.try_recv().unwrap(), None);
    let rev = store.put(b"k1", b"v").unwrap();
    match w.try_recv().unwrap() {
        Some(WatchResponse::Events { revision, .. }) => assert_eq!(revision, rev),
        other => panic!("the put's event: {other:?}"),
    }
    assert_eq!(w.try_recv().unwrap(), None);
    let past = store
        .watch(
            KeyRange::prefix(b"k"),
            WatchOptions::new().start_revision(first),
        )
        .unwrap();
    match past.try_recv().unwrap() {
        Some(WatchResponse::Events { events, .. }) => assert_eq!(events.len(), 2),
        other => panic!("the catch-up's events: {other:?}"),
    }
    assert_eq!(past.try_recv().unwrap(), None);
}

#[test]
fn a_future_start_revision_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let w = store
        .watch(b"k", WatchOptions::new().start_revision(4))
        .unwrap();
    store.put(b"k", b"2").unwrap();
    store.put(b"k", b"3").unwrap();
    assert_eq!(w.try_recv().unwrap(), None);
    store.put(b"k", b"4").unwrap();
    assert_eq!(
        summary(&events_up_to(&w, 4)),
        [(EventKind::Put, b"k".to_vec(), 4)]
    );
}

/// Holds every sync while `held` is set, so a group commit is visible and not durable.
#[derive(Debug, Default)]
struct SyncGate {
    held: Mutex<bool>,
    released: Condvar,
    waiting: AtomicUsize,
}

impl Watch for Arc<SyncGate> {
    fn before(&self, call: StorageCall) {
        if call == StorageCall::Sync {
            let mut held = self.held.lock().unwrap();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while *held {
                held = self.released.wait(held).unwrap();
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What broke (by design, had the hub sent events on commit): with group commit a put is visible
/// to readers before its sync, and a watcher that saw it then would see a revision a crash can
/// still take back.
#[test]
fn a_watcher_sees_no_commit_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::create(&dir.path().join("kv.folio")).unwrap();
    let gate = Arc::new(SyncGate::default());
    let storage = Watched {
        sim,
        watch: gate.clone(),
    };
    let db = folio::Db::builder()
        .durability(Durability::Group)
        .create_with(Box::new(storage))
        .unwrap();
    let store = Store::with_db(db).unwrap();
    let w = store.watch(b"k", WatchOptions::new()).unwrap();
    *gate.held.lock().unwrap() = true;
    let writer = {
        let store = store.clone();
        thread::spawn(move || store.put(b"k", b"v").unwrap())
    };
    while gate.waiting.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
    // Visible to a reader, not yet durable: the watcher has nothing, and progress says so.
    let read = store.range(b"k", RangeOptions::current()).unwrap();
    assert_eq!(read.kvs.len(), 1);
    assert_eq!(w.try_recv().unwrap(), None);
    w.request_progress();
    assert_eq!(
        w.try_recv().unwrap(),
        Some(WatchResponse::Progress {
            revision: read.revision - 1
        })
    );
    assert_eq!(w.recv_timeout(SHORT).unwrap(), None);
    *gate.held.lock().unwrap() = false;
    gate.released.notify_all();
    let rev = writer.join().unwrap();
    assert_eq!(
        summary(&events_up_to(&w, rev)),
        [(EventKind::Put, b"k".to_vec(), rev)]
    );
}

/// What broke (by design, had the buffer been unbounded or blocking): a watcher nobody reads
/// must neither stop the writers nor lose or reorder what it missed.
#[test]
fn a_slow_watcher_holds_up_no_writer_and_catches_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let slow = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(2))
        .unwrap();
    let mut want = Vec::new();
    for i in 0..200u32 {
        let key = format!("k{:02}", i % 13).into_bytes();
        let rev = if i % 7 == 6 {
            let r = store.delete_range(key.as_slice()).unwrap();
            if r.deleted == 0 {
                continue;
            }
            want.push((EventKind::Delete, key, r.revision));
            r.revision
        } else {
            let r = store.put(&key, &i.to_le_bytes()).unwrap();
            want.push((EventKind::Put, key, r));
            r
        };
        assert!(rev > 1);
    }
    let got = events_up_to(&slow, store.current_revision());
    assert_eq!(summary(&got), want);
}

#[test]
fn a_watcher_left_behind_by_a_compaction_ends_with_the_compact_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let w = store.watch(b"k", WatchOptions::new().buffer(1)).unwrap();
    let r2 = store.put(b"k", b"1").unwrap(); // buffered
    for i in 0..5 {
        store.put(b"k", &[i]).unwrap(); // the buffer is full: left behind at 3
    }
    store.compact(5).unwrap();
    assert_eq!(store.watcher_count(), 1);
    match w.recv().unwrap() {
        WatchResponse::Events { revision, .. } => assert_eq!(revision, r2),
        other => panic!("{other:?}"),
    }
    let end = WatchResponse::Compacted {
        compact_revision: 5,
    };
    assert_eq!(w.recv().unwrap(), end);
    assert_eq!(w.try_recv().unwrap(), Some(end), "it stays ended");
    assert_eq!(store.watcher_count(), 0);
}

#[test]
fn progress_comes_on_request_and_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let rev = store.put(b"other", b"1").unwrap();
    let asked = store.watch(b"k", WatchOptions::new()).unwrap();
    assert_eq!(asked.try_recv().unwrap(), None, "no unasked progress");
    asked.request_progress();
    assert_eq!(
        asked.recv().unwrap(),
        WatchResponse::Progress { revision: rev }
    );
    let periodic = store
        .watch(
            b"k",
            WatchOptions::new().progress_notify(Some(Duration::from_millis(5))),
        )
        .unwrap();
    let rev = store.put(b"other", b"2").unwrap();
    loop {
        match periodic.recv().unwrap() {
            WatchResponse::Progress { revision } if revision == rev => break,
            WatchResponse::Progress { revision } => assert!(revision < rev),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_cancelled_or_dropped_watcher_leaves_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let a = store.watch(b"k", WatchOptions::new()).unwrap();
    let b = store.watch(b"k", WatchOptions::new()).unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(store.watcher_count(), 2);
    a.cancel();
    assert_eq!(store.watcher_count(), 1);
    drop(b);
    assert_eq!(store.watcher_count(), 0);
    store.put(b"k", b"v").unwrap();
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn poll_recv_wakes_its_waker_when_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let w = store.watch(b"k", WatchOptions::new()).unwrap();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(w.poll_recv(&mut cx).is_pending());
    assert!(!flag.0.load(Ordering::SeqCst));
    let rev = store.put(b"k", b"v").unwrap();
    assert!(flag.0.load(Ordering::SeqCst), "woken by the event");
    match w.poll_recv(&mut cx) {
        Poll::Ready(Ok(WatchResponse::Events { revision, .. })) => assert_eq!(revision, rev),
        other => panic!("{other:?}"),
    }
    flag.0.store(false, Ordering::SeqCst);
    assert!(w.poll_recv(&mut cx).is_pending());
    w.request_progress();
    assert!(flag.0.load(Ordering::SeqCst), "woken by a progress request");
    assert!(matches!(
        w.poll_recv(&mut cx),
        Poll::Ready(Ok(WatchResponse::Progress { .. }))
    ));
}

/// What would break: writers leave the fan-out to the next receive, so a receiver already
/// blocked in `recv` (which will not look again by itself) would sleep through the put; a writer
/// that sees a sleeping receiver fans out and wakes it.
#[test]
fn a_receiver_blocked_in_recv_is_woken_by_a_later_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let w = Arc::new(
        store
            .watch(KeyRange::prefix(b"k"), WatchOptions::new())
            .unwrap(),
    );
    let blocked = {
        let w = w.clone();
        thread::spawn(move || {
            // A receive that nobody wakes still finds the event when its wait times out; so
            // the claim is that it returns before then (30 s against the put's milliseconds).
            let start = std::time::Instant::now();
            let got = w.recv_timeout(LONG).unwrap();
            assert!(
                start.elapsed() < LONG,
                "not woken: found the put only at the timeout"
            );
            got
        })
    };
    // Give the receiver time to find nothing and sleep (if it has not, it finds the put itself
    // and the test proves less, but passes for the right reason).
    thread::sleep(SHORT);
    let rev = store.put(b"k", b"v").unwrap();
    match blocked.join().unwrap() {
        Some(WatchResponse::Events { revision, .. }) => assert_eq!(revision, rev),
        other => panic!("the blocked receive gets the put's event, got {other:?}"),
    }
}

#[test]
fn watchers_keep_working_across_an_online_defrag_and_restart_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let store = open(&path);
    let w = store
        .watch(KeyRange::prefix(b"k"), WatchOptions::new().buffer(3))
        .unwrap();
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            let mut revs = Vec::new();
            for i in 0..300u32 {
                revs.push(
                    store
                        .put(format!("k{}", i % 17).as_bytes(), &[0; 200])
                        .unwrap(),
                );
            }
            revs
        })
    };
    store.defrag(&DefragOptions::default()).unwrap();
    let mut revs = writer.join().unwrap();
    let last = store.current_revision();
    let got: Vec<i64> = events_up_to(&w, last)
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(got, revs);
    drop(w);
    drop(store);

    let store = open(&path);
    let w = store
        .watch(
            KeyRange::prefix(b"k"),
            WatchOptions::new().start_revision(last + 1),
        )
        .unwrap();
    revs = (0..3).map(|i| store.put(b"k0", &[i]).unwrap()).collect();
    let got: Vec<i64> = events_up_to(&w, store.current_revision())
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(got, revs);
}

// ---------------------------------------------------------------------------------------------
// The model test
// ---------------------------------------------------------------------------------------------

/// Every change ever written: revision -> changes in sub order, `(key, Some(value) | None,
/// lease)`.
type History = BTreeMap<i64, Vec<Change>>;
type Change = (Vec<u8>, Option<Vec<u8>>, i64);

/// What a random write does. A revoke deletes every key attached to the lease in one revision;
/// its deletes are read back as the keys alive just before its revision and gone at it. It holds
/// `Gate` alone, so no other write or compaction runs meanwhile: the revision before stays
/// readable, and a revoke of a lease with no keys (which takes no revision) is told by the
/// current revision not moving.
#[derive(Debug)]
enum Action {
    Put,
    LeasedPut,
    Delete,
    Txn,
    Revoke,
}

/// The lease ids the model uses; each thread grants them as it needs them.
const LEASES: [i64; 3] = [11, 12, 13];

/// Held alone by a revoke, shared by every other write (to its history entry) and compaction.
type Gate = std::sync::RwLock<()>;

const KEYS: &[&[u8]] = &[
    b"a",
    b"a/1",
    b"a/2",
    b"ab",
    b"b",
    b"b/1",
    b"c",
    b"\xff",
    b"\xff\xff",
];

/// A watcher's range as the model keeps it.
#[derive(Clone, Debug)]
struct Spec {
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
}

impl Spec {
    fn random(rng: &mut SplitMix64) -> Spec {
        let key = KEYS[rng.below(KEYS.len() as u64) as usize].to_vec();
        match rng.below(4) {
            0 => Spec {
                start: Bound::Included(key.clone()),
                end: Bound::Included(key),
            },
            1 => {
                let p = key[..1].to_vec();
                let end = match p[0] {
                    0xff => Bound::Unbounded,
                    b => Bound::Excluded(vec![b + 1]),
                };
                Spec {
                    start: Bound::Included(p),
                    end,
                }
            }
            2 => {
                let end = KEYS[rng.below(KEYS.len() as u64) as usize].to_vec();
                Spec {
                    start: Bound::Included(key),
                    end: Bound::Excluded(end),
                }
            }
            _ => Spec {
                start: Bound::Unbounded,
                end: Bound::Unbounded,
            },
        }
    }

    fn key_range(&self) -> KeyRange {
        KeyRange::bounds::<[u8]>((
            self.start.as_ref().map(|v| v.as_slice()),
            self.end.as_ref().map(|v| v.as_slice()),
        ))
    }

    fn contains(&self, key: &[u8]) -> bool {
        let r = (
            self.start.as_ref().map(|v| v.as_slice()),
            self.end.as_ref().map(|v| v.as_slice()),
        );
        let empty = match (&r.0, &r.1) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        !empty && std::ops::RangeBounds::contains(&r, key)
    }
}

/// The events a watcher over `spec` from `start` must receive, in order, given `history`.
fn expected(history: &History, spec: &Spec, start: i64) -> Vec<Event> {
    let mut live = Live::new();
    let mut out = Vec::new();
    for (&rev, changes) in history {
        for (key, value, lease) in changes {
            apply(&mut live, rev, key, value.as_deref(), *lease);
            if rev < start || !spec.contains(key) {
                continue;
            }
            let (kind, kv) = match value {
                Some(_) => (EventKind::Put, live[key].clone()),
                None => (
                    EventKind::Delete,
                    KeyValue {
                        key: key.clone(),
                        mod_revision: rev,
                        ..KeyValue::default()
                    },
                ),
            };
            out.push(Event {
                kind,
                kv,
                prev_kv: None,
            });
        }
    }
    out
}

/// One watcher of the model test and what it has received.
struct Watching {
    spec: Spec,
    start: i64,
    buffer: usize,
    /// Read one time in this many, so that the lazy ones fall behind.
    patience: u64,
    watcher: Option<Watcher>,
    got: Vec<Event>,
    /// Every event up to here has been received.
    seen: i64,
    compacted: Option<i64>,
}

impl Watching {
    /// Takes one response, if one is ready; false once the watcher has ended.
    fn take(&mut self, response: WatchResponse) {
        match response {
            WatchResponse::Events { revision, events } => {
                assert!(
                    revision > self.seen,
                    "revision {revision} after {}",
                    self.seen
                );
                for e in &events {
                    assert!(e.kv.mod_revision > self.seen && e.kv.mod_revision <= revision);
                }
                self.seen = revision;
                self.got.extend(events);
            }
            WatchResponse::Progress { revision } => self.seen = self.seen.max(revision),
            WatchResponse::Compacted { compact_revision } => {
                self.compacted = Some(compact_revision);
                self.watcher = None;
            }
        }
    }

    /// Receives until every event up to `rev` has come, or the watcher ended.
    fn drain(&mut self, rev: i64) {
        while self.compacted.is_none() && self.seen < rev {
            let w = self.watcher.as_ref().expect("live");
            w.request_progress();
            let r = w.recv_timeout(LONG).unwrap().expect("a response");
            self.take(r);
        }
    }
}

/// One random write; records what it changed in `history`.
fn random_write(store: &Store, rng: &mut SplitMix64, history: &Mutex<History>, gate: &Gate) {
    let key = |rng: &mut SplitMix64| KEYS[rng.below(KEYS.len() as u64) as usize].to_vec();
    let value = |rng: &mut SplitMix64| rng.next().to_le_bytes()[..(rng.below(8) as usize)].to_vec();
    let op = |rng: &mut SplitMix64| match rng.below(3) {
        0 => Op::DeleteRange {
            range: Spec::random(rng).key_range(),
            prev_kv: true,
        },
        _ => Op::put(&key(rng), &value(rng)),
    };
    let action = match rng.below(12) {
        0..4 => Action::Put,
        4..6 => Action::LeasedPut,
        6..8 => Action::Delete,
        8..11 => Action::Txn,
        _ => Action::Revoke,
    };
    let lease = LEASES[rng.below(LEASES.len() as u64) as usize];
    let ops: Vec<Op> = match action {
        Action::Put | Action::Delete => vec![op(rng)],
        Action::Txn => (0..1 + rng.below(3)).map(|_| op(rng)).collect(),
        Action::LeasedPut => {
            match store.lease_grant(lease, 3600) {
                Ok(_) | Err(Error::LeaseExists { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            vec![Op::put_with_lease(&key(rng), &value(rng), lease)]
        }
        Action::Revoke => {
            let _alone = gate.write().unwrap();
            let before = store.current_revision();
            let revision = match store.lease_revoke(lease) {
                Err(Error::LeaseNotFound { .. }) => return,
                other => other.unwrap(),
            };
            if revision == before {
                return;
            }
            let alive = |at: i64| -> BTreeMap<Vec<u8>, ()> {
                let r = store.range(KeyRange::all(), RangeOptions::at(at)).unwrap();
                r.kvs.into_iter().map(|kv| (kv.key, ())).collect()
            };
            let after = alive(revision);
            let changes: Vec<Change> = alive(revision - 1)
                .into_keys()
                .filter(|k| !after.contains_key(k))
                .map(|k| (k, None, 0))
                .collect();
            assert!(!changes.is_empty(), "revoke at {revision} deleted nothing");
            {
                let old = history.lock().unwrap().insert(revision, changes);
                assert!(old.is_none(), "revision {revision} written twice");
            }
            return;
        }
    };
    let _shared = gate.read().unwrap();
    let result = store.txn().then(ops.clone()).commit();
    let response = match result {
        Err(Error::DuplicateKey { .. }) => return,
        // Another thread revoked the lease between the grant and the put: nothing changed.
        Err(Error::LeaseNotFound { .. }) if matches!(action, Action::LeasedPut) => return,
        other => other.unwrap(),
    };
    let mut changes = Vec::new();
    for (op, r) in ops.iter().zip(&response.responses) {
        match (op, r) {
            (
                Op::Put {
                    key,
                    value,
                    options,
                },
                OpResponse::Put(_),
            ) => changes.push((key.clone(), Some(value.clone()), options.lease)),
            (Op::DeleteRange { .. }, OpResponse::DeleteRange(d)) => {
                changes.extend(d.prev_kvs.iter().map(|kv| (kv.key.clone(), None, 0)))
            }
            other => panic!("{other:?}"),
        }
    }
    if !changes.is_empty() {
        let old = history.lock().unwrap().insert(response.revision, changes);
        assert!(
            old.is_none(),
            "revision {} written twice",
            response.revision
        );
    }
}

fn model_case(seed: u64, dir: &Path) {
    let path = dir.join(format!("model-{seed}.folio"));
    let open_store = || {
        let db = folio::Db::builder()
            .page_size(512)
            .durability(Durability::Group)
            .open(&path)
            .unwrap();
        Store::with_db(db).unwrap()
    };
    let store = open_store();
    let history = Arc::new(Mutex::new(History::new()));
    let compactions = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Gate::new(()));
    let writing = Arc::new(AtomicUsize::new(3));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (store, history, writing, gate) = (
            store.clone(),
            history.clone(),
            writing.clone(),
            gate.clone(),
        );
        threads.push(thread::spawn(move || {
            // Counted down however the thread ends, so a panic fails the test, never hangs it.
            struct Done(Arc<AtomicUsize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(writing);
            let mut rng = SplitMix64(seed ^ (t + 1).wrapping_mul(0x9e37_79b9));
            for _ in 0..60 {
                random_write(&store, &mut rng, &history, &gate);
            }
        }));
    }
    {
        // Compactions now and then, and one online defrag, while the writers run.
        let (store, compactions, writing, gate) = (
            store.clone(),
            compactions.clone(),
            writing.clone(),
            gate.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut rng = SplitMix64(seed ^ 0xc0);
            let mut defragged = false;
            let mut last = 1;
            while writing.load(Ordering::SeqCst) > 0 {
                let current = store.current_revision();
                if current >= last + 25 {
                    let at = current - rng.below(10) as i64;
                    let _shared = gate.read().unwrap();
                    store.compact(at).unwrap();
                    compactions.lock().unwrap().push(at);
                    last = at;
                }
                if !defragged && current > 60 {
                    store.defrag(&DefragOptions::default()).unwrap();
                    defragged = true;
                }
                thread::yield_now();
            }
        }));
    }
    let mut rng = SplitMix64(seed);
    let mut watching: Vec<Watching> = Vec::new();
    let mut next_watcher = 0;
    while writing.load(Ordering::SeqCst) > 0 {
        // A new watcher every dozen revisions or so, so they start all through the history.
        if watching.len() < 12 && store.current_revision() >= next_watcher {
            next_watcher = store.current_revision() + 8 + rng.below(10) as i64;
            let (current, compacted) = (store.current_revision(), store.compacted_revision());
            let low = compacted.max(2) - 1;
            let start = low + rng.below((current + 3 - low) as u64) as i64;
            let spec = Spec::random(&mut rng);
            let buffer = 1 + rng.below(3) as usize;
            let options = WatchOptions::new().start_revision(start).buffer(buffer);
            match store.watch(spec.key_range(), options) {
                Ok(w) => watching.push(Watching {
                    spec,
                    start,
                    buffer,
                    patience: [3, 300][rng.below(2) as usize],
                    watcher: Some(w),
                    got: Vec::new(),
                    seen: start - 1,
                    compacted: None,
                }),
                Err(Error::Compacted {
                    requested,
                    compacted,
                }) => assert!(requested == start && start <= compacted),
                Err(e) => panic!("{e}"),
            }
        }
        for w in &mut watching {
            if rng.below(w.patience) == 0
                && let Some(watcher) = &w.watcher
                && let Some(r) = watcher.try_recv().unwrap()
            {
                w.take(r);
            }
        }
        thread::yield_now();
    }
    for t in threads {
        t.join().unwrap();
    }
    let last = store.current_revision();
    for w in &mut watching {
        w.drain(last);
    }
    assert!(store.db().check().unwrap().is_clean());

    // Reopen, and restart each watcher from the last revision it saw + 1.
    for w in &mut watching {
        w.watcher = None;
    }
    drop(store);
    let store = open_store();
    for w in &mut watching {
        if w.compacted.is_some() {
            continue;
        }
        let options = WatchOptions::new()
            .start_revision(w.seen + 1)
            .buffer(w.buffer);
        match store.watch(w.spec.key_range(), options) {
            Ok(watcher) => w.watcher = Some(watcher),
            Err(Error::Compacted { compacted, .. }) => w.compacted = Some(compacted),
            Err(e) => panic!("{e}"),
        }
    }
    for _ in 0..30 {
        random_write(&store, &mut rng, &history, &gate);
        for w in &mut watching {
            if rng.below(w.patience) == 0
                && let Some(watcher) = &w.watcher
                && let Some(r) = watcher.try_recv().unwrap()
            {
                w.take(r);
            }
        }
    }
    let last = store.current_revision();
    let history = history.lock().unwrap();
    let compactions = compactions.lock().unwrap();
    println!(
        "case {seed}: {} revisions, compactions at {compactions:?}, {} watchers, {} ended compacted, {} events received",
        history.len(),
        watching.len(),
        watching.iter().filter(|w| w.compacted.is_some()).count(),
        watching.iter().map(|w| w.got.len()).sum::<usize>()
    );
    for (i, w) in watching.iter_mut().enumerate() {
        w.drain(last);
        let want = expected(&history, &w.spec, w.start);
        let context = format!(
            "seed {seed}, watcher {i} over {:?} from {} (buffer {}), compacted {:?}",
            w.spec, w.start, w.buffer, w.compacted
        );
        match w.compacted {
            None => assert_eq!(w.got, want, "{context}"),
            Some(c) => {
                // Ended at a compaction that passed its position: it had every event before.
                assert!(compactions.contains(&c) && c >= w.seen, "{context}");
                let before: Vec<Event> = want
                    .iter()
                    .filter(|e| e.kv.mod_revision <= w.seen)
                    .cloned()
                    .collect();
                assert_eq!(w.got, before, "{context}");
            }
        }
    }
}

/// Issue 14, Done-when 1 (watch): see the file's header.
#[test]
fn watchers_receive_exactly_the_history_of_their_range_from_their_start() {
    let seed = std::env::var("FOLIO_WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(random_seed);
    let cases: u64 = std::env::var("FOLIO_WATCH_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    println!("watch model: seed {seed}, {cases} cases (rerun with FOLIO_WATCH_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    for case in 0..cases {
        model_case(seed.wrapping_add(case), dir.path());
    }
}
