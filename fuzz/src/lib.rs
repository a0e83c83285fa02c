//! What the fuzz targets share: reading operations from the fuzzer's bytes, files in one temporary
//! directory, a sound database to corrupt, and a walk that reads (and writes) everything in a
//! database.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use folio::Db;
use folio::sim::SimStorage;
use folio::storage::Storage;

/// Reads small numbers from the fuzzer's bytes; zeros once they run out.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }
}

/// A fresh path in this process's temporary directory (kept for the process's life).
pub fn temp_path(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = DIR.get_or_init(|| {
        let base = std::path::Path::new("/dev/shm");
        if base.is_dir() {
            tempfile::tempdir_in(base).expect("tempdir")
        } else {
            tempfile::tempdir().expect("tempdir")
        }
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.path().join(format!("{name}-{n}.folio"))
}

/// A storage holding `image`, at a fresh path; the file is removed when the returned guard drops.
pub fn storage_with(image: &[u8]) -> (SimStorage, Removed) {
    let path = temp_path("image");
    let sim = SimStorage::with_image(&path, image).expect("write the image");
    (sim, Removed(path))
}

/// Removes its file (and a defrag's leftover beside it) when dropped.
pub struct Removed(pub PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut defrag = self.0.clone().into_os_string();
        defrag.push(".defrag");
        let _ = std::fs::remove_file(defrag);
    }
}

/// A sound database at page size 512, made once: two trees, a branch level, overflow values,
/// a freelist and an MVCC store. Corrupting it reaches deeper than random bytes do.
pub fn sound_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = temp_path("sound");
        {
            let db = Db::builder().page_size(512).open(&path).expect("create");
            // The store first: a database that already holds other trees is refused as a store.
            let store = folio::Store::with_db(db.clone()).expect("store");
            for round in 0..3u32 {
                let mut tx = db.begin_write().expect("write");
                let mut t = tx.open_tree(b"t").expect("tree");
                for i in 0..60u32 {
                    let value = vec![b'a' + (i % 26) as u8; 10 + (i * round) as usize % 50];
                    t.put(format!("key-{i:03}").as_bytes(), &value)
                        .expect("put");
                }
                t.put(b"big", &vec![round as u8; 1500]).expect("put");
                t.delete(format!("key-{:03}", round * 7).as_bytes())
                    .expect("delete");
                tx.open_tree(b"u")
                    .expect("tree")
                    .put(b"x", b"y")
                    .expect("put");
                tx.commit().expect("commit");
            }
            for i in 0..20u32 {
                store
                    .put(format!("/k/{}", i % 7).as_bytes(), &[i as u8; 30])
                    .expect("store put");
            }
            store.compact(10).expect("compact");
        }
        let image = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        image
    })
}

/// At most this many entries are read from one tree, and pages dumped.
const WALK_MAX: usize = 20_000;

/// Reads everything a user or a tool can read in `db`, then writes to every tree and commits.
/// Errors are fine; a panic, a hang or a huge allocation is what the fuzzer finds.
pub fn walk(db: &Db) {
    let _ = db.check();
    let _ = db.stats();
    if let Ok(map) = db.page_map() {
        let pages = map.runs.iter().flat_map(|r| r.start..r.end());
        for id in pages.take(WALK_MAX) {
            let _ = db.dump_page(id);
        }
    }
    let names = db
        .begin_read()
        .and_then(|tx| tx.tree_names())
        .unwrap_or_default();
    let mut firsts: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    if let Ok(tx) = db.begin_read() {
        for name in names.iter().take(64) {
            let Ok(Some(tree)) = tx.tree(name) else {
                continue;
            };
            let _ = tree.len();
            let mut n = 0;
            for entry in tree.iter().take(WALK_MAX) {
                let Ok((k, _)) = entry else { break };
                if n == 0 {
                    firsts.insert(name.clone(), k.to_vec());
                }
                n += 1;
                if n % 17 == 0 {
                    let _ = tree.get(k);
                }
            }
            for entry in tree.iter().rev().take(WALK_MAX) {
                if entry.is_err() {
                    break;
                }
            }
            let _ = tree.first();
            let _ = tree.last();
            if let Ok(r) = tree.range(b"key-010".as_slice()..=b"key-040".as_slice()) {
                for entry in r.take(WALK_MAX) {
                    if entry.is_err() {
                        break;
                    }
                }
            }
            let mut c = tree.cursor();
            let _ = c.seek(b"key-020");
            for _ in 0..100 {
                match c.prev() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
    // The write path over whatever the trees hold: put, overwrite, delete, and delete a tree.
    if let Ok(mut tx) = db.begin_write() {
        for (i, name) in names.iter().take(64).enumerate() {
            let Ok(Some(mut tree)) = tx.tree(name) else {
                continue;
            };
            let _ = tree.put(b"key-025", b"fuzz");
            if let Some(first) = firsts.get(name) {
                let _ = tree.put(first, &[7; 700]);
                let _ = tree.delete(first);
            }
            let _ = tree.delete(b"key-030");
            if i == 1 {
                let _ = tx.delete_tree(name);
            }
        }
        let _ = tx.commit();
    }
    let _ = db.check();
}

/// Opens `image` as a database (nothing else holds its file) and walks it.
pub fn open_and_walk(image: &[u8]) {
    let (sim, _removed) = storage_with(image);
    let storage: Box<dyn Storage> = Box::new(sim);
    if let Ok(db) = Db::builder().open_with(storage) {
        walk(&db);
        if let Ok(store) = folio::Store::with_db(db.clone()) {
            let _ = store.range(
                folio::KeyRange::all(),
                folio::RangeOptions::current().limit(100),
            );
            let _ = store.put(b"/fuzz", b"v");
            let _ = store.compact(store.current_revision());
        }
    }
}
