//! `executor.broker.bindings`: which credential the broker may put into which request.
//!
//! ```yaml
//! executor:
//!   broker:
//!     bindings:
//!       - preset: anthropic            # x-api-key on api.anthropic.com
//!       - preset: finnhub              # ?token= on finnhub.io/api/
//!         secret: FINNHUB_KEY          # vault name (default per preset)
//!       - name: github
//!         secret: GITHUB_TOKEN
//!         env: GH_TOKEN                # placeholder variable inside the sandbox
//!         hostRules:
//!           - { host: api.github.com, pathPrefix: /repos/, auth: bearer }
//!           - { host: uploads.github.com, auth: header, name: x-upload-key }
//!           - { host: data.example, port: 8443, auth: query, name: apikey }
//! ```
//!
//! **Guarantees.** Parsing is strict: unknown keys, unknown presets, malformed hosts, env
//! names or header names, and two rules claiming the same host, port and path prefix are
//! errors (so which secret goes where is never ambiguous). Hosts are normalized the WHATWG
//! way; path prefixes match whole segments of the normalized path (`/v1` matches `/v1` and
//! `/v1/x`, not `/v1admin`).
//!
//! **Does not** hold secret values: a binding names a secret; the session's scoped secret
//! access resolves it per request.

use reqwest::header::HeaderName;
use serde::Deserialize;
use serde_json::Value;
use url::Host;

use crate::NetError;

/// How a credential is put into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<name>: <secret>`.
    Header(HeaderName),
    /// `?<name>=<secret>`.
    Query(String),
}

/// Where a binding applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Normalized host name (lowercase, IDNA) or address.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path_prefix: String,
    pub inject: Inject,
}

impl HostRule {
    fn matches_path(&self, path: &str) -> bool {
        let p = &self.path_prefix;
        path.starts_with(p.as_str())
            && (p.ends_with('/') || path.len() == p.len() || path[p.len()..].starts_with('/'))
    }
}

/// One binding: a secret, the placeholder the sandbox sees instead, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    /// The secret's name in the vault (resolved through the session's scoped access).
    pub secret: String,
    /// The variable that holds the placeholder inside the sandbox.
    pub env: String,
    /// What the sandbox sees instead of the secret.
    pub placeholder: String,
    pub rules: Vec<HostRule>,
}

/// Every binding of the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    list: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BindingConfig {
    preset: Option<String>,
    name: Option<String>,
    secret: Option<String>,
    env: Option<String>,
    host_rules: Option<Vec<HostRuleConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    Bearer,
    Header,
    Query,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HostRuleConfig {
    host: String,
    port: Option<u16>,
    path_prefix: Option<String>,
    auth: AuthKind,
    name: Option<String>,
}

fn err(at: &str, why: impl std::fmt::Display) -> NetError {
    NetError::Config(format!("executor.broker.bindings{at}: {why}"))
}

/// The normalized form of a host as the broker compares it.
pub(crate) fn normalize_host(host: &str) -> Option<String> {
    match Host::parse(host) {
        Ok(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            (!d.is_empty()).then(|| d.to_owned())
        }
        Ok(Host::Ipv4(v4)) => Some(v4.to_string()),
        Ok(Host::Ipv6(v6)) => Some(v6.to_string()),
        Err(_) => None,
    }
}

fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 128
}

fn preset(name: &str) -> Option<(&'static str, Vec<HostRule>)> {
    match name {
        "anthropic" => Some((
            "ANTHROPIC_API_KEY",
            vec![HostRule {
                host: "api.anthropic.com".into(),
                port: 443,
                path_prefix: "/".into(),
                inject: Inject::Header(HeaderName::from_static("x-api-key")),
            }],
        )),
        "finnhub" => Some((
            "FINNHUB_API_KEY",
            vec![HostRule {
                host: "finnhub.io".into(),
                port: 443,
                path_prefix: "/api/".into(),
                inject: Inject::Query("token".into()),
            }],
        )),
        _ => None,
    }
}

impl Bindings {
    /// Reads `executor.broker.bindings` from a parsed configuration (absent = none).
    ///
    /// # Errors
    /// [`NetError::Config`] naming the first bad entry.
    pub fn from_config(config: &Value) -> Result<Self, NetError> {
        match config.pointer("/executor/broker/bindings") {
            None => Ok(Self::default()),
            Some(v) => Self::parse(v),
        }
    }

    /// Parses the bindings list itself.
    ///
    /// # Errors
    /// [`NetError::Config`] naming the first bad entry.
    pub fn parse(value: &Value) -> Result<Self, NetError> {
        let items: Vec<BindingConfig> =
            serde_json::from_value(value.clone()).map_err(|e| err("", e))?;
        let mut list: Vec<Binding> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("[{i}]");
            let (default_name, mut rules) = match &item.preset {
                Some(p) => {
                    let (var, rules) = preset(p).ok_or_else(|| {
                        err(
                            &at,
                            format!("unknown preset {p:?} (known: anthropic, finnhub)"),
                        )
                    })?;
                    if item.host_rules.is_some() {
                        return Err(err(&at, "a preset brings its own hostRules"));
                    }
                    (Some((p.clone(), var)), rules)
                }
                None => (None, Vec::new()),
            };
            for (j, r) in item.host_rules.unwrap_or_default().into_iter().enumerate() {
                rules.push(parse_rule(r, &format!("{at}.hostRules[{j}]"))?);
            }
            let name = item
                .name
                .or_else(|| default_name.as_ref().map(|(p, _)| p.clone()))
                .ok_or_else(|| err(&at, "needs a preset or a name"))?;
            let var = default_name.map(|(_, v)| v.to_owned());
            let secret = item
                .secret
                .or_else(|| var.clone())
                .ok_or_else(|| err(&at, "needs a secret"))?;
            let env = item.env.or(var).unwrap_or_else(|| secret.clone());
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(&at, "name must be 1-64 letters, digits, '-' or '_'"));
            }
            if secret.is_empty() || secret.len() > 256 {
                return Err(err(&at, "bad secret name"));
            }
            if !valid_env_name(&env) {
                return Err(err(
                    &at,
                    format!("env {env:?} is not an upper-case variable name"),
                ));
            }
            if rules.is_empty() {
                return Err(err(&at, "needs at least one host rule"));
            }
            if list.iter().any(|b| b.name == name) {
                return Err(err(&at, format!("duplicate binding name {name:?}")));
            }
            if list.iter().any(|b| b.env == env) {
                return Err(err(&at, format!("two bindings use the variable {env}")));
            }
            for r in &rules {
                let clash = list
                    .iter()
                    .flat_map(|b| &b.rules)
                    .chain(rules.iter().filter(|o| !std::ptr::eq(*o, r)));
                if clash
                    .into_iter()
                    .any(|o| o.host == r.host && o.port == r.port && o.path_prefix == r.path_prefix)
                {
                    return Err(err(
                        &at,
                        format!("{}:{}{} is bound twice", r.host, r.port, r.path_prefix),
                    ));
                }
            }
            let placeholder = format!("comis-broker-placeholder-{name}");
            list.push(Binding {
                name,
                secret,
                env,
                placeholder,
                rules,
            });
        }
        Ok(Self { list })
    }

    /// Every binding.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.list.iter()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether any rule names `host:port` (checked at CONNECT, before any TLS).
    #[must_use]
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.list
            .iter()
            .flat_map(|b| &b.rules)
            .any(|r| r.host == host && r.port == port)
    }

    /// The binding and rule for a request; the longest matching path prefix wins.
    #[must_use]
    pub fn find(&self, host: &str, port: u16, path: &str) -> Option<(&Binding, &HostRule)> {
        self.list
            .iter()
            .flat_map(|b| b.rules.iter().map(move |r| (b, r)))
            .filter(|(_, r)| r.host == host && r.port == port && r.matches_path(path))
            .max_by_key(|(_, r)| r.path_prefix.len())
    }
}

fn parse_rule(r: HostRuleConfig, at: &str) -> Result<HostRule, NetError> {
    let host = normalize_host(&r.host)
        .filter(|_| !r.host.contains(['/', ':', '@']) || r.host.starts_with('['))
        .ok_or_else(|| err(at, format!("host {:?} is not a host name", r.host)))?;
    let port = r.port.unwrap_or(443);
    if port == 0 {
        return Err(err(at, "port 0"));
    }
    let path_prefix = r.path_prefix.unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/')
        || path_prefix.contains(['?', '#', '%'])
        || path_prefix.contains("/..")
    {
        return Err(err(at, "pathPrefix must be a plain path starting with /"));
    }
    let inject = match (r.auth, r.name) {
        (AuthKind::Bearer, None) => Inject::Bearer,
        (AuthKind::Header, Some(n)) => {
            let h = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| err(at, format!("bad header name {n:?}")))?;
            if matches!(
                h.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) || h.as_str().starts_with("proxy-")
            {
                return Err(err(at, format!("header {h} cannot carry a credential")));
            }
            Inject::Header(h)
        }
        (AuthKind::Query, Some(n)) if !n.is_empty() && n.len() <= 128 => Inject::Query(n),
        (AuthKind::Bearer, Some(_)) => return Err(err(at, "auth bearer takes no name")),
        _ => return Err(err(at, "auth header and auth query need a name")),
    };
    Ok(HostRule {
        host,
        port,
        path_prefix,
        inject,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn presets() {
        let b = Bindings::parse(
            &json!([{"preset": "anthropic"}, {"preset": "finnhub", "secret": "FH"}]),
        )
        .unwrap();
        let (a, r) = b.find("api.anthropic.com", 443, "/v1/messages").unwrap();
        assert_eq!(
            (a.secret.as_str(), a.env.as_str()),
            ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
        );
        assert_eq!(
            r.inject,
            Inject::Header(HeaderName::from_static("x-api-key"))
        );
        let (f, r) = b.find("finnhub.io", 443, "/api/v1/quote").unwrap();
        assert_eq!(
            (f.secret.as_str(), f.env.as_str()),
            ("FH", "FINNHUB_API_KEY")
        );
        assert_eq!(r.inject, Inject::Query("token".into()));
        assert!(b.find("finnhub.io", 443, "/static/x").is_none());
        assert!(b.find("finnhub.io", 8443, "/api/x").is_none());
        assert!(b.allows_host("finnhub.io", 443));
        assert!(!b.allows_host("evil.example", 443));
        assert!(a.placeholder.contains("placeholder") && !a.placeholder.is_empty());
    }

    #[test]
    fn custom_rules_and_path_segments() {
        let b = Bindings::parse(&json!([{
            "name": "gh", "secret": "GITHUB_TOKEN", "env": "GH_TOKEN",
            "hostRules": [
                {"host": "API.GitHub.com.", "pathPrefix": "/repos", "auth": "bearer"},
                {"host": "data.example", "port": 8443, "auth": "query", "name": "apikey"},
                {"host": "up.example", "auth": "header", "name": "X-Upload-Key"}
            ]
        }]))
        .unwrap();
        assert!(b.find("api.github.com", 443, "/repos").is_some());
        assert!(b.find("api.github.com", 443, "/repos/x").is_some());
        assert!(b.find("api.github.com", 443, "/reposx").is_none());
        assert!(b.find("api.github.com", 443, "/user").is_none());
        assert!(b.find("data.example", 8443, "/anything").is_some());
        let (_, r) = b.find("up.example", 443, "/").unwrap();
        assert_eq!(
            r.inject,
            Inject::Header(HeaderName::from_static("x-upload-key"))
        );
    }

    #[test]
    fn malformed_bindings_are_errors() {
        for bad in [
            json!({"preset": "anthropic"}),
            json!([{"preset": "nope"}]),
            json!([{"preset": "anthropic", "extra": 1}]),
            json!([{"preset": "anthropic", "hostRules": []}]),
            json!([{"secret": "X", "hostRules": [{"host": "a.example", "auth": "bearer"}]}]),
            json!([{"name": "x", "hostRules": [{"host": "a.example", "auth": "bearer"}]}]),
            json!([{"name": "x", "secret": "S"}]),
            json!([{"name": "x", "secret": "S", "env": "lower", "hostRules": [{"host": "a.example", "auth": "bearer"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "a.example", "auth": "header"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "a.example", "auth": "header", "name": "host"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "a.example", "auth": "bearer", "name": "n"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "http://a.example", "auth": "bearer"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "a.example", "pathPrefix": "v1", "auth": "bearer"}]}]),
            json!([{"name": "x", "secret": "S", "hostRules": [{"host": "a.example", "auth": "magic"}]}]),
            json!([{"preset": "anthropic"}, {"preset": "anthropic"}]),
            json!([{"preset": "anthropic"}, {"name": "y", "secret": "S", "hostRules": [{"host": "api.anthropic.com", "auth": "bearer"}]}]),
        ] {
            assert!(Bindings::parse(&bad).is_err(), "{bad}");
        }
        assert!(Bindings::from_config(&json!({})).unwrap().is_empty());
    }
}
