//! The ordered map of keys to their packed histories.
//!
//! It is a `BTreeMap` with the methods of one that the store uses, so its call sites read as
//! they did over `BTreeMap<Vec<u8>, KeyIndex>`; what changed is the cost of an entry. A key is a
//! `Box<[u8]>` of exactly its length (a `Vec` carries a capacity too, and often spare room), a
//! history is one packed `Box<[u8]>`, and an index rebuilt on open is built from keys in order,
//! which fills every node of the tree (keys inserted in random order leave nodes about two thirds
//! full). An entry is then 32 bytes in a full node plus two small allocations: 116 bytes per key
//! of 34 bytes with 5 revisions, measured (`examples/store_open.rs`), against 432 before.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::RangeBounds;

use crate::mvcc::key_index::KeyIndex;

/// Every key's history, in key order.
#[derive(Debug, Default)]
pub(crate) struct Index {
    map: BTreeMap<Box<[u8]>, KeyIndex>,
}

/// A key's place in the index, which may be vacant (as `btree_map::Entry`).
pub(crate) struct Entry<'a>(btree_map::Entry<'a, Box<[u8]>, KeyIndex>);

impl<'a> Entry<'a> {
    /// The key's history, made empty first if the key is not indexed.
    pub fn or_default(self) -> &'a mut KeyIndex {
        self.0.or_default()
    }
}

impl Index {
    /// An index of `entries`, which are in strictly rising key order.
    pub fn from_sorted(entries: Vec<(Box<[u8]>, KeyIndex)>) -> Index {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "keys rise");
        // Sorted input is bulk-built: every node full.
        Index {
            map: entries.into_iter().collect(),
        }
    }

    /// How many keys are indexed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The history of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.map.get(key)
    }

    /// The history of `key`, to change.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        self.map.get_mut(key)
    }

    /// The place of `key`, to read or make its history.
    pub fn entry(&mut self, key: Vec<u8>) -> Entry<'_> {
        Entry(self.map.entry(key.into_boxed_slice()))
    }

    /// Removes `key` and its history.
    pub fn remove(&mut self, key: &[u8]) -> Option<KeyIndex> {
        self.map.remove(key)
    }

    /// The keys in `range` and their histories, in key order.
    pub fn range<T, R>(&self, range: R) -> btree_map::Range<'_, Box<[u8]>, KeyIndex>
    where
        T: Ord + ?Sized,
        Box<[u8]>: Borrow<T>,
        R: RangeBounds<T>,
    {
        self.map.range(range)
    }

    /// The keys in `range` and their histories, to change, in key order.
    pub fn range_mut<T, R>(&mut self, range: R) -> btree_map::RangeMut<'_, Box<[u8]>, KeyIndex>
    where
        T: Ord + ?Sized,
        Box<[u8]>: Borrow<T>,
        R: RangeBounds<T>,
    {
        self.map.range_mut(range)
    }

    /// Every key's history, in key order.
    pub fn values(&self) -> btree_map::Values<'_, Box<[u8]>, KeyIndex> {
        self.map.values()
    }
}
