//! The built-in backends' upstream transport: hyper's pooled client (hyper-util's
//! `legacy::Client`, the pool reqwest itself drives) over rustls with Mozilla's roots, one
//! per thread, without reqwest's layers around it.
//!
//! Those layers cost about a fifth of the proxy's own work per request (callgrind, see
//! docs/benchmarks.md): reqwest's redirect layer and its response future each turn the URI
//! back into a `String` and re-parse it into a `Url`, even with redirects off. Here the
//! request goes out as the parts the backend built.
//!
//! What reqwest did that matters is kept: `accept: */*` when the request names none, TCP
//! no-delay, the connect timeout, a 90 s idle pool, HTTP/2 where TLS offers it. Unlike
//! reqwest's default client, redirects are never followed: a redirected POST would lose its
//! body or its method, so a 3xx reaches the backend's error decoder as the upstream's answer.
//! Credentials in a URL are not sent (reqwest's `execute` did not send them either). With an
//! outbound proxy in the environment, which only reqwest honours, backends send through
//! reqwest ([`CaptureAwareClient::with_lean_pools`](crate::http::CaptureAwareClient)).

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST, HeaderValue};
use http::{HeaderMap, Method, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::BackendError;

type Pooled = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How idle pooled connections may stay open (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Builds each thread's pool of one client (and its clones); the pools live in the threads.
pub(crate) struct LeanPools {
    connect_timeout: Duration,
    tls: rustls::ClientConfig,
}

thread_local! {
    /// This thread's pools, by the [`LeanPools`] they were made for. An entry whose owner is
    /// gone (a backend instance dropped on reload) is pruned when the next is added.
    static POOLS: RefCell<Vec<(Weak<LeanPools>, Pooled)>> = const { RefCell::new(Vec::new()) };
}

impl LeanPools {
    /// Pools connecting within `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Result<Arc<Self>, BackendError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BackendError::config(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(Self {
            connect_timeout,
            tls,
        }))
    }

    /// The calling thread's pool, built on its first request. Connections it opens are driven
    /// by the calling thread's runtime.
    fn pool(self: &Arc<Self>) -> Pooled {
        POOLS.with_borrow_mut(|pools| {
            let me = Arc::as_ptr(self);
            if let Some((_, pool)) = pools.iter().find(|(owner, _)| owner.as_ptr() == me) {
                return pool.clone();
            }
            let pool = self.build();
            pools.retain(|(owner, _)| owner.strong_count() > 0);
            pools.push((Arc::downgrade(self), pool.clone()));
            pool
        })
    }

    fn build(&self) -> Pooled {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector)
    }

    /// Sends one request through the calling thread's pool and waits for the response head.
    pub(crate) async fn send(
        self: &Arc<Self>,
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, BackendError> {
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        if !headers.contains_key(HOST)
            && let Some(host) = host_header(&uri)
        {
            headers.insert(HOST, host);
        }
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.pool().request(request).await.map_err(send_error)
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

/// The URI of `url` for hyper; a URL `http::Uri` cannot hold is a request that cannot be
/// sent, not a fault of the upstream.
pub(crate) fn uri_of(url: &reqwest::Url) -> Result<Uri, BackendError> {
    Uri::try_from(url.as_str()).map_err(|e| {
        BackendError::unsendable_request(format!("cannot build the upstream request: {e}"))
    })
}

/// A failed exchange as reqwest's path reports it ([`crate::upstream::transport_error`]):
/// timeouts (a connect timeout included) as timeouts, refused or failed connections as
/// "cannot connect", the rest as a failed request; never with the URL.
fn send_error(e: hyper_util::client::legacy::Error) -> BackendError {
    let chain = crate::upstream::source_chain(&e);
    if timed_out(&e) {
        BackendError::timeout(format!("upstream timed out: {chain}"))
    } else if e.is_connect() {
        BackendError::transport(format!("cannot connect to upstream: {chain}"))
    } else {
        BackendError::transport(format!("upstream request failed: {chain}"))
    }
}

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
    use super::*;

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
