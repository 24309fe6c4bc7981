//! `kmsfs kms ...` as aws-cli users meet it: the real binary, run as other uids against
//! `kmsfs serve` on its socket. Roles (administrator vs user), grants and their tokens,
//! rotation, and identity coming only from the socket's peer credentials.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::cli::*;

fn decrypt_blob(s: &Served, uid: u32, blob_b64: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["kms", "decrypt", "--ciphertext-blob", blob_b64];
    args.extend_from_slice(extra);
    s.as_uid(uid, &args)
}

fn encrypt(s: &Served, uid: u32, key: &str, plaintext: &[u8]) -> serde_json::Value {
    let plain = s.public_file("plain.bin", plaintext);
    json(&s.as_uid(
        uid,
        &[
            "kms",
            "encrypt",
            "--key-id",
            key,
            "--plaintext",
            &format!("fileb://{}", plain.display()),
        ],
    ))
}

#[test]
fn administrator_manages_the_key_but_may_not_use_it() {
    let s = Served::start("admin");
    let key = s.create_key();
    // Creating keys comes from bob's identity policy; without one, nobody may.
    for uid in [ALICE, CAROL, STRANGER] {
        service_error(
            &s.as_uid(uid, &["kms", "create-key"]),
            "AccessDeniedException",
            "CreateKey",
        );
    }
    let policy = s.public_file("new-policy.json", key_policy().as_bytes());
    let policy_arg = format!("file://{}", policy.display());
    let admin_verbs: Vec<Vec<&str>> = vec![
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
        vec![
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            &policy_arg,
        ],
    ];
    for verb in &admin_verbs {
        ok(&s.as_uid(BOB, verb));
    }
    let described = json(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]));
    let meta = &described["KeyMetadata"];
    assert_eq!(meta["KeyId"], key.as_str());
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["KeyUsage"], "ENCRYPT_DECRYPT");
    assert!(
        meta["Arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":key/{key}")),
        "{meta}"
    );
    let status = json(&s.as_uid(BOB, &["kms", "get-key-rotation-status", "--key-id", &key]));
    assert_eq!(status["KeyRotationEnabled"], true, "{status}");
    let got = json(&s.as_uid(
        BOB,
        &[
            "kms",
            "get-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
        ],
    ));
    let doc: serde_json::Value = serde_json::from_str(got["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(doc["Statement"][0]["Sid"], "Admins");

    // Using the key is not administering it.
    let plain = s.public_file("p.txt", b"payroll");
    let fileb = format!("fileb://{}", plain.display());
    service_error(
        &s.as_uid(
            BOB,
            &["kms", "encrypt", "--key-id", &key, "--plaintext", &fileb],
        ),
        "AccessDeniedException",
        "Encrypt",
    );
    service_error(
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
    let blob = encrypt(&s, ALICE, &key, b"payroll");
    let blob = blob["CiphertextBlob"].as_str().unwrap();
    let refused = decrypt_blob(&s, BOB, blob, &[]);
    service_error(&refused, "AccessDeniedException", "Decrypt");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&arn("bob")),
        "the message names the caller: {err}"
    );

    // The simulator, asked through the socket, explains that refusal.
    let why = json(&s.as_uid(
        BOB,
        &[
            "simulate",
            "--key-id",
            &key,
            "--principal",
            &arn("bob"),
            "--action",
            "kms:Decrypt",
        ],
    ));
    assert_eq!(why["EvalDecision"], "implicitDeny", "{why}");
    assert!(why["MatchedStatements"].is_array(), "{why}");
    let allowed = json(&s.as_uid(
        ALICE,
        &[
            "simulate",
            "--key-id",
            &key,
            "--principal",
            &arn("alice"),
            "--action",
            "kms:Decrypt",
        ],
    ));
    assert_eq!(allowed["EvalDecision"], "allowed", "{allowed}");
    assert!(
        allowed.to_string().contains("Users"),
        "names the statement: {allowed}"
    );
}

#[test]
fn user_round_trips_a_file_through_aws_cli_style_pipes_but_may_not_manage() {
    let s = Served::start("user");
    let key = s.create_key();
    let home = s.dir.join("alice");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(ALICE), Some(ALICE)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Binary content with a NUL, invalid UTF-8 and a trailing newline survives the trip.
    let content: Vec<u8> = b"line one\n\x00\xff\xfe binary\n".to_vec();
    let plain = s.public_file("secret.bin", &content);
    let kms = format!("{KMSFS} {}", s.globals().join(" "));
    let script = format!(
        "set -e; cd {home}; \
         {kms} kms encrypt --key-id {key} --plaintext fileb://{plain} \
            --query CiphertextBlob --output text | base64 -d > blob; \
         {kms} kms decrypt --ciphertext-blob fileb://blob --query Plaintext --output text \
            | base64 -d > out",
        home = home.display(),
        plain = plain.display()
    );
    ok(&sh_as(ALICE, &script));
    assert_eq!(std::fs::read(home.join("out")).unwrap(), content);
    let blob = std::fs::read(home.join("blob")).unwrap();
    assert!(blob.len() > content.len());
    assert!(
        !blob.windows(8).any(|w| w == b"line one"),
        "ciphertext holds plaintext"
    );

    // JSON output carries AWS's field names.
    let enc = encrypt(&s, ALICE, &key, b"x");
    for field in ["CiphertextBlob", "KeyId", "EncryptionAlgorithm"] {
        assert!(enc.get(field).is_some(), "{field} missing: {enc}");
    }
    assert_eq!(enc["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    let dk = json(&s.as_uid(
        ALICE,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            &key,
            "--key-spec",
            "AES_256",
        ],
    ));
    assert_eq!(b64(dk["Plaintext"].as_str().unwrap()).len(), 32);
    let back = json(&decrypt_blob(
        &s,
        ALICE,
        dk["CiphertextBlob"].as_str().unwrap(),
        &[],
    ));
    assert_eq!(back["Plaintext"], dk["Plaintext"]);
    assert_eq!(back["KeyId"], dk["KeyId"]);

    let policy = s.public_file("takeover.json", key_policy().as_bytes());
    service_error(
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
                &format!("file://{}", policy.display()),
            ],
        ),
        "AccessDeniedException",
        "PutKeyPolicy",
    );
    service_error(
        &s.as_uid(ALICE, &["kms", "disable-key", "--key-id", &key]),
        "AccessDeniedException",
        "DisableKey",
    );
    // Bad parameters are aws-cli's 252 and never reach the service.
    let bad = s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "@@not base64",
        ],
    );
    assert_eq!(
        bad.status.code(),
        Some(252),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = s.as_uid(ALICE, &["kms", "encrypt", "--key-id", &key]);
    assert_eq!(missing.status.code(), Some(252));
    let unreadable = s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "fileb:///nonexistent/p",
        ],
    );
    assert_eq!(unreadable.status.code(), Some(252));
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("/nonexistent/p"));
}

#[test]
fn grants_and_grant_tokens_take_effect_at_once_and_retiring_follows_aws_rules() {
    let s = Served::start("grants");
    let key = s.create_key();
    let blob = encrypt(&s, ALICE, &key, b"for carol");
    let blob = blob["CiphertextBlob"].as_str().unwrap().to_string();
    service_error(
        &decrypt_blob(&s, CAROL, &blob, &[]),
        "AccessDeniedException",
        "Decrypt",
    );

    let create = |retiring: &str| {
        json(&s.as_uid(
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
                retiring,
            ],
        ))
    };
    let grant = create(&arn("alice"));
    let grant_id = grant["GrantId"].as_str().unwrap().to_string();
    let token = grant["GrantToken"].as_str().unwrap().to_string();
    assert!(!token.is_empty());
    // The very next call, with or without the token, is allowed.
    let plain = json(&decrypt_blob(&s, CAROL, &blob, &["--grant-tokens", &token]));
    assert_eq!(b64(plain["Plaintext"].as_str().unwrap()), b"for carol");
    ok(&decrypt_blob(&s, CAROL, &blob, &[]));
    // The grant gives Decrypt only.
    let plain_file = s.public_file("c.txt", b"c");
    service_error(
        &s.as_uid(
            CAROL,
            &[
                "kms",
                "encrypt",
                "--key-id",
                &key,
                "--plaintext",
                &format!("fileb://{}", plain_file.display()),
                "--grant-tokens",
                &token,
            ],
        ),
        "AccessDeniedException",
        "Encrypt",
    );
    let listed = json(&s.as_uid(BOB, &["kms", "list-grants", "--key-id", &key]));
    let g = &listed["Grants"][0];
    assert_eq!(g["GrantId"], grant_id.as_str());
    assert_eq!(g["GranteePrincipal"], arn("carol"));
    assert_eq!(g["RetiringPrincipal"], arn("alice"));
    assert_eq!(g["Operations"], serde_json::json!(["Decrypt"]));

    // Retiring: neither a stranger nor the grantee (without RetireGrant in the grant)
    // may; the retiring principal may, and the access ends on the next call.
    let retire_args = [
        "kms",
        "retire-grant",
        "--key-id",
        &key,
        "--grant-id",
        &grant_id,
    ];
    service_error(
        &s.as_uid(STRANGER, &retire_args),
        "AccessDeniedException",
        "RetireGrant",
    );
    service_error(
        &s.as_uid(CAROL, &retire_args),
        "AccessDeniedException",
        "RetireGrant",
    );
    ok(&decrypt_blob(&s, CAROL, &blob, &[]));
    ok(&s.as_uid(ALICE, &retire_args));
    service_error(
        &decrypt_blob(&s, CAROL, &blob, &[]),
        "AccessDeniedException",
        "Decrypt",
    );
    service_error(
        &s.as_uid(ALICE, &retire_args),
        "NotFoundException",
        "RetireGrant",
    );

    // Revoking: the administrator ends a grant at once; users may not revoke.
    let second = create(&arn("alice"));
    let second_id = second["GrantId"].as_str().unwrap();
    ok(&decrypt_blob(&s, CAROL, &blob, &[]));
    let revoke_args = [
        "kms",
        "revoke-grant",
        "--key-id",
        &key,
        "--grant-id",
        second_id,
    ];
    service_error(
        &s.as_uid(ALICE, &revoke_args),
        "AccessDeniedException",
        "RevokeGrant",
    );
    ok(&s.as_uid(BOB, &revoke_args));
    service_error(
        &decrypt_blob(&s, CAROL, &blob, &[]),
        "AccessDeniedException",
        "Decrypt",
    );
    let listed = json(&s.as_uid(BOB, &["kms", "list-grants", "--key-id", &key]));
    assert_eq!(listed["Grants"], serde_json::json!([]), "{listed}");

    // The grantee may retire a grant that includes RetireGrant, here by its token; the
    // account (uid 0 is the account's root user) may retire any grant of its keys.
    let own = json(&s.as_uid(
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
            "RetireGrant",
        ],
    ));
    ok(&decrypt_blob(&s, CAROL, &blob, &[]));
    ok(&s.as_uid(
        CAROL,
        &[
            "kms",
            "retire-grant",
            "--grant-token",
            own["GrantToken"].as_str().unwrap(),
        ],
    ));
    service_error(
        &decrypt_blob(&s, CAROL, &blob, &[]),
        "AccessDeniedException",
        "Decrypt",
    );
    let third = create(&arn("alice"));
    let third_id = third["GrantId"].as_str().unwrap();
    ok(&s.root(&[
        "kms",
        "retire-grant",
        "--key-id",
        &key,
        "--grant-id",
        third_id,
    ]));
    service_error(
        &decrypt_blob(&s, CAROL, &blob, &[]),
        "AccessDeniedException",
        "Decrypt",
    );
}

#[test]
fn rotation_keeps_old_ciphertexts_decryptable_and_new_ones_name_the_key() {
    let s = Served::start("rotate");
    let key = s.create_key();
    let arn_of_key = json(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]))
        ["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let before = encrypt(&s, ALICE, &key, b"written before rotation");
    ok(&s.as_uid(BOB, &["kms", "rotate-key-on-demand", "--key-id", &key]));
    ok(&s.as_uid(BOB, &["kms", "rotate-key-on-demand", "--key-id", &key]));
    let rotations = json(&s.as_uid(BOB, &["kms", "list-key-rotations", "--key-id", &key]));
    assert_eq!(
        rotations["Rotations"].as_array().unwrap().len(),
        2,
        "{rotations}"
    );
    assert_eq!(rotations["Rotations"][0]["RotationType"], "ON_DEMAND");

    let after = encrypt(&s, ALICE, &key, b"written after rotation");
    assert_eq!(after["KeyId"], arn_of_key.as_str());
    assert_ne!(after["CiphertextBlob"], before["CiphertextBlob"]);
    for (blob, text) in [
        (&before, &b"written before rotation"[..]),
        (&after, &b"written after rotation"[..]),
    ] {
        let out = json(&decrypt_blob(
            &s,
            ALICE,
            blob["CiphertextBlob"].as_str().unwrap(),
            &[],
        ));
        assert_eq!(b64(out["Plaintext"].as_str().unwrap()), text);
        assert_eq!(out["KeyId"], arn_of_key.as_str());
    }
}

#[test]
fn identity_comes_from_the_peer_uid_and_nothing_the_client_says_changes_it() {
    let s = Served::start("identity");
    let key = s.create_key();
    let me = json(&s.as_uid(ALICE, &["whoami"]));
    assert!(me.to_string().contains(&arn("alice")), "{me}");
    let text = ok(&s.as_uid(ALICE, &["whoami", "--output", "text"]));
    assert!(text.contains(&arn("alice")), "{text}");

    // There is no flag to claim an identity: clap refuses it as a bad parameter.
    for flag in ["--caller", "--principal", "--uid", "--as"] {
        let o = s.as_uid(ALICE, &["kms", "list-keys", flag, &arn("bob")]);
        assert_eq!(o.status.code(), Some(252), "{flag}");
    }
    // A principals file of her own that maps her uid to bob changes nothing: the
    // service uses its own file, and she cannot open the store directly.
    let forged = s.public_file(
        "forged.toml",
        format!(
            "account = \"{ACCOUNT}\"\n[[principal]]\narn = \"{}\"\nuid = {ALICE}\n",
            arn("bob")
        )
        .as_bytes(),
    );
    let forged_globals = vec![
        "--store".to_string(),
        s.store().display().to_string(),
        "--principals".to_string(),
        forged.display().to_string(),
        "--socket".to_string(),
        s.socket().display().to_string(),
    ];
    let me = ok(&as_uid(ALICE, &forged_globals, &["whoami"]));
    assert!(
        me.contains(&arn("alice")) && !me.contains(&arn("bob")),
        "{me}"
    );
    service_error(
        &as_uid(
            ALICE,
            &forged_globals,
            &["kms", "disable-key", "--key-id", &key],
        ),
        "AccessDeniedException",
        "DisableKey",
    );
    // Environment variables are no different.
    let o = as_user(ALICE, ALICE, KMSFS)
        .args(["kms", "disable-key", "--key-id", &key])
        .env("KMSFS_STORE", s.store())
        .env("KMSFS_PRINCIPALS", &forged)
        .env("KMSFS_SOCKET", s.socket())
        .output()
        .unwrap();
    service_error(&o, "AccessDeniedException", "DisableKey");

    // A uid missing from the principals file is anonymous: refused even read-only calls.
    let anon = ok(&s.as_uid(STRANGER, &["whoami"]));
    assert!(!anon.contains("arn:aws:iam"), "{anon}");
    service_error(
        &s.as_uid(STRANGER, &["kms", "describe-key", "--key-id", &key]),
        "AccessDeniedException",
        "DescribeKey",
    );
    let plain = s.public_file("s.txt", b"s");
    service_error(
        &s.as_uid(
            STRANGER,
            &[
                "kms",
                "encrypt",
                "--key-id",
                &key,
                "--plaintext",
                &format!("fileb://{}", plain.display()),
            ],
        ),
        "AccessDeniedException",
        "Encrypt",
    );
    // Nor can the stranger read the store behind the service's back.
    let direct = as_uid(
        STRANGER,
        &[
            "--store".to_string(),
            s.store().display().to_string(),
            "--socket".into(),
            "/nonexistent.sock".into(),
        ],
        &["kms", "list-keys"],
    );
    assert!(!direct.status.success());
    let err = String::from_utf8_lossy(&direct.stderr);
    assert!(err.contains("another user controls"), "{err}");
}

#[test]
fn a_mapped_primary_or_supplementary_group_acts_as_its_role_but_a_uid_mapping_wins() {
    let s = Served::start("groups");
    let globals = s.globals();
    let role = format!("arn:aws:iam::{ACCOUNT}:role/operators");
    let stranger = ok(&as_ids(STRANGER, OPERATORS, &globals, &["whoami"]));
    assert!(stranger.contains(&role), "{stranger}");
    let alice = ok(&as_ids(ALICE, OPERATORS, &globals, &["whoami"]));
    assert!(
        alice.contains(&arn("alice")) && !alice.contains(&role),
        "{alice}"
    );
    // Supplementary groups map too (read from /proc/PID/status of the peer).
    let o = as_user_in(STRANGER, STRANGER, &[OPERATORS], KMSFS)
        .args(&globals)
        .arg("whoami")
        .output()
        .unwrap();
    let supplementary = ok(&o);
    assert!(supplementary.contains(&role), "{supplementary}");
}

#[test]
fn concurrent_clients_of_different_uids_each_get_their_own_identity() {
    let s = Served::start("concurrent");
    let globals = s.globals();
    let expected = [
        (ALICE, Some("alice")),
        (BOB, Some("bob")),
        (CAROL, Some("carol")),
        (STRANGER, None),
    ];
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let (uid, name) = expected[i % expected.len()];
            let globals = globals.clone();
            std::thread::spawn(move || (uid, name, as_uid(uid, &globals, &["whoami"])))
        })
        .collect();
    for h in handles {
        let (uid, name, out) = h.join().unwrap();
        let me = ok(&out);
        for (_, other) in expected {
            if let Some(other) = other {
                assert_eq!(
                    me.contains(&arn(other)),
                    Some(other) == name,
                    "uid {uid}: {me}"
                );
            }
        }
    }
}

#[test]
fn service_errors_reach_the_user_as_aws_exceptions_with_exit_254() {
    let s = Served::start("errors");
    let key = s.create_key();
    let blob = json(&s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "aGVsbG8=",
            "--encryption-context",
            "purpose=test",
        ],
    ));
    let blob = blob["CiphertextBlob"].as_str().unwrap().to_string();
    let mut damaged = b64(&blob);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let damaged = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&damaged)
    };
    let missing = "11111111-2222-3333-4444-555555555555";
    // (uid, argv, exception, operation): before the key's state changes.
    let cases: &[(u32, &[&str], &str, &str)] = &[
        (
            ALICE,
            &["kms", "decrypt", "--ciphertext-blob", &blob],
            "InvalidCiphertextException",
            "Decrypt",
        ),
        (
            ALICE,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob,
                "--encryption-context",
                "purpose=other",
            ],
            "InvalidCiphertextException",
            "Decrypt",
        ),
        (
            ALICE,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &damaged,
                "--encryption-context",
                "purpose=test",
            ],
            "InvalidCiphertextException",
            "Decrypt",
        ),
        (
            ALICE,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob,
                "--encryption-context",
                "purpose=test",
                "--grant-tokens",
                "bogus",
            ],
            "InvalidGrantTokenException",
            "Decrypt",
        ),
        (
            BOB,
            &["kms", "describe-key", "--key-id", missing],
            "NotFoundException",
            "DescribeKey",
        ),
        (
            BOB,
            &[
                "kms",
                "schedule-key-deletion",
                "--key-id",
                &key,
                "--pending-window-in-days",
                "3",
            ],
            "ValidationException",
            "ScheduleKeyDeletion",
        ),
    ];
    for (uid, argv, exception, operation) in cases {
        service_error(&s.as_uid(*uid, argv), exception, operation);
    }
    ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob,
            "--encryption-context",
            "purpose=test",
        ],
    ));

    ok(&s.as_uid(BOB, &["kms", "disable-key", "--key-id", &key]));
    let encrypt = [
        "kms",
        "encrypt",
        "--key-id",
        &key,
        "--plaintext",
        "aGVsbG8=",
    ];
    service_error(&s.as_uid(ALICE, &encrypt), "DisabledException", "Encrypt");
    ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "schedule-key-deletion",
            "--key-id",
            &key,
            "--pending-window-in-days",
            "7",
        ],
    ));
    service_error(
        &s.as_uid(ALICE, &encrypt),
        "KMSInvalidStateException",
        "Encrypt",
    );
    let described = json(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]));
    assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
    assert!(
        described["KeyMetadata"]["DeletionDate"].is_string(),
        "{described}"
    );
}

#[test]
fn list_grants_returns_every_page_like_aws_cli() {
    let s = Served::start("pages");
    let key = s.create_key();
    let kms = format!("{KMSFS} {}", s.globals().join(" "));
    ok(&sh_as(
        BOB,
        &format!(
            "set -e; for n in $(seq 1 60); do {kms} kms create-grant --key-id {key} \
             --grantee-principal {} --operations Decrypt >/dev/null; done",
            arn("carol")
        ),
    ));
    let all = json(&s.as_uid(BOB, &["kms", "list-grants", "--key-id", &key]));
    assert_eq!(all["Grants"].as_array().unwrap().len(), 60);
}

#[test]
fn put_key_policy_with_duplicate_json_keys_is_refused_and_the_old_policy_stays() {
    let s = Served::start("dupkeys");
    let key = s.create_key();
    let get = |s: &Served| {
        json(&s.as_uid(
            BOB,
            &[
                "kms",
                "get-key-policy",
                "--key-id",
                &key,
                "--policy-name",
                "default",
            ],
        ))["Policy"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = get(&s);
    // A reviewer reading this sees a Deny of everything; a last-wins parser applies
    // only the Allow that follows it.
    let shadowed = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"DenyAll","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}}],"Statement":{}}}"#,
        serde_json::from_str::<serde_json::Value>(&key_policy()).unwrap()["Statement"]
    );
    let in_condition = key_policy().replacen(
        r#""Sid":"Users""#,
        r#""Sid":"Users","Condition":{"StringEquals":{"kms:ViaService":"kmsfs","kms:ViaService":"x"}}"#,
        1,
    );
    assert_ne!(in_condition, key_policy(), "the policy text changed");
    for (name, text, named) in [
        ("top", shadowed.as_str(), "duplicate key \"Statement\""),
        (
            "condition",
            in_condition.as_str(),
            "duplicate key \"kms:ViaService\" in Statement[1].Condition.StringEquals",
        ),
    ] {
        let file = s.public_file(&format!("dup-{name}.json"), text.as_bytes());
        let out = s.as_uid(
            BOB,
            &[
                "kms",
                "put-key-policy",
                "--key-id",
                &key,
                "--policy-name",
                "default",
                "--policy",
                &format!("file://{}", file.display()),
            ],
        );
        service_error(&out, "MalformedPolicyDocumentException", "PutKeyPolicy");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{name}: {err}");
        assert_eq!(get(&s), before, "{name}: the stored policy is unchanged");
    }
    // Creating a key with such a policy is refused the same way.
    let file = s.public_file("dup-create.json", shadowed.as_bytes());
    service_error(
        &s.as_uid(
            BOB,
            &[
                "kms",
                "create-key",
                "--policy",
                &format!("file://{}", file.display()),
            ],
        ),
        "MalformedPolicyDocumentException",
        "CreateKey",
    );
}
