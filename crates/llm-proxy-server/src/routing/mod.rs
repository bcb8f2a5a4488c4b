//! Routing: from the model string a client sent (a selector, after aliases and the static
//! route) to a plan of legs (backend target + upstream model + URI params), with the circuit
//! breakers that keep failing instances out of the way.

pub mod breaker;
pub mod instances;
pub mod selector;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{GatewayConfig, ModelOnlyPolicy, RoutingConfig};
use llm_proxy_api::model::ChatRequest;
use regex::Regex;
use thread_local::ThreadLocal;

use crate::error::ProxyError;
use crate::token_estimate::estimate_tokens;
use breaker::Breakers;
use instances::available_backends;
pub use instances::{BackendSlot, InstanceLookup, find_instance, instances_for};
use selector::{Annotations, Leaf, Selector, SelectorKind, SelectorLimits};

/// One way to serve the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    /// Instance id (`openai.1`) or backend family (`openai`).
    pub target: String,
    /// Upstream model name.
    pub model: String,
    /// `?k=v` parameters to apply to the request.
    pub params: Vec<(String, String)>,
    /// `[k=v]` annotations.
    pub annotations: Annotations,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Single, failover, weighted or parallel.
    pub kind: SelectorKind,
    /// The legs, in selector order.
    pub legs: Vec<Leg>,
    /// A weighted leg marked `[first]`, forced for the session's first request.
    pub forced_first: Option<usize>,
    /// The weighted leg serving the instance the session used last on this route
    /// (`routing.session_affinity`), tried first while that instance is healthy.
    pub sticky_leg: Option<usize>,
    /// The plan picks among instances (weighted legs, model-only policies), so the instance
    /// that serves it is worth remembering for the session.
    pub affine: bool,
    /// The selector is the client's own model string (no static route, alias or composite
    /// default took over), so its `ttft_timeout`s are the client's choice, not the operator's.
    pub client_written: bool,
}

/// The selector size limits configured under `routing.*`.
pub fn selector_limits(routing: &RoutingConfig) -> SelectorLimits {
    SelectorLimits {
        max_race_legs: routing.max_race_legs,
        max_selector_leaves: routing.max_selector_leaves,
        ..SelectorLimits::default()
    }
}

/// Sessions remembered for `[first]` (oldest forgotten beyond this).
const MAX_REMEMBERED_SESSIONS: usize = 100_000;

/// Routing tables built once at startup.
#[derive(Debug)]
pub struct Router {
    /// `routing.*`: how a model-only leaf picks among listing instances.
    routing: RoutingConfig,
    aliases: Vec<(Regex, String)>,
    limits: SelectorLimits,
    default: Option<Selector>,
    static_route: Option<Arc<Selector>>,
    /// Selectors parsed from requests' `model` strings (and alias rewrites), by text.
    parsed: ParsedSelectors,
    breakers: std::sync::Arc<Breakers>,
    round_robin: AtomicUsize,
    /// Sessions whose first request was already routed (for `[first]`), in arrival order.
    first_seen: std::sync::Mutex<(
        std::collections::HashSet<String>,
        std::collections::VecDeque<String>,
    )>,
}

/// Selectors a [`ParsedSelectors`] keeps at most; when full it starts over.
const MAX_PARSED_SELECTORS: usize = 256;

/// Selectors parsed from request texts, so a text seen before is not parsed again (parsing
/// allocates every leaf; clients send the same few selectors over and over). Only valid
/// selectors are kept; each map is bounded, since clients write the texts. One map per
/// serving thread: a request never touches memory another core writes (no lock, no shared
/// counter), as with the per-thread upstream pools.
#[derive(Debug, Default)]
struct ParsedSelectors(ThreadLocal<RefCell<SelectorMap>>);

type SelectorMap = std::collections::HashMap<Box<str>, Arc<Selector>, foldhash::fast::RandomState>;

impl ParsedSelectors {
    fn get_or_parse(
        &self,
        text: &str,
        limits: &SelectorLimits,
    ) -> Result<Arc<Selector>, ProxyError> {
        let map = self.0.get_or_default();
        if let Some(known) = map.borrow().get(text) {
            return Ok(known.clone());
        }
        let parsed = Arc::new(parse_selector(text, limits)?);
        let mut map = map.borrow_mut();
        if map.len() >= MAX_PARSED_SELECTORS {
            map.clear();
        }
        map.insert(text.into(), parsed.clone());
        Ok(parsed)
    }

    /// Selectors kept by the calling thread.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.get().map_or(0, |map| map.borrow().len())
    }
}

/// The longest selector text quoted back in an error message.
const QUOTED_SELECTOR_CHARS: usize = 200;

fn parse_selector(text: &str, limits: &SelectorLimits) -> Result<Selector, ProxyError> {
    selector::parse_within(text, limits).map_err(|e| {
        let quoted = match text.char_indices().nth(QUOTED_SELECTOR_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        ProxyError::invalid(
            format!("invalid selector '{quoted}': {e}"),
            Some("model"),
            Some(e.code.as_str()),
        )
    })
}

/// Converts `\1` style group references to the regex crate's `${1}`.
fn replacement_template(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    n.push(d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

impl Router {
    /// Compiles aliases and parses the configured selectors. Errors name the config path.
    pub fn new(config: &GatewayConfig) -> Result<Self, String> {
        let mut aliases = Vec::new();
        for (i, alias) in config.model_aliases.iter().enumerate() {
            let re = Regex::new(&format!("^(?:{})", alias.pattern))
                .map_err(|e| format!("model_aliases[{i}].pattern: invalid regex: {e}"))?;
            aliases.push((re, replacement_template(&alias.replacement)));
        }
        let limits = selector_limits(&config.routing);
        let parse = |path: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    selector::parse_within(s, &limits)
                        .map_err(|e| format!("{path}: invalid selector '{s}': {e}"))
                })
                .transpose()
        };
        Ok(Self {
            routing: config.routing.clone(),
            aliases,
            limits,
            default: parse("backends.default_backend", &config.backends.default_backend)?,
            static_route: parse("backends.static_route", &config.backends.static_route)?
                .map(Arc::new),
            parsed: ParsedSelectors::default(),
            round_robin: AtomicUsize::new(0),
            first_seen: std::sync::Mutex::default(),
            breakers: std::sync::Arc::new(Breakers::new(
                config.circuit_breaker.clone(),
                config.backends.instances.keys().cloned(),
            )),
        })
    }

    /// The circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The circuit breakers, to share with a background task (replicas' shared breakers).
    pub fn shared_breakers(&self) -> std::sync::Arc<Breakers> {
        self.breakers.clone()
    }

    /// Rewrites `model` with the first matching alias.
    pub fn apply_aliases(&self, model: &str) -> Option<String> {
        self.aliases.iter().find_map(|(re, template)| {
            let caps = re.captures(model)?;
            let mut out = String::new();
            caps.expand(template, &mut out);
            Some(out)
        })
    }

    /// Checks at startup that alias replacements name known backends.
    pub fn validate_aliases(
        &self,
        instances: &dyn InstanceLookup,
        config: &GatewayConfig,
    ) -> Result<(), String> {
        for (i, alias) in config.model_aliases.iter().enumerate() {
            // A replacement with group references can only be checked once expanded.
            if alias.replacement.contains('\\') {
                continue;
            }
            let sel = selector::parse_within(&alias.replacement, &self.limits)
                .map_err(|e| format!("model_aliases[{i}].replacement: {e}"))?;
            for leaf in sel.leaves().iter().filter(|l| l.backend.is_some()) {
                let name = leaf_backend_name(leaf);
                if find_instance(instances, &name).is_none() {
                    // A known plugin that is not linked is reported (with guidance) at startup.
                    if instances.unavailable_backend_message(&name).is_some() {
                        continue;
                    }
                    return Err(format!(
                        "model_aliases[{i}].replacement: unknown backend '{name}'; configured backends: {}",
                        available_backends(instances)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks a configured selector (default backend, static route) at startup: it parses and
    /// every leaf names a configured backend.
    pub fn validate_selector(
        &self,
        instances: &dyn InstanceLookup,
        text: &str,
    ) -> Result<(), String> {
        let sel = selector::parse_within(text, &self.limits)
            .map_err(|e| format!("invalid selector '{text}': {e}"))?;
        for leaf in sel.leaves() {
            let name = leaf_backend_name(leaf);
            if find_instance(instances, &name).is_none() {
                return Err(instances
                    .unavailable_backend_message(&name)
                    .unwrap_or_else(|| {
                        format!(
                            "unknown backend '{name}'; configured backends: {}",
                            available_backends(instances)
                        )
                    }));
            }
        }
        Ok(())
    }

    /// Plans `req`: static route, else aliases, then the selector; model-only leaves go to the
    /// default backend; legs too small for the request (`max_context`) are dropped. `sticky`
    /// is the instance that served the session's last request on this route: weighted picks
    /// and model-only policies keep to it while its breaker lets calls through (a warm prompt
    /// cache is worth more than balance).
    pub fn plan(
        &self,
        instances: &dyn InstanceLookup,
        req: &ChatRequest,
        session: Option<&str>,
        sticky: Option<&str>,
    ) -> Result<Plan, ProxyError> {
        let sticky = sticky
            .filter(|_| self.routing.session_affinity && session.is_some())
            .filter(|i| self.breakers.is_available(i));
        let (selector, from_client) = match &self.static_route {
            Some(sel) => (sel.clone(), false),
            None => match self.apply_aliases(&req.model) {
                Some(rewritten) => {
                    tracing::debug!(from = %req.model, to = %rewritten, "model alias applied");
                    (self.parsed.get_or_parse(&rewritten, &self.limits)?, false)
                }
                None => (self.parsed.get_or_parse(&req.model, &self.limits)?, true),
            },
        };
        let client_written =
            from_client && self.composite_default_for(instances, &selector).is_none();
        let (kind, legs) = self.legs(instances, &selector, sticky)?;
        if kind == SelectorKind::Parallel && !req.stream {
            return Err(ProxyError::invalid(
                "parallel race selectors (!) need a streaming request (stream: true)",
                Some("model"),
                Some("unsupported_construct"),
            ));
        }
        let legs = filter_by_context(legs, req)?;
        let forced_first = match (kind, session) {
            (SelectorKind::Weighted, Some(session)) => legs
                .iter()
                .position(|l| l.annotations.first)
                .filter(|_| self.first_request_of(session)),
            _ => None,
        };
        let sticky_leg = match (kind, sticky) {
            (SelectorKind::Weighted, Some(sticky)) => legs.iter().position(|l| {
                instances_for(instances, &l.target)
                    .iter()
                    .any(|s| s.instance == sticky)
            }),
            _ => None,
        };
        // Only where there can be a choice to keep: with one instance configured nothing
        // needs remembering (and no session write for each new conversation).
        let affine = self.routing.session_affinity
            && session.is_some()
            && instances.backends().len() > 1
            && (kind == SelectorKind::Weighted
                || (kind != SelectorKind::Parallel
                    && selector.leaves().iter().any(|l| l.backend.is_none())));
        Ok(Plan {
            kind,
            legs,
            forced_first,
            sticky_leg,
            affine,
            client_written,
        })
    }

    /// Whether this is the session's first request (remembering it from now on).
    fn first_request_of(&self, session: &str) -> bool {
        let Ok(mut seen) = self.first_seen.lock() else {
            return false;
        };
        let (set, order) = &mut *seen;
        if set.contains(session) {
            return false;
        }
        set.insert(session.to_owned());
        order.push_back(session.to_owned());
        if order.len() > MAX_REMEMBERED_SESSIONS
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    fn legs(
        &self,
        instances: &dyn InstanceLookup,
        selector: &Selector,
        sticky: Option<&str>,
    ) -> Result<(SelectorKind, Vec<Leg>), ProxyError> {
        if let Some(default) = self.composite_default_for(instances, selector) {
            return self.resolve_all(instances, default.kind(), default.leaves(), None, sticky);
        }
        self.resolve_all(
            instances,
            selector.kind(),
            selector.leaves(),
            self.default.as_ref(),
            sticky,
        )
    }

    /// A bare model on its own follows a composite default selector entirely.
    fn composite_default_for(
        &self,
        instances: &dyn InstanceLookup,
        selector: &Selector,
    ) -> Option<&Selector> {
        match (selector, &self.default) {
            (Selector::Single(leaf), Some(default))
                if leaf.backend.is_none()
                    && !is_backend_name(instances, &leaf.model)
                    && default.kind() != SelectorKind::Single =>
            {
                Some(default)
            }
            _ => None,
        }
    }

    fn resolve_all(
        &self,
        instances: &dyn InstanceLookup,
        kind: SelectorKind,
        leaves: &[Leaf],
        default: Option<&Selector>,
        sticky: Option<&str>,
    ) -> Result<(SelectorKind, Vec<Leg>), ProxyError> {
        let legs = leaves
            .iter()
            .map(|leaf| self.resolve_leaf(instances, leaf, default, sticky))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((kind, legs))
    }
}

fn leaf_backend_name(leaf: &Leaf) -> String {
    match &leaf.backend {
        Some(b) => b.id(),
        None => leaf.model.clone(),
    }
}

fn is_backend_name(instances: &dyn InstanceLookup, name: &str) -> bool {
    find_instance(instances, name).is_some()
}

impl Router {
    /// A model-only leaf whose model appears in the `models` list of one or more instances is
    /// served by one of them: the session's `sticky` instance when it lists the model and is
    /// available, else one chosen by `routing.model_only_preference_policy`.
    fn listing_instance(
        &self,
        instances: &dyn InstanceLookup,
        model: &str,
        sticky: Option<&str>,
    ) -> Option<String> {
        let mut listing: Vec<&BackendSlot> = instances
            .backends()
            .values()
            .filter(|s| s.backend.is_ok() && s.models.iter().any(|m| m == model))
            .filter(|s| self.breakers.is_available(&s.instance))
            .collect();
        if listing.is_empty() {
            return None;
        }
        if let Some(slot) = listing.iter().find(|s| Some(s.instance.as_str()) == sticky) {
            return Some(slot.instance.clone());
        }
        let cfg = &self.routing;
        let chosen = match cfg.model_only_preference_policy {
            ModelOnlyPolicy::RoundRobin => {
                let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
                listing[n % listing.len()]
            }
            ModelOnlyPolicy::Cost => {
                let cost = |s: &BackendSlot| {
                    configured(&cfg.backend_costs, s).unwrap_or(cfg.model_only_missing_cost)
                };
                listing.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
                listing[0]
            }
            ModelOnlyPolicy::Priority => {
                let priority = |s: &BackendSlot| {
                    configured(&cfg.backend_priorities, s)
                        .unwrap_or(cfg.model_only_missing_priority)
                };
                listing.sort_by_key(|s| std::cmp::Reverse(priority(s)));
                listing[0]
            }
        };
        Some(chosen.instance.clone())
    }

    fn resolve_leaf(
        &self,
        instances: &dyn InstanceLookup,
        leaf: &Leaf,
        default: Option<&Selector>,
        sticky: Option<&str>,
    ) -> Result<Leg, ProxyError> {
        let (target, model) = match &leaf.backend {
            Some(b) => (b.id(), leaf.model.clone()),
            None => match self.listing_instance(instances, &leaf.model, sticky) {
                Some(instance) => (instance, leaf.model.clone()),
                None => default_target(leaf, default),
            },
        };
        resolve_target(instances, leaf, target, model)
    }
}

/// A per-backend setting: by instance id, else by backend type.
fn configured<T: Copy>(
    map: &std::collections::BTreeMap<String, T>,
    slot: &BackendSlot,
) -> Option<T> {
    map.get(&slot.instance)
        .or_else(|| map.get(&slot.backend_type))
        .copied()
}

/// Where a model-only leaf goes without a listing instance: the default backend.
fn default_target(leaf: &Leaf, default: Option<&Selector>) -> (String, String) {
    match default.and_then(|d| d.leaves().first()) {
        // `default_backend: openai:gpt-4o` — its backend, the client's model.
        Some(d) if d.backend.is_some() => (leaf_backend_name(d), leaf.model.clone()),
        // `default_backend: openai` — a backend name parsed as a model-only leaf.
        Some(d) => (d.model.clone(), leaf.model.clone()),
        None => ("mock".to_owned(), leaf.model.clone()),
    }
}

fn resolve_target(
    instances: &dyn InstanceLookup,
    leaf: &Leaf,
    target: String,
    model: String,
) -> Result<Leg, ProxyError> {
    let Some(slot) = find_instance(instances, &target) else {
        let message = instances
            .unavailable_backend_message(&target)
            .unwrap_or_else(|| {
                format!(
                    "Unknown backend '{target}'. Available backends: {}",
                    available_backends(instances)
                )
            });
        return Err(ProxyError::invalid(
            message,
            Some("model"),
            Some("model_not_found"),
        ));
    };
    if !slot.models.is_empty() && !slot.models.contains(&model) {
        return Err(ProxyError::invalid(
            format!(
                "Model '{model}' is not available on backend '{}'. Available models: {}",
                slot.instance,
                slot.models.join(", ")
            ),
            Some("model"),
            Some("model_not_found"),
        ));
    }
    Ok(Leg {
        target,
        model,
        params: leaf.params.clone(),
        annotations: leaf.annotations.clone(),
    })
}

fn filter_by_context(legs: Vec<Leg>, req: &ChatRequest) -> Result<Vec<Leg>, ProxyError> {
    if legs.iter().all(|l| l.annotations.max_context.is_none()) {
        return Ok(legs);
    }
    let tokens = estimate_tokens(req);
    let kept: Vec<Leg> = legs
        .into_iter()
        .filter(|l| l.annotations.max_context.is_none_or(|max| tokens <= max))
        .collect();
    if kept.is_empty() {
        return Err(ProxyError::invalid(
            format!(
                "no route accepts a request of about {tokens} tokens (every branch has a smaller max_context)"
            ),
            Some("model"),
            Some("routing_exhausted"),
        ));
    }
    Ok(kept)
}

/// Applies `?k=v` selector parameters to the request. They override body fields; bad values
/// and unknown keys are logged and ignored.
pub fn apply_params(req: &mut ChatRequest, params: &[(String, String)]) {
    for (key, value) in params {
        let float = || value.parse::<f64>().ok().filter(|v| v.is_finite());
        let int = || value.parse::<u64>().ok();
        let applied = match key.as_str() {
            "temperature" => float()
                .filter(|t| (0.0..=2.0).contains(t))
                .map(|v| req.sampling.temperature = Some(v)),
            "top_p" => float()
                .filter(|t| (0.0..=1.0).contains(t))
                .map(|v| req.sampling.top_p = Some(v)),
            "top_k" => int().map(|v| req.sampling.top_k = Some(v)),
            "seed" => value
                .parse::<i64>()
                .ok()
                .map(|v| req.sampling.seed = Some(v)),
            "presence_penalty" => float().map(|v| req.sampling.presence_penalty = Some(v)),
            "frequency_penalty" => float().map(|v| req.sampling.frequency_penalty = Some(v)),
            "max_tokens" | "max_completion_tokens" | "max_output_tokens" => {
                int().map(|v| req.max_tokens = Some(v))
            }
            "reasoning_effort" | "reasoning" => matches!(
                value.as_str(),
                "none" | "minimal" | "low" | "medium" | "high" | "xhigh"
            )
            .then(|| {
                let r = req.reasoning.get_or_insert_with(Default::default);
                r.effort = Some(value.clone());
                r.disabled = value == "none";
            }),
            "thinking_budget" | "budget_tokens" => int().map(|v| {
                let r = req.reasoning.get_or_insert_with(Default::default);
                r.budget_tokens = Some(v);
                r.disabled = v == 0;
            }),
            _ => None,
        };
        if applied.is_none() {
            tracing::warn!(param = %key, value = %value, "ignoring selector parameter (unknown or invalid)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_text_is_parsed_once_and_only_valid_ones_are_kept() {
        let cache = ParsedSelectors::default();
        let limits = SelectorLimits::default();
        let first = cache
            .get_or_parse("openai:gpt-4o|anthropic:claude", &limits)
            .unwrap();
        let again = cache
            .get_or_parse("openai:gpt-4o|anthropic:claude", &limits)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.to_string(), "openai:gpt-4o|anthropic:claude");
        let other = cache.get_or_parse("openai:gpt-4o", &limits).unwrap();
        assert_eq!(other.kind(), SelectorKind::Single);
        assert_eq!(cache.len(), 2);
        // An invalid text is an error every time, never kept.
        for _ in 0..2 {
            let e = cache.get_or_parse("a|", &limits).unwrap_err();
            assert!(e.to_string().contains("invalid selector 'a|'"), "{e}");
        }
        assert_eq!(cache.len(), 2);
        // Another thread keeps its own.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert_eq!(cache.len(), 0);
                let there = cache.get_or_parse("openai:gpt-4o", &limits).unwrap();
                assert!(!Arc::ptr_eq(&there, &other));
                assert_eq!(cache.len(), 1);
            });
        });
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_parsed_selectors_stay_bounded() {
        let cache = ParsedSelectors::default();
        let limits = SelectorLimits::default();
        for i in 0..MAX_PARSED_SELECTORS * 3 + 1 {
            let text = format!("openai:model-{i}");
            let sel = cache.get_or_parse(&text, &limits).unwrap();
            assert_eq!(sel.to_string(), text);
            assert!(cache.len() <= MAX_PARSED_SELECTORS);
        }
        assert!(cache.len() >= 1);
    }

    #[test]
    fn alias_templates_expand_groups() {
        assert_eq!(replacement_template("openai:gpt-\\1"), "openai:gpt-${1}");
        assert_eq!(replacement_template("a$b"), "a$$b");
        let re = Regex::new("^(?:claude-(.*))").unwrap();
        let caps = re.captures("claude-sonnet-4").unwrap();
        let mut out = String::new();
        caps.expand(
            &replacement_template("anthropic:claude-\\1|openrouter:anthropic/claude-\\1"),
            &mut out,
        );
        assert_eq!(
            out,
            "anthropic:claude-sonnet-4|openrouter:anthropic/claude-sonnet-4"
        );
    }

    #[test]
    fn params_override_and_bad_values_are_ignored() {
        let mut req = ChatRequest {
            sampling: llm_proxy_api::model::Sampling {
                temperature: Some(0.1),
                ..Default::default()
            },
            ..ChatRequest::default()
        };
        apply_params(
            &mut req,
            &[
                ("temperature".into(), "0.7".into()),
                ("top_p".into(), "7".into()),
                ("reasoning_effort".into(), "high".into()),
                ("bogus".into(), "1".into()),
            ],
        );
        assert_eq!(req.sampling.temperature, Some(0.7));
        assert_eq!(req.sampling.top_p, None);
        assert_eq!(req.reasoning.unwrap().effort.as_deref(), Some("high"));
    }
}
