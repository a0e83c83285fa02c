//! The plan that fragments a database: which keys go in and out, transaction by transaction.
//!
//! 1. **Fill**: the live keys, with values of 64 to 1,024 bytes, until their keys and values add
//!    up to the live size asked for.
//! 2. **Churn**: extra keys, [`EXTRA_PER_LIVE`] for each live key, which fall between the live
//!    ones in key order; each transaction also overwrites a share of the live keys with values of
//!    new lengths, so that by the end every live key has been rewritten once.
//! 3. **Trim**: delete every extra key.
//!
//! What remains is the live data spread thinly over a file several times its size: the state an
//! etcd database is in after compaction has removed the old revisions of its keys. The plan is a
//! pure function of its inputs, so every engine applies the same transactions.

use std::ops::Range;

use crate::data::{Change, Keys, Rng, Values};

/// Extra keys put in and later deleted, per live key; sets how fragmented the file ends up. At
/// 0.4, 256 MiB of live data leaves files of 3.5 to 4 times that in every engine.
pub const EXTRA_PER_LIVE: f64 = 0.4;
/// Value lengths, in bytes: all below half a 4 KiB page, so every engine keeps them in its leaves.
const VALUE_LEN_MIN: usize = 64;
const VALUE_LEN_MAX: usize = 1024;
/// Puts or deletes per transaction, as in the bulk load.
const PER_TXN: usize = 10_000;

/// One transaction of the plan.
pub enum Txn {
    Fill(Range<usize>),
    Churn {
        extras: Range<usize>,
        overwrites: Range<usize>,
    },
    Trim(Range<usize>),
}

pub struct FragmentPlan {
    live: Keys,
    extra: Keys,
    first_lens: Vec<u16>,
    second_lens: Vec<u16>,
    extra_lens: Vec<u16>,
    pub txns: Vec<Txn>,
}

impl FragmentPlan {
    /// A plan whose live keys and values add up to about `live_bytes`.
    pub fn new(live_bytes: u64, seed: u64) -> FragmentPlan {
        let mean_entry = (crate::data::KEY_LEN_MIN + crate::data::KEY_LEN_MAX) / 2
            + (VALUE_LEN_MIN + VALUE_LEN_MAX) / 2;
        let live_count = (live_bytes / mean_entry as u64).max(1) as usize;
        let extra_count = (live_count as f64 * EXTRA_PER_LIVE) as usize;
        let mut rng = Rng::new(seed);
        let mut lens = |n: usize| -> Vec<u16> {
            (0..n)
                .map(|_| rng.between(VALUE_LEN_MIN, VALUE_LEN_MAX) as u16)
                .collect()
        };
        let (first_lens, second_lens, extra_lens) =
            (lens(live_count), lens(live_count), lens(extra_count));

        let mut txns = Vec::new();
        for start in (0..live_count).step_by(PER_TXN) {
            txns.push(Txn::Fill(start..(start + PER_TXN).min(live_count)));
        }
        let churn_txns = extra_count.div_ceil(PER_TXN).max(1);
        let overwrites_per_txn = live_count.div_ceil(churn_txns);
        for t in 0..churn_txns {
            let extras = t * PER_TXN..((t + 1) * PER_TXN).min(extra_count);
            let overwrites = (t * overwrites_per_txn).min(live_count)
                ..((t + 1) * overwrites_per_txn).min(live_count);
            txns.push(Txn::Churn { extras, overwrites });
        }
        for start in (0..extra_count).step_by(PER_TXN) {
            txns.push(Txn::Trim(start..(start + PER_TXN).min(extra_count)));
        }

        FragmentPlan {
            live: Keys::random(live_count, seed ^ 0x1111),
            extra: Keys::random(extra_count, seed ^ 0x2222),
            first_lens,
            second_lens,
            extra_lens,
            txns,
        }
    }

    /// The changes of one transaction.
    pub fn changes<'a>(&'a self, txn: &Txn, values: &'a Values) -> Vec<Change<'a>> {
        let live_count = self.live.len();
        let first =
            |i: usize| Change::Put(self.live.get(i), values.get(i, self.first_lens[i] as usize));
        let second = |i: usize| {
            let len = self.second_lens[i] as usize;
            Change::Put(self.live.get(i), values.get(live_count + i, len))
        };
        let extra = |j: usize| {
            let len = self.extra_lens[j] as usize;
            Change::Put(self.extra.get(j), values.get(2 * live_count + j, len))
        };
        match txn {
            Txn::Fill(r) => r.clone().map(first).collect(),
            Txn::Churn { extras, overwrites } => extras
                .clone()
                .map(extra)
                .chain(overwrites.clone().map(second))
                .collect(),
            Txn::Trim(r) => r
                .clone()
                .map(|j| Change::Delete(self.extra.get(j)))
                .collect(),
        }
    }

    /// Key and value bytes of the entries left at the end.
    pub fn live_bytes(&self) -> u64 {
        (0..self.live.len())
            .map(|i| (self.live.get(i).len() + self.second_lens[i] as usize) as u64)
            .sum()
    }

    /// Entries left at the end.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}
