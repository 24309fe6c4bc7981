//! Names in the backing directory: per-directory metadata (directory id, key rule), the
//! encrypted entry name of a plaintext name (with long-name sidecars) and listing.
//!
//! The byte formats of names and directory metadata belong to [`crate::format`]; this
//! module only does the I/O around them, always relative to directory descriptors, never
//! through paths. It never sees file contents or data keys.
//!
//! Symlink targets and `user.*` extended-attribute values are sealed and opened by
//! [`crate::format::VolumeKeys`] (the same code fsck checks them with); the core does
//! the I/O around them.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::format::{
    classify, dirmeta, read_metadata_at, write_atomic, BackingName, DirId, DirMeta, EntryKind,
    FormatError, MetadataKey, NameCipher, DIR_ID_XATTR, DIR_ID_XATTR_LEN, DIR_META_NAME, NAME_MAX,
};
pub use crate::format::{
    inline_target_len, stored_target_name, SealedTarget, SYMLINK_INLINE_MAX, SYMLINK_KEY_INFO,
    SYMLINK_STORE_PREFIX, SYMLINK_TARGET_MAX, XATTR_KEY_INFO,
};

use super::error::FsError;
use super::sys;

/// What kmsfs knows about one backing directory: its metadata (id and key rule).
#[derive(Debug)]
pub struct DirNames {
    pub meta: DirMeta,
}

impl DirNames {
    pub fn dir_id(&self) -> &DirId {
        &self.meta.dir_id
    }
}

/// The backing path of a directory descriptor, for error messages and logs only.
pub fn shown_path(dir: BorrowedFd<'_>, name: &str) -> PathBuf {
    let proc = sys::proc_path(dir);
    let base = std::fs::read_link(Path::new(OsStr::from_bytes(proc.as_bytes())))
        .unwrap_or_else(|_| PathBuf::from(OsStr::from_bytes(proc.as_bytes())));
    base.join(name)
}

/// Reads and authenticates the metadata of the backing directory `dir`: its
/// `kmsfs.dir` together with its [`DIR_ID_XATTR`] (see [`crate::format::dirmeta::resolve`]).
/// Never blocks: a FIFO, symlink or device in place of the file is `EIO` naming the file
/// (see [`crate::format::metafile`]).
///
/// A `kmsfs.dir` lost to a crash (missing, or a torn copy of the version-0 file `mkdir`
/// wrote without fsync) while the attribute survived is rebuilt from the attribute as
/// version 0 without a key rule; with `may_repair` (a writable mount) the file is also
/// rewritten, atomically. A rule it had is not silently dropped: the key service's
/// record of the directory still names it, so the rule is refused (`EIO`) until set
/// again (docs/FORMAT.md, "Key rules against rollback").
pub fn load_dir_meta(
    dir: impl AsFd,
    key: &MetadataKey,
    may_repair: bool,
) -> Result<DirMeta, FsError> {
    let dir = dir.as_fd();
    let shown = || shown_path(dir, DIR_META_NAME);
    let file = match read_metadata_at(dir, DIR_META_NAME, &shown) {
        Ok(bytes) => Some(bytes),
        Err(FormatError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            None
        }
        Err(e) => return Err(e.into()),
    };
    let attr = match sys::get_small_xattr(dir, OsStr::new(DIR_ID_XATTR), DIR_ID_XATTR_LEN) {
        Ok(attr) => attr,
        // Reading a directory's attribute needs read permission on it, the file inside
        // only search permission: a daemon without CAP_DAC_OVERRIDE reads a directory
        // whose owner removed `r` (mode 0311) from the file alone, as before.
        Err(FsError::Sys(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM)) => None,
        Err(e) => return Err(e),
    };
    let resolved = match dirmeta::resolve(file.as_deref(), attr.as_deref(), &shown(), key) {
        Ok(resolved) => resolved,
        Err(e) => {
            if matches!(e, FormatError::DirIdMismatch { .. }) {
                log::error!("kmsfs: {e}; the directory's names are refused (EIO)");
            }
            return Err(e.into());
        }
    };
    if resolved.attr_ignored {
        log::warn!(
            "kmsfs: {}: attribute {DIR_ID_XATTR} does not authenticate; ignored (its kmsfs.dir is valid)",
            shown_path(dir, "").display()
        );
    }
    if let Some(why) = resolved.repair {
        let id = resolved.meta.dir_id.to_hex();
        if may_repair {
            let dir_path = sys::proc_path(dir);
            write_atomic(
                Path::new(OsStr::from_bytes(dir_path.as_bytes())),
                DIR_META_NAME,
                &resolved.meta.encode(key),
                false,
            )?;
            log::warn!(
                "kmsfs: {}: {why}; rewritten from the directory id attribute (id {id}, no key rule)",
                shown().display()
            );
        } else {
            log::warn!(
                "kmsfs: {}: {why}; using the directory id attribute (id {id}); read-only mount, not rewritten",
                shown().display()
            );
        }
    }
    Ok(resolved.meta)
}

/// Writes a new directory's metadata (fresh directory id, no key rule) into the backing
/// directory `dir`: the id attribute first, then `kmsfs.dir`. On failure nothing is
/// left behind but the attribute of `dir` (the caller removes `dir`): the file is this
/// call's own (it never replaces one).
///
/// Why `kmsfs.dir` needs no fsync when the attribute was set on a file system of
/// [`orders_xattr_before_names`]: a name created in the directory later can only be
/// committed with or after the attribute, so a crash that keeps a name keeps the id
/// (and [`load_dir_meta`] rebuilds the file). Elsewhere (no user attributes, or no
/// such ordering argued) the file is fsynced before the reply, as before.
pub fn create_dir_meta(dir: impl AsFd, key: &MetadataKey) -> Result<DirMeta, FsError> {
    let dir = dir.as_fd();
    let meta = DirMeta::generate(None)?;
    let with_attr = match sys::set_xattr(
        dir,
        OsStr::new(DIR_ID_XATTR),
        &meta.dir_id.attr_value(key),
        libc::XATTR_CREATE,
    ) {
        Ok(()) => true,
        // A backing file system without user attributes, or a daemon without the
        // permission (no CAP_FOWNER, a mode without `w` for it): the fsynced file alone,
        // as before the attribute existed.
        Err(FsError::Sys(
            nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EACCES | nix::errno::Errno::EPERM,
        )) => false,
        Err(e) => return Err(e),
    };
    let needs_fsync = !with_attr || !orders_xattr_before_names(dir);
    let fd = openat(
        dir,
        DIR_META_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut file = File::from(fd);
    let written = file.write_all(&meta.encode(key)).and_then(|()| {
        if needs_fsync {
            file.sync_all()
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        drop(file);
        let _ = unlinkat(dir, DIR_META_NAME, UnlinkatFlags::NoRemoveDir);
        return Err(e.into());
    }
    Ok(meta)
}

/// Whether the file system holding `dir` commits an extended attribute set on a
/// directory no later than any entry created in that directory afterwards (its crash
/// argument is in docs/FORMAT.md, "The directory id attribute"): ext4 (journaled; an
/// ext4 without a journal orders nothing at all, and its fsck decides what survives),
/// XFS, and tmpfs (nothing survives a crash). Any other (btrfs included: not argued):
/// `false`, and the caller fsyncs as before.
fn orders_xattr_before_names(dir: BorrowedFd<'_>) -> bool {
    const EXT4: i64 = 0xef53;
    const TMPFS: i64 = 0x0102_1994;
    const XFS: i64 = 0x5846_5342;
    match nix::sys::statfs::fstatfs(dir) {
        #[allow(clippy::unnecessary_cast)] // the field's width differs across targets
        Ok(fs) => matches!(fs.filesystem_type().0 as i64, EXT4 | TMPFS | XFS),
        Err(_) => false,
    }
}

/// The backing entry name of plaintext `name` in directory `dir`.
pub fn backing_name(
    cipher: &NameCipher,
    dir: &DirNames,
    name: &OsStr,
) -> Result<BackingName, FsError> {
    if name.len() > NAME_MAX {
        return Err(FsError::refused(libc::ENAMETOOLONG, "name too long"));
    }
    cipher
        .encrypt(dir.dir_id(), name.as_bytes())
        .map_err(|e| match e {
            crate::format::FormatError::InvalidName { .. } => {
                FsError::refused(libc::EINVAL, "invalid file name")
            }
            e => FsError::Format(e),
        })
}

/// What [`write_sidecar`] found: whether the sidecar is this call's to remove again if
/// the entry cannot be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidecar {
    /// A short name: no sidecar.
    NotNeeded,
    /// The sidecar was there already, with the right content (or was repaired).
    Existing,
    /// Created by this call.
    Created,
}

/// Writes the sidecar of a long name (before its entry is created).
///
/// A sidecar that exists with the right content is left alone (its content is a function
/// of its name), so a failure here never damages the sidecar of an existing entry. One
/// whose content is wrong (torn by a crash during its write) is replaced atomically, so
/// the old bytes stay if that fails. Anything but a regular file in its place is `EIO`.
/// A write failure (`ENOSPC`, ...) keeps its errno and leaves nothing behind.
pub fn write_sidecar(dir: impl AsFd, name: &BackingName) -> Result<Sidecar, FsError> {
    let dir = dir.as_fd();
    let Some((sidecar, encoded)) = name.sidecar() else {
        return Ok(Sidecar::NotNeeded);
    };
    match openat(
        dir,
        sidecar,
        OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => {
            if let Err(e) = File::from(fd).write_all(encoded.as_bytes()) {
                // Created just above by this call: removing it undoes only our own work.
                let _ = unlinkat(dir, sidecar, UnlinkatFlags::NoRemoveDir);
                return Err(e.into());
            }
            Ok(Sidecar::Created)
        }
        Err(nix::errno::Errno::EEXIST) => {
            let shown = || shown_path(dir, sidecar);
            if read_metadata_at(dir, sidecar, &shown)? == encoded.as_bytes() {
                return Ok(Sidecar::Existing);
            }
            let dir_path = sys::proc_path(dir);
            write_atomic(
                Path::new(OsStr::from_bytes(dir_path.as_bytes())),
                sidecar,
                encoded.as_bytes(),
                false,
            )?;
            Ok(Sidecar::Existing)
        }
        Err(e) => Err(e.into()),
    }
}

/// Undoes [`write_sidecar`] after the entry could not be created: removes the sidecar
/// only if this operation created it and no entry of that name exists (another creator
/// may have won the race and needs it).
pub fn undo_sidecar(dir: impl AsFd, name: &BackingName, state: Sidecar) {
    if state != Sidecar::Created {
        return;
    }
    let dir = dir.as_fd();
    if let Some((sidecar, _)) = name.sidecar() {
        if let Err(nix::errno::Errno::ENOENT) =
            fstatat(dir, name.name(), AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            let _ = unlinkat(dir, sidecar, UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Removes the sidecar of a long name (after its entry is gone); a missing one is fine.
pub fn remove_sidecar(dir: impl AsFd, name: &BackingName) -> Result<(), FsError> {
    if let Some((sidecar, _)) = name.sidecar() {
        match unlinkat(dir, sidecar, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The plaintext name of backing entry `entry` in directory `dir` (whose descriptor is
/// `dir_fd`), or `None` for entries that are not user files (metadata, sidecars, foreign
/// names) or whose names fail to decrypt (those are skipped, as gocryptfs does, so that
/// one damaged name does not hide a whole directory).
pub fn plaintext_entry(
    cipher: &NameCipher,
    dir: &DirNames,
    dir_fd: &OwnedFd,
    entry: &OsStr,
) -> Option<OsString> {
    let entry = entry.to_str()?;
    match classify(entry) {
        EntryKind::Encrypted | EntryKind::LongName => {}
        _ => return None,
    }
    let plain = cipher
        .decrypt(dir.dir_id(), entry, |sidecar| {
            // Never blocks on a FIFO planted as a sidecar: the entry is then skipped.
            let shown = || shown_path(dir_fd.as_fd(), sidecar);
            read_metadata_at(dir_fd.as_fd(), sidecar, &shown).map_err(std::io::Error::other)
        })
        .ok()?;
    Some(OsString::from_vec(plain))
}
