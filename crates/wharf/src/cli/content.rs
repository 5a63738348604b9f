//! `tag`, `resolve`, `manifest`, `blob` and `repo`: the registry's content, one object at a time.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;
use wharf_client::manifests::descriptor;
use wharf_client::{Error, Reference};

use super::output::emit;
use super::{progress, ClientArgs, TransferArgs};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf tag localhost:5000/app:v1.2.3 v1.2 v1 latest
  wharf tag localhost:5000/app@sha256:4f3c... stable")]
pub struct TagArgs {
    /// The manifest to tag: REGISTRY/REPOSITORY:TAG or @DIGEST.
    pub reference: String,
    /// New tags in the same repository.
    #[arg(required = true)]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf resolve localhost:5000/app:v1
  wharf resolve --format json registry.example.com/app:latest")]
pub struct ResolveArgs {
    /// The manifest to resolve to a digest.
    pub reference: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Print a manifest (or write it to a file), byte for byte.
    #[command(after_help = "Examples:
  wharf manifest fetch localhost:5000/app:v1
  wharf manifest fetch --descriptor localhost:5000/app:v1
  wharf manifest fetch localhost:5000/app:v1 -o manifest.json
  wharf manifest fetch --platform linux/arm64 localhost:5000/alpine:3.20")]
    Fetch {
        /// The manifest: REGISTRY/REPOSITORY[:TAG|@DIGEST].
        reference: String,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print the manifest's descriptor instead of its content.
        #[arg(long)]
        descriptor: bool,
        /// From a multi-platform index, the manifest for this platform: OS/ARCH[/VARIANT].
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a manifest from a file ('-' for standard input) under a tag or digest.
    #[command(after_help = "Examples:
  wharf manifest push localhost:5000/app:v1 manifest.json
  cat index.json | wharf manifest push --media-type application/vnd.oci.image.index.v1+json localhost:5000/app:multi -")]
    Push {
        /// Where: REGISTRY/REPOSITORY:TAG, or @DIGEST for an untagged manifest.
        reference: String,
        /// The manifest file, or '-' for standard input.
        file: PathBuf,
        /// The manifest's media type [default: its mediaType field].
        #[arg(long)]
        media_type: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a manifest, and with it every tag that points to it (a tag is resolved to its
    /// digest first). To remove one tag and keep the manifest: `wharf untag`.
    #[command(after_help = "Examples:
  wharf manifest delete localhost:5000/app@sha256:4f3c...
  wharf manifest delete --force localhost:5000/app:old   # also drops every other tag of it

A manifest that tags point to is deleted only with --force, or after a yes on a terminal.")]
    Delete {
        /// The manifest: REGISTRY/REPOSITORY@DIGEST, or :TAG for the manifest it points to.
        reference: String,
        /// Delete even when tags point to the manifest (they go with it), without asking.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BlobCommand {
    /// Download a blob, verified against its digest.
    #[command(after_help = "Examples:
  wharf blob fetch localhost:5000/app@sha256:4f3c... -o layer.tar.gz
  wharf blob fetch localhost:5000/app@sha256:4f3c... -o - | tar tz")]
    Fetch {
        /// REGISTRY/REPOSITORY@DIGEST.
        reference: String,
        /// Output file, or '-' for standard output.
        #[arg(short, long, required = true)]
        output: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Upload a file as a blob; prints its digest.
    #[command(after_help = "Examples:
  wharf blob push localhost:5000/app data.bin

As with push, a file over 8 MiB starts uploading while it is hashed, and its digest is
remembered in WHARF_CACHE_DIR until it changes (WHARF_NO_CACHE=1 turns this off).")]
    Push {
        /// REGISTRY/REPOSITORY.
        reference: String,
        /// The file to upload.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Delete a blob.
    #[command(after_help = "Examples:
  wharf blob delete localhost:5000/app@sha256:4f3c...")]
    Delete {
        /// REGISTRY/REPOSITORY@DIGEST.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// List a registry's repositories.
    #[command(after_help = "Examples:
  wharf repo ls localhost:5000")]
    Ls {
        /// Registry host[:port].
        registry: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a repository's tags.
    #[command(after_help = "Examples:
  wharf repo tags localhost:5000/app")]
    Tags {
        /// REGISTRY/REPOSITORY.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn needs_digest(r: &Reference) -> Result<wharf_oci::Digest, Error> {
    r.digest.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "{r}: name the blob by digest (REPOSITORY@sha256:...)"
        ))
    })
}

pub async fn tag(args: TagArgs) -> Result<(), Error> {
    let r: Reference = args.reference.parse()?;
    let client = args.client.client(&[&r])?;
    let (d, bytes) = client.manifest(&r).await?;
    let mut tagged = Vec::new();
    for t in &args.tags {
        let target = r.with_tag(t)?;
        client
            .put_manifest(&target, &d.media_type, bytes.clone())
            .await?;
        tagged.push(target.to_string());
    }
    emit(
        args.client.format,
        &json!({"digest": d.digest, "tagged": tagged}),
        || {
            tagged
                .iter()
                .map(|t| format!("Tagged {t}"))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(())
}

pub async fn resolve(args: ResolveArgs) -> Result<(), Error> {
    let r: Reference = args.reference.parse()?;
    let d = args.client.client(&[&r])?.resolve(&r).await?;
    emit(args.client.format, &d, || d.digest.to_string());
    Ok(())
}

fn write_out(path: Option<&PathBuf>, bytes: &[u8]) -> Result<(), Error> {
    match path {
        Some(p) if p.as_os_str() != "-" => std::fs::write(p, bytes).map_err(|e| Error::file(p, e)),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}

pub async fn manifest(cmd: ManifestCommand) -> Result<(), Error> {
    match cmd {
        ManifestCommand::Fetch {
            reference,
            output,
            descriptor,
            platform,
            client,
        } => {
            let r: Reference = reference.parse()?;
            let c = client.client(&[&r])?;
            let platform = platform
                .as_deref()
                .map(str::parse::<wharf_client::copy::Platform>)
                .transpose()?;
            if descriptor && platform.is_none() {
                let d = c.resolve(&r).await?;
                let text = serde_json::to_vec_pretty(&d).expect("descriptor serialises");
                write_out(output.as_ref(), &[text.as_slice(), b"\n"].concat())
            } else if let Some(p) = platform {
                let (d, bytes) = c.manifest_for_platform(&r, Some(&p)).await?;
                if descriptor {
                    let text = serde_json::to_vec_pretty(&d).expect("descriptor serialises");
                    write_out(output.as_ref(), &[text.as_slice(), b"\n"].concat())
                } else {
                    write_out(output.as_ref(), &bytes)
                }
            } else {
                let (_, bytes) = c.manifest(&r).await?;
                write_out(output.as_ref(), &bytes)
            }
        }
        ManifestCommand::Push {
            reference,
            file,
            media_type,
            client,
        } => {
            let r: Reference = reference.parse()?;
            let c = client.client(&[&r])?;
            let bytes = if file.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v)?;
                v
            } else {
                std::fs::read(&file).map_err(|e| Error::file(&file, e))?
            };
            let mt = media_type
                .or_else(|| wharf_client::manifests::detect_media_type(&bytes))
                .ok_or_else(|| {
                    Error::Invalid("the manifest has no mediaType field; give --media-type".into())
                })?;
            let bytes = Bytes::from(bytes);
            let has_subject =
                wharf_oci::Manifest::parse(Some(&mt), &bytes).is_ok_and(|m| m.subject.is_some());
            let digest = if has_subject {
                c.put_referrer(&r, &mt, bytes).await?
            } else {
                c.put_manifest(&r, &mt, bytes).await?
            };
            emit(
                client.format,
                &json!({"reference": r.to_string(), "digest": digest, "mediaType": mt}),
                || format!("Pushed {r}\nDigest: {digest}"),
            );
            Ok(())
        }
        ManifestCommand::Delete {
            reference,
            force,
            client,
        } => {
            let r: Reference = reference.parse()?;
            let c = client.client(&[&r])?;
            let digest = match &r.digest {
                Some(d) => d.clone(),
                None => c.resolve(&r).await?.digest,
            };
            let at = r.with_digest(digest.clone());
            if !force {
                let tags = c.tags_of(&r, &digest).await?;
                if !tags.is_empty() && !confirm(&at, &tags)? {
                    return Err(Error::Invalid(format!(
                        "{at} is tagged {}; deleting the manifest deletes {}: use `wharf untag {}:{}` to remove a tag only, or --force to delete the manifest",
                        tags.join(", "),
                        if tags.len() == 1 { "that tag too" } else { "those tags too" },
                        r.name(),
                        r.tag.as_ref().filter(|t| tags.contains(t)).unwrap_or(&tags[0])
                    )));
                }
            }
            let digest = c.delete_manifest(&at).await?;
            emit(
                client.format,
                &json!({"deleted": r.with_digest(digest.clone()).to_string()}),
                || format!("Deleted {}", r.with_digest(digest.clone())),
            );
            Ok(())
        }
    }
}

/// On a terminal, asks whether to delete `at` and its `tags`; elsewhere, no.
fn confirm(at: &Reference, tags: &[String]) -> Result<bool, Error> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    eprint!(
        "{at} is tagged {}; delete the manifest and these tags? [y/N] ",
        tags.join(", ")
    );
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf untag localhost:5000/app:rc1
  wharf untag localhost:5000/app:rc1 localhost:5000/app:rc2 --format json

The manifest stays, under its digest and its other tags. Registries without a tag DELETE
(Distribution 2.8, for one) refuse, and the command says so with nothing changed.")]
pub struct UntagArgs {
    /// Tags to remove: REGISTRY/REPOSITORY:TAG, one or more.
    #[arg(required = true)]
    pub references: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn untag(args: UntagArgs) -> Result<(), Error> {
    let refs = args
        .references
        .iter()
        .map(|s| s.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let c = args.client.client(&refs.iter().collect::<Vec<_>>())?;
    let mut untagged = Vec::new();
    for r in &refs {
        c.untag(r).await?;
        untagged.push(r.to_string());
        if args.client.format == super::Format::Text {
            println!("Untagged {r}");
        }
    }
    if args.client.format == super::Format::Json {
        emit(
            args.client.format,
            &json!({"untagged": untagged}),
            String::new,
        );
    }
    Ok(())
}

pub async fn blob(cmd: BlobCommand) -> Result<(), Error> {
    match cmd {
        BlobCommand::Fetch {
            reference,
            output,
            client,
            transfer,
        } => {
            let r: Reference = reference.parse()?;
            let digest = needs_digest(&r)?;
            let c = client.transfer_client(&[&r], &transfer)?;
            let size = c
                .blob_exists(&r, &digest)
                .await?
                .ok_or_else(|| Error::NotFound(r.to_string()))?;
            let d = descriptor("application/octet-stream".into(), digest, size);
            if output.as_os_str() == "-" {
                // Verified before anything reaches stdout: fetch to a temporary file first.
                let tmp = tempfile::NamedTempFile::new()?;
                c.fetch_blob(
                    &r,
                    &d,
                    tmp.path(),
                    &(Arc::new(wharf_client::NoProgress) as _),
                )
                .await?;
                let mut f = std::fs::File::open(tmp.path())?;
                std::io::copy(&mut f, &mut std::io::stdout().lock())?;
            } else {
                let p = progress::for_args(&client, &transfer);
                c.fetch_blob(&r, &d, &output, &p).await?;
            }
            Ok(())
        }
        BlobCommand::Push {
            reference,
            file,
            client,
            transfer,
        } => {
            let r: Reference = reference.parse()?;
            let c = client.transfer_client(&[&r], &transfer)?;
            let p = progress::for_args(&client, &transfer);
            let (d, t) = c
                .push_file(&r, &file, "application/octet-stream", None, &p)
                .await?;
            drop(p);
            emit(
                client.format,
                &json!({"digest": d.digest, "size": d.size, "transfer": t}),
                || d.digest.to_string(),
            );
            Ok(())
        }
        BlobCommand::Delete { reference, client } => {
            let r: Reference = reference.parse()?;
            let digest = needs_digest(&r)?;
            client.client(&[&r])?.delete_blob(&r, &digest).await?;
            emit(client.format, &json!({"deleted": r.to_string()}), || {
                format!("Deleted {r}")
            });
            Ok(())
        }
    }
}

pub async fn repo(cmd: RepoCommand) -> Result<(), Error> {
    match cmd {
        RepoCommand::Ls { registry, client } => {
            let r = Reference::repository(&registry, "library/x")?;
            let repos = client.client(&[&r])?.catalog(&r).await?;
            emit(client.format, &json!({"repositories": repos}), || {
                repos.join("\n")
            });
            Ok(())
        }
        RepoCommand::Tags { reference, client } => {
            let r: Reference = reference.parse()?;
            let tags = client.client(&[&r])?.tags(&r).await?;
            emit(client.format, &json!({"tags": tags}), || tags.join("\n"));
            Ok(())
        }
    }
}
