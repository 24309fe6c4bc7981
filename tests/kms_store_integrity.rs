//! The store's own integrity: `state.json` is MAC'd under a key derived from the root
//! key (a grant added by hand, a downgrade to the unauthenticated format, or an older
//! copy put back while running are refused, naming the file), stores of format version
//! 1 keep opening and are migrated by their first write, and passphrase stores use
//! Argon2id at RFC 9106's parameters with a floor enforced on read.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmsfs::kms::{init_store, RootKeySource, Service, ServiceConfig, TestClock};
use serde_json::{json, Value};
use support::kms::*;
use zeroize::Zeroizing;

const AUTH_FAILURE: &str = "state.json failed authentication: changed outside kmsfs";

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
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

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Writes in place (same inode, same 0600 mode), as an editor would.
fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// A grant of Decrypt on `key` to bob, as someone editing the file would add it.
fn forged_grant(key_arn: &str) -> Value {
    json!({
        "grant_id": "f".repeat(64),
        "name": "forged",
        "key_arn": key_arn,
        "grantee_principal": arn("bob"),
        "retiring_principal": null,
        "issuing_account": ACCOUNT,
        "operations": ["Decrypt"],
        "constraints": null,
        "creation_date": START
    })
}

#[track_caller]
fn assert_auth_failure(e: &kmsfs::kms::KmsError, store: &Path) {
    let want = store.join("state.json");
    assert!(
        e.message.contains(AUTH_FAILURE) && e.message.contains(&want.display().to_string()),
        "expected an authentication failure naming {}, got: {e}",
        want.display()
    );
}

#[test]
fn a_grant_added_to_state_json_by_hand_fails_every_call_naming_the_file() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"bob must not read this").unwrap();
    assert!(e.decrypt(BOB, &blob).is_err(), "bob has no grant yet");
    let state_path = e.store().join("state.json");
    let mut file = read_json(&state_path);
    assert_eq!(file["format"], "kmsfs-state");
    assert!(file["mac"].as_str().is_some_and(|m| m.len() == 64));
    let key_arn = file["state"]["keys"][&id]["arn"]
        .as_str()
        .unwrap()
        .to_string();
    file["state"]["keys"][&id]["grants"]
        .as_array_mut()
        .unwrap()
        .push(forged_grant(&key_arn));
    write_json(&state_path, &file);

    // The running service notices the change and fails closed on every call.
    assert_auth_failure(&e.decrypt(BOB, &blob).unwrap_err(), &e.store());
    assert_auth_failure(&e.decrypt(ALICE, &blob).unwrap_err(), &e.store());
    assert_auth_failure(&e.fails(ROOT, "ListKeys", json!({})), &e.store());
    // So does a new process.
    assert_auth_failure(&Service::open(e.config()).err().unwrap(), &e.store());
}

#[test]
fn a_state_json_downgraded_to_the_unauthenticated_format_is_refused() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"secret").unwrap();
    let state_path = e.store().join("state.json");
    let file = read_json(&state_path);
    // The format-1 layout: the bare state, no MAC, with a grant for bob.
    let mut bare = file["state"].clone();
    let key_arn = bare["keys"][&id]["arn"].as_str().unwrap().to_string();
    bare["keys"][&id]["grants"]
        .as_array_mut()
        .unwrap()
        .push(forged_grant(&key_arn));
    write_json(&state_path, &bare);
    assert_auth_failure(&e.decrypt(BOB, &blob).unwrap_err(), &e.store());
    assert_auth_failure(&Service::open(e.config()).err().unwrap(), &e.store());
    // Nor can the header be edited back to version 1 to make the old format acceptable:
    // its check value is bound to the version.
    let header_path = e.store().join("store.json");
    let mut header = read_json(&header_path);
    assert_eq!(header["version"], 2);
    header["version"] = json!(1);
    write_json(&header_path, &header);
    let err = Service::open(e.config()).err().unwrap();
    assert!(
        err.message.contains("does not open this store"),
        "unexpected: {err}"
    );
}

#[test]
fn an_older_state_json_put_back_under_a_running_service_is_refused() {
    let e = env();
    let id = e.split_key();
    let state_path = e.store().join("state.json");
    let before = std::fs::read(&state_path).unwrap();
    e.ok(
        ROOT,
        "CreateAlias",
        json!({ "AliasName": "alias/later", "TargetKeyId": id }),
    );
    // The old copy is authentic (its MAC is right), but older than what this process
    // already committed.
    std::fs::write(&state_path, &before).unwrap();
    let err = e.fails(ROOT, "ListAliases", json!({}));
    assert_auth_failure(&err, &e.store());
    assert!(err.message.contains("older"), "{err}");
}

#[test]
fn store_v1_fixture_opens_and_its_first_write_migrates_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_private(&src, &store);
    std::fs::remove_file(store.join("expected.json")).unwrap();
    let expected = read_json(&src.join("expected.json"));
    let cfg = config_for(&store, Arc::new(TestClock::new(START + 1000)));
    let svc = Service::open(cfg.clone()).unwrap();
    let decrypts = |svc: &Service| {
        for c in expected["Ciphertexts"].as_array().unwrap() {
            let out = svc
                .call(&ROOT, "Decrypt", json!({ "CiphertextBlob": c["CiphertextBlob"], "EncryptionContext": expected["EncryptionContext"] }))
                .unwrap();
            assert_eq!(out["Plaintext"], c["Plaintext"]);
        }
    };
    decrypts(&svc);
    // Reading does not migrate.
    assert!(read_json(&store.join("state.json")).get("mac").is_none());
    assert_eq!(read_json(&store.join("store.json"))["version"], 1);
    // The first write does.
    svc.call(
        &ROOT,
        "CreateAlias",
        json!({ "AliasName": "alias/after-migration", "TargetKeyId": expected["KeyId"] }),
    )
    .unwrap();
    let state = read_json(&store.join("state.json"));
    assert_eq!(state["format"], "kmsfs-state");
    assert_eq!(read_json(&store.join("store.json"))["version"], 2);
    let grants = svc
        .call(&ROOT, "ListGrants", json!({ "KeyId": expected["KeyId"] }))
        .unwrap();
    assert_eq!(grants["Grants"][0]["GrantId"], expected["GrantId"]);
    drop(svc);
    let svc = Service::open(cfg.clone()).unwrap();
    decrypts(&svc);
    // From now on, the state is authenticated.
    let mut file = state.clone();
    file["state"]["aliases"]
        .as_object_mut()
        .unwrap()
        .remove("alias/after-migration");
    write_json(&store.join("state.json"), &file);
    assert_auth_failure(&Service::open(cfg).err().unwrap(), &store);
}

fn passphrase_config(store: &Path, pass: &str) -> ServiceConfig {
    let mut cfg = config_for(store, Arc::new(TestClock::new(START)));
    cfg.root_key = RootKeySource::Passphrase(Zeroizing::new(pass.to_string()));
    cfg
}

fn kdf_params(store: &Path) -> (u64, u64, u64, bool) {
    let h = read_json(&store.join("store.json"));
    let rk = &h["root_key"];
    (
        rk["m_cost"].as_u64().unwrap(),
        rk["t_cost"].as_u64().unwrap(),
        rk["p_cost"].as_u64().unwrap(),
        rk.get("wrapped_root_key").is_some(),
    )
}

#[test]
fn new_passphrase_stores_use_rfc_9106_parameters_and_a_floor_is_enforced_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(init_store(&passphrase_config(&store, "pass one")).unwrap());
    assert_eq!(kdf_params(&store), (64 * 1024, 3, 4, true));
    assert!(Service::open(passphrase_config(&store, "pass one")).is_ok());
    let err = Service::open(passphrase_config(&store, "pass two"))
        .err()
        .unwrap();
    assert!(
        err.message.contains("wrong key file or passphrase"),
        "{err}"
    );

    let header_path = store.join("store.json");
    let original = read_json(&header_path);
    for (field, value) in [("m_cost", 8 * 1024), ("t_cost", 1), ("p_cost", 0)] {
        let mut h = original.clone();
        h["root_key"][field] = json!(value);
        write_json(&header_path, &h);
        let err = Service::open(passphrase_config(&store, "pass one"))
            .err()
            .unwrap();
        assert!(
            err.message.contains("below the minimum")
                && err.message.contains(&header_path.display().to_string()),
            "{field} = {value}: {err}"
        );
    }
    let mut h = original.clone();
    h["root_key"]["m_cost"] = json!(u32::MAX);
    write_json(&header_path, &h);
    let err = Service::open(passphrase_config(&store, "pass one"))
        .err()
        .unwrap();
    assert!(err.message.contains("above the maximum"), "{err}");
}

fn fixture_passphrase(src: &Path) -> String {
    std::fs::read_to_string(src.join("passphrase"))
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

#[test]
fn a_legacy_passphrase_store_opens_and_its_first_write_upgrades_the_kdf() {
    let src: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1-passphrase");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_private(&src, &store);
    for f in ["expected.json", "passphrase", "README.md"] {
        std::fs::remove_file(store.join(f)).unwrap();
    }
    let expected = read_json(&src.join("expected.json"));
    let pass = fixture_passphrase(&src);
    assert_eq!(kdf_params(&store), (19 * 1024, 2, 1, false));
    let decrypts = |svc: &Service| {
        let out = svc
            .call(
                &ROOT,
                "Decrypt",
                json!({ "CiphertextBlob": expected["CiphertextBlob"], "EncryptionContext": expected["EncryptionContext"] }),
            )
            .unwrap();
        assert_eq!(out["Plaintext"], expected["Plaintext"]);
    };
    let svc = Service::open(passphrase_config(&store, &pass)).unwrap();
    decrypts(&svc);
    assert_eq!(
        kdf_params(&store),
        (19 * 1024, 2, 1, false),
        "reads do not upgrade"
    );
    svc.call(
        &ROOT,
        "CreateAlias",
        json!({ "AliasName": "alias/upgraded", "TargetKeyId": expected["KeyId"] }),
    )
    .unwrap();
    assert_eq!(kdf_params(&store), (64 * 1024, 3, 4, true));
    assert_eq!(read_json(&store.join("store.json"))["version"], 2);
    drop(svc);
    // The same passphrase opens the upgraded store and reads the old ciphertext.
    let svc = Service::open(passphrase_config(&store, &pass)).unwrap();
    decrypts(&svc);
    let grants = svc
        .call(&ROOT, "ListGrants", json!({ "KeyId": expected["KeyId"] }))
        .unwrap();
    assert_eq!(grants["Grants"][0]["GrantId"], expected["GrantId"]);
    let err = Service::open(passphrase_config(&store, "not the passphrase"))
        .err()
        .unwrap();
    assert!(
        err.message.contains("wrong key file or passphrase"),
        "{err}"
    );
}
