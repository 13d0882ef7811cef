//! Broker sessions: one single-use token per sandboxed run.
//!
//! **Defends** the broker against use by anything but the run it was opened for: another
//! run, a later run replaying a leaked token, a process that found the socket.
//!
//! **Guarantees.** A token is 256 random bits, issued once, valid from [`Sessions::open`]
//! until its [`BrokerSession`] handle is dropped (the run ended), and never valid again: a
//! spent token is remembered (by hash, the last [`SPENT_MEMORY`]) so its reuse is reported as
//! such. Tokens are compared by SHA-256 digest in constant time (`subtle`) against every live
//! and spent entry. The daemon keeps only digests; the token text lives in the handle
//! (zeroized on drop) and in the sandbox's proxy URL.
//!
//! **Does not** bind a token to a connection: a run may open several tunnels with it, as
//! CLIs do.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comis_secrets::SecretAccess;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::bindings::Bindings;
use crate::NetError;
use crate::audit::EgressContext;

/// How many spent tokens are remembered to report reuse.
pub const SPENT_MEMORY: usize = 4096;

/// What a live token grants: the run's identity and its scoped secret access.
pub struct SessionInfo {
    pub context: EgressContext,
    pub secrets: Arc<dyn SecretAccess + Send + Sync>,
}

impl std::fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInfo")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Why a presented token was refused (each is a 407).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Invalid,
    /// The token belonged to a run that has ended.
    Reused,
}

impl TokenError {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing proxy token",
            TokenError::Invalid => "invalid proxy token",
            TokenError::Reused => "reused proxy token (its run has ended)",
        }
    }
}

type Digest32 = [u8; 32];

#[derive(Default)]
struct State {
    live: Vec<(Digest32, Arc<SessionInfo>)>,
    spent: VecDeque<Digest32>,
}

/// The registry of sessions.
#[derive(Default)]
pub struct Sessions {
    state: Mutex<State>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Opens a session for one sandboxed run.
    ///
    /// # Errors
    /// [`NetError::Config`] when the system random source fails.
    pub fn open(
        self: &Arc<Self>,
        context: EgressContext,
        secrets: Arc<dyn SecretAccess + Send + Sync>,
    ) -> Result<BrokerSession, NetError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::fill(raw.as_mut())
            .map_err(|e| NetError::Config(format!("random token: {e}")))?;
        let token = Zeroizing::new(format!("cbt_{}", URL_SAFE_NO_PAD.encode(raw.as_ref())));
        let d = digest(&token);
        let info = Arc::new(SessionInfo { context, secrets });
        if let Ok(mut s) = self.state.lock() {
            s.live.push((d, Arc::clone(&info)));
        }
        Ok(BrokerSession {
            token,
            digest: d,
            info,
            sessions: Arc::downgrade(self),
        })
    }

    /// The session a presented token opens.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] or [`TokenError::Reused`].
    pub fn authenticate(&self, token: &str) -> Result<Arc<SessionInfo>, TokenError> {
        let d = digest(token);
        let Ok(s) = self.state.lock() else {
            return Err(TokenError::Invalid);
        };
        // Compare against every entry: the time taken does not depend on which one matched.
        let mut found: Option<Arc<SessionInfo>> = None;
        for (live, info) in &s.live {
            if bool::from(live.ct_eq(&d)) {
                found = Some(Arc::clone(info));
            }
        }
        let mut reused = false;
        for spent in &s.spent {
            reused |= bool::from(spent.ct_eq(&d));
        }
        match (found, reused) {
            (Some(info), _) => Ok(info),
            (None, true) => Err(TokenError::Reused),
            (None, false) => Err(TokenError::Invalid),
        }
    }

    fn revoke(&self, d: &Digest32) {
        if let Ok(mut s) = self.state.lock() {
            s.live.retain(|(live, _)| !bool::from(live.ct_eq(d)));
            if s.spent.len() >= SPENT_MEMORY {
                s.spent.pop_front();
            }
            s.spent.push_back(*d);
        }
    }

    /// Live sessions (for status and tests).
    #[must_use]
    pub fn live(&self) -> usize {
        self.state.lock().map_or(0, |s| s.live.len())
    }
}

/// Where the sandbox sees the broker's CA certificate.
pub const SANDBOX_CA_FILE: &str = "/run/comis/broker-ca.pem";

/// The handle of one run's session. Dropping it ends the session; the token is then spent.
pub struct BrokerSession {
    token: Zeroizing<String>,
    digest: Digest32,
    info: Arc<SessionInfo>,
    sessions: Weak<Sessions>,
}

impl std::fmt::Debug for BrokerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSession")
            .field("context", &self.info.context)
            .finish_non_exhaustive()
    }
}

impl Drop for BrokerSession {
    fn drop(&mut self) {
        if let Some(s) = self.sessions.upgrade() {
            s.revoke(&self.digest);
        }
    }
}

impl BrokerSession {
    /// The run this session serves.
    #[must_use]
    pub fn context(&self) -> &EgressContext {
        &self.info.context
    }

    /// The proxy URL inside the sandbox: the relay on `relay`, authenticated by the token.
    #[must_use]
    pub fn proxy_url(&self, relay: SocketAddr) -> Zeroizing<String> {
        Zeroizing::new(format!("http://comis:{}@{relay}", self.token.as_str()))
    }

    /// The environment of a `network: broker` sandbox: the proxy variables (upper and lower
    /// case, as tools disagree), the CA bundle variables of the common runtimes pointing at
    /// `ca_file`, and each binding's placeholder. No value here is a credential: the token
    /// is only good through the broker, for this run.
    #[must_use]
    pub fn sandbox_env(
        &self,
        bindings: &Bindings,
        relay: SocketAddr,
        ca_file: &str,
    ) -> Vec<(String, Zeroizing<String>)> {
        let proxy = self.proxy_url(relay);
        let mut env: Vec<(String, Zeroizing<String>)> = Vec::new();
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            env.push((var.into(), proxy.clone()));
        }
        env.push(("NO_PROXY".into(), Zeroizing::new(String::new())));
        env.push(("no_proxy".into(), Zeroizing::new(String::new())));
        // Node 24 honours the proxy variables only when asked to.
        env.push(("NODE_USE_ENV_PROXY".into(), Zeroizing::new("1".into())));
        for var in [
            "SSL_CERT_FILE",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
        ] {
            env.push((var.into(), Zeroizing::new(ca_file.to_owned())));
        }
        for b in bindings.iter() {
            env.push((b.env.clone(), Zeroizing::new(b.placeholder.clone())));
        }
        env
    }
}

/// The token in a `Proxy-Authorization` value: the password of `Basic` credentials (what
/// clients send for `http://user:token@proxy`), or a `Bearer` token.
pub(crate) fn token_from_header(value: &[u8]) -> Option<Zeroizing<String>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?,
        );
        let s = std::str::from_utf8(&decoded).ok()?;
        let pass = s.split_once(':').map_or(s, |(_, p)| p);
        Some(Zeroizing::new(pass.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Zeroizing::new(rest.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use comis_secrets::SecretManager;

    fn secrets() -> Arc<dyn SecretAccess + Send + Sync> {
        Arc::new(SecretManager::from_values([]))
    }

    fn token_of(s: &BrokerSession) -> String {
        let url = s.proxy_url("127.0.0.1:1".parse().unwrap());
        url.trim_start_matches("http://comis:")
            .split('@')
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn token_lifecycle() {
        let reg = Arc::new(Sessions::default());
        let a = reg.open(EgressContext::new("a", "t1"), secrets()).unwrap();
        let b = reg.open(EgressContext::new("b", "t2"), secrets()).unwrap();
        let (ta, tb) = (token_of(&a), token_of(&b));
        assert_ne!(ta, tb);
        assert!(ta.len() > 40);
        assert_eq!(reg.authenticate(&ta).unwrap().context.agent_id, "a");
        assert_eq!(reg.authenticate(&tb).unwrap().context.agent_id, "b");
        assert_eq!(
            reg.authenticate("cbt_guess").unwrap_err(),
            TokenError::Invalid
        );
        assert_eq!(reg.authenticate("").unwrap_err(), TokenError::Invalid);
        drop(a);
        assert_eq!(reg.authenticate(&ta).unwrap_err(), TokenError::Reused);
        assert!(reg.authenticate(&tb).is_ok());
        assert_eq!(reg.live(), 1);
        assert!(!format!("{b:?}").contains(&tb));
    }

    #[test]
    fn proxy_authorization_forms() {
        let basic = base64::engine::general_purpose::STANDARD.encode("comis:cbt_x");
        assert_eq!(
            token_from_header(format!("Basic {basic}").as_bytes())
                .unwrap()
                .as_str(),
            "cbt_x"
        );
        assert_eq!(
            token_from_header(b"Bearer cbt_y").unwrap().as_str(),
            "cbt_y"
        );
        assert!(token_from_header(b"Basic !!!").is_none());
        assert!(token_from_header(b"Digest x").is_none());
        assert!(token_from_header(b"cbt_z").is_none());
        assert!(token_from_header(&[0xff, 0x20, 0x41]).is_none());
    }

    #[test]
    fn sandbox_env_holds_no_secret() {
        let reg = Arc::new(Sessions::default());
        let s = reg.open(EgressContext::new("a", "t"), secrets()).unwrap();
        let b = Bindings::parse(&serde_json::json!([{"preset": "anthropic"}])).unwrap();
        let env = s.sandbox_env(&b, "127.0.0.1:3128".parse().unwrap(), SANDBOX_CA_FILE);
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str().to_owned())
        };
        assert!(get("HTTPS_PROXY").unwrap().ends_with("@127.0.0.1:3128"));
        assert_eq!(get("SSL_CERT_FILE").unwrap(), SANDBOX_CA_FILE);
        assert_eq!(get("NODE_EXTRA_CA_CERTS").unwrap(), SANDBOX_CA_FILE);
        assert_eq!(get("REQUESTS_CA_BUNDLE").unwrap(), SANDBOX_CA_FILE);
        assert_eq!(
            get("ANTHROPIC_API_KEY").unwrap(),
            "comis-broker-placeholder-anthropic"
        );
    }
}
