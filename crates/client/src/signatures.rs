//! Cosign signatures in a registry: written where cosign writes them (the `sha256-<hex>.sig`
//! tag, one simple-signing layer per signature, appended to those already there; or, on
//! request, an OCI 1.1 referrer), and found in both places for verification.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let registry = wharf_server::LocalRegistry::start(&dir.path().join("registry")).await?;
//! # let host = registry.host();
//! # std::fs::write(dir.path().join("app.yaml"), "replicas: 3\n")?;
//! # let app_yaml = dir.path().join("app.yaml");
//! # use std::sync::Arc;
//! # use wharf_client::artifact::{PushFile, PushRequest};
//! # use wharf_client::{Client, ClientOptions, NoProgress, SharedProgress};
//! # let client = Client::new(ClientOptions::default())?;
//! # let quiet: SharedProgress = Arc::new(NoProgress);
//! # let file = PushFile { path: app_yaml, media_type: None, annotations: Default::default() };
//! # let req = PushRequest { files: vec![file], ..PushRequest::default() };
//! # let r: wharf_client::Reference = format!("{host}/team/app:v1").parse()?;
//! # client.push_artifact(&r, &["v1".into()], req, &quiet).await?;
//! use std::collections::BTreeMap;
//! use wharf_client::signatures::Storage;
//! use wharf_sign::PrivateKey;
//!
//! // a key of cosign's kind; `PrivateKey::from_pem` reads `cosign.key` files
//! let key = PrivateKey::generate();
//! let env: BTreeMap<String, String> = [("env".into(), "prod".into())].into();
//! let signed = client.sign(&r, &key, &env, Storage::Tag).await?;
//! println!("signed {}", signed.signed);
//!
//! let (_, checks) = client.verify_signatures(&r, &key.public_key(), &env).await?;
//! assert!(checks.iter().any(|c| c.valid));
//! // another key finds the signature but does not accept it, and says why
//! let (_, checks) = client.verify_signatures(&r, &PrivateKey::generate().public_key(), &env).await?;
//! assert!(!checks[0].valid && !checks[0].reason.is_empty());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use wharf_oci::media_type::{OCI_EMPTY, OCI_MANIFEST};
use wharf_oci::{Descriptor, Digest, Manifest};
use wharf_sign::bundle::{BUNDLE_MEDIA_TYPE, SIGN_PREDICATE_TYPE};
use wharf_sign::{
    signature_tag, PrivateKey, PublicKey, SimpleSigning, SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE,
};

use crate::blobs::{BytesSource, NoProgress, SharedProgress};
use crate::bundles::BundleKind;
use crate::manifests::descriptor;
use crate::{Client, Error, Reference, Result};

/// Where a signature is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Storage {
    /// The `sha256-<hex>.sig` tag (cosign's default).
    #[default]
    Tag,
    /// An OCI 1.1 referrer of the signed manifest.
    Referrer,
    /// A Sigstore bundle, as an OCI 1.1 referrer (cosign's `--new-bundle-format`).
    Bundle,
}

/// Where a signature or attestation goes.
pub(crate) struct Placement {
    pub tag: String,
    pub artifact_type: &'static str,
    pub storage: Storage,
}

/// The outcome of signing one manifest.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    /// `REGISTRY/REPOSITORY@DIGEST` that was signed.
    pub signed: String,
    pub digest: Digest,
    /// Where the signature went: the `.sig` tag, or the referrer's digest.
    pub signature: String,
    pub storage: Storage,
}

/// One signature found for a manifest, and whether it holds.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCheck {
    /// Where it was found: the `.sig` tag or a referrer's digest.
    pub source: String,
    /// The payload layer's digest.
    pub payload_digest: Digest,
    pub valid: bool,
    /// Why it does not hold (empty when valid).
    pub reason: String,
    /// The payload, when it could be read.
    pub payload: Option<serde_json::Value>,
}

/// The name cosign puts in `docker-reference`: the registry and repository.
pub fn docker_reference(r: &Reference) -> String {
    format!("{}/{}", r.registry, r.repository)
}

/// A config like the one cosign's signature images carry: empty, with one history entry and
/// diff_id per layer.
fn signature_config(layers: &[Descriptor]) -> Bytes {
    let zero = "0001-01-01T00:00:00Z";
    let doc = json!({
        "architecture": "",
        "created": zero,
        "history": layers.iter().map(|_| json!({"created": zero})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        "config": {},
    });
    Bytes::from(serde_json::to_vec(&doc).expect("JSON serialises"))
}

impl Client {
    /// Signs the manifest `r` names (a tag is resolved first) with `key`, `annotations` in
    /// the payload, and stores the signature as cosign does.
    pub async fn sign(
        &self,
        r: &Reference,
        key: &PrivateKey,
        annotations: &BTreeMap<String, String>,
        storage: Storage,
    ) -> Result<Signed> {
        if storage == Storage::Bundle && !annotations.is_empty() {
            return Err(Error::Invalid(
                "a signature in a Sigstore bundle carries no annotations (cosign leaves them out too): sign without the bundle format to keep them".into(),
            ));
        }
        let desc = self.resolve(r).await?;
        if storage == Storage::Bundle {
            let statement = wharf_sign::bundle::signing_statement(&desc.digest);
            let bundle = Bytes::from(wharf_sign::bundle::seal(key, &statement));
            return self
                .store_bundle(r, &desc, bundle, wharf_sign::bundle::SIGN_PREDICATE_TYPE)
                .await;
        }
        let payload =
            SimpleSigning::new(&docker_reference(r), &desc.digest, annotations.clone()).to_bytes();
        let signature = key.sign(&payload);
        let layer_annotations = [(SIGNATURE_ANNOTATION.to_string(), signature)].into();
        let place = Placement {
            tag: signature_tag(&desc.digest),
            artifact_type: SIGNATURE_ARTIFACT_TYPE,
            storage,
        };
        self.store_layer(
            r,
            &desc,
            SIMPLE_SIGNING_MEDIA_TYPE,
            Bytes::from(payload),
            layer_annotations,
            &place,
        )
        .await
    }

    /// Puts `payload` as a layer for the manifest `desc`: appended to the manifest under the
    /// placement's tag (kept when the same layer is there already), or as a new referrer.
    pub(crate) async fn store_layer(
        &self,
        r: &Reference,
        desc: &Descriptor,
        media_type: &str,
        payload: Bytes,
        annotations: BTreeMap<String, String>,
        place: &Placement,
    ) -> Result<Signed> {
        let at = r.with_digest(desc.digest.clone());
        let mut layer = descriptor(
            media_type.into(),
            Digest::sha256_of(&payload),
            payload.len() as u64,
        );
        layer.annotations = Some(annotations);
        let quiet: SharedProgress = Arc::new(NoProgress);
        let repo = Reference {
            tag: None,
            digest: None,
            ..r.clone()
        };
        self.push_blob(&repo, &layer, &BytesSource(payload), &quiet)
            .await?;
        let (manifest, target) = match place.storage {
            Storage::Tag => {
                let target = r.with_tag(&place.tag)?;
                let mut layers = match self.manifest(&target).await {
                    Ok((d, bytes)) => Manifest::parse(Some(&d.media_type), &bytes)?.layers,
                    Err(e) if is_not_found(&e) => Vec::new(),
                    Err(e) => return Err(e),
                };
                if !layers.iter().any(|l| l == &layer) {
                    layers.push(layer);
                }
                let config = signature_config(&layers);
                let config_desc = descriptor(
                    "application/vnd.oci.image.config.v1+json".into(),
                    Digest::sha256_of(&config),
                    config.len() as u64,
                );
                self.push_blob(&repo, &config_desc, &BytesSource(config), &quiet)
                    .await?;
                let m = json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": config_desc,
                    "layers": layers,
                });
                (m, target)
            }
            // (bundles are stored by `store_bundle`, as referrers too)
            Storage::Referrer | Storage::Bundle => {
                let empty = Bytes::from_static(b"{}");
                let config_desc = Descriptor {
                    data: Some("e30=".into()),
                    ..descriptor(OCI_EMPTY.into(), Digest::sha256_of(&empty), 2)
                };
                self.push_blob(&repo, &config_desc, &BytesSource(empty), &quiet)
                    .await?;
                let subject = descriptor(desc.media_type.clone(), desc.digest.clone(), desc.size);
                let m = json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": place.artifact_type,
                    "config": config_desc,
                    "layers": [layer],
                    "subject": subject,
                });
                (m, repo.clone())
            }
        };
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("JSON serialises"));
        let signature = match place.storage {
            Storage::Tag => {
                self.put_manifest(&target, OCI_MANIFEST, bytes).await?;
                target.to_string()
            }
            // (bundles are stored by `store_bundle`, as referrers too)
            Storage::Referrer | Storage::Bundle => {
                let d = Digest::sha256_of(&bytes);
                let put = self
                    .put_referrer(&repo.with_digest(d), OCI_MANIFEST, bytes)
                    .await?;
                repo.with_digest(put).to_string()
            }
        };
        Ok(Signed {
            signed: at.to_string(),
            digest: desc.digest.clone(),
            signature,
            storage: place.storage,
        })
    }

    /// The layers stored for the manifest `at` under `tag` and in those of its `referrers`
    /// (listed once by the caller, for every kind it looks for) of `artifact_type`, each with
    /// where it was found.
    pub(crate) async fn find_layers(
        &self,
        at: &Reference,
        tag: &str,
        artifact_type: &str,
        referrers: &[Descriptor],
    ) -> Result<Vec<(String, Descriptor)>> {
        let mut found = Vec::new();
        let tag_ref = at.with_tag(tag)?;
        match self.manifest(&tag_ref).await {
            Ok((d, bytes)) => {
                for l in Manifest::parse(Some(&d.media_type), &bytes)?.layers {
                    found.push((tag_ref.to_string(), l));
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let typed = referrers
            .iter()
            .filter(|r| r.artifact_type.as_deref() == Some(artifact_type));
        for referrer in typed {
            let rr = at.with_digest(referrer.digest.clone());
            let (d, bytes) = self.manifest(&rr).await?;
            for l in Manifest::parse(Some(&d.media_type), &bytes)?.layers {
                found.push((rr.to_string(), l));
            }
        }
        Ok(found)
    }

    /// Every cosign signature of the manifest `r` names, from its `.sig` tag and from its
    /// signature referrers, each checked against `key`: the payload matches its digest, the
    /// signature verifies, the payload names this manifest's digest, and it carries each of
    /// `required` annotations.
    pub async fn verify_signatures(
        &self,
        r: &Reference,
        key: &PublicKey,
        required: &BTreeMap<String, String>,
    ) -> Result<(Descriptor, Vec<SignatureCheck>)> {
        let desc = self.resolve(r).await?;
        let at = r.with_digest(desc.digest.clone());
        let referrers = self.referrers(&at, None).await?;
        let tag = signature_tag(&desc.digest);
        let mut found = self
            .find_layers(&at, &tag, SIGNATURE_ARTIFACT_TYPE, &referrers)
            .await?;
        found.extend(
            self.find_bundles(&at, BundleKind::Signatures, &referrers)
                .await?,
        );
        // Payloads are fetched a few at a time: an artifact may carry hundreds of signatures.
        let checks = futures_util::stream::iter(found)
            .map(|(source, layer)| self.check_one(&at, &desc.digest, key, required, source, layer))
            .buffered(self.opts.concurrency.max(1) * 2)
            .collect()
            .await;
        Ok((desc, checks))
    }

    async fn check_one(
        &self,
        at: &Reference,
        digest: &Digest,
        key: &PublicKey,
        required: &BTreeMap<String, String>,
        source: String,
        layer: Descriptor,
    ) -> SignatureCheck {
        let mut check = SignatureCheck {
            source,
            payload_digest: layer.digest.clone(),
            valid: false,
            reason: String::new(),
            payload: None,
        };
        if layer.media_type == BUNDLE_MEDIA_TYPE {
            return self
                .check_bundle_signature(at, digest, key, required, check, &layer)
                .await;
        }
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            check.reason = format!("layer media type {} is not a signature", layer.media_type);
            return check;
        }
        let Some(sig) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            check.reason = format!("no {SIGNATURE_ANNOTATION} annotation");
            return check;
        };
        let payload = match self.fetch_blob_bytes(at, &layer).await {
            Ok(p) => p,
            Err(e) => {
                check.reason = format!("payload unreadable: {e}");
                return check;
            }
        };
        check.payload = serde_json::from_slice(&payload).ok();
        if let Err(e) = key.verify(&payload, sig) {
            check.reason = e.to_string();
            return check;
        }
        let parsed = match SimpleSigning::parse(&payload) {
            Ok(p) => p,
            Err(e) => {
                check.reason = e.to_string();
                return check;
            }
        };
        if parsed.critical.image.docker_manifest_digest != digest.to_string() {
            check.reason = format!(
                "the payload signs {}, not {digest}",
                parsed.critical.image.docker_manifest_digest
            );
            return check;
        }
        if !parsed.has_annotations(required) {
            check.reason = "the payload lacks a required annotation".into();
            return check;
        }
        check.valid = true;
        check
    }
}

impl Client {
    /// Checks a signature in a Sigstore bundle: the envelope verifies under `key`, and its
    /// statement is a signature of `digest`. Bundles carry no annotations, so any `required`
    /// fails it.
    async fn check_bundle_signature(
        &self,
        at: &Reference,
        digest: &Digest,
        key: &PublicKey,
        required: &BTreeMap<String, String>,
        mut check: SignatureCheck,
        layer: &Descriptor,
    ) -> SignatureCheck {
        let bytes = match self.fetch_blob_bytes(at, layer).await {
            Ok(b) => b,
            Err(e) => {
                check.reason = format!("bundle unreadable: {e}");
                return check;
            }
        };
        let statement = match wharf_sign::bundle::open(key, &bytes) {
            Ok(s) => s,
            Err(e) => {
                check.reason = e.to_string();
                return check;
            }
        };
        // What `cosign verify --new-bundle-format` prints for a bundle: the claims in the
        // simple-signing shape, with the digest in the identity.
        check.payload = Some(json!({
            "critical": {
                "identity": {"docker-reference": format!("{}@{digest}", docker_reference(at))},
                "image": {"docker-manifest-digest": digest.to_string()},
                "type": SIGN_PREDICATE_TYPE,
            },
            "optional": null,
        }));
        check.reason = if statement.predicate_type != SIGN_PREDICATE_TYPE {
            format!(
                "the bundle holds a {} attestation, not a signature",
                statement.predicate_type
            )
        } else if !statement.names(digest) {
            format!("the bundle does not sign {digest}")
        } else if !required.is_empty() {
            "a signature in a Sigstore bundle carries no annotations to match -a".into()
        } else {
            check.valid = true;
            String::new()
        };
        check
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound(_)) || e.status() == Some(404)
}

impl Client {
    /// A public key published at an `https://` URL (cosign's `--key https://...`), at most
    /// 64 KiB.
    pub async fn fetch_key_text(&self, url: &str) -> Result<String> {
        if !url.starts_with("https://") {
            return Err(Error::Invalid(format!("{url}: a key URL must be https://")));
        }
        let resp = self
            .http_default()
            .get(url)
            .send()
            .await
            .map_err(|source| Error::Transport {
                url: url.to_string(),
                source,
            })?;
        let resp = crate::client::check(resp, "GET", url).await?;
        let body = crate::manifests::read_limited(resp, 64 << 10, url).await?;
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Invalid(format!("{url}: the key is not text")))
    }
}

impl Client {
    /// The signatures and attestations stored for the manifest `at` (which carries its
    /// digest), with their payloads, for a policy to judge.
    pub async fn evidence(&self, at: &Reference) -> Result<wharf_sign::policy::Evidence> {
        let digest = at
            .digest
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{at}: evidence needs a digest")))?;
        let mut ev = wharf_sign::policy::Evidence::default();
        let referrers = self.referrers(at, None).await?;
        let sigs = self
            .find_layers(
                at,
                &signature_tag(&digest),
                SIGNATURE_ARTIFACT_TYPE,
                &referrers,
            )
            .await?;
        let atts = self
            .find_layers(
                at,
                &wharf_sign::attestation_tag(&digest),
                wharf_sign::dsse::DSSE_MEDIA_TYPE,
                &referrers,
            )
            .await?;
        let bundles = self.find_bundles(at, BundleKind::Any, &referrers).await?;
        for (into, found) in [
            (&mut ev.signatures, sigs),
            (&mut ev.attestations, atts),
            (&mut ev.bundles, bundles),
        ] {
            for (_, layer) in found {
                // A payload that cannot be read is no evidence; the rule reports what is missing.
                if let Ok(bytes) = self.fetch_blob_bytes(at, &layer).await {
                    into.push((layer, bytes.to_vec()));
                }
            }
        }
        Ok(ev)
    }
}
