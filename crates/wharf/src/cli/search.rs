//! `wharf search` and `wharf chart search`: Wharf's search extension, across the
//! repositories the caller may pull.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;
use wharf_client::search::{Found, SearchQuery};
use wharf_client::{Error, Reference};

use super::output::emit;
use super::ClientArgs;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf search nginx --registry localhost:5000
  wharf search '' --kind helm-chart --registry localhost:5000        # every chart
  wharf search redis --kind helm-chart --version '^17' --registry localhost:5000

Searches repository names, chart names, descriptions and keywords (case-insensitive) in
the repositories you may pull. Kinds: image, image-index, helm-chart, flux-bundle,
signature, attestation, sbom, other. A Wharf extension: other registries do not have it.")]
pub struct SearchArgs {
    /// Text to look for (empty: everything).
    pub text: String,
    #[command(flatten)]
    pub common: SearchCommon,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchCommon {
    /// The registry to search.
    #[arg(long, env = "WHARF_REGISTRY", value_name = "HOST[:PORT]")]
    pub registry: String,
    /// Only versions in this range (charts), e.g. ^1.2 or ">=1.0.0 <2.0.0".
    #[arg(long)]
    pub version: Option<String>,
    /// At most this many results.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf chart search redis --registry localhost:5000
  wharf chart search '' --versions --registry localhost:5000   # every version of every chart

Like `helm search repo`, for charts stored as OCI artifacts.")]
pub struct ChartSearchArgs {
    /// Text to look for in chart names, descriptions, keywords and repositories.
    pub text: String,
    #[command(flatten)]
    pub common: SearchCommon,
    /// Every version, not only the newest of each chart.
    #[arg(long)]
    pub versions: bool,
}

async fn run_search(
    c: &SearchCommon,
    text: &str,
    kind: Option<String>,
) -> Result<Vec<Found>, Error> {
    if let Some(k) = &kind {
        k.parse::<wharf_oci::ArtifactKind>()
            .map_err(Error::Invalid)?;
    }
    let r = Reference::repository(&c.registry, "search")?;
    let client = c.client.client(&[&r])?;
    client
        .search(
            &r,
            &SearchQuery {
                text: text.to_string(),
                kind,
                version: c.version.clone(),
                limit: c.limit,
            },
        )
        .await
}

pub async fn search(args: SearchArgs) -> Result<(), Error> {
    let found = run_search(&args.common, &args.text, args.kind.clone()).await?;
    emit(
        args.common.client.format,
        &json!({ "results": found }),
        || {
            if found.is_empty() {
                return "no results".into();
            }
            let mut lines = vec!["REPOSITORY\tKIND\tTAGS\tSIZE\tCREATED\tDIGEST".to_string()];
            lines.extend(found.iter().map(|f| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    f.repository,
                    f.kind,
                    if f.tags.is_empty() {
                        "-".into()
                    } else {
                        f.tags.join(",")
                    },
                    f.size,
                    f.created,
                    f.digest
                )
            }));
            lines.join("\n")
        },
    );
    Ok(())
}

pub async fn chart_search(args: ChartSearchArgs) -> Result<(), Error> {
    let mut found = run_search(&args.common, &args.text, Some("helm-chart".into())).await?;
    let version = |f: &Found| {
        f.version
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok())
    };
    found.sort_by(|a, b| {
        a.repository
            .cmp(&b.repository)
            .then_with(|| match (version(b), version(a)) {
                (Some(x), Some(y)) => x.cmp_precedence(&y),
                _ => std::cmp::Ordering::Equal,
            })
    });
    if !args.versions {
        let mut seen = BTreeMap::new();
        found.retain(|f| seen.insert(f.repository.clone(), ()).is_none());
    }
    let registry = args.common.registry.clone();
    emit(
        args.common.client.format,
        &json!({ "charts": found }),
        || {
            if found.is_empty() {
                return "no charts found".into();
            }
            let mut lines = vec!["NAME\tCHART VERSION\tAPP VERSION\tDESCRIPTION".to_string()];
            lines.extend(found.iter().map(|f| {
                format!(
                    "oci://{registry}/{}\t{}\t{}\t{}",
                    f.repository,
                    f.version.as_deref().unwrap_or("-"),
                    f.app_version.as_deref().unwrap_or(""),
                    f.description.as_deref().unwrap_or("")
                )
            }));
            lines.join("\n")
        },
    );
    Ok(())
}
