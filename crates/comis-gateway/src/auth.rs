//! Who is calling: bearer tokens with scopes, the client address behind trusted proxies, and the
//! per-client request rate.
//!
//! Guarantees:
//! - A presented token is hashed and compared in constant time against EVERY configured entry,
//!   revoked ones included, with no early exit and no length shortcut; which entry matched is
//!   selected without a data-dependent branch.
//! - A revoked token fails on the next request (and the next WebSocket message).
//! - `X-Forwarded-For` is read only when the direct peer is a configured trusted proxy, and then
//!   the right-most address that is not itself a trusted proxy is the client.
//!
//! Not guaranteed: hiding how many tokens are configured (the loop length is public), or the
//! rate limiter surviving a restart (windows are in memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use comis_secrets::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::GatewayError;
use crate::config::TokenConfig;

/// Shortest accepted token secret, as in the original.
pub const MIN_SECRET_CHARS: usize = 32;
/// The scopes a token may hold.
pub const SCOPES: &[&str] = &["rpc", "ws", "admin", "api", "*"];

struct Entry {
    id: String,
    digest: [u8; 32],
    scopes: Vec<String>,
    revoked: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub scopes: Vec<String>,
    pub ip: IpAddr,
    /// The verified client certificate's CN, when mTLS is on and the client sent one.
    pub client_cn: Option<String>,
}

impl Caller {
    /// `*` grants everything; otherwise an exact scope name.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == "*" || s == scope)
    }

    pub fn has_any(&self, scopes: &[&str]) -> bool {
        scopes.iter().any(|s| self.has_scope(s))
    }

    /// How the caller appears in audit records and as a turn's sender.
    pub fn label(&self) -> String {
        match &self.client_cn {
            Some(cn) => format!("cn:{cn},token:{}", self.token_id),
            None => format!("token:{}", self.token_id),
        }
    }
}

/// A token as `tokens.list` shows it (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

/// The configured tokens, with runtime revocation.
pub struct TokenStore {
    entries: RwLock<Vec<Entry>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore").finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Refuses short secrets, duplicate ids and unknown scopes: a typo must not widen or lock
    /// out access silently.
    pub fn new(tokens: &[TokenConfig]) -> Result<TokenStore, GatewayError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(tokens.len());
        for t in tokens {
            if t.id.is_empty() {
                return Err(GatewayError::Config("gateway.tokens[].id is empty".into()));
            }
            if entries.iter().any(|e| e.id == t.id) {
                return Err(GatewayError::Config(format!(
                    "gateway.tokens: duplicate id '{}'",
                    t.id
                )));
            }
            let secret = t.secret.expose_secret();
            if secret.chars().count() < MIN_SECRET_CHARS {
                return Err(GatewayError::Config(format!(
                    "gateway.tokens '{}': secret must be at least {MIN_SECRET_CHARS} characters",
                    t.id
                )));
            }
            if let Some(bad) = t.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return Err(GatewayError::Config(format!(
                    "gateway.tokens '{}': unknown scope '{bad}' (known: rpc, ws, admin, api, *)",
                    t.id
                )));
            }
            entries.push(Entry {
                id: t.id.clone(),
                digest: Sha256::digest(secret.as_bytes()).into(),
                scopes: t.scopes.clone(),
                revoked: false,
            });
        }
        Ok(TokenStore {
            entries: RwLock::new(entries),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        // A poisoned lock only means another request panicked mid-read; the data is plain.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The id and scopes of the active token equal to `presented`, if any.
    pub fn verify(&self, presented: &str) -> Option<(String, Vec<String>)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let entries = self.read();
        let mut found = Choice::from(0u8);
        let mut index = 0u32;
        for (i, e) in entries.iter().enumerate() {
            let hit = e.digest.ct_eq(&digest) & Choice::from(u8::from(!e.revoked));
            index.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), hit);
            found |= hit;
        }
        if bool::from(found) {
            let e = entries.get(usize::try_from(index).ok()?)?;
            Some((e.id.clone(), e.scopes.clone()))
        } else {
            None
        }
    }

    /// Whether `id` still exists and is not revoked (WebSocket connections re-check per message).
    pub fn is_active(&self, id: &str) -> bool {
        self.read().iter().any(|e| e.id == id && !e.revoked)
    }

    /// Revokes `id`; the revoked secret's SHA-256 digest (for [`Self::mark_revoked`] in a
    /// later process), or `None` when there is no such active token.
    pub fn revoke(&self, id: &str) -> Option<[u8; 32]> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let e = entries.iter_mut().find(|e| e.id == id && !e.revoked)?;
        e.revoked = true;
        Some(e.digest)
    }

    /// Revokes every token whose secret has one of these digests: revocations recorded by an
    /// earlier gateway. A token given a new secret is a new token and stays active.
    pub fn mark_revoked(&self, digests: &[[u8; 32]]) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for e in entries.iter_mut() {
            if digests.iter().any(|d| bool::from(d.ct_eq(&e.digest))) {
                e.revoked = true;
            }
        }
    }

    pub fn list(&self) -> Vec<TokenInfo> {
        self.read()
            .iter()
            .map(|e| TokenInfo {
                id: e.id.clone(),
                scopes: e.scopes.clone(),
                revoked: e.revoked,
            })
            .collect()
    }
}

/// The bearer token from `Authorization: Bearer <t>`.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// An IP or CIDR block from `gateway.trustedProxies`.
#[derive(Debug, Clone, Copy)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, GatewayError> {
        let bad = || GatewayError::Config(format!("gateway.trustedProxies: bad entry '{s}'"));
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address: the peer, or — only when the peer is a trusted proxy — the right-most
/// untrusted address of `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let hops: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// Fixed-window counter per client address.
///
/// Bounded: an IPv6 client counts per /64 (one host is usually given a whole /64, so counting
/// single addresses would let it take 2^64 fresh windows), expired windows are pruned, and
/// once [`MAX_TRACKED`] clients are being tracked a client not among them is refused until
/// windows expire, rather than growing the table without bound.
#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    max: u32,
    capacity: usize,
    windows: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    /// Window start, requests in it, and whether its refusal was reported.
    by_client: HashMap<IpAddr, (Instant, u32, bool)>,
    last_prune: Instant,
    /// When a refusal for a full table was last reported.
    full_reported: Option<Instant>,
}

/// What [`RateLimiter::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allow,
    /// Refused. `report` is true for the first refusal of this client in its window (or, for
    /// a full table, the first in a window), so refusals are recorded without a flood of
    /// requests becoming a flood of audit writes.
    Refuse {
        report: bool,
        reason: &'static str,
    },
}

/// Clients tracked before expired windows are pruned (at most once a second: a prune walks
/// the whole table).
const PRUNE_AT: usize = 10_000;
/// Clients tracked at most.
const MAX_TRACKED: usize = 100_000;

/// The address a client is counted as: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6
/// by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl RateLimiter {
    pub fn new(window: Duration, max: u32) -> RateLimiter {
        RateLimiter::with_capacity(window, max, MAX_TRACKED)
    }

    /// [`new`](Self::new) tracking at most `capacity` clients.
    pub fn with_capacity(window: Duration, max: u32, capacity: usize) -> RateLimiter {
        RateLimiter {
            window,
            max,
            capacity,
            windows: Mutex::new(Windows {
                by_client: HashMap::new(),
                last_prune: Instant::now(),
                full_reported: None,
            }),
        }
    }

    /// Counts one request; refuses a client over its limit (or, with the table full, one not
    /// yet tracked).
    pub fn allow(&self, ip: IpAddr) -> RateDecision {
        let key = client_key(ip);
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let full = w.by_client.len() >= PRUNE_AT.min(self.capacity);
        if full && now.duration_since(w.last_prune) >= Duration::from_secs(1) {
            let window = self.window;
            w.by_client
                .retain(|_, (start, _, _)| now.duration_since(*start) < window);
            w.last_prune = now;
        }
        if w.by_client.len() >= self.capacity && !w.by_client.contains_key(&key) {
            let report = w
                .full_reported
                .is_none_or(|at| now.duration_since(at) >= self.window);
            if report {
                w.full_reported = Some(now);
            }
            return RateDecision::Refuse {
                report,
                reason: "too many clients",
            };
        }
        let slot = w.by_client.entry(key).or_insert((now, 0, false));
        if now.duration_since(slot.0) >= self.window {
            *slot = (now, 0, false);
        }
        if slot.1 >= self.max {
            let report = !slot.2;
            slot.2 = true;
            return RateDecision::Refuse {
                report,
                reason: "over the limit",
            };
        }
        slot.1 += 1;
        RateDecision::Allow
    }
}

/// A per-connection message counter (WebSocket), same fixed-window rule.
#[derive(Debug)]
pub struct WindowCounter {
    window: Duration,
    max: u32,
    start: Instant,
    count: u32,
}

impl WindowCounter {
    pub fn new(window: Duration, max: u32) -> WindowCounter {
        WindowCounter {
            window,
            max,
            start: Instant::now(),
            count: 0,
        }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.start) >= self.window {
            self.start = now;
            self.count = 0;
        }
        if self.count >= self.max {
            return false;
        }
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv6_client_counts_per_64_and_the_table_is_bounded() {
        use super::RateDecision::{Allow, Refuse};
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let limiter = super::RateLimiter::with_capacity(std::time::Duration::from_secs(60), 2, 3);
        let ok = |ip| limiter.allow(ip) == Allow;
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        // Two requests per window for the whole /64, whichever address it picks; the first
        // refusal is reported, the next ones are not.
        assert!(ok(host(1)));
        assert!(ok(host(2)));
        assert_eq!(
            limiter.allow(host(3)),
            Refuse {
                report: true,
                reason: "over the limit"
            }
        );
        assert_eq!(
            limiter.allow(host(4)),
            Refuse {
                report: false,
                reason: "over the limit"
            }
        );
        // An IPv4-mapped address is its IPv4 client.
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert!(ok(v4));
        assert!(ok(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped())));
        assert!(!ok(v4));
        // Third client fits; a fourth is refused while the three windows last (reported once),
        // and a tracked client is still counted, not refused for the table being full.
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(ok(other));
        let fourth = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            limiter.allow(fourth),
            Refuse {
                report: true,
                reason: "too many clients"
            }
        );
        assert_eq!(
            limiter.allow(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))),
            Refuse {
                report: false,
                reason: "too many clients"
            }
        );
        assert!(ok(other));
        assert!(!ok(other));
    }

    use super::*;

    fn token(id: &str, secret: &str, scopes: &[&str]) -> TokenConfig {
        TokenConfig {
            id: id.into(),
            secret: secret.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn verify_finds_the_right_entry_and_honours_revocation() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let store =
            TokenStore::new(&[token("one", &a, &["rpc"]), token("two", &b, &["*"])]).unwrap();
        assert_eq!(store.verify(&b).unwrap().0, "two");
        assert_eq!(store.verify(&a).unwrap().0, "one");
        assert!(store.verify("c").is_none());
        let digest = store.revoke("two").unwrap();
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b.as_bytes())));
        assert!(store.verify(&b).is_none());
        assert!(store.revoke("two").is_none());
        assert_eq!(store.verify(&a).unwrap().0, "one");
        // A later store with the same config starts with the recorded revocation; a token
        // whose secret changed is a new token.
        let later = TokenStore::new(&[
            token("one", &a, &["rpc"]),
            token("two", &b, &["*"]),
            token("three", &"c".repeat(40), &["*"]),
        ])
        .unwrap();
        later.mark_revoked(&[digest]);
        assert!(later.verify(&b).is_none());
        assert_eq!(later.verify(&a).unwrap().0, "one");
        let renewed = TokenStore::new(&[token("two", &"d".repeat(40), &["*"])]).unwrap();
        renewed.mark_revoked(&[digest]);
        assert_eq!(renewed.verify(&"d".repeat(40)).unwrap().0, "two");
    }

    #[test]
    fn short_secrets_unknown_scopes_and_duplicates_are_refused() {
        assert!(TokenStore::new(&[token("x", "short", &["rpc"])]).is_err());
        assert!(TokenStore::new(&[token("x", &"a".repeat(40), &["root"])]).is_err());
        let s = "a".repeat(40);
        assert!(TokenStore::new(&[token("x", &s, &[]), token("x", &"b".repeat(40), &[])]).is_err());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(stranger, Some("1.2.3.4"), &trusted), stranger);
        assert_eq!(
            client_ip(proxy, Some("1.2.3.4, 198.51.100.7, 10.0.0.5"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, Some("garbage"), &trusted), proxy);
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
