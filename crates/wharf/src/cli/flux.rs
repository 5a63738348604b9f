//! `wharf artifact ...`: Flux manifest bundles, in the format `flux push artifact` writes, so
//! Flux's source-controller and the flux CLI read what wharf pushed and the reverse.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;
use wharf_client::flux::{BundleMeta, Difference, DEFAULT_IGNORE, DEFAULT_MAX_SIZE};
use wharf_client::{Error, NoProgress, Reference, SharedProgress};

use super::output::emit;
use super::{parse_annotations, ClientArgs};

#[derive(Subcommand, Debug)]
pub enum ArtifactCommand {
    /// Push a directory of manifests as a Flux bundle.
    #[command(after_help = "Examples:
  wharf artifact push oci://localhost:5000/manifests/app:v1.0.0 --path ./deploy \\
      --source https://github.com/org/app --revision main@sha1:4f2c0e1
  flux pull artifact oci://localhost:5000/manifests/app:v1.0.0 --output ./out   # reads it

The archive is flux's: paths relative to --path, owners and times zeroed, symlinks left
out, and by default the files flux leaves out (.git/, *.png, *.zip, ...; see --ignore-paths).")]
    Push {
        /// oci://HOST/REPO:TAG
        reference: String,
        /// The directory (or one file) to push.
        #[arg(long)]
        path: PathBuf,
        /// Where the manifests come from (org.opencontainers.image.source), usually a Git URL.
        #[arg(long)]
        source: String,
        /// Their revision (org.opencontainers.image.revision), e.g. main@sha1:4f2c0e1.
        #[arg(long)]
        revision: String,
        /// An annotation KEY=VALUE for the manifest; repeatable (--annotations, as flux
        /// spells it, works too).
        #[arg(
            short = 'a',
            long = "annotation",
            visible_alias = "annotations",
            value_name = "KEY=VALUE"
        )]
        annotations: Vec<String>,
        /// The creation time to record (RFC 3339) instead of now, for reproducible pushes.
        #[arg(long)]
        created: Option<String>,
        #[command(flatten)]
        ignore: IgnoreArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pull a bundle and unpack it into a directory.
    #[command(after_help = "Examples:
  wharf artifact pull oci://localhost:5000/manifests/app:v1.0.0 --output ./out")]
    Pull {
        /// oci://HOST/REPO:TAG or oci://HOST/REPO@DIGEST
        reference: String,
        /// The directory to unpack into (made if missing).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        limit: LimitArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a repository's bundles: tag, digest, source, revision and creation time.
    #[command(after_help = "Examples:
  wharf artifact list oci://localhost:5000/manifests/app")]
    List {
        /// oci://HOST/REPO
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give a bundle more tags.
    #[command(after_help = "Examples:
  wharf artifact tag oci://localhost:5000/manifests/app:v1.0.0 --tag latest --tag stable")]
    Tag {
        /// oci://HOST/REPO:TAG of the bundle.
        reference: String,
        /// A tag to add; repeatable.
        #[arg(short, long = "tag", required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Compare a local directory with a pushed bundle; exit 1 when they differ.
    #[command(after_help = "Examples:
  wharf artifact diff oci://localhost:5000/manifests/app:v1.0.0 --path ./deploy

Lines start with + (only in the directory), - (only in the bundle) or ~ (content or mode
differs). The directory is read with the same ignore rules as push.")]
    Diff {
        /// oci://HOST/REPO:TAG
        reference: String,
        /// The local directory.
        #[arg(long)]
        path: PathBuf,
        #[command(flatten)]
        ignore: IgnoreArg,
        #[command(flatten)]
        limit: LimitArg,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct IgnoreArg {
    /// Paths to leave out, in .gitignore syntax, comma-separated [default: flux's:
    /// .git/,.gitignore,.gitmodules,.gitattributes,*.jpg,*.jpeg,*.gif,*.png,*.wmv,*.flv,*.tar.gz,*.zip].
    #[arg(long, value_delimiter = ',', value_name = "PATTERNS")]
    ignore_paths: Option<Vec<String>>,
}

impl IgnoreArg {
    fn patterns(&self) -> Vec<String> {
        self.ignore_paths
            .clone()
            .unwrap_or_else(|| DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect())
    }
}

#[derive(Args, Debug)]
pub struct LimitArg {
    /// Refuse a bundle that expands past this many MiB (a tar or gzip bomb).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_SIZE >> 20)]
    max_size: u64,
}

/// `oci://HOST/REPO[:TAG|@DIGEST]`, as flux writes bundle locations.
fn oci_ref(s: &str) -> Result<Reference, Error> {
    s.strip_prefix("oci://")
        .ok_or_else(|| {
            Error::Reference(
                s.into(),
                "bundle locations start with oci:// (oci://HOST/REPO:TAG)".into(),
            )
        })?
        .parse()
}

fn quiet() -> SharedProgress {
    Arc::new(NoProgress)
}

pub async fn artifact(cmd: ArtifactCommand) -> Result<(), Error> {
    match cmd {
        ArtifactCommand::Push {
            reference,
            path,
            source,
            revision,
            annotations,
            created,
            ignore,
            client,
        } => {
            let r = oci_ref(&reference)?;
            let meta = BundleMeta {
                source,
                revision,
                created,
                annotations: parse_annotations(&annotations)?,
            };
            let c = client.client(&[&r])?;
            let pushed = c
                .push_bundle(&r, &path, &meta, &ignore.patterns(), &quiet())
                .await?;
            emit(client.format, &pushed, || {
                format!(
                    "Pushed {} files ({} bytes packed) to {}",
                    pushed.files, pushed.size, pushed.reference
                )
            });
            Ok(())
        }
        ArtifactCommand::Pull {
            reference,
            output,
            limit,
            client,
        } => {
            let r = oci_ref(&reference)?;
            let c = client.client(&[&r])?;
            let info = c.pull_bundle(&r, &output, limit.max_size << 20).await?;
            emit(client.format, &info, || {
                format!(
                    "Pulled {} (source {}, revision {}) into {}",
                    info.reference,
                    info.source.as_deref().unwrap_or("-"),
                    info.revision.as_deref().unwrap_or("-"),
                    output.display()
                )
            });
            Ok(())
        }
        ArtifactCommand::List { reference, client } => {
            let r = oci_ref(&reference)?;
            if r.tag.is_some() || r.digest.is_some() {
                return Err(Error::Invalid(format!(
                    "{reference}: list takes a repository (oci://HOST/REPO), without a tag"
                )));
            }
            let c = client.client(&[&r])?;
            let found = c.list_bundles(&r).await?;
            emit(client.format, &json!({ "artifacts": found }), || {
                let mut lines = vec!["TAG\tDIGEST\tSOURCE\tREVISION\tCREATED".to_string()];
                lines.extend(found.iter().map(|b| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        b.tag,
                        b.digest,
                        b.source.as_deref().unwrap_or("-"),
                        b.revision.as_deref().unwrap_or("-"),
                        b.created.as_deref().unwrap_or("-")
                    )
                }));
                lines.join("\n")
            });
            Ok(())
        }
        ArtifactCommand::Tag {
            reference,
            tags,
            client,
        } => {
            let r = oci_ref(&reference)?;
            let c = client.client(&[&r])?;
            let (desc, bytes) = c.manifest(&r).await?;
            let mut done = Vec::new();
            for t in &tags {
                let target = r.with_tag(t)?;
                c.put_manifest(&target, &desc.media_type, bytes.clone())
                    .await?;
                done.push(target.to_string());
            }
            emit(
                client.format,
                &json!({"digest": desc.digest, "tagged": done}),
                || {
                    done.iter()
                        .map(|t| format!("Tagged {t} ({})", desc.digest))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
            Ok(())
        }
        ArtifactCommand::Diff {
            reference,
            path,
            ignore,
            limit,
            client,
        } => {
            let r = oci_ref(&reference)?;
            let c = client.client(&[&r])?;
            let diff = c
                .diff_bundle(&r, &path, &ignore.patterns(), limit.max_size << 20)
                .await?;
            emit(client.format, &json!({ "differences": diff }), || {
                diff.iter()
                    .map(|d| match d {
                        Difference::Added(p) => format!("+ {p}"),
                        Difference::Removed(p) => format!("- {p}"),
                        Difference::Changed(p) => format!("~ {p}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            if diff.is_empty() {
                Ok(())
            } else if client.format == super::Format::Json {
                // The differences are the one JSON document; the exit code says they exist.
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(super::EXIT_FAILURE.into());
            } else {
                Err(Error::Invalid(format!(
                    "{} differs from {reference} in {} file{}",
                    path.display(),
                    diff.len(),
                    if diff.len() == 1 { "" } else { "s" }
                )))
            }
        }
    }
}
