//! `key generate`, `sign`, `verify` and `promote`: cosign's formats, key-based and offline (no
//! transparency log is reachable from here; as `cosign sign --tlog-upload=false` and
//! `cosign verify --insecure-ignore-tlog`).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use wharf_client::signatures::Storage;
use wharf_client::{Client, Error, Reference};
use wharf_oci::{Manifest, ManifestKind};
use wharf_sign::{PrivateKey, PublicKey};

use super::output::emit;
use super::{parse_annotations, ClientArgs, Format};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make an ECDSA P-256 key pair that cosign reads: PREFIX.key (encrypted) and PREFIX.pub.
    #[command(after_help = "Examples:
  wharf key generate                                   # cosign.key and cosign.pub
  wharf key generate --output-key-prefix release
  echo \"$KEY_PASSWORD\" | wharf key generate --password-stdin --output-key-prefix ci

The password comes from --password-stdin, else WHARF_PASSWORD, else COSIGN_PASSWORD, else a
prompt on a terminal. An empty password is allowed, as cosign allows it.")]
    Generate {
        /// Write PREFIX.key and PREFIX.pub.
        #[arg(long, default_value = "cosign", value_name = "PREFIX")]
        output_key_prefix: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf sign --key cosign.key localhost:5000/app:v1
  wharf sign --key env://SIGNING_KEY -a env=prod localhost:5000/app@sha256:4f3c...
  wharf sign --key cosign.key --referrers localhost:5000/app:v1   # an OCI 1.1 referrer
  wharf sign --key cosign.key --bundle localhost:5000/app:v1      # a Sigstore bundle
  wharf sign --key cosign.key --recursive localhost:5000/app:multi  # the index and each manifest

A tag is resolved to its digest first, and the digest is what is signed. The signature is
stored as cosign stores it: a layer appended to the sha256-<hex>.sig tag, with
--referrers a referrer of the signed manifest, or with --bundle a Sigstore bundle referrer
(cosign sign --new-bundle-format). No transparency log is used.")]
pub struct SignArgs {
    #[command(flatten)]
    pub signing_key: SigningKeyArgs,
    /// Manifests to sign: REGISTRY/REPOSITORY[:TAG|@DIGEST].
    #[arg(required = true)]
    pub references: Vec<String>,
    /// An annotation written into the signed payload; repeat for more.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Store the signature as an OCI 1.1 referrer instead of the .sig tag.
    #[arg(long)]
    pub referrers: bool,
    /// Store it as a Sigstore bundle, an OCI 1.1 referrer (cosign's --new-bundle-format);
    /// such a signature carries no -a annotations.
    #[arg(long)]
    pub bundle: bool,
    /// Also sign every manifest an index lists.
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf verify --key cosign.pub localhost:5000/app:v1
  wharf verify --key https://keys.example.com/release.pub -a env=prod localhost:5000/app:v1
  wharf verify --key cosign.pub --format json localhost:5000/app@sha256:4f3c...
  wharf verify --policy policy.toml localhost:5000/prod/app:v1 localhost:5000/prod/api:v2

Every signature (from the .sig tag, from referrers and from Sigstore bundles) is checked
and printed with its result; the exit code is 0 only when at least one is valid (5 otherwise). Offline: no
transparency log is consulted, as with cosign verify --insecure-ignore-tlog.")]
pub struct VerifyArgs {
    /// The public key: a file, env://VAR holding its PEM, or an https:// URL.
    #[arg(
        long,
        value_name = "KEY",
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    pub key: Option<String>,
    /// Check against a policy file instead (rules per repository pattern: keys, annotations,
    /// attestation types; docs/signing.md).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Manifests to verify.
    #[arg(required = true)]
    pub references: Vec<String>,
    /// An annotation the signed payload must carry; repeat for more.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The private key a command signs with, and where its password comes from.
#[derive(Args, Debug)]
pub struct SigningKeyArgs {
    /// The private key: a file, or env://VAR holding its PEM.
    #[arg(long, required = true, value_name = "KEY")]
    pub key: String,
    /// Read the key's password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

impl SigningKeyArgs {
    pub(super) fn load(&self) -> Result<PrivateKey, Error> {
        private_key(&self.key, self.password_stdin)
    }
}

/// A key argument's text: a file, or `env://VAR`.
fn key_text(spec: &str) -> Result<String, Error> {
    if let Some(var) = spec.strip_prefix("env://") {
        return std::env::var(var)
            .map_err(|_| Error::Invalid(format!("--key {spec}: {var} is not set")));
    }
    std::fs::read_to_string(spec).map_err(|e| Error::file(spec, e))
}

/// The key password: --password-stdin, WHARF_PASSWORD, COSIGN_PASSWORD, or a prompt.
fn password(stdin: bool, confirm: bool) -> Result<zeroize::Zeroizing<String>, Error> {
    if stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        return Ok(s.trim_end_matches(['\r', '\n']).to_string().into());
    }
    for var in ["WHARF_PASSWORD", "COSIGN_PASSWORD"] {
        if let Ok(p) = std::env::var(var) {
            return Ok(p.into());
        }
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Invalid(
            "no key password: give --password-stdin, WHARF_PASSWORD or COSIGN_PASSWORD (it may be empty)"
                .into(),
        ));
    }
    let p = rpassword::prompt_password("Password for the private key: ")?;
    if confirm && rpassword::prompt_password("Again: ")? != p {
        return Err(Error::Invalid("the two passwords differ".into()));
    }
    Ok(p.into())
}

/// Where `--referrers` and `--bundle` put a signature or attestation.
pub(super) fn storage(referrers: bool, bundle: bool) -> Storage {
    match (bundle, referrers) {
        (true, _) => Storage::Bundle,
        (false, true) => Storage::Referrer,
        (false, false) => Storage::Tag,
    }
}

pub(super) fn sign_error(e: wharf_sign::Error) -> Error {
    Error::Invalid(e.to_string())
}

pub fn key(cmd: KeyCommand) -> Result<(), Error> {
    let KeyCommand::Generate {
        output_key_prefix,
        password_stdin,
        force,
    } = cmd;
    let (key_path, pub_path) = (
        PathBuf::from(format!("{output_key_prefix}.key")),
        PathBuf::from(format!("{output_key_prefix}.pub")),
    );
    for p in [&key_path, &pub_path] {
        if p.exists() && !force {
            return Err(Error::Invalid(format!(
                "{} exists: pass --force to replace it",
                p.display()
            )));
        }
    }
    let pw = password(password_stdin, true)?;
    let key = PrivateKey::generate();
    let sealed = key.to_encrypted_pem(pw.as_bytes()).map_err(sign_error)?;
    write_private(&key_path, sealed.as_bytes())?;
    std::fs::write(&pub_path, key.public_key().to_pem()).map_err(|e| Error::file(&pub_path, e))?;
    eprintln!(
        "Private key written to {}\nPublic key written to {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes a secret readable by its owner only, replacing what was there.
fn write_private(path: &PathBuf, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::file(path, e))?;
    f.write_all(bytes).map_err(|e| Error::file(path, e))?;
    f.sync_all().map_err(|e| Error::file(path, e))
}

/// Reads a private key, asking for its password only when it is encrypted.
fn private_key(spec: &str, password_stdin: bool) -> Result<PrivateKey, Error> {
    let text = key_text(spec)?;
    let pw = if text.contains("ENCRYPTED") {
        password(password_stdin, false)?
    } else {
        String::new().into()
    };
    PrivateKey::from_pem(&text, pw.as_bytes())
        .map_err(|e| Error::Invalid(format!("--key {spec}: {e}")))
}

pub(super) async fn public_key(client: &Client, spec: &str) -> Result<PublicKey, Error> {
    let text = if spec.starts_with("https://") {
        client.fetch_key_text(spec).await?
    } else {
        key_text(spec)?
    };
    PublicKey::from_pem(&text).map_err(|e| Error::Invalid(format!("--key {spec}: {e}")))
}

pub async fn sign(args: SignArgs) -> Result<(), Error> {
    let key = args.signing_key.load()?;
    let annotations = parse_annotations(&args.annotations)?;
    let refs = args
        .references
        .iter()
        .map(|s| s.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = args.client.client(&refs.iter().collect::<Vec<_>>())?;
    let storage = storage(args.referrers, args.bundle);
    let mut done = Vec::new();
    for r in &refs {
        let mut targets = vec![r.clone()];
        if args.recursive {
            let (d, bytes) = client.manifest(r).await?;
            let m = Manifest::parse(Some(&d.media_type), &bytes)?;
            if m.kind == ManifestKind::Index {
                targets.extend(m.manifests.iter().map(|c| r.with_digest(c.digest.clone())));
            }
        }
        for t in targets {
            let s = client.sign(&t, &key, &annotations, storage).await?;
            if args.client.format == Format::Text {
                println!("Signed {} (signature in {})", s.signed, s.signature);
            }
            done.push(s);
        }
    }
    if args.client.format == Format::Json {
        emit(args.client.format, &json!({ "signed": done }), String::new);
    }
    Ok(())
}

async fn verify_policy(args: &VerifyArgs, path: &std::path::Path) -> Result<(), Error> {
    let policy = crate::policy_file::load(path).map_err(Error::Invalid)?;
    let refs = args
        .references
        .iter()
        .map(|s| s.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = args.client.client(&refs.iter().collect::<Vec<_>>())?;
    let mut failures = Vec::new();
    let mut results = Vec::new();
    for r in &refs {
        let desc = client.resolve(r).await?;
        let at = r.with_digest(desc.digest.clone());
        let evidence = client.evidence(&at).await?;
        let rules: Vec<_> = policy.rules_for(&r.repository).collect();
        if rules.is_empty() && args.client.format == Format::Text {
            println!("{at}: no rule applies");
        }
        for rule in rules {
            let outcome = rule.check(&desc.digest, &evidence);
            if args.client.format == Format::Text {
                match &outcome {
                    Ok(()) => println!("{at}: rule {:?} holds", rule.name),
                    Err(why) => println!("{at}: {why}"),
                }
            }
            results.push(json!({
                "reference": at.to_string(),
                "rule": rule.name,
                "valid": outcome.is_ok(),
                "reason": outcome.as_ref().err().map(|r| r.reason.as_str()),
            }));
            if let Err(why) = outcome {
                failures.push(format!("{at}: {why}"));
            }
        }
    }
    if args.client.format == Format::Json {
        emit(args.client.format, &results, String::new);
    }
    if !failures.is_empty() {
        return Err(Error::Verification(failures.join("; ")));
    }
    Ok(())
}

pub async fn verify(args: VerifyArgs) -> Result<(), Error> {
    if let Some(path) = args.policy.clone() {
        return verify_policy(&args, &path).await;
    }
    let required: BTreeMap<String, String> = parse_annotations(&args.annotations)?;
    let refs = args
        .references
        .iter()
        .map(|s| s.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = args.client.client(&refs.iter().collect::<Vec<_>>())?;
    let key = public_key(&client, args.key.as_deref().unwrap_or_default()).await?;
    let mut failures = Vec::new();
    let mut valid_payloads = Vec::new();
    for r in &refs {
        let (desc, checks) = client.verify_signatures(r, &key, &required).await?;
        let at = r.with_digest(desc.digest.clone());
        if args.client.format == Format::Text {
            for c in &checks {
                if c.valid {
                    println!("{at}: valid signature ({})", c.source);
                } else {
                    println!("{at}: invalid signature ({}): {}", c.source, c.reason);
                }
            }
        }
        valid_payloads.extend(
            checks
                .iter()
                .filter(|c| c.valid)
                .filter_map(|c| c.payload.clone()),
        );
        if !checks.iter().any(|c| c.valid) {
            failures.push(if checks.is_empty() {
                format!("{at} has no signatures")
            } else {
                format!(
                    "no valid signature for {at} ({} checked: {})",
                    checks.len(),
                    checks
                        .iter()
                        .map(|c| c.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            });
        }
    }
    if !failures.is_empty() {
        return Err(Error::Verification(failures.join("; ")));
    }
    // cosign prints the valid payloads as a JSON array
    emit(args.client.format, &valid_payloads, String::new);
    Ok(())
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf promote --key prod.key localhost:5000/dev/app:v1 localhost:5000/prod/app:v1
  wharf promote --key prod.key --from-ca-file dev-ca.pem dev.example/app:v1 prod.example/app:v1

The source is resolved to its digest and copied by digest, with its referrers and cosign
attachments; the copy is signed in the target with KEY and verified there; only then is the
target tag moved to it. The target never shows an unsigned or half-copied artifact under
that tag.")]
pub struct PromoteArgs {
    #[command(flatten)]
    pub signing_key: SigningKeyArgs,
    /// What to promote: REGISTRY/REPOSITORY:TAG or @DIGEST.
    pub source: String,
    /// Where: REGISTRY/REPOSITORY:TAG (without a tag, the source's).
    pub destination: String,
    /// An annotation written into the target signature's payload; repeat for more.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Store the target signature as an OCI 1.1 referrer instead of the .sig tag.
    #[arg(long)]
    pub referrers: bool,
    /// Store the target signature as a Sigstore bundle (cosign's --new-bundle-format).
    #[arg(long)]
    pub bundle: bool,
    #[command(flatten)]
    pub transfer: super::TransferArgs,
    #[command(flatten)]
    pub from: super::FromArgs,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn promote(args: PromoteArgs) -> Result<(), Error> {
    let key = args.signing_key.load()?;
    let annotations = parse_annotations(&args.annotations)?;
    let src: Reference = args.source.parse()?;
    let dst: Reference = args.destination.parse()?;
    if args.bundle && !annotations.is_empty() {
        // Refused before the copy, which signing would otherwise refuse after it.
        return Err(Error::Invalid(
            "a signature in a Sigstore bundle carries no annotations: drop -a or --bundle".into(),
        ));
    }
    if dst.digest.is_some() {
        return Err(Error::Invalid(
            "promote to a tag: the digest is the source's".into(),
        ));
    }
    let tag =
        dst.tag.clone().or_else(|| src.tag.clone()).ok_or_else(|| {
            Error::Invalid(format!("{dst}: name the target tag (REPOSITORY:TAG)"))
        })?;
    let client = args.client.copy_client(
        Some((&src, &args.from)),
        Some((&dst, &args.to)),
        &args.transfer,
    )?;
    let desc = client.resolve(&src).await?;
    let src_at = src.with_digest(desc.digest.clone());
    let dst_at = dst.with_digest(desc.digest.clone());
    let progress = super::progress::for_args(&args.client, &args.transfer);
    let opts = wharf_client::copy::CopyOptions {
        referrers: true,
        platform: None,
    };
    client.copy(&src_at, &dst_at, &opts, &progress).await?;
    drop(progress);
    let storage = storage(args.referrers, args.bundle);
    let signed = client.sign(&dst_at, &key, &annotations, storage).await?;
    let (_, checks) = client
        .verify_signatures(&dst_at, &key.public_key(), &annotations)
        .await?;
    if !checks.iter().any(|c| c.valid) {
        return Err(Error::Verification(format!(
            "{dst_at} does not verify after signing; the tag {tag} was not moved"
        )));
    }
    let (d, bytes) = client.manifest(&dst_at).await?;
    let target = dst.with_tag(&tag)?;
    client.put_manifest(&target, &d.media_type, bytes).await?;
    emit(
        args.client.format,
        &json!({
            "source": src_at.to_string(),
            "destination": target.to_string(),
            "digest": desc.digest,
            "signature": signed.signature,
        }),
        || {
            format!(
                "Promoted {src_at} -> {target}\nSigned in the target ({}) and verified\nDigest: {}",
                signed.signature, desc.digest
            )
        },
    );
    Ok(())
}
