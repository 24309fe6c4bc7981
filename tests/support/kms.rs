//! The key service tests' fixture (`kms_*.rs`): a temp store with a test clock, a
//! principals file mapping test uids to an admin, two users and an unmapped stranger, and
//! helpers that call the service the way the socket server does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use kmsfs::kms::provider::Caller;
use kmsfs::kms::{
    init_store, ErrorKind, KmsError, RootKeySource, Service, ServiceConfig, TestClock,
};
use serde_json::{json, Value};

pub use super::{arn, ACCOUNT};

pub const START: i64 = 1_800_000_000;
pub const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 100,
};
pub const ADMIN: Caller = Caller {
    uid: 2001,
    gid: 2001,
    pid: 101,
};
pub const ALICE: Caller = Caller {
    uid: 2002,
    gid: 2002,
    pid: 102,
};
pub const BOB: Caller = Caller {
    uid: 2003,
    gid: 2003,
    pid: 103,
};
pub const STRANGER: Caller = Caller {
    uid: 2999,
    gid: 2999,
    pid: 104,
};

pub const PRINCIPALS: &str = r#"
account = "111122223333"
region = "local"

[[principal]]
arn = "arn:aws:iam::111122223333:user/admin"
uid = 2001
policies = ["admin.json"]

[[principal]]
arn = "arn:aws:iam::111122223333:user/alice"
uid = 2002

[[principal]]
arn = "arn:aws:iam::111122223333:user/bob"
uid = 2003
"#;

/// The admin may create and list keys (IAM); everything else comes from key policies.
pub const ADMIN_IAM: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Sid": "CreateKeys", "Effect": "Allow", "Action": ["kms:CreateKey", "kms:ListKeys", "kms:ListAliases"], "Resource": "*" }
  ]
}"#;

/// A key policy splitting administration (admin) from use (alice), with the root
/// statement that delegates to IAM.
pub fn split_policy() -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{ "Sid": "Enable IAM User Permissions", "Effect": "Allow",
       "Principal": {{ "AWS": "arn:aws:iam::{ACCOUNT}:root" }}, "Action": "kms:*", "Resource": "*" }},
    {{ "Sid": "KeyAdministrators", "Effect": "Allow",
       "Principal": {{ "AWS": "arn:aws:iam::{ACCOUNT}:user/admin" }},
       "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                  "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                  "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
                  "kms:RotateKeyOnDemand", "kms:ImportKeyMaterial"],
       "Resource": "*" }},
    {{ "Sid": "KeyUsers", "Effect": "Allow",
       "Principal": {{ "AWS": "arn:aws:iam::{ACCOUNT}:user/alice" }},
       "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
       "Resource": "*" }}
  ]
}}"#
    )
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: Arc<TestClock>,
    pub svc: Arc<Service>,
}

impl Env {
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn config(&self) -> ServiceConfig {
        config_for(&self.store(), self.clock.clone())
    }

    /// Another Service on the same store (as another process would have).
    pub fn reopen(&self) -> Arc<Service> {
        Service::open(self.config()).unwrap()
    }

    pub fn call(&self, who: Caller, op: &str, req: Value) -> Result<Value, KmsError> {
        self.svc.call(&who, op, req)
    }

    pub fn ok(&self, who: Caller, op: &str, req: Value) -> Value {
        match self.call(who, op, req) {
            Ok(v) => v,
            Err(e) => panic!("{op} as uid {} failed: {e}", who.uid),
        }
    }

    pub fn fails(&self, who: Caller, op: &str, req: Value) -> KmsError {
        match self.call(who, op, req) {
            Ok(v) => panic!("{op} as uid {} succeeded but should fail: {v}", who.uid),
            Err(e) => e,
        }
    }

    /// A key with the admin/user split policy; returns its key id.
    pub fn split_key(&self) -> String {
        let v = self.ok(
            ROOT,
            "CreateKey",
            json!({ "Policy": split_policy(), "Description": "split" }),
        );
        v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
    }

    pub fn encrypt(&self, who: Caller, key: &str, plain: &[u8]) -> Result<String, KmsError> {
        self.call(
            who,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": b64(plain) }),
        )
        .map(|v| v["CiphertextBlob"].as_str().unwrap().to_string())
    }

    pub fn decrypt(&self, who: Caller, blob: &str) -> Result<Vec<u8>, KmsError> {
        self.call(who, "Decrypt", json!({ "CiphertextBlob": blob }))
            .map(|v| unb64(v["Plaintext"].as_str().unwrap()))
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.store().join("audit.log")).unwrap_or_default()
    }
}

pub fn config_for(store: &Path, clock: Arc<TestClock>) -> ServiceConfig {
    ServiceConfig {
        store_dir: store.to_path_buf(),
        principals_path: None,
        root_key: RootKeySource::KeyFile(store.join("root.key")),
        clock,
    }
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let clock = Arc::new(TestClock::new(START));
    let cfg = config_for(&store, clock.clone());
    assert!(init_store(&cfg).unwrap());
    std::fs::write(store.join("principals.toml"), PRINCIPALS).unwrap();
    std::fs::write(store.join("admin.json"), ADMIN_IAM).unwrap();
    let svc = Service::open(cfg).unwrap();
    Env { dir, clock, svc }
}

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn kind(e: &KmsError) -> &'static str {
    e.kind.aws_name()
}

pub fn assert_kind(e: &KmsError, want: ErrorKind) {
    assert_eq!(e.kind, want, "unexpected error: {e}");
}
