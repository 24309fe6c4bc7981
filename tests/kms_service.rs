//! The key service end to end through `Service::call`, as the socket server and the CLI
//! use it: key lifecycle, who may do what under key policies, grants, rotation,
//! deletion, imported material, the lockout check and the escalation guard.

mod support;

use kmsfs::kms::{wrap_key_material, ErrorKind};
use serde_json::{json, Value};
use support::kms::*;

#[test]
fn create_describe_encrypt_decrypt_round_trip() {
    let e = env();
    let v = e.ok(
        ROOT,
        "CreateKey",
        json!({ "Description": "first", "Tags": [{ "TagKey": "team", "TagValue": "a" }] }),
    );
    let md = &v["KeyMetadata"];
    let id = md["KeyId"].as_str().unwrap();
    assert_eq!(md["Arn"], format!("arn:aws:kms:local:{ACCOUNT}:key/{id}"));
    assert_eq!(md["AWSAccountId"], ACCOUNT);
    assert_eq!(md["KeyState"], "Enabled");
    assert_eq!(md["Enabled"], true);
    assert_eq!(md["KeyManager"], "CUSTOMER");
    assert_eq!(md["Origin"], "AWS_KMS");
    assert_eq!(md["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(md["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(md["CreationDate"], START);
    assert_eq!(md["MultiRegion"], false);
    let d = e.ok(ROOT, "DescribeKey", json!({ "KeyId": md["Arn"] }));
    assert_eq!(d["KeyMetadata"]["Description"], "first");
    // The default policy is AWS's root statement.
    let p = e.ok(ROOT, "GetKeyPolicy", json!({ "KeyId": id }));
    assert!(p["Policy"]
        .as_str()
        .unwrap()
        .contains("Enable IAM User Permissions"));
    let blob = e.encrypt(ROOT, id, b"attack at dawn").unwrap();
    assert_eq!(e.decrypt(ROOT, &blob).unwrap(), b"attack at dawn");
    // The context is bound: a different one fails, the same one works.
    let c = e.ok(
        ROOT,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": { "volume": "v1" } }),
    );
    let blob2 = c["CiphertextBlob"].as_str().unwrap();
    assert_kind(
        &e.fails(ROOT, "Decrypt", json!({ "CiphertextBlob": blob2 })),
        ErrorKind::InvalidCiphertext,
    );
    let ok = e.ok(
        ROOT,
        "Decrypt",
        json!({ "CiphertextBlob": blob2, "EncryptionContext": { "volume": "v1" } }),
    );
    assert_eq!(unb64(ok["Plaintext"].as_str().unwrap()), b"x");
    // KeyId naming another key: IncorrectKeyException.
    let other = e.ok(ROOT, "CreateKey", json!({}))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_kind(
        &e.fails(
            ROOT,
            "Decrypt",
            json!({ "CiphertextBlob": blob, "KeyId": other }),
        ),
        ErrorKind::IncorrectKey,
    );
    let tags = e.ok(ROOT, "ListResourceTags", json!({ "KeyId": id }));
    assert_eq!(tags["Tags"], json!([{ "TagKey": "team", "TagValue": "a" }]));
    let keys = e.ok(ROOT, "ListKeys", json!({}));
    assert!(keys["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["KeyId"] == id));
    assert_eq!(keys["Truncated"], false);
}

#[test]
fn admin_can_disable_rotate_and_schedule_deletion_but_cannot_decrypt() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"secret").unwrap();
    let denied = e.fails(ADMIN, "Decrypt", json!({ "CiphertextBlob": blob }));
    assert_kind(&denied, ErrorKind::AccessDenied);
    assert!(
        denied.message.contains("user/admin") && denied.message.contains("kms:Decrypt"),
        "{denied}"
    );
    assert_kind(
        &e.encrypt(ADMIN, &id, b"x").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "GenerateDataKey",
            json!({ "KeyId": id, "KeySpec": "AES_256" }),
        ),
        ErrorKind::AccessDenied,
    );
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": id }));
    assert_eq!(
        e.ok(ADMIN, "DescribeKey", json!({ "KeyId": id }))["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    e.ok(ADMIN, "EnableKey", json!({ "KeyId": id }));
    e.ok(
        ADMIN,
        "EnableKeyRotation",
        json!({ "KeyId": id, "RotationPeriodInDays": 180 }),
    );
    let st = e.ok(ADMIN, "GetKeyRotationStatus", json!({ "KeyId": id }));
    assert_eq!(st["KeyRotationEnabled"], true);
    assert_eq!(st["RotationPeriodInDays"], 180);
    assert_eq!(st["NextRotationDate"], START + 180 * 86_400);
    e.ok(ADMIN, "RotateKeyOnDemand", json!({ "KeyId": id }));
    let s = e.ok(
        ADMIN,
        "ScheduleKeyDeletion",
        json!({ "KeyId": id, "PendingWindowInDays": 7 }),
    );
    assert_eq!(s["KeyState"], "PendingDeletion");
    assert_eq!(s["DeletionDate"], START + 7 * 86_400);
    e.ok(ADMIN, "CancelKeyDeletion", json!({ "KeyId": id }));
    assert_eq!(
        e.ok(ADMIN, "DescribeKey", json!({ "KeyId": id }))["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    // Still no Decrypt after all that administration.
    e.ok(ADMIN, "EnableKey", json!({ "KeyId": id }));
    assert_kind(
        &e.decrypt(ADMIN, &blob).unwrap_err(),
        ErrorKind::AccessDenied,
    );
    assert_eq!(e.decrypt(ALICE, &blob).unwrap(), b"secret");
}

#[test]
fn user_decrypts_but_cannot_change_the_key_policy_or_disable() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"data").unwrap();
    assert_eq!(e.decrypt(ALICE, &blob).unwrap(), b"data");
    let err = e.fails(
        ALICE,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": split_policy() }),
    );
    assert_kind(&err, ErrorKind::AccessDenied);
    assert_kind(
        &e.fails(ALICE, "DisableKey", json!({ "KeyId": id })),
        ErrorKind::AccessDenied,
    );
    assert_kind(
        &e.fails(ALICE, "ScheduleKeyDeletion", json!({ "KeyId": id })),
        ErrorKind::AccessDenied,
    );
    // Nobody listed: bob and an unmapped uid.
    assert_kind(&e.decrypt(BOB, &blob).unwrap_err(), ErrorKind::AccessDenied);
    assert_kind(
        &e.decrypt(STRANGER, &blob).unwrap_err(),
        ErrorKind::AccessDenied,
    );
}

#[test]
fn grant_gives_access_and_revoke_removes_it_at_once() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"shared").unwrap();
    assert_kind(&e.decrypt(BOB, &blob).unwrap_err(), ErrorKind::AccessDenied);
    let g = e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt"] }),
    );
    let grant_id = g["GrantId"].as_str().unwrap().to_string();
    assert!(g["GrantToken"].as_str().is_some());
    assert_eq!(e.decrypt(BOB, &blob).unwrap(), b"shared");
    // The grant allows only its operations.
    assert_kind(
        &e.encrypt(BOB, &id, b"x").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    let list = e.ok(ADMIN, "ListGrants", json!({ "KeyId": id }));
    let grants = list["Grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["GranteePrincipal"], arn("bob"));
    assert_eq!(grants[0]["Operations"], json!(["Decrypt"]));
    assert_eq!(
        grants[0]["IssuingAccount"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    e.ok(
        ADMIN,
        "RevokeGrant",
        json!({ "KeyId": id, "GrantId": grant_id }),
    );
    assert_kind(&e.decrypt(BOB, &blob).unwrap_err(), ErrorKind::AccessDenied);
    assert_kind(
        &e.fails(
            ADMIN,
            "RevokeGrant",
            json!({ "KeyId": id, "GrantId": grant_id }),
        ),
        ErrorKind::NotFound,
    );
}

#[test]
fn grant_constraints_and_name_idempotency() {
    let e = env();
    let id = e.split_key();
    let req = json!({
        "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt", "Encrypt"], "Name": "bob-vol1",
        "Constraints": { "EncryptionContextSubset": { "volume": "v1" } }
    });
    let g1 = e.ok(ADMIN, "CreateGrant", req.clone());
    let g2 = e.ok(ADMIN, "CreateGrant", req);
    assert_eq!(
        g1["GrantId"], g2["GrantId"],
        "same name and parameters return the same grant"
    );
    let ok = e.call(BOB, "Encrypt", json!({ "KeyId": id, "Plaintext": b64(b"a"), "EncryptionContext": { "volume": "v1", "file": "f" } }));
    assert!(ok.is_ok(), "{ok:?}");
    let err = e.fails(
        BOB,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"a"), "EncryptionContext": { "volume": "v2" } }),
    );
    assert_kind(&err, ErrorKind::AccessDenied);
    // Invalid grants.
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateGrant",
            json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Sign"] }),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateGrant",
            json!({ "KeyId": id, "GranteePrincipal": "bob", "Operations": ["Decrypt"] }),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateGrant",
            json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": [] }),
        ),
        ErrorKind::Validation,
    );
}

#[test]
fn a_grant_with_create_grant_can_only_pass_on_a_subset() {
    let e = env();
    let id = e.split_key();
    e.ok(ADMIN, "CreateGrant", json!({
        "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["CreateGrant", "Decrypt", "DescribeKey"],
        "Constraints": { "EncryptionContextSubset": { "team": "red" } }
    }));
    // bob holds CreateGrant only through the grant: subset and same-or-stricter constraints.
    let sub = e.call(
        BOB,
        "CreateGrant",
        json!({
            "KeyId": id, "GranteePrincipal": arn("alice"), "Operations": ["Decrypt"],
            "Constraints": { "EncryptionContextSubset": { "team": "red", "app": "x" } }
        }),
    );
    assert!(sub.is_ok(), "{sub:?}");
    let wider = e.fails(
        BOB,
        "CreateGrant",
        json!({
            "KeyId": id, "GranteePrincipal": arn("alice"), "Operations": ["Decrypt", "Encrypt"],
            "Constraints": { "EncryptionContextSubset": { "team": "red" } }
        }),
    );
    assert_kind(&wider, ErrorKind::AccessDenied);
    let looser = e.fails(
        BOB,
        "CreateGrant",
        json!({
            "KeyId": id, "GranteePrincipal": arn("alice"), "Operations": ["Decrypt"]
        }),
    );
    assert_kind(&looser, ErrorKind::AccessDenied);
}

#[test]
fn retire_grant_follows_aws_rules() {
    let e = env();
    let id = e.split_key();
    let key_arn = format!("arn:aws:kms:local:{ACCOUNT}:key/{id}");
    let mk = |ops: serde_json::Value, retiring: Option<String>| {
        let mut req = json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ops });
        if let Some(r) = retiring {
            req["RetiringPrincipal"] = json!(r);
        }
        let g = e.ok(ADMIN, "CreateGrant", req);
        (
            g["GrantId"].as_str().unwrap().to_string(),
            g["GrantToken"].as_str().unwrap().to_string(),
        )
    };
    // Grantee without RetireGrant: may not; the retiring principal may.
    let (g1, t1) = mk(json!(["Decrypt"]), Some(arn("alice")));
    assert_kind(
        &e.fails(BOB, "RetireGrant", json!({ "GrantToken": t1 })),
        ErrorKind::AccessDenied,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "RetireGrant",
            json!({ "KeyId": key_arn, "GrantId": g1 }),
        ),
        ErrorKind::AccessDenied,
    );
    e.ok(
        ALICE,
        "RetireGrant",
        json!({ "KeyId": key_arn, "GrantId": g1 }),
    );
    // Grantee with RetireGrant among its operations: may.
    let (_, t2) = mk(json!(["Decrypt", "RetireGrant"]), None);
    e.ok(BOB, "RetireGrant", json!({ "GrantToken": t2 }));
    // The account root may retire any grant of its account.
    let (g3, _) = mk(json!(["Decrypt"]), None);
    e.ok(ROOT, "RetireGrant", json!({ "KeyId": id, "GrantId": g3 }));
    assert!(e.ok(ADMIN, "ListGrants", json!({ "KeyId": id }))["Grants"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_kind(
        &e.fails(ROOT, "RetireGrant", json!({ "GrantToken": "garbage" })),
        ErrorKind::InvalidGrantToken,
    );
    // ListRetirableGrants.
    mk(json!(["Decrypt"]), Some(arn("alice")));
    let l = e.ok(
        ROOT,
        "ListRetirableGrants",
        json!({ "RetiringPrincipal": arn("alice") }),
    );
    assert_eq!(l["Grants"].as_array().unwrap().len(), 1);
}

#[test]
fn rotation_keeps_old_ciphertexts_readable_and_new_ones_use_the_new_version() {
    let e = env();
    let id = e.split_key();
    e.ok(
        ADMIN,
        "EnableKeyRotation",
        json!({ "KeyId": id, "RotationPeriodInDays": 90 }),
    );
    let old = e.encrypt(ALICE, &id, b"old").unwrap();
    e.clock.advance_days(89);
    e.svc.tick().unwrap();
    assert!(
        e.ok(ADMIN, "ListKeyRotations", json!({ "KeyId": id }))["Rotations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(service_events(&e, "RotateKey"), 0);
    e.clock.advance_days(2);
    e.svc.tick().unwrap();
    // The automatic rotation is recorded as AWS records it: a RotateKey service event.
    assert_eq!(service_events(&e, "RotateKey"), 1);
    let rots = e.ok(ADMIN, "ListKeyRotations", json!({ "KeyId": id }));
    assert_eq!(rots["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(rots["Rotations"][0]["RotationType"], "AUTOMATIC");
    let new = e.encrypt(ALICE, &id, b"new").unwrap();
    let version = |b: &str| u32::from_be_bytes(unb64(b)[40..44].try_into().unwrap());
    assert_eq!(version(&old), 1);
    assert_eq!(version(&new), 2);
    assert_eq!(e.decrypt(ALICE, &old).unwrap(), b"old");
    assert_eq!(e.decrypt(ALICE, &new).unwrap(), b"new");
    // Next automatic rotation counts from this one.
    let st = e.ok(ADMIN, "GetKeyRotationStatus", json!({ "KeyId": id }));
    assert_eq!(st["NextRotationDate"], START + 91 * 86_400 + 90 * 86_400);
    // On demand: version 3; old ones still fine.
    e.ok(ADMIN, "RotateKeyOnDemand", json!({ "KeyId": id }));
    assert_eq!(version(&e.encrypt(ALICE, &id, b"x").unwrap()), 3);
    assert_eq!(e.decrypt(ALICE, &old).unwrap(), b"old");
}

#[test]
fn deletion_window_then_not_found_and_material_gone_from_disk() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"doomed").unwrap();
    let material = e.store().join("material").join(&id);
    assert!(material.join("v1").exists());
    e.ok(
        ADMIN,
        "ScheduleKeyDeletion",
        json!({ "KeyId": id, "PendingWindowInDays": 7 }),
    );
    assert_kind(
        &e.decrypt(ALICE, &blob).unwrap_err(),
        ErrorKind::KmsInvalidState,
    );
    e.clock.advance_days(6);
    e.svc.tick().unwrap();
    assert!(material.exists(), "destroyed before the window ended");
    e.clock.advance_days(2);
    // Past the date the key is gone even before the next tick...
    assert_kind(
        &e.fails(ADMIN, "DescribeKey", json!({ "KeyId": id })),
        ErrorKind::NotFound,
    );
    assert_eq!(service_events(&e, "DeleteKey"), 0);
    e.svc.tick().unwrap();
    // ...and after it the sealed material is no longer on disk, and the deletion is
    // recorded as a DeleteKey service event.
    assert!(!material.exists());
    assert_eq!(service_events(&e, "DeleteKey"), 1);
    assert_kind(&e.decrypt(ALICE, &blob).unwrap_err(), ErrorKind::NotFound);
    assert_kind(
        &e.fails(ADMIN, "CancelKeyDeletion", json!({ "KeyId": id })),
        ErrorKind::NotFound,
    );
    let state = std::fs::read_to_string(e.store().join("state.json")).unwrap();
    assert!(!state.contains(&id));
    // Another process's view agrees.
    let other = e.reopen();
    assert_kind(
        &other
            .call(&ADMIN, "DescribeKey", json!({ "KeyId": id }))
            .unwrap_err(),
        ErrorKind::NotFound,
    );
}

#[test]
fn imported_material_lifecycle() {
    let e = env();
    let v = e.ok(ROOT, "CreateKey", json!({ "Origin": "EXTERNAL" }));
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    assert_eq!(v["KeyMetadata"]["KeyState"], "PendingImport");
    assert_eq!(v["KeyMetadata"]["Origin"], "EXTERNAL");
    assert_kind(
        &e.encrypt(ROOT, &id, b"x").unwrap_err(),
        ErrorKind::KmsInvalidState,
    );
    assert_kind(
        &e.fails(ROOT, "EnableKeyRotation", json!({ "KeyId": id })),
        ErrorKind::UnsupportedOperation,
    );
    // AWS withdrew PKCS #1 v1.5 wrapping; unknown values and missing members are
    // validation errors, as botocore's model makes both members required.
    let params = |alg: &str, spec: &str| json!({ "KeyId": id, "WrappingAlgorithm": alg, "WrappingKeySpec": spec });
    assert_kind(
        &e.fails(
            ROOT,
            "GetParametersForImport",
            params("RSAES_PKCS1_V1_5", "RSA_2048"),
        ),
        ErrorKind::UnsupportedOperation,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "GetParametersForImport",
            params("KMSFS_LOCAL_AES_256_GCM", "RSA_2048"),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "GetParametersForImport",
            params("RSAES_OAEP_SHA_256", "RSA_1024"),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(ROOT, "GetParametersForImport", json!({ "KeyId": id })),
        ErrorKind::Validation,
    );
    let material = [7u8; 32];
    let import = |mat: &[u8], extra: serde_json::Value| {
        let p = e.ok(
            ROOT,
            "GetParametersForImport",
            params("RSAES_OAEP_SHA_256", "RSA_2048"),
        );
        let wrapped = wrap_key_material(
            &unb64(p["PublicKey"].as_str().unwrap()),
            "RSAES_OAEP_SHA_256",
            mat,
        )
        .unwrap();
        let mut req = json!({ "KeyId": id, "ImportToken": p["ImportToken"], "EncryptedKeyMaterial": b64(&wrapped) });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        e.call(ROOT, "ImportKeyMaterial", req)
    };
    import(&material, json!({})).unwrap();
    assert_eq!(
        e.ok(ROOT, "DescribeKey", json!({ "KeyId": id }))["KeyMetadata"]["KeyState"],
        "Enabled"
    );
    let blob = e.encrypt(ROOT, &id, b"imported").unwrap();
    e.ok(ROOT, "DeleteImportedKeyMaterial", json!({ "KeyId": id }));
    assert_eq!(
        e.ok(ROOT, "DescribeKey", json!({ "KeyId": id }))["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    assert!(
        !e.store().join("material").join(&id).exists(),
        "deleted material still on disk"
    );
    assert_kind(
        &e.decrypt(ROOT, &blob).unwrap_err(),
        ErrorKind::KmsInvalidState,
    );
    // Other material is refused; the same material brings old ciphertexts back.
    assert_kind(
        &import(&[8u8; 32], json!({})).unwrap_err(),
        ErrorKind::IncorrectKeyMaterial,
    );
    import(
        &material,
        json!({ "ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": START + 86_400 }),
    )
    .unwrap();
    assert_eq!(e.decrypt(ROOT, &blob).unwrap(), b"imported");
    // ValidTo passes: PendingImport at once, material shredded at the next tick.
    e.clock.advance(86_401);
    assert_eq!(
        e.ok(ROOT, "DescribeKey", json!({ "KeyId": id }))["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    e.svc.tick().unwrap();
    assert!(!e.store().join("material").join(&id).exists());
    assert_eq!(service_events(&e, "DeleteExpiredKeyMaterial"), 1);
    // A token from an expired window is refused.
    let p = e.ok(
        ROOT,
        "GetParametersForImport",
        params("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048"),
    );
    e.clock.advance(86_401);
    let wrapped = wrap_key_material(
        &unb64(p["PublicKey"].as_str().unwrap()),
        "RSA_AES_KEY_WRAP_SHA_256",
        &material,
    )
    .unwrap();
    let err = e.fails(ROOT, "ImportKeyMaterial", json!({ "KeyId": id, "ImportToken": p["ImportToken"], "EncryptedKeyMaterial": b64(&wrapped) }));
    assert_kind(&err, ErrorKind::ExpiredImportToken);
    // Imported keys cannot use the AWS_KMS-only rotation; AWS_KMS keys cannot import.
    let normal = e.ok(ROOT, "CreateKey", json!({}))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_kind(
        &e.fails(ROOT, "GetParametersForImport", json!({ "KeyId": normal, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048" })),
        ErrorKind::UnsupportedOperation,
    );
}

#[test]
fn put_key_policy_runs_the_lockout_safety_check() {
    let e = env();
    let id = e.split_key();
    // A policy that no longer lets the admin (the caller) change the policy.
    let lockout = format!(
        r#"{{ "Version": "2012-10-17", "Statement": [
        {{ "Effect": "Allow", "Principal": {{ "AWS": "{}" }}, "Action": "kms:Decrypt", "Resource": "*" }} ] }}"#,
        arn("alice")
    );
    let err = e.fails(
        ADMIN,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": lockout }),
    );
    assert_kind(&err, ErrorKind::MalformedPolicyDocument);
    assert!(
        err.message
            .contains("will not allow you to update the key policy"),
        "{err}"
    );
    e.ok(
        ADMIN,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": lockout, "BypassPolicyLockoutSafetyCheck": true }),
    );
    assert_kind(
        &e.fails(ADMIN, "GetKeyPolicy", json!({ "KeyId": id })),
        ErrorKind::AccessDenied,
    );
    // Malformed documents are refused with the parser's message.
    let bad = e.fails(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": "{ not json" }),
    );
    assert_kind(&bad, ErrorKind::MalformedPolicyDocument);
    // CreateKey runs the check too.
    assert_kind(
        &e.fails(ROOT, "CreateKey", json!({ "Policy": lockout })),
        ErrorKind::MalformedPolicyDocument,
    );
}

#[test]
fn escalation_guard_refuses_self_grants_and_policies_unless_bypassed_and_audited() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"payroll").unwrap();
    let err = e.fails(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("admin"), "Operations": ["Decrypt"] }),
    );
    assert_kind(&err, ErrorKind::AccessDenied);
    assert!(
        err.message.contains("escalation guard") && err.message.contains("kms:Decrypt"),
        "{err}"
    );
    assert_kind(
        &e.decrypt(ADMIN, &blob).unwrap_err(),
        ErrorKind::AccessDenied,
    );
    // A policy that adds Decrypt for the admin is refused the same way.
    let widened = split_policy().replace(
        "\"kms:RotateKeyOnDemand\"",
        "\"kms:RotateKeyOnDemand\", \"kms:Decrypt\"",
    );
    let err = e.fails(
        ADMIN,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": widened }),
    );
    assert!(err.message.contains("escalation guard"), "{err}");
    // Granting to someone else is not self-escalation.
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt"] }),
    );
    // The admin may not bypass the guard: the refusal does not tell him how, and
    // asking for the bypass is refused for want of kmsfs:BypassEscalationGuard.
    assert!(!err.message.contains("AllowSelfEscalation"), "{err}");
    let self_grant = json!({ "KeyId": id, "GranteePrincipal": arn("admin"), "Operations": ["Decrypt"], "AllowSelfEscalation": true });
    let denied = e.fails(ADMIN, "CreateGrant", self_grant.clone());
    assert_kind(&denied, ErrorKind::AccessDenied);
    assert!(
        denied.message.contains("kmsfs:BypassEscalationGuard"),
        "{denied}"
    );
    // Nor may he give himself the bypass through the key policy: that is an escalation.
    let with_bypass = {
        let mut p: Value = serde_json::from_str(&split_policy()).unwrap();
        p["Statement"].as_array_mut().unwrap().push(json!({
            "Sid": "AdminMayBypass", "Effect": "Allow",
            "Principal": {"AWS": arn("admin")},
            "Action": "kmsfs:BypassEscalationGuard", "Resource": "*"
        }));
        p.to_string()
    };
    let err = e.fails(
        ADMIN,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": with_bypass }),
    );
    assert!(
        err.message.contains("escalation guard")
            && err.message.contains("kmsfs:BypassEscalationGuard"),
        "{err}"
    );
    // The account root may bypass by default, and delegates it to the admin.
    e.ok(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": with_bypass }),
    );
    let hinted = e.fails(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("admin"), "Operations": ["Decrypt"] }),
    );
    assert!(hinted.message.contains("AllowSelfEscalation"), "{hinted}");
    // With the explicit flag it goes through, and the audit log says so.
    e.ok(ADMIN, "CreateGrant", self_grant);
    assert_eq!(e.decrypt(ADMIN, &blob).unwrap(), b"payroll");
    let audit = e.audit_text();
    assert!(audit.contains("Bypassed"), "bypass not audited");
    let widened_with_bypass = with_bypass.replace(
        "\"kms:RotateKeyOnDemand\"",
        "\"kms:RotateKeyOnDemand\", \"kms:Decrypt\"",
    );
    e.ok(
        ADMIN,
        "PutKeyPolicy",
        json!({ "KeyId": id, "Policy": widened_with_bypass, "AllowSelfEscalation": true }),
    );
}

/// AWS's key state table, end to end: operation × state → success or exception.
#[test]
fn key_states_gate_operations_as_aws_documents() {
    let e = env();
    let ok = "ok";
    // (operation, Enabled, Disabled, PendingDeletion)
    let table: &[(&str, [&str; 3])] = &[
        (
            "Encrypt",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        (
            "Decrypt",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        (
            "GenerateDataKey",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        (
            "ReEncrypt",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        (
            "CreateGrant",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        ("DescribeKey", [ok, ok, ok]),
        ("GetKeyPolicy", [ok, ok, ok]),
        ("ListGrants", [ok, ok, ok]),
        (
            "EnableKeyRotation",
            [ok, "DisabledException", "KMSInvalidStateException"],
        ),
        ("UpdateKeyDescription", [ok, ok, "KMSInvalidStateException"]),
        ("TagResource", [ok, ok, "KMSInvalidStateException"]),
        ("CreateAlias", [ok, ok, "KMSInvalidStateException"]),
        ("DisableKey", [ok, ok, "KMSInvalidStateException"]),
        ("EnableKey", [ok, ok, "KMSInvalidStateException"]),
        ("ScheduleKeyDeletion", [ok, ok, "KMSInvalidStateException"]),
        (
            "CancelKeyDeletion",
            ["KMSInvalidStateException", "KMSInvalidStateException", ok],
        ),
    ];
    for (op, row) in table {
        for (col, want) in row.iter().enumerate() {
            let id = e.ok(ROOT, "CreateKey", json!({}))["KeyMetadata"]["KeyId"]
                .as_str()
                .unwrap()
                .to_string();
            let blob = e.encrypt(ROOT, &id, b"p").unwrap();
            match col {
                1 => {
                    e.ok(ROOT, "DisableKey", json!({ "KeyId": id }));
                }
                2 => {
                    e.ok(ROOT, "ScheduleKeyDeletion", json!({ "KeyId": id }));
                }
                _ => {}
            }
            let req = match *op {
                "Encrypt" => json!({ "KeyId": id, "Plaintext": b64(b"p") }),
                "Decrypt" => json!({ "CiphertextBlob": blob }),
                "ReEncrypt" => json!({ "CiphertextBlob": blob, "DestinationKeyId": id }),
                "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                    json!({ "KeyId": id, "KeySpec": "AES_256" })
                }
                "CreateGrant" => {
                    json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt"] })
                }
                "UpdateKeyDescription" => json!({ "KeyId": id, "Description": "d" }),
                "TagResource" => {
                    json!({ "KeyId": id, "Tags": [{ "TagKey": "k", "TagValue": "v" }] })
                }
                "CreateAlias" => {
                    json!({ "AliasName": format!("alias/t-{}", &id[..8]), "TargetKeyId": id })
                }
                _ => json!({ "KeyId": id }),
            };
            let got = match e.call(ROOT, op, req) {
                Ok(_) => ok.to_string(),
                Err(err) => kind(&err).to_string(),
            };
            let state = ["Enabled", "Disabled", "PendingDeletion"][col];
            assert_eq!(&got, want, "{op} on a {state} key");
        }
    }
}

#[test]
fn aliases_resolve_and_follow_aws_naming_rules() {
    let e = env();
    let id = e.split_key();
    e.ok(
        ADMIN,
        "CreateAlias",
        json!({ "AliasName": "alias/payroll", "TargetKeyId": id }),
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateAlias",
            json!({ "AliasName": "alias/payroll", "TargetKeyId": id }),
        ),
        ErrorKind::AlreadyExists,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateAlias",
            json!({ "AliasName": "alias/aws/x", "TargetKeyId": id }),
        ),
        ErrorKind::InvalidAliasName,
    );
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateAlias",
            json!({ "AliasName": "payroll", "TargetKeyId": id }),
        ),
        ErrorKind::InvalidAliasName,
    );
    let blob = e.encrypt(ALICE, "alias/payroll", b"via alias").unwrap();
    let alias_arn = format!("arn:aws:kms:local:{ACCOUNT}:alias/payroll");
    assert_eq!(
        e.ok(ALICE, "DescribeKey", json!({ "KeyId": alias_arn }))["KeyMetadata"]["KeyId"],
        id
    );
    assert_eq!(e.decrypt(ALICE, &blob).unwrap(), b"via alias");
    // Aliases are not accepted where AWS wants a key id.
    assert_kind(
        &e.fails(ADMIN, "DisableKey", json!({ "KeyId": "alias/payroll" })),
        ErrorKind::NotFound,
    );
    let l = e.ok(ADMIN, "ListAliases", json!({ "KeyId": id }));
    assert_eq!(l["Aliases"][0]["AliasName"], "alias/payroll");
    assert_eq!(l["Aliases"][0]["AliasArn"], alias_arn);
    let other = e.split_key();
    e.ok(
        ADMIN,
        "UpdateAlias",
        json!({ "AliasName": "alias/payroll", "TargetKeyId": other }),
    );
    assert_eq!(
        e.ok(ALICE, "DescribeKey", json!({ "KeyId": "alias/payroll" }))["KeyMetadata"]["KeyId"],
        other
    );
    e.ok(
        ADMIN,
        "DeleteAlias",
        json!({ "AliasName": "alias/payroll" }),
    );
    assert_kind(
        &e.fails(ALICE, "DescribeKey", json!({ "KeyId": "alias/payroll" })),
        ErrorKind::NotFound,
    );
}

#[test]
fn validation_errors_name_the_field() {
    let e = env();
    let id = e.split_key();
    let err = e.fails(ROOT, "Encrypt", json!({ "Plaintext": b64(b"x") }));
    assert_kind(&err, ErrorKind::Validation);
    assert!(err.message.contains("keyId"), "{err}");
    assert_kind(
        &e.fails(
            ROOT,
            "ScheduleKeyDeletion",
            json!({ "KeyId": id, "PendingWindowInDays": 6 }),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "EnableKeyRotation",
            json!({ "KeyId": id, "RotationPeriodInDays": 89 }),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(ROOT, "GenerateDataKey", json!({ "KeyId": id })),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "GenerateDataKey",
            json!({ "KeyId": id, "KeySpec": "AES_256", "NumberOfBytes": 32 }),
        ),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(ROOT, "Decrypt", json!({ "CiphertextBlob": b64(b"short") })),
        ErrorKind::InvalidCiphertext,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "CreateKey",
            json!({ "KeySpec": "ML_DSA_44", "KeyUsage": "SIGN_VERIFY" }),
        ),
        ErrorKind::UnsupportedOperation,
    );
    assert_kind(
        &e.fails(ROOT, "DescribeKey", json!({ "KeyId": "not-a-key" })),
        ErrorKind::NotFound,
    );
    assert_kind(
        &e.fails(ROOT, "NoSuchOperation", json!({})),
        ErrorKind::UnsupportedOperation,
    );
    let g = e.ok(
        ROOT,
        "GenerateDataKey",
        json!({ "KeyId": id, "NumberOfBytes": 64 }),
    );
    assert_eq!(unb64(g["Plaintext"].as_str().unwrap()).len(), 64);
    let r = e.ok(ROOT, "GenerateRandom", json!({ "NumberOfBytes": 16 }));
    assert_eq!(unb64(r["Plaintext"].as_str().unwrap()).len(), 16);
}

#[test]
fn list_operations_paginate_with_markers() {
    let e = env();
    for _ in 0..3 {
        e.ok(ROOT, "CreateKey", json!({}));
    }
    // Three customer keys plus the default key.
    let p1 = e.ok(ROOT, "ListKeys", json!({ "Limit": 3 }));
    assert_eq!(p1["Keys"].as_array().unwrap().len(), 3);
    assert_eq!(p1["Truncated"], true);
    let p2 = e.ok(
        ROOT,
        "ListKeys",
        json!({ "Limit": 3, "Marker": p1["NextMarker"] }),
    );
    assert_eq!(p2["Keys"].as_array().unwrap().len(), 1);
    assert_eq!(p2["Truncated"], false);
    assert!(p2.get("NextMarker").is_none());
    assert_kind(
        &e.fails(ROOT, "ListKeys", json!({ "Marker": "bogus" })),
        ErrorKind::InvalidMarker,
    );
    assert_kind(
        &e.fails(ROOT, "ListKeys", json!({ "Limit": 0 })),
        ErrorKind::Validation,
    );
}

#[test]
fn dry_run_authorizes_without_acting() {
    let e = env();
    let id = e.split_key();
    let err = e.fails(
        ALICE,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x"), "DryRun": true }),
    );
    assert_kind(&err, ErrorKind::DryRunOperation);
    // A caller who would be denied gets the denial, not the dry-run answer.
    let err = e.fails(
        ADMIN,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x"), "DryRun": true }),
    );
    assert_kind(&err, ErrorKind::AccessDenied);
    let err = e.fails(ADMIN, "CreateGrant", json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt"], "DryRun": true }));
    assert_kind(&err, ErrorKind::DryRunOperation);
    assert!(e.ok(ADMIN, "ListGrants", json!({ "KeyId": id }))["Grants"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn re_encrypt_needs_both_sides_and_moves_the_ciphertext() {
    let e = env();
    let a = e.split_key();
    let b = e.split_key();
    let blob = e.ok(
        ALICE,
        "Encrypt",
        json!({ "KeyId": a, "Plaintext": b64(b"move me"), "EncryptionContext": { "k": "1" } }),
    )["CiphertextBlob"]
        .clone();
    let r = e.ok(
        ALICE,
        "ReEncrypt",
        json!({
            "CiphertextBlob": blob, "SourceEncryptionContext": { "k": "1" },
            "DestinationKeyId": b, "DestinationEncryptionContext": { "k": "2" }
        }),
    );
    assert!(r["SourceKeyId"].as_str().unwrap().ends_with(&a));
    assert!(r["KeyId"].as_str().unwrap().ends_with(&b));
    let d = e.ok(
        ALICE,
        "Decrypt",
        json!({ "CiphertextBlob": r["CiphertextBlob"], "EncryptionContext": { "k": "2" } }),
    );
    assert_eq!(unb64(d["Plaintext"].as_str().unwrap()), b"move me");
    // Bob may decrypt on the source through a grant, but has no ReEncryptTo on b.
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": a, "GranteePrincipal": arn("bob"), "Operations": ["ReEncryptFrom"] }),
    );
    let err = e.fails(BOB, "ReEncrypt", json!({ "CiphertextBlob": blob, "SourceEncryptionContext": { "k": "1" }, "DestinationKeyId": b }));
    assert_kind(&err, ErrorKind::AccessDenied);
    assert!(err.message.contains("kms:ReEncryptTo"), "{err}");
}

#[test]
fn concurrent_data_calls_and_rotations_on_one_service() {
    let e = env();
    let id = e.split_key();
    let blobs: Vec<String> = (0..4)
        .map(|i| e.encrypt(ALICE, &id, format!("p{i}").as_bytes()).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let e = &e;
            let blobs = &blobs;
            let id = id.clone();
            s.spawn(move || {
                for i in 0..40 {
                    let b = &blobs[(t + i) % blobs.len()];
                    let want = format!("p{}", (t + i) % blobs.len());
                    assert_eq!(e.decrypt(ALICE, b).unwrap(), want.as_bytes());
                    let fresh = e.encrypt(ALICE, &id, b"fresh").unwrap();
                    assert_eq!(e.decrypt(ALICE, &fresh).unwrap(), b"fresh");
                }
            });
        }
        s.spawn(|| {
            for _ in 0..5 {
                e.ok(ADMIN, "RotateKeyOnDemand", json!({ "KeyId": id }));
            }
        });
    });
    assert_eq!(
        e.ok(ADMIN, "ListKeyRotations", json!({ "KeyId": id }))["Rotations"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn tags_drive_abac_conditions() {
    let e = env();
    // Alice may decrypt with any key tagged team=red (aws:ResourceTag), via her IAM policy.
    let alice_iam = r#"{ "Version": "2012-10-17", "Statement": [
        { "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
          "Condition": { "StringEquals": { "aws:ResourceTag/team": "red" } } } ] }"#;
    std::fs::write(e.store().join("alice.json"), alice_iam).unwrap();
    let principals =
        PRINCIPALS.replace("uid = 2002\n", "uid = 2002\npolicies = [\"alice.json\"]\n");
    std::fs::write(e.store().join("principals.toml"), principals).unwrap();
    let red = e.ok(
        ROOT,
        "CreateKey",
        json!({ "Tags": [{ "TagKey": "team", "TagValue": "red" }] }),
    )["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let blue = e.ok(
        ROOT,
        "CreateKey",
        json!({ "Tags": [{ "TagKey": "team", "TagValue": "blue" }] }),
    )["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.encrypt(ALICE, &red, b"x").is_ok());
    assert_kind(
        &e.encrypt(ALICE, &blue, b"x").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    // Retagging changes access at once.
    e.ok(
        ROOT,
        "TagResource",
        json!({ "KeyId": blue, "Tags": [{ "TagKey": "team", "TagValue": "red" }] }),
    );
    assert!(e.encrypt(ALICE, &blue, b"x").is_ok());
    // Reserved tag keys are refused.
    let err = e.fails(
        ROOT,
        "TagResource",
        json!({ "KeyId": red, "Tags": [{ "TagKey": "aws:x", "TagValue": "y" }] }),
    );
    assert_kind(&err, ErrorKind::Tag);
    // The admin's IAM policy has no kms:TagResource: CreateKey with tags is refused.
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateKey",
            json!({ "Tags": [{ "TagKey": "a", "TagValue": "b" }] }),
        ),
        ErrorKind::AccessDenied,
    );
    assert!(e.call(ADMIN, "CreateKey", json!({})).is_ok());
}

/// Audit records of service events (no caller) named `name`.
fn service_events(e: &Env, name: &str) -> usize {
    e.audit_text()
        .lines()
        .filter(|l| l.contains(&format!("\"eventName\":\"{name}\"")))
        .filter(|l| l.contains("\"type\":\"AWSService\""))
        .count()
}
