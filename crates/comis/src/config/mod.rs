//! Configuration of the comis binary: where its data lives (and, later, `config.yaml`).
//!
//! This directory is one of the two places allowed to read the process environment (the
//! other is comis-secrets), so every variable comis honours is found here or there.

pub mod home;

use std::path::PathBuf;

/// The one error type of configuration loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `COMIS_HOME` nor `HOME` gives a data directory.
    #[error("cannot find the comis data directory: set COMIS_HOME (or HOME)")]
    NoHome,
    /// The data directory path is unusable.
    #[error("COMIS_HOME {}: {reason}", path.display())]
    BadHome { path: PathBuf, reason: String },
    /// A filesystem operation on the data directory failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
