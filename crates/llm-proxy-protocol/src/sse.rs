//! Server-sent events: an incremental parser for upstream bodies and the framing helpers
//! frontends use to render events. Bytes in, frames out; chunk boundaries anywhere.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser. Feed arbitrary byte chunks; complete frames come out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A fresh parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, appending completed frames to `out`. Whole lines are read where they lie
    /// (in `chunk`, or in the buffer when a line began in an earlier chunk); only an unfinished
    /// last line is kept for the next call.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseFrame>) {
        if self.buf.is_empty() {
            let rest = self.lines(chunk, out);
            self.buf.extend_from_slice(rest);
            return;
        }
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let consumed = buf.len() - self.lines(&buf, out).len();
        self.buf = buf;
        self.buf.advance(consumed);
    }

    /// Reads every complete line of `bytes`; what follows the last line break is returned.
    fn lines<'a>(&mut self, mut bytes: &'a [u8], out: &mut Vec<SseFrame>) -> &'a [u8] {
        while let Some(pos) = memchr::memchr(b'\n', bytes) {
            let mut line = &bytes[..pos];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            self.line(line, out);
            bytes = &bytes[pos + 1..];
        }
        bytes
    }

    /// Flushes a final frame not followed by a blank line.
    pub fn finish(&mut self, out: &mut Vec<SseFrame>) {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            let mut line = &rest[..];
            if let [r @ .., b'\r'] = line {
                line = r;
            }
            self.line(line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        // Checked as a whole (a word at a time); `from_utf8_lossy` walks its chunks a byte at
        // a time even when, as almost always, there is nothing to replace.
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            _ => {} // id, retry: not needed by any provider we speak
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
        if self.has_data {
            out.push(SseFrame {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.has_data = false;
    }
}

/// Renders `data: <json>\n\n`.
pub fn data_frame(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Renders `event: <name>\ndata: <json>\n\n`.
pub fn event_frame(event: &str, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + event.len() + 16);
    b.put_slice(b"event: ");
    b.put_slice(event.as_bytes());
    b.put_slice(b"\ndata: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A keep-alive comment.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_arbitrary_chunk_boundaries() {
        let body = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: ping\n\ndata: line1\ndata: line2\n\ndata: [DONE]";
        for split in 1..body.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(&body[..split], &mut out);
            p.feed(&body[split..], &mut out);
            p.finish(&mut out);
            assert_eq!(
                out,
                vec![
                    SseFrame {
                        event: Some("a".into()),
                        data: "{\"x\":1}".into()
                    },
                    SseFrame {
                        event: None,
                        data: "line1\nline2".into()
                    },
                    SseFrame {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn rendering() {
        assert_eq!(&data_frame(b"{}")[..], b"data: {}\n\n");
        assert_eq!(
            &event_frame("ping", b"{}")[..],
            b"event: ping\ndata: {}\n\n"
        );
    }
}
