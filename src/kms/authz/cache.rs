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
//!
//! Why entries are packed: the filesystem's encryption context names the file, so a
//! mount that opens thousands of files holds thousands of entries that differ in the
//! context alone. Each entry keeps its context packed into one allocation and shares
//! the rest of the question ([`Asker`]) and the rendered decision with the entries that
//! have equal ones (a few per snapshot: principals × keys × actions), about 0.2 KB an
//! entry instead of about 3 KB with owned copies of everything, which set the daemon's
//! peak memory (docs/PERFORMANCE.md, round 7). Sharing changes no answer: an entry
//! still matches only a question equal in every input, and a shared decision is one
//! equal to the entry's own.
//!
//! Why a question is stored only when asked a second time: a stream of files each
//! opened once (a read-back, a backup) would fill the cache with entries never used,
//! then empty it, over and over (about 8 % of the daemon's CPU in that row,
//! docs/PERFORMANCE.md, round 9). A question asked once is only remembered (a hash, see
//! [`Sightings`]) under the snapshot and principals load it was asked on, and forgotten
//! with the entries; the entry stored on the second ask is bound as every entry is. A
//! reopened file is answered from the cache from its third open on.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::super::service::Snapshot;
use super::super::KmsError;
use crate::policy::{EncryptionContext, IdentityPolicy, RequestContext};
use crate::principals::{Principals, ResolvedPrincipal};

/// Entries kept at most; past it the cache starts again empty (a bound, not an LRU:
/// the working set of a mount is a few principals × keys × contexts).
const MAX_ENTRIES: usize = 4096;

/// Slots of a [`Sightings`] table (8 bytes each).
const SIGHTING_SLOTS: usize = 4096;

/// Keys seen once, for admission on a second sighting: a cache keeps an entry only for
/// a key it was asked before, so that a stream of files each opened once (a read-back,
/// a backup) builds no entry that is never used and does not empty the cache over and
/// over. A table of 64-bit hashes, one per slot (a newer key takes an older one's
/// slot): bounded, no allocation after its creation. A hash collision only admits a key
/// early and a lost slot only admits it later; an entry still answers only a query equal
/// to it in every input, so neither changes an answer.
pub(crate) struct Sightings {
    slots: Box<[u64]>,
    used: bool,
}

impl Default for Sightings {
    fn default() -> Self {
        Sightings {
            slots: vec![0; SIGHTING_SLOTS].into_boxed_slice(),
            used: false,
        }
    }
}

impl Sightings {
    /// True when `h` was seen before (then forgotten: its entry is kept now); else
    /// remembers it and returns false.
    pub(crate) fn second(&mut self, h: u64) -> bool {
        let i = (h % SIGHTING_SLOTS as u64) as usize;
        // 0 marks an empty slot.
        let mark = h | 1;
        let Some(slot) = self.slots.get_mut(i) else {
            return true;
        };
        if *slot == mark {
            *slot = 0;
            true
        } else {
            *slot = mark;
            self.used = true;
            false
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.used {
            self.slots.fill(0);
            self.used = false;
        }
    }
}

/// Distinct [`Asker`]s and decisions kept for sharing at most; past it a new entry
/// gets its own (the cache stays correct, only bigger).
const MAX_SHARED: usize = 256;

/// Every input of one decision besides the snapshot, the principals load and the
/// encryption context: the question (action, key, extra request keys, via service)
/// and the caller as resolved (its principal, the uid its denial message names, and
/// its identity policies: the principals load's own list, see [`same_policies`]).
pub(crate) struct Asker {
    pub action: String,
    pub key_id: String,
    pub extra: RequestContext,
    pub via: Option<&'static str>,
    pub arn: Option<String>,
    pub account: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub caller_uid: u32,
    pub identity_policies: Arc<[IdentityPolicy]>,
}

/// Whether two callers' identity policies are the same list: both empty, or the same
/// list of the principals load (by address). Entries belong to one load, in which a
/// principal's policies are one shared list that nothing changes, and an entry holds
/// its list, so the address cannot be reused while the entry exists. Two principals
/// with equal but separate lists only miss each other's entries. Comparing addresses
/// instead of names and texts spares every open hashing and comparing whole policy
/// documents.
fn same_policies(a: &Arc<[IdentityPolicy]>, b: &Arc<[IdentityPolicy]>) -> bool {
    (a.is_empty() && b.is_empty()) || Arc::ptr_eq(a, b)
}

/// What [`same_policies`] compares, for hashing: 0 for no policies, else the address.
fn policies_addr(p: &Arc<[IdentityPolicy]>) -> usize {
    if p.is_empty() {
        0
    } else {
        Arc::as_ptr(p).cast::<IdentityPolicy>() as usize
    }
}

/// Every input of one decision besides the snapshot and principals load it belongs to:
/// the [`Asker`] (shared between entries) and the encryption context, packed (see
/// [`pack_context`]).
pub(crate) struct DecisionKey {
    asker: Arc<Asker>,
    context: Option<Box<[u8]>>,
    /// A decision that holds for any context (see [`DecisionQuery::any_context`]).
    any_context: bool,
}

/// An encryption context in one allocation: each key and then its value, in the map's
/// (sorted) order, as its length (8 bytes, little-endian) followed by its bytes. Two
/// contexts are equal exactly when their packings are.
fn pack_context(ctx: &EncryptionContext) -> Box<[u8]> {
    let len = ctx.iter().map(|(k, v)| 16 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(len);
    for s in ctx.iter().flat_map(|(k, v)| [k, v]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.into_boxed_slice()
}

/// True when `packed` is [`pack_context`] of `ctx`, compared in place (a lookup
/// allocates nothing).
fn packed_equals(mut packed: &[u8], ctx: &EncryptionContext) -> bool {
    for s in ctx.iter().flat_map(|(k, v)| [k, v]) {
        let Some(rest) = packed.strip_prefix((s.len() as u64).to_le_bytes().as_slice()) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(s.as_bytes()) else {
            return false;
        };
        packed = rest;
    }
    packed.is_empty()
}

/// The same inputs as [`DecisionKey`], borrowed from the call: a lookup hashes and
/// compares these in place, so a hit (every open but the first per snapshot) copies
/// none of them; only a miss builds the owned key it stores.
pub(crate) struct DecisionQuery<'a> {
    pub action: &'a str,
    pub key_id: &'a str,
    pub context: Option<&'a EncryptionContext>,
    /// A question about a context asked once (a new file's data key): looked up and
    /// stored without its context (`context` is None), as a decision whose evaluation
    /// read no part of the context, so that it holds for any context. Never matches
    /// an entry of a question without a context, nor the other way round.
    pub any_context: bool,
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
        self.any_context.hash(&mut h);
        self.extra.hash(&mut h);
        self.via.hash(&mut h);
        self.who.principal.arn.hash(&mut h);
        self.who.principal.account.hash(&mut h);
        self.who.principal.uid.hash(&mut h);
        self.who.principal.gid.hash(&mut h);
        self.caller_uid.hash(&mut h);
        policies_addr(&self.who.identity_policies).hash(&mut h);
        h.finish()
    }

    /// True when `k` asks exactly this question: every input but the context.
    fn asked_by(&self, k: &Asker) -> bool {
        k.action == self.action
            && k.key_id == self.key_id
            && &k.extra == self.extra
            && k.via == self.via
            && k.arn == self.who.principal.arn
            && k.account == self.who.principal.account
            && k.uid == self.who.principal.uid
            && k.gid == self.who.principal.gid
            && k.caller_uid == self.caller_uid
            && same_policies(&k.identity_policies, &self.who.identity_policies)
    }

    fn matches(&self, k: &DecisionKey) -> bool {
        let context = match (&k.context, self.context) {
            (None, None) => true,
            (Some(packed), Some(ctx)) => packed_equals(packed, ctx),
            _ => false,
        };
        context && k.any_context == self.any_context && self.asked_by(&k.asker)
    }

    fn asker(&self) -> Asker {
        Asker {
            action: self.action.to_string(),
            key_id: self.key_id.to_string(),
            extra: self.extra.clone(),
            via: self.via,
            arn: self.who.principal.arn.clone(),
            account: self.who.principal.account.clone(),
            uid: self.who.principal.uid,
            gid: self.who.principal.gid,
            caller_uid: self.caller_uid,
            identity_policies: self.who.identity_policies.clone(),
        }
    }

    /// The owned key of this query, with an [`Asker`] of its own.
    #[cfg(test)]
    fn to_key(&self) -> DecisionKey {
        self.key_with(Arc::new(self.asker()))
    }

    fn key_with(&self, asker: Arc<Asker>) -> DecisionKey {
        DecisionKey {
            asker,
            context: self.context.map(pack_context),
            any_context: self.any_context,
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

type Entry = (DecisionKey, Arc<Rendered>);

struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    principals: Option<Arc<Principals>>,
    /// By [`DecisionQuery::hash_with`]: the first entry filed under each hash.
    entries: HashMap<u64, Entry>,
    /// Entries whose hash collides with one in `entries` (rare), with that hash.
    collided: Vec<(u64, Entry)>,
    /// Entries held (`entries` and `collided`).
    len: usize,
    /// The hash of the entry the last lookup found: a file opened again and again asks
    /// the same question, which is then compared with that entry first, without hashing
    /// the query (the entry still answers only a query that matches it in every input).
    last_hit: Option<u64>,
    /// Distinct askers and decisions of the entries held, for new entries to share.
    askers: Vec<Arc<Asker>>,
    decisions: Vec<Arc<Rendered>>,
    /// Questions asked once under this snapshot and principals load (see [`Sightings`]).
    seen: Sightings,
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
            self.clear();
            self.snapshot = Some(snap.clone());
            self.principals = Some(principals.clone());
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.collided.clear();
        self.askers.clear();
        self.decisions.clear();
        self.seen.clear();
        self.len = 0;
        self.last_hit = None;
    }

    fn find_mut(&mut self, h: u64, q: &DecisionQuery<'_>) -> Option<&mut Entry> {
        if let Some(e) = self.entries.get_mut(&h) {
            if q.matches(&e.0) {
                return Some(e);
            }
        }
        self.collided
            .iter_mut()
            .find(|(ch, e)| *ch == h && q.matches(&e.0))
            .map(|(_, e)| e)
    }

    /// The stored asker equal to `q`'s, else a new one (kept for sharing while there
    /// is room).
    fn share_asker(&mut self, q: &DecisionQuery<'_>) -> Arc<Asker> {
        if let Some(a) = self.askers.iter().find(|a| q.asked_by(a)) {
            return a.clone();
        }
        let a = Arc::new(q.asker());
        if self.askers.len() < MAX_SHARED {
            self.askers.push(a.clone());
        }
        a
    }

    /// The stored decision equal to `r` (the same record and the same answer), else
    /// `r` (kept for sharing while there is room).
    fn share_decision(&mut self, r: Rendered) -> Arc<Rendered> {
        if let Some(d) = self
            .decisions
            .iter()
            .find(|d| d.denial == r.denial && *d.decision == *r.decision)
        {
            return d.clone();
        }
        let d = Arc::new(r);
        if self.decisions.len() < MAX_SHARED {
            self.decisions.push(d.clone());
        }
        d
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
                collided: Vec::new(),
                len: 0,
                last_hit: None,
                askers: Vec::new(),
                decisions: Vec::new(),
                seen: Sightings::default(),
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
        if let Some(h) = inner.last_hit {
            if let Some((_, r)) = inner.find_mut(h, q) {
                return Some(Rendered::clone(r));
            }
        }
        let h = q.hash_with(&inner.hasher);
        let found = inner.find_mut(h, q).map(|(_, r)| Rendered::clone(r));
        if found.is_some() {
            inner.last_hit = Some(h);
        }
        found
    }

    /// Stores `r` as the answer to `q` if `q` was asked before under this snapshot and
    /// principals load (a question asked once is only remembered, see [`Sightings`]),
    /// and returns the decision to record: the stored one, shared with equal entries,
    /// so that the next open's record (answered from the cache with that value) can be
    /// copied from this one's template; else `r`. Either is equal to `r`.
    pub fn put(
        &self,
        snap: &Arc<Snapshot>,
        principals: &Arc<Principals>,
        q: &DecisionQuery<'_>,
        r: Rendered,
    ) -> Rendered {
        let mut inner = self.lock();
        // First: an entry stored below belongs to exactly this snapshot and load, and a
        // sighting under an earlier one was forgotten with it.
        inner.bind(snap, principals);
        let h = q.hash_with(&inner.hasher);
        if !inner.seen.second(h) {
            return r;
        }
        if inner.len >= MAX_ENTRIES {
            inner.clear();
        }
        let decision = inner.share_decision(r);
        let out = Rendered::clone(&decision);
        if let Some(slot) = inner.find_mut(h, q) {
            slot.1 = decision;
            return out;
        }
        let key = q.key_with(inner.share_asker(q));
        match inner.entries.entry(h) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((key, decision));
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                inner.collided.push((h, (key, decision)));
            }
        }
        inner.len += 1;
        out
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.lock().len
    }

    /// Distinct askers and decisions the entries share (for tests).
    #[cfg(test)]
    pub fn shared(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.askers.len(), inner.decisions.len())
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    /// Packing keeps the boundaries between keys and values: contexts whose
    /// concatenations are equal still differ.
    #[test]
    fn packed_contexts_compare_as_the_maps_do() {
        let ctx = |pairs: &[(&str, &str)]| -> EncryptionContext {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            ctx(&[]),
            ctx(&[("ab", "c")]),
            ctx(&[("a", "bc")]),
            ctx(&[("a", "b"), ("c", "")]),
            ctx(&[("a", "b"), ("c", "d")]),
            ctx(&[("a", "b"), ("c", "de")]),
            ctx(&[("a", "")]),
        ];
        for (i, a) in cases.iter().enumerate() {
            for (j, b) in cases.iter().enumerate() {
                assert_eq!(packed_equals(&pack_context(a), b), i == j, "{a:?} / {b:?}");
            }
        }
    }
    use crate::policy::{PolicyDocument, Principal};
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
            }]
            .into(),
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
            any_context: false,
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
        let mut renamed = alice.identity_policies.to_vec();
        renamed[0].name = "q.json".into();
        other_name.identity_policies = renamed.into();
        // Equal names and texts, but another list (another principals entry): a miss,
        // never another entry's decision.
        let mut equal_copy = alice.clone();
        equal_copy.identity_policies = alice.identity_policies.to_vec().into();
        let mut no_policies = alice.clone();
        no_policies.identity_policies = Vec::new().into();
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
                any_context: true,
                ..base
            },
            DecisionQuery {
                context: None,
                any_context: true,
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
                who: &equal_copy,
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
        // A question for any context and one without a context never answer each
        // other: the first's decision read no context, the second's may have read
        // that there is none.
        let any = DecisionQuery {
            context: None,
            any_context: true,
            ..base
        };
        let none = DecisionQuery {
            context: None,
            ..base
        };
        assert!(!any.matches(&none.to_key()) && !none.matches(&any.to_key()));
        // The caller resolved again from the same load (the same list) asks the same
        // question, and so do two callers without policies (each resolve makes its
        // own empty list), hashed alike.
        let resolved_again = alice.clone();
        let q = DecisionQuery {
            who: &resolved_again,
            ..base
        };
        assert!(q.matches(&key));
        assert_eq!(q.hash_with(&hasher), base.hash_with(&hasher));
        let mut none_again = no_policies.clone();
        none_again.identity_policies = Vec::new().into();
        let q1 = DecisionQuery {
            who: &no_policies,
            ..base
        };
        let q2 = DecisionQuery {
            who: &none_again,
            ..base
        };
        assert!(q2.matches(&q1.to_key()));
        assert_eq!(q1.hash_with(&hasher), q2.hash_with(&hasher));
    }
}
