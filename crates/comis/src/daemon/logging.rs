//! Structured daemon logs through `tracing`, every line through the guard's log scrubber.
//!
//! Guarantees: each formatted event is passed whole to `comis_guard::logscrub::scrub_text`
//! before it reaches standard error (the log file in the background, the journal under
//! systemd), so a credential that slips into a message or a field is written `[REDACTED]`.
//! When the scrubber cannot be built every line is replaced by a marker (fail closed).
//!
//! Does not: recognize a secret of unknown shape (the scrubber's patterns decide), rotate the
//! file, or change the level on reload (the level is read once at start).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::schema::LogLevel;

/// A writer that scrubs what it is given and writes it to standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbingStderr;

impl Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let scrubbed = comis_guard::logscrub::scrub_text(&text);
        let mut err = io::stderr().lock();
        err.write_all(scrubbed.text.as_bytes())?;
        if !scrubbed.text.ends_with('\n') && text.ends_with('\n') {
            err.write_all(b"\n")?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(level: LogLevel) {
    let max = match level {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_target(false)
        .with_writer(ScrubbingStderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn scrubber_redacts_a_key_in_a_line() {
        let key = "sk-ant-api03-Hq7Lw2Zx9Pv4Rt6Yn8Bm1Kc3";
        let s = comis_guard::logscrub::scrub_text(&format!("INFO provider said {key}\n"));
        assert!(!s.text.contains(key), "{}", s.text);
    }
}
