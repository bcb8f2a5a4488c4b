//! The log writer: every formatted log line passes the process's `Scrubber` (configured
//! secrets and key shapes) before it is written, a second net behind scrubbing at the source.

use std::io::{self, Write};

use llm_proxy_api::Scrubber;
use tracing_subscriber::fmt::MakeWriter;

/// Wraps a [`MakeWriter`]; each writer it makes masks secrets in what it writes.
pub struct ScrubbingMakeWriter<M> {
    scrubber: Scrubber,
    inner: M,
}

impl<M> ScrubbingMakeWriter<M> {
    /// Masks with `scrubber` before writing to what `inner` makes.
    pub fn new(scrubber: Scrubber, inner: M) -> Self {
        Self { scrubber, inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ScrubbingMakeWriter<M> {
    type Writer = ScrubbingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter {
            scrubber: &self.scrubber,
            inner: self.inner.make_writer(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        ScrubbingWriter {
            scrubber: &self.scrubber,
            inner: self.inner.make_writer_for(meta),
        }
    }
}

/// One log write, masked. The formatter hands over a whole line per `write_all`, and this
/// writer always takes the whole buffer, so a secret is never split between two writes.
pub struct ScrubbingWriter<'a, W> {
    scrubber: &'a Scrubber,
    inner: W,
}

impl<W: Write> Write for ScrubbingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&self.scrubber.scrub_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects everything written.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn log_lines_lose_configured_secrets_and_key_shapes() {
        let out = Captured::default();
        let scrubber = Scrubber::new(["configured-header-value-1"]).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ScrubbingMakeWriter::new(scrubber, out.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                header = "configured-header-value-1",
                "upstream said: bad key sk-unconfigured-0123456789abcdef"
            );
            tracing::info!("nothing secret here");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("configured-header-value-1"), "{text}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("upstream said: bad key"), "{text}");
        assert!(text.contains("nothing secret here"), "{text}");
    }
}
