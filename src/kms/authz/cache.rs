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

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
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
#[derive(PartialEq, Eq)]
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

/// The same inputs as [`DecisionKey`], borrowed from the call: a lookup hashes and
/// compares these in place, so a hit (every open but the first per snapshot) copies
/// none of them; only a miss builds the owned key it stores.
pub(crate) struct DecisionQuery<'a> {
    pub action: &'a str,
    pub key_id: &'a str,
    pub context: Option<&'a EncryptionContext>,
    pub extra: &'a RequestContext,
    pub via: Option<&'static str>,
    pub who: &'a ResolvedPrincipal,
    pub caller_uid: u32,
}

impl DecisionQuery<'_> {
    /// The hash an entry for this query is filed under. Every field that [`Self::matches`]
    /// compares is hashed, in one fixed order, so equal questions hash alike.
    fn hash_with(&self, hasher: &RandomState) -> u64 {
        let mut h = hasher.build_hasher();
        self.action.hash(&mut h);
        self.key_id.hash(&mut h);
        self.context.hash(&mut h);
        self.extra.hash(&mut h);
        self.via.hash(&mut h);
        self.who.principal.arn.hash(&mut h);
        self.who.principal.account.hash(&mut h);
        self.who.principal.uid.hash(&mut h);
        self.who.principal.gid.hash(&mut h);
        self.caller_uid.hash(&mut h);
        self.who.identity_policies.len().hash(&mut h);
        for p in &self.who.identity_policies {
            p.name.hash(&mut h);
            p.document.text.hash(&mut h);
        }
        h.finish()
    }

    fn matches(&self, k: &DecisionKey) -> bool {
        k.action == self.action
            && k.key_id == self.key_id
            && k.context.as_ref() == self.context
            && &k.extra == self.extra
            && k.via == self.via
            && k.arn == self.who.principal.arn
            && k.account == self.who.principal.account
            && k.uid == self.who.principal.uid
            && k.gid == self.who.principal.gid
            && k.caller_uid == self.caller_uid
            && k.identity_policies.len() == self.who.identity_policies.len()
            && k.identity_policies
                .iter()
                .zip(&self.who.identity_policies)
                .all(|((name, text), p)| *name == p.name && *text == p.document.text)
    }

    fn to_key(&self) -> DecisionKey {
        DecisionKey {
            action: self.action.to_string(),
            key_id: self.key_id.to_string(),
            context: self.context.cloned(),
            extra: self.extra.clone(),
            via: self.via,
            arn: self.who.principal.arn.clone(),
            account: self.who.principal.account.clone(),
            uid: self.who.principal.uid,
            gid: self.who.principal.gid,
            caller_uid: self.caller_uid,
            identity_policies: self
                .who
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
    /// Shared, so that a cached decision reaches its audit record without a deep copy.
    pub decision: Arc<Value>,
    /// `None` when allowed; else the AccessDeniedException returned.
    pub denial: Option<KmsError>,
}

struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    principals: Option<Arc<Principals>>,
    /// By [`DecisionQuery::hash_with`]; a bucket holds the entries whose hashes collide.
    entries: HashMap<u64, Vec<(DecisionKey, Rendered)>>,
    /// Entries held (the buckets' lengths summed).
    len: usize,
    hasher: RandomState,
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
            self.len = 0;
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
                len: 0,
                hasher: RandomState::new(),
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
        q: &DecisionQuery<'_>,
    ) -> Option<Rendered> {
        let mut inner = self.lock();
        inner.bind(snap, principals);
        let h = q.hash_with(&inner.hasher);
        inner
            .entries
            .get(&h)?
            .iter()
            .find(|(k, _)| q.matches(k))
            .map(|(_, r)| r.clone())
    }

    pub fn put(
        &self,
        snap: &Arc<Snapshot>,
        principals: &Arc<Principals>,
        q: &DecisionQuery<'_>,
        r: Rendered,
    ) {
        let mut inner = self.lock();
        inner.bind(snap, principals);
        if inner.len >= MAX_ENTRIES {
            inner.entries.clear();
            inner.len = 0;
        }
        let h = q.hash_with(&inner.hasher);
        let bucket = inner.entries.entry(h).or_default();
        if let Some(slot) = bucket.iter_mut().find(|(k, _)| q.matches(k)) {
            slot.1 = r;
            return;
        }
        bucket.push((q.to_key(), r));
        inner.len += 1;
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;
    use crate::policy::{IdentityPolicy, PolicyDocument, Principal};
    use crate::principals::PrincipalKind;

    fn who(arn: &str, policy_text: &str) -> ResolvedPrincipal {
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{policy_text}","Resource":"*"}}]}}"#
        );
        ResolvedPrincipal {
            principal: Principal {
                arn: Some(arn.to_string()),
                account: "111122223333".into(),
                uid: Some(1000),
                gid: Some(1000),
            },
            identity_policies: vec![IdentityPolicy {
                name: "p.json".into(),
                document: PolicyDocument::parse_identity(&text).unwrap(),
            }],
            kind: PrincipalKind::User,
            aws_profile: None,
        }
    }

    /// A stored key answers exactly the query it was built from: every input, changed
    /// alone, misses (a field left out of `matches` would serve another question's
    /// decision), and equal queries hash alike (a field hashed but not compared, or
    /// hashed from another value, would make hits miss).
    #[test]
    fn a_query_matches_its_own_key_and_no_query_differing_in_one_input() {
        let hasher = RandomState::new();
        let ctx: EncryptionContext = [("kmsfs:file".to_string(), "f1".to_string())].into();
        let ctx2: EncryptionContext = [("kmsfs:file".to_string(), "f2".to_string())].into();
        let extra = RequestContext::new();
        let mut extra2 = RequestContext::new();
        extra2.set("kms:GrantOperations", "Decrypt");
        let alice = who("arn:aws:iam::111122223333:user/alice", "kms:Decrypt");
        let base = DecisionQuery {
            action: "kms:Decrypt",
            key_id: "k1",
            context: Some(&ctx),
            extra: &extra,
            via: Some("kmsfs"),
            who: &alice,
            caller_uid: 1000,
        };
        let key = base.to_key();
        assert!(base.matches(&key));
        let again = DecisionQuery { ..base };
        assert_eq!(again.hash_with(&hasher), base.hash_with(&hasher));

        let bob = who("arn:aws:iam::111122223333:user/bob", "kms:Decrypt");
        let other_policy = who("arn:aws:iam::111122223333:user/alice", "kms:*");
        let mut other_name = alice.clone();
        other_name.identity_policies[0].name = "q.json".into();
        let mut no_policies = alice.clone();
        no_policies.identity_policies.clear();
        let mut other_account = alice.clone();
        other_account.principal.account = "444455556666".into();
        let mut other_uid = alice.clone();
        other_uid.principal.uid = Some(1001);
        let mut other_gid = alice.clone();
        other_gid.principal.gid = None;
        let differing = [
            DecisionQuery {
                action: "kms:Encrypt",
                ..base
            },
            DecisionQuery {
                key_id: "k2",
                ..base
            },
            DecisionQuery {
                context: Some(&ctx2),
                ..base
            },
            DecisionQuery {
                context: None,
                ..base
            },
            DecisionQuery {
                extra: &extra2,
                ..base
            },
            DecisionQuery { via: None, ..base },
            DecisionQuery { who: &bob, ..base },
            DecisionQuery {
                who: &other_policy,
                ..base
            },
            DecisionQuery {
                who: &other_name,
                ..base
            },
            DecisionQuery {
                who: &no_policies,
                ..base
            },
            DecisionQuery {
                who: &other_account,
                ..base
            },
            DecisionQuery {
                who: &other_uid,
                ..base
            },
            DecisionQuery {
                who: &other_gid,
                ..base
            },
            DecisionQuery {
                caller_uid: 0,
                ..base
            },
        ];
        for (i, q) in differing.iter().enumerate() {
            assert!(!q.matches(&key), "query {i} matched another question's key");
            assert!(
                q.matches(&q.to_key()),
                "query {i} does not match its own key"
            );
        }
    }
}
