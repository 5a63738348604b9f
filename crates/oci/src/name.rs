//! Repository names, tags, and the `<reference>` of a manifest URL (a tag or a digest).

use std::fmt;
use std::str::FromStr;

use crate::{Digest, SpecError};

/// Longest repository name accepted. Clients bound `host/name` to 255 characters; bounding the
/// name alone keeps every name a client can produce.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag, from the spec's tag grammar.
pub const MAX_TAG_LEN: usize = 128;

/// Checks `<name>` against the distribution-spec grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_repository(name: &str) -> Result<(), SpecError> {
    let bad = |why| Err(SpecError::Name(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 characters");
    }
    for component in name.split('/') {
        if !is_path_component(component) {
            return bad("each /-separated component is lowercase letters and digits, joined by '.', '_', '__' or dashes");
        }
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
}

/// Checks a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), SpecError> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::Tag(tag.to_string()))
    }
}

/// The `<reference>` path parameter of the manifest endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = SpecError;

    /// Anything with a `:` must be a digest: tags cannot contain one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in [
            "a",
            "library/ubuntu",
            "a0/b-c/d__e/f.g",
            "x--y",
            "foo/blobs/bar",
            &"a".repeat(255),
        ] {
            validate_repository(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_names() {
        for n in [
            "",
            "Upper",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            "..",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a b",
            "a%2fb",
            &"a".repeat(256),
        ] {
            assert!(validate_repository(n).is_err(), "{n:?} accepted");
        }
    }

    #[test]
    fn tags() {
        validate_tag("latest").unwrap();
        validate_tag("_x.Y-1").unwrap();
        validate_tag(&"t".repeat(128)).unwrap();
        for t in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(validate_tag(t).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn references() {
        assert_eq!(
            "v1".parse::<Reference>().unwrap(),
            Reference::Tag("v1".into())
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            d.parse::<Reference>().unwrap(),
            Reference::Digest(_)
        ));
        assert!("sha256:nothex".parse::<Reference>().is_err());
    }
}
