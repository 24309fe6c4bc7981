//! `kmsfs rewrap`: re-wraps a file's data key under another key (or under the current
//! material of its own key) by replacing only its 1024-byte header. The file id and the
//! data key stay, so the content blocks stay valid and are never read or written; the
//! key commitment is recomputed over the new header bytes.
//!
//! Crash safety, per file (docs/FORMAT.md, "Re-wrapping"): under an exclusive OFD lock
//! on the header bytes (the mount takes the same lock when it re-keys and a shared one
//! when it reads a header on open), the header is re-read and compared with the one
//! whose key was unwrapped; the old and new headers are journaled in `kmsfs.rewrap`
//! (written atomically, fsync'd); the new header is written in place and fdatasync'd;
//! the journal is removed. A header torn by a power loss during the write is completed
//! from the journal by the next rewrap ([`replay_journal`]), which the mount also runs
//! when it starts. The inode stays (hard links, owner, mode, xattrs), and so do the
//! backing file's access and modification times.
//!
//! This module never sees plaintext and never decides who may do what: [`RewrapKeys`]
//! (the key service, as the calling user) does.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind as IoKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::DataKey;
use crate::format::{encryption_context, FileHeader, FormatError, HEADER_LEN};
use crate::kms::ciphertext;
use crate::kms::KmsError;
use crate::policy::EncryptionContext;

/// The journal of the header being replaced, in the backing root (a reserved name).
pub const JOURNAL_NAME: &str = crate::format::REWRAP_JOURNAL_NAME;

/// A data key wrapped under a key: the ciphertext blob and the ARN of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub blob: Vec<u8>,
    pub key_arn: String,
}

/// What rewrap asks of a key service, as the calling user.
pub trait RewrapKeys {
    /// `kms:Decrypt` of the header's wrapped key with the file's encryption context.
    fn unwrap(&self, header: &FileHeader, context: &EncryptionContext)
        -> Result<DataKey, KmsError>;
    /// `kms:Encrypt` of `key` under `key_id` with the same context.
    fn wrap(
        &self,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<Wrapped, KmsError>;
}

/// Under which key a file's data key is wrapped again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The key the file's header names, under its current material.
    OwnKey,
    /// Another key (key id, ARN, alias; local or remote).
    Key(&'a str),
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new header was written.
    Rewrapped,
    /// The data key was already wrapped under the destination's current material (a
    /// kmsfs key whose material version did not change): nothing written.
    Unchanged,
}

/// The durable steps of one file's swap, for crash tests (`KMSFS_TEST_CRASH_AT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The journal holds the old and new header; the file still has the old one.
    JournalWritten,
    /// The new header is in the file (fdatasync'd); the journal is still there.
    HeaderWritten,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::JournalWritten => "rewrap-journal-written",
            Step::HeaderWritten => "rewrap-header-written",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewrapError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {}", .0.kind.aws_name(), .0.message)]
    Kms(#[from] KmsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the header changed while it was being re-wrapped (re-keyed through a mount?)")]
    Changed,
    #[error("the data key the key service returned does not match the header's commitment")]
    KeyMismatch,
    #[error("another kmsfs rewrap is running on this volume")]
    Busy,
    #[error("journal {}: {reason}", path.display())]
    BadJournal { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RewrapError + '_ {
    move |source| RewrapError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An OFD lock on a file's header bytes `0..1024`, released on drop. Shared by the
/// mount (readers of a header, and the re-key) and rewrap (the writer), across
/// processes. OFD locks belong to the open file description, so two descriptors of one
/// process exclude each other as two processes do.
pub struct HeaderLock<'a> {
    file: &'a File,
}

impl<'a> HeaderLock<'a> {
    /// Waits for an exclusive lock (the descriptor must be open for writing).
    pub fn exclusive(file: &'a File) -> std::io::Result<Self> {
        ofd_lock(file, libc::F_WRLCK as libc::c_short)?;
        Ok(HeaderLock { file })
    }

    /// Waits for a shared lock (the descriptor must be open for reading).
    pub fn shared(file: &'a File) -> std::io::Result<Self> {
        ofd_lock(file, libc::F_RDLCK as libc::c_short)?;
        Ok(HeaderLock { file })
    }
}

impl Drop for HeaderLock<'_> {
    fn drop(&mut self) {
        let _ = ofd_lock(self.file, libc::F_UNLCK as libc::c_short);
    }
}

fn ofd_lock(file: &File, kind: libc::c_short) -> std::io::Result<()> {
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = HEADER_LEN as libc::off_t;
    loop {
        // SAFETY: fcntl on a descriptor we borrow, with a pointer to a live flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &mut fl) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != IoKind::Interrupted {
            return Err(e);
        }
    }
}

/// The rewrap of one volume: holds the volume-wide lock (one rewrap at a time) and the
/// journal's place.
pub struct Rewrap<'a> {
    backing: PathBuf,
    volume_id: String,
    keys: &'a dyn RewrapKeys,
    /// Held for the lifetime of the rewrap: an exclusive `flock` on the journal's lock
    /// file, so two rewraps (or a mount's replay) never work on the journal at once.
    _lock: File,
    after_step: Box<dyn Fn(Step) + 'a>,
}

/// Name of the lock file beside the journal (never holds data).
pub const LOCK_NAME: &str = crate::format::REWRAP_LOCK_NAME;

fn take_volume_lock(backing: &Path, wait: bool) -> Result<Option<File>, RewrapError> {
    let path = backing.join(LOCK_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io_err(&path))?;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == IoKind::WouldBlock {
            Ok(None)
        } else {
            Err(io_err(&path)(e))
        };
    }
    Ok(Some(file))
}

impl<'a> Rewrap<'a> {
    /// Takes the volume's rewrap lock (failing with [`RewrapError::Busy`] if another
    /// rewrap holds it) and completes a journal left by an interrupted one.
    pub fn begin(
        backing: &Path,
        volume_id: &str,
        keys: &'a dyn RewrapKeys,
    ) -> Result<Rewrap<'a>, RewrapError> {
        let lock = take_volume_lock(backing, false)?.ok_or(RewrapError::Busy)?;
        replay_locked(backing)?;
        Ok(Rewrap {
            backing: backing.to_path_buf(),
            volume_id: volume_id.to_string(),
            keys,
            _lock: lock,
            after_step: Box::new(|_| {}),
        })
    }

    /// Calls `hook` after each durable step (tests kill the process there).
    pub fn with_step_hook(mut self, hook: impl Fn(Step) + 'a) -> Self {
        self.after_step = Box::new(hook);
        self
    }

    /// Re-wraps the file at `path` (a backing path inside this volume). A file whose
    /// header changed between the unwrap and the swap is retried a few times.
    pub fn file(&self, path: &Path, dest: Destination<'_>) -> Result<Outcome, RewrapError> {
        let mut tries = 0;
        loop {
            match self.file_once(path, dest) {
                Err(RewrapError::Changed) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    fn file_once(&self, path: &Path, dest: Destination<'_>) -> Result<Outcome, RewrapError> {
        let file = open_backing(path)?;
        let old = FileHeader::read_from(&file).map_err(|e| at_path(e, path))?;
        let context = encryption_context(&self.volume_id, &old.file_id);
        let key = self.keys.unwrap(&old, &context)?;
        old.verify_commitment(&key)
            .map_err(|_| RewrapError::KeyMismatch)?;
        let key_id = match dest {
            Destination::OwnKey => old.key_arn.as_str(),
            Destination::Key(k) => k,
        };
        let wrapped = self.keys.wrap(key_id, &key, &context)?;
        if same_material(&old, &wrapped) {
            return Ok(Outcome::Unchanged);
        }
        // The file keeps its envelope version: its blocks are sealed the way it says.
        let new = FileHeader::with_version(
            old.version,
            old.file_id,
            wrapped.key_arn,
            wrapped.blob,
            &key,
        )?;
        let (old_bytes, new_bytes) = (old.encode(), new.encode());
        let st = file.metadata().map_err(io_err(path))?;
        let _lock = HeaderLock::exclusive(&file).map_err(io_err(path))?;
        if read_header_bytes(&file).map_err(io_err(path))? != old_bytes {
            return Err(RewrapError::Changed);
        }
        let relative = path.strip_prefix(&self.backing).unwrap_or(path);
        let journal = Journal {
            path: relative.to_string_lossy().into_owned(),
            dev: st.dev(),
            ino: st.ino(),
            old: hex::encode(&old_bytes),
            new: hex::encode(&new_bytes),
        };
        journal.write(&self.backing)?;
        (self.after_step)(Step::JournalWritten);
        write_header(&file, &new_bytes, &st).map_err(io_err(path))?;
        (self.after_step)(Step::HeaderWritten);
        clear_journal(&self.backing)?;
        Ok(Outcome::Rewrapped)
    }
}

/// True when `wrapped` is the same key and material version as the header's wrapped
/// key: re-wrapping would change nothing but the nonce. Known for kmsfs blobs (a local
/// key, or a central kmsfs's); AWS KMS's blobs are opaque, so they are always re-wrapped.
fn same_material(old: &FileHeader, wrapped: &Wrapped) -> bool {
    match (
        ciphertext::parse(&old.wrapped_key),
        ciphertext::parse(&wrapped.blob),
    ) {
        (Ok(a), Ok(b)) => {
            old.key_arn == wrapped.key_arn && a.key_id == b.key_id && a.version == b.version
        }
        _ => false,
    }
}

fn at_path(e: FormatError, path: &Path) -> RewrapError {
    match e {
        FormatError::IoNoPath(source) => RewrapError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => RewrapError::Format(other),
    }
}

/// Opens a backing file for reading and writing if it is a regular file, without
/// following a symlink or blocking on a FIFO.
fn open_backing(path: &Path) -> Result<File, RewrapError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path))?;
    let st = file.metadata().map_err(io_err(path))?;
    if !st.file_type().is_file() {
        return Err(RewrapError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(IoKind::InvalidInput, "not a regular file"),
        });
    }
    Ok(file)
}

fn read_header_bytes(file: &File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Writes a header in place, makes it durable, and puts back the access and
/// modification times the file had (a re-wrap is not a change of content; only the
/// ctime moves).
fn write_header(file: &File, bytes: &[u8], before: &std::fs::Metadata) -> std::io::Result<()> {
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    let times = [
        libc::timespec {
            tv_sec: before.atime() as libc::time_t,
            tv_nsec: before.atime_nsec() as _,
        },
        libc::timespec {
            tv_sec: before.mtime() as libc::time_t,
            tv_nsec: before.mtime_nsec() as _,
        },
    ];
    // SAFETY: futimens on a descriptor we borrow, with a pointer to two timespecs.
    if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The journal: which file, and its header before and after (hex), so a header torn by
/// a power loss can be completed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Journal {
    /// Backing path relative to the backing root.
    path: String,
    dev: u64,
    ino: u64,
    old: String,
    new: String,
}

impl Journal {
    fn write(&self, backing: &Path) -> Result<(), RewrapError> {
        let bytes = serde_json::to_vec(self).map_err(|e| RewrapError::BadJournal {
            path: backing.join(JOURNAL_NAME),
            reason: e.to_string(),
        })?;
        crate::format::write_atomic(backing, JOURNAL_NAME, &bytes, false)?;
        Ok(())
    }
}

fn clear_journal(backing: &Path) -> Result<(), RewrapError> {
    let path = backing.join(JOURNAL_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// What [`replay_journal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// No journal.
    Nothing,
    /// A rewrap holds the volume lock: its journal is its own business.
    RewrapRunning,
    /// The journal was complete or stale (the file has the old or the new header, or
    /// is another file now): removed.
    Cleared,
    /// The file's header was a mix of the old and new bytes (torn): the new header was
    /// written, then the journal removed. The backing path.
    Completed(PathBuf),
}

/// Completes or discards a journal left by an interrupted rewrap, unless a rewrap is
/// running. The mount calls this when it starts.
pub fn replay_journal(backing: &Path) -> Result<Replay, RewrapError> {
    if !backing.join(JOURNAL_NAME).exists() {
        return Ok(Replay::Nothing);
    }
    match take_volume_lock(backing, false)? {
        Some(_lock) => replay_locked(backing),
        None => Ok(Replay::RewrapRunning),
    }
}

fn replay_locked(backing: &Path) -> Result<Replay, RewrapError> {
    let journal_path = backing.join(JOURNAL_NAME);
    let bytes = match crate::format::read_metadata(&journal_path) {
        Ok(b) => b,
        Err(FormatError::Io { source, .. }) if source.kind() == IoKind::NotFound => {
            return Ok(Replay::Nothing)
        }
        Err(e) => return Err(e.into()),
    };
    let bad = |reason: String| RewrapError::BadJournal {
        path: journal_path.clone(),
        reason,
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let old = hex::decode(&journal.old).map_err(|e| bad(e.to_string()))?;
    let new = hex::decode(&journal.new).map_err(|e| bad(e.to_string()))?;
    if old.len() != HEADER_LEN || new.len() != HEADER_LEN {
        return Err(bad("a header is not 1024 bytes".into()));
    }
    // The journaled path must stay inside the backing directory.
    let relative = Path::new(&journal.path);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(bad(format!("path {:?} leaves the volume", journal.path)));
    }
    let path = backing.join(relative);
    let mut outcome = Replay::Cleared;
    match open_backing(&path) {
        Ok(file) => {
            let st = file.metadata().map_err(io_err(&path))?;
            if st.dev() == journal.dev && st.ino() == journal.ino {
                let _lock = HeaderLock::exclusive(&file).map_err(io_err(&path))?;
                let current = read_header_bytes(&file).map_err(io_err(&path))?;
                if is_torn(&current, &old, &new) {
                    write_header(&file, &new, &st).map_err(io_err(&path))?;
                    outcome = Replay::Completed(path.clone());
                }
            }
        }
        // Removed or renamed since: nothing to complete.
        Err(RewrapError::Io { .. }) => {}
        Err(e) => return Err(e),
    }
    clear_journal(backing)?;
    Ok(outcome)
}

/// A header that is neither the old nor the new one but agrees with one of them at
/// every byte: a write of the new header cut short. Anything else (the old header, the
/// new one, or a header re-keyed since, with its new random file id) is left alone.
fn is_torn(current: &[u8], old: &[u8], new: &[u8]) -> bool {
    current.len() == HEADER_LEN
        && current != old
        && current != new
        && current
            .iter()
            .zip(old.iter().zip(new.iter()))
            .all(|(c, (o, n))| c == o || c == n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{verify_file, EnvelopeVersion, FileOutcome};

    /// The data key of the format-v1 fixture's `/hello.txt` (tests/fixtures/format-v1).
    struct FixtureKeys;

    impl RewrapKeys for FixtureKeys {
        fn unwrap(&self, _: &FileHeader, _: &EncryptionContext) -> Result<DataKey, KmsError> {
            Ok(DataKey::from_bytes([0x42; 32]))
        }
        fn wrap(
            &self,
            key_id: &str,
            _: &DataKey,
            _: &EncryptionContext,
        ) -> Result<Wrapped, KmsError> {
            Ok(Wrapped {
                blob: b"a new wrapped key".to_vec(),
                key_arn: key_id.to_string(),
            })
        }
    }

    #[test]
    fn a_version_1_file_keeps_its_envelope_version_and_blocks() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/backing");
        let dir = tempfile::tempdir().unwrap();
        let mut hello = None;
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            if !e.file_type().unwrap().is_file() {
                continue;
            }
            let to = dir.path().join(e.file_name());
            std::fs::copy(e.path(), &to).unwrap();
            let bytes = std::fs::read(&to).unwrap();
            if bytes.len() > HEADER_LEN
                && FileHeader::decode(&bytes[..HEADER_LEN]).is_ok_and(|h| h.file_id == [0x51; 16])
            {
                hello = Some(to);
            }
        }
        let hello = hello.expect("the fixture's hello.txt");
        let before = std::fs::read(&hello).unwrap();
        let rewrap =
            Rewrap::begin(dir.path(), "000102030405060708090a0b0c0d0e0f", &FixtureKeys).unwrap();
        let arn = "arn:aws:kms:local:111122223333:key/00000000-0000-0000-0000-000000000001";
        assert_eq!(
            rewrap.file(&hello, Destination::Key(arn)).unwrap(),
            Outcome::Rewrapped
        );
        let after = std::fs::read(&hello).unwrap();
        assert_eq!(after[HEADER_LEN..], before[HEADER_LEN..]);
        let header = FileHeader::decode(&after[..HEADER_LEN]).unwrap();
        assert_eq!(header.version, EnvelopeVersion::V1);
        assert_eq!(&after[..8], b"KMSFS\0v1");
        assert_eq!((header.file_id, header.key_arn.as_str()), ([0x51; 16], arn));
        let key = DataKey::from_bytes([0x42; 32]);
        header.verify_commitment(&key).unwrap();
        match verify_file(&hello, Some(&key)).outcome {
            FileOutcome::Ok { blocks_checked, .. } => assert_eq!(blocks_checked, 3),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(JOURNAL_NAME).exists());
    }

    #[test]
    fn only_a_mix_of_old_and_new_bytes_is_torn() {
        let old = vec![1u8; HEADER_LEN];
        let new = vec![2u8; HEADER_LEN];
        let mut mixed = new.clone();
        mixed[512..].copy_from_slice(&old[512..]);
        assert!(is_torn(&mixed, &old, &new));
        assert!(!is_torn(&old, &old, &new));
        assert!(!is_torn(&new, &old, &new));
        let mut other = mixed.clone();
        other[20] = 9;
        assert!(!is_torn(&other, &old, &new));
        assert!(!is_torn(&mixed[..100], &old, &new));
    }
}
