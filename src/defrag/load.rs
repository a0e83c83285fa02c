//! The bulk loader: every tree of a snapshot, copied in key order into a new file.
//!
//! Invariants of the file it writes:
//! 1. Pages 0 and 1 are metas holding the same meta: the snapshot's txid, the new catalog root and
//!    count, no freelist, and a page count equal to the file's length in pages. No page is free.
//! 2. Pages are written in id order, in writes of [`DEFRAG_WRITE_LEN`], the metas last. Each tree
//!    comes out as a streaming bottom-up build emits it: an overflow run before the leaf that
//!    points to it, a branch after its last child, the catalog after every tree.
//! 3. Leaves and branches are packed to the fill factor, except the last two pages of each level,
//!    which are evened out so that the last is not underfull.
//! 4. The trees, keys, values and entry counts are the snapshot's. Keys out of order or a count
//!    that differs from the tree's descriptor are corruption of the source and stop the copy, as
//!    does any page whose checksum fails: every page read is verified.
//!
//! Reading: the walk is in key order, which in a fragmented file is random order on disk. So a
//! second thread reads the live pages ahead in file order (see `readahead`); or, when they would
//! not fit in memory, the walk asks the kernel for each branch's children before it descends and
//! for each leaf's overflow runs before it copies them (`madvise(WILLNEED)`): many reads in flight
//! instead of one page fault at a time. With writers beside the copy, the source mapping is
//! advised random access while the walk runs, so that a fault reads its page and not the pages
//! around it, out of the pace's reach (see `readahead::RandomAccess`).
//!
//! Writing: the walk fills a buffer and hands it to a writer thread, which writes it with
//! [`Storage::write_bulk`] (around the page cache, where the file system allows) while the walk
//! fills the next; [`DEFRAG_WRITE_BUFFERS`] buffers in all. So the disk writes while the walk
//! reads, the final sync has little left to do, and no page-cache memory is taken for the new
//! file while writers wait. During the walk only the writer calls the storage, in order, so a
//! simulated crash at the n-th call is the same crash in every run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use memmap2::{Advice, Mmap};

use crate::btree::node::{
    self, PageView, ValueRef, branch_entry_len, leaf_entry_len, overflow_pages,
};
use crate::btree::source::{Pages, Verify};
use crate::defrag::options::{DefragOptions, DefragProgress};
use crate::defrag::pace::{Commits, Pace};
use crate::defrag::readahead;
use crate::error::{Error, PageId, Result, corrupted};
use crate::limits::{
    DEFRAG_WRITE_BUFFERS, DEFRAG_WRITE_LEN, OVERFLOW_REF_LEN, TREE_DEPTH_MAX, key_len_max,
    merge_threshold, page_capacity,
};
use crate::page_file::meta::Meta;
use crate::page_file::page::{self, ZeroCrcs};
use crate::page_file::storage::{BULK_ALIGN, Storage};
use crate::txn::catalog::Descriptor;
use crate::txn::db::Snapshot;

/// Source pages (tree pages and overflow runs) copied between progress reports.
const PROGRESS_EVERY: u64 = 2048;

/// Writes every tree of `source` into `out` (an empty file) and returns the new file's meta.
/// `pages_total` is the number of source pages the walk will visit, for progress reports.
/// `unused` lists the source's runs of free, pending and freelist pages, sorted, so that its live
/// pages can be read ahead in file order. `commits` reads the source database's commit counter and
/// whether a writer is busy, if writers may commit beside the copy: the pace holds only while
/// they write (see `pace.rs`).
pub(crate) fn copy(
    source: &Snapshot,
    out: &dyn Storage,
    options: &DefragOptions,
    pages_total: u64,
    unused: &[(PageId, u64)],
    commits: Option<Commits<'_>>,
) -> Result<Meta> {
    let pace = || match commits {
        Some(commits) => Pace::while_committing(options.pace, commits),
        None => Pace::new(options.pace),
    };
    let ranges = readahead::live_ranges(source.meta.page_count, source.meta.page_size, unused);
    let ahead = readahead::fits_in_memory(ranges.iter().map(|r| r.1).sum());
    // With writers beside the copy, the walk's faults read only what they need (see
    // `RandomAccess`); alone, a fault's neighbours are reads the copy would make anyway.
    let _random = commits.map(|_| readahead::RandomAccess::new(&source.map));
    let stop = AtomicBool::new(false);
    let (sink, writes, spare) = Sink::new(source.meta.page_size);
    let (copied, written) = std::thread::scope(|s| {
        if ahead {
            s.spawn(|| readahead::run(&source.map, &ranges, &stop, &mut pace()));
        }
        let mut pace = pace();
        let writer = s.spawn(move || write_all(out, writes, spare, &mut pace));
        let copied = copy_trees(source, sink, options, pages_total, !ahead);
        stop.store(true, Ordering::Relaxed);
        (copied, writer.join())
    });
    // The writer's error is the cause when both failed: the sink only saw it stop.
    written.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let new = copied?;
    // The metas last, after every page they lead to.
    out.write_at(&[new.encode(0), new.encode(1)].concat(), 0)?;
    Ok(new)
}

fn copy_trees<'a>(
    source: &'a Snapshot,
    mut sink: Sink<'a>,
    options: &DefragOptions,
    pages_total: u64,
    prefetch_children: bool,
) -> Result<Meta> {
    let meta = source.meta;
    let mut reader = Reader {
        prefetch_children,
        pages: source.pages_verified(Verify::Always),
        map: &source.map,
        visited: vec![0; meta.page_count.div_ceil(64) as usize],
        options,
        progress: DefragProgress {
            pages_done: 0,
            pages_total,
        },
        reported: 0,
    };
    let shape = Shape::new(meta.page_size, options.fill);
    let mut zeros = ZeroCrcs::default();

    // The catalog first, read whole (it is small), then each tree in name order.
    // Not sized by `catalog_len`: a count read from disk never sizes an allocation.
    let mut trees: Vec<(&[u8], Descriptor)> = Vec::new();
    if meta.catalog_root != 0 {
        reader.walk(meta.catalog_root, &mut |name, value| {
            let ValueRef::Inline(raw) = value else {
                return Err(corrupted(
                    meta.catalog_root,
                    "a tree descriptor in an overflow run",
                ));
            };
            trees.push((name, Descriptor::decode(raw, meta.catalog_root)?));
            Ok(())
        })?;
    }
    check_count(
        meta.catalog_root,
        trees.len() as u64,
        meta.catalog_len,
        "catalog",
    )?;
    let mut descriptors = Vec::with_capacity(trees.len());
    for (_, d) in &trees {
        let mut tree = TreeBuilder::new(shape);
        if d.root != 0 {
            let pages = reader.pages;
            reader.walk(d.root, &mut |key, value| {
                let value = match value {
                    ValueRef::Inline(_) => value,
                    ValueRef::Overflow { page, len } => {
                        // Validated and verified by `overflow`; copied whole, then renumbered.
                        pages.overflow(page, len)?;
                        let run = pages.run(page, overflow_pages(len as usize, meta.page_size))?;
                        let new = sink.append_run(run, &mut zeros)?;
                        ValueRef::Overflow { page: new, len }
                    }
                };
                tree.add(&mut sink, key, value)
            })?;
        }
        check_count(d.root, tree.len, d.len, "tree")?;
        let root = tree.finish(&mut sink)?.unwrap_or(0);
        descriptors.push(Descriptor { root, len: d.len }.encode());
    }
    let mut catalog = TreeBuilder::new(shape);
    for ((name, _), d) in trees.iter().zip(&descriptors) {
        catalog.add(&mut sink, name, ValueRef::Inline(d))?;
    }
    let catalog_root = catalog.finish(&mut sink)?.unwrap_or(0);
    sink.flush()?;
    reader.report();

    Ok(Meta {
        page_size: meta.page_size,
        txid: meta.txid,
        catalog_root,
        catalog_len: trees.len() as u64,
        freelist: 0,
        page_count: sink.next_id(),
    })
}

fn check_count(page: PageId, counted: u64, recorded: u64, what: &str) -> Result<()> {
    if counted != recorded {
        return Err(corrupted(
            page,
            format!("{what} holds {counted} entries but records {recorded}"),
        ));
    }
    Ok(())
}

/// Reads the source: a walk in key order that verifies every page and reads ahead.
struct Reader<'a, 'o> {
    /// Whether to ask for each branch's children and each leaf's overflow runs before reading
    /// them (when the whole file is not being read ahead).
    prefetch_children: bool,
    pages: Pages<'a>,
    map: &'a Mmap,
    /// One bit per page: tree pages already visited. A page reached twice means a corrupt file
    /// (a cycle, or a subtree shared between parents), which would otherwise be copied twice.
    visited: Vec<u64>,
    options: &'o DefragOptions,
    progress: DefragProgress,
    reported: u64,
}

/// What the walk hands on: each entry of a tree, in key order.
type Visit<'f, 'a> = dyn FnMut(&'a [u8], ValueRef<'a>) -> Result<()> + 'f;

impl<'a> Reader<'a, '_> {
    /// Calls `visit` with every entry of the tree under `root`, in key order.
    fn walk(&mut self, root: PageId, visit: &mut Visit<'_, 'a>) -> Result<()> {
        let mut prev = None;
        self.node(root, 1, &mut prev, visit)
    }

    fn node(
        &mut self,
        id: PageId,
        depth: usize,
        prev: &mut Option<&'a [u8]>,
        visit: &mut Visit<'_, 'a>,
    ) -> Result<()> {
        if depth > TREE_DEPTH_MAX {
            return Err(corrupted(id, "tree deeper than the limit"));
        }
        let view = self.pages.node(id)?;
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if self.visited[word] & bit != 0 {
            return Err(corrupted(id, "page reachable twice"));
        }
        self.visited[word] |= bit;
        match view {
            PageView::Branch(branch) => {
                let children = (0..branch.len())
                    .map(|i| branch.child(i))
                    .collect::<Result<Vec<_>>>()?;
                for &child in &children {
                    self.prefetch(child, 1);
                }
                self.visited(1);
                for child in children {
                    self.node(child, depth + 1, prev, visit)?;
                }
            }
            PageView::Leaf(leaf) => {
                let mut pages = 1;
                for i in 0..leaf.len() {
                    if let ValueRef::Overflow { page, len } = leaf.value(i)? {
                        let run = overflow_pages(len as usize, self.pages.page_size);
                        self.prefetch(page, run);
                        pages += run;
                    }
                }
                let key_len_max = key_len_max(self.pages.page_size);
                for i in 0..leaf.len() {
                    let key = leaf.key(i)?;
                    if key.len() > key_len_max {
                        return Err(corrupted(
                            id,
                            format!("leaf key {i} over the key length limit"),
                        ));
                    }
                    if prev.is_some_and(|p| p >= key) {
                        return Err(corrupted(
                            id,
                            format!("leaf keys out of order at entry {i}"),
                        ));
                    }
                    *prev = Some(key);
                    visit(key, leaf.value(i)?)?;
                }
                self.visited(pages);
            }
        }
        Ok(())
    }

    /// Asks the kernel to start reading a run of pages. A hint: if it fails, the walk faults the
    /// pages in as it reaches them.
    fn prefetch(&self, id: PageId, pages: u64) {
        if !self.prefetch_children {
            return;
        }
        let page_size = self.pages.page_size as usize;
        let start = id as usize * page_size;
        let len = pages as usize * page_size;
        if start
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len())
        {
            let _ = self.map.advise_range(Advice::WillNeed, start, len);
        }
    }

    fn visited(&mut self, pages: u64) {
        self.progress.pages_done += pages;
        if self.progress.pages_done - self.reported >= PROGRESS_EVERY {
            self.report();
        }
    }

    fn report(&mut self) {
        self.reported = self.progress.pages_done;
        self.options.report(self.progress);
    }
}

/// A buffer of whole pages whose first byte is aligned to [`BULK_ALIGN`], so that the storage
/// can write it around the page cache.
struct PageBuf {
    bytes: Vec<u8>,
    /// Where the aligned part of `bytes` begins.
    at: usize,
    len: usize,
}

impl PageBuf {
    fn new(capacity: usize) -> PageBuf {
        let bytes = vec![0; capacity + BULK_ALIGN];
        // `align_offset` may decline (usize::MAX): the buffer is then unaligned, and the storage
        // writes it through the page cache like any other.
        let at = bytes.as_ptr().align_offset(BULK_ALIGN).min(BULK_ALIGN);
        PageBuf { bytes, at, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.bytes.len() - BULK_ALIGN
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.at..self.at + self.len]
    }

    /// Extends the filled part by `n` bytes and returns them (stale bytes: callers overwrite).
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let start = self.at + self.len;
        self.len += n;
        &mut self.bytes[start..start + n]
    }
}

/// A write for the writer thread: a buffer of pages, or a run copied straight from the source.
enum Write<'a> {
    Pages(PageBuf, u64),
    Run(&'a [u8], u64),
}

/// The writer thread: writes what the sink sends, in order, and hands each buffer back. Stops at
/// the first error, which drops its ends of the channels and so stops the sink too.
fn write_all(
    out: &dyn Storage,
    writes: Receiver<Write<'_>>,
    spare: SyncSender<PageBuf>,
    pace: &mut Pace,
) -> Result<()> {
    for write in writes {
        match write {
            Write::Pages(mut buf, offset) => {
                write_paced(out, buf.filled(), offset, pace)?;
                buf.len = 0;
                // The sink may have finished and gone: then nobody needs the buffer back.
                let _ = spare.send(buf);
            }
            Write::Run(run, offset) => write_paced(out, run, offset, pace)?,
        }
    }
    Ok(())
}

/// Writes `data` at `offset` in the pieces `pace` allows. Pieces of a page-aligned buffer at a
/// page-aligned offset stay aligned, so they still go around the cache.
fn write_paced(out: &dyn Storage, data: &[u8], offset: u64, pace: &mut Pace) -> Result<()> {
    let mut at = 0;
    while at < data.len() {
        let n = pace.piece(data.len() - at);
        out.write_bulk(&data[at..at + n], offset + at as u64)?;
        pace.moved(n);
        at += n;
    }
    Ok(())
}

/// Where pages go: a buffer of consecutive pages, handed to the writer thread when it is full,
/// while the walk fills another. The new file is written front to back, in order.
struct Sink<'a> {
    page_size: usize,
    /// The id of the first page in `buf`.
    start: PageId,
    buf: PageBuf,
    writes: SyncSender<Write<'a>>,
    spare: Receiver<PageBuf>,
}

impl<'a> Sink<'a> {
    /// A sink, with the ends the writer thread takes: the writes to make, and where to hand
    /// back the buffers written.
    fn new(page_size: u32) -> (Sink<'a>, Receiver<Write<'a>>, SyncSender<PageBuf>) {
        let (writes, to_write) = sync_channel(DEFRAG_WRITE_BUFFERS);
        let (written, spare) = sync_channel(DEFRAG_WRITE_BUFFERS);
        for _ in 1..DEFRAG_WRITE_BUFFERS {
            written
                .send(PageBuf::new(DEFRAG_WRITE_LEN))
                .expect("the channel holds every buffer");
        }
        let sink = Sink {
            page_size: page_size as usize,
            start: 2,
            buf: PageBuf::new(DEFRAG_WRITE_LEN),
            writes,
            spare,
        };
        (sink, to_write, written)
    }

    /// The id the next page appended will have.
    fn next_id(&self) -> PageId {
        self.start + (self.buf.len / self.page_size) as u64
    }

    /// Appends a zeroed page, lets `fill` encode it given its id, and returns that id.
    fn append_page(&mut self, fill: impl FnOnce(&mut [u8], PageId)) -> Result<PageId> {
        if self.buf.len + self.page_size > self.buf.capacity() {
            self.flush()?;
        }
        let id = self.next_id();
        let page = self.buf.grow(self.page_size);
        page.fill(0);
        fill(page, id);
        Ok(id)
    }

    /// Appends a run of pages copied from the source, renumbered to start at the next id. Only
    /// the first page changes, so a run larger than a buffer goes straight from the source.
    fn append_run(&mut self, run: &'a [u8], zeros: &mut ZeroCrcs) -> Result<PageId> {
        let whole = run.len() <= self.buf.capacity();
        let buffered = if whole { run.len() } else { self.page_size };
        if self.buf.len + buffered > self.buf.capacity() {
            self.flush()?;
        }
        let id = self.next_id();
        let copy = self.buf.grow(buffered);
        copy.copy_from_slice(&run[..buffered]);
        page::move_run(&mut copy[..self.page_size], run.len(), id, zeros);
        if !whole {
            self.flush()?;
            let offset = self.start * self.page_size as u64;
            self.send(Write::Run(&run[self.page_size..], offset))?;
            self.start += (run.len() / self.page_size - 1) as u64;
        }
        Ok(id)
    }

    /// Hands the buffered pages to the writer and takes an empty buffer back.
    fn flush(&mut self) -> Result<()> {
        if self.buf.len == 0 {
            return Ok(());
        }
        let start = self.next_id();
        let empty = self.spare.recv().map_err(|_| writer_stopped())?;
        let full = std::mem::replace(&mut self.buf, empty);
        self.send(Write::Pages(full, self.start * self.page_size as u64))?;
        self.start = start;
        Ok(())
    }

    fn send(&self, write: Write<'a>) -> Result<()> {
        self.writes.send(write).map_err(|_| writer_stopped())
    }
}

/// What the sink reports when the writer has stopped; the writer's own error is the one returned.
fn writer_stopped() -> Error {
    Error::Io(std::io::Error::other("the defrag writer stopped"))
}

/// How full to make pages.
#[derive(Clone, Copy, Debug)]
struct Shape {
    page_size: u32,
    /// Bytes of entries (slots included) a page is filled to.
    limit: usize,
    /// A last page with fewer bytes than this takes entries from the one before it.
    underfull: usize,
}

impl Shape {
    fn new(page_size: u32, fill: f64) -> Shape {
        let capacity = page_capacity(page_size);
        Shape {
            page_size,
            limit: ((capacity as f64 * fill) as usize).clamp(capacity / 2, capacity),
            underfull: merge_threshold(page_size),
        }
    }
}

/// An entry of a page being built.
trait Entry: Copy {
    /// Bytes it takes in its page, slot included.
    fn bytes(&self) -> usize;
}

type LeafEntry<'a> = (&'a [u8], ValueRef<'a>);
type BranchEntry<'a> = (&'a [u8], PageId);

impl Entry for LeafEntry<'_> {
    fn bytes(&self) -> usize {
        let stored = match self.1 {
            ValueRef::Inline(v) => v.len(),
            ValueRef::Overflow { .. } => OVERFLOW_REF_LEN,
        };
        leaf_entry_len(self.0.len(), stored)
    }
}

impl Entry for BranchEntry<'_> {
    fn bytes(&self) -> usize {
        branch_entry_len(self.0.len())
    }
}

/// One level of a tree being built: the page being filled, and the full page before it, held
/// back so that the last two pages of the level can be evened out.
#[derive(Debug)]
struct Level<E> {
    held: Vec<E>,
    held_bytes: usize,
    filling: Vec<E>,
    filling_bytes: usize,
    /// Pages of this level written so far.
    written: u64,
}

impl<E> Default for Level<E> {
    fn default() -> Self {
        Level {
            held: Vec::new(),
            held_bytes: 0,
            filling: Vec::new(),
            filling_bytes: 0,
            written: 0,
        }
    }
}

impl<E: Entry> Level<E> {
    /// Adds an entry. Returns the entries of a page that no later entry can change: it is ready
    /// to be written.
    fn push(&mut self, entry: E, shape: Shape) -> Option<Vec<E>> {
        let mut ready = None;
        if !self.filling.is_empty() && self.filling_bytes + entry.bytes() > shape.limit {
            let full = std::mem::take(&mut self.filling);
            ready = Some(std::mem::replace(&mut self.held, full)).filter(|p| !p.is_empty());
            self.held_bytes = std::mem::take(&mut self.filling_bytes);
        }
        self.filling_bytes += entry.bytes();
        self.filling.push(entry);
        ready
    }

    /// The level's last pages: the held page and the one being filled, as one page if they fit
    /// together, else with entries moved from the first to the second until it is not underfull.
    fn finish(&mut self, shape: Shape) -> Vec<Vec<E>> {
        let mut held = std::mem::take(&mut self.held);
        let mut last = std::mem::take(&mut self.filling);
        let mut last_bytes = std::mem::take(&mut self.filling_bytes);
        if held.is_empty() {
            return if last.is_empty() { vec![] } else { vec![last] };
        }
        if std::mem::take(&mut self.held_bytes) + last_bytes <= shape.limit {
            held.extend(last);
            return vec![held];
        }
        let capacity = page_capacity(shape.page_size);
        let mut moved = 0;
        while last_bytes < shape.underfull && held.len() - moved > 1 {
            let bytes = held[held.len() - 1 - moved].bytes();
            if last_bytes + bytes > capacity {
                break;
            }
            last_bytes += bytes;
            moved += 1;
        }
        let tail = held.split_off(held.len() - moved);
        last.splice(0..0, tail);
        vec![held, last]
    }
}

/// A tree built bottom-up from entries in key order.
struct TreeBuilder<'a> {
    shape: Shape,
    leaves: Level<LeafEntry<'a>>,
    /// `branches[0]` is the level above the leaves.
    branches: Vec<Level<BranchEntry<'a>>>,
    len: u64,
}

impl<'a> TreeBuilder<'a> {
    fn new(shape: Shape) -> TreeBuilder<'a> {
        TreeBuilder {
            shape,
            leaves: Level::default(),
            branches: Vec::new(),
            len: 0,
        }
    }

    /// Adds the next entry; keys must come in order.
    fn add(&mut self, sink: &mut Sink<'_>, key: &'a [u8], value: ValueRef<'a>) -> Result<()> {
        self.len += 1;
        match self.leaves.push((key, value), self.shape) {
            Some(page) => self.write_leaf(sink, page),
            None => Ok(()),
        }
    }

    fn write_leaf(&mut self, sink: &mut Sink<'_>, entries: Vec<LeafEntry<'a>>) -> Result<()> {
        let id =
            sink.append_page(|buf, id| node::encode_leaf_into(buf, id, entries.iter().copied()))?;
        self.leaves.written += 1;
        self.add_branch(sink, 0, (entries[0].0, id))
    }

    fn add_branch(
        &mut self,
        sink: &mut Sink<'_>,
        level: usize,
        entry: BranchEntry<'a>,
    ) -> Result<()> {
        if self.branches.len() == level {
            self.branches.push(Level::default());
        }
        match self.branches[level].push(entry, self.shape) {
            Some(page) => self.write_branch(sink, level, page),
            None => Ok(()),
        }
    }

    fn write_branch(
        &mut self,
        sink: &mut Sink<'_>,
        level: usize,
        entries: Vec<BranchEntry<'a>>,
    ) -> Result<()> {
        let id =
            sink.append_page(|buf, id| node::encode_branch_into(buf, id, entries.iter().copied()))?;
        self.branches[level].written += 1;
        self.add_branch(sink, level + 1, (entries[0].0, id))
    }

    /// Writes the last pages of every level, bottom up, and returns the root (`None` for an
    /// empty tree). A level whose pages all fit one page is the root.
    fn finish(mut self, sink: &mut Sink<'_>) -> Result<Option<PageId>> {
        if self.len == 0 {
            return Ok(None);
        }
        for page in self.leaves.finish(self.shape) {
            self.write_leaf(sink, page)?;
        }
        let mut below = self.leaves.written;
        let mut level = 0;
        // Each page written at one level is one entry in the level above.
        while below > 1 {
            for page in self.branches[level].finish(self.shape) {
                self.write_branch(sink, level, page)?;
            }
            below = self.branches[level].written;
            level += 1;
        }
        Ok(Some(self.branches[level].filling[0].1))
    }
}
