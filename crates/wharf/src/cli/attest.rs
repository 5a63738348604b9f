//! `attest` and `verify-attestation`: in-toto statements in DSSE envelopes, stored and
//! checked as cosign does (the `.att` tag, a referrer, or a Sigstore bundle).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use wharf_client::{Error, Reference};

use super::output::emit;
use super::sign::{public_key, sign_error, storage, SigningKeyArgs};
use super::{ClientArgs, Format};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf attest --key cosign.key --type cyclonedx --predicate bom.json localhost:5000/app:v1
  wharf attest --key cosign.key --type spdxjson --predicate sbom.spdx.json --referrers localhost:5000/app:v1
  wharf attest --key cosign.key --type https://example.com/review/v1 --predicate review.json localhost:5000/app:v1
  wharf attest --key cosign.key --type cyclonedx --predicate bom.json --bundle localhost:5000/app:v1

An in-toto statement about the manifest's digest, carrying the predicate, signed in a DSSE
envelope and stored as cosign stores it: appended under the sha256-<hex>.att tag, with
--referrers as a referrer, or with --bundle in a Sigstore bundle referrer (cosign attest
--new-bundle-format).")]
pub struct AttestArgs {
    #[command(flatten)]
    pub signing_key: SigningKeyArgs,
    /// The predicate: a JSON file.
    #[arg(long, required = true, value_name = "FILE")]
    pub predicate: PathBuf,
    /// spdxjson, cyclonedx, slsaprovenance, slsaprovenance1, link, vuln, openvex, custom, or
    /// a predicate type URI.
    #[arg(long = "type", required = true, value_name = "TYPE")]
    pub predicate_type: String,
    /// The manifest the statement is about.
    pub reference: String,
    /// Store the attestation as an OCI 1.1 referrer instead of the .att tag.
    #[arg(long)]
    pub referrers: bool,
    /// Store it as a Sigstore bundle, an OCI 1.1 referrer (cosign's --new-bundle-format).
    #[arg(long)]
    pub bundle: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf verify-attestation --key cosign.pub --type cyclonedx localhost:5000/app:v1
  wharf verify-attestation --key cosign.pub --type spdxjson --format json localhost:5000/app:v1

Prints each attestation's result, then the predicate of each valid one; exits 0 only when
at least one of the type verifies (5 otherwise).")]
pub struct VerifyAttestationArgs {
    /// The public key: a file, env://VAR, or an https:// URL.
    #[arg(long, required = true, value_name = "KEY")]
    pub key: String,
    /// The predicate type to require (a name as for attest, or a URI).
    #[arg(long = "type", value_name = "TYPE")]
    pub predicate_type: Option<String>,
    /// The manifest whose attestations to check.
    pub reference: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn attest(args: AttestArgs) -> Result<(), Error> {
    let predicate_type =
        wharf_sign::dsse::predicate_type(&args.predicate_type).map_err(sign_error)?;
    let text = std::fs::read(&args.predicate).map_err(|e| Error::file(&args.predicate, e))?;
    let predicate = if predicate_type == "https://cosign.sigstore.dev/attestation/v1" {
        // cosign's "custom" type wraps the file's text
        json!({
            "Data": String::from_utf8_lossy(&text),
            "Timestamp": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })
    } else {
        serde_json::from_slice(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: the predicate is not JSON: {e}",
                args.predicate.display()
            ))
        })?
    };
    let key = args.signing_key.load()?;
    let r: Reference = args.reference.parse()?;
    let client = args.client.client(&[&r])?;
    let storage = storage(args.referrers, args.bundle);
    let done = client
        .attest(&r, &key, &predicate_type, predicate, storage)
        .await?;
    emit(args.client.format, &done, || {
        format!(
            "Attested {} ({predicate_type}; in {})",
            done.signed, done.signature
        )
    });
    Ok(())
}

pub async fn verify_attestation(args: VerifyAttestationArgs) -> Result<(), Error> {
    let wanted = args
        .predicate_type
        .as_deref()
        .map(wharf_sign::dsse::predicate_type)
        .transpose()
        .map_err(sign_error)?;
    let r: Reference = args.reference.parse()?;
    let client = args.client.client(&[&r])?;
    let key = public_key(&client, &args.key).await?;
    let (desc, checks) = client
        .verify_attestations(&r, &key, wanted.as_deref())
        .await?;
    let at = r.with_digest(desc.digest.clone());
    if args.client.format == Format::Text {
        for c in &checks {
            let t = c.predicate_type.as_deref().unwrap_or("unknown type");
            if c.valid {
                eprintln!("{at}: valid attestation, {t} ({})", c.source);
            } else {
                eprintln!(
                    "{at}: invalid attestation, {t} ({}): {}",
                    c.source, c.reason
                );
            }
        }
    }
    if !checks.iter().any(|c| c.valid) {
        let what = wanted.as_deref().unwrap_or("any type");
        return Err(Error::Verification(if checks.is_empty() {
            format!("{at} has no attestations")
        } else {
            format!(
                "no valid attestation of {what} for {at} ({} checked: {})",
                checks.len(),
                checks
                    .iter()
                    .map(|c| c.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }));
    }
    let statements: Vec<_> = checks
        .iter()
        .filter(|c| c.valid)
        .filter_map(|c| c.statement.clone())
        .collect();
    emit(args.client.format, &statements, || {
        statements
            .iter()
            .map(|s| serde_json::to_string_pretty(&s.predicate).expect("JSON serialises"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
