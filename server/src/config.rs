//! The server's flags, named and defaulted as etcd's where they mean the same.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::state::fnv64;

/// etcd's default space quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 1536 * 1024;
/// What etcd lets gRPC receive beyond `--max-request-bytes` (its `grpcOverheadBytes`), so that a
/// request slightly over the limit gets etcd's own "request is too large" error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS_DEFAULT: usize = 128;
/// The default `--snapshot-count`: a snapshot every 2,000 committed entries.
pub const SNAPSHOT_COUNT_DEFAULT: u64 = 2000;
/// The default `--experimental-snapshot-catchup-entries`: 500 entries kept behind a snapshot.
pub const SNAPSHOT_CATCHUP_ENTRIES_DEFAULT: u64 = 500;

/// How the server runs: parsed from etcd-style flags by [`Config::parse`], or built by tests.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "folio-server",
    version,
    about = "An etcd v3-compatible gRPC server that keeps its data in a folio store"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Path to the data directory (created 0700; default `<name>.etcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic (http:// or https://).
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    pub listen_client_urls: Vec<String>,

    /// Comma-separated client URLs of this member, as MemberList reports them.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,

    /// Raise the NOSPACE alarm and refuse writes when the database file would pass this size
    /// (0 means etcd's default, 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// Interpret `--auto-compaction-retention` as `periodic` (a duration) or `revision` (a
    /// number of revisions to keep).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention: a duration for `periodic` (`1h`, `30m`, `10s`; a bare number
    /// is hours, as etcd), revisions for `revision`. 0 disables auto compaction.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,

    /// Maximum client request size in bytes the server accepts.
    #[arg(long, default_value_t = MAX_REQUEST_BYTES_DEFAULT)]
    pub max_request_bytes: usize,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = MAX_TXN_OPS_DEFAULT)]
    pub max_txn_ops: usize,

    /// Path to the client server TLS cert file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,

    /// Enable client cert authentication: a client without a certificate signed by the trusted
    /// CA is refused.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub client_cert_auth: bool,

    /// Defragment online by itself when the free share of the database's size (its pages up to
    /// the allocation frontier) reaches this fraction (0 disables). Beyond etcd: safe because
    /// folio's defrag does not stop the world.
    #[arg(long, default_value_t = 0.5)]
    pub auto_defrag_threshold: f64,

    /// Never defragment by itself a database smaller than this, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub auto_defrag_min_bytes: u64,

    /// How often the free share is checked for the automatic defrag, in seconds.
    #[arg(long, default_value_t = 60)]
    pub auto_defrag_check_secs: u64,

    /// How often the `revision` auto compaction mode checks (etcd: 5 minutes), in seconds.
    #[arg(long, default_value_t = 300, hide = true)]
    pub revision_compaction_check_secs: u64,

    /// The cluster's members, `name=http://host:port,...` (their peer URLs). Empty (the
    /// default) runs a single member without Raft; given, the server runs as a member of a
    /// replicated cluster (see [`crate::member`]), and `--name` must be one of them.
    #[arg(long, default_value = "")]
    pub initial_cluster: String,

    /// `new` to make a new cluster of `--initial-cluster`, `existing` to join one that runs.
    /// A member restarted on its data directory rejoins its cluster either way.
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,

    /// A token that tells clusters made from the same member list apart (the cluster id is
    /// derived from it and the list).
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// URLs to listen on for peer traffic (Raft). Default: this member's URL in
    /// `--initial-cluster`.
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub listen_peer_urls: Vec<String>,

    /// This member's peer URLs as its peers reach them (etcd's flag; the one in
    /// `--initial-cluster` is what the members use, and this must agree with it when given).
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,

    /// Committed Raft entries between snapshots, after which the log before the snapshot is
    /// purged (etcd's flag; its default is 100,000 entries, but a folio entry batches up to
    /// 512 writes, and a snapshot is a packed copy made beside the writers).
    #[arg(long, default_value_t = SNAPSHOT_COUNT_DEFAULT)]
    pub snapshot_count: u64,

    /// Entries kept in the log behind a snapshot, so that a member a little behind catches up
    /// from the log rather than a snapshot (etcd's flag; its default is 5,000).
    #[arg(long, default_value_t = SNAPSHOT_CATCHUP_ENTRIES_DEFAULT)]
    pub experimental_snapshot_catchup_entries: u64,

    /// The clock lease expiry runs on (tests inject a [`folio::ManualClock`]).
    #[arg(skip)]
    pub lease_clock: LeaseClock,
}

/// The clock a server's leases expire by: the monotonic clock, or one a test moves.
#[derive(Clone)]
pub struct LeaseClock(pub std::sync::Arc<dyn folio::Clock>);

impl Default for LeaseClock {
    fn default() -> Self {
        LeaseClock(std::sync::Arc::new(folio::MonotonicClock::new()))
    }
}

impl std::fmt::Debug for LeaseClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseClock")
    }
}

/// One member of `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its id: [`member_id`] of its name.
    pub id: u64,
    /// Its peer URL, `http://host:port`.
    pub url: String,
    /// The `host:port` of that URL.
    pub addr: String,
}

/// The cluster the flags describe, for a replicated member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Every member, in `--initial-cluster` order.
    pub peers: Vec<Peer>,
    /// This member's id.
    pub id: u64,
    /// The address to listen on for peers.
    pub listen_peer_addr: String,
    /// Whether to make a new cluster (`new`) rather than join a running one (`existing`).
    pub new: bool,
    /// The cluster's id.
    pub cluster_id: u64,
    /// Committed entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot (`--experimental-snapshot-catchup-entries`).
    pub snapshot_catchup_entries: u64,
}

/// A cluster member's id: 64-bit FNV-1a of `folio-member`, a zero byte and its name. It
/// depends on the name alone, so it stays the same across restarts and on every member's
/// view (etcd hashes the peer URLs and the token; a name is what an operator keeps stable).
pub fn member_id(name: &str) -> u64 {
    fnv64(&[b"folio-member", name.as_bytes()])
}

/// The `host:port` of an `http://host:port` URL.
fn url_addr(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("peer URL {url:?} must start with http:// (peer TLS is not supported)")
    })?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || !host.contains(':') || host.contains('/') {
        return Err(format!("peer URL {url:?} must be http://host:port"));
    }
    Ok(host.to_string())
}

/// When the server compacts by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Never.
    Off,
    /// Keep the history of the last `retention`.
    Periodic {
        /// How much history to keep.
        retention: Duration,
    },
    /// Keep the last `keep` revisions.
    Revision {
        /// Revisions kept.
        keep: i64,
    },
}

impl Config {
    /// A configuration for `data_dir` listening on `url`, with every other flag at its default.
    pub fn for_test(data_dir: impl Into<PathBuf>, url: &str) -> Config {
        let mut c = Config::parse_from(["folio-server"]);
        c.data_dir = Some(data_dir.into());
        c.listen_client_urls = vec![url.to_string()];
        c.advertise_client_urls = vec![url.to_string()];
        c
    }

    /// The data directory: `--data-dir`, or `<name>.etcd` as etcd.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// The cluster `--initial-cluster` describes, or `None` for a single member without Raft.
    pub fn cluster(&self) -> Result<Option<ClusterPlan>, String> {
        let list = self.initial_cluster.trim();
        if list.is_empty() {
            return Ok(None);
        }
        let mut peers: Vec<Peer> = Vec::new();
        for item in list.split(',') {
            let (name, url) = item
                .split_once('=')
                .ok_or_else(|| format!("--initial-cluster entry {item:?} must be name=URL"))?;
            let (name, url) = (name.trim(), url.trim());
            if name.is_empty() {
                return Err(format!("--initial-cluster entry {item:?} has no name"));
            }
            if peers.iter().any(|p| p.name == name) {
                return Err(format!("--initial-cluster names {name:?} twice"));
            }
            peers.push(Peer {
                name: name.to_string(),
                id: member_id(name),
                url: url.to_string(),
                addr: url_addr(url)?,
            });
        }
        let me = peers
            .iter()
            .find(|p| p.name == self.name)
            .ok_or_else(|| {
                format!(
                    "--name {:?} is not a member of --initial-cluster {list:?}",
                    self.name
                )
            })?
            .clone();
        let advertised: Vec<&String> = self
            .initial_advertise_peer_urls
            .iter()
            .filter(|u| !u.is_empty())
            .collect();
        if !advertised.is_empty() && !advertised.contains(&&me.url) {
            return Err(format!(
                "--initial-advertise-peer-urls {advertised:?} does not include {:?}, this member's URL in --initial-cluster",
                me.url
            ));
        }
        let listen = match self.listen_peer_urls.iter().find(|u| !u.is_empty()) {
            Some(u) => url_addr(u)?,
            None => me.addr.clone(),
        };
        let new = match self.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => {
                return Err(format!(
                    "unknown --initial-cluster-state {other:?}: want new or existing"
                ));
            }
        };
        let mut sorted: Vec<String> = peers
            .iter()
            .map(|p| format!("{}={}", p.name, p.url))
            .collect();
        sorted.sort();
        let joined = sorted.join(",");
        let cluster_id = fnv64(&[
            b"folio-cluster",
            self.initial_cluster_token.as_bytes(),
            joined.as_bytes(),
        ]);
        if self.snapshot_count == 0 {
            return Err("--snapshot-count must be at least 1".to_string());
        }
        Ok(Some(ClusterPlan {
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            peers,
            id: me.id,
            listen_peer_addr: listen,
            new,
            cluster_id,
        }))
    }

    /// The space quota in bytes (`--quota-backend-bytes`, 0 meaning etcd's default).
    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            QUOTA_BACKEND_BYTES_DEFAULT
        } else {
            self.quota_backend_bytes
        }
    }

    /// The auto compaction the flags ask for, or why they are wrong.
    pub fn auto_compaction(&self) -> Result<AutoCompaction, String> {
        let r = self.auto_compaction_retention.trim();
        match self.auto_compaction_mode.as_str() {
            "periodic" => {
                let retention = parse_retention(r)?;
                Ok(if retention.is_zero() {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic { retention }
                })
            }
            "revision" => {
                let keep: i64 = r.parse().map_err(|_| {
                    format!("invalid auto-compaction-retention {r:?}: want a number of revisions")
                })?;
                Ok(if keep <= 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Revision { keep }
                })
            }
            other => Err(format!(
                "unknown auto-compaction-mode {other:?}: want periodic or revision"
            )),
        }
    }
}

/// A periodic retention: a bare number is hours (as etcd), otherwise a number with a unit
/// (`ms`, `s`, `m`, `h`), or several (`1h30m`).
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid auto-compaction-retention {s:?}: want hours or a duration like 1h30m");
    if let Ok(hours) = s.parse::<u64>() {
        return Ok(Duration::from_secs(hours * 3600));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retentions as etcd takes them: bare hours, units, and combinations.
    #[test]
    fn retentions_parse_as_etcd_reads_them() {
        assert_eq!(parse_retention("2").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_retention("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_retention("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_retention("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_retention("1d").is_err());
        assert!(parse_retention("h").is_err());
        assert!(parse_retention("").is_err());
    }

    /// The cluster flags as etcd reads them: members by name with their peer URLs, this
    /// member's own, ids from names (the same on every member), and mistakes named.
    #[test]
    fn cluster_flags_describe_the_members() {
        let list = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://127.0.0.1:2382";
        let c = Config::parse_from(["folio-server", "--name=b", "--initial-cluster", list]);
        let plan = c.cluster().unwrap().unwrap();
        assert_eq!(plan.peers.len(), 3);
        assert_eq!(plan.id, member_id("b"));
        assert_eq!(plan.listen_peer_addr, "127.0.0.1:2381");
        assert!(plan.new);
        let other = Config::parse_from([
            "folio-server",
            "--name=c",
            "--initial-cluster",
            list,
            "--initial-cluster-state=existing",
            "--listen-peer-urls=http://0.0.0.0:2382",
        ]);
        let other = other.cluster().unwrap().unwrap();
        assert_eq!(other.cluster_id, plan.cluster_id);
        assert_eq!(other.listen_peer_addr, "0.0.0.0:2382");
        assert!(!other.new);
        assert_ne!(member_id("a"), member_id("b"));
        assert_eq!(Config::parse_from(["folio-server"]).cluster(), Ok(None));
        let not_member =
            Config::parse_from(["folio-server", "--name=d", "--initial-cluster", list]);
        assert!(not_member.cluster().is_err());
        let bad_state = Config::parse_from([
            "folio-server",
            "--name=a",
            "--initial-cluster",
            list,
            "--initial-cluster-state=maybe",
        ]);
        assert!(bad_state.cluster().is_err());
    }

    /// etcd-style flags, `--flag=value` and `--flag value`, reach the config.
    #[test]
    fn etcd_style_flags_parse() {
        let c = Config::parse_from([
            "folio-server",
            "--name=n1",
            "--listen-client-urls",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--quota-backend-bytes=1024",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10",
            "--client-cert-auth",
        ]);
        assert_eq!(c.data_dir(), PathBuf::from("n1.etcd"));
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.quota_bytes(), 1024);
        assert_eq!(
            c.auto_compaction(),
            Ok(AutoCompaction::Revision { keep: 10 })
        );
        assert!(c.client_cert_auth);
        let c = Config::parse_from(["folio-server", "--client-cert-auth=false"]);
        assert!(!c.client_cert_auth);
        assert_eq!(c.quota_bytes(), QUOTA_BACKEND_BYTES_DEFAULT);
        assert_eq!(c.auto_compaction(), Ok(AutoCompaction::Off));
    }
}
