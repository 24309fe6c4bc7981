//! Cost of one authorization decision: a 20-statement key policy with conditions, and a
//! key with 1000 grants of which only the last applies. Target: < 20 µs each.
//! Run: `cargo bench --bench policy_eval -- --quick`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kmsfs::policy::{
    evaluate, EncryptionContext, Grant, GrantConstraints, IdentityPolicy, PolicyDocument,
    Principal, Request, RequestContext,
};
use serde_json::json;

const KEY: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn twenty_statement_policy() -> PolicyDocument {
    let mut statements = vec![json!({
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"
    })];
    for i in 0..18 {
        statements.push(json!({
            "Sid": format!("User{i}"), "Effect": if i % 5 == 0 { "Deny" } else { "Allow" },
            "Principal": {"AWS": [format!("arn:aws:iam::111122223333:user/u{i}"), format!("arn:aws:iam::111122223333:role/r{i}")]},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:ViaService": "kmsfs", "kms:EncryptionContext:volume": format!("vol-{i}")},
                "ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["volume", "file*"]}
            }
        }));
    }
    statements.push(json!({
        "Sid": "AliceThroughMount", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
        "Condition": {
            "StringEquals": {"kms:ViaService": "kmsfs", "kms:EncryptionContext:owner": "${aws:username}"},
            "ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["volume", "file*", "owner"]},
            "NumericEquals": {"kmsfs:Uid": "1001"}
        }
    }));
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    PolicyDocument::parse(&doc.to_string()).expect("bench policy parses")
}

fn bench(c: &mut Criterion) {
    let principal = Principal {
        arn: Some("arn:aws:iam::111122223333:user/alice".into()),
        account: "111122223333".into(),
        uid: Some(1001),
        gid: Some(1001),
    };
    let mut ec = EncryptionContext::new();
    ec.insert("volume".into(), "vol-7".into());
    ec.insert("file".into(), "f-123456".into());
    ec.insert("owner".into(), "alice".into());
    let mut ctx = RequestContext::new();
    ctx.set("kms:ViaService", "kmsfs");
    let req = Request {
        principal: &principal,
        action: "kms:Decrypt",
        resource: KEY,
        resource_account: "111122223333",
        encryption_context: Some(&ec),
        context: &ctx,
        now: 1_767_225_600,
    };

    let policy = twenty_statement_policy();
    let identity = vec![IdentityPolicy {
        name: "alice.json".into(),
        document: PolicyDocument::parse_identity(
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Describe*", "Resource": "*"}]}).to_string(),
        )
        .expect("identity policy parses"),
    }];
    assert!(evaluate(&req, &policy, &identity, &[]).is_allowed());
    c.bench_function("evaluate: 20-statement key policy with conditions", |b| {
        b.iter(|| {
            evaluate(
                black_box(&req),
                black_box(&policy),
                black_box(&identity),
                &[],
            )
        })
    });

    let root_only = PolicyDocument::parse(
        &json!({"Version": "2012-10-17", "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}).to_string(),
    )
    .expect("root policy parses");
    let mut grants: Vec<Grant> = (0..999)
        .map(|i| Grant {
            grant_id: format!("grant-{i:04}"),
            name: None,
            key_arn: KEY.into(),
            grantee_principal: format!("arn:aws:iam::111122223333:user/u{i}"),
            retiring_principal: None,
            issuing_account: "111122223333".into(),
            operations: vec!["Decrypt".into(), "Encrypt".into(), "GenerateDataKey".into()],
            constraints: None,
            creation_date: 0,
        })
        .collect();
    let mut subset = EncryptionContext::new();
    subset.insert("volume".into(), "vol-7".into());
    grants.push(Grant {
        grant_id: "grant-last".into(),
        name: None,
        key_arn: KEY.into(),
        grantee_principal: "arn:aws:iam::111122223333:user/alice".into(),
        retiring_principal: None,
        issuing_account: "111122223333".into(),
        operations: vec!["Encrypt".into(), "Decrypt".into()],
        constraints: Some(GrantConstraints {
            encryption_context_equals: None,
            encryption_context_subset: Some(subset),
        }),
        creation_date: 0,
    });
    assert!(evaluate(&req, &root_only, &[], &grants).is_allowed());
    c.bench_function("evaluate: 1000 grants, the last one applies", |b| {
        b.iter(|| {
            evaluate(
                black_box(&req),
                black_box(&root_only),
                &[],
                black_box(&grants),
            )
        })
    });

    let text = policy.text.clone();
    c.bench_function("parse: 20-statement key policy", |b| {
        b.iter(|| PolicyDocument::parse(black_box(&text)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
