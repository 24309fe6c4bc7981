//! The audit trail of calls: one record per authorization decision and one for the
//! outcome, written together; background actions of the service itself; calls whose
//! caller could not be identified. Secret fields never reach the log, and a call whose
//! record cannot be written fails (closed).

use serde_json::{json, Map, Value};

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
        let read_only = super::operations::is_read_only(op);
        let base = Event {
            event_name: op.to_string(),
            identity: Self::identity(call),
            request_parameters: sanitize(req),
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            resources: call.resources.clone(),
            read_only,
            decision: None,
            via_service: call.via.map(str::to_string),
            fs: call.fs.clone(),
            remote: call.remote.as_ref().map(super::credentials::remote_origin),
        };
        let mut events = Vec::new();
        let n = call.decisions.len();
        for (i, d) in call.decisions.iter().enumerate() {
            if i + 1 < n {
                let mut e = base.clone();
                e.decision = Some(d.clone());
                e.response_elements = json!({ "kmsfsPartialDecision": true });
                events.push(e);
            }
        }
        let mut last = base;
        last.decision = call.decisions.last().cloned();
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
        events.push(last);
        // One write: the call's decisions and outcome land together, uninterleaved.
        if let Err(ae) = self.audit.append_all(&events, call.now) {
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
            request_parameters: Value::Null,
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
    "SecretAccessKey",
];

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
