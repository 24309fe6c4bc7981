//! One statement of a policy: its elements, actions, resources and Condition block,
//! each refusal naming the statement and the field.

use super::principal::parse_principal;
use super::{err, json_type, show, string_list, unknown_field, where_};
use super::{Effect, PolicyKind, Statement};
use crate::policy::condition::{Condition, Operator, Values};
use crate::policy::pattern::Pattern;
use crate::policy::PolicyError;
use serde_json::{Map, Value};

const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

pub(super) fn parse_statement(
    index: usize,
    raw: &Value,
    kind: PolicyKind,
    variables: bool,
) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = raw else {
        return Err(err(format!(
            "Statement[{index}] must be an object; found {}",
            json_type(raw)
        )));
    };
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(err(format!(
                "Statement[{index}]: Sid must be a string; found {}",
                json_type(other)
            )))
        }
    };
    let at = where_(index, sid.as_deref());
    let fail = |msg: String| err(format!("{at}: {msg}"));
    for k in obj.keys() {
        if !STATEMENT_FIELDS.contains(&k.as_str()) {
            return Err(fail(unknown_field(k, STATEMENT_FIELDS)));
        }
    }
    let effect = match obj.get("Effect") {
        None => {
            return Err(fail(
                "Effect is missing; expected \"Allow\" or \"Deny\"".into(),
            ))
        }
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(fail(format!(
                "Effect {} is not valid; expected \"Allow\" or \"Deny\"",
                show(other)
            )))
        }
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal"), kind) {
        (Some(_), Some(_), _) => {
            return Err(fail(
                "has both Principal and NotPrincipal; expected exactly one".into(),
            ))
        }
        (None, None, PolicyKind::KeyPolicy) => {
            return Err(fail(
                "Principal is missing; every statement of a key policy must name a Principal (or NotPrincipal)".into(),
            ))
        }
        (Some(_), None, PolicyKind::Identity) | (None, Some(_), PolicyKind::Identity) => {
            return Err(fail(
                "has a Principal (or NotPrincipal); an identity policy must not name a principal, it applies to the principal it is attached to".into(),
            ))
        }
        (None, None, PolicyKind::Identity) => None,
        (Some(p), None, PolicyKind::KeyPolicy) => {
            Some(parse_principal(p, false).map_err(|m| fail(format!("Principal {m}")))?)
        }
        (None, Some(p), PolicyKind::KeyPolicy) => {
            Some(parse_principal(p, true).map_err(|m| fail(format!("NotPrincipal {m}")))?)
        }
    };
    let (actions_negated, raw_actions, afield) = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both Action and NotAction; expected exactly one".into(),
            ))
        }
        (None, None) => {
            return Err(fail(
                "Action is missing; expected Action or NotAction (such as \"kms:Decrypt\")".into(),
            ))
        }
        (Some(a), None) => (false, a, "Action"),
        (None, Some(a)) => (true, a, "NotAction"),
    };
    let action_strings =
        string_list(raw_actions, false).map_err(|m| fail(format!("{afield} {m}")))?;
    let mut actions = Vec::with_capacity(action_strings.len());
    for a in &action_strings {
        if a != "*" {
            let valid = a.split_once(':').is_some_and(|(svc, name)| {
                !svc.is_empty()
                    && !name.is_empty()
                    && svc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            });
            if !valid {
                return Err(fail(format!(
                    "{afield} \"{a}\" is not valid; expected \"*\" or \"service:ActionName\" (wildcards * and ? allowed), such as \"kms:Decrypt\" or \"kms:*\""
                )));
            }
        }
        actions.push(
            Pattern::parse(&a.to_ascii_lowercase(), false)
                .map_err(|m| fail(format!("{afield} {m}")))?,
        );
    }
    let (resources_negated, raw_res, rfield) = match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both Resource and NotResource; expected exactly one".into(),
            ))
        }
        (None, None) => {
            return Err(fail(
                "Resource is missing; expected Resource or NotResource (in a key policy, \"*\" means this key)".into(),
            ))
        }
        (Some(r), None) => (false, r, "Resource"),
        (None, Some(r)) => (true, r, "NotResource"),
    };
    let res_strings = string_list(raw_res, false).map_err(|m| fail(format!("{rfield} {m}")))?;
    let mut resources = Vec::with_capacity(res_strings.len());
    for r in &res_strings {
        if r != "*" && !r.starts_with("arn:") {
            return Err(fail(format!(
                "{rfield} \"{r}\" is not valid; expected \"*\" or an ARN such as \"arn:aws:kms:local:111122223333:key/...\""
            )));
        }
        resources.push(Pattern::parse(r, variables).map_err(|m| fail(format!("{rfield} {m}")))?);
    }
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => parse_conditions(c, variables).map_err(fail)?,
        Some(other) => {
            return Err(fail(format!(
                "Condition must be an object such as {{\"StringEquals\": {{\"kms:ViaService\": \"kmsfs\"}}}}; found {}",
                json_type(other)
            )))
        }
    };
    Ok(Statement {
        index,
        sid,
        effect,
        principal,
        actions_negated,
        actions,
        resources_negated,
        resources,
        conditions,
    })
}

fn parse_conditions(c: &Map<String, Value>, variables: bool) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for (opname, block) in c {
        let op =
            Operator::parse(opname).map_err(|m| format!("Condition operator \"{opname}\" {m}"))?;
        let Value::Object(keys) = block else {
            return Err(format!(
                "Condition operator \"{opname}\" must map to an object of condition keys; found {}",
                json_type(block)
            ));
        };
        if keys.is_empty() {
            return Err(format!(
                "Condition operator \"{opname}\" has no condition keys; expected at least one such as \"kms:ViaService\""
            ));
        }
        for (key, vals) in keys {
            let valid_key = key.split_once(':').is_some_and(|(p, n)| {
                !p.is_empty() && !n.is_empty() && !key.chars().any(|c| c.is_whitespace())
            });
            if !valid_key {
                return Err(format!(
                    "Condition key \"{key}\" under \"{opname}\" is not valid; expected \"prefix:name\" such as \"kms:EncryptionContext:Department\" or \"aws:PrincipalArn\""
                ));
            }
            let raw = string_list(vals, true)
                .map_err(|m| format!("Condition \"{opname}\" key \"{key}\": value {m}"))?;
            let values = Values::parse(op.family, &raw, variables)
                .map_err(|m| format!("Condition \"{opname}\" key \"{key}\": {m}"))?;
            out.push(Condition {
                op,
                key: key.to_ascii_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}
