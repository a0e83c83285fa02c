//! File helpers: the length of a file, the disk space of a directory's files, dropping a file from the page cache, and the plain copy
//! that is the floor for any compaction (read the bytes, write them to a new file, sync).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Result;

/// The plain copy moves data in buffers this large, as `cp` does with large files.
const COPY_BUFFER: usize = 8 << 20;

pub fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// The bytes the files under `dir` take on the disk (their allocated blocks: a file grown with
/// `set_len` and not written to the end takes less than its length).
pub fn disk_used(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut used = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        used += if meta.is_dir() {
            disk_used(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(used)
}

/// Drops `path`'s pages from the page cache, so that the next reader starts cold (as a defrag of
/// a large, mostly unread file does). Call it with the file closed by every engine: the kernel
/// keeps pages that a live mapping holds.
pub fn evict(path: &Path) -> Result<()> {
    let file = File::open(path)?;
    // Dirty pages cannot be dropped; every engine has synced, but make sure.
    file.sync_all()?;
    // SAFETY: posix_fadvise only reads its arguments; the descriptor is open for the whole call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).into());
    }
    Ok(())
}

/// Copies `from` to a new file `to` with plain reads and writes, syncs it, and removes it again;
/// returns the time taken, from opening `from` to the end of the sync.
pub fn plain_copy(from: &Path, to: &Path) -> Result<Duration> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let start = Instant::now();
    let mut source = File::open(from)?;
    let mut target = File::create(to)?;
    loop {
        let n = source.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        target.write_all(&buffer[..n])?;
    }
    target.sync_all()?;
    let elapsed = start.elapsed();
    drop(target);
    std::fs::remove_file(to)?;
    Ok(elapsed)
}
