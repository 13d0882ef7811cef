//! The gateway: the daemon's front door (HTTP, JSON-RPC, WebSocket, OpenAI-compatible API,
//! webhooks), closed unless a caller proves who it is.
#![forbid(unsafe_code)]

pub mod config;
