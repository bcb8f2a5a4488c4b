//! The Gemini connector (`gemini`): `POST {base}/v1beta/models/{model}:generateContent` (or
//! `:streamGenerateContent?alt=sse`) with the key in `x-goog-api-key`, never in the URL, and
//! the model list from `GET {base}/v1beta/models`.

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use llm_proxy_api::config::{BackendInstanceConfig, Timeouts};
use llm_proxy_api::error::BackendError;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_api::model_name::model_path_segment;
use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs};
use llm_proxy_api::stream::EventStream;
use llm_proxy_api::{Backend, CallContext, ChatRequest, ModelInfo};
use llm_proxy_protocol::gemini::{self, GeminiCodec};
use serde::Deserialize;

use llm_proxy_api::upstream;

/// Backend type (registry key).
pub const BACKEND_NAME: &str = "gemini";
/// Base URL when `api_url` is not configured.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

const KEY_HEADER: HeaderName = HeaderName::from_static("x-goog-api-key");

/// `backends.<instance>.extra` of a Gemini backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// Additional headers sent on every call.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// A configured Gemini backend instance.
pub struct GeminiBackend {
    instance: String,
    client: CaptureAwareClient,
    /// `{base}/v1beta`, the root of model URLs.
    api_root: String,
    headers: HeaderMap,
    key_name: Option<String>,
    timeouts: Timeouts,
    models: Vec<String>,
}

impl std::fmt::Debug for GeminiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiBackend")
            .field("instance", &self.instance)
            .field("api_root", &self.api_root)
            .finish_non_exhaustive()
    }
}

/// The versioned API root: a base that already names a version (`.../v1beta`, `.../v1`) is
/// used as is, otherwise `/v1beta` is appended.
fn api_root(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or("");
    let versioned = last
        .strip_prefix('v')
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_digit());
    if versioned {
        base.to_owned()
    } else {
        format!("{base}/v1beta")
    }
}

impl GeminiBackend {
    /// Builds an instance; no network I/O.
    pub fn new(args: &FactoryArgs) -> Result<Self, BackendError> {
        let cfg: &BackendInstanceConfig = &args.instance;
        let extra: Extra = serde_json::from_value(serde_json::Value::Object(cfg.extra.clone()))
            .map_err(|e| BackendError::config(format!("backends.{}.extra: {e}", cfg.instance)))?;
        let api_root = api_root(cfg.api_url.as_deref().unwrap_or(DEFAULT_BASE_URL));
        // Validate the base now so a bad api_url fails at startup, not on the first call.
        upstream::join_url(&api_root, "models")?;
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
            api_root,
            headers,
            key_name: cfg.key_name.clone(),
            timeouts: cfg.timeouts,
            models: cfg.models.clone(),
        })
    }

    /// `{root}/models/{model}:{method}`; a `models/` prefix on the model is accepted. The model
    /// becomes one escaped path segment, so no name can leave `{root}/models/`.
    fn method_url(&self, model: &str, method: &str) -> Result<reqwest::Url, BackendError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let segment = model_path_segment(model)?;
        upstream::join_url(&self.api_root, &format!("models/{segment}:{method}"))
    }
}

#[async_trait]
impl Backend for GeminiBackend {
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        let deadline = upstream::call_deadline(ctx, &self.timeouts);
        upstream::single_choice(req, "Gemini")?;
        let mut lossy = Vec::new();
        let wire = gemini::request_from_model(req, &mut lossy);
        ctx.lossy.admit(lossy)?;
        let body = serde_json::to_vec(&wire)
            .map_err(|e| BackendError::internal(format!("cannot encode request: {e}")))?;
        let url = if req.stream {
            let mut url = self.method_url(&ctx.model, "streamGenerateContent")?;
            url.query_pairs_mut().append_pair("alt", "sse");
            url
        } else {
            self.method_url(&ctx.model, "generateContent")?
        };
        let capture = self
            .client
            .sink()
            .is_some()
            .then(|| upstream::capture_context(&self.instance, self.key_name.as_deref(), ctx));
        let call = upstream::ChatCall {
            client: &self.client,
            url,
            headers: self.headers.clone(),
            body,
            capture,
            timeouts: &self.timeouts,
            deadline,
            model: &ctx.model,
            stream: req.stream,
        };
        upstream::post_chat(call, &GeminiCodec).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, BackendError> {
        if !self.models.is_empty() {
            return Ok(self.models.iter().map(ModelInfo::new).collect());
        }
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            models: Vec<Item>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Item {
            name: String,
            #[serde(default)]
            supported_generation_methods: Option<Vec<String>>,
        }
        let mut url = upstream::join_url(&self.api_root, "models")?;
        url.query_pairs_mut().append_pair("pageSize", "1000");
        let body = upstream::get_json(
            &self.client,
            url,
            self.headers.clone(),
            &self.timeouts,
            gemini::decode_error,
        )
        .await?;
        let list: List = serde_json::from_slice(&body)
            .map_err(|e| BackendError::transport(format!("invalid model list: {e}")))?;
        Ok(list
            .models
            .into_iter()
            // Embedding-only and other non-chat models cannot serve a chat call.
            .filter(|m| {
                m.supported_generation_methods
                    .as_ref()
                    .is_none_or(|methods| methods.iter().any(|g| g == "generateContent"))
            })
            .map(|m| ModelInfo {
                id: m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned(),
                owned_by: Some("google".to_owned()),
            })
            .collect())
    }
}

/// The plugin definition of the `gemini` backend.
pub fn definition() -> BackendPluginDefinition {
    crate::core_definition(BACKEND_NAME, GeminiBackend::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::ErrorKind;
    use llm_proxy_api::model::{FinishReason, Message, Part, Role};
    use llm_proxy_api::stream::collect;
    use llm_proxy_test_support::gemini::{self as payloads, Tokens};
    use llm_proxy_test_support::{MockUpstream, Reply};
    use serde_json::json;

    use crate::testing::factory_args;

    fn backend(up: &MockUpstream) -> GeminiBackend {
        GeminiBackend::new(&factory_args(
            "gemini",
            &up.base_url(),
            "AIza-test-0123456789",
        ))
        .unwrap()
    }

    fn request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "g".into(),
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message::text(Role::User, "hi"),
            ],
            stream,
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn streams_with_the_key_in_a_header_never_the_url() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::sse(payloads::stream(
            &[
                vec![payloads::thought("hm", None)],
                payloads::parallel_call_parts("SIG"),
            ],
            "STOP",
            Tokens::new(10, 5),
        )));
        let ctx = CallContext::new("models/gemini-2.5-pro");
        let answer = collect(
            backend(&up).stream(&ctx, &request(true)).await.unwrap(),
            "x",
        )
        .await
        .unwrap();
        let calls: Vec<_> = answer
            .content
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall(c) => Some((
                    c.name.as_str(),
                    c.arguments.as_str(),
                    c.provider_data.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].1, "{\"city\":\"Paris\"}");
        assert_eq!(
            calls[0].2,
            Some(json!({"google": {"thought_signature": "SIG"}})),
            "thought signature kept on its call"
        );
        assert_eq!(answer.finish_reason, Some(FinishReason::ToolCalls));
        let sent = &up.requests()[0];
        assert_eq!(
            sent.uri,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert!(!sent.uri.contains("key="));
        assert_eq!(sent.headers["x-goog-api-key"], "AIza-test-0123456789");
        assert_eq!(
            sent.body,
            json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
                   "contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
    }

    #[tokio::test]
    async fn non_streaming_answer_and_errors() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::json(payloads::text_response("Hello")));
        up.push(Reply::error(429, payloads::rate_limit_error()));
        up.push(Reply::error(400, payloads::context_length_error()));
        let b = backend(&up);
        let ctx = CallContext::new("gemini-2.5-flash");
        let answer = collect(b.stream(&ctx, &request(false)).await.unwrap(), "x")
            .await
            .unwrap();
        assert_eq!(answer.joined_text(), "Hello");
        assert_eq!(
            answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((11, 7))
        );
        assert_eq!(
            up.requests()[0].uri,
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let err = b.stream(&ctx, &request(false)).await.err().unwrap();
        assert_eq!(
            (err.kind, err.upstream_status),
            (ErrorKind::RateLimited, Some(429))
        );
        let err = b.stream(&ctx, &request(true)).await.err().unwrap();
        assert_eq!(err.kind, ErrorKind::ContextLengthExceeded);
    }

    #[tokio::test]
    async fn signed_reasoning_of_another_provider_is_reported_lossy() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::json(payloads::text_response("ok")));
        let mut req = request(false);
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![
                Part::Reasoning(llm_proxy_api::model::ReasoningBlock {
                    text: "t".into(),
                    signature: Some("anthropic-sig".into()),
                    ..Default::default()
                }),
                Part::Text(llm_proxy_api::model::TextPart::new("a")),
            ],
            name: None,
        });
        req.messages.push(Message::text(Role::User, "again"));
        let ctx = CallContext::new("gemini-2.5-flash");
        collect(backend(&up).stream(&ctx, &req).await.unwrap(), "x")
            .await
            .unwrap();
        let notes = ctx.lossy.snapshot();
        assert!(
            notes.iter().any(|n| n.contains("signed reasoning dropped")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn models_strip_the_prefix_and_skip_non_chat_models() {
        let up = MockUpstream::start().await.unwrap();
        up.push(Reply::json(json!({"models": [
            {"name": "models/gemini-2.5-pro", "displayName": "Gemini 2.5 Pro",
             "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/text-embedding-004", "displayName": "Embedding",
             "supportedGenerationMethods": ["embedContent"]}
        ]})));
        let models = backend(&up).models().await.unwrap();
        assert_eq!(
            models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["gemini-2.5-pro"]
        );
        let sent = &up.requests()[0];
        assert!(sent.uri.starts_with("/v1beta/models?"), "{}", sent.uri);
        assert_eq!(sent.headers["x-goog-api-key"], "AIza-test-0123456789");
    }

    #[tokio::test]
    async fn model_names_cannot_leave_the_models_path() {
        let up = MockUpstream::start().await.unwrap();
        up.set_fallback(Reply::json(payloads::text_response("leaked")));
        let b = backend(&up);
        for model in [
            "a/../../../evil",
            "x\\..\\..\\y",
            "../../z",
            "..%2F..%2Fz",
            "models/..",
            &"m".repeat(100_000),
        ] {
            let err = b
                .stream(&CallContext::new(model), &request(false))
                .await
                .err()
                .unwrap();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{model:.40}");
            assert!(!err.counts_against_backend);
        }
        assert_eq!(up.calls(), 0, "nothing was sent upstream");
        // Characters that are not separators are escaped inside the segment.
        collect(
            b.stream(&CallContext::new("a:b?c"), &request(false))
                .await
                .unwrap(),
            "x",
        )
        .await
        .unwrap();
        assert_eq!(
            up.requests()[0].uri,
            "/v1beta/models/a%3Ab%3Fc:generateContent"
        );
    }

    #[test]
    fn api_root_appends_v1beta_unless_versioned() {
        assert_eq!(
            api_root("https://generativelanguage.googleapis.com"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            api_root("http://127.0.0.1:9/v1beta/"),
            "http://127.0.0.1:9/v1beta"
        );
        assert_eq!(api_root("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(api_root("http://h/gemini"), "http://h/gemini/v1beta");
        assert_eq!(api_root("http://h/vertex"), "http://h/vertex/v1beta");
    }
}
