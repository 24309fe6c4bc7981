//! The audit trail of calls: one record per authorization decision and one for the
//! outcome, written together; background actions of the service itself; calls whose
//! caller could not be identified. Secret fields never reach the log, and a call whose
//! record cannot be written fails (closed).

use serde_json::{json, Map, Value};
use std::sync::Arc;

use super::provider::Caller;
use super::service::{Call, Service};
use super::store::internal;
use super::KmsError;
use crate::audit::{Event, Identity};
use crate::principals::{PrincipalKind, ResolvedPrincipal};

impl Service {
    // ----- audit --------------------------------------------------------------------

    fn identity(call: &Call) -> Identity {
        let mut id = identity_of(&call.who, &call.caller);
        if let Some(r) = &call.remote {
            // No uid: the principal is named by its access key (CloudTrail's principalId
            // of an IAM user is its unique id; the key id is the closest kmsfs has).
            id.principal_id = Some(r.access_key_id.clone());
        }
        id
    }

    /// Appends the call's audit records; an audit failure fails the call (closed).
    pub(crate) fn finish(
        &self,
        call: &Call,
        op: &str,
        req: &Value,
        result: Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let parts = Recorded {
            request: Arc::new(sanitize(req)),
            decisions: call.decisions.clone(),
            resources: call.resources.clone(),
            fs: call.fs.clone(),
            repeated: false,
        };
        self.finish_with(call, op, parts, result)
    }

    /// [`Service::finish`] for a call that ends here (the data path, once per open): its
    /// request, decisions, resources and filesystem ids move into the records instead of
    /// being copied. The records are the same.
    pub(crate) fn finish_owned(
        &self,
        mut call: Call,
        op: &str,
        req: Value,
        result: Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let parts = Recorded {
            request: Arc::new(sanitize_owned(req)),
            decisions: std::mem::take(&mut call.decisions),
            resources: std::mem::take(&mut call.resources),
            fs: call.fs.take(),
            repeated: false,
        };
        self.finish_with(&call, op, parts, result)
    }

    /// [`Service::finish_owned`] with a request value shared with other calls (the data
    /// path's open values, built once per encryption context and actions, see
    /// `ops_crypto`). It is recorded as it is: such a value holds only the context, key
    /// id and action names, never a secret field.
    pub(crate) fn finish_shared(
        &self,
        mut call: Call,
        op: &str,
        req: Arc<Value>,
        result: Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        debug_assert!(req
            .as_object()
            .is_none_or(|m| m.keys().all(|k| !SECRET_FIELDS.contains(&k.as_str()))));
        let parts = Recorded {
            request: req,
            decisions: std::mem::take(&mut call.decisions),
            resources: std::mem::take(&mut call.resources),
            fs: call.fs.take(),
            // The same shared values come back on every open of the file: its records
            // differ only in their ids, time, pid and chain members.
            repeated: true,
        };
        self.finish_with(&call, op, parts, result)
    }

    fn finish_with(
        &self,
        call: &Call,
        op: &str,
        parts: Recorded,
        result: Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let read_only = super::operations::is_read_only(op);
        let Recorded {
            request,
            mut decisions,
            resources,
            fs,
            repeated,
        } = parts;
        let base = Event {
            event_name: op.to_string(),
            identity: Self::identity(call),
            request_parameters: request,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            resources,
            read_only,
            decision: None,
            via_service: call.via.map(str::to_string),
            fs,
            remote: call.remote.as_ref().map(super::credentials::remote_origin),
        };
        let mut events = Vec::new();
        let last_decision = decisions.pop();
        for d in decisions {
            let mut e = base.clone();
            e.decision = Some(d);
            e.response_elements = json!({ "kmsfsPartialDecision": true });
            events.push(e);
        }
        let mut last = base;
        last.decision = last_decision;
        match &result {
            Ok(v) => {
                let mut resp = if read_only { Value::Null } else { sanitize(v) };
                if !call.audit_notes.is_empty() {
                    if !resp.is_object() {
                        resp = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = &mut resp {
                        for (k, v) in &call.audit_notes {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                last.response_elements = resp;
            }
            Err(e) => {
                last.error_code = Some(e.kind.aws_name().to_string());
                last.error_message = Some(e.message.clone());
                if !call.audit_notes.is_empty() {
                    last.response_elements = Value::Object(call.audit_notes.clone());
                }
            }
        }
        // One write: the call's decisions and outcome land together, uninterleaved. A
        // call with one decision (every open) needs no list.
        let events = if events.is_empty() {
            std::slice::from_ref(&last)
        } else {
            events.push(last);
            events.as_slice()
        };
        let appended = if repeated {
            self.audit.append_repeated(events, call.now)
        } else {
            self.audit.append_all(events, call.now)
        };
        if let Err(ae) = appended {
            let effect = if result.is_ok() && !read_only {
                " (the change took effect but is not recorded)"
            } else {
                ""
            };
            return Err(internal(format!(
                "the audit log could not record this call{effect}: {ae}"
            )));
        }
        result
    }

    pub(crate) fn audit_unidentified(&self, caller: &Caller, op: &str, e: &KmsError) {
        let ev = Event {
            event_name: op.to_string(),
            identity: Identity {
                kind: "Unknown".into(),
                uid: caller.uid,
                gid: caller.gid,
                pid: caller.pid,
                ..Identity::default()
            },
            error_code: Some(e.kind.aws_name().to_string()),
            error_message: Some(e.message.clone()),
            read_only: super::operations::is_read_only(op),
            ..Event::default()
        };
        // Best effort: the call already fails with its own error.
        let _ = self.audit.append(&ev, self.clock.now());
    }

    /// The identity the audit log gives `caller` and the AWS profile its principal uses
    /// toward a remote KMS (`aws_profile` in principals.toml, reloaded as for every
    /// call), for the key router.
    pub fn remote_identity(
        &self,
        caller: &Caller,
    ) -> Result<crate::remote::router::RemoteIdentity, KmsError> {
        let call = self.begin(caller, Some(super::managed::VIA_SERVICE))?;
        Ok(crate::remote::router::RemoteIdentity {
            identity: identity_of(&call.who, caller),
            profile: call.who.aws_profile.clone(),
        })
    }

    /// Records a decision a remote KMS made (or a refusal before asking it: no profile)
    /// for a file operation, with its request id, profile, key ARN and endpoint, in this
    /// service's audit log. Fails (closed) when the record cannot be written.
    pub fn audit_remote(
        &self,
        d: &crate::remote::router::RemoteDecision<'_>,
    ) -> Result<(), KmsError> {
        let mut request = json!({ "KeyId": d.key_arn, "EncryptionContext": d.context });
        if !d.actions.is_empty() {
            let names: Vec<&str> = d
                .actions
                .iter()
                .map(|a| match a {
                    super::provider::DataAction::Decrypt => "Decrypt",
                    super::provider::DataAction::Encrypt => "Encrypt",
                })
                .collect();
            request["kmsfsOpenFor"] = json!(names);
        }
        let remote = json!({
            "Endpoint": d.endpoint,
            "Profile": d.profile,
            "RequestId": d.request_id,
            "Cached": d.cached,
        });
        let ev = Event {
            event_name: d.operation.to_string(),
            identity: d.identity.clone(),
            request_parameters: Arc::new(request),
            response_elements: json!({ "kmsfsRemoteKms": remote }),
            error_code: d.error.map(|e| e.kind.aws_name().to_string()),
            error_message: d.error.map(|e| e.message.clone()),
            resources: vec![d.key_arn.to_string()],
            read_only: super::operations::is_read_only(d.operation),
            decision: None,
            via_service: Some(super::managed::VIA_SERVICE.to_string()),
            fs: Some(Arc::new(json!(d.context))),
            remote: None,
        };
        self.audit.append(&ev, self.clock.now()).map_err(|ae| {
            internal(format!(
                "the audit log could not record a remote KMS decision: {ae}"
            ))
        })?;
        Ok(())
    }

    /// Audits a background action of the service itself (rotation, deletion).
    pub(crate) fn audit_service_event(&self, name: &str, key_arn: &str, now: i64, detail: Value) {
        let ev = Event {
            event_name: name.to_string(),
            identity: Identity {
                kind: "AWSService".into(),
                arn: None,
                account_id: None,
                principal_id: Some("kmsfs".into()),
                uid: 0,
                gid: 0,
                pid: std::process::id(),
            },
            request_parameters: Arc::new(Value::Null),
            response_elements: detail,
            resources: vec![key_arn.to_string()],
            read_only: false,
            ..Event::default()
        };
        if let Err(e) = self.audit.append(&ev, now) {
            log::error!("audit log: cannot record {name} of {key_arn}: {e}");
        }
    }
}

pub(crate) fn identity_of(who: &ResolvedPrincipal, caller: &Caller) -> Identity {
    Identity {
        kind: if who.kind == PrincipalKind::Anonymous {
            "Anonymous".into()
        } else {
            who.kind.cloudtrail_type().into()
        },
        arn: who.principal.arn.clone(),
        account_id: (!who.principal.account.is_empty()).then(|| who.principal.account.clone()),
        principal_id: Some(format!("uid:{}", caller.uid)),
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
    }
}

/// Fields never written to the audit log: plaintext, ciphertext, key bytes, tokens.
const SECRET_FIELDS: &[&str] = &[
    "Plaintext",
    "CiphertextBlob",
    "EncryptedKeyMaterial",
    "ImportToken",
    "PublicKey",
    "GrantToken",
    "GrantTokens",
    "CiphertextForRecipient",
    // Sign and Verify: CloudTrail records neither the message nor the signature.
    "Message",
    "Signature",
    "SecretAccessKey",
    // GenerateMac/VerifyMac, data key pairs, DeriveSharedSecret.
    "Mac",
    "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob",
    "SharedSecret",
];

/// What a call's records hold besides the call's identity: see [`Service::finish_owned`].
struct Recorded {
    request: Arc<Value>,
    decisions: Vec<Arc<Value>>,
    resources: Vec<String>,
    fs: Option<Arc<Value>>,
    /// Appended as a repeated record ([`crate::audit::AuditLog::append_repeated`]).
    repeated: bool,
}

/// [`sanitize`] of a value the caller gives up: the secret fields are removed in place
/// (the remaining members keep their order).
fn sanitize_owned(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|k, _| !SECRET_FIELDS.contains(&k.as_str()));
    }
    v
}

fn sanitize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !SECRET_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::{sanitize, sanitize_owned};
    use serde_json::json;

    #[test]
    fn sanitizing_in_place_keeps_what_sanitizing_a_copy_keeps() {
        let req = json!({"KeyId": "k", "Plaintext": "c2VjcmV0", "EncryptionContext": {"a": "1"},
                         "GrantTokens": ["t"], "zeta": null});
        let copied = sanitize(&req);
        let owned = sanitize_owned(req);
        assert_eq!(
            serde_json::to_string(&copied).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
        assert!(owned.get("Plaintext").is_none() && owned.get("GrantTokens").is_none());
        assert_eq!(sanitize_owned(json!("x")), json!("x"));
    }
}
