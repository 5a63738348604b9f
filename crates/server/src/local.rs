//! A registry in the calling process, for the tests and examples of code that talks to a
//! registry: the embedded default in a directory of the caller's, served without access
//! control on a loopback port the OS picks. `wharf serve` is the way to run one for people.

use std::net::SocketAddr;
use std::path::Path;

use crate::ServerOptions;

/// A registry serving on `127.0.0.1` until dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), String> {
/// let dir = std::env::temp_dir().join(format!("wharf-doc-{}", std::process::id()));
/// let registry = wharf_server::LocalRegistry::start(&dir).await?;
/// println!("pushing to {}/team/app", registry.host());
/// # drop(registry); std::fs::remove_dir_all(&dir).ok(); Ok(()) }
/// ```
pub struct LocalRegistry {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LocalRegistry {
    /// Opens (or creates) the embedded store in `data_dir` and serves it. Must be called
    /// inside a Tokio runtime, which then runs the server.
    pub async fn start(data_dir: &Path) -> Result<LocalRegistry, String> {
        let config = wharf_store::StoreConfig::new(data_dir, None).map_err(|e| e.to_string())?;
        let opened = wharf_store::open(&config)
            .await
            .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
        let app = crate::router(opened.registry, ServerOptions::default(), None);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("local registry stopped: {e}");
            }
        });
        Ok(LocalRegistry { addr, task })
    }

    /// `127.0.0.1:PORT`, as references name the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}
