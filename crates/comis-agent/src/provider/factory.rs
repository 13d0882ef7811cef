//! Building a provider from its `providers.entries.<id>` config.
//!
//! Guarantees: the API key is read once, here, through the agent's
//! [`ScopedSecretManager`] (so the access is allowlisted and reported as `secret:accessed`)
//! and kept in a `SecretString`; a key that is named but missing or not allowed is an error
//! at build time, never an unauthenticated request later. Only the operator's `baseUrl` host
//! gets an SSRF exception, and only when it needs one (loopback, LAN).
//!
//! Defaults: `anthropic` → `https://api.anthropic.com`, key `ANTHROPIC_API_KEY`; `openai`
//! → `https://api.openai.com/v1`, key `OPENAI_API_KEY` for that host and none for any other
//! (a local vLLM / llama.cpp / LM Studio); `ollama` → `http://127.0.0.1:11434`, no key.
//!
//! Does not: build the `scripted` provider (the runtime does, by name only).

use std::sync::Arc;
use std::time::Duration;

use comis_secrets::{ScopedSecretManager, SecretAccess};

use crate::AgentError;
use crate::config::ProviderEntry;
use crate::provider::anthropic::{self, AnthropicProvider};
use crate::provider::http::{Endpoint, KeyStyle, ProviderHttp};
use crate::provider::ollama::{self, OllamaProvider};
use crate::provider::openai::{self, OpenAiProvider};
use crate::provider::{Provider, ProviderError};

fn config_error(id: &str, field: &str, reason: impl Into<String>) -> AgentError {
    AgentError::Config {
        key: format!("providers.entries.{id}.{field}"),
        reason: reason.into(),
    }
}

/// Builds the provider `id` described by `entry`.
///
/// # Errors
/// [`AgentError::Config`] for an unknown or unsupported `type`, a bad `baseUrl` or header;
/// [`AgentError::Provider`] (with [`ProviderError::MissingKey`]'s text) when the named key is
/// missing or not allowed for this agent; [`AgentError::Net`] when the client cannot be built.
pub fn build_provider(
    id: &str,
    entry: &ProviderEntry,
    secrets: &ScopedSecretManager,
    http: &ProviderHttp,
) -> Result<Arc<dyn Provider>, AgentError> {
    let kind = entry.kind.as_str();
    let (default_base, style) = match kind {
        "anthropic" => (anthropic::DEFAULT_BASE_URL, KeyStyle::XApiKey),
        "openai" => (openai::DEFAULT_BASE_URL, KeyStyle::Bearer),
        "ollama" => (ollama::DEFAULT_BASE_URL, KeyStyle::Bearer),
        "scripted" => {
            return Err(config_error(
                id,
                "type",
                "the scripted provider is built by the runtime, not by build_provider",
            ));
        }
        other => {
            return Err(config_error(
                id,
                "type",
                format!("unknown provider type {other:?} (anthropic | openai | ollama | scripted)"),
            ));
        }
    };
    let base = if entry.base_url.trim().is_empty() {
        default_base.to_owned()
    } else {
        entry.base_url.trim().trim_end_matches('/').to_owned()
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(config_error(
            id,
            "baseUrl",
            "must be an http:// or https:// URL",
        ));
    }
    let official_openai = kind == "openai" && base == openai::DEFAULT_BASE_URL;
    let key_name = match (&entry.api_key_name, kind) {
        (Some(n), _) if !n.trim().is_empty() => Some(n.trim().to_owned()),
        (_, "anthropic") => Some("ANTHROPIC_API_KEY".to_owned()),
        (_, "openai") if official_openai => Some("OPENAI_API_KEY".to_owned()),
        _ => None,
    };
    let key = match &key_name {
        Some(name) => Some(secrets.require(name).map_err(|_| AgentError::Provider {
            provider: id.to_owned(),
            reason: ProviderError::MissingKey(name.clone()).to_string(),
        })?),
        None => None,
    };
    let client = http
        .client
        .for_configured_url(&base)
        .map_err(|e| config_error(id, "baseUrl", e.to_string()))?;
    let path = match kind {
        "anthropic" => "/v1/messages",
        "openai" => "/chat/completions",
        _ => "/api/chat",
    };
    let mut headers: Vec<(String, String)> = entry
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kind == "anthropic" {
        headers.push((
            "anthropic-version".into(),
            anthropic::ANTHROPIC_VERSION.into(),
        ));
    }
    headers.push((
        "accept".into(),
        "text/event-stream, application/x-ndjson".into(),
    ));
    let timeout_ms = if entry.timeout_ms == 0 {
        ProviderEntry::default().timeout_ms
    } else {
        entry.timeout_ms
    };
    let endpoint = Endpoint {
        provider_id: id.to_owned(),
        url: format!("{base}{path}"),
        client,
        key,
        key_style: style,
        headers,
        timeout: Duration::from_millis(timeout_ms),
        max_retries: entry.max_retries,
        retry_base: http.retry_base,
        max_bytes: http.max_response_bytes,
    };
    let provider: Arc<dyn Provider> = match kind {
        "anthropic" => Arc::new(AnthropicProvider::new(id.to_owned(), endpoint)),
        "openai" => Arc::new(OpenAiProvider::new(
            id.to_owned(),
            endpoint,
            official_openai,
        )),
        _ => Arc::new(OllamaProvider::new(id.to_owned(), endpoint)),
    };
    Ok(provider)
}
