//! Signed webhooks: HMAC-SHA256/384/512 over `"<timestamp>.<raw body>"`, a mandatory timestamp
//! with a freshness window, and a replay cache.
//!
//! Guarantees:
//! - The MAC covers the timestamp as well as the body, so a captured delivery cannot be re-sent
//!   with a fresh timestamp; inside the window the replay cache refuses the same MAC twice.
//! - The signature may be hex or base64 (standard or URL-safe), with or without an
//!   `<algorithm>=` prefix; a prefix naming another algorithm is refused. Comparison is
//!   constant-time over the decoded bytes, so hex and base64 of one MAC are the same replay.
//! - The timestamp is required (the original let a missing one through) and must lie within
//!   `maxAgeSec` of now in either direction.
//!
//! Not guaranteed: the sender's secret staying secret, or ordering between deliveries.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::config::HmacAlgorithm;

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// Header with the Unix-seconds timestamp.
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
/// Most signatures remembered at once; beyond it new deliveries are refused rather than
/// forgetting a live one.
const REPLAY_CAPACITY: usize = 100_000;

/// Why a delivery was refused; the string is the audit `reason` and the response's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MissingSignature,
    MissingTimestamp,
    BadTimestamp,
    StaleTimestamp,
    MalformedSignature,
    BadSignature,
    Replayed,
    ReplayCacheFull,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing signature",
            Rejection::MissingTimestamp => "missing timestamp",
            Rejection::BadTimestamp => "invalid timestamp",
            Rejection::StaleTimestamp => "timestamp outside the freshness window",
            Rejection::MalformedSignature => "malformed signature",
            Rejection::BadSignature => "invalid signature",
            Rejection::Replayed => "replayed delivery",
            Rejection::ReplayCacheFull => "replay cache full",
        }
    }
}

/// The MAC of `"<timestamp>.<body>"`.
pub fn sign(algorithm: HmacAlgorithm, secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], ts: &str, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(ts.as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match algorithm {
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(secret, timestamp, body),
        HmacAlgorithm::Sha384 => run::<Hmac<sha2::Sha384>>(secret, timestamp, body),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(secret, timestamp, body),
    }
}

/// Decodes a presented signature to raw MAC bytes of the algorithm's length.
/// Longest `<algorithm>=` prefix looked for (the names are 6 characters).
const MAX_PREFIX_LEN: usize = 16;

pub fn decode_signature(algorithm: HmacAlgorithm, presented: &str) -> Option<Vec<u8>> {
    let mut sig = presented.trim();
    // An `<algorithm>=` prefix is short; without the length bound, a base64 MAC whose only
    // `=` is its padding (SHA-512 without `+` or `/`: ~6.5% of them) read as a wrong prefix.
    if let Some((prefix, rest)) = sig.split_once('=')
        && !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        && !rest.is_empty()
    {
        if !prefix.eq_ignore_ascii_case(algorithm.name()) {
            return None;
        }
        sig = rest;
    }
    let len = algorithm.digest_len();
    if sig.len() == len * 2 && sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return decode_hex(sig);
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(sig).ok())
        .filter(|bytes| bytes.len() == len)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .map(|b| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    Some(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Checks one delivery. `now_secs` is the current Unix time.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    algorithm: HmacAlgorithm,
    secret: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_secs: i64,
    max_age_secs: i64,
    replay: &ReplayCache,
) -> Result<(), Rejection> {
    let signature = signature.ok_or(Rejection::MissingSignature)?;
    let ts_text = timestamp.ok_or(Rejection::MissingTimestamp)?.trim();
    let ts: i64 = ts_text.parse().map_err(|_| Rejection::BadTimestamp)?;
    if now_secs.abs_diff(ts) > max_age_secs.unsigned_abs() {
        return Err(Rejection::StaleTimestamp);
    }
    let presented = decode_signature(algorithm, signature).ok_or(Rejection::MalformedSignature)?;
    let expected = sign(algorithm, secret, ts_text, body);
    if !bool::from(expected.ct_eq(&presented)) || expected.is_empty() {
        return Err(Rejection::BadSignature);
    }
    // Remembered until the timestamp itself leaves the window: after that the freshness check
    // refuses the delivery anyway.
    replay.check_and_insert(expected, ts.saturating_add(max_age_secs), now_secs)
}

/// MACs seen inside the freshness window.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<Vec<u8>, i64>>,
}

impl ReplayCache {
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    fn check_and_insert(&self, mac: Vec<u8>, expires: i64, now: i64) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&until) = seen.get(&mac)
            && until >= now
        {
            return Err(Rejection::Replayed);
        }
        if seen.len() >= REPLAY_CAPACITY {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= REPLAY_CAPACITY {
                return Err(Rejection::ReplayCacheFull);
            }
        }
        seen.insert(mac, expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_padded_base64_mac_without_plus_or_slash_is_not_read_as_a_prefix() {
        // Find a body whose SHA-512 MAC encodes to base64 with no `+` or `/`: its only `=`
        // is then the padding.
        let mac = (0..10_000)
            .map(|i| {
                sign(
                    HmacAlgorithm::Sha512,
                    b"k",
                    "100",
                    format!("payload {i}").as_bytes(),
                )
            })
            .find(|mac| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(mac);
                !b64.contains('+') && !b64.contains('/')
            })
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&mac);
        assert!(b64.ends_with("=="), "{b64}");
        assert_eq!(
            decode_signature(HmacAlgorithm::Sha512, &b64),
            Some(mac.clone())
        );
        assert_eq!(
            decode_signature(HmacAlgorithm::Sha512, &format!("sha512={b64}")),
            Some(mac)
        );
        // A short wrong prefix is still refused.
        assert_eq!(
            decode_signature(HmacAlgorithm::Sha512, &format!("sha1={b64}")),
            None
        );
    }

    #[test]
    fn accepts_hex_base64_and_prefixed_for_every_algorithm() {
        for alg in [
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha384,
            HmacAlgorithm::Sha512,
        ] {
            let mac = sign(alg, b"k", "100", b"body");
            assert_eq!(mac.len(), alg.digest_len());
            let b64 = base64::engine::general_purpose::STANDARD.encode(&mac);
            for presented in [
                hex(&mac),
                hex(&mac).to_uppercase(),
                format!("{}={}", alg.name(), hex(&mac)),
                b64.clone(),
                format!("{}={b64}", alg.name()),
            ] {
                assert_eq!(
                    decode_signature(alg, &presented),
                    Some(mac.clone()),
                    "{presented}"
                );
            }
            assert_eq!(decode_signature(alg, &format!("md5={}", hex(&mac))), None);
        }
    }

    #[test]
    fn failures_are_each_reported() {
        let cache = ReplayCache::new();
        let ts = NOW.to_string();
        let good = hex(&sign(HmacAlgorithm::Sha256, b"k", &ts, b"x"));
        let v = |sig: Option<&str>, t: Option<&str>, body: &[u8]| {
            verify(HmacAlgorithm::Sha256, b"k", sig, t, body, NOW, 300, &cache)
        };
        assert_eq!(v(None, Some(&ts), b"x"), Err(Rejection::MissingSignature));
        assert_eq!(v(Some(&good), None, b"x"), Err(Rejection::MissingTimestamp));
        assert_eq!(
            v(Some(&good), Some("soon"), b"x"),
            Err(Rejection::BadTimestamp)
        );
        let old = (NOW - 301).to_string();
        assert_eq!(
            v(Some(&good), Some(&old), b"x"),
            Err(Rejection::StaleTimestamp)
        );
        let future = (NOW + 301).to_string();
        assert_eq!(
            v(Some(&good), Some(&future), b"x"),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            v(Some("zz"), Some(&ts), b"x"),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(
            v(Some(&good), Some(&ts), b"y"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(v(Some(&good), Some(&ts), b"x"), Ok(()));
        assert_eq!(v(Some(&good), Some(&ts), b"x"), Err(Rejection::Replayed));
    }
}
