//! The simple-signing payload cosign signs: which manifest digest, under which repository
//! name, with optional annotations (`-a key=value`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

use crate::{Error, Result};

/// The `type` value cosign writes and requires.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Annotations given at signing (`null` when none, as cosign writes it).
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `digest` in `repository` (`registry/name`, as cosign names it).
    pub fn new(
        repository: &str,
        digest: &Digest,
        annotations: BTreeMap<String, String>,
    ) -> SimpleSigning {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_string(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: COSIGN_SIGNATURE_TYPE.into(),
            },
            optional: (!annotations.is_empty()).then(|| {
                annotations
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect()
            }),
        }
    }

    /// The bytes that get signed, in Go's field order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("JSON serialises")
    }

    pub fn parse(bytes: &[u8]) -> Result<SimpleSigning> {
        let p: SimpleSigning = serde_json::from_slice(bytes)
            .map_err(|e| Error::BadPayload(format!("not a simple-signing payload: {e}")))?;
        if p.critical.kind != COSIGN_SIGNATURE_TYPE {
            return Err(Error::BadPayload(format!(
                "payload type {:?} is not {COSIGN_SIGNATURE_TYPE:?}",
                p.critical.kind
            )));
        }
        Ok(p)
    }

    /// Whether every `required` annotation is in the payload with that value.
    pub fn has_annotations(&self, required: &BTreeMap<String, String>) -> bool {
        required.iter().all(|(k, v)| {
            self.optional
                .as_ref()
                .and_then(|o| o.get(k))
                .and_then(|x| x.as_str())
                == Some(v.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_shape() {
        let d = Digest::sha256_of(b"m");
        let p = SimpleSigning::new("localhost:5000/app", &d, BTreeMap::new());
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let with = SimpleSigning::new("r/a", &d, [("env".to_string(), "prod".to_string())].into());
        assert!(with.has_annotations(&[("env".to_string(), "prod".to_string())].into()));
        assert!(!with.has_annotations(&[("env".to_string(), "dev".to_string())].into()));
        assert_eq!(SimpleSigning::parse(&with.to_bytes()).unwrap(), with);
        assert!(SimpleSigning::parse(b"{}").is_err());
    }
}
