//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. Names are `alias/` plus
//! letters, digits and `/ _ - :`, at most 256 characters; `alias/aws/` and
//! `alias/kmsfs/` are reserved for service-managed keys. Authorization is on the key(s)
//! the alias points to, as in AWS's key policies.

use crate::policy::actions as act;
use serde_json::{json, Value};

use super::authz::Authz;
use super::managed::RESERVED_ALIAS_PREFIXES;
use super::model::{AliasRecord, KeyManager};
use super::request::{paginate, with_marker, Req};
use super::service::{err, Call, Service};
use super::{ErrorKind, KmsError};

/// Checks an alias name against AWS's rules (and kmsfs's reserved prefix).
pub fn check_alias_name(name: &str, creating: bool) -> Result<(), KmsError> {
    let bad = |why: &str| {
        err(
            ErrorKind::InvalidAliasName,
            format!("Alias name \"{name}\" {why}"),
        )
    };
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(bad("must begin with alias/"));
    };
    if rest.is_empty() || name.len() > 256 {
        return Err(bad("must have 1 to 250 characters after alias/"));
    }
    if !rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | ':'))
    {
        return Err(bad("may contain only letters, digits, and / _ - :"));
    }
    if creating {
        if let Some(p) = RESERVED_ALIAS_PREFIXES
            .iter()
            .find(|p| name.starts_with(*p))
        {
            return Err(bad(&format!(
                "uses the prefix {p}, reserved for service-managed keys"
            )));
        }
    }
    Ok(())
}

impl Service {
    pub(crate) fn create_alias(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let name = r.str("AliasName")?.to_string();
        let target = r.str("TargetKeyId")?;
        check_alias_name(&name, true)?;
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, target, false)?;
            let id = k.key_id.clone();
            self.authorize(call, st, Authz::new(act::CREATE_ALIAS.iam, Some(k)))?;
            self.gate(&act::CREATE_ALIAS, k, call.now)?;
            if k.manager == KeyManager::Aws {
                return Err(err(
                    ErrorKind::UnsupportedOperation,
                    format!(
                        "{} is a service-managed key; it cannot have customer aliases",
                        k.arn
                    ),
                ));
            }
            if st.aliases.contains_key(&name) {
                return Err(err(
                    ErrorKind::AlreadyExists,
                    format!(
                        "An alias with the name arn:aws:kms:{}:{}:{name} already exists",
                        call.principals.region(),
                        call.principals.account()
                    ),
                ));
            }
            st.aliases.insert(
                name.clone(),
                AliasRecord {
                    name: name.clone(),
                    target_key_id: id,
                    creation_date: call.now,
                    last_updated: call.now,
                },
            );
            Ok((json!({}), true))
        })
    }

    pub(crate) fn update_alias(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let name = r.str("AliasName")?.to_string();
        let target = r.str("TargetKeyId")?;
        check_alias_name(&name, true)?;
        self.mutate(|st| {
            let Some(alias) = st.aliases.get(&name) else {
                return Err(err(
                    ErrorKind::NotFound,
                    format!("Alias {name} is not found."),
                ));
            };
            let old_id = alias.target_key_id.clone();
            let (new, _) = self.find_key(call, st, target, false)?;
            let new_id = new.key_id.clone();
            if let Some(old) = st.keys.get(&old_id) {
                self.authorize(call, st, Authz::new(act::UPDATE_ALIAS.iam, Some(old)))?;
            }
            self.authorize(call, st, Authz::new(act::UPDATE_ALIAS.iam, Some(new)))?;
            self.gate(&act::UPDATE_ALIAS, new, call.now)?;
            if new.manager == KeyManager::Aws {
                return Err(err(
                    ErrorKind::UnsupportedOperation,
                    format!(
                        "{} is a service-managed key; it cannot have customer aliases",
                        new.arn
                    ),
                ));
            }
            if let Some(a) = st.aliases.get_mut(&name) {
                a.target_key_id = new_id;
                a.last_updated = call.now;
            }
            Ok((json!({}), true))
        })
    }

    pub(crate) fn delete_alias(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let name = r.str("AliasName")?.to_string();
        check_alias_name(&name, true)?;
        self.mutate(|st| {
            let Some(alias) = st.aliases.get(&name) else {
                return Err(err(
                    ErrorKind::NotFound,
                    format!("Alias {name} is not found."),
                ));
            };
            if let Some(k) = st.keys.get(&alias.target_key_id) {
                self.authorize(call, st, Authz::new(act::DELETE_ALIAS.iam, Some(k)))?;
            }
            st.aliases.remove(&name);
            Ok((json!({}), true))
        })
    }

    pub(crate) fn list_aliases(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let page = r.page(100, 50)?;
        let snap = self.snapshot()?;
        self.authorize(call, &snap.state, Authz::new(act::LIST_ALIASES.iam, None))?;
        let filter = match r.opt_str("KeyId")? {
            Some(kid) => Some(
                self.find_key(call, &snap.state, kid, false)?
                    .0
                    .key_id
                    .clone(),
            ),
            None => None,
        };
        let region = call.principals.region().to_string();
        let account = call.principals.account().to_string();
        let items: Vec<Value> = snap
            .state
            .aliases
            .values()
            .filter(|a| filter.as_deref().is_none_or(|f| a.target_key_id == f))
            .filter(|a| {
                snap.state
                    .keys
                    .get(&a.target_key_id)
                    .is_some_and(|k| !super::lookup::is_destroyed(k, call.now))
            })
            .map(|a| {
                json!({
                    "AliasName": a.name,
                    "AliasArn": format!("arn:aws:kms:{region}:{account}:{}", a.name),
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": a.creation_date,
                    "LastUpdatedDate": a.last_updated,
                })
            })
            .collect();
        let (items, marker) = paginate(items, page);
        Ok(with_marker(json!({ "Aliases": items }), marker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_aws_rules() {
        for ok in ["alias/a", "alias/my-key_1", "alias/team/app:prod"] {
            assert!(check_alias_name(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "alias/",
            "alias/sp ace",
            "alias/é",
            "alias/aws/s3",
            "alias/kmsfs/default",
        ] {
            assert_eq!(
                check_alias_name(bad, true).unwrap_err().kind,
                ErrorKind::InvalidAliasName,
                "{bad}"
            );
        }
        assert!(check_alias_name(&format!("alias/{}", "x".repeat(251)), true).is_err());
    }
}
