//! `wharf serve` configuration: built-in defaults, overridden by the TOML file, then by
//! `WHARF_*` environment variables, then by flags (clap reads flag and variable together).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the registry keeps its data; shared by every command that opens the store.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where blobs (and SQLite metadata) are kept [default: ./wharf-data]
    #[arg(long, env = "WHARF_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep metadata in PostgreSQL instead of SQLite, e.g. postgres://wharf@db/wharf
    #[arg(long, env = "WHARF_METADATA_URL", value_name = "URL")]
    pub metadata_url: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "WHARF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    pub fn file_config(&self) -> Result<FileConfig, String> {
        match &self.config {
            Some(p) => FileConfig::load(p),
            None => Ok(FileConfig::default()),
        }
    }
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
    pub log: Option<String>,
    #[serde(default)]
    pub limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_manifest_size: Option<usize>,
    pub max_page_size: Option<usize>,
    pub chunk_min_length: Option<u64>,
    pub body_idle_timeout_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }
}

/// The settled configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub metadata_url: Option<String>,
    pub allow_anonymous: bool,
    pub log: String,
    pub max_manifest_size: usize,
    pub max_page_size: usize,
    pub chunk_min_length: u64,
    pub body_idle_timeout_secs: u64,
    pub shutdown_timeout_secs: u64,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_DATA_DIR: &str = "./wharf-data";
