//! Combined writes: concurrent store writes share one database commit.
//!
//! Every commit writes its own copies of the pages it changes (a leaf, the branches above it, the
//! catalog, the freelist), so with durable single-key writes from many threads the disk time per
//! round grows with the commits in it, not with the keys. So writes are combined before they
//! reach the database:
//!
//! 1. A write queues its [`Request`]. If no writer leads, it leads; else it sleeps until its
//!    request is answered or it is told to lead. One writer leads at a time.
//! 2. The leader takes the store's writer lock and the queue (up to [`COMBINE_REQUESTS_MAX`]
//!    requests and [`COMBINE_BYTES_MAX`] bytes beyond the first), and runs each request as if it
//!    ran alone, each at the next revision, in one database commit. Before it takes the queue, it
//!    waits for the newest group commit's sync round (`txn::sync`, rule 9): its commit could not
//!    share that round anyway, and whoever comes meanwhile joins it. Then it *gathers*: it waits
//!    until every writer inside [`Store::submit`] (queued, or answered and not yet returned) has
//!    queued, or the queue holds a commit's bytes, for as long as the last sync took and at most
//!    [`JOIN_WINDOW_MAX`]. The writers that round released come back within a few wake-ups;
//!    without the wait the first of them led with the few that were back, the rest waited a whole
//!    round for the next commit, and 8 writers settled into two halves taking turns (4.3 puts per
//!    round instead of 7.8 with it, on 2 cores). A writer that leaves `submit` no longer counts,
//!    so a lone writer never waits; one that does not come back costs the leader the rest of the
//!    window. A leader that a round's join window waits for (`txn::sync`, rule 6) commits at
//!    once: the writers inside then wait for that round and cannot queue before it ends.
//! 3. If any request of a batch fails, or the commit does, nothing of the batch has taken effect
//!    ([`StoreInner::apply`]). A request that failed when run ran on the state the requests
//!    before it left, as it would have alone after them: that error is its answer, given once
//!    the rest, run together again, have committed (its outcome may depend on them). If the
//!    commit failed, each request runs again alone (the batch's size may have been the cause),
//!    unless the database is poisoned: then the first request gets the cause and the others
//!    [`Error::Poisoned`], as one after another alone would.
//! 4. The leader answers every request it took (its own is the queue's first, so always among
//!    them), lets go of the writer lock and tells the oldest queued writer to lead (or, with
//!    none queued, that no one leads). Answered writers wake at once, each on its own: each
//!    waits for its commit to be durable itself, then releases its watchers' events, as a write
//!    alone does.
//! 5. A leader that panics answers every request it took with an error and still hands over
//!    (drop guards), so no writer waits forever.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::limits::{COMBINE_BYTES_MAX, COMBINE_REQUESTS_MAX, JOIN_WINDOW_MAX};
use crate::mvcc::store::{Store, StoreInner};
use crate::mvcc::types::TxnResponse;
use crate::mvcc::write::Request;

/// The writes waiting for a leader (rule 1).
#[derive(Debug, Default)]
pub(crate) struct Combiner {
    queue: Mutex<Queue>,
    /// Told when a write is queued while a leader gathers (rule 2).
    gathered: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Arc<Pending>>,
    /// Whether a writer leads (or has been told to).
    leading: bool,
    /// Writers inside [`Store::submit`]: queued, or answered and not yet returned.
    inside: usize,
    /// Whether a leader waits for the writers inside to queue (rule 2).
    gathering: bool,
}

/// One queued write and what its writer is to do next.
#[derive(Debug)]
struct Pending {
    request: Request,
    turn: Mutex<Turn>,
    changed: Condvar,
}

#[derive(Debug)]
enum Turn {
    /// Queued: sleep.
    Wait,
    /// Lead (rule 4).
    Lead,
    /// A leader ran it.
    Answered(Result<Answer>),
    /// Its writer has taken the answer.
    Done,
}

/// A write's outcome, as [`StoreInner::apply`] gives it.
#[derive(Debug)]
struct Answer {
    response: TxnResponse,
    /// Whether it made a revision (its response's).
    wrote: bool,
    /// Its database commit, still to be made durable.
    unsynced: Option<u64>,
}

impl Pending {
    fn set(&self, turn: Turn) {
        *self.turn.lock() = turn;
        self.changed.notify_one();
    }

    fn answer(&self, answer: Result<Answer>) {
        self.set(Turn::Answered(answer));
    }

    fn is_answered(&self) -> bool {
        matches!(*self.turn.lock(), Turn::Answered(_) | Turn::Done)
    }

    /// Sleeps until told to lead (`None`) or answered.
    fn wait(&self) -> Option<Result<Answer>> {
        let mut turn = self.turn.lock();
        loop {
            match std::mem::replace(&mut *turn, Turn::Done) {
                Turn::Wait => *turn = Turn::Wait,
                Turn::Lead => {
                    *turn = Turn::Lead;
                    return None;
                }
                Turn::Answered(answer) => return Some(answer),
                Turn::Done => unreachable!("a write's answer is taken once"),
            }
            self.changed.wait(&mut turn);
        }
    }
}

impl Combiner {
    /// Queues a writer's write (rule 1); returns whether it leads now. The writer is inside
    /// until its [`Leaving`] drops.
    fn arrive(&self, pending: Arc<Pending>) -> bool {
        let mut queue = self.queue.lock();
        queue.waiting.push_back(pending);
        queue.inside += 1;
        if queue.gathering {
            self.gathered.notify_one();
        }
        !std::mem::replace(&mut queue.leading, true)
    }

    /// Waits until every writer inside [`Store::submit`] has queued its write, or the queue
    /// holds as much as one commit takes, or `window` has passed (rule 2).
    fn gather(&self, window: Duration) {
        let closes = Instant::now() + window;
        let mut queue = self.queue.lock();
        while queue.waiting.len() < queue.inside.min(COMBINE_REQUESTS_MAX)
            && queue
                .waiting
                .iter()
                .map(|p| p.request.size())
                .sum::<usize>()
                <= COMBINE_BYTES_MAX
        {
            queue.gathering = true;
            if self.gathered.wait_until(&mut queue, closes).timed_out() {
                break;
            }
        }
        queue.gathering = false;
    }
}

impl Store {
    /// Runs `request` as one write, combined with whatever other writes wait beside it; returns
    /// once it is durable.
    pub(crate) fn submit(&self, request: Request) -> Result<TxnResponse> {
        if self.inner.db.is_read_only() {
            return Err(Error::ReadOnly);
        }
        request.check(self.inner.db.page_size())?;
        let inner = &*self.inner;
        let mine = Arc::new(Pending {
            request,
            turn: Mutex::new(Turn::Wait),
            changed: Condvar::new(),
        });
        let lead_now = inner.combiner.arrive(mine.clone());
        let _leaving = Leaving(&inner.combiner);
        let answer = match lead_now {
            true => None,
            false => mine.wait(),
        };
        let answer = match answer {
            Some(answer) => answer,
            None => {
                let _hand_over = HandOver(&inner.combiner);
                let _writer = inner.writer.lock();
                // Its request is the queue's first (rule 1: it found no leader, or was told to
                // lead as the oldest), so the first batch holds it.
                lead(inner);
                debug_assert!(mine.is_answered(), "a leader's own request is in its batch");
                drop(_writer);
                drop(_hand_over);
                mine.wait().expect("answered")
            }
        }?;
        inner.settle_write(answer.unsynced, answer.wrote, answer.response.revision)?;
        Ok(answer.response)
    }
}

/// Takes a batch from the queue and runs it (rules 2 and 3); the caller holds the writer lock.
fn lead(inner: &StoreInner) {
    // A round holding its join window open for this commit goes first: the writers inside
    // that wait for that round could not queue before it ends.
    if !inner.db.inner.wait_for_round() {
        let window = inner.db.inner.last_sync().min(JOIN_WINDOW_MAX);
        inner.combiner.gather(window);
    }
    let batch = take_batch(&inner.combiner);
    let _unanswered = Unanswered(batch.clone());
    let mut refused = Vec::new();
    run_batch(inner, batch, &mut refused);
    // Only now: a refusal may depend on the writes before it in the batch, which are visible
    // from here on (rule 3).
    for (pending, e) in refused {
        pending.answer(Err(e));
    }
}

/// Runs `batch` in one commit and answers it; the requests that fail when run go to `refused`
/// (rule 3).
fn run_batch(
    inner: &StoreInner,
    mut batch: Vec<Arc<Pending>>,
    refused: &mut Vec<(Arc<Pending>, Error)>,
) {
    loop {
        let mut failed_at = None;
        let together = inner.apply(|w| {
            let mut answers = Vec::with_capacity(batch.len());
            for (i, pending) in batch.iter().enumerate() {
                let response = pending
                    .request
                    .run(w)
                    .inspect_err(|_| failed_at = Some(i))?;
                answers.push((response, w.wrote()));
                w.end_revision();
            }
            Ok(answers)
        });
        let e = match together {
            Ok(applied) => {
                for (pending, (response, wrote)) in batch.iter().zip(applied.value) {
                    pending.answer(Ok(Answer {
                        response,
                        wrote,
                        unsynced: applied.unsynced,
                    }));
                }
                return;
            }
            Err(e) => e,
        };
        match failed_at {
            // It ran on the state the requests before it left, as it would have alone after
            // them: that is its outcome. The rest run together again.
            Some(i) => {
                refused.push((batch.remove(i), e));
                if batch.is_empty() {
                    return;
                }
            }
            None if batch.len() == 1 => return batch[0].answer(Err(e)),
            // The database refuses every commit now: the first request gets the cause, as it
            // would have alone, and the others what they would have got after it.
            None if inner.db.inner.is_poisoned() => {
                let mut errors =
                    std::iter::once(e).chain(std::iter::repeat_with(|| Error::Poisoned));
                for pending in &batch {
                    pending.answer(Err(errors.next().expect("endless")));
                }
                return;
            }
            // The commit failed (a full database, say): perhaps for its size. Each alone.
            None => {
                for pending in &batch {
                    let alone = inner.apply(|w| pending.request.run(w));
                    pending.answer(alone.map(|a| Answer {
                        response: a.value,
                        wrote: a.wrote,
                        unsynced: a.unsynced,
                    }));
                }
                return;
            }
        }
    }
}

/// The queue's oldest requests, as many as one commit takes (rule 2).
fn take_batch(combiner: &Combiner) -> Vec<Arc<Pending>> {
    let mut queue = combiner.queue.lock();
    let waiting = &mut queue.waiting;
    let mut bytes = 0;
    let mut n = 0;
    while n < waiting.len().min(COMBINE_REQUESTS_MAX) {
        bytes += waiting[n].request.size();
        if n > 0 && bytes > COMBINE_BYTES_MAX {
            break;
        }
        n += 1;
    }
    waiting.drain(..n).collect()
}

/// Answers a batch's writes that are still unanswered with an error (only a leader that panics
/// leaves any: rule 5).
struct Unanswered(Vec<Arc<Pending>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        for pending in &self.0 {
            if !pending.is_answered() {
                pending.answer(Err(Error::Io(std::io::Error::other(
                    "the writer running this write beside others panicked; whether it took \
                     effect is unknown",
                ))));
            }
        }
    }
}

/// Counts a writer out of [`Store::submit`] (rule 2). A gathering leader is not told: a writer
/// that leaves usually queues its next write a moment later, and a leader woken in between
/// would take the queue without it (7.3 puts per round of 8 writers against 7.8 unwoken).
struct Leaving<'a>(&'a Combiner);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.queue.lock().inside -= 1;
    }
}

/// Tells the oldest queued writer to lead, or records that no one leads (rules 4 and 5).
struct HandOver<'a>(&'a Combiner);

impl Drop for HandOver<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        match queue.waiting.front() {
            Some(next) => next.set(Turn::Lead),
            None => queue.leading = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::types::{Compare, Op, PutOptions};

    /// Queues `requests` as writers would, with a leader at work, and returns them.
    fn queue(store: &Store, requests: Vec<Request>) -> Vec<Arc<Pending>> {
        let mut queue = store.inner.combiner.queue.lock();
        queue.leading = true;
        requests
            .into_iter()
            .map(|request| {
                let pending = Arc::new(Pending {
                    request,
                    turn: Mutex::new(Turn::Wait),
                    changed: Condvar::new(),
                });
                queue.waiting.push_back(pending.clone());
                pending
            })
            .collect()
    }

    fn pending(request: Request) -> Arc<Pending> {
        Arc::new(Pending {
            request,
            turn: Mutex::new(Turn::Wait),
            changed: Condvar::new(),
        })
    }

    #[test]
    fn a_leader_gathers_every_writer_inside_before_it_takes_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.folio")).unwrap();
        let combiner = &store.inner.combiner;
        // Two writers come back from a round: the first leads at once, the second is still
        // inside (answered, on its way out).
        let slow = Leaving(combiner);
        combiner.queue.lock().inside += 1;
        assert!(combiner.arrive(pending(put(b"a", 0))), "the first leads");
        let _first = Leaving(combiner);
        let (second, gathered, waited) = std::thread::scope(|scope| {
            let back = scope.spawn(|| {
                let give_up = Instant::now() + Duration::from_secs(10);
                while !combiner.queue.lock().gathering {
                    assert!(Instant::now() < give_up, "the leader never gathered");
                    std::thread::yield_now();
                }
                // Leaves and queues its next write while the leader gathers.
                drop(slow);
                let next = pending(put(b"b", 0));
                assert!(!combiner.arrive(next.clone()), "a leader leads");
                (next, Leaving(combiner))
            });
            let began = Instant::now();
            combiner.gather(Duration::from_secs(10));
            // What the leader would take, as it ends.
            let gathered = combiner.queue.lock().waiting.len();
            let waited = began.elapsed();
            (back.join().unwrap(), gathered, waited)
        });
        assert_eq!(gathered, 2, "the leader waited for it");
        assert!(waited < Duration::from_secs(10), "ended by the window");
        let pending: Vec<_> = combiner.queue.lock().waiting.iter().cloned().collect();
        let (answers, commits) = lead_once(&store, &pending);
        assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
        assert_eq!(commits, 1, "both writes in one commit");
        drop(second);
        assert_eq!(combiner.queue.lock().inside, 1);
    }

    #[test]
    fn a_gathering_leader_waits_no_longer_than_its_window_and_not_for_writers_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.folio")).unwrap();
        let combiner = &store.inner.combiner;
        assert!(combiner.arrive(pending(put(b"a", 0))));
        let _mine = Leaving(combiner);
        // Alone: no wait at all, whatever the window (10 s).
        let window = Duration::from_secs(10);
        let began = Instant::now();
        combiner.gather(window);
        assert!(began.elapsed() < window / 2);
        // A writer inside that never queues: the window ends the wait.
        let gone = Leaving(combiner);
        combiner.queue.lock().inside += 1;
        let began = Instant::now();
        combiner.gather(Duration::from_millis(30));
        assert!(began.elapsed() >= Duration::from_millis(30));
        assert_eq!(combiner.queue.lock().waiting.len(), 1);
        assert!(!combiner.queue.lock().gathering);
        // Once it has left, it is not waited for.
        drop(gone);
        let began = Instant::now();
        combiner.gather(window);
        assert!(began.elapsed() < window / 2);
        assert_eq!(combiner.queue.lock().inside, 1);
        // Nor while the queue holds as many bytes as one commit takes.
        let _inside = Leaving(combiner);
        combiner.queue.lock().inside += 1;
        let big = Request::one(Op::Put {
            key: b"big".to_vec(),
            value: vec![0; COMBINE_BYTES_MAX],
            options: PutOptions::default(),
        });
        combiner.arrive(pending(big));
        let _big = Leaving(combiner);
        let began = Instant::now();
        combiner.gather(window);
        assert!(began.elapsed() < window / 2);
    }

    fn put(key: &[u8], lease: i64) -> Request {
        Request::one(Op::Put {
            key: key.to_vec(),
            value: b"v".to_vec(),
            options: PutOptions {
                lease,
                prev_kv: false,
            },
        })
    }

    /// Leads once, as the writer told to lead would; returns the answers' revisions or errors,
    /// and how many commits the database made.
    fn lead_once(store: &Store, pending: &[Arc<Pending>]) -> (Vec<Result<i64>>, u64) {
        let before = store.inner.db.inner.write_activity().0;
        {
            let _writer = store.inner.writer.lock();
            lead(&store.inner);
        }
        let answers = pending
            .iter()
            .map(|p| {
                let answer = p.wait().expect("answered, not told to lead")?;
                store.inner.settle_write(
                    answer.unsynced,
                    answer.wrote,
                    answer.response.revision,
                )?;
                Ok(answer.response.revision)
            })
            .collect();
        (answers, store.inner.db.inner.write_activity().0 - before)
    }

    #[test]
    fn a_batch_is_one_commit_and_a_request_that_fails_when_run_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.folio")).unwrap();
        let base = store.current_revision();
        // The transaction sees the put before it in the batch (version 1), as it would after it.
        let txn = store
            .txn()
            .when([Compare::version(b"a").eq(1)])
            .then([Op::put(b"a", b"again")])
            .into_request();
        let pending = queue(
            &store,
            vec![put(b"a", 0), put(b"b", 999), put(b"c", 0), txn],
        );
        let (answers, commits) = lead_once(&store, &pending);
        assert!(
            matches!(answers[1], Err(Error::LeaseNotFound { id: 999 })),
            "{:?}",
            answers[1]
        );
        let revisions: Vec<i64> = answers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, a)| *a.as_ref().expect("the others succeed"))
            .collect();
        assert_eq!(revisions, [base + 1, base + 2, base + 3]);
        assert_eq!(commits, 1, "the three that succeed share one commit");
        assert!(store.inner.combiner.queue.lock().waiting.is_empty());
        let a = store.range(b"a", Default::default()).unwrap();
        assert_eq!(
            (a.kvs[0].version, a.kvs[0].value.as_slice()),
            (2, &b"again"[..])
        );
        assert_eq!(store.range(b"b", Default::default()).unwrap().kvs, []);

        // A batch of two that both fail when run: each gets its own error, nothing commits.
        let pending = queue(&store, vec![put(b"d", 998), put(b"e", 997)]);
        let (answers, commits) = lead_once(&store, &pending);
        assert!(matches!(answers[0], Err(Error::LeaseNotFound { id: 998 })));
        assert!(matches!(answers[1], Err(Error::LeaseNotFound { id: 997 })));
        assert_eq!(commits, 0);
        assert_eq!(store.current_revision(), base + 3);
    }

    #[test]
    fn a_leader_takes_no_more_than_a_commits_share_of_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.folio")).unwrap();
        let keys: Vec<Vec<u8>> = (0..COMBINE_REQUESTS_MAX + 3)
            .map(|i| format!("k{i}").into_bytes())
            .collect();
        let pending = queue(&store, keys.iter().map(|k| put(k, 0)).collect());
        let (answers, commits) = lead_once(&store, &pending[..COMBINE_REQUESTS_MAX]);
        assert!(answers.iter().all(|a| a.is_ok()));
        assert_eq!(commits, 1);
        assert_eq!(store.inner.combiner.queue.lock().waiting.len(), 3);
        let (answers, commits) = lead_once(&store, &pending[COMBINE_REQUESTS_MAX..]);
        assert!(answers.iter().all(|a| a.is_ok()));
        assert_eq!(commits, 1);
    }
}
