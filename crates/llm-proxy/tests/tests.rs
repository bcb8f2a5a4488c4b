//! Tests of the `llm-proxy` binary as a user runs it: a child process on 127.0.0.1:0.
// Helpers outside `#[test]` functions unwrap too; clippy's in-test allowance does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The binary as a child process, shared by the modules below.
#[cfg(unix)]
mod common;
// Stops the proxy with SIGTERM (graceful shutdown flushes the capture file).
#[cfg(unix)]
mod secrets;
// SIGTERM ends the process promptly even with a half-sent request and an idle connection open.
#[cfg(unix)]
mod shutdown;
// Resident memory stays bounded under a burst of big bodies (reads /proc).
#[cfg(target_os = "linux")]
mod memory;
// Backends send through an outbound proxy named in the environment.
#[cfg(unix)]
mod outbound_proxy;
// Responses answers survive a restart on the same data directory (stops with SIGTERM).
#[cfg(unix)]
mod restart;
// `llm-proxy usage --database-url` summarises what a stopped proxy wrote to PostgreSQL
// (a scratch cluster; fails under CI=true without the binaries).
#[cfg(unix)]
mod usage_postgres;
// `llm-proxy capture show / export-har / replay` on a capture the binary wrote (SIGTERM).
#[cfg(unix)]
mod capture;
// The generated code-layout files release builds link with are well formed.
mod link_order;
