//! A gateway with a trivial in-process backend, for load tests with wrk (BENCHMARKS.md).
//!
//! `bench_server [port]` listens on 127.0.0.1 (port 4766 by default) with one `*` token,
//! `bench-token-0123456789abcdef0123456789abcdef`, and the per-IP rate limit lifted (one wrk
//! client is one IP). It prints its address and runs until killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;

use comis_agent::runtime::{TurnEvent, TurnReply, TurnRequest};
use comis_gateway::{AgentInfo, Backend, BackendError, BoxFuture, Gateway, GatewayConfig};
use tokio::sync::mpsc;

struct Echo;

impl Backend for Echo {
    fn execute(&self, request: TurnRequest) -> BoxFuture<'_, Result<TurnReply, BackendError>> {
        Box::pin(async move {
            Ok(TurnReply {
                text: request.text,
                stopped: None,
                usage: Default::default(),
                trace_id: "bench".into(),
                audit_ids: vec![],
            })
        })
    }

    fn stream(
        &self,
        request: TurnRequest,
        _events: mpsc::Sender<TurnEvent>,
    ) -> BoxFuture<'_, Result<TurnReply, BackendError>> {
        self.execute(request)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        vec![AgentInfo {
            id: "default".into(),
            provider: "none".into(),
            model: "echo".into(),
            default: true,
        }]
    }
}

fn main() {
    let port = std::env::args()
        .nth(1)
        .map_or(4766, |p| p.parse().expect("port"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = GatewayConfig {
            port,
            tokens: vec![comis_gateway::TokenConfig {
                id: "bench".into(),
                secret: "bench-token-0123456789abcdef0123456789abcdef".into(),
                scopes: vec!["*".into()],
            }],
            ..GatewayConfig::default()
        };
        config.rate_limit.max_requests = u32::MAX;
        let gateway = Gateway::bind(
            config,
            Default::default(),
            Arc::new(Echo),
            comis_agent::EventBus::new(),
        )
        .await
        .unwrap();
        println!("listening on {}", gateway.local_addr());
        gateway.run(std::future::pending()).await.unwrap();
    });
}
