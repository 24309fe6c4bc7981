//! Runs the data-driven policy corpus in tests/policy_cases/*.json: one file per AWS
//! rule family, each case a key policy, identity policies, grants, a request and the
//! expected decision with its reasons (or, for malformed documents, the expected
//! error). The format is described in tests/policy_cases/README.md.

use kmsfs::policy::{
    evaluate, Decision, EncryptionContext, Grant, GrantConstraints, IdentityPolicy, PolicyDocument,
    PolicyKind, Principal, Request, RequestContext,
};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

const DEFAULT_PRINCIPAL: &str = "arn:aws:iam::111122223333:user/alice";
const DEFAULT_KEY: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

fn policy_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or("").to_string()
}

fn string_map(v: Option<&Value>) -> Result<Option<EncryptionContext>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "encryption context value for {k} must be a string, got {other}"
                )),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(format!("expected an object of strings, got {other}")),
    }
}

fn grant_from(v: &Value, key: &str) -> Result<Grant, String> {
    let o = v.as_object().ok_or("a grant must be an object")?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let constraints = match o.get("Constraints") {
        None => None,
        Some(c) => Some(GrantConstraints {
            encryption_context_equals: string_map(c.get("EncryptionContextEquals"))?,
            encryption_context_subset: string_map(c.get("EncryptionContextSubset"))?,
        }),
    };
    Ok(Grant {
        grant_id: s("GrantId").ok_or("grant needs GrantId")?,
        name: s("Name"),
        key_arn: key.to_string(),
        grantee_principal: s("GranteePrincipal").ok_or("grant needs GranteePrincipal")?,
        retiring_principal: s("RetiringPrincipal"),
        issuing_account: account_of(key),
        operations: o
            .get("Operations")
            .and_then(Value::as_array)
            .ok_or("grant needs Operations")?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        constraints,
        creation_date: 0,
    })
}

/// Field of the case, else of the file's defaults.
fn field<'a>(
    case: &'a Map<String, Value>,
    defaults: &'a Map<String, Value>,
    k: &str,
) -> Option<&'a Value> {
    case.get(k).or_else(|| defaults.get(k))
}

fn run_case(case: &Map<String, Value>, defaults: &Map<String, Value>) -> Result<(), String> {
    let expect = case
        .get("expect")
        .and_then(Value::as_object)
        .ok_or("case has no expect object")?;

    // Parse-only cases: {"policy": ..., "kind": "key"|"identity", "expect": {"error"|"parses"}}.
    if let Some(p) = case.get("policy") {
        let kind = match case.get("kind").and_then(Value::as_str).unwrap_or("key") {
            "identity" => PolicyKind::Identity,
            _ => PolicyKind::KeyPolicy,
        };
        let text = policy_text(p);
        let res = PolicyDocument::parse_kind(&text, kind);
        return match (expect.get("error").and_then(Value::as_str), res) {
            (Some(want), Err(e)) if e.message.contains(want) => Ok(()),
            (Some(want), Err(e)) => {
                Err(format!("error {:?} does not contain {:?}", e.message, want))
            }
            (Some(want), Ok(_)) => {
                Err(format!("parsed, but expected an error containing {want:?}"))
            }
            (None, Ok(_)) => Ok(()),
            (None, Err(e)) => Err(format!("expected the policy to parse, got: {}", e.message)),
        };
    }

    let mut kp = field(case, defaults, "key_policy")
        .ok_or("case has no key_policy")?
        .clone();
    // "condition": shorthand for "the key policy, with this Condition block on its last
    // statement" (keeps condition tables short).
    if let Some(cond) = case.get("condition") {
        let last = kp
            .get_mut("Statement")
            .and_then(Value::as_array_mut)
            .and_then(|a| a.last_mut())
            .and_then(Value::as_object_mut)
            .ok_or("\"condition\" needs a key_policy whose Statement is an array")?;
        last.insert("Condition".into(), cond.clone());
    }
    let key_policy = PolicyDocument::parse(&policy_text(&kp))
        .map_err(|e| format!("key_policy: {}", e.message))?;
    let mut identity = Vec::new();
    if let Some(Value::Object(ips)) = field(case, defaults, "identity_policies") {
        for (name, doc) in ips {
            let document = PolicyDocument::parse_identity(&policy_text(doc))
                .map_err(|e| format!("identity policy {name}: {}", e.message))?;
            identity.push(IdentityPolicy {
                name: name.clone(),
                document,
            });
        }
    }

    // The request: the case's fields over the defaults' request fields.
    let mut r = defaults
        .get("request")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Object(cr)) = case.get("request") {
        for (k, v) in cr {
            r.insert(k.clone(), v.clone());
        }
    }
    let key = r
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_KEY)
        .to_string();
    let mut grants = Vec::new();
    if let Some(Value::Array(gs)) = field(case, defaults, "grants") {
        for g in gs {
            grants.push(grant_from(g, &key)?);
        }
    }
    let arn = match r.get("principal") {
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        None => Some(DEFAULT_PRINCIPAL.to_string()),
        Some(other) => return Err(format!("principal must be a string or null, got {other}")),
    };
    let account = match r.get("account").and_then(Value::as_str) {
        Some(a) => a.to_string(),
        None => arn.as_deref().map(account_of).unwrap_or_default(),
    };
    let principal = Principal {
        arn,
        account,
        uid: r.get("uid").and_then(Value::as_u64).map(|u| u as u32),
        gid: r.get("gid").and_then(Value::as_u64).map(|g| g as u32),
    };
    let action = r
        .get("action")
        .and_then(Value::as_str)
        .ok_or("request has no action")?
        .to_string();
    let ec = string_map(r.get("encryption_context"))?;
    let mut context = RequestContext::new();
    if let Some(Value::Object(c)) = r.get("context") {
        for (k, v) in c {
            match v {
                Value::Array(a) => context.set_multi(k, a.iter().map(policy_text).collect()),
                other => context.set(k, policy_text(other)),
            }
        }
    }
    let now_text = r.get("now").and_then(Value::as_str).unwrap_or(DEFAULT_NOW);
    let now = time::OffsetDateTime::parse(now_text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("bad now {now_text}: {e}"))?
        .unix_timestamp();
    let resource_account = r
        .get("key_account")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| account_of(&key));
    let req = Request {
        principal: &principal,
        action: &action,
        resource: &key,
        resource_account: &resource_account,
        encryption_context: ec.as_ref(),
        context: &context,
        now,
    };
    let ev = evaluate(&req, &key_policy, &identity, &grants);

    let want = expect
        .get("decision")
        .and_then(Value::as_str)
        .ok_or("expect has no decision")?;
    let got = match ev.decision {
        Decision::Allowed => "allowed",
        Decision::ExplicitDeny => "explicitDeny",
        Decision::ImplicitDeny => "implicitDeny",
    };
    let labels: BTreeSet<String> = ev.matched.iter().map(|r| r.label()).collect();
    if got != want {
        return Err(format!(
            "decision {got}, expected {want}; reasons {labels:?}; notes {:?}",
            ev.notes
        ));
    }
    if ev.decision == Decision::ImplicitDeny && !ev.matched.is_empty() {
        return Err(format!(
            "implicitDeny must list no matched statements, got {labels:?}"
        ));
    }
    if let Some(Value::Array(reasons)) = expect.get("reasons") {
        let want: BTreeSet<String> = reasons
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if want != labels {
            return Err(format!("reasons {labels:?}, expected {want:?}"));
        }
    }
    if let Some(Value::Array(notes)) = expect.get("notes_contain") {
        for n in notes.iter().filter_map(Value::as_str) {
            if !ev.notes.iter().any(|have| have.contains(n)) {
                return Err(format!("no note contains {n:?}; notes: {:?}", ev.notes));
            }
        }
    }
    // The simulate JSON must agree with the decision.
    let sim = ev.to_simulate_json();
    if sim["EvalDecision"] != want {
        return Err(format!(
            "simulate JSON says {}, expected {want}",
            sim["EvalDecision"]
        ));
    }
    Ok(())
}

#[test]
fn every_policy_case_in_the_corpus_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut total = 0usize;
    let mut failures = Vec::new();
    let mut names = BTreeSet::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
        let defaults = doc
            .get("defaults")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let cases = doc["cases"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no cases array"));
        for case in cases {
            total += 1;
            let case = case
                .as_object()
                .unwrap_or_else(|| panic!("{file}: a case is not an object"));
            let name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string();
            assert!(
                names.insert(format!("{file}/{name}")),
                "{file}: duplicate case name {name:?}"
            );
            if let Err(e) = run_case(case, &defaults) {
                failures.push(format!("{file} :: {name}\n    {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} policy cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total >= 200,
        "the corpus should hold at least 200 cases, found {total}"
    );
}
