//! Looking inside a database file: a map of what every page holds, and one page decoded.
//!
//! Both are for tools and debugging (the `folio map` and `folio dump` commands). The map comes from
//! the checker's walk, so it shows exactly the pages the checker accounts for; a page dump
//! validates every byte it decodes, so a damaged page is an [`Error::Corrupted`], never a panic.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use folio::{PageBody, PageUse};
//! let db = folio::Db::open(dir.path().join("inspect.folio"))?;
//! let mut tx = db.begin_write()?;
//! tx.open_tree(b"users")?.put(b"alice", b"1")?;
//! tx.commit()?;
//!
//! let map = db.page_map()?;
//! assert_eq!(map.runs[0].page_use, PageUse::Meta);
//! assert_eq!(map.pages(PageUse::Meta), 2);
//! let leaf = map.runs.iter().find(|r| r.page_use == PageUse::Leaf).expect("a leaf");
//! let dump = db.dump_page(leaf.start)?;
//! assert!(matches!(dump.body, PageBody::Leaf(_)));
//! # Ok::<(), folio::Error>(())
//! ```

use std::fmt;

use crate::btree::node::{PageView, ValueRef};
use crate::check::{Problem, walk};
use crate::error::{Error, PageId, Result, corrupted};
use crate::mvcc::store::{KEY_TREE, META_TREE};
use crate::page_file::freelist::{FreeList, chain};
use crate::page_file::meta::{self, Meta};
use crate::page_file::page::{self, Header, OFF_CRC, PageKind, read_u32};
use crate::txn::db::Db;

/// What a page of the file is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageUse {
    /// One of the two meta pages (0 and 1).
    Meta,
    /// An interior node of a B+tree (the catalog or a named tree).
    Branch,
    /// A leaf node of a B+tree.
    Leaf,
    /// A page of a run holding one large value.
    Overflow,
    /// A page of a run of the free-page list: the whole list or one commit's delta to it.
    Freelist,
    /// Free: recorded in the freelist, to be reused by a later commit.
    Free,
    /// Past the allocation frontier: file space grown ahead of need and never yet used.
    Unused,
    /// Neither reachable nor free. Only a damaged file has such pages; `check` reports them.
    Unaccounted,
}

impl PageUse {
    /// Every use, in the order a legend lists them.
    pub const ALL: [PageUse; 8] = [
        PageUse::Meta,
        PageUse::Branch,
        PageUse::Leaf,
        PageUse::Overflow,
        PageUse::Freelist,
        PageUse::Free,
        PageUse::Unused,
        PageUse::Unaccounted,
    ];

    /// A short lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            PageUse::Meta => "meta",
            PageUse::Branch => "branch",
            PageUse::Leaf => "leaf",
            PageUse::Overflow => "overflow",
            PageUse::Freelist => "freelist",
            PageUse::Free => "free",
            PageUse::Unused => "unused",
            PageUse::Unaccounted => "unaccounted",
        }
    }

    /// Whether the page holds live data (a defrag copies it).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            PageUse::Meta | PageUse::Branch | PageUse::Leaf | PageUse::Overflow | PageUse::Freelist
        )
    }
}

impl fmt::Display for PageUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Consecutive pages with the same use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// The first page of the run.
    pub start: PageId,
    /// Pages in the run (at least 1).
    pub len: u64,
    /// What every page of the run is used for.
    pub page_use: PageUse,
}

impl PageRun {
    /// The page after the last one of the run.
    pub fn end(&self) -> PageId {
        self.start + self.len
    }
}

/// What every page of the file holds, as runs of pages in file order; see [`Db::page_map`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageMap {
    /// The commit mapped.
    pub txid: u64,
    /// Bytes per page.
    pub page_size: u32,
    /// The file's length in bytes.
    pub file_bytes: u64,
    /// Pages in use or free (the allocation frontier); pages from here on are [`PageUse::Unused`].
    pub page_count: u64,
    /// Runs covering every whole page of the file from page 0, in order, adjacent runs of the same
    /// use merged.
    pub runs: Vec<PageRun>,
    /// What the checker found wrong during the walk that made this map (empty when sound).
    pub problems: Vec<Problem>,
}

impl PageMap {
    /// Whole pages in the file: the sum of every run's length.
    pub fn file_pages(&self) -> u64 {
        self.runs.last().map_or(0, PageRun::end)
    }

    /// Pages with the use `page_use`.
    pub fn pages(&self, page_use: PageUse) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.page_use == page_use)
            .map(|r| r.len)
            .sum()
    }

    /// The run holding page `id`, or `None` past the end of the file.
    pub fn run_of(&self, id: PageId) -> Option<&PageRun> {
        let i = self.runs.partition_point(|r| r.end() <= id);
        self.runs.get(i)
    }

    /// Free or unused stretches between live pages and at the end of the file: the holes a defrag
    /// closes. Adjacent free and unused runs count as one hole.
    pub fn holes(&self) -> u64 {
        let mut holes = 0;
        let mut in_hole = false;
        for r in &self.runs {
            let hole = !r.page_use.is_live();
            if hole && !in_hole {
                holes += 1;
            }
            in_hole = hole;
        }
        holes
    }
}

/// A decoded page; see [`Db::dump_page`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDump {
    /// The page.
    pub id: PageId,
    /// The kind its header records.
    pub kind: PageKind,
    /// Entries, as its header records them (branch and leaf pages).
    pub count: u16,
    /// Pages that follow this one in the same run, as its header records them.
    pub overflow: u32,
    /// The crc32 stored in the header (verified: a page with a wrong checksum is an error).
    pub checksum: u32,
    /// What the page holds.
    pub body: PageBody,
}

/// What a page holds, decoded by its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageBody {
    /// A meta page.
    Meta(MetaDump),
    /// A branch page's entries, in key order.
    Branch(Vec<BranchEntry>),
    /// A leaf page's entries, in key order.
    Leaf(Vec<LeafEntry>),
    /// The first page of a run holding one large value; the value's length is in the leaf that
    /// refers to it.
    Overflow {
        /// Pages in the run, this one included.
        pages: u64,
    },
    /// The first page of a run holding the whole freelist.
    Freelist {
        /// Pages in the run, this one included.
        pages: u64,
        /// Free extents recorded (start page, pages), including those pending release.
        extents: Vec<(PageId, u64)>,
    },
    /// The first page of a run holding one commit's changes to the freelist.
    FreelistDelta {
        /// Pages in the run, this one included.
        pages: u64,
        /// The first page of the freelist run or delta these changes apply to.
        previous: PageId,
        /// Deltas from the full list to this one, this one included.
        depth: u64,
        /// The changes, oldest first: start page, pages, and whether the run was taken from the
        /// list (else added to it).
        changes: Vec<(PageId, u64, bool)>,
    },
}

/// The fields of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetaDump {
    /// The file format version.
    pub version: u32,
    /// Bytes per page.
    pub page_size: u32,
    /// The commit this meta describes.
    pub txid: u64,
    /// Root page of the catalog tree (0 when there are no named trees).
    pub catalog_root: PageId,
    /// Named trees in the catalog.
    pub catalog_len: u64,
    /// First page of the freelist run (0 when nothing is free).
    pub freelist: PageId,
    /// Pages in use: the allocation frontier.
    pub page_count: u64,
    /// How many runs of pages its proof names (0: none; see `docs/format.md`): a meta with a proof
    /// counts only if every run holds the checksum it names.
    pub proof_runs: u32,
    /// Whether this is the meta of the newest commit as written last (after a clean close both
    /// slots may describe it; this is the one without a proof).
    pub current: bool,
}

/// One entry of a branch page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchEntry {
    /// The separator: the smallest key under `child` when the page was written.
    pub key: Vec<u8>,
    /// The child page.
    pub child: PageId,
}

/// One entry of a leaf page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The value, or where it lives.
    pub value: LeafValue,
}

/// A value as a leaf stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafValue {
    /// Bytes stored in the leaf.
    Inline(Vec<u8>),
    /// A value stored in an overflow run.
    Overflow {
        /// The run's first page.
        page: PageId,
        /// The value's length in bytes.
        len: u32,
    },
}

impl Db {
    /// Whether the newest commit holds an MVCC [`crate::Store`] (its trees `mvcc.key` and
    /// `mvcc.meta`), so that tools can open it as a store without creating one by accident.
    pub fn holds_store(&self) -> Result<bool> {
        let tx = self.begin_read()?;
        Ok(tx.tree(KEY_TREE)?.is_some() && tx.tree(META_TREE)?.is_some())
    }

    /// A map of the newest commit's file: every page's use, as runs in file order. Walks every
    /// reachable page (it is the checker's walk, and [`PageMap::problems`] holds what it found).
    pub fn page_map(&self) -> Result<PageMap> {
        let tx = self.begin_read()?;
        let snapshot = tx.snapshot();
        let file_bytes = self.inner.storage().len()?;
        let walk = walk(snapshot, file_bytes);
        let meta = snapshot.meta;
        let file_pages = (file_bytes / meta.page_size as u64).max(meta.page_count);
        let mut runs: Vec<PageRun> = Vec::new();
        for id in 0..file_pages {
            let page_use = if id < meta.page_count {
                walk.page_use(id)
            } else {
                PageUse::Unused
            };
            match runs.last_mut() {
                Some(run) if run.page_use == page_use => run.len += 1,
                _ => runs.push(PageRun {
                    start: id,
                    len: 1,
                    page_use,
                }),
            }
        }
        Ok(PageMap {
            txid: meta.txid,
            page_size: meta.page_size,
            file_bytes,
            page_count: meta.page_count,
            runs,
            problems: walk.report.problems,
        })
    }

    /// Page `id` of the newest commit, decoded: its header and entries. Every byte is validated:
    /// a bad checksum, a header that names another page, or an entry outside the page is an
    /// [`Error::Corrupted`]. A page past the allocation frontier is an [`Error::InvalidOption`].
    ///
    /// A free page holds whatever an earlier commit left there, and the pages after the first of
    /// an overflow or freelist run hold no header, so decoding them usually fails.
    pub fn dump_page(&self, id: PageId) -> Result<PageDump> {
        let tx = self.begin_read()?;
        let snapshot = tx.snapshot();
        let meta = snapshot.meta;
        if id >= meta.page_count {
            return Err(Error::InvalidOption(format!(
                "page {id} is past the last page in use (the database has {} pages)",
                meta.page_count
            )));
        }
        if id < 2 {
            let size = meta.page_size as usize;
            let bytes = snapshot
                .map
                .get(id as usize * size..(id as usize + 1) * size)
                .ok_or_else(|| corrupted(id, "meta page lies beyond the end of the file"))?;
            return dump_meta(bytes, id, &meta, self.inner.written_slot());
        }
        let pages = snapshot.pages(false);
        let first = pages.run(id, 1)?;
        let header = Header::read(first, id)?;
        let run_len = header.overflow as u64 + 1;
        let body = match header.kind {
            PageKind::Meta => return Err(corrupted(id, "a meta page outside pages 0 and 1")),
            PageKind::Branch | PageKind::Leaf => {
                page::verify(first, id)?;
                decode_node(PageView::new(first, id)?)?
            }
            PageKind::Overflow => {
                page::verify(pages.run(id, run_len)?, id)?;
                PageBody::Overflow { pages: run_len }
            }
            PageKind::Freelist => {
                let list = FreeList::decode(pages.run(id, run_len)?, id, meta.page_count)?;
                PageBody::Freelist {
                    pages: run_len,
                    extents: list.extents().collect(),
                }
            }
            PageKind::FreelistDelta => {
                let delta = chain::decode_delta(pages.run(id, run_len)?, id, meta.page_count)?;
                PageBody::FreelistDelta {
                    pages: run_len,
                    previous: delta.previous,
                    depth: delta.depth,
                    changes: delta.changes,
                }
            }
        };
        Ok(PageDump {
            id,
            kind: header.kind,
            count: header.count,
            overflow: header.overflow,
            checksum: read_u32(first, OFF_CRC, id)?,
            body,
        })
    }
}

fn decode_node(view: PageView<'_>) -> Result<PageBody> {
    Ok(match view {
        PageView::Branch(b) => PageBody::Branch(
            (0..b.len())
                .map(|i| {
                    Ok(BranchEntry {
                        key: b.key(i)?.to_vec(),
                        child: b.child(i)?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        PageView::Leaf(l) => PageBody::Leaf(
            (0..l.len())
                .map(|i| {
                    let value = match l.value(i)? {
                        ValueRef::Inline(v) => LeafValue::Inline(v.to_vec()),
                        ValueRef::Overflow { page, len } => LeafValue::Overflow { page, len },
                    };
                    Ok(LeafEntry {
                        key: l.key(i)?.to_vec(),
                        value,
                    })
                })
                .collect::<Result<_>>()?,
        ),
    })
}

/// Decodes meta slot `slot` from its page bytes.
fn dump_meta(bytes: &[u8], slot: PageId, current: &Meta, written_slot: PageId) -> Result<PageDump> {
    let header = Header::read(bytes, slot)?;
    let decoded = meta::decode_slot(bytes, slot)?;
    Ok(PageDump {
        id: slot,
        kind: header.kind,
        count: header.count,
        overflow: header.overflow,
        checksum: read_u32(bytes, OFF_CRC, slot)?,
        body: PageBody::Meta(MetaDump {
            version: read_u32(bytes, meta::OFF_VERSION, slot)?,
            page_size: decoded.page_size,
            txid: decoded.txid,
            catalog_root: decoded.catalog_root,
            catalog_len: decoded.catalog_len,
            freelist: decoded.freelist,
            page_count: decoded.page_count,
            proof_runs: match read_u32(bytes, meta::OFF_VERSION, slot)? {
                ..3 => 0,
                _ => read_u32(bytes, meta::OFF_PROOF_LEN, slot)?,
            },
            current: decoded == *current && slot == written_slot,
        }),
    })
}
