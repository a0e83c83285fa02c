//! Releasing the old file after a swap without stalling anyone.
//!
//! A file system frees a file's blocks when its last name is gone and its last descriptor and
//! mapping are closed, all at once: for a file of gigabytes that is a burst of journal work, and
//! every `fdatasync` of the new file waits behind it. So the old file is handed to a thread of its
//! own, which:
//! 1. takes a reference to every mapping of the old file still alive, and waits until it holds
//!    the last one (the readers that began before the swap have finished), checking every few
//!    milliseconds and never blocking a reader or a writer; then it unmaps them itself. Unmapping a
//!    mapping of gigabytes tears down every page table entry of it, which takes a tenth of a second
//!    or more: done by whichever reader dropped the last reference, it stalled that reader;
//! 2. shrinks it in steps of [`DEFRAG_RELEASE_STEP`] bytes, pausing [`DEFRAG_RELEASE_PAUSE`]
//!    between steps, so that the freeing is spread out;
//! 3. closes it, with nothing left to free.
//!
//! Shrinking while a mapping is alive would make a reader fault (SIGBUS) on the pages cut off,
//! hence step 1. A storage that does not ask for it ([`Storage::shrink_in_steps`], e.g. the
//! simulated one in tests) is closed at once. An error while shrinking stops the shrinking; the
//! file is closed and the file system frees the rest.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use memmap2::Mmap;

use crate::limits::{DEFRAG_RELEASE_PAUSE, DEFRAG_RELEASE_STEP};
use crate::page_file::storage::Storage;

/// Releases `old` (a defrag's old file, its name taken by the new one) once every mapping in
/// `maps` is dead, unmapping the last of them itself; one that another name still points to is
/// closed whole, at once (see [`Storage::shrink_in_steps`]).
pub(crate) fn release(old: Arc<dyn Storage>, maps: Vec<Weak<Mmap>>) -> Option<JoinHandle<()>> {
    if !old.shrink_in_steps() {
        return None;
    }
    spawn(old, maps, DEFRAG_RELEASE_STEP, DEFRAG_RELEASE_PAUSE)
}

fn spawn(
    old: Arc<dyn Storage>,
    maps: Vec<Weak<Mmap>>,
    step: u64,
    pause: Duration,
) -> Option<JoinHandle<()>> {
    // Strong references, taken before the thread starts: from here on no reader can be the last.
    let maps: Vec<Arc<Mmap>> = maps.iter().filter_map(Weak::upgrade).collect();
    // If no thread can be started, the storage and the mappings drop here, at once.
    std::thread::Builder::new()
        .name("folio-release".into())
        .spawn(move || shrink(&*old, maps, step, pause))
        .ok()
}

fn shrink(old: &dyn Storage, maps: Vec<Arc<Mmap>>, step: u64, pause: Duration) {
    // 1. Wait until this thread holds the last reference to each mapping, then unmap them here.
    // No new reference can appear: the old mappings are reachable only from the snapshots that
    // already hold them.
    let mut wait = Duration::from_millis(1);
    while maps.iter().any(|m| Arc::strong_count(m) > 1) {
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(50));
    }
    drop(maps);
    // 2. Shrink in steps.
    let Ok(mut len) = old.len() else { return };
    while len > 0 {
        len = len.saturating_sub(step);
        if old.set_len(len).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
    // 3. The caller's storage closes as the thread ends.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_file::storage::FileStorage;

    /// What broke: closing a defrag's old file freed gigabytes at once, and the commits of the
    /// new file stalled behind the file system; shrinking it while a reader still mapped it would
    /// make that reader fault; and the reader that dropped the last reference to the old mapping
    /// paid for unmapping it (over 100 ms for a mapping of 2 GiB).
    #[test]
    fn the_old_file_is_shrunk_to_nothing_in_steps_once_no_reader_maps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.folio");
        let storage = FileStorage::create_new(&path).unwrap();
        let len = 10 << 20;
        storage.set_len(len).unwrap();
        storage.write_at(&[7; 4096], len - 4096).unwrap();
        let map = Arc::new(storage.map().unwrap());
        let watch = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        let handle = spawn(
            Arc::new(storage),
            vec![Arc::downgrade(&map)],
            4 << 20,
            Duration::ZERO,
        )
        .unwrap();
        // The reader reads to the end of its mapping: it is still whole.
        assert_eq!(map[len as usize - 1], 7);
        assert_eq!(watch.metadata().unwrap().len(), len);
        // The release thread holds a reference of its own, so the reader's drop is not the last:
        // the unmapping is left to that thread.
        let weak = Arc::downgrade(&map);
        assert_eq!(Arc::strong_count(&map), 2);
        drop(map);
        handle.join().unwrap();
        assert_eq!(weak.strong_count(), 0);
        assert_eq!(watch.metadata().unwrap().len(), 0);
    }

    /// What broke: a database file with a second name (a hard link kept as a backup, as the
    /// defrag benchmark made) lost its data under that name after an online defrag, because the
    /// release shrank the old file to nothing although a name still pointed to it.
    #[test]
    fn a_file_another_name_still_points_to_is_closed_whole_and_only_a_nameless_one_is_shrunk() {
        let dir = tempfile::tempdir().unwrap();
        let (path, backup) = (dir.path().join("db.folio"), dir.path().join("backup.folio"));
        let len = 8 << 20;
        let storage = FileStorage::create_new(&path).unwrap();
        storage.set_len(len).unwrap();
        std::fs::hard_link(&path, &backup).unwrap();
        // The swap's rename takes the database's name; the backup's is left.
        std::fs::remove_file(&path).unwrap();
        assert!(release(Arc::new(storage), Vec::new()).is_none());
        assert_eq!(std::fs::metadata(&backup).unwrap().len(), len);

        // With no name left, the file is shrunk in steps.
        let storage = FileStorage::open(&backup).unwrap();
        let watch = std::fs::File::open(&backup).unwrap();
        std::fs::remove_file(&backup).unwrap();
        release(Arc::new(storage), Vec::new())
            .expect("a release thread for a nameless file")
            .join()
            .unwrap();
        assert_eq!(watch.metadata().unwrap().len(), 0);
    }
}
