//! Sigstore bundles in a registry, as `cosign sign|attest --new-bundle-format` stores them:
//! one OCI 1.1 referrer per bundle, artifact type and single layer
//! `application/vnd.dev.sigstore.bundle.v0.3+json`, the empty config, and annotations naming
//! the content (`dev.sigstore.bundle.content`) and the statement's predicate type
//! (`dev.sigstore.bundle.predicateType`), which tells signatures from attestations without
//! reading the bundle.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use wharf_oci::media_type::{OCI_EMPTY, OCI_MANIFEST};
use wharf_oci::{Descriptor, Digest, Manifest};
use wharf_sign::bundle::{
    BUNDLE_MEDIA_TYPE, CONTENT_ANNOTATION, PREDICATE_TYPE_ANNOTATION, SIGN_PREDICATE_TYPE,
};

use crate::blobs::{BytesSource, NoProgress, SharedProgress};
use crate::manifests::descriptor;
use crate::signatures::{Signed, Storage};
use crate::{Client, Reference, Result};

/// Which bundles a search wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundleKind {
    Signatures,
    Attestations,
    Any,
}

impl Client {
    /// Stores `bundle` (JSON bytes, whose statement is of `predicate_type`) as a referrer of
    /// the manifest `desc`, in the manifest cosign writes.
    pub(crate) async fn store_bundle(
        &self,
        r: &Reference,
        desc: &Descriptor,
        bundle: Bytes,
        predicate_type: &str,
    ) -> Result<Signed> {
        let repo = Reference {
            tag: None,
            digest: None,
            ..r.clone()
        };
        let quiet: SharedProgress = Arc::new(NoProgress);
        let layer = descriptor(
            BUNDLE_MEDIA_TYPE.into(),
            Digest::sha256_of(&bundle),
            bundle.len() as u64,
        );
        self.push_blob(&repo, &layer, &BytesSource(bundle), &quiet)
            .await?;
        let empty = Bytes::from_static(b"{}");
        let config = descriptor(OCI_EMPTY.into(), Digest::sha256_of(&empty), 2);
        self.push_blob(&repo, &config, &BytesSource(empty), &quiet)
            .await?;
        // cosign also puts the artifact type on the config descriptor; so does this, so that
        // the two tools' manifests differ only in their timestamps.
        let mut config = serde_json::to_value(&config).expect("JSON serialises");
        config["artifactType"] = BUNDLE_MEDIA_TYPE.into();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
            "annotations": {
                CONTENT_ANNOTATION: "dsse-envelope",
                PREDICATE_TYPE_ANNOTATION: predicate_type,
                "org.opencontainers.image.created": crate::artifact::now_rfc3339(),
            },
            "subject": descriptor(desc.media_type.clone(), desc.digest.clone(), desc.size),
            "artifactType": BUNDLE_MEDIA_TYPE,
        });
        let bytes = Bytes::from(serde_json::to_vec(&m).expect("JSON serialises"));
        let d = Digest::sha256_of(&bytes);
        let put = self
            .put_referrer(&repo.with_digest(d), OCI_MANIFEST, bytes)
            .await?;
        Ok(Signed {
            signed: r.with_digest(desc.digest.clone()).to_string(),
            digest: desc.digest.clone(),
            signature: repo.with_digest(put).to_string(),
            storage: Storage::Bundle,
        })
    }

    /// The bundle layers among `referrers`, those of the manifest `at` (which carries its
    /// digest), each with the referrer it was found in. A referrer that does not say its
    /// predicate type is returned for both kinds; its statement decides.
    pub(crate) async fn find_bundles(
        &self,
        at: &Reference,
        kind: BundleKind,
        referrers: &[Descriptor],
    ) -> Result<Vec<(String, Descriptor)>> {
        let mut found = Vec::new();
        // Where the registry has no referrers API, the fallback index that cosign writes
        // lists a bundle under its config's type (the empty one): those are read to see.
        let listed = referrers.iter().filter(|r| {
            matches!(
                r.artifact_type.as_deref(),
                None | Some(BUNDLE_MEDIA_TYPE) | Some(OCI_EMPTY)
            )
        });
        for referrer in listed {
            if !wanted(kind, referrer.annotations.as_ref()) {
                continue;
            }
            let rr = at.with_digest(referrer.digest.clone());
            let (d, bytes) = self.manifest(&rr).await?;
            let m = Manifest::parse(Some(&d.media_type), &bytes)?;
            if m.artifact_type.as_deref() != Some(BUNDLE_MEDIA_TYPE) {
                continue;
            }
            if !wanted(kind, m.annotations.as_ref()) {
                continue;
            }
            for l in m.layers {
                if l.media_type == BUNDLE_MEDIA_TYPE {
                    found.push((rr.to_string(), l));
                }
            }
        }
        Ok(found)
    }
}

/// Whether a bundle is of the kind asked for, by the predicate type its manifest's (or index
/// entry's) annotations name; one that names none might be either.
fn wanted(kind: BundleKind, annotations: Option<&BTreeMap<String, String>>) -> bool {
    let predicate = annotations.and_then(|a| a.get(PREDICATE_TYPE_ANNOTATION));
    match (kind, predicate) {
        (BundleKind::Any, _) | (_, None) => true,
        (BundleKind::Signatures, Some(p)) => p == SIGN_PREDICATE_TYPE,
        (BundleKind::Attestations, Some(p)) => p != SIGN_PREDICATE_TYPE,
    }
}
