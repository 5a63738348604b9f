//! A client for OCI distribution registries (any registry, not only Wharf): references with
//! Docker Hub normalisation, Docker's credential store, basic and bearer-token auth, streamed
//! blob transfers that resume, manifests, tags, referrers (with the tag-schema fallback),
//! artifact push and pull, and copies between registries. The `wharf` CLI is a thin layer
//! over this crate.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let registry = wharf_server::LocalRegistry::start(&dir.path().join("registry")).await?;
//! # let host = registry.host(); // a registry of the example's own; any `host[:port]` does
//! # std::fs::write(dir.path().join("app.yaml"), "replicas: 3\n")?;
//! # let app_yaml = dir.path().join("app.yaml");
//! use std::sync::Arc;
//! use wharf_client::artifact::{PushFile, PushRequest};
//! use wharf_client::{Client, ClientOptions, NoProgress, Reference, SharedProgress};
//!
//! let client = Client::new(ClientOptions::default())?;
//! let quiet: SharedProgress = Arc::new(NoProgress);
//! let r: Reference = format!("{host}/team/app:v1").parse()?;
//! let file = PushFile { path: app_yaml, media_type: None, annotations: Default::default() };
//! let req = PushRequest { files: vec![file], ..PushRequest::default() };
//! let pushed = client.push_artifact(&r, &["v1".into()], req, &quiet).await?;
//!
//! let (descriptor, manifest_bytes) = client.manifest(&r).await?;
//! assert_eq!(descriptor.digest, pushed.digest);
//! println!("{} is {} bytes", descriptor.digest, manifest_bytes.len());
//! # Ok(()) }
//! ```

pub mod artifact;
pub mod attestations;
pub mod auth;
pub mod blobs;
mod bundles;
pub mod chart;
mod client;
pub mod copy;
pub mod credentials;
pub mod digest_cache;
mod error;
mod file_upload;
pub mod flux;
pub mod layout;
pub mod manifests;
pub mod pull;
pub mod reference;
pub mod referrers;
mod retry;
pub mod rootfs;
pub mod sbom;
pub mod search;
pub mod signatures;
mod walk;

pub use blobs::{
    BlobSource, BytesSource, FileSource, NoProgress, Progress, RegistrySource, SharedProgress,
    Transfer,
};
pub use client::{Client, ClientOptions, Transport};
pub use credentials::{Credential, DockerConfig};
pub use error::{Error, RegistryCode, Result};
pub use reference::Reference;
