//! `comis broker-relay` (hidden): the relay that runs inside a `network: broker` sandbox,
//! forwarding TCP connections on the sandbox's loopback to the credential broker's socket.
//! It is started by the sandbox, not by people; see `comis_net::relay`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliError;

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Loopback address to listen on (the sandbox's HTTPS_PROXY).
    #[arg(long, default_value = comis_net::relay::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The broker's Unix socket as seen inside the sandbox.
    #[arg(long, default_value = comis_net::broker::SANDBOX_SOCKET)]
    socket: PathBuf,
}

pub fn run(args: RelayArgs) -> Result<ExitCode, CliError> {
    comis_net::relay::run_blocking(args.listen, &args.socket)?;
    Ok(ExitCode::SUCCESS)
}
