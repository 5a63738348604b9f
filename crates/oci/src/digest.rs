//! Content digests (`algorithm:encoded`) and the hashers that produce them.
//!
//! The grammar is the image-spec's; of the registered algorithms, sha256 and sha512 are
//! supported. A well-formed digest with any other algorithm is refused as unsupported rather
//! than stored unverified.

use std::fmt;
use std::str::FromStr;

use crate::SpecError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }
}

/// A verified-well-formed digest. The encoded part is always lowercase hex of the right length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part, lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte string, for manifests and other small bodies already in memory.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| SpecError::Digest(s.to_string(), why);
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| bad("expected algorithm:encoded"))?;
        if !is_algorithm_component(alg) {
            return Err(bad("malformed algorithm"));
        }
        if enc.is_empty()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(bad("malformed encoded part"));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(bad(
                    "unsupported algorithm (sha256 and sha512 are supported)",
                ))
            }
        };
        if enc.len() != algorithm.hex_len()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(
                "encoded part is not lowercase hex of the algorithm's length",
            ));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_string(),
        })
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_algorithm_component(s: &str) -> bool {
    let mut prev_sep = true;
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental SHA-256 or SHA-512 whose state can be saved ([`Hasher::to_bytes`]) and
/// restored ([`Hasher::from_bytes`]), so that an upload can continue hashing on another
/// process without reading back what it already received. The hashing and its saved state are
/// `sha2`'s (hardware-accelerated where the CPU allows); only the framing is ours.
#[derive(Clone)]
pub struct Hasher {
    state: State,
    /// Total bytes hashed.
    len: u64,
}

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// Version 2: the algorithm, the length, then sha2's own serialised state. (Version 1 was
/// our own layout of chaining values; sessions saved in it are refused as unreadable.)
const STATE_FORMAT: u8 = 2;

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        use sha2::Digest as _;
        Hasher {
            state: match algorithm {
                Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
                Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
            },
            len: 0,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        self.len += data.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        let algorithm = self.algorithm();
        let hex = match self.state {
            State::Sha256(h) => hex::encode(h.finalize()),
            State::Sha512(h) => hex::encode(h.finalize()),
        };
        Digest { algorithm, hex }
    }

    /// The state as bytes: format, algorithm, length, then the hash's serialised state.
    pub fn to_bytes(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let mut out = vec![STATE_FORMAT];
        let (alg, state) = match &self.state {
            State::Sha256(h) => (1, h.serialize().to_vec()),
            State::Sha512(h) => (2, h.serialize().to_vec()),
        };
        out.push(alg);
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&state);
        out
    }

    /// Restores a state saved by [`Hasher::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(b: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let (&format, rest) = b.split_first()?;
        let (&alg, rest) = rest.split_first()?;
        if format != STATE_FORMAT || rest.len() < 8 {
            return None;
        }
        let len = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let rest = &rest[8..];
        let state = match alg {
            1 => State::Sha256(sha2::Sha256::deserialize(rest.try_into().ok()?).ok()?),
            2 => State::Sha512(sha2::Sha512::deserialize(rest.try_into().ok()?).ok()?),
            _ => return None,
        };
        Some(Hasher { state, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn sha512_of_empty() {
        let d = Digest::of(Algorithm::Sha512, b"");
        assert!(d.to_string().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:xyz",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855aa",
            "sha256+:abc",
            "sha256:../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unknown_algorithm_is_refused_with_reason() {
        let e = "md5:d41d8cd98f00b204e9800998ecf8427e"
            .parse::<Digest>()
            .unwrap_err();
        assert!(e.to_string().contains("unsupported algorithm"), "{e}");
        assert!(
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
                .parse::<Digest>()
                .unwrap_err()
                .to_string()
                .contains("unsupported")
        );
    }

    /// Against the sha2 crate's one-shot digests, over every length around the block
    /// boundaries, split anywhere, with a save and restore at the split.
    #[test]
    fn matches_sha2_and_survives_save_restore() {
        use sha2::Digest as _;
        let data: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in (0..300).chain([511, 512, 513, 700]) {
            let want256 = hex::encode(sha2::Sha256::digest(&data[..n]));
            let want512 = hex::encode(sha2::Sha512::digest(&data[..n]));
            for split in [0, 1.min(n), n / 3, n / 2, n.saturating_sub(1), n] {
                for (alg, want) in [(Algorithm::Sha256, &want256), (Algorithm::Sha512, &want512)] {
                    let mut h = alg.hasher();
                    h.update(&data[..split]);
                    let mut h = Hasher::from_bytes(&h.to_bytes()).expect("restores");
                    h.update(&data[split..n]);
                    assert_eq!(h.len(), n as u64);
                    assert_eq!(
                        h.finish().hex(),
                        want.as_str(),
                        "{alg:?} n={n} split={split}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_corrupt_state() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"abc");
        let good = h.to_bytes();
        assert!(Hasher::from_bytes(&good).is_some());
        assert!(Hasher::from_bytes(&[]).is_none());
        assert!(Hasher::from_bytes(&good[..good.len() - 1]).is_none()); // state cut short
        let mut bad = good.clone();
        bad[1] = 9; // unknown algorithm
        assert!(Hasher::from_bytes(&bad).is_none());
        let mut bad = good;
        bad[0] = 0; // unknown format
        assert!(Hasher::from_bytes(&bad).is_none());
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256_of(b"hello world"));
    }
}
