//! The store on disk: a private directory holding the root-key parameters
//! (`store.json`), the state (`state.json`, see [`super::model`]), one sealed file per
//! key material version (`material/<key-id>/v<N>`), the lock file and the audit log.
//!
//! This module owns file modes, the root key, sealing material at rest, atomic writes
//! and cross-process locking. It never decides authorization and never writes key
//! material or the root key anywhere but sealed (or, for `root.key`, mode 0600).
//!
//! Integrity: `state.json` carries an HMAC-SHA256 under a store subkey derived from the
//! root key (HKDF info [`STATE_MAC_KEY_INFO`]) over the exact state bytes and their
//! generation, so a state edited outside kmsfs (a grant added by hand) is refused, naming
//! the file. A store of format version 1 has no MAC: its state is trusted on first use
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

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, KeyMaterial, RootKey, SealingKey};
use crate::kms::model::{StoreState, STATE_VERSION};
use crate::kms::{ErrorKind, KmsError};

/// The store format version written by this build (`store.json` "version"). Version 2:
/// `state.json` is MAC'd, the check value is sealed with [`CHECK_AAD_V2`], and a
/// passphrase protects a wrapped root key. Version 1 stores open and are migrated by
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
const MATERIAL_MAGIC: &[u8; 4] = b"KMM1";

/// HKDF labels of the keys derived from the root key (salt: the store id).
const MATERIAL_KEY_INFO: &[u8] = b"kmsfs store material key v1";
const SECRET_KEY_INFO: &[u8] = b"kmsfs store secret key v1";
const COMMIT_KEY_INFO: &[u8] = b"kmsfs store commitment key v1";
/// HKDF label of the key that MACs `state.json` (salt: the store id).
pub const STATE_MAC_KEY_INFO: &[u8] = b"kmsfs store state mac v1";
const CHECK_KEY_INFO: &[u8] = b"kmsfs store check key v1";
/// Associated data of the check value in a version-1 header.
const CHECK_AAD_V1: &[u8] = b"kmsfs store check v1";
/// Associated data of the check value from version 2 on: binding the version into the
/// sealed check means editing `"version": 2` back to 1 (to make an unauthenticated
/// `state.json` acceptable again) makes the check fail instead.
const CHECK_AAD_V2: &[u8] = b"kmsfs store check v2";
const CHECK_PLAINTEXT: &[u8] = b"kmsfs root key check";
/// Domain separator at the start of the state MAC input.
const STATE_MAC_LABEL: &[u8] = b"kmsfs state v1\0";
/// `"format"` of a MAC'd `state.json`.
const STATE_FORMAT_NAME: &str = "kmsfs-state";
/// Associated data prefix of the root key wrapped under the passphrase-derived key.
const ROOT_WRAP_AAD: &str = "kmsfs store root key v1";

/// Argon2id parameters of new passphrase-protected stores: RFC 9106 §4, second
/// recommended option (memory-constrained): t = 3, p = 4, m = 64 MiB.
pub const ARGON2_M_COST_KIB: u32 = 64 * 1024;
pub const ARGON2_T_COST: u32 = 3;
pub const ARGON2_P_COST: u32 = 4;
/// The floor accepted on read: the parameters of store format version 1 (OWASP's
/// m = 19 MiB, t = 2). Anything weaker in `store.json` was not written by kmsfs.
pub const ARGON2_MIN_M_COST_KIB: u32 = 19 * 1024;
pub const ARGON2_MIN_T_COST: u32 = 2;
/// Ceilings accepted on read, so that an edited `store.json` cannot make opening the
/// store allocate or compute without bound.
const ARGON2_MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const ARGON2_MAX_T_COST: u32 = 64;
const ARGON2_MAX_P_COST: u32 = 64;

/// Where the root key comes from.
#[derive(Clone)]
pub enum RootKeySource {
    /// A 0600 file holding 64 hex digits (created by init if absent).
    KeyFile(PathBuf),
    /// A passphrase stretched with Argon2id (salt and parameters live in the store).
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for RootKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootKeySource::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
            RootKeySource::Passphrase(_) => f.write_str("Passphrase(..)"),
        }
    }
}

/// What is to protect the root key after [`Store::change_secret`].
pub enum NewRootKeySecret {
    /// A new passphrase: the root key is wrapped under its Argon2id output.
    Passphrase(Zeroizing<String>),
    /// A key file to create (0600) holding the root key itself.
    KeyFile(PathBuf),
}

/// The durable steps of [`Store::change_secret`], in the order they happen, for callers
/// that test what a crash after each one leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretChangeStep {
    /// A format-1 store's `state.json` was rewritten with its MAC (the header still
    /// names the old secret).
    StateMigrated,
    /// The new key file is durable (the header still names the old secret).
    KeyFileWritten,
    /// `store.json` names the new secret: the switch is done.
    HeaderWritten,
}

impl SecretChangeStep {
    /// A stable name (`state-migrated`, `key-file-written`, `header-written`).
    pub fn name(self) -> &'static str {
        match self {
            SecretChangeStep::StateMigrated => "state-migrated",
            SecretChangeStep::KeyFileWritten => "key-file-written",
            SecretChangeStep::HeaderWritten => "header-written",
        }
    }
}

/// The result of [`Store::change_secret`].
#[derive(Debug)]
pub struct SecretChanged {
    pub store_id: String,
    /// The key file that protected the store before a switch to a passphrase. It still
    /// holds the (unchanged) root key, so whoever reads it can open the store's
    /// material: the caller should shred it ([`shred_key_file`]) unless asked not to.
    pub retired_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "source")]
enum RootKeyParams {
    #[serde(rename = "key-file")]
    KeyFile,
    #[serde(rename = "passphrase")]
    Passphrase {
        kdf: String,
        salt: String,
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
        /// Version 2: the root key sealed under the Argon2id output (so the parameters
        /// and the passphrase can change without resealing anything else). Absent in
        /// version 1, where the Argon2id output is the root key itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wrapped_root_key: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    store_id: String,
    created: i64,
    root_key: RootKeyParams,
    /// A known value sealed under the check key: proves the root key opens this store.
    check: String,
}

/// Identity of the state file as last read, to notice writes by other processes with
/// one `stat`: every write renames a new inode into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateIdent {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

impl StateIdent {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
        }
    }
}

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

/// A MAC'd `state.json`: the state's exact bytes stay as written (a raw JSON value), so
/// the MAC covers what is on disk, not a re-serialization.
#[derive(Deserialize)]
struct StateEnvelope<'a> {
    format: String,
    generation: u64,
    mac: String,
    #[serde(borrow)]
    state: &'a serde_json::value::RawValue,
}

/// Enough of `state.json` to tell the MAC'd format from the version-1 one.
#[derive(Deserialize)]
struct StateProbe {
    format: Option<String>,
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

/// Refuses a store path that other users could read or replace.
pub(crate) fn check_private(path: &Path, want_dir: bool) -> Result<(), KmsError> {
    let m = fs::symlink_metadata(path).map_err(|e| io_err(path, "inspect", e))?;
    let euid = nix::unistd::geteuid().as_raw();
    if m.file_type().is_symlink() {
        return Err(internal(format!(
            "store: {} is a symbolic link; the store and its files must be real files owned by uid {euid}",
            path.display()
        )));
    }
    if want_dir != m.is_dir() {
        let what = if want_dir {
            "a directory"
        } else {
            "a regular file"
        };
        return Err(internal(format!("store: {} is not {what}", path.display())));
    }
    if m.uid() != euid {
        return Err(internal(format!(
            "store: {} is owned by uid {}, not by this process's uid {euid}; refusing to use a store another user controls",
            path.display(),
            m.uid()
        )));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let want = if want_dir { "0700" } else { "0600" };
        return Err(internal(format!(
            "store: {} has mode {mode:04o}, which lets other users in; it must be {want} (chmod {} {})",
            path.display(),
            &want[1..],
            path.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: temp file (0600), fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KmsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut rnd = [0u8; 6];
    crypto::random_fill(&mut rnd).map_err(|e| internal(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.tmp.{}", hex::encode(rnd)));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "create", e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, "write", e))?;
        f.sync_all().map_err(|e| io_err(&tmp, "fsync", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, "replace", e))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), KmsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "fsync directory", e))
}

fn read_file(path: &Path) -> Result<Vec<u8>, KmsError> {
    let mut f = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(|e| io_err(path, "read", e))?;
    Ok(v)
}

fn make_private_dir(path: &Path) -> Result<(), KmsError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path, "create directory", e)),
    }
}

fn read_key_file(path: &Path) -> Result<RootKey, KmsError> {
    check_private(path, false)?;
    let text = Zeroizing::new(read_file(path)?);
    let trimmed = std::str::from_utf8(&text)
        .map(str::trim)
        .map_err(|_| internal(format!("root key file {} is not text", path.display())))?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(trimmed, bytes.as_mut()).map_err(|_| {
        internal(format!(
            "root key file {} must hold exactly 64 hex digits",
            path.display()
        ))
    })?;
    Ok(RootKey::from_bytes(*bytes))
}

/// Creates `path` (which must not exist) holding `key` as 64 hex digits, mode 0600, and
/// makes it durable (file and directory entry) before returning.
pub(crate) fn write_new_key_file(path: &Path, key: &RootKey) -> Result<(), KmsError> {
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.expose())));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, "create root key file", e))?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.sync_all()) {
        // Never leave a partial key file (we created it) that a later run would read.
        let _ = fs::remove_file(path);
        return Err(io_err(path, "write root key file", e));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

/// Refuses Argon2id parameters outside [floor, ceiling] (see the constants).
fn check_kdf_params(header_path: &Path, m: u32, t: u32, p: u32) -> Result<(), KmsError> {
    if m < ARGON2_MIN_M_COST_KIB || t < ARGON2_MIN_T_COST || p < 1 {
        return Err(internal(format!(
            "store: {} asks for Argon2id with m = {m} KiB, t = {t}, p = {p}, below the minimum kmsfs accepts (m >= {ARGON2_MIN_M_COST_KIB} KiB, t >= {ARGON2_MIN_T_COST}, p >= 1); kmsfs never writes such parameters, so the file was changed outside kmsfs",
            header_path.display()
        )));
    }
    if m > ARGON2_MAX_M_COST_KIB || t > ARGON2_MAX_T_COST || p > ARGON2_MAX_P_COST {
        return Err(internal(format!(
            "store: {} asks for Argon2id with m = {m} KiB, t = {t}, p = {p}, above the maximum kmsfs accepts (m <= {ARGON2_MAX_M_COST_KIB} KiB, t <= {ARGON2_MAX_T_COST}, p <= {ARGON2_MAX_P_COST})",
            header_path.display()
        )));
    }
    Ok(())
}

fn root_wrap_aad(store_id: &str) -> Vec<u8> {
    format!("{ROOT_WRAP_AAD}|{store_id}").into_bytes()
}

/// A new salt, today's parameters, and `root` sealed under the key they derive from
/// `pass`.
fn wrap_root_key(pass: &str, store_id: &str, root: &RootKey) -> Result<RootKeyParams, KmsError> {
    let salt = crypto::random_bytes(16).map_err(|e| internal(e.to_string()))?;
    let kek = derive_passphrase(pass, &salt, ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST)?;
    let wrapped = crypto::seal(&kek, &root_wrap_aad(store_id), root.expose())
        .map_err(|e| internal(e.to_string()))?;
    Ok(RootKeyParams::Passphrase {
        kdf: "argon2id".into(),
        salt: b64().encode(&salt),
        m_cost: ARGON2_M_COST_KIB,
        t_cost: ARGON2_T_COST,
        p_cost: ARGON2_P_COST,
        wrapped_root_key: Some(b64().encode(wrapped)),
    })
}

fn check_aad(version: u32) -> &'static [u8] {
    if version >= FIRST_MACED_VERSION {
        CHECK_AAD_V2
    } else {
        CHECK_AAD_V1
    }
}

fn derive_passphrase(pass: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<RootKey, KmsError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| internal(format!("store: bad Argon2id parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass.as_bytes(), salt, out.as_mut())
        .map_err(|e| internal(format!("store: Argon2id failed: {e}")))?;
    Ok(RootKey::from_bytes(*out))
}

/// Parses a `store.json` (`bytes`, read from `header_path`) and derives its root key from
/// `source`, checking format, version, KDF parameters and the check value. `dir` names
/// the store in messages.
fn unlock_header(
    bytes: &[u8],
    header_path: &Path,
    dir: &Path,
    source: &RootKeySource,
) -> Result<(Header, RootKey), KmsError> {
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| internal(format!("store: {} is damaged: {e}", header_path.display())))?;
    if header.format != STORE_FORMAT_NAME {
        return Err(internal(format!(
            "store: {} is not a kmsfs store header",
            header_path.display()
        )));
    }
    if header.version > STORE_FORMAT_VERSION {
        return Err(internal(format!(
                "store: {} has format version {}, newer than this kmsfs understands ({STORE_FORMAT_VERSION}); upgrade kmsfs",
                dir.display(),
                header.version
            )));
    }
    let root = match (&header.root_key, source) {
            (RootKeyParams::KeyFile, RootKeySource::KeyFile(path)) => read_key_file(path)?,
            (
                RootKeyParams::Passphrase {
                    kdf,
                    salt,
                    m_cost,
                    t_cost,
                    p_cost,
                    wrapped_root_key,
                },
                RootKeySource::Passphrase(pass),
            ) => {
                if kdf != "argon2id" {
                    return Err(internal(format!("store: unknown key derivation {kdf}")));
                }
                check_kdf_params(header_path, *m_cost, *t_cost, *p_cost)?;
                let salt = b64()
                    .decode(salt)
                    .map_err(|_| internal("store: the passphrase salt is damaged"))?;
                let derived = derive_passphrase(pass, &salt, *m_cost, *t_cost, *p_cost)?;
                match (wrapped_root_key, header.version >= FIRST_MACED_VERSION) {
                    (None, false) => derived,
                    (Some(wrapped), true) => {
                        let wrapped = b64()
                            .decode(wrapped)
                            .map_err(|_| internal("store: the wrapped root key is damaged"))?;
                        let plain =
                            crypto::open(&derived, &root_wrap_aad(&header.store_id), &wrapped)
                                .map_err(|_| wrong_root_key(dir))?;
                        RootKey::from_slice(&plain).ok_or_else(|| {
                            internal("store: the wrapped root key has the wrong length")
                        })?
                    }
                    (_, v2) => {
                        return Err(internal(format!(
                            "store: {} is damaged: a version-{} store {} a wrapped root key",
                            header_path.display(),
                            header.version,
                            if v2 { "needs" } else { "cannot have" }
                        )))
                    }
                }
            }
            (RootKeyParams::KeyFile, RootKeySource::Passphrase(_)) => {
                return Err(internal(format!(
                    "store: {} is protected by a root key file, not a passphrase; give the key file instead",
                    dir.display()
                )))
            }
            (RootKeyParams::Passphrase { .. }, RootKeySource::KeyFile(_)) => {
                return Err(internal(format!(
                    "store: {} is protected by a passphrase (give it with --passphrase-file or KMSFS_PASSPHRASE), not a key file",
                    dir.display()
                )))
            }
        };
    let derived = Derived::new(&root, &header.store_id);
    let check = b64()
        .decode(&header.check)
        .map_err(|_| internal("store: the root key check value is damaged"))?;
    if crypto::open(&derived.check, check_aad(header.version), &check).is_err() {
        return Err(wrong_root_key(dir));
    }
    Ok((header, root))
}

/// What [`unlock_store_json`] learns from a `store.json` and a secret.
pub(crate) struct UnlockedHeader {
    pub store_id: String,
    pub root: RootKey,
}

/// Parses `store.json` bytes (from `header_path`, for messages about the store `dir`),
/// derives the root key from `source` and checks it against the check value.
pub(crate) fn unlock_store_json(
    bytes: &[u8],
    header_path: &Path,
    dir: &Path,
    source: &RootKeySource,
) -> Result<UnlockedHeader, KmsError> {
    let (header, root) = unlock_header(bytes, header_path, dir, source)?;
    Ok(UnlockedHeader {
        store_id: header.store_id,
        root,
    })
}

/// Whether `store.json` bytes describe a passphrase-protected store (`None`: not a
/// store header).
pub(crate) fn store_json_uses_passphrase(bytes: &[u8]) -> Option<bool> {
    let header: Header = serde_json::from_slice(bytes).ok()?;
    Some(matches!(header.root_key, RootKeyParams::Passphrase { .. }))
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

    /// Changes the secret that protects the root key: a new passphrase (the root key is
    /// rewrapped under a fresh salt), a passphrase to a key file, or a key file to a
    /// passphrase. The root key itself does not change, so nothing else is resealed.
    ///
    /// Atomic for the secret: `store.json` is the commit point, replaced in one rename
    /// after everything the new secret needs is durable (a new key file first). Until
    /// that rename the old secret opens the store; after it, the new one. A format-1
    /// store is migrated on the way (its MAC'd state first, as its first write would).
    /// `after_step` runs after each durable step (crash tests stop the process there).
    pub fn change_secret(
        dir: &Path,
        old: &RootKeySource,
        new: &NewRootKeySecret,
        after_step: &mut dyn FnMut(SecretChangeStep),
    ) -> Result<SecretChanged, KmsError> {
        if !dir.join(HEADER_FILE).is_file() {
            // Let `open` say what is wrong with the directory.
            Self::open(dir, old)?;
        }
        // Under the lock: no writer migrates the header or changes it meanwhile.
        let lock = Self::lock_dir(dir)?;
        let (store, header, root) = Self::open_with_root(dir, old)?;
        if let (NewRootKeySecret::KeyFile(_), RootKeyParams::KeyFile) = (new, &header.root_key) {
            return Err(KmsError::new(
                ErrorKind::Validation,
                format!(
                    "store: {} is already protected by a root key file; to keep it elsewhere, move the file and give its path with --root-key-file",
                    dir.display()
                ),
            ));
        }
        if header.version < FIRST_MACED_VERSION {
            let (state, _) = store.read_state_locked(&lock)?;
            let bytes = encode_state(&store.state_mac_key, &store.store_id, &state)?;
            write_atomic(&dir.join(STATE_FILE), &bytes)?;
            after_step(SecretChangeStep::StateMigrated);
        }
        let mut next = header.clone();
        next.version = STORE_FORMAT_VERSION;
        let check = crypto::seal(&store.check_key, check_aad(next.version), CHECK_PLAINTEXT)
            .map_err(|e| internal(e.to_string()))?;
        next.check = b64().encode(check);
        next.root_key = match new {
            NewRootKeySecret::Passphrase(pass) => {
                if pass.is_empty() {
                    return Err(KmsError::new(
                        ErrorKind::Validation,
                        "the new passphrase is empty",
                    ));
                }
                wrap_root_key(pass, &store.store_id, &root)?
            }
            NewRootKeySecret::KeyFile(path) => {
                if fs::symlink_metadata(path).is_ok() {
                    // An existing file is accepted only if it already holds this root
                    // key (a rerun after a crash); never overwrite another key.
                    let existing = read_key_file(path)?;
                    if !crypto::ct_eq(existing.expose(), root.expose()) {
                        return Err(internal(format!(
                            "root key file {} exists and holds a different key; refusing to overwrite it",
                            path.display()
                        )));
                    }
                } else {
                    write_new_key_file(path, &root)?;
                }
                after_step(SecretChangeStep::KeyFileWritten);
                RootKeyParams::KeyFile
            }
        };
        let json = serde_json::to_vec_pretty(&next).map_err(|e| internal(e.to_string()))?;
        write_atomic(&dir.join(HEADER_FILE), &json)?;
        after_step(SecretChangeStep::HeaderWritten);
        drop(lock);
        let retired_key_file = match (old, new) {
            (RootKeySource::KeyFile(p), NewRootKeySecret::Passphrase(_)) => Some(p.clone()),
            _ => None,
        };
        Ok(SecretChanged {
            store_id: store.store_id.clone(),
            retired_key_file,
        })
    }

    /// Rewrites a version-1 `store.json` as version 2 (caller holds the lock, and has
    /// just written a MAC'd state): check value bound to the version, and for a
    /// passphrase store the root key wrapped under today's Argon2id parameters. The
    /// root key itself does not change, so nothing else is resealed.
    fn migrate_header(&self, m: &Migration) -> Result<(), KmsError> {
        let path = self.dir.join(HEADER_FILE);
        let mut header: Header = serde_json::from_slice(&read_file(&path)?)
            .map_err(|e| internal(format!("store: {} is damaged: {e}", path.display())))?;
        if header.version >= FIRST_MACED_VERSION {
            // Another process migrated it first.
            return Ok(());
        }
        if let RootKeyParams::Passphrase { .. } = header.root_key {
            let Some(pass) = &m.passphrase else {
                return Err(internal(
                    "store: migrating a passphrase store needs the passphrase",
                ));
            };
            header.root_key = wrap_root_key(pass, &self.store_id, &m.root)?;
        }
        header.version = STORE_FORMAT_VERSION;
        let check = crypto::seal(&self.check_key, check_aad(header.version), CHECK_PLAINTEXT)
            .map_err(|e| internal(e.to_string()))?;
        header.check = b64().encode(check);
        let json = serde_json::to_vec_pretty(&header).map_err(|e| internal(e.to_string()))?;
        write_atomic(&path, &json)
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

    /// The state file's identity now (one stat).
    pub fn state_ident(&self) -> Result<StateIdent, KmsError> {
        let p = self.dir.join(STATE_FILE);
        fs::metadata(&p)
            .map(|m| StateIdent::of(&m))
            .map_err(|e| io_err(&p, "inspect", e))
    }

    /// Reads and authenticates the state, with the identity of the file it came from.
    pub fn read_state(&self) -> Result<(StoreState, StateIdent), KmsError> {
        let p = self.dir.join(STATE_FILE);
        let mut f = File::open(&p).map_err(|e| io_err(&p, "open", e))?;
        let ident = StateIdent::of(&f.metadata().map_err(|e| io_err(&p, "inspect", e))?);
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| io_err(&p, "read", e))?;
        let state = self.decode_state(&p, &v)?;
        self.generation_seen
            .fetch_max(state.generation, Ordering::AcqRel);
        Ok((state, ident))
    }

    /// Reads the state for a reader without the lock. A generation older than one this
    /// process saw can be an honest race (the file was opened just before a rename), so
    /// it is read once more: that read starts after the newer file was in place (it was
    /// renamed before its generation was noted), so an older generation again is a
    /// rollback. No lock is taken: a caller may already hold it.
    pub fn read_state_current(&self) -> Result<(StoreState, StateIdent), KmsError> {
        let seen = self.generation_seen.load(Ordering::Acquire);
        let (state, ident) = self.read_state()?;
        if state.generation >= seen {
            return Ok((state, ident));
        }
        let (state, ident) = self.read_state()?;
        if state.generation < seen {
            return Err(self.rolled_back(state.generation, seen));
        }
        Ok((state, ident))
    }

    fn rolled_back(&self, generation: u64, seen: u64) -> KmsError {
        auth_failure(
            &self.dir.join(STATE_FILE),
            &format!(
                "its generation {generation} is older than generation {seen}, which this process already read: an older copy was put back"
            ),
        )
    }

    /// Reads the state for a write (caller holds the lock, so the file is the latest
    /// commit): also refuses a generation older than one this process already saw.
    pub fn read_state_locked(
        &self,
        _lock: &StoreLock,
    ) -> Result<(StoreState, StateIdent), KmsError> {
        let seen = self.generation_seen.load(Ordering::Acquire);
        let (state, ident) = self.read_state()?;
        if state.generation < seen {
            return Err(self.rolled_back(state.generation, seen));
        }
        Ok((state, ident))
    }

    fn decode_state(&self, p: &Path, bytes: &[u8]) -> Result<StoreState, KmsError> {
        let damaged =
            |e: serde_json::Error| internal(format!("store: {} is damaged: {e}", p.display()));
        let probe: StateProbe = serde_json::from_slice(bytes).map_err(damaged)?;
        let state: StoreState = match probe.format.as_deref() {
            Some(STATE_FORMAT_NAME) => {
                let env: StateEnvelope<'_> = serde_json::from_slice(bytes).map_err(damaged)?;
                let tag = hex::decode(&env.mac).unwrap_or_default();
                let input = state_mac_input(&self.store_id, env.generation, env.state.get());
                if env.format != STATE_FORMAT_NAME
                    || !crypto::hmac_sha256_verify(&self.state_mac_key, &input, &tag)
                {
                    return Err(auth_failure(p, "its MAC does not match"));
                }
                let state: StoreState = serde_json::from_str(env.state.get()).map_err(damaged)?;
                if state.generation != env.generation {
                    return Err(auth_failure(p, "its generation does not match its MAC"));
                }
                self.mac_required.store(true, Ordering::Release);
                state
            }
            Some(other) => {
                return Err(internal(format!(
                    "store: {} has the unknown format {other:?}",
                    p.display()
                )))
            }
            None => {
                if self.mac_required.load(Ordering::Acquire) {
                    return Err(auth_failure(
                        p,
                        "it has no MAC, and this store's state is authenticated",
                    ));
                }
                // Store format version 1, not yet migrated: trusted on first use
                // (docs/THREAT_MODEL); the next write MACs it.
                serde_json::from_slice(bytes).map_err(damaged)?
            }
        };
        if state.version > STATE_VERSION {
            return Err(internal(format!(
                "store: {} has state version {}, newer than this kmsfs understands ({STATE_VERSION})",
                p.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Commits `state` (caller holds the lock) with its MAC. Returns the new file's
    /// identity. The first write of a version-1 store also migrates its header, after
    /// the MAC'd state is durable (a crash in between leaves a version-1 header with a
    /// MAC'd state, which opens, and the next write finishes the migration).
    pub fn write_state(
        &self,
        state: &StoreState,
        _lock: &StoreLock,
    ) -> Result<StateIdent, KmsError> {
        let bytes = encode_state(&self.state_mac_key, &self.store_id, state)?;
        write_atomic(&self.dir.join(STATE_FILE), &bytes)?;
        self.generation_seen
            .fetch_max(state.generation, Ordering::AcqRel);
        let mut migration = self.migration.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = migration.as_ref() {
            self.migrate_header(m)?;
            self.mac_required.store(true, Ordering::Release);
            *migration = None;
        }
        drop(migration);
        self.state_ident()
    }

    fn material_path(&self, key_id: &str, version: u32) -> PathBuf {
        self.dir
            .join(MATERIAL_DIR)
            .join(key_id)
            .join(format!("v{version}"))
    }

    fn material_aad(&self, key_id: &str, version: u32) -> Vec<u8> {
        format!("kmsfs material v1|{}|{key_id}|{version}", self.store_id).into_bytes()
    }

    /// Seals and writes one material version (before the state names it).
    pub fn write_material(
        &self,
        key_id: &str,
        version: u32,
        material: &KeyMaterial,
    ) -> Result<(), KmsError> {
        let kdir = self.dir.join(MATERIAL_DIR).join(key_id);
        if !kdir.exists() {
            make_private_dir(&kdir)?;
            sync_dir(&self.dir.join(MATERIAL_DIR))?;
        }
        let sealed = crypto::seal(
            &self.material_key,
            &self.material_aad(key_id, version),
            material.expose(),
        )
        .map_err(|e| internal(e.to_string()))?;
        let mut bytes = MATERIAL_MAGIC.to_vec();
        bytes.extend_from_slice(&sealed);
        write_atomic(&self.material_path(key_id, version), &bytes)
    }

    /// Reads and unseals one material version.
    pub fn read_material(&self, key_id: &str, version: u32) -> Result<KeyMaterial, KmsError> {
        let p = self.material_path(key_id, version);
        check_private(&p, false)?;
        let bytes = read_file(&p)?;
        let sealed = bytes
            .strip_prefix(MATERIAL_MAGIC.as_slice())
            .ok_or_else(|| internal(format!("store: {} is not a material file", p.display())))?;
        let plain = crypto::open(
            &self.material_key,
            &self.material_aad(key_id, version),
            sealed,
        )
        .map_err(|_| {
            internal(format!(
                "store: {} fails authentication (damaged or moved)",
                p.display()
            ))
        })?;
        KeyMaterial::from_slice(&plain)
            .ok_or_else(|| internal(format!("store: {} has the wrong length", p.display())))
    }

    /// Destroys every material version of a key and its directory.
    pub fn shred_key(&self, key_id: &str) -> Result<(), KmsError> {
        let kdir = self.dir.join(MATERIAL_DIR).join(key_id);
        if !kdir.exists() {
            return Ok(());
        }
        let entries = fs::read_dir(&kdir).map_err(|e| io_err(&kdir, "list", e))?;
        for e in entries {
            let e = e.map_err(|e| io_err(&kdir, "list", e))?;
            shred_file(&e.path())?;
        }
        fs::remove_dir(&kdir).map_err(|e| io_err(&kdir, "remove", e))?;
        sync_dir(&self.dir.join(MATERIAL_DIR))
    }

    /// Shreds material of keys the state no longer names, and material versions it
    /// does not list (left by a crash between the two steps of a write or a destroy).
    /// Also removes temp files of interrupted writes: the caller holds the lock, and
    /// every writer writes its temp files only while holding it.
    pub fn collect_garbage(&self, state: &StoreState) -> Result<(), KmsError> {
        remove_temps(&self.dir)?;
        let mdir = self.dir.join(MATERIAL_DIR);
        let entries = fs::read_dir(&mdir).map_err(|e| io_err(&mdir, "list", e))?;
        for e in entries {
            let e = e.map_err(|e| io_err(&mdir, "list", e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match state.keys.get(&name) {
                None => self.shred_key(&name)?,
                Some(rec) => {
                    let kdir = e.path();
                    remove_temps(&kdir)?;
                    let files = fs::read_dir(&kdir).map_err(|e| io_err(&kdir, "list", e))?;
                    for f in files {
                        let f = f.map_err(|e| io_err(&kdir, "list", e))?;
                        let fname = f.file_name().to_string_lossy().into_owned();
                        let live = fname
                            .strip_prefix('v')
                            .and_then(|v| v.parse::<u32>().ok())
                            .is_some_and(|v| rec.materials.iter().any(|m| m.version == v));
                        if !live {
                            shred_file(&f.path())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Seals a small secret (volume secrets, import tokens) under the root key.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, KmsError> {
        let aad = format!("kmsfs secret v1|{}|{label}", self.store_id);
        crypto::seal(&self.secret_key, aad.as_bytes(), plain).map_err(|e| internal(e.to_string()))
    }

    /// Opens what [`Store::seal_secret`] sealed with the same label.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let aad = format!("kmsfs secret v1|{}|{label}", self.store_id);
        crypto::open(&self.secret_key, aad.as_bytes(), sealed).ok()
    }

    /// A keyed commitment to imported material (reimports must match it).
    pub fn commit_material(&self, key_id: &str, material: &KeyMaterial) -> String {
        // Holds the material: wiped on drop (a hand-written zeroing loop before a free
        // may be optimized away).
        let mut data = Zeroizing::new(Vec::with_capacity(key_id.len() + crypto::KEY_LEN));
        data.extend_from_slice(key_id.as_bytes());
        data.extend_from_slice(material.expose());
        hex::encode(crypto::hmac_sha256(&self.commit_key, &data))
    }
}

fn wrong_root_key(dir: &Path) -> KmsError {
    KmsError::new(
        ErrorKind::AccessDenied,
        format!(
            "the root key does not open this store ({}): wrong key file or passphrase",
            dir.display()
        ),
    )
}

/// The error of a `state.json` that fails authentication. Every call fails with it
/// (closed), naming the file.
fn auth_failure(path: &Path, why: &str) -> KmsError {
    internal(format!(
        "store: {} failed authentication: changed outside kmsfs ({why}); restore it from a backup of this store",
        path.display()
    ))
}

/// MAC input of a state: label, store id, generation, then the state's exact bytes.
fn state_mac_input(store_id: &str, generation: u64, state: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(STATE_MAC_LABEL.len() + 64 + state.len());
    input.extend_from_slice(STATE_MAC_LABEL);
    input.extend_from_slice(&(store_id.len() as u64).to_be_bytes());
    input.extend_from_slice(store_id.as_bytes());
    input.extend_from_slice(&generation.to_be_bytes());
    input.extend_from_slice(state.as_bytes());
    input
}

/// The bytes of a MAC'd `state.json` (see [`StateEnvelope`]).
fn encode_state(
    mac_key: &SealingKey,
    store_id: &str,
    state: &StoreState,
) -> Result<Vec<u8>, KmsError> {
    let body = serde_json::to_string_pretty(state).map_err(|e| internal(e.to_string()))?;
    let tag = crypto::hmac_sha256(mac_key, &state_mac_input(store_id, state.generation, &body));
    // Written by hand so that the state's bytes sit in the file exactly as MAC'd.
    let out = format!(
        "{{\n\"format\": \"{STATE_FORMAT_NAME}\",\n\"generation\": {},\n\"mac\": \"{}\",\n\"state\": {body}\n}}\n",
        state.generation,
        hex::encode(tag)
    );
    Ok(out.into_bytes())
}

struct Derived {
    material: SealingKey,
    secret: SealingKey,
    commit: SealingKey,
    check: SealingKey,
    state_mac: SealingKey,
}

impl Derived {
    fn new(root: &RootKey, store_id: &str) -> Self {
        let salt = store_id.as_bytes();
        Derived {
            material: crypto::hkdf_sealing_key(root, salt, MATERIAL_KEY_INFO),
            secret: crypto::hkdf_sealing_key(root, salt, SECRET_KEY_INFO),
            commit: crypto::hkdf_sealing_key(root, salt, COMMIT_KEY_INFO),
            check: crypto::hkdf_sealing_key(root, salt, CHECK_KEY_INFO),
            state_mac: crypto::hkdf_sealing_key(root, salt, STATE_MAC_KEY_INFO),
        }
    }
}

/// Removes `.NAME.tmp.*` files left in `dir` by a write that was interrupted. Shreds
/// them: a temp file may hold a sealed material version.
fn remove_temps(dir: &Path) -> Result<(), KmsError> {
    let entries = fs::read_dir(dir).map_err(|e| io_err(dir, "list", e))?;
    for e in entries {
        let e = e.map_err(|e| io_err(dir, "list", e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp.") {
            shred_file(&e.path())?;
        }
    }
    Ok(())
}

fn shred_file(p: &Path) -> Result<(), KmsError> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(p, "inspect", e)),
        Ok(m) if m.is_file() => {
            let len = usize::try_from(m.len()).unwrap_or(0);
            let mut f = OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| io_err(p, "open for shredding", e))?;
            f.write_all(&vec![0u8; len])
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err(p, "overwrite", e))?;
        }
        Ok(_) => {}
    }
    fs::remove_file(p).map_err(|e| io_err(p, "remove", e))
}

/// Destroys a root key file that no longer protects a store (overwrite with zeros,
/// fsync, unlink, fsync its directory).
pub fn shred_key_file(path: &Path) -> Result<(), KmsError> {
    shred_file(path)?;
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}
