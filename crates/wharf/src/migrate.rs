//! `wharf migrate`: brings the metadata database to this binary's schema. `wharf serve` does
//! the same at start; this command lets an operator do it first, on its own, before rolling
//! out new replicas.

use clap::Args;
use wharf_store::MetadataLocation;

use crate::config::{StoreArgs, DEFAULT_DATA_DIR};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  wharf migrate --data-dir /var/lib/wharf\n  wharf migrate --metadata-url postgres://wharf@db.internal/wharf\n\nA database written by a newer Wharf is left untouched and reported as an error."
)]
pub struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: MigrateArgs) -> Result<(), String> {
    let file = args.store.file_config()?;
    let data_dir = args
        .store
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let url = args.store.metadata_url.clone().or(file.metadata_url);
    let location =
        MetadataLocation::choose(&data_dir, url.as_deref()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (_, v) = runtime
        .block_on(location.open())
        .map_err(|e| format!("cannot migrate the metadata store: {e}"))?;
    if v.before == v.after {
        println!("metadata schema is current (version {})", v.after);
    } else {
        println!(
            "metadata schema migrated from version {} to {}",
            v.before, v.after
        );
    }
    Ok(())
}
