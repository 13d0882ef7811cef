//! Reading a secret value from a person or a pipe — never from the command line.
//!
//! Defends: values against exposure through `argv` (visible to every user in `ps` and
//! `/proc/<pid>/cmdline`), shell history, and terminal echo or scrollback.
//!
//! Guarantees: [`read_from`] reads at most `max` bytes into zeroizing memory, drops one trailing
//! newline, and requires UTF-8; [`read_hidden`] prompts on the controlling terminal with echo
//! turned off and restores the terminal mode afterwards, also when reading fails. Errors never
//! include what was read.
//!
//! Does not: protect against a key logger or anyone who can read this process's memory.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::SecretsError;

/// Callers read at most `max + 3` bytes: after removing a newline (at most 2 bytes) a longer
/// input is still longer than `max`, so it is refused rather than silently cut.
fn finish(mut buf: Zeroizing<Vec<u8>>, max: usize) -> Result<SecretString, SecretsError> {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > max {
        return Err(SecretsError::Input(format!(
            "the value is longer than {max} bytes"
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| SecretsError::Input("the value is not valid UTF-8".into()))?;
    Ok(SecretString::from(text))
}

/// Reads a whole value from `reader` (e.g. a pipe on stdin): at most `max` bytes, one trailing
/// newline removed.
///
/// # Errors
/// [`SecretsError::Input`] on read failure, oversize or invalid UTF-8.
pub fn read_from(reader: impl Read, max: usize) -> Result<SecretString, SecretsError> {
    let mut buf = Zeroizing::new(Vec::new());
    reader
        .take(max as u64 + 3)
        .read_to_end(&mut buf)
        .map_err(|e| SecretsError::Input(e.to_string()))?;
    finish(buf, max)
}

/// Restores the terminal mode when dropped.
struct EchoGuard<'a> {
    tty: &'a std::fs::File,
    saved: termios::Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        // Nothing more can be done if restoring fails; the shell's `reset` recovers.
        let _ = termios::tcsetattr(self.tty, OptionalActions::Flush, &self.saved);
    }
}

/// Prompts on `/dev/tty` with echo off and reads one line (at most `max` bytes).
///
/// # Errors
/// [`SecretsError::Input`] when there is no terminal or reading fails.
pub fn read_hidden(prompt: &str, max: usize) -> Result<SecretString, SecretsError> {
    let io = |e: std::io::Error| SecretsError::Input(format!("terminal: {e}"));
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(io)?;
    let saved = termios::tcgetattr(&tty).map_err(|e| io(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    let guard = EchoGuard { tty: &tty, saved };
    termios::tcsetattr(&tty, OptionalActions::Flush, &quiet).map_err(|e| io(e.into()))?;
    (&tty).write_all(prompt.as_bytes()).map_err(io)?;
    (&tty).flush().map_err(io)?;
    let mut buf = Zeroizing::new(Vec::new());
    BufReader::new((&tty).take(max as u64 + 3))
        .read_until(b'\n', &mut buf)
        .map_err(io)?;
    drop(guard);
    finish(buf, max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_and_strips_one_newline() {
        let v = read_from(&b"abc\n"[..], 10).unwrap();
        assert_eq!(v.expose_secret(), "abc");
        let v = read_from(&b"abc\r\n"[..], 10).unwrap();
        assert_eq!(v.expose_secret(), "abc");
        let v = read_from(&b"a\nb\n\n"[..], 10).unwrap();
        assert_eq!(v.expose_secret(), "a\nb\n");
        let v = read_from(&b"0123456789\r\n"[..], 10).unwrap();
        assert_eq!(v.expose_secret(), "0123456789");
        assert!(read_from(&b"0123456789\r\nX"[..], 10).is_err());
        assert!(read_from(&b"0123456789X\n"[..], 10).is_err());
    }

    #[test]
    fn refuses_oversize_and_invalid_utf8_without_echo() {
        let e = read_from(&b"012345678901-XYZZY"[..], 10)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("XYZZY") && !e.contains("0123"), "{e}");
        let e = read_from(&b"\xff\xfe-XYZZY"[..], 100)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("XYZZY"), "{e}");
    }
}
