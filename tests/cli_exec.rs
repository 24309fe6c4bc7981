//! `kmsfs exec` as a CI job uses it, through the real binary: the command's exit
//! status comes back, the mount is undone whether the command succeeds, fails, cannot
//! be found or is signalled (SIGTERM to kmsfs reaches the command first); and the
//! generated completions and man pages describe the real command line.

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::cli::*;

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// A root store with a volume.
fn volume(name: &str) -> (Served, PathBuf) {
    let s = Served::init(name);
    let backing = s.dir.join("backing");
    ok(&s.root(&["init", backing.to_str().unwrap()]));
    (s, backing)
}

fn exec_cmd(s: &Served, backing: &Path, extra: &[&str], script: &str) -> Command {
    let mut c = Command::new(KMSFS);
    c.args(s.globals())
        .arg("exec")
        .arg(backing)
        .args(extra)
        .args(["--", "sh", "-c", script])
        .env_remove("KMSFS_MOUNTPOINT");
    c
}

fn exec(s: &Served, backing: &Path, extra: &[&str], script: &str) -> Output {
    exec_cmd(s, backing, extra, script).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn exec_returns_the_commands_status_and_always_unmounts() {
    let (s, backing) = volume("exec-status");
    // The command sees the plaintext at $KMSFS_MOUNTPOINT; its status is kmsfs's.
    let o = exec(
        &s,
        &backing,
        &[],
        r#"echo "$KMSFS_MOUNTPOINT"; echo data > "$KMSFS_MOUNTPOINT/f"; cat "$KMSFS_MOUNTPOINT/f"; exit 3"#,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = stdout(&o);
    let mut lines = out.lines();
    let mnt = PathBuf::from(lines.next().unwrap());
    assert_eq!(lines.next(), Some("data"), "{out}");
    // A private mount point: gone with the mount.
    assert!(!is_mounted(&mnt));
    assert!(!mnt.exists(), "{} left behind", mnt.display());
    // The write went to the volume, encrypted.
    let o = exec(&s, &backing, &[], r#"cat "$KMSFS_MOUNTPOINT/f""#);
    assert_eq!(ok(&o), "data");

    // A failing command, and one that does not exist: their status, and no mount left.
    let o = exec(&s, &backing, &[], r#"echo "$KMSFS_MOUNTPOINT"; false"#);
    assert_eq!(o.status.code(), Some(1));
    assert!(!is_mounted(Path::new(stdout(&o).trim())));
    let child = Command::new(KMSFS)
        .args(s.globals())
        .arg("exec")
        .arg(&backing)
        .args(["--", "/nonexistent/kmsfs-test-command"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kmsfs-test-command"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("kmsfs-exec-{pid}-")), "{mounts}");

    // --mountpoint DIR: mounted there, and DIR stays (empty) afterwards.
    let dir = s.dir.join("ci-mnt");
    std::fs::create_dir(&dir).unwrap();
    let _guard = Mounted(dir.clone());
    let o = exec(
        &s,
        &backing,
        &["--mountpoint", dir.to_str().unwrap()],
        &format!(
            r#"test "$KMSFS_MOUNTPOINT" = "{}" || exit 9; ls "$KMSFS_MOUNTPOINT""#,
            dir.display()
        ),
    );
    assert_eq!(ok(&o), "f");
    assert!(!is_mounted(&dir));
    assert!(dir.is_dir());
}

#[test]
fn exec_forwards_sigterm_to_the_command_and_unmounts() {
    let (s, backing) = volume("exec-signal");
    let marker = s.dir.join("got-term");
    // The command traps TERM, records it outside the mount, and exits 7.
    let script = format!(
        r#"trap 'echo TERM > {m}; exit 7' TERM; echo "$KMSFS_MOUNTPOINT"; while :; do sleep 0.05; done"#,
        m = marker.display()
    );
    for (script, expected) in [
        (script.as_str(), 7),
        // Killed by the forwarded signal: 128 + 15, as shells report it.
        (
            r#"echo "$KMSFS_MOUNTPOINT"; exec sleep 600"#,
            128 + libc::SIGTERM,
        ),
    ] {
        let child = exec_cmd(&s, &backing, &[], script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mnt = PathBuf::from(line.trim());
        assert!(is_mounted(&mnt), "not mounted while the command runs");
        let _guard = Mounted(mnt.clone());
        let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "{script}");
        assert!(!is_mounted(&mnt), "still mounted after the signal");
        assert!(!mnt.exists());
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "TERM");
}

#[test]
fn completions_and_man_pages_cover_the_commands() {
    let run = |args: &[&str]| ok(&Command::new(KMSFS).args(args).output().unwrap());
    let bash = run(&["completions", "bash"]);
    for word in [
        "kmsfs",
        "exec",
        "umount",
        "--lazy",
        "--log-file",
        "completions",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(run(&["completions", "zsh"]).starts_with("#compdef kmsfs"));
    assert!(run(&["completions", "fish"]).contains("complete -c kmsfs"));
    let bad = Command::new(KMSFS)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let dir = tempfile::tempdir().unwrap();
    let listed = run(&["man", dir.path().to_str().unwrap()]);
    for page in ["kmsfs.1", "kmsfs-mount.1", "kmsfs-exec.1", "kmsfs-umount.1"] {
        let path = dir.path().join(page);
        assert!(listed.contains(path.to_str().unwrap()), "{listed}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let exec_page = std::fs::read_to_string(dir.path().join("kmsfs-exec.1")).unwrap();
    assert!(exec_page.contains("mountpoint"), "{exec_page}");
    // The hidden generator is not itself documented.
    assert!(!dir.path().join("kmsfs-man.1").exists());
}
