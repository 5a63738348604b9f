//! `wharf chart ...`: Helm charts in OCI registries, in the format `helm push` writes, so
//! helm and wharf pull each other's charts byte for byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use wharf_client::artifact::{PushFile, PushRequest};
use wharf_client::chart::{parse_oci, parse_oci_namespace, ChartArchive, FetchedChart};
use wharf_client::{Error, NoProgress, SharedProgress};

use super::output::emit;
use super::ClientArgs;

/// Artifact Hub's repository metadata: a tag, a config type and a layer type it looks for.
const ARTIFACTHUB_TAG: &str = "artifacthub.io";
const ARTIFACTHUB_CONFIG: &str = "application/vnd.cncf.artifacthub.config.v1+yaml";
const ARTIFACTHUB_LAYER: &str =
    "application/vnd.cncf.artifacthub.repository-metadata.layer.v1.yaml";

#[derive(Subcommand, Debug)]
pub enum ChartCommand {
    /// Package a chart directory into NAME-VERSION.tgz (deterministic: same input, same bytes).
    #[command(after_help = "Examples:
  wharf chart package ./mychart                   # writes ./mychart-0.1.0.tgz
  wharf chart package ./mychart -d dist/ -u       # resolve dependencies first

Chart.yaml is checked as helm checks it (apiVersion v1 or v2, a name, a SemVer 2 version);
every dependency must be in charts/ (or pass -u). .helmignore is honoured. Entry times are
SOURCE_DATE_EPOCH when set, else 0.")]
    Package {
        /// The chart directory (with Chart.yaml).
        dir: PathBuf,
        /// Where to write the archive.
        #[arg(short, long, default_value = ".")]
        destination: PathBuf,
        /// Run `dependency update` first.
        #[arg(short = 'u', long)]
        dependency_update: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Push NAME-VERSION.tgz to oci://HOST/NAMESPACE as NAMESPACE/NAME:VERSION, as helm does.
    #[command(after_help = "Examples:
  wharf chart push mychart-0.1.0.tgz oci://localhost:5000/charts
  helm pull oci://localhost:5000/charts/mychart --version 0.1.0   # the same bytes back

CHART.tgz.prov beside the archive is pushed as its provenance layer. A '+' in the version
is stored as '_' in the tag (OCI tags have no '+').")]
    Push {
        /// The packaged chart.
        chart: PathBuf,
        /// oci://HOST/NAMESPACE
        remote: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pull a chart as NAME-VERSION.tgz (or unpacked with --untar).
    #[command(after_help = "Examples:
  wharf chart pull oci://localhost:5000/charts/mychart                 # the newest release
  wharf chart pull oci://localhost:5000/charts/mychart --version '^1.2'
  wharf chart pull oci://localhost:5000/charts/mychart:1.2.3 --untar -d ./src")]
    Pull {
        /// oci://HOST/NAMESPACE/NAME[:VERSION]
        reference: String,
        #[command(flatten)]
        version: VersionArg,
        /// Unpack into DESTINATION/NAME instead of writing the archive.
        #[arg(long)]
        untar: bool,
        /// The directory to write into.
        #[arg(short, long, default_value = ".")]
        destination: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a chart's Chart.yaml, values, README or CRDs (from a registry or a local .tgz).
    #[command(after_help = "Examples:
  wharf chart show values oci://localhost:5000/charts/mychart --version 1.2.3
  wharf chart show all ./mychart-1.2.3.tgz")]
    Show {
        /// What to print.
        #[arg(value_enum)]
        what: ShowWhat,
        /// oci://HOST/NAMESPACE/NAME[:VERSION], or a chart .tgz file.
        reference: String,
        #[command(flatten)]
        version: VersionArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unpack a chart from a registry into DIR/NAME (what `helm chart export` did).
    #[command(after_help = "Examples:
  wharf chart export oci://localhost:5000/charts/mychart:1.2.3 ./out   # ./out/mychart/")]
    Export {
        /// oci://HOST/NAMESPACE/NAME[:VERSION]
        reference: String,
        /// The directory to unpack into.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        version: VersionArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Search the charts a registry holds (Wharf's search extension), like helm search repo.
    Search(super::search::ChartSearchArgs),
    /// Resolve a chart's dependencies into charts/ (oci:// and file:// repositories).
    #[command(subcommand)]
    Dependency(DependencyCommand),
    /// Artifact Hub repository metadata (artifacthub-repo.yml).
    #[command(subcommand, name = "repo-metadata")]
    RepoMetadata(RepoMetadataCommand),
}

#[derive(Args, Debug)]
pub struct VersionArg {
    /// A version, or a constraint such as ^1.2 (default: the newest release).
    #[arg(long)]
    version: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DependencyCommand {
    /// Resolve each dependency to the newest allowed version, download it, write Chart.lock.
    #[command(after_help = "Examples:
  wharf chart dependency update ./mychart

Chart.yaml:
  dependencies:
    - name: common
      version: ^1.2.0
      repository: oci://localhost:5000/charts")]
    Update {
        /// The chart directory (with Chart.yaml).
        dir: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download exactly what Chart.lock names (update when there is no lock).
    #[command(after_help = "Examples:
  wharf chart dependency build ./mychart")]
    Build {
        /// The chart directory (with Chart.yaml and, usually, Chart.lock).
        dir: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RepoMetadataCommand {
    /// Push artifacthub-repo.yml to REPOSITORY:artifacthub.io, where Artifact Hub reads it.
    #[command(after_help = "Examples:
  wharf chart repo-metadata push artifacthub-repo.yml oci://localhost:5000/charts/mychart")]
    Push {
        /// The metadata file (artifacthub-repo.yml).
        file: PathBuf,
        /// oci://HOST/NAMESPACE: the repository Artifact Hub indexes (for a chart, the
        /// chart's own repository).
        remote: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ShowWhat {
    Chart,
    Values,
    Readme,
    Crds,
    All,
}

fn quiet() -> SharedProgress {
    Arc::new(NoProgress)
}

pub async fn chart(cmd: ChartCommand) -> Result<(), Error> {
    match cmd {
        ChartCommand::Package {
            dir,
            destination,
            dependency_update,
            client,
        } => {
            if dependency_update {
                dependency_client(&client, &dir)?
                    .dependency_update(&dir)
                    .await?;
            }
            let (meta, path) = tokio::task::spawn_blocking(move || {
                wharf_client::chart::package(&dir, &destination)
            })
            .await
            .map_err(|e| Error::Invalid(e.to_string()))??;
            emit(
                client.format,
                &json!({"name": meta.name, "version": meta.version, "path": path}),
                || {
                    format!(
                        "Successfully packaged chart and saved it to: {}",
                        path.display()
                    )
                },
            );
            Ok(())
        }
        ChartCommand::Push {
            chart,
            remote,
            client,
        } => {
            let (host, ns) = parse_oci_namespace(&remote)?;
            let probe = wharf_client::Reference::repository(&host, "probe")?;
            let c = client.client(&[&probe])?;
            let pushed = c.push_chart(&host, &ns, &chart, &quiet()).await?;
            emit(client.format, &pushed, || {
                format!("Pushed: {}\nDigest: {}", pushed.reference, pushed.digest)
            });
            Ok(())
        }
        ChartCommand::Pull {
            reference,
            version,
            untar,
            destination,
            client,
        } => {
            let fetched = fetch(&client, &reference, version.version.as_deref()).await?;
            let written = if untar {
                std::fs::create_dir_all(&destination)?;
                vec![fetched.archive.extract(&destination)?]
            } else {
                fetched.save(&destination)?
            };
            report(&client, &fetched, &written);
            Ok(())
        }
        ChartCommand::Export {
            reference,
            dir,
            version,
            client,
        } => {
            let fetched = fetch(&client, &reference, version.version.as_deref()).await?;
            std::fs::create_dir_all(&dir)?;
            let written = vec![fetched.archive.extract(&dir)?];
            report(&client, &fetched, &written);
            Ok(())
        }
        ChartCommand::Show {
            what,
            reference,
            version,
            client,
        } => {
            let archive = if reference.starts_with("oci://") {
                fetch(&client, &reference, version.version.as_deref())
                    .await?
                    .archive
            } else {
                ChartArchive::read_path(std::path::Path::new(&reference))?.0
            };
            print!("{}", show(&archive, what));
            Ok(())
        }
        ChartCommand::Dependency(d) => {
            let (dir, client, update) = match d {
                DependencyCommand::Update { dir, client } => (dir, client, true),
                DependencyCommand::Build { dir, client } => (dir, client, false),
            };
            let c = dependency_client(&client, &dir)?;
            let done = match update {
                true => c.dependency_update(&dir).await?,
                false => c.dependency_build(&dir).await?,
            };
            emit(client.format, &json!({ "dependencies": done }), || {
                if done.is_empty() {
                    return format!("{} has no dependencies", dir.display());
                }
                done.iter()
                    .map(|d| {
                        format!(
                            "Saved {} {} from {} to {}",
                            d.name, d.version, d.repository, d.path
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        ChartCommand::Search(args) => super::search::chart_search(args).await,
        ChartCommand::RepoMetadata(RepoMetadataCommand::Push {
            file,
            remote,
            client,
        }) => repo_metadata_push(&file, &remote, &client).await,
    }
}

/// A client with the command's credentials for every registry the dependencies are on.
fn dependency_client(client: &ClientArgs, dir: &Path) -> Result<wharf_client::Client, Error> {
    let refs = wharf_client::chart::deps::dependency_registries(dir)?;
    client.client(&refs.iter().collect::<Vec<_>>())
}

async fn fetch(
    client: &ClientArgs,
    reference: &str,
    version: Option<&str>,
) -> Result<FetchedChart, Error> {
    let r = parse_oci(reference)?;
    client.client(&[&r])?.fetch_chart(&r, version).await
}

fn report(client: &ClientArgs, fetched: &FetchedChart, written: &[PathBuf]) {
    let meta = &fetched.archive.meta;
    emit(
        client.format,
        &json!({"reference": fetched.reference.to_string(), "digest": fetched.digest,
                "name": meta.name, "version": meta.version, "written": written}),
        || {
            format!(
                "Pulled: {}\nDigest: {}\nWrote: {}",
                fetched.reference,
                fetched.digest,
                written
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    );
}

/// What `helm show` prints: the files themselves, `---` between parts.
fn show(a: &ChartArchive, what: ShowWhat) -> String {
    let text = |b: &[u8]| {
        let mut s = String::from_utf8_lossy(b).into_owned();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    };
    let chart = a.file("Chart.yaml").map(text).unwrap_or_default();
    let values = a.file("values.yaml").map(text).unwrap_or_default();
    let readme = a
        .files
        .iter()
        .find(|(p, _)| {
            let l = p.to_ascii_lowercase();
            matches!(l.as_str(), "readme.md" | "readme.txt" | "readme")
        })
        .map(|(_, d)| text(d))
        .unwrap_or_default();
    let crds: Vec<String> = a
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("crds/") && !p.ends_with('/'))
        .map(|(_, d)| text(d))
        .collect();
    match what {
        ShowWhat::Chart => chart,
        ShowWhat::Values => values,
        ShowWhat::Readme => readme,
        ShowWhat::Crds => crds.iter().map(|c| format!("---\n{c}")).collect(),
        ShowWhat::All => {
            let mut parts = vec![chart, values];
            if !readme.is_empty() {
                parts.push(readme);
            }
            parts.extend(crds);
            parts.join("---\n")
        }
    }
}

async fn repo_metadata_push(file: &Path, remote: &str, client: &ClientArgs) -> Result<(), Error> {
    let bytes = std::fs::read(file).map_err(|e| Error::file(file, e))?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: not YAML: {e}", file.display())))?;
    let Some(map) = doc.as_mapping() else {
        return Err(Error::Invalid(format!(
            "{}: Artifact Hub repository metadata is a mapping (repositoryID, owners, ignore)",
            file.display()
        )));
    };
    if let Some(owners) = map.get("owners") {
        let ok = owners.as_sequence().is_some_and(|s| {
            s.iter()
                .all(|o| o.get("email").and_then(|e| e.as_str()).is_some())
        });
        if !ok {
            return Err(Error::Invalid(format!(
                "{}: owners must be a list of entries with an email",
                file.display()
            )));
        }
    }
    let r = parse_oci(remote)?;
    if r.tag.is_some() || r.digest.is_some() {
        return Err(Error::Invalid(format!(
            "{remote}: give the repository only; the metadata goes under the tag {ARTIFACTHUB_TAG}"
        )));
    }
    let empty = tempfile::NamedTempFile::new()?;
    let req = PushRequest {
        files: vec![PushFile {
            path: file.to_path_buf(),
            media_type: Some(ARTIFACTHUB_LAYER.into()),
            annotations: Default::default(),
        }],
        config: Some((empty.path().to_path_buf(), ARTIFACTHUB_CONFIG.into())),
        ..PushRequest::default()
    };
    let c = client.client(&[&r])?;
    let res = c
        .push_artifact(&r, &[ARTIFACTHUB_TAG.to_string()], req, &quiet())
        .await?;
    emit(client.format, &res, || {
        format!("Pushed: {}\nDigest: {}", res.reference, res.digest)
    });
    Ok(())
}
