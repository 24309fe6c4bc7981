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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::Identity;
use crate::crypto::{DataKey, SealingKey};
use crate::kms::provider::{Caller, DataAction, DataKeys, DirRule, NewDataKey, WrappedDataKey};
use crate::kms::{ErrorKind, KmsError, Service};
use crate::policy::EncryptionContext;

pub use super::arn::is_key_arn;
use super::cache::{Cache, CacheKey};
pub use super::cache::{CACHE_CAPACITY, DEFAULT_CACHE_TTL};
pub use super::lazy_sdk::remote_client;
use super::{Profile, RemoteError, RemoteKeys, RemoteReceipt, Target, DEFAULT_TIMEOUT};

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
            .field("cache_ttl", &self.cache.ttl())
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
            cache: Cache::new(options.cache_ttl),
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

    /// The audit record of `operation` on `key_arn` toward this router's endpoint: no
    /// profile, request id or error yet, not from the cache (each site sets what it knows).
    fn decision<'a>(
        &'a self,
        operation: &'static str,
        identity: &'a Identity,
        key_arn: &'a str,
        context: &'a EncryptionContext,
        actions: &'a [DataAction],
    ) -> RemoteDecision<'a> {
        RemoteDecision {
            operation,
            identity,
            key_arn,
            endpoint: self.endpoint.as_deref(),
            profile: None,
            context,
            actions,
            request_id: None,
            cached: false,
            error: None,
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
                    error: Some(&e),
                    ..self.decision(operation, &who.identity, key_arn, context, actions)
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
            profile: Some(&profile.name),
            request_id: receipt.request_id.as_deref(),
            error: result.as_ref().err(),
            ..self.decision(operation, identity, key_arn, context, actions)
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
                    profile: Some(&profile.name),
                    cached: true,
                    ..self.decision("Decrypt", &identity, key_arn, context, actions)
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

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
