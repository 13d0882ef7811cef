//! Discord adapter (in progress).
