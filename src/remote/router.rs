//! The key router: the [`DataKeys`] a mount (or a CLI process such as `kmsfs fsck` and
//! `kmsfs rewrap`) uses when some of a volume's keys live in a remote KMS.
//!
//! It owns three decisions and nothing else:
//! - locality: a key reference the local store holds is local; a full KMS key ARN
//!   (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`) it does not hold is remote; anything
//!   else goes to the local store, which answers `NotFoundException`. For an open, the
//!   ARN in the file's own header decides, never a path;
//! - identity: a remote call is signed as the calling uid's own `aws_profile`; a uid
//!   without one is refused (EACCES) and never served by another identity;
//! - the per-(uid, file) cache of remote answers (`-o kms_cache_ttl`).
//!
//! It lives beside [`RemoteKeys`] rather than in `fs`: the filesystem keeps seeing one
//! `DataKeys` and stays unaware that a KMS may be remote, while this module never sees
//! the SDK (only the trait). It never holds a lock across a remote call, so opens of
//! different files proceed in parallel however slow the remote is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::Identity;
use crate::crypto::{DataKey, SealingKey};
use crate::kms::provider::{Caller, DataAction, DataKeys, DirRule, NewDataKey, WrappedDataKey};
use crate::kms::{ErrorKind, KmsError, Service};
use crate::policy::EncryptionContext;

use super::{Profile, RemoteError, RemoteKeys, RemoteReceipt, Target, DEFAULT_TIMEOUT};

/// Default `-o kms_cache_ttl`: how long a remote answer (an unwrapped data key, and that
/// Encrypt is allowed) serves further opens of the same file by the same uid. Long
/// enough that a build or `tar` opening each file a few times pays one remote call,
/// short enough that a revocation at the remote KMS takes effect within half a minute.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// At most this many (uid, file) entries are cached; the least recently used go first.
pub const CACHE_CAPACITY: usize = 4096;

/// How a router reaches remote keys (from the volume file and the mount options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterOptions {
    /// `-o kms_endpoint`, else the volume's `kms_endpoint`, else `None`: AWS's regional
    /// endpoint of each key ARN's region.
    pub endpoint: Option<String>,
    /// `-o kms_timeout`: the longest one remote call may take (the [`RemoteKeys`]
    /// client enforces it, retries and credential resolution included).
    pub timeout: Duration,
    /// `-o kms_cache_ttl`: 0 disables the cache.
    pub cache_ttl: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            endpoint: None,
            timeout: DEFAULT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

/// Who a caller is, for a remote call and its audit record.
#[derive(Debug, Clone)]
pub struct RemoteIdentity {
    /// The identity the local audit log records.
    pub identity: Identity,
    /// The principal's `aws_profile`; `None`: the uid may not use remote keys.
    pub profile: Option<Profile>,
}

/// One remote decision (or a refusal before asking: no profile), for the audit log.
#[derive(Debug)]
pub struct RemoteDecision<'a> {
    /// "GenerateDataKey", "Decrypt" or "Encrypt" (the DryRun of a write open).
    pub operation: &'static str,
    pub identity: &'a Identity,
    pub key_arn: &'a str,
    pub endpoint: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub context: &'a EncryptionContext,
    pub actions: &'a [DataAction],
    /// The remote's request id (`None`: no answer, or served from the cache).
    pub request_id: Option<&'a str>,
    /// Served from the router's cache without asking the remote.
    pub cached: bool,
    pub error: Option<&'a KmsError>,
}

/// The local key service as the router needs it: its [`DataKeys`], whether it holds a
/// key, who a caller is, and its audit log. Implemented by [`Service`]; a trait so that
/// the router's rules are tested without a store.
pub trait LocalKeys: DataKeys {
    /// Whether the local store holds `key_ref` (see [`Service::holds_key`]).
    fn holds_key(&self, key_ref: &str) -> Result<bool, KmsError>;
    /// The caller's identity and `aws_profile` (principals reloaded as for every call).
    fn remote_identity(&self, caller: &Caller) -> Result<RemoteIdentity, KmsError>;
    /// Appends `decision` to the audit log; an error fails the operation (closed).
    fn audit_remote(&self, decision: &RemoteDecision<'_>) -> Result<(), KmsError>;
}

impl LocalKeys for Service {
    fn holds_key(&self, key_ref: &str) -> Result<bool, KmsError> {
        Service::holds_key(self, key_ref)
    }

    fn remote_identity(&self, caller: &Caller) -> Result<RemoteIdentity, KmsError> {
        Service::remote_identity(self, caller)
    }

    fn audit_remote(&self, decision: &RemoteDecision<'_>) -> Result<(), KmsError> {
        Service::audit_remote(self, decision)
    }
}

/// Whether `key_ref` is a full KMS key ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`
/// with every part present. Only such a reference can name a remote key (an alias or a
/// bare key id means nothing without an account and region).
pub fn is_key_arn(key_ref: &str) -> bool {
    let mut parts = key_ref.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let id = res.strip_prefix("key/").unwrap_or("");
    !partition.is_empty()
        && !region.is_empty()
        && !account.is_empty()
        && !id.is_empty()
        && !id.contains(['/', ':'])
        && !key_ref.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Cache entries are keyed by the caller and everything that identifies the file's key:
/// a re-wrapped or re-keyed file (new blob) or another volume (context) never hits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    uid: u32,
    gid: u32,
    /// A uid whose principal now names another profile is asked again as that one.
    profile: Profile,
    key_arn: String,
    wrapped: Vec<u8>,
    context: Vec<(String, String)>,
}

struct CacheEntry {
    key: DataKey,
    /// The remote allowed Encrypt (a write open) for this caller and file.
    encrypt_allowed: bool,
    fetched: Instant,
    used: Instant,
}

/// The per-(uid, file) cache: bounded, least recently used evicted first, data keys in
/// zeroizing storage (dropping an entry wipes its key). Only allowed answers are stored:
/// a denial is asked again on the next open, so a grant takes effect at once.
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

/// What the cache knows for one open.
struct Hit {
    key: DataKey,
    encrypt_allowed: bool,
    /// When the remote decision behind it was asked for.
    fetched: Instant,
}

impl Cache {
    fn lookup(&self, k: &CacheKey) -> Option<Hit> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match map.get_mut(k) {
            Some(e) if now.duration_since(e.fetched) < self.ttl => {
                e.used = now;
                Some(Hit {
                    key: e.key.duplicate(),
                    encrypt_allowed: e.encrypt_allowed,
                    fetched: e.fetched,
                })
            }
            Some(_) => {
                map.remove(k);
                None
            }
            None => None,
        }
    }

    /// Stores a fresh answer. `fetched` is when the remote call that proved it started,
    /// so an entry never outlives the TTL counted from the remote's decision.
    fn store(&self, k: CacheKey, key: &DataKey, encrypt_allowed: bool, fetched: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !map.contains_key(&k) && map.len() >= CACHE_CAPACITY {
            map.retain(|_, e| now.duration_since(e.fetched) < self.ttl);
            if map.len() >= CACHE_CAPACITY {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone());
                if let Some(o) = oldest {
                    map.remove(&o);
                }
            }
        }
        // An Encrypt answer learned earlier for the same key stays valid with it.
        let encrypt_allowed = encrypt_allowed
            || map
                .get(&k)
                .is_some_and(|e| e.encrypt_allowed && e.key.expose() == key.expose());
        map.insert(
            k,
            CacheEntry {
                key: key.duplicate(),
                encrypt_allowed,
                fetched,
                used: now,
            },
        );
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Routes each key operation to the local store or to the remote KMS (module docs).
pub struct KeyRouter {
    local: Arc<dyn LocalKeys>,
    remote: Arc<dyn RemoteKeys>,
    endpoint: Option<String>,
    cache: Cache,
}

impl std::fmt::Debug for KeyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRouter")
            .field("endpoint", &self.endpoint)
            .field("cache_ttl", &self.cache.ttl)
            .finish_non_exhaustive()
    }
}

/// Where one key operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locality {
    Local,
    Remote,
}

impl KeyRouter {
    /// A router over the local key service and a remote KMS client. `options.timeout`
    /// is the client's business (it was built with it); the router keeps the endpoint
    /// and the cache TTL.
    pub fn new(
        local: Arc<dyn LocalKeys>,
        remote: Arc<dyn RemoteKeys>,
        options: &RouterOptions,
    ) -> KeyRouter {
        KeyRouter {
            local,
            remote,
            endpoint: options.endpoint.clone(),
            cache: Cache {
                ttl: options.cache_ttl,
                entries: Mutex::new(HashMap::new()),
            },
        }
    }

    /// The remote KMS client (for `kmsfs whoami`'s DescribeKey and dry runs).
    pub fn remote_keys(&self) -> &Arc<dyn RemoteKeys> {
        &self.remote
    }

    /// The endpoint remote calls go to (`None`: each key's regional AWS endpoint).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Whether `key_ref` names a remote key here: a full key ARN the local store does
    /// not hold (the rule every operation of the router follows).
    pub fn is_remote(&self, key_ref: &str) -> Result<bool, KmsError> {
        Ok(self.locality(key_ref)? == Locality::Remote)
    }

    /// Number of (uid, file) entries cached now (for tests and `kmsfs whoami`).
    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    fn locality(&self, key_ref: &str) -> Result<Locality, KmsError> {
        // Only an ARN can be remote: anything else is the local store's (no lookup).
        if !is_key_arn(key_ref) || self.local.holds_key(key_ref)? {
            Ok(Locality::Local)
        } else {
            Ok(Locality::Remote)
        }
    }

    fn target(&self, key_arn: &str) -> Target {
        Target {
            key_arn: key_arn.to_string(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// The caller's identity and profile; a caller without a profile is refused
    /// (AccessDenied, audited with the reason) and no remote call is made.
    fn identify(
        &self,
        caller: &Caller,
        operation: &'static str,
        key_arn: &str,
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<(Identity, Profile), KmsError> {
        let who = self.local.remote_identity(caller)?;
        match who.profile {
            Some(p) => Ok((who.identity, p)),
            None => {
                let e = KmsError::new(
                    ErrorKind::AccessDenied,
                    format!(
                        "uid {} has no aws_profile in principals.toml, so it cannot use the \
                         remote key {key_arn} (no other identity is ever used for it)",
                        caller.uid
                    ),
                );
                self.local.audit_remote(&RemoteDecision {
                    operation,
                    identity: &who.identity,
                    key_arn,
                    endpoint: self.endpoint.as_deref(),
                    profile: None,
                    context,
                    actions,
                    request_id: None,
                    cached: false,
                    error: Some(&e),
                })?;
                Err(e)
            }
        }
    }

    /// Audits one remote answer and passes it on (an audit failure fails the call).
    #[allow(clippy::too_many_arguments)] // one record's fields, named at the call site
    fn audited<T>(
        &self,
        operation: &'static str,
        identity: &Identity,
        profile: &Profile,
        key_arn: &str,
        context: &EncryptionContext,
        actions: &[DataAction],
        answer: Result<(T, RemoteReceipt), RemoteError>,
    ) -> Result<T, KmsError> {
        let (result, receipt) = match answer {
            Ok((v, r)) => (Ok(v), r),
            Err(e) => (Err(e.error), e.receipt),
        };
        self.local.audit_remote(&RemoteDecision {
            operation,
            identity,
            key_arn,
            endpoint: self.endpoint.as_deref(),
            profile: Some(&profile.name),
            context,
            actions,
            request_id: receipt.request_id.as_deref(),
            cached: false,
            error: result.as_ref().err(),
        })?;
        result
    }

    fn remote_open(
        &self,
        caller: &Caller,
        key_arn: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError> {
        if actions.is_empty() {
            return Err(KmsError::new(
                ErrorKind::Validation,
                "open_data_key needs at least one action",
            ));
        }
        let wants_encrypt = actions.contains(&DataAction::Encrypt);
        let (identity, profile) = self.identify(caller, "Decrypt", key_arn, context, actions)?;
        let cache_key = CacheKey {
            uid: caller.uid,
            gid: caller.gid,
            profile: profile.clone(),
            key_arn: key_arn.to_string(),
            wrapped: wrapped.to_vec(),
            context: context
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let target = self.target(key_arn);
        let hit = self.cache.lookup(&cache_key);
        if let Some(hit) = &hit {
            if hit.encrypt_allowed || !wants_encrypt {
                self.local.audit_remote(&RemoteDecision {
                    operation: "Decrypt",
                    identity: &identity,
                    key_arn,
                    endpoint: self.endpoint.as_deref(),
                    profile: Some(&profile.name),
                    context,
                    actions,
                    request_id: None,
                    cached: true,
                    error: None,
                })?;
                return Ok(hit.key.duplicate());
            }
        }
        let mut fetched = Instant::now();
        // Any open needs the data key, so Decrypt is asked even for a write-only open;
        // a write also needs Encrypt, as for local keys.
        let key = match hit {
            // The cached Decrypt answer keeps its age: asking Encrypt now does not
            // extend it past the TTL.
            Some(h) => {
                fetched = h.fetched;
                h.key
            }
            None => {
                let answer = self.remote.decrypt(&profile, &target, wrapped, context);
                self.audited(
                    "Decrypt", &identity, &profile, key_arn, context, actions, answer,
                )?
            }
        };
        if wants_encrypt {
            let answer = self
                .remote
                .encrypt_allowed(&profile, &target, context)
                .map(|r| ((), r));
            self.audited(
                "Encrypt", &identity, &profile, key_arn, context, actions, answer,
            )?;
        }
        self.cache.store(cache_key, &key, wants_encrypt, fetched);
        Ok(key)
    }
}

impl DataKeys for KeyRouter {
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, KmsError> {
        if self.locality(key_id)? == Locality::Local {
            return self.local.generate_data_key(caller, key_id, context);
        }
        let (identity, profile) = self.identify(caller, "GenerateDataKey", key_id, context, &[])?;
        let answer = self
            .remote
            .generate_data_key(&profile, &self.target(key_id), context)
            .map(|d| {
                let receipt = d.receipt;
                (
                    NewDataKey {
                        key: d.key,
                        wrapped: d.wrapped,
                        key_arn: d.key_arn,
                    },
                    receipt,
                )
            });
        self.audited(
            "GenerateDataKey",
            &identity,
            &profile,
            key_id,
            context,
            &[],
            answer,
        )
    }

    fn open_data_key(
        &self,
        caller: &Caller,
        key_arn: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError> {
        match self.locality(key_arn)? {
            // Local keys are never cached: a change of policy or key state takes effect
            // on the next open, as without a router.
            Locality::Local => self
                .local
                .open_data_key(caller, key_arn, wrapped, context, actions),
            Locality::Remote => self.remote_open(caller, key_arn, wrapped, context, actions),
        }
    }

    fn wrap_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedDataKey, KmsError> {
        if self.locality(key_id)? == Locality::Local {
            return self.local.wrap_data_key(caller, key_id, key, context);
        }
        let (identity, profile) =
            self.identify(caller, "Encrypt", key_id, context, &[DataAction::Encrypt])?;
        let target = self.target(key_id);
        let answer = self
            .remote
            .encrypt(&profile, &target, key, context)
            .map(|(wrapped, r)| {
                (
                    WrappedDataKey {
                        wrapped,
                        key_arn: key_id.to_string(),
                    },
                    r,
                )
            });
        self.audited(
            "Encrypt",
            &identity,
            &profile,
            key_id,
            context,
            &[DataAction::Encrypt],
            answer,
        )
    }

    // Volume secrets and directory rules stay in the local store whatever the keys:
    // they are not per-caller decisions and need no remote identity.
    fn volume_secret(&self, volume_id: &str) -> Result<SealingKey, KmsError> {
        self.local.volume_secret(volume_id)
    }

    fn dir_rule(&self, volume_id: &str, dir_id: &[u8; 16]) -> Result<Option<DirRule>, KmsError> {
        self.local.dir_rule(volume_id, dir_id)
    }

    fn record_dir_rule(
        &self,
        caller: &Caller,
        volume_id: &str,
        dir_id: &[u8; 16],
        rule: &DirRule,
    ) -> Result<(), KmsError> {
        self.local.record_dir_rule(caller, volume_id, dir_id, rule)
    }

    fn dir_rules_imported(&self, volume_id: &str) -> Result<bool, KmsError> {
        self.local.dir_rules_imported(volume_id)
    }

    fn import_dir_rules(
        &self,
        volume_id: &str,
        rules: &[([u8; 16], String)],
    ) -> Result<(), KmsError> {
        self.local.import_dir_rules(volume_id, rules)
    }
}

/// The router a mount or a CLI process uses for `volume` with the local `service`:
/// the endpoint from the mount options, else the volume file; the timeout and TTL from
/// the mount options, else their defaults; the remote client from [`remote_client`].
pub fn for_volume(
    service: Arc<Service>,
    volume: &crate::format::VolumeConfig,
    given: &crate::fs::mount::RemoteOptions,
) -> Arc<KeyRouter> {
    let options = RouterOptions {
        endpoint: given
            .endpoint
            .clone()
            .or_else(|| volume.kms_endpoint.clone()),
        timeout: given.timeout.unwrap_or(DEFAULT_TIMEOUT),
        cache_ttl: given.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL),
    };
    let remote = remote_client(options.timeout);
    Arc::new(KeyRouter::new(service, remote, &options))
}

/// The remote KMS client over the AWS SDK ([`super::SdkRemote`]), each call bounded by
/// `timeout`. Started on the first remote call, so that a volume with only local keys
/// runs no SDK runtime. Should it fail to start, every remote call fails with the
/// reason (EIO) and local keys keep working.
pub fn remote_client(timeout: Duration) -> Arc<dyn RemoteKeys> {
    Arc::new(LazySdk {
        timeout,
        client: std::sync::OnceLock::new(),
    })
}

struct LazySdk {
    timeout: Duration,
    client: std::sync::OnceLock<Box<dyn RemoteKeys>>,
}

impl LazySdk {
    fn get(&self) -> &dyn RemoteKeys {
        self.client
            .get_or_init(|| {
                let settings = super::RemoteSettings {
                    timeout: self.timeout,
                    ..super::RemoteSettings::default()
                };
                match super::SdkRemote::new(settings) {
                    Ok(client) => Box::new(client),
                    Err(e) => {
                        log::error!("remote keys unavailable: {}", e.error.message);
                        Box::new(NoRemoteClient {
                            reason: e.error.message,
                        })
                    }
                }
            })
            .as_ref()
    }
}

impl RemoteKeys for LazySdk {
    fn generate_data_key(
        &self,
        profile: &Profile,
        target: &Target,
        context: &super::Context,
    ) -> Result<super::RemoteDataKey, RemoteError> {
        self.get().generate_data_key(profile, target, context)
    }
    fn decrypt(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &super::Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        self.get().decrypt(profile, target, wrapped, context)
    }
    fn encrypt(
        &self,
        profile: &Profile,
        target: &Target,
        key: &DataKey,
        context: &super::Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        self.get().encrypt(profile, target, key, context)
    }
    fn encrypt_allowed(
        &self,
        profile: &Profile,
        target: &Target,
        context: &super::Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.get().encrypt_allowed(profile, target, context)
    }
    fn describe_key(
        &self,
        profile: &Profile,
        target: &Target,
    ) -> Result<(serde_json::Value, RemoteReceipt), RemoteError> {
        self.get().describe_key(profile, target)
    }
    fn decrypt_dry_run(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &super::Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.get()
            .decrypt_dry_run(profile, target, wrapped, context)
    }
}

/// Stands in for the SDK client when it cannot start: every remote call fails (EIO).
struct NoRemoteClient {
    reason: String,
}

impl NoRemoteClient {
    fn refuse<T>(&self) -> Result<T, RemoteError> {
        Err(RemoteError {
            error: KmsError::new(
                ErrorKind::KmsInternal,
                format!("no remote KMS client: {}", self.reason),
            ),
            receipt: RemoteReceipt::default(),
        })
    }
}

impl RemoteKeys for NoRemoteClient {
    fn generate_data_key(
        &self,
        _: &Profile,
        _: &Target,
        _: &super::Context,
    ) -> Result<super::RemoteDataKey, RemoteError> {
        self.refuse()
    }
    fn decrypt(
        &self,
        _: &Profile,
        _: &Target,
        _: &[u8],
        _: &super::Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        self.refuse()
    }
    fn encrypt(
        &self,
        _: &Profile,
        _: &Target,
        _: &DataKey,
        _: &super::Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        self.refuse()
    }
    fn encrypt_allowed(
        &self,
        _: &Profile,
        _: &Target,
        _: &super::Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.refuse()
    }
    fn describe_key(
        &self,
        _: &Profile,
        _: &Target,
    ) -> Result<(serde_json::Value, RemoteReceipt), RemoteError> {
        self.refuse()
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
