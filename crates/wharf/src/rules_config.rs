//! The configuration's rule tables: per repository pattern, which tags are immutable and
//! what garbage collection keeps; per namespace, the bytes it may hold.

use serde::Deserialize;

use wharf_oci::Pattern;

fn patterns(table: &str, ps: &[String]) -> Result<Vec<Pattern>, String> {
    ps.iter()
        .map(|p| Pattern::new(p).map_err(|e| format!("{table}: {p:?}: {e}")))
        .collect()
}

/// `[[immutable_tags]]`: in the repositories matching any of `repositories`, the tags
/// matching any of `tags` keep the manifest they were first pushed with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileImmutableRule {
    pub repositories: Vec<String>,
    pub tags: Vec<String>,
}

impl FileImmutableRule {
    pub fn rule(&self) -> Result<wharf_store::ImmutableRule, String> {
        if self.repositories.is_empty() || self.tags.is_empty() {
            return Err("[[immutable_tags]]: each rule needs repositories and tags".into());
        }
        Ok(wharf_store::ImmutableRule {
            repositories: patterns("[[immutable_tags]]", &self.repositories)?,
            tags: patterns("[[immutable_tags]]", &self.tags)?,
        })
    }
}

/// `[[retention]]`: in the repositories matching any of `repositories` (the first rule that
/// matches a repository applies), garbage collection deletes all tags but the last
/// `keep_last` (ranked by `order`) and those matching `keep_tags`, and keeps untagged
/// manifests for `untagged_after_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetentionRule {
    pub repositories: Vec<String>,
    pub keep_last: Option<usize>,
    /// `pushed` (most recently pushed first) or `semver` (highest version first).
    pub order: Option<String>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    pub untagged_after_secs: Option<u64>,
}

impl FileRetentionRule {
    pub fn rule(&self) -> Result<wharf_store::RetentionRule, String> {
        const T: &str = "[[retention]]";
        if self.repositories.is_empty() {
            return Err(format!("{T}: each rule needs repositories"));
        }
        if self.keep_last.is_none() && self.untagged_after_secs.is_none() {
            return Err(format!(
                "{T}: a rule for {:?} sets neither keep_last nor untagged_after_secs",
                self.repositories
            ));
        }
        let order = match self.order.as_deref() {
            None | Some("pushed") => wharf_store::TagOrder::Pushed,
            Some("semver") => wharf_store::TagOrder::SemVer,
            Some(other) => {
                return Err(format!(
                    "{T}: order {other:?}: expected \"pushed\" or \"semver\""
                ))
            }
        };
        if self.order.is_some() && self.keep_last.is_none() {
            return Err(format!(
                "{T}: order ranks tags for keep_last, which is not set"
            ));
        }
        Ok(wharf_store::RetentionRule {
            repositories: patterns(T, &self.repositories)?,
            keep_last: self.keep_last,
            order,
            keep_tags: patterns(T, &self.keep_tags)?,
            untagged_after: self.untagged_after_secs.map(std::time::Duration::from_secs),
        })
    }
}

/// `[[quotas]]`: the repository `namespace` and everything under it may hold at most
/// `limit_bytes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuota {
    pub namespace: String,
    pub limit_bytes: u64,
}

/// The quotas of the file, each namespace a valid repository name named once.
pub fn quotas(file: &[FileQuota]) -> Result<Vec<wharf_store::Quota>, String> {
    let mut out: Vec<wharf_store::Quota> = Vec::new();
    for q in file {
        wharf_oci::validate_repository(&q.namespace)
            .map_err(|e| format!("[[quotas]]: namespace {:?}: {e}", q.namespace))?;
        if out.iter().any(|o| o.namespace == q.namespace) {
            return Err(format!(
                "[[quotas]]: namespace {:?} has two quotas",
                q.namespace
            ));
        }
        out.push(wharf_store::Quota {
            namespace: q.namespace.clone(),
            limit_bytes: q.limit_bytes,
        });
    }
    Ok(out)
}
