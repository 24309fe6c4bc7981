//! Set-user-ID and set-group-ID are dropped when a caller without CAP_FSETID changes a
//! file's content, as on a native file system: on write, truncate, ftruncate, open with
//! O_TRUNC, fallocate and chown, and kept for root. The mount negotiates
//! FUSE_HANDLE_KILLPRIV_V2 (the kernel then leaves this to the daemon), so each path is
//! run through the mount by a real other uid (setpriv), beside the same steps in a plain
//! directory as the reference. Each case runs again with `-o writeback_cache`, where the
//! kernel itself writes a file that keeps set-id bits through to the daemon (its
//! `file_remove_privs` path) instead of into the page cache. Needs root.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};

use support::fs::*;

const ALICE: u32 = 1001;

/// What each step does, as ALICE (`sh -c`, F is the file), or as root when `root`.
struct Step {
    name: &'static str,
    root: bool,
    script: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        name: "write",
        root: false,
        script: "printf y | dd of=F conv=notrunc status=none",
    },
    Step {
        // GNU truncate opens without O_TRUNC and calls ftruncate(2).
        name: "ftruncate",
        root: false,
        script: "truncate -s 1 F",
    },
    Step {
        name: "truncate",
        root: false,
        script: "perl -e 'truncate($ARGV[0], 2) or die \"truncate: $!\\n\"' F",
    },
    Step {
        name: "open O_TRUNC",
        root: false,
        script: ": > F",
    },
    Step {
        name: "fallocate",
        root: false,
        script: "fallocate -l 8192 F",
    },
    Step {
        name: "chown",
        root: false,
        script: "chown :1001 F",
    },
    Step {
        // A change of owner drops the bits for root too.
        name: "root chown",
        root: true,
        script: "chown 1001:1001 F",
    },
    Step {
        name: "root write",
        root: true,
        script: "printf y | dd of=F conv=notrunc status=none",
    },
    Step {
        name: "root ftruncate",
        root: true,
        script: "truncate -s 1 F",
    },
    Step {
        name: "root open O_TRUNC",
        root: true,
        script: ": > F",
    },
];

/// The modes each step starts from: set-uid, set-gid with group execute, both, and
/// set-gid without group execute (mandatory locking, never dropped on write).
const MODES: &[u32] = &[0o4755, 0o2775, 0o6775, 0o2745];

/// Runs `script` with `sh -c` as `uid`: root runs it directly, with every capability.
fn run_as(uid: u32, script: &str) -> std::process::Output {
    if uid == 0 {
        std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap()
    } else {
        sh_as(uid, script)
    }
}

/// [`MULTI_USER`] with the kernel's writeback cache.
const WRITEBACK: &[&str] = &["allow_other", "default_permissions", "writeback_cache"];

/// A live mount (with `options`) where ALICE may use the default key, a directory `d` in it that anyone
/// may write, and a plain directory of the host that anyone may write: the reference.
fn mount_and_plain(options: &[&str]) -> (Mounted, PathBuf, tempfile::TempDir) {
    let m = Mounted::new(options);
    m.assert_live();
    assert_eq!(
        m.session().writeback_cache(),
        options.contains(&"writeback_cache")
    );
    m.keys.allow(
        ALICE,
        DEFAULT_KEY,
        &[Op::Generate, Op::Decrypt, Op::Encrypt],
    );
    let dir = m.path("d");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o777);
    let plain = tempfile::Builder::new()
        .prefix("kmsfs-killpriv-plain-")
        .tempdir()
        .unwrap();
    set_mode(plain.path(), 0o777);
    (m, dir, plain)
}

/// A file of ALICE's, with `mode` (set after the chown, which drops the bits).
fn alice_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    f.write_all(b"original content").unwrap();
    drop(f);
    chown(&p, Some(ALICE), Some(ALICE)).unwrap();
    set_mode(&p, mode);
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, mode);
    p
}

/// The mode the kernel has cached for `p`: statx asking for the mode only, so a FUSE
/// inode whose size and times went stale (not its mode) is answered from the cache.
fn cached_mode(p: &Path) -> u32 {
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), 0, libc::STATX_MODE, &mut stx) };
    assert_eq!(rc, 0, "statx {}", p.display());
    u32::from(stx.stx_mode) & 0o7777
}

/// Runs every step on a fresh file per start mode in `dir`; returns
/// (step, start mode, cached mode after, mode after) for each.
fn run_steps(dir: &Path) -> Vec<(&'static str, u32, u32, u32)> {
    let mut out = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        for &mode in MODES {
            let p = alice_file(dir, &format!("f{i}-{mode:o}"), mode);
            let script = step.script.replace('F', &q(&p));
            assert_ok(&run_as(if step.root { 0 } else { ALICE }, &script));
            let cached = cached_mode(&p);
            let now = fs::metadata(&p).unwrap().mode() & 0o7777;
            out.push((step.name, mode, cached, now));
        }
    }
    out
}

/// What the kernel's rule gives for `step` from `mode`.
fn expected(step: &Step, mode: u32) -> u32 {
    if step.root && !step.name.ends_with("chown") {
        return mode;
    }
    let mut m = mode & !0o4000;
    if m & 0o2010 == 0o2010 {
        m &= !0o2000;
    }
    m
}

#[test]
fn unprivileged_changes_drop_set_id_bits_and_root_keeps_them() {
    changes_drop_set_id_bits(MULTI_USER);
}

#[test]
fn unprivileged_changes_drop_set_id_bits_and_root_keeps_them_with_writeback_cache() {
    changes_drop_set_id_bits(WRITEBACK);
}

fn changes_drop_set_id_bits(options: &[&str]) {
    let (_m, dir, plain) = mount_and_plain(options);
    let on_mount = run_steps(&dir);
    // The same steps in a plain directory of the host: the reference.
    let reference = run_steps(plain.path());

    for (((step, mode, cached, now), (_, _, _, native)), def) in on_mount
        .iter()
        .zip(&reference)
        .zip(STEPS.iter().flat_map(|s| MODES.iter().map(move |_| s)))
    {
        let want = expected(def, *mode);
        assert_eq!(
            (*now, *native),
            (want, want),
            "{step} from {mode:o}: kmsfs {now:o}, plain directory {native:o}, expected {want:o}"
        );
        // The kernel must not keep the dropped bits in its cache (exec reads them).
        assert_eq!(
            *cached, want,
            "{step} from {mode:o}: cached mode {cached:o}"
        );
    }
}

/// The file capabilities `getcap` shows for `p` (empty when none).
fn caps(p: &Path) -> String {
    let out = std::process::Command::new("getcap")
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "getcap {}", p.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// `security.capability` goes on every change, by root too (the kernel still removes
/// it itself: the daemon stores it as any other extended attribute).
#[test]
fn file_capabilities_go_on_every_change() {
    capabilities_go(MULTI_USER);
}

#[test]
fn file_capabilities_go_on_every_change_with_writeback_cache() {
    capabilities_go(WRITEBACK);
}

fn capabilities_go(options: &[&str]) {
    let (_m, dir, plain) = mount_and_plain(options);
    for d in [dir.as_path(), plain.path()] {
        for (i, step) in STEPS.iter().enumerate() {
            let p = alice_file(d, &format!("c{i}"), 0o755);
            let set = std::process::Command::new("setcap")
                .arg("cap_net_raw+ep")
                .arg(&p)
                .status()
                .unwrap();
            assert!(set.success());
            assert_eq!(caps(&p), "cap_net_raw=ep", "{}", p.display());
            let script = step.script.replace('F', &q(&p));
            assert_ok(&run_as(if step.root { 0 } else { ALICE }, &script));
            assert_eq!(caps(&p), "", "{} after {}", p.display(), step.name);
        }
    }
}

/// Root inside a user namespace holds every capability only there: the kernel (and so
/// the daemon) treats it as a caller without CAP_FSETID.
#[test]
fn root_in_a_user_namespace_drops_the_bits() {
    user_namespace_root_drops(MULTI_USER);
}

#[test]
fn root_in_a_user_namespace_drops_the_bits_with_writeback_cache() {
    user_namespace_root_drops(WRITEBACK);
}

fn user_namespace_root_drops(options: &[&str]) {
    let m = Mounted::new(options);
    m.assert_live();
    let plain = tempfile::Builder::new()
        .prefix("kmsfs-killpriv-plain-")
        .tempdir()
        .unwrap();
    for d in [m.mnt.as_path(), plain.path()] {
        for (i, script) in [
            "printf y | dd of=F conv=notrunc status=none",
            "truncate -s 1 F",
            ": > F",
        ]
        .iter()
        .enumerate()
        {
            let p = d.join(format!("ns{i}"));
            fs::write(&p, b"original content").unwrap();
            set_mode(&p, 0o6775);
            let out = std::process::Command::new("unshare")
                .args(["--user", "--map-root-user", "sh", "-c"])
                .arg(script.replace('F', &q(&p)))
                .output()
                .unwrap();
            assert_ok(&out);
            assert_eq!(
                fs::metadata(&p).unwrap().mode() & 0o7777,
                0o775,
                "{script} in {}",
                d.display()
            );
            assert_eq!(cached_mode(&p), 0o775, "{script} in {}", d.display());
        }
    }
}

/// Creates `name` in `dir` with `mode` through open(O_CREAT) (umask 0), as `uid`, and
/// makes a FIFO beside it with the same mode through mknod; returns both modes as
/// `stat` shows them, with their owners.
fn create_with_mode(dir: &Path, name: &str, mode: u32, uid: u32) -> (String, String) {
    let file = q(&dir.join(name));
    let fifo = q(&dir.join(format!("{name}.fifo")));
    let script = format!(
        "perl -MFcntl -e 'umask 0; sysopen(my $f, $ARGV[0], O_CREAT|O_EXCL|O_WRONLY, {mode:#o}) \
         or die \"create: $!\\n\"' {file} && perl -e 'umask 0; \
         require POSIX; POSIX::mkfifo($ARGV[0], {mode:#o}) or die \"mkfifo: $!\\n\"' {fifo} \
         && stat -c '%a %u' {file} {fifo}"
    );
    let shown = assert_ok(&run_as(uid, &script));
    let mut lines = shown.lines().map(str::to_string);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn a_create_keeps_the_set_id_and_sticky_bits_it_asks_for() {
    // A chown clears set-id bits: the daemon (root) gives a new object its owner and
    // must set the mode after that, or a create of 04755 would come out 0755.
    let (_m, dir, plain) = mount_and_plain(MULTI_USER);
    for uid in [0, ALICE] {
        for mode in [0o4755, 0o2755, 0o6755, 0o1755, 0o4711] {
            let name = format!("c{uid}-{mode:o}");
            let on_mount = create_with_mode(&dir, &name, mode, uid);
            let native = create_with_mode(plain.path(), &name, mode, uid);
            let want = format!("{:o} {uid}", mode);
            assert_eq!(
                on_mount.0, want,
                "create of {mode:o} as {uid} through the mount"
            );
            assert_eq!(
                native.0, want,
                "create of {mode:o} as {uid} in a plain directory"
            );
            assert_eq!(on_mount.1, native.1, "mkfifo of {mode:o} as {uid}");
        }
    }
}
