//! Names in the backing directory: per-directory metadata (directory id, key rule), the
//! encrypted entry name of a plaintext name (with long-name sidecars), listing, and the
//! two small secrets kmsfs stores outside file contents: symlink targets and `user.*`
//! extended-attribute values.
//!
//! The byte formats of names and directory metadata belong to [`crate::format`]; this
//! module only does the I/O around them, always relative to directory descriptors, never
//! through paths. It never sees file contents or data keys.
//!
//! Symlink targets: sealed by [`crate::format::SymlinkCipher`] (the same code fsck checks
//! them with), so a target is unreadable and tamper-evident and moves with the link.
//! Targets up to [`SYMLINK_INLINE_MAX`] bytes live in the backing symlink itself; longer
//! ones (up to [`SYMLINK_TARGET_MAX`], PATH_MAX − 1) in a file `kmsfs.st.<hash>` of the
//! backing root, which the backing symlink names (see docs/FORMAT.md).
//!
//! Extended attributes: names pass through unchanged (so `security.*`, `trusted.*` and
//! ACLs keep working on the backing file); values of `user.*` attributes are sealed by
//! [`crate::format::XattrCipher`] with the attribute name as associated data.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::crypto::SealingKey;
use crate::format::{
    classify, read_metadata_at, write_atomic, BackingName, DirId, DirMeta, EntryKind, FormatError,
    MetadataKey, NameCipher, SymlinkCipher, XattrCipher, DIR_META_NAME, NAME_MAX,
};
pub use crate::format::{
    inline_target_len, stored_target_name, SealedTarget, SYMLINK_INLINE_MAX, SYMLINK_KEY_INFO,
    SYMLINK_STORE_PREFIX, SYMLINK_TARGET_MAX, XATTR_KEY_INFO,
};

use super::error::FsError;
use super::sys;

/// The volume-wide secrets derived from the volume secret.
pub struct VolumeSecrets {
    pub names: NameCipher,
    pub metadata: MetadataKey,
    symlinks: SymlinkCipher,
    xattrs: XattrCipher,
}

impl VolumeSecrets {
    pub fn new(volume_secret: &SealingKey) -> Self {
        VolumeSecrets {
            names: NameCipher::new(volume_secret),
            metadata: MetadataKey::new(volume_secret),
            symlinks: SymlinkCipher::new(volume_secret),
            xattrs: XattrCipher::new(volume_secret),
        }
    }

    /// Seals `target` for storage: inline up to [`SYMLINK_INLINE_MAX`] bytes, else in a
    /// stored-target file.
    pub fn seal_symlink(&self, target: &[u8]) -> Result<SealedTarget, FsError> {
        if target.is_empty() {
            return Err(FsError::refused(libc::ENOENT, "empty symlink target"));
        }
        if target.len() > SYMLINK_TARGET_MAX {
            return Err(FsError::refused(
                libc::ENAMETOOLONG,
                "symlink target too long",
            ));
        }
        Ok(self.symlinks.seal(target)?)
    }

    /// The plaintext target of a backing symlink whose own target is `stored`; `EIO` if
    /// it was altered. A stored-target reference is read with `read_stored(name)`.
    pub fn open_symlink(
        &self,
        stored: &OsStr,
        read_stored: impl FnOnce(&str) -> Result<Vec<u8>, FsError>,
    ) -> Result<Vec<u8>, FsError> {
        self.symlinks.open(stored, read_stored)
    }

    /// Whether values of this attribute are stored sealed.
    pub fn xattr_is_sealed(name: &OsStr) -> bool {
        XattrCipher::is_sealed(name)
    }

    pub fn seal_xattr(&self, name: &OsStr, value: &[u8]) -> Result<Vec<u8>, FsError> {
        Ok(self.xattrs.seal(name, value)?)
    }

    pub fn open_xattr(&self, name: &OsStr, stored: &[u8]) -> Result<Vec<u8>, FsError> {
        Ok(self.xattrs.open(name, stored)?)
    }
}

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

/// Reads and authenticates `kmsfs.dir` of the backing directory `dir`. Never blocks: a
/// FIFO, symlink or device in its place is `EIO` naming the file (see
/// [`crate::format::metafile`]).
pub fn load_dir_meta(dir: impl AsFd, key: &MetadataKey) -> Result<DirMeta, FsError> {
    let dir = dir.as_fd();
    let shown = || shown_path(dir, DIR_META_NAME);
    match read_metadata_at(dir, DIR_META_NAME, &shown) {
        Ok(bytes) => Ok(DirMeta::decode(&bytes, &shown(), key)?),
        // A backing directory without metadata is damaged: its names cannot be read.
        Err(FormatError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(FsError::Format(FormatError::MissingDirMeta {
                path: shown(),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a new `kmsfs.dir` (fresh directory id, no key rule) into the backing directory
/// `dir`, durably. On failure nothing is left behind: the file is this call's own (it
/// never replaces one).
pub fn create_dir_meta(dir: impl AsFd, key: &MetadataKey) -> Result<DirMeta, FsError> {
    let dir = dir.as_fd();
    let meta = DirMeta::generate(None)?;
    let fd = openat(
        dir,
        DIR_META_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut file = File::from(fd);
    let written = file
        .write_all(&meta.encode(key))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = unlinkat(dir, DIR_META_NAME, UnlinkatFlags::NoRemoveDir);
        return Err(e.into());
    }
    Ok(meta)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_sizes_follow_from_the_backing_length_and_both_forms_open() {
        let secrets = VolumeSecrets::new(&SealingKey::from_bytes([3; 32]));
        let no_store = |_: &str| -> Result<Vec<u8>, FsError> { panic!("inline target") };
        for len in (1..=SYMLINK_INLINE_MAX)
            .step_by(7)
            .chain([SYMLINK_INLINE_MAX])
        {
            let target = vec![b'a'; len];
            let SealedTarget::Inline(stored) = secrets.seal_symlink(&target).unwrap() else {
                panic!("{len} bytes should be inline");
            };
            let stored_len = stored.len() as u64;
            if let Some(n) = inline_target_len(stored_len) {
                assert_eq!(n, len as u64);
            } else {
                assert_eq!(stored_len, 52);
            }
            assert_eq!(
                secrets.open_symlink(OsStr::new(&stored), no_store).unwrap(),
                target
            );
        }
        let target = vec![b'b'; SYMLINK_TARGET_MAX];
        let SealedTarget::Stored { name, sealed } = secrets.seal_symlink(&target).unwrap() else {
            panic!("a 4095-byte target is stored");
        };
        assert_eq!(stored_target_name(OsStr::new(&name)), Some(name.as_str()));
        let opened = secrets.open_symlink(OsStr::new(&name), |n| {
            assert_eq!(n, name);
            Ok(sealed.clone())
        });
        assert_eq!(opened.unwrap(), target);
        let too_long = secrets.seal_symlink(&vec![b'c'; SYMLINK_TARGET_MAX + 1]);
        assert_eq!(too_long.unwrap_err().errno(), libc::ENAMETOOLONG);
    }
}
