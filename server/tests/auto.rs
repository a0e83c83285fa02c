//! What the server does by itself: compaction as `--auto-compaction-mode` and
//! `--auto-compaction-retention` ask, and the online defrag past `--auto-defrag-threshold`.

mod support;

use std::time::Duration;

use folio_server::pb::etcdserverpb::{CompactionRequest, DeleteRangeRequest, StatusRequest};
use support::put;

/// Polls `done` every 100 ms for up to 20 s; whether it came true.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// The revision mode keeps the last N revisions: the store is compacted to current - N.
#[tokio::test]
async fn revision_auto_compaction_keeps_the_last_revisions() {
    let mut server = support::start_with(|c| {
        c.auto_compaction_mode = "revision".into();
        c.auto_compaction_retention = "3".into();
        c.revision_compaction_check_secs = 1;
    })
    .await;
    let mut kv = server.kv().await;
    for i in 0..10 {
        kv.put(put("r", &i.to_string())).await.unwrap(); // revisions 2..=11
    }
    let store = server.running.as_ref().unwrap().shared().store().clone();
    assert!(
        eventually(|| store.compacted_revision() == 8).await,
        "compacted to {}",
        store.compacted_revision()
    );
    server.stop().await;
}

/// The periodic mode compacts to the revision the store had a retention ago.
#[tokio::test]
async fn periodic_auto_compaction_compacts_what_is_older_than_the_retention() {
    let mut server = support::start_with(|c| {
        c.auto_compaction_mode = "periodic".into();
        c.auto_compaction_retention = "1s".into();
    })
    .await;
    let mut kv = server.kv().await;
    kv.put(put("p", "1")).await.unwrap();
    kv.put(put("p", "2")).await.unwrap();
    let store = server.running.as_ref().unwrap().shared().store().clone();
    assert!(
        eventually(|| store.compacted_revision() >= 3).await,
        "compacted to {}",
        store.compacted_revision()
    );
    server.stop().await;
}

/// Past the reclaimable threshold the server defragments by itself and the file shrinks, with
/// every live key still there.
#[tokio::test]
async fn the_server_defragments_by_itself_past_the_threshold() {
    let mut server = support::start_with(|c| {
        c.auto_defrag_threshold = 0.5;
        c.auto_defrag_min_bytes = 0;
        c.auto_defrag_check_secs = 1;
    })
    .await;
    let mut kv = server.kv().await;
    let big = "d".repeat(4000);
    for i in 0..200 {
        kv.put(put(&format!("d{i:03}"), &big)).await.unwrap();
    }
    let del = DeleteRangeRequest {
        key: b"d0".to_vec(),
        range_end: b"d1".to_vec(),
        prev_kv: false,
    };
    kv.delete_range(del).await.unwrap();
    let rev = kv
        .put(put("last", "1"))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let mut m = server.maintenance().await;
    let before = m
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .db_size;
    let shared = server.running.as_ref().unwrap().shared().clone();
    assert!(
        eventually(|| (shared.db_size() as i64) < before / 2).await,
        "{} of {before}",
        shared.db_size()
    );
    let r = kv.range(support::get("d150")).await.unwrap().into_inner();
    assert_eq!(r.kvs[0].value, big.as_bytes());
    server.stop().await;
}
