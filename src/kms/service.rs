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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{Map, Value};

use super::change_watch::{ChangeWatch, Checked};
use super::clock::{Clock, SystemClock};
use super::model::{KeyState, StoreState};
use super::principals_watch::PrincipalsWatch;
use super::provider::Caller;
use super::store::{internal, RootKeySource, StateIdent, Store};
use super::{ErrorKind, KmsError};
use crate::audit::AuditLog;
use crate::crypto::asym::PrivateKey;
use crate::crypto::SealingKey;
use crate::policy::{Evaluation, PolicyDocument};
use crate::principals::{Principals, ResolvedPrincipal};

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

/// The ready ciphers of one key's material versions, by version.
pub(super) type CipherVersions = Vec<(u32, Arc<crate::crypto::Sealer>)>;

/// The key service over one store.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(super) audit: AuditLog,
    principals: PrincipalsWatch,
    pub(super) snapshot: RwLock<Arc<Snapshot>>,
    pub(super) writer: Mutex<()>,
    pub(super) policies: Mutex<HashMap<String, (String, Arc<PolicyDocument>)>>,
    /// Ready ciphers of symmetric key material, by key id, then version (zeroized on drop).
    pub(super) cipher_keys: RwLock<HashMap<String, CipherVersions>>,
    /// Parsed private keys of asymmetric keys, by key id and version (zeroized on drop).
    pub(super) private_keys: RwLock<HashMap<(String, u32), Arc<PrivateKey>>>,
    pub(crate) volume_secrets: Mutex<HashMap<String, Arc<SealingKey>>>,
    /// Decisions of the data path, valid for one snapshot and principals load.
    pub(super) decisions: super::authz::cache::DecisionCache,
    /// The data path's per-open audit values (request parameters and `fs` ids), shared
    /// by every open of the same encryption context: see `ops_crypto::OpenValues`.
    pub(super) open_values: super::ops_crypto::OpenValues,
    /// "Maybe changed" for `state.json` and the principals' files, by inotify.
    changes: ChangeWatch,
    /// The change generation the last full check of `state.json` covered.
    state_checked: Checked,
}

/// How a service notices changes other processes make (diagnostics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeChecks {
    /// Whether decisions with nothing changed skip the `stat` of each file (inotify in
    /// use); false: every decision checks the files (not set up yet, or fallen back).
    pub by_inotify: bool,
    /// Full checks of `state.json` or the principals' files run so far.
    pub full_checks: u64,
}

/// One call in flight: who, when, and the decisions made so far (for the audit).
pub(crate) struct Call {
    /// The kernel's ids of a local caller; for a remote call, [`REMOTE_CALLER`].
    pub caller: Caller,
    /// Set for a call signed with an access key (then `caller` is [`REMOTE_CALLER`]).
    pub remote: Option<super::provider::RemoteCaller>,
    pub who: ResolvedPrincipal,
    pub principals: Arc<Principals>,
    pub root_policy: Arc<PolicyDocument>,
    pub now: i64,
    /// "kmsfs" for filesystem calls, else None.
    pub via: Option<&'static str>,
    /// The change generation polled when the call began: the call's state snapshot is
    /// taken as of then (one poll per call), see [`Service::snapshot_seen`].
    pub changes: Option<u64>,
    /// The call's decisions as their audit records carry them (shared with the decision
    /// cache, which hands out the same value for every open it answers).
    pub decisions: Vec<Arc<Value>>,
    pub resources: Vec<String>,
    /// The filesystem ids its records carry (shared: see `ops_crypto`'s open values).
    pub fs: Option<Arc<Value>>,
    /// Extra audit response elements (the escalation-guard bypass).
    pub audit_notes: Map<String, Value>,
}

/// The `caller` of a remote call: ids no local process has (`(uid_t)-1`), so nothing
/// keyed by a kernel uid can match it; the audit writes them as null.
pub(crate) const REMOTE_CALLER: Caller = Caller {
    uid: u32::MAX,
    gid: u32::MAX,
    pid: 0,
};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread cannot leave these maps half-updated in a way that
    // matters (each insert is one call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let principals = PrincipalsWatch::open(cfg.principals_path, &store)?;
        // Set up at the first decision, which then runs a full check: what it compares
        // against is taken after the watches exist.
        let changes = ChangeWatch::new(
            vec![store.dir().join(super::store::STATE_FILE)],
            principals.watched_files(&store),
        );
        let region = principals
            .current(&store, &changes, None)?
            .0
            .region()
            .to_string();
        let audit = AuditLog::open(&store.audit_path())
            .map_err(|e| internal(format!("cannot open the audit log: {e}")))?
            .with_region(&region);
        Ok(Arc::new(Service {
            store,
            clock: cfg.clock,
            audit,
            principals,
            snapshot: RwLock::new(Arc::new(Snapshot { state, ident })),
            writer: Mutex::new(()),
            policies: Mutex::new(HashMap::new()),
            cipher_keys: RwLock::new(HashMap::new()),
            private_keys: RwLock::new(HashMap::new()),
            volume_secrets: Mutex::new(HashMap::new()),
            decisions: Default::default(),
            open_values: Default::default(),
            changes,
            state_checked: Checked::default(),
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

    /// Starts the audit log's background syncer (long-running processes: `serve`,
    /// `mount`); see `audit` # Durability.
    pub fn start_audit_syncer(&self) -> Result<(), KmsError> {
        self.audit
            .start_syncer()
            .map_err(|e| internal(format!("cannot start the audit log's syncer: {e}")))
    }

    /// Syncs every audit record written so far (at shutdown: the service itself is
    /// never dropped while its threads hold it).
    pub fn sync_audit(&self) -> Result<(), KmsError> {
        self.audit
            .sync()
            .map_err(|e| internal(format!("audit log: {e}")))
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

    /// The current principals and root policy (reloaded if their files changed).
    pub(super) fn current_principals(
        &self,
    ) -> Result<(Arc<Principals>, Arc<PolicyDocument>), KmsError> {
        self.current_principals_seen(self.changes.poll())
    }

    /// [`Self::current_principals`] as of change generation `seen` (from
    /// [`Self::poll_changes`] at the start of the call).
    pub(super) fn current_principals_seen(
        &self,
        seen: Option<u64>,
    ) -> Result<(Arc<Principals>, Arc<PolicyDocument>), KmsError> {
        self.principals.current(&self.store, &self.changes, seen)
    }

    /// Takes in every change event queued so far; `None` when changes are checked by
    /// `stat` on every call.
    pub(super) fn poll_changes(&self) -> Option<u64> {
        self.changes.poll()
    }

    /// How this service notices other processes' changes.
    pub fn change_checks(&self) -> ChangeChecks {
        let (by_inotify, full_checks) = self.changes.stats();
        ChangeChecks {
            by_inotify,
            full_checks,
        }
    }

    pub(crate) fn account_region(&self) -> Result<(String, String), KmsError> {
        let (p, _) = self.current_principals()?;
        Ok((p.account().to_string(), p.region().to_string()))
    }

    pub(crate) fn begin(
        &self,
        caller: &Caller,
        via: Option<&'static str>,
    ) -> Result<Call, KmsError> {
        // One poll per call: the principals and (in the data path) the state snapshot
        // are both checked as of this moment, which is after the call began.
        let changes = self.poll_changes();
        let (principals, root_policy) = self.current_principals_seen(changes)?;
        let who = principals.resolve_with_groups(caller.uid, caller.gid, || {
            crate::principals::process_groups(caller.pid, caller.uid, caller.gid)
                .unwrap_or_default()
        });
        Ok(Call {
            caller: *caller,
            remote: None,
            who,
            principals,
            root_policy,
            now: self.clock.now(),
            via,
            changes,
            decisions: Vec::new(),
            resources: Vec::new(),
            fs: None,
            audit_notes: Map::new(),
        })
    }

    // ----- state ------------------------------------------------------------------

    /// The current state, re-read if another process (or this one) committed since.
    pub(crate) fn snapshot(&self) -> Result<Arc<Snapshot>, KmsError> {
        self.snapshot_seen(self.changes.poll())
    }

    /// The snapshot installed now, without checking for changes: only for answers that
    /// a later checked decision makes safe (see [`Service::holds_key`]).
    pub(crate) fn installed_snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The state as of change generation `seen`: if a full check already ran after a
    /// poll that returned `seen` (or later), nothing changed since and the installed
    /// snapshot is current; otherwise `stat` the file and re-read it if it differs.
    pub(crate) fn snapshot_seen(&self, seen: Option<u64>) -> Result<Arc<Snapshot>, KmsError> {
        if self.state_checked.covers(seen) {
            return Ok(self.installed_snapshot());
        }
        self.changes.count_full_check();
        let ident = self.store.state_ident()?;
        let current = {
            let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            (s.ident == ident).then(|| s.clone())
        };
        let snap = match current {
            Some(s) => s,
            None => {
                let (state, ident) = self.store.read_state_current()?;
                self.install(state, ident)
            }
        };
        // Installed before marking: a thread that finds the mark finds this snapshot
        // (or a newer one) installed.
        self.state_checked.mark(seen);
        Ok(snap)
    }

    fn install(&self, state: StoreState, ident: StateIdent) -> Arc<Snapshot> {
        // Forget unsealed material that the new state no longer lists.
        {
            let live = |id: &String, v: &u32| {
                state.keys.get(id).is_some_and(|k| {
                    k.materials.iter().any(|m| m.version == *v)
                        && !(k.state == KeyState::PendingImport)
                })
            };
            let mut ck = self.cipher_keys.write().unwrap_or_else(|e| e.into_inner());
            ck.retain(|id, versions| {
                versions.retain(|(v, _)| live(id, v));
                !versions.is_empty()
            });
            drop(ck);
            let mut pk = self.private_keys.write().unwrap_or_else(|e| e.into_inner());
            pk.retain(|(id, v), _| live(id, v));
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
}
