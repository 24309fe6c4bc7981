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
const DROPBOX: &str = "arn:aws:iam::111122223333:user/dropbox";
/// The other account's user of config/principals.toml.
const CAROL_EXT: &str = "arn:aws:iam::444455556666:user/carol";
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
    assert_eq!(decide(kp, DROPBOX, &[], "kms:Encrypt", &[]), Allowed);
    assert_eq!(
        decide(kp, DROPBOX, &[], "kms:GenerateDataKey", &[]),
        Allowed
    );
    assert_eq!(decide(kp, DROPBOX, &[], "kms:Decrypt", &[]), ImplicitDeny);
}

#[test]
fn example_key_policy_other_account_needs_both_sides() {
    let kp = "example-key-policy.json";
    assert_eq!(
        decide(
            kp,
            CAROL_EXT,
            &["cross-account-user.json"],
            "kms:Decrypt",
            &[]
        ),
        Allowed
    );
    assert_eq!(decide(kp, CAROL_EXT, &[], "kms:Decrypt", &[]), ImplicitDeny);
    assert_eq!(
        decide(
            kp,
            CAROL_EXT,
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
            CAROL_EXT,
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
        decide(kp, DROPBOX, &["drop-box.json"], "kms:Encrypt", &[]),
        Allowed
    );
    assert_eq!(
        decide(kp, DROPBOX, &["drop-box.json"], "kms:Decrypt", &[]),
        ImplicitDeny
    );
}

/// The shipped principals file and the shipped policies agree: each uid gets the
/// decisions its comment in config/principals.toml promises.
#[test]
fn shipped_principals_file_maps_uids_to_the_intended_decisions() {
    let principals = kmsfs::principals::Principals::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/principals.toml"),
    )
    .unwrap();
    let ctx = RequestContext::new();
    let mut via_mount = RequestContext::new();
    via_mount.set("kms:ViaService", "kmsfs");
    let check = |uid: u32, gid: u32, kp: &str, action: &str, ctx: &RequestContext| {
        let who = principals.resolve(uid, gid);
        let req = Request {
            principal: &who.principal,
            action,
            resource: KEY,
            resource_account: "111122223333",
            encryption_context: None,
            context: ctx,
            now: 1_767_225_600,
        };
        evaluate(&req, &load(kp), &who.identity_policies, &[]).decision
    };
    let d = "default-key-policy.json";
    let x = "example-key-policy.json";
    // alice (1001): key user.
    assert_eq!(check(1001, 1001, d, "kms:Decrypt", &ctx), Allowed);
    assert_eq!(check(1001, 1001, d, "kms:PutKeyPolicy", &ctx), ImplicitDeny);
    // bob (1002): key administrator.
    assert_eq!(check(1002, 1002, d, "kms:PutKeyPolicy", &ctx), Allowed);
    assert_eq!(check(1002, 1002, d, "kms:Decrypt", &ctx), ImplicitDeny);
    assert_eq!(check(1002, 1002, x, "kms:Decrypt", &ctx), ImplicitDeny);
    // dropbox (1003): write-only.
    assert_eq!(check(1003, 1003, d, "kms:GenerateDataKey", &ctx), Allowed);
    assert_eq!(check(1003, 1003, d, "kms:Decrypt", &ctx), ImplicitDeny);
    assert_eq!(check(1003, 1003, x, "kms:Encrypt", &ctx), Allowed);
    // The ci role (gid 2000): decrypt only through the mount.
    assert_eq!(check(5000, 2000, d, "kms:Decrypt", &via_mount), Allowed);
    assert_eq!(check(5000, 2000, d, "kms:Decrypt", &ctx), ImplicitDeny);
    // carol of 444455556666 (1004): needs the key policy to name her account.
    assert_eq!(check(1004, 1004, x, "kms:Decrypt", &ctx), Allowed);
    assert_eq!(check(1004, 1004, d, "kms:Decrypt", &ctx), ImplicitDeny);
    // An unmapped uid is anonymous.
    assert_eq!(check(4242, 4242, x, "kms:Decrypt", &ctx), ImplicitDeny);
}

/// config/principals.toml carries its identity policies inline (so it works when copied
/// alone); they must stay the same documents as the files in config/policies/.
#[test]
fn shipped_principals_file_inlines_the_shipped_identity_policies() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/principals.toml"),
    )
    .unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    let entries = doc["principal"].as_array().unwrap();
    let expected = [
        (ALICE, "key-user.json"),
        (BOB, "key-admin.json"),
        (DROPBOX, "drop-box.json"),
        (CAROL_EXT, "cross-account-user.json"),
    ];
    for (who, file) in expected {
        let entry = entries
            .iter()
            .find(|e| e["arn"].as_str() == Some(who))
            .unwrap_or_else(|| panic!("{who} missing"));
        assert!(
            entry.get("policies").is_none(),
            "{who}: relative policy paths"
        );
        let inline: serde_json::Value =
            serde_json::from_str(entry["policy"].as_str().unwrap()).unwrap();
        let shipped: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir().join(file)).unwrap()).unwrap();
        assert_eq!(inline, shipped, "{who}: inline policy differs from {file}");
    }
}
