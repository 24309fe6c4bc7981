//! Remote keys through a real mount: a volume whose keys live in a central
//! `kmsfs serve --listen` (its own store, its own key policy), a client store whose
//! principals map two uids to AWS profiles holding the central's access keys of a key
//! user (alice) and a key administrator (bob), and `kmsfs mount` with the key router.
//! Every open is decided by the central for the calling uid's own identity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::remote::{central_key, client_files, ok, ClientPrincipal, WireServer, KMSFS};
use support::{assert_failed_with, q, sh_as};

/// Acts as the central's key user (profile "alice").
const USER: u32 = 63101;
/// Acts as the central's key administrator (profile "bob"): may not use the key.
const ADMIN: u32 = 63102;
/// In no principal of the client: no profile at all.
const UNMAPPED: u32 = 63109;
/// The client store's account, unlike the central's: its keys are not the central's.
const CLIENT_ACCOUNT: &str = "999988887777";

/// A client machine: its own store and principals, the AWS profiles, a volume, and a
/// mount (unmounted and removed on drop, also when the test fails).
struct Client {
    dir: PathBuf,
    backing: PathBuf,
    mnt: PathBuf,
}

impl Client {
    /// A client whose volume's default key is `default_key` and whose volume file names
    /// the central as its `kms_endpoint`.
    fn new(name: &str, central: &WireServer, default_key: &str) -> Client {
        let dir =
            std::env::temp_dir().join(format!("kmsfs-remote-mount-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (user, admin) = (
            format!("arn:aws:iam::{CLIENT_ACCOUNT}:user/user"),
            format!("arn:aws:iam::{CLIENT_ACCOUNT}:user/admin"),
        );
        client_files(
            &dir,
            &dir.join("principals.toml"),
            central,
            &["alice", "bob"],
            CLIENT_ACCOUNT,
            &[
                ClientPrincipal {
                    arn: &user,
                    uid: USER,
                    profile: "alice",
                },
                ClientPrincipal {
                    arn: &admin,
                    uid: ADMIN,
                    profile: "bob",
                },
            ],
        );
        let c = Client {
            backing: dir.join("backing"),
            mnt: dir.join("mnt"),
            dir,
        };
        std::fs::create_dir_all(&c.mnt).unwrap();
        let backing = c.backing.display().to_string();
        ok(&c.kmsfs(&[
            "init",
            &backing,
            "--key",
            default_key,
            "--kms-endpoint",
            &central.endpoint,
        ]));
        c
    }

    fn kmsfs(&self, args: &[&str]) -> Output {
        Command::new(KMSFS)
            .args([
                "--store",
                &self.dir.join("store").display().to_string(),
                "--principals",
                &self.dir.join("principals.toml").display().to_string(),
                "--socket",
                &self.dir.join("kms.sock").display().to_string(),
            ])
            .args(args)
            .env_remove("KMSFS_PASSPHRASE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    }

    /// Mounts with `allow_other` and `options`; checks that the mount is live and opens
    /// its root to every uid.
    fn mount(&self, options: &str) {
        ok(&self.kmsfs(&[
            "mount",
            &self.backing.display().to_string(),
            &self.mnt.display().to_string(),
            "--no-socket",
            "-o",
            &format!("allow_other,{options}"),
        ]));
        assert!(
            kmsfs::fs::mount::is_mounted(&self.mnt),
            "the mount is not live"
        );
        std::fs::set_permissions(
            &self.mnt,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
    }

    fn path(&self, rel: &str) -> String {
        q(&self.mnt.join(rel))
    }

    /// The client's own audit records of remote decisions.
    fn remote_audit(&self) -> Vec<Value> {
        audit_lines(&self.dir.join("store/audit.log"))
            .into_iter()
            .filter(|v| v["responseElements"]["kmsfsRemoteKms"].is_object())
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if kmsfs::fs::mount::is_mounted(&self.mnt) {
            let _ = self.kmsfs(&["umount", "--lazy", &self.mnt.display().to_string()]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Decrypt calls the central recorded (its own audit log).
fn central_decrypts(central: &WireServer) -> usize {
    audit_lines(&central.store().join("audit.log"))
        .iter()
        .filter(|v| v["eventName"] == "Decrypt")
        .count()
}

/// Runs `script` as `uid` on another thread; a watchdog (not a timed assertion) turns
/// a hung file operation into a failure instead of a hung test.
fn sh_bounded(uid: u32, script: &str) -> Output {
    let (tx, rx) = mpsc::channel();
    let owned = script.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(sh_as(uid, &owned));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("`{script}` as uid {uid} hung"))
}

#[test]
fn the_user_reads_and_writes_the_administrator_and_an_unmapped_uid_get_eacces() {
    let mut central = WireServer::start("rm-users");
    let arn = central_key(&central);
    let c = Client::new("users", &central, &arn);
    c.mount("kms_cache_ttl=0,kms_timeout=2");
    let f = c.path("f");

    let out = sh_bounded(USER, &format!("echo hello > {f} && cat {f}"));
    assert_eq!(ok(&out), "hello");
    let backing_header = std::fs::read_dir(&c.backing)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .any(|bytes| bytes.windows(arn.len()).any(|w| w == arn.as_bytes()));
    assert!(backing_header, "no file is wrapped under the remote key");

    assert_failed_with(&sh_bounded(ADMIN, &format!("cat {f}")), libc::EACCES);
    assert_failed_with(
        &sh_bounded(ADMIN, &format!("echo x > {}", c.path("g"))),
        libc::EACCES,
    );
    assert_failed_with(&sh_bounded(UNMAPPED, &format!("cat {f}")), libc::EACCES);

    // Every decision is in the client's audit log, with the profile, the key, the
    // endpoint and (for answers of the central) its request id.
    let audit = c.remote_audit();
    let remote_of = |v: &Value| v["responseElements"]["kmsfsRemoteKms"].clone();
    assert!(audit.iter().any(|v| v["eventName"] == "GenerateDataKey"
        && remote_of(v)["Profile"] == "alice"
        && remote_of(v)["RequestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
        && remote_of(v)["Endpoint"] == central.endpoint.as_str()
        && v["resources"].to_string().contains(&arn)));
    assert!(audit.iter().any(|v| v["eventName"] == "Decrypt"
        && remote_of(v)["Profile"] == "bob"
        && v["errorCode"] == "AccessDeniedException"));
    assert!(audit.iter().any(|v| remote_of(v)["Profile"].is_null()
        && v["errorCode"] == "AccessDeniedException"
        && v["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("aws_profile")));

    // Disabled on the central: EKEYREVOKED on the client (no cache); enabled again: back.
    ok(&central.kmsfs(&["kms", "disable-key", "--key-id", &arn]));
    assert_failed_with(&sh_bounded(USER, &format!("cat {f}")), libc::EKEYREVOKED);
    ok(&central.kmsfs(&["kms", "enable-key", "--key-id", &arn]));
    assert_eq!(ok(&sh_bounded(USER, &format!("cat {f}"))), "hello");

    // The central frozen (it accepts connections, never answers): EIO once the
    // timeout passes, not a hung process (the watchdog in sh_bounded).
    // SAFETY: kill(2) on the central server process this test started.
    assert_eq!(
        unsafe { libc::kill(central.pid() as i32, libc::SIGSTOP) },
        0
    );
    let frozen = sh_bounded(USER, &format!("cat {f}"));
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(central.pid() as i32, libc::SIGCONT) },
        0
    );
    assert_failed_with(&frozen, libc::EIO);

    // The central stopped: EIO within the timeout, and no hung process; it recovers by
    // itself once the central is back on the same port.
    central.stop();
    assert_failed_with(&sh_bounded(USER, &format!("cat {f}")), libc::EIO);
    central.restart();
    assert_eq!(ok(&sh_bounded(USER, &format!("cat {f}"))), "hello");
}

#[test]
fn within_the_ttl_a_second_open_is_served_from_the_cache() {
    let central = WireServer::start("rm-cache");
    let arn = central_key(&central);
    let c = Client::new("cache", &central, &arn);
    c.mount("kms_cache_ttl=3600,kms_timeout=5");
    let f = c.path("f");
    ok(&sh_bounded(USER, &format!("echo cached > {f}")));
    let before = central_decrypts(&central);
    assert_eq!(ok(&sh_bounded(USER, &format!("cat {f}"))), "cached");
    assert_eq!(
        central_decrypts(&central),
        before + 1,
        "the first open asks"
    );
    assert_eq!(ok(&sh_bounded(USER, &format!("cat {f}"))), "cached");
    assert_eq!(
        central_decrypts(&central),
        before + 1,
        "the second open is served from the cache"
    );
    assert!(c
        .remote_audit()
        .iter()
        .any(|v| v["responseElements"]["kmsfsRemoteKms"]["Cached"] == true));
    // The cache is per uid: the administrator is still asked, and refused.
    assert_failed_with(&sh_bounded(ADMIN, &format!("cat {f}")), libc::EACCES);
    assert_eq!(central_decrypts(&central), before + 2);
}

#[test]
fn one_volume_mixes_a_local_default_key_and_a_remote_key_rule() {
    let mut central = WireServer::start("rm-mixed");
    let arn = central_key(&central);
    let c = Client::new("mixed", &central, "alias/kmsfs/default");
    c.mount("kms_cache_ttl=0,kms_timeout=5");
    let remote_dir = c.mnt.join("remote");
    std::fs::create_dir(&remote_dir).unwrap();
    std::fs::set_permissions(
        &remote_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    ok(&c.kmsfs(&[
        "key-rule",
        "set",
        &remote_dir.display().to_string(),
        "--key",
        &arn,
    ]));
    let (local, remote) = (c.path("local.txt"), c.path("remote/r.txt"));
    ok(&sh_bounded(
        USER,
        &format!("echo L > {local} && echo R > {remote}"),
    ));
    assert_eq!(
        ok(&sh_bounded(USER, &format!("cat {local} {remote}"))),
        "L\nR"
    );
    // Only the remote file asked the central.
    let asked: Vec<_> = c
        .remote_audit()
        .iter()
        .map(|v| v["eventName"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(asked, ["GenerateDataKey", "Decrypt"], "{asked:?}");
    // fsck asks as its caller: root has no aws_profile, so the remote file is listed
    // unchecked (not damaged) and the local one checked.
    let out = c.kmsfs(&["fsck", &c.backing.display().to_string(), "--output", "json"]);
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["Damaged"], 0, "{report}");
    assert_eq!(report["ContentNotChecked"], 1, "{report}");
    assert!(
        report.to_string().contains("AccessDeniedException"),
        "{report}"
    );
    // Without the central the local file still opens; the remote one is EIO.
    central.stop();
    assert_eq!(ok(&sh_bounded(USER, &format!("cat {local}"))), "L");
    assert_failed_with(&sh_bounded(USER, &format!("cat {remote}")), libc::EIO);
}
