//! `wharf scrub`: reads every stored blob back, hashes it, and reports each one whose bytes
//! are missing or no longer match its digest; damaged ones are quarantined so that the next
//! push repairs them. Safe beside a serving registry (it only reads, and moves aside what
//! is already unusable).

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde_json::json;
use wharf_store::BlobCondition;

use crate::config::StoreArgs;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  wharf scrub --data-dir /var/lib/wharf\n  wharf scrub --config /etc/wharf.toml --report-only\n  wharf scrub --data-dir /var/lib/wharf --format json\n\nDamaged blobs are moved to quarantine/ in the blob store (kept for inspection) and no\nlonger served; a client's next push of the same content stores it again.\nExit codes: 0 every blob intact, 5 damage found, 1 the scrub itself failed."
)]
pub struct ScrubArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Report damaged blobs but leave them where they are
    #[arg(long)]
    report_only: bool,
    /// Output: text (a line per damaged blob and a summary) or json (one document)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

pub fn run(args: ScrubArgs) -> ExitCode {
    let json = args.format == "json";
    match scrub(args) {
        Ok(code) => code,
        Err(e) => crate::cli::operator_failure(&e, json),
    }
}

fn scrub(args: ScrubArgs) -> Result<ExitCode, String> {
    let file = args.store.file_config()?;
    let config = args.store.store_config(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let json = args.format == "json";
    runtime.block_on(async {
        let registry = wharf_store::open_beside(&config)
            .await
            .map_err(|e| format!("cannot open the store: {e}"))?;
        let started = Instant::now();
        let mut damaged = Vec::new();
        let report = registry
            .scrub(!args.report_only, |digest, size, condition| {
                let entry = match condition {
                    BlobCondition::Intact => return,
                    BlobCondition::Missing => {
                        json!({"digest": digest.to_string(), "size": size, "condition": "missing"})
                    }
                    BlobCondition::Corrupt { found, quarantined } => json!({
                        "digest": digest.to_string(), "size": size, "condition": "corrupt",
                        "found": found, "quarantined": quarantined,
                    }),
                };
                if !json {
                    println!("{}", describe(digest, size, condition));
                }
                damaged.push(entry);
            })
            .await
            .map_err(|e| format!("scrub failed: {e}"))?;
        let secs = started.elapsed().as_secs_f64();
        if json {
            println!(
                "{}",
                json!({
                    "blobs": report.blobs, "bytes": report.bytes, "intact": report.intact,
                    "corrupt": report.corrupt, "missing": report.missing,
                    "seconds": secs, "damaged": damaged,
                })
            );
        } else {
            let mib = report.bytes as f64 / (1024.0 * 1024.0);
            println!(
                "scrubbed {} blobs ({mib:.1} MiB) in {secs:.1} s ({:.0} MiB/s): {} intact, {} corrupt, {} missing",
                report.blobs,
                mib / secs.max(1e-9),
                report.intact,
                report.corrupt,
                report.missing
            );
        }
        Ok(if report.corrupt + report.missing > 0 {
            ExitCode::from(5)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// One line for a damaged blob.
pub fn describe(digest: &wharf_oci::Digest, size: u64, condition: &BlobCondition) -> String {
    match condition {
        BlobCondition::Intact => format!("intact {digest}"),
        BlobCondition::Missing => format!("missing {digest} ({size} bytes): no stored object"),
        BlobCondition::Corrupt { found, quarantined } => format!(
            "corrupt {digest} ({size} bytes): found {found}{}",
            if *quarantined {
                "; quarantined until pushed again"
            } else {
                ""
            }
        ),
    }
}
