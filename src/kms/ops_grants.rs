//! Grants: CreateGrant (validation, Name idempotency, the CreateGrant-via-grant subset
//! rule, the escalation guard), ListGrants, ListRetirableGrants, RevokeGrant and
//! RetireGrant (AWS's rules for who may retire). Grants take effect at once, so grant
//! tokens are accepted and validated but never needed.
//!
//! Grant tokens are `base64url("kmsfs-grant-v1:" key-id ":" grant-id ":" random)`: they
//! only name a grant; RetireGrant still checks who may retire it.

use base64::Engine as _;
use serde_json::{json, Value};

use super::authz::Authz;
use super::model::KeyRecord;
use super::operations::{grant_operations, grant_use};
use super::request::{check_len, paginate, validation, with_marker, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::crypto;
use crate::policy::actions::{self as act, GrantUse};
use crate::policy::{Decision, Evaluation, Grant, GrantConstraints, Reason};
use crate::principals::parse_principal_arn;

const TOKEN_PREFIX: &str = "kmsfs-grant-v1:";
const MAX_GRANT_TOKENS: usize = 10;
/// Most grants per key (AWS's default quota).
const MAX_GRANTS_PER_KEY: usize = 50_000;

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

pub(crate) fn make_token(key_id: &str, grant_id: &str) -> Result<String, KmsError> {
    let rnd = crypto::random_bytes(8).map_err(|e| internal(e.to_string()))?;
    Ok(b64url().encode(format!(
        "{TOKEN_PREFIX}{key_id}:{grant_id}:{}",
        hex::encode(rnd)
    )))
}

/// (key id, grant id) named by a grant token.
pub(crate) fn parse_token(token: &str) -> Result<(String, String), KmsError> {
    let bad = || {
        err(
            ErrorKind::InvalidGrantToken,
            "The grant token is not valid.",
        )
    };
    let raw = b64url().decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    let mut parts = rest.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(g), Some(_), None) if super::ciphertext::is_key_id(k) && g.len() == 64 => {
            Ok((k.to_string(), g.to_string()))
        }
        _ => Err(bad()),
    }
}

/// AWS's grant-constraint limits: pairs per constraint, and characters per value.
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE_CHARS: usize = 384;
/// AWS's length limit of one grant token.
const MAX_GRANT_TOKEN_LEN: usize = 8192;

fn check_constraint(
    name: &str,
    ctx: Option<&crate::policy::EncryptionContext>,
) -> Result<(), KmsError> {
    let Some(ctx) = ctx else { return Ok(()) };
    if ctx.len() > MAX_CONSTRAINT_PAIRS {
        return Err(validation(format!(
            "Constraints.{name} has {} pairs; a grant constraint may have at most {MAX_CONSTRAINT_PAIRS}",
            ctx.len()
        )));
    }
    if ctx
        .values()
        .any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE_CHARS)
    {
        return Err(validation(format!(
            "Constraints.{name}: a value may have at most {MAX_CONSTRAINT_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Validates a request's GrantTokens (they are accepted; grants are effective at once).
pub(crate) fn check_grant_tokens(r: &Req<'_>) -> Result<(), KmsError> {
    if let Some(tokens) = r.opt_str_list("GrantTokens")? {
        if tokens.len() > MAX_GRANT_TOKENS {
            return Err(validation(format!(
                "at most {MAX_GRANT_TOKENS} GrantTokens"
            )));
        }
        for t in &tokens {
            check_len("GrantTokens", t, 1, MAX_GRANT_TOKEN_LEN)?;
            parse_token(t)?;
        }
    }
    Ok(())
}

fn grant_json(g: &Grant) -> Value {
    let mut v = json!({
        "KeyId": g.key_arn,
        "GrantId": g.grant_id,
        "CreationDate": g.creation_date,
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": format!("arn:aws:iam::{}:root", g.issuing_account),
        "Operations": g.operations,
    });
    if let Value::Object(o) = &mut v {
        if let Some(n) = &g.name {
            o.insert("Name".into(), json!(n));
        }
        if let Some(r) = &g.retiring_principal {
            o.insert("RetiringPrincipal".into(), json!(r));
        }
        if let Some(c) = &g.constraints {
            let mut cv = serde_json::Map::new();
            if let Some(e) = &c.encryption_context_subset {
                cv.insert("EncryptionContextSubset".into(), json!(e));
            }
            if let Some(e) = &c.encryption_context_equals {
                cv.insert("EncryptionContextEquals".into(), json!(e));
            }
            o.insert("Constraints".into(), Value::Object(cv));
        }
    }
    v
}

/// A grantee is a principal ARN or, as in key policies, a bare 12-digit account id
/// (AWS: "valid principals include AWS accounts"); the evaluator reads a bare id as
/// the account, like its root ARN.
fn check_grantee(grantee: &str) -> Result<(), KmsError> {
    if grantee.len() == 12 && grantee.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    check_principal("GranteePrincipal", grantee)
}

fn check_principal(field: &str, arn: &str) -> Result<(), KmsError> {
    parse_principal_arn(arn)
        .map(|_| ())
        .map_err(|m| validation(format!("{field}: {m}")))
}

/// True when constraints `child` are at least as strict as `parent`'s.
pub fn constraints_at_least_as_strict(
    parent: Option<&GrantConstraints>,
    child: Option<&GrantConstraints>,
) -> bool {
    let Some(p) = parent else { return true };
    let empty = GrantConstraints::default();
    let c = child.unwrap_or(&empty);
    if let Some(pe) = &p.encryption_context_equals {
        if c.encryption_context_equals.as_ref() != Some(pe) {
            return false;
        }
    }
    if let Some(ps) = &p.encryption_context_subset {
        let contains =
            |m: &crate::policy::EncryptionContext| ps.iter().all(|(k, v)| m.get(k) == Some(v));
        let ok = c.encryption_context_equals.as_ref().is_some_and(contains)
            || c.encryption_context_subset.as_ref().is_some_and(contains);
        if !ok {
            return false;
        }
    }
    true
}

/// AWS's grant operation lists per key type: a grant may list only operations the key
/// can perform, and constraints only where an operation takes an encryption context.
fn check_operations_for_key(
    k: &KeyRecord,
    operations: &[String],
    constrained: bool,
) -> Result<(), KmsError> {
    let valid = super::keyspec::grant_operations(k.key_spec, k.key_usage);
    for op in operations {
        if !valid.contains(&op.as_str()) {
            return Err(validation(format!(
                "the grant operation {op} is not valid for {} (KeySpec {}, KeyUsage {}); valid: {}",
                k.arn,
                k.key_spec.as_str(),
                k.key_usage.as_str(),
                valid.join(", ")
            )));
        }
    }
    if constrained && !k.key_spec.is_symmetric() {
        return Err(validation(format!(
            "grant constraints are valid only for symmetric encryption keys; {} is {}",
            k.arn,
            k.key_spec.as_str()
        )));
    }
    Ok(())
}

impl Service {
    pub(crate) fn create_grant(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let grantee = r.str_len("GranteePrincipal", 256)?.to_string();
        check_grantee(&grantee)?;
        let retiring = r.opt_str("RetiringPrincipal")?.map(str::to_string);
        if let Some(rp) = &retiring {
            check_len("RetiringPrincipal", rp, 1, 256)?;
            check_principal("RetiringPrincipal", rp)?;
        }
        let mut operations = r.opt_str_list("Operations")?.ok_or_else(|| {
            validation("1 validation error detected: Value null at 'operations' failed to satisfy constraint: Member must not be null")
        })?;
        if operations.is_empty() {
            return Err(validation("Operations must list at least one operation"));
        }
        for op in &operations {
            match grant_use(op) {
                // Whether the key's type allows it is checked once the key is known.
                GrantUse::Symmetric | GrantUse::OtherKeyType => {}
                GrantUse::No => {
                    return Err(validation(format!(
                        "\"{op}\" is not a grant operation; valid: {}",
                        grant_operations().collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
        operations.sort();
        operations.dedup();
        let constraints = match r.opt_obj("Constraints")? {
            None => None,
            Some(c) => {
                let subset = c.opt_context("EncryptionContextSubset")?;
                let equals = c.opt_context("EncryptionContextEquals")?;
                for (name, ctx) in [
                    ("EncryptionContextSubset", &subset),
                    ("EncryptionContextEquals", &equals),
                ] {
                    check_constraint(name, ctx.as_ref())?;
                }
                if subset.is_none() && equals.is_none() {
                    None
                } else {
                    // Every symmetric grant operation may carry constraints (AWS:
                    // they limit the operations that take an encryption context, and
                    // DescribeKey, RetireGrant and CreateGrant may ride along), and
                    // the operations were checked above: nothing more to refuse.
                    Some(GrantConstraints {
                        encryption_context_equals: equals,
                        encryption_context_subset: subset,
                    })
                }
            }
        };
        let name = r.opt_str("Name")?.map(str::to_string);
        if let Some(n) = &name {
            check_len("Name", n, 1, 256)?;
            if !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
            {
                return Err(validation(
                    "Name may contain only letters, digits, and : / _ -",
                ));
            }
        }
        check_grant_tokens(&r)?;
        let dry = r.flag("DryRun")?;
        let allow_escalation = r.flag("AllowSelfEscalation")?;
        // The context the constraints name, for kms:EncryptionContext:* conditions.
        let constraint_ctx = constraints.as_ref().map(|c| {
            let mut m = c.encryption_context_subset.clone().unwrap_or_default();
            if let Some(e) = &c.encryption_context_equals {
                m.extend(e.clone());
            }
            m
        });
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, key_id, false)?;
            let id = k.key_id.clone();
            let mut a = Authz::new(act::CREATE_GRANT.iam, Some(k))
                .context(constraint_ctx.as_ref())
                .set_multi("kms:GrantOperations", operations.clone())
                .set("kms:GranteePrincipal", grantee.clone())
                .set("kms:GrantIsForAWSResource", "false");
            if let Some(rp) = &retiring {
                a = a.set("kms:RetiringPrincipal", rp.clone());
            }
            let ev = self.authorize(call, st, a)?;
            self.gate(&act::CREATE_GRANT, k, call.now)?;
            check_operations_for_key(k, &operations, constraints.is_some())?;
            check_grant_subset(&ev, k, &operations, constraints.as_ref())?;
            // The grant as it would be stored (its id is drawn once it is certain).
            let mut grant = Grant {
                grant_id: String::new(),
                name: name.clone(),
                key_arn: k.arn.clone(),
                grantee_principal: grantee.clone(),
                retiring_principal: retiring.clone(),
                issuing_account: k.account.clone(),
                operations: operations.clone(),
                constraints: constraints.clone(),
                creation_date: call.now,
            };
            let escalated = self.grant_escalation(call, st, k, &grant, constraint_ctx.as_ref())?;
            self.apply_guard(call, st, k, escalated, allow_escalation, "grant")?;
            if dry {
                return Err(err(
                    ErrorKind::DryRunOperation,
                    "The request would have succeeded, but the DryRun option is set.",
                ));
            }
            if let Some(n) = &name {
                let same = k.grants.iter().find(|g| {
                    g.name.as_deref() == Some(n.as_str())
                        && g.grantee_principal == grantee
                        && g.retiring_principal == retiring
                        && g.operations == operations
                        && g.constraints == constraints
                });
                if let Some(g) = same {
                    let token = make_token(&id, &g.grant_id)?;
                    return Ok((json!({ "GrantId": g.grant_id, "GrantToken": token }), false));
                }
            }
            if k.grants.len() >= MAX_GRANTS_PER_KEY {
                return Err(err(
                    ErrorKind::LimitExceeded,
                    format!("{} already has {MAX_GRANTS_PER_KEY} grants", k.arn),
                ));
            }
            let grant_id =
                hex::encode(crypto::random_bytes(32).map_err(|e| internal(e.to_string()))?);
            grant.grant_id = grant_id.clone();
            let token = make_token(&id, &grant_id)?;
            if let Some(k) = st.keys.get_mut(&id) {
                k.grants.push(grant);
            }
            Ok((json!({ "GrantToken": token, "GrantId": grant_id }), true))
        })
    }

    pub(crate) fn list_grants(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let page = r.page(100, 50)?;
        let grant_id = r.opt_str("GrantId")?;
        let grantee = r.opt_str("GranteePrincipal")?;
        let snap = self.snapshot()?;
        let (k, _) = self.find_key(call, &snap.state, key_id, false)?;
        self.authorize(
            call,
            &snap.state,
            Authz::new(act::LIST_GRANTS.iam, Some(k)).set("kms:GrantIsForAWSResource", "false"),
        )?;
        let grants: Vec<Value> = k
            .grants
            .iter()
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            .map(grant_json)
            .collect();
        let (grants, marker) = paginate(grants, page);
        Ok(with_marker(json!({ "Grants": grants }), marker))
    }

    pub(crate) fn list_retirable_grants(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let retiring = r.str("RetiringPrincipal")?;
        check_principal("RetiringPrincipal", retiring)?;
        let page = r.page(100, 50)?;
        let snap = self.snapshot()?;
        self.authorize(
            call,
            &snap.state,
            Authz::new(act::LIST_RETIRABLE_GRANTS.iam, None),
        )?;
        let grants: Vec<Value> = snap
            .state
            .keys
            .values()
            .filter(|k| !super::lookup::is_destroyed(k, call.now))
            .flat_map(|k| k.grants.iter())
            .filter(|g| g.retiring_principal.as_deref() == Some(retiring))
            .map(grant_json)
            .collect();
        let (grants, marker) = paginate(grants, page);
        Ok(with_marker(json!({ "Grants": grants }), marker))
    }

    pub(crate) fn revoke_grant(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let grant_id = r.str("GrantId")?.to_string();
        let dry = r.flag("DryRun")?;
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, key_id, false)?;
            let id = k.key_id.clone();
            self.authorize(
                call,
                st,
                Authz::new(act::REVOKE_GRANT.iam, Some(k))
                    .set("kms:GrantIsForAWSResource", "false"),
            )?;
            if !k.grants.iter().any(|g| g.grant_id == grant_id) {
                return Err(err(
                    ErrorKind::NotFound,
                    format!("Grant ID {grant_id} not found for {}", k.arn),
                ));
            }
            if dry {
                return Err(err(
                    ErrorKind::DryRunOperation,
                    "The request would have succeeded, but the DryRun option is set.",
                ));
            }
            if let Some(k) = st.keys.get_mut(&id) {
                k.grants.retain(|g| g.grant_id != grant_id);
            }
            Ok((json!({}), true))
        })
    }

    /// RetireGrant: by GrantToken, or by KeyId (key ARN or id) and GrantId. Allowed for
    /// the grant's retiring principal, its grantee when RetireGrant is among the
    /// grant's operations, and the root of the account the grant was created in.
    pub(crate) fn retire_grant(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let dry = r.flag("DryRun")?;
        let (key_ref, grant_id) = match (
            r.opt_str("GrantToken")?,
            r.opt_str("KeyId")?,
            r.opt_str("GrantId")?,
        ) {
            (Some(t), _, _) => {
                let (k, g) = parse_token(t)?;
                (k, g)
            }
            (None, Some(k), Some(g)) => (k.to_string(), g.to_string()),
            _ => {
                return Err(validation(
                    "RetireGrant needs a GrantToken, or both KeyId and GrantId",
                ))
            }
        };
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, &key_ref, false)?;
            let id = k.key_id.clone();
            let Some(g) = k.grants.iter().find(|g| g.grant_id == grant_id) else {
                return Err(err(
                    ErrorKind::NotFound,
                    format!("Grant ID {grant_id} not found for {}", k.arn),
                ));
            };
            let ev = retire_decision(call, g);
            record_decision(call, k, act::RETIRE_GRANT.iam, &ev);
            if ev.decision != Decision::Allowed {
                let user = call.who.principal.arn.clone().unwrap_or_else(|| format!("anonymous (uid {})", call.caller.uid));
                return Err(err(
                    ErrorKind::AccessDenied,
                    format!(
                        "User: {user} is not authorized to perform: kms:RetireGrant on resource: {} because it is neither the grant's retiring principal, nor its grantee with the RetireGrant operation, nor the root of account {}",
                        k.arn, g.issuing_account
                    ),
                ));
            }
            if dry {
                return Err(err(ErrorKind::DryRunOperation, "The request would have succeeded, but the DryRun option is set."));
            }
            if let Some(k) = st.keys.get_mut(&id) {
                k.grants.retain(|g| g.grant_id != grant_id);
            }
            Ok((json!({}), true))
        })
    }
}

/// AWS's retire rule as an Evaluation (so the audit record has the same shape).
fn retire_decision(call: &Call, g: &Grant) -> Evaluation {
    let arn = call.who.principal.arn.as_deref();
    let root = format!("arn:aws:iam::{}:root", g.issuing_account);
    let mut notes = Vec::new();
    let allowed = if arn.is_some() && arn == g.retiring_principal.as_deref() {
        notes.push("the caller is the grant's retiring principal".to_string());
        true
    } else if arn == Some(g.grantee_principal.as_str())
        && g.operations.iter().any(|o| o == act::RETIRE_GRANT.name)
    {
        notes.push("the caller is the grantee and RetireGrant is a grant operation".to_string());
        true
    } else if arn == Some(root.as_str()) {
        notes.push("the caller is the root of the account the grant was created in".to_string());
        true
    } else {
        notes.push("only the retiring principal, the grantee with RetireGrant, or the issuing account's root may retire a grant".to_string());
        false
    };
    Evaluation {
        decision: if allowed {
            Decision::Allowed
        } else {
            Decision::ImplicitDeny
        },
        matched: if allowed {
            vec![Reason::Grant {
                grant_id: g.grant_id.clone(),
            }]
        } else {
            Vec::new()
        },
        notes,
    }
}

fn record_decision(call: &mut Call, k: &KeyRecord, action: &str, ev: &Evaluation) {
    let mut dv = serde_json::to_value(ev).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut dv {
        m.insert("action".into(), json!(action));
        m.insert("resource".into(), json!(k.arn));
    }
    call.decisions.push(std::sync::Arc::new(dv));
    if !call.resources.contains(&k.arn) {
        call.resources.push(k.arn.clone());
    }
}

/// A principal allowed CreateGrant only by a grant may create grants with a subset of
/// that grant's operations and constraints at least as strict.
fn check_grant_subset(
    ev: &Evaluation,
    k: &KeyRecord,
    operations: &[String],
    constraints: Option<&GrantConstraints>,
) -> Result<(), KmsError> {
    let by_policy = ev
        .matched
        .iter()
        .any(|r| !matches!(r, Reason::Grant { .. }));
    if by_policy {
        return Ok(());
    }
    let parents: Vec<&Grant> = ev
        .matched
        .iter()
        .filter_map(|r| match r {
            Reason::Grant { grant_id } => k.grants.iter().find(|g| &g.grant_id == grant_id),
            _ => None,
        })
        .collect();
    if parents.is_empty() {
        return Ok(());
    }
    let ok = parents.iter().any(|p| {
        operations.iter().all(|o| p.operations.contains(o))
            && constraints_at_least_as_strict(p.constraints.as_ref(), constraints)
    });
    if ok {
        return Ok(());
    }
    Err(err(
        ErrorKind::AccessDenied,
        "CreateGrant is allowed here only by a grant: the new grant's operations must be a subset of that grant's operations, with constraints at least as strict",
    ))
}

#[cfg(test)]
#[path = "ops_grants_tests.rs"]
mod tests;
