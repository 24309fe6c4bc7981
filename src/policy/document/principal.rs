//! The Principal / NotPrincipal element of a key policy statement and the AWS
//! principal ARNs it may name.

use super::{show, string_list};
use super::{AwsPrincipal, PrincipalSpec};
use serde_json::Value;

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse_principal(v: &Value, negated: bool) -> Result<PrincipalSpec, String> {
    let mut spec = PrincipalSpec {
        negated,
        aws: Vec::new(),
        others: Vec::new(),
    };
    match v {
        Value::String(s) if s == "*" => {
            spec.aws.push(AwsPrincipal::Any);
            Ok(spec)
        }
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                let list = string_list(val, false).map_err(|m| format!("\"{k}\" {m}"))?;
                match k.as_str() {
                    "AWS" => {
                        for p in &list {
                            spec.aws.push(parse_aws_principal(p)?);
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => {
                        for p in list {
                            if p.is_empty() {
                                return Err(format!("\"{k}\" has an empty value"));
                            }
                            spec.others.push(p);
                        }
                    }
                    other => {
                        return Err(format!(
                            "has unknown principal type \"{other}\"; expected \"AWS\", \"Service\", \"Federated\" or \"CanonicalUser\""
                        ))
                    }
                }
            }
            Ok(spec)
        }
        other => Err(format!(
            "{} is not valid; expected \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::111122223333:root\"}}",
            show(other)
        )),
    }
}

fn parse_aws_principal(p: &str) -> Result<AwsPrincipal, String> {
    if p == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(p) {
        return Ok(AwsPrincipal::AccountRoot {
            account: p.to_string(),
        });
    }
    let bad = |why: &str| {
        format!(
            "\"AWS\" value \"{p}\" is not valid: {why}; expected \"*\", a 12-digit account id, or an ARN such as arn:aws:iam::111122223333:root, arn:aws:iam::111122223333:user/alice, arn:aws:iam::111122223333:role/Admin or arn:aws:sts::111122223333:assumed-role/Admin/session"
        )
    };
    if p.contains('*') || p.contains('?') {
        return Err(bad(
            "wildcards are not allowed in a principal (only \"*\" on its own)",
        ));
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(bad("it is neither an account id nor an ARN"));
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() {
        return Err(bad("it is not an IAM or STS ARN"));
    }
    if !is_account_id(account) {
        return Err(bad("the account part must be 12 digits"));
    }
    let account = account.to_string();
    let exact = |role_name: Option<&str>| AwsPrincipal::Arn {
        arn: p.to_string(),
        account: account.clone(),
        role_name: role_name.map(str::to_string),
    };
    match (*service, *resource) {
        ("iam", "root") => Ok(AwsPrincipal::AccountRoot {
            account: account.clone(),
        }),
        // Users and roles may have a path (`user/eng/alice`); the name is the last part.
        ("iam", r) if r.starts_with("user/") => match last_name(&r[5..]) {
            Some(_) => Ok(exact(None)),
            None => Err(bad("the user name is empty")),
        },
        ("iam", r) if r.starts_with("role/") => match last_name(&r[5..]) {
            Some(role) => Ok(exact(Some(role))),
            None => Err(bad("the role name is empty")),
        },
        // STS names a session by role and session name, both required, no path.
        ("sts", r) if r.starts_with("assumed-role/") => {
            match r["assumed-role/".len()..].split('/').collect::<Vec<_>>().as_slice() {
                [role, session] if !role.is_empty() && !session.is_empty() => Ok(exact(None)),
                _ => Err(bad(
                    "an assumed-role ARN must be assumed-role/ROLE/SESSION with both names",
                )),
            }
        }
        ("sts", r) if r.starts_with("federated-user/") => {
            let name = &r["federated-user/".len()..];
            if name.is_empty() || name.contains('/') {
                Err(bad("a federated-user ARN must be federated-user/NAME"))
            } else {
                Ok(exact(None))
            }
        }
        ("iam", r) if r.starts_with("group/") => Err(bad("an IAM group cannot be a principal")),
        _ => Err(bad("the resource part must be root, user/NAME, role/NAME, assumed-role/ROLE/SESSION or federated-user/NAME")),
    }
}

/// The last `/`-separated part of a user or role path, if it is not empty.
fn last_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
}
