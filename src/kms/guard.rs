//! Two checks on changes to who may use a key: AWS's key policy lockout safety check,
//! and kmsfs's own escalation guard. The guard goes beyond AWS: a key administrator who
//! may PutKeyPolicy or CreateGrant could otherwise hand themselves Decrypt; kmsfs
//! refuses such a change unless the request says `"AllowSelfEscalation": true`, and
//! audits that bypass. Pure decisions over `policy::evaluate`; never writes state.
//!
//! Limitation (documented): the guard compares what the caller may do with no
//! encryption context (and, for grants, the grant's own constraint context), directly
//! and through kmsfs. A new policy statement that only allows the caller under a
//! specific encryption-context value is not detected as an escalation.

use serde_json::json;

use super::managed::VIA_SERVICE;
use super::model::{KeyRecord, StoreState};
use super::service::{err, Authz, Call, Service};
use super::{ErrorKind, KmsError};
use crate::policy::{Decision, EncryptionContext, Grant, PolicyDocument};

/// The data-plane operations the guard protects (grant operation names).
pub const DATA_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

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
            "kms:PutKeyPolicy",
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
        for op in DATA_OPERATIONS {
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
            if !DATA_OPERATIONS.contains(&op.as_str()) {
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

/// Refuses an escalation unless bypassed; a bypass is noted for the audit record.
pub(crate) fn apply_guard(
    call: &mut Call,
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
    if !allow {
        call.audit_notes.insert(
            "kmsfsEscalationGuard".into(),
            json!({ "Refused": true, "Actions": escalated }),
        );
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "kmsfs escalation guard: this {what} would give you ({who}) {} on {} that you do not hold now. \
                 Repeat the request with \"AllowSelfEscalation\": true (--allow-self-escalation) to proceed; the bypass is audited.",
                escalated.join(", "),
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
