//! The key service as users meet it: `kmsfs serve` on its socket, and `kmsfs kms ...`
//! run as other uids (through setpriv), with aws-cli's exit codes, error lines and JSON.
//! Identity is the socket's peer credentials; nothing a client says changes it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const ALICE: u32 = 63001; // key user
const BOB: u32 = 63002; // key administrator
const CAROL: u32 = 63003; // in no policy
const STRANGER: u32 = 63009; // not in the principals file: anonymous

fn arn(user: &str) -> String {
    format!("arn:aws:iam::111122223333:user/{user}")
}

struct Service {
    dir: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(name: &str) -> Service {
        let dir = std::env::temp_dir().join(format!("kmsfs-sock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let principals = dir.join("principals.toml");
        std::fs::write(
            &principals,
            format!(
                "account = \"111122223333\"\n\
                 [[principal]]\narn = \"{}\"\nuid = {ALICE}\n\
                 [[principal]]\narn = \"{}\"\nuid = {BOB}\n\
                 policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":[\"kms:CreateKey\",\"kms:List*\"],\"Resource\":\"*\"}}]}}'''\n\
                 [[principal]]\narn = \"{}\"\nuid = {CAROL}\n",
                arn("alice"),
                arn("bob"),
                arn("carol")
            ),
        )
        .unwrap();
        let mut s = Service { dir, child: None };
        let init = s.root(&["init"]);
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        s.spawn();
        s
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("kms.sock")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(env!("CARGO_BIN_EXE_kmsfs"))
            .args(self.globals())
            .arg("serve")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "kmsfs serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn globals(&self) -> Vec<String> {
        vec![
            "--store".into(),
            self.store().display().to_string(),
            "--principals".into(),
            self.dir.join("principals.toml").display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
        ]
    }

    /// `kmsfs <args>` as root, in this process's identity.
    fn root(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kmsfs"))
            .args(self.globals())
            .args(args)
            .output()
            .unwrap()
    }

    /// `kmsfs <args>` as `uid` through the socket.
    fn as_uid(&self, uid: u32, args: &[&str]) -> Output {
        let u = uid.to_string();
        Command::new("setpriv")
            .args(["--reuid", &u, "--regid", &u, "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_kmsfs"))
            .args(self.globals())
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[track_caller]
fn denied(o: &Output, exception: &str, operation: &str) {
    assert_eq!(
        o.status.code(),
        Some(254),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let line = format!("An error occurred ({exception}) when calling the {operation} operation:");
    assert!(err.contains(&line), "expected `{line}`, got: {err}");
}

fn key_policy() -> String {
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

fn create_key(s: &Service) -> String {
    let policy = s.dir.join("policy.json");
    std::fs::write(&policy, key_policy()).unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = format!("file://{}", policy.display());
    ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "create-key",
            "--policy",
            &p,
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    ))
}

fn write_public(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    p.display().to_string()
}

#[test]
fn admin_manages_but_cannot_use_and_user_uses_but_cannot_manage() {
    let s = Service::start("roles");
    let key = create_key(&s);
    for verb in [
        vec!["kms", "disable-key", "--key-id", &key],
        vec!["kms", "enable-key", "--key-id", &key],
        vec!["kms", "enable-key-rotation", "--key-id", &key],
        vec!["kms", "rotate-key-on-demand", "--key-id", &key],
        vec![
            "kms",
            "schedule-key-deletion",
            "--key-id",
            &key,
            "--pending-window-in-days",
            "7",
        ],
        vec!["kms", "cancel-key-deletion", "--key-id", &key],
        vec!["kms", "enable-key", "--key-id", &key],
    ] {
        ok(&s.as_uid(BOB, &verb));
    }
    let plain = write_public(&s.dir, "plain.txt", b"the numbers");
    let fileb = format!("fileb://{plain}");
    denied(
        &s.as_uid(
            BOB,
            &["kms", "encrypt", "--key-id", &key, "--plaintext", &fileb],
        ),
        "AccessDeniedException",
        "Encrypt",
    );
    denied(
        &s.as_uid(
            BOB,
            &[
                "kms",
                "generate-data-key",
                "--key-id",
                &key,
                "--key-spec",
                "AES_256",
            ],
        ),
        "AccessDeniedException",
        "GenerateDataKey",
    );

    // alice: a round trip the way scripts do it with aws-cli.
    let blob_b64 = ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            &fileb,
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
    ));
    let blob = write_public(&s.dir, "blob.bin", &base64_decode(&blob_b64));
    let out = ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{blob}"),
            "--output",
            "json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        base64_decode(v["Plaintext"].as_str().unwrap()),
        b"the numbers"
    );
    assert!(v["KeyId"].as_str().unwrap().ends_with(&key), "{v}");
    denied(
        &s.as_uid(
            BOB,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &format!("fileb://{blob}"),
            ],
        ),
        "AccessDeniedException",
        "Decrypt",
    );
    let policy = write_public(&s.dir, "p2.json", key_policy().as_bytes());
    denied(
        &s.as_uid(
            ALICE,
            &[
                "kms",
                "put-key-policy",
                "--key-id",
                &key,
                "--policy-name",
                "default",
                "--policy",
                &format!("file://{policy}"),
            ],
        ),
        "AccessDeniedException",
        "PutKeyPolicy",
    );
    // The simulator explains bob's refusal.
    let why = ok(&s.as_uid(
        BOB,
        &[
            "simulate",
            "--key-id",
            &key,
            "--principal",
            &arn("bob"),
            "--action",
            "kms:Decrypt",
            "--output",
            "text",
        ],
    ));
    assert!(why.starts_with("implicitDeny"), "{why}");
}

#[test]
fn grants_apply_at_once_and_revocation_removes_them_at_once() {
    let s = Service::start("grants");
    let key = create_key(&s);
    let plain = write_public(&s.dir, "p.txt", b"for carol");
    let blob_b64 = ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            &format!("fileb://{plain}"),
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
    ));
    let decrypt = |uid| s.as_uid(uid, &["kms", "decrypt", "--ciphertext-blob", &blob_b64]);
    denied(&decrypt(CAROL), "AccessDeniedException", "Decrypt");
    let grant = ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &arn("carol"),
            "--operations",
            "Decrypt",
            "--retiring-principal",
            &arn("alice"),
        ],
    ));
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    let grant_id = grant["GrantId"].as_str().unwrap().to_string();
    assert!(grant["GrantToken"].as_str().is_some_and(|t| !t.is_empty()));
    ok(&decrypt(CAROL));
    // Only the retiring principal (or an administrator) may end it early.
    denied(
        &s.as_uid(
            STRANGER,
            &[
                "kms",
                "retire-grant",
                "--key-id",
                &key,
                "--grant-id",
                &grant_id,
            ],
        ),
        "AccessDeniedException",
        "RetireGrant",
    );
    ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "revoke-grant",
            "--key-id",
            &key,
            "--grant-id",
            &grant_id,
        ],
    ));
    denied(&decrypt(CAROL), "AccessDeniedException", "Decrypt");
}

#[test]
fn identity_is_the_peer_uid_and_unmapped_uids_are_anonymous() {
    let s = Service::start("identity");
    let key = create_key(&s);
    let me = ok(&s.as_uid(ALICE, &["whoami", "--output", "json"]));
    assert!(me.contains(&arn("alice")), "{me}");
    let stranger = ok(&s.as_uid(STRANGER, &["whoami", "--output", "json"]));
    assert!(!stranger.contains("arn:aws:iam"), "{stranger}");
    denied(
        &s.as_uid(STRANGER, &["kms", "describe-key", "--key-id", &key]),
        "AccessDeniedException",
        "DescribeKey",
    );
    // Bad parameters are aws-cli's exit 252, naming the flag.
    let bad = s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "not base64!",
        ],
    );
    assert_eq!(bad.status.code(), Some(252));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--plaintext"));
}

#[test]
fn killing_the_service_mid_burst_leaves_a_store_that_opens_and_verifies() {
    let mut s = Service::start("crash");
    let key = create_key(&s);
    let policy = write_public(&s.dir, "p.json", key_policy().as_bytes());
    let policy_arg = format!("file://{policy}");
    let kmsfs = env!("CARGO_BIN_EXE_kmsfs");
    let globals = s.globals().join(" ");
    // Three clients hammer the control plane in the background.
    let mut clients: Vec<Child> = (0..3)
        .map(|i| {
            let script = format!(
                "for n in $(seq 1 40); do \
                   {kmsfs} {globals} kms put-key-policy --key-id {key} --policy-name default --policy {policy_arg} >/dev/null 2>&1; \
                   {kmsfs} {globals} kms create-grant --key-id {key} --grantee-principal {} --operations Decrypt --name g{i}-$n >/dev/null 2>&1; \
                 done",
                arn("carol")
            );
            Command::new("setpriv")
                .args(["--reuid", &BOB.to_string(), "--regid", &BOB.to_string(), "--clear-groups", "--"])
                .args(["sh", "-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    s.kill9();
    for c in &mut clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    s.spawn();
    let described = ok(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]));
    assert!(
        described.contains("\"KeyState\": \"Enabled\""),
        "{described}"
    );
    let grants = ok(&s.as_uid(BOB, &["kms", "list-grants", "--key-id", &key]));
    let grants: serde_json::Value = serde_json::from_str(&grants).unwrap();
    assert!(grants["Grants"].is_array());
    let verify = s.root(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}
