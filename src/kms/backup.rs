//! Store backups: one sealed file holding everything in a store but its root key
//! (`kmsfs store backup`), and putting it back, on this machine or another one
//! (`kmsfs store restore`). The byte layout is in docs/RECOVERY.md.
//!
//! The archive is sealed (AES-256-GCM) under a key derived from the store's root key, so
//! it opens only with the same root key file or passphrase, and any change to it is
//! refused. It never contains the root key: a backup and the secret are kept apart.
//! A restore builds the store in a private temporary directory next to the target, opens
//! it as kmsfs would, and only then renames it into place.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, RootKey};
use crate::kms::store::{
    self, check_private, store_json_uses_passphrase, sync_dir, unlock_store_json, write_atomic,
    RootKeySource, Store, AUDIT_FILE, HEADER_FILE, LOCK_FILE, ROOT_KEY_FILE,
};
use crate::kms::KmsError;

/// The first bytes of every backup.
pub const BACKUP_MAGIC: &[u8; 8] = b"KMSFSBAK";
/// The archive layout version this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// HKDF label of the archive key (ikm: root key, salt: the archive's random salt).
const BACKUP_KEY_INFO: &[u8] = b"kmsfs store backup v1";
/// Bounds on what a reader accepts before authenticating anything.
const MAX_HEADER_LEN: u32 = 1 << 20;
const MAX_PATH_LEN: usize = 4096;
const SALT_LEN: usize = 32;
/// Entry kinds of the sealed body.
const ENTRY_END: u8 = 0;
const ENTRY_DIR: u8 = 1;
const ENTRY_FILE: u8 = 2;

/// Why a backup or a restore failed. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{path}: not a kmsfs store backup (wrong magic bytes)")]
    NotABackup { path: PathBuf },
    #[error("{path}: backup format version {version}, which this kmsfs does not read (it reads {BACKUP_VERSION})")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: the backup is truncated or its header is malformed ({reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: the backup fails authentication: it was changed or damaged after it was written (or its header was edited)")]
    Tampered { path: PathBuf },
    #[error("{path}: the root key file or passphrase given does not open this backup (it is the backup of store {store_id}): {reason}")]
    WrongSecret {
        path: PathBuf,
        store_id: String,
        reason: String,
    },
    #[error("{path}: a kmsfs store is already there; restoring would replace it (give --force to replace it; the old store is kept beside it)")]
    StoreExists { path: PathBuf },
    #[error("{path}: exists and is not empty; restore into an absent or empty directory, or give --force")]
    NotEmpty { path: PathBuf },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] KmsError),
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The archive's header (JSON, not secret, authenticated as associated data).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveHeader {
    /// The store id (also inside `store_json`; here so that a person can read it).
    store_id: String,
    /// When the backup was made (Unix seconds).
    created: i64,
    /// The archive key's HKDF salt (hex).
    salt: String,
    /// The store's `store.json`, byte for byte (base64): the passphrase's salt and
    /// parameters and the wrapped root key are needed to unlock on another machine.
    store_json: String,
    /// `root.key` when the store was protected by its default key file inside the
    /// store: a restore with that key file puts it back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_key_file: Option<String>,
}

/// What a backup holds, readable without the secret.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    pub store_id: String,
    pub created: i64,
    /// The store is protected by a passphrase (else by a root key file).
    pub passphrase: bool,
    /// The store kept its root key at `<store>/root.key`.
    pub root_key_in_store: bool,
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub store_id: String,
    /// Store-relative paths of the files in the archive (`store.json` first).
    pub files: Vec<String>,
    /// Store-relative paths left out because they are not regular files.
    pub skipped: Vec<String>,
    pub bytes: u64,
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub store_id: String,
    pub files: usize,
    /// Where a replaced store was moved (with `force`).
    pub replaced_store_moved_to: Option<PathBuf>,
    /// The root key file written into the restored store (key-file stores whose key
    /// lived at `<store>/root.key`).
    pub root_key_file_written: Option<PathBuf>,
}

/// Writes a backup of the store in `dir` (opened with `source`) to `out`, atomically
/// (mode 0600). Holds the store's writer lock while reading, and the audit log's lock
/// while copying the log, so the copy is one consistent state.
pub fn backup(
    dir: &Path,
    source: &RootKeySource,
    out: &Path,
    now: i64,
) -> Result<BackupSummary, BackupError> {
    // Opening checks the secret, modes and owner, as every command does.
    let opened = Store::open(dir, source)?;
    let lock = opened.lock()?;
    // The state is authenticated now (under the lock, it is what the archive holds).
    opened.read_state_locked(&lock)?;
    let header_path = dir.join(HEADER_FILE);
    let store_json = fs::read(&header_path).map_err(io(&header_path, "read"))?;
    let unlocked = unlock_store_json(&store_json, &header_path, dir, source)?;
    let key_file = match source {
        RootKeySource::KeyFile(p) => fs::canonicalize(p).ok(),
        RootKeySource::Passphrase(_) => None,
    };
    let default_key_file = fs::canonicalize(dir.join(ROOT_KEY_FILE)).ok();
    let root_key_file =
        (key_file.is_some() && key_file == default_key_file).then(|| ROOT_KEY_FILE.to_string());

    let mut body = Zeroizing::new(Vec::new());
    let mut files = vec![HEADER_FILE.to_string()];
    let mut skipped = Vec::new();
    let mut walk = Walk {
        exclude: key_file.as_deref(),
        body: &mut body,
        files: &mut files,
        skipped: &mut skipped,
    };
    walk.dir(dir, "")?;
    body.push(ENTRY_END);
    drop(lock);

    let mut salt = [0u8; SALT_LEN];
    crypto::random_fill(&mut salt).map_err(|e| store::internal(e.to_string()))?;
    let header = ArchiveHeader {
        store_id: unlocked.store_id.clone(),
        created: now,
        salt: hex::encode(salt),
        store_json: b64().encode(&store_json),
        root_key_file,
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| store::internal(e.to_string()))?;
    let header_len = u32::try_from(header_json.len())
        .ok()
        .filter(|l| *l <= MAX_HEADER_LEN)
        .ok_or_else(|| store::internal("backup: the store header is too large"))?;
    let mut archive = Vec::with_capacity(16 + header_json.len() + body.len() + 64);
    archive.extend_from_slice(BACKUP_MAGIC);
    archive.extend_from_slice(&BACKUP_VERSION.to_be_bytes());
    archive.extend_from_slice(&header_len.to_be_bytes());
    archive.extend_from_slice(&header_json);
    let key = archive_key(&unlocked.root, &salt);
    let sealed = crypto::seal(&key, &archive, &body).map_err(|e| store::internal(e.to_string()))?;
    archive.extend_from_slice(&sealed);
    write_atomic(out, &archive)?;
    Ok(BackupSummary {
        store_id: unlocked.store_id,
        files,
        skipped,
        bytes: archive.len() as u64,
    })
}

fn archive_key(root: &RootKey, salt: &[u8]) -> crypto::SealingKey {
    crypto::hkdf_sealing_key(root, salt, BACKUP_KEY_INFO)
}

/// Appends the store's files to the archive body, depth first, in name order.
struct Walk<'a> {
    exclude: Option<&'a Path>,
    body: &'a mut Vec<u8>,
    files: &'a mut Vec<String>,
    skipped: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), BackupError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io(dir, "list"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(dir, "list"))?;
        names.sort();
        for name in names {
            let Some(name) = name.to_str().map(str::to_string) else {
                self.skipped
                    .push(format!("{rel}{}", name.to_string_lossy()));
                continue;
            };
            let path = dir.join(&name);
            let rel_path = format!("{rel}{name}");
            if rel.is_empty() && (name == HEADER_FILE || name == LOCK_FILE || name == ROOT_KEY_FILE)
            {
                continue;
            }
            // Temp files of interrupted writes; the key file in use, wherever it is.
            if name.starts_with('.') && name.contains(".tmp.") {
                continue;
            }
            if self.exclude.is_some() && fs::canonicalize(&path).ok().as_deref() == self.exclude {
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(io(&path, "inspect"))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                push_entry(self.body, ENTRY_DIR, &rel_path);
                self.dir(&path, &format!("{rel_path}/"))?;
            } else if ft.is_file() {
                let bytes = if rel.is_empty() && name == AUDIT_FILE {
                    read_audit_log(&path)?
                } else {
                    Zeroizing::new(fs::read(&path).map_err(io(&path, "read"))?)
                };
                push_entry(self.body, ENTRY_FILE, &rel_path);
                self.body
                    .extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                self.body.extend_from_slice(&bytes);
                self.files.push(rel_path);
            } else {
                // Symbolic links, sockets, FIFOs: kmsfs never puts them in a store.
                self.skipped.push(rel_path);
            }
        }
        Ok(())
    }
}

/// The audit log under its own lock (appends take it), so the copy ends with a whole
/// record.
fn read_audit_log(path: &Path) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let f = File::open(path).map_err(io(path, "open"))?;
    let mut f = Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| BackupError::Io {
        path: path.to_path_buf(),
        what: "lock",
        source: e.into(),
    })?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(io(path, "read"))?;
    Ok(Zeroizing::new(v))
}

fn push_entry(body: &mut Vec<u8>, kind: u8, rel: &str) {
    body.push(kind);
    // Store paths are short; `checked_path` refuses longer ones on restore.
    let len = u16::try_from(rel.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(rel.as_bytes());
}

/// A parsed, not yet authenticated archive.
struct Parsed<'a> {
    header: ArchiveHeader,
    store_json: Vec<u8>,
    salt: Vec<u8>,
    /// Everything before the sealed body: the associated data.
    aad: &'a [u8],
    sealed: &'a [u8],
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Parsed<'a>, BackupError> {
    let malformed = |reason: &str| BackupError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < 8 || !bytes.starts_with(BACKUP_MAGIC) {
        return Err(BackupError::NotABackup {
            path: path.to_path_buf(),
        });
    }
    let word = |at: usize| -> Result<u32, BackupError> {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| malformed("it ends inside the fixed header"))
    };
    let version = word(8)?;
    if version != BACKUP_VERSION {
        return Err(BackupError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let header_len = word(12)?;
    if header_len > MAX_HEADER_LEN {
        return Err(malformed("header length out of bounds"));
    }
    let end = 16 + header_len as usize;
    let header_bytes = bytes
        .get(16..end)
        .ok_or_else(|| malformed("it ends inside the header"))?;
    let header: ArchiveHeader =
        serde_json::from_slice(header_bytes).map_err(|e| malformed(&format!("header: {e}")))?;
    let store_json = b64()
        .decode(&header.store_json)
        .map_err(|_| malformed("header: store_json is not base64"))?;
    let salt = hex::decode(&header.salt)
        .ok()
        .filter(|s| s.len() == SALT_LEN)
        .ok_or_else(|| malformed("header: salt is not 32 bytes of hex"))?;
    let (aad, sealed) = bytes.split_at(end);
    if sealed.len() < crypto::SEAL_OVERHEAD {
        return Err(malformed("it ends before the sealed body"));
    }
    Ok(Parsed {
        header,
        store_json,
        salt,
        aad,
        sealed,
    })
}

fn read_archive(path: &Path) -> Result<Vec<u8>, BackupError> {
    let mut f = File::open(path).map_err(io(path, "open"))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(io(path, "read"))?;
    Ok(v)
}

/// Reads what a backup says about itself (not authenticated until [`restore`]).
pub fn inspect(path: &Path) -> Result<BackupInfo, BackupError> {
    let bytes = read_archive(path)?;
    let p = parse(path, &bytes)?;
    let passphrase =
        store_json_uses_passphrase(&p.store_json).ok_or_else(|| BackupError::Malformed {
            path: path.to_path_buf(),
            reason: "header: store_json is not a store header".into(),
        })?;
    Ok(BackupInfo {
        store_id: p.header.store_id,
        created: p.header.created,
        passphrase,
        root_key_in_store: p.header.root_key_file.as_deref() == Some(ROOT_KEY_FILE),
    })
}

/// One entry of the sealed body.
enum Entry<'a> {
    Dir(PathBuf),
    File(PathBuf, &'a [u8]),
}

/// A store-relative path from the archive: relative, normal components only.
fn checked_path(path: &Path, raw: &[u8]) -> Result<PathBuf, BackupError> {
    let bad = || BackupError::Malformed {
        path: path.to_path_buf(),
        reason: "an entry has an unsafe path".into(),
    };
    let text = std::str::from_utf8(raw).map_err(|_| bad())?;
    if text.is_empty() || raw.len() > MAX_PATH_LEN || text.contains('\0') {
        return Err(bad());
    }
    let p = PathBuf::from(text);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    if p.as_os_str() == HEADER_FILE || p.as_os_str() == LOCK_FILE {
        return Err(bad());
    }
    Ok(p)
}

fn parse_body<'a>(path: &Path, body: &'a [u8]) -> Result<Vec<Entry<'a>>, BackupError> {
    // The body is authenticated: a malformed one was written wrong, not tampered with.
    let malformed = |reason: &str| BackupError::Malformed {
        path: path.to_path_buf(),
        reason: format!("sealed body: {reason}"),
    };
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let (&kind, tail) = rest.split_first().ok_or_else(|| malformed("no end mark"))?;
        rest = tail;
        if kind == ENTRY_END {
            if !rest.is_empty() {
                return Err(malformed("bytes after the end mark"));
            }
            return Ok(out);
        }
        let len_bytes = rest.get(..2).ok_or_else(|| malformed("truncated entry"))?;
        let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let raw = rest
            .get(2..2 + len)
            .ok_or_else(|| malformed("truncated path"))?;
        let rel = checked_path(path, raw)?;
        rest = &rest[2 + len..];
        match kind {
            ENTRY_DIR => out.push(Entry::Dir(rel)),
            ENTRY_FILE => {
                let n = rest
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| malformed("truncated file length"))?;
                let n = usize::try_from(n).map_err(|_| malformed("file too large"))?;
                let data = rest
                    .get(8..8usize.saturating_add(n))
                    .ok_or_else(|| malformed("truncated file"))?;
                rest = &rest[8 + n..];
                out.push(Entry::File(rel, data));
            }
            _ => return Err(malformed("unknown entry kind")),
        }
    }
}

/// Restores the backup `archive` into the store directory `dir`, unlocking it with
/// `source` (the store's root key file or passphrase). Refuses to replace a store (or
/// a non-empty directory) unless `force`; a replaced store is moved beside `dir`, never
/// deleted. The new store is built in a temporary directory next to `dir`, opened and
/// its state authenticated, then renamed into place.
pub fn restore(
    archive: &Path,
    dir: &Path,
    source: &RootKeySource,
    force: bool,
    now: i64,
) -> Result<RestoreSummary, BackupError> {
    let bytes = Zeroizing::new(read_archive(archive)?);
    let p = parse(archive, &bytes)?;
    let unlocked =
        unlock_store_json(&p.store_json, &dir.join(HEADER_FILE), dir, source).map_err(|e| {
            BackupError::WrongSecret {
                path: archive.to_path_buf(),
                store_id: p.header.store_id.clone(),
                reason: e.message,
            }
        })?;
    let key = archive_key(&unlocked.root, &p.salt);
    let body = crypto::open(&key, p.aad, p.sealed).map_err(|_| BackupError::Tampered {
        path: archive.to_path_buf(),
    })?;
    let entries = parse_body(archive, &body)?;

    let existing = target_state(dir)?;
    match existing {
        Target::Store if !force => {
            return Err(BackupError::StoreExists {
                path: dir.to_path_buf(),
            })
        }
        Target::NonEmpty if !force => {
            return Err(BackupError::NotEmpty {
                path: dir.to_path_buf(),
            })
        }
        _ => {}
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(io(&parent, "create directory"))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let mut rnd = [0u8; 6];
    crypto::random_fill(&mut rnd).map_err(|e| store::internal(e.to_string()))?;
    let tmp = parent.join(format!(".{name}.restore.{}", hex::encode(rnd)));
    let built = build(&tmp, &entries, &p, source, &unlocked.root);
    let built = built.and_then(|written_key| {
        // Open it as every command will: modes, owner, secret, the state's MAC.
        let check_source = match (&written_key, source) {
            (Some(k), RootKeySource::KeyFile(_)) => RootKeySource::KeyFile(k.clone()),
            _ => source.clone(),
        };
        let opened = Store::open(&tmp, &check_source)?;
        opened.read_state()?;
        Ok(written_key)
    });
    let written_key = match built {
        Ok(k) => k,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let moved = match swap_into_place(&tmp, dir, existing, &name, &parent, now) {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    sync_dir(&parent)?;
    Ok(RestoreSummary {
        store_id: unlocked.store_id,
        files: entries
            .iter()
            .filter(|e| matches!(e, Entry::File(..)))
            .count()
            + 1,
        replaced_store_moved_to: moved,
        root_key_file_written: written_key.map(|_| dir.join(ROOT_KEY_FILE)),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Absent,
    Empty,
    NonEmpty,
    Store,
}

fn target_state(dir: &Path) -> Result<Target, BackupError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::Absent),
        Err(e) => Err(io(dir, "inspect")(e)),
        Ok(m) if !m.is_dir() => Ok(Target::NonEmpty),
        Ok(_) => {
            if dir.join(HEADER_FILE).exists() {
                return Ok(Target::Store);
            }
            let mut entries = fs::read_dir(dir).map_err(io(dir, "list"))?;
            Ok(if entries.next().is_some() {
                Target::NonEmpty
            } else {
                Target::Empty
            })
        }
    }
}

/// Writes the store into `tmp` (0700, files 0600, each fsynced), `store.json` last.
/// Returns the root key file written into it, if any.
fn build(
    tmp: &Path,
    entries: &[Entry<'_>],
    p: &Parsed<'_>,
    source: &RootKeySource,
    root: &RootKey,
) -> Result<Option<PathBuf>, BackupError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .map_err(io(tmp, "create directory"))?;
    let mut dirs = vec![tmp.to_path_buf()];
    for e in entries {
        match e {
            Entry::Dir(rel) => {
                let d = tmp.join(rel);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&d)
                    .map_err(io(&d, "create directory"))?;
                dirs.push(d);
            }
            Entry::File(rel, data) => write_new_file(&tmp.join(rel), data)?,
        }
    }
    // The key file comes back where it was, if it was the store's default one: the
    // restored store then works with the same commands as before.
    let written_key = match (source, p.header.root_key_file.as_deref()) {
        (RootKeySource::KeyFile(_), Some(ROOT_KEY_FILE)) => {
            let k = tmp.join(ROOT_KEY_FILE);
            store::write_new_key_file(&k, root)?;
            Some(k)
        }
        _ => None,
    };
    write_new_file(&tmp.join(HEADER_FILE), &p.store_json)?;
    for d in dirs.iter().rev() {
        check_private(d, true)?;
        sync_dir(d)?;
    }
    Ok(written_key)
}

fn write_new_file(path: &Path, data: &[u8]) -> Result<(), BackupError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path, "create"))?;
    f.write_all(data).map_err(io(path, "write"))?;
    f.sync_all().map_err(io(path, "fsync"))
}

/// Puts the built store `tmp` at `dir`. An absent target: one rename. An existing one:
/// an atomic exchange (renameat2 RENAME_EXCHANGE), then the old directory is moved to
/// `<name>.replaced-<now>` beside it (or removed, if it was empty).
fn swap_into_place(
    tmp: &Path,
    dir: &Path,
    existing: Target,
    name: &str,
    parent: &Path,
    now: i64,
) -> Result<Option<PathBuf>, BackupError> {
    if existing == Target::Absent {
        fs::rename(tmp, dir).map_err(io(dir, "rename the restored store into place"))?;
        return Ok(None);
    }
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        tmp,
        nix::fcntl::AT_FDCWD,
        dir,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| BackupError::Io {
        path: dir.to_path_buf(),
        what: "exchange with the restored store",
        source: e.into(),
    })?;
    // `tmp` now holds what was at `dir`.
    if existing == Target::Empty {
        fs::remove_dir(tmp).map_err(io(tmp, "remove"))?;
        return Ok(None);
    }
    let kept = parent.join(format!("{name}.replaced-{now}"));
    fs::rename(tmp, &kept).map_err(io(&kept, "keep the replaced store"))?;
    Ok(Some(kept))
}
