//! Access keys: the credentials of principals that call the key service over the
//! network (AWS Signature Version 4), and the calls made with them.
//!
//! An access key belongs to a principal ARN the principals file lists (with or without
//! uids) or to the account root. Its record lives in `state.json` (`access_keys`), the
//! secret sealed under the root key (docs/STORE.md), so it commits, rolls back and is
//! backed up with the rest of the state. The secret is shown once, by CreateAccessKey,
//! and never logged, audited or Debug-printed.
//!
//! Managing keys (`iam:CreateAccessKey`, `iam:ListAccessKeys`, `iam:DeleteAccessKey`)
//! are IAM operations, not KMS ones: they are answered on the control socket under the
//! names in [`IAM_OPERATIONS`] (namespaced `iam:` so that no `TrentService.<name>` can
//! reach them over HTTP) and kept out of `operations::TABLE`, whose rows are KMS's. They
//! are authorized like IAM: the account root always; anyone else by an identity policy
//! that allows the action on the target principal's ARN.
//!
//! [`Service::call_remote`] runs a KMS operation as an access key's principal exactly as
//! a uid mapped to it would (same policies, grants, key states, audit), except that a
//! remote call never claims `kms:ViaService` and has no kernel-vouched uid.

use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::model::AccessKeyRecord;
use super::request::{validation, Req};
use super::service::{err, Call, Service, REMOTE_CALLER};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::audit::{Event, Identity, RemoteOrigin};
use crate::policy::{self, Decision, PolicyDocument, RequestContext};
use crate::principals::{PrincipalKind, Principals, ResolvedPrincipal};

/// An active access key with its secret, for verifying a request's signature.
pub struct AccessKey {
    pub access_key_id: String,
    pub principal_arn: String,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub use super::provider::RemoteCaller;

/// Control-socket operation names of access-key management.
pub const CREATE_ACCESS_KEY: &str = "iam:CreateAccessKey";
pub const LIST_ACCESS_KEYS: &str = "iam:ListAccessKeys";
pub const DELETE_ACCESS_KEY: &str = "iam:DeleteAccessKey";
/// Every access-key operation the control socket answers.
pub const IAM_OPERATIONS: &[&str] = &[CREATE_ACCESS_KEY, LIST_ACCESS_KEYS, DELETE_ACCESS_KEY];

/// The only status kmsfs gives a key (IAM's "Inactive" is not implemented: delete).
const ACTIVE: &str = "Active";
/// IAM's limit of access keys per user.
const MAX_KEYS_PER_PRINCIPAL: usize = 2;
/// Base32 alphabet of access key ids (AWS uses A-Z and 2-7 after the prefix).
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_LEN: usize = 40;

/// The audit event name of an access-key operation: IAM's (without the namespace).
pub(crate) fn event_name(op: &str) -> &str {
    op.strip_prefix("iam:").unwrap_or(op)
}

/// A new id: "AKIA" + 16 base32 characters (80 random bits).
fn new_access_key_id() -> Result<String, KmsError> {
    let mut raw = [0u8; 16];
    crate::crypto::random_fill(&mut raw).map_err(|e| internal(e.to_string()))?;
    let mut id = String::from("AKIA");
    for b in raw {
        // 5 bits of each byte: uniform over the 32 characters (`b & 31` is always an index).
        let c = ID_ALPHABET
            .get(usize::from(b & 31))
            .copied()
            .unwrap_or(b'A');
        id.push(char::from(c));
    }
    Ok(id)
}

/// A new secret: 40 characters of base64 (240 random bits), like AWS's.
fn new_secret() -> Result<Zeroizing<String>, KmsError> {
    let mut raw = Zeroizing::new([0u8; SECRET_LEN * 3 / 4]);
    crate::crypto::random_fill(&mut raw[..]).map_err(|e| internal(e.to_string()))?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(&raw[..]),
    ))
}

/// The seal label binds the secret to its id and principal: a sealed secret copied to
/// another record does not open.
fn seal_label(id: &str, principal_arn: &str) -> String {
    format!("access-key:{id}|{principal_arn}")
}

/// ISO 8601 UTC, as IAM writes CreateDate.
fn iso_date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The metadata IAM's ListAccessKeys returns (never the secret).
fn metadata(id: &str, rec: &AccessKeyRecord) -> Value {
    let mut m = json!({
        "AccessKeyId": id,
        "PrincipalArn": rec.principal_arn,
        "Status": rec.status,
        "CreateDate": iso_date(rec.created),
    });
    if let (Some(name), Value::Object(o)) = (user_name(&rec.principal_arn), &mut m) {
        o.insert("UserName".into(), Value::String(name.to_string()));
    }
    m
}

/// IAM's UserName: the last path segment of a user ARN.
fn user_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("user/")?;
    rest.rsplit('/').next()
}

/// IAM-style resource policy for access-key management: the account root may, and
/// delegates to the account's identity policies (as for an IAM user resource).
fn iam_delegation_policy(account: &str) -> Result<PolicyDocument, KmsError> {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"iam:*","Resource":"*"}}]}}"#
    );
    PolicyDocument::parse(&text).map_err(|e| internal(format!("IAM delegation policy: {e}")))
}

impl Service {
    /// The principals file's region (or the default): the SigV4 credential scope's.
    pub fn region(&self) -> String {
        self.current_principals()
            .map(|(p, _)| p.region().to_string())
            .unwrap_or_else(|_| crate::principals::DEFAULT_REGION.to_string())
    }

    /// The active access key `access_key_id` with its secret, if it exists and its
    /// principal is still listed in the principals file (else None: an orphaned key
    /// authenticates no one).
    pub fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, KmsError> {
        let snap = self.snapshot()?;
        let Some(rec) = snap.state.access_keys.get(access_key_id) else {
            return Ok(None);
        };
        if rec.status != ACTIVE {
            return Ok(None);
        }
        let (principals, _) = self.current_principals()?;
        if principals.listed_by_arn(&rec.principal_arn).is_none() {
            return Ok(None);
        }
        let secret = self.open_access_secret(access_key_id, rec)?;
        Ok(Some(AccessKey {
            access_key_id: access_key_id.to_string(),
            principal_arn: rec.principal_arn.clone(),
            secret,
        }))
    }

    fn open_access_secret(
        &self,
        id: &str,
        rec: &AccessKeyRecord,
    ) -> Result<Zeroizing<String>, KmsError> {
        let damaged = || {
            internal(format!(
                "store: the secret of access key {id} fails authentication"
            ))
        };
        let sealed = super::request::b64()
            .decode(&rec.sealed_secret)
            .map_err(|_| damaged())?;
        let plain = self
            .store
            .open_secret(&seal_label(id, &rec.principal_arn), &sealed)
            .ok_or_else(damaged)?;
        let text = std::str::from_utf8(&plain).map_err(|_| damaged())?;
        Ok(Zeroizing::new(text.to_string()))
    }

    /// Runs one AWS KMS operation (a row of `operations::TABLE`) for a request signed
    /// with `who.access_key_id`, as that key's principal. Every call is audited, with
    /// the caller's address, user agent, request id and access key id.
    pub fn call_remote(
        &self,
        who: &RemoteCaller,
        operation: &str,
        request: Value,
    ) -> Result<Value, KmsError> {
        let mut call = match self.begin_remote(who) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified_remote(who, operation, &e);
                return Err(e);
            }
        };
        let result = self.dispatch(&mut call, operation, &request);
        self.finish(&call, operation, &request, result)
    }

    /// Identifies a remote caller: the key must still exist, be active, and belong to a
    /// principal the principals file lists.
    fn begin_remote(&self, who: &RemoteCaller) -> Result<Call, KmsError> {
        let unrecognized = || {
            err(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid.",
            )
        };
        let changes = self.poll_changes();
        let (principals, root_policy) = self.current_principals_seen(changes)?;
        let snap = self.snapshot_seen(changes)?;
        let rec = snap
            .state
            .access_keys
            .get(&who.access_key_id)
            .filter(|r| r.status == ACTIVE)
            .ok_or_else(unrecognized)?;
        let resolved = principals
            .listed_by_arn(&rec.principal_arn)
            .ok_or_else(unrecognized)?;
        Ok(Call {
            caller: REMOTE_CALLER,
            remote: Some(who.clone()),
            who: resolved,
            principals,
            root_policy,
            now: self.clock.now(),
            // Never "kmsfs": kms:ViaService is the filesystem's, not a network client's.
            via: None,
            changes,
            decisions: Vec::new(),
            resources: Vec::new(),
            fs: None,
            audit_notes: serde_json::Map::new(),
        })
    }

    fn audit_unidentified_remote(&self, who: &RemoteCaller, op: &str, e: &KmsError) {
        let ev = Event {
            event_name: op.to_string(),
            identity: Identity {
                kind: "Unknown".into(),
                ..Identity::default()
            },
            error_code: Some(e.kind.aws_name().to_string()),
            error_message: Some(e.message.clone()),
            read_only: super::operations::is_read_only(op),
            remote: Some(remote_origin(who)),
            ..Event::default()
        };
        // Best effort: the call already fails with its own error.
        let _ = self.audit.append(&ev, self.clock.now());
    }

    /// Answers an access-key operation of the control socket (see [`IAM_OPERATIONS`]).
    pub(crate) fn iam_dispatch(
        &self,
        call: &mut Call,
        op: &str,
        req: &Value,
    ) -> Result<Value, KmsError> {
        match op {
            CREATE_ACCESS_KEY => self.create_access_key(call, req),
            LIST_ACCESS_KEYS => self.list_access_keys(call, req),
            DELETE_ACCESS_KEY => self.delete_access_key(call, req),
            _ => Err(err(
                ErrorKind::UnsupportedOperation,
                format!("kmsfs does not implement the operation \"{op}\""),
            )),
        }
    }

    /// The principal an access-key operation is about: `PrincipalArn` if given (it
    /// must be listed), else the caller itself (IAM's implicit user).
    fn target_principal(call: &Call, req: &Req<'_>) -> Result<Option<ResolvedPrincipal>, KmsError> {
        match req.opt_str("PrincipalArn")? {
            Some(arn) => call
                .principals
                .listed_by_arn(arn)
                .map(Some)
                .ok_or_else(|| no_such_principal(arn, &call.principals)),
            None if call.who.kind == PrincipalKind::Anonymous => Ok(None),
            None => Ok(Some(call.who.clone())),
        }
    }

    /// Authorizes `action` (iam:...) on `target_arn` like IAM, records the decision.
    fn authorize_iam(
        &self,
        call: &mut Call,
        action: &str,
        target_arn: &str,
    ) -> Result<(), KmsError> {
        let account = crate::principals::parse_principal_arn(target_arn)
            .map(|p| p.account)
            .unwrap_or_else(|_| call.principals.account().to_string());
        let doc = iam_delegation_policy(&account)?;
        let rc = RequestContext::new();
        let req = policy::Request {
            principal: &call.who.principal,
            action,
            resource: target_arn,
            resource_account: &account,
            encryption_context: None,
            context: &rc,
            now: call.now,
        };
        let ev = policy::evaluate(&req, &doc, &call.who.identity_policies, &[]);
        let mut dv = serde_json::to_value(&ev).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut dv {
            m.insert("action".into(), Value::String(action.to_string()));
            m.insert("resource".into(), Value::String(target_arn.to_string()));
        }
        call.decisions.push(std::sync::Arc::new(dv));
        if ev.decision == Decision::Allowed {
            return Ok(());
        }
        let user = match &call.who.principal.arn {
            Some(arn) => arn.clone(),
            None => format!("anonymous (uid {})", call.caller.uid),
        };
        let why = match ev.decision {
            Decision::ExplicitDeny => {
                "with an explicit deny in an identity-based policy".to_string()
            }
            _ => "because no identity-based policy allows the action".to_string(),
        };
        Err(err(
            ErrorKind::AccessDenied,
            format!("User: {user} is not authorized to perform: {action} on resource: {target_arn} {why}"),
        ))
    }

    fn create_access_key(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let target = Self::target_principal(call, &r)?
            .ok_or_else(|| validation("CreateAccessKey needs PrincipalArn (an anonymous caller has no principal of its own)"))?;
        let arn = target
            .principal
            .arn
            .clone()
            .ok_or_else(|| internal("a listed principal without an ARN"))?;
        self.authorize_iam(call, "iam:CreateAccessKey", &arn)?;
        let secret = new_secret()?;
        let now = call.now;
        let id = self.mutate(|st| {
            let held = st
                .access_keys
                .values()
                .filter(|k| k.principal_arn == arn)
                .count();
            if held >= MAX_KEYS_PER_PRINCIPAL {
                return Err(err(
                    ErrorKind::LimitExceeded,
                    format!("Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_PRINCIPAL} ({arn} has {held}; delete one first)"),
                ));
            }
            let mut id = new_access_key_id()?;
            while st.access_keys.contains_key(&id) {
                id = new_access_key_id()?;
            }
            let sealed = self
                .store
                .seal_secret(&seal_label(&id, &arn), secret.as_bytes())?;
            st.access_keys.insert(
                id.clone(),
                AccessKeyRecord {
                    principal_arn: arn.clone(),
                    status: ACTIVE.to_string(),
                    created: now,
                    sealed_secret: super::request::b64().encode(sealed),
                },
            );
            Ok((id, true))
        })?;
        let mut out = json!({
            "AccessKeyId": id,
            "SecretAccessKey": secret.as_str(),
            "PrincipalArn": arn,
            "Status": ACTIVE,
            "CreateDate": iso_date(now),
        });
        if let (Some(name), Value::Object(o)) = (user_name(&arn), &mut out) {
            o.insert("UserName".into(), Value::String(name.to_string()));
        }
        Ok(json!({ "AccessKey": out }))
    }

    fn list_access_keys(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let snap = self.snapshot()?;
        // The root without PrincipalArn sees every key of the store (kmsfs extension;
        // IAM would list the root's own); anyone else names a principal or means itself.
        let filter = if r.opt_str("PrincipalArn")?.is_none() && call.who.kind == PrincipalKind::Root
        {
            let root = call.principals.root_arn();
            self.authorize_iam(call, "iam:ListAccessKeys", &root)?;
            None
        } else {
            let target = Self::target_principal(call, &r)?.ok_or_else(|| {
                validation("ListAccessKeys needs PrincipalArn (an anonymous caller has no principal of its own)")
            })?;
            let arn = target.principal.arn.unwrap_or_default();
            self.authorize_iam(call, "iam:ListAccessKeys", &arn)?;
            Some(arn)
        };
        let keys: Vec<Value> = snap
            .state
            .access_keys
            .iter()
            .filter(|(_, k)| filter.as_ref().is_none_or(|a| *a == k.principal_arn))
            .map(|(id, k)| metadata(id, k))
            .collect();
        Ok(json!({ "AccessKeyMetadata": keys, "IsTruncated": false }))
    }

    fn delete_access_key(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let id = r.str("AccessKeyId")?.to_string();
        let not_found = || {
            err(
                ErrorKind::NoSuchEntity,
                format!("The Access Key with id {id} cannot be found."),
            )
        };
        let snap = self.snapshot()?;
        let owner = snap
            .state
            .access_keys
            .get(&id)
            .map(|k| k.principal_arn.clone())
            .ok_or_else(not_found)?;
        if let Some(arn) = r.opt_str("PrincipalArn")? {
            if arn != owner {
                return Err(not_found());
            }
        }
        self.authorize_iam(call, "iam:DeleteAccessKey", &owner)?;
        self.mutate(|st| {
            if st.access_keys.remove(&id).is_none() {
                return Err(not_found());
            }
            Ok(((), true))
        })?;
        Ok(json!({}))
    }
}

fn no_such_principal(arn: &str, principals: &Principals) -> KmsError {
    let file = principals
        .source()
        .map_or("no principals file is in use".to_string(), |p| {
            format!("it is not listed in {}", p.display())
        });
    err(
        ErrorKind::NoSuchEntity,
        format!(
            "The principal with ARN {arn} cannot be found: {file} (and it is not the account root)"
        ),
    )
}

pub(crate) fn remote_origin(r: &RemoteCaller) -> RemoteOrigin {
    RemoteOrigin {
        access_key_id: r.access_key_id.clone(),
        source_ip: r.source_ip.clone(),
        user_agent: r.user_agent.clone(),
        request_id: r.request_id.clone(),
    }
}
