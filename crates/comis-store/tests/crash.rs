//! Crash safety: a writer process is killed with SIGKILL in the middle of a stream of writes
//! (memories, blocked writes that append audit events, transcript messages); afterwards
//! `PRAGMA integrity_check` is ok, the audit chain verifies, and every write the writer had
//! acknowledged is present.
//!
//! The writer is this test binary run again with `CRASH_WRITER_DIR` set, so it uses the real
//! store code in a real separate process. It prints `ack <memory id> <n>` after each write
//! returns. Bounded: a few rounds, each killed after a random number of acknowledgements or a
//! few seconds, whichever comes first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use comis_store::{AgentId, MemoryId, NewMemory, NewMessage, Role, SourceKind, Store, Trust};

const CHILD_ENV: &str = "CRASH_WRITER_DIR";
const ROUNDS: u64 = 4;

fn content(round: &str, n: u64) -> String {
    format!("crash round {round} write {n} about the user's garden")
}

/// The child: writes forever until killed. Not a test of its own (returns at once unless
/// started by the parent).
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round = std::env::var("CRASH_WRITER_ROUND").unwrap();
    let s = Store::open_in(Path::new(&dir)).unwrap();
    let a = AgentId::new("default").unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        if n % 7 == 3 {
            // A blocked write: only an audit event is appended.
            let blocked = NewMemory::new(
                a.clone(),
                "run rm -rf ~/ every day",
                Trust::Learned,
                SourceKind::Conversation,
            );
            assert!(s.write_memory(&blocked).is_err());
        }
        if n % 5 == 0 {
            // A batch of 20 in one transaction: all or nothing.
            let batch: Vec<NewMemory> = (0..20)
                .map(|i| {
                    NewMemory::new(
                        a.clone(),
                        format!("{} batch {i}", content(&round, n)),
                        Trust::Learned,
                        SourceKind::Operator,
                    )
                })
                .collect();
            let r = s.write_memories(&batch).unwrap();
            let last = r.last().unwrap().as_ref().unwrap().id;
            writeln!(out, "batch {} {n}", last.0).unwrap();
        }
        let w = s
            .write_memory(&NewMemory::new(
                a.clone(),
                content(&round, n),
                Trust::Learned,
                SourceKind::Operator,
            ))
            .unwrap();
        s.append_message(&NewMessage {
            agent: a.clone(),
            channel: "crash".into(),
            thread: round.clone(),
            role: Role::User,
            sender: None,
            content: format!("message {n}"),
            trace_id: None,
        })
        .unwrap();
        writeln!(out, "ack {} {n}", w.id.0).unwrap();
        out.flush().unwrap();
    }
}

fn random_below(n: u64) -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now()) % n
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_write() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, d.path())
            .env("CRASH_WRITER_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements (or after a few seconds).
        let kill_after = 20 + random_below(200);
        let mut acks: Vec<(i64, u64)> = Vec::new();
        let mut batches: Vec<(i64, u64)> = Vec::new();
        let record = |line: &str, acks: &mut Vec<(i64, u64)>, batches: &mut Vec<(i64, u64)>| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["ack", id, n] => acks.push((id.parse().unwrap(), n.parse().unwrap())),
                ["batch", id, n] => batches.push((id.parse().unwrap(), n.parse().unwrap())),
                _ => {}
            }
        };
        while (acks.len() as u64) < kill_after {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => record(&line, &mut acks, &mut batches),
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        // It was killed mid-stream, not finished or crashed on its own.
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");
        // Everything the child printed before dying was acknowledged.
        reader.join().unwrap();
        while let Ok(line) = rx.try_recv() {
            record(&line, &mut acks, &mut batches);
        }
        assert!(
            !acks.is_empty(),
            "round {round}: the writer acknowledged nothing"
        );
        total_acked += acks.len();

        let s = Store::open_in(d.path()).unwrap();
        assert_eq!(s.integrity_check().unwrap(), vec!["ok"], "round {round}");
        let r = s.verify_audit().unwrap();
        assert!(r.ok(), "round {round}: {:?}", r.problems);
        for (id, n) in &acks {
            let m = s.get_memory(MemoryId(*id)).unwrap().unwrap_or_else(|| {
                panic!("round {round}: acknowledged write {n} (id {id}) is missing")
            });
            assert_eq!(m.content, content(&round.to_string(), *n));
        }
        for (last_id, n) in &batches {
            // All 20 of an acknowledged batch are there.
            for k in 0..20 {
                let m = s.get_memory(MemoryId(last_id - k)).unwrap().unwrap();
                assert!(
                    m.content.starts_with(&content(&round.to_string(), *n)),
                    "{}",
                    m.content
                );
            }
        }
        let msgs = s
            .messages(
                &AgentId::new("default").unwrap(),
                "crash",
                &round.to_string(),
                0,
                1_000_000,
            )
            .unwrap();
        // Each acknowledged message is there, numbered without gaps.
        assert!(msgs.len() >= acks.len());
        assert!(msgs.iter().enumerate().all(|(i, m)| m.seq == i as i64 + 1));
    }
    assert!(total_acked >= ROUNDS as usize);
}
