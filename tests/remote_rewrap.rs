//! `kmsfs rewrap` between a local key and a remote one: a central
//! `kmsfs serve --listen` on loopback (its own store, an access key per principal) is the
//! remote KMS; the client's account root signs as the central's key user `alice`
//! (`aws_profile` in principals.toml, static keys in a credentials file beside it).
//! Real mounts read the files after each move; an interrupted move is rerun. Needs root.

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::{ok, Mounted, Served, KMSFS};
use support::wire::{key_policy, WireServer};
use support::ACCOUNT;

/// A key on the central store: alice uses it, bob administers it, and the account's
/// own statement (which delegates to identity policies: neither gives more).
fn central_key(c: &WireServer) -> String {
    let mut policy: Value = serde_json::from_str(&key_policy()).unwrap();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "Account", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:*", "Resource": "*"
        }));
    let policy = c.file("key-policy.json", policy.to_string().as_bytes());
    let out = ok(&c.kmsfs(&[
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", policy.display()),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["KeyMetadata"]["Arn"].as_str().unwrap().to_string()
}

/// The client's principals: the account root (who runs mount and rewrap here) signs
/// remote calls as the central's `alice`.
fn client_principals(s: &Served, c: &WireServer) {
    let alice = c.key("alice");
    std::fs::write(
        s.dir.join("aws-credentials"),
        format!(
            "[alice]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            alice.id, alice.secret
        ),
    )
    .unwrap();
    std::fs::write(s.dir.join("aws-config"), "").unwrap();
    std::fs::write(
        s.principals(),
        format!(
            "account = \"{ACCOUNT}\"\n\
             aws_config_file = \"aws-config\"\n\
             aws_credentials_file = \"aws-credentials\"\n\
             [[principal]]\narn = \"arn:aws:iam::{ACCOUNT}:root\"\nuid = 0\n\
             aws_profile = \"alice\"\n"
        ),
    )
    .unwrap();
}

fn header_key(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let len = usize::from(u16::from_be_bytes([bytes[28], bytes[29]]));
    String::from_utf8(bytes[30..30 + len].to_vec()).unwrap()
}

fn backing_files(backing: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    support::walk(backing, &mut all);
    all.retain(|p| {
        !p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kmsfs.")
    });
    all.sort();
    all
}

#[track_caller]
fn counts(out: &Output, rewrapped: u64, unchanged: u64) {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        (
            v["Rewrapped"].as_u64(),
            v["Unchanged"].as_u64(),
            v["Failed"].as_array().map(Vec::len)
        ),
        (Some(rewrapped), Some(unchanged), Some(0)),
        "{v} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

struct Client<'a> {
    s: &'a Served,
    backing: PathBuf,
    mnt: PathBuf,
}

impl Client<'_> {
    fn mount(&self) -> Mounted {
        let out = self.s.root(&[
            "mount",
            &self.backing.display().to_string(),
            &self.mnt.display().to_string(),
            "-o",
            "kms_cache_ttl=0,kms_timeout=5",
        ]);
        let guard = Mounted(self.mnt.clone());
        ok(&out);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            mounts.contains(&format!(" {} fuse", self.mnt.display())),
            "not mounted"
        );
        guard
    }

    fn umount(&self, guard: Mounted) {
        ok(&Command::new(KMSFS)
            .arg("umount")
            .arg(&self.mnt)
            .output()
            .unwrap());
        drop(guard);
    }

    fn assert_readable(&self, files: &BTreeMap<&str, Vec<u8>>) {
        let m = self.mount();
        for (name, bytes) in files {
            let got = std::fs::read(self.mnt.join(name))
                .unwrap_or_else(|e| panic!("reading {name} through a fresh mount: {e}"));
            assert!(got == *bytes, "{name}: content differs");
        }
        self.umount(m);
    }

    fn rewrap(&self, extra: &[&str], crash_at: Option<&str>) -> Output {
        let mut cmd = Command::new(KMSFS);
        cmd.args(self.s.globals())
            .arg("rewrap")
            .arg(&self.backing)
            .args(extra);
        if let Some(step) = crash_at {
            cmd.env("KMSFS_TEST_CRASH_AT", step);
        }
        cmd.output().unwrap()
    }
}

#[test]
fn a_local_key_volume_moves_to_a_central_kms_and_back() {
    let central = WireServer::start("rewrap-central");
    let remote = central_key(&central);
    let s = Served::init("rewrap-client");
    client_principals(&s, &central);
    let local = ok(&s.root(&[
        "kms",
        "create-key",
        "--query",
        "KeyMetadata.Arn",
        "--output",
        "text",
    ]));
    let c = Client {
        s: &s,
        backing: s.dir.join("backing"),
        mnt: s.dir.join("mnt"),
    };
    std::fs::create_dir(&c.mnt).unwrap();
    ok(&s.root(&["init", &c.backing.display().to_string(), "--key", &local]));
    let mut rng = support::Rng(0x00ce_47a1);
    let files = BTreeMap::from([
        ("a.txt", b"to the central and back".to_vec()),
        ("d/big", rng.bytes(2 * 4096 + 99)),
        ("d/e/empty", Vec::new()),
    ]);
    let m = c.mount();
    for (name, bytes) in &files {
        let p = c.mnt.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    c.umount(m);
    let paths = backing_files(&c.backing);
    let content: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap()[1024..].to_vec())
        .collect();

    // Local → remote: every header now names the central's key and holds its blob.
    let n = files.len() as u64;
    counts(
        &c.rewrap(
            &["--to-key", &remote, "--kms-endpoint", &central.endpoint],
            None,
        ),
        n,
        0,
    );
    for p in &paths {
        assert_eq!(header_key(p), remote, "{}", p.display());
    }
    let volume = std::fs::read_to_string(c.backing.join("kmsfs.volume")).unwrap();
    assert!(
        volume.contains(&format!("default_key = \"{remote}\"")),
        "{volume}"
    );
    assert!(volume.contains(&central.endpoint), "{volume}");
    c.assert_readable(&files);
    // A central kmsfs's blobs name their material version, as local ones do: nothing to
    // do until the central rotates the key (AWS's blobs are opaque: always re-wrapped).
    counts(&c.rewrap(&[], None), 0, n);
    ok(&central.kmsfs(&["kms", "rotate-key-on-demand", "--key-id", &remote]));
    counts(&c.rewrap(&[], None), n, 0);
    c.assert_readable(&files);

    // Remote → local, killed once with one header written, then rerun.
    let out = c.rewrap(&["--to-key", &local], Some("rewrap-header-written"));
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.backing.join("kmsfs.rewrap").exists());
    counts(&c.rewrap(&["--to-key", &local], None), n - 1, 1);
    assert!(!c.backing.join("kmsfs.rewrap").exists());
    for (p, bytes) in paths.iter().zip(&content) {
        assert_eq!(header_key(p), local, "{}", p.display());
        assert!(
            std::fs::read(p).unwrap()[1024..] == bytes[..],
            "content changed"
        );
    }
    c.assert_readable(&files);
    let fsck = s.root(&["fsck", &c.backing.display().to_string()]);
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}
