//! The one listener of `wharf serve`, for plain HTTP and HTTPS alike: it caps how many
//! connections are open at once and closes the ones that hold a slot without using it.
//!
//! A connection is "between requests" whenever no request is in the router. In that state it
//! gets `idle_timeout` since it last sent or received anything (so a response body still
//! streaming keeps it alive) to start a request and, once the first byte arrived,
//! `header_timeout` to finish its headers (a TLS handshake counts as headers). Request bodies
//! have their own idle timeout in the server crate; the time a request spends in the router is
//! not limited here, so a long commit is never cut off.
//!
//! The bookkeeping is a few atomics per connection and one timer that is re-armed only when it
//! fires early, so keep-alive requests pay no lock and no timer-wheel update.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use futures_util::task::AtomicWaker;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use wharf_server::auth::{ClientCertificate, Https};

/// What the listener enforces.
#[derive(Clone)]
pub struct ListenerOptions {
    /// Connections open at once; beyond it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// From a request's first byte (or a TLS handshake's) to the end of its headers.
    pub header_timeout: Duration,
    /// How long a connection with no request in the router may go without a byte either way.
    pub idle_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts connections until `stop` resolves, then lets the open ones finish their requests.
pub async fn serve(
    listener: TcpListener,
    options: ListenerOptions,
    app: Router,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut full_logged = false;
    tokio::pin!(stop);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if !full_logged {
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                    full_logged = true;
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                    _ = &mut stop => break,
                }
            }
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: the connection stays in the
                    // backlog; wait for descriptors to be freed rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        if slots.available_permits() > options.max_connections / 10 {
            full_logged = false;
        }
        // Without TCP_NODELAY, a response written as headers then body waits on the client's
        // delayed ACK: ~40 ms per small request.
        let _ = tcp.set_nodelay(true);
        let (options, app, watcher) = (options.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(tcp, addr, &options, app, watcher).await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    addr: SocketAddr,
    options: &ListenerOptions,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let state = Arc::new(ConnState::new(options.header_timeout, options.idle_timeout));
    let io = Watched::new(tcp, state.clone());
    let builder = auto::Builder::new(TokioExecutor::new());
    match &options.tls {
        None => {
            let service = service(app, addr, None, false, state);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(client = %addr, "connection ended: {e}");
            }
        }
        Some(acceptor) => {
            state.first_byte();
            let tls = match tokio::time::timeout(options.header_timeout, acceptor.accept(io)).await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(client = %addr, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %addr, "TLS handshake timed out");
                    return;
                }
            };
            state.between_requests();
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::common_name);
            let service = service(app, addr, peer, true, state);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(client = %addr, "connection ended: {e}");
            }
        }
    }
}

type Incoming = hyper::Request<hyper::body::Incoming>;

/// The router, with the caller's address (and certificate name) on each request, and the
/// connection marked busy while a request is in the router.
fn service(
    app: Router,
    addr: SocketAddr,
    peer: Option<String>,
    tls: bool,
    state: Arc<ConnState>,
) -> impl hyper::service::Service<
    Incoming,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Incoming| {
        let busy = Busy::start(state.clone());
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(addr));
        if let Some(cn) = &peer {
            req.extensions_mut().insert(ClientCertificate(cn.clone()));
        }
        if tls {
            req.extensions_mut().insert(Https);
        }
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(busy);
            response
        }
    })
}

/// A request of the connection in the router; the connection is between requests again when
/// every one has been dropped (HTTP/2 carries several at once).
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: Arc<ConnState>) -> Busy {
        state.requests.fetch_add(1, Ordering::AcqRel);
        state.first_byte.store(0, Ordering::Release);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        s.touch();
        if s.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A read may be pending with no deadline in force: wake it to apply one.
            s.reader.wake();
        }
    }
}

/// What the listener knows of one connection. Times are milliseconds since `epoch`.
struct ConnState {
    header_timeout: Duration,
    idle_timeout: Duration,
    epoch: Instant,
    /// Requests in the router.
    requests: AtomicUsize,
    /// When the connection last sent or received bytes, or a request left the router.
    active: AtomicU64,
    /// With no request in the router: when the first byte of the next one arrived, plus one
    /// (zero: none yet).
    first_byte: AtomicU64,
    /// The task waiting to read, woken when the last request leaves the router.
    reader: AtomicWaker,
}

impl ConnState {
    fn new(header_timeout: Duration, idle_timeout: Duration) -> ConnState {
        ConnState {
            header_timeout,
            idle_timeout,
            epoch: Instant::now(),
            requests: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            reader: AtomicWaker::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.active.store(self.now_ms(), Ordering::Release);
    }

    fn first_byte(&self) {
        let now = self.now_ms();
        self.active.store(now, Ordering::Release);
        if self.requests.load(Ordering::Acquire) == 0 {
            let _ =
                self.first_byte
                    .compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn between_requests(&self) {
        self.first_byte.store(0, Ordering::Release);
        self.touch();
    }

    /// When a connection without a request in the router is closed, and why; `None` while
    /// one is (the waker is then kept, to be woken when it leaves).
    fn deadline(&self, waker: &Waker) -> Option<(Instant, &'static str)> {
        if self.requests.load(Ordering::Acquire) > 0 {
            self.reader.register(waker);
            // It may have left between the check and the registration.
            if self.requests.load(Ordering::Acquire) > 0 {
                return None;
            }
        }
        let ms = |t: u64| self.epoch + Duration::from_millis(t);
        Some(match self.first_byte.load(Ordering::Acquire) {
            0 => (
                ms(self.active.load(Ordering::Acquire)) + self.idle_timeout,
                "idle connection",
            ),
            t => (
                ms(t - 1) + self.header_timeout,
                "request headers not received in time",
            ),
        })
    }
}

/// A TCP stream whose reads fail once the connection overstays its deadline.
struct Watched {
    tcp: TcpStream,
    state: Arc<ConnState>,
    /// Armed at the earliest deadline seen; when it fires early (activity moved the deadline
    /// later), it is re-armed at the current one.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(tcp: TcpStream, state: Arc<ConnState>) -> Watched {
        Watched {
            tcp,
            state,
            timer: None,
        }
    }

    /// Whether the connection is past its deadline; otherwise a wake-up is arranged for it.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        loop {
            let (deadline, why) = self.state.deadline(cx.waker())?;
            if deadline <= Instant::now() {
                return Some(why);
            }
            let timer = match &mut self.timer {
                Some(t) if t.deadline() <= deadline => t,
                slot => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            // Fired for an earlier deadline than the one now in force: arm for that one.
            timer.as_mut().reset(deadline);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.state.first_byte();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.expired(cx) {
                Some(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why))),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Raises this process's open-file limit to its hard limit (as Go's runtime does), so the
/// connection cap, not the soft limit's usual 1,024, decides how many clients are served.
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                l = raised;
            }
        }
        Some(l.rlim_cur)
    }
}
