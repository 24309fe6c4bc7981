//! The router's per-(uid, file) cache of remote answers (`-o kms_cache_ttl`): what a
//! remote KMS allowed one caller for one file's key, for a bounded time. It never asks
//! the remote and never stores a denial.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Profile;
use crate::crypto::DataKey;

/// Default `-o kms_cache_ttl`: how long a remote answer (an unwrapped data key, and that
/// Encrypt is allowed) serves further opens of the same file by the same uid. Long
/// enough that a build or `tar` opening each file a few times pays one remote call,
/// short enough that a revocation at the remote KMS takes effect within half a minute.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// At most this many (uid, file) entries are cached; the least recently used go first.
pub const CACHE_CAPACITY: usize = 4096;

/// Cache entries are keyed by the caller and everything that identifies the file's key:
/// a re-wrapped or re-keyed file (new blob) or another volume (context) never hits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    pub uid: u32,
    pub gid: u32,
    /// A uid whose principal now names another profile is asked again as that one.
    pub profile: Profile,
    pub key_arn: String,
    pub wrapped: Vec<u8>,
    pub context: Vec<(String, String)>,
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
pub(super) struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

/// What the cache knows for one open.
pub(super) struct Hit {
    pub key: DataKey,
    pub encrypt_allowed: bool,
    /// When the remote decision behind it was asked for.
    pub fetched: Instant,
}

impl Cache {
    /// An empty cache whose entries serve for `ttl` (0: nothing is ever stored).
    pub fn new(ttl: Duration) -> Cache {
        Cache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn lookup(&self, k: &CacheKey) -> Option<Hit> {
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
    pub fn store(&self, k: CacheKey, key: &DataKey, encrypt_allowed: bool, fetched: Instant) {
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

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
