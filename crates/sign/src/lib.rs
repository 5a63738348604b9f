//! Signing in cosign's formats, with no I/O: key files that `cosign` reads and writes
//! (ECDSA P-256; the private key PKCS#8, encrypted with scrypt and NaCl secretbox under the
//! `ENCRYPTED SIGSTORE PRIVATE KEY` PEM label, or cosign's older `ENCRYPTED COSIGN PRIVATE
//! KEY`), the simple-signing payload that names a manifest digest, and ECDSA signatures over
//! it (ASN.1 DER, base64, as cosign stores them in the `dev.cosignproject.cosign/signature`
//! annotation). Registry workflows (where signatures live, how they are found) are the
//! client's; the formats are here so the server can verify with the same code.

pub mod bundle;
pub mod dsse;
mod error;
pub mod keys;
pub mod payload;
pub mod policy;

pub use error::Error;
pub use keys::{PrivateKey, PublicKey};
pub use payload::SimpleSigning;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The layer media type of a cosign signature (one layer per signature).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature of the layer's payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type cosign gives a signature stored as an OCI 1.1 referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// The tag cosign keeps the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &wharf_oci::Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// The tag of attestations: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &wharf_oci::Digest) -> String {
    format!("{}-{}.att", digest.algorithm().as_str(), digest.hex())
}
