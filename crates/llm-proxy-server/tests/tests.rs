//! Integration tests of the gateway: the real router on 127.0.0.1:0 against mock upstreams.
// Helpers outside `#[test]` functions unwrap too; clippy's in-test allowance does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod brute_force;
mod capture;
mod capture_boundaries;
mod capture_cbor;
mod claude_code;
mod commands;
mod common;
mod connections;
mod dashboard;
mod dialect;
mod edge;
mod errors;
mod fidelity;
mod gemini;
mod guards;
mod hardening;
mod hostile;
mod kept_reasoning;
mod limits;
mod matrix;
mod openai_chat;
mod otel;
mod plugins;
mod prompt_cache;
mod reasoning_switch;
mod redaction;
mod redis;
mod responses;
mod responses_upstream;
mod responses_ws;
mod routing;
mod sealed_reasoning;
mod secrets;
mod steering;
mod streaming;
mod usage;
// The PostgreSQL usage ledger against a scratch server (Debian's postgresql binaries).
mod usage_postgres;
