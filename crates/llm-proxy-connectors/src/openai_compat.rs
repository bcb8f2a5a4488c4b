//! The OpenAI Chat Completions connector and the family of OpenAI-compatible providers that
//! share it (OpenRouter, NVIDIA, Z.ai, MiniMax, ZenMux, Kimi Code, Ollama, any compatible
//! server), each with its default base URL and environment variable prefix; `openai-responses`
//! is the same connector speaking the Responses API (`POST {api_url}/responses`).

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use llm_proxy_api::config::{BackendInstanceConfig, Timeouts};
use llm_proxy_api::error::BackendError;
use llm_proxy_api::http::{CaptureAwareClient, ConnectorRequestContext, PluginHttpCaptureContext};
use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs};
use llm_proxy_api::stream::EventStream;
use llm_proxy_api::translation::WireCodec;
use llm_proxy_api::{Backend, CallContext, ChatRequest, ModelInfo};
use llm_proxy_protocol::openai_chat::from_model::EncodeOptions;
use llm_proxy_protocol::openai_chat::{self, OpenAiChatCodec};
use llm_proxy_protocol::openai_responses::{self, OpenAiResponsesCodec};
use serde::Deserialize;

use llm_proxy_api::upstream;

/// Static description of one OpenAI-compatible provider.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// Backend type (registry key).
    pub name: &'static str,
    /// Environment prefix: `<PREFIX>_API_KEY`, `<PREFIX>_API_BASE_URL`, `<PREFIX>_API_KEY_<N>`.
    pub env_prefix: &'static str,
    /// Default base URL; `None` means `api_url` is required.
    pub default_url: Option<&'static str>,
    /// Whether calls need an API key.
    pub key_required: bool,
    /// Extra headers the provider expects (client fingerprints for coding plans).
    pub headers: &'static [(&'static str, &'static str)],
    /// Send earlier reasoning back in the conversation.
    pub reasoning_in_history: bool,
    /// Use `max_completion_tokens` rather than `max_tokens`.
    pub max_completion_tokens: bool,
    /// Speak the Responses API (`/responses`) rather than Chat Completions.
    pub responses: bool,
    /// Send a `prompt_cache_key` derived from the session when the client gave none (the
    /// upstream routes requests with one key to the same cache; strict servers reject the
    /// field, so only where it is known to be accepted).
    pub session_cache_key: bool,
}

const KILO_CODE: &[(&str, &str)] = &[
    ("user-agent", "Kilo-Code/4.0.0"),
    ("http-referer", "https://kilocode.ai"),
    ("referer", "https://kilocode.ai"),
    ("origin", "https://kilocode.ai"),
    ("x-title", "Kilo Code"),
];

const fn provider(name: &'static str, env_prefix: &'static str, url: &'static str) -> Provider {
    Provider {
        name,
        env_prefix,
        default_url: Some(url),
        key_required: true,
        headers: &[],
        reasoning_in_history: true,
        max_completion_tokens: false,
        responses: false,
        session_cache_key: false,
    }
}

/// Every OpenAI-compatible provider built in.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        reasoning_in_history: false,
        max_completion_tokens: true,
        session_cache_key: true,
        ..provider("openai", "OPENAI", "https://api.openai.com/v1")
    },
    Provider {
        responses: true,
        session_cache_key: true,
        ..provider(
            "openai-responses",
            "OPENAI_RESPONSES",
            "https://api.openai.com/v1",
        )
    },
    provider("openrouter", "OPENROUTER", "https://openrouter.ai/api/v1"),
    provider("nvidia", "NVIDIA", "https://integrate.api.nvidia.com/v1"),
    provider("zai", "ZAI", "https://open.bigmodel.cn/api/paas/v4"),
    Provider {
        headers: KILO_CODE,
        ..provider(
            "zai-coding-plan",
            "ZAI_CODING_PLAN",
            "https://api.z.ai/api/coding/paas/v4",
        )
    },
    provider("minimax", "MINIMAX", "https://api.minimax.io/v1"),
    provider("zenmux", "ZENMUX", "https://zenmux.ai/api/v1"),
    Provider {
        headers: KILO_CODE,
        ..provider("kimi-code", "KIMI", "https://api.kimi.com/coding/v1")
    },
    Provider {
        key_required: false,
        ..provider("ollama", "OLLAMA", "http://localhost:11434/v1")
    },
    Provider {
        default_url: None,
        key_required: false,
        ..provider("openai-compatible", "OPENAI_COMPATIBLE", "")
    },
];

/// The provider description for a backend type.
pub fn provider_for(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Connector-specific settings under `backends.<name>.extra`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// Additional headers sent on every call.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// Override: send earlier reasoning back (`reasoning_content`).
    #[serde(default)]
    reasoning_in_history: Option<bool>,
    /// Override: use `max_completion_tokens`.
    #[serde(default)]
    max_completion_tokens: Option<bool>,
    /// Override: send a `prompt_cache_key` derived from the session.
    #[serde(default)]
    session_cache_key: Option<bool>,
}

/// A configured OpenAI-compatible backend instance.
pub struct OpenAiCompatible {
    instance: String,
    client: CaptureAwareClient,
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    headers: HeaderMap,
    key_name: Option<String>,
    timeouts: Timeouts,
    models: Vec<String>,
    options: EncodeOptions<'static>,
    responses: bool,
    session_cache_key: bool,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("instance", &self.instance)
            .field("chat_url", &self.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Whether an assistant turn of the conversation carries reasoning.
fn has_earlier_reasoning(req: &ChatRequest) -> bool {
    req.messages.iter().any(|m| {
        m.role == llm_proxy_api::Role::Assistant
            && m.content
                .iter()
                .any(|p| matches!(p, llm_proxy_api::Part::Reasoning(_)))
    })
}

impl OpenAiCompatible {
    /// Builds an instance; no network I/O.
    pub fn new(args: &FactoryArgs, provider: &Provider) -> Result<Self, BackendError> {
        let cfg: &BackendInstanceConfig = &args.instance;
        let extra: Extra = serde_json::from_value(serde_json::Value::Object(cfg.extra.clone()))
            .map_err(|e| BackendError::config(format!("backends.{}.extra: {e}", cfg.instance)))?;
        let base = cfg
            .api_url
            .as_deref()
            .or(provider.default_url)
            .ok_or_else(|| {
                BackendError::config(format!(
                    "backends.{}.api_url is required for backend type '{}'",
                    cfg.instance, provider.name
                ))
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in provider.headers {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        for (k, v) in &extra.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                BackendError::config(format!(
                    "backends.{}.extra.headers: bad name '{k}'",
                    cfg.instance
                ))
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                BackendError::config(format!(
                    "backends.{}.extra.headers.{k}: bad value",
                    cfg.instance
                ))
            })?;
            headers.insert(name, value);
        }
        if let Some(key) = &cfg.api_key {
            headers.insert(header::AUTHORIZATION, upstream::bearer_header(key)?);
        }
        Ok(Self {
            instance: cfg.instance.clone(),
            client: upstream::instance_client(&args.http_client, &cfg.timeouts)?,
            chat_url: upstream::join_url(
                base,
                if provider.responses {
                    "responses"
                } else {
                    "chat/completions"
                },
            )?,
            models_url: upstream::join_url(base, "models")?,
            headers,
            key_name: cfg.key_name.clone(),
            timeouts: cfg.timeouts,
            models: cfg.models.clone(),
            options: EncodeOptions {
                reasoning_in_history: extra
                    .reasoning_in_history
                    .unwrap_or(provider.reasoning_in_history),
                max_completion_tokens: extra
                    .max_completion_tokens
                    .unwrap_or(provider.max_completion_tokens),
                fallback_cache_key: None,
            },
            responses: provider.responses,
            session_cache_key: extra
                .session_cache_key
                .unwrap_or(provider.session_cache_key),
        })
    }

    fn capture_context(&self, ctx: &CallContext) -> PluginHttpCaptureContext {
        PluginHttpCaptureContext {
            backend: self.instance.clone(),
            model: ctx.model.clone(),
            key_name: self.key_name.clone(),
            context: Some(ConnectorRequestContext {
                request_id: ctx.request_id.clone(),
                session_id: ctx.session_id.clone(),
            }),
        }
    }
}

/// The `prompt_cache_key` standing for a session: a hash, so a session id the client chose
/// never reaches the upstream, stable across requests and restarts. A fingerprinted session's
/// id is itself a hash (of who sent the conversation and how it began) and is used as it is.
pub fn session_cache_key(session_id: &str) -> String {
    // A fingerprinted session's id (`fp:` and 32 hex digits) is already an opaque hash.
    if let Some(hash) = session_id.strip_prefix("fp:")
        && hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return [SESSION_KEY_PREFIX, hash].concat();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, session_id.as_bytes());
    let mut key = String::with_capacity(SESSION_KEY_PREFIX.len() + 32);
    key.push_str(SESSION_KEY_PREFIX);
    for b in &digest.as_ref()[..16] {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    key
}

const SESSION_KEY_PREFIX: &str = "llmproxy-";
const HEX: &[u8; 16] = b"0123456789abcdef";

impl OpenAiCompatible {
    /// The session's cache key, when the client gave none and this upstream takes one.
    fn fallback_cache_key(&self, ctx: &CallContext, req: &ChatRequest) -> Option<String> {
        if !self.session_cache_key || req.cache.key.is_some() {
            return None;
        }
        ctx.session_id.as_deref().map(session_cache_key)
    }

    /// The request body for a Responses upstream.
    fn responses_body(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<Vec<u8>, BackendError> {
        upstream::single_choice(req, "OpenAI Responses")?;
        let mut encoded = openai_responses::request_from_model(req, &ctx.model);
        let mut lossy: Vec<String> = req
            .foreign_content_note(openai_responses::PROTOCOL)
            .into_iter()
            .collect();
        lossy.append(&mut encoded.lossy);
        ctx.lossy.admit(lossy)?;
        if let Some(key) = self.fallback_cache_key(ctx, req)
            && let serde_json::Value::Object(body) = &mut encoded.body
        {
            body.entry("prompt_cache_key")
                .or_insert(serde_json::Value::String(key));
        }
        serde_json::to_vec(&encoded.body)
            .map_err(|e| BackendError::internal(format!("cannot encode request: {e}")))
    }

    /// The request body for an OpenAI-chat upstream.
    fn chat_body(&self, ctx: &CallContext, req: &ChatRequest) -> Result<Vec<u8>, BackendError> {
        upstream::single_choice(req, "OpenAI chat")?;
        let mut lossy: Vec<String> = req
            .foreign_content_note(openai_chat::PROTOCOL)
            .into_iter()
            .collect();
        if !self.options.reasoning_in_history && has_earlier_reasoning(req) {
            lossy.push(format!(
                "earlier reasoning not sent to '{}' (extra.reasoning_in_history is off)",
                self.instance
            ));
        }
        lossy.extend(openai_chat::reasoning_notes(req, &ctx.model));
        ctx.lossy.admit(lossy)?;
        let key = self.fallback_cache_key(ctx, req);
        let options = EncodeOptions {
            fallback_cache_key: key.as_deref(),
            ..self.options
        };
        Ok(openai_chat::request_body_from_model(
            req, &ctx.model, options,
        ))
    }
}

#[async_trait]
impl Backend for OpenAiCompatible {
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        let deadline = upstream::call_deadline(ctx, &self.timeouts);
        let (body, codec): (_, &dyn WireCodec) = if self.responses {
            (self.responses_body(ctx, req)?, &OpenAiResponsesCodec)
        } else {
            (self.chat_body(ctx, req)?, &OpenAiChatCodec)
        };
        let capture = self
            .client
            .sink()
            .is_some()
            .then(|| self.capture_context(ctx));
        let call = upstream::ChatCall {
            client: &self.client,
            url: self.chat_url.clone(),
            headers: self.headers.clone(),
            body,
            capture,
            timeouts: &self.timeouts,
            deadline,
            model: &ctx.model,
            stream: req.stream,
        };
        upstream::post_chat(call, codec).await
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
            #[serde(default)]
            owned_by: Option<String>,
        }
        let body = upstream::get_json(
            &self.client,
            self.models_url.clone(),
            self.headers.clone(),
            &self.timeouts,
            openai_chat::decode_error,
        )
        .await?;
        let list: List = serde_json::from_slice(&body)
            .map_err(|e| BackendError::transport(format!("invalid model list: {e}")))?;
        Ok(list
            .data
            .into_iter()
            .map(|i| ModelInfo {
                id: i.id,
                owned_by: i.owned_by,
            })
            .collect())
    }
}

/// The plugin definition for one provider of the family.
pub fn definition(provider: &'static Provider) -> BackendPluginDefinition {
    crate::core_definition(provider.name, move |args| {
        OpenAiCompatible::new(args, provider)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{Message, PromptCache, Role};
    use llm_proxy_api::stream::collect;
    use llm_proxy_test_support::{MockUpstream, Reply, openai, responses};
    use serde_json::Value;

    use crate::testing::factory_args;

    async fn sent_key(
        provider: &str,
        up: &MockUpstream,
        session: Option<&str>,
        key: Option<&str>,
    ) -> Value {
        let args = factory_args(provider, &format!("{}/v1", up.base_url()), "sk-0123456789");
        let Some(provider) = provider_for(provider) else {
            panic!("unknown provider {provider}");
        };
        let backend = OpenAiCompatible::new(&args, provider).unwrap();
        let mut ctx = CallContext::new("m");
        ctx.session_id = session.map(str::to_owned);
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi")],
            cache: PromptCache {
                key: key.map(str::to_owned),
                client_breakpoints: false,
            },
            ..ChatRequest::default()
        };
        collect(backend.stream(&ctx, &req).await.unwrap(), "m")
            .await
            .unwrap();
        up.requests().last().unwrap().body["prompt_cache_key"].clone()
    }

    #[tokio::test]
    async fn the_session_becomes_a_stable_hashed_prompt_cache_key() {
        let up = MockUpstream::start().await.unwrap();
        up.set_fallback(Reply::json(openai::completion("ok")));
        let first = sent_key("openai", &up, Some("session-42"), None).await;
        let again = sent_key("openai", &up, Some("session-42"), None).await;
        let other = sent_key("openai", &up, Some("session-43"), None).await;
        assert_eq!(first, again, "same session, same key");
        assert_ne!(first, other);
        let key = first.as_str().unwrap();
        assert!(key.starts_with("llmproxy-") && key.len() == 41, "{key}");
        assert!(
            !key.contains("session-42"),
            "the session id itself is not sent"
        );
        assert_eq!(key, session_cache_key("session-42"));
        assert!(!key.contains("session-42"), "{key}");
        assert_eq!(
            session_cache_key("fp:0123456789abcdef0123456789abcdef"),
            "llmproxy-0123456789abcdef0123456789abcdef"
        );

        assert_eq!(
            sent_key("openai", &up, Some("session-42"), Some("client-key")).await,
            "client-key",
            "the client's own key wins"
        );
        assert_eq!(sent_key("openai", &up, None, None).await, Value::Null);
        // Providers not known to accept the field get only a client's own key.
        assert_eq!(
            sent_key("openrouter", &up, Some("session-42"), None).await,
            Value::Null
        );
        assert_eq!(
            sent_key("openrouter", &up, Some("s"), Some("client-key")).await,
            "client-key"
        );
    }

    #[tokio::test]
    async fn responses_upstreams_get_the_key_too() {
        let up = MockUpstream::start().await.unwrap();
        up.set_fallback(Reply::json(responses::response(&[
            responses::OutputItem::message("msg_1", "ok"),
        ])));
        assert_eq!(
            sent_key("openai-responses", &up, Some("session-42"), None).await,
            session_cache_key("session-42").as_str()
        );
        assert_eq!(
            sent_key("openai-responses", &up, Some("session-42"), Some("conv-1")).await,
            "conv-1"
        );
    }
}
