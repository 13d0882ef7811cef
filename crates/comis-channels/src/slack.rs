//! Slack adapter (in progress).
