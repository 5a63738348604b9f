//! `wharf migrate`: brings the metadata database to this binary's schema. `wharf serve` does
//! the same at start; this command lets an operator do it first, on its own, before rolling
//! out new replicas.

use crate::config::StoreArgs;
use clap::Args;

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
    let config = args.store.store_config(&file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let v = runtime
        .block_on(wharf_store::open_metadata(&config.metadata))
        .map_err(|e| format!("cannot migrate the metadata store: {e}"))?
        .schema;
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
