//! `channels.irc` and `channels.email` as the original spells them: defaults, camelCase keys,
//! unknown keys refused, passwords held as secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use comis_channels::config::{AllowMode, ChannelsConfig};
use comis_secrets::ExposeSecret;

#[test]
fn irc_and_email_sections_parse_with_the_original_keys_and_defaults() {
    let cfg: ChannelsConfig = serde_json::from_str(
        r##"{
          "irc": {"enabled": true, "host": "irc.libera.chat", "nick": "comis",
                  "channels": ["#comis"], "nickservPassword": "hunter2",
                  "allowFrom": ["alice", "*!*@trusted.example"]},
          "email": {"enabled": true, "imapHost": "imap.example.org", "smtpHost": "smtp.example.org",
                    "address": "bot@example.org", "password": "pw", "allowFrom": ["a@example.org"]}
        }"##,
    )
    .unwrap();
    let irc = cfg.irc.unwrap();
    assert!(irc.tls, "TLS is on unless turned off");
    assert_eq!(irc.port(), 6697);
    assert_eq!(irc.nickserv_password.unwrap().expose_secret(), "hunter2");
    let email = cfg.email.unwrap();
    assert_eq!((email.imap_port, email.smtp_port), (993, 587));
    assert!(email.secure);
    assert_eq!(email.allow_mode, AllowMode::Allowlist);
    assert_eq!(email.polling_interval_ms, 60_000);
    assert_eq!(email.effective_allow_from(), ["a@example.org"]);
    // The password never shows in Debug output.
    assert!(!format!("{email:?}").contains("\"pw\""));
}

#[test]
fn unknown_keys_and_bad_modes_are_refused() {
    for bad in [
        r#"{"irc": {"nick": "x", "tsl": false}}"#,
        r#"{"email": {"allowMode": "everyone"}}"#,
        r#"{"email": {"imapPort": 70000}}"#,
    ] {
        assert!(
            serde_json::from_str::<ChannelsConfig>(bad).is_err(),
            "{bad}"
        );
    }
    let plain: ChannelsConfig = serde_json::from_str(r#"{"irc": {"tls": false}}"#).unwrap();
    assert_eq!(plain.irc.unwrap().port(), 6667);
}
