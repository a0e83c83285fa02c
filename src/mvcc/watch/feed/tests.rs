//! The feed against brute force: random pushes and reads by 1 to 3 readers (a lone reader takes,
//! several share), each read compared with the whole history of pushes and the suffix that the
//! buffer rule keeps. Seeded: the test prints its seed, and `FOLIO_SEED=<seed>` reruns it.

use std::sync::Arc;

use super::{Feed, Overflowed};
use crate::mvcc::watch::{Events, RawEvent};
use crate::testing::{Rng, seed};

/// `n` delete events at `revision` (their keys tell them apart).
fn events(revision: i64, n: u64) -> Events {
    (0..n)
        .map(|i| Arc::new(RawEvent::delete(vec![i as u8], revision)))
        .collect()
}

/// What the model keeps: every push, and the first one the feed must still hold.
struct Model {
    pushed: Vec<(i64, usize)>,
    kept_from: usize,
    buffer: usize,
}

impl Model {
    fn push(&mut self, revision: i64, n: usize) {
        self.pushed.push((revision, n));
        loop {
            let kept = &self.pushed[self.kept_from..];
            let total: usize = kept.iter().map(|(_, n)| n).sum();
            if total <= self.buffer || kept.len() <= 1 {
                break;
            }
            self.kept_from += 1;
        }
    }

    /// What a read at `cursor` from revision `from` must return.
    fn read(&self, cursor: usize, from: i64) -> Result<Vec<(i64, usize)>, Overflowed> {
        if cursor < self.kept_from {
            return Err(Overflowed);
        }
        Ok(self.pushed[cursor..]
            .iter()
            .filter(|(r, _)| *r >= from)
            .copied()
            .collect())
    }
}

#[test]
fn a_reader_gets_every_entry_after_its_cursor_or_learns_that_it_overflowed() {
    let seed = seed("feed model");
    for case in 0..300 {
        let mut rng = Rng(seed.wrapping_add(case));
        let buffer = 1 + rng.below(6) as usize;
        let mut feed = Feed::new(buffer);
        let mut model = Model {
            pushed: Vec::new(),
            kept_from: 0,
            buffer,
        };
        let readers = 1 + rng.below(3) as usize;
        // Each reader's cursor, or None once it overflowed (it stops reading here).
        let mut cursors: Vec<Option<u64>> = vec![Some(0); readers];
        let mut revision = 1;
        for _ in 0..rng.below(80) {
            if rng.below(3) == 0 {
                revision += 1 + rng.below(3) as i64;
                let n = 1 + rng.below(4);
                feed.push(revision, events(revision, n));
                model.push(revision, n as usize);
                assert_eq!(
                    feed.end(),
                    model.pushed.len() as u64,
                    "seed {seed} case {case}"
                );
                continue;
            }
            let who = rng.below(readers as u64) as usize;
            let Some(cursor) = cursors[who] else {
                continue;
            };
            let from = revision - rng.below(4) as i64;
            let want = model.read(cursor as usize, from);
            let mut out = Vec::new();
            let got = if readers == 1 {
                feed.take(cursor, from, &mut out)
            } else {
                feed.read(cursor, from, &mut out)
            };
            let got_summary = got.map(|end| {
                (
                    end,
                    out.iter().map(|(r, e)| (*r, e.len())).collect::<Vec<_>>(),
                )
            });
            let want_summary = want.map(|w| (model.pushed.len() as u64, w));
            assert_eq!(
                got_summary, want_summary,
                "seed {seed} case {case}, reader {who} at {cursor} from {from}"
            );
            for (r, e) in &out {
                assert!(
                    e.iter().all(|x| x.kv.mod_revision == *r),
                    "seed {seed} case {case}"
                );
            }
            cursors[who] = got_summary.ok().map(|(end, _)| end);
            if readers == 1 && cursors[who].is_some() {
                // A lone reader's take forgets what it took: nothing is kept behind its cursor.
                model.kept_from = model.pushed.len();
            }
        }
    }
}
