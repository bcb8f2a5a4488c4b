//! The `llm-proxy` binary: command line, logging, listeners, graceful shutdown. Thin: the
//! gateway itself is `llm-proxy-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
mod alloc;
mod capture_cli;
mod scrubbed_log;

use llm_proxy_api::Scrubber;
use llm_proxy_api::http::{CaptureAwareClient, CaptureSink, build_capture_aware_client};
use llm_proxy_server::capture::{
    CaptureFileOptions, CaptureFileSink, JsonlCaptureSink, open_cbor_capture,
};
use llm_proxy_server::config::{self, CliOverrides, Env};
use llm_proxy_server::frontend::diagnostics;
use llm_proxy_server::plugins::{ACCESS_MODE_ENV, AccessMode, Plugins};
use llm_proxy_server::{AppState, Stores, anthropic_app, app, serve};
use tracing_subscriber::EnvFilter;

// A proxy allocates many small, short-lived buffers per request; mimalloc serves them with far
// less contention than the system allocator (measured with the overhead benchmark).
#[global_allocator]
static GLOBAL: alloc::MiMalloc = alloc::MiMalloc;

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
    /// Write wire captures (JSON lines, all four boundaries) to this file.
    #[arg(long, global = true)]
    capture_file: Option<String>,
    /// Rotate the capture file once it holds this many bytes (logging.capture_max_bytes).
    #[arg(long, global = true)]
    capture_max_bytes: Option<u64>,
    /// Rotate the capture file once it is this many seconds old
    /// (logging.capture_rotate_interval_seconds).
    #[arg(long, global = true)]
    capture_rotate_interval: Option<f64>,
    /// Rotated capture files kept, default 10 (logging.capture_max_files).
    #[arg(long, global = true)]
    capture_max_files: Option<usize>,
    /// Write wire captures as CBOR V2 (the Python project's format) to `<DIR>/<session>.cbor`
    /// instead of JSON lines (logging.cbor_capture_dir).
    #[arg(long, global = true)]
    cbor_capture_dir: Option<String>,
    /// The CBOR capture's session name, its file name stem (default: random hex)
    /// (logging.cbor_capture_session_id).
    #[arg(long, global = true)]
    cbor_capture_session: Option<String>,
    /// Seconds between writes of buffered CBOR entries, default 1
    /// (logging.cbor_capture_flush_interval).
    #[arg(long, global = true)]
    cbor_capture_flush_interval: Option<f64>,
    /// In-chat command prefix (default `!/`).
    #[arg(long, global = true)]
    command_prefix: Option<String>,
    /// Remove in-chat commands from messages without running them.
    #[arg(long, global = true)]
    disable_interactive_commands: bool,
    /// Only a command alone on its line is a command (not one after text on that line).
    #[arg(long, global = true)]
    strict_command_detection: bool,
    /// Turn `<think>…</think>` in answer text into reasoning.
    #[arg(long, global = true)]
    fix_think_tags: bool,
    /// Leave tool calls that models write as text alone.
    #[arg(long, global = true)]
    disable_tool_call_repair: bool,
    /// Leave malformed tool arguments and structured output alone.
    #[arg(long, global = true)]
    disable_json_repair: bool,
    /// Fail an answer whose JSON cannot be repaired or lacks required properties.
    #[arg(long, global = true)]
    json_repair_strict_mode: bool,
    /// Overall request timeout in seconds.
    #[arg(long = "timeout", global = true)]
    proxy_timeout: Option<f64>,
    /// Accept requests without a client key even when `auth.api_keys` is set.
    #[arg(long, global = true)]
    disable_auth: bool,
    /// Forward configured provider API keys found in prompts instead of redacting them.
    #[arg(long, global = true)]
    disable_redact_api_keys_in_prompts: bool,
    /// Let tool calls that run destructive commands (`git reset --hard`, `rm -rf /`, ...)
    /// through (session.dangerous_command_prevention_enabled).
    #[arg(long, global = true)]
    disable_dangerous_git_commands_protection: bool,
    /// Tools always allowed: comma-separated regexes over tool names
    /// (session.tool_call_reactor.allowed_tools).
    #[arg(long, global = true)]
    allowed_tools: Option<String>,
    /// Tools blocked: comma-separated regexes over tool names; their definitions are removed
    /// from requests and calls to them swallowed (session.tool_call_reactor.blocked_tools).
    #[arg(long, global = true)]
    blocked_tools: Option<String>,
    /// `allow` or `deny` for tools no pattern or policy decides
    /// (session.tool_call_reactor.default_policy).
    #[arg(long = "default-policy", global = true)]
    default_tool_policy: Option<String>,
    /// Cut streams that keep repeating the same text
    /// (session.streaming_loop_detection_enabled).
    #[arg(long, global = true)]
    enable_loop_detection: bool,
    /// Do not stop tool calls that keep repeating with the same result
    /// (session.tool_progress_loop_guard.enabled).
    #[arg(long, global = true)]
    disable_tool_loop_guard: bool,
    /// Failed authentications from one address (within the TTL) that block it.
    #[arg(long, global = true)]
    auth_max_failed_attempts: Option<u32>,
    /// Seconds a failed authentication counts towards a block.
    #[arg(long, global = true)]
    auth_brute_force_ttl: Option<f64>,
    /// Seconds of the first block.
    #[arg(long, global = true)]
    auth_initial_block: Option<f64>,
    /// Factor applied to the block for each repeat.
    #[arg(long, global = true)]
    auth_block_multiplier: Option<f64>,
    /// Longest block in seconds.
    #[arg(long, global = true)]
    auth_max_block: Option<f64>,
    /// Never block addresses that keep failing authentication.
    #[arg(long, global = true)]
    disable_brute_force_protection: bool,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, global = true)]
    header_read_timeout: Option<f64>,
    /// Seconds a client may take to send a request's body.
    #[arg(long, global = true)]
    body_read_timeout: Option<f64>,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, global = true)]
    idle_timeout: Option<f64>,
    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, global = true)]
    max_connections: Option<usize>,
    /// Seconds in-flight requests and streams may still run after SIGTERM / ctrl-c.
    #[arg(long, global = true)]
    shutdown_grace: Option<f64>,
    /// Serving threads, each with its own runtime and listening socket (default: one per
    /// core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Directory of the embedded stores (default: the user data directory, e.g.
    /// `~/.local/share/llm-proxy`). Also `LLM_PROXY_DATA_DIR`, `data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Redis shared by replicas behind one load balancer: sessions, Responses answers and
    /// circuit breakers (`redis://[:password@]host:port/db`, `rediss://` for TLS). Also
    /// `REDIS_URL`, `state.redis_url`. Without it everything stays in this process.
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// PostgreSQL usage ledger shared by replicas (`postgres://user:password@host:5432/db`,
    /// `?sslmode=require` for TLS). Also `DATABASE_URL`, `database_url`. Without it usage is
    /// kept in SQLite in the data directory.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Export OpenTelemetry traces to this OTLP/HTTP collector (`http://host:4318`; spans
    /// go to `<url>/v1/traces`). Also `OTEL_EXPORTER_OTLP_ENDPOINT`, `telemetry.otlp_endpoint`.
    /// Off when unset.
    #[arg(long, global = true)]
    otlp_endpoint: Option<String>,
    /// `service.name` of the exported traces (default `llm-proxy`). Also `OTEL_SERVICE_NAME`,
    /// `telemetry.service_name`.
    #[arg(long, global = true)]
    otel_service_name: Option<String>,
    /// Never retry or fail over.
    #[arg(long, global = true)]
    disable_failure_handling: bool,
    /// Longest Retry-After (seconds) waited out on the same backend.
    #[arg(long, global = true)]
    max_silent_wait: Option<f64>,
    /// Time budget (seconds) for all attempts of one request.
    #[arg(long, global = true)]
    total_timeout_budget: Option<f64>,
    /// Most retries / failovers per request.
    #[arg(long, global = true)]
    max_failover_hops: Option<u32>,
    /// Seconds of upstream silence before an SSE keep-alive.
    #[arg(long, global = true)]
    keepalive_interval: Option<f64>,
    /// Seconds an identical request (session, model, messages, tools) is refused with 429
    /// after the first succeeded or while it is in flight (default 3; 0 turns dedup off).
    /// Also `LLM_REQUEST_DEDUP_WINDOW`, `request_dedup_window`.
    #[arg(long, global = true)]
    request_dedup_window: Option<f64>,
    /// Turn request dedup off (same as `--request-dedup-window 0`).
    #[arg(long, global = true)]
    disable_request_dedup: bool,
    /// One context window (tokens) for every model, over the bundled registry and
    /// `model_defaults`. Also `context_window_override`.
    #[arg(long, global = true)]
    force_context_window: Option<u64>,
    /// Never refuse a prompt for its size; leave it to the upstream.
    #[arg(long, global = true)]
    disable_model_limit_enforcement: bool,
    /// Model alias `PATTERN=REPLACEMENT` (repeatable; replaces MODEL_ALIASES and the file's list).
    #[arg(long = "model-alias", global = true)]
    model_aliases: Vec<String>,
    /// Shared deployment: refuse personal-credential (OAuth, local CLI) backends. Also
    /// `LLM_PROXY_ACCESS_MODE=multi_user`.
    #[arg(long, global = true)]
    multi_user_mode: bool,
    /// One user on this machine (the default). Also `LLM_PROXY_ACCESS_MODE=single_user`.
    #[arg(long, global = true)]
    single_user_mode: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// List backend types with their origin (core or plugin), configured instances, and
    /// plugins that were skipped, with reasons.
    Plugins,
    /// Print a summary of the usage ledger: the data directory's, or PostgreSQL's with
    /// `--database-url` (works while no proxy runs).
    Usage(UsageArgs),
    /// Read a wire-capture file: show a request, export HAR, replay against a proxy.
    Capture {
        #[command(subcommand)]
        command: capture_cli::CaptureCommand,
    },
}

/// `llm-proxy usage`: filters and grouping of the summary.
#[derive(Debug, clap::Args)]
struct UsageArgs {
    /// One line per `backend`, `model` or `session`.
    #[arg(long, default_value = "backend")]
    by: String,
    /// Only this backend instance.
    #[arg(long)]
    backend: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this session.
    #[arg(long)]
    session_id: Option<String>,
    /// From this date (YYYY-MM-DD, RFC 3339 or Unix seconds).
    #[arg(long)]
    start_date: Option<String>,
    /// Up to this date (a bare date includes the whole day).
    #[arg(long)]
    end_date: Option<String>,
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
            capture_max_bytes: self.capture_max_bytes,
            capture_rotate_interval: self.capture_rotate_interval,
            capture_max_files: self.capture_max_files,
            cbor_capture_dir: self.cbor_capture_dir.clone(),
            cbor_capture_session: self.cbor_capture_session.clone(),
            cbor_capture_flush_interval: self.cbor_capture_flush_interval,
            command_prefix: self.command_prefix.clone(),
            disable_interactive_commands: self.disable_interactive_commands,
            strict_command_detection: self.strict_command_detection,
            proxy_timeout: self.proxy_timeout,
            disable_auth: self.disable_auth,
            disable_redact_api_keys_in_prompts: self.disable_redact_api_keys_in_prompts,
            disable_dangerous_commands_protection: self.disable_dangerous_git_commands_protection,
            allowed_tools: self.allowed_tools.clone(),
            blocked_tools: self.blocked_tools.clone(),
            default_tool_policy: self.default_tool_policy.clone(),
            enable_loop_detection: self.enable_loop_detection,
            disable_tool_loop_guard: self.disable_tool_loop_guard,
            disable_failure_handling: self.disable_failure_handling,
            max_silent_wait: self.max_silent_wait,
            total_timeout_budget: self.total_timeout_budget,
            max_failover_hops: self.max_failover_hops,
            keepalive_interval: self.keepalive_interval,
            model_aliases: self.model_aliases.clone(),
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
            threads: self.threads,
            auth_max_failed_attempts: self.auth_max_failed_attempts,
            auth_brute_force_ttl: self.auth_brute_force_ttl,
            auth_initial_block: self.auth_initial_block,
            auth_block_multiplier: self.auth_block_multiplier,
            auth_max_block: self.auth_max_block,
            disable_brute_force_protection: self.disable_brute_force_protection,
            data_dir: self.data_dir.clone(),
            redis_url: self.redis_url.clone(),
            database_url: self.database_url.clone(),
            otlp_endpoint: self.otlp_endpoint.clone(),
            otel_service_name: self.otel_service_name.clone(),
            fix_think_tags: self.fix_think_tags,
            disable_tool_call_repair: self.disable_tool_call_repair,
            disable_json_repair: self.disable_json_repair,
            json_repair_strict_mode: self.json_repair_strict_mode,
            request_dedup_window: self.request_dedup_window,
            disable_request_dedup: self.disable_request_dedup,
            force_context_window: self.force_context_window,
            disable_model_limit_enforcement: self.disable_model_limit_enforcement,
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "fatal errors go to the terminal before logging exists"
)]
fn fail(message: impl std::fmt::Display) -> ExitCode {
    // Before the configured scrubber exists (bad configuration) key shapes are still masked.
    let message = message.to_string();
    eprintln!("llm-proxy: {}", Scrubber::default().scrub(&message));
    ExitCode::FAILURE
}

/// Writes command output; a reader that went away (`llm-proxy check-config | head`) ends the
/// output quietly rather than with a panic.
fn print_out(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

fn main() -> ExitCode {
    llm_proxy_connectors::link();
    #[cfg(feature = "ollama-native")]
    llm_proxy_plugin_ollama_native::link();
    let cli = Cli::parse();
    // Reading a capture needs no configuration.
    if let Some(Command::Capture { command }) = &cli.command {
        return match capture_cli::run(command, &print_out) {
            Ok(code) => code,
            Err(e) => {
                fail(e);
                ExitCode::from(2)
            }
        };
    }
    // Fixed before discovery: it decides which backends may register.
    let env_mode = std::env::var(ACCESS_MODE_ENV).ok();
    let mode = match AccessMode::resolve(
        cli.multi_user_mode,
        cli.single_user_mode,
        env_mode.as_deref(),
    ) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let cfg = match config::load(&cli.overrides(), &Env::from_process()) {
        Ok(c) => c,
        Err(e) => return fail(format!("invalid configuration: {e}")),
    };
    // Built once: logs, captures, backends and the pipeline share it.
    let scrubber = match cfg.scrubber() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = init_logging(&cfg.logging.level, scrubber.clone()) {
        return fail(e);
    }
    match cli.command {
        Some(Command::CheckConfig) => check_config(cfg, mode, scrubber),
        Some(Command::Plugins) => list_plugins(cfg, mode, scrubber),
        Some(Command::Usage(args)) => usage_summary(&cfg, &args, scrubber),
        Some(Command::Capture { .. }) => ExitCode::SUCCESS,
        Some(Command::Serve) | None => {
            // Requests are served on threads of their own (`server.threads`); this runtime
            // runs the start, the background tasks and the shutdown.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start runtime: {e}")),
            };
            let config_file = cli
                .config
                .clone()
                .or_else(|| std::env::var_os("CONFIG_FILE").map(PathBuf::from));
            runtime.block_on(serve(cfg, mode, scrubber, config_file))
        }
    }
}

/// Logs go to stderr through the scrubber: whatever a log line quotes, no configured secret
/// or key-shaped string is written.
fn init_logging(level: &str, scrubber: Scrubber) -> Result<(), String> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| format!("invalid configuration: logging.level '{level}': {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(scrubbed_log::ScrubbingMakeWriter::new(
            scrubber,
            std::io::stderr,
        ))
        .init();
    Ok(())
}

fn check_config(cfg: config::GatewayConfig, mode: AccessMode, scrubber: Scrubber) -> ExitCode {
    let shown = config::effective_config(&cfg);
    let client = match CaptureAwareClient::plain() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = AppState::build_with_scrubber(
        cfg,
        Plugins::discover_linked(mode),
        client,
        scrubber.clone(),
    ) {
        return fail(format!("invalid configuration: {e}"));
    }
    match serde_saphyr::to_string(&shown) {
        Ok(text) => {
            // The effective configuration masks secrets field by field; this catches any
            // configured value that surfaces elsewhere (a selector, a plugin setting).
            print_out(&scrubber.scrub(&text));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `llm-proxy usage`: the ledger's totals by backend, model or session, read from the file,
/// or from PostgreSQL when `database_url` is set.
fn usage_summary(cfg: &config::GatewayConfig, args: &UsageArgs, scrubber: Scrubber) -> ExitCode {
    use llm_proxy_server::usage::{UsageFilter, postgres, report, sqlite};
    let Some(by) = report::GroupBy::parse(&args.by) else {
        return fail(format!(
            "--by: expected backend, model or session, got '{}'",
            args.by
        ));
    };
    let params = [
        ("backend", &args.backend),
        ("model", &args.model),
        ("session_id", &args.session_id),
        ("start_date", &args.start_date),
        ("end_date", &args.end_date),
    ];
    let filter = match UsageFilter::from_params(
        params
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))),
        &[],
    ) {
        Ok(f) => f,
        Err(e) => return fail(format!("--{}: {}", e.param.replace('_', "-"), e.message)),
    };
    let stats = if let Some(url) = &cfg.usage.database_url {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail(format!("cannot start runtime: {e}")),
        };
        runtime.block_on(postgres::read_stats(
            url.expose(),
            &filter,
            scrubber.clone(),
        ))
    } else {
        let Some(dir) = cfg.data_dir.as_deref() else {
            return fail("no data directory: set --data-dir (or LLM_PROXY_DATA_DIR, data_dir)");
        };
        sqlite::read_stats(&dir.join(llm_proxy_server::data_dir::USAGE_DB), &filter)
    };
    match stats {
        Ok(stats) => {
            print_out(report::summary_table(&stats, by).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => fail(scrubber.scrub(&e.to_string())),
    }
}

/// `llm-proxy plugins`: the diagnostics report as tables; discovery is shown even when the
/// configuration cannot start.
fn list_plugins(cfg: config::GatewayConfig, mode: AccessMode, scrubber: Scrubber) -> ExitCode {
    let plugins = Plugins::discover_linked(mode);
    let client = match CaptureAwareClient::plain() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match AppState::build_with_scrubber(cfg, plugins.clone(), client, scrubber.clone()) {
        Ok(state) => {
            let mut report = diagnostics::diagnostics_json(&state);
            // This process captures nothing; the serving one reports capture health.
            if let Some(map) = report.as_object_mut() {
                map.remove("capture");
            }
            print_out(&scrubber.scrub(&diagnostics::render_tables(&report)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_out(&diagnostics::render_tables(&diagnostics::plugins_json(
                &plugins,
            )));
            fail(format!("the configuration cannot start: {e}"))
        }
    }
}

/// The capture file sink: CBOR V2 in `--cbor-capture-dir` / `logging.cbor_capture_dir` /
/// `CBOR_CAPTURE_DIR` (which wins), else JSON lines when `--capture-file` /
/// `logging.capture_file` / `CAPTURE_FILE` is set.
fn open_capture(
    cfg: &config::GatewayConfig,
    scrubber: Scrubber,
    config_file: Option<&std::path::Path>,
) -> Result<Option<Arc<CaptureFileSink>>, String> {
    let options = CaptureFileOptions {
        max_bytes: cfg.logging.capture_max_bytes,
        rotate_interval: cfg.logging.capture_rotate_interval,
        max_files: cfg.logging.capture_max_files,
        ..CaptureFileOptions::default()
    };
    if let Some(dir) = &cfg.logging.cbor_capture_dir {
        if cfg.logging.capture_file.is_some() {
            tracing::warn!("both CBOR and JSON-lines capture are set: capturing as CBOR only");
        }
        let options = CaptureFileOptions {
            flush_interval: Some(cfg.logging.cbor_capture_flush_interval),
            ..options
        };
        let mut metadata = std::collections::BTreeMap::new();
        if let Some(file) = config_file {
            metadata.insert("config_file".to_owned(), file.display().to_string());
        }
        metadata.insert(
            "writer".to_owned(),
            format!("llm-proxy {}", env!("CARGO_PKG_VERSION")),
        );
        metadata.insert("secrets".to_owned(), "masked".to_owned());
        let sink = open_cbor_capture(
            std::path::Path::new(dir),
            cfg.logging.cbor_capture_session_id.as_deref(),
            scrubber,
            &options,
            metadata,
        )
        .map_err(|e| format!("cannot open CBOR capture in '{dir}': {e}"))?;
        tracing::info!(path = %sink.path().display(), "capturing client and upstream traffic (CBOR V2)");
        return Ok(Some(sink));
    }
    let Some(path) = &cfg.logging.capture_file else {
        return Ok(None);
    };
    let sink = JsonlCaptureSink::open_with_options(path, scrubber, &options)
        .map_err(|e| format!("cannot open capture file '{path}': {e}"))?;
    tracing::info!(path = %path, "capturing client and upstream traffic (JSON lines)");
    Ok(Some(sink))
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host.starts_with("127.")
}

/// Longest the start waits for the PostgreSQL usage ledger before serving without it.
const USAGE_CONNECT_ON_START: std::time::Duration = std::time::Duration::from_secs(3);
/// Longest a graceful stop waits for queued usage records to be written.
const USAGE_FLUSH_ON_STOP: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(
    cfg: config::GatewayConfig,
    mode: AccessMode,
    scrubber: Scrubber,
    config_file: Option<PathBuf>,
) -> ExitCode {
    if !is_loopback(&cfg.host) && cfg.auth.api_keys.is_empty() {
        return fail(format!(
            "refusing to listen on {} without client authentication: set auth.api_keys (or API_KEYS), or bind 127.0.0.1",
            cfg.host
        ));
    }
    let (host, port, anthropic_port) = (cfg.host.clone(), cfg.port, cfg.anthropic_port);
    let limits = cfg.server.clone();
    let capture = match open_capture(&cfg, scrubber.clone(), config_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let sink = capture.clone().map(|s| s as Arc<dyn CaptureSink>);
    let client = match build_capture_aware_client(reqwest::Client::builder(), sink, None) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Blocking file I/O, once, before anything is served.
    let stores = match Stores::open(&cfg) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(dir) = &cfg.data_dir {
        tracing::info!(path = %dir.display(), "data directory");
    }
    let usage = stores.usage.clone();
    if let (Some(store), Some(_)) = (&usage, &cfg.usage.database_url) {
        // A moment for the first connection, so the first requests are recorded; an
        // unreachable server does not stop the start (records are dropped and counted).
        if tokio::time::timeout(USAGE_CONNECT_ON_START, store.ready())
            .await
            .is_err()
        {
            tracing::warn!(
                "usage ledger: PostgreSQL not reachable yet; serving anyway and reconnecting in the background"
            );
        }
    }
    let state = match AppState::build_with_stores(
        cfg,
        Plugins::discover_linked(mode),
        client,
        scrubber,
        stores,
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let shutdown = state.shutdown().clone();
    #[cfg(feature = "otel")]
    let traces = state.pipeline().trace_sink().cloned();
    let signalled = shutdown_signal();
    // The dedicated Anthropic listener serves root paths in Anthropic's shapes only.
    let mut apps = vec![(port, app(state.clone()))];
    apps.extend(anthropic_port.map(|p| (p, anthropic_app(state))));
    let threads = limits.threads;
    let mut listeners = Vec::new();
    for (p, app) in apps {
        let sockets = match serve::bind_listeners(&host, p, threads) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot bind {host}:{p}: {e}")),
        };
        let addr: SocketAddr = match sockets[0].local_addr() {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        print_out(&format!("llm-proxy listening on http://{addr}"));
        tracing::info!(%addr, threads, "listening");
        listeners.push(serve::Listener { sockets, app });
    }
    let signal = shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutting down");
        signal.begin();
    });
    let mut outcome = ExitCode::SUCCESS;
    if let Err(e) = serve::serve_on_threads(listeners, threads, limits, shutdown).await {
        outcome = fail(e);
    }
    if let Some(usage) = usage {
        // Writes what is still queued (PostgreSQL's writer is a task the runtime would end).
        if tokio::time::timeout(USAGE_FLUSH_ON_STOP, usage.flush())
            .await
            .is_err()
        {
            tracing::warn!("usage records still queued at shutdown were not all written");
        }
    }
    #[cfg(feature = "otel")]
    if let Some(traces) = traces {
        // Exports what is still queued, within bounds: a dead collector must not hold the exit.
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(5), traces.flush()).await;
        tracing::info!(
            exported = traces.exported(),
            dropped = traces.dropped(),
            flushed = flushed.is_ok(),
            "trace exporter flushed"
        );
    }
    if let Some(sink) = capture {
        // Writes what is still queued before the process exits.
        sink.close();
        tracing::info!(
            written = sink.written(),
            dropped = sink.dropped(),
            "capture file closed"
        );
    }
    tracing::info!("shut down");
    outcome
}

/// Resolves on SIGTERM or ctrl-c. The handlers are installed when this is called, not when
/// the future is first polled: a signal arriving right after the listeners are announced must
/// start a graceful shutdown, not kill the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let (Ok(mut terminate), Ok(mut interrupt)) = (terminate, interrupt) else {
                tracing::warn!("cannot install signal handlers; stop the proxy by killing it");
                return std::future::pending().await;
            };
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
