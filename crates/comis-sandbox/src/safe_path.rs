//! `safe_path(root, path)`: the one way an agent-supplied path reaches the filesystem.
//!
//! **Defends against** an agent (steered by whatever it read) naming a file outside its
//! workspace: absolute paths elsewhere, `..` climbing out, traversal hidden behind percent
//! encoding (once, twice, `%uXXXX`, overlong UTF-8), backslashes or look-alike Unicode dots and
//! slashes, NUL bytes and control characters that truncate or split a path in other tools, and
//! symlinks inside the workspace that point out of it — including a symlink swapped in between
//! the check and the use.
//!
//! **Guarantees.** A path is accepted only if every reading of it stays inside `root`: the
//! literal bytes (what the kernel will open), every percent-decoding of it, its backslash and
//! Unicode-folded forms. The literal reading is then resolved by the kernel one component at a
//! time, each step relative to the directory already held open (`O_PATH|O_NOFOLLOW`), `..`
//! popping back to a held directory, symlinks read from their own descriptor and resolved by the
//! same walk (at most 40). Nothing is re-resolved from a string, so renaming or swapping a
//! component during the walk cannot lead outside. Where the kernel has `openat2`, the result is
//! verified once more with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`. [`open_beneath`] opens the
//! final component relative to the held parent directory with `O_NOFOLLOW`, so the file that is
//! used is the file that was checked. The returned path is canonical and inside the canonical
//! root; the part that does not exist yet is returned as plain names under the last existing
//! directory.
//!
//! **Does not** protect a path that is later re-resolved from its string by someone else
//! (a returned `PathBuf` passed to another program can race); use [`open_beneath`] for
//! file access. It does not judge *which* files inside the root may be read: that is the tool
//! policy's job. Paths are taken as UTF-8 text, as agents produce them.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};

use comis_guard::{Finding, Severity};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::SandboxError;

/// Longest agent path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single component accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Symlinks followed in one resolution before giving up (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;
/// Percent-decoding rounds examined; a path still changing after this many is refused.
const MAX_DECODE_ROUNDS: usize = 4;

/// Why a path was refused. Each has a stable machine name (used as the finding name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRejection {
    /// The path contains a NUL byte (literally or once decoded).
    NulByte,
    /// The path contains a control character (literally or once decoded).
    ControlChar,
    /// The path is longer than [`MAX_PATH_BYTES`] or has a component over
    /// [`MAX_COMPONENT_BYTES`].
    TooLong,
    /// An absolute path that is not inside the root.
    AbsoluteOutsideRoot,
    /// `..` components climb above the root.
    ParentEscape,
    /// Traversal (`..`, an absolute path or a NUL) appears once the path is percent-decoded.
    EncodedTraversal,
    /// Percent-encoding that decodes to invalid UTF-8 (e.g. overlong `%c0%ae`) or that keeps
    /// decoding past the examined rounds.
    InvalidEncoding,
    /// Traversal written with backslashes, a Windows drive or a UNC prefix.
    BackslashTraversal,
    /// Traversal written with Unicode look-alikes of `.`, `/` or `\`.
    UnicodeTraversal,
    /// A component that starts with `..` but is not `..` (`...`, `..;`, `..0x2f…`): harmless
    /// to Linux, traversal to other parsers (Windows, Java servlet containers, lax decoders)
    /// a path may reach.
    DotDotVariant,
    /// A symlink inside the root points outside it.
    SymlinkEscape,
    /// More than 40 symlinks on the way (a loop).
    SymlinkLoop,
    /// `..` after a component that does not exist: it cannot be resolved safely.
    UnresolvableParent,
    /// A component on the way is a file, not a directory.
    NotADirectory,
    /// The root itself cannot be opened as a directory.
    BadRoot,
    /// The filesystem refused a step for another reason.
    Io(String),
}

impl PathRejection {
    /// The stable name of this rejection (the finding's `name`).
    pub fn name(&self) -> &'static str {
        match self {
            PathRejection::NulByte => "nul_byte",
            PathRejection::ControlChar => "control_char",
            PathRejection::TooLong => "too_long",
            PathRejection::AbsoluteOutsideRoot => "absolute_outside_root",
            PathRejection::ParentEscape => "parent_escape",
            PathRejection::EncodedTraversal => "encoded_traversal",
            PathRejection::InvalidEncoding => "invalid_encoding",
            PathRejection::BackslashTraversal => "backslash_traversal",
            PathRejection::UnicodeTraversal => "unicode_traversal",
            PathRejection::DotDotVariant => "dotdot_variant",
            PathRejection::SymlinkEscape => "symlink_escape",
            PathRejection::SymlinkLoop => "symlink_loop",
            PathRejection::UnresolvableParent => "unresolvable_parent",
            PathRejection::NotADirectory => "not_a_directory",
            PathRejection::BadRoot => "bad_root",
            PathRejection::Io(_) => "io_error",
        }
    }

    /// Whether this rejection is a traversal attempt (as opposed to a path that is merely
    /// unusable). Traversal findings are critical; the others are warnings.
    pub fn is_traversal(&self) -> bool {
        !matches!(
            self,
            PathRejection::NotADirectory | PathRejection::BadRoot | PathRejection::Io(_)
        )
    }

    /// The finding that reports this rejection.
    pub fn finding(&self) -> Finding {
        let severity = if self.is_traversal() {
            Severity::Critical
        } else {
            Severity::Warning
        };
        Finding::new(self.name(), "path_traversal", severity)
    }
}

impl std::fmt::Display for PathRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            PathRejection::NulByte => "the path contains a NUL byte",
            PathRejection::ControlChar => "the path contains a control character",
            PathRejection::TooLong => "the path or one of its components is too long",
            PathRejection::AbsoluteOutsideRoot => "an absolute path outside the root",
            PathRejection::ParentEscape => "`..` climbs out of the root",
            PathRejection::EncodedTraversal => "percent-encoded traversal",
            PathRejection::InvalidEncoding => {
                "percent-encoding that decodes to invalid UTF-8 or nests too deep"
            }
            PathRejection::BackslashTraversal => "traversal written with backslashes",
            PathRejection::UnicodeTraversal => "traversal written with Unicode look-alikes",
            PathRejection::DotDotVariant => {
                "a component starting with `..` that other path parsers read as `..`"
            }
            PathRejection::SymlinkEscape => "a symlink points outside the root",
            PathRejection::SymlinkLoop => "too many symlinks (a loop)",
            PathRejection::UnresolvableParent => "`..` after a component that does not exist",
            PathRejection::NotADirectory => "a component on the way is not a directory",
            PathRejection::BadRoot => "the root is not an accessible directory",
            PathRejection::Io(e) => return write!(f, "the filesystem refused a step: {e}"),
        };
        f.write_str(text)
    }
}

/// What `comis guard path` prints for one item: the verdict, why, the canonical path when
/// allowed, and the findings in the common guard shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathVerdict {
    pub allowed: bool,
    pub reason: Option<String>,
    pub path: Option<String>,
    pub findings: Vec<Finding>,
}

/// Checks `path` against `root` and reports the verdict (never fails: a refusal is a verdict).
pub fn check_path(root: &Path, path: &str) -> PathVerdict {
    match resolve(root, path) {
        Ok(resolved) => PathVerdict {
            allowed: true,
            reason: None,
            path: Some(resolved.path.to_string_lossy().into_owned()),
            findings: Vec::new(),
        },
        Err(rejections) => PathVerdict {
            allowed: false,
            reason: rejections.first().map(ToString::to_string),
            path: None,
            findings: rejections.iter().map(PathRejection::finding).collect(),
        },
    }
}

/// Resolves `path` (relative to `root`, or absolute inside it) to its canonical path inside
/// the canonical root, or refuses it. See the module documentation for what is checked.
pub fn safe_path(root: &Path, path: &str) -> Result<PathBuf, SandboxError> {
    resolve(root, path)
        .map(|r| r.path)
        .map_err(|mut rejections| SandboxError::PathRejected {
            path: display_path(path),
            reason: rejections.swap_remove(0),
        })
}

/// How [`open_beneath`] opens the final component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read an existing file.
    Read,
    /// Write an existing file or create it (mode 0600), truncating it.
    WriteTruncate,
    /// Append to an existing file or create it (mode 0600).
    Append,
}

/// Opens `path` inside `root` race-free: the path is resolved as by [`safe_path`] and the final
/// component is opened relative to the directory descriptor the walk holds, with `O_NOFOLLOW`.
/// A symlink swapped in after the check makes the open fail; it never leads outside.
pub fn open_beneath(root: &Path, path: &str, mode: OpenMode) -> Result<File, SandboxError> {
    let reject = |reason| SandboxError::PathRejected {
        path: display_path(path),
        reason,
    };
    let resolved = resolve(root, path).map_err(|mut r| SandboxError::PathRejected {
        path: display_path(path),
        reason: r.swap_remove(0),
    })?;
    let (parent, name) = match (resolved.missing.as_slice(), resolved.last_name) {
        ([], Some(name)) => (resolved.parent_fd, name),
        ([only], _) if mode != OpenMode::Read => (resolved.leaf_fd, only.clone()),
        ([], None) => return Err(reject(PathRejection::Io("the path names the root".into()))),
        _ => {
            return Err(reject(PathRejection::Io(
                "no such file or directory".into(),
            )));
        }
    };
    let base = OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY;
    let flags = match mode {
        OpenMode::Read => base | OFlags::RDONLY,
        OpenMode::WriteTruncate => base | OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        OpenMode::Append => base | OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
    };
    let fd = rustix::fs::openat(&parent, name.as_bytes(), flags, Mode::from_raw_mode(0o600))
        .map_err(|e| match e {
            Errno::LOOP => reject(PathRejection::SymlinkEscape),
            e => reject(PathRejection::Io(e.to_string())),
        })?;
    Ok(File::from(fd))
}

/// A path shown in an error: the agent's text, shortened and with control characters escaped
/// so it cannot forge log lines.
fn display_path(path: &str) -> String {
    let mut out: String = path
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if path.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The outcome of a successful resolution.
struct Resolved {
    /// Canonical path (existing part resolved, missing tail appended).
    path: PathBuf,
    /// The deepest existing component (the root when nothing below it exists).
    leaf_fd: OwnedFd,
    /// The directory holding `leaf_fd` (the root when the leaf is the root).
    parent_fd: OwnedFd,
    /// The name of the leaf in `parent_fd`; `None` when the leaf is the root.
    last_name: Option<String>,
    /// Components below the leaf that do not exist (plain names).
    missing: Vec<String>,
}

fn resolve(root: &Path, path: &str) -> Result<Resolved, Vec<PathRejection>> {
    let problems = static_checks(path);
    if !problems.is_empty() {
        return Err(problems);
    }
    let root_canon = std::fs::canonicalize(root).map_err(|_| vec![PathRejection::BadRoot])?;
    let relative: &str = if path.starts_with('/') {
        strip_root(path, root, &root_canon)
            .ok_or_else(|| vec![PathRejection::AbsoluteOutsideRoot])?
    } else {
        path
    };
    let root_fd = rustix::fs::open(
        &root_canon,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| vec![PathRejection::BadRoot])?;
    let walked = walk(&root_fd, &root_canon, relative).map_err(|r| vec![r])?;
    verify_with_openat2(&root_fd, &walked.names).map_err(|r| vec![r])?;

    let mut canonical = root_canon.clone();
    canonical.extend(walked.names.iter().chain(walked.missing.iter()));
    let (leaf_fd, parent_fd, last_name) = match walked.stack.len() {
        0 => (clone_fd(&root_fd)?, root_fd, None),
        n => {
            let mut stack = walked.stack;
            let leaf = stack.pop().map(|(fd, _)| fd);
            let parent = if n >= 2 {
                stack.pop().map(|(fd, _)| fd)
            } else {
                Some(root_fd)
            };
            match (leaf, parent) {
                (Some(l), Some(p)) => (l, p, walked.names.last().cloned()),
                _ => return Err(vec![PathRejection::Io("lost a directory".into())]),
            }
        }
    };
    Ok(Resolved {
        path: canonical,
        leaf_fd,
        parent_fd,
        last_name,
        missing: walked.missing,
    })
}

fn clone_fd(fd: &OwnedFd) -> Result<OwnedFd, Vec<PathRejection>> {
    fd.try_clone()
        .map_err(|e| vec![PathRejection::Io(e.to_string())])
}

/// For an absolute agent path, the part below the root (as given or canonical), or `None` when
/// it is outside. The check is by whole components, so `/work/ws-evil` is not inside `/work/ws`.
fn strip_root<'a>(path: &'a str, root: &Path, root_canon: &Path) -> Option<&'a str> {
    for candidate in [root, root_canon] {
        let Some(prefix) = candidate.to_str() else {
            continue;
        };
        let prefix = prefix.trim_end_matches('/');
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return Some(rest.trim_start_matches('/'));
        }
    }
    None
}

/// The checks that need no filesystem: length, NUL, control characters, and every alternative
/// reading of the text (decoded, backslashes, Unicode look-alikes) must be free of traversal.
fn static_checks(path: &str) -> Vec<PathRejection> {
    let mut out = Vec::new();
    let mut push = |r: PathRejection| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    if path.len() > MAX_PATH_BYTES
        || path
            .split(['/', '\\'])
            .any(|c| c.len() > MAX_COMPONENT_BYTES)
    {
        push(PathRejection::TooLong);
        return out;
    }
    if path.contains('\0') {
        push(PathRejection::NulByte);
    }
    if path.chars().any(is_control) {
        push(PathRejection::ControlChar);
    }
    // Backslash reading: a tool (or a Windows-minded library) may treat `\` as a separator.
    if path.contains('\\') && has_traversal(&path.replace('\\', "/"), true) {
        push(PathRejection::BackslashTraversal);
    }
    if is_windows_absolute(path) {
        push(PathRejection::BackslashTraversal);
    }
    if path
        .split(['/', '\\'])
        .any(|c| c.starts_with("..") && c != "..")
    {
        push(PathRejection::DotDotVariant);
    }
    // Unicode look-alikes of `.`, `/` and `\` (what NFKC folding or a lenient tool turns into
    // the real thing).
    if let Some(folded) = fold_lookalikes(path)
        && (has_traversal(&folded.replace('\\', "/"), true) || is_windows_absolute(&folded))
    {
        push(PathRejection::UnicodeTraversal);
    }
    // Percent-decoded readings, round after round.
    let mut current = path.to_owned();
    for round in 0..=MAX_DECODE_ROUNDS {
        let decoded = match percent_decode(&current) {
            Decoded::Unchanged => break,
            Decoded::Invalid => {
                push(PathRejection::InvalidEncoding);
                break;
            }
            Decoded::Text(t) => t,
        };
        if round == MAX_DECODE_ROUNDS {
            push(PathRejection::InvalidEncoding);
            break;
        }
        if decoded.contains('\0') {
            push(PathRejection::NulByte);
        }
        if decoded.chars().any(is_control) {
            push(PathRejection::ControlChar);
        }
        let folded = fold_lookalikes(&decoded).unwrap_or_else(|| decoded.clone());
        let unified = folded.replace('\\', "/");
        if has_traversal(&unified, false) || is_windows_absolute(&folded) {
            push(PathRejection::EncodedTraversal);
        }
        current = decoded;
    }
    out
}

fn is_control(c: char) -> bool {
    c != '\0' && (c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Whether a `/`-separated reading is absolute or contains a `..` component. `absolute_counts`
/// is false for readings where a leading `/` is already handled by the literal check.
fn has_traversal(unified: &str, leading_slash_only_if_new: bool) -> bool {
    let absolute = unified.starts_with('/');
    let dotdot = unified.split('/').any(|c| c == "..");
    dotdot || (absolute && !leading_slash_only_if_new)
}

/// A Windows drive (`C:`, `C:\…`, `c:WINDOWS`), or a UNC `\\server` or rooted `\…` prefix.
fn is_windows_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    drive || path.starts_with("\\\\") || path.starts_with('\\')
}

/// Replaces Unicode look-alikes of `.`, `/` and `\` with the ASCII character; `None` when the
/// text has none.
fn fold_lookalikes(text: &str) -> Option<String> {
    fn fold(c: char) -> char {
        match c {
            '\u{FF0E}' | '\u{2024}' | '\u{FE52}' | '\u{2E33}' => '.',
            '\u{FF0F}' | '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{1735}' => '/',
            '\u{FF3C}' | '\u{2216}' | '\u{29F9}' | '\u{FE68}' => '\\',
            c => c,
        }
    }
    text.chars()
        .any(|c| fold(c) != c)
        .then(|| text.chars().map(fold).collect())
}

enum Decoded {
    Unchanged,
    Invalid,
    Text(String),
}

/// One round of percent-decoding: `%XX` bytes and the non-standard `%uXXXX` code units that
/// some servers accept. A result that is not UTF-8 (overlong forms such as `%c0%ae`) is
/// `Invalid`.
fn percent_decode(text: &str) -> Decoded {
    let b = text.as_bytes();
    if !b.contains(&b'%') {
        return Decoded::Unchanged;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push(h << 4 | l);
                i += 3;
                changed = true;
                continue;
            }
            if matches!(b.get(i + 1), Some(b'u' | b'U'))
                && let Some(cp) = (2..6)
                    .map(|k| hex(b.get(i + k)).map(u32::from))
                    .try_fold(0u32, |acc, d| d.map(|d| acc << 4 | d))
            {
                let Some(c) = char::from_u32(cp) else {
                    return Decoded::Invalid;
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
                changed = true;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    if !changed {
        return Decoded::Unchanged;
    }
    match String::from_utf8(out) {
        Ok(s) => Decoded::Text(s),
        Err(_) => Decoded::Invalid,
    }
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let c = *b?;
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The result of the component walk.
struct Walked {
    /// Open descriptors of the existing components below the root, with their names.
    stack: Vec<(OwnedFd, String)>,
    /// Names of `stack`, in order.
    names: Vec<String>,
    /// Plain names below the deepest existing component that do not exist.
    missing: Vec<String>,
}

/// Resolves `relative` under `root_fd` one component at a time (see the module docs).
fn walk(root_fd: &OwnedFd, root_canon: &Path, relative: &str) -> Result<Walked, PathRejection> {
    let mut pending: Vec<String> = components(relative);
    pending.reverse(); // a stack: the next component is at the end
    let mut stack: Vec<(OwnedFd, String)> = Vec::new();
    let mut symlinks = 0usize;

    while let Some(name) = pending.pop() {
        match name.as_str() {
            "" | "." => continue,
            ".." => {
                if stack.pop().is_none() {
                    // Climbing out through a symlink's target is that symlink's escape.
                    return Err(if symlinks > 0 {
                        PathRejection::SymlinkEscape
                    } else {
                        PathRejection::ParentEscape
                    });
                }
                continue;
            }
            _ => {}
        }
        let dir = stack.last().map_or(root_fd.as_fd(), |(fd, _)| fd.as_fd());
        let opened = rustix::fs::openat(
            dir,
            name.as_bytes(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // The rest does not exist: it must be plain names (no `..` to resolve).
                let mut missing = vec![name];
                while let Some(rest) = pending.pop() {
                    match rest.as_str() {
                        "" | "." => {}
                        ".." => return Err(PathRejection::UnresolvableParent),
                        _ => missing.push(rest),
                    }
                }
                let names = stack.iter().map(|(_, n)| n.clone()).collect();
                return Ok(Walked {
                    stack,
                    names,
                    missing,
                });
            }
            Err(Errno::NOTDIR) => return Err(PathRejection::NotADirectory),
            Err(e) => return Err(PathRejection::Io(e.to_string())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| PathRejection::Io(e.to_string()))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            symlinks += 1;
            if symlinks > MAX_SYMLINKS {
                return Err(PathRejection::SymlinkLoop);
            }
            let target = rustix::fs::readlinkat(&fd, c"", Vec::new())
                .map_err(|e| PathRejection::Io(e.to_string()))?;
            let target = target.to_bytes();
            let target = std::str::from_utf8(target).map_err(|_| PathRejection::SymlinkEscape)?;
            let target_rel = if target.starts_with('/') {
                // Absolute target: acceptable only when it lies inside the root; the walk
                // then restarts from the root.
                let inside = strip_root(target, root_canon, root_canon)
                    .ok_or(PathRejection::SymlinkEscape)?;
                stack.clear();
                inside
            } else {
                target
            };
            let mut parts = components(target_rel);
            parts.reverse();
            pending.extend(parts);
            continue;
        }
        stack.push((fd, name));
    }
    let names = stack.iter().map(|(_, n)| n.clone()).collect();
    Ok(Walked {
        stack,
        names,
        missing: Vec::new(),
    })
}

fn components(relative: &str) -> Vec<String> {
    relative.split('/').map(str::to_owned).collect()
}

/// Second opinion from the kernel: the canonical existing part must open from the root with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`. Skipped where `openat2` does not exist (before
/// Linux 5.6); the walk alone is already race-free.
fn verify_with_openat2(root_fd: &OwnedFd, names: &[String]) -> Result<(), PathRejection> {
    if names.is_empty() {
        return Ok(());
    }
    let rel: PathBuf = names.iter().collect();
    let result = rustix::fs::openat2(
        root_fd,
        OsStr::new(rel.as_os_str()),
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    );
    match result {
        Ok(_) => Ok(()),
        Err(Errno::NOSYS) => Ok(()),
        Err(Errno::XDEV | Errno::LOOP) => Err(PathRejection::SymlinkEscape),
        Err(e) => Err(PathRejection::Io(format!("changed during the check: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn decoding_finds_nested_and_unicode_forms() {
        assert!(matches!(percent_decode("a%2e%2e"), Decoded::Text(t) if t == "a.."));
        assert!(matches!(percent_decode("%252e"), Decoded::Text(t) if t == "%2e"));
        assert!(matches!(percent_decode("%u002e"), Decoded::Text(t) if t == "."));
        assert!(matches!(percent_decode("%c0%ae"), Decoded::Invalid));
        assert!(matches!(percent_decode("50%off"), Decoded::Unchanged));
        assert!(matches!(percent_decode("plain"), Decoded::Unchanged));
    }

    #[test]
    fn static_checks_catch_every_reading() {
        let cases = [
            ("..%2f..%2fetc", PathRejection::EncodedTraversal),
            ("%252e%252e%252fetc", PathRejection::EncodedTraversal),
            ("%c0%ae%c0%ae/etc", PathRejection::InvalidEncoding),
            ("..\\..\\etc", PathRejection::BackslashTraversal),
            ("C:\\boot.ini", PathRejection::BackslashTraversal),
            ("\u{FF0E}\u{FF0E}/etc", PathRejection::UnicodeTraversal),
            ("a\0b", PathRejection::NulByte),
            ("a%00b", PathRejection::NulByte),
            ("a\nb", PathRejection::ControlChar),
            ("%0a/bin", PathRejection::ControlChar),
        ];
        for (input, want) in cases {
            let got = static_checks(input);
            assert!(got.contains(&want), "{input:?}: {got:?}");
        }
        assert!(static_checks("...").contains(&PathRejection::DotDotVariant));
        assert!(static_checks("..;/x").contains(&PathRejection::DotDotVariant));
        assert!(static_checks("c:WINDOWS").contains(&PathRejection::BackslashTraversal));
        for ok in [
            "src/main.rs",
            "a b/c.txt",
            "50%off.txt",
            "a/../b",
            ".hidden",
            "a..b",
            "xy:z",
        ] {
            assert!(static_checks(ok).is_empty(), "{ok:?}");
        }
    }

    #[test]
    fn display_path_escapes_controls() {
        assert_eq!(display_path("a\nb"), "a\\nb");
        assert!(display_path(&"x".repeat(500)).ends_with('…'));
    }
}
