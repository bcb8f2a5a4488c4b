//! Streams events to a client as server-sent events: forwards each event as it arrives
//! (never buffers the stream), sends keep-alive comments while the upstream is silent, and
//! turns an error after the first byte into an in-stream error in the client's protocol.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use llm_proxy_api::stream::{EventStream, StreamEvent};
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;
use crate::serve::Wait;

/// Renders events in one client protocol.
pub trait StreamRenderer: Send + Unpin + 'static {
    /// Frames for one event.
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>);
    /// Frames closing a successful stream.
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// Frames reporting an error after streaming began.
    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>);
    /// A keep-alive frame.
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(llm_proxy_protocol::sse::KEEPALIVE)
    }
    /// The lossy note for an event of the answer this protocol cannot show (generated media,
    /// citations, logprobs); `None` when the renderer shows it.
    fn dropped(event: &StreamEvent) -> Option<&'static str>
    where
        Self: Sized,
    {
        dropped_without_slot(event)
    }
}

/// The note for each event that has no slot in a protocol showing text, reasoning and tool
/// calls only.
pub fn dropped_without_slot(event: &StreamEvent) -> Option<&'static str> {
    match event {
        StreamEvent::Media { .. } => Some(MEDIA_DROPPED),
        StreamEvent::Citation { .. } => Some(CITATIONS_DROPPED),
        StreamEvent::Logprobs { .. } => Some(LOGPROBS_DROPPED),
        _ => None,
    }
}

/// The lossy note for generated media in an answer the client's protocol cannot show.
pub const MEDIA_DROPPED: &str =
    "media in the answer dropped (the client protocol has no slot for generated media)";

/// The lossy note for citations the client's protocol has no slot for.
pub const CITATIONS_DROPPED: &str =
    "citations in the answer dropped (the client protocol has no slot for them)";

/// The lossy note for token logprobs the client's protocol has no slot for.
pub const LOGPROBS_DROPPED: &str =
    "logprobs in the answer dropped (the client protocol has no slot for them)";

/// The call as seen by the body: still starting, or streaming.
pub type PendingCall =
    Pin<Box<dyn Future<Output = Result<(EventStream, Option<StreamEvent>), ProxyError>> + Send>>;

enum Phase {
    Waiting(PendingCall),
    Streaming(EventStream),
    Done,
}

/// What happened, reported once when the body ends or is dropped.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    /// Whether the client received the whole stream.
    pub completed: bool,
    /// Error label if the stream ended in an error.
    pub error: Option<&'static str>,
    /// Whether the client went away first.
    pub client_disconnected: bool,
}

/// The SSE response body.
pub struct SseBody<R: StreamRenderer> {
    phase: Phase,
    renderer: R,
    frames: Vec<Bytes>,
    out: VecDeque<Bytes>,
    keepalive: Pin<Box<Sleep>>,
    interval: Duration,
    /// When the stream last moved: the keep-alive is due one interval after it. The timer is
    /// moved only when it fires early (re-armed for the real due time), not at every event,
    /// which took the timer wheel's lock per event.
    last_progress: Instant,
    outcome: StreamOutcome,
    on_end: Option<Box<dyn FnOnce(StreamOutcome) + Send>>,
    /// Fires when the proxy's shutdown grace is over: the stream then ends with an error.
    shutdown: Option<Wait>,
}

impl<R: StreamRenderer> SseBody<R> {
    /// A body that starts with `first` (already received) and continues with `stream`.
    pub fn streaming(
        stream: EventStream,
        first: Option<StreamEvent>,
        renderer: R,
        interval: Duration,
    ) -> Self {
        let mut body = Self::new(Phase::Streaming(stream), renderer, interval);
        if let Some(event) = first {
            body.push_event(&event);
        }
        body
    }

    /// A body that is still waiting for the upstream: sends keep-alives until it answers.
    pub fn waiting(call: PendingCall, renderer: R, interval: Duration) -> Self {
        let mut body = Self::new(Phase::Waiting(call), renderer, interval);
        // The client waited one interval already to get the headers.
        body.out.push_back(body.renderer.keepalive());
        body
    }

    fn new(phase: Phase, renderer: R, interval: Duration) -> Self {
        Self {
            phase,
            renderer,
            frames: Vec::with_capacity(4),
            out: VecDeque::new(),
            keepalive: Box::pin(tokio::time::sleep(interval)),
            interval,
            last_progress: Instant::now(),
            outcome: StreamOutcome::default(),
            on_end: None,
            shutdown: None,
        }
    }

    /// Ends the stream with an in-stream "shutting down" error once `shutdown` resolves (a
    /// [`Wait`], polled at every wake-up of the stream for one atomic load; a cancellation
    /// token's wait took a lock shared by every stream on each of them).
    #[must_use]
    pub fn ends_on(mut self, shutdown: Wait) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Runs `f` once with the outcome when the body ends or is dropped.
    #[must_use]
    pub fn on_end(mut self, f: impl FnOnce(StreamOutcome) + Send + 'static) -> Self {
        self.on_end = Some(Box::new(f));
        self
    }

    fn push_event(&mut self, event: &StreamEvent) {
        self.renderer.render(event, &mut self.frames);
        self.out.extend(self.frames.drain(..));
    }

    fn push_error(&mut self, error: &ProxyError) {
        tracing::warn!(error = %error, label = error.label(), "stream failed after the first byte");
        self.outcome.error = Some(error.label());
        self.renderer.error(error, &mut self.frames);
        self.out.extend(self.frames.drain(..));
        self.phase = Phase::Done;
    }

    /// Whether a keep-alive is due: the stream has been quiet for a whole interval. A timer
    /// that fires after an event is re-armed for one interval after that event.
    fn keepalive_due(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.keepalive.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last_progress + self.interval;
            let now = Instant::now();
            if due <= now {
                self.last_progress = now;
                self.keepalive.as_mut().reset(now + self.interval);
                return true;
            }
            self.keepalive.as_mut().reset(due);
        }
    }
}

impl<R: StreamRenderer> Stream for SseBody<R> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Every frame that is ready now goes out in one write: upstream chunks often carry
        // several events, and one syscall per event is the expensive part. Nothing waits.
        let mut batch = Batch::default();
        if !matches!(this.phase, Phase::Done)
            && let Some(shutdown) = &mut this.shutdown
            && Pin::new(shutdown).poll(cx).is_ready()
        {
            this.shutdown = None;
            this.push_error(&ProxyError::ShuttingDown);
        }
        loop {
            batch.extend(this.out.drain(..));
            if batch.len() >= MAX_BATCH_BYTES {
                return Poll::Ready(batch.take().map(Ok));
            }
            let progressed = match &mut this.phase {
                Phase::Done => {
                    if let Some(frames) = batch.take() {
                        return Poll::Ready(Some(Ok(frames)));
                    }
                    if let Some(f) = this.on_end.take() {
                        f(this.outcome.clone());
                    }
                    return Poll::Ready(None);
                }
                Phase::Waiting(call) => match call.as_mut().poll(cx) {
                    Poll::Ready(Ok((stream, first))) => {
                        this.phase = Phase::Streaming(stream);
                        if let Some(event) = first {
                            this.push_event(&event);
                        }
                        true
                    }
                    Poll::Ready(Err(e)) => {
                        this.push_error(&e);
                        true
                    }
                    Poll::Pending => false,
                },
                Phase::Streaming(stream) => match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(event))) => {
                        this.push_event(&event);
                        true
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.push_error(&ProxyError::Backend(e));
                        true
                    }
                    Poll::Ready(None) => {
                        this.renderer.finish(&mut this.frames);
                        this.out.extend(this.frames.drain(..));
                        this.outcome.completed = true;
                        this.phase = Phase::Done;
                        true
                    }
                    Poll::Pending => false,
                },
            };
            if progressed {
                this.last_progress = Instant::now();
                continue;
            }
            if let Some(frames) = batch.take() {
                return Poll::Ready(Some(Ok(frames)));
            }
            if this.keepalive_due(cx) {
                return Poll::Ready(Some(Ok(this.renderer.keepalive())));
            }
            return Poll::Pending;
        }
    }
}

/// Largest batch of frames written at once.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Frames ready to go out together; a single frame is passed on without copying.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Batch {
    fn extend(&mut self, frames: impl Iterator<Item = Bytes>) {
        for frame in frames {
            match (&mut self.joined, self.first.take()) {
                (Some(joined), _) => joined.extend_from_slice(&frame),
                (None, None) => self.first = Some(frame),
                (None, Some(first)) => {
                    let mut joined = BytesMut::with_capacity(first.len() + frame.len() * 4);
                    joined.extend_from_slice(&first);
                    joined.extend_from_slice(&frame);
                    self.joined = Some(joined);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.joined.as_ref().map_or(0, BytesMut::len) + self.first.as_ref().map_or(0, Bytes::len)
    }

    fn take(&mut self) -> Option<Bytes> {
        self.joined
            .take()
            .map(BytesMut::freeze)
            .or_else(|| self.first.take())
    }
}

impl<R: StreamRenderer> Drop for SseBody<R> {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            // Dropped before the end: the client went away. Dropping `phase` closes the
            // upstream connection.
            self.outcome.client_disconnected = true;
            f(self.outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_join_ready_frames_and_pass_single_ones_through() {
        let mut b = Batch::default();
        assert_eq!(b.take(), None);
        b.extend([Bytes::from_static(b"data: 1\n\n")].into_iter());
        assert_eq!(b.len(), 9);
        assert_eq!(b.take().as_deref(), Some(&b"data: 1\n\n"[..]));
        b.extend(
            [
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b"),
                Bytes::from_static(b"c"),
            ]
            .into_iter(),
        );
        assert_eq!(b.take().as_deref(), Some(&b"abc"[..]));
        assert_eq!(b.take(), None);
    }

    struct Plain;
    impl StreamRenderer for Plain {
        fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
            if let StreamEvent::TextDelta { text } = event {
                out.push(Bytes::from(text.clone()));
            }
        }
        fn finish(&mut self, out: &mut Vec<Bytes>) {
            out.push(Bytes::from_static(b"|end"));
        }
        fn error(&mut self, _: &ProxyError, out: &mut Vec<Bytes>) {
            out.push(Bytes::from_static(b"|error"));
        }
    }

    #[tokio::test]
    async fn a_cancelled_shutdown_ends_a_silent_stream_with_an_error() {
        use futures::StreamExt;
        let stream: EventStream = Box::pin(futures::stream::pending());
        let shutdown = crate::serve::Shutdown::new();
        let mut body = SseBody::streaming(
            stream,
            Some(StreamEvent::TextDelta { text: "a".into() }),
            Plain,
            Duration::from_secs(3600),
        )
        .ends_on(shutdown.expired());
        assert_eq!(
            body.next().await.unwrap().unwrap(),
            Bytes::from_static(b"a")
        );
        shutdown.expire();
        let rest: Vec<Bytes> = body.map(|r| r.unwrap()).collect().await;
        assert_eq!(rest, vec![Bytes::from_static(b"|error")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keepalive_goes_out_one_interval_after_the_stream_last_moved() {
        use futures::StreamExt;
        let interval = Duration::from_secs(10);
        let (tx, rx) = futures::channel::mpsc::unbounded::<StreamEvent>();
        let stream: EventStream = Box::pin(rx.map(Ok));
        let body = SseBody::streaming(stream, None, Plain, interval);
        let start = Instant::now();
        // Events 6 s apart (closer than the interval), then 25 s of silence, then the end.
        tokio::spawn(async move {
            for (at, text) in [(6, "a"), (12, "b"), (18, "c")] {
                tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                tx.unbounded_send(StreamEvent::TextDelta { text: text.into() })
                    .expect("body alive");
            }
            tokio::time::sleep_until(start + Duration::from_secs(43)).await;
            drop(tx);
        });
        let writes: Vec<(u64, Bytes)> = body
            .map(|r| (start.elapsed().as_secs(), r.unwrap()))
            .collect()
            .await;
        let keepalive = Bytes::from_static(llm_proxy_protocol::sse::KEEPALIVE);
        assert_eq!(
            writes,
            vec![
                (6, Bytes::from_static(b"a")),
                (12, Bytes::from_static(b"b")),
                (18, Bytes::from_static(b"c")),
                (28, keepalive.clone()),
                (38, keepalive),
                (43, Bytes::from_static(b"|end")),
            ]
        );
    }

    #[tokio::test]
    async fn ready_events_leave_in_one_write_and_the_stream_still_ends() {
        use futures::StreamExt;
        let events: Vec<Result<StreamEvent, llm_proxy_api::BackendError>> = ["a", "b", "c"]
            .iter()
            .map(|t| Ok(StreamEvent::TextDelta { text: (*t).into() }))
            .collect();
        let stream: EventStream = Box::pin(futures::stream::iter(events));
        let body = SseBody::streaming(stream, None, Plain, Duration::from_secs(60));
        let writes: Vec<Bytes> = body.map(|r| r.unwrap()).collect().await;
        assert_eq!(writes, vec![Bytes::from_static(b"abc|end")]);
    }
}
