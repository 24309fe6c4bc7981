//! Authorization: one question ([`Authz`]) about a key or an IAM-only action, evaluated
//! with [`crate::policy::evaluate`] against the key's (cached, parsed) policy, the
//! caller's identity policies and the key's grants; the decision is recorded for the
//! audit. Also the kmsfs extensions that ask such questions (Simulate, WhoAmI). Never
//! changes state.

pub(crate) mod cache;
pub(crate) mod guard;

#[cfg(test)]
mod cache_tests;

use std::sync::Arc;

use cache::{DecisionQuery, Rendered};

use serde_json::{json, Value};

use super::model::{KeyRecord, StoreState};
use super::service::{err, lock, Call, Service, Snapshot};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::policy::actions as act;
use crate::policy::{
    self, Decision, EncryptionContext, Evaluation, Grant, PolicyDocument, RequestContext,
};
use crate::principals::{PrincipalKind, ResolvedPrincipal};

/// Whether a data-path decision may be asked again with the same inputs (see
/// [`Service::authorize_cached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// An open's question: the same file is opened again (each open asks it).
    Again,
    /// A question about a context made for this one call (a new file's data key, or
    /// a file's key wrapped anew once): never asked again.
    Once,
}

/// One authorization question about a key (or, with `key: None`, an IAM-only action).
pub(crate) struct Authz<'x> {
    pub action: &'x str,
    pub key: Option<&'x KeyRecord>,
    pub context: Option<&'x EncryptionContext>,
    pub extra: RequestContext,
}

impl<'x> Authz<'x> {
    pub fn new(action: &'x str, key: Option<&'x KeyRecord>) -> Self {
        Authz {
            action,
            key,
            context: None,
            extra: RequestContext::new(),
        }
    }
    pub fn context(mut self, ctx: Option<&'x EncryptionContext>) -> Self {
        self.context = ctx;
        self
    }
    pub fn set(mut self, k: &str, v: impl Into<String>) -> Self {
        self.extra.set(k, v);
        self
    }
    /// kms:RequestAlias, when the caller named the key by an alias.
    pub fn request_alias(self, alias: Option<impl Into<String>>) -> Self {
        match alias {
            Some(al) => self.set("kms:RequestAlias", al),
            None => self,
        }
    }
    pub fn set_multi(mut self, k: &str, v: Vec<String>) -> Self {
        self.extra.set_multi(k, v);
        self
    }
    /// aws:RequestTag/<key> and aws:TagKeys for requests that add tags.
    pub fn request_tags(mut self, tags: &[super::model::Tag]) -> Self {
        if tags.is_empty() {
            return self;
        }
        for t in tags {
            self.extra
                .set(&format!("aws:RequestTag/{}", t.key), t.value.clone());
        }
        self.extra
            .set_multi("aws:TagKeys", tags.iter().map(|t| t.key.clone()).collect());
        self
    }
}

impl Service {
    /// A key's parsed policy (cached by text).
    pub(crate) fn policy_of(&self, k: &KeyRecord) -> Result<Arc<PolicyDocument>, KmsError> {
        let mut cache = lock(&self.policies);
        if let Some((text, doc)) = cache.get(&k.key_id) {
            if *text == k.policy {
                return Ok(doc.clone());
            }
        }
        let (doc, refusal) = PolicyDocument::parse_stored(&k.policy)
            .map_err(|e| internal(format!("a stored key policy no longer parses: {e}")))?;
        if let Some(why) = refusal {
            // Stored before duplicate keys were refused: keep the key usable with the
            // meaning it had (last copy wins), and say loudly that it needs replacing.
            log::warn!(
                "key {}: the stored key policy would now be refused ({why}); it is evaluated with the last copy of each duplicate key; put a corrected policy with `kmsfs kms put-key-policy`",
                k.key_id
            );
        }
        let doc = Arc::new(doc);
        cache.insert(k.key_id.clone(), (k.policy.clone(), doc.clone()));
        Ok(doc)
    }

    // ----- authorization ------------------------------------------------------------

    /// Evaluates without recording: `policy` replaces the key's policy (lockout check,
    /// escalation guard), `grants` the key's grants.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn evaluate_with(
        &self,
        call: &Call,
        st: &StoreState,
        a: &Authz<'_>,
        who: &ResolvedPrincipal,
        policy: Option<&PolicyDocument>,
        grants: Option<&[Grant]>,
        via: Option<&str>,
    ) -> Result<Evaluation, KmsError> {
        self.evaluate_traced(call, st, a, who, policy, grants, via)
            .map(|(ev, _)| ev)
    }

    /// [`Self::evaluate_with`], and whether the decision read the request's time or
    /// its encryption context.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_traced(
        &self,
        call: &Call,
        st: &StoreState,
        a: &Authz<'_>,
        who: &ResolvedPrincipal,
        policy: Option<&PolicyDocument>,
        grants: Option<&[Grant]>,
        via: Option<&str>,
    ) -> Result<(Evaluation, policy::Reads), KmsError> {
        let mut rc = a.extra.clone();
        if let Some(v) = via {
            rc.set("kms:ViaService", v);
        }
        let (resource, account) = match a.key {
            Some(k) => {
                let aliases: Vec<String> = st
                    .aliases
                    .values()
                    .filter(|al| al.target_key_id == k.key_id)
                    .map(|al| al.name.clone())
                    .collect();
                if !aliases.is_empty() {
                    rc.set_multi("kms:ResourceAliases", aliases);
                }
                for t in &k.tags {
                    rc.set(&format!("aws:ResourceTag/{}", t.key), t.value.clone());
                }
                rc.set("kms:KeyOrigin", k.origin.as_str());
                rc.set("kms:KeySpec", k.key_spec.as_str());
                rc.set("kms:KeyUsage", k.key_usage.as_str());
                (k.arn.as_str(), k.account.as_str())
            }
            None => ("*", call.principals.account()),
        };
        let owned;
        let doc: &PolicyDocument = match (policy, a.key) {
            (Some(p), _) => p,
            (None, Some(k)) => {
                owned = self.policy_of(k)?;
                &owned
            }
            (None, None) => &call.root_policy,
        };
        let grants: &[Grant] = match (grants, a.key) {
            (Some(g), _) => g,
            (None, Some(k)) => &k.grants,
            (None, None) => &[],
        };
        let req = policy::Request {
            principal: &who.principal,
            action: a.action,
            resource,
            resource_account: account,
            encryption_context: a.context,
            context: &rc,
            now: call.now,
        };
        Ok(policy::evaluate_traced(
            &req,
            doc,
            &who.identity_policies,
            grants,
        ))
    }

    /// Authorizes `a` for the caller, records the decision, and fails with
    /// AccessDeniedException unless allowed.
    pub(crate) fn authorize(
        &self,
        call: &mut Call,
        st: &StoreState,
        a: Authz<'_>,
    ) -> Result<Evaluation, KmsError> {
        let who = call.who.clone();
        let ev = self.evaluate_with(call, st, &a, &who, None, None, call.via)?;
        let r = render(call, &a, &ev);
        record(call, &a, r)?;
        Ok(ev)
    }

    /// [`Self::authorize`] for the data path, through the decision cache
    /// ([`cache`]): a decision made on the same snapshot and principals load for the
    /// same inputs is reused with its rendered reasons, so the audit record is the
    /// one an evaluation would give. `snap` must be the snapshot `a.key` comes from.
    ///
    /// With [`Reuse::Once`] the context is a new file's, asked about once: no entry
    /// for that context could ever answer again. Such a question is looked up and
    /// stored without its context instead, as one that holds for any context, and
    /// stored only when its evaluation read no part of the context (no
    /// `kms:EncryptionContext*` condition or variable, no grant with context
    /// constraints on the way to the decision): then the same inputs give the same
    /// decision, and the same record, whatever the context. A stream of creates by one
    /// principal under one key is then decided once per snapshot and principals load.
    /// A decision that read the context is evaluated anew for every question.
    pub(crate) fn authorize_cached(
        &self,
        call: &mut Call,
        snap: &Arc<Snapshot>,
        a: Authz<'_>,
        reuse: Reuse,
    ) -> Result<(), KmsError> {
        let Some(k) = a.key else {
            self.authorize(call, &snap.state, a)?;
            return Ok(());
        };
        let any_context = reuse == Reuse::Once;
        let context = if any_context { None } else { a.context };
        let query = DecisionQuery {
            action: a.action,
            key_id: &k.key_id,
            context,
            any_context,
            extra: &a.extra,
            via: call.via,
            who: &call.who,
            caller_uid: call.caller.uid,
        };
        if let Some(r) = self.decisions.get(snap, &call.principals, &query) {
            return record(call, &a, r);
        }
        let who = call.who.clone();
        let (ev, reads) =
            self.evaluate_traced(call, &snap.state, &a, &who, None, None, call.via)?;
        let mut r = render(call, &a, &ev);
        // Reused only if the same inputs give the same decision later: it did not read
        // the time, nor (for a question about any context) the context.
        let reusable = if any_context {
            !reads.time && !reads.context
        } else {
            !reads.time
        };
        if reusable {
            let query = DecisionQuery {
                action: a.action,
                key_id: &k.key_id,
                context,
                any_context,
                extra: &a.extra,
                via: call.via,
                who: &who,
                caller_uid: call.caller.uid,
            };
            r = self.decisions.put(snap, &call.principals, &query, r);
        }
        record(call, &a, r)
    }

    // ----- extension operations -------------------------------------------------------

    pub(crate) fn who_am_i(&self, call: &Call) -> Value {
        json!({
            "Arn": call.who.principal.arn,
            "Account": if call.who.principal.account.is_empty() { Value::Null } else { Value::String(call.who.principal.account.clone()) },
            "Uid": if call.remote.is_some() { Value::Null } else { json!(call.caller.uid) },
            "Gid": if call.remote.is_some() { Value::Null } else { json!(call.caller.gid) },
            "AccessKeyId": call.remote.as_ref().map(|r| r.access_key_id.clone()),
            "Type": kind_name(call.who.kind),
            "Store": self.store.dir().display().to_string(),
        })
    }

    pub(crate) fn simulate(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = super::request::Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let action_in = r.str("Action")?;
        let action = if action_in.contains(':') {
            action_in.to_string()
        } else {
            format!("kms:{action_in}")
        };
        let ctx = r.opt_context("EncryptionContext")?;
        let via = r.opt_str("ViaService")?.map(str::to_string);
        // kmsfs extension: "ForCaller": true asks about the caller exactly as it was
        // identified (supplementary groups included), anonymous callers too.
        let for_caller = r.flag("ForCaller")?;
        let target = if for_caller {
            call.who.clone()
        } else if let Some(arn) = r.opt_str("PrincipalArn")? {
            call.principals
                .by_arn(arn)
                .map_err(|m| err(ErrorKind::Validation, format!("PrincipalArn: {m}")))?
        } else {
            let uid = r.opt_int("Uid", 0, i64::from(u32::MAX))?.ok_or_else(|| {
                err(
                    ErrorKind::Validation,
                    "Simulate needs PrincipalArn, or Uid (and optionally Gid)",
                )
            })?;
            let gid = r.opt_int("Gid", 0, i64::from(u32::MAX))?.unwrap_or(uid);
            call.principals.resolve(
                u32::try_from(uid).unwrap_or(0),
                u32::try_from(gid).unwrap_or(0),
            )
        };
        let snap = self.snapshot()?;
        let (k, _) = self.find_key(call, &snap.state, key_id, true)?;
        // Asking what you yourself may do reveals nothing you could not learn by trying
        // (`kmsfs whoami`); asking about anyone else needs the right to read the policy.
        let about_self = for_caller
            || (target.principal.arn.is_some() && target.principal.arn == call.who.principal.arn);
        if !about_self {
            self.authorize(
                call,
                &snap.state,
                Authz::new(act::GET_KEY_POLICY.iam, Some(k)),
            )?;
        }
        let mut a = Authz::new(&action, Some(k)).context(ctx.as_ref());
        if let Some(ops) = r.opt_str_list("GrantOperations")? {
            a.extra.set_multi("kms:GrantOperations", ops);
        }
        let ev = self.evaluate_with(call, &snap.state, &a, &target, None, None, via.as_deref())?;
        let mut out = super::service::simulate_json(&ev);
        if let Value::Object(m) = &mut out {
            m.insert("PrincipalArn".into(), json!(target.principal.arn));
            m.insert("Action".into(), json!(action));
            m.insert("KeyArn".into(), json!(k.arn));
        }
        Ok(out)
    }
}

/// The decision as the audit records it (the evaluation with `action` and `resource`)
/// and, for a denial, the error the caller gets.
fn render(call: &Call, a: &Authz<'_>, ev: &Evaluation) -> Rendered {
    let resource = a.key.map(|k| k.arn.as_str()).unwrap_or("*");
    let mut dv = serde_json::to_value(ev).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut dv {
        m.insert("action".into(), Value::String(a.action.to_string()));
        m.insert("resource".into(), Value::String(resource.to_string()));
    }
    if ev.decision == Decision::Allowed {
        return Rendered {
            decision: Arc::new(dv),
            denial: None,
        };
    }
    let user = match &call.who.principal.arn {
        Some(arn) => arn.clone(),
        None => format!("anonymous (uid {})", call.caller.uid),
    };
    let why = match ev.decision {
        Decision::ExplicitDeny => "with an explicit deny in a policy".to_string(),
        _ => format!(
            "because no key policy, identity policy or grant allows the {} action",
            a.action
        ),
    };
    Rendered {
        decision: Arc::new(dv),
        denial: Some(err(
            ErrorKind::AccessDenied,
            format!(
                "User: {user} is not authorized to perform: {} on resource: {resource} {why}",
                a.action
            ),
        )),
    }
}

/// Records a rendered decision on the call (for its audit records) and answers it.
fn record(call: &mut Call, a: &Authz<'_>, r: Rendered) -> Result<(), KmsError> {
    call.decisions.push(r.decision);
    if let Some(k) = a.key {
        if !call.resources.contains(&k.arn) {
            call.resources.push(k.arn.clone());
        }
    }
    match r.denial {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn kind_name(k: PrincipalKind) -> &'static str {
    match k {
        PrincipalKind::Root => "Root",
        PrincipalKind::User => "User",
        PrincipalKind::Role => "Role",
        PrincipalKind::AssumedRole => "AssumedRole",
        PrincipalKind::FederatedUser => "FederatedUser",
        PrincipalKind::Anonymous => "Anonymous",
    }
}

#[cfg(test)]
mod request_alias_tests {
    use super::Authz;

    #[test]
    fn request_alias_is_set_only_for_an_alias() {
        let a = Authz::new("kms:Sign", None).request_alias(Some("alias/signer"));
        assert_eq!(
            a.extra.get("kms:RequestAlias"),
            Some(&["alias/signer".to_string()][..])
        );
        let a = Authz::new("kms:Sign", None).request_alias(None::<&str>);
        assert_eq!(a.extra.get("kms:RequestAlias"), None);
    }
}
