//! Repository name patterns, as access policies and pull policies name repositories.

/// A repository name pattern: `*` matches within one path component, `**` across them
/// (`team/*` is `team/app` but not `team/a/b`; `team/**` is both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> Result<Pattern, String> {
        if p.is_empty() {
            return Err("an empty repository pattern".into());
        }
        if p.contains("***") {
            return Err(format!("repository pattern {p:?}: use * or **"));
        }
        Ok(Pattern(p.to_string()))
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        [b'*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(rest, &s[i..])),
        [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let pat = |p: &str| Pattern::new(p).unwrap();
        assert!(pat("team/*").matches("team/app") && !pat("team/*").matches("team/a/b"));
        assert!(pat("team/**").matches("team/a/b"));
        assert!(pat("**").matches("anything/at/all"));
        assert!(!pat("team/**").matches("other/app"));
        assert!(Pattern::new("").is_err() && Pattern::new("a/***").is_err());
    }
}
