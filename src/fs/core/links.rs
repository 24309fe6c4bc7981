//! Symlinks (sealed targets, long ones stored beside the entry) and hard links.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuser::FileAttr;
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::format::{read_metadata_at, write_atomic, FormatError, SymlinkCipher};
use crate::kms::provider::Caller;

use crate::fs::error::FsError;
use crate::fs::inode::{Node, NodeKind, ROOT_INO};
use crate::fs::names::{self, SealedTarget, SYMLINK_TARGET_MAX};
use crate::fs::sys;

use super::Core;

/// Seals a symlink target for storage (inline up to [`crate::fs::SYMLINK_INLINE_MAX`]
/// bytes, else in a stored-target file), refusing with the errnos symlink(2) gives for
/// an empty or too long target before format sees it.
fn seal_target(cipher: &SymlinkCipher, target: &[u8]) -> Result<SealedTarget, FsError> {
    if target.is_empty() {
        return Err(FsError::refused(libc::ENOENT, "empty symlink target"));
    }
    if target.len() > SYMLINK_TARGET_MAX {
        return Err(FsError::refused(
            libc::ENAMETOOLONG,
            "symlink target too long",
        ));
    }
    Ok(cipher.seal(target)?)
}

impl Core {
    pub fn symlink(
        &self,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        let (stored, new_store) =
            match seal_target(&self.secrets.symlinks, target.as_os_str().as_bytes())? {
                SealedTarget::Inline(stored) => (OsString::from(stored), None),
                SealedTarget::Stored { name, sealed } => {
                    // Written (and durable) before the link that refers to it.
                    let root = self.inodes.get(ROOT_INO)?;
                    let root_path = sys::proc_path(root.fd.as_fd());
                    write_atomic(
                        Path::new(OsStr::from_bytes(root_path.as_bytes())),
                        &name,
                        &sealed,
                        true,
                    )?;
                    (OsString::from(&name), Some(name))
                }
            };
        let made = self
            .make_entry(&dir, &backing, || {
                Ok(nix::unistd::symlinkat(
                    stored.as_os_str(),
                    &dir.fd,
                    backing.name(),
                )?)
            })
            .and_then(|()| {
                self.chown_new(&dir, backing.name(), caller)
                    .inspect_err(|_| self.unmake_entry(&dir, &backing, false))
            });
        if let Err(e) = made {
            if let Some(name) = new_store {
                self.remove_stored_target(&name);
            }
            return Err(e);
        }
        Ok(self.remember_child(&dir, backing.name())?.1)
    }

    pub(super) fn readlink_node(&self, node: &Node) -> Result<Vec<u8>, FsError> {
        let stored = nix::fcntl::readlinkat(&node.fd, "")?;
        self.secrets.symlinks.open(&stored, |name| {
            let root = self.inodes.get(ROOT_INO)?;
            let shown = || names::shown_path(root.fd.as_fd(), name);
            read_metadata_at(root.fd.as_fd(), name, &shown).map_err(|e| match e {
                // The link exists, its stored target does not: damage (as fsck says),
                // never ENOENT, which would claim the link itself is gone.
                FormatError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    FsError::refused(libc::EIO, "stored symlink target missing")
                }
                e => e.into(),
            })
        })
    }

    /// The stored-target file of backing entry `dir/name` if it is a symlink with a
    /// stored (long) target and this is its last link: removing the entry orphans it.
    pub(super) fn last_link_stored_target(&self, dir: &Node, name: &str) -> Option<String> {
        let st = fstatat(&dir.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK || st.st_nlink != 1 {
            return None;
        }
        let target = nix::fcntl::readlinkat(&dir.fd, name).ok()?;
        names::stored_target_name(&target).map(str::to_string)
    }

    /// Removes a stored symlink target nothing refers to any more (best effort: a
    /// leftover is an unreferenced reserved file, never harmful).
    pub(super) fn remove_stored_target(&self, name: &str) {
        if let Ok(root) = self.inodes.get(ROOT_INO) {
            let _ = unlinkat(&root.fd, name, UnlinkatFlags::NoRemoveDir);
        }
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let node = self.inodes.get(ino)?;
        if node.kind != NodeKind::Symlink {
            return Err(FsError::refused(libc::EINVAL, "not a symlink"));
        }
        self.readlink_node(&node)
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> Result<FileAttr, FsError> {
        self.writable()?;
        let node = self.inodes.get(ino)?;
        if node.kind == NodeKind::Directory {
            return Err(FsError::refused(libc::EPERM, "hard link to a directory"));
        }
        let (dir, _, backing) = self.parent_and_name(new_parent, new_name)?;
        self.make_entry(&dir, &backing, || {
            sys::link_fd(node.fd.as_fd(), dir.fd.as_fd(), OsStr::new(backing.name()))
        })?;
        Ok(self.remember_child(&dir, backing.name())?.1)
    }
}

#[cfg(test)]
mod tests {
    use crate::crypto::SealingKey;
    use crate::format::{inline_target_len, stored_target_name, SYMLINK_INLINE_MAX};

    use super::*;

    #[test]
    fn symlink_sizes_follow_from_the_backing_length_and_both_forms_open() {
        let cipher = SymlinkCipher::new(&SealingKey::from_bytes([3; 32]));
        let no_store = |_: &str| -> Result<Vec<u8>, FsError> { panic!("inline target") };
        for len in (1..=SYMLINK_INLINE_MAX)
            .step_by(7)
            .chain([SYMLINK_INLINE_MAX])
        {
            let target = vec![b'a'; len];
            let SealedTarget::Inline(stored) = seal_target(&cipher, &target).unwrap() else {
                panic!("{len} bytes should be inline");
            };
            let stored_len = stored.len() as u64;
            if let Some(n) = inline_target_len(stored_len) {
                assert_eq!(n, len as u64);
            } else {
                assert_eq!(stored_len, 52);
            }
            assert_eq!(cipher.open(OsStr::new(&stored), no_store).unwrap(), target);
        }
        let target = vec![b'b'; SYMLINK_TARGET_MAX];
        let SealedTarget::Stored { name, sealed } = seal_target(&cipher, &target).unwrap() else {
            panic!("a 4095-byte target is stored");
        };
        assert_eq!(stored_target_name(OsStr::new(&name)), Some(name.as_str()));
        let opened = cipher.open(OsStr::new(&name), |n| {
            assert_eq!(n, name);
            Ok::<_, FsError>(sealed.clone())
        });
        assert_eq!(opened.unwrap(), target);
        let too_long = seal_target(&cipher, &vec![b'c'; SYMLINK_TARGET_MAX + 1]);
        assert_eq!(too_long.unwrap_err().errno(), libc::ENAMETOOLONG);
        assert_eq!(seal_target(&cipher, b"").unwrap_err().errno(), libc::ENOENT);
    }
}
