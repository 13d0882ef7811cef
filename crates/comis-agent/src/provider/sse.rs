//! Incremental parsers for streamed answers: server-sent events (the WHATWG `text/event-stream`
//! rules) and newline-delimited JSON, fed with byte chunks exactly as they arrive.
//!
//! Guarantees: the result does not depend on where the network split the bytes (a line, a
//! `\r\n` pair or a UTF-8 sequence may straddle chunks); `\n`, `\r\n` and `\r` all end a line;
//! comments (`:`) are skipped; multi-line `data` is joined with `\n`; a leading BOM is dropped;
//! a line or an event longer than the limit is an error, never unbounded memory. Arbitrary
//! bytes never panic.
//!
//! Does not: interpret the data (the providers parse the JSON), reconnect (`retry`, `id` are
//! kept but not acted on), or deliver an event that the stream cut off before its blank line.

use std::fmt;

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, or `message` when none was given.
    pub event: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The last `id` seen, if any.
    pub id: Option<String>,
}

/// A line or event over the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub limit: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a streamed line or event is longer than {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for TooLong {}

/// Splits bytes into lines at `\n`, `\r\n` or `\r`, across chunk boundaries.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    line: Vec<u8>,
    /// The last byte seen was `\r`: a `\n` right after it belongs to the same line end.
    after_cr: bool,
    max_line: usize,
}

impl LineSplitter {
    /// A splitter refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            line: Vec::new(),
            after_cr: false,
            max_line,
        }
    }

    /// Feeds `chunk`, calling `on_line` with each complete line (without its terminator).
    ///
    /// # Errors
    /// [`TooLong`] when a line exceeds the limit, or whatever `on_line` returns.
    pub fn feed<E: From<TooLong>>(
        &mut self,
        chunk: &[u8],
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        if rest.is_empty() {
            // An empty read says nothing about the byte after a `\r`: keep waiting for it.
            return Ok(());
        }
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.push(&rest[..i])?;
                    let line = std::mem::take(&mut self.line);
                    on_line(&line)?;
                    let cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    if cr {
                        if rest.is_empty() {
                            self.after_cr = true;
                        } else if rest[0] == b'\n' {
                            rest = &rest[1..];
                        }
                    }
                }
                None => {
                    self.push(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        if self.line.len().saturating_add(bytes.len()) > self.max_line {
            return Err(TooLong {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The unterminated last line, if any (NDJSON allows a final line without `\n`).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.line);
        (!rest.is_empty()).then_some(rest)
    }
}

/// The server-sent events parser.
#[derive(Debug, Clone)]
pub struct SseParser {
    lines: LineSplitter,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    max_event: usize,
    started: bool,
}

impl SseParser {
    /// A parser refusing lines longer than `max_line` and events whose data is longer than
    /// `max_event` bytes.
    pub fn new(max_line: usize, max_event: usize) -> SseParser {
        SseParser {
            lines: LineSplitter::new(max_line),
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            max_event,
            started: false,
        }
    }

    /// Feeds one chunk; complete events are appended to `out`.
    ///
    /// # Errors
    /// [`TooLong`] over a limit; the parser should not be used after an error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLong> {
        let mut chunk = chunk;
        if !self.started && !chunk.is_empty() {
            self.started = true;
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
        }
        let mut lines = std::mem::replace(&mut self.lines, LineSplitter::new(0));
        let r = lines.feed(chunk, |line| self.line(line, out));
        self.lines = lines;
        r
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLong> {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: if self.event.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                let extra = value.len() + usize::from(self.has_data);
                if self.data.len().saturating_add(extra) > self.max_event {
                    return Err(TooLong {
                        limit: self.max_event,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields are ignored, as the standard says.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 16, 1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn standard_examples() {
        let got = parse_all(&[
            b"\xEF\xBB\xBF: comment\r\nevent: ping\r\ndata: {}\r\n\r\ndata: a\ndata:b\ndata\n\n",
        ]);
        assert_eq!(got, vec![ev("ping", "{}"), ev("message", "a\nb\n")]);
    }

    #[test]
    fn cr_only_and_split_crlf() {
        // An empty chunk between `\r` and `\n` must not split the pair into two line ends
        // (which would end the event early and drop its name).
        let got = parse_all(&[b"event: e\r", b"", b"\ndata: z\r\n\r\n"]);
        assert_eq!(got, vec![ev("e", "z")]);
        let got = parse_all(&[b"data: x\r", b"\n\r", b"\ndata: y\r\r"]);
        assert_eq!(got, vec![ev("message", "x"), ev("message", "y")]);
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        assert!(parse_all(&[b"data: x\n"]).is_empty());
        assert!(parse_all(&[b"event: e\n\n"]).is_empty());
    }

    #[test]
    fn utf8_split_across_chunks() {
        let bytes = "data: héllo\n\n".as_bytes();
        let got = parse_all(&[&bytes[..7], &bytes[7..]]);
        assert_eq!(got, vec![ev("message", "héllo")]);
    }

    #[test]
    fn oversize_line_and_event_are_errors() {
        let mut p = SseParser::new(16, 1 << 20);
        let mut out = Vec::new();
        assert!(p.feed(&[b'a'; 10], &mut out).is_ok());
        assert_eq!(p.feed(&[b'a'; 10], &mut out), Err(TooLong { limit: 16 }));
        let mut p = SseParser::new(100, 8);
        assert!(p.feed(b"data: 12345\ndata: 6789\n", &mut out).is_err());
    }

    #[test]
    fn ndjson_lines_and_final_unterminated_line() {
        let mut s = LineSplitter::new(100);
        let mut lines = Vec::new();
        s.feed::<TooLong>(b"{\"a\":1}\r\n{\"b\"", |l| {
            lines.push(l.to_vec());
            Ok(())
        })
        .unwrap();
        s.feed::<TooLong>(b":2}", |l| {
            lines.push(l.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(s.take_rest().unwrap(), b"{\"b\":2}");
    }

    fn event_strategy() -> impl Strategy<Value = (String, Vec<String>)> {
        ("[a-z_]{0,12}", prop::collection::vec("[^\r\n]{0,40}", 1..4))
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_events(
            events in prop::collection::vec(event_strategy(), 0..8),
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            cuts in prop::collection::vec(0usize..2000, 0..12),
        ) {
            let mut text = String::new();
            let mut want = Vec::new();
            for (name, datas) in &events {
                if !name.is_empty() {
                    text.push_str(&format!("event: {name}{eol}"));
                }
                text.push_str(&format!(":keepalive{eol}"));
                for d in datas {
                    text.push_str(&format!("data: {d}{eol}"));
                }
                text.push_str(eol);
                want.push(ev(if name.is_empty() { "message" } else { name }, &datas.join("\n")));
            }
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for c in cuts {
                chunks.push(&bytes[start..c]);
                start = c;
            }
            chunks.push(&bytes[start..]);
            // A data value that starts with a space loses exactly one, as the standard says.
            let want: Vec<SseEvent> = want;
            let got = parse_all(&chunks);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut p = SseParser::new(128, 256);
            let mut out = Vec::new();
            for c in &chunks {
                if p.feed(c, &mut out).is_err() {
                    break;
                }
            }
        }
    }
}
