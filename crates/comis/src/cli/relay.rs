//! `comis broker-relay` (hidden): the relay that runs inside a `network: broker` sandbox,
//! forwarding TCP connections on the sandbox's loopback to the credential broker's socket.
//! It is started by the sandbox, not by people; see `comis_net::relay` and
//! `comis_sandbox::profile` (which starts it before the command).

use std::io::Write;
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
    /// Once listening, print `ready` and close standard output (point it at /dev/null), so a
    /// starter reading our output until end-of-file knows the port accepts connections.
    #[arg(long)]
    ready: bool,
}

pub fn run(args: RelayArgs) -> Result<ExitCode, CliError> {
    let ready = args.ready;
    comis_net::relay::run_blocking_with_ready(args.listen, &args.socket, move || {
        if !ready {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(b"ready\n")?;
        out.flush()?;
        // The starter waits for end-of-file on our stdout: replace it, which closes the pipe.
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        rustix::stdio::dup2_stdout(&null)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
