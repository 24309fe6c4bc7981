//! Creates through a real mount with the real key service: every new file's
//! GenerateDataKey is decided and audited before the reply, although a stream of creates
//! under one key shares one decision for any context (the decision cache, when the
//! decision read no part of the encryption context). A policy change applies to the
//! very next create, and a decision that depends on the context (here: on the volume
//! id) is made for every create. Needs root (FUSE, setpriv).

mod support;

use serde_json::{json, Value};
use support::e2e::*;

/// The key policy of the fixture with alice's GenerateDataKey statement replaced by
/// `alice_gdk` (and her other actions kept).
fn policy_with(alice_gdk: Value) -> String {
    let mut p: Value = serde_json::from_str(&key_policy()).unwrap();
    let sts = p["Statement"].as_array_mut().unwrap();
    for st in sts.iter_mut() {
        if st["Sid"] == "KeyUsers" {
            st["Action"] = json!(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]);
        }
    }
    sts.push(alice_gdk);
    p.to_string()
}

fn put_policy(f: &Fixture, policy: String) {
    f.kms(
        BOB,
        "PutKeyPolicy",
        json!({"KeyId": f.key_id, "PolicyName": "default", "Policy": policy}),
    )
    .unwrap();
}

/// GenerateDataKey records of alice so far: (allowed, file id of the context).
fn alice_creates(f: &Fixture) -> Vec<(bool, String)> {
    f.audit_lines()
        .into_iter()
        .filter(|r| r["eventName"] == "GenerateDataKey" && r["kmsfs"]["uid"] == ALICE)
        .map(|r| {
            (
                r["errorCode"].is_null(),
                r["requestParameters"]["EncryptionContext"]["kmsfs:file"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn every_create_is_decided_and_audited_and_a_change_applies_to_the_next_one() {
    let f = Fixture::new("create-decisions");
    f.sh(ALICE, &format!("mkdir {}", f.path("a").display()))
        .expect_ok();
    let create = |name: &str| f.sh(ALICE, &format!("echo {name} > {}", f.path(name).display()));
    // Many creates: each one its own record, each allowed, each file readable.
    for i in 0..6 {
        create(&format!("a/f{i}")).expect_ok();
    }
    let recs = alice_creates(&f);
    assert_eq!(recs.len(), 6, "one GenerateDataKey record per create");
    assert!(recs.iter().all(|(ok, _)| *ok));
    let mut ids: Vec<&String> = recs.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "each create's own context");
    for i in 0..6 {
        let got = f.sh(
            ALICE,
            &format!("cat {}", f.path(&format!("a/f{i}")).display()),
        );
        assert_eq!(got.expect_ok().trim(), format!("a/f{i}"));
    }

    // Revocation: alice may no longer generate data keys; the very next create fails,
    // and leaves no file behind.
    put_policy(
        &f,
        policy_with(json!({"Sid": "none", "Effect": "Allow",
        "Principal": {"AWS": arn("alice")}, "Action": "kms:DescribeKey", "Resource": "*"})),
    );
    create("a/g0").expect_err(EACCES);
    create("a/g1").expect_err(EACCES);
    assert!(!f.path("a/g0").exists() && !f.path("a/g1").exists());
    let recs = alice_creates(&f);
    assert_eq!(recs.len(), 8);
    assert!(!recs[6].0 && !recs[7].0, "the refusals are recorded");

    // Allowed only for files of this volume (a condition on the context): decided for
    // every create, and allowed.
    let volume = f
        .audit_lines()
        .into_iter()
        .find(|r| r["eventName"] == "GenerateDataKey" && r["kmsfs"]["uid"] == ALICE)
        .and_then(|r| {
            r["requestParameters"]["EncryptionContext"]["kmsfs:volume"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap();
    let cond = |v: &str| {
        json!({"Sid": "VolumeOnly", "Effect": "Allow", "Principal": {"AWS": arn("alice")},
               "Action": "kms:GenerateDataKey", "Resource": "*",
               "Condition": {"StringEquals": {"kms:EncryptionContext:kmsfs:volume": v}}})
    };
    put_policy(&f, policy_with(cond(&volume)));
    for i in 0..4 {
        create(&format!("a/h{i}")).expect_ok();
    }
    // Another volume's id: the next create is refused.
    put_policy(&f, policy_with(cond("another-volume")));
    create("a/h9").expect_err(EACCES);
    // Back to an unconditional allow: creates again, several in a row.
    put_policy(
        &f,
        policy_with(json!({"Sid": "All", "Effect": "Allow",
        "Principal": {"AWS": arn("alice")}, "Action": "kms:GenerateDataKey", "Resource": "*"})),
    );
    for i in 0..4 {
        create(&format!("a/k{i}")).expect_ok();
    }
    // And a deny in force at once, after those reused decisions.
    put_policy(
        &f,
        policy_with(json!({"Sid": "Deny", "Effect": "Deny",
        "Principal": {"AWS": arn("alice")}, "Action": "kms:GenerateDataKey", "Resource": "*"})),
    );
    create("a/k9").expect_err(EACCES);
    let recs = alice_creates(&f);
    let oks: Vec<bool> = recs[8..].iter().map(|(ok, _)| *ok).collect();
    assert_eq!(
        oks,
        vec![true, true, true, true, false, true, true, true, true, false],
        "one record per create, with its outcome"
    );
    kmsfs::audit::verify(&f.store.join("audit.log")).unwrap();
}
