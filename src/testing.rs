//! Helpers for the crate's own seeded tests.

#[path = "../tests/common/rng.rs"]
#[allow(dead_code)]
mod rng;

/// The integration tests' splitmix64, shared so that the generator is written once.
pub(crate) use rng::SplitMix64 as Rng;

/// The seed for a randomized test: `FOLIO_SEED` if set, else the clock. Printed with `what`, so
/// that a failure can be rerun with `FOLIO_SEED=<seed>`.
pub(crate) fn seed(what: &str) -> u64 {
    let seed = std::env::var("FOLIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{what}: seed {seed} (rerun with FOLIO_SEED={seed})");
    seed
}
