//! Every bound folio enforces, as a named constant, with the relations between them checked at
//! compile time.

/// The on-disk format version this build writes. Version 2 added the freelist delta (a commit
/// writes its changes to the free-page list, not the whole list); version 3 the meta's proof (a
/// meta written with one sync names the runs its commit wrote, and counts only if they hold
/// them), which an older build would not check.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build reads. A version 1 file is a version 2 file whose
/// freelist chain is one full list, and a version 2 file is a version 3 file whose metas carry
/// no proof; the first commit after open writes version 3.
pub const FORMAT_VERSION_OLDEST: u32 = 1;

/// Page size used when none is given.
pub const PAGE_SIZE_DEFAULT: u32 = 4096;
/// Permission bits of a new database file when none are given: owner read and write only, as
/// etcd's backend, because a store may hold secrets.
pub const FILE_MODE_DEFAULT: u32 = 0o600;
/// Smallest page size (small pages make deep trees; tests use them).
pub const PAGE_SIZE_MIN: u32 = 512;
/// Largest page size. In-page offsets are `u16`, so a page must be addressable by one.
pub const PAGE_SIZE_MAX: u32 = 32 * 1024;

/// Bytes of the header at the start of every page (and of every overflow run).
pub const PAGE_HEADER_LEN: usize = 24;
/// Bytes of a meta page covered by its checksum; the rest of the page is zero.
pub const META_LEN: usize = 96;

/// Bytes of a slot: the `u16` offset of an entry, kept in key order after the header.
pub const SLOT_LEN: usize = 2;
/// Bytes of a leaf entry before its key: flags `u8`, key length `u16`, value length `u32`.
pub const LEAF_ENTRY_HEADER_LEN: usize = 7;
/// Bytes that stand for a value kept in an overflow run: the run's first page id.
pub const OVERFLOW_REF_LEN: usize = 8;
/// Bytes of a branch entry before its key: child page id `u64`, key length `u16`.
pub const BRANCH_ENTRY_HEADER_LEN: usize = 10;

/// The longest value. Values over a leaf's inline limit live in an overflow run of contiguous pages.
pub const VALUE_LEN_MAX: usize = 1 << 30;

/// The deepest tree any walk descends (readers, the write path, the checker, defrag); deeper means
/// a cycle in a corrupted file, and the walk stops with [`crate::Error::Corrupted`]. Deep enough
/// for the largest file at the smallest page size with two children per branch (see below).
pub const TREE_DEPTH_MAX: usize = 64;

/// The largest file folio reads or writes: what a file offset (`off_t`, an `i64`) can address.
pub const FILE_LEN_MAX: u64 = i64::MAX as u64;

/// The most pages a file of [`FILE_LEN_MAX`] bytes holds. A meta page that records more is
/// corrupt, so `page_count × page_size` never wraps.
pub const fn page_count_max(page_size: u32) -> u64 {
    FILE_LEN_MAX / page_size as u64
}

/// The most entries `pages` tree pages can hold: each entry takes at least a slot and a leaf
/// entry header with a one-byte key. A count read from disk above this is corrupt.
pub const fn entries_max(pages: u64, page_size: u32) -> u64 {
    let per_page = page_capacity(page_size) / (SLOT_LEN + LEAF_ENTRY_HEADER_LEN + 1);
    pages.saturating_mul(per_page as u64)
}

/// The file grows by doubling up to this many bytes, then by this many bytes at a time.
pub const GROWTH_STEP_MAX: u64 = 1 << 30;
/// The smallest file folio creates, in pages (two metas plus room for a first commit).
pub const INITIAL_PAGES_MIN: u64 = 8;

/// The usable bytes of a page after its header.
pub const fn page_capacity(page_size: u32) -> usize {
    page_size as usize - PAGE_HEADER_LEN
}

/// The largest leaf entry (slot, header, key, value) that is kept inline. Larger values go to an
/// overflow run. Half a page, so that any two entries fit one page and splits always progress.
pub const fn inline_entry_max(page_size: u32) -> usize {
    page_capacity(page_size) / 2
}

/// The longest key for a page size: a quarter of a page less the largest entry overhead, so that a
/// branch page always holds at least four separators.
pub const fn key_len_max(page_size: u32) -> usize {
    page_capacity(page_size) / 4 - SLOT_LEN - LEAF_ENTRY_HEADER_LEN - OVERFLOW_REF_LEN
}

/// A dirty node smaller than this many bytes is merged with a sibling at commit.
pub const fn merge_threshold(page_size: u32) -> usize {
    page_capacity(page_size) / 4
}

const _: () = assert!(PAGE_SIZE_MIN.is_power_of_two() && PAGE_SIZE_MAX.is_power_of_two());
const _: () = assert!(PAGE_SIZE_MAX <= u16::MAX as u32 + 1);
const _: () = assert!(META_LEN <= PAGE_SIZE_MIN as usize);
const _: () = assert!(PAGE_HEADER_LEN < META_LEN);
const _: () = assert!(key_len_max(PAGE_SIZE_MIN) >= 64);
// A branch entry with the longest key fits a quarter page, like a leaf entry.
const _: () = assert!(
    SLOT_LEN + BRANCH_ENTRY_HEADER_LEN + key_len_max(PAGE_SIZE_MIN)
        <= page_capacity(PAGE_SIZE_MIN) / 4
);
const _: () = assert!(VALUE_LEN_MAX <= u32::MAX as usize);
// A tree whose branches have two children each (the fewest a spilled branch keeps) reaches
// `TREE_DEPTH_MAX` levels only with more leaves than the largest file holds at the smallest page
// size, so the depth bound never refuses a sound tree.
const _: () = assert!((1u128 << (TREE_DEPTH_MAX - 1)) > page_count_max(PAGE_SIZE_MIN) as u128);
// Any page count a meta may record, times any page size, fits a `u64` and a `usize` offset.
const _: () = assert!(
    (page_count_max(PAGE_SIZE_MIN) as u128) * (PAGE_SIZE_MIN as u128) <= FILE_LEN_MAX as u128
);
const _: () = assert!(FILE_LEN_MAX as u128 <= usize::MAX as u128);

/// The most deltas a freelist chain holds after its full list: a commit after that many writes
/// the whole list again (`page_file::freelist::chain`, invariant 4). An open reads at most this
/// many delta runs more than the full list.
pub const FREELIST_DELTAS_MAX: u64 = 128;

/// Revisions an MVCC compaction deletes per write transaction, by default.
pub const COMPACTION_BATCH_DEFAULT: usize = 1000;
/// Hashes of its last compactions a store keeps, so that `hash_by_rev` at one of those revisions
/// answers as it did before the compaction (etcd's `hashStorageMaxSize`).
pub const COMPACTION_HASHES_KEPT: usize = 10;

/// Keys of the key index a range reads at a time: [`crate::Store::range_stream`] under one hold
/// of the index lock, [`crate::Store::range`] between two looks at how long it has held it.
pub const RANGE_INDEX_CHUNK: usize = 1024;
/// How long a range ([`crate::Store::range`]) holds the index lock before it lets a waiting
/// writer in (between two chunks): a writer waits about this long, plus a chunk, for a range
/// that is on a core.
pub const RANGE_INDEX_HOLD: std::time::Duration = std::time::Duration::from_millis(1);
/// How long reads of one key may take the store's index lock beside other readers while a
/// writer waits for it; after that they queue behind the writer, so that a stream of them cannot
/// keep it out. Writers wait for ranges about [`RANGE_INDEX_HOLD`] and a chunk; at 1 ms here,
/// gets at 13,000 keys a range queued behind them often enough to take 1.2 ms at the 99th
/// percentile (0.09 ms passing them always).
pub const INDEX_WRITER_PASSED_MAX: std::time::Duration = std::time::Duration::from_millis(5);
/// Records a streaming range reads from the key tree at a time: what it holds in memory.
pub const RANGE_STREAM_LOAD_BATCH: usize = 128;
const _: () = assert!(RANGE_STREAM_LOAD_BATCH > 0 && RANGE_INDEX_CHUNK > 0);
/// Records the `key` tree must hold for a store's close to persist its key index: below it a
/// rebuild on open takes milliseconds, and the file is left as an older build would leave it.
/// (`Store::persist_index` persists at any size.)
pub const INDEX_PERSIST_AT_CLOSE_RECORDS_MIN: u64 = 10_000;
/// The longest lease TTL in seconds, etcd's `MaxLeaseTTL`.
pub const LEASE_TTL_MAX: i64 = 9_000_000_000;
/// Events a watcher buffers by default before it falls behind and catches up from the key tree.
pub const WATCH_BUFFER_EVENTS_DEFAULT: usize = 1024;

/// Bytes of a store record before its key and value: key length `u32`, create revision, mod
/// revision, version and lease (`i64` each).
pub const STORE_RECORD_FIXED_LEN: usize = 4 + 4 * 8;
/// The longest value a [`crate::Store`] accepts: its record (fixed fields, the longest key of any
/// page size, the value) is a tree value, so it must fit [`VALUE_LEN_MAX`].
pub const STORE_VALUE_LEN_MAX: usize =
    VALUE_LEN_MAX - STORE_RECORD_FIXED_LEN - key_len_max(PAGE_SIZE_MAX);
const _: () = assert!(STORE_VALUE_LEN_MAX > VALUE_LEN_MAX / 2);

/// A group-commit round waits for the writers the round before it released for at most the
/// previous round's sync time divided by this (see `txn::sync`, rule 6) ...
pub const JOIN_WINDOW_SYNC_DIVISOR: u32 = 4;
/// ... and never longer than this; a combining leader gathers the writers coming back for at
/// most the previous sync's time, and never longer than this either (`mvcc::combine`, rule 2).
pub const JOIN_WINDOW_MAX: std::time::Duration = std::time::Duration::from_millis(2);

/// The most concurrent store writes one database commit carries (`mvcc::combine`) ...
pub const COMBINE_REQUESTS_MAX: usize = 64;
/// ... and the most bytes of keys and values it takes in beyond its first write.
pub const COMBINE_BYTES_MAX: usize = 1 << 20;

/// The fill factor a defrag packs pages to when none is given: full.
pub const DEFRAG_FILL_DEFAULT: f64 = 1.0;
/// The lowest defrag fill factor: half a page, so that any entry (at most half a page, see
/// [`inline_entry_max`]) fits and every page holds at least one.
pub const DEFRAG_FILL_MIN: f64 = 0.5;
/// How long an online defrag expects its last catch-up round, with writers held, may take.
pub const DEFRAG_PAUSE_BUDGET_DEFAULT: std::time::Duration = std::time::Duration::from_millis(5);
/// The most catch-up rounds an online defrag runs without holding writers, by default.
pub const DEFRAG_ROUNDS_DEFAULT: u32 = 16;
/// A defrag's old file is shrunk by this many bytes at a time once no reader maps it ...
///
/// Freeing blocks stalls the file system for everyone: on this project's test machine (ext4
/// mounted with `discard`; `examples/release_stall.rs`, a 2 GiB file) a 4 KiB write and
/// `fdatasync` of another file took up to 142 ms (p99 4.4 ms) while the file was shrunk 64 MiB
/// per 20 ms, and at 4 MiB per 100 ms (40 MiB/s) p99 0.27 ms, longest 99 ms, as with nothing
/// freed (p99 0.32 ms, longest 124 ms). A 7 GiB file takes three minutes to go; its space comes
/// back as it shrinks.
pub const DEFRAG_RELEASE_STEP: u64 = 4 << 20;
/// ... with this pause between two steps.
pub const DEFRAG_RELEASE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Bytes a defrag gathers before each write to the new file.
pub const DEFRAG_WRITE_LEN: usize = 8 << 20;
/// Write buffers a defrag fills while earlier ones are being written.
pub const DEFRAG_WRITE_BUFFERS: usize = 3;
/// The largest request a paced defrag makes (see [`crate::DefragOptions::pace`]).
pub const DEFRAG_PACE_PIECE: usize = 1 << 20;
/// The default pace of a defrag's disk traffic while writers commit beside it, in bytes per
/// second (see [`crate::DefragOptions::pace`]).
pub const DEFRAG_PACE_DEFAULT: u64 = 64 << 20;
/// A pace holds while a commit happened, or a write transaction was open, this recently; after
/// that the defrag goes at the disk's speed until a writer comes back.
pub const DEFRAG_PACE_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// A defrag reads the source ahead in file order in requests of this many bytes.
pub const DEFRAG_READAHEAD_CHUNK: usize = 8 << 20;
/// A defrag reads through gaps between live pages of up to this many bytes rather than skip them.
pub const DEFRAG_READAHEAD_GAP_MAX: u64 = 256 << 10;
/// The most a defrag reads ahead where the system does not say how much memory is available.
pub const DEFRAG_READAHEAD_MAX: u64 = 4 << 30;
