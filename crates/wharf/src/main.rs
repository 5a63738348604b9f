//! `wharf`: one binary that is both an OCI registry (`wharf serve`) and, as the client issues
//! land, the client for it.

mod config;
mod migrate;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "An OCI registry and the client for it",
    after_help = "Examples:\n  wharf serve                                  # registry on 127.0.0.1:5000, data in ./wharf-data\n  wharf serve --listen 127.0.0.1:6000 --data-dir /var/lib/wharf\n  wharf migrate --metadata-url postgres://wharf@db.internal/wharf"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(serve::ServeArgs),
    /// Bring the metadata database to this version's schema.
    Migrate(migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => migrate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: error: {e}");
            ExitCode::from(1)
        }
    }
}
