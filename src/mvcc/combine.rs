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
//!    share that round anyway, and whoever comes meanwhile joins it.
//! 3. If any request of a batch fails, or the commit does, nothing of the batch has taken effect
//!    ([`StoreInner::apply`]), and the leader runs each request again alone: each gets the
//!    outcome it would have had alone. A request that fails fails alone.
//! 4. The leader answers every request it took, leads again until its own is answered, lets go
//!    of the writer lock and tells the oldest queued writer to lead (or, with none queued, that
//!    no one leads). Answered writers wake at once, each on its own: each waits for its commit
//!    to be durable itself, then releases its watchers' events, as a write alone does.
//! 5. A leader that panics answers every request it took with an error and still hands over
//!    (drop guards), so no writer waits forever.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::limits::{COMBINE_BYTES_MAX, COMBINE_REQUESTS_MAX};
use crate::mvcc::store::{Store, StoreInner};
use crate::mvcc::types::TxnResponse;
use crate::mvcc::write::Request;

/// The writes waiting for a leader (rule 1).
#[derive(Debug, Default)]
pub(crate) struct Combiner {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Arc<Pending>>,
    /// Whether a writer leads (or has been told to).
    leading: bool,
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

impl Store {
    /// Runs `request` as one write, combined with whatever other writes wait beside it; returns
    /// once it is durable.
    pub(crate) fn submit(&self, request: Request) -> Result<TxnResponse> {
        request.check(self.inner.db.page_size())?;
        let inner = &*self.inner;
        let mine = Arc::new(Pending {
            request,
            turn: Mutex::new(Turn::Wait),
            changed: Condvar::new(),
        });
        let lead_now = {
            let mut queue = inner.combiner.queue.lock();
            queue.waiting.push_back(mine.clone());
            !std::mem::replace(&mut queue.leading, true)
        };
        let answer = match lead_now {
            true => None,
            false => mine.wait(),
        };
        let answer = match answer {
            Some(answer) => answer,
            None => {
                let _hand_over = HandOver(&inner.combiner);
                let _writer = inner.writer.lock();
                while !mine.is_answered() {
                    lead(inner);
                }
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
    inner.db.inner.wait_for_round();
    let batch = take_batch(&inner.combiner);
    let unanswered = Unanswered(&batch);
    let together = inner.apply(|w| {
        let mut answers = Vec::with_capacity(batch.len());
        for pending in &batch {
            let response = pending.request.run(w)?;
            answers.push((response, w.wrote()));
            w.end_revision();
        }
        Ok(answers)
    });
    match together {
        Ok(applied) => {
            for (pending, (response, wrote)) in batch.iter().zip(applied.value) {
                pending.answer(Ok(Answer {
                    response,
                    wrote,
                    unsynced: applied.unsynced,
                }));
            }
        }
        Err(e) if batch.len() == 1 => batch[0].answer(Err(e)),
        Err(_) => {
            for pending in &batch {
                let alone = inner.apply(|w| pending.request.run(w));
                pending.answer(alone.map(|a| Answer {
                    response: a.value,
                    wrote: a.wrote,
                    unsynced: a.unsynced,
                }));
            }
        }
    }
    drop(unanswered);
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
struct Unanswered<'a>(&'a [Arc<Pending>]);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        for pending in self.0 {
            if !pending.is_answered() {
                pending.answer(Err(Error::Io(std::io::Error::other(
                    "the writer running this write beside others panicked; whether it took \
                     effect is unknown",
                ))));
            }
        }
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
