//! What the server does by itself: compaction as etcd's `--auto-compaction-*` flags ask, and an
//! online defrag when the free share of the database passes a threshold (beyond etcd, and safe
//! because folio's defrag holds writers only for its last catch-up round).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::AutoCompaction;
use crate::state::Shared;

/// Longest time between two periodic compactions (etcd: hourly for retentions of an hour or
/// more).
const PERIODIC_PERIOD_MAX: Duration = Duration::from_secs(3600);

/// When the automatic defrag runs.
#[derive(Clone, Copy, Debug)]
pub struct AutoDefrag {
    /// The free share of the database's size (0 to 1) that starts a defrag; 0 disables it.
    pub threshold: f64,
    /// Databases smaller than this ([`Shared::db_size`]) are never defragmented by themselves.
    pub min_bytes: u64,
    /// How often to look.
    pub every: Duration,
}

/// Waits `d`, or until `stop` says so; false when stopped.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        _ = tokio::time::sleep(d) => !*stop.borrow(),
    }
}

/// Compacts to `rev` if it is past the compacted revision; logs it.
async fn compact(shared: &Shared, rev: i64, why: String) {
    if let Some(m) = shared.member() {
        // A replicated member compacts through the log, and only the leader decides to.
        if !m.is_leader() || rev <= shared.store().compacted_revision() {
            return;
        }
        match m
            .write(folio_raft::Command::Compact { revision: rev })
            .await
        {
            Ok(_) => crate::info!("auto compaction ({why}) to revision {rev} through raft"),
            Err(e) => crate::warn!("auto compaction to revision {rev} failed: {}", e.message()),
        }
        return;
    }
    let done = shared
        .blocking(move |s| {
            if rev <= s.store().compacted_revision() {
                return Ok(None);
            }
            let started = Instant::now();
            s.store()
                .compact(rev)
                .map(|()| Some(started.elapsed()))
                .map_err(crate::errors::from_folio)
        })
        .await;
    match done {
        Ok(Some(took)) => crate::info!(
            "auto compaction ({why}) to revision {rev} in {:.3} s",
            took.as_secs_f64()
        ),
        Ok(None) => {}
        Err(e) => crate::warn!("auto compaction to revision {rev} failed: {}", e.message()),
    }
}

/// Runs the compaction `mode` asks for until `stop`. `revision_every` is how often the
/// revision mode looks (etcd: 5 minutes).
pub async fn compactor(
    shared: Shared,
    mode: AutoCompaction,
    revision_every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    match mode {
        AutoCompaction::Off => {}
        AutoCompaction::Revision { keep } => {
            while wait(&mut stop, revision_every).await {
                let target = shared.store().current_revision() - keep;
                if target > 0 {
                    compact(&shared, target, format!("revision, keeping {keep}")).await;
                }
            }
        }
        AutoCompaction::Periodic { retention } => {
            // Revisions sampled every tenth of the retention; a compaction goes to the newest
            // sample at least `retention` old.
            let step = (retention / 10).max(Duration::from_millis(10));
            let period = retention.min(PERIODIC_PERIOD_MAX);
            let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
            let mut last = Instant::now();
            loop {
                samples.push_back((Instant::now(), shared.store().current_revision()));
                if !wait(&mut stop, step).await {
                    break;
                }
                let now = Instant::now();
                let mut target = None;
                while let Some(&(at, rev)) = samples.front() {
                    if now.duration_since(at) < retention {
                        break;
                    }
                    target = Some(rev);
                    samples.pop_front();
                }
                if let Some(rev) = target {
                    // Keep it: it is the newest old-enough sample until a newer one ages.
                    samples.push_front((now - retention, rev));
                    if now.duration_since(last) >= period {
                        last = now;
                        compact(&shared, rev, format!("periodic, retention {retention:?}")).await;
                    }
                }
            }
        }
    }
}

/// Defragments whenever the free share passes `policy.threshold`, until `stop`.
pub async fn defragger(shared: Shared, policy: AutoDefrag, mut stop: watch::Receiver<bool>) {
    if policy.threshold <= 0.0 {
        return;
    }
    while wait(&mut stop, policy.every).await {
        let outcome = shared
            .blocking(move |s| {
                let stats = s.store().db().stats().map_err(crate::errors::from_folio)?;
                // The pages up to the allocation frontier, as the quota counts them: the file's
                // unused tail (a file grows by doubling) holds no disk blocks, and a defrag
                // that only gave it back would see the file double again at the next growth.
                let allocated = stats.allocated_bytes();
                if allocated < policy.min_bytes || allocated == 0 {
                    return Ok(());
                }
                let free = allocated.saturating_sub(stats.live_bytes());
                let share = free as f64 / allocated as f64;
                if share >= policy.threshold {
                    let why = format!(
                        "automatic: {:.0}% of {} bytes free, threshold {:.0}%",
                        share * 100.0,
                        allocated,
                        policy.threshold * 100.0
                    );
                    crate::maintenance::defrag(s, &why)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = outcome {
            crate::warn!("automatic defrag check failed: {}", e.message());
        }
    }
}
