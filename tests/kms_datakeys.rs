//! The filesystem's path into the key service (`DataKeys`), the service-managed default
//! key, the audit records every call leaves, the Simulate/WhoAmI extensions and the
//! principals file reload.

mod support;

use kmsfs::kms::provider::{DataAction, DataKeys};
use kmsfs::kms::ErrorKind;
use kmsfs::policy::EncryptionContext;
use kmsfs::principals::Principals;
use serde_json::{json, Value};
use support::kms::*;

fn ctx(file: &str) -> EncryptionContext {
    [
        ("kmsfs:volume".to_string(), "vol-1".to_string()),
        ("kmsfs:file".to_string(), file.to_string()),
    ]
    .into_iter()
    .collect()
}

fn audit_records(e: &Env) -> Vec<Value> {
    e.audit_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fs_data_keys_authorize_each_action_on_the_key_in_the_blob() {
    let e = env();
    let id = e.split_key();
    let nk = e.svc.generate_data_key(&ALICE, &id, &ctx("f1")).unwrap();
    assert!(nk.key_arn.ends_with(&id));
    let k = e
        .svc
        .open_data_key(
            &ALICE,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f1"),
            &[DataAction::Decrypt, DataAction::Encrypt],
        )
        .unwrap();
    assert_eq!(k.expose(), nk.key.expose());
    // The admin cannot open a file, whatever it asks for.
    for actions in [&[DataAction::Decrypt][..], &[DataAction::Encrypt][..]] {
        let err = e
            .svc
            .open_data_key(&ADMIN, &nk.key_arn, &nk.wrapped, &ctx("f1"), actions)
            .unwrap_err();
        assert_kind(&err, ErrorKind::AccessDenied);
    }
    // The context is bound to the wrapped key (a moved envelope does not open).
    assert_kind(
        &e.svc
            .open_data_key(
                &ALICE,
                &nk.key_arn,
                &nk.wrapped,
                &ctx("f2"),
                &[DataAction::Decrypt],
            )
            .unwrap_err(),
        ErrorKind::InvalidCiphertext,
    );
    // A write-only grant: bob may open for Encrypt but not for Decrypt.
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Encrypt"] }),
    );
    assert!(e
        .svc
        .open_data_key(
            &BOB,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f1"),
            &[DataAction::Encrypt]
        )
        .is_ok());
    assert_kind(
        &e.svc
            .open_data_key(
                &BOB,
                &nk.key_arn,
                &nk.wrapped,
                &ctx("f1"),
                &[DataAction::Encrypt, DataAction::Decrypt],
            )
            .unwrap_err(),
        ErrorKind::AccessDenied,
    );
    // Key states map to the errors the filesystem turns into errnos.
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": id }));
    let err = e
        .svc
        .open_data_key(
            &ALICE,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f1"),
            &[DataAction::Decrypt],
        )
        .unwrap_err();
    assert_kind(&err, ErrorKind::Disabled);
    assert_eq!(kmsfs::fs::error::kms_errno(err.kind), libc::EKEYREVOKED);
    assert_kind(
        &e.svc
            .open_data_key(&ALICE, "", b"garbage", &ctx("f1"), &[DataAction::Decrypt])
            .unwrap_err(),
        ErrorKind::InvalidCiphertext,
    );
}

#[test]
fn fs_calls_carry_via_service_so_policies_can_require_it() {
    let e = env();
    let policy = format!(
        r#"{{ "Version": "2012-10-17", "Statement": [
        {{ "Sid": "Root", "Effect": "Allow", "Principal": {{ "AWS": "arn:aws:iam::{ACCOUNT}:root" }}, "Action": "kms:*", "Resource": "*" }},
        {{ "Sid": "OnlyThroughTheMount", "Effect": "Allow", "Principal": {{ "AWS": "{}" }},
           "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
           "Condition": {{ "StringEquals": {{ "kms:ViaService": "kmsfs" }} }} }} ] }}"#,
        arn("alice")
    );
    let id = e.ok(ROOT, "CreateKey", json!({ "Policy": policy }))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let nk = e.svc.generate_data_key(&ALICE, &id, &ctx("f")).unwrap();
    assert!(e
        .svc
        .open_data_key(
            &ALICE,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f"),
            &[DataAction::Decrypt]
        )
        .is_ok());
    // The same wrapped key through the API directly: no ViaService, denied.
    let err = e.fails(
        ALICE,
        "Decrypt",
        json!({ "CiphertextBlob": b64(&nk.wrapped), "EncryptionContext": ctx("f") }),
    );
    assert_kind(&err, ErrorKind::AccessDenied);
}

#[test]
fn default_key_is_service_managed_and_usable_only_through_kmsfs() {
    let e = env();
    // init created it.
    let d = e.ok(
        ROOT,
        "DescribeKey",
        json!({ "KeyId": "alias/kmsfs/default" }),
    );
    let md = &d["KeyMetadata"];
    assert_eq!(md["KeyManager"], "AWS");
    let id = md["KeyId"].as_str().unwrap().to_string();
    let st = e.ok(ROOT, "GetKeyRotationStatus", json!({ "KeyId": id }));
    assert_eq!(st["KeyRotationEnabled"], true);
    assert_eq!(st["RotationPeriodInDays"], 365);
    // Every principal of the account can use it through the mount...
    for who in [ALICE, BOB, ADMIN, ROOT] {
        let nk = e
            .svc
            .generate_data_key(&who, "alias/kmsfs/default", &ctx("f"))
            .unwrap();
        e.svc
            .open_data_key(
                &who,
                &nk.key_arn,
                &nk.wrapped,
                &ctx("f"),
                &[DataAction::Decrypt],
            )
            .unwrap();
    }
    // ...an anonymous uid cannot, and nobody can directly.
    assert_kind(
        &e.svc
            .generate_data_key(&STRANGER, "alias/kmsfs/default", &ctx("f"))
            .unwrap_err(),
        ErrorKind::AccessDenied,
    );
    assert_kind(
        &e.encrypt(ROOT, "alias/kmsfs/default", b"x").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    // Its policy is readable; changing the key is refused.
    let p = e.ok(ROOT, "GetKeyPolicy", json!({ "KeyId": id }));
    assert!(p["Policy"].as_str().unwrap().contains("kms:ViaService"));
    for (op, req) in [
        (
            "PutKeyPolicy",
            json!({ "KeyId": id, "Policy": kmsfs::kms::root_delegation_policy(ACCOUNT) }),
        ),
        ("DisableKey", json!({ "KeyId": id })),
        ("ScheduleKeyDeletion", json!({ "KeyId": id })),
        ("DisableKeyRotation", json!({ "KeyId": id })),
    ] {
        let err = e.fails(ROOT, op, req);
        assert_kind(&err, ErrorKind::AccessDenied);
    }
    assert_kind(
        &e.fails(
            ROOT,
            "CreateAlias",
            json!({ "AliasName": "alias/kmsfs/other", "TargetKeyId": id }),
        ),
        ErrorKind::InvalidAliasName,
    );
}

#[test]
fn default_key_is_created_on_first_use_when_init_did_not() {
    // A store from before init created the default key: the format-1 fixture (whose
    // state has no MAC yet, so it may be edited here) without its keys and aliases.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_private(&src, &store);
    let state_path = store.join("state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["aliases"] = json!({});
    state["keys"] = json!({});
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let svc = kmsfs::kms::Service::open(config_for(
        &store,
        std::sync::Arc::new(kmsfs::kms::TestClock::new(START)),
    ))
    .unwrap();
    let nk = svc
        .generate_data_key(&ROOT, "alias/kmsfs/default", &ctx("f"))
        .unwrap();
    assert!(svc
        .open_data_key(
            &ROOT,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f"),
            &[DataAction::Decrypt]
        )
        .is_ok());
}

fn copy_private(src: &std::path::Path, dst: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let private = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    std::fs::create_dir(dst).unwrap();
    private(dst, 0o700);
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_private(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
            private(&to, 0o600);
        }
    }
}

#[test]
fn every_call_and_decision_is_audited_without_plaintext() {
    let e = env();
    let id = e.split_key();
    let secret = b"the plaintext that must never be logged";
    let blob = e.encrypt(ALICE, &id, secret).unwrap();
    let _ = e.decrypt(ADMIN, &blob);
    let nk = e
        .svc
        .generate_data_key(&ALICE, &id, &ctx("file-7"))
        .unwrap();
    let _ = e.svc.open_data_key(
        &ALICE,
        &nk.key_arn,
        &nk.wrapped,
        &ctx("file-7"),
        &[DataAction::Decrypt, DataAction::Encrypt],
    );
    let text = e.audit_text();
    assert!(!text.contains(&b64(secret)), "plaintext in the audit log");
    assert!(!text.contains(&blob), "ciphertext in the audit log");
    assert!(
        !text.contains(&b64(nk.key.expose())),
        "data key in the audit log"
    );
    let recs = audit_records(&e);
    let text_of = |r: &Value| r.to_string();
    // The denied Decrypt: one record naming the admin, the decision and the exception.
    let denied: Vec<&Value> = recs
        .iter()
        .filter(|r| text_of(r).contains("AccessDeniedException"))
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = text_of(denied[0]);
    assert!(
        d.contains("user/admin") && d.contains("implicitDeny") && d.contains("2001"),
        "{d}"
    );
    // The fs open with two actions: two decision records, both through kmsfs.
    let fs_recs: Vec<&Value> = recs
        .iter()
        .filter(|r| text_of(r).contains("file-7"))
        .collect();
    assert_eq!(
        fs_recs.len(),
        3,
        "GenerateDataKey + two decisions of the open: {fs_recs:?}"
    );
    assert!(fs_recs.iter().all(|r| text_of(r).contains("kmsfs")));
    assert!(fs_recs.iter().all(|r| text_of(r).contains("allowed")));
    // The chain the service wrote verifies.
    let report = kmsfs::audit::verify(&e.store().join("audit.log")).unwrap();
    assert_eq!(report.records, recs.len() as u64, "{report:?}");
}

#[test]
fn simulate_and_whoami() {
    let e = env();
    let id = e.split_key();
    let w = e.ok(ALICE, "WhoAmI", json!({}));
    assert_eq!(w["Arn"], arn("alice"));
    assert_eq!(w["Account"], ACCOUNT);
    assert_eq!(w["Uid"], 2002);
    let w = e.ok(STRANGER, "WhoAmI", json!({}));
    assert_eq!(w["Arn"], Value::Null);
    assert_eq!(w["Type"], "Anonymous");
    let s = e.ok(
        ADMIN,
        "Simulate",
        json!({ "KeyId": id, "PrincipalArn": arn("alice"), "Action": "kms:Decrypt" }),
    );
    assert_eq!(s["EvalDecision"], "allowed");
    assert!(s.to_string().contains("KeyUsers"), "{s}");
    let s = e.ok(
        ADMIN,
        "Simulate",
        json!({ "KeyId": id, "Uid": 2001, "Action": "Decrypt" }),
    );
    assert_eq!(s["EvalDecision"], "implicitDeny");
    // Simulating someone else needs GetKeyPolicy on the key ...
    assert_kind(
        &e.fails(
            BOB,
            "Simulate",
            json!({ "KeyId": id, "PrincipalArn": arn("alice"), "Action": "kms:Decrypt" }),
        ),
        ErrorKind::AccessDenied,
    );
    // ... asking about yourself does not (`kmsfs whoami`).
    let s = e.ok(
        BOB,
        "Simulate",
        json!({ "KeyId": id, "PrincipalArn": arn("bob"), "Action": "kms:Decrypt" }),
    );
    assert_eq!(s["EvalDecision"], "implicitDeny");
}

#[test]
fn editing_the_principals_file_takes_effect_without_restart() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"x").unwrap();
    assert_kind(
        &e.decrypt(STRANGER, &blob).unwrap_err(),
        ErrorKind::AccessDenied,
    );
    // uid 2999 becomes alice.
    let more = format!(
        "{PRINCIPALS}\n[[principal]]\narn = \"{}\"\nuid = 2999\n",
        arn("carol")
    );
    let edited = PRINCIPALS.replace("uid = 2002", "uids = [2002, 2999]");
    std::fs::write(e.store().join("principals.toml"), &edited).unwrap();
    assert_eq!(e.decrypt(STRANGER, &blob).unwrap(), b"x");
    // A broken file fails closed, naming the file.
    std::fs::write(e.store().join("principals.toml"), "account = [").unwrap();
    let err = e.decrypt(ALICE, &blob).unwrap_err();
    assert!(err.message.contains("principals.toml"), "{err}");
    std::fs::write(e.store().join("principals.toml"), more).unwrap();
    assert_kind(
        &e.decrypt(STRANGER, &blob).unwrap_err(),
        ErrorKind::AccessDenied,
    );
}

#[test]
fn volume_secrets_are_created_once_and_shared_across_processes() {
    let e = env();
    let a = e.svc.volume_secret("vol-1").unwrap();
    let b = e.reopen().volume_secret("vol-1").unwrap();
    assert_eq!(a.expose(), b.expose());
    let c = e.svc.volume_secret("vol-2").unwrap();
    assert_ne!(a.expose(), c.expose());
}

#[test]
fn the_default_key_rotates_yearly_and_keeps_old_data_readable() {
    let e = env();
    let nk = e
        .svc
        .generate_data_key(&ALICE, "alias/kmsfs/default", &ctx("f"))
        .unwrap();
    e.clock.advance_days(364);
    e.svc.tick().unwrap();
    let id = e.ok(
        ROOT,
        "DescribeKey",
        json!({ "KeyId": "alias/kmsfs/default" }),
    )["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.ok(ROOT, "ListKeyRotations", json!({ "KeyId": id }))["Rotations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    e.clock.advance_days(2);
    e.svc.tick().unwrap();
    let rots = e.ok(ROOT, "ListKeyRotations", json!({ "KeyId": id }));
    assert_eq!(rots["Rotations"].as_array().unwrap().len(), 1);
    let newer = e
        .svc
        .generate_data_key(&ALICE, "alias/kmsfs/default", &ctx("g"))
        .unwrap();
    assert_eq!(
        u32::from_be_bytes(newer.wrapped[40..44].try_into().unwrap()),
        2
    );
    let k = e
        .svc
        .open_data_key(
            &ALICE,
            &nk.key_arn,
            &nk.wrapped,
            &ctx("f"),
            &[DataAction::Decrypt],
        )
        .unwrap();
    assert_eq!(k.expose(), nk.key.expose());
}

#[test]
fn a_principals_file_other_users_can_edit_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    let p = e.store().join("principals.toml");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = e.fails(ALICE, "WhoAmI", json!({}));
    assert!(
        err.message.contains("principals.toml") && err.message.contains("0666"),
        "{err}"
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(e.ok(ALICE, "WhoAmI", json!({}))["Arn"], arn("alice"));
}

#[test]
fn principals_name_the_identity_policy_files_they_loaded() {
    // The watcher stamps exactly these files, so they must come from the one parse of
    // principals.toml, resolved against its directory, inline policies not among them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("p")).unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"*"}]}"#;
    std::fs::write(dir.path().join("a.json"), policy).unwrap();
    std::fs::write(dir.path().join("p/b.json"), policy).unwrap();
    let file = dir.path().join("principals.toml");
    let toml = format!(
        r#"account = "111122223333"

[[principal]]
arn = "arn:aws:iam::111122223333:user/a"
uid = 1001
policies = ["a.json"]

[[principal]]
arn = "arn:aws:iam::111122223333:user/b"
uid = 1002
policies = ["p/b.json"]
policy = '''{policy}'''
"#
    );
    std::fs::write(&file, toml).unwrap();
    let p = Principals::load(&file).unwrap();
    assert_eq!(
        p.policy_files(),
        [dir.path().join("a.json"), dir.path().join("p/b.json")]
    );
    assert!(Principals::single_user(0).policy_files().is_empty());
}

#[test]
fn editing_an_identity_policy_file_takes_effect_without_restart() {
    let e = env();
    // The admin's IAM policy allows CreateKey; take it away by editing admin.json only.
    assert!(e.call(ADMIN, "CreateKey", json!({})).is_ok());
    std::fs::write(
        e.store().join("admin.json"),
        ADMIN_IAM.replace("\"Allow\"", "\"Deny\""),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_kind(
        &e.fails(ADMIN, "CreateKey", json!({})),
        ErrorKind::AccessDenied,
    );
}

#[test]
fn wrap_data_key_needs_encrypt_and_wraps_the_same_key_anew() {
    let e = env();
    let id = e.split_key();
    let nk = e.svc.generate_data_key(&ALICE, &id, &ctx("f1")).unwrap();
    let w = e
        .svc
        .wrap_data_key(&ALICE, &id, &nk.key, &ctx("f1"))
        .unwrap();
    assert_eq!(w.key_arn, nk.key_arn);
    assert_ne!(w.wrapped, nk.wrapped, "a fresh blob");
    let back = e
        .svc
        .open_data_key(
            &ALICE,
            &w.key_arn,
            &w.wrapped,
            &ctx("f1"),
            &[DataAction::Decrypt],
        )
        .unwrap();
    assert_eq!(back.expose(), nk.key.expose());
    // The key administrator may not Encrypt under it.
    let err = e
        .svc
        .wrap_data_key(&BOB, &id, &nk.key, &ctx("f1"))
        .unwrap_err();
    assert_kind(&err, ErrorKind::AccessDenied);
    let last = audit_records(&e).pop().unwrap();
    assert_eq!(last["eventName"], "Encrypt");
    assert_eq!(last["errorCode"], "AccessDeniedException");
    // Which references the store holds (the key router's locality rule).
    assert!(e.svc.holds_key(&nk.key_arn).unwrap());
    assert!(e.svc.holds_key(&id).unwrap());
    assert!(!e
        .svc
        .holds_key("arn:aws:kms:eu-west-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321")
        .unwrap());
}

/// Opens share their request and `fs` values per encryption context (built once, see
/// `ops_crypto`): every open's record still carries exactly its own context and actions,
/// whatever was opened before, and the chain verifies.
#[test]
fn each_open_record_names_its_own_context_and_actions() {
    let e = env();
    let id = e.split_key();
    let f1 = e.svc.generate_data_key(&ALICE, &id, &ctx("f1")).unwrap();
    let f2 = e.svc.generate_data_key(&ALICE, &id, &ctx("f2")).unwrap();
    let opens: [(&kmsfs::kms::provider::NewDataKey, &str, &[DataAction]); 5] = [
        (&f1, "f1", &[DataAction::Decrypt]),
        (&f1, "f1", &[DataAction::Decrypt]),
        (&f2, "f2", &[DataAction::Decrypt]),
        (&f1, "f1", &[DataAction::Decrypt, DataAction::Encrypt]),
        (&f1, "f1", &[DataAction::Decrypt]),
    ];
    for (nk, file, actions) in opens {
        e.svc
            .open_data_key(&ALICE, &nk.key_arn, &nk.wrapped, &ctx(file), actions)
            .unwrap();
    }
    let records: Vec<Value> = audit_records(&e)
        .into_iter()
        .filter(|r| r["eventName"] == "Decrypt")
        .collect();
    // One record per decision: an open for two actions leaves a partial one first.
    let expected: Vec<(&str, &[DataAction])> = opens
        .iter()
        .flat_map(|&(_, file, actions)| std::iter::repeat_n((file, actions), actions.len()))
        .collect();
    assert_eq!(records.len(), expected.len());
    for (r, (file, actions)) in records.iter().zip(expected) {
        let names: Vec<&str> = actions
            .iter()
            .map(|a| match a {
                DataAction::Decrypt => "Decrypt",
                DataAction::Encrypt => "Encrypt",
            })
            .collect();
        assert_eq!(
            r["requestParameters"],
            json!({"EncryptionContext": ctx(file), "kmsfsOpenFor": names})
        );
        assert_eq!(r["kmsfs"]["fs"], json!(ctx(file)));
    }
    let report = kmsfs::audit::verify(&e.store().join("audit.log")).unwrap();
    assert!(report.records > 0);
}
