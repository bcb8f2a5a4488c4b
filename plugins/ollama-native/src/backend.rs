//! The `ollama-native` backend: builds `/api/chat` calls, sends them through the proxy's
//! capture-aware client with a per-call capture context, and turns the NDJSON answer into
//! stream events as the lines arrive.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use llm_proxy_api::config::Timeouts;
use llm_proxy_api::error::parse_retry_after;
use llm_proxy_api::http::{
    BodyStream, CaptureAwareClient, ConnectorRequestContext, HttpResponse, PendingCapture,
    PluginHttpCaptureContext, capture_http_response,
};
use llm_proxy_api::model_name::check_model_name;
use llm_proxy_api::plugin::FactoryArgs;
use llm_proxy_api::stream::{EventStream, StreamEvent};
use llm_proxy_api::translation::StreamDecoder;
use llm_proxy_api::{Backend, BackendError, CallContext, ChatRequest, ModelInfo};
use serde::Deserialize;

use crate::DEFAULT_BASE_URL;
use crate::decode::{NdjsonChatDecoder, error_from_status};
use crate::settings::Settings;
use crate::wire::request_from_model;

/// After the final (`done`) line, how long to wait for the body to end before moving on.
const END_GRACE: Duration = Duration::from_millis(200);

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
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| {
                BackendError::config(format!(
                    "backends.{}.api_url: invalid URL '{base}': {e}",
                    cfg.instance
                ))
            })
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &settings.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BackendError::config(format!(
                    "backends.{}.extra.headers: bad name '{name}'",
                    cfg.instance
                ))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                BackendError::config(format!(
                    "backends.{}.extra.headers.{name}: bad value",
                    cfg.instance
                ))
            })?;
            headers.insert(name, value);
        }
        // Local Ollama needs no key; Ollama's hosted API takes a bearer token.
        if let Some(key) = &cfg.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    BackendError::config("API key contains characters not allowed in a header")
                })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        // Same capture sink as every other backend, with this instance's connect timeout.
        let inner = reqwest::Client::builder()
            .connect_timeout(cfg.timeouts.connect)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BackendError::config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            instance: cfg.instance.clone(),
            client: args.http_client.with_inner(inner),
            chat_url: url("api/chat")?,
            tags_url: url("api/tags")?,
            version_url: url("api/version")?,
            headers,
            key_name: cfg.key_name.clone(),
            timeouts: cfg.timeouts,
            models: cfg.models.clone(),
            settings,
        })
    }

    /// Who this exchange belongs to in the capture (key *name*, never the key).
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

    fn request(&self, method: reqwest::Method, url: &reqwest::Url) -> reqwest::Request {
        let mut request = reqwest::Request::new(method, url.clone());
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// Sends `request`, waiting at most the first-byte timeout for the response head; error
    /// statuses become errors carrying Ollama's message, status and `Retry-After`.
    async fn send(
        &self,
        request: reqwest::Request,
        capture: Option<&PluginHttpCaptureContext>,
        deadline: Instant,
    ) -> Result<HttpResponse, BackendError> {
        let head_deadline = deadline.min(Instant::now() + self.timeouts.first_byte);
        let response =
            tokio::time::timeout_at(head_deadline.into(), self.client.send(request, capture))
                .await
                .map_err(|_| BackendError::timeout("Ollama sent no response in time"))?
                .map_err(transport_error)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(30));
        let body = response.bytes(Some(remaining)).await.unwrap_or_default();
        Err(error_from_status(status, &body).with_retry_after(retry_after))
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
        let own = Instant::now() + self.timeouts.total;
        let deadline = ctx.deadline.map_or(own, |d| d.min(own));
        let (wire, notes) = request_from_model(req, &ctx.model, &self.settings);
        ctx.lossy.add(notes);
        let body = serde_json::to_vec(&wire).map_err(|e| {
            BackendError::internal(format!("cannot encode the Ollama request: {e}"))
        })?;
        let mut request = self.request(reqwest::Method::POST, &self.chat_url);
        *request.body_mut() = Some(body.into());
        let capture = self.capture_context(ctx);
        let response = self.send(request, Some(&capture), deadline).await?;
        let mut decoder = NdjsonChatDecoder::new(ctx.model.clone());
        if req.stream {
            return Ok(ndjson_events(response, decoder, deadline));
        }
        // `bytes()` reads the whole body and captures the response.
        let body = response
            .bytes(Some(deadline.saturating_duration_since(Instant::now())))
            .await?;
        let mut events = Vec::new();
        decoder.feed(&body, &mut events)?;
        decoder.finish(&mut events)?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
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
        let deadline = Instant::now() + self.timeouts.first_byte.min(Duration::from_secs(15));
        let response = self
            .send(
                self.request(reqwest::Method::GET, &self.tags_url),
                None,
                deadline,
            )
            .await?;
        let body = response
            .bytes(Some(deadline.saturating_duration_since(Instant::now())))
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
        let response = self
            .send(
                self.request(reqwest::Method::GET, &self.version_url),
                None,
                deadline,
            )
            .await?;
        response
            .bytes(Some(Duration::from_secs(5)))
            .await
            .map(|_| ())
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

/// A transport failure, without the URL (it could carry credentials in a query).
fn transport_error(e: reqwest::Error) -> BackendError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let builder = e.is_builder();
    let e = e.without_url();
    if builder {
        BackendError::unsendable_request(format!("cannot build the Ollama request: {e}"))
    } else if timeout {
        BackendError::timeout(format!("Ollama timed out: {e}"))
    } else if connect {
        BackendError::transport(format!("cannot connect to Ollama: {e}"))
    } else {
        BackendError::transport(format!("Ollama request failed: {e}"))
    }
}

struct Decoding {
    body: BodyStream,
    capture: Option<Arc<PendingCapture>>,
    decoder: NdjsonChatDecoder,
    pending: VecDeque<Result<StreamEvent, BackendError>>,
    scratch: Vec<StreamEvent>,
    deadline: Instant,
    finished: bool,
}

impl Decoding {
    /// The body is consumed: record the inbound response in the capture. Idempotent, so the
    /// body stream's own end-of-stream capture cannot record it twice.
    fn body_consumed(&mut self) {
        if let Some(capture) = &self.capture {
            capture_http_response(capture);
        }
    }
}

/// Events decoded from the NDJSON body as lines arrive; the stream ends with an error if the
/// deadline passes first.
fn ndjson_events(
    response: HttpResponse,
    decoder: NdjsonChatDecoder,
    deadline: Instant,
) -> EventStream {
    let state = Decoding {
        capture: response.capture().cloned(),
        body: response.bytes_stream(),
        decoder,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        deadline,
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            // After the final line, give the body a moment to end so the connection can be
            // reused, but never wait on an upstream that keeps it open.
            let wait_until = if st.decoder.is_finished() {
                st.deadline.min(Instant::now() + END_GRACE)
            } else {
                st.deadline
            };
            let next = tokio::time::timeout_at(wait_until.into(), st.body.next()).await;
            let result = match next {
                Ok(Some(Ok(chunk))) => st.decoder.feed(&chunk, &mut st.scratch),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => {
                    st.finished = true;
                    st.body_consumed();
                    st.decoder.finish(&mut st.scratch)
                }
                Err(_) if st.decoder.is_finished() => {
                    st.finished = true;
                    st.body_consumed();
                    st.decoder.finish(&mut st.scratch)
                }
                Err(_) => Err(BackendError::timeout(
                    "Ollama's answer exceeded the total timeout",
                )),
            };
            // Events decoded before an error go out first; the error ends the stream.
            st.pending.extend(st.scratch.drain(..).map(Ok));
            if let Err(e) = result {
                st.finished = true;
                st.pending.push_back(Err(e));
            }
        }
    }))
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
