//! The server's flags, named and defaulted as etcd's where they mean the same.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// etcd's default space quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 1536 * 1024;
/// What etcd lets gRPC receive beyond `--max-request-bytes` (its `grpcOverheadBytes`), so that a
/// request slightly over the limit gets etcd's own "request is too large" error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS_DEFAULT: usize = 128;

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

    /// Defragment online by itself when the reclaimable share of the file reaches this fraction
    /// (0 disables). Beyond etcd: safe because folio's defrag does not stop the world.
    #[arg(long, default_value_t = 0.5)]
    pub auto_defrag_threshold: f64,

    /// Never defragment by itself a file smaller than this, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub auto_defrag_min_bytes: u64,

    /// How often the reclaimable share is checked for the automatic defrag, in seconds.
    #[arg(long, default_value_t = 60)]
    pub auto_defrag_check_secs: u64,

    /// How often the `revision` auto compaction mode checks (etcd: 5 minutes), in seconds.
    #[arg(long, default_value_t = 300, hide = true)]
    pub revision_compaction_check_secs: u64,
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
