//! Symlinks (sealed targets, long ones stored beside the entry) and hard links.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuser::FileAttr;
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::format::{read_metadata_at, write_atomic, FormatError};
use crate::kms::provider::Caller;

use crate::fs::error::FsError;
use crate::fs::inode::{Node, NodeKind, ROOT_INO};
use crate::fs::names::{self, SealedTarget};
use crate::fs::sys;

use super::Core;

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
        let (stored, new_store) = match self.secrets.seal_symlink(target.as_os_str().as_bytes())? {
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
        self.secrets.open_symlink(&stored, |name| {
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
