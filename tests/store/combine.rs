//! The threat: combining concurrent writes into one database commit (`mvcc::combine`) loses a
//! write, applies one twice, answers a writer with another's response, lets one writer's failure
//! fail or change the writes beside it, orders revisions against real time, or sends watchers
//! events out of order.
//!
//! Several threads run random puts (some with a lease that does not exist, which fails only when
//! run, so a combined commit holding one must be undone and each write run again alone), deletes,
//! transactions with compares whose branches read, put and delete, and refused writes (a key too
//! long, a branch that writes a key twice), each on its own seeded stream. Every answer is kept with
//! when the call began and ended. Then the answers are checked against a plain model, replayed
//! in revision order:
//! - the writes that made a revision hold every revision from 1 to the last, once each, and each
//!   answer is the one the model gives for that write on the state before it;
//! - a write that made no revision answers as the model does at its revision, without a change;
//! - a call that ended before another began has the lower revision (real-time order);
//! - every error is the one the request must get, and changes nothing;
//! - a read at every revision, after a reopen too, equals the model; `check` is clean;
//! - a watcher made before the writes received every change, in order.
//!
//! Rerunning: each case prints its seed; `FOLIO_SEED=<seed> cargo test --test store combine`
//! reruns it, `FOLIO_COMBINE_CASES=<n>` runs more.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::mvcc::{self, Live};
use crate::common::random_seed;
use crate::common::rng::SplitMix64;
use folio::{
    Compare, DeleteResponse, Durability, Error, EventKind, KeyRange, KeyValue, Op, OpResponse,
    PutOptions, PutResponse, RangeOptions, RangeResponse, Store, TxnResponse, WatchOptions,
    WatchResponse,
};

const PAGE_SIZE: u32 = 512;
const CASES: u64 = 12;
const KEYS: &[&[u8]] = &[b"a", b"b", b"ba", b"bb", b"c", b"d\xff"];
/// A lease no one granted: a put with it fails when it runs.
const MISSING_LEASE: i64 = 999;

/// One call a thread makes.
#[derive(Clone, Debug)]
enum Call {
    /// `put_with` or `delete_range_with` (never a read).
    One(TOp),
    Txn {
        compares: Vec<Cmp>,
        then: Vec<TOp>,
        otherwise: Vec<TOp>,
    },
}

/// The keys a delete or a read names (`KeyRange`'s bounds are the crate's own).
#[derive(Clone, Copy, Debug)]
enum Span {
    Key(&'static [u8]),
    Prefix(&'static [u8]),
}

impl Span {
    fn range(self) -> KeyRange {
        match self {
            Span::Key(k) => KeyRange::key(k),
            Span::Prefix(p) => KeyRange::prefix(p),
        }
    }

    fn contains(self, key: &[u8]) -> bool {
        match self {
            Span::Key(k) => key == k,
            Span::Prefix(p) => key.starts_with(p),
        }
    }
}

/// One operation of a transaction's branch.
#[derive(Clone, Debug)]
enum TOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        options: PutOptions,
    },
    Delete {
        span: Span,
        prev_kv: bool,
    },
    Read(Span),
}

impl TOp {
    fn op(&self) -> Op {
        match self {
            TOp::Put {
                key,
                value,
                options,
            } => Op::Put {
                key: key.clone(),
                value: value.clone(),
                options: options.clone(),
            },
            TOp::Delete { span, prev_kv } => Op::DeleteRange {
                range: span.range(),
                prev_kv: *prev_kv,
            },
            TOp::Read(span) => Op::range(span.range(), RangeOptions::current()),
        }
    }
}

/// A compare of a key's number (`Compare`'s fields are the crate's own).
#[derive(Clone, Copy, Debug)]
enum Cmp {
    /// The key's version equals this (0: missing).
    VersionIs(&'static [u8], i64),
    /// The key's mod revision is below this.
    ModifiedBefore(&'static [u8], i64),
    /// The key's create revision is above this.
    CreatedAfter(&'static [u8], i64),
    /// The key's lease is this.
    LeaseIs(&'static [u8], i64),
}

impl Cmp {
    fn compare(self) -> Compare {
        match self {
            Cmp::VersionIs(k, n) => Compare::version(k).eq(n),
            Cmp::ModifiedBefore(k, n) => Compare::mod_revision(k).lt(n),
            Cmp::CreatedAfter(k, n) => Compare::create_revision(k).gt(n),
            Cmp::LeaseIs(k, n) => Compare::lease(k).eq(n),
        }
    }

    fn holds(self, live: &Live) -> bool {
        let get = |k: &[u8]| live.get(k);
        match self {
            Cmp::VersionIs(k, n) => get(k).map_or(0, |kv| kv.version) == n,
            Cmp::ModifiedBefore(k, n) => get(k).map_or(0, |kv| kv.mod_revision) < n,
            Cmp::CreatedAfter(k, n) => get(k).map_or(0, |kv| kv.create_revision) > n,
            Cmp::LeaseIs(k, n) => get(k).map_or(0, |kv| kv.lease) == n,
        }
    }
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Put(PutResponse),
    Delete(DeleteResponse),
    Txn(TxnResponse),
    /// An error, by kind: `KeyLength`, `DuplicateKey` or `LeaseNotFound`.
    Refused(&'static str),
}

impl Answer {
    /// The revision it answered with and whether it made it (`None`: an error).
    fn revision(&self) -> Option<(i64, bool)> {
        match self {
            Answer::Put(p) => Some((p.revision, true)),
            Answer::Delete(d) => Some((d.revision, d.deleted > 0)),
            Answer::Txn(t) => Some((t.revision, t.responses.iter().any(writes))),
            Answer::Refused(_) => None,
        }
    }
}

fn writes(r: &OpResponse) -> bool {
    match r {
        OpResponse::Put(_) => true,
        OpResponse::DeleteRange(d) => d.deleted > 0,
        OpResponse::Range(_) => false,
    }
}

/// One call as it ran: which thread, what, when, and its answer.
#[derive(Debug)]
struct Ran {
    thread: usize,
    call: Call,
    began: Instant,
    ended: Instant,
    /// The store's revision just before the call and just after it.
    window: (i64, i64),
    answer: Answer,
}

fn refused(e: Error) -> Answer {
    Answer::Refused(match e {
        Error::KeyLength { .. } => "KeyLength",
        Error::DuplicateKey { .. } => "DuplicateKey",
        Error::LeaseNotFound { .. } => "LeaseNotFound",
        other => panic!("an unexpected error: {other}"),
    })
}

fn run(store: &Store, call: &Call) -> Answer {
    let result = match call.clone() {
        Call::One(TOp::Put {
            key,
            value,
            options,
        }) => store.put_with(&key, &value, options).map(Answer::Put),
        Call::One(TOp::Delete { span, prev_kv }) => store
            .delete_range_with(span.range(), prev_kv)
            .map(Answer::Delete),
        Call::One(TOp::Read(_)) => unreachable!("a call of one operation writes"),
        Call::Txn {
            compares,
            then,
            otherwise,
        } => store
            .txn()
            .when(compares.into_iter().map(Cmp::compare))
            .then(then.iter().map(TOp::op))
            .otherwise(otherwise.iter().map(TOp::op))
            .commit()
            .map(Answer::Txn),
    };
    result.unwrap_or_else(refused)
}

// ---------------------------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------------------------

fn pick(rng: &mut SplitMix64, from: &[&'static [u8]]) -> &'static [u8] {
    from[rng.below(from.len() as u64) as usize]
}

fn lease(rng: &mut SplitMix64) -> i64 {
    match rng.below(10) {
        0 => MISSING_LEASE,
        1 | 2 => 1,
        3 => 2,
        _ => 0,
    }
}

fn span(rng: &mut SplitMix64) -> Span {
    let key = pick(rng, KEYS);
    match rng.below(3) {
        0 => Span::Prefix(key),
        _ => Span::Key(key),
    }
}

fn op(rng: &mut SplitMix64, value: &[u8]) -> TOp {
    match rng.below(4) {
        0 | 1 => TOp::Put {
            key: pick(rng, KEYS).to_vec(),
            value: value.to_vec(),
            options: PutOptions {
                lease: lease(rng),
                prev_kv: rng.below(2) == 0,
            },
        },
        2 => TOp::Delete {
            span: span(rng),
            prev_kv: rng.below(2) == 0,
        },
        _ => TOp::Read(span(rng)),
    }
}

fn compare(rng: &mut SplitMix64) -> Cmp {
    let key = pick(rng, KEYS);
    let n = rng.below(40) as i64;
    match rng.below(4) {
        0 => Cmp::VersionIs(key, 0),
        1 => Cmp::ModifiedBefore(key, n),
        2 => Cmp::CreatedAfter(key, n),
        _ => Cmp::LeaseIs(key, 1),
    }
}

fn call(rng: &mut SplitMix64, value: &[u8], key_len_max: usize) -> Call {
    match rng.below(20) {
        0..=7 => Call::One(TOp::Put {
            key: pick(rng, KEYS).to_vec(),
            value: value.to_vec(),
            options: PutOptions {
                lease: lease(rng),
                prev_kv: rng.below(2) == 0,
            },
        }),
        8 => Call::One(TOp::Put {
            key: vec![b'k'; key_len_max + 1],
            value: value.to_vec(),
            options: PutOptions::default(),
        }),
        9..=11 => Call::One(TOp::Delete {
            span: span(rng),
            prev_kv: rng.below(2) == 0,
        }),
        _ => {
            let branch = |rng: &mut SplitMix64| -> Vec<TOp> {
                (0..rng.below(4)).map(|_| op(rng, value)).collect()
            };
            Call::Txn {
                compares: (0..rng.below(3)).map(|_| compare(rng)).collect(),
                then: branch(rng),
                otherwise: branch(rng),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// The keys in `span` in `live`, in key order.
fn in_span(live: &Live, span: Span) -> Vec<KeyValue> {
    live.values()
        .filter(|kv| span.contains(&kv.key))
        .cloned()
        .collect()
}

/// etcd's rule for one branch: each key is put at most once, and never inside a delete range.
fn duplicates(ops: &[TOp]) -> bool {
    let puts: Vec<&[u8]> = ops
        .iter()
        .filter_map(|op| match op {
            TOp::Put { key, .. } => Some(key.as_slice()),
            _ => None,
        })
        .collect();
    let twice = puts.iter().enumerate().any(|(i, k)| puts[..i].contains(k));
    let inside = ops.iter().any(|op| match op {
        TOp::Delete { span, .. } => puts.iter().any(|k| span.contains(k)),
        _ => false,
    });
    twice || inside
}

/// A branch being applied by the model at main revision `main`.
struct Apply {
    main: i64,
    live: Live,
    events: Vec<(EventKind, KeyValue)>,
}

impl Apply {
    fn wrote(&self) -> bool {
        !self.events.is_empty()
    }

    /// Applies one operation; `Err` is the error that fails the whole write.
    fn op(&mut self, op: &TOp) -> Result<OpResponse, &'static str> {
        Ok(match op {
            TOp::Put {
                key,
                value,
                options,
            } => {
                if options.lease == MISSING_LEASE {
                    return Err("LeaseNotFound");
                }
                let prev = mvcc::apply(&mut self.live, self.main, key, Some(value), options.lease);
                self.events
                    .push((EventKind::Put, self.live[key.as_slice()].clone()));
                OpResponse::Put(PutResponse {
                    revision: 0,
                    prev_kv: prev.filter(|_| options.prev_kv),
                })
            }
            TOp::Delete { span, prev_kv } => {
                let doomed = in_span(&self.live, *span);
                for kv in &doomed {
                    mvcc::apply(&mut self.live, self.main, &kv.key, None, 0);
                    let tombstone = KeyValue {
                        key: kv.key.clone(),
                        mod_revision: self.main,
                        ..KeyValue::default()
                    };
                    self.events.push((EventKind::Delete, tombstone));
                }
                OpResponse::DeleteRange(DeleteResponse {
                    revision: 0,
                    deleted: doomed.len() as u64,
                    prev_kvs: if *prev_kv { doomed } else { Vec::new() },
                })
            }
            TOp::Read(span) => {
                let kvs = in_span(&self.live, *span);
                OpResponse::Range(RangeResponse {
                    count: kvs.len() as u64,
                    kvs,
                    more: false,
                    revision: 0,
                })
            }
        })
    }

    /// The revision a write answers with: its own if it wrote, else the one it read.
    fn revision(&self) -> i64 {
        if self.wrote() {
            self.main
        } else {
            self.main - 1
        }
    }
}

/// What the model answers for `call` on `live` (the state at revision `at`), the state after it,
/// and the events it makes (each change's record, as a watcher gets it).
fn model(call: &Call, live: &Live, at: i64) -> (Answer, Live, Vec<(EventKind, KeyValue)>) {
    let mut a = Apply {
        main: at + 1,
        live: live.clone(),
        events: Vec::new(),
    };
    let answer = match call {
        Call::One(TOp::Put { key, .. }) if key.len() > KEY_LEN_MAX => Err("KeyLength"),
        Call::One(op) => a.op(op).map(|r| match r {
            OpResponse::Put(mut p) => {
                p.revision = a.revision();
                Answer::Put(p)
            }
            OpResponse::DeleteRange(mut d) => {
                d.revision = a.revision();
                Answer::Delete(d)
            }
            OpResponse::Range(_) => unreachable!("a call of one operation writes"),
        }),
        Call::Txn {
            then, otherwise, ..
        } if duplicates(then) || duplicates(otherwise) => Err("DuplicateKey"),
        Call::Txn {
            compares,
            then,
            otherwise,
        } => {
            let succeeded = compares.iter().all(|c| c.holds(live));
            let ops = if succeeded { then } else { otherwise };
            ops.iter()
                .map(|op| a.op(op))
                .collect::<Result<Vec<_>, _>>()
                .map(|mut responses| {
                    let revision = a.revision();
                    for r in &mut responses {
                        match r {
                            OpResponse::Put(p) => p.revision = revision,
                            OpResponse::DeleteRange(d) => d.revision = revision,
                            OpResponse::Range(g) => g.revision = revision,
                        }
                    }
                    Answer::Txn(TxnResponse {
                        succeeded,
                        revision,
                        responses,
                    })
                })
        }
    };
    match answer {
        Ok(answer) => (answer, a.live, a.events),
        Err(e) => (Answer::Refused(e), live.clone(), Vec::new()),
    }
}

/// The key length limit at [`PAGE_SIZE`] (checked against the store's in `case`).
const KEY_LEN_MAX: usize = folio::limits::key_len_max(PAGE_SIZE);

// ---------------------------------------------------------------------------------------------
// The case
// ---------------------------------------------------------------------------------------------

fn open(path: &Path, durability: Durability) -> Store {
    let db = folio::Db::builder()
        .page_size(PAGE_SIZE)
        .durability(durability)
        .open(path)
        .expect("open the database");
    Store::with_db(db).expect("open the store")
}

fn case(seed: u64) {
    let mut rng = SplitMix64(seed);
    let threads = 2 + rng.below(7) as usize;
    let calls = 30 + rng.below(50) as usize;
    let durability = if rng.below(4) == 0 {
        Durability::Immediate
    } else {
        Durability::Group
    };
    let context = format!(
        "seed {seed} ({threads} threads, {calls} calls each, {durability:?}; rerun with \
         FOLIO_SEED={seed})"
    );
    eprintln!("combine: {context}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("combine.folio");
    let store = Arc::new(open(&path, durability));
    assert_eq!(store.db().key_len_max(), KEY_LEN_MAX, "{context}");
    for id in [1, 2] {
        store.lease_grant(id, 3600).expect("grant a lease");
    }
    let base = store.current_revision();
    let watcher = store
        .watch(KeyRange::all(), WatchOptions::new().buffer(1 << 20))
        .expect("watch");

    let ran: Vec<Ran> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let store = store.clone();
                let mut rng = SplitMix64(seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9));
                scope.spawn(move || {
                    (0..calls)
                        .map(|i| {
                            let value = format!("t{thread}.{i}").into_bytes();
                            let call = call(&mut rng, &value, KEY_LEN_MAX);
                            let began = Instant::now();
                            let from = store.current_revision();
                            let answer = run(&store, &call);
                            let to = store.current_revision();
                            Ran {
                                thread,
                                call,
                                began,
                                ended: Instant::now(),
                                window: (from, to),
                                answer,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a writer thread panicked"))
            .collect()
    });

    // Every revision was made by exactly one call.
    let last = store.current_revision();
    let mut makers: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, r) in ran.iter().enumerate() {
        if let Some((revision, true)) = r.answer.revision()
            && let Some(other) = makers.insert(revision, i)
        {
            panic!(
                "{context}: revision {revision} answered to two writes: {:?} and {:?}",
                ran[other], r
            );
        }
    }
    assert_eq!(
        makers.keys().copied().collect::<Vec<_>>(),
        (base + 1..=last).collect::<Vec<_>>(),
        "{context}: the revisions writes answered with"
    );

    // Replay in revision order; each answer is the model's for the state before it.
    // `states[i]` is the state at revision `base + i`.
    let state = |states: &[Live], revision: i64| states[(revision - base) as usize].clone();
    let mut states: Vec<Live> = vec![Live::new()];
    let mut events = Vec::new();
    for (&revision, &i) in &makers {
        let (want, after, made) = model(&ran[i].call, &state(&states, revision - 1), revision - 1);
        assert_eq!(ran[i].answer, want, "{context}: the answer to {:?}", ran[i]);
        states.push(after);
        events.extend(made);
    }
    // A call that made no revision answers as the model does at its revision, and changes nothing.
    for r in &ran {
        match r.answer.revision() {
            Some((revision, false)) => {
                assert!(
                    (base..=last).contains(&revision),
                    "{context}: {r:?} answered with a revision never made"
                );
                let before = state(&states, revision);
                let (want, after, _) = model(&r.call, &before, revision);
                assert_eq!(r.answer, want, "{context}: the answer to {r:?}");
                assert_eq!(after, before, "{context}: {r:?} changes nothing");
            }
            Some((_, true)) => {}
            None => {
                // A refused call: the model refuses it on a state the store was in while the
                // call ran (a missing lease refuses only the branch that runs).
                let (from, to) = r.window;
                let refused =
                    (from..=to).any(|at| model(&r.call, &state(&states, at), at).0 == r.answer);
                assert!(
                    refused,
                    "{context}: the model does not refuse {r:?} at revisions {from}..={to}"
                );
            }
        }
    }
    // Real time: a call that ended before another began has no higher revision.
    for a in &ran {
        for b in &ran {
            if let (Some((ra, _)), Some((rb, wb))) = (a.answer.revision(), b.answer.revision())
                && a.ended < b.began
            {
                assert!(
                    if wb { ra < rb } else { ra <= rb },
                    "{context}: {a:?} ended before {b:?} began"
                );
            }
        }
    }
    // Each thread's calls took increasing revisions too (the same rule, within one thread).
    for t in 0..threads {
        let revs: Vec<i64> = ran
            .iter()
            .filter(|r| r.thread == t)
            .filter_map(|r| r.answer.revision().map(|(rev, _)| rev))
            .collect();
        assert!(
            revs.is_sorted(),
            "{context}: thread {t}'s revisions {revs:?}"
        );
    }

    // The watcher got every change, in order.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < events.len() && Instant::now() < deadline {
        match watcher.recv_timeout(Duration::from_secs(1)).expect("watch") {
            Some(WatchResponse::Events { events, .. }) => {
                got.extend(events.into_iter().map(|e| (e.kind, e.kv)));
            }
            Some(other @ WatchResponse::Compacted { .. }) => panic!("{context}: {other:?}"),
            Some(WatchResponse::Progress { .. }) | None => {}
        }
    }
    assert_eq!(got, events, "{context}: the events watched");

    // Reads at every revision equal the model, before and after a reopen.
    let check_reads = |store: &Store, when: &str| {
        for (i, live) in states.iter().enumerate() {
            let at = base + i as i64;
            let read = store
                .range(KeyRange::all(), RangeOptions::at(at))
                .expect("read");
            let want: Vec<KeyValue> = live.values().cloned().collect();
            assert_eq!(read.kvs, want, "{context}: read at {at} {when}");
        }
    };
    check_reads(&store, "before the reopen");
    drop(watcher);
    drop(Arc::into_inner(store).expect("the last handle"));
    let store = open(&path, durability);
    check_reads(&store, "after the reopen");
    let report = store.db().check().expect("check runs");
    assert!(report.is_clean(), "{context}: {report}");
}

#[test]
fn combined_writes_answer_and_apply_as_if_each_ran_alone_in_revision_order() {
    if let Some(seed) = std::env::var("FOLIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        case(seed);
        return;
    }
    let cases = std::env::var("FOLIO_COMBINE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let mut seeds = SplitMix64(random_seed());
    for _ in 0..cases {
        case(seeds.next());
    }
}
