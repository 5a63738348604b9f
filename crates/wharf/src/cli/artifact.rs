//! `push`, `pull`, `attach`, `discover` and `cp`: artifacts and copies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use wharf_client::artifact::{PushFile, PushRequest};
use wharf_client::copy::{CopyOptions, Platform};
use wharf_client::pull::{PullOptions, PulledKind};
use wharf_client::{Client, Error, Reference};
use wharf_oci::Descriptor;

use super::output::emit;
use super::{
    parse_annotations, parse_ref_with_tags, progress, ClientArgs, FromArgs, ToArgs, TransferArgs,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf push localhost:5000/team/config:v1 app.yaml
  wharf push registry.example.com/ml/model:v2,latest model.onnx:application/vnd.onnx \\
      --artifact-type application/vnd.example.model --annotation org.opencontainers.image.source=https://git.example/ml
  wharf push localhost:5000/site:v3 ./public          # a directory goes up as tar+gzip
  wharf push localhost:5000/app:cfg --config config.json:application/vnd.example.config+json data.bin

Files over 8 MiB start uploading while they are hashed. Their digests are remembered until the
file changes, so pushing it again skips hashing: WHARF_CACHE_DIR (default
$XDG_CACHE_HOME/wharf or ~/.cache/wharf) holds them, WHARF_NO_CACHE=1 turns this off.")]
pub struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY[:TAG[,TAG...]].
    pub reference: String,
    /// Files or directories, each optionally with its media type: FILE[:MEDIATYPE].
    #[arg(required = true)]
    pub files: Vec<String>,
    /// The artifact's type (the manifest's artifactType).
    #[arg(long)]
    pub artifact_type: Option<String>,
    /// A manifest annotation; repeat for more.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Annotations from a JSON file: {"$manifest": {...}, "$config": {...}, "<file>": {...}}.
    #[arg(long, value_name = "FILE")]
    pub annotation_file: Option<PathBuf>,
    /// A config blob instead of the empty one: FILE:MEDIATYPE.
    #[arg(long, value_name = "FILE:MEDIATYPE")]
    pub config: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf pull localhost:5000/team/config:v1 -o ./config
  wharf pull registry.example.com/ml/model@sha256:4f3c... -o models/
  wharf pull localhost:5000/charts/demo:0.1.0            # writes demo-0.1.0.tgz, as helm pull
  wharf pull --unpack --platform linux/arm64 localhost:5000/alpine:3.20 -o rootfs/

What is written depends on what the manifest holds: an artifact's files by their titles
(directories pushed by oras or wharf are unpacked), a Helm chart as NAME-VERSION.tgz (and
.prov), a Flux bundle unpacked, a container image's root filesystem with --unpack. When
nothing can be written, the command says why and exits non-zero.")]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY[:TAG|@DIGEST].
    pub reference: String,
    /// Directory to write the files into (created if missing).
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
    /// From a multi-platform index, pull this platform: OS/ARCH[/VARIANT].
    #[arg(long)]
    pub platform: Option<String>,
    /// Write a container image's layers, in order, as a root filesystem (whiteouts applied;
    /// device files skipped).
    #[arg(long)]
    pub unpack: bool,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf attach --artifact-type application/spdx+json localhost:5000/app:v1 sbom.spdx.json
  wharf attach --artifact-type application/vnd.example.review -a reviewed-by=alice registry.example.com/app@sha256:4f3c...")]
pub struct AttachArgs {
    /// The artifact type of what is attached.
    #[arg(long, required = true)]
    pub artifact_type: String,
    /// The manifest to attach to (tag or digest).
    pub subject: String,
    /// Files to attach, FILE[:MEDIATYPE]; none attaches annotations only.
    pub files: Vec<String>,
    /// An annotation of the attached manifest; repeat for more.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Annotations from a JSON file: {"$manifest": {...}, "$config": {...}, "<file>": {...}}.
    #[arg(long, value_name = "FILE")]
    pub annotation_file: Option<PathBuf>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf discover localhost:5000/app:v1
  wharf discover --artifact-type application/spdx+json --format json registry.example.com/app:v1")]
pub struct DiscoverArgs {
    /// The manifest whose referrers to list.
    pub subject: String,
    /// Only referrers of this artifact type.
    #[arg(long)]
    pub artifact_type: Option<String>,
    /// How many levels of referrers of referrers to follow.
    #[arg(long, default_value_t = 8)]
    pub depth: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf cp localhost:5000/app:v1 localhost:5000/prod/app:v1      # mounts blobs, no upload
  wharf cp -r registry.example.com/app:v1 localhost:5000/app     # with signatures and SBOMs
  wharf cp --platform linux/arm64 docker.io/library/alpine:3.20 localhost:5000/alpine:3.20-arm64")]
pub struct CopyArgs {
    /// Source: REGISTRY/REPOSITORY[:TAG|@DIGEST].
    pub source: String,
    /// Destination: REGISTRY/REPOSITORY[:TAG[,TAG...]]; without a tag, the source's tag.
    pub destination: String,
    /// Also copy referrers (signatures, SBOMs, attestations), recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// From a multi-platform index, copy only this platform: OS/ARCH[/VARIANT].
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub from: FromArgs,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `FILE[:MEDIATYPE]`: the part after the last ':' is a media type when it has a '/'.
fn parse_file(s: &str) -> PushFile {
    let (path, media_type) = match s.rsplit_once(':') {
        Some((p, mt)) if mt.contains('/') && !p.is_empty() => (p, Some(mt.to_string())),
        _ => (s, None),
    };
    PushFile {
        path: PathBuf::from(path),
        media_type,
        annotations: BTreeMap::new(),
    }
}

/// Reads `--annotation-file` and `-a`, and gives each file its own annotations.
fn build_request(
    files: &[String],
    annotations: &[String],
    annotation_file: Option<&PathBuf>,
) -> Result<PushRequest, Error> {
    let mut req = PushRequest {
        files: files.iter().map(|f| parse_file(f)).collect(),
        ..PushRequest::default()
    };
    if let Some(path) = annotation_file {
        let text = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let doc: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_slice(&text)
            .map_err(|e| {
                Error::Invalid(format!(
                    "{}: {e} (expected {{\"$manifest\": {{\"key\": \"value\"}}, ...}})",
                    path.display()
                ))
            })?;
        for (target, values) in doc {
            match target.as_str() {
                "$manifest" => req.manifest_annotations.extend(values),
                "$config" => req.config_annotations.extend(values),
                name => {
                    let f = req
                        .files
                        .iter_mut()
                        .find(|f| {
                            wharf_client::artifact::title_for(&f.path).ok().as_deref() == Some(name)
                        })
                        .ok_or_else(|| {
                            Error::Invalid(format!(
                                "{}: annotations for {name:?}, which is not being pushed",
                                path.display()
                            ))
                        })?;
                    f.annotations.extend(values);
                }
            }
        }
    }
    req.manifest_annotations
        .extend(parse_annotations(annotations)?);
    Ok(req)
}

pub async fn push(args: PushArgs) -> Result<(), Error> {
    let (r, tags) = parse_ref_with_tags(&args.reference)?;
    if r.digest.is_some() {
        return Err(Error::Invalid("push to a tag, not a digest".into()));
    }
    let client = args.client.transfer_client(&[&r], &args.transfer)?;
    let mut req = build_request(
        &args.files,
        &args.annotations,
        args.annotation_file.as_ref(),
    )?;
    req.artifact_type = args.artifact_type;
    if let Some(c) = &args.config {
        let (path, mt) = c
            .rsplit_once(':')
            .filter(|(p, mt)| !p.is_empty() && mt.contains('/'))
            .ok_or_else(|| Error::Invalid(format!("--config {c:?} is not FILE:MEDIATYPE")))?;
        req.config = Some((PathBuf::from(path), mt.to_string()));
    }
    let tags = if tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        tags
    };
    let progress = progress::for_args(&args.client, &args.transfer);
    let res = client.push_artifact(&r, &tags, req, &progress).await?;
    drop(progress);
    emit(args.client.format, &res, || {
        let mut s = String::new();
        for t in &tags {
            s.push_str(&format!("Pushed {}:{t}\n", r.name()));
        }
        s + &format!("Digest: {}", res.digest)
    });
    Ok(())
}

pub async fn pull(args: PullArgs) -> Result<(), Error> {
    let r: Reference = args.reference.parse()?;
    let client = args.client.transfer_client(&[&r], &args.transfer)?;
    let opts = PullOptions {
        platform: args
            .platform
            .as_deref()
            .map(str::parse::<Platform>)
            .transpose()?,
        unpack: args.unpack,
    };
    let progress = progress::for_args(&args.client, &args.transfer);
    let res = client.pull(&r, &args.output, &opts, &progress).await?;
    drop(progress);
    emit(args.client.format, &res, || {
        let mut s = String::new();
        match res.kind {
            PulledKind::Image => s.push_str(&format!(
                "Unpacked {} layers into {}\n",
                res.written.len(),
                args.output.display()
            )),
            _ => {
                for w in &res.written {
                    s.push_str(&format!("Wrote {}\n", w.path));
                }
            }
        }
        s + &format!("Pulled {r}\nDigest: {}", res.artifact.digest)
    });
    Ok(())
}

pub async fn attach(args: AttachArgs) -> Result<(), Error> {
    let subject: Reference = args.subject.parse()?;
    let client = args.client.transfer_client(&[&subject], &args.transfer)?;
    let desc = client.resolve(&subject).await?;
    let mut req = build_request(
        &args.files,
        &args.annotations,
        args.annotation_file.as_ref(),
    )?;
    req.artifact_type = Some(args.artifact_type);
    req.subject = Some(Descriptor {
        annotations: None,
        artifact_type: None,
        platform: None,
        data: None,
        urls: None,
        ..desc.clone()
    });
    let target = Reference {
        tag: None,
        digest: None,
        ..subject.clone()
    };
    let progress = progress::for_args(&args.client, &args.transfer);
    let res = client.push_artifact(&target, &[], req, &progress).await?;
    drop(progress);
    emit(args.client.format, &res, || {
        format!(
            "Attached to {}@{}\nDigest: {}",
            subject.name(),
            desc.digest,
            res.digest
        )
    });
    Ok(())
}

fn referrer_tree<'a>(
    client: &'a Client,
    r: &'a Reference,
    artifact_type: Option<&'a str>,
    depth: u32,
) -> futures_util::future::BoxFuture<'a, Result<Vec<Value>, Error>> {
    Box::pin(async move {
        let mut out = Vec::new();
        for d in client.referrers(r, artifact_type).await? {
            let children = if depth > 1 {
                referrer_tree(client, &r.with_digest(d.digest.clone()), None, depth - 1).await?
            } else {
                Vec::new()
            };
            let mut v = serde_json::to_value(&d).expect("descriptor serialises");
            v["referrers"] = json!(children);
            out.push(v);
        }
        Ok(out)
    })
}

fn draw_tree(nodes: &[Value], prefix: &str, out: &mut String) {
    for (i, n) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let kind = n["artifactType"].as_str().unwrap_or("(no artifact type)");
        out.push_str(&format!(
            "{prefix}{} {kind}  {}\n",
            if last { "└──" } else { "├──" },
            n["digest"].as_str().unwrap_or("")
        ));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        if let Some(children) = n["referrers"].as_array() {
            draw_tree(children, &deeper, out);
        }
    }
}

pub async fn discover(args: DiscoverArgs) -> Result<(), Error> {
    let subject: Reference = args.subject.parse()?;
    let client = args.client.client(&[&subject])?;
    let desc = client.resolve(&subject).await?;
    let at = subject.with_digest(desc.digest.clone());
    let tree = referrer_tree(
        &client,
        &at,
        args.artifact_type.as_deref(),
        args.depth.max(1),
    )
    .await?;
    let doc = json!({
        "reference": at.to_string(),
        "mediaType": desc.media_type,
        "digest": desc.digest,
        "size": desc.size,
        "referrers": tree,
    });
    emit(args.client.format, &doc, || {
        let mut s = format!("{at}\n");
        draw_tree(&tree, "", &mut s);
        s.trim_end().to_string()
    });
    Ok(())
}

pub async fn copy(args: CopyArgs) -> Result<(), Error> {
    let src: Reference = args.source.parse()?;
    let (dst, tags) = parse_ref_with_tags(&args.destination)?;
    let client = args.client.copy_client(
        Some((&src, &args.from)),
        Some((&dst, &args.to)),
        &args.transfer,
    )?;
    let opts = CopyOptions {
        referrers: args.recursive,
        platform: args
            .platform
            .as_deref()
            .map(str::parse::<Platform>)
            .transpose()?,
    };
    let progress = progress::for_args(&args.client, &args.transfer);
    let mut res = client.copy(&src, &dst, &opts, &progress).await?;
    for t in tags.iter().skip(1) {
        let (d, bytes) = client
            .manifest(&dst.with_digest(res.digest.clone()))
            .await?;
        client
            .put_manifest(&dst.with_tag(t)?, &d.media_type, bytes)
            .await?;
        res.tags.push(t.clone());
    }
    drop(progress);
    emit(args.client.format, &res, || {
        let mut s = format!("Copied {} -> {}\n", res.source, res.destination);
        for t in res.tags.iter().skip(1) {
            s.push_str(&format!("Tagged {}:{t}\n", dst.name()));
        }
        s + &format!("Digest: {}", res.digest)
    });
    Ok(())
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf backup localhost:5000/team/app:v1 -o app-v1/           # an OCI layout directory
  wharf backup localhost:5000/team/app -o team-app.tar          # every tag, as a tar
Referrers (signatures, SBOMs) are included.")]
pub struct BackupArgs {
    /// What to back up: REGISTRY/REPOSITORY[:TAG|@DIGEST]; without either, every tag.
    pub source: String,
    /// An OCI image layout directory (created or added to), or a file ending in .tar.
    #[arg(short, long, required = true)]
    pub output: PathBuf,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub from: FromArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf restore app-v1/ localhost:5000/team/app                 # every tag in the layout
  wharf restore team-app.tar registry.example.com/team/app
  wharf restore app-v1/ localhost:5000/team/app:restored        # a layout with one tag")]
pub struct RestoreArgs {
    /// An OCI image layout directory, or a tar of one.
    pub input: PathBuf,
    /// Destination repository (REGISTRY/REPOSITORY), or REPOSITORY:TAG for a one-tag layout.
    pub destination: String,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn is_tar(p: &std::path::Path) -> bool {
    p.extension().is_some_and(|e| e == "tar")
}

pub async fn backup(args: BackupArgs) -> Result<(), Error> {
    let src: Reference = args.source.parse()?;
    let client = args
        .client
        .copy_client(Some((&src, &args.from)), None, &args.transfer)?;
    let progress = progress::for_args(&args.client, &args.transfer);
    let res = if is_tar(&args.output) {
        client
            .backup_tar(&src, &args.output, true, &progress)
            .await?
    } else {
        client.backup(&src, &args.output, true, &progress).await?
    };
    drop(progress);
    emit(args.client.format, &res, || {
        format!(
            "Backed up {} ({} manifests, {} referrers) to {}",
            res.references.join(", "),
            res.manifests,
            res.referrers,
            args.output.display()
        )
    });
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> Result<(), Error> {
    let dst: Reference = args.destination.parse()?;
    let client = args
        .client
        .copy_client(None, Some((&dst, &args.to)), &args.transfer)?;
    let progress = progress::for_args(&args.client, &args.transfer);
    let unpacked;
    let dir = if is_tar(&args.input) {
        unpacked = tempfile::tempdir()?;
        let (from, to) = (args.input.clone(), unpacked.path().to_path_buf());
        tokio::task::spawn_blocking(move || wharf_client::layout::read_tar(&from, &to))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))??;
        unpacked.path().to_path_buf()
    } else {
        args.input.clone()
    };
    let res = client.restore(&dir, &dst, &progress).await?;
    drop(progress);
    emit(args.client.format, &res, || {
        let mut s = String::new();
        for r in &res.references {
            s.push_str(&format!("Restored {r}\n"));
        }
        s + &format!(
            "Restored {} manifests ({} referrers) into {}",
            res.manifests,
            res.referrers,
            dst.name()
        )
    });
    Ok(())
}
