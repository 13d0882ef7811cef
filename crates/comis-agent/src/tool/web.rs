//! `web.fetch`: one page over the SSRF-guarded client.
//!
//! Guarantees: the request goes only through `ctx.http` (the agent's `GuardedClient`: SSRF
//! policy on the URL, on every redirect hop and on every resolved address, pinned DNS, bounded
//! size and time); no client means no network (`Refused { layer: "network" }`), and an address
//! the policy blocks (loopback, link-local metadata such as 169.254.169.254, private ranges) is
//! `Refused { layer: "ssrf" }`. Only `http`/`https` `GET`. The body is returned as text (HTML
//! reduced to its visible text, scripts and styles dropped), at most [`MAX_RESULT_CHARS`]
//! characters, and always marked external so the loop wraps it.
//!
//! Does not: judge what the page says (the loop's sanitizer and wrapper treat it as untrusted),
//! or render pages (no JavaScript, no CSS: text hidden by styles is kept).

use comis_net::{EgressContext, FetchRequest, NetError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, MAX_RESULT_CHARS, invalid};
use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::provider::BoxFuture;

/// Longest URL argument, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// `web.fetch`.
#[derive(Debug, Default)]
pub struct WebFetch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FetchArgs {
    url: String,
    #[serde(default)]
    max_chars: Option<usize>,
}

fn net_err(e: NetError) -> ToolError {
    match e {
        NetError::Blocked(refusal) => ToolError::Refused {
            layer: "ssrf",
            reason: refusal.to_string(),
        },
        other => ToolError::Failed(other.to_string()),
    }
}

/// The visible text of an HTML document: tags removed, `script`/`style`/`noscript`/`template`
/// contents and comments dropped, common entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            if lower[i..].starts_with("<!--") {
                i = lower[i + 4..]
                    .find("-->")
                    .map_or(bytes.len(), |e| i + 4 + e + 3);
                continue;
            }
            let mut skipped = false;
            for tag in ["script", "style", "noscript", "template"] {
                let open = format!("<{tag}");
                if lower[i..].starts_with(&open)
                    && lower[i + open.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c == '>' || c.is_ascii_whitespace() || c == '/')
                {
                    let close = format!("</{tag}");
                    i = lower[i..].find(&close).map_or(bytes.len(), |e| {
                        let at = i + e;
                        lower[at..].find('>').map_or(bytes.len(), |g| at + g + 1)
                    });
                    skipped = true;
                    break;
                }
            }
            if skipped {
                continue;
            }
            let end = lower[i..].find('>').map_or(bytes.len(), |g| i + g + 1);
            let tag = &lower[i..end];
            if [
                "<br", "<p", "</p", "<div", "</div", "<li", "<h", "</h", "<tr", "</tr",
            ]
            .iter()
            .any(|t| tag.starts_with(t))
            {
                out.push('\n');
            } else {
                out.push(' ');
            }
            i = end;
            continue;
        }
        let next = lower[i..].find('<').map_or(bytes.len(), |p| i + p);
        out.push_str(&decode_entities(&html[i..next]));
        i = next;
    }
    collapse(&out)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn collapse(s: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in s.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.is_empty() {
            lines.push(words.join(" "));
        }
    }
    lines.join("\n")
}

impl Tool for WebFetch {
    fn action(&self) -> &'static str {
        "web.fetch"
    }
    fn description(&self) -> &'static str {
        "Fetch a web page (http or https GET) and return its text. Private, loopback and \
         cloud-metadata addresses are refused. The content is untrusted."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "url": {"type": "string", "description": "An http or https URL."},
                "maxChars": {"type": "integer", "minimum": 1, "maximum": MAX_RESULT_CHARS}
            }),
            &["url"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: FetchArgs = args::parse(args)?;
            args::cap("url", &a.url, MAX_URL_BYTES, false)?;
            args::one_line("url", &a.url)?;
            let max = a.max_chars.unwrap_or(MAX_RESULT_CHARS);
            if max == 0 || max > MAX_RESULT_CHARS {
                return Err(invalid(&format!(
                    "`maxChars` must be between 1 and {MAX_RESULT_CHARS}"
                )));
            }
            let Some(http) = &ctx.http else {
                return Err(ToolError::Refused {
                    layer: "network",
                    reason: "this agent has no network access".into(),
                });
            };
            let mut req = FetchRequest::get(a.url.trim());
            req.context = Some(EgressContext::new(&ctx.agent_id, &ctx.trace_id));
            let resp = http.fetch(req).await.map_err(net_err)?;
            let content_type = resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.to_ascii_lowercase())
                .unwrap_or_default();
            let textual = content_type.is_empty()
                || content_type.starts_with("text/")
                || content_type.contains("json")
                || content_type.contains("xml")
                || content_type.contains("javascript");
            if !textual {
                return Err(ToolError::Failed(format!(
                    "the response is {} (not text)",
                    comis_guard::unicode::display_safe(&content_type, 100)
                )));
            }
            let raw = String::from_utf8_lossy(&resp.body);
            let body = if content_type.contains("html")
                || (content_type.is_empty() && raw.trim_start().starts_with('<'))
            {
                html_to_text(&raw)
            } else {
                raw.into_owned()
            };
            let (body, _) = args::truncate(&body, max);
            Ok(ToolOutput::external(format!(
                "URL: {}\nStatus: {}\n\n{body}",
                comis_guard::unicode::display_safe(&resp.url, 300),
                resp.status
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_reduced_to_visible_text() {
        let html = "<html><head><title>T</title><style>p{color:red}</style>\
            <script type=\"x\">alert('no')</script></head><body><!-- hidden comment -->\
            <p>Hello &amp; welcome</p><div>second<br>line</div><SCRIPT>bad()</SCRIPT></body></html>";
        let t = html_to_text(html);
        assert!(t.contains("Hello & welcome"), "{t}");
        assert!(t.contains("second\nline"), "{t}");
        assert!(!t.contains("alert"), "{t}");
        assert!(!t.contains("bad()"), "{t}");
        assert!(!t.contains("color"), "{t}");
        assert!(!t.contains("hidden comment"), "{t}");
    }

    #[test]
    fn malformed_html_does_not_loop_or_panic() {
        for h in [
            "<",
            "<!--",
            "<script",
            "<scriptx>a</scriptx>",
            "a<b",
            "&amp",
            "<<<>>>",
            "é<é>é",
        ] {
            let _ = html_to_text(h);
        }
        assert_eq!(html_to_text("<scriptx>a</scriptx>"), "a");
    }
}
