//! `GET /v1/diagnostics` (loopback clients only) and the report behind it: every backend type
//! with its origin, every configured instance and whether it is usable, skipped plugins with
//! their reasons, names blocked in multi-user mode, and capture health. `llm-proxy plugins`
//! prints the same report as tables ([`render_tables`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use serde_json::{Value, json};

use crate::error::{ProxyError, WireFormat};
use crate::plugins::{KNOWN_PLUGINS, Origin, Plugins};
use crate::routing::BackendSlot;
use crate::state::AppState;

/// The handler: the report for loopback clients, 403 (OpenAI envelope) for anyone else.
pub async fn diagnostics(State(state): State<AppState>, req: Request) -> Response {
    if let Some(denied) = refuse_remote(&req) {
        return denied;
    }
    Json(diagnostics_json(&state)).into_response()
}

/// `POST /v1/diagnostics/backends/{instance}/reactivate` (loopback only): closes the
/// instance's circuit breaker so traffic reaches it again.
pub async fn reactivate(
    State(state): State<AppState>,
    axum::extract::Path(instance): axum::extract::Path<String>,
    req: Request,
) -> Response {
    if let Some(denied) = refuse_remote(&req) {
        return denied;
    }
    let breakers = state.router().breakers();
    if breakers.reset(&instance) {
        tracing::info!(%instance, "backend reactivated");
        let breaker = breakers.snapshot()[&instance].clone();
        Json(json!({"instance": instance, "reactivated": true, "circuit_breaker": breaker}))
            .into_response()
    } else {
        ProxyError::NotFound(format!("backend instance '{instance}'"))
            .into_response_for(WireFormat::OpenAi)
    }
}

/// A 403 for clients that are not on the proxy's own host.
fn refuse_remote(req: &Request) -> Option<Response> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if peer.is_some_and(|addr| addr.ip().is_loopback()) {
        return None;
    }
    let error = BackendError::new(
        ErrorKind::PermissionDenied,
        ErrorSource::Config,
        "diagnostics are only served to clients on the proxy's own host (loopback)",
    )
    .with_code("forbidden");
    Some(ProxyError::Backend(error).into_response_for(WireFormat::OpenAi))
}

/// The whole report of a running proxy. Sections are top-level keys so more can be added
/// (e.g. circuit-breaker state) without touching the others.
pub fn diagnostics_json(state: &AppState) -> Value {
    let mut report = plugins_json(state.plugins());
    if let Value::Object(map) = &mut report {
        map.insert("instances".into(), instances_json(state.backends()));
        map.insert(
            "circuit_breakers".into(),
            state.router().breakers().snapshot(),
        );
        map.insert("pipeline".into(), state.pipeline().describe());
        let sink = state.http_client().sink();
        map.insert(
            "capture".into(),
            json!({
                "enabled": sink.is_some(),
                "dropped_records": sink.map_or(0, |s| s.dropped_records()),
            }),
        );
    }
    report
}

/// What discovery found: backend types with origins, skipped plugins, blocked names, known
/// plugin crates and whether they are linked, warnings.
pub fn plugins_json(plugins: &Plugins) -> Value {
    let backend_types: Vec<Value> = plugins
        .registry
        .names()
        .into_iter()
        .map(|name| {
            let origin = plugins.registry.origin(&name);
            let meta = plugins.report.metadata.get(&name);
            json!({
                "name": name,
                "origin": origin.map_or("unknown", |o| o.origin.label()),
                "plugin_name": origin.map(|o| o.plugin_name.clone()),
                "distribution": origin.map(|o| o.distribution.clone()),
                "distribution_version": origin.map(|o| o.distribution_version.clone()),
                "core_min_version": meta.map(|m| m.core_min_version.clone()),
                "core_max_version": meta.and_then(|m| m.core_max_version.clone()),
                "version_range": meta.map(|m| {
                    version_range(&m.core_min_version, m.core_max_version.as_deref())
                }),
                "requires_personal_credentials":
                    origin.is_some_and(|o| o.requires_personal_credentials),
            })
        })
        .collect();
    let skipped: Vec<Value> = plugins
        .report
        .skipped
        .iter()
        .map(|s| {
            json!({
                "entry_name": s.entry_name,
                "plugin_name": s.plugin_name,
                "distribution": s.distribution,
                "kind": s.kind.label(),
                "reason": s.reason,
            })
        })
        .collect();
    let known: Vec<Value> = KNOWN_PLUGINS
        .iter()
        .map(|p| {
            let linked = plugins
                .registry
                .origin(p.backend)
                .is_some_and(|o| o.origin == Origin::Plugin && o.distribution == p.package);
            json!({
                "backend": p.backend,
                "package": p.package,
                "cargo_feature": p.cargo_feature,
                "linked": linked,
            })
        })
        .collect();
    let mut warnings = plugins.report.warnings.clone();
    warnings.extend(plugins.hook_warnings().iter().cloned());
    json!({
        "core_version": llm_proxy_api::CORE_VERSION,
        "access_mode": plugins.mode.label(),
        "core_only": plugins.report.core_only,
        "backend_types": backend_types,
        "skipped_plugins": skipped,
        "blocked": plugins.report.blocked,
        "known_plugins": known,
        "warnings": warnings,
    })
}

/// Every configured instance: its backend type and whether it can serve, or why not.
pub fn instances_json(backends: &BTreeMap<String, BackendSlot>) -> Value {
    backends
        .values()
        .map(|slot| {
            json!({
                "instance": slot.instance,
                "backend_type": slot.backend_type,
                "available": slot.backend.is_ok(),
                "error": slot.backend.as_ref().err(),
            })
        })
        .collect()
}

fn version_range(min: &str, max: Option<&str>) -> String {
    match max {
        Some(max) => format!(">={min}, <={max}"),
        None => format!(">={min}"),
    }
}

/// The report as plain-text tables (for `llm-proxy plugins`).
pub fn render_tables(report: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "llm-proxy core {}, access mode {}",
        text(&report["core_version"]),
        text(&report["access_mode"])
    );

    let rows = list("backend_types")
        .iter()
        .map(|b| {
            let distribution = format!(
                "{} {}",
                text(&b["distribution"]),
                text(&b["distribution_version"])
            );
            vec![
                text(&b["name"]),
                text(&b["origin"]),
                text(&b["plugin_name"]),
                distribution,
                format!("core {}", text(&b["version_range"])),
            ]
        })
        .collect();
    section(
        &mut out,
        "Backend types",
        &["NAME", "ORIGIN", "PLUGIN", "CRATE", "SUPPORTS"],
        rows,
    );

    if let Some(instances) = report["instances"].as_array() {
        let rows = instances
            .iter()
            .map(|i| {
                let status = if i["available"] == Value::Bool(true) {
                    "available".to_owned()
                } else {
                    format!("unavailable: {}", text(&i["error"]))
                };
                vec![text(&i["instance"]), text(&i["backend_type"]), status]
            })
            .collect();
        section(
            &mut out,
            "Configured instances",
            &["INSTANCE", "TYPE", "STATUS"],
            rows,
        );
    }

    let rows = list("skipped_plugins")
        .iter()
        .map(|s| {
            vec![
                text(&s["entry_name"]),
                text(&s["plugin_name"]),
                text(&s["distribution"]),
                text(&s["kind"]),
                text(&s["reason"]),
            ]
        })
        .collect();
    section(
        &mut out,
        "Skipped plugins",
        &["ENTRY", "PLUGIN", "CRATE", "KIND", "REASON"],
        rows,
    );

    let rows = list("known_plugins")
        .iter()
        .map(|k| {
            let linked = if k["linked"] == Value::Bool(true) {
                "linked"
            } else {
                "not linked"
            };
            vec![
                text(&k["backend"]),
                text(&k["package"]),
                text(&k["cargo_feature"]),
                linked.into(),
            ]
        })
        .collect();
    section(
        &mut out,
        "Plugin crates",
        &["BACKEND", "CRATE", "CARGO FEATURE", "STATUS"],
        rows,
    );

    let blocked: Vec<String> = list("blocked").iter().map(text).collect();
    let _ = writeln!(
        out,
        "\nBlocked in Multi User Mode: {}",
        if blocked.is_empty() {
            "none".to_owned()
        } else {
            blocked.join(", ")
        }
    );
    if report["capture"].is_object() {
        let capture = &report["capture"];
        if capture["enabled"] == Value::Bool(true) {
            let _ = writeln!(
                out,
                "Capture: on, {} records dropped",
                text(&capture["dropped_records"])
            );
        } else {
            let _ = writeln!(out, "Capture: off");
        }
    }
    let warnings = list("warnings");
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  - {}", text(w));
        }
    }
    out
}

fn section(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(headers.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use llm_proxy_api::plugin::{BackendPluginDefinition, BackendPluginEntry};
    use llm_proxy_api::{Backend, FactoryArgs, PluginCompatibility};

    use super::*;
    use crate::plugins::{AccessMode, CORE_DISTRIBUTION};

    fn fake(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
        Err(BackendError::internal("fake"))
    }

    fn core_openai() -> BackendPluginDefinition {
        BackendPluginDefinition::new(
            "openai",
            "llm-proxy-connectors",
            PluginCompatibility::new("0.1.0"),
            fake,
        )
    }

    fn bounded() -> BackendPluginDefinition {
        BackendPluginDefinition::new(
            "ollama-native",
            "llm-proxy-plugin-ollama-native",
            PluginCompatibility::new("0.1.0").up_to("0.9"),
            fake,
        )
    }

    fn too_new() -> BackendPluginDefinition {
        BackendPluginDefinition::new(
            "future",
            "future-plugin",
            PluginCompatibility::new("9.0"),
            fake,
        )
    }

    fn entries() -> Vec<BackendPluginEntry> {
        let entry = |name, provider, distribution| BackendPluginEntry {
            group: llm_proxy_api::BACKEND_PLUGIN_ENTRY_POINT_GROUP,
            name,
            provider,
            distribution,
            distribution_version: "0.1.0",
        };
        vec![
            entry(
                "openai",
                core_openai as fn() -> BackendPluginDefinition,
                CORE_DISTRIBUTION,
            ),
            entry("ollama-native", bounded, "llm-proxy-plugin-ollama-native"),
            entry("future", too_new, "future-crate"),
        ]
    }

    #[test]
    fn plugin_report_lists_origins_skips_and_known_crates() {
        let plugins = Plugins::discover(&entries(), AccessMode::SingleUser, "0.1.0", None);
        let report = plugins_json(&plugins);
        assert_eq!(report["access_mode"], "single_user");
        assert_eq!(report["core_only"], false);
        let types = report["backend_types"].as_array().unwrap();
        assert_eq!(types.len(), 2);
        assert_eq!(types[0]["name"], "ollama-native");
        assert_eq!(types[0]["origin"], "plugin");
        assert_eq!(types[0]["distribution"], "llm-proxy-plugin-ollama-native");
        assert_eq!(types[0]["version_range"], ">=0.1.0, <=0.9");
        assert_eq!(types[1]["name"], "openai");
        assert_eq!(types[1]["origin"], "core");
        assert_eq!(types[1]["version_range"], ">=0.1.0");
        let skipped = report["skipped_plugins"].as_array().unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0]["entry_name"], "future");
        assert_eq!(skipped[0]["kind"], "incompatible");
        assert_eq!(
            skipped[0]["reason"],
            "requires core>=9.0, running core is 0.1.0"
        );
        assert_eq!(report["known_plugins"][0]["linked"], true);
        assert_eq!(report["warnings"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn tables_show_every_section() {
        let plugins = Plugins::discover(&entries(), AccessMode::MultiUser, "0.1.0", None);
        let mut report = plugins_json(&plugins);
        report["instances"] = json!([
            {"instance": "openai", "backend_type": "openai", "available": true, "error": null},
            {"instance": "x", "backend_type": "nope", "available": false, "error": "unknown backend type 'nope'"},
        ]);
        report["capture"] = json!({"enabled": true, "dropped_records": 3});
        let text = render_tables(&report);
        assert!(text.contains("access mode multi_user"), "{text}");
        assert!(
            text.contains("ollama-native  plugin  llm-proxy-plugin-ollama-native"),
            "{text}"
        );
        assert!(text.contains("core >=0.1.0, <=0.9"), "{text}");
        assert!(
            text.contains("unavailable: unknown backend type 'nope'"),
            "{text}"
        );
        assert!(
            text.contains("future  future-plugin  future-crate  incompatible"),
            "{text}"
        );
        assert!(text.contains("Blocked in Multi User Mode: none"), "{text}");
        assert!(text.contains("Capture: on, 3 records dropped"), "{text}");
        assert!(
            text.contains("Warnings:\n  - Skipping backend plugin 'future-plugin'"),
            "{text}"
        );
    }
}
