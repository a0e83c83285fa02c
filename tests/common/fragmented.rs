//! The fragmented database image the defrag crash tests start from: rounds of commits that
//! overwrite and delete in two trees (`alpha` and `beta`), with overflow values.

use std::path::Path;

use folio::sim::SimStorage;
use folio::{Db, Durability};

/// The page size of the image: 512 bytes, so that 700-byte values take overflow runs.
pub const PAGE_SIZE: u32 = 512;

/// `len` bytes that differ by `i`.
pub fn value(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

/// How much an image holds and how it is written.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Commits.
    pub rounds: u32,
    /// Puts per commit.
    pub puts: u32,
    /// Keys are `key-` and a number below this, of `digits` digits.
    pub keys: u32,
    pub digits: usize,
    /// Every `overflow_every`th put writes a 700-byte value (an overflow run at 512-byte pages);
    /// the others `small_len` bytes and up to 89 more.
    pub overflow_every: u32,
    pub small_len: usize,
}

/// The crash image (everything synced) of a database written as `shape` says, in a
/// `SimStorage` file in `dir`. Each round puts its keys (one in three into `beta`, the rest into
/// `alpha`), then deletes every `5 + round`th key from `alpha`.
pub fn image(dir: &Path, shape: &Shape) -> Vec<u8> {
    let path = dir.join("source.folio");
    let sim = SimStorage::create(&path).unwrap();
    let db = Db::builder()
        .page_size(PAGE_SIZE)
        .durability(Durability::None)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let digits = shape.digits;
    for round in 0..shape.rounds {
        let mut tx = db.begin_write().unwrap();
        for i in 0..shape.puts {
            let k = format!("key-{:0digits$}", (i * 7919 + round * 13) % shape.keys);
            let len = if i % shape.overflow_every == 0 {
                700
            } else {
                shape.small_len + (i % 90) as usize
            };
            let tree: &[u8] = if i % 3 == 0 { b"beta" } else { b"alpha" };
            tx.open_tree(tree)
                .unwrap()
                .put(k.as_bytes(), &value(i + round, len))
                .unwrap();
        }
        for i in (0..shape.keys).step_by(5 + round as usize) {
            let k = format!("key-{i:0digits$}");
            tx.open_tree(b"alpha")
                .unwrap()
                .delete(k.as_bytes())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    db.sync().unwrap();
    drop(db);
    sim.crash_image(None)
}
