//! `wharf login` / `wharf logout`: credentials in Docker's config.json (or its helpers), the
//! same file docker, podman, skopeo, oras and helm read.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use wharf_client::{Client, ClientOptions, Credential, DockerConfig, Error, Reference};

use super::ClientArgs;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf login registry.example.com -u alice --password-stdin < token.txt
  echo \"$CI_TOKEN\" | wharf login ghcr.io -u ci-bot --password-stdin
  wharf login localhost:5000 -u admin -p secret --plain-http")]
pub struct LoginArgs {
    /// Registry host, with port if not the default (e.g. registry.example.com:5000).
    pub registry: String,
    /// Read the password from standard input (keeps it out of the process list).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  wharf logout registry.example.com")]
pub struct LogoutArgs {
    /// Registry host whose stored credentials to remove.
    pub registry: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A reference to the registry only, for the client's per-registry settings.
fn registry_ref(registry: &str) -> Result<Reference, Error> {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    Reference::repository(host, "library/x")
}

fn config_path(args: &ClientArgs) -> Result<std::path::PathBuf, Error> {
    args.registry_config
        .clone()
        .or_else(DockerConfig::default_path)
        .ok_or_else(|| Error::Invalid("no HOME or DOCKER_CONFIG to find config.json in".into()))
}

fn prompt(what: &str) -> Result<String, Error> {
    eprint!("{what}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn login(args: LoginArgs) -> Result<(), Error> {
    let r = registry_ref(&args.registry)?;
    let interactive = std::io::stdin().is_terminal();
    let username = match &args.client.username {
        Some(u) => u.clone(),
        None if interactive && !args.password_stdin => prompt("Username")?,
        None => return Err(Error::Invalid("give the user name with --username".into())),
    };
    let password = if args.password_stdin {
        if args.client.password.is_some() {
            return Err(Error::Invalid(
                "--password and --password-stdin exclude each other".into(),
            ));
        }
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        match &args.client.password {
            Some(p) => p.clone(),
            None if interactive => rpassword::prompt_password("Password: ")?,
            None => {
                return Err(Error::Invalid(
                    "give the password with --password-stdin".into(),
                ))
            }
        }
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::Invalid(
            "user name and password must not be empty".into(),
        ));
    }
    let cred = Credential { username, password };
    // Check the credentials against the registry before storing them.
    let opts = ClientOptions {
        plain_http: args.client.plain_http,
        https: args.client.https,
        insecure: args.client.insecure,
        ca_file: args.client.ca_file.clone(),
        docker_config: None,
        credentials: [(r.registry.clone(), cred.clone())].into(),
        ..ClientOptions::default()
    };
    Client::new(opts)?.ping(&r).await.map_err(|e| match e {
        Error::Unauthorized(reg) => {
            Error::Auth(format!("{reg}: the registry refused these credentials"))
        }
        e => e,
    })?;
    let path = config_path(&args.client)?;
    let mut config = DockerConfig::load(&path)?;
    config.store(&r.registry, &cred)?;
    eprintln!("Login succeeded (credentials stored in {})", path.display());
    Ok(())
}

pub async fn logout(args: LogoutArgs) -> Result<(), Error> {
    let r = registry_ref(&args.registry)?;
    let path = config_path(&args.client)?;
    let mut config = DockerConfig::load(&path)?;
    if config.erase(&r.registry)? {
        eprintln!("Removed the credentials for {}", r.registry);
    } else {
        eprintln!("No credentials were stored for {}", r.registry);
    }
    Ok(())
}
