//! Directories: lookup, mkdir, rmdir, unlink, rename, opendir/readdir, fsyncdir.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, FileTypeExt};
use std::sync::Arc;

use fuser::{FileAttr, FileType, INodeNo};
use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::format::{classify, BackingName, EntryKind, DIR_META_NAME};
use crate::kms::provider::Caller;

use crate::fs::error::FsError;
use crate::fs::handle::{DirEntry, OpenDir};
use crate::fs::inode::{backing_id, Node, NodeKind, ROOT_INO};
use crate::fs::names::{self, DirNames};

use super::{file_type, list_dir, path_flags, Core};

impl Core {
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, FsError> {
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        Ok(self.remember_child(&dir, backing.name())?.1)
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    pub fn mkdir(
        &self,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        self.make_entry(&dir, &backing, || {
            Ok(mkdirat(
                &dir.fd,
                backing.name(),
                Mode::from_bits_truncate(mode & !umask & 0o7777),
            )?)
        })?;
        // Every cleanup below touches only what this call made: the new directory's own
        // metadata (through the new directory's descriptor), the new directory, and a
        // sidecar this call created. Never anything of the parent's.
        let made = self
            .exact_mode(&dir, backing.name(), mode & !umask)
            .and_then(|()| {
                Ok(openat(
                    &dir.fd,
                    backing.name(),
                    path_flags() | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )?)
            })
            .and_then(|new_dir| {
                let meta = names::create_dir_meta(&new_dir, &self.secrets.metadata)?;
                if let Err(e) = self.chown_new(&dir, backing.name(), caller) {
                    let _ = unlinkat(&new_dir, DIR_META_NAME, UnlinkatFlags::NoRemoveDir);
                    return Err(e);
                }
                Ok(meta)
            });
        let meta = made.inspect_err(|_| self.unmake_entry(&dir, &backing, true))?;
        let (node, attr) = self.remember_child(&dir, backing.name())?;
        let _ = node.dir.set(Arc::new(DirNames { meta }));
        Ok(attr)
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        // Only a symlink can have a stored target, and the kernel holds the node of the
        // name it unlinks: with no symlink node held, the `fstatat` that would ask is
        // skipped (one path walk fewer for every file of an `rm -rf`). Were the backing
        // name a symlink anyway (made behind the mount's back), the cost is a leftover
        // stored target, which `remove_stored_target` already accepts.
        let store = if self.inodes.holds_symlinks() {
            self.last_link_stored_target(&dir, backing.name())
        } else {
            None
        };
        unlinkat(&dir.fd, backing.name(), UnlinkatFlags::NoRemoveDir)?;
        if let Some(store) = store {
            self.remove_stored_target(&store);
        }
        names::remove_sidecar(&dir.fd, &backing)
    }

    /// The names of kmsfs's own files in backing directory `parent/name`; `ENOTEMPTY` if
    /// it holds any entry a user could see or any foreign file.
    fn kmsfs_files_only(
        &self,
        parent: &Node,
        name: &str,
    ) -> Result<(OwnedFd, Vec<OsString>), FsError> {
        let fd = openat(
            &parent.fd,
            name,
            path_flags() | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        let mut ours: Vec<OsString> = Vec::new();
        for entry in list_dir(&fd)? {
            let entry = entry?;
            let name = entry.file_name();
            match name.to_str().map(classify) {
                Some(EntryKind::Reserved) | Some(EntryKind::Sidecar) => ours.push(name),
                _ => return Err(FsError::refused(libc::ENOTEMPTY, "directory not empty")),
            }
        }
        Ok((fd, ours))
    }

    /// `ENOTEMPTY` unless backing directory `parent/name` holds only kmsfs's own files.
    fn check_no_user_entries(&self, parent: &Node, name: &str) -> Result<(), FsError> {
        self.kmsfs_files_only(parent, name).map(drop)
    }

    /// Empties a backing directory of kmsfs's own files, refusing (`ENOTEMPTY`) if it
    /// holds any entry a user could see or any foreign file. Only for a directory that
    /// is about to be removed.
    fn clear_backing_dir(&self, parent: &Node, name: &str) -> Result<(), FsError> {
        let (fd, ours) = self.kmsfs_files_only(parent, name)?;
        for name in ours {
            match unlinkat(&fd, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        let st = fstatat(&dir.fd, backing.name(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(FsError::refused(libc::ENOTDIR, "rmdir of a non-directory"));
        }
        self.clear_backing_dir(&dir, backing.name())?;
        unlinkat(&dir.fd, backing.name(), UnlinkatFlags::RemoveDir)?;
        names::remove_sidecar(&dir.fd, &backing)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<(), FsError> {
        self.writable()?;
        let (from_dir, _, from) = self.parent_and_name(parent, name)?;
        let (to_dir, _, to) = self.parent_and_name(new_parent, new_name)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 {
            return Err(FsError::refused(libc::EINVAL, "unsupported rename flags"));
        }
        let src = fstatat(&from_dir.fd, from.name(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let dst = match fstatat(&to_dir.fd, to.name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(nix::errno::Errno::ENOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let is_dir = |st: &FileStat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !exchange && !noreplace {
            if let Some(dst) = &dst {
                if backing_id(dst) == backing_id(&src) {
                    // Both names are links to the same file: POSIX says do nothing.
                    return Ok(());
                }
                match (is_dir(&src), is_dir(dst)) {
                    (true, false) => {
                        return Err(FsError::refused(libc::ENOTDIR, "rename dir over non-dir"))
                    }
                    (false, true) => {
                        return Err(FsError::refused(libc::EISDIR, "rename non-dir over dir"))
                    }
                    (true, true) => {
                        return self.rename_over_dir(&from_dir, &from, &to_dir, &to);
                    }
                    (false, false) => {}
                }
            }
        }
        let replaced_store = match (&dst, exchange || noreplace) {
            (Some(_), false) => self.last_link_stored_target(&to_dir, to.name()),
            _ => None,
        };
        let sidecar = if exchange {
            names::Sidecar::NotNeeded
        } else {
            names::write_sidecar(&to_dir.fd, &to)?
        };
        let res = if exchange || noreplace {
            let f = if exchange {
                RenameFlags::RENAME_EXCHANGE
            } else {
                RenameFlags::RENAME_NOREPLACE
            };
            renameat2(&from_dir.fd, from.name(), &to_dir.fd, to.name(), f)
        } else {
            renameat(&from_dir.fd, from.name(), &to_dir.fd, to.name())
        };
        self.rules_changed();
        if let Err(e) = res {
            names::undo_sidecar(&to_dir.fd, &to, sidecar);
            return Err(e.into());
        }
        if let Some(store) = replaced_store {
            self.remove_stored_target(&store);
        }
        let same_entry = from_dir.ino == to_dir.ino && from.name() == to.name();
        if !exchange && !same_entry {
            names::remove_sidecar(&from_dir.fd, &from)?;
        }
        Ok(())
    }

    /// Renames directory `from` over the existing directory `to`, which must be empty of
    /// user entries (`ENOTEMPTY`). Its backing copy still holds kmsfs's own files, so a
    /// plain rename would fail; those are removed only *after* the two directories were
    /// exchanged atomically, so a failure at any step never leaves a directory without
    /// its metadata. At worst (the old target cannot be removed after the exchange) an
    /// empty directory stays visible under the old name.
    fn rename_over_dir(
        &self,
        from_dir: &Node,
        from: &BackingName,
        to_dir: &Node,
        to: &BackingName,
    ) -> Result<(), FsError> {
        self.check_no_user_entries(to_dir, to.name())?;
        renameat2(
            &from_dir.fd,
            from.name(),
            &to_dir.fd,
            to.name(),
            RenameFlags::RENAME_EXCHANGE,
        )?;
        self.rules_changed();
        // The old target now sits under the source's name.
        let removed = self
            .clear_backing_dir(from_dir, from.name())
            .and_then(|()| {
                Ok(unlinkat(
                    &from_dir.fd,
                    from.name(),
                    UnlinkatFlags::RemoveDir,
                )?)
            });
        match removed {
            Ok(()) => {
                let same_entry = from_dir.ino == to_dir.ino && from.name() == to.name();
                if !same_entry {
                    names::remove_sidecar(&from_dir.fd, from)?;
                }
            }
            Err(e) => log::warn!(
                "rename over a directory: the replaced directory {} stays: {e}",
                names::shown_path(from_dir.fd.as_fd(), from.name()).display()
            ),
        }
        Ok(())
    }

    /// Opens a directory handle. Nothing is listed yet (see [`Self::listing`]): with the
    /// kernel's directory cache (`FOPEN_CACHE_DIR`, `fs/fuse.rs`) most opens are served
    /// from that cache and never read through the handle. A listing holds no per-caller
    /// decision: names are decrypted with the volume's name secret, the same for every
    /// caller, and opening a directory authorizes nothing (only file opens ask the key
    /// service), so a listing cached by the kernel and shown to another user shows what
    /// this daemon would have listed for that user.
    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let node = self.inodes.get(ino)?;
        // Refuses a non-directory and loads (once per node) the directory's name
        // metadata, so a damaged directory still fails at open as before.
        self.dir_names(&node)?;
        Ok(self.dirs.insert(OpenDir::default()))
    }

    /// The listing a read at `offset` continues: taken afresh at offset 0 (the first read
    /// of a handle, or a `rewinddir`, which must show the directory as it is now), kept
    /// for every later offset so that offsets (`telldir`/`seekdir`) stay stable. A
    /// handle's first read may come at a non-zero offset (the kernel read the start from
    /// its cache and asks for the rest, or a `seekdir` on a fresh handle): it lists then.
    /// The flag says whether the listing was taken by this call.
    fn listing(
        &self,
        ino: u64,
        dir: &OpenDir,
        offset: u64,
    ) -> Result<(Arc<Vec<DirEntry>>, bool), FsError> {
        let mut slot = dir.listing.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(entries) if offset != 0 => Ok((entries.clone(), false)),
            _ => {
                let entries = Arc::new(self.list(ino)?);
                *slot = Some(entries.clone());
                Ok((entries, true))
            }
        }
    }

    /// Lists and decrypts backing directory `ino`, leaving out kmsfs's own files and
    /// names that do not decrypt.
    fn list(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let node = self.inodes.get(ino)?;
        let names = self.dir_names(&node)?;
        let mut entries = Vec::new();
        for entry in list_dir(&node.fd)? {
            let entry = entry?;
            let backing = entry.file_name();
            let Some(name) =
                names::plaintext_entry(&self.secrets.names, &names, &node.fd, &backing)
            else {
                continue;
            };
            // d_type when the backing file system provides it, else one stat.
            let kind = match entry.file_type() {
                Ok(t) if t.is_file() => Some(NodeKind::File),
                Ok(t) if t.is_dir() => Some(NodeKind::Directory),
                Ok(t) if t.is_symlink() => Some(NodeKind::Symlink),
                Ok(t) if t.is_fifo() => Some(NodeKind::Fifo),
                Ok(t) if t.is_socket() => Some(NodeKind::Socket),
                Ok(t) if t.is_char_device() => Some(NodeKind::CharDevice),
                Ok(t) if t.is_block_device() => Some(NodeKind::BlockDevice),
                _ => fstatat(&node.fd, backing.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ok()
                    .and_then(|st| NodeKind::from_stat(&st)),
            };
            // A name that decrypted is base64url, so UTF-8: moved into the entry, not copied.
            let Ok(backing_name) = backing.into_string() else {
                continue;
            };
            if let Some(kind) = kind {
                entries.push(DirEntry {
                    name,
                    kind,
                    backing_name,
                    backing_ino: entry.ino(),
                });
            }
        }
        Ok(entries)
    }

    /// Lists from `offset` (0 = start), calling `add(ino, next_offset, type, name)` until
    /// it returns true (reply buffer full).
    pub fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileType, &OsStr) -> bool,
    ) -> Result<(), FsError> {
        let dir = self.dirs.get(fh)?;
        let (entries, _) = self.listing(ino, &dir, offset)?;
        let dots = [(ino, OsStr::new(".")), (ROOT_INO, OsStr::new(".."))];
        let mut index = usize::try_from(offset).unwrap_or(usize::MAX);
        while index < dots.len() + entries.len() {
            let next = index as u64 + 1;
            let full = match dots.get(index) {
                Some((ino, name)) => add(*ino, next, FileType::Directory, name),
                None => match entries.get(index - dots.len()) {
                    Some(e) => add(e.backing_ino, next, file_type(e.kind), &e.name),
                    None => break,
                },
            };
            if full {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    /// Registers one kernel lookup of listed entry `e` of directory `dir` and returns its
    /// node and attributes, as [`Self::remember_child`] does, but without an `O_PATH`
    /// open and `close` when the table already holds the node the name leads to (an
    /// entry the kernel looked up before: `git status` lists directories whose every
    /// file it has just `lstat`ed, `rm -rf` those it read).
    ///
    /// Which node the name leads to: the kernel holds the directory's lock (shared)
    /// across a READDIRPLUS, and every change of its names through the mount (create,
    /// link, unlink, rename, ...) takes it exclusively (FUSE does not opt into shared
    /// locking of directory changes; were it to, the `fstatat` below would race the
    /// same way as the `openat` every lookup makes), so no name moves between the
    /// request and the kernel linking its reply. With a listing taken by this request
    /// (`fresh`), the entry's `d_ino` (on the directory's device) is therefore the object
    /// the name leads to now, and a node held for it needs one `fstat` of its own
    /// descriptor. A listing kept from an earlier request of the handle may be older
    /// than a rename through the mount, so there the name is `fstatat`ed and the node
    /// chosen by the (st_dev, st_ino) that gives. A mount point inside the backing
    /// directory lists the covered directory's number, which no node is held for (its
    /// lookups give the mounted root, on another device): it takes the full path.
    fn remember_listed(
        &self,
        dir: &Node,
        e: &DirEntry,
        fresh: bool,
    ) -> Result<(Arc<Node>, FileAttr), FsError> {
        let listed = (dir.backing().0, e.backing_ino);
        if fresh {
            if let Some(node) = self.inodes.remember_known(listed) {
                return match super::stat_fd(&node.fd) {
                    Ok(st) => {
                        let attr = self.attr(&node, &st);
                        Ok((node, attr))
                    }
                    Err(err) => {
                        self.inodes.forget(node.ino, 1);
                        Err(err)
                    }
                };
            }
        } else if self.inodes.holds(listed) {
            let st = fstatat(
                &dir.fd,
                e.backing_name.as_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            if let Some(node) = self.inodes.remember_known(backing_id(&st)) {
                let attr = self.attr(&node, &st);
                return Ok((node, attr));
            }
        }
        self.remember_child(dir, &e.backing_name)
    }

    /// Like [`Self::readdir`], with attributes: each entry passed to `add` counts as one
    /// kernel lookup, undone if the reply buffer was full. `.` and `..` carry no lookup
    /// (the kernel does not link them, nor read their attributes; their inode numbers
    /// are the entries' `d_ino`, as in [`Self::readdir`]).
    pub fn readdirplus(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, &OsStr, &FileAttr) -> bool,
    ) -> Result<(), FsError> {
        let dir = self.dirs.get(fh)?;
        let node = self.inodes.get(ino)?;
        let (entries, fresh) = self.listing(ino, &dir, offset)?;
        let own = self.getattr(ino)?;
        // fuser takes an entry's d_ino from its attributes.
        let parent = FileAttr {
            ino: INodeNo(ROOT_INO),
            ..own
        };
        let mut index = usize::try_from(offset).unwrap_or(usize::MAX);
        while index < 2 + entries.len() {
            let next = index as u64 + 1;
            let full = match index {
                0 => add(ino, next, OsStr::new("."), &own),
                1 => add(ROOT_INO, next, OsStr::new(".."), &parent),
                _ => {
                    let Some(e) = entries.get(index - 2) else {
                        break;
                    };
                    match self.remember_listed(&node, e, fresh) {
                        Ok((child, attr)) => {
                            let full = add(child.ino, next, &e.name, &attr);
                            if full {
                                self.inodes.forget(child.ino, 1);
                            }
                            full
                        }
                        // Removed since it was listed: leave it out.
                        Err(_) => false,
                    }
                }
            };
            if full {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    pub fn fsyncdir(&self, ino: u64) -> Result<(), FsError> {
        let node = self.inodes.get(ino)?;
        let fd = openat(
            &node.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        nix::unistd::fsync(&fd)?;
        Ok(())
    }
}
