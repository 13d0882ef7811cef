//! The SSRF policy: which URLs and which resolved addresses an outbound request may use.
//!
//! **Defends** against a steered agent reaching what it should not (cloud metadata, the
//! gateway on localhost, the operator's LAN) by any spelling of a URL.
//!
//! **Guarantees.**
//! - URLs are parsed once, the WHATWG way (the `url` crate, the same parser the HTTP client
//!   uses), so every IPv4 spelling becomes one address before it is judged: `127.1`,
//!   `0x7f.1`, `017700000001`, `2130706433`, `0`, `127.0.0.1.`, percent-encoded digits and
//!   IDNA forms (`①②⑦.⓪.⓪.①`). Hosts that are not valid (`0x41414141A9FEA9FE`, zone ids,
//!   `425.510.425.510`) are refused, not guessed.
//! - Only `http` and `https`; no userinfo (`http://example.com@127.0.0.1`).
//! - Names are refused when they are local by construction: `localhost` and `*.localhost`,
//!   `*.internal` (`metadata.google.internal`), `*.local`, `*.localdomain`, `*.arpa`, and
//!   single-label names (`http://metadata`, `http://instance-data`), which the system
//!   resolver completes with the host's own search domains. A name whose labels spell an
//!   IPv4 address after any number of trailing dots is judged as that address.
//! - Resolved addresses are judged with [`crate::ip::classify`]; a name is allowed only when
//!   **every** address it resolves to is (see [`SsrfPolicy::check_addresses`]).
//! - Exceptions come only from `security.ssrf.allowHosts`: exact names, `*.suffix` names,
//!   IP addresses and CIDR networks. A name exception opens private ranges for that name but
//!   not cloud metadata, which opens only when its address is listed itself. "This network",
//!   multicast, broadcast and reserved addresses never open.
//!
//! **Does not** resolve names itself (callers pass the addresses they will connect to), and
//! does not follow redirects (the client re-checks each hop here).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

use comis_guard::{Finding, Severity};
use serde::Serialize;
use url::{Host, Url};

use crate::NetError;
use crate::ip::{self, Blocked, Class, Range};

/// The category of every SSRF finding.
pub const CATEGORY: &str = "ssrf";

/// Longest URL accepted, in bytes (browsers stop near 2 MB; nobody fetches that legitimately).
pub const MAX_URL_BYTES: usize = 16 * 1024;

/// Why a URL or an address was refused. Displays as one line naming the host or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The text is not a URL (or not one the WHATWG parser accepts).
    InvalidUrl(String),
    /// A scheme other than http and https.
    Scheme(String),
    /// `user:pass@` in the authority.
    Userinfo,
    /// A name that is local by construction.
    BlockedName { host: String, rule: &'static str },
    /// An address in a blocked range (literal or resolved).
    Address {
        host: String,
        ip: IpAddr,
        blocked: Blocked,
    },
    /// A name that was not (or could not be) resolved.
    Unresolved { host: String, detail: String },
}

impl Refusal {
    /// The finding this refusal reports (category `ssrf`, severity critical).
    #[must_use]
    pub fn finding(&self) -> Finding {
        let name: &'static str = match self {
            Refusal::InvalidUrl(_) => "invalid_url",
            Refusal::Scheme(_) => "scheme_not_allowed",
            Refusal::Userinfo => "userinfo",
            Refusal::BlockedName { rule, .. } if *rule == SINGLE_LABEL => "single_label_host",
            Refusal::BlockedName { .. } => "blocked_hostname",
            Refusal::Address { blocked, .. } => blocked.range.as_str(),
            Refusal::Unresolved { .. } => "unresolved_host",
        };
        Finding::new(name, CATEGORY, Severity::Critical)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Refusal::Scheme(s) => write!(f, "scheme {s:?} is not allowed (only http and https)"),
            Refusal::Userinfo => f.write_str("credentials in the URL (user@host) are not allowed"),
            Refusal::BlockedName { host, rule } => write!(f, "host {host:?} is {rule}"),
            Refusal::Address { host, ip, blocked } if host == &ip.to_string() => {
                write!(f, "address {ip} is {blocked}")
            }
            Refusal::Address { host, ip, blocked } => {
                write!(f, "host {host:?} resolves to {ip}, which is {blocked}")
            }
            Refusal::Unresolved { host, detail } => {
                write!(f, "host {host:?} was not resolved: {detail}")
            }
        }
    }
}

const SINGLE_LABEL: &str = "a single-label name (completed by local search domains)";

/// One `security.ssrf.allowHosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowEntry {
    /// An exact (normalized) host name.
    Name(String),
    /// `*.example.lan`, stored as `.example.lan`: any name below it, not the name itself.
    Suffix(String),
    /// An address or a CIDR network.
    Net { addr: IpAddr, prefix: u8 },
}

impl AllowEntry {
    fn parse(entry: &str) -> Result<Self, NetError> {
        let bad =
            |why: &str| NetError::Config(format!("security.ssrf.allowHosts {entry:?}: {why}"));
        let e = entry.trim();
        if e.is_empty() || e.len() > 253 {
            return Err(bad("empty or too long"));
        }
        if let Some((addr, len)) = e.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| bad("not an address/prefix"))?;
            let prefix: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix == 0 || prefix > max {
                return Err(bad("prefix length must be 1..=32 (IPv4) or 1..=128 (IPv6)"));
            }
            return Ok(AllowEntry::Net { addr, prefix });
        }
        let bare = e.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(AllowEntry::Net { addr, prefix });
        }
        if e.contains(['/', ':', '@', '?', '#', ' ']) {
            return Err(bad(
                "write a host name, *.suffix, an address or a CIDR (no scheme or port)",
            ));
        }
        let (wild, name) = match e.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, e),
        };
        if name.contains('*') {
            return Err(bad("only a leading \"*.\" wildcard is supported"));
        }
        match Host::parse(name) {
            Ok(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_owned();
                if d.is_empty() {
                    return Err(bad("empty name"));
                }
                Ok(if wild {
                    AllowEntry::Suffix(format!(".{d}"))
                } else {
                    AllowEntry::Name(d)
                })
            }
            // Numeric spellings such as 127.1 must be written canonically to be unambiguous.
            Ok(_) => Err(bad("write addresses in canonical form (e.g. 127.0.0.1)")),
            Err(err) => Err(bad(&err.to_string())),
        }
    }

    fn matches_name(&self, host: &str) -> bool {
        match self {
            AllowEntry::Name(n) => n == host,
            AllowEntry::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            AllowEntry::Net { .. } => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        let AllowEntry::Net { addr, prefix } = *self else {
            return false;
        };
        let candidates = match ip {
            IpAddr::V4(_) => [Some(ip), None],
            IpAddr::V6(v6) => [Some(ip), ip::embedded_v4(v6).map(IpAddr::V4)],
        };
        candidates.into_iter().flatten().any(|c| match (c, addr) {
            (IpAddr::V4(c), IpAddr::V4(n)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(c) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(c), IpAddr::V6(n)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(c) & mask == u128::from(n) & mask
            }
            _ => false,
        })
    }
}

/// The SSRF policy: the fixed block rules plus the operator's exceptions.
///
/// [`SsrfPolicy::default`] is the strict policy (no exceptions), used when the config says
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    allow: Vec<AllowEntry>,
}

/// A URL that passed the literal checks: where to connect, before any name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The normalized URL (what is sent).
    pub url: Url,
    /// The host: an address, or a name still to be resolved and checked.
    pub host: TargetHost,
    /// Whether an allow-list exception was needed to let the literal host through.
    pub excepted: bool,
}

/// The host of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// A literal address, already checked.
    Ip(IpAddr),
    /// A name (normalized: lowercase, IDNA, no trailing dot) to resolve; every address it
    /// resolves to must pass [`SsrfPolicy::check_addresses`].
    Name(String),
}

impl SsrfPolicy {
    /// The strict policy with the given `security.ssrf.allowHosts` exceptions.
    ///
    /// # Errors
    /// [`NetError::Config`] naming the first malformed entry.
    pub fn with_allow_hosts<S: AsRef<str>>(entries: &[S]) -> Result<Self, NetError> {
        let allow = entries
            .iter()
            .map(|e| AllowEntry::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// This policy with `entries` added to its exceptions: for hosts the operator configured
    /// elsewhere (a provider's `baseUrl`), never for hosts a model supplied.
    ///
    /// # Errors
    /// [`NetError::Config`] naming the first malformed entry.
    pub fn with_extra_allow_hosts<S: AsRef<str>>(&self, entries: &[S]) -> Result<Self, NetError> {
        let mut allow = self.allow.clone();
        for e in entries {
            allow.push(AllowEntry::parse(e.as_ref())?);
        }
        Ok(Self { allow })
    }

    /// The policy from a parsed configuration document: `security.ssrf.allowHosts`, a list
    /// of strings (absent = strict).
    ///
    /// # Errors
    /// [`NetError::Config`] when the key is not a list of strings or an entry is malformed.
    pub fn from_config(config: &serde_json::Value) -> Result<Self, NetError> {
        let Some(list) = config.pointer("/security/ssrf/allowHosts") else {
            return Ok(Self::default());
        };
        let items = list.as_array().ok_or_else(|| {
            NetError::Config("security.ssrf.allowHosts must be a list of strings".into())
        })?;
        let strings = items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    NetError::Config("security.ssrf.allowHosts must be a list of strings".into())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_allow_hosts(&strings)
    }

    /// Whether the policy has any exception.
    #[must_use]
    pub fn is_strict(&self) -> bool {
        self.allow.is_empty()
    }

    fn name_excepted(&self, host: &str) -> bool {
        self.allow.iter().any(|e| e.matches_name(host))
    }

    fn ip_excepted(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|e| e.matches_ip(ip))
    }

    /// Parses `input` and applies every check that needs no name resolution.
    ///
    /// # Errors
    /// The [`Refusal`] that stopped it.
    pub fn check_literal(&self, input: &str) -> Result<Target, Refusal> {
        if input.len() > MAX_URL_BYTES {
            return Err(Refusal::InvalidUrl(format!(
                "longer than {MAX_URL_BYTES} bytes"
            )));
        }
        let url = Url::parse(input).map_err(|e| Refusal::InvalidUrl(e.to_string()))?;
        self.check_parsed(url)
    }

    /// [`check_literal`](Self::check_literal) for an already parsed URL (a redirect target).
    ///
    /// # Errors
    /// The [`Refusal`] that stopped it.
    pub fn check_parsed(&self, url: Url) -> Result<Target, Refusal> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(Refusal::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Userinfo);
        }
        let host = match url.host() {
            Some(Host::Ipv4(v4)) => TargetHost::Ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => TargetHost::Ip(IpAddr::V6(v6)),
            Some(Host::Domain(d)) => self.classify_name(d)?,
            None => return Err(Refusal::InvalidUrl("no host".into())),
        };
        let excepted = match &host {
            TargetHost::Ip(ip) => self.check_ip(&ip.to_string(), *ip, false)?,
            TargetHost::Name(n) => self.name_excepted(n),
        };
        Ok(Target {
            url,
            host,
            excepted,
        })
    }

    /// Judges a name from a URL or a CONNECT line (already IDNA-normalized by the WHATWG
    /// host parser).
    fn classify_name(&self, raw: &str) -> Result<TargetHost, Refusal> {
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(Refusal::InvalidUrl(format!(
                "host {raw:?} has an empty label"
            )));
        }
        // The WHATWG parser removes only one trailing dot before its IPv4 test; resolvers
        // strip them all, so test again without them.
        if let Ok(Host::Ipv4(v4)) = Host::parse(&name) {
            return Ok(TargetHost::Ip(IpAddr::V4(v4)));
        }
        if let Some(rule) = blocked_name_rule(&name)
            && !self.name_excepted(&name)
        {
            return Err(Refusal::BlockedName { host: name, rule });
        }
        Ok(TargetHost::Name(name))
    }

    /// Checks one address; `Ok(true)` when it needed an exception (a listed address, or a
    /// name exception when `name_excepted`).
    fn check_ip(&self, host: &str, ip: IpAddr, name_excepted: bool) -> Result<bool, Refusal> {
        let Class::Blocked(blocked) = ip::classify(ip) else {
            return Ok(false);
        };
        let exempt = blocked.range.exemptible()
            && (self.ip_excepted(ip) || (name_excepted && blocked.range != Range::CloudMetadata));
        if exempt {
            Ok(true)
        } else {
            Err(Refusal::Address {
                host: host.to_owned(),
                ip,
                blocked,
            })
        }
    }

    /// Judges the addresses `host` resolved to: allowed only when there is at least one and
    /// **every** one is allowed, so a resolver that mixes a public and a private answer is
    /// refused whichever the connection would have picked. `Ok(true)` when an exception was
    /// used.
    ///
    /// # Errors
    /// The first refused address, or [`Refusal::Unresolved`] for an empty answer.
    pub fn check_addresses(&self, host: &str, ips: &[IpAddr]) -> Result<bool, Refusal> {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if ips.is_empty() {
            return Err(Refusal::Unresolved {
                host: name,
                detail: "no addresses".into(),
            });
        }
        let name_excepted = self.name_excepted(&name);
        let mut excepted = false;
        for ip in ips {
            excepted |= self.check_ip(&name, *ip, name_excepted)?;
        }
        Ok(excepted)
    }

    /// Judges a bare host name handed to a resolver by the HTTP client (defense in depth:
    /// the URL was already checked, but the resolver re-applies the name rules and turns
    /// numeric spellings into the address they mean instead of passing them to the system).
    ///
    /// # Errors
    /// The [`Refusal`] that stopped it.
    pub(crate) fn check_resolver_host(&self, host: &str) -> Result<TargetHost, Refusal> {
        match Host::parse(host) {
            Ok(Host::Domain(d)) => match self.classify_name(&d)? {
                TargetHost::Ip(ip) => self.check_ip(host, ip, false).map(|_| TargetHost::Ip(ip)),
                name => Ok(name),
            },
            Ok(Host::Ipv4(v4)) => {
                let ip = IpAddr::V4(v4);
                self.check_ip(host, ip, false).map(|_| TargetHost::Ip(ip))
            }
            Ok(Host::Ipv6(v6)) => {
                let ip = IpAddr::V6(v6);
                self.check_ip(host, ip, false).map(|_| TargetHost::Ip(ip))
            }
            Err(e) => Err(Refusal::InvalidUrl(format!("host {host:?}: {e}"))),
        }
    }

    /// Judges a `host:port` authority from a proxy CONNECT line the same way as a URL host.
    ///
    /// # Errors
    /// The [`Refusal`] that stopped it.
    pub fn check_authority(&self, authority: &str) -> Result<Target, Refusal> {
        if authority.contains(['/', '@', '?', '#', '\\']) {
            return Err(Refusal::InvalidUrl(format!(
                "{authority:?} is not a host:port authority"
            )));
        }
        self.check_literal(&format!("https://{authority}/"))
    }
}

/// Names that are local by construction, whatever DNS says.
fn blocked_name_rule(name: &str) -> Option<&'static str> {
    const SUFFIXES: [(&str, &str); 5] = [
        ("localhost", "a loopback name (localhost)"),
        (
            "internal",
            "an internal name (*.internal, incl. metadata.google.internal)",
        ),
        ("local", "a link-local mDNS name (*.local)"),
        ("localdomain", "a local name (*.localdomain)"),
        ("arpa", "a reverse-DNS or home-network name (*.arpa)"),
    ];
    let last = name.rsplit('.').next().unwrap_or(name);
    if let Some((_, rule)) = SUFFIXES.iter().find(|(s, _)| *s == last) {
        return Some(rule);
    }
    if !name.contains('.') {
        return Some(SINGLE_LABEL);
    }
    None
}

/// What `comis guard url` prints for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlVerdict {
    /// Whether the guarded client would connect.
    pub allowed: bool,
    /// Why not (or which exception let it through), one line.
    pub reason: Option<String>,
    /// One critical `ssrf` finding when refused; an info `allow_hosts_exception` when an
    /// exception was used.
    pub findings: Vec<Finding>,
    /// The addresses that were judged (the literal one, or what the name resolved to).
    pub addresses: Vec<IpAddr>,
}

impl UrlVerdict {
    fn refused(r: &Refusal, addresses: Vec<IpAddr>) -> Self {
        Self {
            allowed: false,
            reason: Some(r.to_string()),
            findings: vec![r.finding()],
            addresses,
        }
    }

    fn allowed(excepted: bool, addresses: Vec<IpAddr>) -> Self {
        Self {
            allowed: true,
            reason: excepted.then(|| "allowed by security.ssrf.allowHosts".to_owned()),
            findings: if excepted {
                vec![Finding::new(
                    "allow_hosts_exception",
                    CATEGORY,
                    Severity::Info,
                )]
            } else {
                Vec::new()
            },
            addresses,
        }
    }
}

/// Checks one URL the way the guarded client would before connecting.
///
/// With `resolve`, names are looked up once with the system resolver (blocking) and every
/// address is judged; without it, only literal hosts can be allowed and every name is
/// refused as unresolved.
#[must_use]
pub fn check_url(input: &str, policy: &SsrfPolicy, resolve: bool) -> UrlVerdict {
    let target = match policy.check_literal(input) {
        Ok(t) => t,
        Err(r) => return UrlVerdict::refused(&r, Vec::new()),
    };
    let name = match &target.host {
        TargetHost::Ip(ip) => return UrlVerdict::allowed(target.excepted, vec![*ip]),
        TargetHost::Name(n) => n.clone(),
    };
    if !resolve {
        let r = Refusal::Unresolved {
            host: name,
            detail: "name resolution is off (--no-resolve)".into(),
        };
        return UrlVerdict::refused(&r, Vec::new());
    }
    let ips: Vec<IpAddr> = match (name.as_str(), 0u16).to_socket_addrs() {
        Ok(addrs) => dedup(addrs.map(|a| a.ip())),
        Err(e) => {
            let r = Refusal::Unresolved {
                host: name,
                detail: e.to_string(),
            };
            return UrlVerdict::refused(&r, Vec::new());
        }
    };
    match policy.check_addresses(&name, &ips) {
        Ok(excepted) => UrlVerdict::allowed(excepted || target.excepted, ips),
        Err(r) => UrlVerdict::refused(&r, ips),
    }
}

/// Addresses in first-seen order without repeats (resolvers list one per socket type).
pub(crate) fn dedup(ips: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// `Ipv4Addr` parse in the WHATWG way (any of the numeric spellings), for tests and callers
/// that hold a bare host.
#[must_use]
pub fn parse_ipv4_host(host: &str) -> Option<Ipv4Addr> {
    match Host::parse(host.trim_end_matches('.')) {
        Ok(Host::Ipv4(v4)) => Some(v4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn strict() -> SsrfPolicy {
        SsrfPolicy::default()
    }

    /// The refusal's finding name for a URL under the strict policy, literal checks only.
    fn refused(url: &str) -> String {
        match strict().check_literal(url) {
            Ok(t) => match t.host {
                TargetHost::Name(n) => panic!("{url}: not refused literally (name {n})"),
                TargetHost::Ip(ip) => panic!("{url}: allowed literal {ip}"),
            },
            Err(r) => r.finding().name.into_owned(),
        }
    }

    fn literal_ip(url: &str) -> IpAddr {
        match strict().check_literal(url) {
            Err(Refusal::Address { ip, .. }) => ip,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn every_ipv4_spelling_of_loopback_is_one_address() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://0x7f.1/",
            "http://0x7f.0.0.1/",
            "http://0x7F000001/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://0177.0.0.01/",
            "http://2130706433/",
            "http://127.0.0.1./",
            "http://127.0.0.1../",
            "http://127.0.0.1.../",
            "http://127.000.000.1/",
            "http://127.0.0.%31/",
            "http://%31%32%37.0.0.1/",
            "http://①②⑦.⓪.⓪.①/",
            "http://１２７.０.０.１/",
            "HTTP://127.0.0.1:80/",
            "http://127.0.0.1:8080/admin",
        ] {
            assert_eq!(literal_ip(url), lo, "{url}");
        }
    }

    #[test]
    fn zero_and_metadata_spellings() {
        assert_eq!(literal_ip("http://0/"), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            literal_ip("http://0.0.0.0/"),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(literal_ip("http://0x0/"), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let md = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xA9FEA9FE/",
            "http://0xA9.0xFE.0xA9.0xFE/",
            "http://0251.0376.0251.0376/",
            "http://0251.00376.000251.0000376/",
            "http://169.254.43518/",
            "http://169.16689662/",
        ] {
            assert_eq!(literal_ip(url), md, "{url}");
            assert_eq!(refused(url), "cloud_metadata", "{url}");
        }
        assert_eq!(
            refused("http://169.254.170.2/v2/credentials/"),
            "cloud_metadata"
        );
        assert_eq!(refused("http://100.100.100.200/latest/"), "cloud_metadata");
        assert_eq!(refused("http://192.0.0.192/latest/"), "cloud_metadata");
        assert_eq!(refused("http://[fd00:ec2::254]/latest/"), "cloud_metadata");
    }

    #[test]
    fn ipv6_and_embedded_ipv4_literals() {
        for (url, want) in [
            ("http://[::1]/", "loopback"),
            ("http://[0000::1]:80/", "loopback"),
            ("http://[::]/", "this_network"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback"),
            ("http://[::ffff:7f00:1]/", "loopback"),
            ("http://[::ffff:a9fe:a9fe]/", "cloud_metadata"),
            ("http://[0:0:0:0:0:ffff:169.254.169.254]/", "cloud_metadata"),
            ("http://[64:ff9b::7f00:1]/", "loopback"),
            ("http://[64:ff9b::169.254.169.254]/", "cloud_metadata"),
            ("http://[2002:7f00:1::1]/", "loopback"),
            ("http://[2002:a9fe:a9fe::]/", "cloud_metadata"),
            ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "teredo"),
            ("http://[fc00::1]/", "unique_local"),
            ("http://[fe80::1]/", "link_local"),
            ("http://[ff02::1]/", "multicast"),
            ("http://[::127.0.0.1]/", "ipv4_compatible"),
        ] {
            assert_eq!(refused(url), want, "{url}");
        }
    }

    #[test]
    fn zone_ids_and_impossible_numbers_are_invalid() {
        for url in [
            "http://[fe80::1%25eth0]/",
            "http://[fe80::1%eth0]/",
            "http://0x41414141A9FEA9FE/",
            "http://425.510.425.510/",
            "http://7147006462/",
            "http://o177.0.0.1/",
            "http://256.0.0.1/",
            "http://1.2.3.4.5/",
            "http:///",
            "http://",
            "not a url",
            "",
            "http://exa mple.com/",
            "http://a..b/",
        ] {
            assert_eq!(refused(url), "invalid_url", "{url}");
        }
    }

    #[test]
    fn schemes_and_userinfo() {
        for url in [
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
            "gopher://localhost:25/_MAIL",
            "dict://127.0.0.1:6379/SAVE",
            "jar:http://127.0.0.1!/",
            "ldap://localhost:11211/",
            "javascript:alert(1)",
            "data:text/plain,hi",
        ] {
            assert_eq!(refused(url), "scheme_not_allowed", "{url}");
        }
        for url in [
            "http://example.com@127.0.0.1/",
            "https://user:pass@example.com/",
            "http://1.1.1.1&@2.2.2.2#@3.3.3.3/",
        ] {
            let r = refused(url);
            assert!(r == "userinfo", "{url}: {r}");
        }
        // An empty userinfo is dropped by the parser: nothing is sent, the host is the name.
        let t = strict().check_literal("http://:@example.com/").unwrap();
        assert_eq!(t.host, TargetHost::Name("example.com".into()));
    }

    #[test]
    fn backslash_and_fragment_tricks_resolve_to_the_real_host() {
        // WHATWG turns "\" into "/" for http, so the host is 127.1.1.1, as the client sees it.
        assert_eq!(
            literal_ip("http://127.1.1.1:80\\@127.2.2.2:80/"),
            "127.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(refused("http://127.0.0.1#@example.com/"), "loopback");
        assert_eq!(refused("http://127.0.0.1?@example.com/"), "loopback");
        assert_eq!(refused("http://127.0.0.1///example.com"), "loopback");
    }

    #[test]
    fn local_names() {
        for (url, want) in [
            ("http://localhost/", "blocked_hostname"),
            ("http://LOCALHOST./", "blocked_hostname"),
            ("http://localhost.../", "blocked_hostname"),
            ("http://app.localhost/", "blocked_hostname"),
            ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "blocked_hostname"),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "blocked_hostname",
            ),
            ("http://metadata.google.internal./", "blocked_hostname"),
            ("http://foo.internal/", "blocked_hostname"),
            ("http://printer.local/", "blocked_hostname"),
            ("http://host.localdomain/", "blocked_hostname"),
            ("http://1.0.0.127.in-addr.arpa/", "blocked_hostname"),
            ("http://router.home.arpa/", "blocked_hostname"),
            ("http://metadata/computeMetadata/v1/", "single_label_host"),
            ("http://instance-data/", "single_label_host"),
            ("http://rancher-metadata/", "single_label_host"),
            ("http://ip6-localhost/", "single_label_host"),
            ("http://test???test.com", "single_label_host"),
        ] {
            assert_eq!(refused(url), want, "{url}");
        }
    }

    #[test]
    fn public_names_need_resolution() {
        for url in [
            "https://example.com/",
            "https://EXAMPLE.com./path?q=1",
            "http://ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ/",
            "https://bücher.example/",
            "http://127.0.0.1.nip.io/",
            "http://localhost.example.com/",
        ] {
            let t = strict().check_literal(url).unwrap();
            assert!(matches!(t.host, TargetHost::Name(_)), "{url}");
        }
        let t = strict().check_literal("http://ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ/").unwrap();
        assert_eq!(t.host, TargetHost::Name("example.com".into()));
        let t = strict().check_literal("https://bücher.example/").unwrap();
        assert_eq!(t.host, TargetHost::Name("xn--bcher-kva.example".into()));
    }

    #[test]
    fn public_literals_pass() {
        for url in [
            "http://8.8.8.8/",
            "https://1.1.1.1:443/dns-query",
            "http://[2606:4700:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://134744072/",
        ] {
            let t = strict().check_literal(url).unwrap();
            assert!(matches!(t.host, TargetHost::Ip(_)), "{url}");
            assert!(!t.excepted);
        }
    }

    #[test]
    fn oversized_url_is_refused() {
        let url = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(refused(&url), "invalid_url");
    }

    #[test]
    fn resolved_addresses_all_must_pass() {
        let p = strict();
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(p.check_addresses("example.com", &[public]), Ok(false));
        let err = p
            .check_addresses("example.com", &[public, private])
            .unwrap_err();
        assert_eq!(err.finding().name, "private");
        assert!(err.to_string().contains("10.0.0.5"), "{err}");
        let err = p.check_addresses("example.com", &[]).unwrap_err();
        assert_eq!(err.finding().name, "unresolved_host");
        let err = p
            .check_addresses("x.example", &["::ffff:169.254.169.254".parse().unwrap()])
            .unwrap_err();
        assert_eq!(err.finding().name, "cloud_metadata");
    }

    #[test]
    fn allow_hosts_exceptions() {
        let p = SsrfPolicy::with_allow_hosts(&[
            "nas.lan",
            "*.corp.example",
            "127.0.0.1",
            "10.1.0.0/16",
            "[fd00::1]",
        ])
        .unwrap();
        // Literal addresses.
        assert!(p.check_literal("http://127.0.0.1:8080/").unwrap().excepted);
        assert!(p.check_literal("http://127.1/").unwrap().excepted);
        assert!(
            p.check_literal("http://[::ffff:127.0.0.1]/")
                .unwrap()
                .excepted
        );
        assert!(p.check_literal("http://10.1.200.3/").unwrap().excepted);
        assert!(p.check_literal("http://[fd00::1]/").unwrap().excepted);
        assert!(p.check_literal("http://127.0.0.2/").is_err());
        assert!(p.check_literal("http://10.2.0.1/").is_err());
        // Names: private answers open for the listed names only, metadata never.
        let lan: IpAddr = "192.168.1.10".parse().unwrap();
        assert_eq!(p.check_addresses("nas.lan", &[lan]), Ok(true));
        assert_eq!(p.check_addresses("NAS.LAN.", &[lan]), Ok(true));
        assert_eq!(p.check_addresses("git.corp.example", &[lan]), Ok(true));
        assert!(p.check_addresses("corp.example", &[lan]).is_err());
        assert!(p.check_addresses("other.lan", &[lan]).is_err());
        let md: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(p.check_addresses("nas.lan", &[md]).is_err());
        let zero: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(p.check_addresses("nas.lan", &[zero]).is_err());
        // A blocked name opens with an exact entry.
        let p = SsrfPolicy::with_allow_hosts(&["printer.local", "169.254.169.254"]).unwrap();
        assert!(matches!(
            p.check_literal("http://printer.local/").unwrap().host,
            TargetHost::Name(_)
        ));
        assert!(p.check_literal("http://other.local/").is_err());
        assert!(p.check_literal("http://169.254.169.254/").unwrap().excepted);
        // Never: this-network, multicast, broadcast, even when listed.
        let p =
            SsrfPolicy::with_allow_hosts(&["0.0.0.0", "224.0.0.0/4", "255.255.255.255"]).unwrap();
        for url in [
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(p.check_literal(url).is_err(), "{url}");
        }
    }

    #[test]
    fn malformed_allow_entries_are_errors() {
        for bad in [
            "",
            "http://nas.lan",
            "nas.lan:8080",
            "10.0.0.0/0",
            "10.0.0.0/33",
            "::/0",
            "*",
            "a.*.b",
            "127.1",
            "0x7f000001",
            "user@host",
            "exa mple.com",
        ] {
            assert!(SsrfPolicy::with_allow_hosts(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn from_config() {
        let cfg = serde_json::json!({"security": {"ssrf": {"allowHosts": ["nas.lan"]}}});
        assert!(!SsrfPolicy::from_config(&cfg).unwrap().is_strict());
        assert!(
            SsrfPolicy::from_config(&serde_json::json!({}))
                .unwrap()
                .is_strict()
        );
        let bad = serde_json::json!({"security": {"ssrf": {"allowHosts": "nas.lan"}}});
        assert!(SsrfPolicy::from_config(&bad).is_err());
        let bad = serde_json::json!({"security": {"ssrf": {"allowHosts": [1]}}});
        assert!(SsrfPolicy::from_config(&bad).is_err());
    }

    #[test]
    fn check_url_no_resolve_refuses_names_and_judges_literals() {
        let v = check_url("https://example.com/", &strict(), false);
        assert!(!v.allowed);
        assert_eq!(v.findings[0].name, "unresolved_host");
        let v = check_url("http://8.8.8.8/", &strict(), false);
        assert!(v.allowed && v.reason.is_none() && v.findings.is_empty());
        let v = check_url("http://[::ffff:7f00:1]/", &strict(), false);
        assert!(!v.allowed);
        assert_eq!(v.findings[0].name, "loopback");
        assert_eq!(v.findings[0].severity, Severity::Critical);
        let p = SsrfPolicy::with_allow_hosts(&["127.0.0.1"]).unwrap();
        let v = check_url("http://127.0.0.1/", &p, false);
        assert!(v.allowed);
        assert_eq!(v.findings[0].name, "allow_hosts_exception");
    }

    #[test]
    fn check_url_resolves_localhost_names_to_loopback() {
        // A name not on the block list that the system resolver maps to loopback
        // (`localhost` is in /etc/hosts everywhere; the name rule is lifted to reach it).
        let p = SsrfPolicy::with_allow_hosts(&["localhost"]).unwrap();
        let v = check_url("http://localhost/", &p, true);
        assert!(v.allowed, "{v:?}");
        assert!(v.addresses.iter().all(|a| a.is_loopback()));
        let v = check_url("http://localhost/", &strict(), true);
        assert!(!v.allowed);
        let v = check_url("http://no-such-host.invalid/", &strict(), true);
        assert!(!v.allowed);
        assert_eq!(v.findings[0].name, "unresolved_host");
    }

    #[test]
    fn check_authority() {
        let p = strict();
        assert!(matches!(
            p.check_authority("api.anthropic.com:443").unwrap().host,
            TargetHost::Name(_)
        ));
        assert!(p.check_authority("127.1:443").is_err());
        assert!(p.check_authority("evil@127.0.0.1:443").is_err());
        assert!(p.check_authority("a.com/x:443").is_err());
    }

    proptest! {
        /// Every decimal, octal and hex spelling of an IPv4 address parses to it.
        #[test]
        fn numeric_spellings(raw in any::<u32>(), style in 0u8..4) {
            let ip = Ipv4Addr::from(raw);
            let [a, b, c, d] = ip.octets();
            let host = match style {
                0 => raw.to_string(),
                1 => format!("0x{raw:x}"),
                2 => format!("0{raw:o}"),
                _ => format!("0x{a:x}.0{b:o}.{c}.0x{d:02X}"),
            };
            prop_assert_eq!(parse_ipv4_host(&host), Some(ip));
            let verdict = check_url(&format!("http://{host}/"), &SsrfPolicy::default(), false);
            prop_assert_eq!(verdict.allowed, ip::classify(IpAddr::V4(ip)).is_public());
        }

        /// Arbitrary input never panics, and anything allowed is http(s) with a public
        /// literal address.
        #[test]
        fn arbitrary_urls(s in "\\PC{0,64}") {
            let v = check_url(&s, &SsrfPolicy::default(), false);
            if v.allowed {
                let u = Url::parse(&s).unwrap();
                prop_assert!(u.scheme() == "http" || u.scheme() == "https");
                prop_assert!(v.addresses.iter().all(|a| ip::classify(*a).is_public()));
            }
        }
    }
}
