//! The end-to-end fixture (`e2e_*.rs`): a real key service (in this process, with a
//! clock the test moves), a real FUSE mount of a real volume, and client processes that
//! run as other uids through `setpriv`, exactly as users of a shared machine would.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use kmsfs::fs::mount::{init_volume, mount, MountSession, MountSpec};
use kmsfs::kms::clock::TestClock;
use kmsfs::kms::provider::{Caller, DataKeys};
use kmsfs::kms::{init_store, Service, ServiceConfig};
use serde_json::{json, Value};

pub use super::{arn, sh_as, ACCOUNT};

pub const ALICE: u32 = 61001; // key user
pub const BOB: u32 = 61002; // key administrator (root acts as bob too)
pub const CAROL: u32 = 61003; // nobody in the key policy: gets access only by grant
pub const DROPBOX: u32 = 61004; // write-only drop box
pub const START: i64 = 1_780_000_000;

pub fn caller(uid: u32) -> Caller {
    Caller {
        uid,
        gid: uid,
        pid: std::process::id(),
    }
}

/// The key policy of the tests: alice uses, bob administers, dropbox may only write.
pub fn key_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "e2e",
        "Statement": [
            {"Sid": "KeyAdministrators", "Effect": "Allow",
             "Principal": {"AWS": arn("bob")},
             "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                        "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                        "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                        "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"],
             "Resource": "*"},
            {"Sid": "KeyUsers", "Effect": "Allow",
             "Principal": {"AWS": arn("alice")},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:DescribeKey"],
             "Resource": "*"},
            {"Sid": "DropBox", "Effect": "Allow",
             "Principal": {"AWS": arn("dropbox")},
             "Action": ["kms:GenerateDataKey", "kms:Encrypt"],
             "Resource": "*"}
        ]
    })
    .to_string()
}

pub struct Fixture {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    pub clock: Arc<TestClock>,
    pub service: Arc<Service>,
    pub key_id: String,
    pub key_arn: String,
    session: Option<MountSession>,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("kmsfs-e2e-{name}-{}-{}", std::process::id(), START));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = dir.join("store");
        let backing = dir.join("backing");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
        let principals = store.join("principals.toml");
        std::fs::write(
            &principals,
            format!(
                "account = \"{ACCOUNT}\"\n\
                 [[principal]]\narn = \"{}\"\nuid = {ALICE}\n\
                 [[principal]]\narn = \"{}\"\nuids = [{BOB}, 0]\n\
                 policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":[\"kms:CreateKey\",\"kms:CreateAlias\",\"kms:List*\"],\"Resource\":\"*\"}}]}}'''\n\
                 [[principal]]\narn = \"{}\"\nuid = {CAROL}\n\
                 [[principal]]\narn = \"{}\"\nuid = {DROPBOX}\n",
                arn("alice"),
                arn("bob"),
                arn("carol"),
                arn("dropbox")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&principals, std::fs::Permissions::from_mode(0o600)).unwrap();
        let clock = Arc::new(TestClock::new(START));
        let mut cfg = ServiceConfig::new(&store);
        cfg.clock = clock.clone();
        init_store(&cfg).unwrap();
        let service = Service::open(cfg).unwrap();
        let created = service
            .call(
                &caller(BOB),
                "CreateKey",
                json!({"Description": "e2e", "Policy": key_policy()}),
            )
            .unwrap();
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_string();
        let key_arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
        init_volume(&backing, &key_id, service.as_ref()).unwrap();
        let mut f = Fixture {
            dir,
            store,
            backing,
            mnt,
            clock,
            service,
            key_id,
            key_arn,
            session: None,
        };
        f.mount();
        f
    }

    pub fn mount(&mut self) {
        let spec = MountSpec {
            backing: self.backing.clone(),
            mountpoint: self.mnt.clone(),
            options: vec!["allow_other".into(), "default_permissions".into()],
            threads: 2,
        };
        let keys: Arc<dyn DataKeys> = self.service.clone();
        self.session = Some(mount(&spec, keys).unwrap());
        std::fs::set_permissions(&self.mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    pub fn unmount(&mut self) {
        if let Some(s) = self.session.take() {
            s.umount().unwrap();
        }
    }

    /// A key-service call as `uid`.
    pub fn kms(&self, uid: u32, op: &str, req: Value) -> Result<Value, kmsfs::kms::KmsError> {
        self.service.call(&caller(uid), op, req)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Runs a shell command as `uid` (gid = uid, no supplementary groups).
    pub fn sh(&self, uid: u32, script: &str) -> Outcome {
        let out = sh_as(uid, script);
        Outcome {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every byte of every file under the backing directory.
    pub fn backing_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        super::walk(&self.backing, &mut files);
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        let path = self.store.join("audit.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.unmount();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    pub fn expect_ok(&self) -> &str {
        assert!(self.ok, "expected success, got: {}", self.stderr);
        &self.stdout
    }

    /// Asserts failure with the given errno's message (strerror text as coreutils print).
    #[track_caller]
    pub fn expect_err(&self, errno_text: &str) {
        assert!(
            !self.ok,
            "expected failure ({errno_text}), got success: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains(errno_text),
            "expected \"{errno_text}\", got: {}",
            self.stderr
        );
    }
}

pub const EACCES: &str = "Permission denied";
pub const EKEYREVOKED: &str = "Key has been revoked";
pub const ENOKEY: &str = "Required key not available";
pub const EIO: &str = "Input/output error";
