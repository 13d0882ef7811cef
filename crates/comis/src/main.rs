//! The `comis` binary.
#![forbid(unsafe_code)]

fn main() {}
