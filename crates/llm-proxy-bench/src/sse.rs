//! Splits a streamed body into server-sent events and pulls out each event's `data:` payload.

use std::borrow::Cow;

use bytes::{Buf as _, BytesMut};

/// Buffers body frames and yields each complete event (without its blank-line terminator).
#[derive(Default)]
pub struct EventSplitter {
    pending: BytesMut,
}

impl EventSplitter {
    pub fn push(&mut self, frame: &[u8]) {
        self.pending.extend_from_slice(frame);
    }

    pub fn next_event(&mut self) -> Option<BytesMut> {
        let (end, terminator) = find_terminator(&self.pending)?;
        let event = self.pending.split_to(end);
        self.pending.advance(terminator);
        Some(event)
    }
}

/// The first blank line, `\n\n` or `\n\r\n`: position and length.
fn find_terminator(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|at| (at + 1, 1));
    let crlf = memchr::memmem::find(buf, b"\n\r\n").map(|at| (at + 1, 2));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (found, None) | (None, found) => found,
    }
}

/// The event's `data:` lines joined by `\n`; `None` when it has none.
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = first.to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.push(b'\n');
        joined.extend_from_slice(line);
    }
    Some(Cow::Owned(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(splitter: &mut EventSplitter) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| splitter.next_event().map(|e| e.to_vec())).collect()
    }

    #[test]
    fn splits_events_across_frames() {
        let mut splitter = EventSplitter::default();
        splitter.push(b"data: {\"a\":1}\n\nevent: x\nda");
        assert_eq!(drain(&mut splitter), vec![b"data: {\"a\":1}\n".to_vec()]);
        splitter.push(b"ta: 2\r\n\r\ndata: [DONE]\n\n");
        let events = drain(&mut splitter);
        assert_eq!(events.len(), 2);
        assert_eq!(event_data(&events[0]).unwrap().as_ref(), b"2");
        assert_eq!(event_data(&events[1]).unwrap().as_ref(), b"[DONE]");
    }

    #[test]
    fn joins_multiline_data_and_skips_comments() {
        assert_eq!(
            event_data(b"event: e\ndata: a\ndata:b\n").unwrap().as_ref(),
            b"a\nb"
        );
        assert!(event_data(b": keep-alive\n").is_none());
    }
}
