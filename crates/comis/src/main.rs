//! The `comis` binary: the command-line interface (and, later, the daemon).
#![forbid(unsafe_code)]

mod cli;
mod config;
mod daemon;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("comis: {e}");
            ExitCode::from(2)
        }
    }
}
