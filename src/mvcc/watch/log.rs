//! The newest released revisions, kept in memory and shared by every watcher that falls behind,
//! so that a lagging watcher catches up by walking shared events instead of reading the key tree
//! on its own (which costs a read transaction, a decode and two copies per record it passes).
//!
//! The log holds each released revision's events as the fan-out had them (one shared [`Events`]
//! per revision, so an event in the log costs a pointer, not a copy) and forgets the oldest once
//! the events' bytes pass a bound: a watcher further behind than the log reaches catches up from
//! the key tree, as before. Invariants:
//! 1. `entries` is in increasing revision order, every revision at most once.
//! 2. Every released revision at or above `from` that has events is in `entries` (the log is
//!    *complete* from `from`); `from` only grows, except by [`EventLog::clear`].
//! 3. `bytes` is the sum of [`event_bytes`] over the events in `entries`, and is at most
//!    `bytes_max` after every [`EventLog::push`].

use std::collections::VecDeque;

use super::{Events, RawEvent};

/// What the log counts for one event: its key and value, and about what the event's record and
/// its shares of `Arc`s cost beside them.
pub(super) fn event_bytes(event: &RawEvent) -> usize {
    const OVERHEAD: usize = 128;
    event.kv.key.len() + event.kv.value.len() + OVERHEAD
}

/// The released revisions, newest last; see the module docs.
#[derive(Debug)]
pub(super) struct EventLog {
    entries: VecDeque<(i64, Events)>,
    /// The log is complete from here (invariant 2).
    from: i64,
    bytes: usize,
    bytes_max: usize,
}

impl EventLog {
    /// An empty log, complete from `from` (the first revision not yet released), that keeps at
    /// most `bytes_max` bytes of events.
    pub fn new(from: i64, bytes_max: usize) -> EventLog {
        EventLog {
            entries: VecDeque::new(),
            from,
            bytes: 0,
            bytes_max,
        }
    }

    /// Appends released revision `revision` (newer than any in the log) and forgets the oldest
    /// revisions past the bound.
    pub fn push(&mut self, revision: i64, events: &Events) {
        debug_assert!(self.entries.back().is_none_or(|(r, _)| *r < revision));
        debug_assert!(revision >= self.from);
        if events.is_empty() {
            return;
        }
        self.bytes += events.iter().map(|e| event_bytes(e)).sum::<usize>();
        self.entries.push_back((revision, events.clone()));
        while self.bytes > self.bytes_max {
            let Some((r, old)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.iter().map(|e| event_bytes(e)).sum::<usize>();
            self.from = r + 1;
        }
    }

    /// Forgets everything: the log is complete from `from` (the first revision not released).
    pub fn clear(&mut self, from: i64) {
        self.entries.clear();
        self.bytes = 0;
        self.from = from;
    }

    /// Whether the log holds every released revision from `next` on.
    pub fn covers(&self, next: i64) -> bool {
        next >= self.from
    }

    /// The events the log holds for `revision`.
    #[cfg(test)]
    pub fn get(&self, revision: i64) -> Option<&Events> {
        let i = self.entries.partition_point(|(r, _)| *r < revision);
        self.entries
            .get(i)
            .filter(|(r, _)| *r == revision)
            .map(|(_, e)| e)
    }

    /// How many events the log holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.len()).sum()
    }

    /// Reads whole revisions from `next` up to `to`, keeping the events `keep` picks, until at
    /// least `budget` events are kept (a revision is never split). Returns the kept events, by
    /// revision (a revision whose every event is kept shares the log's own `Events`), and the
    /// last revision read: the reader goes on from the one after it. Needs
    /// [`covers(next)`](EventLog::covers).
    pub fn read(
        &self,
        next: i64,
        to: i64,
        budget: usize,
        keep: impl Fn(&RawEvent) -> bool,
    ) -> (Vec<(i64, Events)>, i64) {
        debug_assert!(self.covers(next));
        let mut batches = Vec::new();
        let mut kept = 0;
        let first = self.entries.partition_point(|(r, _)| *r < next);
        for (revision, events) in self.entries.range(first..) {
            if *revision > to {
                break;
            }
            if kept >= budget {
                return (batches, revision - 1);
            }
            let n = events.iter().filter(|e| keep(e)).count();
            if n == 0 {
                continue;
            }
            kept += n;
            let share: Events = if n == events.len() {
                events.clone()
            } else {
                events.iter().filter(|e| keep(e)).cloned().collect()
            };
            batches.push((*revision, share));
        }
        (batches, to)
    }
}

#[cfg(test)]
mod tests;
