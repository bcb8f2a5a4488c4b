//! The built-in backends' upstream transport: hyper's client connections over rustls with
//! Mozilla's roots, pooled per thread by origin, without reqwest's layers and without
//! hyper-util's shared pool.
//!
//! reqwest's layers cost about a sixth of the proxy's own work per request (callgrind, see
//! docs/benchmarks.md): its redirect layer and its response future each turn the URI back
//! into a `String` and re-parse it into a `Url`, even with redirects off. hyper-util's pool,
//! under them, locks a map, races a lazy connect against the checkout, and spawns a task per
//! HTTP/1 request to put the connection back. Here a serving thread keeps its own
//! connections: checkout takes the first ready one (an HTTP/1 connection is ready again once
//! its response has been read; an HTTP/2 one is shared), or opens one.
//!
//! What reqwest did that matters is kept: `accept: */*` when the request names none, TCP
//! no-delay, the connect timeout, happy eyeballs (hyper-util's connector), HTTP/2 where TLS
//! offers it, connections unused for 90 s closed, a request that met a connection the
//! upstream had just closed sent again on another (never one that went out). Unlike reqwest's
//! default client, redirects are never followed: a redirected POST would lose its body or its
//! method, so a 3xx reaches the exchange as the upstream's answer. Credentials in a URL are
//! not sent (reqwest's `execute` did not send them either). With an outbound proxy in the
//! environment, which only reqwest honours, backends send through reqwest
//! ([`CaptureAwareClient::with_lean_pools`](crate::http::CaptureAwareClient)).

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::error::BackendError;

/// How long an unused pooled connection is kept (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);
/// How often a thread's pools close the connections unused for [`POOL_IDLE`].
const REAP_EVERY: Duration = Duration::from_secs(30);

/// Builds each thread's pools of one client (and its clones); the pools live in the threads.
pub(crate) struct LeanPools {
    connector: HttpsConnector<HttpConnector>,
}

/// One thread's connections of one [`LeanPools`], by origin.
#[derive(Default)]
struct ThreadPool {
    /// HTTP/1 connections, one request at a time each: idle ones, and ones whose response
    /// is still being read (not ready yet), which checkout passes over.
    h1: Vec<(Origin, Vec<Idle>)>,
    /// HTTP/2 connections, shared by every request to the origin.
    h2: Vec<(Origin, http2::SendRequest<Full<Bytes>>)>,
}

struct Idle {
    sender: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

#[derive(Clone, Eq)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        // `Authority`'s own comparison ignores case byte by byte; the pools compare an origin
        // with itself (the same URL's) on every checkout and checkin, so equal bytes first.
        self.scheme == other.scheme
            && (self.authority.as_str() == other.authority.as_str()
                || self.authority == other.authority)
    }
}

/// What sending to one URL needs, worked out once per thread and URL instead of per request
/// (parsing the URL into a `Uri` was about 1% of a request's instructions): the URI (HTTP/2's
/// request target), the origin the pools are keyed by, the path alone (HTTP/1's) and the
/// `Host` value.
pub(crate) struct Target {
    uri: Uri,
    origin: Origin,
    path: Uri,
    host: Option<HeaderValue>,
}

impl Target {
    fn of(url: &str) -> Result<Self, BackendError> {
        let uri = Uri::try_from(url).map_err(unsendable)?;
        let origin = Origin::of(&uri)?;
        let path = Uri::from(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Ok(Self {
            host: host_header(&uri),
            uri,
            origin,
            path,
        })
    }
}

/// The most URLs a thread keeps [`Target`]s of (a backend instance sends to one or two);
/// past it, the oldest is forgotten.
const TARGETS_KEPT: usize = 32;

thread_local! {
    /// This thread's [`Target`]s, by URL.
    static TARGETS: RefCell<Vec<(Box<str>, Arc<Target>)>> = const { RefCell::new(Vec::new()) };
}

/// A connection taken from or added to a pool for one request.
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

thread_local! {
    /// This thread's pools, by the [`LeanPools`] they were made for. An entry whose owner is
    /// gone (a backend instance dropped on reload) is pruned when the next is added.
    static POOLS: RefCell<Vec<(Weak<LeanPools>, ThreadPool)>> = const { RefCell::new(Vec::new()) };
}

impl LeanPools {
    /// Pools connecting within `connect_timeout`, trusting Mozilla's roots.
    pub(crate) fn new(connect_timeout: Duration) -> Result<Arc<Self>, BackendError> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::trusting(connect_timeout, roots)
    }

    /// Pools connecting within `connect_timeout`, trusting `roots`.
    fn trusting(
        connect_timeout: Duration,
        roots: rustls::RootCertStore,
    ) -> Result<Arc<Self>, BackendError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BackendError::config(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Arc::new(Self { connector }))
    }

    /// Runs `f` on the calling thread's pool of `self`, made (with its reaper) on first use.
    fn with_pool<T>(self: &Arc<Self>, f: impl FnOnce(&mut ThreadPool) -> T) -> T {
        POOLS.with_borrow_mut(|pools| {
            let me = Arc::as_ptr(self);
            let at = match pools.iter().position(|(owner, _)| owner.as_ptr() == me) {
                Some(at) => at,
                None => {
                    pools.retain(|(owner, _)| owner.strong_count() > 0);
                    pools.push((Arc::downgrade(self), ThreadPool::default()));
                    self.spawn_reaper();
                    pools.len() - 1
                }
            };
            f(&mut pools[at].1)
        })
    }

    /// Prunes the calling thread's pool of `self`, if it has one (a reaper that a
    /// multi-threaded runtime moved to another thread makes none there).
    fn prune_here(self: &Arc<Self>, now: Instant) {
        POOLS.with_borrow_mut(|pools| {
            let me = Arc::as_ptr(self);
            if let Some((_, pool)) = pools.iter_mut().find(|(owner, _)| owner.as_ptr() == me) {
                pool.prune(now);
            }
        });
    }

    /// Closes this thread's connections unused for [`POOL_IDLE`] every [`REAP_EVERY`], until
    /// the pools' owner is gone.
    fn spawn_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let owner = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(REAP_EVERY).await;
                let Some(pools) = owner.upgrade() else { return };
                pools.prune_here(Instant::now());
            }
        });
    }

    /// Sends one request through the calling thread's pool and waits for the response head.
    /// A pooled connection the upstream closed before the request went out is left for
    /// another (or a new one); once sent, a request is never sent again.
    pub(crate) async fn send(
        self: &Arc<Self>,
        method: Method,
        target: Arc<Target>,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, BackendError> {
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        // HTTP/1 names the host in `Host`; HTTP/2 in `:authority`, which hyper fills from the
        // URI (as hyper-util does, `Host` is added for HTTP/1 only).
        let host = if headers.contains_key(HOST) {
            None
        } else {
            target.host.as_ref()
        };
        let origin = &target.origin;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.headers_mut() = headers;
        loop {
            let pooled = self.with_pool(|pool| pool.checkout(origin, Instant::now()));
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                // Boxed: connecting (DNS, TLS, the handshakes) is a large state machine,
                // which would otherwise make every request's future that much bigger to
                // build and move.
                None => Box::pin(self.connect(origin)).await?,
            };
            // HTTP/1 names the path alone; HTTP/2 the scheme and authority too.
            match conn {
                Conn::H1(_) => {
                    *request.uri_mut() = target.path.clone();
                    if let Some(host) = host {
                        request.headers_mut().insert(HOST, host.clone());
                    }
                }
                Conn::H2(_) => {
                    *request.uri_mut() = target.uri.clone();
                    if host.is_some() {
                        request.headers_mut().remove(HOST);
                    }
                }
            }
            let sent = match &mut conn {
                Conn::H1(sender) => sender.try_send_request(request).await,
                Conn::H2(sender) => sender.try_send_request(request).await,
            };
            match sent {
                Ok(response) => {
                    self.with_pool(|pool| pool.checkin(origin, conn, Instant::now()));
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(exchange_error(&e.into_error(), "upstream request failed")),
                },
            }
        }
    }

    /// A new connection to `origin`: TCP (and TLS, offering HTTP/2 and HTTP/1.1), its
    /// protocol's handshake, and its task spawned on the calling thread's runtime.
    async fn connect(&self, origin: &Origin) -> Result<Conn, BackendError> {
        let target = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(unsendable)?;
        let io = self
            .connector
            .clone()
            .call(target)
            .await
            .map_err(|e| exchange_error(e.as_ref(), CANNOT_CONNECT))?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| exchange_error(&e, CANNOT_CONNECT))?;
            tokio::spawn(connection);
            Ok(Conn::H2(sender))
        } else {
            let (sender, connection) = http1::handshake(io)
                .await
                .map_err(|e| exchange_error(&e, CANNOT_CONNECT))?;
            tokio::spawn(connection);
            Ok(Conn::H1(sender))
        }
    }
}

impl Origin {
    fn of(uri: &Uri) -> Result<Self, BackendError> {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => Ok(Self {
                scheme: scheme.clone(),
                authority: authority.clone(),
            }),
            _ => Err(unsendable(format_args!(
                "'{}' is not an absolute URL",
                uri.path()
            ))),
        }
    }
}

impl ThreadPool {
    /// A connection to `origin` ready for a request: the HTTP/2 one, or an idle HTTP/1 one
    /// (those the upstream closed, or unused for [`POOL_IDLE`], are dropped on the way).
    fn checkout(&mut self, origin: &Origin, now: Instant) -> Option<Conn> {
        if let Some(at) = self.h2.iter().position(|(o, _)| o == origin) {
            if self.h2[at].1.is_closed() {
                self.h2.swap_remove(at);
            } else {
                return Some(Conn::H2(self.h2[at].1.clone()));
            }
        }
        let (_, idle) = self.h1.iter_mut().find(|(o, _)| o == origin)?;
        idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < POOL_IDLE);
        let ready = idle.iter().position(|c| c.sender.is_ready())?;
        Some(Conn::H1(idle.swap_remove(ready).sender))
    }

    /// Keeps `conn` for the next request to `origin`: an HTTP/1 connection becomes ready
    /// again once its response has been read.
    fn checkin(&mut self, origin: &Origin, conn: Conn, now: Instant) {
        match conn {
            Conn::H2(sender) => {
                if !self.h2.iter().any(|(o, _)| o == origin) {
                    self.h2.push((origin.clone(), sender));
                }
            }
            Conn::H1(sender) => {
                let idle = Idle { sender, since: now };
                match self.h1.iter_mut().find(|(o, _)| o == origin) {
                    Some((_, list)) => list.push(idle),
                    None => self.h1.push((origin.clone(), vec![idle])),
                }
            }
        }
    }

    /// Drops closed connections and idle ones unused for [`POOL_IDLE`] (a dropped sender
    /// closes its connection).
    fn prune(&mut self, now: Instant) {
        self.h2.retain(|(_, sender)| !sender.is_closed());
        for (_, idle) in &mut self.h1 {
            idle.retain(|c| {
                !c.sender.is_closed()
                    && (!c.sender.is_ready() || now.duration_since(c.since) < POOL_IDLE)
            });
        }
        self.h1.retain(|(_, idle)| !idle.is_empty());
    }
}

/// The `Host` header for `uri` as hyper-util writes it (the host, and the port unless it is
/// the scheme's default), made here because hyper-util `format!`s it, a sixth of its own cost
/// per request.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let host = match authority.port_u16() {
        Some(port) if port != default => {
            let text = authority.as_str();
            text.rsplit_once('@').map_or(text, |(_, host)| host)
        }
        _ => authority.host(),
    };
    HeaderValue::from_str(host).ok()
}

/// The [`Target`] of `url` for hyper, from the calling thread's cache; a URL `http::Uri`
/// cannot hold is a request that cannot be sent, not a fault of the upstream.
pub(crate) fn target_of(url: &reqwest::Url) -> Result<Arc<Target>, BackendError> {
    let url = url.as_str();
    TARGETS.with_borrow_mut(|targets| {
        if let Some((_, target)) = targets.iter().find(|(kept, _)| **kept == *url) {
            return Ok(Arc::clone(target));
        }
        let target = Arc::new(Target::of(url)?);
        if targets.len() == TARGETS_KEPT {
            targets.remove(0);
        }
        targets.push((url.into(), Arc::clone(&target)));
        Ok(target)
    })
}

/// A request that cannot be sent, which says nothing about the upstream's health.
fn unsendable(why: impl std::fmt::Display) -> BackendError {
    BackendError::unsendable_request(format!("cannot build the upstream request: {why}"))
}

/// A failed exchange as reqwest's path reports it ([`crate::upstream::transport_error`]):
/// a timeout anywhere in the chain (a connect timeout too) as a timeout, anything else as
/// `failed` ("cannot connect to upstream" when no connection could be made, "upstream
/// request failed" once one was); never with the URL.
fn exchange_error(e: &(dyn std::error::Error + 'static), failed: &str) -> BackendError {
    let chain = crate::upstream::source_chain(e);
    if timed_out(e) {
        BackendError::timeout(format!("upstream timed out: {chain}"))
    } else {
        BackendError::transport(format!("{failed}: {chain}"))
    }
}

/// Not connected: refused, unresolvable, TLS, or the handshake.
const CANNOT_CONNECT: &str = "cannot connect to upstream";

/// Whether anything in `e`'s chain is a timeout.
pub(crate) fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A keep-alive upstream on 127.0.0.1:0 answering `ok` to each request; with
    /// `close_after_first`, it closes each connection after its first answer and says so on
    /// the returned channel. Counts the connections it accepted.
    async fn keep_alive_upstream(
        close_after_first: bool,
    ) -> (
        Uri,
        Arc<AtomicUsize>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (closed, closes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: a head and a 2-byte body (the tests send `{}`).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n")
                            || buf.len()
                                < buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 6
                        {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                        if close_after_first {
                            drop(socket);
                            let _ = closed.send(());
                            return;
                        }
                    }
                });
            }
        });
        (
            format!("http://{addr}/v1/chat").parse().unwrap(),
            accepted,
            closes,
        )
    }

    async fn post(pools: &Arc<LeanPools>, uri: &Uri) -> Result<String, BackendError> {
        let response = pools
            .send(
                Method::POST,
                Arc::new(Target::of(&uri.to_string())?),
                HeaderMap::new(),
                Bytes::from_static(b"{}"),
            )
            .await?;
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn a_url_is_worked_out_once_per_thread_and_its_origin_compares_without_case() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let a = target_of(&url("http://Upstream.example:8080/v1/chat/completions")).unwrap();
        let again = target_of(&url("http://Upstream.example:8080/v1/chat/completions")).unwrap();
        assert!(
            Arc::ptr_eq(&a, &again),
            "the second send reuses the first's target"
        );
        assert_eq!(a.path, "/v1/chat/completions");
        assert_eq!(a.host.as_ref().unwrap(), "upstream.example:8080");
        let other = target_of(&url("http://upstream.example:8080/v1/models")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert!(a.origin == other.origin);
        let origin = |u: &str| Origin::of(&u.parse().unwrap()).unwrap();
        assert!(
            origin("http://UPSTREAM.example:8080/a") == origin("http://upstream.example:8080/b"),
            "one origin, however its host is written"
        );
        assert!(origin("http://upstream.example:8080/") != origin("http://upstream.example/"));
        let https = target_of(&url("https://upstream.example:8080/v1/models")).unwrap();
        assert!(https.origin != other.origin);
        // Past the cap the oldest is forgotten, and the cache stays bounded.
        for port in 0..TARGETS_KEPT {
            target_of(&url(&format!("http://h{port}.example/v1"))).unwrap();
        }
        TARGETS.with_borrow(|t| assert_eq!(t.len(), TARGETS_KEPT));
        let made_again =
            target_of(&url("http://Upstream.example:8080/v1/chat/completions")).unwrap();
        assert!(!Arc::ptr_eq(&a, &made_again));
        assert_eq!(made_again.uri, a.uri);
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (uri, accepted, _) = keep_alive_upstream(false).await;
        let pools = LeanPools::new(Duration::from_secs(5)).unwrap();
        for _ in 0..5 {
            assert_eq!(post(&pools, &uri).await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_not_failed() {
        let (uri, accepted, mut closes) = keep_alive_upstream(true).await;
        let pools = LeanPools::new(Duration::from_secs(5)).unwrap();
        for round in 1..=3 {
            assert_eq!(post(&pools, &uri).await.unwrap(), "ok", "round {round}");
            closes.recv().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_them() {
        let (uri, accepted, _) = keep_alive_upstream(false).await;
        let pools = LeanPools::new(Duration::from_secs(5)).unwrap();
        let burst = || futures::future::join_all((0..4).map(|_| post(&pools, &uri)));
        assert!(burst().await.into_iter().all(|r| r.unwrap() == "ok"));
        // None was pooled yet: each request of the burst opened one.
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert!(burst().await.into_iter().all(|r| r.unwrap() == "ok"));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "the second burst reuses the first one's connections"
        );
    }

    /// An HTTP/2-only TLS upstream on 127.0.0.1:0 (the test certificate) answering each
    /// request with its method, path and authority; counts its connections.
    async fn h2_upstream() -> (Uri, Arc<AtomicUsize>) {
        let config = crate::test_tls::server_config(&[b"h2"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let said = format!(
                            "{} {} {} {:?} host header: {}",
                            req.method(),
                            req.uri().path(),
                            req.uri().authority().map_or("", Authority::as_str),
                            req.version(),
                            req.headers().contains_key(HOST)
                        );
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            said,
                        ))))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (
            format!("https://127.0.0.1:{}/v1/chat", addr.port())
                .parse()
                .unwrap(),
            accepted,
        )
    }

    #[tokio::test]
    async fn https_upstreams_offering_http2_get_one_shared_connection() {
        let (uri, accepted) = h2_upstream().await;
        let pools = LeanPools::trusting(Duration::from_secs(5), crate::test_tls::roots()).unwrap();
        let burst = futures::future::join_all((0..3).map(|_| post(&pools, &uri))).await;
        let port = uri.port_u16().unwrap();
        for answer in burst {
            assert_eq!(
                answer.unwrap(),
                format!("POST /v1/chat 127.0.0.1:{port} HTTP/2.0 host header: false")
            );
        }
        // The burst may race to connect before the first connection is pooled; the request
        // after it shares the pooled one.
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=3).contains(&opened), "{opened}");
        post(&pools, &uri).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), opened);
    }

    #[test]
    fn a_reaper_on_a_thread_without_the_pool_makes_none() {
        let pools = LeanPools::new(Duration::from_secs(5)).unwrap();
        std::thread::spawn(move || {
            pools.prune_here(Instant::now());
            assert_eq!(POOLS.with_borrow(Vec::len), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn idle_connections_are_closed_after_the_idle_timeout() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let (uri, _, _) = keep_alive_upstream(false).await;
                let pools = LeanPools::new(Duration::from_secs(5)).unwrap();
                post(&pools, &uri).await.unwrap();
                let idle = || pools.with_pool(|p| p.h1.iter().map(|(_, l)| l.len()).sum::<usize>());
                assert_eq!(idle(), 1);
                let now = Instant::now();
                pools.with_pool(|p| p.prune(now + POOL_IDLE / 2));
                assert_eq!(idle(), 1, "kept within the idle timeout");
                pools.with_pool(|p| p.prune(now + POOL_IDLE + Duration::from_secs(1)));
                assert_eq!(idle(), 0, "closed after it");
            });
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_default() {
        let host = |url: &str| {
            host_header(&url.parse().unwrap())
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap()
        };
        assert_eq!(host("https://api.openai.com/v1/x"), "api.openai.com");
        assert_eq!(host("https://api.openai.com:443/v1/x"), "api.openai.com");
        assert_eq!(
            host("https://api.openai.com:8443/v1/x"),
            "api.openai.com:8443"
        );
        assert_eq!(host("http://127.0.0.1:80/v1"), "127.0.0.1");
        assert_eq!(host("http://127.0.0.1:4000/v1"), "127.0.0.1:4000");
        assert_eq!(
            host("http://bob:secret@127.0.0.1:4000/v1"),
            "127.0.0.1:4000"
        );
        assert_eq!(host("http://bob:secret@example.test/v1"), "example.test");
        assert_eq!(host("http://[::1]:4000/v1"), "[::1]:4000");
    }
}
