//! Signature policies: per repository pattern, the keys that must have signed a manifest, the
//! annotations their signatures must carry, and the attestation types that must exist. The
//! same file serves `wharf verify --policy` and the registry's pull policy; both gather the
//! evidence (signature payloads, attestation envelopes) from where they read, and the rule
//! decides here.
//!
//! ```toml
//! [[rules]]
//! name = "production"                # optional; named in every refusal
//! repositories = ["prod/**"]
//! keys = ["keys/release.pub"]        # relative to the policy file; each must have signed
//! annotations = { env = "prod" }     # every signature counted must carry these
//! attestations = ["cyclonedx"]       # types that must exist, signed by one of the keys
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use wharf_oci::{Descriptor, Digest, Pattern};

use crate::bundle;
use crate::dsse::{self, DSSE_MEDIA_TYPE};
use crate::{
    Error, PublicKey, Result, SimpleSigning, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    repositories: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    attestations: Vec<String>,
}

/// A parsed policy: rules in file order.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub repositories: Vec<Pattern>,
    /// Each key (with the name the file gave it) must have signed.
    pub keys: Vec<(String, PublicKey)>,
    pub annotations: BTreeMap<String, String>,
    /// Predicate type URIs that must be attested.
    pub attestations: Vec<String>,
}

/// What was found for one manifest: signature layers with their payloads, attestation
/// layers with their envelopes, and Sigstore bundles, which hold either (each blob already
/// checked against its layer's digest).
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    pub signatures: Vec<(Descriptor, Vec<u8>)>,
    pub attestations: Vec<(Descriptor, Vec<u8>)>,
    pub bundles: Vec<(Descriptor, Vec<u8>)>,
}

impl Evidence {
    /// The statements of the bundles that verify under `key` and are about `digest`.
    fn bundle_statements<'a>(
        &'a self,
        key: &'a PublicKey,
        digest: &'a Digest,
    ) -> impl Iterator<Item = dsse::Statement> + 'a {
        self.bundles
            .iter()
            .filter(|(layer, _)| layer.media_type == bundle::BUNDLE_MEDIA_TYPE)
            .filter_map(|(_, bytes)| bundle::open(key, bytes).ok())
            .filter(|s| s.names(digest))
    }
}

impl Policy {
    /// Parses a policy; `read_key` reads a key file named in it.
    pub fn parse(
        text: &str,
        read_key: impl Fn(&str) -> std::result::Result<String, String>,
    ) -> Result<Policy> {
        let file: File =
            toml::from_str(text).map_err(|e| Error::BadPolicy(e.message().to_string()))?;
        let mut rules = Vec::new();
        for (i, raw) in file.rules.into_iter().enumerate() {
            let name = raw.name.unwrap_or_else(|| raw.repositories.join(","));
            if raw.repositories.is_empty() {
                return Err(Error::BadPolicy(format!(
                    "rule {} ({name}) names no repositories",
                    i + 1
                )));
            }
            if raw.keys.is_empty() {
                return Err(Error::BadPolicy(format!("rule {name:?} names no keys")));
            }
            let repositories = raw
                .repositories
                .iter()
                .map(|p| Pattern::new(p).map_err(Error::BadPolicy))
                .collect::<Result<_>>()?;
            let mut keys = Vec::new();
            for k in raw.keys {
                let pem = read_key(&k)
                    .map_err(|e| Error::BadPolicy(format!("rule {name:?}: key {k}: {e}")))?;
                let key = PublicKey::from_pem(&pem)
                    .map_err(|e| Error::BadPolicy(format!("rule {name:?}: key {k}: {e}")))?;
                keys.push((k, key));
            }
            let attestations = raw
                .attestations
                .iter()
                .map(|t| {
                    dsse::predicate_type(t)
                        .map_err(|e| Error::BadPolicy(format!("rule {name:?}: {e}")))
                })
                .collect::<Result<_>>()?;
            rules.push(Rule {
                name,
                repositories,
                keys,
                annotations: raw.annotations,
                attestations,
            });
        }
        Ok(Policy { rules })
    }

    /// The rules that apply to `repository`.
    pub fn rules_for<'a>(&'a self, repository: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.repositories.iter().any(|p| p.matches(repository)))
    }
}

/// Why a rule refused a manifest: a code for counting (cosign's names for the same
/// failures) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// No signature is stored for the manifest at all.
    NoSignaturesFound,
    /// Signatures are stored, but none is valid by the required key (with the annotations).
    NoMatchingSignatures,
    /// No valid attestation of a required type.
    NoMatchingAttestations,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NoSignaturesFound => "NoSignaturesFound",
            RefusalCode::NoMatchingSignatures => "NoMatchingSignatures",
            RefusalCode::NoMatchingAttestations => "NoMatchingAttestations",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Rule {
    /// Whether `evidence` satisfies the rule for the manifest `digest`; the refusal says
    /// which requirement failed.
    pub fn check(&self, digest: &Digest, evidence: &Evidence) -> std::result::Result<(), Refusal> {
        for (label, key) in &self.keys {
            let signed = evidence.signatures.iter().any(|(layer, payload)| {
                layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE
                    && layer
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                        .is_some_and(|sig| key.verify(payload, sig).is_ok())
                    && SimpleSigning::parse(payload).is_ok_and(|p| {
                        p.critical.image.docker_manifest_digest == digest.to_string()
                            && p.has_annotations(&self.annotations)
                    })
            }) || (self.annotations.is_empty() // a bundle signature carries none
                && evidence
                    .bundle_statements(key, digest)
                    .any(|s| s.predicate_type == bundle::SIGN_PREDICATE_TYPE));
            if !signed {
                let with = if self.annotations.is_empty() {
                    String::new()
                } else {
                    let a: Vec<String> = self
                        .annotations
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!(" with {}", a.join(", "))
                };
                let code = if evidence.signatures.is_empty() && evidence.bundles.is_empty() {
                    RefusalCode::NoSignaturesFound
                } else {
                    RefusalCode::NoMatchingSignatures
                };
                return Err(Refusal {
                    code,
                    reason: format!(
                        "rule {:?}: {digest} has no valid signature by {label}{with}",
                        self.name
                    ),
                });
            }
        }
        for wanted in &self.attestations {
            let attested = evidence.attestations.iter().any(|(layer, envelope)| {
                layer.media_type == DSSE_MEDIA_TYPE
                    && self.keys.iter().any(|(_, key)| {
                        dsse::open(key, envelope)
                            .is_ok_and(|s| s.names(digest) && &s.predicate_type == wanted)
                    })
            }) || self.keys.iter().any(|(_, key)| {
                evidence
                    .bundle_statements(key, digest)
                    .any(|s| &s.predicate_type == wanted)
            });
            if !attested {
                return Err(Refusal {
                    code: RefusalCode::NoMatchingAttestations,
                    reason: format!(
                        "rule {:?}: {digest} has no valid {wanted} attestation",
                        self.name
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    fn layer(media_type: &str, bytes: &[u8], sig: Option<String>) -> Descriptor {
        let mut d: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": media_type, "digest": Digest::sha256_of(bytes).to_string(), "size": bytes.len()
        }))
        .unwrap();
        d.annotations = sig.map(|s| [(SIGNATURE_ANNOTATION.to_string(), s)].into());
        d
    }

    #[test]
    fn rules_decide() {
        let key = PrivateKey::generate();
        let pem = key.public_key().to_pem();
        let policy = Policy::parse(
            r#"
[[rules]]
name = "prod"
repositories = ["prod/**"]
keys = ["k.pub"]
annotations = { env = "prod" }
attestations = ["cyclonedx"]
"#,
            |_| Ok(pem.clone()),
        )
        .unwrap();
        assert_eq!(policy.rules_for("prod/app").count(), 1);
        assert_eq!(policy.rules_for("dev/app").count(), 0);
        let rule = &policy.rules[0];
        let d = Digest::sha256_of(b"image");
        let mut ev = Evidence::default();
        let e = rule.check(&d, &ev).unwrap_err();
        assert!(
            e.reason
                .contains("no valid signature by k.pub with env=prod"),
            "{e}"
        );
        assert_eq!(e.code, RefusalCode::NoSignaturesFound);
        let payload =
            SimpleSigning::new("r/prod/app", &d, [("env".into(), "prod".into())].into()).to_bytes();
        ev.signatures.push((
            layer(
                SIMPLE_SIGNING_MEDIA_TYPE,
                &payload,
                Some(key.sign(&payload)),
            ),
            payload.clone(),
        ));
        let e = rule.check(&d, &ev).unwrap_err();
        assert!(
            e.reason
                .contains("no valid https://cyclonedx.org/bom attestation"),
            "{e}"
        );
        assert_eq!(e.code, RefusalCode::NoMatchingAttestations);
        // a signature by another key is a signature, but not a matching one
        let mut forged = ev.clone();
        let other = PrivateKey::generate();
        forged.signatures[0].0.annotations =
            Some([(SIGNATURE_ANNOTATION.to_string(), other.sign(&payload))].into());
        assert_eq!(
            rule.check(&d, &forged).unwrap_err().code,
            RefusalCode::NoMatchingSignatures
        );
        let st = dsse::Statement::new(
            "r/prod/app",
            &d,
            "https://cyclonedx.org/bom",
            serde_json::json!({}),
        );
        let env = dsse::seal(&key, &st);
        ev.attestations
            .push((layer(DSSE_MEDIA_TYPE, &env, None), env));
        rule.check(&d, &ev).unwrap();
        // the same evidence does not pass for another digest
        assert!(rule.check(&Digest::sha256_of(b"other"), &ev).is_err());
    }

    #[test]
    fn bundles_count_as_signatures_and_attestations() {
        let key = PrivateKey::generate();
        let pem = key.public_key().to_pem();
        let parse = |annotations: &str| {
            Policy::parse(
                &format!(
                    "[[rules]]\nname = \"b\"\nrepositories = [\"**\"]\nkeys = [\"k.pub\"]\n\
                     attestations = [\"cyclonedx\"]\n{annotations}"
                ),
                |_| Ok(pem.clone()),
            )
            .unwrap()
        };
        let (plain, annotated) = (parse(""), parse("annotations = { env = \"prod\" }\n"));
        let d = Digest::sha256_of(b"image");
        let bundle_layer = |st: &dsse::Statement, k: &PrivateKey| {
            let b = bundle::seal(k, st);
            (layer(bundle::BUNDLE_MEDIA_TYPE, &b, None), b)
        };
        let mut ev = Evidence::default();
        ev.bundles
            .push(bundle_layer(&bundle::signing_statement(&d), &key));
        let e = plain.rules[0].check(&d, &ev).unwrap_err();
        assert_eq!(e.code, RefusalCode::NoMatchingAttestations, "{e}");
        let st = dsse::Statement::new("r", &d, "https://cyclonedx.org/bom", serde_json::json!({}));
        ev.bundles.push(bundle_layer(&st, &key));
        plain.rules[0].check(&d, &ev).unwrap();
        // a bundle signature carries no annotations, so a rule that asks for some refuses it
        let e = annotated.rules[0].check(&d, &ev).unwrap_err();
        assert_eq!(e.code, RefusalCode::NoMatchingSignatures);
        // another key's bundles, or bundles about another digest, do not count
        let mut forged = Evidence::default();
        let other = PrivateKey::generate();
        forged
            .bundles
            .push(bundle_layer(&bundle::signing_statement(&d), &other));
        forged.bundles.push(bundle_layer(&st, &other));
        assert!(plain.rules[0].check(&d, &forged).is_err());
        assert!(plain.rules[0].check(&Digest::sha256_of(b"x"), &ev).is_err());
    }

    #[test]
    fn bad_files() {
        let read = |_: &str| Err("no such file".to_string());
        assert!(Policy::parse(
            "[[rules]]\nrepositories = [\"a\"]\nkeys = [\"x.pub\"]\n",
            read
        )
        .unwrap_err()
        .to_string()
        .contains("key x.pub: no such file"));
        assert!(Policy::parse("[[rules]]\nrepositories = [\"a\"]\n", read).is_err());
        assert!(Policy::parse(
            "[[rules]]\nrepositories = [\"a\"]\nkeys = [\"k\"]\nbogus = 1\n",
            read
        )
        .is_err());
    }
}
