//! What a finished request becomes in a trace: [`FinishedRequest`] (plain data the finish hook
//! gathers) turned into OpenTelemetry [`SpanData`] by [`SpanFactory`] on the exporter thread —
//! a SERVER span for the request and a CLIENT span per backend attempt, named and attributed
//! after the GenAI semantic conventions (`gen_ai.*`, `server.*`, `error.type`, HTTP status).
//! Client-chosen strings pass the process scrubber; no prompt or completion content, no
//! header, no URL is ever an attribute.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use llm_proxy_api::config::BackendInstanceConfig;
use llm_proxy_api::scrub::Scrubber;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::attempts::AttemptError;
use crate::usage::tally::TokenCounts;

/// The `gen_ai.operation.name` of every request the proxy serves.
const OPERATION: &str = "chat";

/// One backend attempt, with wall-clock times.
#[derive(Debug, Clone)]
pub struct AttemptTimes {
    /// Backend instance id.
    pub instance: String,
    /// Upstream model.
    pub model: String,
    /// Start.
    pub started: SystemTime,
    /// End.
    pub ended: SystemTime,
    /// `None`: this attempt served the answer (its status follows the request's).
    pub error: Option<AttemptError>,
    /// Whether it served the answer.
    pub served: bool,
}

/// A finished request, as the trace needs it.
#[derive(Debug, Clone)]
pub struct FinishedRequest {
    /// Proxy request id.
    pub request_id: String,
    /// The client's W3C `traceparent` header, when it sent one.
    pub traceparent: Option<String>,
    /// Client protocol label.
    pub frontend: &'static str,
    /// Streamed answer.
    pub stream: bool,
    /// `ok`, `client_disconnected` or an error label.
    pub outcome: String,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Model the client asked for.
    pub requested_model: Option<String>,
    /// Upstream model that served.
    pub response_model: Option<String>,
    /// Instance that served.
    pub backend: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Tokens the upstream reported (none: it reported none).
    pub usage: Option<TokenCounts>,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
    /// Arrival.
    pub started: SystemTime,
    /// End.
    pub ended: SystemTime,
    /// Backend attempts, in the order they ended.
    pub attempts: Vec<AttemptTimes>,
}

impl FinishedRequest {
    /// How many spans this request makes.
    pub fn span_count(&self) -> u64 {
        1 + self.attempts.len() as u64
    }
}

/// What the spans say about an instance: `gen_ai.provider.name` and `server.address`/`port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InstanceInfo {
    provider: String,
    address: Option<(String, u16)>,
}

/// Builds spans: the instances' provider names and hosts (from the configuration, once), the
/// scrubber and the instrumentation scope.
#[derive(Debug, Clone)]
pub struct SpanFactory {
    instances: HashMap<String, InstanceInfo>,
    scrubber: Scrubber,
    scope: InstrumentationScope,
}

/// The GenAI `gen_ai.provider.name` of a backend type (a well-known value where there is one).
fn provider_name(backend_type: &str) -> &str {
    match backend_type {
        "openai" | "openai-responses" => "openai",
        "anthropic" => "anthropic",
        "gemini" => "gcp.gemini",
        "zai" | "zai-coding-plan" => "zai",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        other => other,
    }
}

/// Host and port of a URL (never its credentials, path or query).
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some((host.to_owned(), port))
}

impl SpanFactory {
    /// For the configured instances (`api_url`, else the provider's default URL).
    pub fn new<'a>(
        instances: impl IntoIterator<Item = (&'a String, &'a BackendInstanceConfig)>,
        scrubber: Scrubber,
    ) -> Self {
        let instances = instances
            .into_iter()
            .map(|(name, cfg)| {
                let default_url = llm_proxy_connectors::openai_compat::PROVIDERS
                    .iter()
                    .find(|p| p.name == cfg.backend_type)
                    .and_then(|p| p.default_url);
                let url = cfg.api_url.as_deref().or(default_url);
                let info = InstanceInfo {
                    provider: provider_name(&cfg.backend_type).to_owned(),
                    address: url.and_then(host_and_port),
                };
                (name.clone(), info)
            })
            .collect();
        Self {
            instances,
            scrubber,
            scope: InstrumentationScope::builder("llm-proxy")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }

    /// `{gen_ai.operation.name} {gen_ai.request.model}`, as the conventions name spans. Model
    /// names are client input: an odd one (long, spaces, control bytes) is left out.
    fn span_name(&self, model: Option<&str>) -> String {
        match model {
            Some(m) if plain_model_name(m) => format!("{OPERATION} {}", self.scrubber.scrub(m)),
            _ => OPERATION.to_owned(),
        }
    }

    fn text(&self, s: &str) -> Value {
        Value::String(self.scrubber.scrub(s).into_owned().into())
    }

    fn span(
        &self,
        (context, parent): (SpanContext, (SpanId, bool)),
        kind: SpanKind,
        name: String,
        times: (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: context,
            parent_span_id: parent.0,
            parent_span_is_remote: parent.1,
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: times.0,
            end_time: times.1.max(times.0),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    fn provider_attributes(&self, instance: &str, out: &mut Vec<KeyValue>) {
        let Some(info) = self.instances.get(instance) else {
            return;
        };
        out.push(KeyValue::new("gen_ai.provider.name", info.provider.clone()));
        // The name before semantic conventions 1.37, still read by some backends.
        out.push(KeyValue::new("gen_ai.system", info.provider.clone()));
        if let Some((host, port)) = &info.address {
            out.push(KeyValue::new("server.address", host.clone()));
            out.push(KeyValue::new("server.port", i64::from(*port)));
        }
    }

    /// The spans of `r`: the request's first, then its attempts'. None when the client's
    /// `traceparent` says its trace is not sampled.
    pub fn spans(&self, r: &FinishedRequest) -> Vec<SpanData> {
        let parent = r.traceparent.as_deref().and_then(parse_traceparent);
        if parent.is_some_and(|(_, _, sampled)| !sampled) {
            return Vec::new();
        }
        let trace_id =
            parent.map_or_else(|| TraceId::from(fastrand::u128(1..)), |(trace, _, _)| trace);
        let root_parent = parent.map_or((SpanId::INVALID, false), |(_, span, _)| (span, true));
        let context = |span_id: SpanId| {
            SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        let root_id = SpanId::from(fastrand::u64(1..));
        let failed = r.outcome != "ok" && r.outcome != "client_disconnected";
        let root_status = if failed {
            Status::error(r.outcome.clone())
        } else {
            Status::Unset
        };
        let mut spans = Vec::with_capacity(1 + r.attempts.len());
        spans.push(self.span(
            (context(root_id), root_parent),
            SpanKind::Server,
            self.span_name(r.requested_model.as_deref()),
            (r.started, r.ended),
            self.request_attributes(r, failed),
            root_status.clone(),
        ));
        for a in &r.attempts {
            let mut attributes = vec![
                KeyValue::new("gen_ai.operation.name", OPERATION),
                KeyValue::new("gen_ai.request.model", self.text(&a.model)),
                KeyValue::new("llm_proxy.backend", a.instance.clone()),
            ];
            self.provider_attributes(&a.instance, &mut attributes);
            let status = match &a.error {
                Some(e) => {
                    attributes.push(KeyValue::new("error.type", e.kind));
                    if let Some(s) = e.status {
                        attributes.push(KeyValue::new("http.response.status_code", i64::from(s)));
                    }
                    Status::error(e.kind)
                }
                None if a.served => {
                    if failed {
                        attributes.push(KeyValue::new("error.type", r.outcome.clone()));
                    }
                    root_status.clone()
                }
                None => Status::Unset,
            };
            spans.push(self.span(
                (context(SpanId::from(fastrand::u64(1..))), (root_id, false)),
                SpanKind::Client,
                self.span_name(Some(&a.model)),
                (a.started, a.ended),
                attributes,
                status,
            ));
        }
        spans
    }

    fn request_attributes(&self, r: &FinishedRequest, failed: bool) -> Vec<KeyValue> {
        let mut out = vec![
            KeyValue::new("gen_ai.operation.name", OPERATION),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
            KeyValue::new("llm_proxy.request_id", r.request_id.clone()),
            KeyValue::new("llm_proxy.frontend", r.frontend),
            KeyValue::new("llm_proxy.stream", r.stream),
            KeyValue::new("llm_proxy.outcome", r.outcome.clone()),
        ];
        if let Some(m) = &r.requested_model {
            out.push(KeyValue::new("gen_ai.request.model", self.text(m)));
        }
        if let Some(m) = &r.response_model {
            out.push(KeyValue::new("gen_ai.response.model", self.text(m)));
        }
        if let Some(b) = &r.backend {
            out.push(KeyValue::new("llm_proxy.backend", b.clone()));
            self.provider_attributes(b, &mut out);
        }
        if let Some(s) = &r.session_id {
            out.push(KeyValue::new("gen_ai.conversation.id", self.text(s)));
        }
        if let Some(u) = &r.usage {
            let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            out.push(KeyValue::new("gen_ai.usage.input_tokens", count(u.input)));
            out.push(KeyValue::new("gen_ai.usage.output_tokens", count(u.output)));
        }
        if let Some(reason) = &r.finish_reason {
            out.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(reason.clone())])),
            ));
        }
        if failed {
            out.push(KeyValue::new("error.type", r.outcome.clone()));
        }
        out
    }
}

fn plain_model_name(m: &str) -> bool {
    !m.is_empty() && m.len() <= 128 && m.bytes().all(|b| b.is_ascii_graphic())
}

/// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`): trace id, parent span id, sampled.
fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId, bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace, span, flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let (t, s, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(format!("{t}"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format!("{s}"), "00f067aa0ba902b7");
        assert!(sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn server_address_is_the_host_only() {
        assert_eq!(
            host_and_port("https://bob:pw-0001@api.example.com/v1?key=k"),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(
            host_and_port("http://127.0.0.1:9/v1"),
            Some(("127.0.0.1".into(), 9))
        );
    }

    #[test]
    fn a_span_name_never_carries_odd_or_secret_model_names() {
        let scrubber = Scrubber::new(["sk-planted-secret-0001"]).unwrap();
        let f = SpanFactory::new([], scrubber);
        assert_eq!(f.span_name(Some("gpt-4o")), "chat gpt-4o");
        assert_eq!(f.span_name(Some("a b")), "chat");
        assert_eq!(f.span_name(None), "chat");
        assert!(
            !f.span_name(Some("sk-planted-secret-0001"))
                .contains("planted")
        );
    }
}
