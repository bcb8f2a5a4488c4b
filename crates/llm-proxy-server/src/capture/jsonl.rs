//! The capture file and its writer: `record()` only queues (bounded channel; when it is full
//! the record is dropped and counted, also in `llm_proxy_capture_dropped_total`), a background
//! thread masks secrets (the process's [`Scrubber`]), encodes the record — one JSON object per
//! line, or CBOR V2 entries ([`super::cbor`]) — and appends it, flushing whenever the queue
//! runs empty (or every flush interval), and rotates the file by size and age (renamed with a
//! timestamp suffix, the oldest rotated files beyond the retention count deleted). Files are
//! readable by their owner only (0600).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use llm_proxy_api::http::{CaptureChunk, CaptureRecord, CaptureSink};
use llm_proxy_api::scrub::Scrubber;
use serde_json::{Map, Value};

use super::cbor::CborEncoder;

/// Records that may wait for the writer before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Rotated files kept by default (`logging.capture_max_files`).
pub const DEFAULT_MAX_FILES: usize = 10;

/// How the capture file is kept: rotation and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFileOptions {
    /// Rotate once the file holds at least this many bytes (`None`: never by size).
    pub max_bytes: Option<u64>,
    /// Rotate once the file is this old (`None`: never by age).
    pub rotate_interval: Option<Duration>,
    /// Rotated files kept; older ones are deleted.
    pub max_files: usize,
    /// Records that may wait for the writer.
    pub queue_capacity: usize,
    /// Write buffered records at most this often (`None` or zero: whenever the queue runs
    /// empty).
    pub flush_interval: Option<Duration>,
}

impl Default for CaptureFileOptions {
    fn default() -> Self {
        Self {
            max_bytes: None,
            rotate_interval: None,
            max_files: DEFAULT_MAX_FILES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            flush_interval: None,
        }
    }
}

enum Message {
    Record(Box<CaptureRecord>),
    Flush(mpsc::Sender<()>),
    Close,
}

/// How records are encoded in the file.
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CBOR V2: a header item, then entry items.
    Cbor(Box<CborEncoder>),
}

/// A [`CaptureSink`] appending records to a file from a background thread: JSON lines
/// ([`JsonlCaptureSink`]'s constructors) or CBOR V2 ([`super::cbor::open_cbor_capture`]).
pub struct CaptureFileSink {
    path: PathBuf,
    sender: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The JSON-lines capture sink (the [`CaptureFileSink`] its constructors open).
pub type JsonlCaptureSink = CaptureFileSink;

impl std::fmt::Debug for CaptureFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureFileSink")
            .field("path", &self.path)
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl CaptureFileSink {
    /// Opens (appends to, or creates with mode 0600) `path` as JSON lines and starts the writer.
    /// `scrubber` masks every configured secret and key shape in every record (see
    /// [`GatewayConfig::scrubber`](crate::config::GatewayConfig::scrubber)).
    pub fn open(path: impl AsRef<Path>, scrubber: Scrubber) -> std::io::Result<Arc<Self>> {
        Self::start(
            path.as_ref(),
            scrubber,
            &CaptureFileOptions::default(),
            Format::Jsonl,
            None,
        )
    }

    /// Like [`open`](Self::open) with a chosen queue capacity.
    pub fn open_with_capacity(
        path: impl AsRef<Path>,
        scrubber: Scrubber,
        capacity: usize,
    ) -> std::io::Result<Arc<Self>> {
        let options = CaptureFileOptions {
            queue_capacity: capacity,
            ..CaptureFileOptions::default()
        };
        Self::start(path.as_ref(), scrubber, &options, Format::Jsonl, None)
    }

    /// Like [`open`](Self::open) with rotation, retention and queue settings.
    pub fn open_with_options(
        path: impl AsRef<Path>,
        scrubber: Scrubber,
        options: &CaptureFileOptions,
    ) -> std::io::Result<Arc<Self>> {
        Self::start(path.as_ref(), scrubber, options, Format::Jsonl, None)
    }

    /// `gate`: the writer waits for it before taking records (tests fill the queue with it).
    pub(crate) fn start(
        path: &Path,
        masker: Scrubber,
        options: &CaptureFileOptions,
        format: Format,
        gate: Option<Receiver<()>>,
    ) -> std::io::Result<Arc<Self>> {
        let mut file = open_private(path)?;
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size == 0
            && let Format::Cbor(encoder) = &format
        {
            // The header is written before the sink exists: a file that cannot take it fails
            // the start, not the first record.
            let header = encoder
                .header_bytes(SystemTime::now())
                .map_err(std::io::Error::other)?;
            file.write_all(&header)?;
            size = header.len() as u64;
        }
        let (sender, receiver) = mpsc::sync_channel(options.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_owned(),
            size,
            opened: SystemTime::now(),
            options: options.clone(),
            masker,
            format,
            dropped: dropped.clone(),
            written: written.clone(),
            warned: false,
            dirty: false,
            last_flush: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("capture-writer".to_owned())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                writer.run(&receiver);
            })?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            sender,
            dropped,
            written,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records lost so far (queue full, sink closed, write errors).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `limit`) until every record queued before this call is on disk.
    /// Returns whether that happened.
    pub fn flush(&self, limit: Duration) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        let (ack, acked) = mpsc::channel();
        if self.sender.send(Message::Flush(ack)).is_err() {
            return false;
        }
        acked.recv_timeout(limit).is_ok()
    }

    /// Writes what is queued, stops the writer and waits for it. Later records are dropped
    /// (and counted). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.sender.send(Message::Close);
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::warn!(path = %self.path.display(), "capture writer thread panicked");
        }
    }
}

impl CaptureSink for CaptureFileSink {
    fn record(&self, record: CaptureRecord) {
        if self.closed.load(Ordering::Acquire) {
            count_drop(&self.dropped);
            return;
        }
        match self.sender.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                count_drop(&self.dropped);
            }
        }
    }

    fn dropped_records(&self) -> u64 {
        self.dropped()
    }
}

/// One lost record: the sink's own count and the Prometheus counter.
fn count_drop(dropped: &AtomicU64) {
    dropped.fetch_add(1, Ordering::Relaxed);
    crate::metrics::record_capture_dropped();
}

/// Opens `path` for appending, created (or made) readable by its owner only: captures hold
/// prompts and answers.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    /// Bytes in the current file.
    size: u64,
    /// When the current file was opened (age rotation).
    opened: SystemTime,
    options: CaptureFileOptions,
    masker: Scrubber,
    format: Format,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    warned: bool,
    /// Bytes written since the last flush.
    dirty: bool,
    last_flush: Instant,
}

impl Writer {
    /// Takes messages until `Close` or until every sender is gone; flushes whenever the queue
    /// runs empty so a reader sees records promptly (with a flush interval: at most that
    /// often, and at the latest that long after a write).
    fn run(mut self, receiver: &Receiver<Message>) {
        let interval = self.options.flush_interval.filter(|d| !d.is_zero());
        loop {
            let first = match interval {
                Some(every) if self.dirty => {
                    match receiver.recv_timeout(every.saturating_sub(self.last_flush.elapsed())) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => {
                            self.flush();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match receiver.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record(record) => self.write(&record),
                    Message::Flush(ack) => {
                        self.flush();
                        let _ = ack.send(());
                    }
                    Message::Close => {
                        self.flush();
                        return;
                    }
                }
                next = receiver.try_recv().ok();
            }
            if interval.is_none_or(|every| self.last_flush.elapsed() >= every) {
                self.flush();
            }
        }
        self.flush();
    }

    fn write(&mut self, record: &CaptureRecord) {
        let encoded = match &mut self.format {
            Format::Jsonl => serde_json::to_vec(&record_json(record, &self.masker))
                .map(|mut line| {
                    line.push(b'\n');
                    line
                })
                .map_err(|e| e.to_string()),
            Format::Cbor(encoder) => encoder.encode(record, &self.masker),
        };
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                self.failed(&std::io::Error::other(e));
                return;
            }
        };
        if self.due_for_rotation(bytes.len() as u64) {
            self.rotate();
        }
        self.dirty = true;
        match self.out.write_all(&bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Whether the current file is full (it holds something and `next` more bytes would
    /// pass the size limit) or old enough to be rotated before the next line.
    fn due_for_rotation(&self, next: u64) -> bool {
        if self.size == 0 {
            return false;
        }
        let full = self
            .options
            .max_bytes
            .is_some_and(|max| self.size.saturating_add(next) > max);
        let old = self
            .options
            .rotate_interval
            .is_some_and(|every| self.opened.elapsed().is_ok_and(|age| age >= every));
        full || old
    }

    /// Renames the current file to `<path>.<UTC timestamp>`, starts a new one and deletes the
    /// oldest rotated files beyond `max_files`. Fail-open: on error the current file is kept.
    fn rotate(&mut self) {
        self.flush();
        let target = rotated_name(&self.path, SystemTime::now());
        if let Err(e) = std::fs::rename(&self.path, &target) {
            self.warn(&e);
            return;
        }
        match open_private(&self.path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, file);
                self.size = 0;
                self.opened = SystemTime::now();
                if let Format::Cbor(encoder) = &self.format {
                    // Every file starts with its own header: a rotated file reads alone.
                    match encoder.header_bytes(self.opened) {
                        Ok(header) => match self.out.write_all(&header) {
                            Ok(()) => self.size = header.len() as u64,
                            Err(e) => self.warn(&e),
                        },
                        Err(e) => self.warn(&std::io::Error::other(e)),
                    }
                }
            }
            Err(e) => {
                self.warn(&e);
                return;
            }
        }
        if let Err(e) = prune_rotated(&self.path, self.options.max_files) {
            self.warn(&e);
        }
    }

    fn flush(&mut self) {
        self.dirty = false;
        self.last_flush = Instant::now();
        if let Err(e) = self.out.flush() {
            self.warn(&e);
        }
    }

    fn failed(&mut self, error: &dyn std::error::Error) {
        count_drop(&self.dropped);
        self.warn(error);
    }

    /// Capture is fail-open: the first I/O problem is logged, later ones only counted.
    fn warn(&mut self, error: &dyn std::error::Error) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "writing the capture file failed (later failures are only counted): {error}"
            );
        }
    }
}

/// `<path>.<YYYYMMDDTHHMMSS.mmmZ>`, with `-N` added if that name exists already.
fn rotated_name(path: &Path, at: SystemTime) -> PathBuf {
    let (iso, _) = timestamps(at);
    let stamp: String = iso.chars().filter(|c| *c != '-' && *c != ':').collect();
    let base = format!("{}.{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// The rotated files of `path` (`<name>.<timestamp>` beside it), oldest first.
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.len() >= 16 && rest.as_bytes()[0].is_ascii_digit() && rest.contains('T')
                })
            })
        })
        .map(|e| e.path())
        .collect();
    // The suffix is a UTC timestamp: name order is age order.
    found.sort();
    Ok(found)
}

/// Deletes the oldest rotated files of `path` beyond `keep`.
fn prune_rotated(path: &Path, keep: usize) -> std::io::Result<()> {
    let rotated = rotated_files(path)?;
    let excess = rotated.len().saturating_sub(keep);
    for old in rotated.into_iter().take(excess) {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

/// Bytes either side of a chunk boundary checked for a secret crossing it.
const BOUNDARY_WINDOW: usize = 4096;

/// The masked body of a streamed record and its pieces as `(when, offset, length)` in the
/// masked bytes. Pieces are masked one by one so their offsets stay exact; where a secret
/// (or anything the scrubber masks) crosses a boundary, the pieces on both sides are joined
/// and masked together, so no part of a secret survives the cut.
pub(crate) fn masked_chunks(
    body: &[u8],
    chunks: &[CaptureChunk],
    masker: &Scrubber,
) -> (Vec<u8>, Vec<(SystemTime, usize, usize)>) {
    // Groups of raw pieces: (first piece's time, raw start, raw end).
    let mut groups: Vec<(SystemTime, usize, usize)> = Vec::with_capacity(chunks.len());
    let mut at = 0usize;
    for chunk in chunks {
        let end = at.saturating_add(chunk.len).min(body.len());
        if end <= at {
            continue;
        }
        match groups.last_mut() {
            Some(last) if crosses(body, at, masker) => last.2 = end,
            _ => groups.push((chunk.at, at, end)),
        }
        at = end;
    }
    if at < body.len() {
        match groups.last_mut() {
            Some(last) => last.2 = body.len(),
            None => groups.push((SystemTime::now(), 0, body.len())),
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut pieces = Vec::with_capacity(groups.len());
    for (when, start, end) in groups {
        let masked = masker.scrub_bytes(&body[start..end]);
        pieces.push((when, out.len(), masked.len()));
        out.extend_from_slice(&masked);
    }
    (out, pieces)
}

/// Whether masking around `boundary` differs from masking each side alone: something to be
/// masked crosses it.
fn crosses(body: &[u8], boundary: usize, masker: &Scrubber) -> bool {
    let left = &body[boundary.saturating_sub(BOUNDARY_WINDOW)..boundary];
    let right = &body[boundary..boundary.saturating_add(BOUNDARY_WINDOW).min(body.len())];
    let joined = &body[boundary - left.len()..boundary + right.len()];
    let whole = masker.scrub_bytes(joined);
    let (l, r) = (masker.scrub_bytes(left), masker.scrub_bytes(right));
    whole.len() != l.len() + r.len() || whole[..l.len()] != *l || whole[l.len()..] != *r
}

/// One capture line: identity, HTTP metadata, masked headers and the body (UTF-8 text as
/// `payload`, anything else as `payload_base64`), with every known secret masked. A body that
/// crossed as a stream also lists its pieces (`chunks`: time, offset and length in the
/// payload's bytes).
fn record_json(record: &CaptureRecord, masker: &Scrubber) -> Value {
    let (iso, unix) = timestamps(record.timestamp);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &record.headers {
        let value = masker.scrub(value).into_owned();
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let content_type = headers.get("content-type").cloned();
    let (body, chunks) = if record.chunks.is_empty() {
        (masker.scrub_bytes(&record.body), None)
    } else {
        let (body, pieces) = masked_chunks(&record.body, &record.chunks, masker);
        let list: Vec<Value> = pieces
            .into_iter()
            .map(|(when, offset, length)| {
                let (_, unix) = timestamps(when);
                serde_json::json!({"timestamp_unix": unix, "offset": offset, "length": length})
            })
            .collect();
        (std::borrow::Cow::Owned(body), Some(list))
    };
    let mut out = Map::new();
    out.insert("timestamp_iso".into(), iso.into());
    out.insert("timestamp_unix".into(), unix.into());
    out.insert("request_id".into(), record.request_id.clone().into());
    out.insert("session_id".into(), record.session_id.clone().into());
    out.insert("direction".into(), record.direction.label().into());
    out.insert("backend".into(), record.backend.clone().into());
    out.insert("model".into(), record.model.clone().into());
    out.insert("key_name".into(), record.key_name.clone().into());
    out.insert("method".into(), record.method.clone().into());
    out.insert(
        "url".into(),
        record
            .url
            .as_deref()
            .map(|u| masker.scrub(u).into_owned())
            .into(),
    );
    out.insert("status".into(), record.status.into());
    out.insert("content_type".into(), content_type.into());
    out.insert(
        "headers".into(),
        serde_json::to_value(headers).unwrap_or_default(),
    );
    out.insert("content_length".into(), record.body_len.into());
    match std::str::from_utf8(&body) {
        Ok(text) => out.insert("payload".into(), text.into()),
        Err(_) => out.insert(
            "payload_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&body)
                .into(),
        ),
    };
    out.insert(
        "truncated".into(),
        (record.body.len() < record.body_len).into(),
    );
    if let Some(chunks) = chunks {
        out.insert("chunks".into(), Value::Array(chunks));
    }
    Value::Object(out)
}

/// RFC 3339 UTC with milliseconds, and fractional Unix seconds.
pub(crate) fn timestamps(at: SystemTime) -> (String, f64) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let iso = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
    (iso, since.as_secs_f64())
}

/// Gregorian (year, month, day) of a day count since 1970-01-01 (days-from-civil inverse).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use llm_proxy_api::http::CaptureDirection;

    use super::*;

    fn record(body: &[u8]) -> CaptureRecord {
        CaptureRecord {
            request_id: "req_1".into(),
            session_id: Some("s1".into()),
            direction: CaptureDirection::OutboundRequest,
            backend: "openai".into(),
            model: "gpt-4o".into(),
            key_name: Some("backends.openai.api_key".into()),
            timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            method: Some("POST".into()),
            url: Some("https://api.test/v1/chat?x=sk-live-secret-1".into()),
            status: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-custom".into(), "Bearer sk-live-secret-1".into()),
                ("x-custom".into(), "two".into()),
            ],
            body: Bytes::copy_from_slice(body),
            body_len: body.len(),
            chunks: Vec::new(),
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("llm-proxy-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn records_become_masked_json_lines() {
        let path = temp_path("lines.jsonl");
        let scrubber = Scrubber::new(["sk-live-secret-1", "ab"]).unwrap();
        let sink = JsonlCaptureSink::open(&path, scrubber).unwrap();
        sink.record(record(
            br#"{"messages":[{"content":"my key is sk-live-secret-1"}]}"#,
        ));
        let mut cut = record(&[0xff, 0x00, 0x10]);
        cut.body_len = 10;
        cut.direction = CaptureDirection::InboundResponse;
        cut.status = Some(200);
        sink.record(cut);
        assert!(sink.flush(Duration::from_secs(5)));
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        let first = &got[0];
        assert_eq!(first["timestamp_iso"], "2023-11-14T22:13:20.123Z");
        assert_eq!(first["timestamp_unix"], 1_700_000_000.123);
        assert_eq!(first["request_id"], "req_1");
        assert_eq!(first["session_id"], "s1");
        assert_eq!(first["direction"], "outbound_request");
        assert_eq!(first["backend"], "openai");
        assert_eq!(first["model"], "gpt-4o");
        assert_eq!(first["key_name"], "backends.openai.api_key");
        assert_eq!(first["method"], "POST");
        assert_eq!(first["url"], "https://api.test/v1/chat?x=****");
        assert_eq!(first["content_type"], "application/json");
        assert_eq!(first["headers"]["x-custom"], "Bearer ****, two");
        assert_eq!(
            first["payload"],
            r#"{"messages":[{"content":"my key is ****"}]}"#
        );
        assert_eq!(first["truncated"], false);
        let second = &got[1];
        assert_eq!(second["direction"], "inbound_response");
        assert_eq!(second["status"], 200);
        assert_eq!(second["payload_base64"], "/wAQ");
        assert_eq!(second["content_length"], 10);
        assert_eq!(second["truncated"], true);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("sk-live-secret-1"));
        assert_eq!(sink.written(), 2);
        assert_eq!(sink.dropped_records(), 0);
        sink.close();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let path = temp_path("full.jsonl");
        let (open_gate, gate) = mpsc::channel();
        let options = CaptureFileOptions {
            queue_capacity: 2,
            ..CaptureFileOptions::default()
        };
        let sink = JsonlCaptureSink::start(
            &path,
            Scrubber::default(),
            &options,
            Format::Jsonl,
            Some(gate),
        )
        .unwrap();
        for _ in 0..5 {
            sink.record(record(b"x"));
        }
        assert_eq!(sink.dropped(), 3);
        if let Some(handle) = crate::metrics::install() {
            let text = handle.render();
            assert!(
                text.contains("llm_proxy_capture_dropped_total"),
                "the drops are in /metrics: {text}"
            );
        }
        open_gate.send(()).unwrap();
        assert!(sink.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path).len(), 2);
        assert_eq!(sink.written(), 2);
        sink.close();
    }

    #[test]
    fn close_writes_what_is_queued_and_counts_later_records() {
        let path = temp_path("close.jsonl");
        let sink = JsonlCaptureSink::open_with_capacity(&path, Scrubber::default(), 8).unwrap();
        sink.record(record(b"one"));
        sink.close();
        sink.close();
        assert_eq!(lines(&path).len(), 1);
        sink.record(record(b"two"));
        assert_eq!(sink.dropped(), 1);
        assert!(sink.flush(Duration::from_millis(10)));
    }

    #[test]
    fn the_file_is_appended_to() {
        let path = temp_path("append.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let sink = JsonlCaptureSink::open(&path, Scrubber::default()).unwrap();
        sink.record(record(b"x"));
        sink.close();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["earlier"], true);
    }

    #[test]
    fn key_shapes_and_url_credentials_are_masked_too() {
        let path = temp_path("shapes.jsonl");
        let sink = JsonlCaptureSink::open(&path, Scrubber::default()).unwrap();
        let mut r = record(br#"{"error":"bad key sk-unconfigured-0123456789abcdef"}"#);
        r.url = Some("https://bob:hunter2-pass@api.test/v1?key=AIza-query-secret".into());
        sink.record(r);
        sink.close();
        let text = std::fs::read_to_string(&path).unwrap();
        for leaked in ["0123456789abcdef", "hunter2-pass", "AIza-query-secret"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_new_capture_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("mode.jsonl");
        let sink = JsonlCaptureSink::open(&path, Scrubber::default()).unwrap();
        sink.close();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn streamed_pieces_keep_their_times_and_a_split_secret_is_masked_whole() {
        let path = temp_path("chunks.jsonl");
        let scrubber = Scrubber::new(["planted-secret-value-42"]).unwrap();
        let sink = JsonlCaptureSink::open(&path, scrubber).unwrap();
        let pieces: [&[u8]; 4] = [
            b"data: one\n\n",
            b"data: planted-secr",
            b"et-value-42 tail\n\n",
            b"data: [DONE]\n\n",
        ];
        let mut r = record(&pieces.concat());
        r.chunks = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| CaptureChunk {
                at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
                len: p.len(),
            })
            .collect();
        sink.record(r);
        sink.close();
        let text = std::fs::read_to_string(&path).unwrap();
        for part in ["planted-secr", "et-value-42", "planted-secret-value-42"] {
            assert!(!text.contains(part), "{part} in {text}");
        }
        let line = &lines(&path)[0];
        let payload = line["payload"].as_str().unwrap().as_bytes();
        let chunks = line["chunks"].as_array().unwrap();
        assert_eq!(
            chunks.len(),
            3,
            "the two pieces the secret spans are joined"
        );
        assert_eq!(chunks[0]["timestamp_unix"], 1_700_000_000.0);
        assert_eq!(chunks[1]["timestamp_unix"], 1_700_000_001.0);
        let mut joined = Vec::new();
        for c in chunks {
            let (o, l) = (
                c["offset"].as_u64().unwrap() as usize,
                c["length"].as_u64().unwrap() as usize,
            );
            assert_eq!(o, joined.len());
            joined.extend_from_slice(&payload[o..o + l]);
        }
        assert_eq!(joined, payload);
        assert!(
            line["payload"]
                .as_str()
                .unwrap()
                .starts_with("data: one\n\ndata: ")
        );
        assert!(
            line["payload"]
                .as_str()
                .unwrap()
                .ends_with("data: [DONE]\n\n")
        );
    }

    #[test]
    fn files_rotate_by_size_with_a_timestamp_suffix_and_old_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.jsonl");
        let options = CaptureFileOptions {
            max_bytes: Some(1500),
            max_files: 2,
            ..CaptureFileOptions::default()
        };
        let sink =
            JsonlCaptureSink::open_with_options(&path, Scrubber::default(), &options).unwrap();
        for _ in 0..8 {
            sink.record(record(&[b'x'; 200]));
            assert!(sink.flush(Duration::from_secs(5)));
        }
        sink.close();
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let mut total = lines(&path).len();
        for old in &rotated {
            let name = old.file_name().unwrap().to_str().unwrap();
            let suffix = name.strip_prefix("cap.jsonl.").unwrap();
            assert!(suffix.ends_with('Z') || suffix.contains("Z-"), "{suffix}");
            assert!(suffix.as_bytes()[8] == b'T', "{suffix}");
            assert!(std::fs::metadata(old).unwrap().len() <= 1500);
            total += lines(old).len();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(old).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        assert!(total < 8, "older files were deleted");
        assert_eq!(sink.written(), 8);
    }

    #[test]
    fn files_rotate_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("age.jsonl");
        let options = CaptureFileOptions {
            rotate_interval: Some(Duration::ZERO),
            ..CaptureFileOptions::default()
        };
        let sink =
            JsonlCaptureSink::open_with_options(&path, Scrubber::default(), &options).unwrap();
        sink.record(record(b"one"));
        sink.record(record(b"two"));
        sink.close();
        assert_eq!(rotated_files(&path).unwrap().len(), 1);
        assert_eq!(lines(&path).len(), 1);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(timestamps(UNIX_EPOCH).0, "1970-01-01T00:00:00.000Z");
    }
}
