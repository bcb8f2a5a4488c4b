//! The CBOR V2 capture format (the Python project's `cbor_capture_dir` files): the encoder the
//! capture file's writer thread uses (a header item per file, then per boundary crossing an
//! entry holding the synthesized raw HTTP — start line, headers, body — and, for a streamed
//! body, one `frame` entry per piece with its own time), masked like the JSON lines and then
//! zlib-compressed when that makes an entry smaller; and the reader `llm-proxy capture` uses,
//! which turns entries back into the JSON-lines record shape.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ciborium::Value as Cbor;
use llm_proxy_api::http::{CaptureDirection, CaptureRecord};
use llm_proxy_api::scrub::Scrubber;
use serde_json::{Map, Value};

use super::jsonl::{CaptureFileOptions, CaptureFileSink, Format, masked_chunks, timestamps};

/// The header's `magic`.
pub const MAGIC: &str = "LLMPROXY-CAPTURE-V2";
/// The header's `version`.
pub const VERSION: u64 = 2;
/// Entries whose data is longer than this are zlib-compressed when that makes them smaller.
pub const COMPRESS_OVER: usize = 128;
/// `logging.cbor_capture_flush_interval` by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Largest decompressed entry the reader accepts (a capture keeps bodies up to 4 MiB).
const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;
/// Exchanges whose request time is remembered for latency, at most.
const MAX_OPEN_EXCHANGES: usize = 4096;

/// The `dir` code of a boundary: 0 client→proxy, 1 proxy→client, 2 proxy→backend,
/// 3 backend→proxy.
pub fn direction_code(direction: CaptureDirection) -> u8 {
    match direction {
        CaptureDirection::InboundRequest => 0,
        CaptureDirection::OutboundResponse => 1,
        CaptureDirection::OutboundRequest => 2,
        CaptureDirection::InboundResponse => 3,
    }
}

/// The JSON-lines `direction` of a `dir` code.
pub fn direction_label(code: u64) -> Option<&'static str> {
    Some(match code {
        0 => "inbound_request",
        1 => "outbound_response",
        2 => "outbound_request",
        3 => "inbound_response",
        _ => return None,
    })
}

/// Opens `<dir>/<session>.cbor` (`session`: random hex when `None`), creating the directory,
/// and starts the writer. `metadata` goes into each file's header (`config_file`, ...).
pub fn open_cbor_capture(
    dir: &Path,
    session: Option<&str>,
    scrubber: Scrubber,
    options: &CaptureFileOptions,
    metadata: BTreeMap<String, String>,
) -> std::io::Result<Arc<CaptureFileSink>> {
    let session = match session {
        Some(s) => {
            if s.is_empty()
                || s.starts_with('.')
                || s.chars()
                    .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control())
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("the capture session '{s}' is not a file name"),
                ));
            }
            s.to_owned()
        }
        None => format!("{:016x}", fastrand::u64(..)),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let path = dir.join(format!("{session}.cbor"));
    let encoder = CborEncoder::new(session, metadata);
    CaptureFileSink::start(
        &path,
        scrubber,
        options,
        Format::Cbor(Box::new(encoder)),
        None,
    )
}

/// Turns records into CBOR V2 items; lives on the writer thread.
pub struct CborEncoder {
    session_id: String,
    metadata: BTreeMap<String, String>,
    /// The next entry's `seq` (one sequence for the process, across rotations).
    seq: u64,
    /// When the request of an open exchange crossed, by (request id, request `dir`).
    started: HashMap<(String, u8), f64>,
}

impl std::fmt::Debug for CborEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CborEncoder")
            .field("session_id", &self.session_id)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

fn int(n: u64) -> Cbor {
    Cbor::Integer(n.into())
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Milliseconds between two Unix times, to the microsecond, never negative.
fn millis(from: f64, to: f64) -> Cbor {
    Cbor::Float((((to - from) * 1000.0).max(0.0) * 1000.0).round() / 1000.0)
}

fn to_bytes(item: &Cbor, out: &mut Vec<u8>) -> Result<(), String> {
    ciborium::ser::into_writer(item, out).map_err(|e| format!("CBOR encoding failed: {e}"))
}

/// zlib of `data` when it is longer than [`COMPRESS_OVER`] and compressing makes it smaller.
fn compressed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() <= COMPRESS_OVER {
        return None;
    }
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::default(),
    );
    z.write_all(data).ok()?;
    let out = z.finish().ok()?;
    (out.len() < data.len()).then_some(out)
}

fn entry(ts: f64, dir: u8, seq: u64, data: &[u8], meta: Vec<(Cbor, Cbor)>) -> Cbor {
    let mut fields = vec![
        (text("ts"), Cbor::Float(ts)),
        (text("dir"), int(u64::from(dir))),
        (text("seq"), int(seq)),
    ];
    match compressed(data) {
        Some(z) => {
            fields.push((text("data"), Cbor::Bytes(z)));
            fields.push((text("enc"), text("zlib")));
        }
        None => fields.push((text("data"), Cbor::Bytes(data.to_vec()))),
    }
    if !meta.is_empty() {
        fields.push((text("meta"), Cbor::Map(meta)));
    }
    Cbor::Map(fields)
}

/// The request-line target of a URL: its path and query (`/` when it has no path).
fn request_target(url: &str) -> String {
    let Some(after_scheme) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[after_scheme..];
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    }
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

impl CborEncoder {
    pub(crate) fn new(session_id: String, metadata: BTreeMap<String, String>) -> Self {
        Self {
            session_id,
            metadata,
            seq: 0,
            started: HashMap::new(),
        }
    }

    /// The header item of a file created at `created`.
    pub(crate) fn header_bytes(&self, created: SystemTime) -> Result<Vec<u8>, String> {
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        let header = Cbor::Map(vec![
            (text("magic"), text(MAGIC)),
            (text("version"), int(VERSION)),
            (text("created_at"), Cbor::Float(unix(created))),
            (text("session_id"), text(&self.session_id)),
            (text("metadata"), Cbor::Map(metadata)),
        ]);
        let mut out = Vec::with_capacity(128);
        to_bytes(&header, &mut out)?;
        Ok(out)
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    /// The entries of one record, masked (the process's `Scrubber`) before compression: a
    /// request or a whole response as one entry; a streamed response as its head (status
    /// line and headers) followed by one `frame` entry per piece.
    pub(crate) fn encode(
        &mut self,
        record: &CaptureRecord,
        masker: &Scrubber,
    ) -> Result<Vec<u8>, String> {
        let dir = direction_code(record.direction);
        let is_request = matches!(dir, 0 | 2);
        let end = unix(record.timestamp);
        let url = record.url.as_deref().map(|u| masker.scrub(u).into_owned());
        // The identity every entry of the record carries.
        let mut identity = vec![(text("rid"), text(&record.request_id))];
        if let Some(sid) = &record.session_id {
            identity.push((text("sid"), text(sid)));
        }
        if !record.backend.is_empty() {
            identity.push((text("be"), text(&record.backend)));
        }
        if !record.model.is_empty() {
            identity.push((text("mod"), text(&record.model)));
        }
        identity.push((text("transport"), text("http")));

        let mut head = String::with_capacity(256);
        let mut meta = identity.clone();
        if let Some(key) = &record.key_name {
            meta.push((text("key"), text(key)));
        }
        let status = record.status.unwrap_or(0);
        if is_request {
            let method = record.method.as_deref().unwrap_or("GET");
            let _ = write!(
                head,
                "{method} {} HTTP/1.1\r\n",
                url.as_deref()
                    .map_or_else(|| "/".to_owned(), request_target)
            );
            meta.push((text("event"), text("request")));
            meta.push((text("http_method"), text(method)));
            if let Some(url) = &url {
                meta.push((text("url"), text(url)));
            }
        } else {
            let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason(status));
            meta.push((text("event"), text("response")));
            meta.push((text("http_status"), int(u64::from(status))));
            meta.push((text("sc"), int(u64::from(status))));
            meta.push((text("http_reason"), text(reason(status))));
        }
        meta.push((text("http_version"), text("HTTP/1.1")));
        for (name, value) in &record.headers {
            let _ = write!(head, "{name}: {}\r\n", masker.scrub(value));
            if dir == 0 && name.eq_ignore_ascii_case("user-agent") {
                meta.push((text("ua"), text(&masker.scrub(value))));
            }
        }
        head.push_str("\r\n");
        meta.push((text("tb"), int(record.body_len as u64)));

        let (body, pieces) = if record.chunks.is_empty() {
            (masker.scrub_bytes(&record.body).into_owned(), Vec::new())
        } else {
            masked_chunks(&record.body, &record.chunks, masker)
        };
        let first_piece = pieces.first().map(|(at, _, _)| unix(*at));
        let key = (record.request_id.clone(), dir);
        if is_request {
            if self.started.len() >= MAX_OPEN_EXCHANGES {
                self.started.clear();
            }
            self.started.insert(key, end);
        } else if let Some(start) = self.started.remove(&(key.0, dir - 1)) {
            meta.push((text("rts"), Cbor::Float(start)));
            meta.push((text("pts"), Cbor::Float(end)));
            meta.push((text("lat"), millis(start, end)));
            if let Some(first) = first_piece {
                meta.push((text("ttfb"), millis(start, first)));
            }
        }

        let mut out = Vec::with_capacity(head.len() + body.len() / 2 + 64);
        if pieces.is_empty() {
            let mut data = head.into_bytes();
            data.extend_from_slice(&body);
            let seq = self.next_seq();
            to_bytes(&entry(end, dir, seq, &data, meta), &mut out)?;
            return Ok(out);
        }
        let last = pieces.last().map_or(end, |(at, _, _)| unix(*at));
        meta.push((text("ss"), Cbor::Bool(true)));
        meta.push((text("tc"), int(pieces.len() as u64)));
        meta.push((text("sdur"), millis(first_piece.unwrap_or(last), last)));
        let seq = self.next_seq();
        let head_at = first_piece.unwrap_or(end).min(end);
        to_bytes(&entry(head_at, dir, seq, head.as_bytes(), meta), &mut out)?;
        let count = pieces.len();
        for (i, (at, offset, len)) in pieces.into_iter().enumerate() {
            let mut meta = identity.clone();
            meta.push((text("event"), text("frame")));
            meta.push((text("ci"), int(i as u64)));
            if i + 1 == count {
                meta.push((text("se"), Cbor::Bool(true)));
                meta.push((text("tc"), int(count as u64)));
                meta.push((text("tb"), int(record.body_len as u64)));
            }
            let piece = body.get(offset..offset + len).unwrap_or_default();
            let seq = self.next_seq();
            to_bytes(&entry(unix(at), dir, seq, piece, meta), &mut out)?;
        }
        Ok(out)
    }
}

/// One entry of a CBOR capture, its data decompressed.
#[derive(Debug, Clone, PartialEq)]
pub struct CborEntry {
    /// Unix seconds.
    pub ts: f64,
    /// 0 client→proxy, 1 proxy→client, 2 proxy→backend, 3 backend→proxy.
    pub dir: u64,
    /// Order in the session.
    pub seq: u64,
    /// The bytes (decompressed when `enc` was `zlib`).
    pub data: Vec<u8>,
    /// Whether the entry was stored zlib-compressed.
    pub zlib: bool,
    /// The compact metadata (`rid`, `sid`, `be`, `event`, ...).
    pub meta: Map<String, Value>,
}

/// A CBOR capture file: its header and entries in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct CborCapture {
    /// The header map (`magic`, `version`, `created_at`, `session_id`, `metadata`).
    pub header: Map<String, Value>,
    /// The entries.
    pub entries: Vec<CborEntry>,
}

/// A CBOR value as JSON (bytes as base64, tags unwrapped, non-text keys as their JSON text).
fn json(value: Cbor) -> Value {
    match value {
        Cbor::Integer(i) => {
            let n = i128::from(i);
            u64::try_from(n)
                .map(Value::from)
                .or_else(|_| i64::try_from(n).map(Value::from))
                .unwrap_or_else(|_| Value::from(n as f64))
        }
        Cbor::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Null => Value::Null,
        Cbor::Tag(_, inner) => json(*inner),
        Cbor::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Cbor::Map(pairs) => Value::Object(json_map(pairs)),
        _ => Value::Null,
    }
}

fn json_map(pairs: Vec<(Cbor, Cbor)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let key = match k {
                Cbor::Text(s) => s,
                other => json(other).to_string(),
            };
            (key, json(v))
        })
        .collect()
}

fn field<'a>(pairs: &'a [(Cbor, Cbor)], name: &str) -> Option<&'a Cbor> {
    pairs
        .iter()
        .find(|(k, _)| matches!(k, Cbor::Text(t) if t == name))
        .map(|(_, v)| v)
}

fn number(value: Option<&Cbor>) -> Option<f64> {
    match value? {
        Cbor::Float(f) => Some(*f),
        Cbor::Integer(i) => Some(i128::from(*i) as f64),
        _ => None,
    }
}

fn unsigned(value: Option<&Cbor>) -> Option<u64> {
    match value? {
        Cbor::Integer(i) => u64::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}

/// Whether `bytes` start with a CBOR V2 capture header.
pub fn is_cbor_capture(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    matches!(
        ciborium::de::from_reader::<Cbor, _>(&mut rest),
        Ok(Cbor::Map(pairs)) if matches!(field(&pairs, "magic"), Some(Cbor::Text(m)) if m == MAGIC)
    )
}

/// Reads a CBOR V2 capture: the header, then every entry (later headers, as a file appended
/// to by another run holds, are skipped; a cut last item ends the reading).
pub fn read_capture(bytes: &[u8]) -> Result<CborCapture, String> {
    let mut rest = bytes;
    let header = match ciborium::de::from_reader::<Cbor, _>(&mut rest) {
        Ok(Cbor::Map(pairs)) if matches!(field(&pairs, "magic"), Some(Cbor::Text(m)) if m == MAGIC) => {
            json_map(pairs)
        }
        _ => return Err(format!("not a CBOR capture (no {MAGIC} header)")),
    };
    if header.get("version").and_then(Value::as_u64) != Some(VERSION) {
        return Err(format!(
            "unsupported CBOR capture version {}",
            header.get("version").unwrap_or(&Value::Null)
        ));
    }
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let Ok(item) = ciborium::de::from_reader::<Cbor, _>(&mut rest) else {
            break;
        };
        let Cbor::Map(pairs) = item else {
            continue;
        };
        if field(&pairs, "magic").is_some() {
            continue;
        }
        let (Some(ts), Some(dir)) = (number(field(&pairs, "ts")), unsigned(field(&pairs, "dir")))
        else {
            continue;
        };
        let seq = unsigned(field(&pairs, "seq")).unwrap_or(entries.len() as u64);
        let zlib = matches!(field(&pairs, "enc"), Some(Cbor::Text(e)) if e == "zlib");
        let raw = match field(&pairs, "data") {
            Some(Cbor::Bytes(b)) => b.clone(),
            Some(Cbor::Text(t)) => t.clone().into_bytes(),
            _ => Vec::new(),
        };
        let data = if zlib {
            let mut out = Vec::with_capacity(raw.len() * 3);
            flate2::read::ZlibDecoder::new(raw.as_slice())
                .take(MAX_ENTRY_BYTES)
                .read_to_end(&mut out)
                .map_err(|e| format!("entry {seq}: bad zlib data: {e}"))?;
            out
        } else {
            raw
        };
        let meta = match field(&pairs, "meta") {
            Some(Cbor::Map(m)) => json_map(m.clone()),
            _ => Map::new(),
        };
        entries.push(CborEntry {
            ts,
            dir,
            seq,
            data,
            zlib,
            meta,
        });
    }
    Ok(CborCapture { header, entries })
}

/// A raw HTTP message's start line and headers.
type Head = (String, Vec<(String, String)>);

/// Raw HTTP split into its start line, headers and body; `None` when `data` does not start
/// with a start line of the expected kind (a body alone, as other writers store it).
fn split_http(data: &[u8], request: bool) -> Option<(Head, &[u8])> {
    let end = memchr::memmem::find(data, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let looks_right = if request {
        let mut parts = start.split(' ');
        matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(m), Some(_), Some(v))
                if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) && v.starts_with("HTTP/")
        )
    } else {
        start.starts_with("HTTP/")
    };
    if !looks_right {
        return None;
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(((start.to_owned(), headers), &data[end + 4..]))
}

/// A record being rebuilt from its entries.
struct Rebuilt {
    fields: Map<String, Value>,
    body: Vec<u8>,
    total: Option<u64>,
    chunks: Option<Vec<Value>>,
}

fn meta_str(meta: &Map<String, Value>, key: &str) -> Value {
    meta.get(key)
        .and_then(Value::as_str)
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn head_record(e: &CborEntry, label: &str) -> Rebuilt {
    let request = matches!(e.dir, 0 | 2);
    let (start, headers, body) = match split_http(&e.data, request) {
        Some(((start, headers), body)) => (Some(start), headers, body.to_vec()),
        None => (None, Vec::new(), e.data.clone()),
    };
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        joined
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let word = |i: usize| {
        start
            .as_deref()
            .and_then(|s| s.split(' ').nth(i))
            .map(str::to_owned)
    };
    let mut fields = Map::new();
    let (iso, unix) =
        timestamps(UNIX_EPOCH + Duration::try_from_secs_f64(e.ts).unwrap_or_default());
    fields.insert("timestamp_iso".into(), iso.into());
    fields.insert("timestamp_unix".into(), unix.into());
    fields.insert(
        "request_id".into(),
        e.meta
            .get("rid")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .into(),
    );
    fields.insert("session_id".into(), meta_str(&e.meta, "sid"));
    fields.insert("direction".into(), label.into());
    fields.insert(
        "backend".into(),
        e.meta
            .get("be")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
    );
    fields.insert(
        "model".into(),
        e.meta
            .get("mod")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
    );
    fields.insert("key_name".into(), meta_str(&e.meta, "key"));
    if request {
        let method = e
            .meta
            .get("http_method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let url = e.meta.get("url").and_then(Value::as_str).map(str::to_owned);
        fields.insert("method".into(), method.or_else(|| word(0)).into());
        fields.insert("url".into(), url.or_else(|| word(1)).into());
        fields.insert("status".into(), Value::Null);
    } else {
        let status = e
            .meta
            .get("http_status")
            .or_else(|| e.meta.get("sc"))
            .and_then(Value::as_u64)
            .or_else(|| word(1).and_then(|w| w.parse().ok()));
        fields.insert("method".into(), Value::Null);
        fields.insert("url".into(), Value::Null);
        fields.insert("status".into(), status.into());
    }
    fields.insert(
        "content_type".into(),
        joined.get("content-type").cloned().into(),
    );
    fields.insert(
        "headers".into(),
        Value::Object(joined.into_iter().map(|(k, v)| (k, v.into())).collect()),
    );
    let streamed = e.meta.get("ss").and_then(Value::as_bool) == Some(true);
    Rebuilt {
        fields,
        body,
        total: e.meta.get("tb").and_then(Value::as_u64),
        chunks: streamed.then(Vec::new),
    }
}

/// The capture's entries as JSON-lines records (the shape `capture_file` writes), so one
/// reader serves both formats: each request or response entry starts a record, the `frame`
/// entries after a stream's head become its `chunks`.
pub fn records(capture: &CborCapture) -> Vec<Value> {
    let mut built: Vec<Rebuilt> = Vec::new();
    let mut open: HashMap<(String, u64), usize> = HashMap::new();
    for e in &capture.entries {
        let Some(label) = direction_label(e.dir) else {
            continue;
        };
        let rid = e
            .meta
            .get("rid")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        let key = (rid, e.dir);
        if e.meta.get("event").and_then(Value::as_str) == Some("frame") {
            let index = match open.get(&key) {
                Some(&i) => i,
                None => {
                    // A frame without its head: a record of its own.
                    let mut r = head_record(e, label);
                    r.body.clear();
                    r.chunks = Some(Vec::new());
                    built.push(r);
                    open.insert(key.clone(), built.len() - 1);
                    built.len() - 1
                }
            };
            let r = &mut built[index];
            let (_, unix) =
                timestamps(UNIX_EPOCH + Duration::try_from_secs_f64(e.ts).unwrap_or_default());
            r.chunks
                .get_or_insert_with(Vec::new)
                .push(serde_json::json!({
                    "timestamp_unix": unix, "offset": r.body.len(), "length": e.data.len(),
                }));
            r.body.extend_from_slice(&e.data);
            if let Some(total) = e.meta.get("tb").and_then(Value::as_u64) {
                r.total = Some(total);
            }
            if e.meta.get("se").and_then(Value::as_bool) == Some(true) {
                open.remove(&key);
            }
            continue;
        }
        let r = head_record(e, label);
        let streamed = r.chunks.is_some();
        built.push(r);
        if streamed {
            open.insert(key, built.len() - 1);
        } else {
            open.remove(&key);
        }
    }
    built
        .into_iter()
        .map(|r| {
            let mut fields = r.fields;
            let total = r.total.unwrap_or(r.body.len() as u64);
            fields.insert("content_length".into(), total.into());
            match std::str::from_utf8(&r.body) {
                Ok(t) => fields.insert("payload".into(), t.into()),
                Err(_) => fields.insert(
                    "payload_base64".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(&r.body)
                        .into(),
                ),
            };
            fields.insert("truncated".into(), ((r.body.len() as u64) < total).into());
            if let Some(chunks) = r.chunks {
                fields.insert("chunks".into(), Value::Array(chunks));
            }
            Value::Object(fields)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use llm_proxy_api::http::{CaptureChunk, CaptureSink};

    use super::*;

    const SECRET: &str = "planted-cbor-secret-77";

    fn record(direction: CaptureDirection, body: &[u8]) -> CaptureRecord {
        CaptureRecord {
            request_id: "req_cbor".into(),
            session_id: Some("s-1".into()),
            direction,
            backend: "openai".into(),
            model: "gpt-4o".into(),
            key_name: Some("backends.openai.api_key".into()),
            timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
            method: Some("POST".into()),
            url: Some(format!("https://api.test/v1/chat?key={SECRET}")),
            status: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-custom".into(), format!("Bearer {SECRET}")),
            ],
            body: Bytes::copy_from_slice(body),
            body_len: body.len(),
            chunks: Vec::new(),
        }
    }

    #[test]
    fn written_entries_read_back_as_the_records_that_made_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = BTreeMap::new();
        meta.insert("config_file".to_owned(), "proxy.yaml".to_owned());
        let options = CaptureFileOptions {
            flush_interval: Some(DEFAULT_FLUSH_INTERVAL),
            ..CaptureFileOptions::default()
        };
        let scrubber = Scrubber::new([SECRET]).unwrap();
        let sink = open_cbor_capture(dir.path(), Some("sess-a"), scrubber, &options, meta).unwrap();
        let path = dir.path().join("sess-a.cbor");
        assert_eq!(sink.path(), path);

        // A request with a large body (compressed) holding the secret.
        let big = format!(
            "{{\"messages\":[{{\"content\":\"{} {SECRET}\"}}]}}",
            "lorem ipsum ".repeat(40)
        );
        let mut request = record(CaptureDirection::OutboundRequest, big.as_bytes());
        request.timestamp = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        sink.record(request);
        // A streamed answer whose secret is cut between two pieces.
        let pieces: [&[u8]; 4] = [
            b"data: one\n\n",
            b"data: planted-cb",
            b"or-secret-77 tail\n\n",
            b"data: [DONE]\n\n",
        ];
        let mut answer = record(CaptureDirection::InboundResponse, &pieces.concat());
        answer.status = Some(200);
        answer.method = None;
        answer.url = None;
        answer.headers = vec![("content-type".into(), "text/event-stream".into())];
        answer.chunks = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| CaptureChunk {
                at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_100 + 100 * i as u64),
                len: p.len(),
            })
            .collect();
        sink.record(answer);
        // A small binary client request: stored as is.
        let mut small = record(CaptureDirection::InboundRequest, &[0xff, 0x00, 0x10]);
        small.url = Some("/v1/chat/completions".into());
        small.request_id = "req_two".into();
        sink.record(small);
        assert!(sink.flush(Duration::from_secs(5)));
        sink.close();

        let bytes = std::fs::read(&path).unwrap();
        assert!(is_cbor_capture(&bytes));
        let capture = read_capture(&bytes).unwrap();
        assert_eq!(capture.header["magic"], MAGIC);
        assert_eq!(capture.header["version"], 2);
        assert_eq!(capture.header["session_id"], "sess-a");
        assert_eq!(capture.header["metadata"]["config_file"], "proxy.yaml");
        assert!(capture.header["created_at"].as_f64().unwrap() > 1.7e9);
        let e = &capture.entries;
        // Request; head + 3 frames (the pieces the secret spans are joined); small request.
        assert_eq!(e.len(), 6, "{e:?}");
        assert_eq!(
            e.iter().map(|x| x.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            e.iter().map(|x| x.dir).collect::<Vec<_>>(),
            [2, 3, 3, 3, 3, 0]
        );
        assert!(e[0].zlib, "a large body is compressed");
        assert!(!e[5].zlib, "a small one is not");
        assert!(
            e[0].data
                .starts_with(b"POST /v1/chat?key=**** HTTP/1.1\r\n")
        );
        assert_eq!(e[0].meta["url"], "https://api.test/v1/chat?key=****");
        assert_eq!(e[0].meta["rid"], "req_cbor");
        assert_eq!(e[0].meta["sid"], "s-1");
        assert_eq!(e[0].meta["be"], "openai");
        assert_eq!(e[0].meta["mod"], "gpt-4o");
        assert_eq!(e[0].meta["key"], "backends.openai.api_key");
        assert_eq!(e[0].meta["event"], "request");
        assert_eq!(e[1].meta["event"], "response");
        assert_eq!(e[1].meta["http_status"], 200);
        assert_eq!(e[1].meta["ss"], true);
        assert_eq!(e[1].meta["lat"], 500.0);
        assert_eq!(e[1].meta["ttfb"], 100.0);
        assert_eq!(e[1].ts, 1_700_000_000.1);
        assert_eq!(
            e[1].data,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
        );
        assert_eq!(e[2].meta["event"], "frame");
        assert_eq!(e[2].data, b"data: one\n\n");
        assert_eq!(e[3].meta["ci"], 1);
        assert_eq!(e[4].meta["se"], true);
        assert_eq!(e[4].ts, 1_700_000_000.4);
        for x in e {
            let text = String::from_utf8_lossy(&x.data);
            for part in [SECRET, "planted-cb", "or-secret-77"] {
                assert!(!text.contains(part), "{part} in {text}");
            }
        }

        let records = records(&capture);
        assert_eq!(records.len(), 3);
        let r = &records[0];
        assert_eq!(r["direction"], "outbound_request");
        assert_eq!(r["method"], "POST");
        assert_eq!(r["url"], "https://api.test/v1/chat?key=****");
        let masked = r["headers"]["x-custom"].as_str().unwrap();
        assert!(
            masked.starts_with("Bearer ") && !masked.contains("secret"),
            "{masked}"
        );
        let mask = Scrubber::new([SECRET]).unwrap();
        assert_eq!(r["payload"], mask.scrub(&big).as_ref());
        assert_eq!(r["timestamp_iso"], "2023-11-14T22:13:20.000Z");
        let r = &records[1];
        assert_eq!(r["direction"], "inbound_response");
        assert_eq!(r["status"], 200);
        assert_eq!(r["content_type"], "text/event-stream");
        assert_eq!(
            r["payload"],
            mask.scrub(&format!(
                "data: one\n\ndata: {SECRET} tail\n\ndata: [DONE]\n\n"
            ))
            .as_ref()
        );
        let chunks = r["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 3);
        let joined = chunks[1]["offset"].as_u64().unwrap() + chunks[1]["length"].as_u64().unwrap();
        assert_eq!(chunks[2]["offset"].as_u64().unwrap(), joined);
        assert_eq!(chunks[1]["offset"], 11);
        assert_eq!(chunks[0]["timestamp_unix"], 1_700_000_000.1);
        let r = &records[2];
        assert_eq!(r["request_id"], "req_two");
        assert_eq!(r["url"], "/v1/chat/completions");
        assert_eq!(r["payload_base64"], "/wAQ");
    }

    #[test]
    fn rotated_files_start_with_their_own_header() {
        let dir = tempfile::tempdir().unwrap();
        let options = CaptureFileOptions {
            max_bytes: Some(600),
            max_files: 5,
            ..CaptureFileOptions::default()
        };
        let sink = open_cbor_capture(
            dir.path(),
            None,
            Scrubber::default(),
            &options,
            BTreeMap::new(),
        )
        .unwrap();
        let path = sink.path().to_owned();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name.len(), "0123456789abcdef.cbor".len(), "{name}");
        for _ in 0..4 {
            sink.record(record(CaptureDirection::InboundRequest, &[b'x'; 100]));
        }
        sink.close();
        let rotated = super::super::rotated_files(&path).unwrap();
        assert!(!rotated.is_empty());
        let mut seqs = Vec::new();
        for file in rotated.iter().chain([&path]) {
            let capture = read_capture(&std::fs::read(file).unwrap()).unwrap();
            assert_eq!(capture.header["session_id"], name.trim_end_matches(".cbor"));
            seqs.extend(capture.entries.iter().map(|e| e.seq));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        assert_eq!(seqs, [0, 1, 2, 3]);
    }

    #[test]
    fn other_files_and_bad_sessions_are_refused() {
        assert!(!is_cbor_capture(b"{\"direction\":\"inbound_request\"}\n"));
        assert!(read_capture(b"").is_err());
        let mut not_ours = Vec::new();
        to_bytes(
            &Cbor::Map(vec![(text("magic"), text("OTHER"))]),
            &mut not_ours,
        )
        .unwrap();
        assert!(read_capture(&not_ours).is_err());
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(
                open_cbor_capture(
                    dir.path(),
                    Some(bad),
                    Scrubber::default(),
                    &CaptureFileOptions::default(),
                    BTreeMap::new()
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_python_written_file_reads_too() {
        // As the Python project's tests write one: bare bodies, no meta on some entries.
        let mut file = Vec::new();
        let header = Cbor::Map(vec![
            (text("magic"), text(MAGIC)),
            (text("version"), int(2)),
            (text("session_id"), text("fixture-session")),
            (text("created_at"), Cbor::Float(1_234_567_890.0)),
            (text("metadata"), Cbor::Map(Vec::new())),
        ]);
        to_bytes(&header, &mut file).unwrap();
        let request = br#"{"model": "test-model", "messages": []}"#;
        to_bytes(&entry(1000.0, 0, 0, request, Vec::new()), &mut file).unwrap();
        let answer = b"data: {\"choices\": []}\n\n".repeat(20);
        let meta = vec![(text("rid"), text("r1")), (text("event"), text("response"))];
        to_bytes(&entry(1000.5, 3, 1, &answer, meta), &mut file).unwrap();
        // A cut last item (a crash mid-write) ends the reading.
        file.extend_from_slice(&[0xa5, 0x62]);
        let capture = read_capture(&file).unwrap();
        assert_eq!(capture.entries.len(), 2);
        assert!(capture.entries[1].zlib);
        assert_eq!(capture.entries[1].data, answer);
        let records = records(&capture);
        assert_eq!(records[0]["request_id"], "-");
        assert_eq!(records[0]["direction"], "inbound_request");
        assert_eq!(records[0]["payload"], std::str::from_utf8(request).unwrap());
        assert_eq!(records[1]["request_id"], "r1");
        assert_eq!(records[1]["payload"].as_str().unwrap().as_bytes(), answer);
        assert_eq!(records[1]["timestamp_unix"], 1000.5);
    }

    #[test]
    fn request_targets() {
        assert_eq!(request_target("https://h.test/v1/x?a=1"), "/v1/x?a=1");
        assert_eq!(request_target("https://h.test"), "/");
        assert_eq!(request_target("https://h.test?q"), "/?q");
        assert_eq!(request_target("/v1/chat"), "/v1/chat");
    }
}
