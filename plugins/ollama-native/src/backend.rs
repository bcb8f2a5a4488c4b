//! The `ollama-native` backend: builds `/api/chat` calls and sends them through the plugin
//! API's shared HTTP exchange (`llm_proxy_api::upstream`, the same code the built-in backends
//! use: timeouts, error mapping, credential scrubbing, capture), which turns the NDJSON answer
//! into stream events as the lines arrive with [`OllamaResponseDecoder`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, header};
use llm_proxy_api::config::Timeouts;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_api::model_name::check_model_name;
use llm_proxy_api::plugin::FactoryArgs;
use llm_proxy_api::stream::EventStream;
use llm_proxy_api::upstream;
use llm_proxy_api::{Backend, BackendError, CallContext, ChatRequest, ModelInfo};
use serde::Deserialize;

use crate::DEFAULT_BASE_URL;
use crate::decode::{OllamaResponseDecoder, error_from_status};
use crate::settings::Settings;
use crate::wire::request_from_model;

/// One configured `ollama-native` instance.
pub struct OllamaNative {
    instance: String,
    client: CaptureAwareClient,
    chat_url: reqwest::Url,
    tags_url: reqwest::Url,
    version_url: reqwest::Url,
    headers: HeaderMap,
    key_name: Option<String>,
    timeouts: Timeouts,
    models: Vec<String>,
    settings: Settings,
}

impl std::fmt::Debug for OllamaNative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaNative")
            .field("instance", &self.instance)
            .field("chat_url", &self.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

impl OllamaNative {
    /// Builds an instance from its configuration. Parses and validates only: no network I/O.
    pub fn new(args: &FactoryArgs) -> Result<Self, BackendError> {
        let cfg = &args.instance;
        let settings = Settings::from_instance(cfg)?;
        let base = native_base(cfg.api_url.as_deref().unwrap_or(DEFAULT_BASE_URL));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Configured header values are treated as credentials (masked in captures, scrubbed
        // from echoed errors), like every backend's.
        headers.extend(upstream::configured_headers(
            &cfg.instance,
            &settings.headers,
        )?);
        // Local Ollama needs no key; Ollama's hosted API takes a bearer token.
        if let Some(key) = &cfg.api_key {
            headers.insert(header::AUTHORIZATION, upstream::bearer_header(key)?);
        }
        Ok(Self {
            instance: cfg.instance.clone(),
            // Same capture sink and scrubber as every other backend, with this instance's
            // connect timeout.
            client: upstream::instance_client(&args.http_client, &cfg.timeouts)?,
            chat_url: upstream::join_url(&base, "api/chat")?,
            tags_url: upstream::join_url(&base, "api/tags")?,
            version_url: upstream::join_url(&base, "api/version")?,
            headers,
            key_name: cfg.key_name.clone(),
            timeouts: cfg.timeouts,
            models: cfg.models.clone(),
            settings,
        })
    }
}

#[async_trait]
impl Backend for OllamaNative {
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        check_model_name(&ctx.model)?;
        let (wire, notes) = request_from_model(req, &ctx.model, &self.settings);
        ctx.lossy.add(notes);
        let body = serde_json::to_vec(&wire).map_err(|e| {
            BackendError::internal(format!("cannot encode the Ollama request: {e}"))
        })?;
        // Who this exchange belongs to in the capture (key *name*, never the key).
        let capture = self
            .client
            .sink()
            .is_some()
            .then(|| upstream::capture_context(&self.instance, self.key_name.as_deref(), ctx));
        let call = upstream::ChatCall {
            client: &self.client,
            url: self.chat_url.clone(),
            headers: self.headers.clone(),
            body,
            capture,
            timeouts: &self.timeouts,
            deadline: upstream::call_deadline(ctx, &self.timeouts),
            model: &ctx.model,
            stream: req.stream,
        };
        upstream::post_chat(call, &OllamaResponseDecoder).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, BackendError> {
        if !self.models.is_empty() {
            return Ok(self.models.iter().map(ModelInfo::new).collect());
        }
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            models: Vec<Tag>,
        }
        #[derive(Deserialize)]
        struct Tag {
            name: String,
        }
        let body = upstream::get_json(
            &self.client,
            self.tags_url.clone(),
            self.headers.clone(),
            &self.timeouts,
            error_from_status,
        )
        .await?;
        let tags: Tags = serde_json::from_slice(&body).map_err(|e| {
            BackendError::transport(format!("Ollama sent an invalid model list: {e}"))
        })?;
        Ok(tags
            .models
            .into_iter()
            .map(|t| ModelInfo {
                id: t.name,
                owned_by: Some("ollama".to_owned()),
            })
            .collect())
    }

    async fn health(&self) -> Result<(), BackendError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut request = reqwest::Request::new(reqwest::Method::GET, self.version_url.clone());
        *request.headers_mut() = self.headers.clone();
        let response = upstream::send(
            &self.client,
            request,
            None,
            &self.timeouts,
            deadline,
            error_from_status,
        )
        .await?;
        upstream::read_body(response, deadline).await.map(|_| ())
    }
}

/// The native API lives at the server root; accept a base URL pasted from the
/// OpenAI-compatible (`/v1`) or native (`/api`) endpoint too.
fn native_base(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed
        .strip_suffix("/v1")
        .or_else(|| trimmed.strip_suffix("/api"))
        .unwrap_or(trimmed);
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_point_at_the_server_root() {
        assert_eq!(
            native_base("http://localhost:11434"),
            "http://localhost:11434"
        );
        assert_eq!(
            native_base("http://localhost:11434/"),
            "http://localhost:11434"
        );
        assert_eq!(native_base("http://h:1/v1/"), "http://h:1");
        assert_eq!(native_base("http://h:1/api"), "http://h:1");
        assert_eq!(
            native_base("https://proxy.test/ollama"),
            "https://proxy.test/ollama"
        );
    }
}
