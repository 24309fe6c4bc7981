//! Offline simulation: a key policy evaluated on its own (no store, no grants), as
//! `kmsfs simulate --key-policy` asks. The request is built here, as the service builds
//! its own (principal, action, key ARN and its account, encryption context, condition
//! keys, now), so that the CLI only parses arguments and prints the answer.

use crate::policy::{self, EncryptionContext, Evaluation, PolicyDocument, RequestContext};
use crate::principals::ResolvedPrincipal;

use super::error::{ErrorKind, KmsError};

/// What an offline simulation asks.
pub struct OfflineQuestion<'a> {
    pub policy: &'a PolicyDocument,
    /// The ARN of the key the policy is attached to: `arn:aws:kms:REGION:ACCOUNT:key/ID`.
    pub key_arn: &'a str,
    pub caller: &'a ResolvedPrincipal,
    /// A full action name, e.g. `kms:Decrypt`.
    pub action: &'a str,
    pub encryption_context: Option<&'a EncryptionContext>,
    /// `kms:ViaService` of the request, if any.
    pub via_service: Option<&'a str>,
    /// Further condition keys, as given.
    pub context: &'a [(String, String)],
    pub now: i64,
}

/// The resource account of a key ARN `arn:aws:kms:REGION:ACCOUNT:key/ID`.
pub fn key_account(key_arn: &str) -> Result<&str, KmsError> {
    let parts: Vec<&str> = key_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "kms", _, account, res] if res.starts_with("key/") && !account.is_empty() => {
            Ok(account)
        }
        _ => Err(KmsError::new(
            ErrorKind::InvalidArn,
            format!("\"{key_arn}\" is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"),
        )),
    }
}

/// Evaluates the question's key policy with the caller's identity policies and no
/// grants.
pub fn evaluate_offline(q: &OfflineQuestion<'_>) -> Result<Evaluation, KmsError> {
    let resource_account = key_account(q.key_arn)?;
    let mut ctx = RequestContext::new();
    if let Some(v) = q.via_service {
        ctx.set("kms:ViaService", v);
    }
    for (k, v) in q.context {
        ctx.set(k, v.clone());
    }
    let req = policy::Request {
        principal: &q.caller.principal,
        action: q.action,
        resource: q.key_arn,
        resource_account,
        encryption_context: q.encryption_context,
        context: &ctx,
        now: q.now,
    };
    Ok(policy::evaluate(
        &req,
        q.policy,
        &q.caller.identity_policies,
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns_give_their_account() {
        assert_eq!(
            key_account("arn:aws:kms:local:111122223333:key/abc").unwrap(),
            "111122223333"
        );
        assert!(key_account("arn:aws:iam::111122223333:root").is_err());
        assert!(key_account("arn:aws:kms:local::key/abc").is_err());
    }
}
