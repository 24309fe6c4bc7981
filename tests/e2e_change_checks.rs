//! Revocation on the very next open when the change comes from another process: the key
//! service notices changes to `state.json`, the principals file and the store directory
//! by inotify (one `poll` per decision) instead of stat-ing each path, and these tests
//! make the changes from child processes (the `kmsfs` CLI, a shell, `kmsfs store
//! restore`) while the daemon's service stays open, then decide at once: through the
//! mount and in process. No sleeps: the kernel queues the event inside the writer's
//! system call, so the next decision must see it.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::e2e::*;

const KMSFS: &str = env!("CARGO_BIN_EXE_kmsfs");

/// `kmsfs --store <store> <args>` as root (bob in the fixture's principals file), in
/// direct mode: another process than the one holding the service.
fn cli(store: &Path, args: &[&str]) -> Output {
    Command::new(KMSFS)
        .arg("--store")
        .arg(store)
        .arg("--socket")
        .arg(store.with_extension("no-socket"))
        .args(args)
        .env_remove("KMSFS_PASSPHRASE")
        .env_remove("KMSFS_PASSPHRASE_FILE")
        .env_remove("KMSFS_ROOT_KEY")
        .env_remove("KMSFS_STORE")
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A shell command as root, in another process.
#[track_caller]
fn root_sh(script: &str) {
    ok(&Command::new("sh").arg("-c").arg(script).output().unwrap());
}

/// Alice's ciphertext of a short secret, for in-process Decrypt calls.
fn blob(f: &Fixture) -> Value {
    f.kms(
        ALICE,
        "Encrypt",
        json!({"KeyId": f.key_id, "Plaintext": "c2VjcmV0"}),
    )
    .unwrap()["CiphertextBlob"]
        .clone()
}

fn decrypt(f: &Fixture, uid: u32, blob: &Value) -> Result<Value, kmsfs::kms::KmsError> {
    f.kms(uid, "Decrypt", json!({"CiphertextBlob": blob}))
}

/// The service watches by inotify, and decisions with nothing changed skip the full
/// check: of `n` decisions, far fewer than `n` ran one. (Not "none": a mount or unmount
/// anywhere on the machine also counts as a possible change, and other tests mount.)
#[track_caller]
fn assert_fast_path(f: &Fixture, blob: &Value) {
    let before = f.service.change_checks();
    assert!(before.by_inotify, "change checks fell back to stat");
    for _ in 0..200 {
        decrypt(f, ALICE, blob).unwrap();
    }
    let after = f.service.change_checks();
    assert!(after.by_inotify);
    assert!(
        after.full_checks - before.full_checks < 100,
        "{} full checks for 200 decisions",
        after.full_checks - before.full_checks
    );
}

#[test]
fn a_grant_revoked_by_another_process_is_denied_on_the_very_next_open() {
    let f = Fixture::new("cc-grant");
    let p = f.path("shared.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf 'for carol' > {p} && chmod 644 {p}"))
        .expect_ok();
    let blob = blob(&f);
    let grant = f
        .kms(
            BOB,
            "CreateGrant",
            json!({"KeyId": f.key_id, "GranteePrincipal": arn("carol"), "Operations": ["Decrypt"]}),
        )
        .unwrap();
    assert_eq!(f.sh(CAROL, &format!("cat {p}")).expect_ok(), "for carol");
    decrypt(&f, CAROL, &blob).unwrap();
    assert_fast_path(&f, &blob);

    let grant_id = grant["GrantId"].as_str().unwrap();
    ok(&cli(
        &f.store,
        &[
            "kms",
            "revoke-grant",
            "--key-id",
            &f.key_id,
            "--grant-id",
            grant_id,
        ],
    ));
    f.sh(CAROL, &format!("cat {p}")).expect_err(EACCES);
    let e = decrypt(&f, CAROL, &blob).unwrap_err();
    assert_eq!(e.kind.aws_name(), "AccessDeniedException", "{e:?}");
    // Alice is untouched, and the watch is still in use after the change.
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "for carol");
    assert_fast_path(&f, &blob);

    // A grant created by another process is seen as fast as one revoked.
    ok(&cli(
        &f.store,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &f.key_id,
            "--grantee-principal",
            &arn("carol"),
            "--operations",
            "Decrypt",
        ],
    ));
    assert_eq!(f.sh(CAROL, &format!("cat {p}")).expect_ok(), "for carol");
}

#[test]
fn a_key_disabled_by_another_process_is_revoked_on_the_very_next_open() {
    let f = Fixture::new("cc-disable");
    let p = f.path("a.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf hello > {p}")).expect_ok();
    let blob = blob(&f);
    assert_fast_path(&f, &blob);

    ok(&cli(
        &f.store,
        &["kms", "disable-key", "--key-id", &f.key_id],
    ));
    f.sh(ALICE, &format!("cat {p}")).expect_err(EKEYREVOKED);
    let e = decrypt(&f, ALICE, &blob).unwrap_err();
    assert_eq!(e.kind.aws_name(), "DisabledException", "{e:?}");

    ok(&cli(
        &f.store,
        &["kms", "enable-key", "--key-id", &f.key_id],
    ));
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
    decrypt(&f, ALICE, &blob).unwrap();
}

#[test]
fn the_principals_file_edited_in_place_or_replaced_by_rename_is_seen_by_the_next_open() {
    let f = Fixture::new("cc-principals");
    let p = f.path("a.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf hello > {p} && chmod 644 {p}"))
        .expect_ok();
    let blob = blob(&f);
    assert_fast_path(&f, &blob);

    let principals = f.store.join("principals.toml");
    let original = std::fs::read_to_string(&principals).unwrap();
    // Alice's uid no longer maps to alice: she is anonymous, outside the key policy.
    let without_alice = original.replace(&format!("uid = {ALICE}\n"), "uid = 61999\n");
    assert_ne!(original, without_alice);
    let edited = f.dir.join("principals-without-alice.toml");
    let kept = f.dir.join("principals-original.toml");
    std::fs::write(&edited, &without_alice).unwrap();
    std::fs::write(&kept, &original).unwrap();
    let (pr, ed, ke) = (principals.display(), edited.display(), kept.display());
    let tmp = f.store.join("principals.toml.new");
    let tmp = tmp.display();

    // In place: truncate and write the same inode (as `cat >` or an editor without backup).
    root_sh(&format!("cat {ed} > {pr}"));
    f.sh(ALICE, &format!("cat {p}")).expect_err(EACCES);
    assert!(decrypt(&f, ALICE, &blob).is_err());

    // By rename over it (as most editors and config tools save).
    root_sh(&format!(
        "cp {ke} {tmp} && chmod 600 {tmp} && mv {tmp} {pr}"
    ));
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
    decrypt(&f, ALICE, &blob).unwrap();
    root_sh(&format!(
        "cp {ed} {tmp} && chmod 600 {tmp} && mv {tmp} {pr}"
    ));
    f.sh(ALICE, &format!("cat {p}")).expect_err(EACCES);
    assert!(decrypt(&f, ALICE, &blob).is_err());

    // A mode that lets other users edit it fails every call closed at once.
    root_sh(&format!("cat {ke} > {pr}"));
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
    root_sh(&format!("chmod 666 {pr}"));
    f.sh(ALICE, &format!("cat {p}")).expect_err(EIO);
    root_sh(&format!("chmod 600 {pr}"));
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
    assert_fast_path(&f, &blob);
}

#[test]
fn a_store_restored_over_the_live_one_is_seen_by_the_next_open() {
    let f = Fixture::new("cc-restore");
    let p = f.path("a.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf hello > {p}")).expect_ok();
    let blob = blob(&f);
    assert_fast_path(&f, &blob);

    // A copy of the store in which another process disabled the key (a later
    // generation), backed up, then restored over the live store: `restore` exchanges
    // the directories (renameat2 RENAME_EXCHANGE), so no file inside either changes.
    let copy = f.dir.join("copy");
    root_sh(&format!("cp -a {} {}", f.store.display(), copy.display()));
    let key_file = f.dir.join("root.key");
    std::fs::copy(copy.join("root.key"), &key_file).unwrap();
    let with_key = |store: &Path, args: &[&str]| {
        let mut all = vec!["--root-key-file", key_file.to_str().unwrap()];
        all.extend_from_slice(args);
        cli(store, &all)
    };
    ok(&with_key(
        &copy,
        &["kms", "disable-key", "--key-id", &f.key_id],
    ));
    let archive = f.dir.join("store.backup");
    ok(&with_key(
        &copy,
        &["store", "backup", archive.to_str().unwrap()],
    ));
    // Nothing changed in the live store yet.
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
    ok(&with_key(
        &f.store,
        &["store", "restore", "--force", archive.to_str().unwrap()],
    ));
    f.sh(ALICE, &format!("cat {p}")).expect_err(EKEYREVOKED);
    let e = decrypt(&f, ALICE, &blob).unwrap_err();
    assert_eq!(e.kind.aws_name(), "DisabledException", "{e:?}");
}

#[test]
fn an_identity_policy_file_edited_by_another_process_applies_to_the_next_call() {
    let f = Fixture::new("cc-identity-policy");
    let principals = f.store.join("principals.toml");
    let text = std::fs::read_to_string(&principals).unwrap();
    // Bob's identity policy moves from inline to a file beside the principals file.
    let inline = text
        .lines()
        .find(|l| l.starts_with("policy = '''"))
        .unwrap()
        .to_string();
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:CreateKey"],"Resource":"*"}]}"#;
    let other = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:ListKeys"],"Resource":"*"}]}"#;
    let policy = f.store.join("bob.json");
    std::fs::write(&policy, allow).unwrap();
    std::fs::write(
        &principals,
        text.replace(&inline, "policies = [\"bob.json\"]"),
    )
    .unwrap();
    let create = || f.kms(BOB, "CreateKey", json!({"Description": "by bob"}));
    create().unwrap();
    assert!(f.service.change_checks().by_inotify);

    // Rewritten in place by another process: the very next call is refused (without
    // change notification it took up to 250 ms).
    let (po, tmp) = (policy.display(), f.store.join("bob.json.new"));
    root_sh(&format!("printf '%s' '{other}' > {po}"));
    let e = create().unwrap_err();
    assert_eq!(e.kind.aws_name(), "AccessDeniedException", "{e:?}");
    // Replaced by rename: allowed again at once.
    root_sh(&format!(
        "printf '%s' '{allow}' > {t} && chmod 600 {t} && mv {t} {po}",
        t = tmp.display()
    ));
    create().unwrap();
}
