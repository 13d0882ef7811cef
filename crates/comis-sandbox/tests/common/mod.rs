//! Shared test fixtures: a small but real command policy, a probed sandbox, workspaces.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use comis_sandbox::{
    CommandPolicy, ExecOutcome, ExecRequest, HostProbe, Network, Sandbox, SandboxConfig,
    SandboxError,
};

/// A tiny real policy: refuses a few dangerous shapes and env names, as the guard's exec
/// validator would (the daemon supplies the real one at merge).
pub struct TestPolicy;

/// Allows everything: for tests whose point is what the sandbox itself stops.
pub struct AllowAll;

impl CommandPolicy for AllowAll {
    fn check(&self, _: &str, _: &[(String, String)]) -> Result<(), String> {
        Ok(())
    }
}

impl CommandPolicy for TestPolicy {
    fn check(&self, command: &str, env: &[(String, String)]) -> Result<(), String> {
        for bad in ["rm -rf /", "mkfs", "BLOCK-ME"] {
            if command.contains(bad) {
                return Err(format!("command denylist: {bad}"));
            }
        }
        if command.contains('\n') {
            return Err("commands are single-line".into());
        }
        for (name, _) in env {
            if name.starts_with("NODE_OPTIONS") || name == "PYTHONSTARTUP" {
                return Err(format!("env denylist: {name}"));
            }
        }
        Ok(())
    }
}

pub fn probe() -> &'static HostProbe {
    static PROBE: OnceLock<HostProbe> = OnceLock::new();
    PROBE.get_or_init(|| HostProbe::run(None))
}

/// A temp "COMIS_HOME" with secrets and an agent workspace inside it.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub workspace: PathBuf,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("comis-home-")
            .tempdir_in("/tmp")
            .unwrap();
        for (name, content) in [
            ("secrets.enc", "VAULT-CANARY-4242"),
            ("master.key", "MASTERKEY-CANARY-4242"),
            ("comis.db", "DB-CANARY-4242"),
            ("config.yaml", "gateway:\n  tokens: TOKEN-CANARY-4242\n"),
        ] {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let workspace = dir.path().join("workspaces").join("agent1");
        std::fs::create_dir_all(&workspace).unwrap();
        Home { dir, workspace }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn sandbox(&self) -> Sandbox {
        self.sandbox_with(SandboxConfig::default())
    }

    pub fn sandbox_with(&self, mut config: SandboxConfig) -> Sandbox {
        config.hidden.push(self.root().to_path_buf());
        for f in ["secrets.enc", "master.key", "comis.db", "config.yaml"] {
            config.hidden.push(self.root().join(f));
        }
        Sandbox::new(config, probe()).unwrap()
    }

    pub fn request(&self, command: &str) -> ExecRequest {
        ExecRequest {
            command: command.into(),
            workspace: self.workspace.clone(),
            network: Network::None,
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        }
    }

    pub fn run(&self, command: &str) -> ExecOutcome {
        self.sandbox()
            .run(&self.request(command), &TestPolicy)
            .unwrap()
    }

    pub fn try_run(&self, command: &str) -> Result<ExecOutcome, SandboxError> {
        self.sandbox().run(&self.request(command), &TestPolicy)
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both streams, for assertions that nothing leaked anywhere.
pub fn all_output(o: &ExecOutcome) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}
