//! In-toto attestations in DSSE envelopes, as `cosign attest` writes them: a statement naming
//! the subject by digest and carrying a predicate, signed over DSSE's pre-authentication
//! encoding (PAE), in a JSON envelope.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64URL};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, PrivateKey, PublicKey, Result};

/// The layer media type of an attestation.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The payload type of an in-toto statement inside an envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The statement type cosign writes.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
/// The layer annotation naming the predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// The predicate type URI for cosign's `--type` names; a URI stands for itself.
pub fn predicate_type(name: &str) -> Result<String> {
    Ok(match name {
        "spdx" | "spdxjson" => "https://spdx.dev/Document",
        "cyclonedx" => "https://cyclonedx.org/bom",
        "slsaprovenance" | "slsaprovenance02" => "https://slsa.dev/provenance/v0.2",
        "slsaprovenance1" => "https://slsa.dev/provenance/v1",
        "link" => "https://in-toto.io/Link/v1",
        "vuln" => "https://cosign.sigstore.dev/attestation/vuln/v1",
        "openvex" => "https://openvex.dev/ns",
        "custom" => "https://cosign.sigstore.dev/attestation/v1",
        uri if uri.contains("://") => uri,
        other => {
            return Err(Error::BadPayload(format!(
                "unknown attestation type {other:?}: spdxjson, cyclonedx, slsaprovenance, slsaprovenance1, link, vuln, openvex, custom, or a URI"
            )))
        }
    }
    .to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub subject: Vec<Subject>,
    /// Absent from the statements cosign signs images with in a Sigstore bundle.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subject {
    /// Absent from the statements cosign signs images with in a Sigstore bundle.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Statement {
    pub fn new(
        repository: &str,
        digest: &wharf_oci::Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            kind: STATEMENT_TYPE.into(),
            predicate_type: predicate_type.into(),
            subject: vec![Subject {
                name: repository.into(),
                digest: [(
                    digest.algorithm().as_str().to_string(),
                    digest.hex().to_string(),
                )]
                .into(),
            }],
            predicate,
        }
    }

    /// Whether the statement names `digest` among its subjects.
    pub fn names(&self, digest: &wharf_oci::Digest) -> bool {
        self.subject.iter().any(|s| {
            s.digest
                .get(digest.algorithm().as_str())
                .map(String::as_str)
                == Some(digest.hex())
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `statement` into an envelope's JSON bytes.
pub fn seal(key: &PrivateKey, statement: &Statement) -> Vec<u8> {
    serde_json::to_vec(&envelope(key, statement)).expect("JSON serialises")
}

/// Signs `statement` into an envelope.
pub fn envelope(key: &PrivateKey, statement: &Statement) -> Envelope {
    let payload = serde_json::to_vec(statement).expect("JSON serialises");
    let sig = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    Envelope {
        payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
        payload: B64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig,
        }],
    }
}

/// Opens an envelope's JSON bytes: some signature verifies under `key`; returns the
/// statement.
pub fn open(key: &PublicKey, envelope: &[u8]) -> Result<Statement> {
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| Error::BadPayload(format!("not a DSSE envelope: {e}")))?;
    open_envelope(key, &env)
}

/// Opens an envelope: some signature verifies under `key`; returns the statement.
pub fn open_envelope(key: &PublicKey, env: &Envelope) -> Result<Statement> {
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Error::BadPayload(format!(
            "envelope payload type {:?} is not {IN_TOTO_PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let payload = B64
        .decode(&env.payload)
        .or_else(|_| B64URL.decode(&env.payload))
        .map_err(|_| Error::BadPayload("the envelope payload is not base64".into()))?;
    let signed = pae(&env.payload_type, &payload);
    let mut last = Error::BadSignature("the envelope has no signatures".into());
    for s in &env.signatures {
        match key.verify(&signed, &s.sig) {
            Ok(()) => {
                return serde_json::from_slice(&payload)
                    .map_err(|e| Error::BadPayload(format!("not an in-toto statement: {e}")))
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let k = PrivateKey::generate();
        let d = wharf_oci::Digest::sha256_of(b"m");
        let st = Statement::new(
            "r/a",
            &d,
            &predicate_type("cyclonedx").unwrap(),
            serde_json::json!({"bomFormat": "CycloneDX"}),
        );
        let env = seal(&k, &st);
        let back = open(&k.public_key(), &env).unwrap();
        assert!(back.names(&d) && back.predicate_type == "https://cyclonedx.org/bom");
        assert!(open(&PrivateKey::generate().public_key(), &env).is_err());
        // a payload changed under the same signature
        let mut e: Envelope = serde_json::from_slice(&env).unwrap();
        e.payload = B64.encode(b"{}");
        assert!(open(&k.public_key(), &serde_json::to_vec(&e).unwrap()).is_err());
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
        assert!(predicate_type("nonsense").is_err());
        assert_eq!(
            predicate_type("https://example.com/p").unwrap(),
            "https://example.com/p"
        );
    }
}
