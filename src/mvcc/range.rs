//! Range reads with etcd's options: sort order and target, the revision filters, the limit, and
//! a streaming range that never holds the whole result.
//!
//! etcd's `executeRange` (`server/etcdserver/txn/range.go`) reads every key of the range, prunes
//! by the revision filters, sorts, and only then applies the limit (`more` is then whether the
//! pruned list was longer than the limit; `count` is the range's count before pruning). folio
//! gives the same answers with less work, because the key index already knows every sort target
//! but the value and both filtered revisions:
//! 1. The plan walks the index once, counting every key visible at the revision and keeping the
//!    ones the filters pass. When the walk's order is the answer's order (key ascending, or key
//!    descending walked backwards) it keeps at most `limit + 1` of them.
//! 2. Sorts by version, create or mod revision happen on the index entries, so only `limit`
//!    records are read. Only a sort by value reads every record the filters passed.
//! 3. Ties sort in key order; [`SortOrder::Descend`] is the exact reverse of
//!    [`SortOrder::Ascend`] (etcd's sort is not stable, so any order of ties is etcd's).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use crate::error::{Error, Result};
use crate::limits::{RANGE_STREAM_INDEX_CHUNK, RANGE_STREAM_LOAD_BATCH};
use crate::mvcc::key_index::{KeyIndex, VisibleRevision};
use crate::mvcc::revision::{KeyValue, Revision};
use crate::mvcc::store::{KEY_TREE, Store, load, missing, read_revision};
use crate::mvcc::types::{KeyRange, RangeOptions, SortOrder, SortTarget};
use crate::txn::ReadTxn;

/// The revision filters of a range (0: no bound), as etcd prunes them.
#[derive(Clone, Copy, Debug)]
struct Filter {
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl Filter {
    fn new(o: &RangeOptions) -> Filter {
        Filter {
            min_mod: o.min_mod_revision,
            max_mod: o.max_mod_revision,
            min_create: o.min_create_revision,
            max_create: o.max_create_revision,
        }
    }

    fn passes(&self, v: &VisibleRevision) -> bool {
        let (m, c) = (v.modified.main, v.created.main);
        (self.min_mod == 0 || m >= self.min_mod)
            && (self.max_mod == 0 || m <= self.max_mod)
            && (self.min_create == 0 || c >= self.min_create)
            && (self.max_create == 0 || c <= self.max_create)
    }
}

/// How the answer is ordered: a walk of the index, or a sort after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Forward,
    Backward,
    Sort { target: SortTarget, descend: bool },
}

fn order(o: &RangeOptions) -> Order {
    match (o.sort_order, o.sort_target) {
        (SortOrder::None | SortOrder::Ascend, SortTarget::Key) => Order::Forward,
        (SortOrder::Descend, SortTarget::Key) => Order::Backward,
        // etcd: a target other than the key with no order sorts ascending.
        (SortOrder::None | SortOrder::Ascend, target) => Order::Sort {
            target,
            descend: false,
        },
        (SortOrder::Descend, target) => Order::Sort {
            target,
            descend: true,
        },
    }
}

/// What a range read loads and how it finishes the answer.
#[derive(Debug)]
pub(crate) struct RangePlan {
    /// The revisions to read, in the answer's order (every candidate for a sort by value).
    pub revs: Vec<Revision>,
    /// The keys visible in the range, regardless of the filters and the limit.
    pub count: u64,
    /// Whether the limit left out keys the filters passed.
    pub more: bool,
    /// `Some(descend)` when the records must be sorted by value once read.
    value_sort: Option<bool>,
    limit: usize,
    keys_only: bool,
}

impl RangePlan {
    /// Whether the records may be read without their values.
    pub fn keys_only(&self) -> bool {
        self.keys_only && self.value_sort.is_none()
    }

    /// The answer from the records of `revs`, read in that order.
    pub fn finish(&self, mut kvs: Vec<KeyValue>) -> Vec<KeyValue> {
        if let Some(descend) = self.value_sort {
            kvs.sort_by(|a, b| a.value.cmp(&b.value));
            if descend {
                kvs.reverse();
            }
            if self.limit > 0 {
                kvs.truncate(self.limit);
            }
            if self.keys_only {
                kvs.iter_mut().for_each(|kv| kv.value = Vec::new());
            }
        }
        kvs
    }
}

/// Plans a range read at `at` (see the module docs).
pub(crate) fn plan_range(
    index: &BTreeMap<Vec<u8>, KeyIndex>,
    range: &KeyRange,
    at: i64,
    options: &RangeOptions,
) -> RangePlan {
    let order = order(options);
    let filter = Filter::new(options);
    let limit = options.limit;
    let mut plan = RangePlan {
        revs: Vec::new(),
        count: 0,
        more: false,
        value_sort: None,
        limit,
        keys_only: options.keys_only,
    };
    let Some(bounds) = range.as_bounds() else {
        return plan;
    };
    // When the walk is the answer's order, `limit + 1` candidates tell `more`.
    let keep = match order {
        Order::Forward | Order::Backward if limit > 0 => limit.saturating_add(1),
        _ => usize::MAX,
    };
    // In walk order, so the stable sorts below leave ties in key order.
    let mut picked: Vec<VisibleRevision> = Vec::new();
    let mut visit = |ki: &KeyIndex| {
        if let Some(v) = ki.get(at) {
            plan.count += 1;
            if !options.count_only && picked.len() < keep && filter.passes(&v) {
                picked.push(v);
            }
        }
    };
    let entries = index.range::<[u8], _>(bounds);
    if order == Order::Backward {
        entries.rev().for_each(|(_, ki)| visit(ki));
    } else {
        entries.for_each(|(_, ki)| visit(ki));
    }
    if let Order::Sort { target, descend } = order {
        match target {
            SortTarget::Value => {
                plan.value_sort = Some(descend);
                plan.more = limit > 0 && picked.len() > limit;
                plan.revs = picked.iter().map(|v| v.modified).collect();
                return plan;
            }
            SortTarget::Version => picked.sort_by_key(|v| v.version),
            SortTarget::Create => picked.sort_by_key(|v| v.created.main),
            SortTarget::Mod => picked.sort_by_key(|v| v.modified.main),
            SortTarget::Key => {}
        }
        if descend {
            picked.reverse();
        }
    }
    plan.more = limit > 0 && picked.len() > limit;
    if limit > 0 {
        picked.truncate(limit);
    }
    plan.revs = picked.iter().map(|v| v.modified).collect();
    plan
}

/// A range read that streams its keys: it reads the key index
/// [`RANGE_STREAM_INDEX_CHUNK`] keys at a time and the records [`RANGE_STREAM_LOAD_BATCH`] at a
/// time from one snapshot, so it holds a batch, never the whole answer (etcd 3.7's
/// `RangeStream`). Made by [`Store::range_stream`].
///
/// It yields what [`Store::range`] returns in `kvs`, in the same order, and once it has ended
/// [`RangeStream::key_count`] and [`RangeStream::more`] say what the range's `count` and `more`
/// would. A compaction past its revision while it runs ends it with [`Error::Compacted`]. Its
/// snapshot keeps the pages it reads from being reused, as any read transaction does, until it
/// is dropped.
pub struct RangeStream<'s> {
    store: &'s Store,
    tx: ReadTxn<'s>,
    at: i64,
    revision: i64,
    /// What is left of the range to walk.
    left: KeyRange,
    backward: bool,
    filter: Filter,
    options: RangeOptions,
    picked: usize,
    pending: VecDeque<Revision>,
    ready: VecDeque<KeyValue>,
    count: u64,
    more: bool,
    walked: bool,
    ended: bool,
}

impl std::fmt::Debug for RangeStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeStream")
            .field("at", &self.at)
            .field("revision", &self.revision)
            .field("count", &self.count)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Reads the keys in `range` at the revision `options` name, as [`Store::range`] does, but
    /// as an iterator that holds a batch of records at a time (see [`RangeStream`]). It honours
    /// the limit, the revision filters, `keys_only` and `count_only`; it sorts by key only
    /// (ascending or descending): another sort target needs the whole answer, so it is refused
    /// with [`Error::InvalidOption`].
    pub fn range_stream(
        &self,
        range: impl Into<KeyRange>,
        options: RangeOptions,
    ) -> Result<RangeStream<'_>> {
        let backward = match order(&options) {
            Order::Forward => false,
            Order::Backward => true,
            Order::Sort { .. } => {
                return Err(Error::InvalidOption(
                    "a streaming range sorts by key only; use Store::range to sort by another target"
                        .into(),
                ));
            }
        };
        let state = self.inner.state.read();
        let at = read_revision(options.revision, state.current, state.compacted)?;
        // Taken under the lock, the snapshot holds every revision up to `current`.
        let tx = self.inner.db.begin_read()?;
        let revision = state.current;
        drop(state);
        Ok(RangeStream {
            store: self,
            tx,
            at,
            revision,
            left: range.into(),
            backward,
            filter: Filter::new(&options),
            options,
            picked: 0,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            count: 0,
            more: false,
            walked: false,
            ended: false,
        })
    }
}

impl RangeStream<'_> {
    /// The store's current revision when the stream began (a range's `revision`).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many keys the range holds at the stream's revision (a range's `count`), once the
    /// stream has ended. (Not `count`, which is [`Iterator::count`].)
    pub fn key_count(&self) -> Option<u64> {
        self.walked.then_some(self.count)
    }

    /// Whether the limit left keys out, once the stream has ended.
    pub fn more(&self) -> Option<bool> {
        self.walked.then_some(self.more)
    }

    /// Walks the next chunk of the index.
    fn walk(&mut self) -> Result<()> {
        let state = self.store.inner.state.read();
        if state.compacted > self.at {
            // The index may no longer hold the revisions this read needs.
            return Err(Error::Compacted {
                requested: self.at,
                compacted: state.compacted,
            });
        }
        let Some(bounds) = self.left.as_bounds() else {
            self.walked = true;
            return Ok(());
        };
        let entries = state.index.range::<[u8], _>(bounds);
        let chunk: Vec<(&Vec<u8>, &KeyIndex)> = if self.backward {
            entries.rev().take(RANGE_STREAM_INDEX_CHUNK).collect()
        } else {
            entries.take(RANGE_STREAM_INDEX_CHUNK).collect()
        };
        let o = &self.options;
        for (_, ki) in &chunk {
            let Some(v) = ki.get(self.at) else { continue };
            self.count += 1;
            if o.count_only || !self.filter.passes(&v) {
                continue;
            }
            if o.limit == 0 || self.picked < o.limit {
                self.picked += 1;
                self.pending.push_back(v.modified);
            } else {
                self.more = true;
            }
        }
        match chunk.last() {
            Some((last, _)) if chunk.len() == RANGE_STREAM_INDEX_CHUNK => {
                let after = Bound::Excluded(last.to_vec());
                if self.backward {
                    self.left.end = after;
                } else {
                    self.left.start = after;
                }
            }
            _ => self.walked = true,
        }
        Ok(())
    }

    /// Reads the next batch of pending records.
    fn load(&mut self) -> Result<()> {
        let n = self.pending.len().min(RANGE_STREAM_LOAD_BATCH);
        let batch: Vec<Revision> = self.pending.drain(..n).collect();
        let tree = self.tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?;
        self.ready
            .extend(load(&tree, &batch, self.options.keys_only)?);
        Ok(())
    }
}

impl Iterator for RangeStream<'_> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Result<KeyValue>> {
        loop {
            if let Some(kv) = self.ready.pop_front() {
                return Some(Ok(kv));
            }
            if self.ended {
                return None;
            }
            let step = if !self.pending.is_empty() {
                self.load()
            } else if !self.walked {
                self.walk()
            } else {
                self.ended = true;
                return None;
            };
            if let Err(e) = step {
                self.ended = true;
                self.walked = false;
                return Some(Err(e));
            }
        }
    }
}
