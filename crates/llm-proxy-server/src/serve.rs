//! The listener loop: accepts client connections and serves an [`App`] over HTTP/1.1 with
//! connection limits (header, body and idle timeouts, a cap on open connections) and a bounded
//! graceful shutdown.
//!
//! Per connection, one clock runs at a time: while no request is in flight, the connection
//! waits for a request head (from connecting, or from the first byte of the next request:
//! `header_read_timeout`, which a byte-at-a-time trickle does not reset) or sits idle between
//! requests (`idle_timeout`). While a request is in flight its body must arrive within
//! `body_read_timeout`; the response itself is not timed here.
//!
//! Beyond `max_connections`, new connections wait until one closes: one per listening socket
//! accepted but unread, the others in the listen backlog. The binary serves each address on
//! several threads ([`serve_on_threads`]), each with its own socket; they share one cap.
//! On shutdown the listener closes, connections without a request in flight are dropped at
//! once, in-flight requests get `shutdown_grace`, and then [`Shutdown::expired`] tells streams
//! to end with an in-stream error; connections still open a moment later are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::config::ServerConfig;
use crate::service::App;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

mod signal;
use signal::Signal;
pub use signal::Wait;

/// How long connections may still flush their last bytes after the grace ended.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Shutdown of the listeners, shared with the handlers: [`begin`](Self::begin) stops accepting
/// and starts the grace; [`expired`](Self::expired) fires when the grace is over. The waits
/// are [`Signal`]s, cheap to poll again: every connection and every request holds one.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    begun: Arc<Signal>,
    expired: Arc<Signal>,
}

impl Shutdown {
    /// A shutdown that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins the graceful shutdown (idempotent).
    pub fn begin(&self) {
        self.begun.fire();
    }

    /// Resolves once the shutdown has begun.
    pub fn begun(&self) -> Wait {
        self.begun.wait()
    }

    /// Ends the grace: streams and waiting requests end now (idempotent).
    pub fn expire(&self) {
        self.begin();
        self.expired.fire();
    }

    /// Resolves once the grace is over.
    pub fn expired(&self) -> Wait {
        self.expired.wait()
    }
}

/// The request body took longer than `server.body_read_timeout` to arrive.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyReadTimeout(pub Duration);

/// Serves `app` on `listener` until `shutdown` has begun and the connections have drained
/// (or the grace has run out). The router's handlers see the peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, app: App, settings: ServerConfig, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    serve_with_slots(listener, app, Arc::new(settings), slots, shutdown).await;
}

/// [`serve`] with the connection cap (`slots`) shared by other listeners of the same address.
async fn serve_with_slots(
    listener: TcpListener,
    app: App,
    settings: Arc<ServerConfig>,
    slots: Arc<Semaphore>,
    shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Accepted before a slot is taken: the cap is shared with the other threads' sockets
        // of this address, and a slot held by a loop waiting on a socket nobody connects to
        // would keep a connection on another socket waiting while the proxy is below its cap.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!("accept failed: {e}");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.begun() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.begun() => break,
        };
        // At the cap, this connection waits unread (and the next ones in the backlog).
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.begun() => break,
        };
        // Streamed frames are small writes: never let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            settings.clone(),
            shutdown.clone(),
            permit,
        ));
    }
    // New connections are refused from here on.
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(open, grace = ?settings.shutdown_grace, "draining connections");
    }
    if tokio::time::timeout(settings.shutdown_grace, drain(&mut connections))
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "shutdown grace over; ending streams"
        );
        shutdown.expire();
        if tokio::time::timeout(FINAL_FLUSH, drain(&mut connections))
            .await
            .is_err()
        {
            connections.abort_all();
            drain(&mut connections).await;
        }
    }
}

/// Backlog of each listening socket (Tokio's own default).
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` listening sockets to one address. On Unix they share the port through
/// `SO_REUSEPORT`, and the kernel spreads new connections over them, one socket per serving
/// thread; elsewhere they are duplicates of one socket. The first resolves port 0, and tries
/// each address `host` resolves to, as `TcpListener::bind` does.
pub fn bind_listeners(
    host: &str,
    port: u16,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    use std::net::ToSocketAddrs as _;
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        let first = match listening_socket(addr) {
            Ok(socket) => socket,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let bound = first.local_addr()?;
        let mut sockets = Vec::with_capacity(count);
        sockets.push(first);
        for _ in 1..count {
            let next = if cfg!(unix) {
                listening_socket(bound)?
            } else {
                sockets[0].try_clone()?
            };
            sockets.push(next);
        }
        return Ok(sockets);
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} resolves to no address"),
        )
    }))
}

fn listening_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    {
        // As Tokio's bind: a restarted proxy rebinds at once despite TIME_WAIT connections.
        socket.set_reuse_address(true)?;
        // The kernel only groups sockets of the same user: another account cannot join.
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One address to serve: a socket per serving thread (from [`bind_listeners`]) and what it
/// serves.
pub struct Listener {
    pub sockets: Vec<std::net::TcpListener>,
    pub app: App,
}

/// Serves `listeners` on `threads` OS threads, each running its own single-threaded Tokio
/// runtime with its own socket of every listener: a connection, its requests and the tasks
/// they spawn stay on the thread the kernel handed the connection to, so a request is never
/// woken across threads and no worker spins looking for work to steal. Each address keeps one
/// connection cap (`max_connections`) over all threads. Returns once every thread has
/// finished serving (see [`serve`] for the shutdown), or an error if one could not start.
///
/// The price of no work stealing: a request that holds its thread's CPU (parsing a body of
/// tens of megabytes) delays the other connections on that thread, not those of the others.
pub async fn serve_on_threads(
    listeners: Vec<Listener>,
    threads: usize,
    settings: ServerConfig,
    shutdown: Shutdown,
) -> Result<(), String> {
    let settings = Arc::new(settings);
    let mut per_thread: Vec<Vec<(std::net::TcpListener, App, Arc<Semaphore>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for listener in listeners {
        if listener.sockets.len() != threads {
            return Err(format!(
                "{} sockets for {threads} serving threads",
                listener.sockets.len()
            ));
        }
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        for (socket, mine) in listener.sockets.into_iter().zip(per_thread.iter_mut()) {
            mine.push((socket, listener.app.clone(), slots.clone()));
        }
    }
    let mut finished = Vec::with_capacity(threads);
    for (index, work) in per_thread.into_iter().enumerate() {
        let (done, finished_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let (settings, stop) = (settings.clone(), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("llm-proxy-serve-{index}"))
            .spawn(move || {
                let _ = done.send(serve_thread(work, &settings, &stop));
            });
        if let Err(e) = spawned {
            shutdown.begin();
            return Err(format!("cannot start serving thread {index}: {e}"));
        }
        finished.push(finished_rx);
    }
    let mut outcome = Ok(());
    for (index, thread) in finished.into_iter().enumerate() {
        let result = thread
            .await
            .unwrap_or_else(|_| Err(format!("serving thread {index} panicked")));
        if let Err(e) = result {
            // One thread down takes the others with it: a proxy serving on some of its
            // sockets would silently drop the connections the kernel hands to the dead ones.
            shutdown.begin();
            if outcome.is_ok() {
                outcome = Err(e);
            }
        }
    }
    outcome
}

fn serve_thread(
    work: Vec<(std::net::TcpListener, App, Arc<Semaphore>)>,
    settings: &Arc<ServerConfig>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a serving runtime: {e}"))?;
    runtime.block_on(async {
        let mut servers = JoinSet::new();
        for (socket, app, slots) in work {
            let listener = TcpListener::from_std(socket)
                .map_err(|e| format!("cannot register a listening socket: {e}"))?;
            servers.spawn(serve_with_slots(
                listener,
                app,
                settings.clone(),
                slots,
                shutdown.clone(),
            ));
        }
        while let Some(ended) = servers.join_next().await {
            ended.map_err(|e| format!("server task failed: {e}"))?;
        }
        Ok(())
    })
}

async fn drain(connections: &mut JoinSet<()>) {
    while connections.join_next().await.is_some() {}
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    settings: Arc<ServerConfig>,
    shutdown: Shutdown,
    _slot: OwnedSemaphorePermit,
) {
    let state = Arc::new(ConnState::new(settings.header_read_timeout));
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        state: state.clone(),
        header_timeout: settings.header_read_timeout,
    });
    let service = ConnService {
        app,
        peer,
        state: state.clone(),
        body_timeout: settings.body_read_timeout,
    };
    let mut builder = http1::Builder::new();
    // Head timing is ours (hyper's would also cut idle keep-alive connections).
    builder.keep_alive(true).header_read_timeout(None);
    // Upgrades (Responses WebSocket mode) leave this loop: the connection task ends and the
    // upgraded socket lives on in its handler, under its own cap and timeouts.
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let timer = tokio::time::sleep(settings.header_read_timeout);
    tokio::pin!(timer);
    let mut draining = false;
    // Made once: a fresh wait per wake-up re-registered with the shutdown's waiters every time
    // the connection was polled.
    let begun = shutdown.begun();
    tokio::pin!(begun);
    loop {
        // No later than any deadline the connection can reach before the check (see
        // `ConnState::next_check`): requests starting and ending never wake this task.
        timer
            .as_mut()
            .reset(state.next_check(settings.header_read_timeout, settings.idle_timeout));
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            () = &mut timer => {
                if state.deadline(settings.idle_timeout).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing a connection that sent no complete request in time");
                    return;
                }
            }
            // Draining: the end of the last request in flight closes the connection.
            () = state.changed.notified(), if draining => {}
            () = &mut begun, if !draining => {
                draining = true;
                state.timers().draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
        // Idle or half-sent requests do not hold the shutdown up.
        if draining && state.in_flight() == 0 {
            return;
        }
    }
}

/// What one connection is doing, shared by its I/O, its service and its task.
struct ConnState {
    timers: Mutex<Timers>,
    /// Notified when the last request in flight ends while the connection drains.
    changed: Notify,
}

struct Timers {
    in_flight: usize,
    /// The shutdown has begun: the connection closes once nothing is in flight.
    draining: bool,
    /// When the head of the request being received must be complete.
    head_deadline: Option<Instant>,
    /// When the connection last finished a request.
    idle_since: Instant,
}

impl ConnState {
    fn new(header_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            timers: Mutex::new(Timers {
                in_flight: 0,
                draining: false,
                head_deadline: Some(now + header_timeout),
                idle_since: now,
            }),
            changed: Notify::new(),
        }
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_flight(&self) -> usize {
        self.timers().in_flight
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        let t = self.timers();
        if t.in_flight > 0 {
            None
        } else {
            Some(t.head_deadline.unwrap_or(t.idle_since + idle_timeout))
        }
    }

    /// When the connection's task next looks at its deadline: never later than any deadline
    /// the connection can reach before then, so that nothing needs to wake the task early (a
    /// request's start and end each did: three wake-ups and waiter registrations per request).
    /// That is its current deadline, or the shorter timeout from now if sooner: whatever
    /// happens meanwhile (a head completing, a request ending, the next head starting) sets
    /// deadlines at least that far away.
    fn next_check(&self, header_timeout: Duration, idle_timeout: Duration) -> Instant {
        let soonest = Instant::now() + header_timeout.min(idle_timeout);
        self.deadline(idle_timeout)
            .map_or(soonest, |at| at.min(soonest))
    }

    /// Bytes arrived: between requests they start the next head's clock.
    fn on_read(&self, header_timeout: Duration) {
        let mut t = self.timers();
        if t.in_flight == 0 && t.head_deadline.is_none() {
            t.head_deadline = Some(Instant::now() + header_timeout);
        }
    }
}

/// A request in flight on a connection, from its complete head until its response body ends.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> Self {
        {
            let mut t = state.timers();
            t.in_flight += 1;
            t.head_deadline = None;
        }
        Self(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let last_while_draining = {
            let mut t = self.0.timers();
            t.in_flight = t.in_flight.saturating_sub(1);
            if t.in_flight == 0 {
                t.idle_since = Instant::now();
            }
            t.draining && t.in_flight == 0
        };
        if last_while_draining {
            self.0.changed.notify_one();
        }
    }
}

/// The socket, noting when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    header_timeout: Duration,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read(this.header_timeout);
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The listener's [`App`] as one connection's hyper service.
#[derive(Clone)]
struct ConnService {
    app: App,
    peer: SocketAddr,
    state: Arc<ConnState>,
    body_timeout: Duration,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<GuardedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(self.state.clone());
        let timeout = self.body_timeout;
        let req = req.map(|body| Body::new(TimedBody::new(body, timeout)));
        let (app, peer) = (self.app.clone(), self.peer);
        Box::pin(async move {
            let response = app.handle(req, Some(peer)).await;
            Ok(response.map(|body| GuardedBody {
                inner: body,
                _in_flight: guard,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it ends.
struct GuardedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails with [`BodyReadTimeout`] unless it has arrived in time.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Created on the first wait, so bodies that arrive at once cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            timeout,
            timer: None,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or one of its sources) is a [`BodyReadTimeout`].
pub fn is_body_read_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyReadTimeout>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn the_next_check_comes_no_later_than_any_deadline_the_connection_can_reach() {
        let state = Arc::new(ConnState::new(HEADER));
        // A new connection: its first head's deadline.
        let opened = Instant::now();
        let check = state.next_check(HEADER, IDLE);
        assert!(check <= opened + HEADER + Duration::from_millis(50));
        assert_eq!(Some(check), state.deadline(IDLE));
        // A request in flight has no deadline; the check still comes within the shorter
        // timeout, before whatever deadline its end or the next head sets.
        let request = InFlight::start(state.clone());
        assert_eq!(state.deadline(IDLE), None);
        let armed = Instant::now();
        let check = state.next_check(HEADER, IDLE);
        assert!(check >= armed + HEADER && check <= Instant::now() + HEADER);
        drop(request);
        let idle_deadline = state.deadline(IDLE).unwrap();
        assert!(
            check <= idle_deadline,
            "the idle deadline is later than the check"
        );
        // The next head's first bytes: its deadline is later than the check armed before them.
        state.on_read(HEADER);
        let head_deadline = state.deadline(IDLE).unwrap();
        assert!(check <= head_deadline);
        assert_eq!(state.next_check(HEADER, IDLE), head_deadline);
    }

    #[test]
    fn only_the_end_of_the_last_request_while_draining_wakes_the_connection() {
        let state = Arc::new(ConnState::new(HEADER));
        drop(InFlight::start(state.clone()));
        let woken = || {
            let notified = state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };
        assert!(!woken(), "a request's end wakes nobody");
        let first = InFlight::start(state.clone());
        let second = InFlight::start(state.clone());
        state.timers().draining = true;
        drop(first);
        assert!(!woken(), "one request is still in flight");
        drop(second);
        assert!(woken(), "the last one ends the drain");
    }
}
