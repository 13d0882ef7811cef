//! `file.read`, `file.write`, `file.edit`, `file.list`, `file.delete`: the agent's workspace.
//!
//! Guarantees: every agent-supplied path goes through `comis_sandbox::safe_path` beneath
//! `ctx.workspace`, and file contents are read and written only through
//! `comis_sandbox::open_beneath` (the final component opened relative to the directory the
//! walk holds, `O_NOFOLLOW`), so absolute paths elsewhere, `..`, encoded traversal and symlinks
//! leading out of the workspace are refused (`ToolError::Refused { layer: "safe_path" }`) and a
//! symlink swapped in after the check makes the open fail rather than lead outside. Only regular
//! files are read or written (a FIFO or device is refused before it is opened, and checked again
//! on the open descriptor). Reads return at most [`MAX_RESULT_CHARS`] characters per call (with
//! an offset to page on) and are marked external; writes are capped at [`MAX_WRITE_BYTES`].
//!
//! Does not: create missing parent directories (that would re-resolve a path from its string;
//! use `system.exec mkdir -p`), protect against a concurrent process inside the workspace
//! swapping a directory between `file.list`/`file.delete`'s check and their use (those two act
//! on the canonical path string; the only process that can write the workspace is the agent's
//! own sandboxed command, which is not running while a tool runs), or decide which files inside
//! the workspace an agent may touch (the tool policy's job).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use comis_sandbox::{OpenMode, SandboxError, open_beneath, safe_path};
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, MAX_RESULT_CHARS, blocking, invalid};
use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::provider::BoxFuture;

/// Largest file `file.write` writes and `file.edit` edits, in bytes.
pub const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;
/// Longest path argument, in bytes (`safe_path` has its own, equal limit).
pub const MAX_PATH_ARG_BYTES: usize = 4096;
/// Most entries `file.list` returns.
pub const MAX_LIST_ENTRIES: usize = 2000;
/// Deepest recursion of `file.list`.
const MAX_LIST_DEPTH: usize = 8;

/// Maps a sandbox error to what the model sees: traversal is a refusal by `safe_path`; a path
/// that merely does not exist or is not a directory is a plain failure.
pub(crate) fn sandbox_err(e: SandboxError) -> ToolError {
    match e {
        SandboxError::PathRejected { path, reason } if reason.is_traversal() => {
            ToolError::Refused {
                layer: "safe_path",
                reason: format!("path {path:?}: {reason}"),
            }
        }
        SandboxError::PathRejected { path, reason } => {
            ToolError::Failed(format!("path {path:?}: {reason}"))
        }
        SandboxError::Blocked(reason) => ToolError::Refused {
            layer: "exec_validator",
            reason,
        },
        SandboxError::ExecDisabled(reason) => ToolError::Refused {
            layer: "sandbox",
            reason,
        },
        other => ToolError::Failed(other.to_string()),
    }
}

fn io_err(what: &str, e: &std::io::Error) -> ToolError {
    ToolError::Failed(format!("{what}: {e}"))
}

fn check_path_arg(path: &str) -> Result<(), ToolError> {
    args::cap("path", path, MAX_PATH_ARG_BYTES, false)
}

/// Refuses a path that exists and is not a regular file, before anything opens it (opening a
/// FIFO would block the tool).
fn regular_or_missing(ws: &Path, path: &str) -> Result<bool, ToolError> {
    let resolved = safe_path(ws, path).map_err(sandbox_err)?;
    match std::fs::symlink_metadata(&resolved) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(_) => Err(ToolError::Failed(format!("{path:?} is not a regular file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("checking the file", &e)),
    }
}

fn open_regular(ws: &Path, path: &str, mode: OpenMode) -> Result<std::fs::File, ToolError> {
    let f = open_beneath(ws, path, mode).map_err(sandbox_err)?;
    let m = f.metadata().map_err(|e| io_err("checking the file", &e))?;
    if !m.is_file() {
        return Err(ToolError::Failed(format!("{path:?} is not a regular file")));
    }
    Ok(f)
}

/// Reads the whole (bounded) file as UTF-8 text, for edits.
fn read_whole(ws: &Path, path: &str) -> Result<String, ToolError> {
    if !regular_or_missing(ws, path)? {
        return Err(ToolError::Failed(format!("{path:?} does not exist")));
    }
    let f = open_regular(ws, path, OpenMode::Read)?;
    let mut buf = Vec::new();
    f.take(MAX_WRITE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("reading the file", &e))?;
    if buf.len() > MAX_WRITE_BYTES {
        return Err(ToolError::Failed(format!(
            "{path:?} is larger than {MAX_WRITE_BYTES} bytes"
        )));
    }
    String::from_utf8(buf).map_err(|_| ToolError::Failed(format!("{path:?} is not UTF-8 text")))
}

fn write_file(ws: &Path, path: &str, content: &str, append: bool) -> Result<(), ToolError> {
    regular_or_missing(ws, path)?;
    let mode = if append {
        OpenMode::Append
    } else {
        OpenMode::WriteTruncate
    };
    let mut f = open_regular(ws, path, mode)?;
    if append {
        let len = f
            .metadata()
            .map_err(|e| io_err("checking the file", &e))?
            .len();
        if len.saturating_add(content.len() as u64) > MAX_WRITE_BYTES as u64 {
            return Err(invalid(&format!(
                "appending would make the file larger than {MAX_WRITE_BYTES} bytes"
            )));
        }
    }
    f.write_all(content.as_bytes())
        .map_err(|e| io_err("writing the file", &e))
}

// ---------------------------------------------------------------------------------------------

/// `file.read`: a text file of the workspace, paged.
#[derive(Debug, Default)]
pub struct FileRead;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    max_chars: Option<usize>,
}

fn read_page(ws: &Path, path: &str, offset: u64, max_chars: usize) -> Result<String, ToolError> {
    if !regular_or_missing(ws, path)? {
        return Err(ToolError::Failed(format!("{path:?} does not exist")));
    }
    let mut f = open_regular(ws, path, OpenMode::Read)?;
    let size = f
        .metadata()
        .map_err(|e| io_err("checking the file", &e))?
        .len();
    if offset > size {
        return Err(invalid(&format!(
            "offset {offset} is past the end of the file ({size} bytes)"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("seeking in the file", &e))?;
    let mut buf = Vec::new();
    // At most four bytes per character, plus three for a character cut at the start.
    f.take(max_chars as u64 * 4 + 3)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("reading the file", &e))?;
    // A page may start inside a character: skip its continuation bytes.
    let skip = buf
        .iter()
        .take(3)
        .take_while(|b| (0x80..0xC0).contains(*b))
        .count();
    let body = &buf[skip..];
    let text = match std::str::from_utf8(body) {
        Ok(s) => s,
        // Cut inside the last character: keep what is complete.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err(ToolError::Failed(format!("{path:?} is not UTF-8 text"))),
    };
    if text.contains('\0') {
        return Err(ToolError::Failed(format!(
            "{path:?} is a binary file (it contains NUL bytes)"
        )));
    }
    let end = text
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(i, _)| i);
    let next = offset + (skip + end) as u64;
    let mut out = text[..end].to_owned();
    if next < size || offset > 0 {
        out.push_str(&format!(
            "\n[file.read: bytes {offset}..{next} of {size}{}]",
            if next < size {
                format!("; call again with offset {next} for more")
            } else {
                String::new()
            }
        ));
    }
    Ok(out)
}

impl Tool for FileRead {
    fn action(&self) -> &'static str {
        "file.read"
    }
    fn description(&self) -> &'static str {
        "Read a UTF-8 text file in your workspace. Long files are returned in pages: pass the \
         offset given at the end of a page to read on."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace."},
                "offset": {"type": "integer", "minimum": 0, "description": "Byte offset to start at."},
                "maxChars": {"type": "integer", "minimum": 1, "maximum": MAX_RESULT_CHARS}
            }),
            &["path"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: ReadArgs = args::parse(args)?;
            check_path_arg(&a.path)?;
            let max = a.max_chars.unwrap_or(MAX_RESULT_CHARS);
            if max == 0 || max > MAX_RESULT_CHARS {
                return Err(invalid(&format!(
                    "`maxChars` must be between 1 and {MAX_RESULT_CHARS}"
                )));
            }
            let ws = ctx.workspace.clone();
            let text = blocking(move || read_page(&ws, &a.path, a.offset, max)).await?;
            Ok(ToolOutput::external(text))
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `file.write`: create or replace (or append to) a file of the workspace.
#[derive(Debug, Default)]
pub struct FileWrite;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WriteArgs {
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
}

impl Tool for FileWrite {
    fn action(&self) -> &'static str {
        "file.write"
    }
    fn description(&self) -> &'static str {
        "Write a UTF-8 text file in your workspace (created with mode 0600, replaced if it \
         exists, or appended to with append: true). The parent directory must exist."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace."},
                "content": {"type": "string", "maxLength": MAX_WRITE_BYTES},
                "append": {"type": "boolean", "default": false}
            }),
            &["path", "content"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: WriteArgs = args::parse(args)?;
            check_path_arg(&a.path)?;
            args::cap("content", &a.content, MAX_WRITE_BYTES, true)?;
            let ws = ctx.workspace.clone();
            let n = a.content.len();
            let shown = comis_guard::unicode::display_safe(&a.path, 200);
            blocking(move || write_file(&ws, &a.path, &a.content, a.append)).await?;
            Ok(ToolOutput::internal(format!("wrote {n} bytes to {shown}")))
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `file.edit`: replace one exact, unique occurrence of a string in a file.
#[derive(Debug, Default)]
pub struct FileEdit;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EditArgs {
    path: String,
    old_text: String,
    new_text: String,
}

fn edit(ws: &Path, a: &EditArgs) -> Result<(), ToolError> {
    let content = read_whole(ws, &a.path)?;
    let count = content.matches(a.old_text.as_str()).count();
    match count {
        0 => Err(ToolError::Failed(
            "`oldText` was not found in the file (it must match exactly, whitespace included)"
                .into(),
        )),
        1 => {
            let edited = content.replacen(a.old_text.as_str(), &a.new_text, 1);
            if edited.len() > MAX_WRITE_BYTES {
                return Err(invalid(&format!(
                    "the edited file would be larger than {MAX_WRITE_BYTES} bytes"
                )));
            }
            write_file(ws, &a.path, &edited, false)
        }
        n => Err(invalid(&format!(
            "`oldText` matches {n} times; include more surrounding text so it matches once"
        ))),
    }
}

impl Tool for FileEdit {
    fn action(&self) -> &'static str {
        "file.edit"
    }
    fn description(&self) -> &'static str {
        "Edit a text file in your workspace: replace the one exact occurrence of oldText with \
         newText. Fails if oldText is missing or occurs more than once."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace."},
                "oldText": {"type": "string", "minLength": 1},
                "newText": {"type": "string"}
            }),
            &["path", "oldText", "newText"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: EditArgs = args::parse(args)?;
            check_path_arg(&a.path)?;
            if a.old_text.is_empty() {
                return Err(invalid("`oldText` is empty"));
            }
            args::cap("oldText", &a.old_text, MAX_WRITE_BYTES, false)?;
            args::cap("newText", &a.new_text, MAX_WRITE_BYTES, true)?;
            let ws = ctx.workspace.clone();
            let shown = comis_guard::unicode::display_safe(&a.path, 200);
            blocking(move || edit(&ws, &a)).await?;
            Ok(ToolOutput::internal(format!(
                "edited {shown} (1 replacement)"
            )))
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `file.list`: the entries of a workspace directory.
#[derive(Debug, Default)]
pub struct FileList;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    max_entries: Option<usize>,
}

fn list(ws: &Path, path: &str, recursive: bool, max: usize) -> Result<String, ToolError> {
    let dir = safe_path(ws, path).map_err(sandbox_err)?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_err("listing", &e))?;
    if !meta.is_dir() {
        return Err(ToolError::Failed(format!("{path:?} is not a directory")));
    }
    let mut lines = Vec::new();
    let mut more = false;
    walk(
        &dir,
        &PathBuf::new(),
        recursive,
        0,
        max,
        &mut lines,
        &mut more,
    )?;
    if lines.is_empty() {
        lines.push("(empty directory)".to_owned());
    }
    if more {
        lines.push(format!("[file.list: stopped at {max} entries]"));
    }
    Ok(lines.join("\n"))
}

fn walk(
    dir: &Path,
    rel: &Path,
    recursive: bool,
    depth: usize,
    max: usize,
    lines: &mut Vec<String>,
    more: &mut bool,
) -> Result<(), ToolError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io_err("listing", &e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if lines.len() >= max {
            *more = true;
            return Ok(());
        }
        let name = rel.join(e.file_name());
        // Names are untrusted text: control characters could forge lines of the listing.
        let shown = comis_guard::unicode::display_safe(&name.to_string_lossy(), 300);
        // `file_type` does not follow symlinks: a link is listed, never entered.
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            lines.push(format!("{shown}/"));
            if recursive && depth + 1 < MAX_LIST_DEPTH {
                walk(&e.path(), &name, recursive, depth + 1, max, lines, more)?;
            }
        } else if ft.is_symlink() {
            lines.push(format!("{shown}@"));
        } else if ft.is_file() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            lines.push(format!("{shown}\t{len}"));
        } else {
            lines.push(format!("{shown}\t(special file)"));
        }
    }
    Ok(())
}

impl Tool for FileList {
    fn action(&self) -> &'static str {
        "file.list"
    }
    fn description(&self) -> &'static str {
        "List a directory of your workspace: directories end in '/', symlinks in '@', files \
         show their size in bytes."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "path": {"type": "string", "description": "Directory relative to the workspace (default: the workspace)."},
                "recursive": {"type": "boolean", "default": false},
                "maxEntries": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_ENTRIES}
            }),
            &[],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: ListArgs = args::parse(args)?;
            let path = a.path.unwrap_or_default();
            if !path.is_empty() {
                check_path_arg(&path)?;
            }
            let max = a.max_entries.unwrap_or(500);
            if max == 0 || max > MAX_LIST_ENTRIES {
                return Err(invalid(&format!(
                    "`maxEntries` must be between 1 and {MAX_LIST_ENTRIES}"
                )));
            }
            let ws = ctx.workspace.clone();
            let text = blocking(move || list(&ws, &path, a.recursive, max)).await?;
            let (text, _) = args::truncate(&text, MAX_RESULT_CHARS);
            // File names are content someone else may have chosen (a cloned repository).
            Ok(ToolOutput::external(text))
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `file.delete`: remove a file, a symlink or an empty directory of the workspace.
#[derive(Debug, Default)]
pub struct FileDelete;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteArgs {
    path: String,
}

fn delete(ws: &Path, path: &str) -> Result<(), ToolError> {
    // The whole path must pass (traversal, escaping symlinks) ...
    safe_path(ws, path).map_err(sandbox_err)?;
    // ... and the entry removed is the last component itself, not what a symlink points to.
    let p = Path::new(path);
    let name = match p.components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        _ => {
            return Err(invalid(
                "the path must end in a file or directory name (not '.', '..' or '/')",
            ));
        }
    };
    let parent_arg = p
        .parent()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = safe_path(ws, &parent_arg).map_err(sandbox_err)?;
    let target = parent.join(&name);
    let meta = std::fs::symlink_metadata(&target).map_err(|e| io_err("deleting", &e))?;
    if meta.is_dir() {
        std::fs::remove_dir(&target).map_err(|e| io_err("deleting the directory", &e))
    } else {
        std::fs::remove_file(&target).map_err(|e| io_err("deleting", &e))
    }
}

impl Tool for FileDelete {
    fn action(&self) -> &'static str {
        "file.delete"
    }
    fn description(&self) -> &'static str {
        "Delete a file, a symlink or an empty directory in your workspace. Needs an operator's \
         approval."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace."}
            }),
            &["path"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: DeleteArgs = args::parse(args)?;
            check_path_arg(&a.path)?;
            let ws = ctx.workspace.clone();
            let shown = comis_guard::unicode::display_safe(&a.path, 200);
            blocking(move || delete(&ws, &a.path)).await?;
            Ok(ToolOutput::internal(format!("deleted {shown}")))
        })
    }
}
