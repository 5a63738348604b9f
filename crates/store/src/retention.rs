//! Retention: per repository pattern, which tags garbage collection deletes (all but the
//! last N, by push time or by SemVer, except those matching keep patterns and immutable
//! ones) and how long untagged manifests are kept. What a deleted tag leaves untagged is then
//! collected like any untagged manifest, so the referrers (signatures, SBOMs) of what stays
//! stay with it, and the children of a kept index stay with the index.

use std::time::Duration;

use wharf_oci::{Digest, Pattern};

use crate::immutable::{is_immutable, ImmutableRule};

/// How "the last N tags" are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// Most recently pushed first.
    Pushed,
    /// Highest SemVer version first; tags that are not versions are not ranked (and kept).
    SemVer,
}

/// `[[retention]]`: what garbage collection keeps in the repositories matching any of
/// `repositories`. The first rule matching a repository is the one that applies.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    pub repositories: Vec<Pattern>,
    /// Keep this many tags (ranked by `order`) besides those `keep_tags` match; `None`
    /// deletes no tags.
    pub keep_last: Option<usize>,
    pub order: TagOrder,
    /// Tags always kept, and not counted among the last N.
    pub keep_tags: Vec<Pattern>,
    /// Untagged manifests are kept this long after their last push (never less than the
    /// collection's grace period); `None` leaves it to the grace period.
    pub untagged_after: Option<Duration>,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub tag: String,
    pub digest: Digest,
    /// When the tag was last pushed, Unix seconds.
    pub updated_at: i64,
}

/// The rule that applies to `repo`: the first that matches it.
pub fn rule_for<'r>(rules: &'r [RetentionRule], repo: &str) -> Option<&'r RetentionRule> {
    rules
        .iter()
        .find(|r| r.repositories.iter().any(|p| p.matches(repo)))
}

/// The tags of `repo` that `rule` lets go: beyond the last `keep_last`, not matching
/// `keep_tags`, and not immutable.
pub fn expired_tags<'t>(
    rule: &RetentionRule,
    immutable: &[ImmutableRule],
    repo: &str,
    tags: &'t [TagRecord],
) -> Vec<&'t TagRecord> {
    let Some(keep_last) = rule.keep_last else {
        return Vec::new();
    };
    let ranked_tags = tags
        .iter()
        .filter(|t| !rule.keep_tags.iter().any(|p| p.matches(&t.tag)));
    let mut ranked: Vec<(&TagRecord, Option<semver::Version>)> = match rule.order {
        TagOrder::Pushed => ranked_tags.map(|t| (t, None)).collect(),
        TagOrder::SemVer => ranked_tags
            .filter_map(|t| tag_version(&t.tag).map(|v| (t, Some(v))))
            .collect(),
    };
    // Newest (or highest) first; ties broken by name so that a pass is repeatable.
    ranked.sort_by(|(a, va), (b, vb)| {
        vb.cmp(va)
            .then(b.updated_at.cmp(&a.updated_at))
            .then(b.tag.cmp(&a.tag))
    });
    ranked
        .into_iter()
        .skip(keep_last)
        .map(|(t, _)| t)
        .filter(|t| !is_immutable(immutable, repo, &t.tag))
        .collect()
}

/// A tag read as a SemVer version: `1.2.3`, `v1.2.3`, and helm's `1.2.3_build` for
/// `1.2.3+build` (a tag cannot hold a `+`).
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    semver::Version::parse(&t.replace('_', "+")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    fn tag(name: &str, at: i64) -> TagRecord {
        TagRecord {
            tag: name.into(),
            digest: Digest::sha256_of(name.as_bytes()),
            updated_at: at,
        }
    }

    fn rule(keep_last: Option<usize>, order: TagOrder, keep: &[&str]) -> RetentionRule {
        RetentionRule {
            repositories: vec![p("dev/**")],
            keep_last,
            order,
            keep_tags: keep.iter().map(|k| p(k)).collect(),
            untagged_after: None,
        }
    }

    fn names(v: Vec<&TagRecord>) -> Vec<&str> {
        let mut n: Vec<&str> = v.iter().map(|t| t.tag.as_str()).collect();
        n.sort();
        n
    }

    #[test]
    fn the_last_pushed_stay_and_keep_patterns_are_not_counted() {
        let tags = [
            tag("a", 10),
            tag("b", 20),
            tag("latest", 5),
            tag("c", 30),
            tag("d", 30),
        ];
        let r = rule(Some(2), TagOrder::Pushed, &["latest"]);
        // c and d share a second: the name breaks the tie, the same way every pass.
        assert_eq!(names(expired_tags(&r, &[], "dev/app", &tags)), ["a", "b"]);
        let r = rule(Some(0), TagOrder::Pushed, &[]);
        assert_eq!(expired_tags(&r, &[], "dev/app", &tags).len(), 5);
        let r = rule(None, TagOrder::Pushed, &[]);
        assert!(expired_tags(&r, &[], "dev/app", &tags).is_empty());
    }

    #[test]
    fn semver_ranks_versions_and_leaves_other_tags_alone() {
        let tags = [
            tag("v1.10.0", 1),
            tag("v1.9.0", 9),
            tag("1.2.0", 8),
            tag("2.0.0-rc.1", 7),
            tag("2.0.0_build.5", 2),
            tag("latest", 0),
            tag("nightly", 0),
        ];
        let r = rule(Some(2), TagOrder::SemVer, &[]);
        // 2.0.0+build.5 > 2.0.0-rc.1 > 1.10.0 > 1.9.0 > 1.2.0; not-versions are never ranked.
        assert_eq!(
            names(expired_tags(&r, &[], "dev/app", &tags)),
            ["1.2.0", "v1.10.0", "v1.9.0"]
        );
    }

    #[test]
    fn immutable_tags_are_never_expired() {
        let tags = [tag("v1", 1), tag("v2", 2), tag("v3", 3)];
        let immutable = [ImmutableRule {
            repositories: vec![p("dev/**")],
            tags: vec![p("v1")],
        }];
        let r = rule(Some(1), TagOrder::Pushed, &[]);
        assert_eq!(
            names(expired_tags(&r, &immutable, "dev/app", &tags)),
            ["v2"]
        );
    }

    #[test]
    fn the_first_matching_rule_applies() {
        let mut first = rule(Some(1), TagOrder::Pushed, &[]);
        first.repositories = vec![p("dev/keep/*")];
        let rules = [first, rule(Some(5), TagOrder::SemVer, &[])];
        assert_eq!(rule_for(&rules, "dev/keep/x").unwrap().keep_last, Some(1));
        assert_eq!(rule_for(&rules, "dev/other").unwrap().keep_last, Some(5));
        assert!(rule_for(&rules, "prod/app").is_none());
    }
}
