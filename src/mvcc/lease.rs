//! Leases: etcd's lessor. A lease has an id and a TTL; keys put with it are attached to it, and
//! revoking it (by hand, or when its TTL runs out without a keep-alive) deletes them all.
//!
//! On disk, the tree `mvcc.lease` holds, per lease, `id` (8 bytes, big-endian) → the granted TTL
//! (`i64`, little-endian), and per attached key `id ++ key` → nothing, so an open reads this tree
//! and not the records (etcd rebuilds the attachments from every record, which makes its open
//! slow). Expiry times live in memory only: as in etcd, a reopened store gives every lease its
//! full TTL again.
//!
//! Invariants:
//! 1. The attachments in memory (`Lessor`) and in the tree are the same, and each is a key alive
//!    at the current revision whose record names the lease. Both change only in a store write
//!    (`Store::write`), which stages them (`LeaseChanges`) and applies them to memory after its
//!    commit, under the writer lock: a write that fails changes neither.
//! 2. Leases are granted and revoked only in store writes, so the set of leases changes only
//!    under the writer lock; a keep-alive changes only an expiry time.
//! 3. A revoke deletes every attached key in one revision (none if it has no keys) and removes
//!    the lease in the same database transaction, through the ordinary write path, so its deletes
//!    are ordinary deletes (watchers see them as such).
//!
//! Lock order: the store's writer lock, then the lessor's lock. The lessor's lock and the state
//! lock are never held together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::limits::LEASE_TTL_MAX;
use crate::mvcc::revision::malformed;
use crate::mvcc::store::Store;
use crate::mvcc::types::KeyRange;
use crate::mvcc::write::StoreWrite;
use crate::txn::ReadTxn;

/// The tree of leases and their attached keys.
pub(crate) const LEASE_TREE: &[u8] = b"mvcc.lease";

/// Bytes of a lease id in the lease tree.
const ID_LEN: usize = 8;

/// A source of monotonic time for lease expiry: the time since an arbitrary origin, never going
/// back. [`MonotonicClock`] is the real one; tests inject a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The time now, since the clock's origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock ([`Instant`]), the default of [`crate::StoreOptions`].
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to, for tests: share it (`Arc`) between the store's
/// options and the test.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(d, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The answer to [`Store::lease_grant`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease's id (the one asked for, or the one chosen).
    pub id: i64,
    /// Its TTL in seconds.
    pub ttl: i64,
}

/// The answer to [`Store::lease_time_to_live`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The lease's id.
    pub id: i64,
    /// Seconds left before it expires (whole seconds, rounded down), -1 once expired.
    pub ttl: i64,
    /// The TTL it was granted.
    pub granted_ttl: i64,
    /// The keys attached to it, in key order, when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    expiry: Duration,
    keys: BTreeSet<Vec<u8>>,
}

/// The leases in memory (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Lessor {
    leases: HashMap<i64, Lease>,
    /// The lease of each leased key (only those).
    key_lease: HashMap<Vec<u8>, i64>,
    /// Where the search for a free id starts when the caller lets the store choose.
    next_id: i64,
}

/// What one store write does to the leases, applied to the [`Lessor`] after its commit.
#[derive(Debug, Default)]
pub(crate) struct LeaseChanges {
    /// Each key whose lease the write changed → its lease now (0 for none).
    keys: BTreeMap<Vec<u8>, i64>,
    granted: Vec<(i64, i64)>,
    revoked: Vec<i64>,
}

impl LeaseChanges {
    /// Whether the write changed the lease tree without writing a revision (a grant or a revoke
    /// with no keys), so it must commit anyway.
    pub(crate) fn needs_commit(&self) -> bool {
        !self.granted.is_empty() || !self.revoked.is_empty()
    }
}

fn ttl_until(expiry: Duration, now: Duration) -> i64 {
    if expiry <= now {
        -1
    } else {
        i64::try_from((expiry - now).as_secs()).unwrap_or(i64::MAX)
    }
}

fn expiry(now: Duration, ttl: i64) -> Duration {
    now.saturating_add(Duration::from_secs(ttl.unsigned_abs()))
}

fn attachment(id: i64, key: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

impl Lessor {
    /// Reads the lease tree (if the store has one yet); every lease expires a full TTL from `now`.
    pub(crate) fn open(tx: &ReadTxn<'_>, now: Duration) -> Result<Lessor> {
        let mut lessor = Lessor::default();
        if let Some(tree) = tx.tree(LEASE_TREE)? {
            for entry in tree.iter() {
                let (k, v) = entry?;
                let (id, key) = k
                    .split_at_checked(ID_LEN)
                    .ok_or_else(|| malformed(format!("a lease tree key of {} bytes", k.len())))?;
                let id = i64::from_be_bytes(id.try_into().expect("8 bytes"));
                if key.is_empty() {
                    let ttl = i64::from_le_bytes(v.try_into().map_err(|_| {
                        malformed(format!("lease {id} has a TTL of {} bytes", v.len()))
                    })?);
                    if !(1..=LEASE_TTL_MAX).contains(&ttl) {
                        return Err(malformed(format!("lease {id} has a TTL of {ttl} s")));
                    }
                    lessor.leases.insert(
                        id,
                        Lease {
                            ttl,
                            expiry: expiry(now, ttl),
                            keys: BTreeSet::new(),
                        },
                    );
                    continue;
                }
                // A lease sorts before its attachments (its key is their prefix).
                let lease = lessor.leases.get_mut(&id).ok_or_else(|| {
                    malformed(format!(
                        "key \"{}\" is attached to lease {id}, which does not exist",
                        key.escape_ascii()
                    ))
                })?;
                if let Some(other) = lessor.key_lease.insert(key.to_vec(), id) {
                    return Err(malformed(format!(
                        "key \"{}\" is attached to leases {other} and {id}",
                        key.escape_ascii()
                    )));
                }
                lease.keys.insert(key.to_vec());
            }
        }
        // Chosen ids start from the wall clock, so an id is not handed out again after a reopen
        // (a client holding a revoked id must not renew someone else's lease).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_micros()).unwrap_or(1));
        let newest = lessor
            .leases
            .keys()
            .max()
            .map_or(0, |id| id.saturating_add(1));
        lessor.next_id = seed.max(newest).max(1);
        Ok(lessor)
    }

    fn lease_of(&self, key: &[u8]) -> i64 {
        self.key_lease.get(key).copied().unwrap_or(0)
    }

    /// A free id, for a grant that lets the store choose.
    fn choose_id(&self) -> i64 {
        let mut id = self.next_id;
        while id <= 0 || self.leases.contains_key(&id) {
            id = id.checked_add(1).unwrap_or(1);
        }
        id
    }

    /// Applies a committed write's changes.
    pub(crate) fn apply(&mut self, changes: LeaseChanges, now: Duration) {
        for (id, ttl) in changes.granted {
            self.leases.insert(
                id,
                Lease {
                    ttl,
                    expiry: expiry(now, ttl),
                    keys: BTreeSet::new(),
                },
            );
            if id >= self.next_id {
                self.next_id = id.saturating_add(1);
            }
        }
        for (key, id) in changes.keys {
            if let Some(old) = self.key_lease.remove(&key)
                && let Some(lease) = self.leases.get_mut(&old)
            {
                lease.keys.remove(&key);
            }
            if id != 0 {
                let lease = self.leases.get_mut(&id);
                debug_assert!(
                    lease.is_some(),
                    "a key attached to lease {id}, which is gone"
                );
                if let Some(lease) = lease {
                    lease.keys.insert(key.clone());
                    self.key_lease.insert(key, id);
                }
            }
        }
        for id in changes.revoked {
            let lease = self.leases.remove(&id);
            debug_assert!(
                lease.is_some_and(|l| l.keys.is_empty()),
                "a revoked lease keeps no key"
            );
        }
    }
}

impl StoreWrite<'_> {
    /// The lease `key` is attached to, as this write leaves it so far.
    fn lease_of(&self, key: &[u8]) -> i64 {
        match self.leases.keys.get(key) {
            Some(&id) => id,
            None => self.inner.lessor.lock().lease_of(key),
        }
    }

    /// Attaches `key` to `lease` (0: to none), detaching it from its old lease. Called before the
    /// put or delete changes anything, so a lease that does not exist fails it untouched.
    pub(crate) fn attach(&mut self, key: &[u8], lease: i64) -> Result<()> {
        if lease != 0 && !self.inner.lessor.lock().leases.contains_key(&lease) {
            return Err(Error::LeaseNotFound { id: lease });
        }
        let old = self.lease_of(key);
        if old == lease {
            return Ok(());
        }
        let mut tree = self.tx.open_tree(LEASE_TREE)?;
        if old != 0 {
            tree.delete(&attachment(old, key))?;
        }
        if lease != 0 {
            tree.put(&attachment(lease, key), &[])?;
        }
        self.leases.keys.insert(key.to_vec(), lease);
        Ok(())
    }

    /// Grants lease `id` (0: a free one) with `ttl` seconds; returns the id.
    fn grant(&mut self, id: i64, ttl: i64) -> Result<i64> {
        let id = {
            let lessor = self.inner.lessor.lock();
            if id == 0 {
                lessor.choose_id()
            } else if lessor.leases.contains_key(&id) {
                return Err(Error::LeaseExists { id });
            } else {
                id
            }
        };
        self.tx
            .open_tree(LEASE_TREE)?
            .put(&id.to_be_bytes(), &ttl.to_le_bytes())?;
        self.leases.granted.push((id, ttl));
        Ok(id)
    }

    /// Revokes lease `id`: deletes its keys (in this write's one revision) and the lease. With
    /// `expired_by`, only if it has expired by then (else `false` and nothing changes).
    fn revoke(&mut self, id: i64, expired_by: Option<Duration>) -> Result<bool> {
        let keys: Vec<Vec<u8>> = {
            let lessor = self.inner.lessor.lock();
            let lease = lessor.leases.get(&id).ok_or(Error::LeaseNotFound { id })?;
            if expired_by.is_some_and(|now| lease.expiry > now) {
                return Ok(false);
            }
            lease.keys.iter().cloned().collect()
        };
        for key in &keys {
            // A delete detaches the key from the lease.
            self.delete_range(&KeyRange::key(key), false)?;
            debug_assert_eq!(self.lease_of(key), 0, "a deleted key keeps no lease");
        }
        self.tx.open_tree(LEASE_TREE)?.delete(&id.to_be_bytes())?;
        self.leases.revoked.push(id);
        Ok(true)
    }
}

fn check_ttl(ttl: i64) -> Result<()> {
    if (1..=LEASE_TTL_MAX).contains(&ttl) {
        Ok(())
    } else {
        Err(Error::LeaseTtl {
            ttl,
            max: LEASE_TTL_MAX,
        })
    }
}

impl Store {
    fn now(&self) -> Duration {
        self.inner.options.clock.now()
    }

    /// Grants a lease of `ttl_secs` seconds (1 to [`LEASE_TTL_MAX`]) with id `id`, or with an id
    /// the store chooses when `id` is 0. It expires `ttl_secs` from now by the store's clock
    /// ([`crate::StoreOptions::clock`]) unless kept alive. A grant writes no revision.
    ///
    /// Errors: [`Error::LeaseExists`] for an id in use, [`Error::LeaseTtl`] for a TTL out of
    /// range.
    pub fn lease_grant(&self, id: i64, ttl_secs: i64) -> Result<LeaseGrant> {
        check_ttl(ttl_secs)?;
        let (id, _) = self.write(|w| w.grant(id, ttl_secs))?;
        Ok(LeaseGrant { id, ttl: ttl_secs })
    }

    /// Revokes lease `id`: deletes every key attached to it in one revision, and the lease, in one
    /// transaction. Returns the revision of the deletes (the current revision when it had no
    /// keys). [`Error::LeaseNotFound`] if there is no such lease.
    pub fn lease_revoke(&self, id: i64) -> Result<i64> {
        Ok(self.write(|w| w.revoke(id, None))?.1)
    }

    /// Renews lease `id`: it expires its granted TTL from now. Returns that TTL.
    /// [`Error::LeaseNotFound`] if there is no such lease, or if it had expired (it is revoked
    /// then, as etcd revokes it before it answers).
    pub fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        loop {
            let now = self.now();
            {
                let mut lessor = self.inner.lessor.lock();
                let lease = lessor
                    .leases
                    .get_mut(&id)
                    .ok_or(Error::LeaseNotFound { id })?;
                if lease.expiry > now {
                    lease.expiry = expiry(now, lease.ttl);
                    return Ok(lease.ttl);
                }
            }
            match self.write(|w| w.revoke(id, Some(now))) {
                Ok((true, _)) | Err(Error::LeaseNotFound { .. }) => {
                    return Err(Error::LeaseNotFound { id });
                }
                // Renewed by someone else in between: renew again.
                Ok((false, _)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Lease `id`'s time left, granted TTL and, with `keys`, its attached keys.
    /// [`Error::LeaseNotFound`] if there is no such lease.
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseStatus> {
        let now = self.now();
        let lessor = self.inner.lessor.lock();
        let lease = lessor.leases.get(&id).ok_or(Error::LeaseNotFound { id })?;
        Ok(LeaseStatus {
            id,
            ttl: ttl_until(lease.expiry, now),
            granted_ttl: lease.ttl,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// The ids of every lease, in order.
    pub fn leases(&self) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = self.inner.lessor.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Revokes every lease whose TTL has run out by the store's clock, each in its own write (one
    /// revision per lease with keys), as etcd's lessor does. Returns their ids in order. Call it
    /// periodically (etcd checks every 500 ms); a lease kept alive meanwhile is left alone.
    pub fn expire_leases(&self) -> Result<Vec<i64>> {
        let now = self.now();
        let mut due: Vec<i64> = {
            let lessor = self.inner.lessor.lock();
            lessor
                .leases
                .iter()
                .filter(|(_, l)| l.expiry <= now)
                .map(|(&id, _)| id)
                .collect()
        };
        due.sort_unstable();
        let mut revoked = Vec::with_capacity(due.len());
        for id in due {
            match self.write(|w| w.revoke(id, Some(now))) {
                Ok((true, _)) => revoked.push(id),
                Ok((false, _)) | Err(Error::LeaseNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }
}
