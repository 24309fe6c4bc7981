//! The remote-key tests' fixture (`remote_*.rs`, and `cli_rewrap.rs`'s volumes): a
//! central `kmsfs serve --listen` ([`WireServer`]) holds the keys, and a client machine
//! signs as the central's principals through AWS profiles (a shared credentials file
//! with their access keys, a config file, principals with `aws_profile`). Also the
//! helpers every rewrap test reads a volume's backing files with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub use super::cli::{Mounted, Served};
pub use super::wire::{key_policy, ok, WireServer, KMSFS};
pub use super::ACCOUNT;

/// Root creates a key on the central store with `key_policy()` (bob administers, alice
/// uses) plus AWS's default statement for the account (which delegates to identity
/// policies: neither alice's nor bob's gives more); returns its ARN.
pub fn central_key(central: &WireServer) -> String {
    let mut policy: Value = serde_json::from_str(&key_policy()).unwrap();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "Account", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:*", "Resource": "*"
        }));
    let policy = central.file("key-policy.json", policy.to_string().as_bytes());
    let out = ok(&central.kmsfs(&[
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", policy.display()),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["KeyMetadata"]["Arn"].as_str().unwrap().to_string()
}

/// A shared credentials file with one profile per name in `profiles`, each holding the
/// central principal's access key of that name.
pub fn credentials(central: &WireServer, profiles: &[&str]) -> String {
    profiles
        .iter()
        .map(|name| {
            let k = central.key(name);
            format!(
                "[{name}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                k.id, k.secret
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One principal of a client: its ARN, its uid and the `aws_profile` it signs as.
pub struct ClientPrincipal<'a> {
    pub arn: &'a str,
    pub uid: u32,
    pub profile: &'a str,
}

/// Writes a client's AWS files into `dir` (`aws-credentials` with `profiles`, an empty
/// `aws-config`) and its principals file at `principals` (account `account`, naming
/// both files relative to itself).
pub fn client_files(
    dir: &Path,
    principals: &Path,
    central: &WireServer,
    profiles: &[&str],
    account: &str,
    who: &[ClientPrincipal<'_>],
) {
    std::fs::write(dir.join("aws-credentials"), credentials(central, profiles)).unwrap();
    std::fs::write(dir.join("aws-config"), "").unwrap();
    let mut toml = format!(
        "account = \"{account}\"\n\
         aws_config_file = \"aws-config\"\n\
         aws_credentials_file = \"aws-credentials\"\n"
    );
    for p in who {
        toml += &format!(
            "[[principal]]\narn = \"{}\"\nuid = {}\naws_profile = \"{}\"\n",
            p.arn, p.uid, p.profile
        );
    }
    std::fs::write(principals, toml).unwrap();
}

/// Mounts `backing` at `mnt` as root through `s`, with `extra` arguments; nothing is
/// written into a mountpoint that is not live, so this asserts that it is.
pub fn mount_live(s: &Served, backing: &Path, mnt: &Path, extra: &[&str]) -> Mounted {
    let out = s.root(
        &[
            &[
                "mount",
                &backing.display().to_string(),
                &mnt.display().to_string(),
            ][..],
            extra,
        ]
        .concat(),
    );
    let guard = Mounted(mnt.to_path_buf());
    ok(&out);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts.contains(&format!(" {} fuse", mnt.display())),
        "{} is not mounted",
        mnt.display()
    );
    guard
}

/// Unmounts what [`mount_live`] mounted, checking that `kmsfs umount` succeeds.
pub fn umount(mnt: &Path, guard: Mounted) {
    ok(&Command::new(KMSFS).arg("umount").arg(mnt).output().unwrap());
    drop(guard);
}

/// Backing path of every regular file (journal and metadata excluded), sorted.
pub fn backing_files(backing: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    super::walk(backing, &mut all);
    all.retain(|p| {
        !p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kmsfs.")
    });
    all.sort();
    all
}

/// The key ARN a backing file's header names.
pub fn header_key(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let len = usize::from(u16::from_be_bytes([bytes[28], bytes[29]]));
    String::from_utf8(bytes[30..30 + len].to_vec()).unwrap()
}

/// `kmsfs rewrap`'s JSON summary.
pub fn rewrap_summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rewrap printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts that a rewrap succeeded with these counts and no failure.
#[track_caller]
pub fn assert_rewrap_counts(out: &Output, rewrapped: u64, unchanged: u64) {
    let v = rewrap_summary(out);
    assert_eq!(
        (
            v["Rewrapped"].as_u64(),
            v["Unchanged"].as_u64(),
            v["Failed"].as_array().map(Vec::len)
        ),
        (Some(rewrapped), Some(unchanged), Some(0)),
        "summary {v}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// A volume of a [`Served`] client store, mounted (as root) for each step of a rewrap
/// test and unmounted again, so that every read goes through a fresh mount.
pub struct Volume<'a> {
    pub s: &'a Served,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    /// Extra `kmsfs mount` arguments (e.g. `-o kms_cache_ttl=0`).
    pub mount_args: &'a [&'a str],
}

impl<'a> Volume<'a> {
    /// `kmsfs init` of a volume named `name` whose default key is `key`.
    pub fn init(s: &'a Served, name: &str, key: &str, mount_args: &'a [&'a str]) -> Volume<'a> {
        let backing = s.dir.join(format!("{name}-backing"));
        let mnt = s.dir.join(format!("{name}-mnt"));
        std::fs::create_dir(&mnt).unwrap();
        ok(&s.root(&["init", &backing.display().to_string(), "--key", key]));
        Volume {
            s,
            backing,
            mnt,
            mount_args,
        }
    }

    pub fn mount(&self) -> Mounted {
        mount_live(self.s, &self.backing, &self.mnt, self.mount_args)
    }

    pub fn umount(&self, guard: Mounted) {
        umount(&self.mnt, guard);
    }

    /// Writes `files` (plaintext path → content) through a fresh mount.
    pub fn populate(&self, files: &std::collections::BTreeMap<&str, Vec<u8>>) {
        let m = self.mount();
        for (name, bytes) in files {
            let p = self.mnt.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
        self.umount(m);
    }

    /// Reads every file through a fresh mount and compares it.
    pub fn assert_readable(&self, files: &std::collections::BTreeMap<&str, Vec<u8>>) {
        let m = self.mount();
        for (name, bytes) in files {
            let got = std::fs::read(self.mnt.join(name))
                .unwrap_or_else(|e| panic!("reading {name} through a fresh mount: {e}"));
            assert!(got == *bytes, "{name}: content differs after rewrap");
        }
        self.umount(m);
    }

    /// `kmsfs rewrap` of the volume with `extra` arguments.
    pub fn rewrap(&self, extra: &[&str]) -> Output {
        let b = self.backing.display().to_string();
        self.s.root(&[&["rewrap", b.as_str()][..], extra].concat())
    }

    /// `kmsfs rewrap` killed (SIGKILL, by the test hook) at `step`; asserts it was.
    pub fn rewrap_killed_at(&self, step: &str, extra: &[&str]) -> Output {
        use std::os::unix::process::ExitStatusExt;
        let out = Command::new(KMSFS)
            .args(self.s.globals())
            .arg("rewrap")
            .arg(&self.backing)
            .args(extra)
            .env("KMSFS_TEST_CRASH_AT", step)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "not killed at {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Backing path of every regular file (journal and metadata excluded).
    pub fn backing_files(&self) -> Vec<PathBuf> {
        backing_files(&self.backing)
    }
}
