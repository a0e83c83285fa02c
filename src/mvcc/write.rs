//! Writes: put, delete range and transactions. Each is one write transaction of the database and
//! one main revision of the store; each change in it takes the next sub revision.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::limits::STORE_VALUE_LEN_MAX;
use crate::mvcc::key_index::{KeyIndex, VisibleRevision};
use crate::mvcc::lease::LeaseChanges;
use crate::mvcc::range::plan_range;
use crate::mvcc::revision::{KeyValue, Revision, malformed};
use crate::mvcc::store::{KEY_TREE, Store, StoreInner, load, read_revision};
use crate::mvcc::types::{
    Compare, CompareValue, DeleteResponse, KeyRange, Op, OpResponse, PutOptions, PutResponse,
    RangeOptions, RangeResponse, Relation, Target, TxnResponse,
};
use crate::mvcc::watch::RawEvent;
use crate::txn::WriteTxn;
use crate::txn::write::Visible;

/// One store write in progress.
pub(crate) struct StoreWrite<'s> {
    pub(crate) inner: &'s StoreInner,
    pub(crate) tx: WriteTxn<'s>,
    /// The current revision when the write began.
    base: i64,
    /// Changes made so far (the next sub revision).
    sub: i64,
    /// Keys whose index entries this write changed, to unwind on failure.
    touched: Vec<Vec<u8>>,
    /// Whether to commit even if no store key changed (an entry of [`TxnBuilder::also_put`]).
    forced: bool,
    /// What it does to the leases, applied once it commits.
    pub(crate) leases: LeaseChanges,
    /// The changes, for watchers.
    events: Vec<RawEvent>,
    /// The changes of the revisions this write finished before its current one (a batch).
    done: Vec<(i64, Vec<RawEvent>)>,
}

impl<'s> StoreWrite<'s> {
    fn main(&self) -> i64 {
        self.base + 1
    }

    /// The revision reads inside this write see: its own, once it has written.
    fn read_revision(&self) -> i64 {
        if self.sub > 0 { self.main() } else { self.base }
    }

    /// Ends the current revision if it wrote (a batch's next transaction takes the next one).
    pub(crate) fn end_revision(&mut self) {
        if self.sub > 0 {
            let events = std::mem::take(&mut self.events);
            self.done.push((self.main(), events));
            self.base += 1;
            self.sub = 0;
        }
    }

    fn next_revision(&mut self) -> Revision {
        let rev = Revision {
            main: self.main(),
            sub: self.sub,
        };
        self.sub += 1;
        rev
    }

    fn visible(&self, key: &[u8]) -> Option<VisibleRevision> {
        self.inner
            .state
            .read()
            .index
            .get(key)?
            .get(self.read_revision())
    }

    /// Reads records through this write's own transaction (so it sees its own writes).
    fn load(&mut self, revs: &[Revision], keys_only: bool) -> Result<Vec<KeyValue>> {
        let keys = self.tx.open_tree(KEY_TREE)?;
        load(&keys.as_tree(), revs, keys_only)
    }

    fn record(&mut self, rev: Revision) -> Result<KeyValue> {
        let kvs = self.load(&[rev], false)?;
        kvs.into_iter()
            .next()
            .ok_or_else(|| malformed("empty load".into()))
    }

    /// Whether this write has made its current revision (changed a store key in it).
    pub(crate) fn wrote(&self) -> bool {
        self.sub > 0
    }

    fn put(&mut self, key: &[u8], value: &[u8], options: &PutOptions) -> Result<PutResponse> {
        check_put(key, value, self.inner.db.page_size())?;
        self.attach(key, options.lease)?;
        let prev_kv = match (options.prev_kv, self.visible(key)) {
            (true, Some(v)) => Some(self.record(v.modified)?),
            _ => None,
        };
        let rev = self.next_revision();
        self.touched.push(key.to_vec());
        let v = self
            .inner
            .state_mut()
            .index
            .entry(key.to_vec())
            .or_default()
            .put(rev);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: v.created.main,
            mod_revision: rev.main,
            version: v.version,
            value: value.to_vec(),
            lease: options.lease,
        };
        self.tx
            .open_tree(KEY_TREE)?
            .put(&rev.encode(false), &kv.encode())?;
        self.events.push(RawEvent::put(kv));
        Ok(PutResponse {
            revision: rev.main,
            prev_kv,
        })
    }

    pub(crate) fn delete_range(
        &mut self,
        range: &KeyRange,
        prev_kv: bool,
    ) -> Result<DeleteResponse> {
        let at = self.read_revision();
        let doomed: Vec<(Vec<u8>, Revision)> = match range.as_bounds() {
            None => Vec::new(),
            Some(bounds) => self
                .inner
                .state
                .read()
                .index
                .range::<[u8], _>(bounds)
                .filter_map(|(k, ki)| ki.get(at).map(|v| (k.to_vec(), v.modified)))
                .collect(),
        };
        let mut response = DeleteResponse {
            deleted: doomed.len() as u64,
            ..DeleteResponse::default()
        };
        for (key, modified) in doomed {
            if prev_kv {
                let kv = self.record(modified)?;
                response.prev_kvs.push(kv);
            }
            self.attach(&key, 0)?;
            let rev = self.next_revision();
            self.touched.push(key.clone());
            self.inner
                .state_mut()
                .index
                .get_mut(&key)
                .expect("a visible key is indexed")
                .tombstone(rev);
            let tombstone = KeyValue {
                key,
                ..KeyValue::default()
            };
            self.tx
                .open_tree(KEY_TREE)?
                .put(&rev.encode(true), &tombstone.encode())?;
            self.events.push(RawEvent::delete(tombstone.key, rev.main));
        }
        Ok(response)
    }

    fn range(&mut self, range: &KeyRange, options: &RangeOptions) -> Result<RangeResponse> {
        let plan = {
            let state = self.inner.state.read();
            let at = read_revision(options.revision, self.read_revision(), state.compacted)?;
            plan_range(&state.index, range, at, options)
        };
        let kvs = self.load(&plan.revs, plan.keys_only())?;
        Ok(RangeResponse {
            more: plan.more,
            kvs: plan.finish(kvs),
            count: plan.count,
            revision: 0,
        })
    }

    /// Whether compare `c` holds: for its key, or for every key of its range (etcd's
    /// `applyCompare`: over no key at all, as over a missing key).
    fn holds(&mut self, c: &Compare) -> Result<bool> {
        let visible: Vec<VisibleRevision> = match &c.range {
            None => self.visible(&c.key).into_iter().collect(),
            Some(range) => match range.as_bounds() {
                None => Vec::new(),
                Some(bounds) => {
                    let at = self.read_revision();
                    let state = self.inner.state.read();
                    state
                        .index
                        .range::<[u8], _>(bounds)
                        .filter_map(|(_, ki)| ki.get(at))
                        .collect()
                }
            },
        };
        if visible.is_empty() {
            return self.holds_for(c, None);
        }
        for v in visible {
            if !self.holds_for(c, Some(v))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether compare `c` holds for one key (`None`: a missing key).
    fn holds_for(&mut self, c: &Compare, visible: Option<VisibleRevision>) -> Result<bool> {
        let ordering = match (c.target, &c.against, visible) {
            // A value compare on a missing key fails, whatever the relation (as etcd).
            (Target::Value, _, None) => return Ok(false),
            (Target::Value, CompareValue::Bytes(want), Some(v)) => {
                self.record(v.modified)?.value.as_slice().cmp(want)
            }
            (Target::Version, CompareValue::Number(n), v) => v.map_or(0, |v| v.version).cmp(n),
            (Target::CreateRevision, CompareValue::Number(n), v) => {
                v.map_or(0, |v| v.created.main).cmp(n)
            }
            (Target::ModRevision, CompareValue::Number(n), v) => {
                v.map_or(0, |v| v.modified.main).cmp(n)
            }
            (Target::Lease, CompareValue::Number(n), None) => 0.cmp(n),
            (Target::Lease, CompareValue::Number(n), Some(v)) => {
                self.record(v.modified)?.lease.cmp(n)
            }
            // A number against a value or bytes against a number never holds.
            _ => return Ok(false),
        };
        Ok(match c.relation {
            Relation::Equal => ordering.is_eq(),
            Relation::NotEqual => ordering.is_ne(),
            Relation::Less => ordering.is_lt(),
            Relation::Greater => ordering.is_gt(),
        })
    }
}

/// A store write that committed (or changed nothing), its writer lock not yet let go.
pub(crate) struct Applied<R> {
    /// What the write's function returned.
    pub value: R,
    /// The store's revision after it.
    pub revision: i64,
    /// Whether it made a revision (its watchers' events wait for [`Applied::unsynced`]).
    pub wrote: bool,
    /// The database commit still to be made durable (see [`crate::txn::Visible`]).
    pub unsynced: Option<u64>,
}

impl StoreInner {
    /// Runs `f` as one write under the writer lock the caller holds: one database transaction,
    /// at most one new main revision, unless `f` ends revisions itself
    /// ([`StoreWrite::end_revision`]: a batch, one per transaction). On success the commit is
    /// visible; the caller lets go of the lock, then waits for [`Applied::unsynced`] and releases
    /// the watchers' events. On error nothing has changed.
    pub(crate) fn apply<R>(
        &self,
        f: impl FnOnce(&mut StoreWrite<'_>) -> Result<R>,
    ) -> Result<Applied<R>> {
        let tx = self.db.begin_write()?;
        let base = self.state.read().current;
        let mut w = StoreWrite {
            inner: self,
            tx,
            base,
            sub: 0,
            touched: Vec::new(),
            forced: false,
            leases: LeaseChanges::default(),
            events: Vec::new(),
            done: Vec::new(),
        };
        let result = f(&mut w);
        w.end_revision();
        let StoreWrite {
            tx,
            base: last,
            touched,
            forced,
            leases,
            done,
            ..
        } = w;
        let value = match result {
            Err(e) => {
                drop(tx);
                unwind_index(self, base, &touched);
                return Err(e);
            }
            Ok(value) => value,
        };
        if done.is_empty() && !forced && !leases.needs_commit() {
            return Ok(Applied {
                value,
                revision: base,
                wrote: false,
                unsynced: None,
            });
        }
        let visible = match tx.commit_visible() {
            Err(e) => {
                unwind_index(self, base, &touched);
                return Err(e);
            }
            Ok(visible) => visible,
        };
        // A lease grant, a revoke of no keys or an `also_put` alone commits without a revision.
        self.lessor.lock().apply(leases, self.options.clock.now());
        self.state_mut().current = last;
        // Queued in revision order under the writer lock; sent once durable.
        let wrote = !done.is_empty();
        for (main, events) in done {
            self.watch.queue(main, events);
        }
        Ok(Applied {
            value,
            revision: last,
            wrote,
            unsynced: visible.unsynced(),
        })
    }

    /// Waits until a write's commit is durable, then lets its watchers see `revision`.
    pub(crate) fn settle_write(
        &self,
        unsynced: Option<u64>,
        wrote: bool,
        revision: i64,
    ) -> Result<()> {
        Visible::of(&self.db, unsynced).wait()?;
        if wrote {
            self.watch.release(revision);
        }
        Ok(())
    }
}

impl Store {
    /// Runs `f` as one write (see [`StoreInner::apply`]) under the writer lock, and returns once
    /// it is durable: `f`'s value and the store's revision after it.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&mut StoreWrite<'_>) -> Result<R>,
    ) -> Result<(R, i64)> {
        let inner = &*self.inner;
        let guard = inner.writer.lock();
        let applied = inner.apply(f)?;
        drop(guard);
        inner.settle_write(applied.unsynced, applied.wrote, applied.revision)?;
        Ok((applied.value, applied.revision))
    }

    /// Stores `value` under `key`; returns the new revision.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<i64> {
        Ok(self.put_with(key, value, PutOptions::default())?.revision)
    }

    /// Stores `value` under `key` with options (a lease, the previous value).
    pub fn put_with(&self, key: &[u8], value: &[u8], options: PutOptions) -> Result<PutResponse> {
        let put = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            options,
        };
        match self.submit(Request::one(put))?.responses.pop() {
            Some(OpResponse::Put(response)) => Ok(response),
            _ => unreachable!("a put answers with a put's response"),
        }
    }

    /// Deletes every key in `range`. Deleting nothing does not advance the revision.
    pub fn delete_range(&self, range: impl Into<KeyRange>) -> Result<DeleteResponse> {
        self.delete_range_with(range, false)
    }

    /// Deletes every key in `range`, returning their last values when `prev_kv`.
    pub fn delete_range_with(
        &self,
        range: impl Into<KeyRange>,
        prev_kv: bool,
    ) -> Result<DeleteResponse> {
        let delete = Op::DeleteRange {
            range: range.into(),
            prev_kv,
        };
        match self.submit(Request::one(delete))?.responses.pop() {
            Some(OpResponse::DeleteRange(response)) => Ok(response),
            _ => unreachable!("a delete answers with a delete's response"),
        }
    }

    /// A transaction: compares, then one list of operations if all hold, else another.
    pub fn txn(&self) -> TxnBuilder<'_> {
        TxnBuilder {
            store: self,
            request: Request::default(),
        }
    }
}

/// Why a put of `value` under `key` cannot be stored, if it cannot.
fn check_put(key: &[u8], value: &[u8], page_size: u32) -> Result<()> {
    crate::btree::tree::check_key(key, page_size)?;
    // The record holds more than the value; name the limit the caller can act on.
    if value.len() > STORE_VALUE_LEN_MAX {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: STORE_VALUE_LEN_MAX,
        });
    }
    Ok(())
}

/// Takes a failed write's revisions (those above `base`) back out of the index.
fn unwind_index(inner: &StoreInner, base: i64, touched: &[Vec<u8>]) {
    let mut state = inner.state_mut();
    for key in touched {
        let gone = state
            .index
            .get_mut(key)
            .is_some_and(|ki: &mut KeyIndex| ki.unwind(base));
        if gone {
            state.index.remove(key);
        }
    }
}

/// A transaction being built: `store.txn().when(..).then(..).otherwise(..).commit()`.
#[derive(Debug)]
#[must_use = "a transaction does nothing until `commit`"]
pub struct TxnBuilder<'s> {
    store: &'s Store,
    request: Request,
}

/// What a transaction does: compares, then one list of operations or the other, and entries of
/// other trees. Owned, so that another writer's thread can run it (`combine.rs`).
#[derive(Debug, Default)]
pub(crate) struct Request {
    compares: Vec<Compare>,
    then: Vec<Op>,
    otherwise: Vec<Op>,
    /// Entries of other trees of the database, committed with the transaction.
    also: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl TxnBuilder<'_> {
    /// Adds conditions; the `then` branch runs only if every one holds.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.request.compares.extend(compares);
        self
    }

    /// Adds operations to run when every condition holds.
    pub fn then(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.request.then.extend(ops);
        self
    }

    /// Adds operations to run when a condition fails.
    pub fn otherwise(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.request.otherwise.extend(ops);
        self
    }

    /// Also puts `value` under `key` in the database tree `tree` (made if missing), in the same
    /// database commit as the transaction's writes, whichever branch runs; the transaction then
    /// commits even if it changes no store key (its revision stays as it was). This is how a
    /// replica records the last log entry it applied with the entry's writes, so a crash can
    /// neither apply it twice nor skip it. `tree` must not be one of the store's own
    /// (`mvcc.*`): such a transaction fails with [`Error::InvalidOption`] and changes nothing.
    pub fn also_put(mut self, tree: &[u8], key: &[u8], value: &[u8]) -> Self {
        self.request
            .also
            .push((tree.to_vec(), key.to_vec(), value.to_vec()));
        self
    }

    /// Runs the transaction atomically. All its writes share one new main revision; a
    /// transaction that writes nothing leaves the revision as it was.
    ///
    /// As in etcd, a branch may write each key once: a branch (either one, whichever would run)
    /// that puts a key twice, or puts a key inside one of its delete ranges, is refused with
    /// [`Error::DuplicateKey`] and nothing changes. Overlapping delete ranges are allowed.
    pub fn commit(self) -> Result<TxnResponse> {
        self.store.submit(self.request)
    }

    /// What the transaction does, to be run by whoever leads (`combine.rs`'s tests).
    #[cfg(test)]
    pub(crate) fn into_request(self) -> Request {
        self.request
    }
}

impl Request {
    /// The bytes of keys and values it writes, at most.
    pub(crate) fn size(&self) -> usize {
        let ops = self.then.iter().chain(&self.otherwise);
        let puts: usize = ops
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                _ => 0,
            })
            .sum();
        let also: usize = self
            .also
            .iter()
            .map(|(t, k, v)| t.len() + k.len() + v.len())
            .sum();
        puts + also
    }

    /// A request of one operation, which always runs.
    pub(crate) fn one(op: Op) -> Request {
        Request {
            then: vec![op],
            ..Request::default()
        }
    }

    /// What a transaction is refused for before it runs: an `also_put` into the store's own
    /// trees, a branch that writes a key twice; without compares, a put that could never be
    /// stored (it would fail running; refused here, it cannot fail a combined commit).
    pub(crate) fn check(&self, page_size: u32) -> Result<()> {
        if let Some((tree, ..)) = self.also.iter().find(|(t, ..)| t.starts_with(b"mvcc.")) {
            return Err(Error::InvalidOption(format!(
                "`also_put` into the store's own tree `{}`",
                tree.escape_ascii()
            )));
        }
        check_duplicates(&self.then)?;
        check_duplicates(&self.otherwise)?;
        if self.compares.is_empty() {
            for op in &self.then {
                if let Op::Put { key, value, .. } = op {
                    check_put(key, value, page_size)?;
                }
            }
        }
        Ok(())
    }

    /// Runs the transaction inside the store write `w`, at `w`'s current revision.
    pub(crate) fn run(&self, w: &mut StoreWrite<'_>) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &self.compares {
            if !w.holds(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &self.then
        } else {
            &self.otherwise
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                Op::Put {
                    key,
                    value,
                    options,
                } => OpResponse::Put(w.put(key, value, options)?),
                Op::DeleteRange { range, prev_kv } => {
                    OpResponse::DeleteRange(w.delete_range(range, *prev_kv)?)
                }
                Op::Range { range, options } => OpResponse::Range(w.range(range, options)?),
            });
        }
        for (tree, key, value) in &self.also {
            w.tx.open_tree(tree)?.put(key, value)?;
            w.forced = true;
        }
        let revision = w.read_revision();
        for r in &mut responses {
            match r {
                OpResponse::Put(p) => p.revision = revision,
                OpResponse::DeleteRange(d) => d.revision = revision,
                OpResponse::Range(g) => g.revision = revision,
            }
        }
        Ok(TxnResponse {
            succeeded,
            revision,
            responses,
        })
    }
}

impl Store {
    /// Runs `txns` in order, each as if committed alone (each that writes takes the next main
    /// revision and answers as it would alone; each `also_put` is applied in turn, so a later
    /// one overwrites an earlier one's key), in one database commit: one sync for them all.
    /// This is how a replica applies a batch of log entries. If any transaction fails, none
    /// takes effect and the error is its error. Every transaction must be of this store.
    pub fn commit_batch<'s>(&'s self, txns: &[TxnBuilder<'s>]) -> Result<Vec<TxnResponse>> {
        if txns
            .iter()
            .any(|t| !Arc::ptr_eq(&t.store.inner, &self.inner))
        {
            return Err(Error::InvalidOption(
                "a batch holds a transaction of another store".into(),
            ));
        }
        for t in txns {
            t.request.check(self.inner.db.page_size())?;
        }
        let (responses, _) = self.write(|w| {
            let mut responses = Vec::with_capacity(txns.len());
            for t in txns {
                responses.push(t.request.run(w)?);
                w.end_revision();
            }
            Ok(responses)
        })?;
        Ok(responses)
    }
}

/// etcd's `checkIntervals` (`server/etcdserver/api/v3rpc/key.go`) for one branch: each key is put
/// at most once, and never inside a delete range of the same branch. (folio's transactions do
/// not nest, so there are no child branches to merge.)
fn check_duplicates(ops: &[Op]) -> Result<()> {
    let mut puts = BTreeSet::new();
    for op in ops {
        if let Op::Put { key, .. } = op
            && !puts.insert(key.as_slice())
        {
            return Err(Error::DuplicateKey { key: key.clone() });
        }
    }
    for op in ops {
        if let Op::DeleteRange { range, .. } = op
            && let Some(bounds) = range.as_bounds()
            && let Some(key) = puts.range::<[u8], _>(bounds).next()
        {
            return Err(Error::DuplicateKey { key: key.to_vec() });
        }
    }
    Ok(())
}
