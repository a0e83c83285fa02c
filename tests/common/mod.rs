//! Helpers shared by the test files: the proptest configuration that prints its seed, and a look at
//! the MVCC store's key tree. Each test file that needs them declares `mod common;` and uses only
//! what it needs.
#![allow(dead_code)]

use folio::Db;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

/// A proptest configuration for the model test `name`: `cases` cases unless `PROPTEST_CASES`
/// says otherwise, failures persisted beside the source, and a fixed seed (random unless
/// `PROPTEST_RNG_SEED` is set) printed so that any run can be repeated.
pub fn proptest_config(name: &str, cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(random_seed());
    }
    println!(
        "{name}: {} cases, rng seed {} (rerun with PROPTEST_RNG_SEED={} PROPTEST_CASES={})",
        config.cases, config.rng_seed, config.rng_seed, config.cases
    );
    config
}

/// A seed from the clock and the process id, never zero.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    (nanos as u64 ^ (nanos >> 64) as u64 ^ u64::from(std::process::id())) | 1
}

/// Entries in the MVCC store's key tree (one per stored revision).
pub fn key_tree_len(db: &Db) -> u64 {
    let tx = db.begin_read().expect("begin_read");
    let names = tx.tree_names().expect("tree_names");
    let name = names
        .iter()
        .find(|n| n.ends_with(b"key"))
        .unwrap_or_else(|| panic!("no key tree among {names:?}"));
    tx.tree(name).expect("tree").expect("listed").len()
}
