//! Key files as cosign writes them. The public key is PKIX PEM (`PUBLIC KEY`). The private
//! key is PKCS#8 DER, sealed with NaCl secretbox (XSalsa20-Poly1305) under a key that scrypt
//! derives from the password, and the result is a JSON document (the format of
//! go-securesystemslib's `encrypted` package) inside a PEM block.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The PEM label cosign writes today.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label of keys made by cosign before 2.0; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// scrypt's cost parameters: what cosign writes (N = 2^16), and the two others its library
/// reads (2^15, the older default, and 2^17). Anything else is refused, so a crafted key
/// file cannot ask for an unbounded amount of memory.
const SCRYPT_WRITE: (u8, u32, u32) = (16, 8, 1);
const SCRYPT_ACCEPTED: [(u8, u32, u32); 3] = [(15, 8, 1), (16, 8, 1), (17, 8, 1)];

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Go's JSON form of `[]byte`: standard base64 with padding.
mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// An ECDSA P-256 signing key.
pub struct PrivateKey(SigningKey);

/// An ECDSA P-256 verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    (log_n, r, p): (u8, u32, u32),
) -> Result<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| Error::BadKey(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|e| Error::BadKey(format!("scrypt: {e}")))?;
    Ok(key)
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey(SigningKey::random(&mut OsRng))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The key as cosign stores it: PKCS#8 sealed under `password`, PEM-armoured.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String> {
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| Error::BadKey(format!("encoding the key: {e}")))?;
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let key = scrypt_key(password, &salt, SCRYPT_WRITE)?;
        let ciphertext = XSalsa20Poly1305::new(key.as_ref().into())
            .encrypt(&nonce.into(), der.as_bytes())
            .map_err(|_| Error::BadKey("sealing the key failed".into()))?;
        let (log_n, r, p) = SCRYPT_WRITE;
        let sealed = Sealed {
            kdf: Kdf {
                name: "scrypt".into(),
                params: KdfParams {
                    n: 1 << log_n,
                    r,
                    p,
                },
                salt: salt.to_vec(),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&sealed).expect("JSON serialises");
        pem::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, LineEnding::LF, &json)
            .map_err(|e| Error::BadKey(format!("PEM: {e}")))
    }

    /// Reads a private key file: cosign's encrypted forms (either label), or an unencrypted
    /// PKCS#8 `PRIVATE KEY` / SEC1 `EC PRIVATE KEY` (then `password` is not used).
    pub fn from_pem(text: &str, password: &[u8]) -> Result<PrivateKey> {
        let (label, body) = pem::decode_vec(text.trim().as_bytes()).map_err(|_| {
            Error::BadKey("not a PEM key file (no -----BEGIN ... PRIVATE KEY----- block)".into())
        })?;
        match label {
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                let sealed: Sealed = serde_json::from_slice(&body)
                    .map_err(|e| Error::BadKey(format!("the encrypted key is damaged: {e}")))?;
                if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
                    return Err(Error::BadKey(format!(
                        "unsupported key encryption {}/{} (expected scrypt/nacl/secretbox)",
                        sealed.kdf.name, sealed.cipher.name
                    )));
                }
                let params = SCRYPT_ACCEPTED
                    .into_iter()
                    .find(|&(log_n, r, p)| {
                        sealed.kdf.params.n == 1 << log_n
                            && sealed.kdf.params.r == r
                            && sealed.kdf.params.p == p
                    })
                    .ok_or_else(|| Error::BadKey("unsupported scrypt parameters in the key file".into()))?;
                if sealed.cipher.nonce.len() != 24 {
                    return Err(Error::BadKey("the encrypted key has a bad nonce".into()));
                }
                let key = scrypt_key(password, &sealed.kdf.salt, params)?;
                let nonce = crypto_secretbox::Nonce::from_slice(&sealed.cipher.nonce);
                let der = Zeroizing::new(
                    XSalsa20Poly1305::new(key.as_ref().into())
                        .decrypt(nonce, sealed.ciphertext.as_slice())
                        .map_err(|_| Error::WrongPassword)?,
                );
                SigningKey::from_pkcs8_der(&der)
                    .map(PrivateKey)
                    .map_err(|_| Error::BadKey("the key is not an ECDSA P-256 key".into()))
            }
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(&body)
                .map(PrivateKey)
                .map_err(|_| Error::BadKey("the key is not an ECDSA P-256 key".into())),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&body)
                .map(|k| PrivateKey(SigningKey::from(k)))
                .map_err(|_| Error::BadKey("the key is not an ECDSA P-256 key".into())),
            other => Err(Error::BadKey(format!(
                "a {other:?} PEM block is not a private key this reads (expected {SIGSTORE_PRIVATE_KEY_LABEL})"
            ))),
        }
    }

    /// The signature of `message` (ECDSA P-256 over its SHA-256), ASN.1 DER, base64: the
    /// value of cosign's signature annotation.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.0.sign(message);
        B64.encode(sig.to_der().as_bytes())
    }
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (PKIX), as cosign writes it.
    pub fn from_pem(text: &str) -> Result<PublicKey> {
        VerifyingKey::from_public_key_pem(text.trim())
            .map(PublicKey)
            .map_err(|_| {
                Error::BadKey(
                    "not an ECDSA P-256 public key in PEM (-----BEGIN PUBLIC KEY-----)".into(),
                )
            })
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    /// Sigstore's key hint: the base64 SHA-256 of the key's PKIX DER, which bundles carry
    /// to say which key signed them.
    pub fn hint(&self) -> String {
        use sha2::Digest as _;
        let der = self.0.to_public_key_der().expect("a P-256 key encodes");
        B64.encode(sha2::Sha256::digest(der.as_bytes()))
    }

    /// Checks a base64 DER (or raw r||s) signature of `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<()> {
        let raw = B64
            .decode(signature_b64.trim())
            .map_err(|_| Error::BadSignature("the signature is not base64".into()))?;
        let sig = Signature::from_der(&raw)
            .or_else(|_| Signature::from_slice(&raw))
            .map_err(|_| Error::BadSignature("the signature is not an ECDSA signature".into()))?;
        self.0.verify(message, &sig).map_err(|_| {
            Error::BadSignature("the signature does not match the payload and key".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let k = PrivateKey::generate();
        let pem = k.to_encrypted_pem(b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_pem(&pem, b"pw").unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert!(matches!(
            PrivateKey::from_pem(&pem, b"nope"),
            Err(Error::WrongPassword)
        ));
        // the older label reads the same
        let old = pem.replace(SIGSTORE_PRIVATE_KEY_LABEL, COSIGN_PRIVATE_KEY_LABEL);
        assert!(PrivateKey::from_pem(&old, b"pw").is_ok());
        // a truncated file is a clear error, not a panic
        let cut = &pem[..pem.len() / 2];
        assert!(PrivateKey::from_pem(cut, b"pw").is_err());
    }

    #[test]
    fn signatures() {
        let k = PrivateKey::generate();
        let sig = k.sign(b"payload");
        let pub_key = PublicKey::from_pem(&k.public_key().to_pem()).unwrap();
        pub_key.verify(b"payload", &sig).unwrap();
        assert!(pub_key.verify(b"payload!", &sig).is_err());
        assert!(PrivateKey::generate()
            .public_key()
            .verify(b"payload", &sig)
            .is_err());
        assert!(pub_key.verify(b"payload", "***").is_err());
    }

    #[test]
    fn expensive_scrypt_parameters_are_refused() {
        let pem = PrivateKey::generate().to_encrypted_pem(b"pw").unwrap();
        let (label, body) = pem::decode_vec(pem.as_bytes()).unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        doc["kdf"]["params"]["N"] = serde_json::json!(1u64 << 30);
        let json = serde_json::to_vec(&doc).unwrap();
        let bad = pem::encode_string(label, LineEnding::LF, &json).unwrap();
        let e = PrivateKey::from_pem(&bad, b"pw").err().unwrap();
        assert!(
            e.to_string().contains("unsupported scrypt parameters"),
            "{e}"
        );
    }
}
