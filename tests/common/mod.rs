//! Helpers shared by the test files: the proptest configuration that prints its seed, a look at
//! the MVCC store's key tree, a database's whole contents, and a `SimStorage` whose calls a test
//! can watch; in submodules, the seeded generators ([`rng`]), the keys and values of the workloads
//! ([`data`]) and the fragmented image the defrag tests start from ([`fragmented`]), and the MVCC
//! models' live keys ([`mvcc`]). Each test
//! binary declares `mod common;` and uses only what it needs.
#![allow(dead_code)]

pub mod data;
pub mod fragmented;
pub mod mvcc;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use folio::Db;
use folio::sim::SimStorage;
use folio::storage::Storage;
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

/// `FOLIO_SEED` if set, else a fresh seed; printed with `what` and how to rerun it.
pub fn env_seed(what: &str) -> u64 {
    let seed = match std::env::var("FOLIO_SEED") {
        Ok(s) => s.parse().expect("FOLIO_SEED is a u64"),
        Err(_) => random_seed(),
    };
    println!("{what}: seed {seed} (rerun with FOLIO_SEED={seed})");
    seed
}

/// Every tree, by name, and its entries.
pub type Contents = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Every tree of `db`'s newest commit and its entries, or the error met reading them.
pub fn read_contents(db: &Db) -> folio::Result<Contents> {
    let tx = db.begin_read()?;
    let mut out = Contents::new();
    for name in tx.tree_names()? {
        let tree = tx.tree(&name)?.expect("a listed tree exists");
        let entries = tree
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        out.insert(name, entries);
    }
    Ok(out)
}

/// Every tree of `db`'s newest commit and its entries; panics on an error.
pub fn contents(db: &Db) -> Contents {
    read_contents(db).unwrap()
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

/// A call that changes a file: what a [`Watch`] is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageCall {
    Write { offset: u64, len: usize },
    SetLen,
    Sync,
}

/// What a test keeps of the calls made through a [`Watched`] storage: each call, before it is
/// made and (if it went ahead) after.
pub trait Watch: Debug + Send + Sync {
    fn before(&self, _call: StorageCall) {}
    fn after(&self, _call: StorageCall) {}
}

/// A `SimStorage` whose writes, length changes and syncs `watch` sees. Directory operations are
/// not watched: only a defrag makes them, and the tests that watch run none.
#[derive(Clone, Debug)]
pub struct Watched<W> {
    pub sim: SimStorage,
    pub watch: W,
}

impl<W: Watch> Watched<W> {
    /// Makes `op`, the storage call `call`, with `watch` told before and after.
    fn watched(
        &self,
        call: StorageCall,
        op: impl FnOnce() -> folio::Result<()>,
    ) -> folio::Result<()> {
        self.watch.before(call);
        op()?;
        self.watch.after(call);
        Ok(())
    }
}

impl<W: Watch> Storage for Watched<W> {
    fn len(&self) -> folio::Result<u64> {
        self.sim.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> folio::Result<()> {
        self.sim.read_at(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> folio::Result<()> {
        let call = StorageCall::Write {
            offset,
            len: data.len(),
        };
        self.watched(call, || self.sim.write_at(data, offset))
    }

    fn set_len(&self, len: u64) -> folio::Result<()> {
        self.watched(StorageCall::SetLen, || self.sim.set_len(len))
    }

    fn sync(&self) -> folio::Result<()> {
        self.watched(StorageCall::Sync, || self.sim.sync())
    }

    fn map(&self) -> folio::Result<memmap2::Mmap> {
        self.sim.map()
    }

    fn path(&self) -> PathBuf {
        self.sim.path()
    }

    fn create_sibling(&self, path: &Path) -> folio::Result<Box<dyn Storage>> {
        self.sim.create_sibling(path)
    }

    fn rename(&self, to: &Path) -> folio::Result<()> {
        self.sim.rename(to)
    }

    fn remove_sibling(&self, path: &Path) -> folio::Result<()> {
        self.sim.remove_sibling(path)
    }

    fn sync_dir(&self) -> folio::Result<()> {
        self.sim.sync_dir()
    }
}

/// Seeds for the reordered crash images (`SimStorage::crash_image_reordered`) a test checks at
/// each crash point: `per_point` of them, from a base seed that is random unless
/// `FOLIO_REORDER_SEED` sets it, printed so that a failure can be repeated. Mix the crash point
/// in with [`point_seed`].
pub fn reorder_seeds(test: &str, per_point: u64) -> Vec<u64> {
    let base = std::env::var("FOLIO_REORDER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(random_seed);
    println!(
        "{test}: reordered crash images from seed {base} (rerun with FOLIO_REORDER_SEED={base})"
    );
    (0..per_point).map(|i| base.wrapping_add(i)).collect()
}

/// The seed of one reordered image: `seed` at crash point `point`.
pub fn point_seed(seed: u64, point: usize) -> u64 {
    seed ^ (point as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
