//! Tests of the grant operations (kept apart from `ops_grants.rs` so the operations read
//! on one screen).
use super::*;
use crate::kms::provider::Caller;
use crate::kms::{init_store, RootKeySource, ServiceConfig, TestClock};
use std::sync::Arc;

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};
const ADMIN: Caller = Caller {
    uid: 4001,
    gid: 4001,
    pid: 2,
};
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const ADMIN_ARN: &str = "arn:aws:iam::111122223333:user/admin";

/// A store whose principals file maps uid 4001 to an admin whose identity policy
/// allows kms:Decrypt (which counts only where the key policy delegates to IAM).
fn service() -> (tempfile::TempDir, Arc<Service>) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = ServiceConfig {
        store_dir: store.clone(),
        principals_path: None,
        root_key: RootKeySource::KeyFile(store.join("root.key")),
        clock: Arc::new(TestClock::new(1_800_000_000)),
    };
    assert!(init_store(&cfg).unwrap());
    std::fs::write(
        store.join("principals.toml"),
        format!(
            "account = \"111122223333\"\n[[principal]]\narn = \"{ADMIN_ARN}\"\nuid = 4001\npolicies = [\"admin.json\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        store.join("admin.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#,
    )
    .unwrap();
    (dir, Service::open(cfg).unwrap())
}

fn key(svc: &Service, policy: Option<String>) -> String {
    let mut req = json!({});
    if let Some(p) = policy {
        req["Policy"] = json!(p);
    }
    let v = svc.call(&ROOT, act::CREATE_KEY.name, req).unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

fn grant_id(svc: &Service, who: &Caller, req: Value) -> Result<String, KmsError> {
    svc.call(who, act::CREATE_GRANT.name, req)
        .map(|v| v["GrantId"].as_str().unwrap().to_string())
}

#[test]
fn a_name_returns_the_existing_grant_only_for_identical_parameters() {
    let (_dir, svc) = service();
    let id = key(&svc, None);
    let base = json!({
        "KeyId": id, "GranteePrincipal": ALICE, "Operations": ["Decrypt", "Encrypt"],
        "RetiringPrincipal": BOB, "Name": "n1",
        "Constraints": {"EncryptionContextSubset": {"volume": "v1"}}
    });
    let first = grant_id(&svc, &ROOT, base.clone()).unwrap();
    // AWS: a retry with identical parameters returns the original GrantId; the
    // operations are a set, so their order does not matter.
    let mut same = base.clone();
    same["Operations"] = json!(["Encrypt", "Decrypt"]);
    assert_eq!(grant_id(&svc, &ROOT, same).unwrap(), first);
    // Any other parameter makes it another grant, whatever its name.
    let variants = [
        ("GranteePrincipal", json!(BOB)),
        ("Operations", json!(["Decrypt"])),
        ("RetiringPrincipal", json!(ALICE)),
        (
            "Constraints",
            json!({"EncryptionContextSubset": {"volume": "v2"}}),
        ),
        (
            "Constraints",
            json!({"EncryptionContextEquals": {"volume": "v1"}}),
        ),
    ];
    let mut ids = vec![first.clone()];
    for (field, value) in variants {
        let mut req = base.clone();
        req[field] = value;
        let got = grant_id(&svc, &ROOT, req).unwrap();
        assert!(
            !ids.contains(&got),
            "{field} changed but the grant was reused"
        );
        ids.push(got);
    }
    let mut no_retiring = base.clone();
    no_retiring
        .as_object_mut()
        .unwrap()
        .remove("RetiringPrincipal");
    let got = grant_id(&svc, &ROOT, no_retiring).unwrap();
    assert!(
        !ids.contains(&got),
        "RetiringPrincipal dropped but the grant was reused"
    );
    let mut no_constraints = base.clone();
    no_constraints
        .as_object_mut()
        .unwrap()
        .remove("Constraints");
    let got = grant_id(&svc, &ROOT, no_constraints).unwrap();
    assert!(
        !ids.contains(&got),
        "Constraints dropped but the grant was reused"
    );
    // The same parameters under another name are another grant too.
    let mut renamed = base.clone();
    renamed["Name"] = json!("n2");
    let got = grant_id(&svc, &ROOT, renamed).unwrap();
    assert!(!ids.contains(&got), "another Name reused the grant");
    let listed = svc
        .call(&ROOT, act::LIST_GRANTS.name, json!({"KeyId": id}))
        .unwrap();
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 9);
}

#[test]
fn a_bare_account_id_grantee_is_accepted_and_serves_the_account() {
    let (_dir, svc) = service();
    let id = key(&svc, None);
    let g = grant_id(
        &svc,
        &ROOT,
        json!({"KeyId": id, "GranteePrincipal": "111122223333", "Operations": ["Decrypt"]}),
    )
    .unwrap();
    let listed = svc
        .call(
            &ROOT,
            act::LIST_GRANTS.name,
            json!({"KeyId": id, "GrantId": g}),
        )
        .unwrap();
    assert_eq!(listed["Grants"][0]["GranteePrincipal"], "111122223333");
    for bad in ["11112222333", "1111222233334", "11112222333a", "alice", ""] {
        let e = grant_id(
            &svc,
            &ROOT,
            json!({"KeyId": id, "GranteePrincipal": bad, "Operations": ["Decrypt"]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{bad:?}: {e}");
    }
    for ok in [
        "arn:aws:sts::111122223333:federated-user/carol",
        "arn:aws:sts::111122223333:assumed-role/Ops/s",
    ] {
        grant_id(
            &svc,
            &ROOT,
            json!({"KeyId": id, "GranteePrincipal": ok, "Operations": ["Decrypt"]}),
        )
        .unwrap();
    }
    for bad in [
        "arn:aws:sts::111122223333:assumed-role/Ops",
        "arn:aws:sts::111122223333:assumed-role/Ops/",
        "arn:aws:sts::111122223333:federated-user/",
    ] {
        let e = grant_id(
            &svc,
            &ROOT,
            json!({"KeyId": id, "GranteePrincipal": bad, "Operations": ["Decrypt"]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{bad:?}: {e}");
    }
}

#[test]
fn a_grant_to_the_callers_account_is_an_escalation() {
    let (_dir, svc) = service();
    // The admin may create grants but not decrypt: the key policy does not
    // delegate to IAM, so the admin's Decrypt identity policy counts only for a
    // grant to the account.
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:root"}},"Action":"kms:PutKeyPolicy","Resource":"*"}},
          {{"Sid":"Admin","Effect":"Allow","Principal":{{"AWS":"{ADMIN_ARN}"}},"Action":["kms:CreateGrant","kms:ListGrants"],"Resource":"*"}}]}}"#
    );
    let id = key(&svc, Some(policy));
    for grantee in ["111122223333", "arn:aws:iam::111122223333:root", ADMIN_ARN] {
        let e = grant_id(
            &svc,
            &ADMIN,
            json!({"KeyId": id, "GranteePrincipal": grantee, "Operations": ["Decrypt"]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied, "{grantee}: {e}");
        assert!(e.to_string().contains("escalation guard"), "{grantee}: {e}");
    }
    // Granting someone else is no escalation.
    grant_id(
        &svc,
        &ADMIN,
        json!({"KeyId": id, "GranteePrincipal": BOB, "Operations": ["Decrypt"]}),
    )
    .unwrap();
    // The bypass flag is no way round it either: bypassing needs
    // kmsfs:BypassEscalationGuard, which the administrator is not allowed.
    let e = grant_id(
        &svc,
        &ADMIN,
        json!({"KeyId": id, "GranteePrincipal": "111122223333", "Operations": ["Decrypt"], "AllowSelfEscalation": true}),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
    assert!(e.to_string().contains("kmsfs:BypassEscalationGuard"), "{e}");
}

fn tokens_req(tokens: &[String]) -> Value {
    json!({ "GrantTokens": tokens })
}

#[test]
fn grant_tokens_are_checked_and_limited_to_ten() {
    let kid = super::super::ciphertext::new_key_id().unwrap();
    let good = make_token(&kid, &"b".repeat(64)).unwrap();
    let ten = vec![good.clone(); MAX_GRANT_TOKENS];
    check_grant_tokens(&Req::new(&tokens_req(&ten)).unwrap()).unwrap();
    let eleven = vec![good.clone(); MAX_GRANT_TOKENS + 1];
    let e = check_grant_tokens(&Req::new(&tokens_req(&eleven)).unwrap()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e}");
    assert!(e.to_string().contains("at most 10 GrantTokens"), "{e}");
    check_grant_tokens(&Req::new(&json!({})).unwrap()).unwrap();
    let enc = |text: String| b64url().encode(text);
    let bad = [
        // A key id that is not a UUID, or not lowercase.
        enc(format!("{TOKEN_PREFIX}not-a-key:{}:00", "b".repeat(64))),
        enc(format!(
            "{TOKEN_PREFIX}{}:{}:00",
            kid.to_uppercase(),
            "b".repeat(64)
        )),
        // A grant id of the wrong length.
        enc(format!("{TOKEN_PREFIX}{kid}:{}:00", "b".repeat(63))),
        enc(format!("{TOKEN_PREFIX}{kid}:{}:00", "b".repeat(65))),
        // Missing or extra parts, another prefix, not base64url, not UTF-8.
        enc(format!("{TOKEN_PREFIX}{kid}:{}", "b".repeat(64))),
        enc(format!("{TOKEN_PREFIX}{kid}:{}:00:x", "b".repeat(64))),
        enc(format!("kmsfs-grant-v2:{kid}:{}:00", "b".repeat(64))),
        "not base64!".to_string(),
        b64url().encode([0xff, 0xfe, 0xfd]),
    ];
    // An empty token breaks the request's length bound (1..=8192), as in AWS.
    let e = check_grant_tokens(&Req::new(&tokens_req(&[String::new()])).unwrap()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e}");
    for t in bad {
        assert_eq!(
            parse_token(&t).unwrap_err().kind,
            ErrorKind::InvalidGrantToken,
            "{t}"
        );
        // One bad token among good ones fails the request.
        let mixed = vec![good.clone(), t.clone()];
        let e = check_grant_tokens(&Req::new(&tokens_req(&mixed)).unwrap()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidGrantToken, "{t}");
    }
}

#[test]
fn tokens_round_trip_and_garbage_is_refused() {
    let kid = super::super::ciphertext::new_key_id().unwrap();
    let gid = "a".repeat(64);
    let t = make_token(&kid, &gid).unwrap();
    assert_eq!(parse_token(&t).unwrap(), (kid, gid));
    assert_eq!(
        parse_token("nope").unwrap_err().kind,
        ErrorKind::InvalidGrantToken
    );
}

#[test]
fn child_constraints_must_be_at_least_as_strict() {
    let ctx = |pairs: &[(&str, &str)]| -> crate::policy::EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let sub = |p: &[(&str, &str)]| GrantConstraints {
        encryption_context_subset: Some(ctx(p)),
        encryption_context_equals: None,
    };
    let eq = |p: &[(&str, &str)]| GrantConstraints {
        encryption_context_equals: Some(ctx(p)),
        encryption_context_subset: None,
    };
    assert!(constraints_at_least_as_strict(None, None));
    assert!(!constraints_at_least_as_strict(
        Some(&sub(&[("a", "1")])),
        None
    ));
    assert!(constraints_at_least_as_strict(
        Some(&sub(&[("a", "1")])),
        Some(&sub(&[("a", "1"), ("b", "2")]))
    ));
    assert!(constraints_at_least_as_strict(
        Some(&sub(&[("a", "1")])),
        Some(&eq(&[("a", "1")]))
    ));
    assert!(!constraints_at_least_as_strict(
        Some(&eq(&[("a", "1")])),
        Some(&sub(&[("a", "1")]))
    ));
    assert!(!constraints_at_least_as_strict(
        Some(&sub(&[("a", "1")])),
        Some(&sub(&[("a", "2")]))
    ));
}

#[test]
fn grant_constraints_may_reach_aws_limits_but_not_pass_them() {
    let ctx = |pairs: usize, value: &str| -> crate::policy::EncryptionContext {
        (0..pairs)
            .map(|i| (format!("k{i}"), value.to_string()))
            .collect()
    };
    let name = "EncryptionContextSubset";
    check_constraint(name, None).unwrap();
    // AWS's limits are inclusive: 8 pairs, values of 384 characters (not bytes).
    check_constraint(name, Some(&ctx(MAX_CONSTRAINT_PAIRS, "v"))).unwrap();
    let longest = "é".repeat(MAX_CONSTRAINT_VALUE_CHARS);
    check_constraint(name, Some(&ctx(1, &longest))).unwrap();
    let too_many = check_constraint(name, Some(&ctx(MAX_CONSTRAINT_PAIRS + 1, "v"))).unwrap_err();
    assert_eq!(too_many.kind, ErrorKind::Validation, "{too_many}");
    let too_long = "v".repeat(MAX_CONSTRAINT_VALUE_CHARS + 1);
    let e = check_constraint(name, Some(&ctx(1, &too_long))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation, "{e}");
}

#[test]
fn list_grants_filters_by_grantee() {
    let (_dir, svc) = service();
    let id = key(&svc, None);
    let for_alice = grant_id(
        &svc,
        &ROOT,
        json!({"KeyId": id, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]}),
    )
    .unwrap();
    grant_id(
        &svc,
        &ROOT,
        json!({"KeyId": id, "GranteePrincipal": BOB, "Operations": ["Decrypt"]}),
    )
    .unwrap();
    let listed = svc
        .call(
            &ROOT,
            act::LIST_GRANTS.name,
            json!({"KeyId": id, "GranteePrincipal": ALICE}),
        )
        .unwrap();
    let grants = listed["Grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{listed}");
    assert_eq!(grants[0]["GrantId"], for_alice.as_str());
    assert_eq!(grants[0]["GranteePrincipal"], ALICE);
}
