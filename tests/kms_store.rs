//! The store on disk: modes and ownership, the root key (file or passphrase), the
//! format fixture written by the first version (opened forever after), init
//! idempotency, and two processes sharing one store.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use kmsfs::kms::{init_store, ErrorKind, RootKeySource, Service, ServiceConfig, TestClock};
use serde_json::{json, Value};
use support::kms::*;
use zeroize::Zeroizing;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn open_err(cfg: ServiceConfig) -> kmsfs::kms::KmsError {
    match Service::open(cfg) {
        Ok(_) => panic!("the store opened but should not have"),
        Err(e) => e,
    }
}

#[test]
fn a_wrong_root_key_is_refused_with_a_clear_error() {
    let e = env();
    let id = e.split_key();
    let other = e.dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    chmod(&other, 0o600);
    let mut cfg = e.config();
    cfg.root_key = RootKeySource::KeyFile(other);
    let err = open_err(cfg);
    assert!(
        err.message
            .contains("the root key does not open this store"),
        "{err}"
    );
    // A passphrase for a key-file store says which kind of secret is needed.
    let mut cfg = e.config();
    cfg.root_key = RootKeySource::Passphrase(Zeroizing::new("pw".into()));
    assert!(open_err(cfg).message.contains("root key file"));
    // The right key still works.
    let svc = Service::open(e.config()).unwrap();
    assert!(svc
        .call(&ROOT, "DescribeKey", json!({ "KeyId": id }))
        .is_ok());
}

#[test]
fn passphrase_store_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let clock = Arc::new(TestClock::new(START));
    let cfg = |pw: &str| ServiceConfig {
        store_dir: store.clone(),
        principals_path: None,
        root_key: RootKeySource::Passphrase(Zeroizing::new(pw.to_string())),
        clock: clock.clone(),
    };
    assert!(init_store(&cfg("correct horse battery staple")).unwrap());
    assert!(
        !store.join("root.key").exists(),
        "a passphrase store has no key file"
    );
    let svc = Service::open(cfg("correct horse battery staple")).unwrap();
    let id = svc.call(&ROOT, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = svc
        .call(
            &ROOT,
            "Encrypt",
            json!({ "KeyId": id, "Plaintext": b64(b"pp") }),
        )
        .unwrap();
    drop(svc);
    let err = open_err(cfg("wrong horse"));
    assert!(
        err.message
            .contains("the root key does not open this store"),
        "{err}"
    );
    let mut kf = cfg("x");
    kf.root_key = RootKeySource::KeyFile(store.join("root.key"));
    assert!(open_err(kf).message.contains("passphrase"));
    let svc = Service::open(cfg("correct horse battery staple")).unwrap();
    let d = svc
        .call(
            &ROOT,
            "Decrypt",
            json!({ "CiphertextBlob": blob["CiphertextBlob"] }),
        )
        .unwrap();
    assert_eq!(unb64(d["Plaintext"].as_str().unwrap()), b"pp");
    // init again is a no-op that still checks the passphrase.
    assert!(!init_store(&cfg("correct horse battery staple")).unwrap());
    assert!(init_store(&cfg("wrong horse")).is_err());
}

#[test]
fn loose_modes_are_refused_naming_the_path() {
    let e = env();
    let store = e.store();
    for (path, loose, tight, want) in [
        (store.clone(), 0o755, 0o700, "0700"),
        (store.join("state.json"), 0o644, 0o600, "0600"),
        (store.join("root.key"), 0o640, 0o600, "0600"),
        (store.join("store.json"), 0o666, 0o600, "0600"),
    ] {
        chmod(&path, loose);
        let err = open_err(e.config());
        assert!(err.message.contains(&path.display().to_string()), "{err}");
        assert!(err.message.contains(want), "{err}");
        chmod(&path, tight);
        assert!(Service::open(e.config()).is_ok());
    }
    // Material files are checked when read.
    let mat_dir = store.join("material");
    let key_dir = std::fs::read_dir(&mat_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v1 = key_dir.join("v1");
    chmod(&v1, 0o644);
    let svc = Service::open(e.config()).unwrap();
    let nk = kmsfs::kms::provider::DataKeys::generate_data_key(
        &*svc,
        &ROOT,
        "alias/kmsfs/default",
        &Default::default(),
    );
    let err = nk.unwrap_err();
    assert!(
        err.message.contains("v1") && err.message.contains("0600"),
        "{err}"
    );
}

#[test]
fn a_store_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        // Only root can give a directory away; the check itself is the same code path
        // as the mode check, which runs for every user above.
        return;
    }
    let e = env();
    std::os::unix::fs::chown(e.store(), Some(4242), None).unwrap();
    let err = open_err(e.config());
    assert!(err.message.contains("owned by uid 4242"), "{err}");
}

/// The store format written by the first version: it must open forever.
#[test]
fn store_fixture_v1_opens_and_decrypts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_private(&src, &store);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("expected.json")).unwrap())
            .unwrap();
    std::fs::remove_file(store.join("expected.json")).unwrap();
    let svc = Service::open(config_for(&store, Arc::new(TestClock::new(START + 1000)))).unwrap();
    let id = expected["KeyId"].as_str().unwrap();
    let d = svc
        .call(&ROOT, "DescribeKey", json!({ "KeyId": "alias/fixture" }))
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyId"], id);
    assert_eq!(d["KeyMetadata"]["Description"], "fixture key");
    let grants = svc
        .call(&ROOT, "ListGrants", json!({ "KeyId": id }))
        .unwrap();
    assert_eq!(grants["Grants"][0]["GrantId"], expected["GrantId"]);
    for c in expected["Ciphertexts"].as_array().unwrap() {
        let out = svc
            .call(&ROOT, "Decrypt", json!({ "CiphertextBlob": c["CiphertextBlob"], "EncryptionContext": expected["EncryptionContext"] }))
            .unwrap();
        assert_eq!(out["Plaintext"], c["Plaintext"]);
    }
    assert!(svc
        .call(
            &ROOT,
            "DescribeKey",
            json!({ "KeyId": "alias/kmsfs/default" })
        )
        .is_ok());
}

fn copy_private(src: &Path, dst: &Path) {
    std::fs::create_dir(dst).unwrap();
    chmod(dst, 0o700);
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_private(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
            chmod(&to, 0o600);
        }
    }
}

#[test]
fn init_is_idempotent_and_creates_private_files() {
    let e = env();
    let id = e.split_key();
    assert!(!init_store(&e.config()).unwrap());
    let svc = e.reopen();
    assert!(svc
        .call(&ROOT, "DescribeKey", json!({ "KeyId": id }))
        .is_ok());
    for name in ["", "store.json", "state.json", "root.key"] {
        let mode = std::fs::metadata(e.store().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{name} has mode {mode:o}");
    }
    let root_key = std::fs::read_to_string(e.store().join("root.key")).unwrap();
    let state = std::fs::read_to_string(e.store().join("state.json")).unwrap();
    // Key material is never in the state, and never unsealed on disk.
    assert!(!state.contains(root_key.trim()));
    assert!(e.store().join("material").join(&id).join("v1").exists());
}

#[test]
fn two_processes_see_each_others_changes() {
    let e = env();
    let other = e.reopen();
    let id = e.split_key();
    // The other instance notices the new state on its next call.
    assert!(other
        .call(&ADMIN, "DescribeKey", json!({ "KeyId": id }))
        .is_ok());
    other
        .call(&ADMIN, "DisableKey", json!({ "KeyId": id }))
        .unwrap();
    assert_kind(
        &e.encrypt(ALICE, &id, b"x").unwrap_err(),
        ErrorKind::Disabled,
    );
    other
        .call(&ADMIN, "EnableKey", json!({ "KeyId": id }))
        .unwrap();
    // Concurrent writers from both instances lose nothing (serialized by the lock).
    std::thread::scope(|s| {
        for svc in [&e.svc, &other] {
            let id = id.clone();
            s.spawn(move || {
                for i in 0..10 {
                    svc.call(&ROOT, "TagResource", json!({ "KeyId": id, "Tags": [{ "TagKey": format!("t{}-{i}", Arc::as_ptr(svc) as usize % 1000), "TagValue": "v" }] }))
                        .unwrap();
                }
            });
        }
    });
    let tags = e.ok(
        ROOT,
        "ListResourceTags",
        json!({ "KeyId": id, "Limit": 50 }),
    );
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 20);
}

#[test]
fn tick_shreds_material_a_crash_left_unreferenced() {
    let e = env();
    let id = e.split_key();
    let mat = e.store().join("material");
    // As left by a crash after the material write and before the state commit.
    let orphan = mat.join("00000000-0000-4000-8000-000000000000");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("v1"), [1u8; 64]).unwrap();
    std::fs::write(mat.join(&id).join("v9"), [2u8; 64]).unwrap();
    std::fs::write(mat.join(&id).join(".v2.tmp.abcdef"), [3u8; 64]).unwrap();
    std::fs::write(e.store().join(".state.json.tmp.123456"), b"{}").unwrap();
    e.svc.tick().unwrap();
    assert!(!orphan.exists());
    assert!(!mat.join(&id).join("v9").exists());
    assert!(!mat.join(&id).join(".v2.tmp.abcdef").exists());
    assert!(!e.store().join(".state.json.tmp.123456").exists());
    // The live key is untouched.
    let blob = e.encrypt(ALICE, &id, b"still here").unwrap();
    assert_eq!(e.decrypt(ALICE, &blob).unwrap(), b"still here");
    assert!(mat.join(&id).join("v1").exists());
}
