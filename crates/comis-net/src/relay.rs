//! The relay that runs inside a `network: broker` sandbox: a TCP listener on the sandbox's own
//! loopback, each connection copied byte for byte to the broker's Unix socket.
//!
//! **Why.** A sandbox in broker mode has no network; its only way out is the bind-mounted
//! socket. CLIs speak to proxies over TCP (`HTTPS_PROXY=http://…@127.0.0.1:PORT`), so this
//! relay turns one into the other. It understands nothing and adds nothing: the token check,
//! the bindings and TLS all happen in the broker, outside the sandbox.
//!
//! **Guarantees.** Listens only where it is told (callers pass a loopback address), accepts
//! only loopback peers, caps concurrent connections, and stops a connection when either side
//! closes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Semaphore;

use crate::NetError;

/// Concurrent connections relayed.
pub const MAX_CONNECTIONS: usize = 128;

/// The default relay address inside the sandbox.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";

/// Relays every connection accepted on `listener` to the Unix socket at `socket`.
///
/// # Errors
/// [`NetError::Io`] when accepting fails for good.
pub async fn serve(listener: TcpListener, socket: PathBuf) -> Result<(), NetError> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let socket = Arc::new(socket);
    loop {
        let (mut tcp, peer) = listener.accept().await.map_err(|source| NetError::Io {
            what: "relay: accepting".into(),
            source,
        })?;
        if !peer.ip().is_loopback() {
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return Ok(());
        };
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            if let Ok(mut unix) = UnixStream::connect(socket.as_path()).await {
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            }
            drop(permit);
        });
    }
}

/// Binds `listen` and relays to `socket` until killed (the `comis broker-relay` command).
///
/// # Errors
/// [`NetError::Config`] for a non-loopback address or a missing socket, [`NetError::Io`].
pub fn run_blocking(listen: SocketAddr, socket: &Path) -> Result<(), NetError> {
    run_blocking_with_ready(listen, socket, || Ok(()))
}

/// [`run_blocking`], calling `ready` once the listener is bound and before the first accept:
/// the sandbox starts the command only after that, so its first connection is never refused.
///
/// # Errors
/// As [`run_blocking`]; an error from `ready` stops the relay ([`NetError::Io`]).
pub fn run_blocking_with_ready(
    listen: SocketAddr,
    socket: &Path,
    ready: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), NetError> {
    if !listen.ip().is_loopback() {
        return Err(NetError::Config(format!(
            "the relay listens on loopback only, not {listen}"
        )));
    }
    if !socket.exists() {
        return Err(NetError::Config(format!(
            "broker socket {} does not exist",
            socket.display()
        )));
    }
    let socket = socket.to_owned();
    crate::block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| NetError::Io {
                what: format!("relay: binding {listen}"),
                source,
            })?;
        ready().map_err(|source| NetError::Io {
            what: "relay: signalling readiness".into(),
            source,
        })?;
        serve(listener, socket).await
    })
}
