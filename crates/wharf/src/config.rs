//! `wharf serve` configuration: built-in defaults, overridden by the TOML file, then by
//! `WHARF_*` environment variables, then by flags (clap reads flag and variable together).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wharf_store::{BlobLocation, StoreConfig};

use crate::rules_config::{FileImmutableRule, FileRetentionRule};

/// Where the registry keeps its data; shared by every command that opens the store.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where blobs (and SQLite metadata) are kept [default: ./wharf-data]
    #[arg(long, env = "WHARF_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep metadata in PostgreSQL instead of SQLite, e.g. postgres://wharf@db/wharf
    #[arg(
        long,
        env = "WHARF_METADATA_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub metadata_url: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "WHARF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep blobs in this S3 bucket instead of the data directory
    #[arg(long, env = "WHARF_S3_BUCKET", value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint for S3-compatible stores (path-style addressing), e.g. http://garage:3900
    #[arg(long, env = "WHARF_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1]
    #[arg(long, env = "WHARF_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
}

impl StoreArgs {
    pub fn file_config(&self) -> Result<FileConfig, String> {
        match &self.config {
            Some(p) => FileConfig::load(p),
            None => Ok(FileConfig::default()),
        }
    }

    /// The data directory: flag or `WHARF_DATA_DIR`, else the file's, else the default.
    pub fn data_dir(&self, file: &FileConfig) -> PathBuf {
        self.data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
    }

    /// Where the registry's metadata and blobs are, from flags, environment and file: the
    /// one place every command that opens the store settles it.
    pub fn store_config(&self, file: &FileConfig) -> Result<StoreConfig, String> {
        let data_dir = self.data_dir(file);
        let url = self.metadata_url.clone().or(file.metadata_url.clone());
        let mut config = StoreConfig::new(&data_dir, url.as_deref()).map_err(|e| e.to_string())?;
        config.blobs = self.blob_location(file, &data_dir)?;
        if let Some(max) = file.limits.max_manifest_size {
            config.limits.max_manifest_size = max;
        }
        config.limits.kind_rules = file
            .artifact_kinds
            .iter()
            .map(FileKindRule::rule)
            .collect::<Result<_, _>>()?;
        config.limits.immutable_tags = file
            .immutable_tags
            .iter()
            .map(FileImmutableRule::rule)
            .collect::<Result<_, _>>()?;
        config.limits.retention = file
            .retention
            .iter()
            .map(FileRetentionRule::rule)
            .collect::<Result<_, _>>()?;
        config.limits.quotas = crate::rules_config::quotas(&file.quotas)?;
        Ok(config)
    }

    /// Where blobs live: S3 when a bucket is named (flag, env or file), else `data_dir`.
    /// S3 credentials come from the file or the usual AWS_* variables.
    fn blob_location(&self, file: &FileConfig, data_dir: &Path) -> Result<BlobLocation, String> {
        let f = file.s3.clone().unwrap_or_default();
        match self.s3_bucket.clone().or(f.bucket) {
            #[cfg(feature = "s3")]
            Some(bucket) => Ok(BlobLocation::S3(wharf_store::S3Config {
                bucket,
                endpoint: self.s3_endpoint.clone().or(f.endpoint),
                region: self.s3_region.clone().or(f.region),
                access_key_id: f.access_key_id,
                secret_access_key: f.secret_access_key,
                presigned_redirect: f
                    .presigned_redirect_secs
                    .map(std::time::Duration::from_secs),
            })),
            #[cfg(not(feature = "s3"))]
            Some(_) => Err("this Wharf was built without S3 support (the `s3` feature)".into()),
            None => Ok(BlobLocation::Filesystem(data_dir.to_path_buf())),
        }
    }
}

/// The `[s3]` table of the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub struct FileS3 {
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Redirect blob GETs to presigned URLs valid this many seconds.
    pub presigned_redirect_secs: Option<u64>,
}

/// The configuration file. Every key is optional; unknown keys are an error, so a typo does
/// not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub metadata_url: Option<String>,
    pub allow_anonymous: Option<bool>,
    /// Serve pulls only (maintenance mode).
    pub read_only: Option<bool>,
    /// A signature policy enforced on pulls.
    pub pull_policy: Option<PathBuf>,
    pub log: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// One log line per request.
    pub access_log: Option<bool>,
    #[serde(default)]
    pub limits: FileLimits,
    pub s3: Option<FileS3>,
    /// Access control; without it the registry is open (and refuses non-loopback addresses
    /// unless `allow_anonymous`).
    pub auth: Option<crate::auth_config::FileAuth>,
    /// HTTPS (and client certificates) served by Wharf itself.
    pub tls: Option<crate::tls::FileTls>,
    /// Per repository pattern, the artifact kinds a push may store.
    #[serde(default)]
    pub artifact_kinds: Vec<FileKindRule>,
    /// Per repository pattern, the tags that never move and are never deleted.
    #[serde(default)]
    pub immutable_tags: Vec<FileImmutableRule>,
    /// Per repository pattern, what garbage collection keeps.
    #[serde(default)]
    pub retention: Vec<FileRetentionRule>,
    /// Per namespace, the bytes it may hold.
    #[serde(default)]
    pub quotas: Vec<crate::rules_config::FileQuota>,
    /// Endpoints registry events are POSTed to.
    #[serde(default)]
    pub webhooks: Vec<crate::webhook_config::FileWebhook>,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: FileMetrics,
    /// Periodic scrub of stored blobs.
    #[serde(default)]
    pub scrub: FileScrub,
    /// Online garbage collection.
    #[serde(default)]
    pub gc: FileGc,
}

/// `[gc]`: garbage collection passes inside `wharf serve` (see `wharf gc`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGc {
    /// Seconds between passes; absent or 0: no scheduled pass.
    pub interval_secs: Option<u64>,
    /// What was pushed or linked less than this many seconds ago is kept [default: 3600].
    pub grace_secs: Option<u64>,
}

/// `[scrub]`: re-hash every stored blob on a schedule (see `wharf scrub`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScrub {
    /// Seconds between passes; absent or 0: no scheduled scrub.
    pub interval_secs: Option<u64>,
    /// Move damaged blobs aside so that the next push repairs them [default: true].
    pub quarantine: Option<bool>,
}

/// `[metrics]`: what `/metrics` serves and to whom.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    /// Record and serve metrics [default: true].
    pub enabled: Option<bool>,
    /// Serve `/metrics` on this address (without authentication) instead of the API port.
    pub listen: Option<SocketAddr>,
    /// With access control on, who besides the admins may read `/metrics` on the API port.
    #[serde(default)]
    pub users: Vec<String>,
    /// Anyone may read `/metrics` on the API port.
    pub public: Option<bool>,
    /// Repositories named in labels; the rest are summed as `_other` [default: 1000].
    pub max_repositories: Option<usize>,
    /// The storage gauges are read from the database at most this often [default: 30].
    pub usage_refresh_secs: Option<u64>,
    /// The storage the registry may use, reported as `registry_storage_limit_bytes`.
    pub storage_limit_bytes: Option<u64>,
}

/// `[[artifact_kinds]]`: the repositories matching any of `repositories` accept only the
/// kinds in `accept` (the first rule that matches a repository decides).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKindRule {
    pub repositories: Vec<String>,
    pub accept: Vec<String>,
}

impl FileKindRule {
    fn rule(&self) -> Result<wharf_store::KindRule, String> {
        let bad = |why: String| format!("[[artifact_kinds]]: {why}");
        if self.repositories.is_empty() || self.accept.is_empty() {
            return Err(bad("each rule needs repositories and accept".into()));
        }
        Ok(wharf_store::KindRule {
            repositories: self
                .repositories
                .iter()
                .map(|p| wharf_oci::Pattern::new(p).map_err(|e| bad(format!("{p:?}: {e}"))))
                .collect::<Result<_, _>>()?,
            accept: self
                .accept
                .iter()
                .map(|k| k.parse().map_err(bad))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_manifest_size: Option<usize>,
    pub max_page_size: Option<usize>,
    pub chunk_min_length: Option<u64>,
    pub body_idle_timeout_secs: Option<u64>,
    pub drain_max_bytes: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    pub upload_expiry_secs: Option<u64>,
    pub upload_expiry_check_secs: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // One line, not toml's multi-line snippet: where, then what.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            format!("config file {}:{at} {msg}", path.display())
        })
    }
}

/// The settled configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub allow_anonymous: bool,
    pub read_only: bool,
    pub pull_policy: Option<std::sync::Arc<wharf_sign::policy::Policy>>,
    pub log: String,
    pub log_json: bool,
    pub max_page_size: usize,
    pub chunk_min_length: u64,
    pub body_idle_timeout_secs: u64,
    pub drain_max_bytes: u64,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_timeout_secs: u64,
    pub upload_expiry_secs: u64,
    pub upload_expiry_check_secs: u64,
    pub auth: Option<crate::auth_config::FileAuth>,
    pub tls: Option<crate::tls::TlsSettings>,
    pub metrics: FileMetrics,
    pub scrub: FileScrub,
    pub gc: FileGc,
    pub webhooks: Vec<wharf_server::webhooks::Endpoint>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_DATA_DIR: &str = "./wharf-data";
