//! The event log against brute force: random released revisions (some with no events, some
//! with several, values of random sizes so the byte bound trims at odd places), and random reads
//! from every position the log claims to cover, each compared with a filter of the whole history.
//! Seeded: the test prints its seed, and `FOLIO_SEED=<seed>` reruns it.

use std::sync::Arc;

use super::{EventLog, event_bytes};
use crate::mvcc::revision::KeyValue;
use crate::mvcc::watch::{Events, RawEvent};
use crate::testing::{Rng, seed};

fn event(rng: &mut Rng, revision: i64) -> RawEvent {
    let key = vec![[b'a', b'b', b'c'][rng.below(3) as usize]];
    if rng.below(4) == 0 {
        RawEvent::delete(key, revision)
    } else {
        RawEvent::put(KeyValue {
            key,
            value: vec![b'v'; rng.below(300) as usize],
            mod_revision: revision,
            ..KeyValue::default()
        })
    }
}

/// What a read must return, from the whole history: the same stopping rule, by brute force.
fn brute_read(
    history: &[(i64, Vec<Arc<RawEvent>>)],
    next: i64,
    to: i64,
    budget: usize,
    keep: impl Fn(&RawEvent) -> bool,
) -> (Vec<(i64, Vec<*const RawEvent>)>, i64) {
    let mut out = Vec::new();
    let mut kept = 0;
    for (r, events) in history {
        if *r < next || events.is_empty() {
            continue;
        }
        if *r > to {
            break;
        }
        if kept >= budget {
            return (out, r - 1);
        }
        let mine: Vec<*const RawEvent> =
            events.iter().filter(|e| keep(e)).map(Arc::as_ptr).collect();
        kept += mine.len();
        if !mine.is_empty() {
            out.push((*r, mine));
        }
    }
    (out, to)
}

fn pointers(batches: &[(i64, Events)]) -> Vec<(i64, Vec<*const RawEvent>)> {
    batches
        .iter()
        .map(|(r, e)| (*r, e.iter().map(Arc::as_ptr).collect()))
        .collect()
}

#[test]
fn the_event_log_reads_exactly_what_the_history_holds_from_where_it_is_complete() {
    let seed = seed("event log model");
    for case in 0..200 {
        let mut rng = Rng(seed.wrapping_add(case));
        let start = 1 + rng.below(5) as i64;
        let bytes_max = 200 + rng.below(3000) as usize;
        let mut log = EventLog::new(start, bytes_max);
        let mut history: Vec<(i64, Vec<Arc<RawEvent>>)> = Vec::new();
        let mut released = start - 1;
        let context = |log: &EventLog| format!("seed {seed} case {case}, log {log:?}");
        for _ in 0..300 {
            if rng.below(3) != 0 || released < start {
                released += 1;
                let n = [0, 1, 1, 1, 2, 3][rng.below(6) as usize];
                let events: Vec<Arc<RawEvent>> = (0..n)
                    .map(|_| Arc::new(event(&mut rng, released)))
                    .collect();
                log.push(released, &events.clone().into());
                history.push((released, events));
                let bytes: usize = log
                    .entries
                    .iter()
                    .flat_map(|(_, e)| e.iter())
                    .map(|e| event_bytes(e))
                    .sum();
                assert_eq!(bytes, log.bytes, "{}", context(&log));
                assert!(log.bytes <= bytes_max, "{}", context(&log));
                continue;
            }
            // A read from anywhere the log covers, up to the released mark or below it.
            let next = log.from + rng.below((released + 2 - log.from) as u64) as i64;
            assert!(log.covers(next));
            let to = released - rng.below(2) as i64;
            let budget = 1 + rng.below(6) as usize;
            let wanted = [b'a', b'b', b'c'][rng.below(3) as usize];
            let everything = rng.below(3) == 0;
            let keep = |e: &RawEvent| everything || e.kv.key[0] == wanted;
            let (got, read_to) = log.read(next, to, budget, keep);
            let want = brute_read(&history, next, to, budget, keep);
            assert_eq!(
                (pointers(&got), read_to),
                want,
                "{}: read from {next} to {to}, budget {budget}",
                context(&log)
            );
            // A revision whose every event is kept is the log's own, not a copy.
            for (r, events) in &got {
                let whole = &history.iter().find(|(h, _)| h == r).expect("read").1;
                if events.len() == whole.len() {
                    let logged = log.entries.iter().find(|(l, _)| l == r).expect("logged");
                    assert!(Arc::ptr_eq(events, &logged.1), "{}", context(&log));
                }
            }
        }
        // The log is complete from `from` and forgets only what the bound makes it.
        let kept: usize = history
            .iter()
            .filter(|(r, _)| *r >= log.from)
            .map(|(_, e)| e.len())
            .sum();
        assert_eq!(kept, log.len(), "{}", context(&log));
        let oldest_dropped = history
            .iter()
            .rfind(|(r, e)| *r < log.from && !e.is_empty());
        if let Some((_, e)) = oldest_dropped {
            let with_it = log.bytes + e.iter().map(|e| event_bytes(e)).sum::<usize>();
            assert!(with_it > bytes_max, "{}", context(&log));
        }
        log.clear(released + 1);
        assert!(!log.covers(released) && log.covers(released + 1) && log.len() == 0);
    }
}
