//! `wharf admin`: operator tasks on the registry's own store: API keys for robots and CI, and
//! bcrypt hashes for the configuration's users.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use wharf_server::auth::{parse_grants, Actions, Pattern};
use wharf_store::{ApiKeyRecord, MetadataLocation, MetadataStore};

use crate::config::{StoreArgs, DEFAULT_DATA_DIR};

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

async fn open(store: &StoreArgs) -> Result<std::sync::Arc<dyn MetadataStore>, String> {
    let file = store.file_config()?;
    let data_dir = store
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let url = store.metadata_url.clone().or(file.metadata_url);
    let location =
        MetadataLocation::choose(&data_dir, url.as_deref()).map_err(|e| e.to_string())?;
    Ok(location
        .open()
        .await
        .map_err(|e| format!("cannot open the metadata store: {e}"))?
        .0)
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
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
            println!("{}", bcrypt::hash(pw, cost).map_err(|e| e.to_string())?);
            Ok(())
        }
        AdminCommand::ApiKey(cmd) => rt.block_on(api_key(*cmd)),
    }
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
            validate_name(&name)?;
            for r in &repositories {
                Pattern::new(r)?;
            }
            Actions::parse(actions.iter().map(String::as_str))?;
            let grants = serde_json::json!([{ "repositories": repositories, "actions": actions }])
                .to_string();
            parse_grants(&grants)?;
            let mut raw = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
            let secret = format!("wharf_{}", hex::encode(raw));
            let created_at = wharf_store::meta::now();
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
            let t = wharf_store::meta::now();
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
                .api_key_revoke(&name, wharf_store::meta::now())
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
