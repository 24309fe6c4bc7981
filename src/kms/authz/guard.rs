//! Two checks on changes to who may use a key: AWS's key policy lockout safety check,
//! and kmsfs's own escalation guard. The guard goes beyond AWS: a key administrator who
//! may PutKeyPolicy or CreateGrant could otherwise hand themselves Decrypt; kmsfs
//! refuses such a change unless the request says `"AllowSelfEscalation": true` AND the
//! caller is allowed the action [`BYPASS_ESCALATION_GUARD`] on the key, and audits that
//! bypass. Pure decisions over `policy::evaluate`; never writes state.
//!
//! Who may bypass is decided like any action (key policy, identity policies through the
//! key policy's account-root statement, explicit denies); grants never carry it. By
//! default only the key's account root has it: an account-root caller is allowed unless
//! a policy explicitly denies it. A refusal mentions the bypass only to callers who may
//! use it.
//!
//! Limitation (documented): the guard compares what the caller may do with no
//! encryption context (and, for grants, the grant's own constraint context), directly
//! and through kmsfs. A new policy statement that only allows the caller under a
//! specific encryption-context value is not detected as an escalation.

use serde_json::json;

use super::super::managed::VIA_SERVICE;
use super::super::model::{KeyRecord, StoreState};
use super::super::operations::data_operations;
use super::super::service::{err, Call, Service};
use super::super::{ErrorKind, KmsError};
use super::Authz;
use crate::policy::actions as act;
use crate::policy::{Decision, EncryptionContext, Evaluation, Grant, PolicyDocument};
use crate::principals::PrincipalKind;

/// The kmsfs action that allows bypassing the escalation guard on a key.
pub const BYPASS_ESCALATION_GUARD: &str = act::BYPASS_ESCALATION_GUARD.iam;

impl Service {
    #[allow(clippy::too_many_arguments)]
    fn caller_allowed(
        &self,
        call: &Call,
        st: &StoreState,
        key: &KeyRecord,
        action: &str,
        policy: Option<&PolicyDocument>,
        grants: Option<&[Grant]>,
        ctx: Option<&EncryptionContext>,
        via: Option<&str>,
    ) -> Result<bool, KmsError> {
        let a = Authz::new(action, Some(key)).context(ctx);
        let ev = self.evaluate_with(call, st, &a, &call.who, policy, grants, via)?;
        Ok(ev.decision == Decision::Allowed)
    }

    /// AWS's lockout safety check: the new policy must let the caller PutKeyPolicy.
    pub(crate) fn lockout_check(
        &self,
        call: &Call,
        st: &StoreState,
        key: &KeyRecord,
        new_policy: &PolicyDocument,
        bypass: bool,
    ) -> Result<(), KmsError> {
        if bypass {
            return Ok(());
        }
        if self.caller_allowed(
            call,
            st,
            key,
            act::PUT_KEY_POLICY.iam,
            Some(new_policy),
            Some(&[]),
            None,
            None,
        )? {
            return Ok(());
        }
        Err(err(
            ErrorKind::MalformedPolicyDocument,
            "The new key policy will not allow you to update the key policy in the future.",
        ))
    }

    /// Data operations the new policy would give the caller that it does not hold now.
    pub(crate) fn policy_escalation(
        &self,
        call: &Call,
        st: &StoreState,
        key: &KeyRecord,
        new_policy: &PolicyDocument,
    ) -> Result<Vec<String>, KmsError> {
        let current = self.policy_of(key)?;
        let mut out = Vec::new();
        for op in data_operations() {
            let action = format!("kms:{op}");
            for via in [None, Some(VIA_SERVICE)] {
                let after =
                    self.caller_allowed(call, st, key, &action, Some(new_policy), None, None, via)?;
                if after
                    && !self.caller_allowed(
                        call,
                        st,
                        key,
                        &action,
                        Some(&current),
                        None,
                        None,
                        via,
                    )?
                {
                    out.push(action.clone());
                    break;
                }
            }
        }
        // Gaining the bypass is an escalation too: otherwise a key administrator would
        // first allow himself kmsfs:BypassEscalationGuard, then bypass.
        if self.bypass_decision(call, st, key, Some(new_policy))?.1
            && !self.bypass_decision(call, st, key, Some(&current))?.1
        {
            out.push(BYPASS_ESCALATION_GUARD.to_string());
        }
        Ok(out)
    }

    /// Data operations `grant` would give the caller that the caller does not hold
    /// now. The grant is evaluated, not compared by name, so a grant to the caller's
    /// role, to its account (root ARN or bare id) or to itself is caught alike.
    /// Grants allow on their own, so "the key policy plus this one grant" allows
    /// exactly when the caller holds the action now or the grant serves the caller.
    pub(crate) fn grant_escalation(
        &self,
        call: &Call,
        st: &StoreState,
        key: &KeyRecord,
        grant: &Grant,
        ctx: Option<&EncryptionContext>,
    ) -> Result<Vec<String>, KmsError> {
        let mut out = Vec::new();
        for op in &grant.operations {
            if !act::lookup(op).is_some_and(|a| a.data) {
                continue;
            }
            let action = format!("kms:{op}");
            let with_grant = std::slice::from_ref(grant);
            if self.caller_allowed(call, st, key, &action, None, Some(with_grant), ctx, None)?
                && !self.caller_allowed(call, st, key, &action, None, None, ctx, None)?
            {
                out.push(action);
            }
        }
        Ok(out)
    }
}

impl Service {
    /// Evaluates [`BYPASS_ESCALATION_GUARD`] for the caller on `key` (never through
    /// grants) and applies the account-root default. Returns the evaluation and whether
    /// the bypass is allowed.
    fn bypass_decision(
        &self,
        call: &Call,
        st: &StoreState,
        key: &KeyRecord,
        policy: Option<&PolicyDocument>,
    ) -> Result<(Evaluation, bool), KmsError> {
        let a = Authz::new(BYPASS_ESCALATION_GUARD, Some(key));
        let ev = self.evaluate_with(call, st, &a, &call.who, policy, Some(&[]), call.via)?;
        let account_root =
            call.who.kind == PrincipalKind::Root && call.who.principal.account == key.account;
        let allowed = match ev.decision {
            Decision::Allowed => true,
            Decision::ExplicitDeny => false,
            Decision::ImplicitDeny => account_root,
        };
        Ok((ev, allowed))
    }

    /// Refuses an escalation unless the request asks to bypass the guard and the caller
    /// may; a bypass (and a refused bypass) is noted for the audit record.
    pub(crate) fn apply_guard(
        &self,
        call: &mut Call,
        st: &StoreState,
        key: &KeyRecord,
        escalated: Vec<String>,
        allow: bool,
        what: &str,
    ) -> Result<(), KmsError> {
        if escalated.is_empty() {
            return Ok(());
        }
        let who = call
            .who
            .principal
            .arn
            .clone()
            .unwrap_or_else(|| "anonymous".into());
        let (ev, may_bypass) = self.bypass_decision(call, st, key, None)?;
        let refusal = format!(
            "kmsfs escalation guard: this {what} would give you ({who}) {} on {} that you do not hold now.",
            escalated.join(", "),
            key.arn
        );
        if !allow {
            call.audit_notes.insert(
                "kmsfsEscalationGuard".into(),
                json!({ "Refused": true, "Actions": escalated }),
            );
            // Only a caller who may bypass learns how: anyone else would just be
            // refused again, and the hint reads like an invitation.
            let hint = if may_bypass {
                " Repeat the request with \"AllowSelfEscalation\": true (--allow-self-escalation) to proceed; the bypass is audited."
            } else {
                ""
            };
            return Err(err(ErrorKind::AccessDenied, format!("{refusal}{hint}")));
        }
        // The bypass decision is an authorization like any other: audit it with its
        // reasons.
        let mut dv = serde_json::to_value(&ev).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut dv {
            m.insert("action".into(), json!(BYPASS_ESCALATION_GUARD));
            m.insert("resource".into(), json!(key.arn));
            if may_bypass && ev.decision != Decision::Allowed {
                m.insert("kmsfsDefault".into(), json!("account root"));
            }
        }
        call.decisions.push(std::sync::Arc::new(dv));
        if !may_bypass {
            call.audit_notes.insert(
                "kmsfsEscalationGuard".into(),
                json!({ "Refused": true, "BypassDenied": true, "Actions": escalated }),
            );
            return Err(err(
                ErrorKind::AccessDenied,
                format!(
                    "{refusal} User: {who} is not authorized to perform: {BYPASS_ESCALATION_GUARD} on resource: {}",
                    key.arn
                ),
            ));
        }
        call.audit_notes.insert(
            "kmsfsEscalationGuard".into(),
            json!({ "Bypassed": true, "Actions": escalated }),
        );
        Ok(())
    }
}
