//! Registry family [`Family::Secret`]: credential formats, shared by the output guard and the
//! log sanitizer (one definition, two consumers).
//!
//! ## Conventions every pattern here follows
//! - **Capture group `secret`.** When a pattern anchors on a key name or a public prefix
//!   (`password=`, `Authorization: Basic `, `postgres://user:`), the value alone is captured in a
//!   group named `secret` and only that group is redacted, so a reader of the redacted text still
//!   sees *which* credential was there. Without the group, the whole match is the secret.
//! - **Severity decides the output guard's action**: `Critical` is redacted before a reply
//!   leaves the daemon; `Warning` (bare `Bearer`, JWT) is reported but left in place, because
//!   both shapes appear in ordinary technical answers. The log sanitizer redacts every pattern
//!   here regardless of severity: a log line never needs a live token to be useful.
//! - **Value classes stop at whitespace and quotes**, so a match covers one token, never prose;
//!   every repetition is bounded.
//! - **Key-anchored patterns require a digit (or symbol) in the value**, which keeps
//!   `password: String`, `token = getToken()` and `apiKey: process.env.API_KEY` out while real
//!   generated credentials (which practically always contain one) still match.
//!
//! What this family does not do: it does not judge entropy (the `regex` crate cannot, and a
//! guess would be a false-positive source); bare high-entropy values without a prefix or key are
//! caught only by the output guard's exact match on known secret values.

use super::{Family, PatternDef, Source};
use crate::Severity;
use crate::Severity::{Critical, Warning};

/// Separator between a key name and its value: an optional closing quote (possibly escaped, as
/// inside JSON strings), then `=`, `:`, `:=` or `=>`, then an optional opening quote.
macro_rules! assign {
    () => {
        r#"(?:\\?["'])?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}(?:\\?["'`])?"#
    };
}

const fn secret(name: &'static str, severity: Severity, src: &'static str) -> PatternDef {
    PatternDef {
        name,
        family: Family::Secret,
        category: "secret",
        severity,
        weight: 0.0,
        source: Source::Regex(src),
    }
}

/// A password-like value: needs a digit or symbol somewhere after its first four characters or
/// before its last four, may not start like a placeholder or expression (`$VAR`, `{{x}}`,
/// `<pw>`, `***`, `(`, `[`), and stops at whitespace, quotes and angle brackets.
macro_rules! password_value {
    () => {
        r#"(?P<secret>[^\s"'`<>$%{}\[\]()*;,\\][^\s"'`<>]{4,128}[0-9!@#^?~+][^\s"'`<>]{0,128}|[^\s"'`<>$%{}\[\]()*;,\\][^\s"'`<>]{0,128}[0-9!@#^?~+][^\s"'`<>]{4,128})"#
    };
}

/// A token-like value of at least `n` characters (roughly) including a digit.
macro_rules! token_value {
    ($n:literal) => {
        concat!(
            r"(?P<secret>[A-Za-z0-9_./+=~-]{",
            $n,
            r",512}[0-9][A-Za-z0-9_./+=~-]{0,512}|[A-Za-z0-9_./+=~-]{0,512}[0-9][A-Za-z0-9_./+=~-]{",
            $n,
            r",512})"
        )
    };
}

pub(super) const PATTERNS: &[PatternDef] = &[
    // --- Whole-token formats: a public prefix that no prose or identifier carries. ---
    // PEM/PGP/OpenSSH private keys. The whole block up to the matching END line is the secret;
    // when the END line is missing (a truncated paste), the base64 body that follows is taken.
    // The body is ASCII-only and may contain single hyphens (`Proc-Type`, `AES-128-CBC`). A
    // header with no body (prose explaining the format) is not a key.
    secret(
        "private_key",
        Critical,
        r"-----BEGIN[ A-Z0-9]{0,24}PRIVATE KEY(?: BLOCK)?-----(?:(?:[\x00-\x2C\x2E-\x7F]|-[\x00-\x2C\x2E-\x7F]){1,12288}?-----END[ A-Z0-9]{0,24}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/= \t\r\n\\]{16,12288})",
    ),
    // AWS access key ids: a resource prefix and 16 upper-case alphanumerics (real ids use
    // base32, but redaction errs on the side of the wider alphabet).
    secret(
        "aws_access_key",
        Critical,
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?-u:\b)",
    ),
    // The 40-character secret access key, anchored on its conventional key names.
    secret(
        "aws_secret_key",
        Critical,
        concat!(
            r"(?i)(?:aws[_.-]?secret(?:[_.-]?access)?(?:[_.-]?key)?|secret[_.-]?access[_.-]?key)",
            assign!(),
            r"(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"
        ),
    ),
    secret(
        "anthropic_key",
        Critical,
        r"(?-u:\b)sk-ant-(?P<secret>[A-Za-z0-9_-]{20,512})",
    ),
    // `sk-proj-`, `sk-svcacct-`, `sk-admin-` and legacy `sk-` keys. The legacy branch requires 20
    // alphanumerics straight after `sk-`, which keeps `sk-ant-` out (it is anthropic_key's).
    secret(
        "openai_key",
        Critical,
        r"(?-u:\b)sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,512}|[A-Za-z0-9]{20}[A-Za-z0-9_-]{0,492})",
    ),
    // Other model providers an agent daemon is configured with: OpenRouter, Groq, xAI,
    // Perplexity, Tavily, Replicate, LlamaCloud, Together.
    secret(
        "llm_api_key",
        Critical,
        r"(?-u:\b)(?:sk-or-v1-[a-f0-9]{64}|gsk_[A-Za-z0-9]{48,56}|xai-[A-Za-z0-9]{70,90}|pplx-[A-Za-z0-9]{40,56}|tvly-(?:dev-|prod-)?[A-Za-z0-9]{28,40}|r8_[A-Za-z0-9]{37}|llx-[A-Za-z0-9_-]{40,60}|tgp_v1_[A-Za-z0-9_-]{40,48})",
    ),
    secret(
        "github_token",
        Critical,
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})(?-u:\b)",
    ),
    secret(
        "gitlab_token",
        Critical,
        r"(?-u:\b)(?:(?:glpat|gldt|glrt|glrtr|glptt|glft|glsoat|glcbt|glimt|glagent|gloas|glffct|glwt)-[A-Za-z0-9_-]{20,128}|GR1348941[A-Za-z0-9_-]{20,64})",
    ),
    secret(
        "slack_token",
        Critical,
        r"(?-u:\b)(?:xox[baprseo]-(?:[0-9]{1,2}-)?[0-9]{4,16}-[A-Za-z0-9-]{6,250}|xox[a-z]-[0-9]-[A-Za-z0-9]{60,512}|xapp-[0-9]-[A-Z0-9]{4,20}-[0-9]{4,20}-[A-Za-z0-9]{16,128})",
    ),
    secret(
        "slack_webhook",
        Critical,
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_]{6,32}/[A-Za-z0-9_]{6,32}/[A-Za-z0-9_/]{10,96})",
    ),
    secret(
        "discord_webhook",
        Critical,
        r"discord(?:app)?\.com/api/webhooks/[0-9]{8,24}/(?P<secret>[A-Za-z0-9_-]{40,100})",
    ),
    // Secret and restricted keys and webhook signing secrets; `pk_` publishable keys are public.
    secret(
        "stripe_key",
        Critical,
        r"(?-u:\b)(?:(?:sk|rk)_(?:live|test)|whsec)_[A-Za-z0-9]{16,247}",
    ),
    // Exactly 39 characters in practice; the upper bound lets a longer look-alike be redacted
    // whole rather than leave a tail.
    secret(
        "google_api_key",
        Critical,
        r"(?-u:\b)AIza[0-9A-Za-z_-]{35,64}",
    ),
    secret(
        "sendgrid_key",
        Critical,
        r"(?-u:\b)SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}",
    ),
    // Bot id, colon, then the 35-character secret that always starts with `AA`. No leading word
    // boundary: the token is usually glued to `bot` in API URLs.
    secret(
        "telegram_bot_token",
        Critical,
        r"[0-9]{5,12}:AA[A-Za-z0-9_-]{32,40}",
    ),
    // base64(user id) . base64(timestamp) . HMAC
    secret(
        "discord_bot_token",
        Critical,
        r"(?-u:\b)[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,64}",
    ),
    secret(
        "npm_token",
        Critical,
        r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)",
    ),
    secret(
        "pypi_token",
        Critical,
        r"(?-u:\b)pypi-AgE[A-Za-z0-9_-]{60,512}",
    ),
    secret(
        "huggingface_token",
        Critical,
        r"(?-u:\b)hf_[A-Za-z]{34}(?-u:\b)",
    ),
    // Service tokens with a registered or documented prefix: Azure AD client secrets,
    // HashiCorp Vault, DigitalOcean, Heroku, Databricks, Cloudflare, Doppler, Dynatrace,
    // Atlassian, 1Password, Docker, Grafana, Google OAuth, age, Sourcegraph, Notion, Figma,
    // Vercel, Linear, Postman, New Relic, Shopify, Square, Sentry, SonarQube, Supabase,
    // PlanetScale, PostHog (personal), RubyGems, Facebook, Netlify, Brevo, Mailgun, Mailchimp,
    // Twilio API keys.
    secret(
        "vendor_token",
        Critical,
        concat!(
            r"(?-u:\b)(?:",
            r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
            r"|hv[sb]\.[A-Za-z0-9_-]{24,512}",
            r"|do[opr]_v1_[a-f0-9]{64}",
            r"|HRKU-[A-Za-z0-9_-]{36,64}",
            r"|dapi[a-f0-9]{32}(?:-[0-9])?",
            r"|cf(?:at|ut|k)_[A-Za-z0-9]{40,64}",
            r"|dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,64}",
            r"|dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}",
            r"|ATATT3[A-Za-z0-9_=-]{100,300}",
            r"|ops_eyJ[A-Za-z0-9+/=_-]{100,4096}",
            r"|dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,64}",
            r"|glc_eyJ[A-Za-z0-9+/=_-]{40,512}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
            r"|GOCSPX-[A-Za-z0-9_-]{28}|ya29\.[A-Za-z0-9_-]{30,512}",
            r"|AGE-SECRET-KEY-1[0-9A-Z]{58}",
            r"|sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}",
            r"|ntn_[0-9]{11}[A-Za-z0-9]{35}",
            r"|fig[dhu]_[A-Za-z0-9_-]{40,64}",
            r"|vc[pkiar]_[A-Za-z0-9]{24,80}",
            r"|lin_api_[A-Za-z0-9]{40}",
            r"|PMAK-[a-f0-9]{24}-[a-f0-9]{34}",
            r"|NRAK-[A-Z0-9]{27}",
            r"|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
            r"|sq0(?:atp|csp)-[A-Za-z0-9_-]{22,60}",
            r"|sntry[su]_[A-Za-z0-9+/=_-]{40,512}",
            r"|sq[pua]_[a-f0-9]{40}",
            r"|sbp_(?:v0_)?[a-f0-9]{40}",
            r"|pscale_(?:pw|tkn|oauth)_[A-Za-z0-9_.-]{32,64}",
            r"|ph[xs]_[A-Za-z0-9]{40,64}",
            r"|rubygems_[a-f0-9]{48}",
            r"|EAA[MC][A-Za-z0-9]{100,512}",
            r"|nfp_[A-Za-z0-9]{36}",
            r"|xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}",
            r"|key-[a-f0-9]{32}",
            r"|[0-9a-f]{32}-us[0-9]{1,2}",
            r"|SK[0-9a-fA-F]{32}",
            r")(?-u:\b)"
        ),
    ),
    // A signed JSON Web Token. Warning: JWTs appear in documentation and are often expired, but
    // a live one is a bearer credential, so the log sanitizer still redacts it.
    secret(
        "jwt",
        Warning,
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{4,8192}(?:\.[A-Za-z0-9_-]{0,2048})?",
    ),
    // --- Credentials inside URLs and command lines. ---
    // A database or broker URL with inline credentials; only the password is the secret, the
    // scheme, user and host stay readable. A password may contain a raw `@` (taken up to the
    // last one before the host) but not `/`, `?`, `#`, quotes or whitespace.
    secret(
        "db_connection_string",
        Critical,
        r#"(?i)(?-u:\b)(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|jdbc:[a-z]{2,12})://[^\s:@/?#'"]{0,128}:(?P<secret>[^\s/?#'"]{1,256})@[A-Za-z0-9\[]"#,
    ),
    // `user:password@` in any other URL.
    secret(
        "url_password",
        Critical,
        r#"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://[^\s:@/?#'"`<>]{1,128}:(?P<secret>[^\s/?#'"`<>]{1,256})@[A-Za-z0-9\[]"#,
    ),
    // `curl -u user:password` / `--user`. Tied to curl because `-u uid:gid` means something
    // else to docker and friends.
    secret(
        "curl_user_password",
        Critical,
        concat!(
            r#"(?-u:\b)curl[^\n]{0,256}?[ \t](?:-u|--user)[ \t]{1,4}(?:\\?["'])?[^\s:"']{0,64}(?:\\?["'])?:(?:\\?["'])?"#,
            password_value!()
        ),
    ),
    // `--password x`, `-Password 'x'`, `--token x`, `--api-key=x` on a command line.
    secret(
        "cli_secret_flag",
        Critical,
        concat!(
            r#"(?i)(?:^|[ \t])--?(?:password|passwd|passphrase|pass|pwd|token|secret|api-?key|auth-token|access-token|client-secret)(?:[ \t]{1,4}|=)(?:\\?["'])?"#,
            password_value!()
        ),
    ),
    // --- Authorization headers. ---
    // Basic credentials are base64(user:password): always a secret.
    secret(
        "basic_auth",
        Critical,
        concat!(
            r"(?i)authorization",
            assign!(),
            r"basic[ \t]{1,4}(?P<secret>[A-Za-z0-9+/]{4,1024}={0,2})"
        ),
    ),
    // `Authorization: <token>`, `Authorization: Token <t>`, `Api-Token: <t>`, NTLM; Bearer is
    // left to bearer_token. The value must contain a digit, which skips `$TOKEN` placeholders.
    secret(
        "authorization_header",
        Critical,
        concat!(
            r"(?i)(?:authorization|api-token|x-api-key|x-auth-token|private-token)",
            assign!(),
            r"(?:(?:token|api-token|apikey|key|ntlm|negotiate)[ \t]{1,4})?",
            token_value!("7")
        ),
    ),
    // `Bearer <token>` anywhere. Warning: documentation shows it constantly. The token must
    // contain a digit, which keeps "Bearer authentication" and `Bearer YOUR_TOKEN` out.
    secret(
        "bearer_token",
        Warning,
        concat!(r"(?i)(?-u:\b)bearer[ \t]{1,4}", token_value!("7")),
    ),
    // --- Key = value assignments (config files, env dumps, code, logs). ---
    // 32+ hex digits assigned to a secret-sounding key (HMAC keys, API secrets, salts).
    secret(
        "hex_secret",
        Critical,
        concat!(
            r"(?i)(?:secret|key|token|passw(?:or)?d|pwd|salt|signature|hmac|auth)[A-Za-z0-9_.-]{0,30}",
            assign!(),
            r"(?P<secret>[0-9a-f]{32,512})(?-u:\b)"
        ),
    ),
    // API keys and client secrets assigned to a conventional key name. Value: 20 or more key
    // characters including a digit.
    secret(
        "generic_api_key",
        Critical,
        concat!(
            r"(?i)(?:api[_.-]?key|apikey|api[_.-]?secret|api[_.-]?token|access[_. -]?key(?:[_.-]?(?:id|secret))?|secret[_. -]?key|client[_.-]?secret|app[_.-]?secret|consumer[_.-]?secret|auth[_.-]?token|access[_.-]?token|refresh[_.-]?token|private[_.-]?token|account[_.-]?key)",
            assign!(),
            token_value!("10")
        ),
    ),
    // Other secret-, token- and credential-named keys with a token-like value including a digit.
    // A lowercase keyword must start a word (`auth_token`, `token`), so `jsonwebtoken` and
    // `tokenizer` are not keys; camel and upper case (`authToken`, `SONAR_TOKEN`) always count.
    // Only plural and `key`/`value` suffixes are allowed, so `credentialsId` and
    // `tokenCount` are names of something else.
    secret(
        "secret_assignment",
        Critical,
        concat!(
            r"(?:(?:^|[^A-Za-z])(?:secret|token|credential)|Secret|Token|Credential|SECRET|TOKEN|CREDENTIAL|(?i:signing|encryption|master)[_.-]?(?i:key))",
            r"(?:s|S|[_.-]?(?i:key|value|string))?",
            assign!(),
            token_value!("8")
        ),
    ),
    // Passwords, including the common misspellings (`pswd`, `passwrd`), `pw`/`pwd`/`pass` when
    // they start a word, typed declarations (`password: String = "..."`), comparisons and
    // `#define PASSWORD "..."`, SQL `PASSWORD '...'`/`IDENTIFIED BY '...'`.
    secret(
        "password_assignment",
        Critical,
        concat!(
            r#"(?:(?i:pa?s{1,2}w(?:o?r)?d|passphrase|identified[ \t]by)|(?:^|[^A-Za-z])(?i:pw|pwd|pass)|Pw|Pwd|PW|PWD|Pass|PASS)"#,
            r#"(?:s|S|[_.-]?(?i:hash|value|string))?"#,
            r#"(?::[ \t]{0,2}[A-Za-z][A-Za-z0-9_<>\[\]]{0,20}[ \t]{0,2}(?:=|:=))?"#,
            r#"(?:(?:\\?["'])?[ \t]{0,4}(?::=|=>|===|!==|==|!=|[:=])[ \t]{0,4}(?:\\?["'`])?|[ \t]{1,4}\\?["'])"#,
            password_value!()
        ),
    ),
    // `<password>x</password>`, `<token name="t">x</token>` in XML and HTML-ish config.
    secret(
        "xml_secret",
        Critical,
        concat!(
            r#"(?i)<(?:password|passwd|pwd|secret|token|api[_-]?key|client[_-]?secret|access[_-]?token)(?:[ \t][^>\n]{0,100})?>"#,
            password_value!(),
            r"</"
        ),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::Registry;

    fn matches(name: &str, text: &str) -> Option<String> {
        let reg = Registry::global().unwrap();
        let p = reg.get(name).unwrap();
        let re = p.regex().unwrap();
        re.captures(text).map(|c| {
            c.name("secret")
                .or_else(|| c.get(0))
                .unwrap()
                .as_str()
                .to_owned()
        })
    }

    /// One true positive and one near miss per pattern: (name, positive, captured secret, near
    /// miss that must not match).
    const CASES: &[(&str, &str, &str, &str)] = &[
        (
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEAn6/O8li+SX4m98LLYt\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEAn6/O8li+SX4m98LLYt\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n-----END PUBLIC KEY-----",
        ),
        (
            "aws_access_key",
            "id AKIAZ7QRSTUVWXYZ2345 here",
            "AKIAZ7QRSTUVWXYZ2345",
            "TODAYINASIAASACKOFRICEFELLOVER",
        ),
        (
            "aws_secret_key",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYTOOLONG",
        ),
        (
            "anthropic_key",
            "key: sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx",
            "api03-abc123xyz-456def789ghij-klmnopqrstuvwx",
            "the task-ant-api03-abc123xyz-456def789ghij is a slug",
        ),
        (
            "openai_key",
            "OPENAI=sk-proj-Xi8tdMjHV6pmbBbwilTeT3BlbkFJ3UDnpdEwNNm6wVBpYM0o",
            "sk-proj-Xi8tdMjHV6pmbBbwilTeT3BlbkFJ3UDnpdEwNNm6wVBpYM0o",
            "see the sk-learn-documentation-for-more-details page",
        ),
        (
            "llm_api_key",
            "GROQ_API_KEY=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",
            "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",
            "the gsk_short_name variable",
        ),
        (
            "vendor_token",
            "vault token hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2cy5sQmlI",
            "hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2cy5sQmlI",
            "see docs at hvs.example and ntn_123 and key-value stores",
        ),
        (
            "github_token",
            "token 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",
            "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",
            "foo_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
        ),
        (
            "gitlab_token",
            "glpat-hellOworld380_testin",
            "glpat-hellOworld380_testin",
            "glpat_hellOworld380_testin",
        ),
        (
            "slack_token",
            "xoxb-391809548274-4236212766789-i8EoyACELx2FYnSOkRPEpePN",
            "xoxb-391809548274-4236212766789-i8EoyACELx2FYnSOkRPEpePN",
            "xoxb-xoxb-my-bot-token",
        ),
        (
            "slack_webhook",
            "https://hooks.slack.com/services/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",
            "T0DCUJB1Q/B0DD08H5G/bJtrpFi1fO1JMCcwLx8uZyAg",
            "https://hooks.slack.com/services/",
        ),
        (
            "discord_webhook",
            "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX_-12",
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX_-12",
            "https://discord.com/api/webhooks/123456789012345678/short",
        ),
        (
            "stripe_key",
            "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD",
            "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD",
            "pk_live_j5krY8XTgIcDaHDb3YrsAfCl",
        ),
        (
            "google_api_key",
            "key=AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0",
            "AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0",
            "AIzaSyD3asb-2pEZVqMk",
        ),
        (
            "sendgrid_key",
            "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",
            "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",
            "SG.ngeVfQFYQlKU0ufo8x5d1A..TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
        ),
        (
            "telegram_bot_token",
            "https://api.telegram.org/bot110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw/getMe",
            "110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",
            "arn:aws:sns:aaa:111122223333:aaaaaaaaaaaaaaaaaaassssssddddddddddddd",
        ),
        (
            "discord_bot_token",
            "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
            "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
            "MZ1yGvKTjE0rY0cV8i47CjAa.uHQPq.Xb1Mk2nEhe-4iUcrGOuegj57zMC",
        ),
        (
            "npm_token",
            "//registry.npmjs.org/:_authToken=npm_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "npm_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "npm_install_hook_for_the_project",
        ),
        (
            "pypi_token",
            "pypi-AgEIcHlwaS5vcmcCJDU3OTM1MjliLWIyYTYtNDEwOC05NzRkLTM0MjNiNmEwNWIzYgACF1sxLFsitest",
            "pypi-AgEIcHlwaS5vcmcCJDU3OTM1MjliLWIyYTYtNDEwOC05NzRkLTM0MjNiNmEwNWIzYgACF1sxLFsitest",
            "pypi-package-name",
        ),
        (
            "huggingface_token",
            "HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh1234",
        ),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw",
            "bm90X3ZhbGlkX2pzb25fYXRfYWxs.bm90X3ZhbGlkX2pzb25fYXRfYWxs.SflKxwRJSMeKKF2QT4fw",
        ),
        (
            "db_connection_string",
            "DATABASE_URL=postgres://app:s3cr3t-P4ss@db.internal:5432/app",
            "s3cr3t-P4ss",
            "DATABASE_URL=postgres://db.internal:5432/app",
        ),
        (
            "url_password",
            "https://cafebabe:deadbeef@gems.contribsys.com/",
            "deadbeef",
            "https://url:8000/ @something else",
        ),
        (
            "curl_user_password",
            "curl --cacert ca.crt -u elastic:P@ssw0rd$1 https://localhost:9200",
            "P@ssw0rd$1",
            "docker run -u 1000:1000 image && curl -u \"${user}:${password}\" https://x",
        ),
        (
            "cli_secret_flag",
            "mysql -u root --password Sne3sd8AZjq",
            "Sne3sd8AZjq",
            "docker login --password-stdin --password $REGISTRY_PASSWORD",
        ),
        (
            "basic_auth",
            "Authorization: Basic YnJvd3Nlcjpzd29yZGZpc2g=",
            "YnJvd3Nlcjpzd29yZGZpc2g=",
            "a basic understanding of authorization",
        ),
        (
            "authorization_header",
            "-H \"Authorization: Token 22cb987851bc5659229114c62e60c79abd0d2c08\"",
            "22cb987851bc5659229114c62e60c79abd0d2c08",
            "-H \"Authorization: $API_TOKEN\"",
        ),
        (
            "bearer_token",
            "Authorization: Bearer cfcabd11c7ed9a41b1a3e063c32d5114",
            "cfcabd11c7ed9a41b1a3e063c32d5114",
            "use Bearer authentication with Bearer YOUR_TOKEN_HERE",
        ),
        (
            "hex_secret",
            "hmac_key = \"8b1118b376c313ed420e5133ba91307817ed52c2\"",
            "8b1118b376c313ed420e5133ba91307817ed52c2",
            "commit 8b1118b376c313ed420e5133ba91307817ed52c2",
        ),
        (
            "generic_api_key",
            "api_key: 'Ab3dEf6hIj9kLm2nOp5qRs'",
            "Ab3dEf6hIj9kLm2nOp5qRs",
            "apiKey: process.env.MY_SERVICE_API_KEY",
        ),
        (
            "secret_assignment",
            "token: s.ZC9Ecf4M5g9o34Q6RkzGsj0z",
            "s.ZC9Ecf4M5g9o34Q6RkzGsj0z",
            "token = request.headers.getToken",
        ),
        (
            "password_assignment",
            "DB_PASSWORD=Prl23Db#@x",
            "Prl23Db#@x",
            "password: String,",
        ),
        (
            "xml_secret",
            "<password name=\"password\">cackle!</password>",
            "cackle!",
            "<password>${DB_PASSWORD}</password>",
        ),
    ];

    #[test]
    fn at_least_eighteen_secret_patterns_with_stable_names() {
        assert!(PATTERNS.len() >= 18);
        for required in [
            "aws_access_key",
            "aws_secret_key",
            "openai_key",
            "anthropic_key",
            "github_token",
            "slack_token",
            "stripe_key",
            "google_api_key",
            "sendgrid_key",
            "telegram_bot_token",
            "discord_bot_token",
            "jwt",
            "bearer_token",
            "db_connection_string",
            "url_password",
            "private_key",
            "hex_secret",
            "generic_api_key",
        ] {
            assert!(
                PATTERNS.iter().any(|p| p.name == required),
                "missing {required}"
            );
        }
        assert!(PATTERNS.iter().all(|p| p.category == "secret"));
    }

    #[test]
    fn every_pattern_has_a_positive_and_a_near_miss() {
        for p in PATTERNS {
            assert!(
                CASES.iter().any(|c| c.0 == p.name),
                "no test case for {}",
                p.name
            );
        }
        for &(name, pos, want, neg) in CASES {
            assert_eq!(
                matches(name, pos).as_deref(),
                Some(want),
                "{name} on {pos:?}"
            );
            assert_eq!(matches(name, neg), None, "{name} matched near miss {neg:?}");
        }
    }

    #[test]
    fn anthropic_keys_are_not_claimed_by_openai() {
        let k = "sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx";
        assert!(matches("anthropic_key", k).is_some());
        assert_eq!(matches("openai_key", k), None);
    }

    #[test]
    fn ordinary_identifiers_are_not_secrets() {
        let reg = Registry::global().unwrap();
        let set = reg.select(&[Family::Secret]).unwrap();
        for text in [
            "commit 9a038989604e8da62ecddbe2094b16ce1b778be1 fixed it",
            "uuid 203db13e-70c7-462b-9a3d-bf32640cb0be",
            "\"kms_key_id\": \"555ea4a3-d53a-4412-9c66-3a7cb667b0d6\"",
            "password: <your password>",
            "password = os.environ[\"DB_PASSWORD\"]",
            "let password: Option<String> = None;",
            "curl -u \"${username}:${password}\" https://example.com",
            "apiKey: process.env.API_KEY",
            "Please enter your password and token to continue.",
            "The bearer of this letter is a friend.",
            "https://example.com:8443/path?email=a@b.example",
            "sha256:2b00042f7481c7b056c4b410d28f33cf2b00042f7481c7b056c4b410d28f33cf",
            "postgres://localhost:5432/mydb",
            "secretSize must be >= XXH3_SECRET_SIZE_MIN",
        ] {
            let hits: Vec<_> = set.matching(text).iter().map(|p| p.name()).collect();
            assert!(hits.is_empty(), "{text:?} matched {hits:?}");
        }
    }

    /// Samples from the public corpora in `shared/corpora/secrets`: gitleaks rule tests (MIT),
    /// CredSweeper samples (MIT, Samsung) and detect-secrets plugin tests (Apache-2.0, Yelp).
    /// Each line: expected pattern (or `None` for a labelled negative) and the text.
    #[test]
    fn corpus_samples() {
        let reg = Registry::global().unwrap();
        let set = reg.select(&[Family::Secret]).unwrap();
        let cases: &[(Option<&str>, &str)] = &[
            // gitleaks
            (
                Some("curl_user_password"),
                "curl -s -v --user \"j.smith:dB2yF6@qL9vZm1P#4J\" \"https://api.contoso.org/user/me\"",
            ),
            (
                Some("url_password"),
                "http://cafeb4b3:d3adb33f@enterprise.contribsys.com:80/path?param1=true#heading1",
            ),
            (
                Some("vendor_token"),
                "-vaultToken hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2cy5sQmlIZVNyTWJNcDRsYWJpQjlhYjVlb1cQh6PL8wEYAg\"",
            ),
            (
                Some("slack_webhook"),
                "https://hooks.slack.com/workflows/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",
            ),
            (
                Some("basic_auth"),
                "curl -H 'Authorization: Basic YnJvd3Nlcjo=' \\",
            ),
            (
                Some("authorization_header"),
                "curl -H \"Authorization: Api-Token 22cb987851bc5659l29114c62e60c79abd0d2c08\"",
            ),
            (
                None,
                "report_access_id: e8e4df51-2054-49b0-ab1c-516ac95c691d",
            ),
            (
                None,
                "SRCREV_moby = \"43fc912ef59a83054ea7f6706df4d53a7dea4d80\"",
            ),
            (
                None,
                "LIC_FILES_CHKSUM = \"file://${WORKDIR}/license.html;md5=5c94767cedb5d6987c902ac850ded2c6\"",
            ),
            (
                None,
                "credentialsId: 'ff083f76-7804-4ef1-80e4-fe975bb9141b'",
            ),
            (
                None,
                "notes            = \"Maven - io.jsonwebtoken:jjwt-jackson-0.11.2\"",
            ),
            (None, "curl -u \"${_username}:${_password}\""),
            (
                None,
                "curl --user neo4j:[PASSWORD] http://[IP]:7474/db/data/",
            ),
            (
                None,
                "curl -H \"Authorization: Bearer $(gcloud auth print-access-token)\"",
            ),
            (
                None,
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\nVersion: GnuPG v2\n\nmQENBFOrMNcBCAC+gLI4s3bUkobS5NpOQbW",
            ),
            (None, "secretSize must be >= XXH3_SECRET_SIZE_MIN"),
            // CredSweeper
            (
                Some("password_assignment"),
                "CREATE USER chuck WITH PASSWORD 'SqLpa5sW0rD' SUPERUSER;",
            ),
            (
                Some("slack_token"),
                "xoxb-391809548274-4236212766789-i8EoyACELx2FYnSOkRPEpePN",
            ),
            (
                Some("cli_secret_flag"),
                "mysql -u root --password Sne3sd8AZjq",
            ),
            (Some("password_assignment"), "X3_PSWD=d37Yt1Jnv0-z"),
            (
                Some("llm_api_key"),
                "xai-wjluCw1zixzDiYOxeeGtIwuHjIyax8SukK2lFWtBRn1yfEPMQzv63sMCd1nzqylpuDXQjEGd19OJi3cL",
            ),
            (None, "password: <PostgreSQL PW>"),
            (None, "    type=\"password\""),
            (None, "    private static final byte JAVA_BYTE = 123;"),
            (
                None,
                "fp_tokenized_value=\"b035d48j9X2dfjF0hb9sd8Guf5hWu2ia\"",
            ),
            // detect-secrets
            (
                Some("discord_bot_token"),
                "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
            ),
            (
                Some("generic_api_key"),
                "AccountKey=lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLWntUO1F8j8rQ==",
            ),
            (Some("aws_access_key"), "ASIAZZZZZZZZZZZZZZZZ"),
            (None, "akiazzzzzzzzzzzzzzzz"),
            (None, "foo:AAH1bjqpKKW3maRSPAxzIU-0v6xNuq2-NjM"),
            (None, "pk_live_j5krY8XTgIcDaHDb3YrsAfCl"),
            (None, "https://url:8000 @something else"),
            (None, "//registry.npmjs.org/:_authToken=${NPM_TOKEN}"),
        ];
        for &(want, text) in cases {
            let hits: Vec<&str> = set.matching(text).iter().map(|p| p.name()).collect();
            match want {
                Some(name) => assert!(hits.contains(&name), "{text:?}: {hits:?}"),
                None => assert!(hits.is_empty(), "{text:?}: {hits:?}"),
            }
        }
    }

    #[test]
    fn password_with_at_sign_in_url_is_captured_whole() {
        assert_eq!(
            matches(
                "db_connection_string",
                "mongodb+srv://admin:p@ss:w0rd@cluster0.example.net/db"
            )
            .as_deref(),
            Some("p@ss:w0rd")
        );
    }

    #[test]
    fn truncated_private_key_takes_the_body() {
        let got = matches(
            "private_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAA",
        )
        .unwrap();
        assert!(got.ends_with("AAAA"));
    }
}
