//! Attributes: getattr, setattr (mode, owner, size, times) and statfs.

use std::os::fd::AsFd;

use fuser::FileAttr;
use nix::fcntl::AtFlags;
use nix::unistd::{fchownat, Gid, Uid};

use crate::kms::provider::Caller;

use crate::fs::error::FsError;
use crate::fs::inode::{NodeKind, ROOT_INO};
use crate::fs::sys;

use super::{stat_fd, time_spec, write_guard, Core, SetAttr, StatFs};

impl Core {
    pub fn getattr(&self, ino: u64) -> Result<FileAttr, FsError> {
        let node = self.inodes.get(ino)?;
        let st = stat_fd(&node.fd)?;
        Ok(self.attr(&node, &st))
    }

    pub fn setattr(
        &self,
        caller: &Caller,
        ino: u64,
        fh: Option<u64>,
        change: SetAttr,
    ) -> Result<FileAttr, FsError> {
        let node = self.inodes.get(ino)?;
        if let Some(size) = change.size {
            self.writable()?;
            if node.kind != NodeKind::File {
                return Err(FsError::refused(libc::EISDIR, "truncate of a non-file"));
            }
            self.truncate(caller, &node, fh, size, change.kill_priv)?;
        }
        // Only the owner (or root) changes modes and ownership; only root gives a file
        // away. (With default_permissions the kernel checks this before we see it.)
        // The current owner is needed only for those changes, and only when the caller
        // is not root (root may make any of them): a size or time change (the common
        // `futimens` after a write) and root's chown and chmod (`tar -x` as root sends
        // both for every file) skip this stat.
        let owns = change.mode.is_some() || change.uid.is_some() || change.gid.is_some();
        let owner = if owns && caller.uid != 0 {
            Some(stat_fd(&node.fd)?.st_uid)
        } else {
            None
        };
        let owner_or_root = caller.uid == 0 || owner == Some(caller.uid);
        if let Some(mode) = change.mode {
            self.writable()?;
            if !owner_or_root {
                return Err(FsError::refused(libc::EPERM, "chmod by non-owner"));
            }
            if node.kind != NodeKind::Symlink {
                sys::chmod_fd(node.fd.as_fd(), mode)?;
            }
        }
        if change.uid.is_some() || change.gid.is_some() {
            self.writable()?;
            let gives_away = change.uid.is_some_and(|u| Some(u) != owner);
            if caller.uid != 0 && (gives_away || !owner_or_root) {
                return Err(FsError::refused(libc::EPERM, "chown by non-root"));
            }
            fchownat(
                &node.fd,
                "",
                change.uid.map(Uid::from_raw),
                change.gid.map(Gid::from_raw),
                AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            self.writable()?;
            // With the writeback cache, not between a WRITE's backing pwrite and its
            // putting the kernel's mtime back (`Core::write`).
            let _content =
                (self.writeback() && node.kind == NodeKind::File).then(|| write_guard(&node));
            if node.kind == NodeKind::Symlink {
                // The symlink itself (lutimes): /proc/self/fd would follow it.
                match sys::utimens_fd(
                    node.fd.as_fd(),
                    time_spec(change.atime),
                    time_spec(change.mtime),
                ) {
                    // Kernels before utimensat learned AT_EMPTY_PATH: keep the old times,
                    // as kmsfs always did.
                    Err(FsError::Sys(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT)) => {}
                    other => other?,
                }
            } else {
                sys::utimens_object(
                    node.fd.as_fd(),
                    time_spec(change.atime),
                    time_spec(change.mtime),
                )?;
            }
        }
        self.getattr(ino)
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let root = self.inodes.get(ROOT_INO)?;
        let st = nix::sys::statvfs::fstatvfs(&root.fd)?;
        #[allow(clippy::unnecessary_cast)]
        Ok(StatFs {
            blocks: st.blocks() as u64,
            bfree: st.blocks_free() as u64,
            bavail: st.blocks_available() as u64,
            files: st.files() as u64,
            ffree: st.files_free() as u64,
            bsize: st.block_size() as u32,
            // Long names are stored through sidecars, so the full Linux limit holds.
            namelen: crate::format::NAME_MAX as u32,
            frsize: st.fragment_size() as u32,
        })
    }
}
