//! The Docker registry token format: ES256 JWTs listing the access they grant, signed by the
//! registry's own key (the token service and the API are the same program, so one key signs
//! and verifies).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Signs and verifies tokens.
pub struct TokenKeys {
    signing: SigningKey,
    verifying: VerifyingKey,
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

impl TokenKeys {
    pub fn new(signing: SigningKey, issuer: String, service: String) -> TokenKeys {
        let verifying = *signing.verifying_key();
        let point = verifying.to_encoded_point(true);
        let kid = hex::encode(&sha2_256(point.as_bytes())[..16]);
        TokenKeys {
            signing,
            verifying,
            kid,
            issuer,
            service,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "ES256".into(),
            typ: Some("JWT".into()),
            kid: Some(self.kid.clone()),
        };
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).expect("header serialises")),
            B64.encode(serde_json::to_vec(claims).expect("claims serialise"))
        );
        let sig: Signature = self.signing.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    /// The claims of a token this registry signed, if it is valid now.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        // Only our algorithm: a token claiming "none" or HS256 is never accepted.
        if header.alg != "ES256" {
            return Err(TokenError::BadSignature);
        }
        let sig = B64
            .decode(s)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let signed = &token[..h.len() + 1 + c.len()];
        self.verifying
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.aud != self.service {
            return Err(TokenError::WrongAudience);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        // A little leeway for clocks of replicas that disagree slightly.
        if claims.nbf > now + 30 {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
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

    fn keys(seed: u8) -> TokenKeys {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        TokenKeys::new(sk, "wharf".into(), "registry".into())
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
        assert_eq!(k.verify("a.b", 50).unwrap_err(), TokenError::Malformed);
        // other audience or issuer
        let other = TokenKeys::new(
            SigningKey::from_slice(&[7; 32]).unwrap(),
            "wharf".into(),
            "elsewhere".into(),
        );
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
