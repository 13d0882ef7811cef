//! Reading `comis guard` items from a byte stream.
//!
//! Items are lines. In JSON mode (the default) each line is one JSON-encoded string, so an item
//! may itself contain newlines; in raw mode each line is the item. Input is hostile by
//! assumption: a line longer than [`MAX_ITEM_BYTES`] is consumed and reported as an error item
//! without ever being held in memory whole, invalid UTF-8 and malformed JSON are error items,
//! and processing goes on with the next line.

use std::io::{self, BufRead};

/// Largest line accepted as one item (16 MiB). Longer lines become an error item.
pub const MAX_ITEM_BYTES: usize = 16 * 1024 * 1024;

/// How to decode each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Json,
    Raw,
}

/// One item read from the stream: its text, or why it could not be read.
pub type Item = Result<String, String>;

/// Iterates over the items of `reader`. I/O errors end the iteration with `Err`.
#[derive(Debug)]
pub struct Items<R> {
    reader: R,
    framing: Framing,
    buf: Vec<u8>,
}

impl<R: BufRead> Items<R> {
    pub fn new(reader: R, framing: Framing) -> Self {
        Items {
            reader,
            framing,
            buf: Vec::new(),
        }
    }

    /// The next item, `Ok(None)` at end of input.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            self.buf.clear();
            let (len, overflowed) = read_bounded_line(&mut self.reader, &mut self.buf)?;
            if len == 0 && !overflowed {
                return Ok(None);
            }
            if overflowed {
                return Ok(Some(Err(format!("item exceeds {MAX_ITEM_BYTES} bytes"))));
            }
            strip_line_end(&mut self.buf);
            let line = match std::str::from_utf8(&self.buf) {
                Ok(s) => s,
                Err(e) => return Ok(Some(Err(format!("item is not valid UTF-8: {e}")))),
            };
            return Ok(Some(match self.framing {
                Framing::Raw => Ok(line.to_owned()),
                Framing::Json if line.trim().is_empty() => continue,
                Framing::Json => serde_json::from_str::<String>(line)
                    .map_err(|e| format!("item is not a JSON string: {e}")),
            }));
        }
    }
}

fn strip_line_end(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

/// Reads one line into `buf`, keeping at most `MAX_ITEM_BYTES` bytes of content; the rest of an
/// over-long line is read and discarded. Returns bytes consumed and whether the line overflowed.
fn read_bounded_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut overflowed = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, overflowed));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !overflowed {
            // Room for one byte past the limit plus the newline, so overflow is detectable.
            let room = (MAX_ITEM_BYTES + 2).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            let content = buf.len() - usize::from(buf.last() == Some(&b'\n'));
            if content > MAX_ITEM_BYTES {
                overflowed = true;
                buf.clear();
            }
        }
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, overflowed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], framing: Framing) -> Vec<Item> {
        let mut items = Items::new(input, framing);
        let mut out = Vec::new();
        while let Some(item) = items.next_item().unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn json_items_may_contain_newlines() {
        let got = collect(b"\"a\\nb\"\n\n\"c\"", Framing::Json);
        assert_eq!(got, vec![Ok("a\nb".to_owned()), Ok("c".to_owned())]);
    }

    #[test]
    fn malformed_json_is_an_error_item_and_reading_goes_on() {
        let got = collect(b"{\"x\":1}\nnot json\n\"ok\"\n", Framing::Json);
        assert!(got[0].is_err());
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok("ok".to_owned()));
    }

    #[test]
    fn raw_lines_and_crlf() {
        let got = collect(b"one\r\ntwo\n\nthree", Framing::Raw);
        assert_eq!(
            got,
            vec![
                Ok("one".into()),
                Ok("two".into()),
                Ok("".into()),
                Ok("three".into())
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_item() {
        let got = collect(b"\xff\xfe\nfine\n", Framing::Raw);
        assert!(got[0].as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(got[1], Ok("fine".to_owned()));
    }

    #[test]
    fn oversized_line_is_skipped_not_buffered() {
        let mut input = vec![b'a'; MAX_ITEM_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let got = collect(&input, Framing::Raw);
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap_err().contains("exceeds"));
        assert_eq!(got[1], Ok("next".to_owned()));
    }

    #[test]
    fn line_of_exactly_max_is_accepted() {
        let mut input = vec![b'a'; MAX_ITEM_BYTES];
        input.push(b'\n');
        let got = collect(&input, Framing::Raw);
        assert_eq!(got[0].as_ref().map(String::len), Ok(MAX_ITEM_BYTES));
    }
}
