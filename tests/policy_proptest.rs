//! Property tests: the parser never panics on any text or JSON value, and evaluation
//! never panics on any request against valid policies, and its answer is always
//! consistent (an implicit deny lists no statements, an explicit deny lists only Deny
//! statements, an allow lists at least one reason).

use kmsfs::policy::{
    evaluate, Decision, EncryptionContext, Grant, GrantConstraints, IdentityPolicy, PolicyDocument,
    PolicyKind, Principal, Reason, Request, RequestContext,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vocabulary()).prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Words that steer random documents into the parser's deeper branches.
fn vocabulary() -> Vec<&'static str> {
    vec![
        "Version",
        "2012-10-17",
        "2008-10-17",
        "Statement",
        "Sid",
        "Effect",
        "Allow",
        "Deny",
        "Principal",
        "NotPrincipal",
        "AWS",
        "Service",
        "*",
        "111122223333",
        "arn:aws:iam::111122223333:root",
        "arn:aws:iam::111122223333:user/alice",
        "arn:aws:sts::111122223333:assumed-role/R/s",
        "Action",
        "NotAction",
        "kms:*",
        "kms:Decrypt",
        "Resource",
        "NotResource",
        "Condition",
        "StringEquals",
        "StringLike",
        "ForAllValues:StringLike",
        "ForAnyValue:StringEqualsIfExists",
        "NumericLessThan",
        "DateGreaterThan",
        "Bool",
        "Null",
        "IpAddress",
        "ArnLike",
        "BinaryEquals",
        "kms:EncryptionContext:volume",
        "kms:ViaService",
        "aws:SourceIp",
        "aws:CurrentTime",
        "${aws:username}",
        "${*}",
        "${aws:username, 'x'}",
        "${",
        "10.0.0.0/8",
        "true",
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vocabulary()).prop_map(str::to_string),
        "[A-Za-z:]{1,10}",
    ]
}

/// Policies built from the grammar's pieces, so that many of them parse.
fn policy_like() -> impl Strategy<Value = Value> {
    // (operator, values that are valid for it): most generated documents parse.
    let string_vals = || {
        prop::collection::vec(
            prop::sample::select(vec![
                "kmsfs",
                "vol-*",
                "1001",
                "${aws:username}",
                "a${*}b",
                "${kmsfs:Uid, '0'}",
                "Decrypt",
                "111122223333",
                "*",
                "",
                "é?",
            ]),
            1..3,
        )
    };
    let op_vals = prop_oneof![
        (
            prop::sample::select(vec![
                "StringEquals",
                "StringNotEquals",
                "StringEqualsIgnoreCase",
                "StringLike",
                "StringNotLike",
                "ForAnyValue:StringLike",
                "ForAllValues:StringEquals",
                "StringEqualsIfExists",
                "ForAllValues:StringNotLikeIfExists"
            ]),
            string_vals()
        ),
        (
            prop::sample::select(vec![
                "NumericEquals",
                "NumericLessThan",
                "NumericGreaterThanIfExists",
                "NumericNotEquals"
            ]),
            prop::collection::vec(prop::sample::select(vec!["1001", "0", "-5.5", "1e3"]), 1..3)
        ),
        (
            prop::sample::select(vec![
                "DateLessThan",
                "DateEquals",
                "DateGreaterThanEqualsIfExists"
            ]),
            prop::collection::vec(
                prop::sample::select(vec!["2026-01-01T00:00:00Z", "2026-01-01", "1767225600"]),
                1..3
            )
        ),
        (
            prop::sample::select(vec!["Bool", "BoolIfExists", "Null"]),
            prop::collection::vec(prop::sample::select(vec!["true", "false"]), 1..2)
        ),
        (
            prop::sample::select(vec!["IpAddress", "NotIpAddress"]),
            prop::collection::vec(
                prop::sample::select(vec!["10.0.0.0/8", "::1", "0.0.0.0/0"]),
                1..3
            )
        ),
        (
            prop::sample::select(vec!["ArnLike", "ArnNotEquals", "ArnEqualsIfExists"]),
            prop::collection::vec(
                prop::sample::select(vec![
                    "arn:aws:iam::*:user/*",
                    "arn:aws:iam::${aws:PrincipalAccount}:*",
                    "*"
                ]),
                1..3
            )
        ),
        (
            Just("BinaryEquals"),
            prop::collection::vec(prop::sample::select(vec!["aGVsbG8=", "AAAA"]), 1..2)
        ),
    ];
    let key = prop::sample::select(vec![
        "kms:ViaService",
        "kms:EncryptionContext:volume",
        "kms:EncryptionContextKeys",
        "aws:PrincipalArn",
        "aws:username",
        "kmsfs:Uid",
        "aws:CurrentTime",
        "aws:SourceIp",
        "kms:GrantOperations",
        "kms:CallerAccount",
        "aws:EpochTime",
        "kmsfs:Token",
    ]);
    let principal = prop::sample::select(vec![
        json!("*"),
        json!({"AWS": "arn:aws:iam::111122223333:root"}),
        json!({"AWS": "111122223333"}),
        json!({"AWS": ["arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:role/Ops"]}),
        json!({"AWS": "arn:aws:iam::444455556666:root"}),
        json!({"Service": "logs.amazonaws.com"}),
    ]);
    let action = prop::sample::select(vec![
        json!("kms:*"),
        json!("*"),
        json!(["kms:Decrypt", "kms:Encrypt"]),
        json!("kms:Gen*"),
        json!("kms:?ecrypt"),
    ]);
    let statement = (
        any::<bool>(),
        any::<bool>(),
        principal,
        any::<bool>(),
        action,
        prop::collection::vec((op_vals, key), 0..3),
    )
        .prop_map(|(allow, not_principal, p, not_action, a, conds)| {
            let mut st = serde_json::Map::new();
            st.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
            st.insert(
                if not_principal {
                    "NotPrincipal"
                } else {
                    "Principal"
                }
                .into(),
                p,
            );
            st.insert(if not_action { "NotAction" } else { "Action" }.into(), a);
            st.insert("Resource".into(), json!("*"));
            let mut c = serde_json::Map::new();
            for ((o, v), k) in conds {
                let entry = c.entry(o.to_string()).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k.to_string(), json!(v));
                }
            }
            st.insert("Condition".into(), Value::Object(c));
            Value::Object(st)
        });
    prop::collection::vec(statement, 1..5)
        .prop_map(|sts| json!({"Version": "2012-10-17", "Statement": sts}))
}

fn arn() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:user/eng/bob",
            "arn:aws:sts::111122223333:assumed-role/Ops/s",
            "arn:aws:iam::444455556666:user/dave",
            "arn:aws:iam::111122223333:role/Ops",
            "arn:",
            "",
            "arn:aws:iam::111122223333:user/ü/é",
        ])
        .prop_map(|s| Some(s.to_string())),
        ".{0,40}".prop_map(Some),
    ]
}

fn small_map() -> impl Strategy<Value = EncryptionContext> {
    prop::collection::btree_map("[a-zA-Zé]{0,6}", ".{0,8}", 0..4)
}

#[derive(Debug, Clone)]
struct RandomRequest {
    arn: Option<String>,
    account: String,
    uid: Option<u32>,
    gid: Option<u32>,
    action: String,
    key: String,
    key_account: String,
    ec: Option<EncryptionContext>,
    context: Vec<(String, Vec<String>)>,
    now: i64,
}

fn request() -> impl Strategy<Value = RandomRequest> {
    (
        arn(),
        prop::sample::select(vec!["111122223333", "444455556666", "", "x"]),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        prop_oneof![
            prop::sample::select(vec![
                "kms:Decrypt",
                "kms:Encrypt",
                "kms:PutKeyPolicy",
                "kms:CreateGrant",
                "kms:decrypt",
                "Decrypt",
                ""
            ])
            .prop_map(str::to_string),
            ".{0,20}",
        ],
        prop_oneof![
            Just("arn:aws:kms:local:111122223333:key/k".to_string()),
            ".{0,30}",
        ],
        prop::sample::select(vec!["111122223333", "444455556666", ""]),
        proptest::option::of(small_map()),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "kms:ViaService",
                    "aws:SourceIp",
                    "kms:GrantOperations",
                    "kms:GrantIsForAWSResource",
                    "kmsfs:Token",
                    "aws:PrincipalArn",
                ])
                .prop_map(str::to_string),
                prop::collection::vec(
                    prop_oneof![
                        ".{0,12}".boxed(),
                        Just("10.1.2.3".to_string()).boxed(),
                        Just("::1".to_string()).boxed()
                    ],
                    0..3,
                ),
            ),
            0..4,
        ),
        any::<i64>(),
    )
        .prop_map(
            |(arn, account, uid, gid, action, key, key_account, ec, context, now)| RandomRequest {
                arn,
                account: account.to_string(),
                uid,
                gid,
                action,
                key,
                key_account: key_account.to_string(),
                ec,
                context,
                now,
            },
        )
}

fn grants() -> impl Strategy<Value = Vec<Grant>> {
    prop::collection::vec(
        (
            arn(),
            prop::collection::vec(
                prop::sample::select(vec!["Decrypt", "Encrypt", "CreateGrant", "DescribeKey"]),
                0..3,
            ),
            proptest::option::of(small_map()),
            proptest::option::of(small_map()),
        ),
        0..4,
    )
    .prop_map(|gs| {
        gs.into_iter()
            .enumerate()
            .map(|(i, (grantee, ops, eq, sub))| Grant {
                grant_id: format!("g-{i}"),
                name: None,
                key_arn: "arn:aws:kms:local:111122223333:key/k".into(),
                grantee_principal: grantee.unwrap_or_default(),
                retiring_principal: None,
                issuing_account: "111122223333".into(),
                operations: ops.into_iter().map(str::to_string).collect(),
                constraints: Some(GrantConstraints {
                    encryption_context_equals: eq,
                    encryption_context_subset: sub,
                }),
                creation_date: 0,
            })
            .collect()
    })
}

fn check(
    r: &RandomRequest,
    key_policy: &PolicyDocument,
    identity: &[IdentityPolicy],
    grants: &[Grant],
) {
    let principal = Principal {
        arn: r.arn.clone(),
        account: r.account.clone(),
        uid: r.uid,
        gid: r.gid,
    };
    let mut ctx = RequestContext::new();
    for (k, v) in &r.context {
        ctx.set_multi(k, v.clone());
    }
    let req = Request {
        principal: &principal,
        action: &r.action,
        resource: &r.key,
        resource_account: &r.key_account,
        encryption_context: r.ec.as_ref(),
        context: &ctx,
        now: r.now,
    };
    let ev = evaluate(&req, key_policy, identity, grants);
    match ev.decision {
        Decision::ImplicitDeny => assert!(ev.matched.is_empty() && !ev.notes.is_empty()),
        Decision::ExplicitDeny => assert!(ev.matched.iter().all(|m| match m {
            Reason::KeyPolicy { effect, .. } | Reason::IdentityPolicy { effect, .. } =>
                effect == "Deny",
            Reason::Grant { .. } => false,
        })),
        Decision::Allowed => assert!(!ev.matched.is_empty()),
    }
    let _ = ev.to_simulate_json();
}

proptest! {
    #[test]
    fn parse_never_panics_on_any_text(text in ".{0,300}") {
        let _ = PolicyDocument::parse(&text);
        let _ = PolicyDocument::parse_identity(&text);
    }

    #[test]
    fn parse_never_panics_on_any_json(v in json_value()) {
        let text = v.to_string();
        let _ = PolicyDocument::parse(&text);
        let _ = PolicyDocument::parse_identity(&text);
    }

    #[test]
    fn parse_never_panics_on_policy_shaped_json(v in policy_like()) {
        let text = v.to_string();
        for kind in [PolicyKind::KeyPolicy, PolicyKind::Identity] {
            if let Err(e) = PolicyDocument::parse_kind(&text, kind) {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn evaluate_never_panics_on_random_requests(policy in policy_like(), identity in policy_like(), r in request(), gs in grants()) {
        // Only documents that parse can be evaluated; the identity document reuses a
        // key-policy shape with principals stripped.
        let Ok(key_policy) = PolicyDocument::parse(&policy.to_string()) else { return Ok(()); };
        let mut identity = identity;
        if let Some(sts) = identity.get_mut("Statement").and_then(Value::as_array_mut) {
            for st in sts.iter_mut().filter_map(Value::as_object_mut) {
                st.remove("Principal");
                st.remove("NotPrincipal");
            }
        }
        let ids: Vec<IdentityPolicy> = PolicyDocument::parse_identity(&identity.to_string())
            .ok()
            .map(|document| IdentityPolicy { name: "random.json".into(), document })
            .into_iter()
            .collect();
        check(&r, &key_policy, &ids, &gs);
    }
}

#[test]
fn generated_policies_mostly_parse() {
    // Guards the generator above: if it stopped producing valid documents, the
    // evaluation property would silently test nothing.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = policy_like();
    let ok = (0..200)
        .filter(|_| {
            let v = strategy.new_tree(&mut runner).unwrap().current();
            PolicyDocument::parse(&v.to_string()).is_ok()
        })
        .count();
    assert!(ok > 120, "only {ok} of 200 generated policies parse");
}
