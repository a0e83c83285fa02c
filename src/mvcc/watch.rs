//! Watch: a stream of the changes to a key range, from a start revision, in revision order.
//!
//! Two paths feed a watcher, as in etcd's watchable store:
//! - **synced**: the writer of revision R queues R's events (under the writer lock, so the queue
//!   is in revision order) and, once R is durable, raises the hub's durable mark; the next
//!   *pump* releases every queued revision up to that mark: it appends each revision's matching
//!   events once to the [`feed`] of every **group** they match (the watchers of one range with
//!   the same filters and buffer share a group; groups are found in a range index, [`index`]),
//!   and each synced watcher reads its group's feed at its own cursor in its receive;
//! - **unsynced**: a watcher that starts in the past, or that fell more than a buffer behind its
//!   feed, reads what it missed in its own `recv` (no thread of the hub's) and rejoins the synced
//!   set once it has read up to the released watermark: from the hub's [`log`] of the newest
//!   released revisions (shared events, no copy) while that reaches back far enough, else from
//!   the `mvcc.key` tree by revision range.
//!
//! Events are shared, not copied, from the writer to the receive: a revision's events are one
//! `Arc` that the queue, the log and every feed hold; [`Watcher::recv`] copies each event out
//! as an owned [`Event`], [`Watcher::recv_shared`] hands out [`SharedEvent`]s that point at it,
//! and [`Watcher::recv_batch`] an [`EventBatch`] that holds one `Arc` per revision.
//!
//! Who pumps: the first receive to look (any watcher's `recv`, `try_recv` or `poll_recv`), so
//! that the fan-out runs on the consumers' threads, not on the writers' commit path. A writer
//! pumps only when a receiver sleeps (blocked, or an async waker waiting: someone must wake it)
//! or when more than [`RELEASE_BACKLOG_REVISIONS`] revisions wait (no receiver comes; the queue
//! must stay short).
//!
//! Invariants:
//! 1. `HubState::durable` is the newest revision released; every revision at or below it is durable
//!    and in the key tree. It only grows, and only under the hub lock, together with the appends
//!    of the revisions it passes to the feeds; so for a synced watcher, "nothing past its cursor"
//!    means "no event up to `durable`".
//! 2. A watcher's `Cursor::next` is the first revision it has not been given (returned, or in its
//!    inbox). A synced watcher reads every entry of its group's feed from its cursor whose
//!    revision is at or above `next`, and moves `next` past the last; revisions below `next` are
//!    never given again (nothing twice). The cursor is the receive's own (under
//!    `Watcher::receiving`); no pump touches it.
//! 3. A release never blocks on a watcher: a feed keeps about a buffer's worth of events and
//!    drops the oldest (feed invariant 2); a synced watcher whose cursor the feed no longer holds
//!    has **overflowed**, becomes unsynced at `next` and catches up (from the log or the tree).
//!    Its first catch-up step reads a buffer's worth from the log even below the compacted
//!    revision (what a bounded buffer would have held for it, as etcd's does); later steps do
//!    not.
//! 4. A catch-up from the log reads it under the hub lock from `next`, which the log covers
//!    (log invariant 2), after checking `next >= compacted` as below (but for invariant 3's
//!    first step). A catch-up from the tree reads a snapshot taken under the store's state lock,
//!    after checking `next >= compacted`: compaction raises `compacted` before deleting anything
//!    (store invariant 3) and keeps every record at the compacted revision itself (each is its
//!    key's newest there, a tombstone too), so every record at or above `next` is in the
//!    snapshot. If `next < compacted` (etcd's `minRev < compactRev`), the watcher ends with
//!    [`WatchResponse::Compacted`].
//! 5. A catch-up hands its events to the inbox and, if it read up to `durable`, sets the
//!    watcher's cursor to its feed's end and flips it to synced, all under the hub lock: the feed
//!    then holds nothing at or below `durable` past the cursor, and nothing above it that the
//!    catch-up read. A receive delivers the inbox before the feed.
//! 6. `WatchHub::released` mirrors `durable` and is raised after the appends, so a synced
//!    receive that holds its feed's lock and finds nothing past its cursor has had every event
//!    up to `released`.
//! 7. No receiver sleeps past a release: a receive pumps before it looks; one about to sleep
//!    first counts itself in `WatchHub::sleepers` and its group's `Group::sleepers`, then looks at
//!    the durable mark and its feed once more, while a writer raises the mark before it reads
//!    `WatchHub::sleepers`, and a pump appends to a feed before it reads the group's sleepers
//!    under the feed lock (all `SeqCst`). So either the receiver sees the new mark or the new
//!    entry, or the writer and then the pump see the sleeper, and the pump wakes it.
//!
//! Lock order: (1) a watcher's `receiving`, (2) the hub lock, (3) a watcher's inbox, (4) a
//! group's feed; a pump takes a feed and then, once it is released, the inboxes of the sleeping
//! members. `WatchHub::queue` is a leaf (taken under the store's writer lock, or under the hub
//! lock by a pump). The store's state lock is never held while taking any of them. Async wakers
//! are woken after every lock is released.
//!
//! Leases: a lease revoke is a delete through the store's ordinary write path, so its events are
//! queued and released as any other delete's (`StoreWrite::delete_range` records them).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::limits::WATCH_BUFFER_EVENTS_DEFAULT;
use crate::mvcc::revision::{KeyValue, RecordHead, Revision};
use crate::mvcc::store::{KEY_TREE, Store, missing};
use crate::mvcc::types::{KeyRange, RangeOptions};

#[cfg(test)]
mod catch_up_tests;
mod feed;
mod index;
mod log;
#[cfg(test)]
mod pump_tests;

use feed::Feed;
use index::{RangeIndex, contains};
use log::EventLog;

/// How to watch: where to start, what to send, how much to buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    start_revision: i64,
    prev_kv: bool,
    filter_puts: bool,
    filter_deletes: bool,
    progress_every: Option<Duration>,
    buffer: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions::new()
    }
}

impl WatchOptions {
    /// Watch from now (the current revision + 1), sending puts and deletes without their
    /// previous records, with a buffer of
    /// [`WATCH_BUFFER_EVENTS_DEFAULT`](crate::limits::WATCH_BUFFER_EVENTS_DEFAULT) events.
    pub fn new() -> Self {
        WatchOptions {
            start_revision: 0,
            prev_kv: false,
            filter_puts: false,
            filter_deletes: false,
            progress_every: None,
            buffer: WATCH_BUFFER_EVENTS_DEFAULT,
        }
    }

    /// Start at revision `rev` (0 or less: from now). A revision below the compacted one is
    /// refused with [`Error::Compacted`]; one in the future is waited for.
    pub fn start_revision(mut self, rev: i64) -> Self {
        self.start_revision = rev;
        self
    }

    /// Send each event's previous record (the key as it was just before the event's revision),
    /// when it exists and has not been compacted away.
    pub fn prev_kv(mut self, on: bool) -> Self {
        self.prev_kv = on;
        self
    }

    /// Drop put events.
    pub fn filter_puts(mut self, on: bool) -> Self {
        self.filter_puts = on;
        self
    }

    /// Drop delete events.
    pub fn filter_deletes(mut self, on: bool) -> Self {
        self.filter_deletes = on;
        self
    }

    /// Send a [`WatchResponse::Progress`] whenever this long passes with nothing else sent
    /// (`None`: never unasked).
    pub fn progress_notify(mut self, every: Option<Duration>) -> Self {
        self.progress_every = every;
        self
    }

    /// Buffer at most this many events (at least 1) before the watcher falls behind and catches
    /// up from the key tree; a single revision with more events is still buffered whole.
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }
}

/// What an event did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// A put or a delete.
    pub kind: EventKind,
    /// The record after the change; for a delete, only `key` and `mod_revision` (the delete's
    /// revision) are set, as in etcd.
    pub kv: KeyValue,
    /// The record before the change, with [`WatchOptions::prev_kv`], if the key existed and that
    /// record has not been compacted away.
    pub prev_kv: Option<KeyValue>,
}

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchResponse {
    /// The events of one or more whole revisions, in order; `revision` is the last one's.
    Events {
        /// The revision of the last event.
        revision: i64,
        /// The events, in revision order.
        events: Vec<Event>,
    },
    /// The watcher has been sent every event up to `revision`.
    Progress {
        /// Every durable revision up to here has been sent.
        revision: i64,
    },
    /// Compaction removed revisions this watcher had not read yet; it ends here (every later
    /// receive returns this again).
    Compacted {
        /// The store's compacted revision.
        compact_revision: i64,
    },
}

/// One change to one key, sharing its key and value with every watcher that receives it; what
/// [`Watcher::recv_shared`] and its siblings return. [`SharedEvent::to_event`] makes an owned
/// [`Event`].
#[derive(Clone, Debug)]
pub struct SharedEvent {
    raw: Arc<RawEvent>,
    prev_kv: Option<KeyValue>,
}

impl SharedEvent {
    /// A put or a delete.
    pub fn kind(&self) -> EventKind {
        self.raw.kind
    }

    /// The record after the change; for a delete, only `key` and `mod_revision` are set, as in
    /// [`Event::kv`].
    pub fn kv(&self) -> &KeyValue {
        &self.raw.kv
    }

    /// The record before the change, as in [`Event::prev_kv`].
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        self.prev_kv.as_ref()
    }

    /// This event with its own copy of the bytes.
    pub fn to_event(&self) -> Event {
        Event {
            kind: self.raw.kind,
            kv: self.raw.kv.clone(),
            prev_kv: self.prev_kv.clone(),
        }
    }
}

/// What a watcher receives from [`Watcher::recv_shared`] and its siblings: a
/// [`WatchResponse`] whose events share their bytes.
#[derive(Clone, Debug)]
pub enum SharedResponse {
    /// The events of one or more whole revisions, in order; `revision` is the last one's.
    Events {
        /// The revision of the last event.
        revision: i64,
        /// The events, in revision order.
        events: Vec<SharedEvent>,
    },
    /// As [`WatchResponse::Progress`].
    Progress {
        /// Every durable revision up to here has been sent.
        revision: i64,
    },
    /// As [`WatchResponse::Compacted`].
    Compacted {
        /// The store's compacted revision.
        compact_revision: i64,
    },
}

/// What a watcher receives from [`Watcher::recv_batch`] and its siblings: a [`WatchResponse`]
/// whose events stay where the store keeps them.
#[derive(Clone, Debug)]
pub enum BatchResponse {
    /// The events of one or more whole revisions, in order.
    Events(EventBatch),
    /// As [`WatchResponse::Progress`].
    Progress {
        /// Every durable revision up to here has been sent.
        revision: i64,
    },
    /// As [`WatchResponse::Compacted`].
    Compacted {
        /// The store's compacted revision.
        compact_revision: i64,
    },
}

/// The events of one or more whole revisions, in revision order, as the store holds them: one
/// shared reference per revision (shared with every watcher of the revision), none per event.
/// [`EventBatch::iter`] lends [`EventRef`]s.
#[derive(Clone, Debug)]
pub struct EventBatch {
    revisions: Vec<(i64, Events)>,
    /// With [`WatchOptions::prev_kv`], each event's previous record, in order; else empty.
    prev_kvs: Vec<Option<KeyValue>>,
    len: usize,
}

impl EventBatch {
    /// The revision of the last event.
    pub fn revision(&self) -> i64 {
        self.revisions.last().map_or(0, |(r, _)| *r)
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event (a receive never returns such a batch).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events, in revision order.
    pub fn iter(&self) -> impl Iterator<Item = EventRef<'_>> + '_ {
        self.revisions
            .iter()
            .flat_map(|(_, events)| events.iter())
            .enumerate()
            .map(|(i, raw)| EventRef {
                raw,
                prev_kv: self.prev_kvs.get(i).and_then(Option::as_ref),
            })
    }
}

/// One event of an [`EventBatch`], borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    raw: &'a RawEvent,
    prev_kv: Option<&'a KeyValue>,
}

impl<'a> EventRef<'a> {
    /// A put or a delete.
    pub fn kind(&self) -> EventKind {
        self.raw.kind
    }

    /// The record after the change; for a delete, only `key` and `mod_revision` are set, as in
    /// [`Event::kv`].
    pub fn kv(&self) -> &'a KeyValue {
        &self.raw.kv
    }

    /// The record before the change, as in [`Event::prev_kv`].
    pub fn prev_kv(&self) -> Option<&'a KeyValue> {
        self.prev_kv
    }

    /// This event with its own copy of the bytes.
    pub fn to_event(&self) -> Event {
        Event {
            kind: self.raw.kind,
            kv: self.raw.kv.clone(),
            prev_kv: self.prev_kv.cloned(),
        }
    }
}

/// What a receive found, before it becomes a [`WatchResponse`] or a [`SharedResponse`].
enum Delivery {
    Events(Vec<(i64, Events)>),
    Progress(i64),
    Compacted(i64),
}

/// One change as the writer records it.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl RawEvent {
    /// A put of `kv`.
    pub fn put(kv: KeyValue) -> RawEvent {
        RawEvent {
            kind: EventKind::Put,
            kv,
        }
    }

    /// A delete of `key` at revision `main`.
    pub fn delete(key: Vec<u8>, main: i64) -> RawEvent {
        RawEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key,
                mod_revision: main,
                ..KeyValue::default()
            },
        }
    }
}

/// A revision's events (or a watcher's share of them): shared, so that a watcher that wants
/// every event of a revision costs a reference count, not an allocation.
type Events = Arc<[Arc<RawEvent>]>;

/// The store's watchers and the events queued for them.
#[derive(Debug)]
pub(crate) struct WatchHub {
    /// Revisions committed but not yet released, oldest first.
    queue: Mutex<VecDeque<(i64, Events)>>,
    hub: Mutex<HubState>,
    /// `HubState::durable`, readable without the hub lock (written under it).
    released: AtomicI64,
    /// The newest revision known durable, raised by each writer after its sync; the revisions
    /// above `released` and up to it wait in `queue` for a pump.
    durable: AtomicI64,
    /// Receivers asleep: blocked in a receive, or with an async waker registered and not polled
    /// since (each counts once, while its `Inbox::sleeping` is set).
    sleepers: AtomicUsize,
}

/// Released-but-not-fanned-out revisions past which a writer fans them out itself, so that the
/// queue stays short when no receiver comes to do it.
const RELEASE_BACKLOG_REVISIONS: i64 = 1024;

/// The bytes of released events the hub keeps in memory (its [`EventLog`]) while watchers are
/// open, so that a watcher that fell behind by less catches up from memory, not from the key tree.
const EVENT_LOG_BYTES: usize = 8 << 20;

#[derive(Debug)]
struct HubState {
    durable: i64,
    next_id: u64,
    /// The watchers registered in `index`.
    watchers: usize,
    /// The watchers' groups, by range (the range itself is kept by each [`Watcher`]).
    index: RangeIndex<Arc<Group>>,
    /// The newest released revisions, for the catch-ups; kept only while watchers are open.
    log: EventLog,
}

/// The watchers of one range with the same filters and buffer: the pump appends each released
/// revision's matching events once to the group's [`Feed`], and every member reads them there at
/// its own cursor (so the fan-out costs one append per group, not one per watcher).
#[derive(Debug)]
struct Group {
    puts: bool,
    deletes: bool,
    buffer: usize,
    feed: Mutex<GroupFeed>,
    /// The feed's end, readable without its lock (written under it, after each append).
    end: AtomicU64,
    /// Members asleep in a receive (each counts once, while its `Inbox::sleeping` is set).
    sleepers: AtomicUsize,
}

#[derive(Debug)]
struct GroupFeed {
    feed: Feed,
    /// The watchers of this group, for waking the sleeping ones.
    members: Vec<Arc<Shared>>,
}

impl Group {
    /// Whether the filters let `kind` through.
    fn wants_kind(&self, kind: EventKind) -> bool {
        match kind {
            EventKind::Put => self.puts,
            EventKind::Delete => self.deletes,
        }
    }

    /// Appends a released revision's matching events to the feed (invariant 3: whoever falls
    /// more than a buffer behind overflows, nobody is waited for) and wakes the members that
    /// sleep.
    fn append(&self, revision: i64, events: &Events, wakers: &mut Vec<Waker>) {
        let sleeping = {
            let mut g = self.feed.lock();
            g.feed.push(revision, events.clone());
            self.end.store(g.feed.end(), Ordering::Release);
            // Read under the feed lock: a receiver counts itself, then looks at the feed
            // (invariant 7).
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                g.members.clone()
            } else {
                Vec::new()
            }
        };
        for member in sleeping {
            let mut inbox = member.inbox.lock();
            if inbox.sleeping {
                wakers.extend(member.notify(&mut inbox));
            }
        }
    }
}

/// What a watcher and the hub share.
#[derive(Debug)]
struct Shared {
    id: u64,
    inbox: Mutex<Inbox>,
    /// Whether the inbox holds something for the receive (events, a progress request, the
    /// compacted end); written under the inbox lock, read without it by `try_recv`'s fast path.
    pending: AtomicBool,
    ready: Condvar,
}

/// Where a watcher's receive stands; owned by the receive (under `Watcher::receiving`).
#[derive(Debug)]
struct Cursor {
    /// The first revision this watcher has not been given (invariant 2).
    next: i64,
    /// Whether it reads its group's feed (else it catches up, from `next`).
    synced: bool,
    /// The first entry of its group's feed it has not read, while synced.
    seq: u64,
    /// It fell more than a buffer behind its feed and has not caught up a step since: its
    /// next step reads a buffer's worth from the log even below the compacted revision, the
    /// events a bounded buffer would have held for it (invariant 3).
    overflowed: bool,
}

#[derive(Debug)]
struct Inbox {
    /// Events read by a catch-up, delivered before anything from the feed.
    batches: VecDeque<(i64, Events)>,
    progress_requested: bool,
    last_sent: Instant,
    compacted: Option<i64>,
    waker: Option<Waker>,
    /// Whether this watcher's receiver counts in `WatchHub::sleepers`.
    sleeping: bool,
}

impl Shared {
    /// Publishes whether `inbox` (this watcher's, locked) holds something for the receive.
    fn mark_pending(&self, inbox: &Inbox) {
        let pending =
            inbox.progress_requested || inbox.compacted.is_some() || !inbox.batches.is_empty();
        self.pending.store(pending, Ordering::Release);
    }

    /// Wakes a blocked receive; returns the async waker to wake once every lock is released
    /// (a waker may poll the watcher at once, which takes the hub lock and the inbox).
    #[must_use]
    fn notify(&self, inbox: &mut Inbox) -> Option<Waker> {
        self.ready.notify_all();
        inbox.waker.take()
    }
}

impl WatchHub {
    /// A hub for a store whose every revision up to `durable` is durable.
    pub fn new(durable: i64) -> WatchHub {
        WatchHub {
            queue: Mutex::new(VecDeque::new()),
            released: AtomicI64::new(durable),
            durable: AtomicI64::new(durable),
            sleepers: AtomicUsize::new(0),
            hub: Mutex::new(HubState {
                durable,
                next_id: 1,
                watchers: 0,
                index: RangeIndex::default(),
                log: EventLog::new(durable + 1, EVENT_LOG_BYTES),
            }),
        }
    }

    /// Queues the events of `revision`, which is committed and visible but maybe not durable.
    /// Called under the store's writer lock, so revisions queue in order.
    pub fn queue(&self, revision: i64, events: Vec<RawEvent>) {
        let events = events.into_iter().map(Arc::new).collect();
        let mut q = self.queue.lock();
        debug_assert!(q.back().is_none_or(|(r, _)| *r < revision));
        q.push_back((revision, events));
    }

    /// Records that every revision up to `durable` is durable. The fan-out of those revisions
    /// is left to the next receive (invariant 7), unless a receiver sleeps or the backlog has
    /// grown past [`RELEASE_BACKLOG_REVISIONS`]: then this writer does it.
    pub fn release(&self, durable: i64) {
        self.durable.fetch_max(durable, Ordering::SeqCst);
        let backlog = durable - self.released.load(Ordering::Acquire);
        if self.sleepers.load(Ordering::SeqCst) > 0 || backlog > RELEASE_BACKLOG_REVISIONS {
            self.pump();
        }
    }

    /// Releases every queued revision up to the durable mark to the synced watchers; does
    /// nothing (two atomic loads) when there is nothing to release.
    fn pump(&self) {
        if self.durable.load(Ordering::SeqCst) <= self.released.load(Ordering::Acquire) {
            return;
        }
        let mut hub = self.hub.lock();
        let durable = self.durable.load(Ordering::SeqCst);
        if durable <= hub.durable {
            return; // another pump released it while we waited for the lock
        }
        let ready: Vec<(i64, Events)> = {
            let mut q = self.queue.lock();
            let n = q.iter().take_while(|(r, _)| *r <= durable).count();
            q.drain(..n).collect()
        };
        let mut wakers = Vec::new();
        for (revision, events) in &ready {
            fan_out(&hub, *revision, events, &mut wakers);
            if hub.watchers > 0 {
                hub.log.push(*revision, events);
            } else {
                hub.log.clear(revision + 1);
            }
        }
        hub.durable = durable;
        self.released.store(durable, Ordering::Release);
        drop(hub);
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Appends revision `revision`'s events to the feed of every group they match, found in the range
/// index: the cost grows with the groups an event matches, not with the watchers.
fn fan_out(hub: &HubState, revision: i64, events: &Events, wakers: &mut Vec<Waker>) {
    if let [event] = &events[..] {
        // The common case, one event: every group it matches gets the revision's own `Arc`.
        hub.index.for_each_match(&event.kv.key, |g| {
            if g.wants_kind(event.kind) {
                g.append(revision, events, wakers);
            }
        });
        return;
    }
    // Several events: gather (group, event) pairs, then give each group its share in order.
    let mut pairs: Vec<(&Arc<Group>, usize)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        hub.index.for_each_match(&event.kv.key, |g| {
            if g.wants_kind(event.kind) {
                pairs.push((g, i));
            }
        });
    }
    pairs.sort_unstable_by_key(|(g, i)| (Arc::as_ptr(g), *i));
    for share in pairs.chunk_by(|a, b| Arc::ptr_eq(a.0, b.0)) {
        let g = share[0].0;
        if share.len() == events.len() {
            g.append(revision, events, wakers);
        } else {
            let mine: Events = share.iter().map(|(_, i)| events[*i].clone()).collect();
            g.append(revision, &mine, wakers);
        }
    }
}

/// A stream of the changes to a key range; see [`Store::watch`]. Dropping it cancels it.
#[derive(Debug)]
pub struct Watcher {
    id: u64,
    store: Store,
    range: KeyRange,
    shared: Arc<Shared>,
    group: Arc<Group>,
    prev_kv: bool,
    progress_every: Option<Duration>,
    /// One receive at a time, and where it stands.
    receiving: Mutex<Cursor>,
    /// The cursor's `seq` while synced, `u64::MAX` while not: what `try_recv`'s fast path
    /// compares with the group's end (written only by the receive, under `receiving`).
    synced_at: AtomicU64,
}

/// How long a receive may wait.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    Until(Instant),
    Never,
}

impl Wait {
    /// Whether a receive that finds nothing sleeps: it blocks, or it leaves an async waker.
    fn may_sleep(self, has_waker: bool) -> bool {
        match self {
            Wait::Forever => true,
            Wait::Until(t) => Instant::now() < t,
            Wait::Never => has_waker,
        }
    }
}

impl Store {
    /// Watches `range` (a key, a prefix or any bounds) for changes. Events come in revision
    /// order, every event of a revision in one response, and only once their revision is
    /// durable. A watcher whose buffer fills falls behind and catches up from the key tree
    /// inside its own receives: it never holds up a writer.
    ///
    /// Fails with [`Error::Compacted`] when the start revision is below the compacted one; the
    /// compacted revision itself is still readable, so a watch can start there (as etcd's).
    /// A watcher keeps its store open until it is dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// use folio::{EventKind, KeyRange, Store, WatchOptions, WatchResponse};
    ///
    /// let store = Store::open(dir.path().join("kv.folio"))?;
    /// let first = store.put(b"/pods/a", b"v1")?;
    /// store.delete_range(b"/pods/a")?;
    ///
    /// // From a past revision: the watcher catches up from the key tree.
    /// let watcher = store.watch(KeyRange::prefix(b"/pods/"), WatchOptions::new().start_revision(first))?;
    /// let mut seen = Vec::new();
    /// while let Some(response) = watcher.recv_timeout(Duration::from_millis(100))? {
    ///     match response {
    ///         WatchResponse::Events { events, .. } => seen.extend(events.into_iter().map(|e| e.kind)),
    ///         WatchResponse::Progress { .. } => {}
    ///         WatchResponse::Compacted { compact_revision } => panic!("compacted at {compact_revision}"),
    ///     }
    /// }
    /// assert_eq!(seen, [EventKind::Put, EventKind::Delete]);
    ///
    /// // Below the compacted revision, watching fails (as etcd's does).
    /// store.compact(store.current_revision())?;
    /// let err = store.watch(b"/pods/a", WatchOptions::new().start_revision(first)).unwrap_err();
    /// assert!(matches!(err, folio::Error::Compacted { .. }));
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn watch(&self, range: impl Into<KeyRange>, options: WatchOptions) -> Result<Watcher> {
        let range = range.into();
        let (current, compacted) = {
            let s = self.inner.state.read();
            (s.current, s.compacted)
        };
        let start = if options.start_revision > 0 {
            options.start_revision
        } else {
            current + 1
        };
        if start < compacted {
            return Err(Error::Compacted {
                requested: start,
                compacted,
            });
        }
        let mut hub = self.inner.watch.hub.lock();
        let id = hub.next_id;
        hub.next_id += 1;
        let shared = Arc::new(Shared {
            id,
            inbox: Mutex::new(Inbox {
                batches: VecDeque::new(),
                progress_requested: false,
                last_sent: Instant::now(),
                compacted: None,
                waker: None,
                sleeping: false,
            }),
            pending: AtomicBool::new(false),
            ready: Condvar::new(),
        });
        let (puts, deletes) = (!options.filter_puts, !options.filter_deletes);
        let buffer = options.buffer.max(1);
        let same = |g: &Arc<Group>| g.puts == puts && g.deletes == deletes && g.buffer == buffer;
        let group = match hub.index.find(&range, same) {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new(Group {
                    puts,
                    deletes,
                    buffer,
                    feed: Mutex::new(GroupFeed {
                        feed: Feed::new(buffer),
                        members: Vec::new(),
                    }),
                    end: AtomicU64::new(0),
                    sleepers: AtomicUsize::new(0),
                });
                hub.index.insert(&range, g.clone());
                g
            }
        };
        let seq = {
            let mut g = group.feed.lock();
            g.members.push(shared.clone());
            g.feed.end()
        };
        let synced_at = AtomicU64::new(if start > hub.durable { seq } else { u64::MAX });
        let cursor = Cursor {
            next: start,
            synced: start > hub.durable,
            seq,
            overflowed: false,
        };
        hub.watchers += 1;
        drop(hub);
        Ok(Watcher {
            id,
            store: self.clone(),
            range,
            shared,
            group,
            prev_kv: options.prev_kv,
            progress_every: options.progress_every,
            receiving: Mutex::new(cursor),
            synced_at,
        })
    }
}

impl Store {
    /// How many watchers are open on this store (dropped and cancelled ones, and those that
    /// ended compacted, are not counted).
    pub fn watcher_count(&self) -> usize {
        self.inner.watch.hub.lock().watchers
    }
}

impl Watcher {
    /// This watcher's id, unique within its store while the store is open.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The first revision this watcher has not given: it has handed out every event of its
    /// range before this revision, and none from it on. A watch started here on another copy
    /// of the same history (a replica's store after a snapshot replaced it) goes on with
    /// nothing missed and nothing repeated. Waits for a receive running on another thread.
    pub fn next_revision(&self) -> i64 {
        self.receiving.lock().next
    }

    /// Waits for the next response.
    pub fn recv(&self) -> Result<WatchResponse> {
        loop {
            if let Some(d) = self.next(Wait::Forever, None)? {
                return self.owned(d);
            }
        }
    }

    /// Waits at most `d` for the next response.
    pub fn recv_timeout(&self, d: Duration) -> Result<Option<WatchResponse>> {
        let next = self.next(Wait::Until(Instant::now() + d), None)?;
        next.map(|d| self.owned(d)).transpose()
    }

    /// The next response if one is ready (a catch-up read from the key tree counts as ready).
    pub fn try_recv(&self) -> Result<Option<WatchResponse>> {
        let next = self.next(Wait::Never, None)?;
        next.map(|d| self.owned(d)).transpose()
    }

    /// As [`recv`](Watcher::recv), with events that share their bytes with the store's other
    /// watchers instead of copies: for a consumer that encodes or filters events and does not
    /// keep them, this saves a copy of every key and value per watcher.
    pub fn recv_shared(&self) -> Result<SharedResponse> {
        loop {
            if let Some(d) = self.next(Wait::Forever, None)? {
                return self.shared_response(d);
            }
        }
    }

    /// As [`recv_timeout`](Watcher::recv_timeout), with shared events; see
    /// [`recv_shared`](Watcher::recv_shared).
    pub fn recv_timeout_shared(&self, d: Duration) -> Result<Option<SharedResponse>> {
        let next = self.next(Wait::Until(Instant::now() + d), None)?;
        next.map(|d| self.shared_response(d)).transpose()
    }

    /// As [`try_recv`](Watcher::try_recv), with shared events; see
    /// [`recv_shared`](Watcher::recv_shared).
    pub fn try_recv_shared(&self) -> Result<Option<SharedResponse>> {
        let next = self.next(Wait::Never, None)?;
        next.map(|d| self.shared_response(d)).transpose()
    }

    /// As [`recv`](Watcher::recv), with the events left where the store keeps them: for a
    /// consumer that reads events and does not keep them, the cheapest receive (one shared
    /// reference per revision, none per event, and no copy).
    pub fn recv_batch(&self) -> Result<BatchResponse> {
        loop {
            if let Some(d) = self.next(Wait::Forever, None)? {
                return self.batch_response(d);
            }
        }
    }

    /// As [`recv_timeout`](Watcher::recv_timeout), with a batch; see
    /// [`recv_batch`](Watcher::recv_batch).
    pub fn recv_timeout_batch(&self, d: Duration) -> Result<Option<BatchResponse>> {
        let next = self.next(Wait::Until(Instant::now() + d), None)?;
        next.map(|d| self.batch_response(d)).transpose()
    }

    /// As [`try_recv`](Watcher::try_recv), with a batch; see
    /// [`recv_batch`](Watcher::recv_batch).
    pub fn try_recv_batch(&self) -> Result<Option<BatchResponse>> {
        let next = self.next(Wait::Never, None)?;
        next.map(|d| self.batch_response(d)).transpose()
    }

    /// The next response for async code: `Pending` registers `cx`'s waker, which is woken when
    /// events arrive or progress is requested. Periodic progress notifications are sent when
    /// the watcher is polled after they fall due; an async caller that wants them on time polls
    /// on its own timer as well.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<WatchResponse>> {
        match self.next(Wait::Never, Some(cx)) {
            Ok(Some(d)) => Poll::Ready(self.owned(d)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Asks for a [`WatchResponse::Progress`]: it is sent once every event up to the durable
    /// revision has been (so after any catch-up).
    pub fn request_progress(&self) {
        let mut inbox = self.shared.inbox.lock();
        inbox.progress_requested = true;
        self.shared.mark_pending(&inbox);
        let waker = self.shared.notify(&mut inbox);
        drop(inbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Stops watching (dropping the watcher does the same).
    pub fn cancel(self) {}

    /// Whether a receive that does not wait would find nothing, known without a lock: nothing
    /// to pump, synced with nothing past its cursor, nothing in its inbox, no periodic progress.
    /// (A receive that races a pump may miss what the pump appends, as it would a moment
    /// earlier; one that follows a pump, a request or a release in its own thread sees it.)
    fn idle(&self) -> bool {
        let hub = &self.store.inner.watch;
        self.progress_every.is_none()
            && hub.durable.load(Ordering::SeqCst) <= hub.released.load(Ordering::Acquire)
            && self.synced_at.load(Ordering::Relaxed) == self.group.end.load(Ordering::Acquire)
            && !self.shared.pending.load(Ordering::Acquire)
    }

    fn next(&self, wait: Wait, mut cx: Option<&mut Context<'_>>) -> Result<Option<Delivery>> {
        if matches!(wait, Wait::Never) && cx.is_none() && self.idle() {
            return Ok(None);
        }
        // One receive at a time: it owns the cursor, and a catch-up moves it.
        let mut cur = self.receiving.lock();
        let hub = &self.store.inner.watch;
        loop {
            // The first receiver to look fans out what writers have released (invariant 7).
            hub.pump();
            let mut inbox = self.shared.inbox.lock();
            if inbox.sleeping {
                inbox.sleeping = false;
                hub.sleepers.fetch_sub(1, Ordering::SeqCst);
                self.group.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            if let Some(c) = inbox.compacted {
                return Ok(Some(Delivery::Compacted(c)));
            }
            if !inbox.batches.is_empty() {
                let batches: Vec<_> = inbox.batches.drain(..).collect();
                self.shared.mark_pending(&inbox);
                self.sent(&mut inbox);
                return Ok(Some(Delivery::Events(batches)));
            }
            if !cur.synced {
                drop(inbox);
                self.catch_up(&mut cur)?;
                continue; // it read something, synced, or ended: look again
            }
            // Synced: what the group's feed holds past the cursor.
            let mut g = self.group.feed.lock();
            let mut batches = Vec::new();
            let read = if g.members.len() == 1 {
                g.feed.take(cur.seq, cur.next, &mut batches)
            } else {
                g.feed.read(cur.seq, cur.next, &mut batches)
            };
            let Ok(seq) = read else {
                // More than a buffer behind: catch up from `next` (invariant 3).
                drop(g);
                cur.synced = false;
                cur.overflowed = true;
                self.synced_at.store(u64::MAX, Ordering::Relaxed);
                continue;
            };
            cur.seq = seq;
            self.synced_at.store(seq, Ordering::Relaxed);
            if let Some((last, _)) = batches.last() {
                drop(g);
                cur.next = cur.next.max(last + 1);
                self.sent(&mut inbox);
                return Ok(Some(Delivery::Events(batches)));
            }
            // Synced and nothing past the cursor: nothing up to `released`, which a pump
            // raises only after appending to this feed (whose lock we hold).
            let released = hub.released.load(Ordering::Acquire);
            drop(g);
            let due = self.progress_every.map(|every| inbox.last_sent + every);
            let now = match (wait, due) {
                (Wait::Never | Wait::Forever, None) if !inbox.progress_requested => None,
                _ => Some(Instant::now()),
            };
            if inbox.progress_requested || due.zip(now).is_some_and(|(d, now)| d <= now) {
                inbox.progress_requested = false;
                self.shared.mark_pending(&inbox);
                inbox.last_sent = now.unwrap_or_else(Instant::now);
                return Ok(Some(Delivery::Progress(released)));
            }
            // About to sleep: count as a sleeper, so that writers pump and the pump wakes us from
            // now on, then look once more for a release or an append that came before they
            // could see us.
            if wait.may_sleep(cx.is_some()) {
                inbox.sleeping = true;
                hub.sleepers.fetch_add(1, Ordering::SeqCst);
                self.group.sleepers.fetch_add(1, Ordering::SeqCst);
                if hub.durable.load(Ordering::SeqCst) > hub.released.load(Ordering::SeqCst)
                    || self.group.feed.lock().feed.end() > cur.seq
                {
                    continue;
                }
            }
            let deadline = match (wait, due) {
                (Wait::Never, _) => {
                    if let Some(cx) = cx.take() {
                        inbox.waker = Some(cx.waker().clone());
                    }
                    return Ok(None);
                }
                (Wait::Forever, d) => d,
                (Wait::Until(t), d) => {
                    if now.is_none_or(|now| now >= t) {
                        return Ok(None);
                    }
                    Some(d.map_or(t, |d| d.min(t)))
                }
            };
            match deadline {
                None => self.shared.ready.wait(&mut inbox),
                Some(d) => {
                    self.shared.ready.wait_until(&mut inbox, d);
                }
            }
        }
    }

    /// Notes that events are being sent (for periodic progress).
    fn sent(&self, inbox: &mut Inbox) {
        if self.progress_every.is_some() {
            inbox.last_sent = Instant::now(); // the clock is read only when it matters
        }
    }

    /// One catch-up step for an unsynced watcher (invariants 4 and 5): reads some of what it
    /// missed into its inbox, rejoins the synced set once nothing is missing, or ends it.
    fn catch_up(&self, cur: &mut Cursor) -> Result<()> {
        let inner = &self.store.inner;
        let compacted = inner.state.read().compacted;
        let buffer = self.group.buffer;
        let (next, durable) = {
            let hub = inner.watch.hub.lock();
            let next = cur.next;
            if (next >= compacted || cur.overflowed) && hub.log.covers(next) {
                // From memory: the log holds every released revision from `next` on.
                let (batches, read_to) = hub.log.read(next, hub.durable, buffer, |e| {
                    self.group.wants_kind(e.kind) && contains(&self.range, &e.kv.key)
                });
                self.hand_over(&hub, cur, batches, read_to);
                return Ok(());
            }
            (next, hub.durable)
        };
        let (tx, compacted) = {
            let state = inner.state.read();
            (inner.db.begin_read()?, state.compacted)
        };
        if next < compacted {
            self.unregister();
            let mut inbox = self.shared.inbox.lock();
            inbox.compacted = Some(compacted);
            self.shared.mark_pending(&inbox);
            return Ok(());
        }
        // From the key tree: read whole revisions from `next` up to `durable`, about one
        // buffer's worth.
        let mut batches: Vec<(i64, Vec<Arc<RawEvent>>)> = Vec::new();
        let mut read_to = durable;
        if next <= durable {
            let tree = tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?;
            let from = Revision { main: next, sub: 0 }.encode(false);
            let to = Revision {
                main: durable + 1,
                sub: 0,
            }
            .encode(false);
            let mut count = 0;
            for entry in tree.range(from.as_slice()..to.as_slice())? {
                let (k, v) = entry?;
                let (rev, tombstone) = Revision::decode(k)?;
                let current = batches.last().map(|(r, _)| *r);
                if current != Some(rev.main) && count >= buffer {
                    read_to = rev.main - 1;
                    break;
                }
                // Filter on the record's head, read in place: most records of a narrow
                // watcher's catch-up are not its, and need no copy.
                let kind = if tombstone {
                    EventKind::Delete
                } else {
                    EventKind::Put
                };
                let head = RecordHead::decode(v)?;
                if !self.group.wants_kind(kind) || !contains(&self.range, head.key) {
                    continue;
                }
                let kv = KeyValue::decode(v, false)?;
                let event = if tombstone {
                    RawEvent::delete(kv.key, rev.main)
                } else {
                    RawEvent::put(kv)
                };
                count += 1;
                if current != Some(rev.main) {
                    batches.push((rev.main, Vec::new()));
                }
                batches
                    .last_mut()
                    .expect("pushed above")
                    .1
                    .push(Arc::new(event));
            }
        }
        let hub = inner.watch.hub.lock();
        let batches = batches.into_iter().map(|(r, e)| (r, e.into())).collect();
        self.hand_over(&hub, cur, batches, read_to);
        Ok(())
    }

    /// Ends a catch-up step (invariant 5): under the hub lock, moves `next` past `read_to`,
    /// hands the events read to the inbox, and rejoins the synced set if nothing is missing, its
    /// cursor at the feed's end (the feed holds nothing above the hub's durable mark).
    fn hand_over(
        &self,
        hub: &HubState,
        cur: &mut Cursor,
        batches: Vec<(i64, Events)>,
        read_to: i64,
    ) {
        cur.next = cur.next.max(read_to + 1);
        cur.overflowed = false;
        let mut inbox = self.shared.inbox.lock();
        inbox.batches.extend(batches);
        self.shared.mark_pending(&inbox);
        if cur.next > hub.durable {
            cur.synced = true;
            cur.seq = self.group.feed.lock().feed.end();
            self.synced_at.store(cur.seq, Ordering::Relaxed);
        }
    }

    /// Turns what a receive found into a response of owned events.
    fn owned(&self, delivery: Delivery) -> Result<WatchResponse> {
        Ok(match delivery {
            Delivery::Events(batches) => {
                let (revision, events) = self.collect(batches, |e, prev_kv| Event {
                    kind: e.kind,
                    kv: e.kv.clone(),
                    prev_kv,
                })?;
                WatchResponse::Events { revision, events }
            }
            Delivery::Progress(revision) => WatchResponse::Progress { revision },
            Delivery::Compacted(c) => WatchResponse::Compacted {
                compact_revision: c,
            },
        })
    }

    /// Turns what a receive found into a response of shared events.
    fn shared_response(&self, delivery: Delivery) -> Result<SharedResponse> {
        Ok(match delivery {
            Delivery::Events(batches) => {
                let (revision, events) = self.collect(batches, |e, prev_kv| SharedEvent {
                    raw: e.clone(),
                    prev_kv,
                })?;
                SharedResponse::Events { revision, events }
            }
            Delivery::Progress(revision) => SharedResponse::Progress { revision },
            Delivery::Compacted(c) => SharedResponse::Compacted {
                compact_revision: c,
            },
        })
    }

    /// Turns what a receive found into a response that keeps the events where they are.
    fn batch_response(&self, delivery: Delivery) -> Result<BatchResponse> {
        Ok(match delivery {
            Delivery::Events(revisions) => {
                let len = revisions.iter().map(|(_, e)| e.len()).sum();
                let mut prev_kvs = Vec::new();
                if self.prev_kv {
                    prev_kvs.reserve(len);
                    for (rev, events) in &revisions {
                        for e in events.iter() {
                            prev_kvs.push(self.previous(&e.kv.key, *rev)?);
                        }
                    }
                }
                BatchResponse::Events(EventBatch {
                    revisions,
                    prev_kvs,
                    len,
                })
            }
            Delivery::Progress(revision) => BatchResponse::Progress { revision },
            Delivery::Compacted(c) => BatchResponse::Compacted {
                compact_revision: c,
            },
        })
    }

    /// Makes one event each of buffered batches with `make`, adding previous records if asked;
    /// returns them with the last one's revision.
    fn collect<E>(
        &self,
        batches: Vec<(i64, Events)>,
        make: impl Fn(&Arc<RawEvent>, Option<KeyValue>) -> E,
    ) -> Result<(i64, Vec<E>)> {
        let revision = batches.last().map_or(0, |(r, _)| *r);
        let mut events = Vec::with_capacity(batches.iter().map(|(_, e)| e.len()).sum());
        for (rev, raw) in batches {
            for e in raw.iter() {
                let prev_kv = if self.prev_kv {
                    self.previous(&e.kv.key, rev)?
                } else {
                    None
                };
                events.push(make(e, prev_kv));
            }
        }
        Ok((revision, events))
    }

    /// `key` as it was just before revision `rev`, if it existed and is not compacted away.
    fn previous(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        match self
            .store
            .range(KeyRange::key(key), RangeOptions::at(rev - 1))
        {
            Ok(r) => Ok(r.kvs.into_iter().next()),
            Err(Error::Compacted { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Watcher {
    /// Takes this watcher out of the hub (and its group, and the group out of the index when it
    /// was the last); releases no longer reach it.
    fn unregister(&self) {
        let mut hub = self.store.inner.watch.hub.lock();
        let (removed, empty) = {
            let mut g = self.group.feed.lock();
            let before = g.members.len();
            g.members.retain(|m| m.id != self.id);
            (g.members.len() < before, g.members.is_empty())
        };
        if removed {
            hub.watchers -= 1;
            if empty {
                hub.index
                    .remove(&self.range, |g| Arc::ptr_eq(g, &self.group));
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if std::mem::take(&mut self.shared.inbox.lock().sleeping) {
            let hub = &self.store.inner.watch;
            hub.sleepers.fetch_sub(1, Ordering::SeqCst);
            self.group.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        self.unregister();
    }
}
