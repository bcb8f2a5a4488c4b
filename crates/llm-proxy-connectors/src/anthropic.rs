//! The Anthropic Messages connector (`anthropic`): `POST {base}/messages` with `x-api-key`,
//! `anthropic-version` and the client's `anthropic-beta` flags, streamed or not, and the model
//! list from `GET {base}/models`.

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use llm_proxy_api::config::{BackendInstanceConfig, Timeouts};
use llm_proxy_api::error::BackendError;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs};
use llm_proxy_api::stream::EventStream;
use llm_proxy_api::{Backend, CallContext, ChatRequest, ModelInfo};
use llm_proxy_protocol::anthropic::{self, AnthropicCodec};
use serde::Deserialize;

use llm_proxy_api::upstream;

/// Backend type (registry key).
pub const BACKEND_NAME: &str = "anthropic";
/// Base URL when `api_url` is not configured.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// API version sent unless the client chose one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

const VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
const BETA_HEADER: HeaderName = HeaderName::from_static("anthropic-beta");
const KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// `backends.<instance>.extra` of an Anthropic backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// Additional headers sent on every call.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// A configured Anthropic backend instance.
pub struct AnthropicBackend {
    instance: String,
    client: CaptureAwareClient,
    messages_url: reqwest::Url,
    models_url: reqwest::Url,
    headers: HeaderMap,
    key_name: Option<String>,
    timeouts: Timeouts,
    models: Vec<String>,
    /// `caching.auto_breakpoints`: mark cache breakpoints for clients that cannot.
    auto_cache_breakpoints: bool,
}

impl std::fmt::Debug for AnthropicBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicBackend")
            .field("instance", &self.instance)
            .field("messages_url", &self.messages_url.as_str())
            .finish_non_exhaustive()
    }
}

impl AnthropicBackend {
    /// Builds an instance; no network I/O.
    pub fn new(args: &FactoryArgs) -> Result<Self, BackendError> {
        let cfg: &BackendInstanceConfig = &args.instance;
        let extra: Extra = serde_json::from_value(serde_json::Value::Object(cfg.extra.clone()))
            .map_err(|e| BackendError::config(format!("backends.{}.extra: {e}", cfg.instance)))?;
        let base = cfg.api_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.extend(upstream::configured_headers(&cfg.instance, &extra.headers)?);
        if let Some(key) = &cfg.api_key {
            headers.insert(KEY_HEADER, upstream::secret_header(key.expose())?);
        }
        Ok(Self {
            instance: cfg.instance.clone(),
            client: upstream::instance_client(&args.http_client, &cfg.timeouts)?,
            messages_url: upstream::join_url(base, "messages")?,
            models_url: upstream::join_url(base, "models")?,
            headers,
            key_name: cfg.key_name.clone(),
            timeouts: cfg.timeouts,
            models: cfg.models.clone(),
            auto_cache_breakpoints: args.shared.auto_cache_breakpoints,
        })
    }

    /// Headers of one call: ours, the client's `anthropic-version` (else the default) and its
    /// `anthropic-beta` flags, which select features the request body relies on.
    fn call_headers(&self, client: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        if !headers.contains_key(&VERSION_HEADER) {
            let version = client
                .get(&VERSION_HEADER)
                .cloned()
                .unwrap_or(HeaderValue::from_static(DEFAULT_VERSION));
            headers.insert(VERSION_HEADER, version);
        }
        for beta in client.get_all(&BETA_HEADER) {
            headers.append(BETA_HEADER, beta.clone());
        }
        headers
    }
}

#[async_trait]
impl Backend for AnthropicBackend {
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        let deadline = upstream::call_deadline(ctx, &self.timeouts);
        upstream::single_choice(req, "Anthropic")?;
        let mut lossy = Vec::new();
        let mut wire = anthropic::request_from_model(req, &ctx.model, &mut lossy);
        ctx.lossy.admit(lossy)?;
        wire.stream = Some(req.stream);
        // A client that could not mark breakpoints would never hit Anthropic's cache.
        if self.auto_cache_breakpoints && !req.cache.client_breakpoints {
            anthropic::cache::add_auto_breakpoints(&mut wire);
        }
        let body = anthropic::request_bytes(&wire);
        let capture = self
            .client
            .sink()
            .is_some()
            .then(|| upstream::capture_context(&self.instance, self.key_name.as_deref(), ctx));
        let call = upstream::ChatCall {
            client: &self.client,
            url: self.messages_url.clone(),
            headers: self.call_headers(&ctx.client_headers),
            body,
            capture,
            timeouts: &self.timeouts,
            deadline,
            model: &ctx.model,
            stream: req.stream,
        };
        upstream::post_chat(call, &AnthropicCodec).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, BackendError> {
        if !self.models.is_empty() {
            return Ok(self.models.iter().map(ModelInfo::new).collect());
        }
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let mut url = self.models_url.clone();
        url.query_pairs_mut().append_pair("limit", "1000");
        let body = upstream::get_json(
            &self.client,
            url,
            self.call_headers(&HeaderMap::new()),
            &self.timeouts,
            anthropic::decode_error,
        )
        .await?;
        let list: List = serde_json::from_slice(&body)
            .map_err(|e| BackendError::transport(format!("invalid model list: {e}")))?;
        Ok(list
            .data
            .into_iter()
            .map(|i| ModelInfo {
                id: i.id,
                owned_by: Some("anthropic".to_owned()),
            })
            .collect())
    }
}

/// The plugin definition of the `anthropic` backend.
pub fn definition() -> BackendPluginDefinition {
    crate::core_definition(BACKEND_NAME, AnthropicBackend::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::ErrorKind;
    use llm_proxy_api::model::{FinishReason, Message, Part, Role, ToolDefinition};
    use llm_proxy_api::stream::collect;
    use llm_proxy_test_support::anthropic::{self as payloads, Block, Tokens};
    use llm_proxy_test_support::{MockUpstream, Reply};
    use serde_json::json;
    use std::sync::Arc;

    use crate::testing::factory_args;

    fn backend(up: &MockUpstream) -> AnthropicBackend {
        let args = factory_args(
            "anthropic",
            &format!("{}/v1", up.base_url()),
            "sk-ant-test-0123456789",
        );
        AnthropicBackend::new(&args).unwrap()
    }

    fn request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "claude".into(),
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message::text(Role::User, "weather?"),
            ],
            stream,
            tools: vec![ToolDefinition {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object"}),
                strict: Some(true),
                cache_control: None,
            }],
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn streams_thinking_and_fragmented_tool_input_with_headers_and_lossy_notes() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::sse(payloads::stream(
            &[
                Block::thinking(&["hm"], "sig-1"),
                Block::tool_use("toolu_1", "get_weather", &["{\"ci", "ty\":\"Paris\"}"]),
            ],
            "tool_use",
            Tokens::new(20, 9),
        )));
        let mut ctx = CallContext::new("claude-sonnet-4-5");
        let mut client = HeaderMap::new();
        client.insert(
            "anthropic-beta",
            HeaderValue::from_static("interleaved-thinking-2025-05-14"),
        );
        client.insert(
            "authorization",
            HeaderValue::from_static("Bearer client-secret"),
        );
        ctx.client_headers = Arc::new(client);
        let events = backend(&up).stream(&ctx, &request(true)).await.unwrap();
        let answer = collect(events, "x").await.unwrap();
        match &answer.content[..] {
            [Part::Reasoning(r), Part::ToolCall(c)] => {
                assert_eq!(
                    (r.text.as_str(), r.signature.as_deref()),
                    ("hm", Some("sig-1"))
                );
                assert_eq!(
                    (c.id.as_str(), c.arguments.as_str()),
                    ("toolu_1", "{\"city\":\"Paris\"}")
                );
            }
            other => panic!("unexpected content {other:?}"),
        }
        assert_eq!(answer.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((20, 9))
        );

        let sent = &up.requests()[0];
        assert_eq!(sent.uri, "/v1/messages");
        assert_eq!(sent.headers["x-api-key"], "sk-ant-test-0123456789");
        assert_eq!(sent.headers["anthropic-version"], DEFAULT_VERSION);
        assert_eq!(
            sent.headers["anthropic-beta"],
            "interleaved-thinking-2025-05-14"
        );
        assert!(
            sent.headers.get("authorization").is_none(),
            "client credentials never forwarded"
        );
        assert_eq!(sent.body["model"], "claude-sonnet-4-5");
        assert_eq!(sent.body["stream"], true);
        // Automatic cache breakpoints: the canonical request did not come from a client that
        // marks its own.
        let eph = json!({"type": "ephemeral"});
        assert_eq!(
            sent.body["system"],
            json!([{"type": "text", "text": "be brief", "cache_control": eph}])
        );
        assert_eq!(
            sent.body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "weather?", "cache_control": eph}]}])
        );
        assert!(
            ctx.lossy.snapshot().iter().any(|n| n.contains("strict")),
            "{:?}",
            ctx.lossy.snapshot()
        );
    }

    #[tokio::test]
    async fn non_streaming_answer_and_client_version_header() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::json(payloads::text_message("Hi")));
        let mut ctx = CallContext::new("claude-x");
        let mut client = HeaderMap::new();
        client.insert("anthropic-version", HeaderValue::from_static("2099-01-01"));
        ctx.client_headers = Arc::new(client);
        let answer = collect(
            backend(&up).stream(&ctx, &request(false)).await.unwrap(),
            "x",
        )
        .await
        .unwrap();
        assert_eq!(answer.joined_text(), "Hi");
        assert_eq!(answer.finish_reason, Some(FinishReason::Stop));
        let sent = &up.requests()[0];
        assert_eq!(sent.headers["anthropic-version"], "2099-01-01");
        assert_eq!(sent.body["stream"], false);
    }

    #[tokio::test]
    async fn upstream_errors_keep_kind_status_and_retry_after() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::Json {
            status: 429,
            body: payloads::rate_limit_error(),
            headers: vec![("retry-after".into(), "7".into())],
        });
        up.push(Reply::error(400, payloads::prompt_too_long_error()));
        let b = backend(&up);
        let ctx = CallContext::new("claude-x");
        let err = b.stream(&ctx, &request(false)).await.err().unwrap();
        assert_eq!(
            (err.kind, err.upstream_status),
            (ErrorKind::RateLimited, Some(429))
        );
        assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(7)));
        assert!(err.message.contains("rate limit"), "{}", err.message);
        let err = b.stream(&ctx, &request(true)).await.err().unwrap();
        assert_eq!(err.kind, ErrorKind::ContextLengthExceeded);
    }

    #[tokio::test]
    async fn in_stream_error_ends_the_stream_with_an_error() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::sse(payloads::overloaded_stream("partial")));
        let ctx = CallContext::new("claude-x");
        let err = collect(
            backend(&up).stream(&ctx, &request(true)).await.unwrap(),
            "x",
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(err.message, "Overloaded");
    }

    #[tokio::test]
    async fn models_come_from_the_list_endpoint_unless_configured() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::json(json!({"data": [
            {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"},
            {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}
        ], "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-haiku-4-5"})));
        let models = backend(&up).models().await.unwrap();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["claude-sonnet-4-5", "claude-haiku-4-5"]);
        let sent = &up.requests()[0];
        assert!(sent.uri.starts_with("/v1/models"), "{}", sent.uri);
        assert_eq!(sent.headers["anthropic-version"], DEFAULT_VERSION);

        let mut args = factory_args("anthropic", &up.base_url(), "k-0123456789");
        args.instance.models = vec!["fixed".into()];
        let fixed = AnthropicBackend::new(&args)
            .unwrap()
            .models()
            .await
            .unwrap();
        assert_eq!(fixed, vec![ModelInfo::new("fixed")]);
        assert_eq!(up.calls(), 1, "configured models need no upstream call");
    }

    #[tokio::test]
    async fn clients_without_breakpoints_get_automatic_ones_unless_turned_off() {
        let up = MockUpstream::start().await.unwrap();
        up.set_fallback(Reply::json(payloads::text_message("ok")));
        let ctx = CallContext::new("claude-sonnet-4-5");
        let marked = |sent: &serde_json::Value| {
            (
                sent["system"][0]["cache_control"].clone(),
                sent["tools"][0]["cache_control"].clone(),
                sent["messages"][0]["content"][0]["cache_control"].clone(),
            )
        };
        let eph = json!({"type": "ephemeral"});

        collect(
            backend(&up).stream(&ctx, &request(false)).await.unwrap(),
            "m",
        )
        .await
        .unwrap();
        assert_eq!(
            marked(&up.requests()[0].body),
            (eph.clone(), eph.clone(), eph.clone())
        );

        // An Anthropic client placed its own (here: none): nothing is added.
        let mut own = request(false);
        own.cache.client_breakpoints = true;
        collect(backend(&up).stream(&ctx, &own).await.unwrap(), "m")
            .await
            .unwrap();
        assert_eq!(up.requests()[1].body["system"], "be brief");
        assert!(
            up.requests()[1].body["tools"][0]
                .get("cache_control")
                .is_none()
        );

        let mut args = factory_args(
            "anthropic",
            &format!("{}/v1", up.base_url()),
            "sk-ant-test-0123456789",
        );
        args.shared = Arc::new(llm_proxy_api::SharedConfig {
            auto_cache_breakpoints: false,
            ..llm_proxy_api::SharedConfig::default()
        });
        let off = AnthropicBackend::new(&args).unwrap();
        collect(off.stream(&ctx, &request(false)).await.unwrap(), "m")
            .await
            .unwrap();
        assert_eq!(up.requests()[2].body["system"], "be brief");
        assert_eq!(up.requests()[2].body["messages"][0]["content"], "weather?");
    }
}
