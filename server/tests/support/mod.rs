//! A server on a loopback port in this process, and clients for it.
#![allow(dead_code)]

use folio_server::pb::etcdserverpb::cluster_client::ClusterClient;
use folio_server::pb::etcdserverpb::kv_client::KvClient;
use folio_server::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use folio_server::pb::etcdserverpb::{PutRequest, RangeRequest};
use folio_server::{Config, Running};
use tonic::transport::Channel;

/// A running server with its own data directory.
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub url: String,
}

/// Starts a server with the default flags.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// Starts a server after `tweak` has changed its flags.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_test(dir.path().join("data"), "http://127.0.0.1:0");
    tweak(&mut config);
    let running = folio_server::start(config).await.unwrap();
    let url = format!("http://{}", running.addrs()[0]);
    TestServer {
        running: Some(running),
        dir,
        url,
    }
}

impl TestServer {
    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A KV client.
    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await)
    }

    /// A Maintenance client.
    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel().await)
    }

    /// A Cluster client.
    pub async fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel().await)
    }

    /// The data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// A put request of `key` = `value`.
pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

/// A range request of one key.
pub fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    }
}

/// A range request of every key under `prefix`.
pub fn prefix(prefix: &str) -> RangeRequest {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: prefix.into(),
        range_end: end,
        ..RangeRequest::default()
    }
}

/// The keys of a range response, as strings.
pub fn keys(r: &folio_server::pb::etcdserverpb::RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Asserts `status` is etcd's error: this code and exactly this message.
#[track_caller]
pub fn assert_etcd_error(status: tonic::Status, code: tonic::Code, message: &str) {
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "{status:?}"
    );
}
