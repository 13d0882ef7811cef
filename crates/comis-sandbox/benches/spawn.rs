//! Spawn latency: a sandboxed `true` (the full exec path: policy, env, safe_path, cgroup,
//! profile, seccomp, bubblewrap, `bash -c true`) against a bare spawn of `/bin/true`.
//!
//! Run: `cargo bench -p comis-sandbox --bench spawn`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use comis_sandbox::{
    CommandPolicy, ExecRequest, HostProbe, Network, Sandbox, SandboxConfig, helper,
};
use criterion::{Criterion, criterion_group, criterion_main};

struct AllowAll;
impl CommandPolicy for AllowAll {
    fn check(&self, _: &str, _: &[(String, String)]) -> Result<(), String> {
        Ok(())
    }
}

fn spawn(c: &mut Criterion) {
    let probe = HostProbe::run(None);
    let ws = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig::default(), &probe).unwrap();
    let req = ExecRequest {
        command: "true".into(),
        workspace: ws.path().to_path_buf(),
        network: Network::None,
        ..Default::default()
    };
    let mut no_cg_probe = probe.clone();
    no_cg_probe.cgroups = Default::default();
    let no_cg = Sandbox::new(SandboxConfig::default(), &no_cg_probe).unwrap();
    let mut pids_probe = probe.clone();
    pids_probe.cgroups.memory = None;
    let pids_only = Sandbox::new(SandboxConfig::default(), &pids_probe).unwrap();
    let host = ExecRequest {
        network: Network::Host,
        ..req.clone()
    };
    let mut g = c.benchmark_group("spawn");
    g.measurement_time(Duration::from_secs(10));
    g.sample_size(100);
    g.bench_function("bare /bin/true", |b| {
        b.iter(|| assert!(Command::new("/bin/true").status().unwrap().success()))
    });
    g.bench_function("trusted helper /bin/true", |b| {
        b.iter(|| {
            let out =
                helper::run_trusted_helper(&["/bin/true".into()], b"", Duration::from_secs(5))
                    .unwrap();
            assert!(out.exit.success());
        })
    });
    g.bench_function("sandboxed true (network none)", |b| {
        b.iter(|| assert!(sandbox.run(&req, &AllowAll).unwrap().report.exit.success()))
    });
    g.bench_function("sandboxed true (network none, no cgroup)", |b| {
        b.iter(|| assert!(no_cg.run(&req, &AllowAll).unwrap().report.exit.success()))
    });
    g.bench_function("sandboxed true (network none, pids cgroup only)", |b| {
        b.iter(|| {
            assert!(
                pids_only
                    .run(&req, &AllowAll)
                    .unwrap()
                    .report
                    .exit
                    .success()
            )
        })
    });
    g.bench_function("sandboxed true (network host)", |b| {
        b.iter(|| assert!(sandbox.run(&host, &AllowAll).unwrap().report.exit.success()))
    });
    g.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
