//! The product's main promise, end to end through a real FUSE mount and the real key
//! service: who may read and write is decided on every open by the key policy, grants
//! and key state — and a key administrator, root included, cannot read a byte.

mod support;

use serde_json::json;
use support::e2e::*;

#[test]
fn key_user_reads_and_writes_while_admin_and_root_are_refused() {
    let f = Fixture::new("roles");
    let file = f.path("report.txt");
    let p = file.display();
    f.sh(
        ALICE,
        &format!("printf 'quarterly numbers: 42' > {p} && chmod 666 {p}"),
    )
    .expect_ok();
    assert_eq!(
        f.sh(ALICE, &format!("cat {p}")).expect_ok(),
        "quarterly numbers: 42"
    );

    // bob administers the key ...
    f.kms(BOB, "DisableKey", json!({"KeyId": f.key_id}))
        .unwrap();
    f.kms(BOB, "EnableKey", json!({"KeyId": f.key_id})).unwrap();
    // ... and cannot read or write a byte, through the mount or the API.
    f.sh(BOB, &format!("cat {p}")).expect_err(EACCES);
    f.sh(BOB, &format!("printf x >> {p}")).expect_err(EACCES);
    // root maps to bob in this principals file: refused too.
    let err = std::fs::read(&file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    // The refused attempts changed nothing.
    assert_eq!(
        f.sh(ALICE, &format!("cat {p}")).expect_ok(),
        "quarterly numbers: 42"
    );
}

#[test]
fn grant_gives_access_on_the_next_open_and_revoke_takes_it_away() {
    let f = Fixture::new("grants");
    let p = f.path("shared.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf 'for carol' > {p} && chmod 644 {p}"))
        .expect_ok();
    f.sh(CAROL, &format!("cat {p}")).expect_err(EACCES);

    let grant = f
        .kms(
            BOB,
            "CreateGrant",
            json!({"KeyId": f.key_id, "GranteePrincipal": arn("carol"), "Operations": ["Decrypt"]}),
        )
        .unwrap();
    assert_eq!(f.sh(CAROL, &format!("cat {p}")).expect_ok(), "for carol");
    // Decrypt only: carol may not write.
    f.sh(CAROL, &format!("printf x >> {p}")).expect_err(EACCES);

    f.kms(
        BOB,
        "RevokeGrant",
        json!({"KeyId": f.key_id, "GrantId": grant["GrantId"]}),
    )
    .unwrap();
    f.sh(CAROL, &format!("cat {p}")).expect_err(EACCES);
}

#[test]
fn disabled_key_is_revoked_and_enabling_restores_access() {
    let f = Fixture::new("disable");
    let p = f.path("a.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf hello > {p}")).expect_ok();
    f.kms(BOB, "DisableKey", json!({"KeyId": f.key_id}))
        .unwrap();
    f.sh(ALICE, &format!("cat {p}")).expect_err(EKEYREVOKED);
    f.sh(
        ALICE,
        &format!("printf new > {}", f.path("b.txt").display()),
    )
    .expect_err(EKEYREVOKED);
    f.kms(BOB, "EnableKey", json!({"KeyId": f.key_id})).unwrap();
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "hello");
}

#[test]
fn scheduled_deletion_revokes_then_destroys_the_data_after_the_window() {
    let f = Fixture::new("deletion");
    let p = f.path("doomed.txt");
    let p = p.display();
    f.sh(ALICE, &format!("printf 'last words' > {p}"))
        .expect_ok();
    f.kms(
        BOB,
        "ScheduleKeyDeletion",
        json!({"KeyId": f.key_id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    f.sh(ALICE, &format!("cat {p}")).expect_err(EKEYREVOKED);
    // Still recoverable inside the window.
    f.kms(BOB, "CancelKeyDeletion", json!({"KeyId": f.key_id}))
        .unwrap();
    f.kms(BOB, "EnableKey", json!({"KeyId": f.key_id})).unwrap();
    assert_eq!(f.sh(ALICE, &format!("cat {p}")).expect_ok(), "last words");

    f.kms(
        BOB,
        "ScheduleKeyDeletion",
        json!({"KeyId": f.key_id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    f.clock.advance(8 * 86_400);
    f.service.tick().unwrap();
    f.sh(ALICE, &format!("cat {p}")).expect_err(ENOKEY);
    let err = f
        .kms(ALICE, "DescribeKey", json!({"KeyId": f.key_id}))
        .unwrap_err();
    assert_eq!(err.kind.aws_name(), "NotFoundException");
}

#[test]
fn rotation_keeps_old_files_readable_and_new_files_work() {
    let f = Fixture::new("rotation");
    let old = f.path("old.txt");
    f.sh(ALICE, &format!("printf before > {}", old.display()))
        .expect_ok();
    f.kms(BOB, "RotateKeyOnDemand", json!({"KeyId": f.key_id}))
        .unwrap();
    let rotations = f
        .kms(BOB, "ListKeyRotations", json!({"KeyId": f.key_id}))
        .unwrap();
    assert_eq!(rotations["Rotations"].as_array().map(Vec::len), Some(1));
    let new = f.path("new.txt");
    f.sh(ALICE, &format!("printf after > {}", new.display()))
        .expect_ok();
    assert_eq!(
        f.sh(ALICE, &format!("cat {}", old.display())).expect_ok(),
        "before"
    );
    assert_eq!(
        f.sh(ALICE, &format!("cat {}", new.display())).expect_ok(),
        "after"
    );
}

#[test]
fn drop_box_can_write_but_never_read_back_even_its_own_files() {
    let f = Fixture::new("dropbox");
    let inbox = f.path("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::set_permissions(&inbox, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let p = inbox.join("tip.txt");
    let p = p.display();
    f.sh(
        DROPBOX,
        &format!("printf 'anonymous tip' > {p} && chmod 644 {p}"),
    )
    .expect_ok();
    f.sh(DROPBOX, &format!("cat {p}")).expect_err(EACCES);
    assert_eq!(
        f.sh(ALICE, &format!("cat {p}")).expect_ok(),
        "anonymous tip"
    );
}

#[test]
fn rename_moves_protection_with_the_file() {
    let f = Fixture::new("rename");
    std::fs::create_dir(f.path("a")).unwrap();
    std::fs::create_dir(f.path("b")).unwrap();
    for d in ["a", "b"] {
        std::fs::set_permissions(
            f.path(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
    }
    let from = f.path("a/x.txt");
    let to = f.path("b/y.txt");
    f.sh(
        ALICE,
        &format!(
            "printf moved > {} && chmod 644 {}",
            from.display(),
            from.display()
        ),
    )
    .expect_ok();
    std::fs::rename(&from, &to).unwrap();
    assert_eq!(
        f.sh(ALICE, &format!("cat {}", to.display())).expect_ok(),
        "moved"
    );
    f.sh(BOB, &format!("cat {}", to.display()))
        .expect_err(EACCES);
}

#[test]
fn backing_directory_holds_no_plaintext_content_or_names() {
    let f = Fixture::new("opaque");
    let dir = f.path("secret-project");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    f.sh(
        ALICE,
        &format!(
            "printf 'the launch code is tangerine' > {}/launch-plan.txt",
            dir.display()
        ),
    )
    .expect_ok();
    for (path, bytes) in f.backing_bytes() {
        let name = path.to_string_lossy();
        assert!(
            !name.contains("secret-project") && !name.contains("launch-plan"),
            "{name}"
        );
        assert!(
            !bytes.windows(9).any(|w| w == b"tangerine"),
            "plaintext in {name}"
        );
    }
}

#[test]
fn denied_opens_are_audited_with_their_reasons_and_no_path() {
    let f = Fixture::new("audit");
    let p = f.path("private.txt");
    f.sh(
        ALICE,
        &format!("printf data > {} && chmod 644 {}", p.display(), p.display()),
    )
    .expect_ok();
    f.sh(BOB, &format!("cat {}", p.display()))
        .expect_err(EACCES);
    let lines = f.audit_lines();
    let denied = lines
        .iter()
        .rfind(|r| {
            r["errorCode"] == "AccessDeniedException"
                && r["userIdentity"]["arn"] == arn("bob").as_str()
        })
        .expect("a denied record for bob");
    let text = denied.to_string();
    assert!(text.contains("implicitDeny"), "{text}");
    assert!(text.contains("kmsfs"), "{text}");
    assert!(
        !text.contains("private.txt"),
        "path leaked into audit: {text}"
    );
}

#[test]
fn key_rule_gives_new_files_under_a_directory_their_own_key() {
    let f = Fixture::new("keyrule");
    let second = f
        .kms(
            BOB,
            "CreateKey",
            json!({"Description": "project key", "Policy": key_policy()}),
        )
        .unwrap();
    let second_arn = second["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let second_id = second["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let dir = f.path("project");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let kmsfs = env!("CARGO_BIN_EXE_kmsfs");
    // Root acts as bob here, who administers the key but may not use it: the rule is
    // for alice's files, so skip the check that the caller may use the key.
    let set = std::process::Command::new(kmsfs)
        .args(["key-rule", "set", "--force"])
        .arg(&dir)
        .args(["--key", &second_arn])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let show = std::process::Command::new(kmsfs)
        .args(["--output", "text", "key-rule", "show"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&show.stdout).trim(), second_arn);

    f.sh(ALICE, &format!("printf inner > {}/a.txt", dir.display()))
        .expect_ok();
    f.sh(
        ALICE,
        &format!("printf outer > {}", f.path("b.txt").display()),
    )
    .expect_ok();
    // The envelopes name the keys: the rule's key inside, the default key outside.
    let arns: Vec<String> = f
        .backing_bytes()
        .iter()
        .filter_map(|(_, bytes)| {
            kmsfs::format::FileHeader::decode(bytes.get(..kmsfs::format::HEADER_LEN)?)
                .ok()
                .map(|h| h.key_arn)
        })
        .collect();
    assert!(arns.contains(&second_arn), "{arns:?}");
    assert!(arns.contains(&f.key_arn), "{arns:?}");
    // So disabling the project key revokes only the project's files.
    f.kms(BOB, "DisableKey", json!({"KeyId": second_id}))
        .unwrap();
    f.sh(ALICE, &format!("cat {}/a.txt", dir.display()))
        .expect_err(EKEYREVOKED);
    assert_eq!(
        f.sh(ALICE, &format!("cat {}", f.path("b.txt").display()))
            .expect_ok(),
        "outer"
    );
    // A user who may not write the directory may not change its rule.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let denied = f.sh(CAROL, &format!("{kmsfs} key-rule clear {}", dir.display()));
    assert!(!denied.ok, "carol changed the rule: {}", denied.stdout);
    assert!(
        denied.stderr.contains("Permission denied"),
        "{}",
        denied.stderr
    );
    let show = std::process::Command::new(kmsfs)
        .args(["--output", "text", "key-rule", "show"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&show.stdout).trim(), second_arn);
}

#[test]
fn users_may_ask_what_they_themselves_may_do_but_not_about_others() {
    let f = Fixture::new("whoami");
    let ask = |uid, who: &str| {
        f.kms(
            uid,
            "Simulate",
            json!({"KeyId": f.key_id, "PrincipalArn": arn(who), "Action": "kms:Decrypt",
                   "ViaService": "kmsfs"}),
        )
    };
    assert_eq!(ask(ALICE, "alice").unwrap()["EvalDecision"], "allowed");
    assert_eq!(ask(CAROL, "carol").unwrap()["EvalDecision"], "implicitDeny");
    let err = ask(CAROL, "alice").unwrap_err();
    assert_eq!(err.kind.aws_name(), "AccessDeniedException");
    // The administrator may read the policy, so he may ask about anyone.
    assert_eq!(ask(BOB, "alice").unwrap()["EvalDecision"], "allowed");
}
