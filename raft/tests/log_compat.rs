//! The threat: keys and values in log entries changed from JSON arrays of numbers (a 1.5 MiB
//! value took ~6 MiB) to base64 strings; a member restarted on a log written before the change
//! must still read its entries, byte for byte, and new entries must not be number arrays.

#[path = "support/entries.rs"]
mod entries;

use folio_raft::{Command, LogStore, TypeConfig};
use openraft::storage::RaftLogReader;
use openraft::{Entry, EntryPayload};

fn old_format(entry: &Entry<TypeConfig>) -> Vec<u8> {
    // The new encoding with each base64 string put back as the array of numbers the old
    // encoding wrote.
    let json = serde_json::to_string(entry).unwrap();
    let EntryPayload::Normal(Command::Put { key, value, .. }) = &entry.payload else {
        unreachable!()
    };
    let array = |b: &[u8]| {
        format!(
            "[{}]",
            b.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
        )
    };
    let b64 = |b: &[u8]| {
        use base64::Engine;
        format!(
            "\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    };
    let old = json
        .replace(
            &format!("\"key\":{}", b64(key)),
            &format!("\"key\":{}", array(key)),
        )
        .replace(
            &format!("\"value\":{}", b64(value)),
            &format!("\"value\":{}", array(value)),
        );
    assert!(old.contains(&array(value)), "{old}");
    old.into_bytes()
}

#[tokio::test]
async fn a_log_written_with_bytes_as_number_arrays_is_read_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log.folio");
    let written: Vec<Entry<TypeConfig>> = (1..=3)
        .map(|i| entries::put(i, &format!("key-{i}"), &"\u{e9}v\0".repeat(i as usize)))
        .collect();
    {
        // The log as the old encoding left it.
        let db = folio::Db::open(&path).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"raft.state").unwrap();
        {
            let mut log = tx.open_tree(b"raft.log").unwrap();
            for e in &written {
                log.put(&e.log_id.index.to_be_bytes(), &old_format(e))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let mut log = LogStore::open(&path).unwrap();
    let read = log.try_get_log_entries(1..=3).await.unwrap();
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        serde_json::to_string(&written).unwrap()
    );
}

#[test]
fn values_are_base64_in_entries_not_arrays_of_numbers() {
    let value = vec![200u8; 1 << 20];
    let e = entries::entry(
        1,
        EntryPayload::Normal(Command::Put {
            key: b"k".to_vec(),
            value: value.clone(),
            lease: 0,
        }),
    );
    let json = serde_json::to_vec(&e).unwrap();
    assert!(
        json.len() < value.len() / 3 * 4 + 1024,
        "{} bytes",
        json.len()
    );
    let back: Entry<TypeConfig> = serde_json::from_slice(&json).unwrap();
    let EntryPayload::Normal(Command::Put { value: v, .. }) = back.payload else {
        panic!("not a put")
    };
    assert!(v == value);
}
