//! Configuration of the comis binary: where its data lives ([`home`]) and `config.yaml`
//! ([`yaml`] parses with positions and limits, [`schema`] is the typed root, [`load`] ties them
//! together with SecretRef resolution).
//!
//! This directory is one of the two places allowed to read the process environment (the
//! other is comis-secrets), so every variable comis honours is found here or there.

pub mod access;
pub mod home;
pub mod load;
pub mod schema;
pub mod yaml;

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
    /// There is no configuration file yet.
    #[error("no configuration at {}: run `comis init` first", path.display())]
    Missing { path: PathBuf },
    /// The configuration is malformed, or a key or value is not valid.
    #[error("{}{}: {message}", file.display(), pos.map_or_else(String::new, |p| format!(":{}:{}", p.line, p.col)))]
    Invalid {
        file: PathBuf,
        pos: Option<yaml::Pos>,
        message: String,
    },
}
