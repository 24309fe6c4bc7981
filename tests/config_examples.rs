//! The example policies shipped in config/policies/ parse, and decide what their names
//! promise: a key administrator manages but cannot decrypt, a key user uses but cannot
//! manage, the drop box writes but cannot read, and the other account needs both sides.
//! Files named `*-key-policy.json` are key policies; the others are identity policies.

use kmsfs::policy::{
    evaluate, Decision, IdentityPolicy, PolicyDocument, Principal, Request, RequestContext,
};
use std::path::{Path, PathBuf};

const KEY: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
const DAVE: &str = "arn:aws:iam::444455556666:user/dave";
const ROOT: &str = "arn:aws:iam::111122223333:root";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policies")
}

fn load(name: &str) -> PolicyDocument {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    if name.ends_with("-key-policy.json") {
        PolicyDocument::parse(&text)
    } else {
        PolicyDocument::parse_identity(&text)
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn identity(names: &[&str]) -> Vec<IdentityPolicy> {
    names
        .iter()
        .map(|n| IdentityPolicy {
            name: n.to_string(),
            document: load(n),
        })
        .collect()
}

fn decide(
    key_policy: &str,
    who: &str,
    ids: &[&str],
    action: &str,
    ctx: &[(&str, &str)],
) -> Decision {
    let principal = Principal {
        arn: Some(who.to_string()),
        account: who.split(':').nth(4).unwrap().to_string(),
        uid: None,
        gid: None,
    };
    let mut context = RequestContext::new();
    for (k, v) in ctx {
        context.set(k, *v);
    }
    let req = Request {
        principal: &principal,
        action,
        resource: KEY,
        resource_account: "111122223333",
        encryption_context: None,
        context: &context,
        now: 1_767_225_600,
    };
    evaluate(&req, &load(key_policy), &identity(ids), &[]).decision
}

use Decision::{Allowed, ImplicitDeny};

#[test]
fn every_example_policy_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            load(path.file_name().unwrap().to_str().unwrap());
            n += 1;
        }
    }
    assert!(n >= 6, "expected the six example policies, found {n}");
}

#[test]
fn example_key_policy_admin_manages_but_cannot_decrypt() {
    let kp = "example-key-policy.json";
    assert_eq!(decide(kp, BOB, &[], "kms:PutKeyPolicy", &[]), Allowed);
    assert_eq!(
        decide(kp, BOB, &[], "kms:ScheduleKeyDeletion", &[]),
        Allowed
    );
    assert_eq!(decide(kp, BOB, &[], "kms:CreateGrant", &[]), Allowed);
    assert_eq!(decide(kp, BOB, &[], "kms:Decrypt", &[]), ImplicitDeny);
    assert_eq!(
        decide(kp, BOB, &[], "kms:Decrypt", &[("kms:ViaService", "kmsfs")]),
        ImplicitDeny
    );
    assert_eq!(
        decide(kp, BOB, &[], "kms:GenerateDataKey", &[]),
        ImplicitDeny
    );
}

#[test]
fn example_key_policy_user_decrypts_but_cannot_manage() {
    let kp = "example-key-policy.json";
    assert_eq!(decide(kp, ALICE, &[], "kms:Decrypt", &[]), Allowed);
    assert_eq!(decide(kp, ALICE, &[], "kms:GenerateDataKey", &[]), Allowed);
    assert_eq!(
        decide(kp, ALICE, &[], "kms:PutKeyPolicy", &[]),
        ImplicitDeny
    );
    assert_eq!(
        decide(
            kp,
            ALICE,
            &[],
            "kms:CreateGrant",
            &[("kms:GrantIsForAWSResource", "true")]
        ),
        Allowed
    );
    assert_eq!(decide(kp, ALICE, &[], "kms:CreateGrant", &[]), ImplicitDeny);
}

#[test]
fn example_key_policy_drop_box_writes_but_cannot_read() {
    let kp = "example-key-policy.json";
    assert_eq!(decide(kp, CAROL, &[], "kms:Encrypt", &[]), Allowed);
    assert_eq!(decide(kp, CAROL, &[], "kms:GenerateDataKey", &[]), Allowed);
    assert_eq!(decide(kp, CAROL, &[], "kms:Decrypt", &[]), ImplicitDeny);
}

#[test]
fn example_key_policy_other_account_needs_both_sides() {
    let kp = "example-key-policy.json";
    assert_eq!(
        decide(kp, DAVE, &["cross-account-user.json"], "kms:Decrypt", &[]),
        Allowed
    );
    assert_eq!(decide(kp, DAVE, &[], "kms:Decrypt", &[]), ImplicitDeny);
    assert_eq!(
        decide(
            kp,
            DAVE,
            &["cross-account-user.json"],
            "kms:PutKeyPolicy",
            &[]
        ),
        ImplicitDeny
    );
    // The same identity policy is useless against a key policy that does not name the account.
    assert_eq!(
        decide(
            "default-key-policy.json",
            DAVE,
            &["cross-account-user.json"],
            "kms:Decrypt",
            &[]
        ),
        ImplicitDeny
    );
}

#[test]
fn default_key_policy_delegates_to_the_identity_policies() {
    let kp = "default-key-policy.json";
    assert_eq!(decide(kp, ROOT, &[], "kms:PutKeyPolicy", &[]), Allowed);
    assert_eq!(decide(kp, ALICE, &[], "kms:Decrypt", &[]), ImplicitDeny);

    assert_eq!(
        decide(kp, BOB, &["key-admin.json"], "kms:PutKeyPolicy", &[]),
        Allowed
    );
    assert_eq!(
        decide(kp, BOB, &["key-admin.json"], "kms:Decrypt", &[]),
        ImplicitDeny
    );

    assert_eq!(
        decide(kp, ALICE, &["key-user.json"], "kms:Decrypt", &[]),
        Allowed
    );
    assert_eq!(
        decide(kp, ALICE, &["key-user.json"], "kms:PutKeyPolicy", &[]),
        ImplicitDeny
    );
    assert_eq!(
        decide(
            kp,
            ALICE,
            &["key-user.json"],
            "kms:CreateGrant",
            &[("kms:GrantIsForAWSResource", "true")]
        ),
        Allowed
    );
    assert_eq!(
        decide(kp, ALICE, &["key-user.json"], "kms:CreateGrant", &[]),
        ImplicitDeny
    );

    assert_eq!(
        decide(kp, CAROL, &["drop-box.json"], "kms:Encrypt", &[]),
        Allowed
    );
    assert_eq!(
        decide(kp, CAROL, &["drop-box.json"], "kms:Decrypt", &[]),
        ImplicitDeny
    );
}
