//! Principals without guesswork, through the real binary and real uids: the example
//! principals file works when copied alone into a store; a missing identity policy file
//! is named (file, line, field, path) by `serve`, `mount`, `whoami` and through a
//! running mount; `whoami` says which socket or store answered; a client with a store
//! of its own uses it rather than root's service; supplementary groups map to roles for
//! FUSE callers and socket peers; `key-rule set` refuses keys new files could not get.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::cli::*;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `kmsfs serve` with exactly these global options, until dropped.
fn serve(globals: &[String], socket: &Path) -> KillOnDrop {
    let _ = std::fs::remove_file(socket);
    let mut child = Command::new(KMSFS)
        .args(globals)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kmsfs serve exited: {status}");
        }
        assert!(Instant::now() < deadline, "kmsfs serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    KillOnDrop(child)
}

/// Mounts BACKING on MNT as root through the binary (daemonized; it serves the
/// fixture's socket), world-writable, unmounted when the guard drops.
fn mount(s: &Served, backing: &Path, mnt: &Path) -> Mounted {
    std::fs::create_dir_all(mnt).unwrap();
    let out = s.root(&[
        "mount",
        "-o",
        "allow_other,default_permissions",
        &backing.display().to_string(),
        &mnt.display().to_string(),
    ]);
    let guard = Mounted(mnt.to_path_buf());
    ok(&out);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.contains(&mnt.display().to_string()), "not mounted");
    std::fs::set_permissions(mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
    guard
}

#[test]
fn the_example_principals_file_works_when_copied_alone_into_a_store() {
    let s = Served::init("example-alone");
    // As the README says: copy the file alone into the store, nothing else.
    let copied = s.store().join("principals.toml");
    std::fs::copy(repo("config/principals.toml"), &copied).unwrap();
    std::fs::set_permissions(&copied, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!s.store().join("policies").exists());
    let globals = vec![
        "--store".to_string(),
        s.store().display().to_string(),
        "--socket".into(),
        s.socket().display().to_string(),
    ];
    let _service = serve(&globals, &s.socket());
    // alice (uid 1001 in the example) is recognised, with her identity policy.
    let me = json(&as_uid(1001, &globals, &["whoami"]));
    assert_eq!(
        me["Principal"]["Arn"], "arn:aws:iam::111122223333:user/alice",
        "{me}"
    );
    assert_eq!(
        me["AnsweredBy"]["Socket"],
        s.socket().display().to_string(),
        "{me}"
    );
    assert_eq!(
        me["AnsweredBy"]["Store"],
        s.store().display().to_string(),
        "{me}"
    );
    // Her identity policy lets her use keys of the account (through root delegation
    // in the default key's policy she may describe it).
    let describe = as_uid(
        1001,
        &globals,
        &["kms", "describe-key", "--key-id", "alias/kmsfs/default"],
    );
    ok(&describe);
    // Root keeps working as the account root.
    let root = json(
        &Command::new(KMSFS)
            .args(&globals)
            .arg("whoami")
            .output()
            .unwrap(),
    );
    assert_eq!(root["Principal"]["Type"], "Root", "{root}");
}

/// The principals file of support::cli plus one entry whose policy file is missing;
/// returns the text and the 1-based line of its `policies` field.
fn principals_with_missing_policy() -> (String, usize) {
    let text = format!(
        "{}\n# dave's policy was not copied along\n[[principal]]\narn = \"{}\"\nuid = 62004\npolicies = [\"policies/dave.json\"]\n",
        principals_toml(),
        arn("dave")
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("policies = "))
        .unwrap()
        + 1;
    (text, line)
}

#[track_caller]
fn names_the_missing_policy(err: &str, s: &Served, line: usize) {
    let at = format!("{}:{line}:", s.principals().display());
    let missing = s.dir.join("policies/dave.json").display().to_string();
    assert!(err.contains(&at), "no {at} in: {err}");
    assert!(err.contains("field `policies`"), "no field in: {err}");
    assert!(err.contains(&missing), "no {missing} in: {err}");
}

#[test]
fn a_missing_policy_file_is_named_with_file_line_field_and_path_everywhere() {
    let s = Served::init("missing-policy");
    let backing = s.dir.join("backing");
    let mnt = s.dir.join("mnt");
    ok(&s.root(&["init", &backing.display().to_string()]));
    let guard = mount(&s, &backing, &mnt);
    std::fs::write(mnt.join("before.txt"), b"written while the file was fine").unwrap();

    let (broken, line) = principals_with_missing_policy();
    std::fs::write(s.principals(), broken).unwrap();
    // Through the running mount, opens and creates fail closed...
    assert!(std::fs::read(mnt.join("before.txt")).is_err());
    assert!(std::fs::write(mnt.join("after.txt"), b"x").is_err());
    // ... and whoami, answered by the mount's service, says exactly why.
    let o = s.root(&["whoami"]);
    assert!(!o.status.success());
    names_the_missing_policy(&stderr(&o), &s, line);
    ok(&Command::new(KMSFS)
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap());
    drop(guard);

    // whoami opening the store directly (nothing serves the socket now).
    let o = s.root(&["whoami"]);
    assert!(!o.status.success());
    names_the_missing_policy(&stderr(&o), &s, line);
    // serve refuses to start.
    let o = s.root(&["serve"]);
    assert!(!o.status.success());
    names_the_missing_policy(&stderr(&o), &s, line);
    // mount refuses to mount.
    let o = s.root(&[
        "mount",
        &backing.display().to_string(),
        &mnt.display().to_string(),
    ]);
    let _guard = Mounted(mnt.clone());
    assert!(!o.status.success());
    names_the_missing_policy(&stderr(&o), &s, line);
}

/// A logger for this test binary that keeps error records.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Error
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGED: Captured = Captured(Mutex::new(Vec::new()));

#[test]
fn a_running_service_logs_why_a_broken_principals_file_fails_its_callers() {
    use kmsfs::kms::provider::{Caller, DataKeys};
    log::set_logger(&LOGGED).unwrap();
    log::set_max_level(log::LevelFilter::Error);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = kmsfs::kms::ServiceConfig::new(&store);
    kmsfs::kms::init_store(&cfg).unwrap();
    let service = kmsfs::kms::Service::open(cfg).unwrap();
    let root = Caller {
        uid: 0,
        gid: 0,
        pid: std::process::id(),
    };
    let ctx = kmsfs::policy::EncryptionContext::new();
    service
        .generate_data_key(&root, "alias/kmsfs/default", &ctx)
        .unwrap();
    let principals = store.join("principals.toml");
    std::fs::write(
        &principals,
        "account = \"111122223333\"\n[[principal]]\narn = \"arn:aws:iam::111122223333:user/x\"\nuid = 5\npolicies = [\"nowhere.json\"]\n",
    )
    .unwrap();
    for _ in 0..3 {
        assert!(service
            .generate_data_key(&root, "alias/kmsfs/default", &ctx)
            .is_err());
    }
    let logged = LOGGED.0.lock().unwrap().clone();
    let about: Vec<&String> = logged
        .iter()
        .filter(|l| l.contains(&format!("{}:5:", principals.display())))
        .collect();
    assert_eq!(about.len(), 1, "logged once per failure: {logged:?}");
    assert!(
        about[0].contains("field `policies`")
            && about[0].contains(&store.join("nowhere.json").display().to_string()),
        "{logged:?}"
    );
}

#[test]
fn a_client_with_its_own_store_uses_it_rather_than_the_system_service() {
    let s = Served::init("own-store");
    const USER: u32 = 62011;
    const NO_STORE: u32 = 62012;
    let home = s.dir.join("home");
    for sub in ["data", "run", "empty"] {
        std::fs::create_dir_all(home.join(sub)).unwrap();
    }
    for p in [home.clone(), home.join("data"), home.join("run")] {
        std::os::unix::fs::chown(&p, Some(USER), Some(USER)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_env = |uid: u32, data: &Path| {
        format!(
            "setpriv --reuid {uid} --regid {uid} --clear-groups -- env -i PATH=/usr/bin:/bin \
             HOME={h} XDG_DATA_HOME={d} XDG_RUNTIME_DIR={r} {KMSFS}",
            h = home.display(),
            d = data.display(),
            r = home.join("run").display(),
        )
    };
    let user = user_env(USER, &home.join("data"));
    let stranger = user_env(NO_STORE, &home.join("empty"));
    // The user's own store, created as that user.
    let init = Command::new("sh")
        .args(["-c", &format!("{user} init --output text")])
        .output()
        .unwrap();
    ok(&init);
    let own = home.join("data/kmsfs");
    assert!(own.join("store.json").exists());

    // Root's service on the system socket, in a private mount namespace (a tmpfs over
    // /run) so that the machine's real /run/kmsfs is never touched.
    let out = |name: &str| s.dir.join(name).display().to_string();
    let script = format!(
        "set -e
         mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
         {kmsfs} --store {store} --principals {principals} serve 2>/dev/null &
         pid=$!
         trap 'kill $pid' EXIT
         i=0; until [ -S /run/kmsfs/kms.sock ]; do i=$((i+1)); [ $i -lt 2000 ]; sleep 0.01; done
         {user} whoami > {own_out}
         {user} --socket /run/kmsfs/kms.sock whoami > {sys_out}
         {stranger} whoami > {none_out}",
        kmsfs = KMSFS,
        store = s.store().display(),
        principals = s.principals().display(),
        own_out = out("own.json"),
        sys_out = out("system.json"),
        none_out = out("nostore.json"),
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    ok(&o);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(s.dir.join(name)).unwrap()).unwrap()
    };
    // Without --socket: the user's own store, where the user is the account root.
    let mine = read("own.json");
    assert_eq!(
        mine["AnsweredBy"]["Store"],
        own.display().to_string(),
        "{mine}"
    );
    assert_eq!(mine["AnsweredBy"]["Socket"], serde_json::Value::Null);
    assert_eq!(mine["Principal"]["Type"], "Root", "{mine}");
    // --socket says otherwise: root's service, where the user is anonymous.
    let system = read("system.json");
    assert_eq!(system["AnsweredBy"]["Socket"], "/run/kmsfs/kms.sock");
    assert_eq!(
        system["AnsweredBy"]["Store"],
        s.store().display().to_string()
    );
    assert_eq!(system["Principal"]["Type"], "Anonymous", "{system}");
    // A user without a store of their own still reaches the system service.
    let none = read("nostore.json");
    assert_eq!(
        none["AnsweredBy"]["Socket"], "/run/kmsfs/kms.sock",
        "{none}"
    );
}

#[test]
fn supplementary_groups_map_to_roles_for_fuse_callers_and_socket_peers() {
    let s = Served::init("groups");
    let backing = s.dir.join("backing");
    let mnt = s.dir.join("mnt");
    // The default key lets every principal of the account use it through kmsfs; an
    // anonymous uid may not. So the role decides.
    ok(&s.root(&["init", &backing.display().to_string()]));
    let _guard = mount(&s, &backing, &mnt);
    let with_group = |script: &str| {
        as_user_in(STRANGER, STRANGER, &[62050, OPERATORS], "sh")
            .args(["-c", script])
            .output()
            .unwrap()
    };
    let file = mnt.join("ops.txt");
    let o = with_group(&format!("echo from-ops > {0} && cat {0}", file.display()));
    assert_eq!(ok(&o), "from-ops");
    let o = sh_as(STRANGER, &format!("cat {}", file.display()));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    // The same caller through the socket (the mount serves it).
    let globals = s.globals().join(" ");
    let me = with_group(&format!("{KMSFS} {globals} whoami"));
    let me: serde_json::Value = serde_json::from_str(&ok(&me)).unwrap();
    assert_eq!(
        me["Principal"]["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:role/operators"),
        "{me}"
    );
    // A uid mapping still wins over a supplementary group.
    let alice = as_user_in(ALICE, ALICE, &[OPERATORS], KMSFS)
        .args(s.globals())
        .arg("whoami")
        .output()
        .unwrap();
    let alice: serde_json::Value = serde_json::from_str(&ok(&alice)).unwrap();
    assert_eq!(alice["Principal"]["Arn"], arn("alice"));
}

#[test]
fn key_rule_set_refuses_a_missing_key_and_one_the_caller_cannot_use() {
    let mut s = Served::start("key-rule");
    let key = s.create_key();
    s.kill9();
    let backing = s.dir.join("backing");
    let mnt = s.dir.join("mnt");
    ok(&s.root(&["init", &backing.display().to_string(), "--key", &key]));
    let _guard = mount(&s, &backing, &mnt);
    for (uid, name) in [(ALICE, "a"), (BOB, "b")] {
        ok(&sh_as(uid, &format!("mkdir {}", mnt.join(name).display())));
    }
    let a = mnt.join("a").display().to_string();
    let b = mnt.join("b").display().to_string();
    let shown = |uid: u32, dir: &str| ok(&s.as_uid(uid, &["key-rule", "show", dir]));

    // A key that does not exist.
    let o = s.as_uid(ALICE, &["key-rule", "set", &a, "--key", "alias/missing"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("alias/missing does not exist") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(shown(ALICE, &a).contains("\"KeyId\": null"));
    // Bob administers the key but may not use it: refused, and told why.
    let o = s.as_uid(BOB, &["key-rule", "set", &b, "--key", &key]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&arn("bob")) && err.contains("kms:GenerateDataKey"),
        "{err}"
    );
    assert!(shown(BOB, &b).contains("\"KeyId\": null"));
    // --force sets it unchecked (a rule meant for the directory's other users).
    ok(&s.as_uid(BOB, &["key-rule", "set", &b, "--key", &key, "--force"]));
    assert!(shown(BOB, &b).contains(&key));
    // Alice may use the key: accepted, and her new files get it.
    ok(&s.as_uid(ALICE, &["key-rule", "set", &a, "--key", &key]));
    assert!(shown(ALICE, &a).contains(&key));
    ok(&sh_as(
        ALICE,
        &format!("echo x > {a}/new.txt && cat {a}/new.txt"),
    ));
    // A disabled key is refused with its state.
    ok(&s.as_uid(BOB, &["kms", "disable-key", "--key-id", &key]));
    let o = s.as_uid(ALICE, &["key-rule", "set", &a, "--key", &key]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is Disabled"), "{}", stderr(&o));
}
