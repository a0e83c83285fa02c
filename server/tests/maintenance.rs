//! The Maintenance and Cluster services driven by a gRPC client: Status, Defragment, Hash,
//! HashKV, Snapshot, Alarm with the space quota, MemberList; and the files' permissions.

mod support;

use std::os::unix::fs::PermissionsExt;

use folio_server::pb::etcdserverpb::alarm_request::AlarmAction;
use folio_server::pb::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest, DeleteRangeRequest,
    HashKvRequest, HashRequest, MemberListRequest, SnapshotRequest, StatusRequest,
};
use support::{assert_etcd_error, get, put};
use tonic::Code;

/// Status reports one member that leads itself, the file's size and what of it is in use, and
/// the quota; MemberList lists that member with its client URLs.
#[tokio::test]
async fn status_and_member_list_describe_the_single_member() {
    let mut server = support::start_with(|c| c.quota_backend_bytes = 1 << 30).await;
    let mut kv = server.kv().await;
    kv.put(put("a", "1")).await.unwrap();
    let s = server
        .maintenance()
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let h = s.header.unwrap();
    assert_eq!((s.leader, h.revision, s.raft_term), (h.member_id, 2, 1));
    assert!(s.db_size > 0 && s.db_size_in_use > 0 && s.db_size_in_use <= s.db_size);
    assert_eq!(s.db_size_quota, 1 << 30);
    assert!(s.version.starts_with("3."));
    let m = server
        .cluster()
        .await
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.members.len(), 1);
    assert_eq!(m.members[0].id, h.member_id);
    assert_eq!(m.members[0].client_ur_ls, ["http://127.0.0.1:0"]);
    server.stop().await;
}

/// The data directory is created 0700 and the database 0600 (a store may hold secrets).
#[tokio::test]
async fn the_data_directory_is_0700_and_the_database_0600() {
    let mut server = support::start().await;
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(server.data_dir()), 0o700);
    assert_eq!(
        mode(server.data_dir().join(folio_server::server::DB_FILE)),
        0o600
    );
    server.stop().await;
}

/// Defragment shrinks a file with free pages and keeps every key and revision; Hash and
/// HashKV do not change across it.
#[tokio::test]
async fn defragment_keeps_data_and_hashes_and_shrinks_the_file() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    let big = "x".repeat(2000);
    for i in 0..300 {
        kv.put(put(&format!("k{i:04}"), &big)).await.unwrap();
    }
    let del = DeleteRangeRequest {
        key: b"k0".to_vec(),
        range_end: b"k02".to_vec(),
        prev_kv: false,
    };
    kv.delete_range(del).await.unwrap();
    let rev = kv
        .range(get("k0299"))
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
    let hash = m.hash(HashRequest {}).await.unwrap().into_inner().hash;
    let hkv = m
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hkv.hash_revision, rev);
    let before = m
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .db_size;
    m.defragment(DefragmentRequest {}).await.unwrap();
    let after = m
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .db_size;
    assert!(after < before, "{after} < {before}");
    assert_eq!(
        m.hash(HashRequest {}).await.unwrap().into_inner().hash,
        hash
    );
    assert_eq!(
        m.hash_kv(HashKvRequest { revision: 0 })
            .await
            .unwrap()
            .into_inner()
            .hash,
        hkv.hash
    );
    let r = kv.range(get("k0250")).await.unwrap().into_inner();
    assert_eq!(r.kvs[0].value, big.as_bytes());
    assert!(
        kv.range(get("k0150"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty()
    );
    let below = HashKvRequest { revision: 2 };
    assert_etcd_error(
        m.hash_kv(below).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    server.stop().await;
}

/// Snapshot streams a consistent copy of the database that opens as a folio store holding the
/// same keys, and leaves no file of its own behind in the data directory.
#[tokio::test]
async fn a_snapshot_opens_as_a_folio_store_with_the_same_keys() {
    let mut server = support::start().await;
    let mut kv = server.kv().await;
    for i in 0..200 {
        kv.put(put(&format!("s{i:03}"), &"v".repeat(500)))
            .await
            .unwrap();
    }
    let mut stream = server
        .maintenance()
        .await
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut last_remaining = u64::MAX;
    while let Some(msg) = stream.message().await.unwrap() {
        assert!(msg.remaining_bytes < last_remaining);
        last_remaining = msg.remaining_bytes;
        bytes.extend_from_slice(&msg.blob);
    }
    assert_eq!(last_remaining, 0);
    // The stream ends with the database's SHA-256, as etcd's; the rest is the database.
    let (db, sha) = bytes.split_at(bytes.len() - folio_server::maintenance::SNAPSHOT_HASH_LEN);
    assert_eq!(
        sha,
        ring::digest::digest(&ring::digest::SHA256, db).as_ref()
    );
    let bytes = db.to_vec();
    let path = server.dir.path().join("snap.folio");
    std::fs::write(&path, &bytes).unwrap();
    let store = folio::Store::open(&path).unwrap();
    assert!(store.db().check().unwrap().is_clean());
    assert_eq!(store.current_revision(), 201);
    let r = store
        .range(
            folio::KeyRange::prefix(b"s"),
            folio::RangeOptions::current(),
        )
        .unwrap();
    assert_eq!(r.count, 200);
    drop(store);
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.stop().await;
}

/// etcd's answer to a write past the space quota.
fn assert_no_space(status: tonic::Status) {
    assert_etcd_error(
        status,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
}

/// The quota compares the database's size as etcd's does (bbolt's: pages in use or free), not
/// the file's length: a folio file grows by doubling, and a put that fits the quota is taken
/// even once the file is longer than the quota.
#[tokio::test]
async fn the_space_quota_counts_allocated_pages_not_the_files_growth() {
    const QUOTA: u64 = 3 << 20;
    let mut server = support::start_with(|c| c.quota_backend_bytes = QUOTA).await;
    let path = server.data_dir().join(folio_server::server::DB_FILE);
    let mut kv = server.kv().await;
    let mut m = server.maintenance().await;
    let big = "q".repeat(64 * 1024);
    // Puts taken while the file was already longer than the quota.
    let mut past_quota = 0;
    let mut refused = None;
    for i in 0..100 {
        match kv.put(put(&format!("q{i}"), &big)).await {
            Ok(_) => {
                let file = std::fs::metadata(&path).expect("the database file").len();
                let status = m.status(StatusRequest {}).await.unwrap().into_inner();
                assert!(status.db_size as u64 <= file, "{} > {file}", status.db_size);
                past_quota += u32::from(file > QUOTA);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_no_space(refused.expect("the quota is reached"));
    assert!(
        past_quota >= 2,
        "{past_quota} puts taken with the file past the quota"
    );
    let status = m.status(StatusRequest {}).await.unwrap().into_inner();
    // Refused because this put (64 KiB and its key) would pass the quota; taken before while
    // under it, so the last one taken grew the size past it by at most its own pages.
    let size = status.db_size as u64;
    assert!(
        size + 68 * 1024 > QUOTA && size <= QUOTA + 72 * 1024,
        "refused at a db_size of {size} with a quota of {QUOTA}"
    );
    server.stop().await;
}

/// Past the space quota a put is refused with etcd's NOSPACE error and raises the alarm, which
/// AlarmList shows and which keeps refusing writes (deletes still go through) until disarmed.
#[tokio::test]
async fn the_space_quota_raises_nospace_until_disarmed() {
    let mut server = support::start_with(|c| c.quota_backend_bytes = 256 * 1024).await;
    let mut kv = server.kv().await;
    let big = "q".repeat(100 * 1024);
    let mut refused = None;
    for i in 0..20 {
        if let Err(e) = kv.put(put(&format!("q{i}"), &big)).await {
            refused = Some(e);
            break;
        }
    }
    assert_no_space(refused.expect("the quota is reached"));
    let mut m = server.maintenance().await;
    let list = AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: AlarmType::None as i32,
    };
    let alarms = m.alarm(list).await.unwrap().into_inner().alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    assert_no_space(kv.put(put("small", "1")).await.unwrap_err());
    let del = DeleteRangeRequest {
        key: b"q".to_vec(),
        range_end: b"r".to_vec(),
        prev_kv: false,
    };
    assert!(kv.delete_range(del).await.unwrap().into_inner().deleted > 0);
    let status = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.errors.len(), 1);
    assert!(status.errors[0].contains("NOSPACE"), "{:?}", status.errors);
    // As with etcd: compact and defragment to get the space back, then disarm.
    let rev = status.header.unwrap().revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    m.defragment(DefragmentRequest {}).await.unwrap();
    let disarm = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: alarms[0].member_id,
        alarm: AlarmType::Nospace as i32,
    };
    assert_eq!(m.alarm(disarm).await.unwrap().into_inner().alarms.len(), 1);
    assert!(m.alarm(list).await.unwrap().into_inner().alarms.is_empty());
    kv.put(put("small", "1")).await.unwrap();
    server.stop().await;
}
