//! The pull policy: a manifest in a repository that a signature policy rule names is served
//! only when the signatures and attestations stored beside it satisfy the rule; otherwise
//! the GET is refused with `DENIED` naming the rule. HEAD still resolves a tag to its digest
//! (signing starts there; no content is served). Signature and attestation manifests
//! themselves stay pullable, or nobody could check anything.
//!
//! Results are cached per manifest digest together with a fingerprint of its evidence (the
//! digests under its `.sig` and `.att` tags and its referrers), so a signature added or
//! removed, on this replica or another, is seen at the next pull, while a pull with
//! unchanged evidence costs three metadata lookups and no cryptography.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::TryStreamExt;
use wharf_oci::{Digest, ErrorCode, Manifest, Reference};
use wharf_sign::dsse::DSSE_MEDIA_TYPE;
use wharf_sign::policy::{Evidence, Policy};
use wharf_sign::{
    attestation_tag, signature_tag, SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE,
};
use wharf_store::{Registry, StoredManifest};

use crate::error::ApiError;

/// Cached decisions kept at most; past it the cache starts over.
const CACHE_ENTRIES: usize = 65_536;
/// The largest signature payload or envelope read as evidence.
const MAX_EVIDENCE_BYTES: u64 = 1 << 20;

/// A decision's key: repository, manifest digest, and the fingerprint of its evidence.
type DecisionKey = (String, Digest, String);

pub(crate) struct PullPolicy {
    policy: std::sync::Arc<Policy>,
    cache: Mutex<HashMap<DecisionKey, Result<(), String>>>,
}

/// Whether a manifest is signature material: cosign's tags, or layers that are all
/// signatures or attestations.
fn is_signature_material(reference: &Reference, m: &StoredManifest) -> bool {
    if let Reference::Tag(t) = reference {
        if [".sig", ".att", ".sbom"].iter().any(|s| t.ends_with(s)) && t.starts_with("sha") {
            return true;
        }
    }
    let Ok(parsed) = Manifest::parse(Some(&m.media_type), &m.content) else {
        return false;
    };
    if parsed
        .artifact_type
        .as_deref()
        .is_some_and(|t| t == SIGNATURE_ARTIFACT_TYPE || t == DSSE_MEDIA_TYPE)
    {
        return true;
    }
    !parsed.layers.is_empty()
        && parsed
            .layers
            .iter()
            .all(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE || l.media_type == DSSE_MEDIA_TYPE)
}

impl PullPolicy {
    pub(crate) fn new(policy: std::sync::Arc<Policy>) -> PullPolicy {
        PullPolicy {
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Lets the pull of `m` (reached by `reference` in `repo`) through, or refuses it.
    pub(crate) async fn enforce(
        &self,
        registry: &Registry,
        repo: &str,
        reference: &Reference,
        m: &StoredManifest,
    ) -> Result<(), ApiError> {
        let rules: Vec<_> = self.policy.rules_for(repo).collect();
        if rules.is_empty() || is_signature_material(reference, m) {
            return Ok(());
        }
        let sig = tag_digest(registry, repo, &signature_tag(&m.digest)).await?;
        let att = tag_digest(registry, repo, &attestation_tag(&m.digest)).await?;
        let referrers = registry.referrers(repo, &m.digest, None).await?;
        let fingerprint = format!(
            "{}|{}|{}",
            sig.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            att.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            referrers
                .iter()
                .map(|r| r.digest.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let key = (repo.to_string(), m.digest.clone(), fingerprint);
        let cached = self.cache.lock().expect("lock").get(&key).cloned();
        let decision = match cached {
            Some(d) => d,
            None => {
                let evidence = gather(registry, repo, sig, att, &referrers).await?;
                let d = rules
                    .iter()
                    .try_for_each(|rule| rule.check(&m.digest, &evidence));
                let mut cache = self.cache.lock().expect("lock");
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(key, d.clone());
                d
            }
        };
        decision.map_err(|why| {
            tracing::info!(event = "pull_denied", repository = repo, digest = %m.digest, reason = %why, "pull policy");
            ApiError::new(ErrorCode::Denied, format!("pull policy: {why}"))
        })
    }
}

async fn tag_digest(
    registry: &Registry,
    repo: &str,
    tag: &str,
) -> Result<Option<Digest>, ApiError> {
    match registry
        .manifest_get(repo, &Reference::Tag(tag.to_string()))
        .await
    {
        Ok(m) => Ok(Some(m.digest)),
        Err(wharf_store::StoreError::ManifestUnknown) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The signature and attestation layers (with their blobs) under the two tags and in the
/// referrers.
async fn gather(
    registry: &Registry,
    repo: &str,
    sig: Option<Digest>,
    att: Option<Digest>,
    referrers: &[wharf_oci::Descriptor],
) -> Result<Evidence, ApiError> {
    let mut manifests: Vec<Digest> = sig.into_iter().chain(att).collect();
    manifests.extend(
        referrers
            .iter()
            .filter(|r| {
                r.artifact_type
                    .as_deref()
                    .is_some_and(|t| t == SIGNATURE_ARTIFACT_TYPE || t == DSSE_MEDIA_TYPE)
            })
            .map(|r| r.digest.clone()),
    );
    let mut ev = Evidence::default();
    for d in manifests {
        let stored = match registry.manifest_get(repo, &Reference::Digest(d)).await {
            Ok(m) => m,
            Err(wharf_store::StoreError::ManifestUnknown) => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(m) = Manifest::parse(Some(&stored.media_type), &stored.content) else {
            continue;
        };
        for layer in m.layers {
            let into = match layer.media_type.as_str() {
                SIMPLE_SIGNING_MEDIA_TYPE => &mut ev.signatures,
                DSSE_MEDIA_TYPE => &mut ev.attestations,
                _ => continue,
            };
            if layer.size > MAX_EVIDENCE_BYTES {
                continue;
            }
            // A blob that cannot be read is no evidence; the rule says what is missing.
            let Ok(stream) = registry
                .blob_read(&layer.digest, 0..layer.size, layer.size)
                .await
            else {
                continue;
            };
            let Ok(chunks) = stream.try_collect::<Vec<_>>().await else {
                continue;
            };
            let bytes: Vec<u8> = chunks.concat();
            if Digest::of(layer.digest.algorithm(), &bytes) == layer.digest {
                into.push((layer, bytes));
            }
        }
    }
    Ok(ev)
}
