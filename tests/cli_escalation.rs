//! The escalation guard is governed by policy, through the real binary and real uids:
//! bypassing it (`--allow-self-escalation`) needs `kmsfs:BypassEscalationGuard` allowed
//! for the caller on the key (key policy, or identity policy through the key policy's
//! account-root statement); by default only the account root has it; a caller who
//! cannot bypass is not told about the flag; a bypass is audited.

mod support;

use serde_json::{json, Value};
use support::cli::*;

const ROOT_UID: u32 = 0;

fn root_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:root")
}

/// support::cli's principals, but bob's identity policy also allows the bypass (which
/// only matters where a key policy delegates it to the account).
fn principals() -> String {
    format!(
        "account = \"{ACCOUNT}\"\n\
         [[principal]]\narn = \"{}\"\nuid = {ALICE}\n\
         [[principal]]\narn = \"{}\"\nuid = {BOB}\n\
         policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":[\"kms:CreateKey\",\"kms:List*\",\"kmsfs:BypassEscalationGuard\"],\"Resource\":\"*\"}}]}}'''\n",
        arn("alice"),
        arn("bob"),
    )
}

fn with_statements(base: &str, extra: &[Value]) -> String {
    let mut p: Value = serde_json::from_str(base).unwrap();
    let list = p["Statement"].as_array_mut().unwrap();
    list.extend(extra.iter().cloned());
    p.to_string()
}

fn statement(effect: &str, principal: &str, action: Value) -> Value {
    json!({"Effect": effect, "Principal": {"AWS": principal}, "Action": action, "Resource": "*"})
}

/// The account root administers (no data-plane access), alice uses.
fn root_admin_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            statement("Allow", &root_arn(), json!(["kms:Create*", "kms:Describe*", "kms:Put*",
                "kms:Get*", "kms:List*", "kms:Revoke*", "kms:Enable*", "kms:Disable*"])),
            statement("Allow", &arn("alice"), json!(["kms:Decrypt", "kms:Encrypt",
                "kms:GenerateDataKey*", "kms:DescribeKey"])),
        ]
    })
    .to_string()
}

fn create_key(s: &Served, uid: u32, name: &str, policy: &str) -> String {
    let file = s.public_file(&format!("{name}.json"), policy.as_bytes());
    let args = [
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", file.display()),
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ];
    if uid == ROOT_UID {
        ok(&s.root(&args))
    } else {
        ok(&s.as_uid(uid, &args))
    }
}

#[test]
fn bypassing_the_guard_needs_the_bypass_action_and_only_those_who_may_are_told_how() {
    let s = Served::init("escalation");
    std::fs::write(s.principals(), principals()).unwrap();
    let mut s = s;
    s.serve();
    let bypass = json!("kmsfs:BypassEscalationGuard");
    let k1 = create_key(&s, BOB, "k1", &key_policy());
    let k2 = create_key(
        &s,
        BOB,
        "k2",
        &with_statements(
            &key_policy(),
            &[statement("Allow", &arn("bob"), bypass.clone())],
        ),
    );
    let k3 = create_key(
        &s,
        BOB,
        "k3",
        &with_statements(
            &key_policy(),
            &[statement("Allow", &root_arn(), bypass.clone())],
        ),
    );
    let k4 = create_key(&s, ROOT_UID, "k4", &root_admin_policy());
    let k5 = create_key(
        &s,
        ROOT_UID,
        "k5",
        &with_statements(
            &root_admin_policy(),
            &[statement("Deny", &root_arn(), bypass.clone())],
        ),
    );
    // (caller, key, --allow-self-escalation, succeeds, refusal mentions the flag)
    let table: &[(u32, &str, &str, bool, bool, bool)] = &[
        // Key policy names bob as administrator only: no bypass for him.
        (BOB, "k1", &k1, false, false, false),
        (BOB, "k1", &k1, true, false, false),
        // The key policy allows bob the bypass.
        (BOB, "k2", &k2, false, false, true),
        (BOB, "k2", &k2, true, true, false),
        // The key policy delegates the bypass to the account; bob's identity policy has it.
        (BOB, "k3", &k3, false, false, true),
        (BOB, "k3", &k3, true, true, false),
        // The account root has it by default...
        (ROOT_UID, "k4", &k4, false, false, true),
        (ROOT_UID, "k4", &k4, true, true, false),
        // ... unless a policy explicitly denies it.
        (ROOT_UID, "k5", &k5, false, false, false),
        (ROOT_UID, "k5", &k5, true, false, false),
    ];
    for &(uid, name, key, flag, succeeds, hints) in table {
        let grantee = if uid == ROOT_UID {
            root_arn()
        } else {
            arn("bob")
        };
        let mut args = vec![
            "kms",
            "create-grant",
            "--key-id",
            key,
            "--grantee-principal",
            &grantee,
            "--operations",
            "Decrypt",
        ];
        if flag {
            args.push("--allow-self-escalation");
        }
        let o = if uid == ROOT_UID {
            s.root(&args)
        } else {
            s.as_uid(uid, &args)
        };
        let row = format!("uid {uid} on {name}, flag {flag}");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.success(), succeeds, "{row}: {err}");
        if succeeds {
            continue;
        }
        service_error(&o, "AccessDeniedException", "CreateGrant");
        assert!(err.contains("escalation guard"), "{row}: {err}");
        assert_eq!(
            err.contains("--allow-self-escalation") || err.contains("AllowSelfEscalation"),
            hints,
            "{row}: {err}"
        );
        if flag {
            assert!(err.contains("kmsfs:BypassEscalationGuard"), "{row}: {err}");
        }
    }
    // Bob cannot give himself the bypass through the key policy either.
    let own_bypass = s.public_file(
        "k1-bypass.json",
        with_statements(&key_policy(), &[statement("Allow", &arn("bob"), bypass)]).as_bytes(),
    );
    let o = s.as_uid(
        BOB,
        &[
            "kms",
            "put-key-policy",
            "--key-id",
            &k1,
            "--policy-name",
            "default",
            "--policy",
            &format!("file://{}", own_bypass.display()),
        ],
    );
    service_error(&o, "AccessDeniedException", "PutKeyPolicy");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kmsfs:BypassEscalationGuard"), "{err}");
    assert!(!err.contains("allow-self-escalation"), "{err}");
    // Every bypass and every refused bypass is in the audit log with its decision.
    let audit = std::fs::read_to_string(s.store().join("audit.log")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let guard_notes = |k: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| {
                r["eventName"] == "CreateGrant"
                    && r.to_string().contains(k)
                    && !r["responseElements"]["kmsfsEscalationGuard"].is_null()
            })
            .map(|r| r["responseElements"]["kmsfsEscalationGuard"].clone())
            .collect()
    };
    for k in [&k2, &k3, &k4] {
        let notes = guard_notes(k);
        assert!(
            notes.iter().any(|n| n["Bypassed"] == true),
            "{k}: {notes:?}"
        );
    }
    for k in [&k1, &k5] {
        let notes = guard_notes(k);
        assert!(
            notes.iter().any(|n| n["BypassDenied"] == true),
            "{k}: {notes:?}"
        );
        assert!(
            !notes.iter().any(|n| n["Bypassed"] == true),
            "{k}: {notes:?}"
        );
    }
}
