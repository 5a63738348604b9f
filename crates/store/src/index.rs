//! What the registry knows about each manifest beyond its bytes, recorded at push time: its
//! kind, a chart's name, version and description, its total size. Listings and search read
//! this index; nothing here is needed to serve the distribution API itself.

use wharf_oci::Digest;

/// The indexed facts of one manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactInfo {
    /// An [`wharf_oci::ArtifactKind`] name.
    pub kind: String,
    /// A chart's name (or an artifact's title).
    pub name: Option<String>,
    pub version: Option<String>,
    pub app_version: Option<String>,
    pub description: Option<String>,
    pub keywords: Vec<String>,
    /// Kind-specific details as JSON: for a chart, its Chart.yaml as JSON and the digest and
    /// size of its archive (what a chart repository index lists).
    pub details: Option<String>,
    /// The manifest and everything it names directly, in bytes.
    pub size: u64,
}

impl ArtifactInfo {
    /// [`version_key`] of the version, when it is SemVer.
    pub fn version_key(&self) -> Option<String> {
        self.version
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok())
            .map(|v| version_key(&v))
    }

    /// The lower-case text a search matches against.
    pub fn search_text(&self, repo: &str) -> String {
        let mut s = repo.to_lowercase();
        for part in [&self.name, &self.description].into_iter().flatten() {
            s.push('\n');
            s.push_str(&part.to_lowercase());
        }
        for k in &self.keywords {
            s.push('\n');
            s.push_str(&k.to_lowercase());
        }
        s
    }
}

/// Which manifests a listing or search wants. Results come in (repository, digest) order,
/// after `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    pub repository: Option<String>,
    /// Repositories whose names start with this (a namespace and its `/`).
    pub repository_prefix: Option<String>,
    pub kind: Option<String>,
    /// Lower-case text that must occur in the repository name, chart name, description or
    /// keywords.
    pub text: Option<String>,
    /// Only manifests some tag points to.
    pub tagged: bool,
    pub after: Option<(String, String)>,
    pub limit: usize,
    /// Only manifests with a SemVer version whose MAJOR.MINOR.PATCH lies within these
    /// inclusive bounds (either may be open): a pre-filter for a version range.
    pub versions: Option<(Option<semver::Version>, Option<semver::Version>)>,
}

/// A version's sort key: MAJOR.MINOR.PATCH zero-padded, so text order is version order.
pub fn version_key(v: &semver::Version) -> String {
    format!("{:020}.{:020}.{:020}", v.major, v.minor, v.patch)
}

/// One manifest as listings report it.
#[derive(Debug, Clone)]
pub struct ArtifactRecord {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub info: ArtifactInfo,
    /// Unix seconds.
    pub created: i64,
    pub tags: Vec<String>,
    /// Manifests whose subject this is.
    pub referrers: u64,
}

/// Splits the newline-joined tags a query aggregates.
pub(crate) fn split_tags(s: Option<String>) -> Vec<String> {
    let mut v: Vec<String> = s
        .map(|s| {
            s.split('\n')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A query's version bounds as keys.
pub(crate) fn bounds(q: &ArtifactQuery) -> (Option<String>, Option<String>) {
    match &q.versions {
        Some((l, h)) => (l.as_ref().map(version_key), h.as_ref().map(version_key)),
        None => (None, None),
    }
}

pub(crate) fn keywords_from(s: Option<String>) -> Vec<String> {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

pub(crate) fn keywords_to(k: &[String]) -> Option<String> {
    (!k.is_empty()).then(|| serde_json::to_string(k).expect("strings serialise"))
}
