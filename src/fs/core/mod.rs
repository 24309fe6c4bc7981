//! The filesystem core: every FUSE operation as one function returning
//! `Result<T, FsError>`, over the inode table, the handle tables, names and content.
//!
//! It owns the mapping between the plaintext view and the backing directory and the
//! order of operations that keeps the backing directory consistent (sidecar before long
//! entry, header before the file is visible, metadata before a directory is used). It
//! never caches a permission: every open asks the key service (see [`super::authz`]).
//!
//! One struct, [`Core`], with one `impl` block per operation family:
//! - `files`: create, open, read, write, truncate, fallocate, fsync, release, mknod,
//!   and the re-key of a file's content
//! - `directories`: lookup, mkdir, rmdir, unlink, rename, readdir
//! - `links`: symlinks and hard links
//! - `attributes`: getattr, setattr, statfs
//! - `xattrs`: extended attributes (sealed values, the key-rule attribute)
//! - `keyrules`: which key a new file gets, setting a rule, and checking `kmsfs.dir`
//!   against the key service's record
//!
//! This file holds the struct, the volume's opening and the helpers every family uses.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::format::{
    BackingName, EnvelopeVersion, FileHeader, VolumeConfig, VolumeKeys, HEADER_LEN,
};
use crate::kms::provider::{Caller, DataKeys};

use super::error::FsError;
use super::handle::{HandleTable, OpenDir, OpenFile};
use super::inode::{backing_id, ContentKey, InodeTable, Node, NodeKind, ROOT_INO};
use super::names::{self, DirNames};
use super::sys;

mod attributes;
mod directories;
mod files;
mod keyrules;
mod killpriv;
mod links;
mod xattrs;

pub use killpriv::KillPriv;

/// Attribute changes of one `setattr`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// Whether a size change drops set-uid/set-gid (see `killpriv`).
    pub kill_priv: KillPriv,
}

/// `statfs` figures of the backing file system.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Result of getxattr/listxattr: the size when asked with size 0, else the bytes.
#[derive(Debug)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

/// The mounted volume.
pub struct Core {
    volume: VolumeConfig,
    keys: Arc<dyn DataKeys>,
    secrets: VolumeKeys,
    inodes: InodeTable,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<OpenDir>,
    root_id: (u64, u64),
    read_only: bool,
    /// The daemon runs as root: new files are chowned to their creator.
    as_root: bool,
    /// The daemon's effective group: the group the backing file system gives a new
    /// object outside a set-group-id directory (so no `chown` is needed when the creator
    /// has it too).
    own_gid: Gid,
    /// Effective key rule per directory (FUSE inode → key id), valid while
    /// `rules_generation` still has the value it had before the lookup walked the
    /// ancestors. See [`Core::key_for_new_file`].
    rule_cache: Mutex<HashMap<u64, (u64, String)>>,
    /// Bumped after anything that can change a directory's effective key rule through
    /// this mount: setting or removing a rule, and every rename (a directory moved under
    /// another ancestor inherits that ancestor's rule).
    rules_generation: AtomicU64,
    /// `-o writeback_cache` was given: the FUSE session asks the kernel for
    /// FUSE_WRITEBACK_CACHE at INIT.
    writeback_requested: bool,
    /// The kernel granted FUSE_WRITEBACK_CACHE (set at INIT, before any other request):
    /// it then owns size, times and `O_APPEND` positioning of regular files, writes
    /// dirty pages back through any writable handle, and may read through a write-only
    /// one to fill a page it writes into partially (see [`Core::read`]).
    writeback: AtomicBool,
    /// Reopening files by their file handle, where the backing file system and the
    /// daemon's capabilities allow it (see [`Core::reopen`]).
    by_handle: Option<ByHandle>,
}

/// What [`Core::reopen`] needs to open a backing file by its handle: a descriptor of
/// the backing root's mount (`open_by_handle_at` refuses an `O_PATH` one) and that
/// mount's id, which a node's handle must have been taken through.
struct ByHandle {
    mount: File,
    mount_id: i32,
    /// Set once `open_by_handle_at` was refused where the `/proc/self/fd` reopen then
    /// worked (no CAP_DAC_READ_SEARCH): the daemon's credentials do not change, so every
    /// later reopen goes through `/proc` directly.
    refused: AtomicBool,
}

impl ByHandle {
    /// For the backing root `root`: `None` where its file system gives no handles.
    fn new(backing: &Path, root: &OwnedFd) -> Option<ByHandle> {
        let (_, mount_id) = sys::file_handle(root.as_fd()).ok().flatten()?;
        let mount = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(backing)
            .ok()?;
        // The same directory as the root descriptor (not something renamed into its
        // place meanwhile): else handles are simply not used.
        let (a, b) = (stat_fd(&mount).ok()?, stat_fd(root).ok()?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return None;
        }
        Some(ByHandle {
            mount,
            mount_id,
            refused: AtomicBool::new(false),
        })
    }
}

/// Lists a backing directory given its (`O_PATH`) descriptor; `.` and `..` excluded.
fn list_dir(dir: &OwnedFd) -> Result<std::fs::ReadDir, FsError> {
    let path = sys::proc_path(dir.as_fd());
    Ok(std::fs::read_dir(Path::new(OsStr::from_bytes(
        path.as_bytes(),
    )))?)
}

fn path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn stat_fd(fd: impl AsFd) -> Result<FileStat, FsError> {
    Ok(fstatat(
        fd,
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

fn system_time(sec: i64, nsec: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nsec).unwrap_or(0));
    let moved = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))
    };
    // Times no SystemTime can hold show as the epoch rather than taking the daemon down.
    moved
        .and_then(|t| t.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

fn time_spec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::from_duration(d),
            Err(_) => TimeSpec::new(0, 0),
        },
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Directory => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
    }
}

fn read_guard(node: &Node) -> RwLockReadGuard<'_, ContentKey> {
    node.content.read().unwrap_or_else(|p| p.into_inner())
}

fn write_guard(node: &Node) -> RwLockWriteGuard<'_, ContentKey> {
    node.content.write().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// Opens the volume in `backing`: reads the volume file, gets the volume secret from
    /// the key service, and authenticates the volume file and the root's metadata.
    pub fn open_volume(
        backing: &Path,
        keys: Arc<dyn DataKeys>,
        read_only: bool,
    ) -> Result<Core, FsError> {
        let volume = VolumeConfig::load(backing)?;
        let secret = keys.volume_secret(&volume.volume_id)?;
        let secrets = VolumeKeys::new(&secret);
        volume.verify(backing, &secrets.metadata)?;
        let root_fd = openat(
            nix::fcntl::AT_FDCWD,
            backing,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let root_stat = stat_fd(&root_fd)?;
        let root_meta = names::load_dir_meta(&root_fd, &secrets.metadata, !read_only)?;
        keyrules::import_once(
            keys.as_ref(),
            &volume.volume_id,
            &root_fd,
            &secrets.metadata,
        )?;
        let by_handle = ByHandle::new(backing, &root_fd);
        let inodes = InodeTable::new(root_fd, &root_stat);
        let root = inodes.get(ROOT_INO)?;
        let _ = root.dir.set(Arc::new(DirNames { meta: root_meta }));
        Ok(Core {
            volume,
            keys,
            secrets,
            inodes,
            files: HandleTable::default(),
            dirs: HandleTable::default(),
            root_id: backing_id(&root_stat),
            read_only,
            as_root: nix::unistd::geteuid().is_root(),
            own_gid: nix::unistd::getegid(),
            rule_cache: Mutex::new(HashMap::new()),
            rules_generation: AtomicU64::new(0),
            writeback_requested: false,
            writeback: AtomicBool::new(false),
            by_handle,
        })
    }

    /// Asks for the kernel's writeback cache (`-o writeback_cache`); takes effect only
    /// if the kernel grants it at INIT ([`Self::set_writeback`]).
    pub fn request_writeback(&mut self, on: bool) {
        self.writeback_requested = on;
    }

    pub fn writeback_requested(&self) -> bool {
        self.writeback_requested
    }

    /// Called once at INIT with what the kernel granted.
    pub fn set_writeback(&self, on: bool) {
        self.writeback.store(on, Ordering::Release);
    }

    /// Whether the kernel's writeback cache is on for this mount.
    pub fn writeback(&self) -> bool {
        self.writeback.load(Ordering::Acquire)
    }

    /// Number of open file handles (for tests and the CLI's status).
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Number of inodes the kernel holds references to, the root included (for tests:
    /// lookup counts must balance, so this returns to its baseline once the kernel has
    /// dropped its inodes).
    pub fn known_nodes(&self) -> usize {
        self.inodes.node_count()
    }

    /// This mount's new files (where no directory rule applies) use `key` instead of
    /// the volume's default key (`kmsfs mount --key`). Not persisted.
    pub fn override_default_key(&mut self, key: String) {
        self.volume.default_key = key;
    }

    fn writable(&self) -> Result<(), FsError> {
        if self.read_only {
            Err(FsError::refused(libc::EROFS, "read-only mount"))
        } else {
            Ok(())
        }
    }

    fn dir_names(&self, node: &Node) -> Result<Arc<DirNames>, FsError> {
        if node.kind != NodeKind::Directory {
            return Err(FsError::refused(libc::ENOTDIR, "not a directory"));
        }
        if let Some(d) = node.dir.get() {
            return Ok(d.clone());
        }
        let meta = names::load_dir_meta(&node.fd, &self.secrets.metadata, !self.read_only)?;
        Ok(node.dir.get_or_init(|| Arc::new(DirNames { meta })).clone())
    }

    fn parent_and_name(
        &self,
        parent: u64,
        name: &OsStr,
    ) -> Result<(Arc<Node>, Arc<DirNames>, BackingName), FsError> {
        let node = self.inodes.get(parent)?;
        let dir = self.dir_names(&node)?;
        let backing = names::backing_name(&self.secrets.names, &dir, name)?;
        Ok((node, dir, backing))
    }

    /// Attributes as the user sees them: plaintext sizes, decrypted symlink lengths.
    fn attr(&self, node: &Node, st: &FileStat) -> FileAttr {
        #[allow(clippy::unnecessary_cast)] // libc field widths differ across targets
        let backing_size = st.st_size as u64;
        let size = match node.kind {
            // A damaged length still reports a non-zero size so that reads happen and
            // fail with EIO, rather than a silently empty file.
            NodeKind::File => self
                .envelope_of(node, backing_size)
                .plaintext_size(backing_size)
                .unwrap_or_else(|_| backing_size.saturating_sub(HEADER_LEN as u64).max(1)),
            // From the length alone when it cannot be a stored-target reference: reading
            // the backing link on every getattr would update its atime.
            NodeKind::Symlink => names::inline_target_len(backing_size).unwrap_or_else(|| {
                self.readlink_node(node)
                    .map(|t| t.len() as u64)
                    .unwrap_or(backing_size)
            }),
            _ => backing_size,
        };
        #[allow(clippy::unnecessary_cast)]
        FileAttr {
            ino: INodeNo(node.ino),
            size,
            blocks: st.st_blocks as u64,
            atime: system_time(st.st_atime, st.st_atime_nsec),
            mtime: system_time(st.st_mtime, st.st_mtime_nsec),
            ctime: system_time(st.st_ctime, st.st_ctime_nsec),
            crtime: system_time(st.st_ctime, st.st_ctime_nsec),
            kind: file_type(node.kind),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: crate::format::BLOCK_SIZE as u32,
            flags: 0,
        }
    }

    /// The envelope version of a regular file, for its size: the volume's single
    /// version when its volume file names one (no read: a cold `stat` costs no disk
    /// read of the file; a file of another version is refused on open), else
    /// remembered in the node (set by every open, create and re-key), else read from
    /// the header once. Both versions agree on an empty file, so a header-only file
    /// needs no read. A header that cannot be read gives version 1's arithmetic, not
    /// remembered: the size is a guess then, and reads fail with EIO anyway.
    fn envelope_of(&self, node: &Node, backing_size: u64) -> EnvelopeVersion {
        if let Some(version) = self.volume.envelopes {
            return version;
        }
        if backing_size <= HEADER_LEN as u64 {
            return EnvelopeVersion::V1;
        }
        if let Some(version) = node.envelope() {
            return version;
        }
        // Under the read lock, so a re-key cannot write its header (and record its
        // version) between this read and the record below.
        let _g = read_guard(node);
        match self
            .reopen(node, false)
            .and_then(|f| Ok(FileHeader::read_version(&f)?))
        {
            Ok(version) => {
                node.set_envelope(version);
                version
            }
            Err(_) => EnvelopeVersion::V1,
        }
    }

    /// Registers a kernel reference to `dir/name` and returns its attributes.
    fn remember_child(&self, dir: &Node, name: &str) -> Result<(Arc<Node>, FileAttr), FsError> {
        let fd = openat(&dir.fd, name, path_flags(), Mode::empty())?;
        let st = stat_fd(&fd)?;
        let node = self.inodes.remember(fd, &st)?;
        let attr = self.attr(&node, &st);
        Ok((node, attr))
    }

    /// Gives a new backing object to its creator (when running as root), inheriting the
    /// group of a set-group-id directory as POSIX does.
    fn chown_new(&self, dir: &Node, name: &str, caller: &Caller) -> Result<(), FsError> {
        if let Some((uid, gid)) = self.owner_for_new(dir, caller)? {
            fchownat(
                &dir.fd,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    /// Sets exactly the mode the caller asked for on a new (non-symlink) object: the
    /// daemon's own umask must not strip bits the caller's umask left.
    fn exact_mode(&self, dir: &Node, name: &str, mode: u32) -> Result<(), FsError> {
        nix::sys::stat::fchmodat(
            &dir.fd,
            name,
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )?;
        Ok(())
    }

    /// Creates the backing entry `backing` in `dir` with `make` (mkdirat, mknodat, ...),
    /// its long-name sidecar first. If `make` fails, a sidecar this call created is
    /// removed again; nothing that existed before is touched.
    fn make_entry(
        &self,
        dir: &Node,
        backing: &BackingName,
        make: impl FnOnce() -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let sidecar = names::write_sidecar(&dir.fd, backing)?;
        make().inspect_err(|_| names::undo_sidecar(&dir.fd, backing, sidecar))
    }

    /// Removes an entry that [`Self::make_entry`] created in this same operation, when a
    /// later step of the operation failed, and then its sidecar (the entry is gone, so
    /// the sidecar is an orphan). A directory is removed only if empty.
    fn unmake_entry(&self, dir: &Node, backing: &BackingName, is_dir: bool) {
        let flags = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        if unlinkat(&dir.fd, backing.name(), flags).is_ok() {
            let _ = names::remove_sidecar(&dir.fd, backing);
        }
    }

    /// The owner a new object in `dir` must be given when the daemon runs as root.
    /// `None` when no `chown` is needed: the daemon is not root (the object then belongs
    /// to the daemon's user), or the backing file system already gave the object that
    /// owner (the creator is root with the daemon's group, or has the group a
    /// set-group-id directory hands down) — one `chown` fewer per create, e.g. for
    /// `tar` run as root. A `chown` clears a file's set-id bits, so callers set the
    /// mode after it.
    fn owner_for_new(&self, dir: &Node, caller: &Caller) -> Result<Option<(Uid, Gid)>, FsError> {
        if !self.as_root {
            return Ok(None);
        }
        // Root with the daemon's own group: the backing file system gives the object
        // uid 0 and either the daemon's group (what the caller has) or, in a set-group-id
        // directory, the directory's group (what POSIX asks for). Right either way, so
        // the directory's mode need not be read (one `fstat` fewer per create).
        if caller.uid == 0 && caller.gid == self.own_gid.as_raw() {
            return Ok(None);
        }
        let dir_st = stat_fd(&dir.fd)?;
        let (gid, given) = if dir_st.st_mode & libc::S_ISGID != 0 {
            (dir_st.st_gid, dir_st.st_gid)
        } else {
            (caller.gid, self.own_gid.as_raw())
        };
        if caller.uid == 0 && gid == given {
            return Ok(None);
        }
        Ok(Some((Uid::from_raw(caller.uid), Gid::from_raw(gid))))
    }

    /// Opens a regular file's backing object for I/O through its `O_PATH` descriptor
    /// (so a name swapped in the backing directory since the lookup is never opened).
    /// The type check comes first and needs no `fstat`: `node.kind` is the type `fstat`
    /// gave for this very descriptor when the node was made, the descriptor pins its
    /// inode, and an inode's type never changes; so a FIFO or device is never opened and
    /// an open can never block a worker (`O_NONBLOCK` stays as a second guard).
    fn reopen(&self, node: &Node, write: bool) -> Result<File, FsError> {
        self.reopen_with(node, write, 0)
    }

    /// [`Self::reopen`] with `extra` open flags (`O_DIRECT`).
    fn reopen_with(&self, node: &Node, write: bool, extra: i32) -> Result<File, FsError> {
        if node.kind != NodeKind::File {
            return Err(FsError::refused(
                libc::EIO,
                "backing object is not a regular file",
            ));
        }
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | extra;
        let refused = match self.reopen_by_handle(node, write, flags) {
            Some(Ok(file)) => return Ok(file),
            Some(Err(FsError::Sys(nix::errno::Errno::EPERM))) => true,
            _ => false,
        };
        let path = sys::proc_path(node.fd.as_fd());
        let path = Path::new(OsStr::from_bytes(path.as_bytes()));
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(flags)
            .open(path)?;
        // Refused by handle, opened through `/proc`: the refusal was the missing
        // capability (not, say, an immutable file), so handles are not tried again.
        if refused {
            if let Some(via) = &self.by_handle {
                via.refused.store(true, Ordering::Relaxed);
            }
        }
        Ok(file)
    }

    /// [`Self::reopen`] by the node's file handle: `open_by_handle_at` finds the inode
    /// from the handle alone, where opening `/proc/self/fd/N` walks procfs and makes
    /// its per-descriptor entry every time (measured: docs/PERFORMANCE.md, round 8).
    /// As safe: the handle names exactly this inode (its number and generation), and
    /// the node's descriptor keeps that inode alive, so the handle cannot come to name
    /// another object; names in the backing directory play no part. `None` where no
    /// handle is used (no handles on this file system or mount, or refused before).
    fn reopen_by_handle(
        &self,
        node: &Node,
        write: bool,
        flags: i32,
    ) -> Option<Result<File, FsError>> {
        let via = self.by_handle.as_ref()?;
        if via.refused.load(Ordering::Relaxed) {
            return None;
        }
        let handle = node
            .handle
            .get_or_init(|| match sys::file_handle(node.fd.as_fd()) {
                // Only through the root's mount: the handle is decoded on its file system.
                Ok(Some((handle, mount_id))) if mount_id == via.mount_id => Some(Box::new(handle)),
                _ => None,
            })
            .as_deref()?;
        let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
        Some(sys::open_by_handle(
            via.mount.as_fd(),
            handle,
            access | flags,
        ))
    }
}
