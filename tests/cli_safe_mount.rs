//! Mounting as a person does it, through the real binary: a desktop user without root
//! mounting through the setuid fusermount3 with a store in $XDG_DATA_HOME (and told
//! why not where /dev/fuse is closed to users); the mount point rules (missing, non-empty, `-o nonempty`); a second
//! mount of one backing directory refused and the first named; a dead mount left by
//! kill -9 cleaned up by the next `kmsfs mount`; `kmsfs umount` refusing a busy mount
//! unless `--lazy`, and returning only once the mount's key service has stopped; and a
//! daemonized mount's `--log-file` holding its warnings.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::cli::*;

/// The mount at `path` as (fstype, source), from /proc/self/mountinfo.
fn mount_entry(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().rev().find_map(|l| {
        let (head, tail) = l.split_once(" - ")?;
        if head.split(' ').nth(4)? != want {
            return None;
        }
        let mut t = tail.split(' ');
        Some((t.next()?.to_string(), t.next()?.to_string()))
    })
}

fn is_mounted(path: &Path) -> bool {
    mount_entry(path).is_some()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A root store with a volume; returns (store fixture, backing, an empty mount point).
fn volume(name: &str) -> (Served, PathBuf, PathBuf) {
    let s = Served::init(name);
    let backing = s.dir.join("backing");
    ok(&s.root(&["init", backing.to_str().unwrap()]));
    let mnt = s.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    (s, backing, mnt)
}

fn mount(s: &Served, extra: &[&str], backing: &Path, mnt: &Path) -> Output {
    let mut args: Vec<&str> = vec!["mount"];
    args.extend_from_slice(extra);
    args.push(backing.to_str().unwrap());
    args.push(mnt.to_str().unwrap());
    s.root(&args)
}

fn umount(args: &[&str]) -> Output {
    Command::new(KMSFS)
        .arg("umount")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn mount_names_a_missing_mount_point_and_refuses_a_non_empty_one_unless_nonempty() {
    let (s, backing, mnt) = volume("mp");
    let missing = s.dir.join("not-there");
    let o = mount(&s, &[], &backing, &missing);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains("mkdir"), "{err}");

    std::fs::write(mnt.join("plain.txt"), b"written before the mount").unwrap();
    let o = mount(&s, &[], &backing, &mnt);
    assert!(!o.status.success(), "mounted over a non-empty directory");
    let err = stderr(&o);
    assert!(
        err.contains(mnt.to_str().unwrap()) && err.contains("not empty"),
        "{err}"
    );
    assert!(err.contains("-o nonempty"), "{err}");
    assert!(!is_mounted(&mnt));

    let guard = Mounted(mnt.clone());
    ok(&mount(&s, &["-o", "nonempty"], &backing, &mnt));
    assert!(is_mounted(&mnt), "not mounted");
    assert!(
        !mnt.join("plain.txt").exists(),
        "the old file shows through"
    );
    std::fs::write(mnt.join("secret.txt"), b"encrypted").unwrap();
    ok(&umount(&[mnt.to_str().unwrap()]));
    drop(guard);
    assert!(mnt.join("plain.txt").exists());
    assert!(!mnt.join("secret.txt").exists());
}

#[test]
fn a_second_mount_of_one_backing_directory_is_refused_naming_the_first() {
    let (s, backing, first) = volume("twice");
    let second = s.dir.join("mnt2");
    std::fs::create_dir(&second).unwrap();
    let g1 = Mounted(first.clone());
    ok(&mount(&s, &[], &backing, &first));
    let o = mount(&s, &[], &backing, &second);
    let g2 = Mounted(second.clone());
    assert!(!o.status.success(), "mounted the same backing twice");
    assert!(!is_mounted(&second));
    let err = stderr(&o);
    assert!(err.contains("already mounted"), "{err}");
    // The first mount is named: its process, whose command line holds its mount point.
    assert!(err.contains(first.to_str().unwrap()), "{err}");
    assert!(err.contains("process "), "{err}");
    // Once the first is unmounted, the backing directory may be mounted elsewhere.
    ok(&umount(&[first.to_str().unwrap()]));
    ok(&mount(&s, &[], &backing, &second));
    std::fs::write(second.join("f"), b"x").unwrap();
    ok(&umount(&[second.to_str().unwrap()]));
    drop((g1, g2));
}

#[test]
fn mount_cleans_up_the_dead_mount_a_killed_kmsfs_left() {
    let (s, backing, mnt) = volume("stale");
    let _guard = Mounted(mnt.clone());
    let mut globals = s.globals();
    globals.extend(["mount".into(), "--foreground".into()]);
    let child = Command::new(KMSFS)
        .args(&globals)
        .arg(&backing)
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(&mnt) {
        assert!(child.0.try_wait().unwrap().is_none(), "mount exited");
        assert!(Instant::now() < deadline, "mount did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(mnt.join("before-crash"), b"kept").unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let dead = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");

    let o = mount(&s, &[], &backing, &mnt);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("died"), "{}", stderr(&o));
    assert_eq!(std::fs::read(mnt.join("before-crash")).unwrap(), b"kept");
    ok(&umount(&[mnt.to_str().unwrap()]));
    assert!(!is_mounted(&mnt));
}

#[test]
fn umount_refuses_a_busy_mount_unless_lazy() {
    let (s, backing, mnt) = volume("busy");
    let _guard = Mounted(mnt.clone());
    ok(&mount(&s, &[], &backing, &mnt));
    let mut open = std::fs::File::create(mnt.join("open.txt")).unwrap();
    let o = umount(&[mnt.to_str().unwrap()]);
    assert!(!o.status.success(), "unmounted a busy mount");
    let err = stderr(&o);
    assert!(err.contains("busy") && err.contains("--lazy"), "{err}");
    assert!(is_mounted(&mnt), "a refused umount detached the mount");

    ok(&umount(&["--lazy", mnt.to_str().unwrap()]));
    assert!(!is_mounted(&mnt));
    // The open file keeps working after a lazy unmount.
    std::io::Write::write_all(&mut open, b"still writable").unwrap();
    open.sync_all().unwrap();
}

#[test]
fn umount_returns_only_once_the_mount_process_no_longer_serves_its_socket() {
    // The kernel detaches at once; the mount process notices later. A script's next
    // `kmsfs kms ...` must not reach a key service that is on its way out.
    let (s, backing, mnt) = volume("gone");
    let _guard = Mounted(mnt.clone());
    for _ in 0..3 {
        ok(&mount(&s, &[], &backing, &mnt));
        assert!(
            std::os::unix::net::UnixStream::connect(s.socket()).is_ok(),
            "the mount serves no socket"
        );
        ok(&umount(&[mnt.to_str().unwrap()]));
        assert!(!is_mounted(&mnt));
        assert!(
            std::os::unix::net::UnixStream::connect(s.socket()).is_err(),
            "the unmounted volume's key service still answers after `kmsfs umount` returned"
        );
    }
}

#[test]
fn a_daemonized_mount_logs_warnings_to_its_log_file_naming_the_mount_point() {
    let (s, backing, mnt) = volume("logs");
    let log = s.dir.join("kmsfs.log");
    let _guard = Mounted(mnt.clone());
    ok(&mount(&s, &[], &backing, &mnt));
    std::fs::write(mnt.join("note.txt"), b"soon damaged").unwrap();
    ok(&umount(&[mnt.to_str().unwrap()]));
    // One flipped byte in the only data file's last block.
    let file = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_str().unwrap().contains('.'))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();

    ok(&mount(
        &s,
        &["--log-file", log.to_str().unwrap()],
        &backing,
        &mnt,
    ));
    let read = std::fs::read(mnt.join("note.txt")).unwrap_err();
    assert_eq!(read.raw_os_error(), Some(libc::EIO), "{read}");
    ok(&umount(&[mnt.to_str().unwrap()]));
    let text = std::fs::read_to_string(&log).unwrap();
    let context = format!("mount {}", mnt.display());
    assert!(
        text.lines()
            .any(|l| l.contains(&context) && l.contains("INFO") && l.contains("mounted")),
        "{text}"
    );
    // The EIO the reader got is explained in the log, with the mount point named.
    assert!(
        text.lines()
            .any(|l| l.contains(&context) && l.contains("WARN") && l.contains("on-disk data")),
        "{text}"
    );
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Sets /dev/fuse's mode and restores the mode it had. Root's own mounts, and other
/// tests', are unaffected by the mode (root opens the device whatever it is).
struct DevFuseMode(u32);

impl DevFuseMode {
    fn set(mode: u32) -> Self {
        let old = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(mode)).unwrap();
        DevFuseMode(old)
    }
}

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.0));
    }
}

const DESKTOP: u32 = 62510;

/// A desktop user has an account: fusermount3 records the user's name with the mount.
/// Created for the test (if absent) and removed afterwards.
struct Account(bool);

impl Account {
    fn ensure(uid: u32) -> Account {
        let known = Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .unwrap();
        if known.status.success() {
            return Account(false);
        }
        let made = Command::new("useradd")
            .args([
                "-u",
                &uid.to_string(),
                "-M",
                "-N",
                "-s",
                "/usr/sbin/nologin",
            ])
            .arg(format!("kmsfs-desktop-{uid}"))
            .output()
            .unwrap();
        assert!(made.status.success(), "useradd: {}", stderr(&made));
        Account(true)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if self.0 {
            // -f: the user's mount process may still be on its way out.
            let _ = Command::new("userdel")
                .arg("-f")
                .arg(format!("kmsfs-desktop-{DESKTOP}"))
                .output();
        }
    }
}

/// `program args` as the desktop user, with a desktop session's environment.
fn as_desktop(home: &Path, program: &str, args: &[&str]) -> Output {
    as_user(DESKTOP, DESKTOP, program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .current_dir(home)
        .output()
        .unwrap()
}

#[test]
fn a_desktop_user_without_root_mounts_through_fusermount3_with_a_store_in_xdg_data_home() {
    let dir = std::env::temp_dir().join(format!("kmsfs-desktop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(dir.clone());
    let _account = Account::ensure(DESKTOP);
    let home = dir.join("home");
    for d in [home.clone(), home.join("run")] {
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(DESKTOP), Some(DESKTOP)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let backing = home.join("secret.enc");
    let mnt = home.join("secret");
    let init = as_desktop(&home, KMSFS, &["init", backing.to_str().unwrap()]);
    let init: serde_json::Value = serde_json::from_str(&ok(&init)).unwrap();
    let store = home.join(".local/share/kmsfs");
    assert_eq!(init["Store"], store.to_str().unwrap(), "{init}");
    assert!(store.join("root.key").exists());

    ok(&as_desktop(&home, "mkdir", &[mnt.to_str().unwrap()]));
    let _guard = Mounted(mnt.clone());
    let mount = || {
        as_desktop(
            &home,
            KMSFS,
            &["mount", backing.to_str().unwrap(), mnt.to_str().unwrap()],
        )
    };
    {
        // Where /dev/fuse is closed to users (0600), nothing the user runs can mount
        // (fusermount3 opens the device as the calling user): the refusal says why
        // and what fixes it, instead of a bare "Permission denied".
        let _dev = DevFuseMode::set(0o600);
        let o = as_desktop(&home, "sh", &["-c", "exec 3<>/dev/fuse"]);
        assert!(!o.status.success(), "the desktop user opened /dev/fuse");
        let o = mount();
        assert!(!o.status.success(), "mounted without access to /dev/fuse");
        let err = stderr(&o);
        assert!(err.contains("/dev/fuse") && err.contains("0666"), "{err}");
        assert!(!is_mounted(&mnt));
    }
    // A desktop's /dev/fuse (0666): the user may open it, mount(2) refuses them, and
    // the mount goes through the setuid fusermount3.
    let _dev = DevFuseMode::set(0o666);
    ok(&mount());
    // Mounted by fusermount3 (the setuid helper names the type fuse.<subtype>).
    let (fstype, source) = mount_entry(&mnt).expect("mounted");
    assert_eq!((fstype.as_str(), source.as_str()), ("fuse.kmsfs", "kmsfs"));
    let note = mnt.join("note.txt");
    let rw = as_desktop(
        &home,
        "sh",
        &[
            "-c",
            &format!("echo hello > {0} && cat {0}", note.display()),
        ],
    );
    assert_eq!(ok(&rw), "hello");
    ok(&as_desktop(
        &home,
        KMSFS,
        &["umount", mnt.to_str().unwrap()],
    ));
    assert!(!is_mounted(&mnt));
    let names: Vec<String> = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}"); // kmsfs.volume, kmsfs.dir, the file
    assert!(!names.iter().any(|n| n.contains("note")), "{names:?}");
}
