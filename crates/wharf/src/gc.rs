//! `wharf gc`: one garbage collection pass, on demand. Either the registry serving at
//! `--registry` runs it (the way for a serving embedded registry), or this process runs it
//! on the store the flags name (a stopped embedded registry, or PostgreSQL, where the
//! pass coordinates with serving replicas through the database).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use wharf_client::Reference;
use wharf_store::{GcOptions, MetadataLocation};

use crate::cli::{ClientArgs, Format};
use crate::config::StoreArgs;

pub const DEFAULT_GRACE_SECS: u64 = 3600;

#[derive(Args)]
#[command(after_help = "Examples:
  wharf gc --dry-run --registry localhost:5000        # what a pass would delete
  wharf gc --registry localhost:5000 --grace 24h
  wharf gc --data-dir /var/lib/wharf --dry-run        # a stopped embedded registry
  wharf gc --metadata-url postgres://wharf@db/wharf --s3-bucket wharf   # beside replicas

Deletes the tags [[retention]] rules let go, then untagged manifests that no index holds
and whose subject is gone, blob links no manifest references, and blob bytes no repository
links, once older than the grace period; expired uploads too. Through --registry, admins only. A serving embedded registry
(SQLite) must be asked through --registry: another process cannot see its pushes.")]
pub struct GcArgs {
    /// Ask the Wharf serving at this address to run the pass
    #[arg(long, value_name = "HOST[:PORT]")]
    registry: Option<String>,
    /// List what would be deleted; delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Keep what was pushed or linked less than this long ago, e.g. 30m, 24h [default: the
    /// registry's gc.grace_secs, else 1h]
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(args: GcArgs) -> ExitCode {
    let json_out = args.client.format == Format::Json;
    match gc(args) {
        Ok(report) => {
            print_report(&report, json_out);
            ExitCode::SUCCESS
        }
        Err(e) => crate::cli::operator_failure(&e, json_out),
    }
}

fn gc(args: GcArgs) -> Result<Value, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    if let Some(g) = &args.grace {
        humantime::parse_duration(g)
            .map_err(|e| format!("--grace {g:?} is not a duration such as 1h or 30m: {e}"))?;
    }
    match &args.registry {
        Some(registry) => runtime.block_on(async {
            let r = Reference::repository(registry, "gc").map_err(|e| e.to_string())?;
            let client = args
                .client
                .client(&[&r])
                .map_err(|e| crate::cli::describe(&e))?;
            client
                .collect_garbage(&r, args.dry_run, args.grace.as_deref())
                .await
                .map_err(|e| crate::cli::describe(&e))
        }),
        None => runtime.block_on(locally(&args)),
    }
}

async fn locally(args: &GcArgs) -> Result<Value, String> {
    let file = args.store.file_config()?;
    let config = args.store.store_config(&file)?;
    // A serving embedded registry holds this lock; its pushes are invisible from here.
    let _lock = match &config.metadata {
        MetadataLocation::Sqlite(db) => Some(ServeLock::exclusive(db)?),
        MetadataLocation::Postgres(_) => None,
    };
    let grace = match &args.grace {
        Some(g) => humantime::parse_duration(g).map_err(|e| e.to_string())?,
        None => Duration::from_secs(file.gc.grace_secs.unwrap_or(DEFAULT_GRACE_SECS)),
    };
    let registry = wharf_store::open_beside(&config)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let opts = GcOptions {
        grace,
        dry_run: args.dry_run,
        upload_expiry: Duration::from_secs(file.limits.upload_expiry_secs.unwrap_or(24 * 3600)),
    };
    match registry.collect_garbage(&opts).await {
        Ok(Some(report)) => Ok(serde_json::to_value(report).expect("report serialises")),
        Ok(None) => {
            Err("another garbage collection pass is running; try again when it ends".into())
        }
        Err(e) => Err(format!("garbage collection failed: {e}")),
    }
}

fn print_report(report: &Value, json_out: bool) {
    if json_out {
        println!("{report}");
        return;
    }
    let list = |k: &str| -> Vec<String> {
        report[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let dry = report["dryRun"].as_bool().unwrap_or(false);
    let verb = if dry { "would delete" } else { "deleted" };
    for t in list("tags") {
        println!("{verb} tag {t}");
    }
    for m in list("manifests") {
        println!("{verb} manifest {m}");
    }
    for b in list("blobs") {
        println!("{verb} blob {b}");
    }
    let mib = |k: &str| report[k].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
    println!(
        "{} {} tags, {} manifests ({:.1} MiB), {} links, {} blobs ({:.1} MiB); {} uploads expired{}",
        if dry { "would delete" } else { "deleted" },
        list("tags").len(),
        list("manifests").len(),
        mib("manifestBytes"),
        list("links").len(),
        list("blobs").len(),
        mib("blobBytes"),
        report["uploads"].as_u64().unwrap_or(0),
        match report["skippedSteps"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(
                "; {n} steps skipped while pushes kept the registry busy (the next pass does them)"
            ),
        }
    );
}

/// The lock file of an embedded registry: `wharf serve` holds it shared while serving, so
/// that `wharf gc` (which takes it exclusively) never collects beside it.
pub struct ServeLock(#[allow(dead_code)] std::fs::File);

impl ServeLock {
    fn open(db: &std::path::Path) -> Result<std::fs::File, String> {
        let path = db.with_extension("lock");
        if let Some(dir) = path.parent() {
            if dir.exists() && !dir.is_dir() {
                return Err(format!(
                    "the data directory {} is a file, not a directory",
                    dir.display()
                ));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    fn flock(f: std::fs::File, op: libc::c_int) -> Option<ServeLock> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        (unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0).then_some(ServeLock(f))
    }

    /// Held by `wharf serve` for as long as it serves.
    pub fn shared(db: &std::path::Path) -> Result<ServeLock, String> {
        Self::flock(Self::open(db)?, libc::LOCK_SH).ok_or_else(|| {
            format!(
                "{} is locked by a garbage collection pass (wharf gc); start when it ends",
                db.display()
            )
        })
    }

    fn exclusive(db: &std::path::Path) -> Result<ServeLock, String> {
        Self::flock(Self::open(db)?, libc::LOCK_EX).ok_or_else(|| {
            format!(
                "a registry is serving from {}: ask it to collect with `wharf gc --registry HOST`",
                db.parent().unwrap_or(db).display()
            )
        })
    }
}
