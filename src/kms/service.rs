//! The key service: one [`Service`] per store, shared by the socket server, the CLI's
//! direct mode and the filesystem (through [`crate::kms::provider::DataKeys`]). Every
//! call runs the same pipeline: identify the caller (principals file, reloaded when it
//! changes), resolve the key, authorize with [`crate::policy::evaluate`], gate on key
//! state, act, and append one audit record per call and per authorization decision.
//!
//! This module owns the pipeline and the in-memory caches (state snapshot, parsed
//! policies, unsealed material as zeroizing keys). It never returns or logs key
//! material, never audits plaintext, and never acts before authorizing.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{json, Map, Value};

use super::clock::{Clock, SystemClock};
use super::model::{KeyRecord, KeyState, StoreState};
use super::provider::Caller;
use super::store::{internal, RootKeySource, StateIdent, Store};
use super::{ciphertext, managed, states, ErrorKind, KmsError};
use crate::audit::{AuditLog, Event, Identity};
use crate::crypto::{self, SealingKey};
use crate::policy::actions::{self as act, Action};
use crate::policy::{
    self, Decision, EncryptionContext, Evaluation, Grant, PolicyDocument, RequestContext,
};
use crate::principals::{PrincipalKind, Principals, ResolvedPrincipal};

/// Everything needed to open a store.
#[derive(Clone)]
pub struct ServiceConfig {
    pub store_dir: PathBuf,
    /// The principals file; default `<store>/principals.toml` if present.
    pub principals_path: Option<PathBuf>,
    pub root_key: RootKeySource,
    pub clock: Arc<dyn Clock>,
}

impl ServiceConfig {
    /// A config with the default root key file (`<store>/root.key`), no explicit
    /// principals file and the system clock.
    pub fn new(store_dir: impl Into<PathBuf>) -> Self {
        let store_dir = store_dir.into();
        let root_key = RootKeySource::KeyFile(store_dir.join(super::store::ROOT_KEY_FILE));
        ServiceConfig {
            store_dir,
            principals_path: None,
            root_key,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("store_dir", &self.store_dir)
            .field("principals_path", &self.principals_path)
            .field("root_key", &self.root_key)
            .finish()
    }
}

/// Creates the store (and the service-managed default key) if absent. Idempotent:
/// returns whether the store was created; an existing store must open with the
/// configured root key.
pub fn init_store(cfg: &ServiceConfig) -> Result<bool, KmsError> {
    let now = cfg.clock.now();
    let created = Store::init(&cfg.store_dir, &cfg.root_key, now)?;
    let svc = Service::open(cfg.clone())?;
    svc.ensure_default_key(now)?;
    Ok(created)
}

pub(crate) struct Snapshot {
    pub state: StoreState,
    ident: StateIdent,
}

/// (mtime, mtime ns, ctime, ctime ns, inode, size) of the principals file, None when
/// absent. ctime catches chmod/chown, so a mode change is checked at once.
type FileStamp = (i64, i64, i64, i64, u64, u64);

/// Identity policy files are re-checked at most this often (the principals file itself
/// on every call), so editing a policy file takes effect within this delay.
const POLICY_FILES_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

struct PrincipalsCache {
    principals: Arc<Principals>,
    root_policy: Arc<PolicyDocument>,
    stamp: Option<FileStamp>,
    /// The identity policy files the principals file names, with their stamps.
    policy_stamps: Vec<(PathBuf, Option<FileStamp>)>,
    policies_checked: std::time::Instant,
    /// The last reload failure logged, so a broken file is logged once, not per call.
    last_error: Option<String>,
}

/// The key service over one store.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    audit: AuditLog,
    principals_explicit: Option<PathBuf>,
    principals: Mutex<PrincipalsCache>,
    snapshot: RwLock<Arc<Snapshot>>,
    writer: Mutex<()>,
    policies: Mutex<HashMap<String, (String, Arc<PolicyDocument>)>>,
    cipher_keys: RwLock<HashMap<(String, u32), Arc<SealingKey>>>,
    pub(crate) volume_secrets: Mutex<HashMap<String, Arc<SealingKey>>>,
}

/// One call in flight: who, when, and the decisions made so far (for the audit).
pub(crate) struct Call {
    pub caller: Caller,
    pub who: ResolvedPrincipal,
    pub principals: Arc<Principals>,
    pub root_policy: Arc<PolicyDocument>,
    pub now: i64,
    /// "kmsfs" for filesystem calls, else None.
    pub via: Option<&'static str>,
    pub decisions: Vec<Value>,
    pub resources: Vec<String>,
    pub fs: Option<Value>,
    /// Extra audit response elements (the escalation-guard bypass).
    pub audit_notes: Map<String, Value>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread cannot leave these maps half-updated in a way that
    // matters (each insert is one call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// AWS's default key policy: the account root may do everything, which delegates
/// access to the account's identity policies.
pub fn root_delegation_policy(account: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {{
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {{ "AWS": "arn:aws:iam::{account}:root" }},
      "Action": "kms:*",
      "Resource": "*"
    }}
  ]
}}"#
    )
}

pub(crate) fn err(kind: ErrorKind, msg: impl Into<String>) -> KmsError {
    KmsError::new(kind, msg)
}

/// The form `kmsfs simulate` prints: `{"EvalDecision", "MatchedStatements", "Notes"}`.
pub fn simulate_json(ev: &Evaluation) -> Value {
    ev.to_simulate_json()
}

impl Service {
    /// Opens the store (checking modes, owner and root key), the audit log and the
    /// principals mapping.
    pub fn open(cfg: ServiceConfig) -> Result<Arc<Service>, KmsError> {
        let store = Store::open(&cfg.store_dir, &cfg.root_key)?;
        let (state, ident) = store.read_state()?;
        let (principals, stamp, policy_stamps) =
            load_principals(cfg.principals_path.as_deref(), &store)?;
        let audit = AuditLog::open(&store.audit_path())
            .map_err(|e| internal(format!("cannot open the audit log: {e}")))?
            .with_region(principals.region());
        let root_policy = Arc::new(parse_stored_policy(&root_delegation_policy(
            principals.account(),
        ))?);
        Ok(Arc::new(Service {
            store,
            clock: cfg.clock,
            audit,
            principals_explicit: cfg.principals_path,
            principals: Mutex::new(PrincipalsCache {
                principals: Arc::new(principals),
                root_policy,
                stamp,
                policy_stamps,
                policies_checked: std::time::Instant::now(),
                last_error: None,
            }),
            snapshot: RwLock::new(Arc::new(Snapshot { state, ident })),
            writer: Mutex::new(()),
            policies: Mutex::new(HashMap::new()),
            cipher_keys: RwLock::new(HashMap::new()),
            volume_secrets: Mutex::new(HashMap::new()),
        }))
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.dir()
    }

    /// The uid that owns the store (its administrator on a single-user machine).
    pub fn store_owner_uid(&self) -> u32 {
        self.store.owner_uid()
    }

    /// The store's id (`store.json`), which names it in messages.
    pub fn store_id(&self) -> &str {
        self.store.store_id()
    }

    /// Whether this store holds the secret of volume `volume_id`, i.e. whether the volume
    /// was made with this store (or a restored copy of it). Unlike
    /// [`DataKeys::volume_secret`](super::provider::DataKeys::volume_secret), never
    /// creates one: mounting a volume of a lost store must say so, not mint a secret
    /// that cannot open it.
    pub fn has_volume_secret(&self, volume_id: &str) -> Result<bool, KmsError> {
        Ok(self
            .snapshot()?
            .state
            .volume_secrets
            .contains_key(volume_id))
    }

    /// Runs one AWS KMS JSON API operation for `caller` (see the module doc of
    /// [`crate::kms`] for the list). Every call is audited, allowed or not.
    pub fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
    ) -> Result<Value, KmsError> {
        let mut call = match self.begin(caller, None) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, operation, &e);
                return Err(e);
            }
        };
        let result = self.dispatch(&mut call, operation, &request);
        self.finish(&call, operation, &request, result)
    }

    pub(crate) fn begin(
        &self,
        caller: &Caller,
        via: Option<&'static str>,
    ) -> Result<Call, KmsError> {
        let (principals, root_policy) = self.current_principals()?;
        let who = principals.resolve_with_groups(caller.uid, caller.gid, || {
            crate::principals::process_groups(caller.pid, caller.uid, caller.gid)
                .unwrap_or_default()
        });
        Ok(Call {
            caller: *caller,
            who,
            principals,
            root_policy,
            now: self.clock.now(),
            via,
            decisions: Vec::new(),
            resources: Vec::new(),
            fs: None,
            audit_notes: Map::new(),
        })
    }

    fn dispatch(&self, call: &mut Call, op: &str, req: &Value) -> Result<Value, KmsError> {
        match super::operations::lookup(op).and_then(|o| o.handler()) {
            Some(handler) => handler(self, call, req),
            None => Err(err(
                ErrorKind::UnsupportedOperation,
                format!("kmsfs does not implement the operation \"{op}\""),
            )),
        }
    }

    // ----- principals -----------------------------------------------------------

    fn current_principals(&self) -> Result<(Arc<Principals>, Arc<PolicyDocument>), KmsError> {
        let path = self
            .principals_explicit
            .clone()
            .unwrap_or_else(|| self.store.dir().join("principals.toml"));
        let stamp = file_stamp(&path);
        let mut cache = lock(&self.principals);
        // After a failed reload, keep failing (closed) until a reload succeeds.
        let mut reload = cache.stamp != stamp || cache.last_error.is_some();
        if !reload && cache.policies_checked.elapsed() >= POLICY_FILES_RECHECK {
            reload = cache.policy_stamps.iter().any(|(p, s)| file_stamp(p) != *s);
            cache.policies_checked = std::time::Instant::now();
        }
        if reload {
            // Changed, appeared or disappeared: reload. A broken file fails closed
            // (every call errors, naming the file) rather than keeping stale grants.
            let loaded = load_principals(self.principals_explicit.as_deref(), &self.store);
            let (p, stamp, policy_stamps) = match loaded {
                Ok(l) => {
                    cache.last_error = None;
                    l
                }
                Err(e) => {
                    // A mount's callers only see EIO; the log says why, once per
                    // distinct failure rather than once per call.
                    if cache.last_error.as_deref() != Some(e.message.as_str()) {
                        log::error!(
                            "key service for store {}: every request fails until the principals file is fixed: {}",
                            self.store.dir().display(),
                            e.message
                        );
                        cache.last_error = Some(e.message.clone());
                    }
                    return Err(e);
                }
            };
            cache.root_policy =
                Arc::new(parse_stored_policy(&root_delegation_policy(p.account()))?);
            cache.principals = Arc::new(p);
            cache.stamp = stamp;
            cache.policy_stamps = policy_stamps;
        }
        Ok((cache.principals.clone(), cache.root_policy.clone()))
    }

    pub(crate) fn account_region(&self) -> Result<(String, String), KmsError> {
        let (p, _) = self.current_principals()?;
        Ok((p.account().to_string(), p.region().to_string()))
    }

    // ----- state ------------------------------------------------------------------

    /// The current state, re-read if another process (or this one) committed since.
    pub(crate) fn snapshot(&self) -> Result<Arc<Snapshot>, KmsError> {
        let ident = self.store.state_ident()?;
        {
            let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            if s.ident == ident {
                return Ok(s.clone());
            }
        }
        let (state, ident) = self.store.read_state_current()?;
        Ok(self.install(state, ident))
    }

    fn install(&self, state: StoreState, ident: StateIdent) -> Arc<Snapshot> {
        // Forget unsealed material that the new state no longer lists.
        {
            let mut ck = self.cipher_keys.write().unwrap_or_else(|e| e.into_inner());
            ck.retain(|(id, v), _| {
                state.keys.get(id).is_some_and(|k| {
                    k.materials.iter().any(|m| m.version == *v)
                        && !(k.state == KeyState::PendingImport)
                })
            });
        }
        lock(&self.policies).retain(|id, _| state.keys.contains_key(id));
        let snap = Arc::new(Snapshot { state, ident });
        let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        // Generations only grow (each writer increments under the lock): a reader that
        // read an older file must not replace a newer snapshot a writer installed.
        if snap.state.generation >= current.state.generation {
            *current = snap.clone();
        }
        snap
    }

    /// Applies `f` to the freshly read state under the store lock and commits the
    /// result if `f` says it changed something. `f` must authorize before changing.
    pub(crate) fn mutate<R>(
        &self,
        f: impl FnOnce(&mut StoreState) -> Result<(R, bool), KmsError>,
    ) -> Result<R, KmsError> {
        let _in_process = lock(&self.writer);
        let guard = self.store.lock()?;
        let (mut state, ident) = self.store.read_state_locked(&guard)?;
        let (r, changed) = f(&mut state)?;
        if changed {
            state.generation += 1;
            let ident = self.store.write_state(&state, &guard)?;
            self.install(state, ident);
        } else {
            self.install(state, ident);
        }
        Ok(r)
    }

    // ----- keys -------------------------------------------------------------------

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

    /// The AEAD key of one material version (HKDF of the unsealed material, cached).
    pub(crate) fn cipher_key(
        &self,
        key_id: &str,
        version: u32,
    ) -> Result<Arc<SealingKey>, KmsError> {
        let id = (key_id.to_string(), version);
        if let Some(k) = self
            .cipher_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(k.clone());
        }
        let material = self.store.read_material(key_id, version)?;
        let mut salt = key_id.as_bytes().to_vec();
        salt.extend_from_slice(&version.to_be_bytes());
        let key = Arc::new(crypto::hkdf_sealing_key(
            &material,
            &salt,
            ciphertext::CIPHERTEXT_KEY_INFO,
        ));
        self.cipher_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, key.clone());
        Ok(key)
    }

    pub(crate) fn forget_material(&self, key_id: &str) {
        self.cipher_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| id != key_id);
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
                rc.set("kms:KeySpec", "SYMMETRIC_DEFAULT");
                rc.set("kms:KeyUsage", "ENCRYPT_DECRYPT");
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
        Ok(policy::evaluate(&req, doc, &who.identity_policies, grants))
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
        let resource = a.key.map(|k| k.arn.clone()).unwrap_or_else(|| "*".into());
        let mut dv = serde_json::to_value(&ev).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut dv {
            m.insert("action".into(), Value::String(a.action.to_string()));
            m.insert("resource".into(), Value::String(resource.clone()));
        }
        call.decisions.push(dv);
        if let Some(k) = a.key {
            if !call.resources.contains(&k.arn) {
                call.resources.push(k.arn.clone());
            }
        }
        if ev.decision == Decision::Allowed {
            return Ok(ev);
        }
        let user = match &who.principal.arn {
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
        Err(err(
            ErrorKind::AccessDenied,
            format!(
                "User: {user} is not authorized to perform: {} on resource: {resource} {why}",
                a.action
            ),
        ))
    }

    // ----- audit --------------------------------------------------------------------

    fn identity(call: &Call) -> Identity {
        identity_of(&call.who, &call.caller)
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

    // ----- extension operations -------------------------------------------------------

    pub(crate) fn who_am_i(&self, call: &Call) -> Value {
        json!({
            "Arn": call.who.principal.arn,
            "Account": if call.who.principal.account.is_empty() { Value::Null } else { Value::String(call.who.principal.account.clone()) },
            "Uid": call.caller.uid,
            "Gid": call.caller.gid,
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
            self.authorize(call, &snap.state, Authz::new(act::GET_KEY_POLICY.iam, Some(k)))?;
        }
        let mut a = Authz::new(&action, Some(k)).context(ctx.as_ref());
        if let Some(ops) = r.opt_str_list("GrantOperations")? {
            a.extra.set_multi("kms:GrantOperations", ops);
        }
        let ev = self.evaluate_with(call, &snap.state, &a, &target, None, None, via.as_deref())?;
        let mut out = simulate_json(&ev);
        if let Value::Object(m) = &mut out {
            m.insert("PrincipalArn".into(), json!(target.principal.arn));
            m.insert("Action".into(), json!(action));
            m.insert("KeyArn".into(), json!(k.arn));
        }
        Ok(out)
    }

    // ----- key lookup -----------------------------------------------------------------

    /// Resolves a KeyId (key id, key ARN, and when `allow_alias` alias name or alias
    /// ARN) to a live key; returns the alias name used, if any.
    pub(crate) fn find_key<'s>(
        &self,
        call: &Call,
        st: &'s StoreState,
        key_id: &str,
        allow_alias: bool,
    ) -> Result<(&'s KeyRecord, Option<String>), KmsError> {
        let account = call.principals.account();
        let region = call.principals.region();
        // A stored key's exact ARN always resolves, even if the principals file has
        // since changed the account or region new keys get.
        if key_id.starts_with("arn:") {
            if let Some(k) = st.keys.values().find(|k| k.arn == key_id) {
                if !is_destroyed(k, call.now) {
                    return Ok((k, None));
                }
            }
        }
        let (id, alias) = parse_key_ref(key_id, account, region)?;
        let id = match alias {
            Some(ref name) => {
                if !allow_alias {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("Invalid keyId '{key_id}': this operation needs a key id or key ARN, not an alias"),
                    ));
                }
                match st.aliases.get(name) {
                    Some(a) => a.target_key_id.clone(),
                    None => {
                        return Err(err(
                            ErrorKind::NotFound,
                            format!("Alias arn:aws:kms:{region}:{account}:{name} is not found."),
                        ))
                    }
                }
            }
            None => id,
        };
        match st.keys.get(&id) {
            Some(k) if !is_destroyed(k, call.now) => Ok((k, alias)),
            _ => Err(err(
                ErrorKind::NotFound,
                format!("Key 'arn:aws:kms:{region}:{account}:key/{id}' does not exist"),
            )),
        }
    }

    /// Fails with the key-state exception AWS gives `op` on this key.
    pub(crate) fn gate(&self, action: &Action, k: &KeyRecord, now: i64) -> Result<(), KmsError> {
        let rule = super::operations::gate_of(action);
        match states::gate(rule, effective_state(k, now), k.origin) {
            None => Ok(()),
            Some((kind, msg)) => Err(err(kind, format!("{} {msg}", k.arn))),
        }
    }

    /// Creates the service-managed default key if it does not exist yet.
    pub(crate) fn ensure_default_key(&self, now: i64) -> Result<(), KmsError> {
        let snap = self.snapshot()?;
        if snap.state.aliases.contains_key(managed::DEFAULT_ALIAS) {
            return Ok(());
        }
        let (account, region) = self.account_region()?;
        let created = self.mutate(|st| {
            if st.aliases.contains_key(managed::DEFAULT_ALIAS) {
                return Ok((None, false));
            }
            let arn = managed::create_default_key(&self.store, st, &account, &region, now)?;
            Ok((Some(arn), true))
        })?;
        if let Some(arn) = created {
            self.audit_service_event(
                act::CREATE_KEY.name,
                &arn,
                now,
                json!({ "KeyManager": "AWS", "Alias": managed::DEFAULT_ALIAS }),
            );
        }
        Ok(())
    }

    /// Creates the default key first if `key_id` names its alias.
    pub(crate) fn ensure_default_if_named(
        &self,
        call: &Call,
        key_id: &str,
    ) -> Result<(), KmsError> {
        let account = call.principals.account();
        let region = call.principals.region();
        if let Ok((_, Some(alias))) = parse_key_ref(key_id, account, region) {
            if alias == managed::DEFAULT_ALIAS {
                self.ensure_default_key(call.now)?;
            }
        }
        Ok(())
    }

    /// Applies what is due: scheduled deletions (crypto-shredding the material),
    /// automatic rotations, imported material expiry; and shreds material a crash left
    /// unreferenced. The server calls it periodically; it is cheap when nothing is due.
    pub fn tick(&self) -> Result<(), KmsError> {
        let now = self.clock.now();
        let snap = self.snapshot()?;
        let due = snap.state.keys.values().any(|k| is_due(k, now));
        if due {
            let done = self.mutate(|st| {
                let mut done = Vec::new();
                let ids: Vec<String> = st.keys.keys().cloned().collect();
                for id in ids {
                    let Some(k) = st.keys.get_mut(&id) else {
                        continue;
                    };
                    if !is_due(k, now) {
                        continue;
                    }
                    if k.state == KeyState::PendingDeletion
                        && k.deletion_date.is_some_and(|d| d <= now)
                    {
                        let arn = k.arn.clone();
                        st.keys.remove(&id);
                        st.aliases.retain(|_, a| a.target_key_id != id);
                        done.push(("DeleteKey", id.clone(), arn, json!({})));
                        continue;
                    }
                    if let Some(vt) = k.import.as_ref().and_then(|i| i.valid_to) {
                        if vt <= now && k.current_version.is_some() {
                            k.current_version = None;
                            k.materials.clear();
                            if k.state != KeyState::PendingDeletion {
                                k.state = KeyState::PendingImport;
                            }
                            done.push((
                                "DeleteExpiredKeyMaterial",
                                id.clone(),
                                k.arn.clone(),
                                json!({}),
                            ));
                            continue;
                        }
                    }
                    if let Some(rot) = k.rotation.clone() {
                        if k.state == KeyState::Enabled && rot.next() <= now {
                            let v = super::ops_keys::add_material_version(
                                &self.store,
                                k,
                                now,
                                super::model::RotationType::Automatic,
                            )?;
                            if let Some(r) = k.rotation.as_mut() {
                                r.anchor = now;
                            }
                            done.push((
                                "RotateKey",
                                id.clone(),
                                k.arn.clone(),
                                json!({ "MaterialVersion": v }),
                            ));
                        }
                    }
                }
                let changed = !done.is_empty();
                Ok((done, changed))
            })?;
            for (name, id, arn, detail) in done {
                if name != "RotateKey" {
                    // After the commit: the state no longer names this material
                    // (a deleted key, or expired imported material), so shred it.
                    self.forget_material(&id);
                    self.store.shred_key(&id)?;
                }
                self.audit_service_event(name, &arn, now, detail);
            }
        }
        // Garbage is judged against the state read under the lock: a snapshot taken
        // before it could miss a key another writer just committed, and shred it.
        let _in_process = lock(&self.writer);
        let guard = self.store.lock()?;
        let (state, _) = self.store.read_state_locked(&guard)?;
        self.store.collect_garbage(&state)
    }
}

fn is_due(k: &KeyRecord, now: i64) -> bool {
    (k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now))
        || (k.current_version.is_some()
            && k.import
                .as_ref()
                .and_then(|i| i.valid_to)
                .is_some_and(|v| v <= now))
        || (k.state == KeyState::Enabled && k.rotation.as_ref().is_some_and(|r| r.next() <= now))
}

/// True once a key's deletion date has passed (tick may not have run yet).
pub(crate) fn is_destroyed(k: &KeyRecord, now: i64) -> bool {
    k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now)
}

/// The state as of `now`: imported material past its ValidTo counts as gone.
pub(crate) fn effective_state(k: &KeyRecord, now: i64) -> KeyState {
    if k.state != KeyState::PendingDeletion
        && k.import
            .as_ref()
            .and_then(|i| i.valid_to)
            .is_some_and(|v| v <= now)
    {
        return KeyState::PendingImport;
    }
    k.state
}

/// Splits a KeyId into (key id, alias name). Foreign accounts/regions are NotFound.
/// AWS's length limit of a KeyId member (key id, key ARN, alias name or alias ARN).
const MAX_KEY_ID_LEN: usize = 2048;

pub(crate) fn parse_key_ref(
    key_id: &str,
    account: &str,
    region: &str,
) -> Result<(String, Option<String>), KmsError> {
    let not_found = |why: &str| {
        err(
            ErrorKind::NotFound,
            format!("Invalid keyId '{key_id}': {why}"),
        )
    };
    if key_id.is_empty() {
        return Err(super::request::validation(
            "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        // Checked before the id is echoed in any message.
        return Err(super::request::validation(format!(
            "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length less than or equal to {MAX_KEY_ID_LEN}"
        )));
    }
    if key_id.starts_with("alias/") {
        return Ok((String::new(), Some(key_id.to_string())));
    }
    if let Some(rest) = key_id.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [_partition, service, r, a, resource] = parts.as_slice() else {
            return Err(not_found("not a valid ARN"));
        };
        if *service != "kms" {
            return Err(not_found("not a KMS ARN"));
        }
        if *r != region || *a != account {
            return Err(err(
                ErrorKind::NotFound,
                format!("Key '{key_id}' does not exist (this store serves account {account} in region {region})"),
            ));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            if !ciphertext::is_key_id(id) {
                return Err(not_found("the key id in the ARN is not a key id"));
            }
            return Ok((id.to_string(), None));
        }
        if resource.starts_with("alias/") {
            return Ok((String::new(), Some(resource.to_string())));
        }
        return Err(not_found("the ARN names neither a key nor an alias"));
    }
    if ciphertext::is_key_id(key_id) {
        return Ok((key_id.to_string(), None));
    }
    Err(not_found(
        "expected a key id, key ARN, alias name or alias ARN",
    ))
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

fn file_stamp(p: &Path) -> Option<FileStamp> {
    std::fs::metadata(p).ok().map(|m| {
        (
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.size(),
        )
    })
}

type LoadedPrincipals = (
    Principals,
    Option<FileStamp>,
    Vec<(PathBuf, Option<FileStamp>)>,
);

fn load_principals(explicit: Option<&Path>, store: &Store) -> Result<LoadedPrincipals, KmsError> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store.dir().join("principals.toml"));
    let stamp = file_stamp(&path);
    if stamp.is_some() {
        check_principals_file(&path)?;
    }
    // Stamps taken before reading, so an edit during the load is seen next time.
    let policy_stamps: Vec<(PathBuf, Option<FileStamp>)> = policy_files(&path)
        .into_iter()
        .map(|p| {
            let s = file_stamp(&p);
            (p, s)
        })
        .collect();
    let p = Principals::load_or_default(explicit, store.dir(), store.owner_uid())
        .map_err(|e| internal(format!("principals file: {e}")))?;
    Ok((p, stamp, policy_stamps))
}

/// The identity policy files a principals file names (`policies = [...]`, relative to
/// it). Best effort: a file that does not parse names none (loading it fails anyway).
fn policy_files(principals: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(principals) else {
        return Vec::new();
    };
    let Ok(doc) = toml::from_str::<toml::Value>(&text) else {
        return Vec::new();
    };
    let base = principals.parent().unwrap_or(Path::new("."));
    doc.get("principal")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("policies").and_then(toml::Value::as_array))
        .flatten()
        .filter_map(toml::Value::as_str)
        .map(|f| base.join(f))
        .collect()
}

/// The principals file decides who is whom: refuse one that another user could edit
/// (owned by someone other than this process's user or root, or group/other-writable).
fn check_principals_file(path: &Path) -> Result<(), KmsError> {
    let m = std::fs::metadata(path)
        .map_err(|e| internal(format!("principals file {}: {e}", path.display())))?;
    let euid = nix::unistd::geteuid().as_raw();
    if m.uid() != euid && m.uid() != 0 {
        return Err(internal(format!(
            "principals file {} is owned by uid {}; it must be owned by uid {euid} or root, since it decides who is whom",
            path.display(),
            m.uid()
        )));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(internal(format!(
            "principals file {} has mode {mode:04o}: other users could edit it and become any principal; make it 0644 or stricter (chmod go-w {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Parses a policy the store already accepted once; failure means a damaged store.
pub(crate) fn parse_stored_policy(text: &str) -> Result<PolicyDocument, KmsError> {
    PolicyDocument::parse(text)
        .map_err(|e| internal(format!("a stored key policy no longer parses: {e}")))
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
