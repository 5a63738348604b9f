//! The client commands: argument types shared by every subcommand, the error-to-exit-code
//! mapping, and dispatch. Each command is a thin layer over `wharf_client`.

pub mod artifact;
pub mod content;
pub mod login;
mod output;
mod progress;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use wharf_client::{Client, ClientOptions, Credential, Error, Reference};

pub use artifact::{
    AttachArgs, BackupArgs, CopyArgs, DiscoverArgs, PullArgs, PushArgs, RestoreArgs,
};
pub use content::{BlobCommand, ManifestCommand, RepoCommand, ResolveArgs, TagArgs};
pub use login::{LoginArgs, LogoutArgs};

/// Exit codes, documented in `wharf --help` (main.rs) and README.md.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_AUTH: u8 = 4;
pub const EXIT_VERIFY: u8 = 5;
pub const EXIT_NETWORK: u8 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Use plain HTTP (default for localhost and 127.0.0.1).
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// Use HTTPS even for localhost and 127.0.0.1 registries.
    #[arg(long, global = true, conflicts_with = "plain_http")]
    pub https: bool,
    /// Accept TLS certificates that do not verify (self-signed test registries).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// User name for the registries this command talks to (else Docker's stored credentials).
    #[arg(short = 'u', long, global = true, env = "WHARF_USERNAME")]
    pub username: Option<String>,
    /// Password or token that goes with --username.
    #[arg(
        short = 'p',
        long,
        global = true,
        env = "WHARF_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Docker config file holding stored credentials [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json].
    #[arg(long, global = true, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Blobs transferred at once.
    #[arg(long, global = true, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Size of the requests large blobs are uploaded in, in MiB; an interrupted upload
    /// resumes from the last chunk the registry acknowledged.
    #[arg(long, global = true, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub chunk_size: u64,
    /// Output: text for people, json for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// No progress output.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

impl ClientArgs {
    /// A client for a command that talks to `refs`' registries.
    pub fn client(&self, refs: &[&Reference]) -> Result<Client, Error> {
        let mut opts = ClientOptions {
            plain_http: self.plain_http,
            https: self.https,
            insecure: self.insecure,
            concurrency: self.concurrency as usize,
            chunk_size: self.chunk_size << 20,
            ..ClientOptions::default()
        };
        if let Some(p) = &self.registry_config {
            opts.docker_config = Some(p.clone());
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => {
                let c = Credential {
                    username: u.clone(),
                    password: p.clone(),
                };
                opts.credentials = refs
                    .iter()
                    .map(|r| (r.registry.clone(), c.clone()))
                    .collect::<HashMap<_, _>>();
            }
            (Some(_), None) => {
                return Err(Error::Invalid(
                    "--username needs --password (or WHARF_PASSWORD)".into(),
                ))
            }
            (None, Some(_)) => return Err(Error::Invalid("--password needs --username".into())),
            (None, None) => {}
        }
        Client::new(opts)
    }
}

/// Parses `[registry/]repository[:tag[,tag...]][@digest]`: the reference plus every tag.
pub fn parse_ref_with_tags(s: &str) -> Result<(Reference, Vec<String>), Error> {
    let name_end = s.find('@').unwrap_or(s.len());
    let last_slash = s[..name_end].rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..name_end].find(':') {
        Some(i) => {
            let colon = last_slash + i;
            let tags: Vec<String> = s[colon + 1..name_end]
                .split(',')
                .map(str::to_string)
                .collect();
            let first = format!("{}:{}{}", &s[..colon], tags[0], &s[name_end..]);
            let r: Reference = first.parse()?;
            for t in &tags[1..] {
                r.with_tag(t)?;
            }
            Ok((r, tags))
        }
        None => Ok((s.parse()?, Vec::new())),
    }
}

/// `key=value` annotations.
pub fn parse_annotations(pairs: &[String]) -> Result<BTreeMap<String, String>, Error> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::Invalid(format!("annotation {p:?} is not key=value")))
        })
        .collect()
}

/// The exit code for an error, as `wharf --help` documents them.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotFound(_) => EXIT_NOT_FOUND,
        Error::Registry { status: 404, .. } => EXIT_NOT_FOUND,
        Error::Unauthorized(_) | Error::Auth(_) => EXIT_AUTH,
        Error::Registry {
            status: 401 | 403, ..
        } => EXIT_AUTH,
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => EXIT_VERIFY,
        Error::Transport { .. } => EXIT_NETWORK,
        _ => EXIT_FAILURE,
    }
}

/// Runs a client command on a runtime of its own.
pub fn block_on<F: std::future::Future<Output = Result<(), Error>>>(f: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Io)?
        .block_on(f)
}

/// One line for the error and its causes. A transport error's message already says its cause
/// in words; the chain under it is library text.
pub fn describe(e: &Error) -> String {
    if let Error::Transport { .. } = e {
        return e.to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_tags() {
        let (r, tags) = parse_ref_with_tags("localhost:5000/a/b:v1,v2,latest").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/a/b:v1");
        assert_eq!(tags, ["v1", "v2", "latest"]);
        let (r, tags) = parse_ref_with_tags("localhost:5000/a").unwrap();
        assert!(r.tag.is_none() && tags.is_empty());
        assert!(parse_ref_with_tags("localhost:5000/a:v1,bad tag").is_err());
        assert!(parse_ref_with_tags("localhost:5000/a:v1,").is_err());
    }

    #[test]
    fn annotations() {
        let a = parse_annotations(&["a=b=c".into(), "x=".into()]).unwrap();
        assert_eq!(a["a"], "b=c");
        assert_eq!(a["x"], "");
        assert!(parse_annotations(&["novalue".into()]).is_err());
        assert!(parse_annotations(&["=v".into()]).is_err());
    }
}
