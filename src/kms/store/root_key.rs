//! The root key: where it comes from (a key file or a passphrase stretched with
//! Argon2id), the store header `store.json` that says which and proves the key right (its
//! check value), the subkeys derived from it, and changing the secret that protects it.
//! Never writes the root key anywhere but wrapped, or into a 0600 key file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::files::{check_private, read_file, sync_dir, write_atomic};
use super::state::encode_state;
use super::{
    b64, internal, io_err, Migration, Store, FIRST_MACED_VERSION, HEADER_FILE, STATE_FILE,
    STORE_FORMAT_NAME, STORE_FORMAT_VERSION,
};
use crate::crypto::{self, RootKey, SealingKey};
use crate::kms::{ErrorKind, KmsError};

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
pub(super) const CHECK_PLAINTEXT: &[u8] = b"kmsfs root key check";

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
    /// A stable name (`state-migrated`, `key-file-written`, `header-written`), which
    /// debug builds' crash injection matches (release builds never read it).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
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
    /// material: the caller should shred it ([`shred_key_file`](super::shred_key_file)) unless asked not to.
    pub retired_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "source")]
pub(super) enum RootKeyParams {
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
pub(super) struct Header {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) store_id: String,
    pub(super) created: i64,
    pub(super) root_key: RootKeyParams,
    /// A known value sealed under the check key: proves the root key opens this store.
    pub(super) check: String,
}

pub(super) fn read_key_file(path: &Path) -> Result<RootKey, KmsError> {
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
pub(super) fn wrap_root_key(
    pass: &str,
    store_id: &str,
    root: &RootKey,
) -> Result<RootKeyParams, KmsError> {
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

pub(super) fn check_aad(version: u32) -> &'static [u8] {
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
pub(super) fn unlock_header(
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
    pub(super) fn migrate_header(&self, m: &Migration) -> Result<(), KmsError> {
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

pub(super) struct Derived {
    pub(super) material: SealingKey,
    pub(super) secret: SealingKey,
    pub(super) commit: SealingKey,
    pub(super) check: SealingKey,
    pub(super) state_mac: SealingKey,
}

impl Derived {
    pub(super) fn new(root: &RootKey, store_id: &str) -> Self {
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
