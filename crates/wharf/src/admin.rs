//! `wharf admin`: operator tasks on the registry's own store: API keys for robots and CI,
//! bcrypt hashes for the configuration's users, and what the namespaces under quota hold.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use std::sync::Arc;

use wharf_auth::{ApiKeyRecord, ApiKeyStore};

use crate::config::StoreArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create, list and revoke API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(Box<ApiKeyCommand>),
    /// Print the bcrypt hash of a password read from standard input, for [[auth.users]] or
    /// an htpasswd file.
    #[command(
        after_help = "Examples:\n  echo -n 's3cret' | wharf admin hash-password\n  printf 'bob:%s\\n' \"$(wharf admin hash-password < pw.txt)\" >> /etc/wharf/htpasswd"
    )]
    HashPassword {
        /// bcrypt cost (4 to 31); each step doubles the work
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
    /// Show what the registry stores, and what each namespace under a [[quotas]] rule holds
    /// of its quota.
    #[command(after_help = "Examples:
  wharf admin usage --config /etc/wharf/wharf.toml
  wharf admin usage --metadata-url postgres://wharf@db/wharf --config /etc/wharf/wharf.toml --format json

Usage counts each distinct blob and manifest of a namespace once. It reads the database the
configuration names, so it works beside a serving registry.")]
    Usage {
        #[command(flatten)]
        store: StoreArgs,
        /// Output: text (a table) or json (one document)
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; its secret is printed once and only its hash is kept.
    #[command(after_help = "Examples:
  wharf admin api-key create ci-deploy --repository 'team-a/**' --actions pull,push --expires-in 90d
  wharf admin api-key create mirror --repository '**' --actions pull --metadata-url postgres://wharf@db/wharf
Use the key with basic auth: the key's name as user name, the secret as password:
  wharf login registry.example.com -u ci-deploy --password-stdin <<< \"$SECRET\"")]
    Create {
        /// The key's name, which is also its user name in basic auth.
        name: String,
        /// Repository pattern the key may act on (`*` within a path component, `**` across);
        /// repeat for more.
        #[arg(long = "repository", required = true)]
        repositories: Vec<String>,
        /// Actions: pull, push, delete, overwrite, or *.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// Lifetime, e.g. 30d, 12h; none means until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    #[command(after_help = "Examples:\n  wharf admin api-key list --config /etc/wharf/wharf.toml")]
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key; every replica refuses it from the next request on.
    #[command(
        after_help = "Examples:\n  wharf admin api-key revoke ci-deploy --metadata-url postgres://wharf@db/wharf"
    )]
    Revoke {
        /// The key's name, as `api-key create` gave it.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

async fn open(store: &StoreArgs) -> Result<Arc<dyn ApiKeyStore>, String> {
    let file = store.file_config()?;
    let config = store.store_config(&file)?;
    Ok(wharf_store::open_metadata(&config.metadata)
        .await
        .map_err(|e| format!("cannot open the metadata store: {e}"))?
        .api_keys)
}

pub fn run(args: AdminArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    match args.command {
        AdminCommand::HashPassword { cost } => {
            let mut line = String::new();
            if std::io::stdin().is_terminal() {
                line = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
            } else {
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
            }
            let pw = line.trim_end_matches(['\r', '\n']);
            if pw.is_empty() {
                return Err("the password is empty".into());
            }
            println!("{}", wharf_auth::hash_password(pw, cost)?);
            Ok(())
        }
        AdminCommand::ApiKey(cmd) => rt.block_on(api_key(*cmd)),
        AdminCommand::Usage { store, format } => rt.block_on(usage(&store, format == "json")),
    }
}

async fn usage(store: &StoreArgs, json: bool) -> Result<(), String> {
    let file = store.file_config()?;
    let config = store.store_config(&file)?;
    let meta = wharf_store::open_metadata(&config.metadata)
        .await
        .map_err(|e| format!("cannot open the metadata store: {e}"))?
        .content;
    let total = meta.usage(0).await.map_err(|e| e.to_string())?;
    let stored = total.blob_bytes + total.manifest_bytes;
    let quotas = wharf_store::quota::usage_of(meta.as_ref(), &config.limits.quotas)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let doc = serde_json::json!({ "storageUsedBytes": stored, "quotas": quotas });
        println!("{doc}");
        return Ok(());
    }
    let h = wharf_store::quota::human_bytes;
    println!("stored: {} ({stored} bytes)", h(stored));
    if quotas.is_empty() {
        println!("no [[quotas]] in the configuration");
        return Ok(());
    }
    let width = quotas
        .iter()
        .map(|q| q.namespace.len())
        .max()
        .unwrap_or(0)
        .max(9);
    println!(
        "{:width$}  {:>10}  {:>10}  {:>5}",
        "NAMESPACE", "USED", "LIMIT", "USE"
    );
    for q in &quotas {
        let pct = if q.limit_bytes == 0 {
            100.0
        } else {
            q.used_bytes as f64 * 100.0 / q.limit_bytes as f64
        };
        println!(
            "{:width$}  {:>10}  {:>10}  {:>4.0}%",
            q.namespace,
            h(q.used_bytes),
            h(q.limit_bytes),
            pct
        );
    }
    Ok(())
}

async fn api_key(cmd: ApiKeyCommand) -> Result<(), String> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            repositories,
            actions,
            expires_in,
            store,
        } => {
            wharf_auth::validate_name(&name).map_err(|e| e.to_string())?;
            let grants = wharf_auth::grants_json(&repositories, &actions)?;
            let secret = wharf_auth::generate_secret();
            let created_at = wharf_oci::unix_now();
            let record = ApiKeyRecord {
                name: name.clone(),
                secret_sha256: ApiKeyRecord::hash_secret(&secret),
                grants,
                created_at,
                expires_at: expires_in.map(|d| created_at + d.as_secs() as i64),
                revoked_at: None,
            };
            if !open(&store)
                .await?
                .api_key_create(&record)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!(
                    "an API key named {name:?} exists already (names are never reused)"
                ));
            }
            eprintln!("Created API key {name:?}. Its secret is shown once; store it now:");
            println!("{secret}");
            Ok(())
        }
        ApiKeyCommand::List { store } => {
            let keys = open(&store)
                .await?
                .api_key_list()
                .await
                .map_err(|e| e.to_string())?;
            let t = wharf_oci::unix_now();
            for k in keys {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked".to_string(),
                    (None, Some(e)) if e <= t => "expired".to_string(),
                    (None, Some(e)) => format!(
                        "expires in {}",
                        humantime::format_duration(std::time::Duration::from_secs((e - t) as u64))
                    ),
                    (None, None) => "active".to_string(),
                };
                println!("{}\t{}\t{}", k.name, state, k.grants);
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { name, store } => {
            if open(&store)
                .await?
                .api_key_revoke(&name, wharf_oci::unix_now())
                .await
                .map_err(|e| e.to_string())?
            {
                eprintln!("Revoked API key {name:?}");
                Ok(())
            } else {
                Err(format!("no active API key named {name:?}"))
            }
        }
    }
}
