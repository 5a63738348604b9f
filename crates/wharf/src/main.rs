//! `wharf`: one binary that is both an OCI registry (`wharf serve`) and the client for any
//! registry (`wharf push`, `pull`, `cp`, ...).

mod admin;
mod auth_config;
mod cli;
mod config;
mod gc;
mod listener;
mod migrate;
mod policy_file;
mod rules_config;
mod scrub;
mod serve;
mod tls;
mod webhook_config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "An OCI registry and the client for it",
    after_help = MAIN_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const MAIN_HELP: &str = concat!(
        "Examples:\n",
        "  wharf serve                                  # registry on 127.0.0.1:5000, data in ./wharf-data\n",
        "  wharf login registry.example.com -u alice --password-stdin < token.txt\n",
        "  wharf push localhost:5000/team/config:v1 app.yaml\n",
        "  wharf pull localhost:5000/team/config:v1 -o ./config\n",
        "  wharf cp -r registry.example.com/app:v1 localhost:5000/app:v1\n",
        "  wharf attach --artifact-type application/spdx+json localhost:5000/app:v1 sbom.json\n",
        "  wharf discover localhost:5000/app:v1\n",
        "  wharf backup localhost:5000/app -o app.tar  # every tag, with referrers\n",
        "  wharf sign --key cosign.key localhost:5000/app:v1   # cosign's format; docs/signing.md\n",
        "  wharf verify --key cosign.pub localhost:5000/app:v1\n",
        "  wharf sbom attach localhost:5000/app:v1 sbom.spdx.json\n",
        "  wharf artifact push oci://localhost:5000/deploy/app:v1 --path ./deploy --source URL --revision REV\n",
        "  wharf chart push mychart-0.1.0.tgz oci://localhost:5000/charts   # helm's format\n",
        "\n",
        "Exit codes:\n",
        "  0  success\n",
        "  1  failure (bad input, a registry error)\n",
        "  2  usage error (unknown flag, missing argument)\n",
        "  3  not found (manifest, blob, tag or repository)\n",
        "  4  authentication or authorization refused\n",
        "  5  content failed verification (digest or size mismatch)\n",
    "  6  registry unreachable (connection, TLS or timeout)"
);

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(serve::ServeArgs),
    /// Bring the metadata database to this version's schema.
    Migrate(migrate::MigrateArgs),
    /// Delete untagged, unreferenced manifests and unreferenced blobs (online).
    Gc(gc::GcArgs),
    /// Re-hash every stored blob; report and quarantine damaged ones.
    Scrub(scrub::ScrubArgs),
    /// Operator tasks: API keys, password hashes, storage and quota usage.
    Admin(admin::AdminArgs),
    /// Log in to a registry; credentials go to Docker's config.json.
    Login(cli::LoginArgs),
    /// Remove a registry's stored credentials.
    Logout(cli::LogoutArgs),
    /// Push files and directories as an artifact.
    Push(cli::PushArgs),
    /// Pull an artifact's files, a chart, a Flux bundle or (--unpack) an image into a directory.
    Pull(cli::PullArgs),
    /// Attach an artifact (signature, SBOM, ...) to a manifest.
    Attach(cli::AttachArgs),
    /// List the artifacts attached to a manifest.
    Discover(cli::DiscoverArgs),
    /// Copy a manifest and its content between repositories or registries.
    Cp(cli::CopyArgs),
    /// Save a repository, tag or digest (with referrers) to an OCI layout directory or tar.
    Backup(cli::BackupArgs),
    /// Put an OCI layout directory or tar (with referrers) into a repository.
    Restore(cli::RestoreArgs),
    /// Give a manifest more tags.
    Tag(cli::TagArgs),
    /// Remove tags, keeping the manifests they point to.
    Untag(cli::UntagArgs),
    /// Print the digest a reference points to.
    Resolve(cli::ResolveArgs),
    /// Helm charts: package, push, pull, show, export, dependencies (helm's OCI format).
    #[command(subcommand)]
    Chart(cli::chart::ChartCommand),
    /// Flux manifest bundles: push, pull, list, tag, diff (flux's OCI format).
    #[command(subcommand)]
    Artifact(cli::flux::ArtifactCommand),
    /// Search artifacts across the repositories you may pull (a Wharf registry extension).
    Search(cli::search::SearchArgs),
    /// Attach, get and list SBOMs (SPDX, CycloneDX) of manifests.
    #[command(subcommand)]
    Sbom(cli::sbom::SbomCommand),
    /// Make signing keys that cosign reads.
    #[command(subcommand)]
    Key(cli::sign::KeyCommand),
    /// Sign manifests in cosign's format (key-based, offline).
    Sign(cli::sign::SignArgs),
    /// Check manifests' cosign signatures against a public key.
    Verify(cli::sign::VerifyArgs),
    /// Attest a predicate (SBOM, provenance, ...) about a manifest, in cosign's format.
    Attest(cli::attest::AttestArgs),
    /// Check a manifest's attestations against a public key; print their predicates.
    VerifyAttestation(cli::attest::VerifyAttestationArgs),
    /// Copy by digest, sign in the target, verify there, then move the target tag.
    Promote(cli::sign::PromoteArgs),
    /// Fetch, push or delete manifests.
    #[command(subcommand)]
    Manifest(cli::ManifestCommand),
    /// Fetch, push or delete blobs.
    #[command(subcommand)]
    Blob(cli::BlobCommand),
    /// List repositories and tags.
    #[command(subcommand)]
    Repo(cli::RepoCommand),
}

fn main() -> ExitCode {
    let json_output = cli::wants_json(std::env::args().skip(1));
    let cli = Cli::parse();
    let client = |f: Result<(), wharf_client::Error>| match f {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_output {
                println!("{}", cli::error_json(&e));
            } else {
                eprintln!("wharf: error: {}", cli::describe(&e));
            }
            ExitCode::from(cli::exit_code(&e))
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Scrub(args) => return scrub::run(args),
        Command::Gc(args) => return gc::run(args),
        Command::Login(a) => return client(cli::block_on(cli::login::login(a))),
        Command::Logout(a) => return client(cli::block_on(cli::login::logout(a))),
        Command::Push(a) => return client(cli::block_on(cli::artifact::push(a))),
        Command::Pull(a) => return client(cli::block_on(cli::artifact::pull(a))),
        Command::Attach(a) => return client(cli::block_on(cli::artifact::attach(a))),
        Command::Discover(a) => return client(cli::block_on(cli::artifact::discover(a))),
        Command::Cp(a) => return client(cli::block_on(cli::artifact::copy(a))),
        Command::Backup(a) => return client(cli::block_on(cli::artifact::backup(a))),
        Command::Restore(a) => return client(cli::block_on(cli::artifact::restore(a))),
        Command::Tag(a) => return client(cli::block_on(cli::content::tag(a))),
        Command::Chart(c) => return client(cli::block_on(cli::chart::chart(c))),
        Command::Artifact(c) => return client(cli::block_on(cli::flux::artifact(c))),
        Command::Search(a) => return client(cli::block_on(cli::search::search(a))),
        Command::Sbom(c) => return client(cli::block_on(cli::sbom::sbom(c))),
        Command::Key(c) => return client(cli::sign::key(c)),
        Command::Sign(a) => return client(cli::block_on(cli::sign::sign(a))),
        Command::Verify(a) => return client(cli::block_on(cli::sign::verify(a))),
        Command::Attest(a) => return client(cli::block_on(cli::attest::attest(a))),
        Command::VerifyAttestation(a) => {
            return client(cli::block_on(cli::attest::verify_attestation(a)))
        }
        Command::Promote(a) => return client(cli::block_on(cli::sign::promote(a))),
        Command::Untag(a) => return client(cli::block_on(cli::content::untag(a))),
        Command::Resolve(a) => return client(cli::block_on(cli::content::resolve(a))),
        Command::Manifest(c) => return client(cli::block_on(cli::content::manifest(c))),
        Command::Blob(c) => return client(cli::block_on(cli::content::blob(c))),
        Command::Repo(c) => return client(cli::block_on(cli::content::repo(c))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::operator_failure(&e.to_string(), json_output),
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is.
    #[test]
    fn every_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "wharf", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    /// Transfer options appear only on commands that move blobs.
    #[test]
    fn transfer_options_only_where_they_apply() {
        let cli = super::Cli::command();
        let has = |path: &[&str]| {
            let mut c = &cli;
            for p in path {
                c = c.find_subcommand(p).expect("subcommand");
            }
            c.get_arguments().any(|a| a.get_id() == "concurrency")
        };
        for p in [
            &["push"][..],
            &["pull"],
            &["cp"],
            &["backup"],
            &["restore"],
            &["attach"],
            &["blob", "push"],
        ] {
            assert!(has(p), "{p:?}");
        }
        for p in [
            &["tag"][..],
            &["resolve"],
            &["untag"],
            &["repo", "ls"],
            &["manifest", "fetch"],
            &["discover"],
        ] {
            assert!(!has(p), "{p:?}");
        }
    }
}
