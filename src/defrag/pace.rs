//! Pacing a defrag's own disk traffic, so that commits do not queue behind it.
//!
//! An online defrag shares the disk with the commits it lets go on. Unpaced, it writes its new
//! file and reads it back into the cache as fast as the disk goes, in 8 MiB requests, and a
//! commit's sync waits behind every request queued ahead of it (and, on a disk with a volatile
//! cache, flushes whatever the defrag wrote since the last flush). A pace spreads that traffic to
//! a rate, in pieces of at most [`DEFRAG_PACE_PIECE`] bytes, so that a sync finds at most a piece
//! or two ahead of it. The defrag takes longer; the writers' pause does not change.

use std::time::{Duration, Instant};

use crate::limits::DEFRAG_PACE_PIECE;

/// A rate in bytes per second (or none), and how much has gone at it since it started.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Pace {
    pub fn new(rate: Option<u64>) -> Pace {
        Pace {
            rate,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// How many of `len` bytes to move in one request: all of them when unpaced.
    pub fn piece(&self, len: usize) -> usize {
        match self.rate {
            None => len,
            Some(_) => len.min(DEFRAG_PACE_PIECE),
        }
    }

    /// Counts `bytes` as moved and sleeps until the rate allows the next request.
    pub fn moved(&mut self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        self.bytes = self.bytes.saturating_add(bytes as u64);
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpaced_request_is_whole_and_a_paced_one_is_cut_to_a_piece() {
        let len = 3 * DEFRAG_PACE_PIECE + 1;
        assert_eq!(Pace::new(None).piece(len), len);
        assert_eq!(Pace::new(Some(1 << 30)).piece(len), DEFRAG_PACE_PIECE);
        assert_eq!(Pace::new(Some(1 << 30)).piece(100), 100);
    }

    #[test]
    fn a_pace_waits_until_its_bytes_are_due() {
        // 1 MiB at 16 MiB/s is due 62.5 ms after the start: the call returns no sooner.
        let mut pace = Pace::new(Some(16 << 20));
        pace.moved(1 << 20);
        assert!(pace.started.elapsed() >= Duration::from_micros(62_500));
        // Unpaced, nothing is counted and nothing waits.
        let mut none = Pace::new(None);
        none.moved(usize::MAX);
        assert_eq!(none.bytes, 0);
    }
}
