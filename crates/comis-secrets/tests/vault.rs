//! Vault integration tests on real files: round trip, every kind of damage detected with its
//! own clear error and the file left untouched, concurrent writers, rotation, and no value
//! anywhere it should not be (the file, errors, `Debug`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use comis_secrets::master_key::{self, KEY_FILE};
use comis_secrets::vault::{MAX_VALUE_LEN, NEXT_KEY_FILE, VAULT_FILE};
use comis_secrets::{
    ExposeSecret, KeySource, MasterKey, SecretAccess, SecretManager, SecretName, SecretString,
    SecretsError, Vault,
};
use proptest::prelude::*;
use serde_json::Value;

const SECRET: &str = "sk-proj-Zq8vN3kLmP0xR7tY2wE5uI9oA4sD6fG1";

fn key(b: u8) -> MasterKey {
    MasterKey::from_bytes([b; 32])
}
fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}
fn open(home: &Path, b: u8) -> Result<Vault, SecretsError> {
    Vault::with_key(home, key(b), KeySource::Env)
}
fn seeded() -> (tempfile::TempDir, Vault) {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), 7).unwrap();
    v.set(&name("OPENAI_API_KEY"), &SecretString::from(SECRET))
        .unwrap();
    v.set(
        &name("TELEGRAM_BOT_TOKEN"),
        &SecretString::from("123456:AAbbCCddEEff"),
    )
    .unwrap();
    (d, v)
}
fn vault_json(home: &Path) -> Value {
    serde_json::from_slice(&fs::read(home.join(VAULT_FILE)).unwrap()).unwrap()
}
fn write_json(home: &Path, v: &Value) {
    fs::write(home.join(VAULT_FILE), serde_json::to_vec_pretty(v).unwrap()).unwrap();
}
/// Every byte-level view of a leak: plain, base64, hex.
fn assert_no_secret(haystack: &[u8], what: &str) {
    let text = String::from_utf8_lossy(haystack);
    for needle in [
        SECRET.to_owned(),
        B64.encode(SECRET),
        hex(SECRET.as_bytes()),
    ] {
        assert!(!text.contains(&needle), "{what} contains the secret value");
    }
    assert!(
        !text.contains("Zq8vN3kLmP0x"),
        "{what} contains part of the secret value"
    );
}
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn round_trip_list_remove_and_private_mode() {
    let (d, v) = seeded();
    assert_eq!(
        v.get(&name("OPENAI_API_KEY"))
            .unwrap()
            .unwrap()
            .expose_secret(),
        SECRET
    );
    let names: Vec<_> = v
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["OPENAI_API_KEY", "TELEGRAM_BOT_TOKEN"]);
    v.set(&name("OPENAI_API_KEY"), &SecretString::from("replaced"))
        .unwrap();
    assert_eq!(
        v.get(&name("OPENAI_API_KEY"))
            .unwrap()
            .unwrap()
            .expose_secret(),
        "replaced"
    );
    assert!(v.remove(&name("TELEGRAM_BOT_TOKEN")).unwrap());
    assert!(v.get(&name("TELEGRAM_BOT_TOKEN")).unwrap().is_none());
    let mode = fs::metadata(d.path().join(VAULT_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A fresh handle on the same file sees the same thing.
    assert_eq!(open(d.path(), 7).unwrap().list().unwrap().len(), 1);
}

#[test]
fn values_of_every_shape_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), 1).unwrap();
    let big = "x".repeat(MAX_VALUE_LEN);
    let cases = [
        "a",
        " leading and trailing spaces ",
        "multi\nline\nPEM\n-----END-----",
        "ünïcödé 🔑 \u{202e}rtl",
        "\"quotes\" and \\backslashes\\ and {json}",
        big.as_str(),
    ];
    for (i, c) in cases.iter().enumerate() {
        let n = name(&format!("V{i}"));
        v.set(&n, &SecretString::from(*c)).unwrap();
        assert_eq!(v.get(&n).unwrap().unwrap().expose_secret(), *c);
    }
}

#[test]
fn the_vault_file_never_contains_the_value() {
    let (d, _v) = seeded();
    assert_no_secret(&fs::read(d.path().join(VAULT_FILE)).unwrap(), "vault file");
    for e in fs::read_dir(d.path()).unwrap() {
        assert_no_secret(
            &fs::read(e.unwrap().path()).unwrap(),
            "a file in COMIS_HOME",
        );
    }
}

#[test]
fn debug_output_never_contains_the_value() {
    let (_d, v) = seeded();
    let value = v.get(&name("OPENAI_API_KEY")).unwrap().unwrap();
    let mgr = SecretManager::from_vault_and_env(&v).unwrap();
    let debug = format!(
        "{v:?} {value:?} {mgr:?} {:?} {:?} {:?}",
        mgr.get("OPENAI_API_KEY"),
        mgr.require("OPENAI_API_KEY"),
        v.list()
    );
    assert_no_secret(debug.as_bytes(), "Debug output");
    assert_eq!(
        mgr.require("OPENAI_API_KEY").unwrap().expose_secret(),
        SECRET
    );
}

#[test]
fn the_manager_is_a_snapshot_of_the_vault() {
    let (_d, v) = seeded();
    let mgr = SecretManager::from_vault_and_env(&v).unwrap();
    v.set(
        &name("OPENAI_API_KEY"),
        &SecretString::from("changed-later"),
    )
    .unwrap();
    v.set(&name("ADDED_LATER"), &SecretString::from("added"))
        .unwrap();
    assert_eq!(mgr.get("OPENAI_API_KEY").unwrap().expose_secret(), SECRET);
    assert!(!mgr.has("ADDED_LATER"));
    assert!(!mgr.has("COMIS_MASTER_KEY"));
}

#[test]
fn wrong_key_is_detected_first_and_nothing_is_written() {
    let (d, _v) = seeded();
    let before = fs::read(d.path().join(VAULT_FILE)).unwrap();
    let e = open(d.path(), 8).unwrap_err();
    assert!(matches!(e, SecretsError::WrongMasterKey { .. }), "{e}");
    assert!(e.to_string().contains("wrong master key"), "{e}");
    assert_eq!(fs::read(d.path().join(VAULT_FILE)).unwrap(), before);
    assert_no_secret(e.to_string().as_bytes(), "error");
}

#[test]
fn a_writer_with_the_wrong_key_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    // A handle with key 9 made while there is no vault yet...
    let nine = open(d.path(), 9).unwrap();
    // ...then the vault is created with key 7.
    open(d.path(), 7)
        .unwrap()
        .set(&name("A"), &SecretString::from(SECRET))
        .unwrap();
    let before = fs::read(d.path().join(VAULT_FILE)).unwrap();
    for r in [
        nine.set(&name("B"), &SecretString::from("b")).map(|_| ()),
        nine.remove(&name("A")).map(|_| ()),
        nine.list().map(|_| ()),
    ] {
        assert!(matches!(r, Err(SecretsError::WrongMasterKey { .. })));
    }
    assert_eq!(fs::read(d.path().join(VAULT_FILE)).unwrap(), before);
}

#[test]
fn tampered_ciphertext_is_detected() {
    let (d, mut v) = seeded();
    let mut j = vault_json(d.path());
    let ct = j["entries"]["OPENAI_API_KEY"]["ciphertext"]
        .as_str()
        .unwrap();
    let mut raw = B64.decode(ct).unwrap();
    raw[3] ^= 0x01;
    j["entries"]["OPENAI_API_KEY"]["ciphertext"] = Value::String(B64.encode(&raw));
    write_json(d.path(), &j);
    let before = fs::read(d.path().join(VAULT_FILE)).unwrap();
    let e = open(d.path(), 7).unwrap_err();
    assert!(matches!(e, SecretsError::VaultTampered { .. }), "{e}");
    assert!(e.to_string().contains("integrity"), "{e}");
    // Writers refuse too: they never "repair" a tampered vault.
    let r = v.set(&name("NEW"), &SecretString::from("n"));
    assert!(matches!(r, Err(SecretsError::VaultTampered { .. })));
    assert!(matches!(
        v.rotate_key(Some(key(1))),
        Err(SecretsError::VaultTampered { .. })
    ));
    assert_eq!(fs::read(d.path().join(VAULT_FILE)).unwrap(), before);
}

#[test]
fn every_kind_of_edit_is_detected() {
    let (d, _v) = seeded();
    let original = vault_json(d.path());
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 8] = [
        ("swap ciphertexts", |j| {
            let a = j["entries"]["OPENAI_API_KEY"].clone();
            let b = j["entries"]["TELEGRAM_BOT_TOKEN"].clone();
            j["entries"]["OPENAI_API_KEY"] = b;
            j["entries"]["TELEGRAM_BOT_TOKEN"] = a;
        }),
        ("rename an entry", |j| {
            let a = j["entries"]
                .as_object_mut()
                .unwrap()
                .remove("OPENAI_API_KEY")
                .unwrap();
            j["entries"]["ANTHROPIC_API_KEY"] = a;
        }),
        ("delete an entry", |j| {
            j["entries"]
                .as_object_mut()
                .unwrap()
                .remove("TELEGRAM_BOT_TOKEN");
        }),
        ("duplicate an entry", |j| {
            let a = j["entries"]["OPENAI_API_KEY"].clone();
            j["entries"]["COPY"] = a;
        }),
        ("re-date an entry", |j| {
            j["entries"]["OPENAI_API_KEY"]["updated_at"] = Value::from(1u64);
        }),
        ("change a salt", |j| {
            j["entries"]["OPENAI_API_KEY"]["salt"] = Value::String(B64.encode([0u8; 32]));
        }),
        ("change a nonce", |j| {
            j["entries"]["OPENAI_API_KEY"]["nonce"] = Value::String(B64.encode([0u8; 12]));
        }),
        ("change the mac", |j| {
            j["mac"] = Value::String(B64.encode([0u8; 32]));
        }),
    ];
    for (what, edit) in edits {
        let mut j = original.clone();
        edit(&mut j);
        write_json(d.path(), &j);
        let e = open(d.path(), 7).unwrap_err();
        assert!(
            matches!(e, SecretsError::VaultTampered { .. }),
            "{what}: {e}"
        );
    }
    // Editing the key check looks like a wrong key: also refused, also clear.
    let mut j = original.clone();
    j["key_check"]["nonce"] = Value::String(B64.encode([1u8; 12]));
    write_json(d.path(), &j);
    assert!(matches!(
        open(d.path(), 7),
        Err(SecretsError::WrongMasterKey { .. })
    ));
    write_json(d.path(), &original);
    assert!(open(d.path(), 7).is_ok());
}

#[test]
fn truncated_and_malformed_files_are_corrupt_not_panics() {
    let (d, _v) = seeded();
    let path = d.path().join(VAULT_FILE);
    let full = fs::read(&path).unwrap();
    for cut in (0..full.len() - 2).step_by(7) {
        fs::write(&path, &full[..cut]).unwrap();
        let e = open(d.path(), 7).unwrap_err();
        assert!(
            matches!(e, SecretsError::VaultCorrupt { .. }),
            "cut at {cut}: {e}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            &full[..cut],
            "a read modified the file"
        );
    }
    let j = vault_json_from(&full);
    let bad_shapes = [
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\x00\x01\x02".to_vec(),
        b"{\"format\":\"comis-secrets-v1\"}".to_vec(),
        replace(
            &j,
            &["entries", "OPENAI_API_KEY", "salt"],
            Value::String("!!!".into()),
        ),
        replace(
            &j,
            &["entries", "OPENAI_API_KEY", "nonce"],
            Value::String(B64.encode([0u8; 5])),
        ),
        replace(
            &j,
            &["entries", "OPENAI_API_KEY", "ciphertext"],
            Value::String(B64.encode([0u8; 3])),
        ),
        replace(
            &j,
            &["entries", "OPENAI_API_KEY", "updated_at"],
            Value::from(-1),
        ),
        replace(
            &j,
            &["entries", "OPENAI_API_KEY", "updated_at"],
            Value::String("now".into()),
        ),
        replace(&j, &["key_check"], Value::Null),
        replace(&j, &["mac"], Value::from(3)),
        rename_entry(&j, "OPENAI_API_KEY", "../../etc/passwd"),
    ];
    for bad in bad_shapes {
        fs::write(&path, &bad).unwrap();
        let e = open(d.path(), 7).unwrap_err();
        assert!(matches!(e, SecretsError::VaultCorrupt { .. }), "{e}");
    }
    fs::write(&path, &full).unwrap();
    assert!(open(d.path(), 7).is_ok());
}

fn vault_json_from(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}
fn replace(j: &Value, at: &[&str], v: Value) -> Vec<u8> {
    let mut j = j.clone();
    let mut cur = &mut j;
    for k in at {
        cur = &mut cur[*k];
    }
    *cur = v;
    serde_json::to_vec(&j).unwrap()
}
fn rename_entry(j: &Value, from: &str, to: &str) -> Vec<u8> {
    let mut j = j.clone();
    let e = j["entries"].as_object_mut().unwrap().remove(from).unwrap();
    j["entries"][to] = e;
    serde_json::to_vec(&j).unwrap()
}

#[test]
fn oversized_vault_file_is_refused_before_parsing() {
    let d = tempfile::tempdir().unwrap();
    let f = fs::File::create(d.path().join(VAULT_FILE)).unwrap();
    f.set_len(comis_secrets::vault::MAX_VAULT_LEN + 1).unwrap();
    let e = open(d.path(), 1).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn concurrent_writers_in_threads_lose_nothing() {
    let d = Arc::new(tempfile::tempdir().unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let v = open(d.path(), 3).unwrap();
                for i in 0..15 {
                    v.set(
                        &name(&format!("T{t}_{i}")),
                        &SecretString::from(format!("v{t}-{i}")),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let v = open(d.path(), 3).unwrap();
    assert_eq!(v.list().unwrap().len(), 60);
    assert_eq!(
        v.get(&name("T2_9")).unwrap().unwrap().expose_secret(),
        "v2-9"
    );
}

#[test]
fn rotation_with_a_key_file_and_recovery_of_each_crash_point() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let (mut v, created) = Vault::open_or_create(home).unwrap();
    assert!(created);
    v.set(&name("A"), &SecretString::from("value-a")).unwrap();
    let old_key_text = fs::read_to_string(home.join(KEY_FILE)).unwrap();
    let old_vault = fs::read(home.join(VAULT_FILE)).unwrap();
    let report = v.rotate_key(None).unwrap();
    assert_eq!(report.entries, 1);
    let new_key_text = fs::read_to_string(home.join(KEY_FILE)).unwrap();
    assert_ne!(old_key_text, new_key_text);
    assert!(!home.join(NEXT_KEY_FILE).exists());
    assert_eq!(
        v.get(&name("A")).unwrap().unwrap().expose_secret(),
        "value-a"
    );
    let new_vault = fs::read(home.join(VAULT_FILE)).unwrap();
    let private = |p: &Path| {
        fs::write(p, "").ok();
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    };

    // Crash after writing master.key.next, before the vault: old key, old vault, stale next.
    fs::write(home.join(VAULT_FILE), &old_vault).unwrap();
    private(&home.join(KEY_FILE));
    fs::write(home.join(KEY_FILE), &old_key_text).unwrap();
    private(&home.join(NEXT_KEY_FILE));
    fs::write(home.join(NEXT_KEY_FILE), &new_key_text).unwrap();
    let v = Vault::open(home).unwrap();
    assert_eq!(
        v.get(&name("A")).unwrap().unwrap().expose_secret(),
        "value-a"
    );
    assert!(
        !home.join(NEXT_KEY_FILE).exists(),
        "the unused new key is discarded"
    );
    assert_eq!(
        fs::read_to_string(home.join(KEY_FILE)).unwrap(),
        old_key_text
    );

    // Crash after replacing the vault, before renaming the key: new vault, old key, next.
    fs::write(home.join(VAULT_FILE), &new_vault).unwrap();
    private(&home.join(NEXT_KEY_FILE));
    fs::write(home.join(NEXT_KEY_FILE), &new_key_text).unwrap();
    let v = Vault::open(home).unwrap();
    assert_eq!(
        v.get(&name("A")).unwrap().unwrap().expose_secret(),
        "value-a"
    );
    assert!(
        !home.join(NEXT_KEY_FILE).exists(),
        "the rotation is finished"
    );
    assert_eq!(
        fs::read_to_string(home.join(KEY_FILE)).unwrap(),
        new_key_text
    );
}

#[test]
fn rotation_with_an_environment_key_needs_the_new_key() {
    let (d, mut v) = seeded();
    let e = v.rotate_key(None).unwrap_err().to_string();
    assert!(e.contains("--new-key-stdin"), "{e}");
    v.rotate_key(Some(key(11))).unwrap();
    assert!(matches!(
        open(d.path(), 7),
        Err(SecretsError::WrongMasterKey { .. })
    ));
    let v = open(d.path(), 11).unwrap();
    assert_eq!(
        v.get(&name("OPENAI_API_KEY"))
            .unwrap()
            .unwrap()
            .expose_secret(),
        SECRET
    );
    let list = v.list().unwrap();
    assert_eq!(list.len(), 2);
}

#[test]
fn open_or_create_refuses_to_invent_a_key_for_an_existing_vault() {
    let (d, _v) = seeded();
    let e = Vault::open_or_create(d.path()).unwrap_err();
    assert!(matches!(e, SecretsError::MasterKeyMissing { .. }), "{e}");
    assert!(!d.path().join(KEY_FILE).exists());
}

#[test]
fn key_file_is_used_by_open() {
    let d = tempfile::tempdir().unwrap();
    master_key::write_key_file(&d.path().join(KEY_FILE), &key(5)).unwrap();
    let v = Vault::open(d.path()).unwrap();
    assert_eq!(v.key_source(), &KeySource::File(d.path().join(KEY_FILE)));
    v.set(&name("K"), &SecretString::from("v-k")).unwrap();
    assert!(open(d.path(), 5).is_ok());
}

#[test]
fn opening_during_concurrent_rotations_always_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().to_owned();
    let (v, _) = Vault::open_or_create(&home).unwrap();
    v.set(&name("A"), &SecretString::from("value-a")).unwrap();
    let rotator = {
        let home = home.clone();
        std::thread::spawn(move || {
            for _ in 0..60 {
                Vault::open(&home).unwrap().rotate_key(None).unwrap();
            }
        })
    };
    let mut opened = 0;
    while !rotator.is_finished() {
        Vault::open(&home).unwrap();
        opened += 1;
    }
    rotator.join().unwrap();
    assert!(opened > 0);
    let v = Vault::open(&home).unwrap();
    assert_eq!(
        v.get(&name("A")).unwrap().unwrap().expose_secret(),
        "value-a"
    );
}

#[test]
fn redactor_hides_every_vault_value_wherever_it_appears() {
    let (_d, v) = seeded();
    let r = comis_secrets::redact::Redactor::new()
        .with_vault_values(&v)
        .unwrap();
    let cfg = serde_json::json!({
        "note": format!("pasted by mistake: {SECRET}"),
        "nested": [{"url": format!("https://api/?k={SECRET}")}],
    });
    let shown = r.redact(&cfg).to_string();
    assert_no_secret(shown.as_bytes(), "redacted config");
    assert!(shown.contains("pasted by mistake: [REDACTED]"), "{shown}");
    assert_no_secret(format!("{r:?}").as_bytes(), "Redactor Debug");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_value_round_trips(value in "\\PC{1,200}", n in "[A-Z_][A-Z0-9_]{0,20}") {
        let d = tempfile::tempdir().unwrap();
        let v = open(d.path(), 2).unwrap();
        v.set(&name(&n), &SecretString::from(value.clone())).unwrap();
        let got = v.get(&name(&n)).unwrap().unwrap();
        prop_assert_eq!(got.expose_secret(), value.as_str());
        let file = fs::read_to_string(v.path()).unwrap();
        if value.len() >= 4 {
            prop_assert!(!file.contains(&value));
        }
    }
}
