//! Tag immutability: in the repositories a rule names, tags matching its patterns keep the
//! manifest they were first written with. Moving such a tag, deleting it, or deleting the
//! manifest it names is refused whatever the caller's rights; pushing the same manifest to
//! it again is not a move and succeeds.

use wharf_oci::Pattern;

/// `[[immutable_tags]]`: tags matching any of `tags`, in repositories matching any of
/// `repositories`.
#[derive(Debug, Clone)]
pub struct ImmutableRule {
    pub repositories: Vec<Pattern>,
    pub tags: Vec<Pattern>,
}

/// Whether `tag` of `repo` is immutable under `rules`.
pub fn is_immutable(rules: &[ImmutableRule], repo: &str, tag: &str) -> bool {
    rules.iter().any(|r| {
        r.repositories.iter().any(|p| p.matches(repo)) && r.tags.iter().any(|p| p.matches(tag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_repositories_and_tags() {
        let p = |s: &str| Pattern::new(s).unwrap();
        let rules = [ImmutableRule {
            repositories: vec![p("prod/**")],
            tags: vec![p("v*"), p("release-*")],
        }];
        assert!(is_immutable(&rules, "prod/team/app", "v1.2.3"));
        assert!(is_immutable(&rules, "prod/app", "release-7"));
        assert!(!is_immutable(&rules, "prod/app", "latest"));
        assert!(!is_immutable(&rules, "dev/app", "v1"));
        assert!(!is_immutable(&[], "prod/app", "v1"));
    }
}
