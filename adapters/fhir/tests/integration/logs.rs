//! One log capture for the whole test binary, and the canary over it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

use crate::seed::SENSITIVE;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        capture
    })
}

/// Starts the capture (idempotent); call first in every test.
pub(crate) fn init() {
    capture();
}

/// Everything logged so far, by every test of this binary.
pub(crate) fn text() -> String {
    String::from_utf8_lossy(
        &capture()
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

/// Asserts that nothing logged so far names a seeded patient.
pub(crate) fn assert_no_patient_data() {
    let text = text().to_lowercase();
    for needle in SENSITIVE {
        assert!(
            !text.contains(&needle.to_lowercase()),
            "the log capture contains seeded patient data ({} bytes of logs)",
            text.len()
        );
    }
}
