//! The store on disk: a private directory holding the root-key parameters
//! (`store.json`), the state (`state.json`, see [`super::model`]), one sealed file per
//! key material version (`material/<key-id>/v<N>`), the lock file and the audit log.
//!
//! This module owns file modes, the root key, sealing material at rest, atomic writes
//! and cross-process locking. It never decides authorization and never writes key
//! material or the root key anywhere but sealed (or, for `root.key`, mode 0600).
//!
//! Integrity: `state.json` carries an HMAC-SHA256 under a store subkey derived from the
//! root key (HKDF info [`STATE_MAC_KEY_INFO`](root_key::STATE_MAC_KEY_INFO)) over the
//! exact state bytes and their generation, so a state edited outside kmsfs (a grant
//! added by hand) is refused, naming the file. A store of format version 1 has no MAC: its state is trusted on first use
//! and the first write migrates it (MAC'd state, then a version-2 `store.json` whose
//! check value is bound to the version, so a migrated store never accepts an
//! unauthenticated state again). Passphrase stores use Argon2id at RFC 9106's second
//! recommended parameters; parameters below the legacy floor are refused on read, and a
//! store at the legacy parameters is upgraded by that same first write.
//!
//! Crash safety: every file is replaced by write-temp, fsync, rename, fsync-directory,
//! so a reader sees the old or the new file. `state.json` is the single commit point:
//! material files are written before the state that names them and destroyed after the
//! state that dropped them; a crash in between leaves an unreferenced material file
//! that [`Store::collect_garbage`] shreds. Writers serialize on `flock(lock)`.
//!
//! The seams: [`root_key`] (the secret that protects the root key, `store.json`, the
//! keys derived from it), [`state`] (`state.json`, its MAC and generation), [`material`]
//! (material files and other values sealed under the root key), [`files`] (modes, atomic
//! writes, shredding). This file holds the open store and its lock.

mod files;
mod material;
mod root_key;
mod state;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use base64::Engine as _;
use nix::fcntl::{Flock, FlockArg};
use zeroize::Zeroizing;

use crate::crypto::{self, RootKey, SealingKey};
use crate::kms::model::{StoreState, STATE_VERSION};
use crate::kms::{ErrorKind, KmsError};

pub use files::shred_key_file;
pub(crate) use files::{check_private, sync_dir, write_atomic};
use files::{make_private_dir, read_file};
use root_key::{
    check_aad, read_key_file, unlock_header, wrap_root_key, Derived, Header, RootKeyParams,
    CHECK_PLAINTEXT,
};
pub(crate) use root_key::{store_json_uses_passphrase, unlock_store_json, write_new_key_file};
pub use root_key::{NewRootKeySecret, RootKeySource, SecretChangeStep};
use state::encode_state;
pub use state::StateIdent;

/// The store format version written by this build (`store.json` "version"). Version 2:
/// `state.json` is MAC'd, the check value is sealed with
/// [`CHECK_AAD_V2`](root_key::CHECK_AAD_V2), and a passphrase protects a wrapped root key. Version 1 stores open and are migrated by
/// their first write.
pub const STORE_FORMAT_VERSION: u32 = 2;
/// The first store format version whose `state.json` must carry a MAC.
const FIRST_MACED_VERSION: u32 = 2;
const STORE_FORMAT_NAME: &str = "kmsfs-store";
pub(crate) const HEADER_FILE: &str = "store.json";
pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const LOCK_FILE: &str = "lock";
pub(crate) const MATERIAL_DIR: &str = "material";
/// The default root key file inside the store.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The audit log inside the store.
pub const AUDIT_FILE: &str = "audit.log";

/// An open store: its directory and the keys derived from the root key.
pub struct Store {
    dir: PathBuf,
    store_id: String,
    owner_uid: u32,
    material_key: SealingKey,
    secret_key: SealingKey,
    commit_key: SealingKey,
    check_key: SealingKey,
    state_mac_key: SealingKey,
    /// Set once the header is version 2 or a MAC'd state was read: from then on an
    /// unauthenticated `state.json` is refused (it can only be a downgrade).
    mac_required: AtomicBool,
    /// The highest state generation this process has read or written. Under the lock
    /// the file on disk is the latest commit, so a lower generation there means an
    /// older copy was put back.
    generation_seen: AtomicU64,
    /// What the migration of a version-1 store needs, until its first write does it.
    migration: Mutex<Option<Migration>>,
}

/// Held by a store opened at format version 1 until its first write migrates it.
struct Migration {
    root: RootKey,
    /// For a passphrase store: re-derive with today's Argon2id parameters.
    passphrase: Option<Zeroizing<String>>,
}

/// Held while writing: other processes' writers wait.
pub struct StoreLock {
    _lock: Flock<File>,
}

pub(crate) fn internal(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::KmsInternal, msg)
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> KmsError {
    internal(format!("store: cannot {what} {}: {e}", path.display()))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Store {
    /// Creates the store if absent (idempotent). Returns whether it was created. An
    /// existing store must open with `source`.
    pub fn init(dir: &Path, source: &RootKeySource, now: i64) -> Result<bool, KmsError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, "create directory", e))?;
        }
        check_private(dir, true)?;
        let lock = Self::lock_dir(dir)?;
        if dir.join(HEADER_FILE).exists() {
            drop(lock);
            Store::open(dir, source)?;
            return Ok(false);
        }
        let store_id = super::ciphertext::new_key_id().map_err(|e| internal(e.to_string()))?;
        let (root, params) = match source {
            RootKeySource::KeyFile(path) => {
                if !path.exists() {
                    let key = RootKey::generate().map_err(|e| internal(e.to_string()))?;
                    write_new_key_file(path, &key)?;
                }
                (read_key_file(path)?, RootKeyParams::KeyFile)
            }
            RootKeySource::Passphrase(pass) => {
                if pass.is_empty() {
                    return Err(KmsError::new(
                        ErrorKind::Validation,
                        "the store passphrase is empty",
                    ));
                }
                // A random root key, wrapped under the passphrase: changing the
                // passphrase or its parameters later rewraps 32 bytes, nothing else.
                let key = RootKey::generate().map_err(|e| internal(e.to_string()))?;
                let params = wrap_root_key(pass, &store_id, &key)?;
                (key, params)
            }
        };
        let derived = Derived::new(&root, &store_id);
        let check = crypto::seal(
            &derived.check,
            check_aad(STORE_FORMAT_VERSION),
            CHECK_PLAINTEXT,
        )
        .map_err(|e| internal(e.to_string()))?;
        let header = Header {
            format: STORE_FORMAT_NAME.into(),
            version: STORE_FORMAT_VERSION,
            store_id,
            created: now,
            root_key: params,
            check: b64().encode(check),
        };
        make_private_dir(&dir.join(MATERIAL_DIR))?;
        let state = StoreState {
            version: STATE_VERSION,
            ..StoreState::default()
        };
        write_atomic(
            &dir.join(STATE_FILE),
            &encode_state(&derived.state_mac, &header.store_id, &state)?,
        )?;
        // The header last: its presence marks a complete store.
        let header_json =
            serde_json::to_vec_pretty(&header).map_err(|e| internal(e.to_string()))?;
        write_atomic(&dir.join(HEADER_FILE), &header_json)?;
        drop(lock);
        Ok(true)
    }

    /// Whether the store in `dir` is sealed by a passphrase (false when absent,
    /// unreadable or sealed by a key file): lets the CLI decide to prompt before
    /// opening it.
    pub fn sealed_by_passphrase(dir: &Path) -> bool {
        fs::read(dir.join(HEADER_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Header>(&b).ok())
            .is_some_and(|h| matches!(h.root_key, RootKeyParams::Passphrase { .. }))
    }

    /// Opens an existing store, checking modes, owner, format version and root key.
    pub fn open(dir: &Path, source: &RootKeySource) -> Result<Store, KmsError> {
        Self::open_with_root(dir, source).map(|(store, _, _)| store)
    }

    /// [`Store::open`], also returning the header and the root key (for changing the
    /// secret that protects the root key).
    fn open_with_root(
        dir: &Path,
        source: &RootKeySource,
    ) -> Result<(Store, Header, RootKey), KmsError> {
        if !dir.exists() {
            return Err(KmsError::new(
                ErrorKind::NotFound,
                format!(
                    "store: {} does not exist; run `kmsfs init` to create it",
                    dir.display()
                ),
            ));
        }
        check_private(dir, true)?;
        let header_path = dir.join(HEADER_FILE);
        if !header_path.exists() {
            return Err(KmsError::new(
                ErrorKind::NotFound,
                format!(
                    "store: {} holds no kmsfs store ({HEADER_FILE} is missing); run `kmsfs init`",
                    dir.display()
                ),
            ));
        }
        check_private(&header_path, false)?;
        for name in [STATE_FILE, MATERIAL_DIR] {
            let p = dir.join(name);
            if p.exists() {
                check_private(&p, name == MATERIAL_DIR)?;
            }
        }
        let (header, root) = unlock_header(&read_file(&header_path)?, &header_path, dir, source)?;
        let derived = Derived::new(&root, &header.store_id);
        let owner_uid = fs::metadata(dir)
            .map_err(|e| io_err(dir, "inspect", e))?
            .uid();
        make_private_dir(&dir.join(MATERIAL_DIR))?;
        let legacy = header.version < FIRST_MACED_VERSION;
        let migration = legacy.then(|| Migration {
            root: root.duplicate(),
            passphrase: match source {
                RootKeySource::Passphrase(p) => Some(p.clone()),
                RootKeySource::KeyFile(_) => None,
            },
        });
        let store = Store {
            dir: dir.to_path_buf(),
            store_id: header.store_id.clone(),
            owner_uid,
            material_key: derived.material,
            secret_key: derived.secret,
            commit_key: derived.commit,
            check_key: derived.check,
            state_mac_key: derived.state_mac,
            mac_required: AtomicBool::new(!legacy),
            generation_seen: AtomicU64::new(0),
            migration: Mutex::new(migration),
        };
        Ok((store, header, root))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The uid that owns the store (the account root in single-user mode).
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    pub(crate) fn lock_dir(dir: &Path) -> Result<StoreLock, KmsError> {
        let path = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(&path, "open lock file", e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| internal(format!("store: cannot lock {}: {e}", path.display())))?;
        Ok(StoreLock { _lock: lock })
    }

    /// Serializes writers across processes until the returned guard drops.
    pub fn lock(&self) -> Result<StoreLock, KmsError> {
        Self::lock_dir(&self.dir)
    }
}
