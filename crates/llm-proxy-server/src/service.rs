//! What a listener serves: the router, and in front of it the model calls on their exact
//! paths (`POST /v1/chat/completions`, `/v1/responses`, `/v1/messages`, Gemini's
//! `/v1beta/models/{model}:{method}`, and their aliases) handed straight to their handlers.
//!
//! Through the router, a model call paid for axum's routing and its middleware layer on every
//! request: the path lookup, a boxed clone of the route's service per layer, a boxed future
//! per layer, the `Next` hand-off; 8–9k instructions of the ~130k a request costs the serving
//! thread (`scripts/bench-callgrind --workers`). The direct path runs the same edge
//! ([`crate::edge::admit`] and [`crate::edge::settle`]: the early 413, the client-key check,
//! the envelope for non-JSON errors) and the same handler; everything else (other methods,
//! other paths, `GET /v1/responses` upgrades) goes through the router as before. With the wire
//! capture on, the capture layer wraps the router, so every request takes the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::response::Response;
use http::Method;
use tower::ServiceExt;

use crate::edge::{self, Edge};
use crate::frontend::{self, Inbound};

/// A model call served without the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direct {
    OpenAiChat,
    Responses,
    Anthropic,
    /// `{model}:{method}` after `/v1beta/models/` or `/v1/models/`.
    Gemini,
}

/// The main listener's direct paths (each also routed by [`crate::app`], to the same handler).
pub(crate) fn main_paths(path: &str) -> Option<Direct> {
    match path {
        "/v1/chat/completions" | "/chat/completions" => Some(Direct::OpenAiChat),
        "/v1/responses" | "/responses" => Some(Direct::Responses),
        "/v1/messages" | "/anthropic/v1/messages" => Some(Direct::Anthropic),
        _ => gemini_action(path).map(|_| Direct::Gemini),
    }
}

/// What the router's `{*rest}` of `/v1beta/models/{*rest}` (and `/v1/models/{*rest}`) would
/// hold: the rest of the path, when it is not empty and has nothing percent-encoded (the
/// router decodes it, and refuses what is not UTF-8; such paths go through the router).
fn gemini_action(path: &str) -> Option<&str> {
    path.strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))
        .filter(|rest| !rest.is_empty() && !rest.contains('%'))
}

/// The dedicated Anthropic listener's direct path (see [`crate::anthropic_app`]).
pub(crate) fn anthropic_paths(path: &str) -> Option<Direct> {
    (path == "/v1/messages").then_some(Direct::Anthropic)
}

/// One listener's service: the router, and the direct paths in front of it.
#[derive(Clone)]
pub struct App {
    router: Router,
    direct: Option<Arc<DirectPaths>>,
}

struct DirectPaths {
    edge: Edge,
    paths: fn(&str) -> Option<Direct>,
}

impl App {
    /// Everything through `router`.
    pub fn routed(router: Router) -> Self {
        Self {
            router,
            direct: None,
        }
    }

    /// `router`, with the `POST`s that `paths` names handed to their handlers behind `edge`.
    pub(crate) fn with_direct(
        router: Router,
        edge: Edge,
        paths: fn(&str) -> Option<Direct>,
    ) -> Self {
        Self {
            router,
            direct: Some(Arc::new(DirectPaths { edge, paths })),
        }
    }

    /// Whether a `POST` to `path` is served without the router.
    pub fn serves_directly(&self, path: &str) -> bool {
        self.direct
            .as_ref()
            .is_some_and(|d| (d.paths)(path).is_some())
    }

    /// The router alone, without the direct paths.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Answers one request from `peer` (the router's handlers see it as
    /// `ConnectInfo<SocketAddr>`; a direct call needs no extension map for it).
    pub async fn handle(self, mut req: Request, peer: Option<SocketAddr>) -> Response {
        if let Some(direct) = &self.direct
            && req.method() == Method::POST
            && let Some(which) = (direct.paths)(req.uri().path())
        {
            let format = match edge::admit(&direct.edge, &mut req, peer) {
                Ok(format) => format,
                Err(refused) => return *refused,
            };
            let state = State(direct.edge.state.clone());
            let response = match which {
                Direct::OpenAiChat => {
                    frontend::openai_chat::chat_completions(state, Inbound::from(req)).await
                }
                Direct::Responses => frontend::responses::create(state, Inbound::from(req)).await,
                Direct::Anthropic => frontend::anthropic::messages(state, Inbound::from(req)).await,
                Direct::Gemini => {
                    let rest = gemini_action(req.uri().path())
                        .unwrap_or_default()
                        .to_owned();
                    let query = req.uri().query().map(str::to_owned);
                    let (rest, query) = (Path(rest), RawQuery(query));
                    frontend::gemini::model_action(state, rest, query, Inbound::from(req)).await
                }
            };
            return edge::settle(response, format).await;
        }
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        match self.router.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl tower::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let app = self.clone();
        // A peer given by whoever built the request (tests) stays where it is.
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Box::pin(async move { Ok(app.handle(req, peer).await) })
    }
}
