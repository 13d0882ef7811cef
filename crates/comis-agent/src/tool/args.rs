//! Strict argument handling shared by every built-in tool.
//!
//! Guarantees: arguments reach a tool only as a typed struct that was parsed from a JSON object
//! with no unknown fields (`deny_unknown_fields` on every argument type), with no NUL byte in any
//! string anywhere in the document, and under [`MAX_ARGS_BYTES`] in total. String fields are then
//! held to per-field caps by [`cap`]. A refusal is a [`ToolError::InvalidArguments`] whose text is
//! shortened and escaped, so hostile input cannot forge lines in the model's view or a log.
//!
//! Does not: judge the meaning of an argument (paths, URLs, commands): each tool sends those to
//! its security layer.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ToolError;

/// Largest argument document a tool accepts, in bytes of string content plus keys (a file
/// write of the largest allowed content still fits).
pub const MAX_ARGS_BYTES: usize = 8 * 1024 * 1024;

/// Largest text a tool returns to the model, in characters (`maxToolResultChars` default).
pub const MAX_RESULT_CHARS: usize = 50_000;

/// Parses `args` into `T` after the document-wide checks.
pub fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    // Providers send `{}` or nothing for tools without arguments; `null` means the same.
    let args = if args.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        args
    };
    if !args.is_object() {
        return Err(invalid("arguments must be a JSON object"));
    }
    let mut total = 0usize;
    scan(&args, &mut total)?;
    serde_json::from_value(args).map_err(|e| invalid(&e.to_string()))
}

/// Counts string bytes and refuses NUL anywhere (keys included).
fn scan(v: &Value, total: &mut usize) -> Result<(), ToolError> {
    match v {
        Value::String(s) => check_str(s, total),
        Value::Array(a) => a.iter().try_for_each(|x| scan(x, total)),
        Value::Object(m) => m.iter().try_for_each(|(k, x)| {
            check_str(k, total)?;
            scan(x, total)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn check_str(s: &str, total: &mut usize) -> Result<(), ToolError> {
    *total = total.saturating_add(s.len());
    if s.contains('\0') {
        return Err(invalid("a string contains a NUL byte"));
    }
    if *total > MAX_ARGS_BYTES {
        return Err(invalid(&format!(
            "arguments are larger than {MAX_ARGS_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Refuses `value` when it is longer than `max_bytes` (and, unless `allow_empty`, when empty).
pub fn cap(field: &str, value: &str, max_bytes: usize, allow_empty: bool) -> Result<(), ToolError> {
    if !allow_empty && value.trim().is_empty() {
        return Err(invalid(&format!("`{field}` is empty")));
    }
    if value.len() > max_bytes {
        return Err(invalid(&format!(
            "`{field}` is {} bytes long; the limit is {max_bytes}",
            value.len()
        )));
    }
    Ok(())
}

/// Refuses control characters (line breaks included) in a one-line field such as an id.
pub fn one_line(field: &str, value: &str) -> Result<(), ToolError> {
    if value.chars().any(char::is_control) {
        return Err(invalid(&format!("`{field}` contains control characters")));
    }
    Ok(())
}

/// Refuses anything but `[A-Za-z0-9_-]` (ids of agents, tokens, channels).
pub fn ident(field: &str, value: &str, max_bytes: usize) -> Result<(), ToolError> {
    cap(field, value, max_bytes, false)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(invalid(&format!(
            "`{field}` may contain only letters, digits, '_' and '-'"
        )));
    }
    Ok(())
}

/// The JSON Schema of an arguments object: `properties`, the `required` names, and no other
/// field — what `deny_unknown_fields` on the argument type enforces.
pub fn object_schema(properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// The JSON Schema of a string that [`ident`] accepts with this `max_bytes`.
pub fn ident_schema(max_bytes: usize) -> Value {
    json!({"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{max_bytes}}}$")})
}

/// An invalid-arguments error with display-safe text.
pub fn invalid(msg: &str) -> ToolError {
    ToolError::InvalidArguments(comis_guard::unicode::display_safe(msg, 500))
}

/// Cuts `text` to at most `max` characters, saying so at the end.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        None => (text.to_owned(), false),
        Some((at, _)) => {
            let total = text.chars().count();
            (
                format!(
                    "{}\n[truncated: {max} of {total} characters shown]",
                    &text[..at]
                ),
                true,
            )
        }
    }
}

/// Runs blocking work (filesystem, processes, SQLite) off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, ToolError>
where
    F: FnOnce() -> Result<T, ToolError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::Failed(format!("the tool's worker stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn refuses_malformed_documents() {
        assert!(parse::<A>(json!({"name": "x"})).is_ok());
        for bad in [
            json!([1, 2]),
            json!("name"),
            json!({"name": 5}),
            json!({}),
            json!({"name": "x", "extra": 1}),
            json!({"name": "a\0b"}),
            json!({"name": "x", "n\0": 1}),
            json!({"name": "x".repeat(MAX_ARGS_BYTES + 1)}),
        ] {
            assert!(
                matches!(parse::<A>(bad.clone()), Err(ToolError::InvalidArguments(_))),
                "{bad:.60}"
            );
        }
    }

    #[test]
    fn caps_and_identifiers() {
        assert!(cap("f", "abc", 3, false).is_ok());
        assert!(cap("f", "abcd", 3, false).is_err());
        assert!(cap("f", "  ", 3, false).is_err());
        assert!(ident("id", "tok_1-a", 64).is_ok());
        assert!(ident("id", "tok/../x", 64).is_err());
        assert!(one_line("chat", "a\nb").is_err());
    }

    #[test]
    fn truncation_is_marked_and_char_safe() {
        let (t, cut) = truncate("ééééé", 2);
        assert!(cut);
        assert!(t.starts_with("éé\n[truncated: 2 of 5"));
        assert_eq!(truncate("abc", 3), ("abc".to_owned(), false));
    }
}
