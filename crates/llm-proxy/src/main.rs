//! The `llm-proxy` binary: command line, logging, listeners, graceful shutdown. Thin: the
//! gateway itself is `llm-proxy-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::config::{self, CliOverrides, Env};
use llm_proxy_server::plugins::Registry;
use llm_proxy_server::{AppState, anthropic_app, app};
use tracing_subscriber::EnvFilter;

/// An LLM proxy: one endpoint speaking OpenAI, Anthropic and Gemini in front of any provider.
#[derive(Debug, Parser)]
#[command(name = "llm-proxy", version, about)]
struct Cli {
    /// YAML configuration file (also `CONFIG_FILE`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1).
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to bind (default 8000; 0 picks a free port).
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Extra listener serving root `/v1/messages` for Anthropic clients.
    #[arg(long, global = true)]
    anthropic_port: Option<u16>,
    /// Where requests naming only a model go: a backend, `backend:model`, or any selector.
    #[arg(long, global = true)]
    default_backend: Option<String>,
    /// Force all traffic to this selector.
    #[arg(long, global = true)]
    static_route: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Write wire captures (JSON lines) to this file.
    #[arg(long, global = true)]
    capture_file: Option<String>,
    /// In-chat command prefix (default `!/`).
    #[arg(long, global = true)]
    command_prefix: Option<String>,
    /// Overall request timeout in seconds.
    #[arg(long = "timeout", global = true)]
    proxy_timeout: Option<f64>,
    /// Accept requests without a client key even when `auth.api_keys` is set.
    #[arg(long, global = true)]
    disable_auth: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
}

impl Cli {
    fn overrides(&self) -> CliOverrides {
        CliOverrides {
            config: self.config.clone(),
            host: self.host.clone(),
            port: self.port,
            anthropic_port: self.anthropic_port,
            default_backend: self.default_backend.clone(),
            static_route: self.static_route.clone(),
            log_level: self.log_level.clone(),
            capture_file: self.capture_file.clone(),
            command_prefix: self.command_prefix.clone(),
            proxy_timeout: self.proxy_timeout,
            disable_auth: self.disable_auth,
        }
    }
}

#[expect(clippy::print_stderr, reason = "fatal errors go to the terminal before logging exists")]
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("llm-proxy: {message}");
    ExitCode::FAILURE
}

#[expect(clippy::print_stdout, reason = "user-facing command output")]
fn print_out(text: &str) {
    println!("{text}");
}

fn main() -> ExitCode {
    llm_proxy_connectors::link();
    let cli = Cli::parse();
    let cfg = match config::load(&cli.overrides(), &Env::from_process()) {
        Ok(c) => c,
        Err(e) => return fail(format!("invalid configuration: {e}")),
    };
    if let Err(e) = init_logging(&cfg.logging.level) {
        return fail(e);
    }
    match cli.command {
        Some(Command::CheckConfig) => check_config(cfg),
        Some(Command::Serve) | None => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start runtime: {e}")),
            };
            runtime.block_on(serve(cfg))
        }
    }
}

fn init_logging(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| format!("invalid configuration: logging.level '{level}': {e}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}

fn check_config(cfg: llm_proxy_api::AppConfig) -> ExitCode {
    let shown = config::effective_config(&cfg);
    let client = match CaptureAwareClient::plain() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = AppState::build(cfg, Registry::from_linked(), client) {
        return fail(format!("invalid configuration: {e}"));
    }
    match serde_yaml::to_string(&shown) {
        Ok(text) => {
            print_out(&text);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host.starts_with("127.")
}

async fn serve(cfg: llm_proxy_api::AppConfig) -> ExitCode {
    if !is_loopback(&cfg.host) && cfg.auth.api_keys.is_empty() {
        return fail(format!(
            "refusing to listen on {} without client authentication: set auth.api_keys (or API_KEYS), or bind 127.0.0.1",
            cfg.host
        ));
    }
    let (host, port, anthropic_port) = (cfg.host.clone(), cfg.port, cfg.anthropic_port);
    let client = match CaptureAwareClient::plain() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let state = match AppState::build(cfg, Registry::from_linked(), client) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The dedicated Anthropic listener serves root paths in Anthropic's shapes only.
    let mut listeners = vec![(port, app(state.clone()))];
    listeners.extend(anthropic_port.map(|p| (p, anthropic_app(state))));
    let mut servers = Vec::new();
    for (p, router) in listeners {
        let listener = match tokio::net::TcpListener::bind((host.as_str(), p)).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot bind {host}:{p}: {e}")),
        };
        let addr: SocketAddr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        print_out(&format!("llm-proxy listening on http://{addr}"));
        tracing::info!(%addr, "listening");
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await
        }));
    }
    for s in servers {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(format!("server error: {e}")),
            Err(e) => return fail(format!("server task failed: {e}")),
        }
    }
    tracing::info!("shut down");
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
