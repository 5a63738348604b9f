//! `sbom attach`, `sbom get` and `sbom list`: SPDX and CycloneDX documents kept beside what
//! they describe.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use wharf_client::sbom::media_type_of_format;
use wharf_client::{Error, Reference};

use super::output::emit;
use super::{ClientArgs, ConnArgs};

#[derive(Subcommand, Debug)]
pub enum SbomCommand {
    /// Attach an SPDX JSON or CycloneDX JSON document to a manifest as an OCI 1.1 referrer.
    #[command(after_help = "Examples:
  wharf sbom attach localhost:5000/app:v1 sbom.spdx.json
  wharf sbom attach localhost:5000/app:v1 bom.json           # CycloneDX, detected
  wharf sbom attach --media-type text/spdx localhost:5000/app:v1 sbom.spdx

The media type (and artifactType) is detected from the content: application/spdx+json for
SPDX JSON, application/vnd.cyclonedx+json for CycloneDX JSON. oras discover lists it.")]
    Attach {
        /// The manifest the SBOM describes.
        reference: String,
        /// The SBOM document.
        file: PathBuf,
        /// The media type, instead of detecting it.
        #[arg(long)]
        media_type: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print (or save) the newest SBOM of a manifest.
    #[command(after_help = "Examples:
  wharf sbom get localhost:5000/app:v1 > sbom.json
  wharf sbom get --format cyclonedx localhost:5000/app:v1 -o bom.json
  wharf sbom get localhost:5000/app:sbom          # an SBOM pushed as an artifact of its own")]
    Get {
        /// The manifest whose SBOM to get, or an SBOM artifact itself.
        reference: String,
        /// Only this format: spdx or cyclonedx.
        #[arg(long = "format", value_name = "FORMAT")]
        sbom_format: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List the SBOMs of a manifest, newest first.
    #[command(after_help = "Examples:
  wharf sbom list localhost:5000/app:v1
  wharf sbom list --format json localhost:5000/app:v1")]
    List {
        /// The manifest whose SBOMs to list.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn sbom(cmd: SbomCommand) -> Result<(), Error> {
    match cmd {
        SbomCommand::Attach {
            reference,
            file,
            media_type,
            client,
        } => {
            let r: Reference = reference.parse()?;
            let c = client.client(&[&r])?;
            let (subject, res) = c.attach_sbom(&r, &file, media_type.as_deref()).await?;
            let mt = res
                .blobs
                .iter()
                .map(|(d, _)| d.media_type.clone())
                .find(|m| m != wharf_oci::media_type::OCI_EMPTY)
                .unwrap_or_default();
            emit(
                client.format,
                &json!({"subject": r.with_digest(subject.digest.clone()).to_string(),
                        "digest": res.digest, "artifactType": mt}),
                || {
                    format!(
                        "Attached {mt} to {}\nDigest: {}",
                        r.with_digest(subject.digest.clone()),
                        res.digest
                    )
                },
            );
            Ok(())
        }
        SbomCommand::Get {
            reference,
            sbom_format,
            output,
            conn,
        } => {
            let r: Reference = reference.parse()?;
            let c = conn.client(&[&r])?;
            let wanted = sbom_format
                .as_deref()
                .map(media_type_of_format)
                .transpose()?;
            let found = c.sboms(&r, wanted).await?;
            let newest = found.first().ok_or_else(|| {
                Error::NotFound(format!(
                    "an SBOM{} of {r}",
                    sbom_format.map(|f| format!(" in {f}")).unwrap_or_default()
                ))
            })?;
            let at: Reference = newest.reference.parse()?;
            let quiet = std::sync::Arc::new(wharf_client::NoProgress) as _;
            match output {
                // Written under its name only once verified.
                Some(p) => c.fetch_blob(&at, &newest.layer, &p, &quiet).await,
                None => {
                    // Verified before anything reaches stdout.
                    let tmp = tempfile::NamedTempFile::new()?;
                    c.fetch_blob(&at, &newest.layer, tmp.path(), &quiet).await?;
                    let mut f = std::fs::File::open(tmp.path())?;
                    std::io::copy(&mut f, &mut std::io::stdout().lock())?;
                    Ok(())
                }
            }
        }
        SbomCommand::List { reference, client } => {
            let r: Reference = reference.parse()?;
            let found = client.client(&[&r])?.sboms(&r, None).await?;
            emit(client.format, &json!({ "sboms": found }), || {
                found
                    .iter()
                    .map(|s| {
                        format!(
                            "{}  {}  {}  {}",
                            s.media_type,
                            s.created.as_deref().unwrap_or("-"),
                            s.layer.size,
                            s.reference
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
    }
}
