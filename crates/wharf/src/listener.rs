//! The one listener of `wharf serve`, for plain HTTP and HTTPS alike: it caps how many
//! connections are open at once and closes the ones that hold a slot without using it.
//!
//! A connection is "between requests" from its accept (or the end of its last response) until
//! a request reaches the router. In that state it gets `idle_timeout` to start a request and,
//! once the first byte arrived, `header_timeout` to finish its headers (a TLS handshake counts
//! as headers). Request bodies have their own idle timeout in the server crate; the time a
//! request spends in the router is not limited here, so a long commit is never cut off.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
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
    /// How long a connection may sit between requests without starting one.
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
/// connection marked busy from the request's arrival until its response body is done.
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
            let response = app.oneshot(req).await?;
            Ok(response.map(|body| axum::body::Body::new(BusyBody { body, _busy: busy })))
        }
    })
}

/// A request of the connection in progress; the connection is between requests again when
/// every one has been dropped (HTTP/2 carries several at once).
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: Arc<ConnState>) -> Busy {
        state.lock().requests += 1;
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.requests -= 1;
        if s.requests == 0 {
            s.since = Instant::now();
            s.first_byte = None;
            // A read may be pending with no deadline armed: wake it to arm one.
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        }
    }
}

/// A response body that keeps its request counted until it is sent (or abandoned).
struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the listener knows of one connection.
struct ConnState {
    header_timeout: Duration,
    idle_timeout: Duration,
    inner: Mutex<ConnInner>,
}

struct ConnInner {
    /// Requests that reached the router and whose responses are not done.
    requests: usize,
    /// When the connection last became free of requests.
    since: Instant,
    /// With no request in progress: when the first byte of the next one arrived.
    first_byte: Option<Instant>,
    /// The task waiting to read, to wake when a deadline should be armed.
    reader: Option<Waker>,
}

impl ConnState {
    fn new(header_timeout: Duration, idle_timeout: Duration) -> ConnState {
        ConnState {
            header_timeout,
            idle_timeout,
            inner: Mutex::new(ConnInner {
                requests: 0,
                since: Instant::now(),
                first_byte: None,
                reader: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn first_byte(&self) {
        let mut s = self.lock();
        if s.requests == 0 && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
        }
    }

    fn between_requests(&self) {
        let mut s = self.lock();
        s.first_byte = None;
        s.since = Instant::now();
    }

    /// When a connection without a request in progress is closed; `None` while one is.
    fn deadline(&self, waker: &Waker) -> Option<(Instant, &'static str)> {
        let mut s = self.lock();
        if s.requests > 0 {
            s.reader = Some(waker.clone());
            return None;
        }
        Some(match s.first_byte {
            Some(t) => (
                t + self.header_timeout,
                "request headers not received in time",
            ),
            None => (s.since + self.idle_timeout, "idle connection"),
        })
    }
}

/// A TCP stream whose reads fail once the connection overstays its deadline.
struct Watched {
    tcp: TcpStream,
    state: Arc<ConnState>,
    timer: Pin<Box<Sleep>>,
}

impl Watched {
    fn new(tcp: TcpStream, state: Arc<ConnState>) -> Watched {
        Watched {
            tcp,
            state,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
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
            Poll::Pending => {
                let Some((deadline, why)) = self.state.deadline(cx.waker()) else {
                    return Poll::Pending;
                };
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
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
