//! The watchers' ranges, indexed so that a fan-out finds the watchers of a key in time that grows
//! with the watchers it finds, not with all of them.
//!
//! A range is one of three shapes, each with its own structure:
//! - **a key** (`KeyRange::key`): a hash map from the key to its watchers, one lookup per event;
//! - **a prefix** (`KeyRange::prefix`, and `KeyRange::all` as the empty prefix): a hash map from
//!   the prefix to its watchers, and the set of prefix lengths in use; a key of length `n` is looked
//!   up once per length `<= n` in that set (3 lookups for the watch bench's 1,000 watchers);
//! - **any other bounds**: a list of distinct ranges sorted by start bound; a lookup scans it
//!   from the lowest start and stops at the first range that starts above the key. That is linear
//!   in the ranges starting below the key: fine for the few arbitrary ranges applications watch
//!   (etcd's clients watch keys and prefixes), and the place to put an interval tree if not.
//!
//! Watchers of the same range share one entry (a group), so 100 watchers of `/registry/pods/`
//! cost one lookup. Invariants:
//! 1. Every item is in exactly one group, the one of the range it was inserted with; a group is
//!    never empty (it is removed with its last item).
//! 2. `prefix_lengths[n]` counts the groups in `prefixes` whose prefix is `n` bytes long, and has
//!    no zero counts.
//! 3. `ranges` is sorted by [`start_order`], holds distinct ranges, and no key or prefix.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::mvcc::types::KeyRange;

/// The shape of a range, as the index files it.
#[derive(Debug, PartialEq, Eq)]
enum Shape<'a> {
    Key(&'a [u8]),
    Prefix(&'a [u8]),
    Other,
}

fn shape(range: &KeyRange) -> Shape<'_> {
    match (&range.start, &range.end) {
        (Bound::Included(s), Bound::Included(e)) if s == e => Shape::Key(s),
        (Bound::Unbounded, Bound::Unbounded) => Shape::Prefix(&[]),
        (Bound::Included(s), end) if *end == KeyRange::prefix(s).end => Shape::Prefix(s),
        _ => Shape::Other,
    }
}

/// Orders ranges by where they start: unbounded first, then by key, an included start before an
/// excluded one at the same key (it admits more).
fn start_order(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Ordering {
    fn rank(x: &Bound<Vec<u8>>) -> (u8, Option<&[u8]>, u8) {
        match x {
            Bound::Unbounded => (0, None, 0),
            Bound::Included(k) => (1, Some(k.as_slice()), 0),
            Bound::Excluded(k) => (1, Some(k.as_slice()), 1),
        }
    }
    rank(a).cmp(&rank(b))
}

/// Whether a range starting at `start` starts above `key` (admits no key at or below it).
fn starts_above(start: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match start {
        Bound::Unbounded => false,
        Bound::Included(s) => s.as_slice() > key,
        Bound::Excluded(s) => s.as_slice() >= key,
    }
}

/// Whether `range` admits `key`.
pub(crate) fn contains(range: &KeyRange, key: &[u8]) -> bool {
    !starts_above(&range.start, key)
        && match &range.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        }
}

/// The items of one range: most ranges have one watcher, which costs no allocation of its own.
#[derive(Debug)]
enum Group<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Group<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Group::One(item) => std::slice::from_ref(item),
            Group::Many(items) => items,
        }
    }

    fn push(&mut self, item: T) {
        match self {
            Group::Many(items) => items.push(item),
            Group::One(_) => {
                let Group::One(first) = std::mem::replace(self, Group::Many(Vec::new())) else {
                    unreachable!("matched One above")
                };
                *self = Group::Many(vec![first, item]);
            }
        }
    }

    /// Removes the first item `is` picks; returns whether there was one.
    fn take(&mut self, is: impl Fn(&T) -> bool) -> bool {
        match self {
            Group::One(item) if is(item) => {
                *self = Group::Many(Vec::new());
                true
            }
            Group::One(_) => false,
            Group::Many(items) => match items.iter().position(is) {
                Some(i) => {
                    items.swap_remove(i);
                    true
                }
                None => false,
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// Files `item` in `map` under `key`; returns whether that made a new group.
fn file<T>(map: &mut HashMap<Box<[u8]>, Group<T>>, key: &[u8], item: T) -> bool {
    match map.entry(key.into()) {
        Entry::Occupied(mut group) => {
            group.get_mut().push(item);
            false
        }
        Entry::Vacant(slot) => {
            slot.insert(Group::One(item));
            true
        }
    }
}

/// Items (watchers) filed by their key range; see the module docs.
#[derive(Debug)]
pub(crate) struct RangeIndex<T> {
    keys: HashMap<Box<[u8]>, Group<T>>,
    prefixes: HashMap<Box<[u8]>, Group<T>>,
    prefix_lengths: BTreeMap<usize, usize>,
    ranges: Vec<(KeyRange, Group<T>)>,
}

impl<T> Default for RangeIndex<T> {
    fn default() -> Self {
        RangeIndex {
            keys: HashMap::new(),
            prefixes: HashMap::new(),
            prefix_lengths: BTreeMap::new(),
            ranges: Vec::new(),
        }
    }
}

impl<T> RangeIndex<T> {
    /// Files `item` under `range`.
    pub fn insert(&mut self, range: &KeyRange, item: T) {
        match shape(range) {
            Shape::Key(k) => {
                file(&mut self.keys, k, item);
            }
            Shape::Prefix(p) => {
                if file(&mut self.prefixes, p, item) {
                    *self.prefix_lengths.entry(p.len()).or_default() += 1;
                }
            }
            Shape::Other => {
                let at = self
                    .ranges
                    .partition_point(|(r, _)| start_order(&r.start, &range.start).is_lt());
                let same = self.ranges[at..]
                    .iter()
                    .take_while(|(r, _)| r.start == range.start)
                    .position(|(r, _)| r.end == range.end);
                match same {
                    Some(i) => self.ranges[at + i].1.push(item),
                    None => self.ranges.insert(at, (range.clone(), Group::One(item))),
                }
            }
        }
    }

    /// Removes the first item filed under `range` that `is` picks; returns whether there was one.
    pub fn remove(&mut self, range: &KeyRange, is: impl Fn(&T) -> bool) -> bool {
        match shape(range) {
            Shape::Key(k) => {
                let Some(group) = self.keys.get_mut(k) else {
                    return false;
                };
                let removed = group.take(is);
                if group.is_empty() {
                    self.keys.remove(k);
                }
                removed
            }
            Shape::Prefix(p) => {
                let Some(group) = self.prefixes.get_mut(p) else {
                    return false;
                };
                let removed = group.take(is);
                if group.is_empty() {
                    self.prefixes.remove(p);
                    let n = self
                        .prefix_lengths
                        .get_mut(&p.len())
                        .expect("a prefix group counts in its length (invariant 2)");
                    *n -= 1;
                    if *n == 0 {
                        self.prefix_lengths.remove(&p.len());
                    }
                }
                removed
            }
            Shape::Other => {
                let Some(i) = self.ranges.iter().position(|(r, _)| r == range) else {
                    return false;
                };
                let removed = self.ranges[i].1.take(is);
                if self.ranges[i].1.is_empty() {
                    self.ranges.remove(i);
                }
                removed
            }
        }
    }

    /// The first item filed under exactly `range` that `is` picks.
    pub fn find(&self, range: &KeyRange, is: impl Fn(&T) -> bool) -> Option<&T> {
        let group = match shape(range) {
            Shape::Key(k) => self.keys.get(k),
            Shape::Prefix(p) => self.prefixes.get(p),
            Shape::Other => self.ranges.iter().find(|(r, _)| r == range).map(|(_, g)| g),
        }?;
        group.as_slice().iter().find(|item| is(item))
    }

    /// Calls `f` on every item whose range admits `key`, each once.
    pub fn for_each_match<'a>(&'a self, key: &[u8], mut f: impl FnMut(&'a T)) {
        if let Some(group) = self.keys.get(key) {
            group.as_slice().iter().for_each(&mut f);
        }
        for &n in self.prefix_lengths.range(..=key.len()).map(|(n, _)| n) {
            if let Some(group) = self.prefixes.get(&key[..n]) {
                group.as_slice().iter().for_each(&mut f);
            }
        }
        for (range, group) in &self.ranges {
            if starts_above(&range.start, key) {
                break;
            }
            if contains(range, key) {
                group.as_slice().iter().for_each(&mut f);
            }
        }
    }
}

#[cfg(test)]
mod tests;
