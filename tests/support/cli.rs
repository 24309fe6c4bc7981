//! The CLI tests' fixture (`cli_*.rs`): a temp store, a principals file, `kmsfs serve`
//! as a child process on a socket in a 0755 directory, and the real binary run as other
//! uids through `setpriv`. Everything started here is killed and removed by Drop guards.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use super::{arn, as_user, as_user_in, ok, sh_as, ACCOUNT};

pub const KMSFS: &str = env!("CARGO_BIN_EXE_kmsfs");
pub const ALICE: u32 = 62001; // key user
pub const BOB: u32 = 62002; // key administrator (identity policy allows kms:CreateKey)
pub const CAROL: u32 = 62003; // in no policy: only grants give her anything
pub const STRANGER: u32 = 62009; // not in the principals file: anonymous
pub const OPERATORS: u32 = 62100; // a gid mapped to a role

pub fn principals_toml() -> String {
    format!(
        "account = \"{ACCOUNT}\"\n\
         [[principal]]\narn = \"{}\"\nuid = {ALICE}\n\
         [[principal]]\narn = \"{}\"\nuid = {BOB}\n\
         policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":[\"kms:CreateKey\",\"kms:List*\"],\"Resource\":\"*\"}}]}}'''\n\
         [[principal]]\narn = \"{}\"\nuid = {CAROL}\n\
         [[principal]]\narn = \"arn:aws:iam::{ACCOUNT}:role/operators\"\ngid = {OPERATORS}\n",
        arn("alice"),
        arn("bob"),
        arn("carol")
    )
}

/// Bob administers, alice uses; nobody else is named.
pub fn key_policy() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": arn("bob")},
             "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                        "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                        "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
                        "kms:TagResource", "kms:UntagResource"],
             "Resource": "*"},
            {"Sid": "Users", "Effect": "Allow", "Principal": {"AWS": arn("alice")},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:DescribeKey"],
             "Resource": "*"}
        ]
    })
    .to_string()
}

/// A temp directory (0755 so other uids reach the socket) holding the store (0700), the
/// principals file and the socket; `kmsfs serve` runs as a child while `child` is set.
pub struct Served {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Served {
    /// A store initialised by `kmsfs init`, not yet served.
    pub fn init(name: &str) -> Served {
        let dir = std::env::temp_dir().join(format!("kmsfs-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("principals.toml"), principals_toml()).unwrap();
        let s = Served { dir, child: None };
        ok(&s.root(&["init"]));
        let mode = std::fs::metadata(s.store()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "store directory mode");
        s
    }

    /// A store served by `kmsfs serve`.
    pub fn start(name: &str) -> Served {
        let mut s = Served::init(name);
        s.serve();
        s
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("kms.sock")
    }
    pub fn principals(&self) -> PathBuf {
        self.dir.join("principals.toml")
    }

    /// Starts `kmsfs serve` in the foreground and waits until the socket answers.
    pub fn serve(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(KMSFS)
            .args(self.globals())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("kmsfs serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "kmsfs serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `kmsfs serve` process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_serving(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn globals(&self) -> Vec<String> {
        vec![
            "--store".into(),
            self.store().display().to_string(),
            "--principals".into(),
            self.principals().display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
        ]
    }

    /// `kmsfs <args>` as root (the store's owner).
    pub fn root(&self, args: &[&str]) -> Output {
        Command::new(KMSFS)
            .args(self.globals())
            .args(args)
            .env_remove("KMSFS_PASSPHRASE")
            .output()
            .unwrap()
    }

    /// `kmsfs <args>` as `uid`, which reaches the service only through the socket.
    pub fn as_uid(&self, uid: u32, args: &[&str]) -> Output {
        as_uid(uid, &self.globals(), args)
    }

    /// Writes a file every uid may read.
    pub fn public_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        p
    }

    /// Bob creates a key with `key_policy()`; returns its key id.
    pub fn create_key(&self) -> String {
        let policy = self.public_file("key-policy.json", key_policy().as_bytes());
        ok(&self.as_uid(
            BOB,
            &[
                "kms",
                "create-key",
                "--policy",
                &format!("file://{}", policy.display()),
                "--query",
                "KeyMetadata.KeyId",
                "--output",
                "text",
            ],
        ))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kmsfs <globals> <args>` as `uid` (gid = uid), without the caller's passphrase.
pub fn as_uid(uid: u32, globals: &[String], args: &[&str]) -> Output {
    as_user(uid, uid, KMSFS)
        .args(globals)
        .args(args)
        .env_remove("KMSFS_PASSPHRASE")
        .output()
        .unwrap()
}

/// `kmsfs <args>` as `uid` with primary group `gid`.
pub fn as_ids(uid: u32, gid: u32, globals: &[String], args: &[&str]) -> Output {
    as_user(uid, gid, KMSFS)
        .args(globals)
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
pub fn json(o: &Output) -> serde_json::Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Asserts aws-cli's service-error shape: exit 254 and its one-line message on stderr.
#[track_caller]
pub fn service_error(o: &Output, exception: &str, operation: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(254), "stderr: {err}");
    let line = format!("An error occurred ({exception}) when calling the {operation} operation: ");
    assert!(err.contains(&line), "expected `{line}`, got: {err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

pub fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

/// A mounted volume, unmounted (lazily if need be) when dropped.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new(KMSFS).arg("umount").arg(&self.0).output();
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.0)
            .output();
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads every line of at least 32 characters (a GrantId) from the files in `dir`.
pub fn grant_ids_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            std::fs::read_to_string(entry.unwrap().path())
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 32)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}
