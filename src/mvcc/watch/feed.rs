//! A group's feed: the released revisions that match one range (with one set of filters and one
//! buffer size), appended once per revision by the pump and read by every watcher of the group
//! at its own cursor, so that a revision costs the fan-out one append per group, not one per
//! watcher.
//!
//! Entries are numbered by a sequence (`base` is the number of the oldest one kept); a reader's
//! cursor is the number of the first entry it has not read. The feed keeps about a buffer's
//! worth of events: past it, the oldest entries go, and a reader whose cursor is below `base`
//! has **overflowed** (it missed entries and catches up elsewhere, by revision). Invariants:
//! 1. `entries` is in increasing revision order; entry `i` has sequence number `base + i`.
//! 2. `events` is the number of events in `entries`; after every [`Feed::push`], `events <=
//!    buffer` or `entries` holds one revision (a revision is never split, however large).
//! 3. `base` only grows: a sequence number, once given, always means the same entry, so a cursor
//!    at or above `base` reads exactly the entries it has not read.

use std::collections::VecDeque;

use super::Events;

/// A reader's cursor fell below what the feed keeps: it missed entries (and reads nothing here).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Overflowed;

/// The matching revisions of one group, newest last; see the module docs.
#[derive(Debug)]
pub(super) struct Feed {
    base: u64,
    entries: VecDeque<(i64, Events)>,
    events: usize,
    buffer: usize,
}

impl Feed {
    /// An empty feed that keeps about `buffer` events (at least one revision).
    pub fn new(buffer: usize) -> Feed {
        Feed {
            base: 0,
            entries: VecDeque::new(),
            events: 0,
            buffer: buffer.max(1),
        }
    }

    /// The sequence number the next entry gets: a new reader's cursor.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Appends revision `revision`'s matching events (newer than any in the feed) and drops the
    /// oldest entries past the buffer (invariant 2).
    pub fn push(&mut self, revision: i64, events: Events) {
        debug_assert!(self.entries.back().is_none_or(|(r, _)| *r < revision));
        debug_assert!(!events.is_empty());
        self.events += events.len();
        self.entries.push_back((revision, events));
        while self.events > self.buffer && self.entries.len() > 1 {
            let (_, old) = self.entries.pop_front().expect("more than one entry");
            self.events -= old.len();
            self.base += 1;
        }
    }

    /// Copies (shares) into `out` the entries from `cursor` on whose revision is at least
    /// `from`; returns the new cursor, or [`Overflowed`] if the feed no longer holds `cursor`.
    pub fn read(
        &self,
        cursor: u64,
        from: i64,
        out: &mut Vec<(i64, Events)>,
    ) -> Result<u64, Overflowed> {
        let skip = self.unread(cursor)?;
        out.extend(
            self.entries
                .range(skip..)
                .filter(|(r, _)| *r >= from)
                .cloned(),
        );
        Ok(self.end())
    }

    /// As [`read`](Feed::read), for a feed with one reader: moves the entries out instead of
    /// sharing them (no reference count to raise, and nothing kept that nobody will read).
    pub fn take(
        &mut self,
        cursor: u64,
        from: i64,
        out: &mut Vec<(i64, Events)>,
    ) -> Result<u64, Overflowed> {
        let skip = self.unread(cursor)?;
        self.entries.drain(..skip);
        self.base += skip as u64;
        let end = self.end();
        out.extend(self.entries.drain(..).filter(|(r, _)| *r >= from));
        self.base = end;
        self.events = 0;
        Ok(end)
    }

    /// How many entries at the front `cursor` has read, or [`Overflowed`].
    fn unread(&self, cursor: u64) -> Result<usize, Overflowed> {
        debug_assert!(cursor <= self.end(), "a cursor never passes the end");
        if cursor < self.base {
            return Err(Overflowed);
        }
        Ok(usize::try_from(cursor - self.base).expect("at most the entries' count"))
    }
}

#[cfg(test)]
mod tests;
