//! Secrets and recovery through the real binary: `kmsfs passwd` (also killed at each
//! durable step: the old or the new secret opens the store, never neither),
//! `kmsfs store backup` / `restore` (restored onto a fresh layout, then a real mount
//! reads the files; tampered archive and wrong secret refused), and mounting a volume
//! with a store that did not make it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::cli::{ok, Mounted, KMSFS};

/// A scratch directory (removed on drop) with a store path inside it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("kmsfs-recovery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    /// A file holding `text`, mode 0600.
    fn secret_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a command unlocks the store.
#[derive(Clone, Debug)]
enum Secret {
    KeyFile(PathBuf),
    Passphrase(String),
}

/// `kmsfs --store STORE <args>` with `secret`, never reaching a socket of another test
/// (a `--socket` that does not exist makes the CLI open the store directly).
fn kmsfs(store: &Path, secret: &Secret, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(KMSFS);
    c.arg("--store")
        .arg(store)
        .arg("--socket")
        .arg(store.with_extension("no-socket"))
        .env_remove("KMSFS_PASSPHRASE")
        .env_remove("KMSFS_PASSPHRASE_FILE")
        .env_remove("KMSFS_ROOT_KEY")
        .env_remove("KMSFS_NEW_PASSPHRASE")
        .env_remove("KMSFS_TEST_CRASH_AT")
        .env_remove("KMSFS_STORE");
    match secret {
        Secret::KeyFile(k) => {
            c.arg("--root-key-file").arg(k);
        }
        Secret::Passphrase(p) => {
            c.env("KMSFS_PASSPHRASE", p);
        }
    }
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn fails_with(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure with `{needle}`, got success: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        stderr(o).contains(needle),
        "expected `{needle}` in: {}",
        stderr(o)
    );
}

/// A key created in the store and a blob encrypted under it: decrypting the blob later
/// proves the secret unlocks the root key and the material.
struct Probe {
    blob: String,
    context: &'static str,
    plaintext: String,
}

fn make_probe(store: &Path, secret: &Secret) -> Probe {
    let key = ok(&kmsfs(
        store,
        secret,
        &[
            "kms",
            "create-key",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
        &[],
    ));
    let blob = ok(&kmsfs(
        store,
        secret,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "cmVjb3ZlcnkgcHJvYmU=",
            "--encryption-context",
            "purpose=probe",
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
        &[],
    ));
    Probe {
        blob,
        context: "purpose=probe",
        plaintext: "cmVjb3ZlcnkgcHJvYmU=".into(),
    }
}

/// Whether `secret` opens the store and decrypts the probe.
fn opens(store: &Path, secret: &Secret, probe: &Probe) -> bool {
    let o = kmsfs(
        store,
        secret,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &probe.blob,
            "--encryption-context",
            probe.context,
            "--query",
            "Plaintext",
            "--output",
            "text",
        ],
        &[],
    );
    if o.status.success() {
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out.trim(), probe.plaintext, "decrypted the wrong thing");
    }
    o.status.success()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn passwd_changes_the_passphrase_and_switches_between_key_file_and_passphrase() {
    let s = Scratch::new("passwd");
    let store = s.path("store");
    let key1 = Secret::KeyFile(store.join("root.key"));
    ok(&kmsfs(&store, &key1, &["init"], &[]));
    let probe = make_probe(&store, &key1);
    let old_key_text = std::fs::read(store.join("root.key")).unwrap();

    // Key file → passphrase: the key file is shredded, the passphrase opens.
    let p1 = s.secret_file("p1", "first passphrase\n");
    let out = kmsfs(
        &store,
        &key1,
        &["passwd", "--new-passphrase-file", &p1.display().to_string()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["ProtectedBy"], "passphrase", "{v}");
    assert!(
        !store.join("root.key").exists(),
        "the old key file is still there"
    );
    assert!(opens(
        &store,
        &Secret::Passphrase("first passphrase".into()),
        &probe
    ));
    // A copy of the old key file no longer opens the store through kmsfs.
    let copy = s.secret_file("old.key", &String::from_utf8(old_key_text).unwrap());
    fails_with(
        &kmsfs(&store, &Secret::KeyFile(copy), &["kms", "list-keys"], &[]),
        "protected by a passphrase",
    );

    // Passphrase → passphrase (from the environment, as CI would).
    let out = kmsfs(
        &store,
        &Secret::Passphrase("first passphrase".into()),
        &["passwd"],
        &[("KMSFS_NEW_PASSPHRASE", "second passphrase")],
    );
    ok(&out);
    assert!(!opens(
        &store,
        &Secret::Passphrase("first passphrase".into()),
        &probe
    ));
    assert!(opens(
        &store,
        &Secret::Passphrase("second passphrase".into()),
        &probe
    ));

    // Passphrase → key file: written 0600, and it is the only secret that opens.
    let key2 = s.path("keys/new-root.key");
    std::fs::create_dir_all(key2.parent().unwrap()).unwrap();
    let out = kmsfs(
        &store,
        &Secret::Passphrase("second passphrase".into()),
        &["passwd", "--to-key-file", &key2.display().to_string()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["ProtectedBy"], "key-file", "{v}");
    assert_eq!(mode(&key2), 0o600);
    assert!(opens(&store, &Secret::KeyFile(key2.clone()), &probe));
    assert!(!opens(
        &store,
        &Secret::Passphrase("second passphrase".into()),
        &probe
    ));

    // Wrong old secret: refused, nothing changes.
    let out = kmsfs(
        &store,
        &Secret::KeyFile(s.secret_file("wrong.key", &"ab".repeat(32))),
        &["passwd"],
        &[("KMSFS_NEW_PASSPHRASE", "x")],
    );
    fails_with(&out, "does not open this store");
    assert!(opens(&store, &Secret::KeyFile(key2.clone()), &probe));
    // No new passphrase and no terminal: refused with the ways to give one.
    let out = Command::new("setsid")
        .args(["-w", KMSFS, "--store"])
        .arg(&store)
        .arg("--root-key-file")
        .arg(&key2)
        .arg("passwd")
        .env_remove("KMSFS_NEW_PASSPHRASE")
        .env_remove("KMSFS_PASSPHRASE")
        .output()
        .unwrap();
    fails_with(&out, "--new-passphrase-file");
}

/// Copies a store directory (files 0600, directories 0700).
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_store(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

struct CrashCase {
    name: &'static str,
    /// The pristine store, and what opens it before the change.
    pristine: PathBuf,
    old: Secret,
    probe: Probe,
    /// `passwd` arguments and environment, and the secret after the change.
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    new: Secret,
    steps: &'static [&'static str],
}

fn run_crash_case(s: &Scratch, c: &CrashCase) {
    for (i, step) in c.steps.iter().enumerate() {
        let store = s.path(&format!("{}-{i}", c.name));
        copy_store(&c.pristine, &store);
        // The old key file, if inside the store, is the copy's.
        let old = match &c.old {
            Secret::KeyFile(k) if k.starts_with(&c.pristine) => {
                Secret::KeyFile(store.join(k.strip_prefix(&c.pristine).unwrap()))
            }
            other => other.clone(),
        };
        let new = match &c.new {
            Secret::KeyFile(k) => Secret::KeyFile(s.path(&format!(
                "{}-{i}-{}",
                c.name,
                k.file_name().unwrap().to_string_lossy()
            ))),
            other => other.clone(),
        };
        let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let new_key_arg;
        if let (Some(pos), Secret::KeyFile(k)) =
            (args.iter().position(|a| *a == "--to-key-file"), &new)
        {
            new_key_arg = k.display().to_string();
            args[pos + 1] = &new_key_arg;
        }
        let mut env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("KMSFS_TEST_CRASH_AT", step));
        let out = kmsfs(&store, &old, &args, &env);
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{} at {step}: passwd was not killed there: {:?} {}",
            c.name,
            out.status,
            stderr(&out)
        );
        let old_opens = opens(&store, &old, &c.probe);
        let new_opens = opens(&store, &new, &c.probe);
        let committed = *step == "header-written";
        assert_eq!(
            (old_opens, new_opens),
            (!committed, committed),
            "{} killed after {step}: old opens {old_opens}, new opens {new_opens}",
            c.name
        );
        if !committed {
            // The interrupted change can be done again and completes.
            ok(&kmsfs(&store, &old, &args, &env[..env.len() - 1]));
            assert!(
                opens(&store, &new, &c.probe),
                "{} rerun after {step}",
                c.name
            );
        }
    }
}

#[test]
fn passwd_killed_after_each_durable_step_leaves_a_store_the_old_or_the_new_secret_opens() {
    let s = Scratch::new("crash");
    // A format-2 store protected by a key file, and one protected by a passphrase.
    let keyed = s.path("pristine-keyed");
    let keyed_secret = Secret::KeyFile(keyed.join("root.key"));
    ok(&kmsfs(&keyed, &keyed_secret, &["init"], &[]));
    let keyed_probe = make_probe(&keyed, &keyed_secret);
    let pass = s.path("pristine-pass");
    let pass_secret = Secret::Passphrase("old passphrase".into());
    ok(&kmsfs(&pass, &pass_secret, &["init"], &[]));
    let pass_probe = make_probe(&pass, &pass_secret);
    // A format-1 passphrase store (its root key is the Argon2id output itself).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1-passphrase");
    let legacy = s.path("pristine-legacy");
    copy_store(&fixture, &legacy);
    for extra in ["README.md", "expected.json", "passphrase"] {
        std::fs::remove_file(legacy.join(extra)).unwrap();
    }
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let legacy_probe = Probe {
        blob: expected["CiphertextBlob"].as_str().unwrap().to_string(),
        context: "purpose=fixture",
        plaintext: expected["Plaintext"].as_str().unwrap().to_string(),
    };
    let legacy_pass = std::fs::read_to_string(fixture.join("passphrase")).unwrap();
    let legacy_secret = Secret::Passphrase(legacy_pass.trim_end().to_string());
    assert!(opens(&legacy, &legacy_secret, &legacy_probe));

    let cases = [
        CrashCase {
            name: "pass-to-pass",
            pristine: pass.clone(),
            old: pass_secret.clone(),
            probe: Probe {
                blob: pass_probe.blob.clone(),
                context: pass_probe.context,
                plaintext: pass_probe.plaintext.clone(),
            },
            args: vec!["passwd".into()],
            env: vec![("KMSFS_NEW_PASSPHRASE", "new passphrase".into())],
            new: Secret::Passphrase("new passphrase".into()),
            steps: &["header-written"],
        },
        CrashCase {
            name: "key-to-pass",
            pristine: keyed.clone(),
            old: keyed_secret.clone(),
            probe: keyed_probe,
            args: vec!["passwd".into(), "--keep-key-file".into()],
            env: vec![("KMSFS_NEW_PASSPHRASE", "new passphrase".into())],
            new: Secret::Passphrase("new passphrase".into()),
            steps: &["header-written"],
        },
        CrashCase {
            name: "pass-to-key",
            pristine: pass.clone(),
            old: pass_secret.clone(),
            probe: pass_probe,
            args: vec!["passwd".into(), "--to-key-file".into(), "K".into()],
            env: vec![],
            new: Secret::KeyFile(PathBuf::from("new.key")),
            steps: &["key-file-written", "header-written"],
        },
        CrashCase {
            name: "legacy-pass-to-pass",
            pristine: legacy.clone(),
            old: legacy_secret.clone(),
            probe: legacy_probe,
            args: vec!["passwd".into()],
            env: vec![("KMSFS_NEW_PASSPHRASE", "new passphrase".into())],
            new: Secret::Passphrase("new passphrase".into()),
            steps: &["state-migrated", "header-written"],
        },
    ];
    for c in &cases {
        run_crash_case(&s, c);
    }
    // Completed on the legacy store: the old passphrase is gone for good, the new one
    // opens the fixture's material (the root key was kept, only rewrapped).
    let done = s.path("legacy-done");
    copy_store(&legacy, &done);
    ok(&kmsfs(
        &done,
        &legacy_secret,
        &["passwd"],
        &[("KMSFS_NEW_PASSPHRASE", "new passphrase")],
    ));
    let header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(done.join("store.json")).unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(
        header["root_key"]["wrapped_root_key"].is_string(),
        "{header}"
    );
    assert!(opens(
        &done,
        &Secret::Passphrase("new passphrase".into()),
        &cases[3].probe
    ));
    assert!(!opens(&done, &legacy_secret, &cases[3].probe));
}

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&p.display().to_string()))
}

/// `kmsfs mount` (daemonized) then read `name` through the mount, then unmount.
fn mount_and_read(store: &Path, secret: &Secret, backing: &Path, mnt: &Path, name: &str) -> String {
    std::fs::create_dir_all(mnt).unwrap();
    let out = kmsfs(
        store,
        secret,
        &[
            "mount",
            "--no-socket",
            &backing.display().to_string(),
            &mnt.display().to_string(),
        ],
        &[],
    );
    let guard = Mounted(mnt.to_path_buf());
    ok(&out);
    assert!(is_mounted(mnt), "{} is not mounted", mnt.display());
    let text = std::fs::read_to_string(mnt.join(name)).unwrap();
    drop(guard);
    text
}

#[test]
fn a_store_backed_up_lost_and_restored_on_a_fresh_layout_reads_the_volume() {
    let s = Scratch::new("backup");
    let store = s.path("machine-a/store");
    let key = Secret::KeyFile(store.join("root.key"));
    let backing = s.path("backing");
    ok(&kmsfs(
        &store,
        &key,
        &["init", &backing.display().to_string()],
        &[],
    ));
    let mnt = s.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = kmsfs(
        &store,
        &key,
        &[
            "mount",
            "--no-socket",
            &backing.display().to_string(),
            &mnt.display().to_string(),
        ],
        &[],
    );
    {
        let _guard = Mounted(mnt.clone());
        ok(&out);
        assert!(is_mounted(&mnt), "not mounted");
        std::fs::create_dir(mnt.join("docs")).unwrap();
        std::fs::write(mnt.join("docs/plan.txt"), "the plan\n").unwrap();
        std::fs::write(mnt.join("note.txt"), "backed up\n").unwrap();
    }
    assert!(!is_mounted(&mnt));

    // Back up; the root key is kept apart (as docs/RECOVERY.md says).
    let archive = s.path("store.kmsfs-backup");
    let v: serde_json::Value = serde_json::from_str(&ok(&kmsfs(
        &store,
        &key,
        &["store", "backup", &archive.display().to_string()],
        &[],
    )))
    .unwrap();
    let files: Vec<&str> = v["Files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in ["store.json", "state.json", "audit.log"] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    assert!(
        files.iter().any(|f| f.starts_with("material/")),
        "{files:?}"
    );
    assert!(!files.contains(&"root.key"), "{files:?}");
    assert_eq!(mode(&archive), 0o600);
    let kept_key = s.secret_file(
        "kept-root.key",
        &std::fs::read_to_string(store.join("root.key")).unwrap(),
    );
    let bytes = std::fs::read(&archive).unwrap();
    let root_hex = std::fs::read_to_string(&kept_key).unwrap();
    assert!(
        !bytes.windows(64).any(|w| w == root_hex.trim().as_bytes()),
        "the archive holds the root key"
    );
    assert!(
        !bytes.windows(5).any(|w| w == b"plan\n" || w == b"state"),
        "the archive is not sealed"
    );

    // The machine is lost: the store is gone.
    std::fs::remove_dir_all(s.path("machine-a")).unwrap();

    // A fresh machine: no store yet. A wrong key file is refused, naming the problem.
    let new_store = s.path("machine-b/var/lib/kmsfs");
    let wrong = s.secret_file("wrong.key", &"cd".repeat(32));
    let out = kmsfs(
        &new_store,
        &Secret::KeyFile(wrong),
        &["store", "restore", &archive.display().to_string()],
        &[],
    );
    fails_with(&out, "does not open this backup");
    assert!(!new_store.exists(), "a refused restore left a store behind");
    // Without any key file: told to give the one kept apart.
    let out = Command::new(KMSFS)
        .arg("--store")
        .arg(&new_store)
        .args(["store", "restore"])
        .arg(&archive)
        .env_remove("KMSFS_PASSPHRASE")
        .env_remove("KMSFS_ROOT_KEY")
        .output()
        .unwrap();
    fails_with(&out, "--root-key-file");

    // A tampered archive: one flipped byte in the sealed body, and one in the header.
    for (what, at) in [("body", bytes.len() - 20), ("header", 20)] {
        let mut t = bytes.clone();
        t[at] ^= 0x01;
        let tampered = s.path(&format!("tampered-{what}"));
        std::fs::write(&tampered, &t).unwrap();
        let out = kmsfs(
            &new_store,
            &Secret::KeyFile(kept_key.clone()),
            &["store", "restore", &tampered.display().to_string()],
            &[],
        );
        assert!(!out.status.success(), "tampered {what} accepted");
        let err = stderr(&out);
        assert!(
            err.contains("fails authentication") || err.contains("malformed"),
            "tampered {what}: {err}"
        );
        assert!(!new_store.exists());
    }
    let out = kmsfs(
        &new_store,
        &Secret::KeyFile(kept_key.clone()),
        &[
            "store",
            "restore",
            &s.path("tampered-body").display().to_string(),
        ],
        &[],
    );
    fails_with(&out, "changed or damaged");
    let not_backup = s.secret_file("not-a-backup", "hello");
    fails_with(
        &kmsfs(
            &new_store,
            &Secret::KeyFile(kept_key.clone()),
            &["store", "restore", &not_backup.display().to_string()],
            &[],
        ),
        "not a kmsfs store backup",
    );

    // The real restore, with the key file kept apart.
    let v: serde_json::Value = serde_json::from_str(&ok(&kmsfs(
        &new_store,
        &Secret::KeyFile(kept_key.clone()),
        &["store", "restore", &archive.display().to_string()],
        &[],
    )))
    .unwrap();
    assert_eq!(
        v["RootKeyFileWritten"],
        new_store.join("root.key").display().to_string(),
        "{v}"
    );
    assert_eq!(mode(&new_store), 0o700);
    for f in ["store.json", "state.json", "root.key", "audit.log"] {
        assert_eq!(mode(&new_store.join(f)), 0o600, "{f}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(new_store.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary directories left: {leftovers:?}"
    );

    // As on the old machine: the default key file, the volume mounts and reads.
    let here = Secret::KeyFile(new_store.join("root.key"));
    let mnt2 = s.path("mnt2");
    assert_eq!(
        mount_and_read(&new_store, &here, &backing, &mnt2, "docs/plan.txt"),
        "the plan\n"
    );
    assert_eq!(
        mount_and_read(&new_store, &here, &backing, &mnt2, "note.txt"),
        "backed up\n"
    );
    // The audit log came along and its chain verifies.
    ok(&kmsfs(&new_store, &here, &["audit", "verify"], &[]));

    // A second restore onto the existing store is refused without --force; with it,
    // the old store is kept beside the new one.
    let out = kmsfs(
        &new_store,
        &here,
        &["store", "restore", &archive.display().to_string()],
        &[],
    );
    fails_with(&out, "already there");
    let v: serde_json::Value = serde_json::from_str(&ok(&kmsfs(
        &new_store,
        &Secret::KeyFile(kept_key.clone()),
        &[
            "store",
            "restore",
            "--force",
            &archive.display().to_string(),
        ],
        &[],
    )))
    .unwrap();
    let moved = PathBuf::from(v["ReplacedStoreMovedTo"].as_str().unwrap());
    assert!(moved.join("store.json").exists(), "{v}");
    assert_eq!(
        mount_and_read(&new_store, &here, &backing, &mnt2, "note.txt"),
        "backed up\n"
    );
}

#[test]
fn a_passphrase_store_backup_restores_only_with_its_passphrase() {
    let s = Scratch::new("backup-pass");
    let store = s.path("store");
    let pass = Secret::Passphrase("backup passphrase".into());
    ok(&kmsfs(&store, &pass, &["init"], &[]));
    let probe = make_probe(&store, &pass);
    let archive = s.path("b");
    ok(&kmsfs(
        &store,
        &pass,
        &["store", "backup", &archive.display().to_string()],
        &[],
    ));
    let restored = s.path("restored");
    let out = kmsfs(
        &restored,
        &Secret::Passphrase("not it".into()),
        &["store", "restore", &archive.display().to_string()],
        &[],
    );
    fails_with(&out, "does not open this backup");
    // No passphrase and no terminal: says how to give it.
    let out = Command::new("setsid")
        .args(["-w", KMSFS, "--store"])
        .arg(&restored)
        .args(["store", "restore"])
        .arg(&archive)
        .env_remove("KMSFS_PASSPHRASE")
        .output()
        .unwrap();
    fails_with(&out, "KMSFS_PASSPHRASE");
    ok(&kmsfs(
        &restored,
        &pass,
        &["store", "restore", &archive.display().to_string()],
        &[],
    ));
    assert!(!restored.join("root.key").exists());
    assert!(opens(&restored, &pass, &probe));
}

#[test]
fn mounting_a_volume_with_a_store_that_did_not_make_it_names_the_store_and_the_way_back() {
    let s = Scratch::new("foreign");
    let store = s.path("store");
    let key = Secret::KeyFile(store.join("root.key"));
    let backing = s.path("backing");
    let mnt = s.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(&kmsfs(
        &store,
        &key,
        &["init", &backing.display().to_string()],
        &[],
    ));
    let volume = std::fs::read_to_string(backing.join("kmsfs.volume")).unwrap();
    let mount = |store: &Path, key: &Secret| {
        let out = kmsfs(
            store,
            key,
            &[
                "mount",
                "--no-socket",
                &backing.display().to_string(),
                &mnt.display().to_string(),
            ],
            &[],
        );
        let _guard = Mounted(mnt.clone());
        assert!(!is_mounted(&mnt), "mounted a volume of another store");
        out
    };

    // The store is lost: mount says there is none, and that init will not help.
    std::fs::remove_dir_all(&store).unwrap();
    let out = mount(&store, &key);
    fails_with(&out, "there is no kmsfs store at");
    fails_with(&out, "kmsfs store restore");
    assert!(
        !stderr(&out).contains("metadata authentication failed"),
        "{}",
        stderr(&out)
    );

    // Following the old hint (`kmsfs init`) makes a new store: mount names it and the
    // volume, and points to the backup.
    ok(&kmsfs(&store, &key, &["init"], &[]));
    let out = mount(&store, &key);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("belongs to another store"), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains("kmsfs store restore"), "{err}");
    assert!(!err.contains("metadata authentication failed"), "{err}");
    let volume_id = volume
        .lines()
        .find_map(|l| l.strip_prefix("volume_id = "))
        .unwrap()
        .trim_matches('"');
    assert!(err.contains(volume_id), "{err}");
    // fsck says the same, and neither left a useless secret in the new store.
    let out = kmsfs(&store, &key, &["fsck", &backing.display().to_string()], &[]);
    fails_with(&out, "belongs to another store");
    let state = std::fs::read_to_string(store.join("state.json")).unwrap();
    assert!(
        !state.contains(volume_id),
        "the new store minted a secret for the volume"
    );
}
