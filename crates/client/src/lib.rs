//! A client for OCI distribution registries (any registry, not only Wharf): references with
//! Docker Hub normalisation, Docker's credential store, basic and bearer-token auth, streamed
//! blob transfers that resume, manifests, tags, referrers (with the tag-schema fallback),
//! artifact push and pull, and copies between registries. The `wharf` CLI is a thin layer
//! over this crate.
//!
//! ```no_run
//! # async fn demo() -> wharf_client::Result<()> {
//! use wharf_client::{Client, ClientOptions, Reference};
//! let client = Client::new(ClientOptions::default())?;
//! let r: Reference = "localhost:5000/team/app:v1".parse()?;
//! let (descriptor, manifest_bytes) = client.manifest(&r).await?;
//! println!("{} is {} bytes", descriptor.digest, manifest_bytes.len());
//! # Ok(()) }
//! ```

pub mod artifact;
pub mod attestations;
pub mod auth;
pub mod blobs;
pub mod chart;
mod client;
pub mod copy;
pub mod credentials;
mod error;
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
