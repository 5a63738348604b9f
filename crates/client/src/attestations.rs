//! Cosign attestations in a registry: an in-toto statement about a manifest, in a DSSE
//! envelope, stored as a layer under the `sha256-<hex>.att` tag (appended, as cosign does) or
//! as an OCI 1.1 referrer, and found in both places for verification.

use std::collections::BTreeMap;

use bytes::Bytes;
use wharf_oci::{Descriptor, Digest};
use wharf_sign::bundle::BUNDLE_MEDIA_TYPE;
use wharf_sign::dsse::{self, Statement, DSSE_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION};
use wharf_sign::{attestation_tag, PrivateKey, PublicKey, SIGNATURE_ANNOTATION};

use crate::bundles::BundleKind;
use crate::signatures::{docker_reference, Placement, Signed, Storage};
use crate::{Client, Reference, Result};

/// One attestation found for a manifest, and whether it holds.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationCheck {
    pub source: String,
    pub predicate_type: Option<String>,
    pub valid: bool,
    pub reason: String,
    /// The statement, when its envelope opened.
    pub statement: Option<Statement>,
}

impl Client {
    /// Attests `predicate` of `predicate_type` (a URI) about the manifest `r` names.
    pub async fn attest(
        &self,
        r: &Reference,
        key: &PrivateKey,
        predicate_type: &str,
        predicate: serde_json::Value,
        storage: Storage,
    ) -> Result<Signed> {
        let desc = self.resolve(r).await?;
        let statement = Statement::new(
            &docker_reference(r),
            &desc.digest,
            predicate_type,
            predicate,
        );
        if storage == Storage::Bundle {
            let bundle = Bytes::from(wharf_sign::bundle::seal(key, &statement));
            return self.store_bundle(r, &desc, bundle, predicate_type).await;
        }
        let envelope = dsse::seal(key, &statement);
        // cosign leaves the signature annotation empty on attestations: the signature is in
        // the envelope.
        let annotations = BTreeMap::from([
            (SIGNATURE_ANNOTATION.to_string(), String::new()),
            (
                PREDICATE_TYPE_ANNOTATION.to_string(),
                predicate_type.to_string(),
            ),
        ]);
        let place = Placement {
            tag: attestation_tag(&desc.digest),
            artifact_type: DSSE_MEDIA_TYPE,
            storage,
        };
        self.store_layer(
            r,
            &desc,
            DSSE_MEDIA_TYPE,
            Bytes::from(envelope),
            annotations,
            &place,
        )
        .await
    }

    /// Every attestation of the manifest `r` names, checked against `key` and, when given,
    /// `predicate_type`: the envelope's signature verifies, the statement names this digest,
    /// and its predicate is of that type.
    pub async fn verify_attestations(
        &self,
        r: &Reference,
        key: &PublicKey,
        predicate_type: Option<&str>,
    ) -> Result<(Descriptor, Vec<AttestationCheck>)> {
        let desc = self.resolve(r).await?;
        let at = r.with_digest(desc.digest.clone());
        let referrers = self.referrers(&at, None).await?;
        let tag = attestation_tag(&desc.digest);
        let mut found = self
            .find_layers(&at, &tag, DSSE_MEDIA_TYPE, &referrers)
            .await?;
        found.extend(
            self.find_bundles(&at, BundleKind::Attestations, &referrers)
                .await?,
        );
        let mut checks = Vec::new();
        for (source, layer) in found {
            checks.push(
                self.check_attestation(&at, &desc.digest, key, predicate_type, source, layer)
                    .await,
            );
        }
        Ok((desc, checks))
    }

    async fn check_attestation(
        &self,
        at: &Reference,
        digest: &Digest,
        key: &PublicKey,
        predicate_type: Option<&str>,
        source: String,
        layer: Descriptor,
    ) -> AttestationCheck {
        let mut check = AttestationCheck {
            source,
            predicate_type: layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(PREDICATE_TYPE_ANNOTATION))
                .cloned(),
            valid: false,
            reason: String::new(),
            statement: None,
        };
        let bundled = layer.media_type == BUNDLE_MEDIA_TYPE;
        if layer.media_type != DSSE_MEDIA_TYPE && !bundled {
            check.reason = format!(
                "layer media type {} is not a DSSE envelope",
                layer.media_type
            );
            return check;
        }
        let envelope = match self.fetch_blob_bytes(at, &layer).await {
            Ok(e) => e,
            Err(e) => {
                check.reason = format!("envelope unreadable: {e}");
                return check;
            }
        };
        let opened = if bundled {
            wharf_sign::bundle::open(key, &envelope)
        } else {
            dsse::open(key, &envelope)
        };
        let statement = match opened {
            Ok(s) => s,
            Err(e) => {
                check.reason = e.to_string();
                return check;
            }
        };
        check.predicate_type = Some(statement.predicate_type.clone());
        if bundled && statement.predicate_type == wharf_sign::bundle::SIGN_PREDICATE_TYPE {
            check.reason = "the bundle holds a signature, not an attestation".into();
        } else if !statement.names(digest) {
            check.reason = format!("the statement is not about {digest}");
        } else if predicate_type.is_some_and(|t| t != statement.predicate_type) {
            check.reason = format!(
                "the predicate is {}, not {}",
                statement.predicate_type,
                predicate_type.unwrap_or_default()
            );
        } else {
            check.valid = true;
        }
        check.statement = Some(statement);
        check
    }
}
