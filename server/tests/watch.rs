//! The Watch service driven by a gRPC client: history and live events, filters and prev_kv,
//! cancel, progress requests, a watch on a compacted revision, and a client that vanishes.

mod support;

use std::time::Duration;

use folio_server::pb::etcdserverpb::watch_client::WatchClient;
use folio_server::pb::etcdserverpb::watch_create_request::FilterType;
use folio_server::pb::etcdserverpb::watch_request::RequestUnion;
use folio_server::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use folio_server::pb::mvccpb::event::EventType;
use support::put;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// A watch stream: requests go in through the sender, responses come out of the stream.
async fn open(
    server: &support::TestServer,
) -> (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(16);
    let mut client = WatchClient::new(server.channel().await);
    let responses = client
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, responses)
}

fn create(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(c)),
    }
}

async fn next(s: &mut Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a watch response within 20 s")
        .unwrap()
        .expect("the stream is open")
}

/// A watch from an old revision replays the history, then follows new writes; prev_kv and the
/// NOPUT filter work as etcd's; a cancel ends it with `canceled`.
#[tokio::test]
async fn a_watch_replays_history_then_follows_and_cancels() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    kv.put(put("w", "1")).await.unwrap(); // rev 2
    kv.put(put("w", "2")).await.unwrap(); // rev 3
    let (tx, mut rx) = open(&server).await;
    tx.send(create(WatchCreateRequest {
        key: b"w".to_vec(),
        start_revision: 2,
        prev_kv: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    let created = next(&mut rx).await;
    assert!(created.created);
    let id = created.watch_id;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = next(&mut rx).await;
        assert_eq!(r.watch_id, id);
        seen.extend(r.events);
    }
    assert_eq!(seen[0].kv.as_ref().unwrap().mod_revision, 2);
    assert_eq!(seen[1].prev_kv.as_ref().unwrap().value, b"1");
    kv.delete_range(DeleteRangeRequest {
        key: b"w".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap(); // rev 4
    let r = next(&mut rx).await;
    assert_eq!(r.events[0].r#type, EventType::Delete as i32);
    assert_eq!(r.header.unwrap().revision, 4);

    // A second watcher on the same stream that drops puts sees only the delete.
    tx.send(create(WatchCreateRequest {
        key: b"x".to_vec(),
        filters: vec![FilterType::Noput as i32],
        ..Default::default()
    }))
    .await
    .unwrap();
    let c2 = next(&mut rx).await;
    assert!(c2.created && c2.watch_id != id);
    kv.put(put("x", "1")).await.unwrap();
    kv.delete_range(DeleteRangeRequest {
        key: b"x".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = next(&mut rx).await;
    assert_eq!(
        (r.watch_id, r.events.len(), r.events[0].r#type),
        (c2.watch_id, 1, EventType::Delete as i32)
    );

    tx.send(WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    })
    .await
    .unwrap();
    let p = next(&mut rx).await;
    assert_eq!((p.watch_id, p.events.len()), (-1, 0));

    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: id,
        })),
    })
    .await
    .unwrap();
    let r = next(&mut rx).await;
    assert!(r.canceled && r.watch_id == id);
    server.stop().await;
}

/// A watch from a compacted revision is created, then canceled with the compact revision, as
/// etcd answers it (clients turn that into "required revision has been compacted").
#[tokio::test]
async fn a_watch_on_a_compacted_revision_gets_the_compact_revision() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for v in ["1", "2", "3"] {
        kv.put(put("c", v)).await.unwrap();
    }
    kv.compact(CompactionRequest {
        revision: 3,
        physical: true,
    })
    .await
    .unwrap();
    let (tx, mut rx) = open(&server).await;
    tx.send(create(WatchCreateRequest {
        key: b"c".to_vec(),
        start_revision: 2,
        ..Default::default()
    }))
    .await
    .unwrap();
    let created = next(&mut rx).await;
    assert!(created.created);
    let r = next(&mut rx).await;
    assert_eq!(
        (r.watch_id, r.compact_revision, r.canceled),
        (created.watch_id, 3, true)
    );
    server.stop().await;
}

/// A client that goes away with watchers open: its watchers are cancelled and the server keeps
/// serving.
#[tokio::test]
async fn a_client_vanishing_mid_watch_cancels_its_watchers() {
    let mut server = support::start().await;
    let store = server.running.as_ref().unwrap().shared().store().clone();
    {
        let (tx, mut rx) = open(&server).await;
        for k in ["a", "b", "c"] {
            tx.send(create(WatchCreateRequest {
                key: k.into(),
                ..Default::default()
            }))
            .await
            .unwrap();
            assert!(next(&mut rx).await.created);
        }
        assert_eq!(store.watcher_count(), 3);
    }
    let mut gone = false;
    for _ in 0..200 {
        if store.watcher_count() == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "{} watchers left", store.watcher_count());
    server.kv().await.put(put("after", "1")).await.unwrap();
    server.stop().await;
}
