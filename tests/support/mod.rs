//! The one support module of the integration tests. A test file declares `mod support;`
//! and uses the fixture of the layer it drives, named like the test files themselves:
//!
//! - [`fs`] (`fs_*.rs`): a `DataKeys` test double and a FUSE mount of a fresh volume,
//!   without a key service;
//! - [`kms`] (`kms_*.rs`): a temp store and a `Service` called directly;
//! - [`e2e`] (`e2e_*.rs`): a real key service in this process behind a real mount;
//! - [`ext4`]: a journaled ext4 on a loop device under a volume, for a full disk or a power
//!   loss (re-exported by [`fs`]);
//! - [`cli`] (`cli_*.rs`): the real binary, `kmsfs serve` as a child process;
//! - [`wire`] (`wire_*.rs`): `kmsfs serve --listen` and the real AWS clients (aws-cli,
//!   boto3) with access keys;
//! - [`remote`] (`remote_*.rs`): a central `kmsfs serve --listen` and a client signing
//!   through AWS profiles, and the rewrap tests' backing-file helpers.
//!
//! What every fixture shares lives here: the one way a test runs a command as another
//! uid ([`as_user`]), assertions on command output, and small file helpers. Each
//! submodule re-exports what its tests use, so `use support::fs::*;` is enough.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod cli;
pub mod e2e;
pub mod ext4;
pub mod fs;
pub mod kms;
pub mod remote;
pub mod wire;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The account id of every test principals file.
pub const ACCOUNT: &str = "111122223333";

/// The ARN of IAM user `user` in [`ACCOUNT`].
pub fn arn(user: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{user}")
}

/// `program` run as `uid` with primary group `gid` and no supplementary groups, through
/// setpriv(1): the real credentials the mount (FUSE request uid) and the control socket
/// (SO_PEERCRED) see. It starts in `/`, which every uid may enter, so that the test's
/// own working directory never decides an outcome. Add arguments, then run it.
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<OsStr>) -> Command {
    as_user_in(uid, gid, &[], program)
}

/// [`as_user`] with exactly the supplementary groups `groups` (none if empty).
pub fn as_user_in(uid: u32, gid: u32, groups: &[u32], program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg("--").arg(program).current_dir("/");
    cmd
}

/// Runs `sh -c script` as `uid` (gid = uid, no supplementary groups).
pub fn sh_as(uid: u32, script: &str) -> Output {
    as_user(uid, uid, "sh")
        .args(["-c", script])
        .output()
        .expect("setpriv runs")
}

/// The message `strerror` gives for `errno`, as shells and coreutils print it.
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// Asserts that `out` failed with `errno`'s message.
#[track_caller]
pub fn assert_failed_with(out: &Output, errno: i32) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&strerror(errno)),
        "expected failure with {:?}, got status {:?}, stdout {:?}, stderr {:?}",
        strerror(errno),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
}

/// Asserts success and returns stdout as it is.
#[track_caller]
pub fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {:?}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts success and returns stdout, trimmed (one value printed by `kmsfs`).
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Shell-quotes a path.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Every regular file under `dir`, recursively (symlinks are not followed).
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(&p, out);
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tmpfs mounted at a directory for the life of the value (so that a disk really fills
/// up); unmounted on drop, also when the test fails.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.0.display());
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
