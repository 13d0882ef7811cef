//! DNS: the [`Resolver`] seam, and the pinning resolver the HTTP client connects through.
//!
//! **Defends** against DNS rebinding: a name that answers a public address when it is
//! checked and a private one when it is connected to.
//!
//! **Guarantees.** The HTTP client never resolves a name itself: every new connection asks
//! [`PinningResolve`], which performs **one** lookup through the configured [`Resolver`],
//! judges **every** answer with [`SsrfPolicy::check_addresses`], and hands the client exactly
//! those checked addresses to connect to. There is no second lookup whose answer could
//! differ. TLS SNI and the `Host` header keep the name (the client only learns addresses
//! here). Literal-address URLs never reach a resolver; they were judged when the URL was.
//!
//! **Does not** cache answers (each connection resolves afresh, and is checked afresh), or
//! apply DNSSEC; a resolver that lies with public addresses still only reaches public hosts.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use crate::policy::{Refusal, SsrfPolicy, TargetHost, dedup};

/// A boxed future returned by [`Resolver::lookup`].
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution. The daemon uses [`SystemResolver`]; tests plug in resolvers that lie.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Every address `host` resolves to (order kept, repeats allowed).
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0u16)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The error a refused lookup returns through the HTTP client; [`crate::client`] finds it in
/// the error's source chain to report the refusal rather than a generic connect error.
#[derive(Debug)]
pub(crate) struct PinRefused(pub Refusal);

impl fmt::Display for PinRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PinRefused {}

/// The resolver handed to reqwest: one lookup, every answer checked, only checked addresses
/// returned.
pub(crate) struct PinningResolve {
    pub resolver: Arc<dyn Resolver>,
    pub policy: Arc<SsrfPolicy>,
}

impl PinningResolve {
    /// Resolves and checks `host`; `Err` carries the refusal.
    pub async fn pin(&self, host: &str) -> Result<Vec<IpAddr>, Refusal> {
        let name = match self.policy.check_resolver_host(host)? {
            TargetHost::Ip(ip) => return Ok(vec![ip]),
            TargetHost::Name(n) => n,
        };
        let host = name.as_str();
        let answer = self
            .resolver
            .lookup(host)
            .await
            .map_err(|e| Refusal::Unresolved {
                host: host.to_owned(),
                detail: e.to_string(),
            })?;
        let ips = dedup(answer.into_iter());
        self.policy.check_addresses(host, &ips)?;
        Ok(ips)
    }
}

impl reqwest::dns::Resolve for PinningResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let this = PinningResolve {
            resolver: Arc::clone(&self.resolver),
            policy: Arc::clone(&self.policy),
        };
        Box::pin(async move {
            match this.pin(&host).await {
                Ok(ips) => {
                    let addrs: reqwest::dns::Addrs =
                        Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                // The client finds this in the error chain and records the audit event with
                // the request's context.
                Err(refusal) => {
                    Err(Box::new(PinRefused(refusal)) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);
    impl Resolver for Fixed {
        fn lookup<'a>(&'a self, _host: &'a str) -> LookupFuture<'a> {
            let v = self.0.clone();
            Box::pin(async move { Ok(v) })
        }
    }

    fn pinning(ips: &[&str]) -> PinningResolve {
        PinningResolve {
            resolver: Arc::new(Fixed(ips.iter().map(|s| s.parse().unwrap()).collect())),
            policy: Arc::new(SsrfPolicy::default()),
        }
    }

    #[tokio::test]
    async fn any_blocked_answer_refuses_the_name() {
        assert!(pinning(&["8.8.8.8"]).pin("dns.example").await.is_ok());
        let r = pinning(&["8.8.8.8", "127.0.0.1"]).pin("x.example").await;
        assert_eq!(r.unwrap_err().finding().name, "loopback");
        let r = pinning(&["::ffff:169.254.169.254"]).pin("x.example").await;
        assert_eq!(r.unwrap_err().finding().name, "cloud_metadata");
        let r = pinning(&[]).pin("x.example").await;
        assert_eq!(r.unwrap_err().finding().name, "unresolved_host");
    }

    #[tokio::test]
    async fn system_resolver_resolves_localhost() {
        let ips = SystemResolver.lookup("localhost").await.unwrap();
        assert!(!ips.is_empty() && ips.iter().all(IpAddr::is_loopback));
    }
}
