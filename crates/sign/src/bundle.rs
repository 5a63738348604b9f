//! Sigstore bundles (`application/vnd.dev.sigstore.bundle.v0.3+json`), the format `cosign sign
//! --new-bundle-format` and `cosign attest --new-bundle-format` store as OCI 1.1 referrers: a
//! DSSE envelope around an in-toto statement, with the signing key named by its hint. A
//! signature is a statement of predicate type [`SIGN_PREDICATE_TYPE`] with no predicate; an
//! attestation carries its predicate. Key-based and offline: no certificate, no transparency
//! log entry.

use serde::{Deserialize, Serialize};

use crate::dsse::{self, Envelope, EnvelopeSignature, Statement, Subject};
use crate::{Error, PrivateKey, PublicKey, Result};

/// The bundle's media type: its layer's, its manifest's artifact type, its own `mediaType`.
pub const BUNDLE_MEDIA_TYPE: &str = wharf_oci::media_type::SIGSTORE_BUNDLE;
/// The predicate type of a signature in a bundle (the statement has no predicate).
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The statement type cosign signs images with in a bundle.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// Manifest annotation: what the bundle holds (`dsse-envelope`).
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Manifest annotation: the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dsse_envelope: Option<BundleEnvelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_signature: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<KeyHint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyHint {
    #[serde(default)]
    hint: String,
}

/// A DSSE envelope as bundles write it (protobuf JSON: an empty `keyid` is left out).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<BundleSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BundleSignature {
    sig: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
}

/// The statement a bundle signature signs: the manifest digest, nothing else.
pub fn signing_statement(digest: &wharf_oci::Digest) -> Statement {
    Statement {
        kind: STATEMENT_V1.into(),
        predicate_type: SIGN_PREDICATE_TYPE.into(),
        subject: vec![Subject {
            name: String::new(),
            digest: [(
                digest.algorithm().as_str().to_string(),
                digest.hex().to_string(),
            )]
            .into(),
        }],
        predicate: serde_json::Value::Null,
    }
}

/// Signs `statement` into a bundle's JSON bytes.
pub fn seal(key: &PrivateKey, statement: &Statement) -> Vec<u8> {
    let env = dsse::envelope(key, statement);
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(KeyHint {
                hint: key.public_key().hint(),
            }),
        },
        dsse_envelope: Some(BundleEnvelope {
            payload: env.payload,
            payload_type: env.payload_type,
            signatures: env
                .signatures
                .into_iter()
                .map(|s| BundleSignature {
                    sig: s.sig,
                    keyid: s.keyid,
                })
                .collect(),
        }),
        message_signature: None,
    };
    serde_json::to_vec(&bundle).expect("JSON serialises")
}

/// Opens a bundle: its envelope verifies under `key`; returns the statement.
pub fn open(key: &PublicKey, bytes: &[u8]) -> Result<Statement> {
    let bundle: Bundle = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadPayload(format!("not a Sigstore bundle: {e}")))?;
    if !bundle
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(Error::BadPayload(format!(
            "not a Sigstore bundle: media type {:?}",
            bundle.media_type
        )));
    }
    let Some(env) = bundle.dsse_envelope else {
        return Err(Error::BadPayload(if bundle.message_signature.is_some() {
            "a message-signature bundle: only DSSE bundles (what cosign writes for images) are read"
                .into()
        } else {
            "the bundle holds no DSSE envelope".into()
        }));
    };
    let env = Envelope {
        payload_type: env.payload_type,
        payload: env.payload,
        signatures: env
            .signatures
            .into_iter()
            .map(|s| EnvelopeSignature {
                keyid: s.keyid,
                sig: s.sig,
            })
            .collect(),
    };
    dsse::open_envelope(key, &env).map_err(|e| {
        let named = bundle.verification_material.public_key.map(|k| k.hint);
        match (e, named) {
            (Error::BadSignature(_), Some(h)) if !h.is_empty() && h != key.hint() => {
                Error::BadSignature("the bundle names another signing key".into())
            }
            (e, _) => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_bundles_round_trip() {
        let d = wharf_oci::Digest::sha256_of(b"manifest");
        let k = PrivateKey::generate();
        let bytes = seal(&k, &signing_statement(&d));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            v["verificationMaterial"]["publicKey"]["hint"],
            k.public_key().hint()
        );
        // cosign's shape: no keyid, no predicate, no subject name
        assert_eq!(
            v["dsseEnvelope"]["signatures"][0]
                .as_object()
                .unwrap()
                .len(),
            1
        );
        let st = open(&k.public_key(), &bytes).unwrap();
        assert!(st.names(&d) && st.predicate_type == SIGN_PREDICATE_TYPE);
        assert!(st.predicate.is_null() && st.subject[0].name.is_empty());
        let other = PrivateKey::generate().public_key();
        assert_eq!(
            open(&other, &bytes).unwrap_err().to_string(),
            Error::BadSignature("the bundle names another signing key".into()).to_string()
        );
        // a payload changed under the same signature
        let mut tampered = v.clone();
        tampered["dsseEnvelope"]["payload"] = "e30=".into();
        let tampered = serde_json::to_vec(&tampered).unwrap();
        assert!(open(&k.public_key(), &tampered).is_err());
        let msg = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}"#;
        assert!(open(&k.public_key(), msg)
            .unwrap_err()
            .to_string()
            .contains("message-signature"));
        assert!(open(&k.public_key(), b"{}").is_err());
    }

    #[test]
    fn reads_what_cosign_wrote() {
        // `cosign sign --new-bundle-format --tlog-upload=false` (cosign 2.6.5) with a key
        // from `cosign generate-key-pair`.
        let public = PublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE79OctohvMwgXl50zyZeZZdpAafFA
wDGo4Ladbqa+7BvFHyyPLJcSx2YxsMcqS4AFQ6uKic3pkTu4GrPy+zLuLg==
-----END PUBLIC KEY-----",
        )
        .unwrap();
        let bundle = include_bytes!("../testdata/cosign-sign-bundle.json");
        let st = open(&public, bundle).unwrap();
        let d: wharf_oci::Digest =
            "sha256:f5d65409e578dbb09422d97a2fde142ee7d95d88746a677fb991aa13acad24f1"
                .parse()
                .unwrap();
        assert!(st.names(&d));
        assert_eq!(st.predicate_type, SIGN_PREDICATE_TYPE);
        assert_eq!(st.kind, STATEMENT_V1);
        assert_eq!(
            public.hint(),
            "zDw1I5JazTBjd4fQLeOOgC9hoKTtL8+mXrcHE1tMBKI="
        );
    }
}
