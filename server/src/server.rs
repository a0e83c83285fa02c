//! Starting and stopping the server: the data directory, the store, the listeners, the services
//! and the background work, and a shutdown that loses nothing acknowledged.
//!
//! Startup, one step each (see [`start`]); a server that cannot start leaves nothing on disk it
//! did not find there, so each step that can fail on the flags or the network comes before the
//! data directory and the store are made:
//! 1. check the flags (listen URLs, auto compaction, TLS files, the cluster);
//! 2. bind every client listener (a port in use fails here);
//! 3. open, or make, the data directory and the store (or start the replicated member);
//! 4. serve on the listeners and start the background work.
//!
//! Shutdown, one step each (see [`Running::stop`]):
//! 1. stop accepting connections and let requests in flight finish (bounded by
//!    [`DRAIN_TIMEOUT`], after which open streams are cut);
//! 2. stop the automatic compaction and defrag, waiting for one that is running;
//! 3. sync the database. Every write a client saw acknowledged was synced before its answer
//!    (group commit), so this is belt and braces, not a requirement.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use folio::{Db, Durability, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::auto::{self, AutoDefrag};
use crate::cluster::ClusterService;
use crate::config::{Config, GRPC_OVERHEAD_BYTES};
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::maintenance::{MaintenanceService, SNAPSHOT_PREFIX};
use crate::member::{MEMBER_DIR, Member, STORE_FILE};
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::state::{Settings, Shared};
use crate::watch::WatchService;

/// How long a shutdown waits for requests and streams in flight before it cuts them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the database file in the data directory.
pub const DB_FILE: &str = "kv.folio";

/// A running server.
pub struct Running {
    addrs: Vec<SocketAddr>,
    shared: Shared,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// A listen URL's scheme and address: `http://host:port` or `https://host:port`.
fn parse_url(url: &str) -> Result<(bool, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "listen URL {url:?} must start with http:// or https://"
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !host.contains(':') {
        return Err(format!("listen URL {url:?} must name a host and a port"));
    }
    Ok((tls, host.to_string()))
}

/// Creates the data directory 0700 (or warns when an existing one is open to others); refuses a
/// path that is there but not a directory.
fn data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(format!(
            "the data directory {} is not a directory",
            dir.display()
        )),
        Ok(m) => {
            let mode = m.permissions().mode();
            if mode & 0o077 != 0 {
                crate::warn!(
                    "data directory {} has permissions {:o}; 700 keeps other users out of it",
                    dir.display(),
                    mode & 0o777
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display())),
        Err(e) => Err(format!("cannot read {}: {e}", dir.display())),
    }
}

/// Removes snapshot files a crashed server left in the data directory.
fn remove_stale_snapshots(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What the flags ask for, checked before anything is bound or made on disk.
struct Checked {
    compaction: crate::config::AutoCompaction,
    tls: Option<tonic::transport::ServerTlsConfig>,
    cluster: Option<crate::config::ClusterPlan>,
    /// Each client URL with whether it is https, and its `host:port`.
    urls: Vec<(String, bool, String)>,
}

/// Step 1: checks the flags.
fn check(config: &Config) -> Result<Checked, String> {
    let compaction = config.auto_compaction()?;
    let tls = crate::tls::server_config(config)?;
    let cluster = config.cluster()?;
    let mut urls = Vec::new();
    for url in &config.listen_client_urls {
        let (secure, host) = parse_url(url)?;
        if secure && tls.is_none() {
            return Err(format!(
                "{url} is https but no --cert-file and --key-file were given"
            ));
        }
        urls.push((url.clone(), secure, host));
    }
    Ok(Checked {
        compaction,
        tls,
        cluster,
        urls,
    })
}

/// A client listener, bound: its URL, whether it is https, and the socket.
type Bound = (String, bool, TcpListener);

/// Step 2: binds every client URL.
async fn bind(urls: &[(String, bool, String)]) -> Result<Vec<Bound>, String> {
    let mut bound = Vec::new();
    for (url, secure, host) in urls {
        let listener = TcpListener::bind(host)
            .await
            .map_err(|e| format!("cannot listen on {url}: {e}"))?;
        bound.push((url.clone(), *secure, listener));
    }
    Ok(bound)
}

/// Step 3: opens the data directory: the single store, or the replicated member of `cluster`.
/// Returns the shared state and the database file.
async fn open(
    config: &Config,
    cluster: Option<&crate::config::ClusterPlan>,
) -> Result<(Shared, PathBuf), String> {
    let dir = config.data_dir();
    data_dir(&dir)?;
    remove_stale_snapshots(&dir);
    let settings = Settings {
        name: config.name.clone(),
        data_dir: dir.clone(),
        client_urls: config.advertise_client_urls.clone(),
        max_request_bytes: config.max_request_bytes,
        max_txn_ops: config.max_txn_ops,
        quota_bytes: config.quota_bytes(),
    };
    match cluster {
        Some(plan) => {
            let member = Member::start(
                plan,
                &dir,
                &config.name,
                config.advertise_client_urls.clone(),
                config.lease_clock.0.clone(),
            )
            .await?;
            let db_path = dir.join(MEMBER_DIR).join(STORE_FILE);
            Ok((
                Shared::replicated(member, db_path.clone(), settings),
                db_path,
            ))
        }
        None => single(&dir, settings).await,
    }
}

/// Opens (or creates) a single member's store in `dir`.
async fn single(dir: &Path, settings: Settings) -> Result<(Shared, PathBuf), String> {
    let db_path: PathBuf = dir.join(DB_FILE);
    let store = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || {
            let builder = Db::builder().durability(Durability::Group).file_mode(0o600);
            Store::open_with(&path, &builder)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the store at {}: {e}", db_path.display()))?
    };
    Ok((Shared::new(store, db_path.clone(), settings), db_path))
}

/// Starts a server as `config` says (the steps in the module docs): checks the flags, binds
/// every client URL, opens (or creates) the store in the data directory (or, with
/// `--initial-cluster`, starts a replicated member: [`crate::member`]), serves, and starts the
/// automatic compaction and defrag.
pub async fn start(config: Config) -> Result<Running, String> {
    // 1. Flags.
    let Checked {
        compaction,
        tls,
        cluster,
        urls,
    } = check(&config)?;
    // 2. Listeners.
    let listeners = bind(&urls).await?;
    // 3. The data directory and the store.
    let (shared, db_path) = open(&config, cluster.as_ref()).await?;
    // 4. Serving and the background work.
    let (stop, stopped) = watch::channel(false);
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    let decode_max = config.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
    for (url, secure, listener) in listeners {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut builder = Server::builder()
            // etcd's ResourceExhausted for a request past the gRPC limit, not tonic's OutOfRange.
            .layer(tower::util::MapResponseLayer::new(
                crate::errors::as_grpc_go_size_refusal,
            ))
            // Authenticate as etcd answers it without auth, and every RPC not served named.
            .layer(crate::unserved::UnservedLayer)
            .tcp_nodelay(true)
            // etcd's defaults: a ping after 2 h idle, 20 s to answer it.
            .http2_keepalive_interval(Some(Duration::from_secs(7200)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        if let Some(tls) = tls.clone().filter(|_| secure) {
            builder = builder.tls_config(tls).map_err(|e| e.to_string())?;
        }
        let router = builder
            .add_service(
                KvServer::new(KvService::new(shared.clone())).max_decoding_message_size(decode_max),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(shared.clone()))
                    .max_decoding_message_size(decode_max),
            )
            .add_service(
                ClusterServer::new(ClusterService::new(shared.clone()))
                    .max_decoding_message_size(decode_max),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(shared.clone()))
                    .max_decoding_message_size(decode_max),
            )
            .add_service(
                WatchServer::new(WatchService::new(shared.clone()))
                    .max_decoding_message_size(decode_max),
            );
        let mut until = stopped.clone();
        let serve = router.serve_with_incoming_shutdown(accepted_nodelay(listener), async move {
            let _ = until.wait_for(|s| *s).await;
        });
        let at = url.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                crate::error!("serving {at} failed: {e}");
            }
        }));
        crate::info!("serving client requests on {url} ({addr})");
        addrs.push(addr);
    }
    let mut background = vec![
        tokio::spawn(crate::lease::expirer(shared.clone(), stopped.clone())),
        tokio::spawn(auto::compactor(
            shared.clone(),
            compaction,
            Duration::from_secs(config.revision_compaction_check_secs.max(1)),
            stopped.clone(),
        )),
        tokio::spawn(auto::defragger(
            shared.clone(),
            AutoDefrag {
                threshold: config.auto_defrag_threshold,
                min_bytes: config.auto_defrag_min_bytes,
                every: Duration::from_secs(config.auto_defrag_check_secs.max(1)),
            },
            stopped.clone(),
        )),
    ];
    if let Some(m) = shared.member() {
        background.push(tokio::spawn(m.clone().publish(stopped)));
    }
    crate::info!(
        "folio-server {} started: member {:x} ({}), data {} at revision {} (compacted {}), quota {} bytes, max request {} bytes, max txn ops {}, auto compaction {:?}, auto defrag at {:.0}% reclaimable",
        env!("CARGO_PKG_VERSION"),
        shared.member_id(),
        shared.name(),
        db_path.display(),
        shared.store().current_revision(),
        shared.store().compacted_revision(),
        shared.quota_bytes(),
        config.max_request_bytes,
        config.max_txn_ops,
        compaction,
        config.auto_defrag_threshold * 100.0
    );
    Ok(Running {
        addrs,
        shared,
        stop,
        servers,
        background,
    })
}

impl Running {
    /// The addresses the server listens on, one per listen URL (the port chosen when it was 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The state the services share (the store among it).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Stops the server as a crash would, as far as a process can do it to a part of itself: a
    /// replicated member's Raft stops first (requests waiting on it fail), the background work is
    /// dropped, and connections get a second to close before they are cut. Everything
    /// acknowledged was synced; the data directory opens again as it was.
    pub async fn kill(self) {
        if let Some(m) = self.shared.member() {
            m.shutdown().await;
        }
        let _ = self.stop.send(true);
        for b in &self.background {
            b.abort();
        }
        for mut s in self.servers {
            if tokio::time::timeout(Duration::from_secs(1), &mut s)
                .await
                .is_err()
            {
                s.abort();
            }
        }
        for b in self.background {
            let _ = b.await;
        }
        crate::info!("killed");
    }

    /// Stops the server (see the module docs for the steps).
    pub async fn stop(self) {
        crate::info!("shutting down: no new connections; finishing requests in flight");
        let _ = self.stop.send(true);
        // 1. Drain.
        for mut s in self.servers {
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut s).await.is_err() {
                crate::warn!("requests still open after {DRAIN_TIMEOUT:?}; closing them");
                s.abort();
            }
        }
        // 2. Background work.
        for b in self.background {
            let _ = b.await;
        }
        if let Some(m) = self.shared.member() {
            m.shutdown().await;
        }
        // 3. Sync.
        let shared = self.shared.clone();
        let synced = tokio::task::spawn_blocking(move || shared.store().db().sync()).await;
        match synced {
            Ok(Ok(())) => crate::info!(
                "stopped at revision {}",
                self.shared.store().current_revision()
            ),
            Ok(Err(e)) => crate::error!("the final sync failed: {e}"),
            Err(e) => crate::error!("the final sync failed: {e}"),
        }
    }
}

/// The connections `listener` accepts, each with Nagle's algorithm off. tonic's `tcp_nodelay`
/// reaches only the sockets it accepts itself (`serve`), not those of an incoming stream: without
/// this, a small response (a one-key get) written in several segments waited for the client's
/// delayed ACK, ~40 ms a request (found by `examples/beside_etcd.rs`).
fn accepted_nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                crate::warn!("cannot turn Nagle's algorithm off on a connection: {e}");
            }
        })
    })
}
