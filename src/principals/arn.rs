//! Principal ARNs: which kind of principal an ARN names (user, role, assumed role,
//! federated user, account root), its account and its name. Pure text parsing.

/// What kind of principal an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PrincipalKind {
    Root,
    User,
    Role,
    AssumedRole,
    /// `arn:aws:sts::ACCT:federated-user/NAME` (STS GetFederationToken).
    FederatedUser,
    Anonymous,
}

impl PrincipalKind {
    /// CloudTrail's `userIdentity.type`.
    pub fn cloudtrail_type(self) -> &'static str {
        match self {
            PrincipalKind::Root => "Root",
            PrincipalKind::User => "IAMUser",
            PrincipalKind::Role => "AssumedRole",
            PrincipalKind::AssumedRole => "AssumedRole",
            PrincipalKind::FederatedUser => "FederatedUser",
            PrincipalKind::Anonymous => "AWSAccount",
        }
    }
}

/// A parsed principal ARN (IAM user, role, root; STS assumed role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedArn {
    pub account: String,
    pub kind: PrincipalKind,
    /// The user or role name (for `aws:username`), if any.
    pub name: Option<String>,
}

/// Parses `arn:aws:iam::ACCT:root|user/NAME|role/NAME`,
/// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` and
/// `arn:aws:sts::ACCT:federated-user/NAME`.
pub fn parse_principal_arn(arn: &str) -> Result<ParsedArn, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!(
            "\"{arn}\" is not an ARN; expected arn:aws:iam::ACCOUNT:user/NAME, role/NAME or root"
        ));
    };
    if *prefix != "arn" || partition.is_empty() {
        return Err(format!("\"{arn}\" does not start with arn:<partition>:"));
    }
    if !region.is_empty() {
        return Err(format!(
            "\"{arn}\": IAM principal ARNs have an empty region field"
        ));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{arn}\": the account id must be 12 digits, found \"{account}\""
        ));
    }
    let named = |rest: &str, what: &str| -> Result<Option<String>, String> {
        let name = rest.rsplit('/').next().unwrap_or(rest);
        if name.is_empty() {
            Err(format!("\"{arn}\": the {what} name is empty"))
        } else {
            Ok(Some(name.to_string()))
        }
    };
    let (kind, name) = match *service {
        "iam" if *resource == "root" => (PrincipalKind::Root, None),
        "iam" if resource.starts_with("user/") => {
            (PrincipalKind::User, named(&resource[5..], "user")?)
        }
        "iam" if resource.starts_with("role/") => {
            (PrincipalKind::Role, named(&resource[5..], "role")?)
        }
        "sts" if resource.starts_with("assumed-role/") => {
            let rest = &resource["assumed-role/".len()..];
            // Both the role name and the session name are required (AWS's form).
            match rest.split('/').collect::<Vec<_>>().as_slice() {
                [role, session] if !role.is_empty() && !session.is_empty() => {
                    (PrincipalKind::AssumedRole, Some(role.to_string()))
                }
                _ => return Err(format!("\"{arn}\": expected assumed-role/ROLE/SESSION")),
            }
        }
        "sts" if resource.starts_with("federated-user/") => {
            let name = &resource["federated-user/".len()..];
            if name.is_empty() || name.contains('/') {
                return Err(format!("\"{arn}\": expected federated-user/NAME"));
            }
            (PrincipalKind::FederatedUser, Some(name.to_string()))
        }
        _ => {
            return Err(format!(
            "\"{arn}\": expected an iam root, user/NAME or role/NAME, or an sts assumed-role or federated-user ARN"
        ))
        }
    };
    Ok(ParsedArn {
        account: account.to_string(),
        kind,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_into_kind_account_and_name() {
        let p = parse_principal_arn("arn:aws:iam::111122223333:user/dev/alice").unwrap();
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.name.as_deref(), Some("alice"));
        assert_eq!(p.account, "111122223333");
        let r = parse_principal_arn("arn:aws:iam::444455556666:root").unwrap();
        assert_eq!(r.kind, PrincipalKind::Root);
        let s = parse_principal_arn("arn:aws:sts::111122223333:assumed-role/Admin/s1").unwrap();
        assert_eq!(s.kind, PrincipalKind::AssumedRole);
        assert_eq!(s.name.as_deref(), Some("Admin"));
        let f = parse_principal_arn("arn:aws:sts::111122223333:federated-user/carol").unwrap();
        assert_eq!(f.kind, PrincipalKind::FederatedUser);
        assert_eq!(f.name.as_deref(), Some("carol"));
        for bad in [
            "arn:aws:sts::111122223333:assumed-role/Admin",
            "arn:aws:sts::111122223333:assumed-role/Admin/",
            "arn:aws:sts::111122223333:assumed-role//s1",
            "arn:aws:sts::111122223333:assumed-role/Admin/s1/x",
            "arn:aws:sts::111122223333:federated-user/",
            "arn:aws:sts::111122223333:federated-user/a/b",
            "arn:aws:iam::111122223333:federated-user/carol",
            "alice",
            "arn:aws:iam::1234:user/a",
            "arn:aws:iam:us-east-1:111122223333:user/a",
            "arn:aws:iam::111122223333:group/g",
            "arn:aws:iam::111122223333:user/",
        ] {
            assert!(parse_principal_arn(bad).is_err(), "{bad} accepted");
        }
    }
}
