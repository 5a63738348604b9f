//! The Docker registry token format: ES256 JWTs listing the access they grant, signed by the
//! registry's own key (the token service and the API are the same program, so one key signs
//! and verifies). The JOSE work is `jsonwebtoken`'s; the claim rules (expiry against a given
//! clock, audience, issuer) are ours, so every replica applies the same ones.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

/// Signs and verifies tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    kid: String,
    pub issuer: String,
    pub service: String,
}

/// Why a token was refused (said in logs, never to the client beyond "invalid token").
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
}

/// Leeway for the clocks of replicas that disagree slightly.
const NOT_BEFORE_LEEWAY_SECS: i64 = 30;

impl TokenKeys {
    pub fn new(
        signing: SigningKey,
        issuer: String,
        service: String,
    ) -> Result<TokenKeys, AuthError> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| AuthError::Config(format!("encoding the token key: {e}")))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let point = signing.verifying_key().to_encoded_point(false);
        let (x, y) = (
            point.x().expect("an uncompressed point has x"),
            point.y().expect("an uncompressed point has y"),
        );
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decoding = DecodingKey::from_ec_components(&b64.encode(x), &b64.encode(y))
            .map_err(|e| AuthError::Config(format!("the token key's public half: {e}")))?;
        // Only ES256: a token claiming "none" or HS256 is never accepted. Time, audience and
        // issuer are checked in `verify` against the caller's clock.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let compressed = signing.verifying_key().to_encoded_point(true);
        let kid = hex::encode(&sha256(compressed.as_bytes())[..16]);
        Ok(TokenKeys {
            encoding,
            decoding,
            validation,
            kid,
            issuer,
            service,
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("ES256 signing cannot fail")
    }

    /// The claims of a token this registry signed, if it is valid at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?
            .claims;
        if claims.aud != self.service {
            return Err(TokenError::WrongAudience);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + NOT_BEFORE_LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Parses a `scope` parameter: `repository:<name>:<actions>` or `registry:catalog:*`.
/// Names may contain ':' (a registry with a port), so actions are after the last one.
pub fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some((
        kind.to_string(),
        name.to_string(),
        actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn keys(seed: u8) -> TokenKeys {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        TokenKeys::new(sk, "wharf".into(), "registry".into()).unwrap()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "wharf".into(),
            sub: "bob".into(),
            aud: "registry".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let k = keys(7);
        let t = k.sign(&claims(100));
        assert_eq!(k.verify(&t, 50).unwrap().access[0].name, "team/app");
        assert_eq!(k.verify(&t, 100).unwrap_err(), TokenError::Expired);
        // another key's signature
        assert_eq!(
            keys(8).verify(&t, 50).unwrap_err(),
            TokenError::BadSignature
        );
        // claims altered after signing (scope escalation)
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut c = claims(100);
        c.access[0].actions.push("push".into());
        parts[1] = B64.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            k.verify(&parts.join("."), 50).unwrap_err(),
            TokenError::BadSignature
        );
        // alg none
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert!(k.verify(&none, 50).is_err());
        // HS256 signed with the public key as the secret (algorithm confusion)
        let hs = format!("{}.{}.AAAA", B64.encode(br#"{"alg":"HS256"}"#), parts[1]);
        assert!(k.verify(&hs, 50).is_err());
        assert_eq!(k.verify("a.b", 50).unwrap_err(), TokenError::Malformed);
        // other audience or issuer
        let other = TokenKeys::new(
            SigningKey::from_slice(&[7; 32]).unwrap(),
            "wharf".into(),
            "elsewhere".into(),
        )
        .unwrap();
        assert_eq!(other.verify(&t, 50).unwrap_err(), TokenError::WrongAudience);
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push"),
            Some((
                "repository".into(),
                "team/app".into(),
                vec!["pull".into(), "push".into()]
            ))
        );
        assert_eq!(
            parse_scope("registry:catalog:*"),
            Some(("registry".into(), "catalog".into(), vec!["*".into()]))
        );
        assert_eq!(parse_scope("nonsense"), None);
    }
}
