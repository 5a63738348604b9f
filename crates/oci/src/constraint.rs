//! Version constraints as helm writes them in `dependencies[].version` (the Masterminds
//! syntax): `||` between alternatives, comparators joined by spaces or commas, `=`, `!=`,
//! `>`, `>=`, `<`, `<=`, `~`, `^`, hyphen ranges (`1.2 - 1.4`) and wildcards (`1.2.x`, `*`).
//! A missing part is a wildcard (`1.2` is `1.2.x`). A pre-release version matches only a
//! comparator that names a pre-release, so `^1.0.0` never picks `1.1.0-rc.1`.

use std::cmp::Ordering;
use std::fmt;

use semver::{Prerelease, Version};

/// A parsed constraint: any of the groups matches when all of its comparators do.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<Vec<Comparator>>,
    text: String,
}

#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    /// The lowest version of the written range (`1.2` is 1.2.0).
    low: Version,
    /// The first version past it (`1.2` is 1.3.0); None for `*`.
    high: Option<Version>,
    /// The range is a single exact version (all three parts written).
    exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let mut groups = Vec::new();
        for alt in text.split("||") {
            let mut group = Vec::new();
            let words: Vec<&str> = alt
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            let mut i = 0;
            while i < words.len() {
                // `A - B`: an inclusive range.
                if words.get(i + 1) == Some(&"-") && i + 2 < words.len() {
                    let low = comparator(&format!(">={}", words[i]), text)?;
                    let high = comparator(&format!("<={}", words[i + 2]), text)?;
                    group.extend([low, high]);
                    i += 3;
                    continue;
                }
                // `>= 1.2`: an operator written apart from its version.
                let w = if is_operator(words[i]) && i + 1 < words.len() {
                    i += 1;
                    format!("{}{}", words[i - 1], words[i])
                } else {
                    words[i].to_string()
                };
                group.push(comparator(&w, text)?);
                i += 1;
            }
            if group.is_empty() {
                return Err(format!(
                    "version constraint {text:?} has an empty alternative"
                ));
            }
            groups.push(group);
        }
        Ok(Constraint {
            groups,
            text: text.to_string(),
        })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.groups.iter().any(|g| g.iter().all(|c| c.matches(v)))
    }

    /// Bounds on MAJOR.MINOR.PATCH (pre-release and build ignored, both ends inclusive)
    /// that every matching version lies within; `None` where unbounded. Looser than the
    /// constraint itself: a cheap pre-filter (an index range), with [`Constraint::matches`]
    /// deciding.
    pub fn core_bounds(&self) -> (Option<Version>, Option<Version>) {
        let core = |v: &Version| Version::new(v.major, v.minor, v.patch);
        let mut lows = Vec::new();
        let mut highs = Vec::new();
        for g in &self.groups {
            let mut lo: Option<Version> = None;
            let mut hi: Option<Version> = None;
            for c in g {
                let (l, h) = match c.op {
                    Op::Ne => (None, None),
                    Op::Eq if c.exact => (Some(core(&c.low)), Some(core(&c.low))),
                    Op::Eq | Op::Tilde | Op::Caret => (Some(core(&c.low)), c.high.clone()),
                    Op::Gt if c.exact => (Some(core(&c.low)), None),
                    Op::Gt => (c.high.clone(), None),
                    Op::Ge => (Some(core(&c.low)), None),
                    Op::Lt => (None, Some(core(&c.low))),
                    Op::Le if c.exact => (None, Some(core(&c.low))),
                    Op::Le => (None, c.high.clone()),
                };
                if let Some(l) = l {
                    lo = Some(lo.map_or(l.clone(), |x| x.max(l)));
                }
                if let Some(h) = h {
                    hi = Some(hi.map_or(h.clone(), |x| x.min(h)));
                }
            }
            lows.push(lo);
            highs.push(hi);
        }
        let low = lows
            .iter()
            .all(Option::is_some)
            .then(|| lows.into_iter().flatten().min())
            .flatten();
        let high = highs
            .iter()
            .all(Option::is_some)
            .then(|| highs.into_iter().flatten().max())
            .flatten();
        (low, high)
    }

    /// The highest of `versions` that matches.
    pub fn best<'a>(&self, versions: impl IntoIterator<Item = &'a Version>) -> Option<&'a Version> {
        versions
            .into_iter()
            .filter(|v| self.matches(v))
            .max_by(|a, b| a.cmp_precedence(b))
    }
}

fn is_operator(w: &str) -> bool {
    matches!(
        w,
        "=" | "!=" | ">" | ">=" | "=>" | "<" | "<=" | "=<" | "~" | "~>" | "^"
    )
}

fn comparator(word: &str, whole: &str) -> Result<Comparator, String> {
    let bad = |why: &str| format!("version constraint {whole:?}: {why}");
    let ops: [(&str, Op); 12] = [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("=>", Op::Ge),
        ("<=", Op::Le),
        ("=<", Op::Le),
        ("~>", Op::Tilde),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
        ("~", Op::Tilde),
        ("^", Op::Caret),
        ("", Op::Eq),
    ];
    let (op, rest) = ops
        .iter()
        .find_map(|(p, op)| word.strip_prefix(p).map(|r| (*op, r)))
        .expect("the empty prefix always matches");
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    // Split off a pre-release/build; only a full version may carry them.
    let (core, tail) = match rest.find(['-', '+']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad(&format!("{word:?} is not a version")));
    }
    let wild = |p: &str| matches!(p, "x" | "X" | "*");
    let mut nums = Vec::new();
    for p in &parts {
        if wild(p) {
            break;
        }
        nums.push(
            p.parse::<u64>()
                .map_err(|_| bad(&format!("{word:?} is not a version")))?,
        );
    }
    if nums.len() < 3 && !tail.is_empty() {
        return Err(bad(&format!(
            "{word:?}: a pre-release needs MAJOR.MINOR.PATCH"
        )));
    }
    let exact = nums.len() == 3;
    let (low, high) = match nums.as_slice() {
        [] => (Version::new(0, 0, 0), None),
        [m] => (Version::new(*m, 0, 0), Some(Version::new(m + 1, 0, 0))),
        [m, n] => (Version::new(*m, *n, 0), Some(Version::new(*m, n + 1, 0))),
        [m, n, p] => {
            let v = Version::parse(&format!("{m}.{n}.{p}{tail}"))
                .map_err(|e| bad(&format!("{word:?}: {e}")))?;
            (v, Some(Version::new(*m, *n, p + 1)))
        }
        _ => unreachable!("at most three parts"),
    };
    // `~` and `^` widen a partial or exact version further.
    let high = match (op, nums.as_slice()) {
        (Op::Tilde, [m]) => Some(Version::new(m + 1, 0, 0)),
        (Op::Tilde, [m, n, ..]) => Some(Version::new(*m, n + 1, 0)),
        (Op::Caret, [0]) => Some(Version::new(1, 0, 0)),
        (Op::Caret, [0, 0]) => Some(Version::new(0, 1, 0)),
        (Op::Caret, [0, 0, p]) => Some(Version::new(0, 0, p + 1)),
        (Op::Caret, [0, n, ..]) => Some(Version::new(0, n + 1, 0)),
        (Op::Caret, [m, ..]) => Some(Version::new(m + 1, 0, 0)),
        (Op::Tilde | Op::Caret, []) => None,
        _ => high,
    };
    Ok(Comparator {
        op,
        low,
        high,
        exact,
    })
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        if !v.pre.is_empty() && self.low.pre.is_empty() {
            return false;
        }
        let ge_low = v.cmp_precedence(&self.low) != Ordering::Less;
        let below_high = self
            .high
            .as_ref()
            .is_none_or(|h| v.cmp_precedence(&without_pre(h)) == Ordering::Less);
        let in_range = if self.exact {
            v.cmp_precedence(&self.low) == Ordering::Equal
        } else {
            ge_low && below_high
        };
        match self.op {
            Op::Eq => in_range,
            Op::Ne => !in_range,
            Op::Tilde | Op::Caret => ge_low && below_high,
            Op::Ge => ge_low,
            Op::Lt => v.cmp_precedence(&self.low) == Ordering::Less,
            Op::Gt if self.exact => v.cmp_precedence(&self.low) == Ordering::Greater,
            Op::Gt => !below_high,
            Op::Le if self.exact => v.cmp_precedence(&self.low) != Ordering::Greater,
            Op::Le => below_high,
        }
    }
}

fn without_pre(v: &Version) -> Version {
    Version {
        pre: Prerelease::EMPTY,
        ..v.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(c: &str, v: &str) -> bool {
        Constraint::parse(c)
            .unwrap()
            .matches(&Version::parse(v).unwrap())
    }

    #[test]
    fn comparators() {
        let cases = [
            ("1.2.3", "1.2.3", true),
            ("1.2.3", "1.2.4", false),
            ("=1.2", "1.2.9", true),
            ("1.2.x", "1.3.0", false),
            ("*", "9.9.9", true),
            ("!=1.2.3", "1.2.3", false),
            ("!=1.2.3", "1.2.4", true),
            (">1.2.3", "1.2.4", true),
            (">1.2", "1.2.9", false),
            (">1.2", "1.3.0", true),
            (">=1.2.3", "1.2.3", true),
            ("<2.0.0", "1.9.9", true),
            ("<2.0.0", "2.0.0", false),
            ("<=1.2", "1.2.7", true),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1", "1.9.0", true),
            ("^1.2.3", "1.9.0", true),
            ("^1.2.3", "2.0.0", false),
            ("^1.2.3", "1.2.2", false),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.4", false),
            (">= 1.0.0, < 2.0.0", "1.5.0", true),
            (">=1.0.0 <2.0.0", "2.0.0", false),
            ("1.0 - 1.4.5", "1.4.5", true),
            ("1.0 - 1.4.5", "1.4.6", false),
            ("^1.0.0 || ^3.0.0", "3.1.0", true),
            ("^1.0.0 || ^3.0.0", "2.1.0", false),
            ("v1.2.3", "1.2.3", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(ok(c, v), want, "{c} against {v}");
        }
    }

    #[test]
    fn pre_releases_only_when_asked_for() {
        assert!(!ok("^1.0.0", "1.1.0-rc.1"));
        assert!(!ok("*", "1.1.0-rc.1"));
        assert!(ok(">=1.1.0-0", "1.1.0-rc.1"));
        assert!(ok("1.1.0-rc.1", "1.1.0-rc.1"));
    }

    #[test]
    fn best_is_the_highest_match() {
        let vs: Vec<Version> = ["1.0.0", "1.4.0", "2.0.0", "1.5.0-rc.1"]
            .iter()
            .map(|v| Version::parse(v).unwrap())
            .collect();
        let c = Constraint::parse("^1.0.0").unwrap();
        assert_eq!(c.best(&vs).unwrap().to_string(), "1.4.0");
        assert!(Constraint::parse(">5").unwrap().best(&vs).is_none());
    }

    #[test]
    fn bounds_hold_every_match() {
        let b = |c: &str| {
            let (l, h) = Constraint::parse(c).unwrap().core_bounds();
            (l.map(|v| v.to_string()), h.map(|v| v.to_string()))
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(b("^5.0.0"), (s("5.0.0"), s("6.0.0")));
        assert_eq!(b(">=1.0.0 <2.0.0"), (s("1.0.0"), s("2.0.0")));
        assert_eq!(b("1.2.3"), (s("1.2.3"), s("1.2.3")));
        assert_eq!(b("^1.0.0 || ^3.0.0"), (s("1.0.0"), s("4.0.0")));
        assert_eq!(b(">=2.0.0-rc.1"), (s("2.0.0"), None));
        assert_eq!(b("*"), (s("0.0.0"), None));
        assert_eq!(b("!=1.0.0"), (None, None));
        assert_eq!(b("^1.0.0 || >=5.0.0"), (s("1.0.0"), None));
        // every version a constraint matches is within its bounds
        for c in [
            "^1.2",
            "~0.3.1",
            ">1.2 <=3",
            "1.x || 4.1.0-rc.1",
            "<=2.0.0-beta",
        ] {
            let k = Constraint::parse(c).unwrap();
            let (l, h) = k.core_bounds();
            for v in [
                "0.3.5",
                "1.2.0",
                "1.9.9",
                "2.0.0-beta",
                "3.0.0",
                "4.1.0-rc.1",
                "5.0.0",
            ] {
                let v = Version::parse(v).unwrap();
                let core = Version::new(v.major, v.minor, v.patch);
                if k.matches(&v) {
                    assert!(l.as_ref().is_none_or(|l| &core >= l), "{c} {v}");
                    assert!(h.as_ref().is_none_or(|h| &core <= h), "{c} {v}");
                }
            }
        }
    }

    #[test]
    fn refuses_nonsense() {
        for c in ["", ">>1", "1.2.3.4", "a.b", "1.x-rc", "||"] {
            assert!(Constraint::parse(c).is_err(), "{c:?} parsed");
        }
    }
}
