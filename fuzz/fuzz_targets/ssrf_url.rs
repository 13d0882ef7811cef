//! The SSRF URL check must never panic, and must never allow what it cannot stand behind: an
//! allowed URL is http(s), has no userinfo, and every address it names is public.
#![no_main]

use comis_net::ip::classify;
use comis_net::{SsrfPolicy, check_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let verdict = check_url(input, &SsrfPolicy::default(), false);
    assert_eq!(verdict.allowed, verdict.reason.is_none());
    if verdict.allowed {
        let url = url::Url::parse(input).unwrap();
        assert!(matches!(url.scheme(), "http" | "https"));
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(!verdict.addresses.is_empty());
        assert!(verdict.addresses.iter().all(|a| classify(*a).is_public()));
    }
    // The same bytes as a proxy CONNECT authority.
    let _ = SsrfPolicy::default().check_authority(input);
});
