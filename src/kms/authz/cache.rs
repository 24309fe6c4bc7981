//! The decision cache of the data path: an authorization decision (allow or deny, with
//! the rendered reasons the audit record carries) reused for a later request with the
//! same inputs, so that an open on a key with many grants does not walk them all again.
//!
//! Why it cannot serve a stale decision: every entry belongs to one state snapshot and
//! one principals load (the `Arc`s the call was answered from). The service makes the
//! same change checks on every call as without the cache (the state file's and the
//! principals file's stamps), and any change (a policy, grant, alias, tag, key state,
//! the principals file or an identity policy file, made by this process or another)
//! yields a new snapshot or principals `Arc`, which empties the cache before it is
//! read. The key's state is gated on every call, not cached, and a decision that read
//! the request's time (`aws:CurrentTime`, `aws:EpochTime`) is never stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::super::service::Snapshot;
use super::super::KmsError;
use crate::policy::{EncryptionContext, RequestContext};
use crate::principals::{Principals, ResolvedPrincipal};

/// Entries kept at most; past it the cache starts again empty (a bound, not an LRU:
/// the working set of a mount is a few principals × keys × contexts).
const MAX_ENTRIES: usize = 4096;

/// Every input of one decision besides the snapshot and principals load it belongs to:
/// the question (action, key, encryption context, extra request keys, via service) and
/// the caller as resolved (its principal, the uid its denial message names, and its
/// identity policies by name and text).
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct DecisionKey {
    pub action: String,
    pub key_id: String,
    pub context: Option<EncryptionContext>,
    pub extra: RequestContext,
    pub via: Option<&'static str>,
    pub arn: Option<String>,
    pub account: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub caller_uid: u32,
    pub identity_policies: Vec<(String, String)>,
}

impl DecisionKey {
    pub fn new(
        action: &str,
        key_id: &str,
        context: Option<&EncryptionContext>,
        extra: &RequestContext,
        via: Option<&'static str>,
        who: &ResolvedPrincipal,
        caller_uid: u32,
    ) -> Self {
        DecisionKey {
            action: action.to_string(),
            key_id: key_id.to_string(),
            context: context.cloned(),
            extra: extra.clone(),
            via,
            arn: who.principal.arn.clone(),
            account: who.principal.account.clone(),
            uid: who.principal.uid,
            gid: who.principal.gid,
            caller_uid,
            identity_policies: who
                .identity_policies
                .iter()
                .map(|p| (p.name.clone(), p.document.text.clone()))
                .collect(),
        }
    }
}

/// A decision as the audit records it and as the caller gets it.
#[derive(Clone)]
pub(crate) struct Rendered {
    /// The serialized evaluation with `action` and `resource`: the record's decision.
    pub decision: Value,
    /// `None` when allowed; else the AccessDeniedException returned.
    pub denial: Option<KmsError>,
}

struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    principals: Option<Arc<Principals>>,
    entries: HashMap<DecisionKey, Rendered>,
}

impl Inner {
    /// Empties the cache unless it belongs to exactly this snapshot and principals load.
    /// The `Arc`s are held, so an address cannot be reused by a later load.
    fn bind(&mut self, snap: &Arc<Snapshot>, principals: &Arc<Principals>) {
        let same = self.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, snap))
            && self
                .principals
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, principals));
        if !same {
            self.entries.clear();
            self.snapshot = Some(snap.clone());
            self.principals = Some(principals.clone());
        }
    }
}

/// The cache (one per [`Service`](super::super::service::Service)).
pub(crate) struct DecisionCache {
    inner: Mutex<Inner>,
}

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache {
            inner: Mutex::new(Inner {
                snapshot: None,
                principals: None,
                entries: HashMap::new(),
            }),
        }
    }
}

impl DecisionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each change is one assignment or one map operation: a panic elsewhere cannot
        // leave an entry that belongs to another snapshot.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(
        &self,
        snap: &Arc<Snapshot>,
        principals: &Arc<Principals>,
        key: &DecisionKey,
    ) -> Option<Rendered> {
        let mut inner = self.lock();
        inner.bind(snap, principals);
        inner.entries.get(key).cloned()
    }

    pub fn put(
        &self,
        snap: &Arc<Snapshot>,
        principals: &Arc<Principals>,
        key: DecisionKey,
        r: Rendered,
    ) {
        let mut inner = self.lock();
        inner.bind(snap, principals);
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(key, r);
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.lock().entries.len()
    }
}
