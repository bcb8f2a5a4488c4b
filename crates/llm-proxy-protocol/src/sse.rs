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
    /// Buffers of frames handed back ([`recycle`](Self::recycle)), emptied, for the next
    /// frames' data and event names.
    spare_data: Vec<String>,
    spare_events: Vec<String>,
}

/// How many emptied buffers of each kind a parser keeps, and the largest it keeps: a stream's
/// frames are read a few at a time, and one huge frame must not stay allocated.
const SPARE_BUFFERS: usize = 8;
const SPARE_MAX_CAPACITY: usize = 16 * 1024;

fn keep_spare(spare: &mut Vec<String>, mut buffer: String) {
    if spare.len() < SPARE_BUFFERS && buffer.capacity() <= SPARE_MAX_CAPACITY {
        buffer.clear();
        spare.push(buffer);
    }
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

    /// Hands a frame back once read: its buffers hold the next frames, so a stream's frames
    /// cost no allocation each once the first few are read.
    pub fn recycle(&mut self, frame: SseFrame) {
        keep_spare(&mut self.spare_data, frame.data);
        if let Some(event) = frame.event {
            keep_spare(&mut self.spare_events, event);
        }
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
                } else if self.data.capacity() == 0
                    && let Some(spare) = self.spare_data.pop()
                {
                    self.data = spare;
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => {
                let mut event = self.spare_events.pop().unwrap_or_default();
                event.push_str(&value);
                if let Some(old) = self.event.replace(event) {
                    keep_spare(&mut self.spare_events, old);
                }
            }
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
        if let Some(event) = self.event.take() {
            keep_spare(&mut self.spare_events, event);
        }
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
    fn recycled_frames_lend_their_buffers_to_the_next_ones() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"event: first\ndata: some text\n\n", &mut out);
        let frame = out.pop().expect("a frame");
        let (data_at, event_at) = (
            frame.data.as_ptr(),
            frame.event.as_ref().map(|e| e.as_ptr()),
        );
        p.recycle(frame);
        p.feed(b"event: two\ndata: more\n\n", &mut out);
        let frame = out.pop().expect("a frame");
        assert_eq!(
            frame,
            SseFrame {
                event: Some("two".into()),
                data: "more".into()
            }
        );
        assert_eq!(frame.data.as_ptr(), data_at, "the data buffer was reused");
        assert_eq!(
            frame.event.as_ref().map(|e| e.as_ptr()),
            event_at,
            "the event buffer was reused"
        );
    }

    #[test]
    fn recycling_keeps_few_buffers_and_no_large_ones() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let big = format!("data: {}\n\n", "x".repeat(SPARE_MAX_CAPACITY + 1));
        p.feed(big.as_bytes(), &mut out);
        p.recycle(out.pop().expect("a frame"));
        assert!(
            p.spare_data.is_empty(),
            "a buffer larger than the limit is dropped"
        );
        for _ in 0..SPARE_BUFFERS * 2 {
            p.feed(b"event: e\ndata: d\n\n", &mut out);
        }
        for frame in out.drain(..) {
            p.recycle(frame);
        }
        assert_eq!(p.spare_data.len(), SPARE_BUFFERS);
        assert_eq!(p.spare_events.len(), SPARE_BUFFERS);
    }

    #[test]
    fn frames_read_with_recycling_are_the_same_at_any_chunk_boundary() {
        let body = b"event: a\r\ndata: {\"x\":1}\r\n\r\nevent: lone\n\n: ping\n\ndata: line1\ndata: line2\n\nevent: b\ndata: [DONE]";
        for split in 1..body.len() {
            let mut p = SseParser::new();
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for part in [&body[..split], &body[split..]] {
                p.feed(part, &mut out);
                for frame in out.drain(..) {
                    seen.push(frame.clone());
                    p.recycle(frame);
                }
            }
            p.finish(&mut out);
            seen.append(&mut out);
            assert_eq!(
                seen,
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
                        event: Some("b".into()),
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
