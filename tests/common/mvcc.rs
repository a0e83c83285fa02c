//! The MVCC models' view of the keys live at one revision, and how one change moves it on.

use std::collections::BTreeMap;

use folio::KeyValue;

/// The keys visible at one revision, with their values as a read returns them.
pub type Live = BTreeMap<Vec<u8>, KeyValue>;

/// Applies one change at main revision `main` to `live`, the way etcd's index does: a put
/// (`Some(value)`) on a live key keeps its create revision and adds one to its version; a put on
/// a missing key creates it at version 1; a tombstone (`None`) ends the key's generation. Returns
/// the key's previous value.
pub fn apply(
    live: &mut Live,
    main: i64,
    key: &[u8],
    value: Option<&[u8]>,
    lease: i64,
) -> Option<KeyValue> {
    match value {
        Some(value) => {
            let prev = live.get(key).cloned();
            let (create_revision, version) = prev
                .as_ref()
                .map_or((main, 1), |p| (p.create_revision, p.version + 1));
            let kv = KeyValue {
                key: key.to_vec(),
                create_revision,
                mod_revision: main,
                version,
                value: value.to_vec(),
                lease,
            };
            live.insert(key.to_vec(), kv);
            prev
        }
        None => live.remove(key),
    }
}
