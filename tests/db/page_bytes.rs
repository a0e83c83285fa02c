//! The threat: a page carries bytes it was never meant to hold. A commit encodes its pages into a
//! buffer that the next commit reuses, so a page written over an earlier commit's page images
//! keeps their bytes past its own entries unless the encoder clears them. Checksums are computed
//! over those bytes, so nothing would notice: stale user data would linger in the file (and in
//! every copy of it) where no live entry puts it.
//!
//! What broke (while building the reused buffer): a small commit after a large one wrote leaves
//! whose free space held the large commit's values.

use folio::Db;

const PAGE: usize = 4096;

/// The bytes leaf or branch page `page` (of a written file) gives its entries, slots included;
/// `None` for a page of another kind or one never written as itself.
fn used_len(page: &[u8], id: u64) -> Option<usize> {
    let stored_id = u64::from_le_bytes(page[0..8].try_into().unwrap());
    let count = u16::from_le_bytes([page[10], page[11]]) as usize;
    let kind = page[8];
    if stored_id != id || !(kind == 2 || kind == 3) {
        return None;
    }
    let mut end = 24 + 2 * count;
    for i in 0..count {
        let off = u16::from_le_bytes([page[24 + 2 * i], page[25 + 2 * i]]) as usize;
        let len = if kind == 3 {
            let klen = u16::from_le_bytes([page[off + 1], page[off + 2]]) as usize;
            let vlen = u32::from_le_bytes(page[off + 3..off + 7].try_into().unwrap()) as usize;
            let stored = if page[off] == 0 { vlen } else { 8 };
            7 + klen + stored
        } else {
            10 + u16::from_le_bytes([page[off + 8], page[off + 9]]) as usize
        };
        end = end.max(off + len);
    }
    Some(end)
}

#[test]
fn a_page_written_after_a_large_commit_holds_zeros_past_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.folio");
    let db = Db::builder().page_size(PAGE as u32).open(&path).unwrap();
    // A large commit: leaves full of values with no zero byte in them.
    let mut tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_tree(b"big").unwrap();
        for i in 0..3000u32 {
            t.put(format!("key-{i:06}").as_bytes(), &[0xa5; 100])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    // Small commits: a few entries each, in pages mostly free space.
    for round in 0..3u32 {
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(format!("small-{round}").as_bytes())
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        tx.commit().unwrap();
    }
    drop(db);

    let file = std::fs::read(&path).unwrap();
    let mut pages_checked = 0;
    for (id, page) in file.chunks_exact(PAGE).enumerate().skip(2) {
        let Some(end) = used_len(page, id as u64) else {
            continue;
        };
        pages_checked += 1;
        assert!(
            page[end..].iter().all(|&b| b == 0),
            "page {id} holds stale bytes past its entries (from byte {end})"
        );
    }
    assert!(pages_checked > 30, "only {pages_checked} tree pages found");
}
