//! The client commands: argument types shared by every subcommand, the error-to-exit-code
//! mapping, and dispatch. Each command is a thin layer over `wharf_client`.

pub mod artifact;
pub mod attest;
pub mod chart;
pub mod content;
pub mod flux;
pub mod login;
mod output;
mod progress;
pub mod sbom;
pub mod search;
pub mod sign;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use wharf_client::{Client, ClientOptions, Credential, Error, Reference};

pub use artifact::{
    AttachArgs, BackupArgs, CopyArgs, DiscoverArgs, PullArgs, PushArgs, RestoreArgs,
};
pub use content::{BlobCommand, ManifestCommand, RepoCommand, ResolveArgs, TagArgs, UntagArgs};
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

/// Options every client command takes: how to reach the registry, who to be (`conn`), and
/// the output. The connection options read through `Deref`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output: text for people, json for scripts (errors too).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl std::ops::Deref for ClientArgs {
    type Target = ConnArgs;
    fn deref(&self) -> &ConnArgs {
        &self.conn
    }
}

/// How to reach registries and who to be there; commands whose `--format` means something
/// else (`sbom get`) take only these.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Use plain HTTP (default for localhost and 127.0.0.1).
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// Use HTTPS even for localhost and 127.0.0.1 registries.
    #[arg(long, global = true, conflicts_with = "plain_http")]
    pub https: bool,
    /// Accept TLS certificates that do not verify (self-signed test registries).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file too (a registry with a private CA).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
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
}

/// Options of the commands that move blobs.
#[derive(Args, Debug, Clone)]
pub struct TransferArgs {
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Size of the requests large blobs are uploaded in, in MiB; an interrupted upload
    /// resumes from the last chunk the registry acknowledged.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub chunk_size: u64,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Per-side settings of the source registry of a copy; each replaces the general option of
/// the same name for that registry only.
#[derive(Args, Debug, Clone, Default)]
pub struct FromArgs {
    /// Plain HTTP to the source registry.
    #[arg(long)]
    pub from_plain_http: bool,
    /// Accept a source certificate that does not verify.
    #[arg(long)]
    pub from_insecure: bool,
    /// Trust these CA certificates (PEM) for the source registry.
    #[arg(long, value_name = "FILE")]
    pub from_ca_file: Option<PathBuf>,
    /// User name at the source registry.
    #[arg(long, env = "WHARF_FROM_USERNAME")]
    pub from_username: Option<String>,
    /// Password or token at the source registry.
    #[arg(long, env = "WHARF_FROM_PASSWORD", hide_env_values = true)]
    pub from_password: Option<String>,
}

/// Per-side settings of the destination registry of a copy or restore.
#[derive(Args, Debug, Clone, Default)]
pub struct ToArgs {
    /// Plain HTTP to the destination registry.
    #[arg(long)]
    pub to_plain_http: bool,
    /// Accept a destination certificate that does not verify.
    #[arg(long)]
    pub to_insecure: bool,
    /// Trust these CA certificates (PEM) for the destination registry.
    #[arg(long, value_name = "FILE")]
    pub to_ca_file: Option<PathBuf>,
    /// User name at the destination registry.
    #[arg(long, env = "WHARF_TO_USERNAME")]
    pub to_username: Option<String>,
    /// Password or token at the destination registry.
    #[arg(long, env = "WHARF_TO_PASSWORD", hide_env_values = true)]
    pub to_password: Option<String>,
}

/// One side's settings, whichever flag set they came from.
struct Side<'a> {
    name: &'static str,
    plain_http: bool,
    insecure: bool,
    ca_file: Option<&'a PathBuf>,
    username: Option<&'a String>,
    password: Option<&'a String>,
}

impl FromArgs {
    fn side(&self) -> Side<'_> {
        Side {
            name: "from",
            plain_http: self.from_plain_http,
            insecure: self.from_insecure,
            ca_file: self.from_ca_file.as_ref(),
            username: self.from_username.as_ref(),
            password: self.from_password.as_ref(),
        }
    }
}

impl ToArgs {
    fn side(&self) -> Side<'_> {
        Side {
            name: "to",
            plain_http: self.to_plain_http,
            insecure: self.to_insecure,
            ca_file: self.to_ca_file.as_ref(),
            username: self.to_username.as_ref(),
            password: self.to_password.as_ref(),
        }
    }
}

fn credential(
    username: Option<&String>,
    password: Option<&String>,
    flag: &str,
) -> Result<Option<Credential>, Error> {
    match (username, password) {
        (Some(u), Some(p)) => Ok(Some(Credential {
            username: u.clone(),
            password: p.clone(),
        })),
        (Some(_), None) => Err(Error::Invalid(format!(
            "--{flag}username needs --{flag}password (or WHARF_{}PASSWORD)",
            flag.to_uppercase().replace('-', "_")
        ))),
        (None, Some(_)) => Err(Error::Invalid(format!(
            "--{flag}password needs --{flag}username"
        ))),
        (None, None) => Ok(None),
    }
}

impl ConnArgs {
    /// The client options for a command that talks to `refs`' registries.
    pub fn options(&self, refs: &[&Reference]) -> Result<ClientOptions, Error> {
        let mut opts = ClientOptions {
            plain_http: self.plain_http,
            https: self.https,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            ..ClientOptions::default()
        };
        if let Some(p) = &self.registry_config {
            opts.docker_config = Some(p.clone());
        }
        // WHARF_PASSWORD alone is also a key password (`wharf sign`, as COSIGN_PASSWORD):
        // without a user name from anywhere, it is not a registry credential.
        let password = self.password.as_ref().filter(|p| {
            self.username.is_some() || std::env::var("WHARF_PASSWORD").ok().as_ref() != Some(*p)
        });
        if let Some(c) = credential(self.username.as_ref(), password, "")? {
            opts.credentials = refs
                .iter()
                .map(|r| (r.registry.clone(), c.clone()))
                .collect::<HashMap<_, _>>();
        }
        Ok(opts)
    }

    /// A client for a command that talks to `refs`' registries.
    pub fn client(&self, refs: &[&Reference]) -> Result<Client, Error> {
        Client::new(self.options(refs)?)
    }

    /// A client for a command that moves blobs.
    pub fn transfer_client(
        &self,
        refs: &[&Reference],
        transfer: &TransferArgs,
    ) -> Result<Client, Error> {
        let mut opts = self.options(refs)?;
        transfer.apply(&mut opts);
        Client::new(opts)
    }

    /// A client for a copy from `src` to `dst` (or a backup from `src`, a restore to
    /// `dst`), each side with its own transport and credentials where `--from-*` / `--to-*`
    /// give them.
    pub fn copy_client(
        &self,
        src: Option<(&Reference, &FromArgs)>,
        dst: Option<(&Reference, &ToArgs)>,
        transfer: &TransferArgs,
    ) -> Result<Client, Error> {
        let refs: Vec<&Reference> = src
            .iter()
            .map(|(r, _)| *r)
            .chain(dst.iter().map(|(r, _)| *r))
            .collect();
        let mut opts = self.options(&refs)?;
        transfer.apply(&mut opts);
        let sides = src
            .map(|(r, f)| (r, f.side()))
            .into_iter()
            .chain(dst.map(|(r, t)| (r, t.side())));
        for (r, side) in sides {
            let given = side.plain_http
                || side.insecure
                || side.ca_file.is_some()
                || side.username.is_some()
                || side.password.is_some();
            if !given {
                continue;
            }
            if refs.iter().filter(|o| o.registry == r.registry).count() > 1 {
                return Err(Error::Invalid(format!(
                    "--{}-* options name one side, but both sides are {}: use the general options",
                    side.name, r.registry
                )));
            }
            let mut t = opts.transport(&r.registry);
            t.plain_http |= side.plain_http;
            t.https &= !side.plain_http;
            t.insecure |= side.insecure;
            if let Some(ca) = side.ca_file {
                t.ca_file = Some(ca.clone());
            }
            opts.registries.insert(r.registry.clone(), t);
            let flag = format!("{}-", side.name);
            if let Some(c) = credential(side.username, side.password, &flag)? {
                opts.credentials.insert(r.registry.clone(), c);
            }
        }
        Client::new(opts)
    }
}

impl TransferArgs {
    fn apply(&self, opts: &mut ClientOptions) {
        opts.concurrency = self.concurrency as usize;
        opts.chunk_size = self.chunk_size << 20;
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
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::Verification(_) => {
            EXIT_VERIFY
        }
        Error::Transport { .. } => EXIT_NETWORK,
        _ => EXIT_FAILURE,
    }
}

/// Whether the command line asks for `--format json` (then errors are JSON too).
pub fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let mut prev_format = false;
    for a in args {
        if a == "--format=json" || (prev_format && a == "json") {
            return true;
        }
        prev_format = a == "--format";
    }
    false
}

/// An error as the JSON document `--format json` prints on failure (docs/cli-json.md).
pub fn error_json(e: &Error) -> String {
    let mut err = serde_json::json!({
        "message": describe(e),
        "exitCode": exit_code(e),
    });
    if let Some(status) = e.status() {
        err["status"] = status.into();
    }
    if let Error::Registry { code: Some(c), .. } = e {
        err["code"] = c.as_str().into();
    }
    serde_json::to_string_pretty(&serde_json::json!({ "error": err })).expect("JSON serialises")
}

/// Reports the failure of an operator command (`serve`, `gc`, `scrub`, `admin`): the same
/// one line, or with `--format json` the same document, as a client command's failure.
pub fn operator_failure(message: &str, json: bool) -> std::process::ExitCode {
    let message = without_os_error_numbers(message);
    if json {
        let doc = serde_json::json!({ "error": { "message": message, "exitCode": 1 } });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON serialises")
        );
    } else {
        eprintln!("wharf: error: {message}");
    }
    std::process::ExitCode::from(1)
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
    without_os_error_numbers(&s)
}

/// Drops the ` (os error N)` that Rust appends to system errors: the words before it already
/// say what happened, and the number means nothing to a person.
pub fn without_os_error_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(
            without_os_error_numbers("a.txt: No such file or directory (os error 2)"),
            "a.txt: No such file or directory"
        );
        assert_eq!(
            without_os_error_numbers("x (os error 13): y (os error 28)"),
            "x: y"
        );
        // not an os error number: left as it is
        assert_eq!(without_os_error_numbers("a (os error x)"), "a (os error x)");
        assert_eq!(without_os_error_numbers("a (os error 2"), "a (os error 2");
    }

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
    fn json_flag() {
        let args = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(wants_json(args(&["pull", "--format", "json", "x"])));
        assert!(wants_json(args(&["pull", "x", "--format=json"])));
        assert!(!wants_json(args(&["pull", "json", "--format", "text"])));
        assert!(!wants_json(args(&["pull", "x"])));
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
