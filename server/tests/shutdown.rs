//! A clean shutdown loses nothing acknowledged: every put a client saw succeed is in the store
//! when it is opened again, whether the server stops in-process or the binary gets SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{get, put};

/// Puts in flight while the server stops: each one acknowledged is in the reopened store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_under_load_keeps_every_acknowledged_put() {
    let mut server = support::start().await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut kv = server.kv().await;
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let key = format!("w{w}/{i:06}");
                match kv.put(put(&key, "v")).await {
                    Ok(_) => acked.push(key),
                    Err(_) => break,
                }
                if i > 5000 {
                    break;
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.stop().await;
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(!acked.is_empty());
    // Connections the shutdown cut may still be letting go of the store's handle.
    let builder = folio::Db::builder().lock_timeout(std::time::Duration::from_secs(10));
    let store = folio::Store::open_with(
        server.data_dir().join(folio_server::server::DB_FILE),
        &builder,
    )
    .unwrap();
    for key in &acked {
        let r = store
            .range(key.as_bytes(), folio::RangeOptions::current())
            .unwrap();
        assert_eq!(r.kvs.len(), 1, "acknowledged {key} is missing");
    }
    assert!(store.db().check().unwrap().is_clean());
}

/// The binary stops on SIGTERM with exit status 0, logs its shutdown, and its data is whole.
#[tokio::test]
async fn the_binary_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio-server"))
        .arg(format!("--data-dir={}", data.display()))
        .arg("--listen-client-urls=http://127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs where it listens")
            .unwrap();
        if let Some(at) = line.find("serving client requests on") {
            let open = line[at..].find('(').unwrap() + at;
            let close = line[open..].find(')').unwrap() + open;
            break line[open + 1..close].to_string();
        }
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = folio_server::pb::etcdserverpb::kv_client::KvClient::new(channel);
    kv.put(put("before-term", "1")).await.unwrap();
    assert_eq!(
        kv.range(get("before-term"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .len(),
        1
    );
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("stopped at revision 2")),
        "{rest:?}"
    );
    let store = folio::Store::open(data.join(folio_server::server::DB_FILE)).unwrap();
    assert_eq!(
        store
            .range(&b"before-term"[..], folio::RangeOptions::current())
            .unwrap()
            .kvs
            .len(),
        1
    );
}
