//! `llm-proxy capture`: reads a capture file, JSON lines or CBOR V2 (told apart by the CBOR
//! header's magic; CBOR entries are turned into the JSON-lines records first). `show` prints a
//! request's four boundaries, `export-har` writes HAR 1.2 (browser dev tools open it),
//! `replay` re-sends a captured client request to a proxy and diffs the answer against the
//! captured one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Subcommand;
use llm_proxy_server::capture::cbor;
use serde_json::{Map, Value, json};

/// `llm-proxy capture <command>`.
#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Print the boundaries of the captured requests (or of one), bodies decoded as JSON
    /// where they are JSON, streamed pieces listed with their times.
    Show {
        /// The capture file (JSON lines or CBOR V2).
        file: PathBuf,
        /// Only this request (`x-request-id`).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Write the captured exchanges as HAR 1.2: each client exchange, and each upstream
    /// exchange it caused, as an entry.
    ExportHar {
        /// The capture file (JSON lines or CBOR V2).
        file: PathBuf,
        /// Only this request.
        #[arg(long)]
        request_id: Option<String>,
        /// Where to write the HAR.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Re-send a captured client request to a proxy and diff its answer against the captured
    /// one (status and body; ids and timestamps ignored). Exit status 1 when they differ.
    Replay {
        /// The capture file (JSON lines or CBOR V2).
        file: PathBuf,
        /// The request to re-send.
        #[arg(long)]
        request_id: String,
        /// Base URL of the proxy (`http://127.0.0.1:8000`).
        #[arg(long)]
        to: String,
        /// Client key to send (captured keys are masked): `Authorization: Bearer KEY`.
        #[arg(long)]
        api_key: Option<String>,
    },
}

/// Runs a capture command; `out` prints to stdout.
pub fn run(command: &CaptureCommand, out: &dyn Fn(&str)) -> Result<ExitCode, String> {
    match command {
        CaptureCommand::Show { file, request_id } => {
            let requests = load(file, request_id.as_deref())?;
            out(&show(&requests));
            Ok(ExitCode::SUCCESS)
        }
        CaptureCommand::ExportHar {
            file,
            request_id,
            output,
        } => {
            let requests = load(file, request_id.as_deref())?;
            let har = har(&requests);
            let text = serde_json::to_string_pretty(&har).map_err(|e| e.to_string())?;
            std::fs::write(output, text)
                .map_err(|e| format!("cannot write '{}': {e}", output.display()))?;
            out(&format!(
                "wrote {} entries to {}",
                har["log"]["entries"].as_array().map_or(0, Vec::len),
                output.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        CaptureCommand::Replay {
            file,
            request_id,
            to,
            api_key,
        } => {
            let requests = load(file, Some(request_id))?;
            let request = requests
                .first()
                .ok_or_else(|| format!("no request {request_id} in {}", file.display()))?;
            replay(request, to, api_key.as_deref(), out)
        }
    }
}

/// One request's records, in boundary order.
struct Captured {
    id: String,
    records: Vec<Value>,
}

impl Captured {
    fn first(&self, direction: &str) -> Option<&Value> {
        self.records.iter().find(|r| r["direction"] == direction)
    }

    /// Upstream exchanges: each `outbound_request` with the `inbound_response` after it.
    fn upstream(&self) -> Vec<(&Value, Option<&Value>)> {
        let mut pairs: Vec<(&Value, Option<&Value>)> = Vec::new();
        for r in &self.records {
            if r["direction"] == "outbound_request" {
                pairs.push((r, None));
            } else if r["direction"] == "inbound_response"
                && let Some(last) = pairs.last_mut()
                && last.1.is_none()
            {
                last.1 = Some(r);
            }
        }
        pairs
    }
}

fn rank(direction: &str) -> u8 {
    match direction {
        "inbound_request" => 0,
        "outbound_request" | "inbound_response" => 1,
        "outbound_response" => 2,
        _ => 3,
    }
}

fn ts(record: &Value) -> f64 {
    record["timestamp_unix"].as_f64().unwrap_or(0.0)
}

/// The capture's requests (or the one named), in the order they first appear.
fn load(file: &Path, only: Option<&str>) -> Result<Vec<Captured>, String> {
    let bytes =
        std::fs::read(file).map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
    let all: Vec<Value> = if cbor::is_cbor_capture(&bytes) {
        let capture = cbor::read_capture(&bytes)
            .map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
        cbor::records(&capture)
    } else {
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    };
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in all {
        let Some(id) = record["request_id"].as_str().map(str::to_owned) else {
            continue;
        };
        if only.is_some_and(|o| o != id) {
            continue;
        }
        if !by_id.contains_key(&id) {
            order.push(id.clone());
        }
        by_id.entry(id).or_default().push(record);
    }
    if let Some(id) = only
        && order.is_empty()
    {
        return Err(format!("no request {id} in {}", file.display()));
    }
    Ok(order
        .into_iter()
        .map(|id| {
            let mut records = by_id.remove(&id).unwrap_or_default();
            records.sort_by(|a, b| {
                let (ra, rb) = (
                    rank(a["direction"].as_str().unwrap_or_default()),
                    rank(b["direction"].as_str().unwrap_or_default()),
                );
                ra.cmp(&rb).then(ts(a).total_cmp(&ts(b)))
            });
            Captured { id, records }
        })
        .collect())
}

/// A record's body bytes (`payload` text or `payload_base64`).
fn body(record: &Value) -> Vec<u8> {
    if let Some(text) = record["payload"].as_str() {
        return text.as_bytes().to_vec();
    }
    record["payload_base64"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

fn pretty_body(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// The human-readable listing.
fn show(requests: &[Captured]) -> String {
    let mut out = String::new();
    for request in requests {
        let session = request
            .records
            .iter()
            .find_map(|r| r["session_id"].as_str())
            .unwrap_or("-");
        let _ = writeln!(out, "request {}  session {session}", request.id);
        for r in &request.records {
            let direction = r["direction"].as_str().unwrap_or("?");
            let mut head = format!(
                "── {direction}  {}",
                r["timestamp_iso"].as_str().unwrap_or("")
            );
            for key in ["method", "url"] {
                if let Some(v) = r[key].as_str() {
                    let _ = write!(head, "  {v}");
                }
            }
            if let Some(s) = r["status"].as_u64() {
                let _ = write!(head, "  status {s}");
            }
            for (key, label) in [
                ("backend", "backend"),
                ("model", "model"),
                ("key_name", "key"),
            ] {
                if let Some(v) = r[key].as_str().filter(|v| !v.is_empty()) {
                    let _ = write!(head, "  {label}={v}");
                }
            }
            let _ = writeln!(out, "{head}");
            if let Some(headers) = r["headers"].as_object() {
                for (name, value) in headers {
                    let _ = writeln!(out, "   {name}: {}", value.as_str().unwrap_or(""));
                }
            }
            let bytes = body(r);
            if r["truncated"] == true {
                let _ = writeln!(
                    out,
                    "   (body cut: {} of {} bytes kept)",
                    bytes.len(),
                    r["content_length"]
                );
            }
            match r["chunks"].as_array() {
                Some(chunks) if !chunks.is_empty() => {
                    let first = chunks[0]["timestamp_unix"].as_f64().unwrap_or(0.0);
                    let _ = writeln!(out, "   {} chunks:", chunks.len());
                    for (i, c) in chunks.iter().enumerate() {
                        let offset = usize::try_from(c["offset"].as_u64().unwrap_or(0))
                            .unwrap_or(usize::MAX);
                        let length =
                            usize::try_from(c["length"].as_u64().unwrap_or(0)).unwrap_or(0);
                        let piece = bytes
                            .get(offset..offset.saturating_add(length))
                            .unwrap_or_default();
                        let at = c["timestamp_unix"].as_f64().unwrap_or(0.0) - first;
                        let _ = writeln!(
                            out,
                            "   [{i}] +{at:.3}s {:?}",
                            String::from_utf8_lossy(piece)
                        );
                    }
                }
                _ if !bytes.is_empty() => out.push_str(&indent(&pretty_body(&bytes), "   ")),
                _ => {}
            }
        }
        out.push('\n');
    }
    out
}

fn har_headers(record: &Value) -> Vec<Value> {
    record["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(n, v)| json!({"name": n, "value": v.as_str().unwrap_or("")}))
                .collect()
        })
        .unwrap_or_default()
}

fn header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"][name].as_str()
}

fn query_string(url: &str) -> Vec<Value> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    json!({"name": n, "value": v})
                })
                .collect()
        })
        .unwrap_or_default()
}

fn har_request(record: &Value, url: String) -> Value {
    let bytes = body(record);
    let mut request = json!({
        "method": record["method"].as_str().unwrap_or("GET"),
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": har_headers(record),
        "queryString": query_string(record["url"].as_str().unwrap_or("")),
        "headersSize": -1,
        "bodySize": bytes.len(),
    });
    if !bytes.is_empty() {
        request["postData"] = json!({
            "mimeType": header(record, "content-type").unwrap_or("application/octet-stream"),
            "params": [],
            "text": String::from_utf8_lossy(&bytes),
        });
    }
    request
}

fn har_response(record: Option<&Value>) -> Value {
    let Some(record) = record else {
        return json!({
            "status": 0, "statusText": "", "httpVersion": "HTTP/1.1", "cookies": [],
            "headers": [], "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
            "_error": "no response captured",
        });
    };
    let bytes = body(record);
    let status = record["status"].as_u64().unwrap_or(0);
    let reason = u16::try_from(status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut content = Map::new();
    content.insert("size".into(), bytes.len().into());
    content.insert(
        "mimeType".into(),
        header(record, "content-type")
            .unwrap_or("application/octet-stream")
            .into(),
    );
    content.insert("text".into(), String::from_utf8_lossy(&bytes).into());
    let mut response = json!({
        "status": status,
        "statusText": reason,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": har_headers(record),
        "content": content,
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": bytes.len(),
    });
    if let Some(chunks) = record["chunks"].as_array() {
        response["_chunks"] = Value::Array(chunks.clone());
    }
    response
}

/// Timings (ms) of an exchange that started at `start`, ended at `end`, and whose first
/// response piece came at `first` (when streamed).
fn timings(start: f64, first: Option<f64>, end: f64) -> (f64, Value) {
    let end = end.max(start);
    let first = first.unwrap_or(end).clamp(start, end);
    let wait = (first - start) * 1000.0;
    let receive = (end - first) * 1000.0;
    (
        wait + receive,
        json!({"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0, "wait": wait, "receive": receive}),
    )
}

fn entry(request: &Value, url: String, response: Option<&Value>, id: &str, side: &str) -> Value {
    let start = ts(request);
    let end = response.map_or(start, ts);
    let first = response
        .and_then(|r| r["chunks"].as_array())
        .and_then(|c| c.first())
        .and_then(|c| c["timestamp_unix"].as_f64());
    let (time, timings) = timings(start, first, end);
    json!({
        "startedDateTime": request["timestamp_iso"].as_str().unwrap_or("1970-01-01T00:00:00.000Z"),
        "time": time,
        "request": har_request(request, url),
        "response": har_response(response),
        "cache": {},
        "timings": timings,
        "_requestId": id,
        "_boundary": side,
        "_sessionId": request["session_id"].clone(),
        "_backend": response.map_or(Value::Null, |r| r["backend"].clone()),
    })
}

/// The HAR 1.2 document.
fn har(requests: &[Captured]) -> Value {
    let mut entries = Vec::new();
    for request in requests {
        if let Some(inbound) = request.first("inbound_request") {
            let host = header(inbound, "host").unwrap_or("llm-proxy");
            let url = format!("http://{host}{}", inbound["url"].as_str().unwrap_or("/"));
            entries.push(entry(
                inbound,
                url,
                request.first("outbound_response"),
                &request.id,
                "client",
            ));
        }
        for (outbound, answer) in request.upstream() {
            let url = outbound["url"].as_str().unwrap_or("").to_owned();
            entries.push(entry(outbound, url, answer, &request.id, "upstream"));
        }
    }
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "llm-proxy", "version": env!("CARGO_PKG_VERSION")},
            "entries": entries,
        }
    })
}

/// Headers not re-sent: connection-level ones and credentials (masked in the capture).
const NOT_REPLAYED: [&str; 10] = [
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "accept-encoding",
];

fn replay(
    request: &Captured,
    to: &str,
    api_key: Option<&str>,
    out: &dyn Fn(&str),
) -> Result<ExitCode, String> {
    let inbound = request
        .first("inbound_request")
        .ok_or_else(|| format!("request {} has no inbound_request", request.id))?;
    let captured = request
        .first("outbound_response")
        .ok_or_else(|| format!("request {} has no outbound_response", request.id))?;
    let method =
        reqwest::Method::from_bytes(inbound["method"].as_str().unwrap_or("POST").as_bytes())
            .map_err(|e| format!("bad captured method: {e}"))?;
    let url = format!(
        "{}{}",
        to.trim_end_matches('/'),
        inbound["url"].as_str().unwrap_or("/")
    );
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(h) = inbound["headers"].as_object() {
        for (name, value) in h {
            if NOT_REPLAYED.contains(&name.as_str()) {
                continue;
            }
            if let (Ok(n), Some(Ok(v))) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(reqwest::header::HeaderValue::from_str),
            ) {
                headers.insert(n, v);
            }
        }
    }
    if let Some(key) = api_key
        && let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
    {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let (status, answer) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, &url)
            .headers(headers)
            .body(body(inbound))
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer from {url}: {e}"))?;
        Ok::<_, String>((status, bytes.to_vec()))
    })?;
    let was_status = captured["status"].as_u64().unwrap_or(0);
    let before = normalized(&body(captured));
    let after = normalized(&answer);
    let mut report = String::new();
    if u64::from(status) != was_status {
        let _ = writeln!(report, "status: captured {was_status}, now {status}");
    }
    let diff = line_diff(&before, &after);
    if !diff.is_empty() {
        let _ = writeln!(
            report,
            "--- captured outbound_response\n+++ replayed answer"
        );
        report.push_str(&diff);
    }
    if report.is_empty() {
        out(&format!(
            "replayed {} to {url}: same answer (status {status})",
            request.id
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        out(&report);
        Ok(ExitCode::from(1))
    }
}

/// Fields that differ between two runs of the same request (ids, clocks).
const VOLATILE: [&str; 8] = [
    "id",
    "created",
    "created_at",
    "completed_at",
    "system_fingerprint",
    "responseId",
    "response_id",
    "request_id",
];

fn scrub_volatile(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if VOLATILE.contains(&key.as_str()) && !v.is_object() && !v.is_array() {
                    *v = Value::String("<volatile>".into());
                } else {
                    scrub_volatile(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_volatile),
        _ => {}
    }
}

/// A body as comparable lines: JSON pretty-printed, SSE `data:` payloads as compact JSON, with
/// volatile fields blanked.
fn normalized(bytes: &[u8]) -> Vec<String> {
    if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
        scrub_volatile(&mut v);
        return serde_json::to_string_pretty(&v)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
    }
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(':'))
        .map(|line| {
            let data = line.strip_prefix("data:").map(str::trim_start);
            match data.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
                Some(mut v) => {
                    scrub_volatile(&mut v);
                    format!("data: {v}")
                }
                None => line.to_owned(),
            }
        })
        .collect()
}

/// A unified-style listing of the lines that differ (longest common subsequence).
fn line_diff(a: &[String], b: &[String]) -> String {
    if a == b {
        return String::new();
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+{}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "-{}", a[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_fields_do_not_count_as_differences() {
        let a = normalized(br#"{"id":"chatcmpl-1","created":1,"choices":[{"text":"hi"}]}"#);
        let b = normalized(br#"{"id":"chatcmpl-2","created":2,"choices":[{"text":"hi"}]}"#);
        assert_eq!(line_diff(&a, &b), "");
        let c = normalized(br#"{"id":"chatcmpl-2","created":2,"choices":[{"text":"ho"}]}"#);
        let diff = line_diff(&a, &c);
        assert!(diff.contains("-") && diff.contains("\"ho\""), "{diff}");
        let s1 = normalized(b"data: {\"id\":\"a\",\"x\":1}\n\ndata: [DONE]\n\n");
        let s2 = normalized(b"data: {\"id\":\"b\",\"x\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n");
        assert_eq!(line_diff(&s1, &s2), "");
    }

    #[test]
    fn timings_are_never_negative() {
        let (time, t) = timings(10.0, Some(9.0), 8.0);
        assert!(time >= 0.0);
        assert!(t["wait"].as_f64().unwrap() >= 0.0 && t["receive"].as_f64().unwrap() >= 0.0);
    }
}
