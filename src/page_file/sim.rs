//! A `Storage` for tests: a real file (so reads go through a real mapping) plus a shadow copy of
//! what has been made durable, so a test can fail any call or "crash" and see exactly the bytes a
//! power loss would leave.
//!
//! The crash model: every write and length change since the last `sync` is lost, except, when asked
//! for, a torn prefix of the most recent unsynced write that went ahead (the call that crashes does
//! nothing; crashing at call N + 1 tears the write made at call N). Calls are numbered from 1 in
//! the order they are made; a test arms a fault on call N and runs the workload once per N.

use std::fs::File;
use std::path::Path;
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

#[derive(Debug)]
struct State {
    durable: Vec<u8>,
    /// The most recent unsynced write, for torn-write images.
    last_write: Option<(u64, Vec<u8>)>,
    calls: u64,
    armed: Option<(u64, Fault)>,
    crashed: bool,
}

/// A fault-injecting [`Storage`] over a real file; see the module docs.
#[derive(Debug, Clone)]
pub struct SimStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    state: Mutex<State>,
}

impl SimStorage {
    /// Creates an empty storage backed by a new file at `path` (which must not exist).
    pub fn create(path: &Path) -> Result<SimStorage> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(SimStorage::from_parts(file, Vec::new()))
    }

    /// Creates a storage at `path` (which must not exist) holding `image`, all of it durable.
    pub fn with_image(path: &Path, image: &[u8]) -> Result<SimStorage> {
        let sim = SimStorage::create(path)?;
        {
            let inner = &sim.inner;
            std::os::unix::fs::FileExt::write_all_at(&inner.file, image, 0)?;
            inner.state.lock().durable = image.to_vec();
        }
        Ok(sim)
    }

    fn from_parts(file: File, durable: Vec<u8>) -> SimStorage {
        SimStorage {
            inner: Arc::new(Inner {
                file,
                state: Mutex::new(State {
                    durable,
                    last_write: None,
                    calls: 0,
                    armed: None,
                    crashed: false,
                }),
            }),
        }
    }

    /// Arms `fault` for the `nth` counted call from now (1 is the next call).
    pub fn arm(&self, nth: u64, fault: Fault) {
        let mut s = self.inner.state.lock();
        s.armed = Some((s.calls + nth, fault));
    }

    /// Disarms any fault.
    pub fn disarm(&self) {
        self.inner.state.lock().armed = None;
    }

    /// How many counted calls (writes, length changes, syncs) have been made.
    pub fn calls(&self) -> u64 {
        self.inner.state.lock().calls
    }

    /// Whether a `Crash` fault has fired.
    pub fn crashed(&self) -> bool {
        self.inner.state.lock().crashed
    }

    /// The bytes a power loss now would leave: what was last synced, plus, with `torn_bytes`, that
    /// many leading bytes of the most recent unsynced write.
    pub fn crash_image(&self, torn_bytes: Option<usize>) -> Vec<u8> {
        let s = self.inner.state.lock();
        let mut image = s.durable.clone();
        if let (Some(n), Some((offset, data))) = (torn_bytes, &s.last_write) {
            let n = n.min(data.len());
            let end = *offset as usize + n;
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*offset as usize..end].copy_from_slice(&data[..n]);
        }
        image
    }

    /// Counts a call and decides whether it goes ahead.
    fn enter(&self) -> Result<()> {
        let mut s = self.inner.state.lock();
        if s.crashed {
            return Err(injected("the simulated machine has crashed"));
        }
        s.calls += 1;
        match s.armed {
            Some((n, fault)) if n == s.calls => {
                s.armed = None;
                if fault == Fault::Crash {
                    s.crashed = true;
                }
                Err(injected("armed fault"))
            }
            _ => Ok(()),
        }
    }
}

impl Storage for SimStorage {
    fn len(&self) -> Result<u64> {
        Ok(self.inner.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.inner.file, buf, offset)?;
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.enter()?;
        std::os::unix::fs::FileExt::write_all_at(&self.inner.file, data, offset)?;
        self.inner.state.lock().last_write = Some((offset, data.to_vec()));
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.enter()?;
        self.inner.file.set_len(len)?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.enter()?;
        let len = self.len()? as usize;
        let mut image = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&self.inner.file, &mut image, 0)?;
        let mut s = self.inner.state.lock();
        s.durable = image;
        s.last_write = None;
        Ok(())
    }

    fn map(&self) -> Result<Mmap> {
        if self.inner.state.lock().crashed {
            return Err(Error::Io(std::io::Error::other(
                "the simulated machine has crashed",
            )));
        }
        map_file(&self.inner.file)
    }
}
