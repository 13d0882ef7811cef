//! The running daemon: every service it wires, in one place.
//!
//! Order at start: load and validate the config (refuse to start on any error) → take the
//! instance lock → pid file → logging → store and event bus (the hash-chained audit log as a
//! sink) → services ([`start_services`]) → state file → `daemon:started` → freed start-up heap
//! returned to the kernel. The host probe (it spawns bwrap) runs beside opening the store; the
//! services wait for it, since it decides whether exec has a sandbox.
//!
//! Signals: SIGTERM and SIGINT stop gracefully (services stopped, pending approvals denied,
//! `daemon:stopped` recorded, the store closed, pid and state files removed). SIGHUP reloads
//! `config.yaml` and the vault after validating them; an invalid file leaves the running
//! configuration in place and the log says why. An accepted configuration is applied by
//! restarting the services inside the process, as a restart would but keeping the store,
//! the audit chain, the host probe and the pid: turns in flight finish or are refused,
//! pending approvals are denied, the gateway drains and binds again (a changed address
//! applies), channels reconnect, and agents, providers and secrets are rebuilt from the new
//! files. If the new services cannot start (the new port is taken, say), the previous
//! configuration is started again and the reload is recorded as refused.
//!
//! A reloaded `logLevel` applies at once.
//!
//! Does not: restart crashed services (the service manager restarts the daemon).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use comis_agent::event::{AuditSink, Event, EventBus, EventKind, Outcome};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::wiring;
use super::{DaemonState, InstanceLock, PID_FILE, STATE_FILE, logging, now};
use crate::cli::CliError;
use crate::config::load::{self, Loaded};
use crate::config::schema::Config;
use crate::config::{ConfigError, home};

/// What every service of the daemon is given.
#[derive(Debug, Clone)]
#[allow(
    dead_code,
    reason = "the fields are for the services wired in start_services"
)]
pub struct DaemonContext {
    pub home: PathBuf,
    /// The current configuration; replaced on each accepted SIGHUP reload.
    pub config: watch::Receiver<Arc<Config>>,
    pub store: Arc<comis_store::Store>,
    pub bus: EventBus,
    /// Vault + environment snapshot (agents get scoped views of it); retaken on each accepted
    /// SIGHUP reload, so `comis secrets set` + SIGHUP reaches the running daemon.
    pub secrets: watch::Receiver<Arc<comis_secrets::SecretManager>>,
    /// The host probe, once it has run (exec stays disabled until then).
    pub probe: Arc<Mutex<Option<comis_sandbox::HostProbe>>>,
    /// Signed deliveries already accepted (gateway webhooks, Slack events): one set of caches
    /// for the process, so a reload (which builds a new gateway and new channel adapters)
    /// does not forget them and accept a replay.
    pub replay: wiring::ReplayCaches,
}

/// The services the daemon runs. Each is stopped, in reverse order, on shutdown.
#[derive(Debug)]
pub struct Services {
    /// What `comis daemon status` shows as the gateway address ("" when none is listening).
    pub gateway_addr: String,
    /// Tasks to abort at shutdown (the gateway first, after its graceful stop).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub runtime: Option<Arc<comis_agent::runtime::Runtime>>,
    /// Tells the gateway to stop accepting and drain.
    pub stop: Option<watch::Sender<bool>>,
    /// What they were started from, to start again if a reloaded configuration cannot.
    pub config: Arc<Config>,
    pub secrets: Arc<comis_secrets::SecretManager>,
    pub redacted: serde_json::Value,
}

/// Starts the agent runtime, the gateway and the channels (see [`super::wiring`]).
///
/// `probe` is the host probe (it decides whether exec has a sandbox). The gateway is bound
/// before this returns, so readiness means `/health` answers.
pub async fn start_services(
    ctx: &DaemonContext,
    redacted: serde_json::Value,
    probe: &comis_sandbox::HostProbe,
) -> Result<Services, CliError> {
    let config = ctx.config.borrow().clone();
    let secrets = ctx.secrets.borrow().clone();
    // No command may see the daemon's own files (vault, master key, database, config), even
    // where a configured path would bind them.
    let sandbox_config = comis_sandbox::SandboxConfig {
        hidden: vec![ctx.home.clone()],
        ..comis_sandbox::SandboxConfig::default()
    };
    let sandbox = match comis_sandbox::Sandbox::new(sandbox_config, probe) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!(error = %e, "no exec sandbox on this host: exec is refused");
            None
        }
    };
    let health: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let gateway_addr: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let status = {
        let (health, addr) = (health.clone(), gateway_addr.clone());
        Arc::new(move || {
            let h = health.lock().map(|h| h.clone()).unwrap_or_default();
            let a = addr.lock().map(|a| a.clone()).unwrap_or_default();
            wiring::status_json(&a, &h)
        }) as Arc<dyn Fn() -> serde_json::Value + Send + Sync>
    };
    let wired = wiring::wire(wiring::Parts {
        home: &ctx.home,
        config: &config,
        redacted_config: redacted.clone(),
        secrets,
        store: ctx.store.clone(),
        bus: ctx.bus.clone(),
        sandbox,
        status,
        replay: ctx.replay.clone(),
    })
    .await?;
    let addr = wired.gateway.local_addr().to_string();
    if let Ok(mut a) = gateway_addr.lock() {
        a.clone_from(&addr);
    }
    let mut tasks = Vec::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let gateway = wired.gateway;
    tasks.push(tokio::spawn(async move {
        let mut stop = stop_rx;
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = gateway.run(shutdown).await {
            tracing::error!(error = %e, "gateway stopped");
        }
    }));
    if let Some(router) = wired.router {
        let watcher = router.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router.run().await {
                tracing::error!(error = %e, "channels stopped");
            }
        }));
        tasks.push(tokio::spawn(async move {
            loop {
                let now: Vec<(String, String)> = watcher
                    .health()
                    .into_iter()
                    .map(|(n, h)| (n, format!("{h:?}").to_lowercase()))
                    .collect();
                if let Ok(mut slot) = health.lock() {
                    *slot = now;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }));
    }
    Ok(Services {
        gateway_addr: addr,
        tasks,
        runtime: Some(wired.runtime),
        stop: Some(stop_tx),
        config,
        secrets: ctx.secrets.borrow().clone(),
        redacted,
    })
}

/// Stops what [`start_services`] started: new turns refused and pending approvals denied
/// first, then the gateway drains, then the tasks end.
async fn stop_services(services: Services) {
    if let Some(runtime) = &services.runtime {
        runtime.shutdown();
    }
    if let Some(stop) = &services.stop {
        let _ = stop.send(true);
    }
    let mut tasks = services.tasks;
    if let Some(gateway) = (!tasks.is_empty()).then(|| tasks.remove(0)) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gateway).await;
    }
    for task in tasks.into_iter().rev() {
        task.abort();
        let _ = task.await;
    }
}

fn enabled_channels(config: &Config) -> Vec<String> {
    let c = &config.channels;
    let mut out = Vec::new();
    let flags = [
        ("irc", c.irc.as_ref().is_some_and(|x| x.enabled)),
        ("email", c.email.as_ref().is_some_and(|x| x.enabled)),
        ("telegram", c.telegram.as_ref().is_some_and(|x| x.enabled)),
        ("slack", c.slack.as_ref().is_some_and(|x| x.enabled)),
        ("discord", c.discord.as_ref().is_some_and(|x| x.enabled)),
    ];
    for (name, on) in flags {
        if on {
            out.push(name.to_owned());
        }
    }
    out
}

fn probe_layers(p: &comis_sandbox::HostProbe) -> Vec<(String, bool, String)> {
    let l =
        |name: &str, s: &comis_sandbox::LayerStatus| (name.to_owned(), s.active, s.detail.clone());
    vec![
        l("namespaces", &p.namespaces),
        l("seccomp", &p.seccomp),
        l("landlock", &p.landlock),
        l("process-limit", &p.process_limit()),
    ]
}

/// `comis daemon start --foreground`: runs until SIGTERM/SIGINT.
pub fn run_foreground() -> Result<ExitCode, CliError> {
    let home = home::ensure()?;
    let loaded = match load::load(&home) {
        Ok(l) => l,
        Err(e @ (ConfigError::Invalid { .. } | ConfigError::Missing { .. })) => {
            eprintln!("comis: refusing to start: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(lock) = InstanceLock::acquire(&home)? else {
        eprintln!(
            "comis: refusing to start: a daemon is already running for {} (pid {})",
            home.display(),
            super::read_pid(&home).map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        );
        return Ok(ExitCode::from(1));
    };
    home::write_private(
        &home.join(PID_FILE),
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    logging::init(loaded.config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let result = runtime.block_on(serve(&home, loaded));
    let _ = std::fs::remove_file(home.join(STATE_FILE));
    let _ = std::fs::remove_file(home.join(PID_FILE));
    drop(lock);
    result
}

async fn serve(home: &Path, loaded: Loaded) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    // The probe spawns bwrap a few times; let it run while the store compiles its validator.
    let probe_task = tokio::task::spawn_blocking(|| comis_sandbox::HostProbe::run(None));
    let store = Arc::new(comis_store::Store::open_in(home)?);
    let mut bus = EventBus::new();
    if loaded.config.security.audit_log {
        bus.add_sink(Arc::new(AuditSink::new(store.clone())));
    }
    let (secrets_tx, secrets) = watch::channel(Arc::new(load::secret_manager(home)?));
    let redacted = loaded.redacted();
    let config = Arc::new(loaded.config);
    let (config_tx, config_rx) = watch::channel(config.clone());
    let probe = Arc::new(Mutex::new(None));
    let ctx = DaemonContext {
        home: home.to_owned(),
        config: config_rx,
        store: store.clone(),
        bus: bus.clone(),
        secrets,
        probe: probe.clone(),
        replay: wiring::ReplayCaches::default(),
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_err)?;

    let probe_result = probe_task
        .await
        .map_err(|e| CliError::Usage(format!("host probe: {e}")))?;
    if let Ok(mut slot) = ctx.probe.lock() {
        *slot = Some(probe_result.clone());
    }
    let mut services = start_services(&ctx, redacted, &probe_result).await?;
    let state = Arc::new(Mutex::new(DaemonState {
        pid: std::process::id(),
        started_at: now(),
        gateway: services.gateway_addr.clone(),
        agents: config.agents.keys().cloned().collect(),
        channels: enabled_channels(&config),
        sandbox: Vec::new(),
        config_loaded_at: now(),
    }));
    write_state(home, &state);
    bus.emit(
        Event::new(EventKind::DaemonStarted, Outcome::Allowed)
            .with("pid", std::process::id())
            .with("agents", config.agents.len()),
    );
    tracing::info!(
        pid = std::process::id(),
        ready_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "comis daemon ready"
    );
    // Start-up compiled the guards' pattern sets; what it freed would otherwise stay resident
    // for the daemon's lifetime (idle RSS 32 MB instead of 21).
    comis_sandbox::memory::release_free_heap();
    // Record what the host probe found (it decided whether exec has a sandbox).
    let layers = probe
        .lock()
        .ok()
        .and_then(|p| p.as_ref().map(probe_layers))
        .unwrap_or_default();
    for (name, active, detail) in &layers {
        tracing::info!(layer = %name, active, detail = %detail, "sandbox layer");
    }
    if let Ok(mut s) = state.lock() {
        s.sandbox = layers;
    }
    write_state(home, &state);

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                let Some(redacted) = reload(home, &config_tx, &secrets_tx, &bus) else {
                    continue;
                };
                services = restart_services(
                    &ctx,
                    services,
                    redacted,
                    &probe_result,
                    (&config_tx, &secrets_tx),
                    &bus,
                )
                .await?;
                let config = ctx.config.borrow().clone();
                if let Ok(mut s) = state.lock() {
                    s.gateway.clone_from(&services.gateway_addr);
                    s.agents = config.agents.keys().cloned().collect();
                    s.channels = enabled_channels(&config);
                    s.config_loaded_at = now();
                }
                write_state(home, &state);
                // The old services' memory, like start-up's, would otherwise stay resident.
                comis_sandbox::memory::release_free_heap();
            }
        }
    }

    stop_services(services).await;
    let denied = store.deny_pending_approvals().unwrap_or_else(|e| {
        tracing::error!(error = %e, "denying pending approvals failed");
        0
    });
    bus.emit(
        Event::new(EventKind::DaemonStopped, Outcome::Allowed)
            .with("pendingApprovalsDenied", denied),
    );
    tracing::info!(pending_approvals_denied = denied, "comis daemon stopped");
    drop(ctx);
    drop(bus);
    drop(store);
    Ok(ExitCode::SUCCESS)
}

fn signal_err(e: std::io::Error) -> CliError {
    CliError::Usage(format!("installing signal handlers: {e}"))
}

fn write_state(home: &Path, state: &Mutex<DaemonState>) {
    let snapshot = state.lock().map(|s| s.clone()).unwrap_or_default();
    if let Err(e) = snapshot.write(home) {
        tracing::warn!(error = %e, "writing the daemon state file failed");
    }
}

/// Loads and validates `config.yaml` and the vault. When both are good, publishes them to the
/// context's watch channels and returns the redacted configuration (for `config.get`); when
/// not, records the refusal and returns `None`, leaving everything as it was.
fn reload(
    home: &Path,
    tx: &watch::Sender<Arc<Config>>,
    secrets_tx: &watch::Sender<Arc<comis_secrets::SecretManager>>,
    bus: &EventBus,
) -> Option<serde_json::Value> {
    match load::load(home).and_then(|l| {
        let s = load::secret_manager(home).map_err(|e| ConfigError::Invalid {
            file: l.path.clone(),
            pos: None,
            message: format!("opening the vault: {e}"),
        })?;
        Ok((l, s))
    }) {
        Ok((l, secrets)) => {
            let redacted = l.redacted();
            secrets_tx.send_replace(Arc::new(secrets));
            tx.send_replace(Arc::new(l.config));
            Some(redacted)
        }
        Err(e) => {
            refuse_reload(bus, "invalid configuration", &e);
            None
        }
    }
}

/// Records a refused reload: an audit event and a log line saying why.
fn refuse_reload(bus: &EventBus, reason: &'static str, error: &dyn std::fmt::Display) {
    bus.emit(Event::new(EventKind::ConfigReloaded, Outcome::Denied).with("reason", reason));
    tracing::warn!(
        error = %error,
        reason,
        "SIGHUP: configuration reload refused, keeping the running configuration"
    );
}

/// Applies a configuration [`reload`] published: stops the running services, starts them
/// from the new configuration, and if that fails puts the previous configuration and
/// secrets back and starts those. Errors only when neither starts (the daemon then exits and
/// its service manager restarts it).
async fn restart_services(
    ctx: &DaemonContext,
    running: Services,
    redacted: serde_json::Value,
    probe: &comis_sandbox::HostProbe,
    (config_tx, secrets_tx): (
        &watch::Sender<Arc<Config>>,
        &watch::Sender<Arc<comis_secrets::SecretManager>>,
    ),
    bus: &EventBus,
) -> Result<Services, CliError> {
    let previous = (
        running.config.clone(),
        running.secrets.clone(),
        running.redacted.clone(),
    );
    stop_services(running).await;
    match start_services(ctx, redacted, probe).await {
        Ok(services) => {
            logging::set_level(ctx.config.borrow().log_level);
            bus.emit(Event::new(EventKind::ConfigReloaded, Outcome::Allowed));
            tracing::info!(gateway = %services.gateway_addr, "SIGHUP: configuration reloaded");
            Ok(services)
        }
        Err(e) => {
            refuse_reload(bus, "its services did not start", &e);
            let (config, secrets, redacted) = previous;
            config_tx.send_replace(config);
            secrets_tx.send_replace(secrets);
            start_services(ctx, redacted, probe).await
        }
    }
}
