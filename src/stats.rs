//! Figures about a database file: what its pages hold and how much a defrag would reclaim.

/// Figures for one tree.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeStats {
    /// The tree's name (empty for the catalog).
    pub name: Vec<u8>,
    /// Entries.
    pub len: u64,
    /// Levels, counting the root and the leaves.
    pub depth: u32,
    /// Branch pages.
    pub branch_pages: u64,
    /// Leaf pages.
    pub leaf_pages: u64,
    /// Pages of overflow runs.
    pub overflow_pages: u64,
    /// Bytes of branch and leaf pages in use (headers, slots, entries).
    pub used_bytes: u64,
}

impl TreeStats {
    /// Fill of the tree's branch and leaf pages, from 0 to 1.
    pub fn fill(&self, page_size: u32) -> f64 {
        let pages = self.branch_pages + self.leaf_pages;
        if pages == 0 {
            0.0
        } else {
            self.used_bytes as f64 / (pages * page_size as u64) as f64
        }
    }
}

/// Figures for the whole file at one commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// The commit described.
    pub txid: u64,
    /// Bytes per page.
    pub page_size: u32,
    /// The file's length in bytes.
    pub file_bytes: u64,
    /// Pages in use or free: the allocation frontier. Pages past it are unused file tail.
    pub page_count: u64,
    /// Meta pages (always 2).
    pub meta_pages: u64,
    /// Branch pages, in every tree.
    pub branch_pages: u64,
    /// Leaf pages, in every tree.
    pub leaf_pages: u64,
    /// Overflow pages, in every tree.
    pub overflow_pages: u64,
    /// Pages of the freelist's runs: the full list and the deltas after it.
    pub freelist_pages: u64,
    /// Free pages recorded in the freelist (including those pending release).
    pub free_pages: u64,
    /// Of the free pages, those still held for open readers or an unsynced commit.
    pub pending_pages: u64,
    /// Pages of file beyond the allocation frontier.
    pub tail_pages: u64,
    /// The catalog tree.
    pub catalog: TreeStats,
    /// Every named tree.
    pub trees: Vec<TreeStats>,
}

impl Stats {
    pub(crate) fn finish(&mut self) {
        for t in std::iter::once(&self.catalog).chain(&self.trees) {
            self.branch_pages += t.branch_pages;
            self.leaf_pages += t.leaf_pages;
            self.overflow_pages += t.overflow_pages;
        }
        self.tail_pages = (self.file_bytes / self.page_size as u64).saturating_sub(self.page_count);
    }

    /// Pages that hold live data: metas, tree pages, overflow runs and the freelist.
    pub fn live_pages(&self) -> u64 {
        self.meta_pages
            + self.branch_pages
            + self.leaf_pages
            + self.overflow_pages
            + self.freelist_pages
    }

    /// Bytes of live pages.
    pub fn live_bytes(&self) -> u64 {
        self.live_pages() * self.page_size as u64
    }

    /// Bytes up to the allocation frontier: pages in use or free, not the unused tail
    /// ([`crate::Db::allocated_bytes`] at this commit).
    pub fn allocated_bytes(&self) -> u64 {
        self.page_count * self.page_size as u64
    }

    /// Bytes a defrag would give back: the file less its live pages.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(self.live_bytes())
    }
}
