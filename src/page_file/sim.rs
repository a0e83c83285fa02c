//! A `Storage` for tests: real files (so reads go through a real mapping) plus a shadow copy of
//! what has been made durable, so a test can fail any call or "crash" and see exactly the bytes a
//! power loss would leave.
//!
//! The crash model:
//! 1. Every write and length change to a file since its last `sync` is lost, except, when asked
//!    for, a torn prefix of the most recent unsynced write that went ahead (the call that crashes
//!    does nothing; crashing at call N + 1 tears the write made at call N) — or, in a *reordered*
//!    image ([`SimStorage::crash_image_reordered`]), any subset of the unsynced writes at the
//!    granularity of [`SECTOR`]-byte blocks, in any order: each block holds what it held at the
//!    last sync or what any of the unsynced writes that touched it left there, and the file has
//!    its length at the last sync or its length now. Real disks reorder writes between flushes.
//! 2. A file's name (made by a create, a rename or a removal) is durable once the directory is
//!    synced. Until then a crash may leave the directory as it was at its last sync or as it is now;
//!    [`DirState`] picks which, and a test checks both.
//!
//! A `SimStorage` and the siblings it creates share one simulated machine: one call counter, one
//! armed fault, one crash. Calls are numbered from 1 in the order they are made; a test arms a
//! fault on call N and runs the workload once per N. Writes, length changes, syncs, creations,
//! renames, removals and directory syncs are counted; reads and maps are not.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::Mutex;

use super::storage::{Storage, injected, map_file};
use crate::error::{Error, Result};

/// What happens at the armed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call returns an error and changes nothing; later calls work.
    Fail,
    /// The machine loses power at the call: it does nothing, and this and every later call fails.
    /// [`SimStorage::crash_image`] gives what the disk holds then.
    Crash,
}

/// Which directory a crash image assumes: the one last synced, or the one the OS shows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Names as of the last directory sync.
    Synced,
    /// Names as they are now: every creation, rename and removal reached the disk.
    Current,
}

/// The block a disk writes atomically, for reordered crash images: the smallest sector size.
pub const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct FileState {
    durable: Vec<u8>,
    /// The writes made since the last sync, in order: offset and bytes.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// The file's length now, when a length change since the last sync made it differ.
    len_unsynced: Option<u64>,
}

/// The simulated machine: its files, its directory, and the fault schedule.
#[derive(Debug, Default)]
struct Machine {
    files: Vec<FileState>,
    /// Path → file, as the OS shows it now.
    names: BTreeMap<PathBuf, usize>,
    /// Path → file, as of the last directory sync.
    names_synced: BTreeMap<PathBuf, usize>,
    calls: u64,
    armed: Option<(u64, Fault)>,
    crashed: bool,
}

impl Machine {
    fn add_file(&mut self, path: &Path, durable: Vec<u8>, name_durable: bool) -> usize {
        let id = self.files.len();
        self.files.push(FileState {
            durable,
            ..FileState::default()
        });
        self.names.insert(path.to_path_buf(), id);
        if name_durable {
            self.names_synced.insert(path.to_path_buf(), id);
        }
        id
    }

    /// The file a crash would leave at `path`, with the directory as `dir` says.
    fn file_at(&self, path: &Path, dir: DirState) -> Option<&FileState> {
        let names = match dir {
            DirState::Synced => &self.names_synced,
            DirState::Current => &self.names,
        };
        names.get(path).map(|&id| &self.files[id])
    }

    /// Counts a call and decides whether it goes ahead.
    fn enter(&mut self) -> Result<()> {
        if self.crashed {
            return Err(injected("the simulated machine has crashed"));
        }
        self.calls += 1;
        match self.armed {
            Some((n, fault)) if n == self.calls => {
                self.armed = None;
                if fault == Fault::Crash {
                    self.crashed = true;
                }
                Err(injected("armed fault"))
            }
            _ => Ok(()),
        }
    }
}

/// A fault-injecting [`Storage`] over a real file; see the module docs.
#[derive(Debug, Clone)]
pub struct SimStorage {
    machine: Arc<Mutex<Machine>>,
    id: usize,
    file: Arc<File>,
    path: Arc<Mutex<PathBuf>>,
}

fn create_file(path: &Path) -> Result<File> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?)
}

impl SimStorage {
    /// Creates an empty storage backed by a new file at `path` (which must not exist), on a new
    /// simulated machine. Its name counts as durable.
    pub fn create(path: &Path) -> Result<SimStorage> {
        SimStorage::with_image(path, &[])
    }

    /// Creates a storage at `path` (which must not exist) holding `image`, all of it durable, on a
    /// new simulated machine.
    pub fn with_image(path: &Path, image: &[u8]) -> Result<SimStorage> {
        let file = create_file(path)?;
        std::os::unix::fs::FileExt::write_all_at(&file, image, 0)?;
        let mut machine = Machine::default();
        let id = machine.add_file(path, image.to_vec(), true);
        Ok(SimStorage {
            machine: Arc::new(Mutex::new(machine)),
            id,
            file: Arc::new(file),
            path: Arc::new(Mutex::new(path.to_path_buf())),
        })
    }

    /// Arms `fault` for the `nth` counted call from now (1 is the next call).
    pub fn arm(&self, nth: u64, fault: Fault) {
        let mut m = self.machine.lock();
        m.armed = Some((m.calls + nth, fault));
    }

    /// Disarms any fault.
    pub fn disarm(&self) {
        self.machine.lock().armed = None;
    }

    /// How many counted calls have been made on this machine.
    pub fn calls(&self) -> u64 {
        self.machine.lock().calls
    }

    /// Whether a `Crash` fault has fired.
    pub fn crashed(&self) -> bool {
        self.machine.lock().crashed
    }

    /// The bytes of this storage's file that a power loss now would leave: what was last synced,
    /// plus, with `torn_bytes`, that many leading bytes of the most recent unsynced write.
    pub fn crash_image(&self, torn_bytes: Option<usize>) -> Vec<u8> {
        let m = self.machine.lock();
        image_of(&m.files[self.id], torn_bytes)
    }

    /// The bytes a power loss now could leave of this storage's file if the disk reordered its
    /// unsynced writes: the synced bytes with a subset of the unsynced writes' blocks, each at one
    /// of the versions those writes gave it, at the old or the new length (see the module docs).
    /// `seed` picks the subset; the same seed gives the same image.
    pub fn crash_image_reordered(&self, seed: u64) -> Vec<u8> {
        let m = self.machine.lock();
        reordered_image_of(&m.files[self.id], seed)
    }

    /// [`SimStorage::crash_image_reordered`] of the file at `path`, with the directory as `dir`
    /// says, or `None` if no file would be there.
    pub fn crash_image_reordered_at(
        &self,
        path: &Path,
        dir: DirState,
        seed: u64,
    ) -> Option<Vec<u8>> {
        let m = self.machine.lock();
        m.file_at(path, dir).map(|f| reordered_image_of(f, seed))
    }

    /// How many distinct [`SECTOR`]-byte blocks this storage's file has written since its last
    /// sync: the blocks a reordered image chooses a version of (none: every image is the synced
    /// one).
    pub fn unsynced_blocks(&self) -> usize {
        let m = self.machine.lock();
        touched_blocks(&m.files[self.id].unsynced).len()
    }

    /// The bytes a power loss now would leave at `path`, with the directory as `dir` says, or
    /// `None` if no file would be there.
    pub fn crash_image_at(
        &self,
        path: &Path,
        dir: DirState,
        torn_bytes: Option<usize>,
    ) -> Option<Vec<u8>> {
        let m = self.machine.lock();
        m.file_at(path, dir).map(|f| image_of(f, torn_bytes))
    }

    fn enter(&self) -> Result<()> {
        self.machine.lock().enter()
    }
}

fn image_of(file: &FileState, torn_bytes: Option<usize>) -> Vec<u8> {
    let mut image = file.durable.clone();
    if let (Some(n), Some((offset, data))) = (torn_bytes, file.unsynced.last()) {
        let n = n.min(data.len());
        let end = *offset as usize + n;
        if image.len() < end {
            image.resize(end, 0);
        }
        image[*offset as usize..end].copy_from_slice(&data[..n]);
    }
    image
}

/// The blocks the writes touch, each with the indexes of the writes that touch it, in order.
fn touched_blocks(writes: &[(u64, Vec<u8>)]) -> BTreeMap<u64, Vec<usize>> {
    let mut blocks: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, (offset, data)) in writes.iter().enumerate() {
        if data.is_empty() {
            continue;
        }
        let (first, last) = (
            offset / SECTOR as u64,
            (offset + data.len() as u64 - 1) / SECTOR as u64,
        );
        for block in first..=last {
            blocks.entry(block).or_default().push(i);
        }
    }
    blocks
}

/// A small deterministic generator (splitmix64), so that an image is named by its seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn reordered_image_of(file: &FileState, seed: u64) -> Vec<u8> {
    let mut rng = seed;
    let len_now = file.len_unsynced.unwrap_or_else(|| {
        let written = file.unsynced.iter().map(|(o, d)| o + d.len() as u64);
        written.fold(file.durable.len() as u64, u64::max)
    });
    let len = if splitmix(&mut rng) & 1 == 0 {
        file.durable.len() as u64
    } else {
        len_now
    };
    let mut image = file.durable.clone();
    image.resize(len as usize, 0);
    for (block, writers) in touched_blocks(&file.unsynced) {
        // Version 0 is the synced block; version v > 0 is the block after the v-th write to it.
        let version = (splitmix(&mut rng) % (writers.len() as u64 + 1)) as usize;
        if version == 0 {
            continue;
        }
        let start = block * SECTOR as u64;
        let end = start + SECTOR as u64;
        let mut content = vec![0u8; SECTOR];
        let durable = file
            .durable
            .get(start as usize..(end as usize).min(file.durable.len()));
        if let Some(d) = durable {
            content[..d.len()].copy_from_slice(d);
        }
        for &i in &writers[..version] {
            let (offset, data) = &file.unsynced[i];
            let (from, to) = ((*offset).max(start), (offset + data.len() as u64).min(end));
            content[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
        }
        if start < len {
            let n = ((len - start) as usize).min(SECTOR);
            image[start as usize..start as usize + n].copy_from_slice(&content[..n]);
        }
    }
    image
}

impl Storage for SimStorage {
    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&*self.file, buf, offset)?;
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.enter()?;
        std::os::unix::fs::FileExt::write_all_at(&*self.file, data, offset)?;
        let len = self.len()?;
        let mut m = self.machine.lock();
        let file = &mut m.files[self.id];
        file.unsynced.push((offset, data.to_vec()));
        file.len_unsynced = Some(len);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.enter()?;
        self.file.set_len(len)?;
        self.machine.lock().files[self.id].len_unsynced = Some(len);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.enter()?;
        let len = self.len()? as usize;
        let mut image = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&*self.file, &mut image, 0)?;
        let mut m = self.machine.lock();
        m.files[self.id] = FileState {
            durable: image,
            ..FileState::default()
        };
        Ok(())
    }

    fn map(&self) -> Result<Mmap> {
        if self.machine.lock().crashed {
            return Err(Error::Io(std::io::Error::other(
                "the simulated machine has crashed",
            )));
        }
        map_file(&self.file)
    }

    fn path(&self) -> PathBuf {
        self.path.lock().clone()
    }

    fn create_sibling(&self, path: &Path) -> Result<Box<dyn Storage>> {
        let mut m = self.machine.lock();
        m.enter()?;
        let file = create_file(path)?;
        let id = m.add_file(path, Vec::new(), false);
        Ok(Box::new(SimStorage {
            machine: self.machine.clone(),
            id,
            file: Arc::new(file),
            path: Arc::new(Mutex::new(path.to_path_buf())),
        }))
    }

    fn rename(&self, to: &Path) -> Result<()> {
        let mut m = self.machine.lock();
        m.enter()?;
        let mut path = self.path.lock();
        std::fs::rename(&*path, to)?;
        m.names.remove(&*path);
        m.names.insert(to.to_path_buf(), self.id);
        *path = to.to_path_buf();
        Ok(())
    }

    fn remove_sibling(&self, path: &Path) -> Result<()> {
        let mut m = self.machine.lock();
        if !m.names.contains_key(path) && !path.exists() {
            return Ok(());
        }
        m.enter()?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io(e)),
            _ => {}
        }
        m.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        let mut m = self.machine.lock();
        m.enter()?;
        m.names_synced = m.names.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn reordered_images_keep_any_subset_of_unsynced_sectors_at_any_of_their_versions() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimStorage::with_image(&dir.path().join("f"), &[1; SECTOR]).unwrap();
        // Sector 0 is written twice (a half, then the whole); sector 1 is new, past the synced end.
        sim.write_at(&[2; SECTOR / 2], 0).unwrap();
        sim.write_at(&[3; SECTOR], 0).unwrap();
        sim.write_at(&[4; SECTOR], SECTOR as u64).unwrap();
        assert_eq!(sim.unsynced_blocks(), 2);
        let half = |a: u8, b: u8| [vec![a; SECTOR / 2], vec![b; SECTOR / 2]].concat();
        let first = [vec![1; SECTOR], half(2, 1), vec![3; SECTOR]];
        let mut seen = BTreeSet::new();
        for seed in 0..400 {
            let image = sim.crash_image_reordered(seed);
            let version = first
                .iter()
                .position(|v| image[..SECTOR] == v[..])
                .unwrap_or_else(|| panic!("seed {seed}: sector 0 holds no version it ever had"));
            let second = match image.len() {
                n if n == SECTOR => None,
                n if n == 2 * SECTOR => Some(image[SECTOR] == 4),
                n => panic!("seed {seed}: length {n} is neither the old nor the new"),
            };
            if let Some(written) = second {
                let want = if written { 4 } else { 0 };
                assert!(image[SECTOR..].iter().all(|&b| b == want), "seed {seed}");
            }
            seen.insert((version, second));
        }
        // Every version of sector 0 with either length, and sector 1 written or not.
        assert_eq!(seen.len(), 3 * 3, "{seen:?}");
        sim.sync().unwrap();
        assert_eq!(sim.unsynced_blocks(), 0);
        assert_eq!(
            sim.crash_image_reordered(7),
            std::fs::read(dir.path().join("f")).unwrap()
        );
    }
}
