//! Names in the backing directory: per-directory metadata (directory id, key rule), the
//! encrypted entry name of a plaintext name (with long-name sidecars), listing, and the
//! two small secrets kmsfs stores outside file contents: symlink targets and `user.*`
//! extended-attribute values.
//!
//! The byte formats of names and directory metadata belong to [`crate::format`]; this
//! module only does the I/O around them, always relative to directory descriptors, never
//! through paths. It never sees file contents or data keys.
//!
//! Symlink targets: the backing object is a real symlink whose target is sealed by
//! [`crate::format::SymlinkCipher`] (the same code fsck checks them with), so the target
//! is unreadable and tamper-evident, and it moves with the link. Because a backing
//! symlink holds at most 4095 bytes, plaintext targets are limited to
//! [`SYMLINK_TARGET_MAX`] bytes (`ENAMETOOLONG` beyond).
//!
//! Extended attributes: names pass through unchanged (so `security.*`, `trusted.*` and
//! ACLs keep working on the backing file); values of `user.*` attributes are sealed by
//! [`crate::format::XattrCipher`] with the attribute name as associated data.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::crypto::SealingKey;
use crate::format::{
    classify, BackingName, DirId, DirMeta, EntryKind, MetadataKey, NameCipher, SymlinkCipher,
    XattrCipher, DIR_META_NAME, NAME_MAX,
};
pub use crate::format::{SYMLINK_KEY_INFO, SYMLINK_TARGET_MAX, XATTR_KEY_INFO};

use super::error::FsError;

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

    /// The backing symlink target that stores `target`.
    pub fn seal_symlink(&self, target: &[u8]) -> Result<OsString, FsError> {
        if target.is_empty() {
            return Err(FsError::refused(libc::ENOENT, "empty symlink target"));
        }
        if target.len() > SYMLINK_TARGET_MAX {
            return Err(FsError::refused(
                libc::ENAMETOOLONG,
                "symlink target too long",
            ));
        }
        Ok(OsString::from(self.symlinks.seal(target)?))
    }

    /// The plaintext target of a backing symlink; `EIO` if it was altered.
    pub fn open_symlink(&self, stored: &OsStr) -> Result<Vec<u8>, FsError> {
        Ok(self.symlinks.open(stored.as_bytes())?)
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

/// Reads and authenticates `kmsfs.dir` of the backing directory `dir`.
pub fn load_dir_meta(dir: impl AsFd, key: &MetadataKey) -> Result<DirMeta, FsError> {
    let fd = openat(
        dir,
        DIR_META_NAME,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // A backing directory without metadata is damaged: its names cannot be read.
        nix::errno::Errno::ENOENT => FsError::refused(libc::EIO, "missing directory metadata"),
        e => FsError::Sys(e),
    })?;
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(DirMeta::decode(&bytes, Path::new(DIR_META_NAME), key)?)
}

/// Writes a new `kmsfs.dir` (fresh directory id, no key rule) into the backing directory
/// `dir`, durably.
pub fn create_dir_meta(dir: impl AsFd, key: &MetadataKey) -> Result<DirMeta, FsError> {
    let meta = DirMeta::generate(None)?;
    let fd = openat(
        dir,
        DIR_META_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut file = File::from(fd);
    file.write_all(&meta.encode(key))?;
    file.sync_all()?;
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

/// Writes the sidecar of a long name (before its entry is created). Overwrites an
/// existing sidecar: its content is a function of its name, so that is idempotent.
pub fn write_sidecar(dir: impl AsFd, name: &BackingName) -> Result<(), FsError> {
    if let Some((sidecar, encoded)) = name.sidecar() {
        let fd = openat(
            dir,
            sidecar,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?;
        File::from(fd).write_all(encoded.as_bytes())?;
    }
    Ok(())
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
            let fd = openat(
                dir_fd,
                sidecar,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut bytes = Vec::new();
            File::from(fd).read_to_end(&mut bytes)?;
            Ok(bytes)
        })
        .ok()?;
    Some(OsString::from_vec(plain))
}
