//! The test servers answer malformed requests the way the real APIs do, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use comis_net::{ClientConfig, FetchRequest, GuardedClient, SsrfPolicy};
use comis_testkit::{ProviderServer, Reply};
use serde_json::{Value, json};

fn client() -> GuardedClient {
    GuardedClient::new(
        SsrfPolicy::with_allow_hosts(&["127.0.0.1"]).unwrap(),
        ClientConfig::default(),
    )
    .unwrap()
}

async fn post(url: String, headers: &[(&str, &str)], body: Value) -> (u16, Value, String) {
    let mut req = FetchRequest::get(url);
    req.method = "POST".into();
    req.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    req.body = Some(body.to_string().into_bytes());
    let r = client().fetch(req).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    (
        r.status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test]
async fn anthropic_checks_headers_and_body() {
    let s = ProviderServer::anthropic().await.unwrap();
    s.expect_api_key("k");
    let url = format!("{}/v1/messages", s.base_url());
    let good = json!({"model": "m", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});

    let (status, body, _) = post(
        url.clone(),
        &[("anthropic-version", "2023-06-01")],
        good.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");

    let (status, body, _) = post(url.clone(), &[("x-api-key", "k")], good.clone()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let hdrs = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let (status, body, _) = post(url.clone(), &hdrs, json!({"model": "m", "messages": []})).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    s.push(Reply::text("hello"));
    let (status, _, text) = post(url, &hdrs, good).await;
    assert_eq!(status, 200);
    assert!(text.starts_with("event: message_start\ndata: "));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    assert_eq!(s.request_count(), 4, "refused requests are counted too");
}

#[tokio::test]
async fn openai_streams_usage_only_when_asked_and_ends_with_done() {
    let s = ProviderServer::openai().await.unwrap();
    let url = format!("{}/chat/completions", s.base_url());
    s.push(Reply::text("a"));
    s.push(Reply::text("b"));
    let base =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (_, _, plain) = post(url.clone(), &[], base.clone()).await;
    assert!(!plain.contains("\"usage\""));
    assert!(plain.ends_with("data: [DONE]\n\n"));
    let mut with = base;
    with["stream_options"] = json!({"include_usage": true});
    let (_, _, text) = post(url.clone(), &[], with).await;
    assert!(text.contains("\"prompt_tokens\":10"));
    let (status, body, _) = post(format!("http://{}/v1/nope", s.addr()), &[], json!({})).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn ollama_streams_ndjson_and_an_empty_script_is_a_500() {
    let s = ProviderServer::ollama().await.unwrap();
    let url = format!("{}/api/chat", s.base_url());
    s.push(Reply::text("hey").chunk_chars(1).usage(3, 2));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, text) = post(url.clone(), &[], body.clone()).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["done"], true);
    assert_eq!(lines[3]["eval_count"], 2);
    let (status, err, _) = post(url, &[], body).await;
    assert_eq!(status, 500);
    assert!(err["error"].as_str().unwrap().contains("ran out"));
}
