//! `wharf serve`: settles the configuration, opens the stores, and serves the API until
//! SIGINT or SIGTERM, letting requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;

use clap::Args;
use wharf_server::ServerOptions;

use crate::config::{Settings, StoreArgs, DEFAULT_LISTEN};
use crate::listener::ListenerOptions;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  wharf serve\n  wharf serve --listen 127.0.0.1:6000 --data-dir /srv/wharf\n  WHARF_DATA_DIR=/srv/wharf wharf serve --config /etc/wharf.toml\n  wharf serve --metadata-url postgres://wharf@db.internal/wharf\n  wharf serve --listen 0.0.0.0:443 --tls-cert fullchain.pem --tls-key privkey.pem --config /etc/wharf.toml\n  wharf serve --read-only --data-dir /srv/wharf   # maintenance: pulls only\n\nPrecedence: flags, then WHARF_* variables, then the config file, then defaults."
)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, env = "WHARF_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    store: StoreArgs,
    /// Serve without authentication on a non-loopback address (refused otherwise)
    #[arg(long, env = "WHARF_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Serve HTTPS with this PEM certificate (chain); reloaded when the file changes
    #[arg(
        long,
        env = "WHARF_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key
    #[arg(
        long,
        env = "WHARF_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Serve pulls only, refusing every write (maintenance mode)
    #[arg(long, env = "WHARF_READ_ONLY")]
    read_only: bool,
    /// Serve manifests of the repositories this signature policy names only when they are
    /// signed as it asks (docs/signing.md)
    #[arg(long, env = "WHARF_PULL_POLICY", value_name = "FILE")]
    pull_policy: Option<PathBuf>,
    /// Log filter, e.g. info or wharf_server=debug [default: info]
    #[arg(long, env = "WHARF_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Log lines as text for people or one JSON object each for collectors [default: text]
    #[arg(long, env = "WHARF_LOG_FORMAT", value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// One log line per request (target wharf::access) [default: true]
    #[arg(long, env = "WHARF_ACCESS_LOG", value_name = "BOOL")]
    access_log: Option<bool>,
    /// Serve /metrics on this address (no authentication) instead of the API port
    #[arg(long, env = "WHARF_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;
const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 90;
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Descriptors kept free of connections: the database, blob files, uploads in flight.
const FILES_RESERVED: usize = 256;

fn settle(args: ServeArgs) -> Result<Settings, String> {
    let file = args.store.file_config()?;
    let data_dir = args.store.data_dir(&file);
    let store = args.store.store_config(&file)?;
    let l = &file.limits;
    let d = ServerOptions::default();
    Ok(Settings {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address parses")),
        data_dir,
        store,
        allow_anonymous: args.allow_anonymous || file.allow_anonymous.unwrap_or(false),
        read_only: args.read_only || file.read_only.unwrap_or(false),
        pull_policy: match args.pull_policy.or(file.pull_policy.clone()) {
            Some(p) => Some(std::sync::Arc::new(crate::policy_file::load(&p)?)),
            None => None,
        },
        log: {
            let filter = args.log.or(file.log).unwrap_or_else(|| "info".into());
            match args.access_log.or(file.access_log).unwrap_or(true) {
                true => filter,
                false => format!("{filter},wharf::access=off"),
            }
        },
        log_json: match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(format!("log_format {other:?} is neither text nor json")),
        },
        max_page_size: l.max_page_size.unwrap_or(d.max_page_size),
        chunk_min_length: l.chunk_min_length.unwrap_or(d.chunk_min_length),
        body_idle_timeout_secs: l
            .body_idle_timeout_secs
            .unwrap_or(d.body_idle_timeout.as_secs()),
        drain_max_bytes: l.drain_max_bytes.unwrap_or(d.drain_max_bytes),
        header_timeout_secs: l.header_timeout_secs.unwrap_or(DEFAULT_HEADER_TIMEOUT_SECS),
        idle_timeout_secs: l.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
        max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        shutdown_timeout_secs: l.shutdown_timeout_secs.unwrap_or(30),
        upload_expiry_secs: l.upload_expiry_secs.unwrap_or(24 * 3600),
        upload_expiry_check_secs: l.upload_expiry_check_secs.unwrap_or(600),
        auth: file.auth.clone(),
        scrub: file.scrub.clone(),
        gc: file.gc.clone(),
        webhooks: crate::webhook_config::endpoints(&file.webhooks)?,
        metrics: {
            let mut m = file.metrics.clone();
            m.listen = args.metrics_listen.or(m.listen);
            m
        },
        tls: crate::tls::TlsSettings::from_file(
            &file.tls.clone().unwrap_or_default(),
            args.tls_cert.clone(),
            args.tls_key.clone(),
        )?,
    })
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let s = settle(args)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&s.log)
        .map_err(|e| format!("invalid log filter {:?}: {e}", s.log))?;
    // Lines are written by a thread of their own, so a request never waits on a write to
    // stderr (one access line each adds up); none is dropped, and the guard flushes the
    // rest when `run` returns.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if s.log_json {
        // One object per line; the request's id is in its span, on every line it logs.
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    if !s.listen.ip().is_loopback() && !s.allow_anonymous && s.auth.is_none() {
        return Err(format!(
            "refusing to serve {} without authentication on a non-loopback address; \
             configure [auth] (see docs/auth.md) or pass --allow-anonymous",
            s.listen
        ));
    }
    if s.max_page_size == 0 || s.store.limits.max_manifest_size == 0 {
        return Err("limits.max_page_size and limits.max_manifest_size must be positive".into());
    }
    if s.max_connections == 0 || s.header_timeout_secs == 0 || s.idle_timeout_secs == 0 {
        return Err(
            "limits.max_connections, limits.header_timeout_secs and limits.idle_timeout_secs \
             must be positive"
                .into(),
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(serve(s))
}

async fn serve(s: Settings) -> Result<(), String> {
    // An embedded registry is one process's: `wharf gc` run beside it would not see its
    // pushes, so it refuses while this lock is held.
    let _serving = match &s.store.metadata {
        wharf_store::MetadataLocation::Sqlite(db) => Some(crate::gc::ServeLock::shared(db)?),
        wharf_store::MetadataLocation::Postgres(_) => None,
    };
    let opened = wharf_store::open(&s.store)
        .await
        .map_err(|e| format!("cannot open the store in {}: {e}", s.data_dir.display()))?;
    let registry = opened.registry;
    if opened.orphans > 0 {
        tracing::info!(
            orphans = opened.orphans,
            "discarded upload files that no session names"
        );
    }
    let s_read_only = s.read_only;
    let expiry = (
        registry.clone(),
        Duration::from_secs(s.upload_expiry_secs),
        Duration::from_secs(s.upload_expiry_check_secs.max(1)),
    );
    // Expiring uploads writes; a read-only registry leaves them for when it is writable.
    tokio::spawn(async move {
        if s_read_only {
            return;
        }
        let (registry, max_idle, every) = expiry;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = registry.expire_uploads(max_idle).await {
                tracing::warn!("expiring idle uploads failed: {e}");
            }
        }
    });
    let auth = match &s.auth {
        Some(a) => Some(std::sync::Arc::new(wharf_auth::Auth::new(
            crate::auth_config::build(a, &s.data_dir)?,
            opened.api_keys,
        ))),
        None => None,
    };
    if auth.is_some() {
        tracing::info!("access control on");
    }
    if let Some(p) = &s.pull_policy {
        tracing::info!(rules = p.rules.len(), "pull policy on");
    }
    let backlog = registry.clone();
    let (metrics, metrics_access) = metrics(&s);
    if let (Some(m), Some(addr)) = (&metrics, s.metrics.listen) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
        let router = wharf_server::metrics_router(registry.clone(), m.clone());
        tracing::info!(
            "metrics on http://{}/metrics",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("the metrics listener stopped: {e}");
            }
        });
    }
    if let Some(every) = s.scrub.interval_secs.filter(|n| *n > 0) {
        let quarantine = s.scrub.quarantine.unwrap_or(true) && !s.read_only;
        tokio::spawn(scrub_on_schedule(
            registry.clone(),
            metrics.clone(),
            Duration::from_secs(every),
            quarantine,
        ));
    }
    let gc_defaults = wharf_server::GcDefaults {
        grace: Duration::from_secs(s.gc.grace_secs.unwrap_or(crate::gc::DEFAULT_GRACE_SECS)),
        upload_expiry: Duration::from_secs(s.upload_expiry_secs),
    };
    let webhooks = match s.webhooks.is_empty() {
        true => None,
        false => {
            let names: Vec<&str> = s.webhooks.iter().map(|e| e.name.as_str()).collect();
            tracing::info!(endpoints = ?names, "webhooks on");
            Some(wharf_server::webhooks::Webhooks::start(
                s.webhooks.clone(),
                s.listen.to_string(),
                s.tls.is_some(),
                metrics.as_deref(),
            )?)
        }
    };
    if let (Some(every), false) = (s.gc.interval_secs.filter(|n| *n > 0), s.read_only) {
        tokio::spawn(gc_on_schedule(
            registry.clone(),
            metrics.clone(),
            webhooks.clone(),
            Duration::from_secs(every),
            gc_defaults.clone(),
        ));
    }
    let app = wharf_server::router(
        registry,
        ServerOptions {
            max_page_size: s.max_page_size,
            chunk_min_length: s.chunk_min_length,
            body_idle_timeout: Duration::from_secs(s.body_idle_timeout_secs),
            drain_max_bytes: s.drain_max_bytes,
            read_only: s.read_only,
            pull_policy: s.pull_policy.clone(),
            metrics,
            metrics_access,
            gc: gc_defaults,
            webhooks: webhooks.clone(),
        },
        auth,
    );
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let options = ListenerOptions {
        max_connections: connection_cap(s.max_connections),
        header_timeout: Duration::from_secs(s.header_timeout_secs),
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        tls: s.tls.as_ref().map(crate::tls::acceptor).transpose()?,
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(data_dir = %s.data_dir.display(), "wharf registry serving on {scheme}://{addr}");
    if s.auth.is_none() {
        tracing::warn!(
            "access control is off (no [auth] in the configuration): anyone who reaches \
             {addr} may pull, push and delete; docs/auth.md turns it on"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::listener::serve(listener, options, app, stop_rx));
    // Manifests stored before the artifact index existed are indexed once, in the
    // background, once the registry serves.
    if !s.read_only {
        let r = backlog;
        tokio::spawn(async move {
            match r.index_backlog().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(manifests = n, "indexed manifests stored before the index"),
                Err(e) => tracing::warn!("indexing older manifests failed: {e}"),
            }
        });
    }
    finish(server, stop_tx, s.shutdown_timeout_secs, webhooks).await
}

/// Runs a collection pass every `every`, the first one interval after start. With replicas,
/// each tries, and one pass runs per interval among them.
async fn gc_on_schedule(
    registry: std::sync::Arc<wharf_store::Registry>,
    metrics: Option<std::sync::Arc<wharf_server::metrics::Metrics>>,
    webhooks: Option<std::sync::Arc<wharf_server::webhooks::Webhooks>>,
    every: Duration,
    defaults: wharf_server::GcDefaults,
) {
    let opts = wharf_store::GcOptions {
        grace: defaults.grace,
        dry_run: false,
        upload_expiry: defaults.upload_expiry,
    };
    loop {
        tokio::time::sleep(every).await;
        // Logged and counted inside; a failed pass is tried again at the next interval.
        let ran = registry
            .scheduled_pass("gc", every, || {
                wharf_server::gc::pass(&registry, metrics.as_deref(), webhooks.as_deref(), &opts)
            })
            .await;
        if let Ok(None) = ran {
            tracing::debug!("garbage collection: another replica's pass ran this interval");
        }
    }
}

/// Scrubs every `every`, the first pass one interval after start (with replicas, one pass
/// per interval among them); damage is logged blob by blob and counted in the metrics as it
/// is found.
async fn scrub_on_schedule(
    registry: std::sync::Arc<wharf_store::Registry>,
    metrics: Option<std::sync::Arc<wharf_server::metrics::Metrics>>,
    every: Duration,
    quarantine: bool,
) {
    loop {
        tokio::time::sleep(every).await;
        let started = std::time::Instant::now();
        let scheduled = registry
            .scheduled_pass("scrub", every, || {
                registry.scrub(quarantine, |digest, size, condition| {
                    if let Some(m) = &metrics {
                        let read = if *condition == wharf_store::BlobCondition::Missing {
                            0
                        } else {
                            size
                        };
                        m.scrubbed(condition.as_str(), read);
                    }
                    if *condition != wharf_store::BlobCondition::Intact {
                        tracing::warn!(
                            event = "scrub_damage",
                            "{}",
                            crate::scrub::describe(digest, size, condition)
                        );
                    }
                })
            })
            .await;
        let pass = match scheduled {
            Ok(Some(pass)) => pass,
            Ok(None) => {
                tracing::debug!("scrub: another replica's pass ran this interval");
                continue;
            }
            Err(e) => Err(e),
        };
        if let Some(m) = &metrics {
            m.scrub_finished(pass.is_ok());
        }
        match pass {
            Ok(r) => tracing::info!(
                blobs = r.blobs,
                bytes = r.bytes,
                corrupt = r.corrupt,
                missing = r.missing,
                seconds = started.elapsed().as_secs_f64(),
                "scrub pass done"
            ),
            Err(e) => tracing::warn!("scrub pass failed: {e}"),
        }
    }
}

/// The metrics to record (none when turned off) and who may read them on the API port.
fn metrics(
    s: &Settings,
) -> (
    Option<std::sync::Arc<wharf_server::metrics::Metrics>>,
    wharf_server::MetricsAccess,
) {
    use wharf_server::MetricsAccess;
    let m = &s.metrics;
    if !m.enabled.unwrap_or(true) {
        return (None, MetricsAccess::Elsewhere);
    }
    let d = wharf_server::metrics::MetricsOptions::default();
    let metrics = wharf_server::metrics::Metrics::new(wharf_server::metrics::MetricsOptions {
        max_repositories: m.max_repositories.unwrap_or(d.max_repositories),
        storage_limit_bytes: m.storage_limit_bytes.filter(|n| *n > 0),
        usage_refresh: m
            .usage_refresh_secs
            .map_or(d.usage_refresh, Duration::from_secs),
    });
    let access = if m.listen.is_some() {
        MetricsAccess::Elsewhere
    } else if m.public.unwrap_or(false) {
        MetricsAccess::Public
    } else {
        MetricsAccess::Users(m.users.clone())
    };
    (Some(std::sync::Arc::new(metrics)), access)
}

/// The connection cap that the open-file limit allows, with descriptors kept for files.
fn connection_cap(configured: usize) -> usize {
    let Some(files) = crate::listener::raise_open_file_limit() else {
        return configured;
    };
    let fits = (files as usize).saturating_sub(FILES_RESERVED).max(1);
    if fits < configured {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = files,
            "the open-file limit allows only {fits} connections; raise it (LimitNOFILE in \
             systemd, ulimit -n) or lower limits.max_connections"
        );
        return fits;
    }
    configured
}

/// Waits for SIGINT or SIGTERM, then lets requests in flight finish and queued webhook
/// events go out, within one bounded time.
async fn finish(
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    shutdown_timeout_secs: u64,
    webhooks: Option<std::sync::Arc<wharf_server::webhooks::Webhooks>>,
) -> Result<(), String> {
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(shutdown_timeout_secs);
    let _ = stop_tx.send(());
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(format!("server failed: {e}")),
        Ok(Err(e)) => return Err(format!("server task failed: {e}")),
        Err(_) => tracing::warn!(
            "requests still running after {}s; stopping anyway (unfinished uploads stay resumable)",
            shutdown_timeout_secs
        ),
    }
    if let Some(w) = webhooks {
        let left = w.flush(deadline).await;
        if left > 0 {
            tracing::warn!(
                events = left,
                "webhook events not delivered within the shutdown timeout ({shutdown_timeout_secs}s); stopping anyway"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
