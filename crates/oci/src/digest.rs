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
/// process without reading back what it already received. Built on the block functions of
/// `sha2` (hardware-accelerated where the CPU allows); only padding and buffering are ours.
#[derive(Clone)]
pub struct Hasher {
    state: State,
    /// Bytes of an incomplete block.
    buf: [u8; 128],
    buf_len: usize,
    /// Total bytes hashed.
    len: u128,
}

#[derive(Clone)]
enum State {
    Sha256([u32; 8]),
    Sha512([u64; 8]),
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];
const STATE_FORMAT: u8 = 1;

impl State {
    fn block_len(&self) -> usize {
        match self {
            State::Sha256(_) => 64,
            State::Sha512(_) => 128,
        }
    }

    /// Compresses `blocks`, whose length is a multiple of the block size, in one call so the
    /// accelerated code sees long runs.
    fn compress(&mut self, blocks: &[u8]) {
        use sha2::digest::generic_array::typenum::{U128, U64};
        use sha2::digest::generic_array::GenericArray;
        match self {
            State::Sha256(s) => {
                debug_assert_eq!(blocks.len() % 64, 0);
                // SAFETY: GenericArray<u8, U64> is repr(transparent) over 64 bytes (size 64,
                // align 1), so a run of n*64 bytes is a run of n such arrays.
                let b = unsafe {
                    std::slice::from_raw_parts(
                        blocks.as_ptr() as *const GenericArray<u8, U64>,
                        blocks.len() / 64,
                    )
                };
                sha2::compress256(s, b);
            }
            State::Sha512(s) => {
                debug_assert_eq!(blocks.len() % 128, 0);
                // SAFETY: as above, with 128-byte arrays.
                let b = unsafe {
                    std::slice::from_raw_parts(
                        blocks.as_ptr() as *const GenericArray<u8, U128>,
                        blocks.len() / 128,
                    )
                };
                sha2::compress512(s, b);
            }
        }
    }
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        Hasher {
            state: match algorithm {
                Algorithm::Sha256 => State::Sha256(SHA256_IV),
                Algorithm::Sha512 => State::Sha512(SHA512_IV),
            },
            buf: [0; 128],
            buf_len: 0,
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
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let block = self.state.block_len();
        self.len += data.len() as u128;
        if self.buf_len > 0 {
            let take = (block - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < block {
                return;
            }
            let full = self.buf;
            self.state.compress(&full[..block]);
            self.buf_len = 0;
        }
        let whole = data.len() - data.len() % block;
        if whole > 0 {
            self.state.compress(&data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(mut self) -> Digest {
        let block = self.state.block_len();
        let len_bytes = block / 8; // 8 for SHA-256, 16 for SHA-512
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 256];
        tail[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
        tail[self.buf_len] = 0x80;
        let total = if self.buf_len + 1 + len_bytes <= block {
            block
        } else {
            2 * block
        };
        tail[total - len_bytes..total].copy_from_slice(&bits.to_be_bytes()[16 - len_bytes..]);
        self.state.compress(&tail[..total]);
        let algorithm = self.algorithm();
        let hex = match self.state {
            State::Sha256(s) => {
                hex::encode(s.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>())
            }
            State::Sha512(s) => {
                hex::encode(s.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>())
            }
        };
        Digest { algorithm, hex }
    }

    /// The state as bytes: format, algorithm, length, chaining values, buffered bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT];
        match &self.state {
            State::Sha256(s) => {
                out.push(1);
                out.extend_from_slice(&self.len.to_be_bytes());
                s.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()));
            }
            State::Sha512(s) => {
                out.push(2);
                out.extend_from_slice(&self.len.to_be_bytes());
                s.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()));
            }
        }
        out.extend_from_slice(&self.buf[..self.buf_len]);
        out
    }

    /// Restores a state saved by [`Hasher::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(b: &[u8]) -> Option<Hasher> {
        let (&format, rest) = b.split_first()?;
        let (&alg, rest) = rest.split_first()?;
        if format != STATE_FORMAT || rest.len() < 16 {
            return None;
        }
        let len = u128::from_be_bytes(rest[..16].try_into().ok()?);
        let rest = &rest[16..];
        let (state, rest) = match alg {
            1 if rest.len() >= 32 => {
                let mut s = [0u32; 8];
                for (i, w) in s.iter_mut().enumerate() {
                    *w = u32::from_be_bytes(rest[i * 4..i * 4 + 4].try_into().ok()?);
                }
                (State::Sha256(s), &rest[32..])
            }
            2 if rest.len() >= 64 => {
                let mut s = [0u64; 8];
                for (i, w) in s.iter_mut().enumerate() {
                    *w = u64::from_be_bytes(rest[i * 8..i * 8 + 8].try_into().ok()?);
                }
                (State::Sha512(s), &rest[64..])
            }
            _ => return None,
        };
        let block = state.block_len();
        if rest.len() >= block || len % block as u128 != rest.len() as u128 {
            return None;
        }
        let mut buf = [0u8; 128];
        buf[..rest.len()].copy_from_slice(rest);
        Some(Hasher {
            state,
            buf,
            buf_len: rest.len(),
            len,
        })
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

    /// Our padding and buffering against the sha2 crate's, over every length around the
    /// block boundaries, split anywhere, with a save and restore at the split.
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
        assert!(Hasher::from_bytes(&good[..good.len() - 1]).is_none()); // buffer length off
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
