//! Structured daemon logs through `tracing`, every line through the guard's log scrubber.
//!
//! Guarantees: each formatted event is passed whole to `comis_guard::logscrub::scrub_text`
//! before it reaches standard error (the log file in the background, the journal under
//! systemd), so a credential that slips into a message or a field is written `[REDACTED]`.
//! When the scrubber cannot be built every line is replaced by a marker (fail closed).
//!
//! The level is the configuration's `logLevel`; [`set_level`] changes it in place when a
//! reloaded configuration is applied.
//!
//! Does not: recognize a secret of unknown shape (the scrubber's patterns decide), or rotate
//! the file.

use std::io::{self, Write};
use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Registry, reload};

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

/// The installed subscriber's level, for [`set_level`].
static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(level: LogLevel) {
    let (level_layer, handle) = reload::Layer::new(filter(level));
    let installed = tracing_subscriber::registry()
        .with(level_layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(ScrubbingStderr),
        )
        .try_init();
    if installed.is_ok() {
        let _ = LEVEL.set(handle);
    }
}

/// Changes the level of the subscriber [`init`] installed; `false` if there is none.
pub fn set_level(level: LogLevel) -> bool {
    LEVEL
        .get()
        .is_some_and(|h| h.modify(|f| *f = filter(level)).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn the_level_changes_in_place() {
        use super::*;
        init(LogLevel::Info);
        assert!(tracing::enabled!(tracing::Level::INFO));
        assert!(!tracing::enabled!(tracing::Level::DEBUG));
        assert!(set_level(LogLevel::Debug));
        assert!(tracing::enabled!(tracing::Level::DEBUG));
        assert!(set_level(LogLevel::Error));
        assert!(!tracing::enabled!(tracing::Level::WARN));
    }

    #[test]
    fn scrubber_redacts_a_key_in_a_line() {
        let key = "sk-ant-api03-Hq7Lw2Zx9Pv4Rt6Yn8Bm1Kc3";
        let s = comis_guard::logscrub::scrub_text(&format!("INFO provider said {key}\n"));
        assert!(!s.text.contains(key), "{}", s.text);
    }
}
