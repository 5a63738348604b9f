//! The pull policy: a manifest in a repository that a signature policy rule names is served
//! only when the signatures and attestations stored beside it satisfy the rule; otherwise
//! the GET is refused with `DENIED` naming the rule. HEAD still resolves a tag to its digest
//! (signing starts there; no content is served). Signature and attestation manifests
//! themselves stay pullable, or nobody could check anything.
//!
//! Decisions are cached per manifest digest with a fingerprint of its evidence (the digests
//! under its `.sig` and `.att` tags and its referrers). A manifest written or deleted in the
//! repository through this replica invalidates the repository's decisions at once (a
//! signature is a manifest); writes through another replica are seen when the fingerprint
//! is next checked, at most `RECHECK` later. A pull in between costs a map lookup.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use wharf_oci::{Digest, ErrorCode, Manifest, Reference};
use wharf_sign::bundle::BUNDLE_MEDIA_TYPE;
use wharf_sign::dsse::DSSE_MEDIA_TYPE;
use wharf_sign::policy::{Evidence, Policy, Refusal};
use wharf_sign::{
    attestation_tag, signature_tag, SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE,
};
use wharf_store::{Registry, StoredManifest};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Cached decisions kept at most; past it the cache starts over.
const CACHE_ENTRIES: usize = 65_536;
/// The largest signature payload or envelope read as evidence.
const MAX_EVIDENCE_BYTES: u64 = 1 << 20;

/// How long a decision stands before its evidence's fingerprint is looked at again (for
/// writes through other replicas; this replica's own writes invalidate at once).
const RECHECK: Duration = Duration::from_secs(5);

struct Decision {
    outcome: Result<(), Refusal>,
    fingerprint: String,
    /// The repository's write generation when the decision was made or last confirmed.
    generation: u64,
    checked: Instant,
}

pub(crate) struct PullPolicy {
    policy: std::sync::Arc<Policy>,
    cache: Mutex<HashMap<(String, Digest), Decision>>,
    /// Per repository, a count of manifest writes and deletes through this replica.
    generations: Mutex<HashMap<String, u64>>,
}

/// Whether a tag is one of cosign's (`sha256-<hex>.sig`, `.att`, `.sbom`).
fn is_signature_tag(reference: &Reference) -> bool {
    matches!(reference, Reference::Tag(t)
        if t.starts_with("sha") && [".sig", ".att", ".sbom"].iter().any(|s| t.ends_with(s)))
}

/// Whether a manifest is signature material: a signature or attestation artifact, or layers
/// that are all signatures or attestations.
fn is_signature_material(m: &StoredManifest) -> bool {
    let Ok(parsed) = Manifest::parse(Some(&m.media_type), &m.content) else {
        return false;
    };
    if parsed
        .artifact_type
        .as_deref()
        .is_some_and(is_evidence_type)
    {
        return true;
    }
    !parsed.layers.is_empty()
        && parsed.layers.iter().all(|l| {
            [
                SIMPLE_SIGNING_MEDIA_TYPE,
                DSSE_MEDIA_TYPE,
                BUNDLE_MEDIA_TYPE,
            ]
            .contains(&l.media_type.as_str())
        })
}

/// Whether a referrer of this artifact type is a signature, an attestation or a bundle.
fn is_evidence_type(t: &str) -> bool {
    [SIGNATURE_ARTIFACT_TYPE, DSSE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE].contains(&t)
}

impl PullPolicy {
    pub(crate) fn new(policy: std::sync::Arc<Policy>) -> PullPolicy {
        PullPolicy {
            policy,
            cache: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
        }
    }

    /// A manifest of `repo` was written or deleted: its decisions no longer stand.
    pub(crate) fn touch(&self, repo: &str) {
        if self.policy.rules_for(repo).next().is_none() {
            return;
        }
        let mut g = self.generations.lock().expect("lock");
        if g.len() >= CACHE_ENTRIES && !g.contains_key(repo) {
            // Starting over bumps every repository: all cached decisions are rechecked.
            g.clear();
            self.cache.lock().expect("lock").clear();
        }
        *g.entry(repo.to_string()).or_default() += 1;
    }

    fn generation(&self, repo: &str) -> u64 {
        self.generations
            .lock()
            .expect("lock")
            .get(repo)
            .copied()
            .unwrap_or(0)
    }

    /// Lets the pull of `m` (reached by `reference` in `repo`) through, or refuses it; each
    /// decision counts in `metrics`.
    pub(crate) async fn enforce(
        &self,
        registry: &Registry,
        repo: &str,
        reference: &Reference,
        m: &StoredManifest,
        metrics: Option<&Metrics>,
    ) -> Result<(), ApiError> {
        let rules: Vec<_> = self.policy.rules_for(repo).collect();
        if rules.is_empty() || is_signature_tag(reference) {
            return Ok(());
        }
        // The cache first: deciding whether the content is signature material parses it.
        let generation = self.generation(repo);
        let key = (repo.to_string(), m.digest.clone());
        // Signature material is let through unverified, and not counted as a verification
        // (its cached decision has no fingerprint).
        let fresh = self.cache.lock().expect("lock").get(&key).and_then(|d| {
            (d.generation == generation && d.checked.elapsed() < RECHECK)
                .then(|| (d.outcome.clone(), d.fingerprint.is_empty()))
        });
        let decision = match fresh {
            Some((_, true)) => return Ok(()),
            Some((outcome, false)) => outcome,
            None if is_signature_material(m) => {
                self.remember(key, Ok(()), String::new(), generation);
                return Ok(());
            }
            None => {
                match self
                    .decide(registry, repo, &m.digest, &rules, key, generation)
                    .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        if let Some(metrics) = metrics {
                            metrics.verified(repo, Some("EvidenceUnreadable"));
                        }
                        return Err(e);
                    }
                }
            }
        };
        if let Some(metrics) = metrics {
            metrics.verified(repo, decision.as_ref().err().map(|r| r.code.as_str()));
        }
        decision.map_err(|why| {
            tracing::info!(event = "pull_denied", repository = repo, digest = %m.digest, reason = %why, "pull policy");
            ApiError::new(ErrorCode::Denied, format!("pull policy: {why}"))
        })
    }
}

impl PullPolicy {
    /// Looks at the evidence's fingerprint: unchanged, the cached decision is confirmed;
    /// changed (or none cached), the rules judge the evidence anew.
    async fn decide(
        &self,
        registry: &Registry,
        repo: &str,
        digest: &Digest,
        rules: &[&wharf_sign::policy::Rule],
        key: (String, Digest),
        generation: u64,
    ) -> Result<Result<(), Refusal>, ApiError> {
        let sig = tag_digest(registry, repo, &signature_tag(digest)).await?;
        let att = tag_digest(registry, repo, &attestation_tag(digest)).await?;
        let referrers = registry.referrers(repo, digest, None).await?;
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
        {
            let mut cache = self.cache.lock().expect("lock");
            if let Some(d) = cache.get_mut(&key).filter(|d| d.fingerprint == fingerprint) {
                d.generation = generation;
                d.checked = Instant::now();
                return Ok(d.outcome.clone());
            }
        }
        let evidence = gather(registry, repo, sig, att, &referrers).await?;
        let outcome = rules
            .iter()
            .try_for_each(|rule| rule.check(digest, &evidence));
        self.remember(key, outcome.clone(), fingerprint, generation);
        Ok(outcome)
    }

    fn remember(
        &self,
        key: (String, Digest),
        outcome: Result<(), Refusal>,
        fingerprint: String,
        generation: u64,
    ) {
        let mut cache = self.cache.lock().expect("lock");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            key,
            Decision {
                outcome,
                fingerprint,
                generation,
                checked: Instant::now(),
            },
        );
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
            .filter(|r| r.artifact_type.as_deref().is_some_and(is_evidence_type))
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
                BUNDLE_MEDIA_TYPE => &mut ev.bundles,
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
