//! `--floor`'s forwarder: the least an HTTP proxy can do on llm-proxy's own stack, measured in
//! the same run so that llm-proxy's figures can be read against a floor from this machine
//! rather than against the mock alone.
//!
//! It is laid out as llm-proxy serves: one OS thread per core, each with a single-threaded
//! Tokio runtime and its own `SO_REUSEPORT` listening socket, hyper's HTTP/1 server on the
//! client side, and keep-alive hyper HTTP/1 client connections to the upstream kept per thread.
//! It forwards each request's method, path, headers and body as they are, and streams the
//! upstream's response back as it arrives: no parsing, no translation, no features. So its
//! added latency and CPU per request are what two HTTP exchanges cost on this machine with
//! this stack: the floor any of llm-proxy's work sits on.
//!
//! Runs as a child process (`llm-proxy-bench --forward-to ADDR`), so its CPU time and memory
//! are read from `/proc` exactly as the proxy's are.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::error::BenchError;

/// What the forwarder prints once it listens (the bench reads the port from it, as it does
/// from llm-proxy's line).
const LISTENING: &str = "llm-proxy-bench forwarder listening on ";

type Body = BoxBody<Bytes, hyper::Error>;

thread_local! {
    /// This thread's upstream connections, one request at a time each: idle ones, and ones
    /// whose response is still being read (not ready yet), which checkout passes over.
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

/// Serves on `127.0.0.1:0` with one thread per core, forwarding to `upstream`; prints the
/// listening line, then runs until killed.
pub fn run(upstream: SocketAddr) -> Result<(), BenchError> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let sockets = bind(threads)?;
    let addr = sockets[0]
        .local_addr()
        .map_err(|e| BenchError::io("reading the forwarder's address", e))?;
    let mut handles = Vec::with_capacity(threads);
    for (index, socket) in sockets.into_iter().enumerate() {
        let handle = std::thread::Builder::new()
            .name(format!("forward-{index}"))
            .spawn(move || serve_thread(socket, upstream))
            .map_err(|e| BenchError::io("starting a forwarder thread", e))?;
        handles.push(handle);
    }
    announce(addr);
    for handle in handles {
        handle
            .join()
            .map_err(|_| BenchError::Proxy("a forwarder thread panicked".into()))??;
    }
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the listening line is how the bench learns the port"
)]
fn announce(addr: SocketAddr) {
    println!("{LISTENING}http://{addr}");
}

/// `threads` sockets on one loopback port, grouped by `SO_REUSEPORT` (the kernel spreads
/// connections over them, as it does over llm-proxy's).
fn bind(threads: usize) -> Result<Vec<std::net::TcpListener>, BenchError> {
    let mut sockets: Vec<std::net::TcpListener> = Vec::with_capacity(threads);
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    for _ in 0..threads {
        let socket = reuse_port_socket(addr)
            .map_err(|e| BenchError::io(format!("binding the forwarder on {addr}"), e))?;
        if let Ok(bound) = socket.local_addr() {
            addr = bound;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn serve_thread(socket: std::net::TcpListener, upstream: SocketAddr) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting a forwarder runtime", e))?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(socket)
            .map_err(|e| BenchError::io("registering the forwarder's socket", e))?;
        serve(listener, upstream).await;
        Ok(())
    })
}

/// Accepts connections on `listener` and forwards their requests to `upstream`, until the
/// listener fails.
async fn serve(listener: TcpListener, upstream: SocketAddr) {
    // The `Host` every forwarded request gets, made once (a clone shares its bytes).
    let host = HeaderValue::from_str(&upstream.to_string()).ok();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| forward(request, upstream, host.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request, forwarded on an idle connection of this thread's (or a new one); a failure
/// is a 502 whose body says why.
async fn forward(
    mut request: Request<Incoming>,
    upstream: SocketAddr,
    host: Option<HeaderValue>,
) -> Result<Response<Body>, Infallible> {
    if let Some(host) = host {
        request.headers_mut().insert(HOST, host);
    }
    let pooled = IDLE.with_borrow_mut(|idle| {
        idle.retain(|sender| !sender.is_closed());
        let at = idle.iter().rposition(SendRequest::is_ready)?;
        Some(idle.swap_remove(at))
    });
    let mut sender = match pooled {
        Some(sender) => sender,
        None => match connect(upstream).await {
            Ok(sender) => sender,
            Err(e) => return Ok(bad_gateway(&e)),
        },
    };
    match sender.send_request(request).await {
        Ok(response) => {
            // Ready again once this response's body has been read; checkout skips it till then.
            keep(sender);
            Ok(response.map(BodyExt::boxed))
        }
        Err(e) => Ok(bad_gateway(&e)),
    }
}

/// Puts `sender` back in this thread's pool: the pool holds as many connections as requests
/// were ever in flight at once on this thread.
fn keep(sender: SendRequest<Incoming>) {
    IDLE.with_borrow_mut(|idle| idle.push(sender));
}

async fn connect(upstream: SocketAddr) -> Result<SendRequest<Incoming>, BenchError> {
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| BenchError::io(format!("connecting to {upstream}"), e))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn bad_gateway(e: &dyn std::fmt::Display) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(format!("forwarder: {e}")))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
