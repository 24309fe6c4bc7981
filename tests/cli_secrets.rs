//! Secrets hygiene through the real binary: `KMSFS_PASSPHRASE` is gone from the mount
//! daemon's /proc/PID/environ; a passphrase store asks for its passphrase on the
//! terminal without echo (driven through a pty by `script`); `init` tells the person,
//! once and on stderr, that the data is gone without the store, and how to back it up.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::assert_ok;
use support::cli::{Mounted, KMSFS};

const PASSPHRASE: &str = "violet-staircase-4417";

/// A 0755 temp directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("kmsfs-secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }
    fn store(&self) -> PathBuf {
        self.0.join("store")
    }
    /// `kmsfs --store S --socket D/kms.sock ARGS` with a clean passphrase environment.
    fn kmsfs(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KMSFS);
        c.arg("--store")
            .arg(self.store())
            .arg("--socket")
            .arg(self.0.join("kms.sock"))
            .args(args)
            .env_remove("KMSFS_PASSPHRASE")
            .env_remove("KMSFS_PASSPHRASE_FILE");
        c
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn environ(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/environ")).unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The pid of the `kmsfs ... mount` process serving `mnt`.
fn mount_daemon(mnt: &Path) -> u32 {
    let want = mnt.display().to_string();
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.first() == Some(&KMSFS.as_bytes())
                && args.contains(&&b"mount"[..])
                && args.contains(&want.as_bytes())
        })
        .collect();
    assert_eq!(found.len(), 1, "mount daemons for {want}: {found:?}");
    found[0]
}

#[test]
fn the_mount_daemon_environment_no_longer_holds_the_passphrase() {
    let d = Dir::new("environ");
    let backing = d.0.join("backing");
    let mnt = d.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    assert_ok(
        &d.kmsfs(&["init", &backing.display().to_string()])
            .env("KMSFS_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap(),
    );
    let out = d
        .kmsfs(&[
            "mount",
            &backing.display().to_string(),
            &mnt.display().to_string(),
        ])
        .env("KMSFS_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    let _guard = Mounted(mnt.clone());
    assert_ok(&out);
    // The mount works: the passphrase was read before it was scrubbed.
    std::fs::write(mnt.join("a.txt"), b"sealed").unwrap();
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"sealed");
    let pid = mount_daemon(&mnt);
    let env = environ(pid);
    assert!(
        !env.is_empty(),
        "the daemon keeps the rest of its environment"
    );
    assert!(!contains(&env, "KMSFS_PASSPHRASE"), "name still in environ");
    assert!(!contains(&env, PASSPHRASE), "passphrase still in environ");
    // The same check sees a variable in a process that does not scrub it.
    // A process that has just been exec'ed can show an empty environ for a moment (the
    // kernel fills it in as the new image starts), so wait until it shows any variable.
    let mut control = Command::new("sleep")
        .arg("60")
        .env("KMSFS_PASSPHRASE", PASSPHRASE)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut env_seen = environ(control.id());
    while env_seen.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        env_seen = environ(control.id());
    }
    let seen = contains(&env_seen, PASSPHRASE);
    let _ = control.kill();
    let _ = control.wait();
    assert!(seen, "the check cannot see an unscrubbed variable");
}

#[test]
fn a_passphrase_store_asks_on_the_terminal_without_echo() {
    let d = Dir::new("prompt");
    assert_ok(
        &d.kmsfs(&["init"])
            .env("KMSFS_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap(),
    );
    // Without a terminal (CI), no prompt: the error names the non-interactive ways.
    let o = d.kmsfs(&["whoami"]).stdin(Stdio::null()).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("KMSFS_PASSPHRASE"), "{err}");

    // With a terminal: `script` gives the command a pty; the passphrase is typed once
    // the prompt is visible, as a person would.
    let cmd = format!(
        "{KMSFS} --store {} --socket {} whoami --output text",
        d.store().display(),
        d.0.join("kms.sock").display()
    );
    let mut child = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env_remove("KMSFS_PASSPHRASE")
        .env_remove("KMSFS_PASSPHRASE_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !contains(&seen, "Passphrase of the kmsfs store") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASSPHRASE}\n").as_bytes())
        .unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let transcript = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{transcript}");
    assert!(
        transcript.contains("arn:aws:iam::111122223333:root"),
        "{transcript}"
    );
    assert!(!transcript.contains(PASSPHRASE), "echoed: {transcript}");
}

#[test]
fn init_says_once_on_stderr_that_a_lost_store_loses_the_data_and_how_to_back_it_up() {
    let d = Dir::new("advice");
    let first = d.kmsfs(&["init", "--output", "json"]).output().unwrap();
    let out: serde_json::Value = serde_json::from_str(&assert_ok(&first)).unwrap();
    assert_eq!(out["StoreCreated"], true);
    let err = String::from_utf8_lossy(&first.stderr);
    let store = d.store().display().to_string();
    assert!(
        err.contains(&format!("created the store {store}")) && err.contains("gone for good"),
        "{err}"
    );
    assert!(
        err.contains("kmsfs store backup FILE") && err.contains(&format!("{store}/root.key")),
        "{err}"
    );
    // Once: a second init of the same store says nothing more.
    let again = d.kmsfs(&["init", "--output", "json"]).output().unwrap();
    let out: serde_json::Value = serde_json::from_str(&assert_ok(&again)).unwrap();
    assert_eq!(out["StoreCreated"], false);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("gone for good"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
