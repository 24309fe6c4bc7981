//! The filesystem core: every FUSE operation as one function returning
//! `Result<T, FsError>`, over the inode table, the handle tables, names and content.
//!
//! It owns the mapping between the plaintext view and the backing directory and the
//! order of operations that keeps the backing directory consistent (sidecar before long
//! entry, header before the file is visible, metadata before a directory is used). It
//! never caches a permission: every open asks the key service (see [`super::authz`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, mknodat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::format::{
    classify, read_metadata_at, write_atomic, BackingName, ContentCipher, EntryKind,
    EnvelopeVersion, FileHeader, FormatError, VolumeConfig, DIR_META_NAME, HEADER_LEN,
};
use crate::kms::provider::{Caller, DataAction, DataKeys, DirRule};

use super::authz::{self, Access};
use super::content;
use super::dir_rules;
use super::error::FsError;
use super::handle::{DirEntry, HandleTable, OpenDir, OpenFile};
use super::inode::{backing_id, ContentKey, InodeTable, Node, NodeKind, ROOT_INO};
use super::names::{self, DirNames, SealedTarget, VolumeSecrets};
use super::sys;

/// Attribute changes of one `setattr`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
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
    secrets: VolumeSecrets,
    inodes: InodeTable,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<OpenDir>,
    root_id: (u64, u64),
    read_only: bool,
    /// The daemon runs as root: new files are chowned to their creator.
    as_root: bool,
    /// Effective key rule per directory (FUSE inode → key id), valid while
    /// `rules_generation` still has the value it had before the lookup walked the
    /// ancestors. See [`Core::key_for_new_file`].
    rule_cache: Mutex<HashMap<u64, (u64, String)>>,
    /// Bumped after anything that can change a directory's effective key rule through
    /// this mount: setting or removing a rule, and every rename (a directory moved under
    /// another ancestor inherits that ancestor's rule).
    rules_generation: AtomicU64,
}

/// Directories whose effective key rule is remembered at most; beyond that the cache
/// starts over (entries of forgotten inodes are never used again, only take room).
const RULE_CACHE_MAX: usize = 4096;

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

/// The cipher to use for a file, given one obtained at `epoch` (from the header on disk
/// or a create) and the node's key state now: the node's newer key if the file was
/// re-keyed since.
fn current_cipher<'a>(
    own: &'a Arc<ContentCipher>,
    epoch: u64,
    key: &'a ContentKey,
) -> &'a Arc<ContentCipher> {
    match &key.cipher {
        Some(newer) if key.epoch != epoch => newer,
        _ => own,
    }
}

/// True when `cipher` holds the key this mount generated last for the file, so the
/// header on disk is one this mount wrote (not, say, a header-only envelope someone
/// copied over the file in the backing directory).
fn generated_here(key: &ContentKey, cipher: &ContentCipher) -> bool {
    key.cipher
        .as_ref()
        .is_some_and(|c| c.file_id() == cipher.file_id())
}

/// True when the backing file is its header alone (an empty file).
fn header_only(file: &File) -> Result<bool, FsError> {
    Ok(file.metadata()?.len() == HEADER_LEN as u64)
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
        let secrets = VolumeSecrets::new(&secret);
        volume.verify(backing, &secrets.metadata)?;
        let root_fd = openat(
            nix::fcntl::AT_FDCWD,
            backing,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let root_stat = stat_fd(&root_fd)?;
        let root_meta = names::load_dir_meta(&root_fd, &secrets.metadata)?;
        dir_rules::import_once(
            keys.as_ref(),
            &volume.volume_id,
            &root_fd,
            &secrets.metadata,
        )?;
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
            rule_cache: Mutex::new(HashMap::new()),
            rules_generation: AtomicU64::new(0),
        })
    }

    /// Number of open file handles (for tests and the CLI's status).
    pub fn open_files(&self) -> usize {
        self.files.len()
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
        let meta = names::load_dir_meta(&node.fd, &self.secrets.metadata)?;
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

    /// The envelope version of a regular file, for its size: remembered in the node
    /// (set by every open, create and re-key), else read from the header once. Both
    /// versions agree on an empty file, so a header-only file needs no read. A header
    /// that cannot be read gives version 1's arithmetic, not remembered: the size is a
    /// guess then, and reads fail with EIO anyway.
    fn envelope_of(&self, node: &Node, backing_size: u64) -> EnvelopeVersion {
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

    /// The owner a new object in `dir` gets when the daemon runs as root (`None`
    /// otherwise: it then belongs to the daemon's user).
    fn owner_for_new(&self, dir: &Node, caller: &Caller) -> Result<Option<(Uid, Gid)>, FsError> {
        if !self.as_root {
            return Ok(None);
        }
        let dir_st = stat_fd(&dir.fd)?;
        let gid = if dir_st.st_mode & libc::S_ISGID != 0 {
            dir_st.st_gid
        } else {
            caller.gid
        };
        Ok(Some((Uid::from_raw(caller.uid), Gid::from_raw(gid))))
    }

    /// Creates regular file `dir/name` holding exactly `header`, owned by the caller and
    /// with exactly `perm` (the kernel already applied the caller's umask; the daemon's
    /// own umask must not apply again). Preferably an unnamed `O_TMPFILE` that is linked
    /// into place only once complete, so no reader (and no crash) ever sees a file
    /// without its header; on file systems without `O_TMPFILE`, created in place and
    /// removed again if the header cannot be written.
    fn create_with_header(
        &self,
        dir: &Node,
        name: &str,
        perm: Mode,
        header: &[u8],
        caller: &Caller,
    ) -> Result<File, FsError> {
        let owner = self.owner_for_new(dir, caller)?;
        let finish = |file: &File| -> Result<(), FsError> {
            file.write_all_at(header, 0)?;
            nix::sys::stat::fchmod(file, perm)?;
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(file, Some(uid), Some(gid))?;
            }
            Ok(())
        };
        match openat(
            &dir.fd,
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            perm,
        ) {
            Ok(fd) => {
                let file = File::from(fd);
                finish(&file)?;
                // linkat never replaces: EEXIST if the name appeared meanwhile.
                sys::link_fd(file.as_fd(), dir.fd.as_fd(), OsStr::new(name))?;
                return Ok(file);
            }
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = openat(
            &dir.fd,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            perm,
        )?;
        let file = File::from(fd);
        if let Err(e) = finish(&file) {
            let _ = unlinkat(&dir.fd, name, UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        Ok(file)
    }

    /// The key for a new file in `dir`: the nearest enclosing directory's key rule, else
    /// the volume's default key.
    ///
    /// Remembered per directory inode and forgotten as soon as a rule is set or removed
    /// or anything is renamed through this mount (the generation check), so a rule set
    /// while mounted applies to the very next create. Only the *choice of key* is cached:
    /// every create still asks the key service for `GenerateDataKey` under it. Rules
    /// written into the backing directory behind the mount's back are not supported.
    fn key_for_new_file(&self, dir: &Node) -> Result<String, FsError> {
        let generation = self.rules_generation.load(Ordering::Acquire);
        {
            let cache = self.rule_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((g, key)) = cache.get(&dir.ino) {
                if *g == generation {
                    return Ok(key.clone());
                }
            }
        }
        let key = self.walk_key_rule(&dir.fd)?;
        let mut cache = self.rule_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= RULE_CACHE_MAX {
            cache.clear();
        }
        // Stored under the generation read *before* the walk: a change that raced with
        // the walk has bumped it, so this entry is never used.
        cache.insert(dir.ino, (generation, key.clone()));
        Ok(key)
    }

    /// Any change through this mount that may alter effective key rules.
    fn rules_changed(&self) {
        self.rules_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `kmsfs.dir` of backing directory `fd`, authenticated and checked against the key
    /// service's record of the directory (EIO if it was rolled back). For everything
    /// that reads a key rule; names need only the directory id, which no version of the
    /// file can change.
    fn checked_dir_meta(&self, fd: impl AsFd) -> Result<crate::format::DirMeta, FsError> {
        let meta = names::load_dir_meta(fd.as_fd(), &self.secrets.metadata)?;
        dir_rules::check(self.keys.as_ref(), &self.volume.volume_id, fd, &meta)?;
        Ok(meta)
    }

    /// Walks the backing directories upwards from `dir` by descriptor, reading each
    /// one's metadata fresh (and checked against the key service's record), to the
    /// nearest key rule (else the volume's default key).
    fn walk_key_rule(&self, dir: &OwnedFd) -> Result<String, FsError> {
        let mut current: Option<OwnedFd> = None;
        loop {
            let fd = current.as_ref().unwrap_or(dir);
            let meta = self.checked_dir_meta(fd)?;
            if let Some(key) = meta.key_rule {
                return Ok(key);
            }
            if backing_id(&stat_fd(fd)?) == self.root_id {
                return Ok(self.volume.default_key.clone());
            }
            let up = openat(fd, "..", path_flags() | OFlag::O_DIRECTORY, Mode::empty())?;
            current = Some(up);
        }
    }

    /// The key a re-keyed file gets: the current key rule of the directory that holds
    /// it now. A file node has no parent pointer (hard links can give it several); the
    /// kernel's path of its descriptor names the directory it was last linked from.
    /// Uncached: re-keys are rare, and the walk reads every rule fresh.
    fn key_for_rekey(&self, node: &Node) -> Result<String, FsError> {
        let link = nix::fcntl::readlink(sys::proc_path(node.fd.as_fd()).as_c_str())?;
        let Some(parent) = Path::new(&link).parent() else {
            return Ok(self.volume.default_key.clone());
        };
        match openat(
            nix::fcntl::AT_FDCWD,
            parent,
            path_flags() | OFlag::O_DIRECTORY,
            Mode::empty(),
        ) {
            Ok(dir) => self.walk_key_rule(&dir),
            // An unlinked file whose directory is gone too: no rule applies any more.
            Err(nix::errno::Errno::ENOENT) => Ok(self.volume.default_key.clone()),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a regular file a new file id and data key, in the current envelope
    /// version, under its directory's current key rule, authorized as a create is
    /// (`kms:GenerateDataKey` with the new encryption context), and leaves it empty.
    /// The caller holds the node's content lock for writing (`key`); every handle uses
    /// the new cipher from then on. A refusal changes nothing on disk.
    ///
    /// Why in place, and not a new `O_TMPFILE` renamed over the old file: the inode must
    /// stay, since open handles, hard links, owner, mode and xattrs belong to it. Crash
    /// safety comes from the order instead: the file is first cut to its old header (an
    /// empty file under the old key) and that length is made durable; only then is the
    /// new header written over the old one, in one write of 1024 bytes inside the first
    /// page, and made durable before any block can be sealed under it. After a crash
    /// the file holds its old content (before the cut), or is empty under the old or
    /// the new header: never a header whose key does not match its blocks. (A torn
    /// write inside one page on power loss is outside what any in-place format can
    /// exclude; the daemon being killed cannot tear a single `pwrite`.)
    fn rekey(
        &self,
        caller: &Caller,
        node: &Node,
        file: &File,
        key: &mut ContentKey,
    ) -> Result<Arc<ContentCipher>, FsError> {
        let key_id = self.key_for_rekey(node)?;
        let (header, cipher) =
            authz::new_file(self.keys.as_ref(), caller, &self.volume.volume_id, &key_id)?;
        if !header_only(file)? {
            file.set_len(HEADER_LEN as u64)?;
            file.sync_data()?;
        }
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        let cipher = Arc::new(cipher);
        key.epoch += 1;
        key.cipher = Some(cipher.clone());
        node.set_envelope(header.version);
        node.changed();
        Ok(cipher)
    }

    /// The cipher to seal the first block of a file with: re-keys a header-only file
    /// whose key this mount did not generate (its header may have been copied from
    /// another file, whose key must not protect new content here).
    fn cipher_for_sealing(
        &self,
        caller: &Caller,
        node: &Node,
        file: &File,
        cipher: Arc<ContentCipher>,
        key: &mut ContentKey,
    ) -> Result<Arc<ContentCipher>, FsError> {
        if generated_here(key, &cipher) || !header_only(file)? {
            return Ok(cipher);
        }
        self.rekey(caller, node, file, key)
    }

    /// Sets the size under the node's write lock. Truncation to zero re-keys (a new
    /// file id and data key, never the old ones), except for an empty file whose key
    /// this mount just generated; growing an empty file seals a block, so it re-keys
    /// as [`Self::cipher_for_sealing`] says.
    fn truncate_locked(
        &self,
        caller: &Caller,
        node: &Node,
        file: &File,
        cipher: Arc<ContentCipher>,
        key: &mut ContentKey,
        size: u64,
    ) -> Result<(), FsError> {
        if size == 0 {
            if !(generated_here(key, &cipher) && header_only(file)?) {
                self.rekey(caller, node, file, key)?;
            }
            return Ok(());
        }
        let cipher = self.cipher_for_sealing(caller, node, file, cipher, key)?;
        content::truncate(file, &cipher, size)
    }

    /// Opens a regular file's backing object for I/O through its `O_PATH` descriptor
    /// (so a name swapped in the backing directory since the lookup is never opened).
    /// `O_NONBLOCK` and the type check make sure an open can never block a worker.
    fn reopen(&self, node: &Node, write: bool) -> Result<File, FsError> {
        let path = sys::proc_path(node.fd.as_fd());
        let path = Path::new(OsStr::from_bytes(path.as_bytes()));
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.file_type().is_file() {
            return Err(FsError::refused(
                libc::EIO,
                "backing object is not a regular file",
            ));
        }
        Ok(file)
    }

    // ---- attributes ----

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, FsError> {
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        Ok(self.remember_child(&dir, backing.name())?.1)
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

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
            self.truncate(caller, &node, fh, size)?;
        }
        // Only the owner (or root) changes modes and ownership; only root gives a file
        // away. (With default_permissions the kernel checks this before we see it.)
        // The current owner is needed only for those changes: a size or time change
        // (the common `futimens` after a write) skips this stat.
        let owns = change.mode.is_some() || change.uid.is_some() || change.gid.is_some();
        let owner = if owns {
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
                let path = sys::proc_path(node.fd.as_fd());
                nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    path.as_c_str(),
                    Mode::from_bits_truncate(mode & 0o7777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
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
                let path = sys::proc_path(node.fd.as_fd());
                nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    path.as_c_str(),
                    &time_spec(change.atime),
                    &time_spec(change.mtime),
                    UtimensatFlags::FollowSymlink,
                )?;
            }
        }
        self.getattr(ino)
    }

    /// Truncation: through a writable handle it uses that open's authorization; without
    /// one it asks the key service for `kms:Encrypt` on the file's own key.
    fn truncate(
        &self,
        caller: &Caller,
        node: &Node,
        fh: Option<u64>,
        size: u64,
    ) -> Result<(), FsError> {
        let handle = fh
            .and_then(|fh| self.files.get(fh).ok())
            .filter(|h| h.access.write && h.node.ino == node.ino);
        match handle {
            Some(h) => {
                let mut g = write_guard(node);
                let cipher = h.cipher(&g).clone();
                self.truncate_locked(caller, node, &h.file, cipher, &mut g, size)?;
            }
            None => {
                let file = self.reopen(node, true)?;
                let (header, epoch) = {
                    let g = read_guard(node);
                    (FileHeader::read_from(&file)?, g.epoch)
                };
                let cipher = Arc::new(authz::unlock(
                    self.keys.as_ref(),
                    caller,
                    &self.volume.volume_id,
                    &header,
                    &[DataAction::Encrypt],
                )?);
                let mut g = write_guard(node);
                let cipher = current_cipher(&cipher, epoch, &g).clone();
                self.truncate_locked(caller, node, &file, cipher, &mut g, size)?;
            }
        }
        node.changed();
        Ok(())
    }

    // ---- regular files ----

    /// Creates and opens a regular file: `kms:GenerateDataKey` under the directory's key.
    pub fn create(
        &self,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        let key_id = self.key_for_new_file(&dir)?;
        let (header, cipher) =
            authz::new_file(self.keys.as_ref(), caller, &self.volume.volume_id, &key_id)?;
        let sidecar = names::write_sidecar(&dir.fd, &backing)?;
        let perm = Mode::from_bits_truncate(mode & !umask & 0o7777);
        let file = self
            .create_with_header(&dir, backing.name(), perm, &header.encode(), caller)
            .inspect_err(|_| names::undo_sidecar(&dir.fd, &backing, sidecar))?;
        let (node, attr) = self.remember_child(&dir, backing.name())?;
        // The node remembers that this mount generated the key, so the first write
        // needs no re-key.
        let cipher = Arc::new(cipher);
        let epoch = {
            let mut g = write_guard(&node);
            g.epoch += 1;
            g.cipher = Some(cipher.clone());
            g.epoch
        };
        node.set_envelope(header.version);
        node.changed();
        let _ = node.unchanged_since_last_open();
        let fh = self.files.insert(OpenFile {
            node,
            file,
            cipher,
            epoch,
            access: Access::from_flags(flags),
            append: flags & libc::O_APPEND != 0,
        });
        Ok((attr, fh))
    }

    /// Opens a regular file: asks the key service for the actions the flags need on the
    /// key in the file's own envelope. Returns the handle and whether the kernel may keep
    /// its cached pages.
    pub fn open(&self, caller: &Caller, ino: u64, flags: i32) -> Result<(u64, bool), FsError> {
        let node = self.inodes.get(ino)?;
        match node.kind {
            NodeKind::File => {}
            NodeKind::Directory => return Err(FsError::refused(libc::EISDIR, "open of a dir")),
            _ => return Err(FsError::refused(libc::EINVAL, "open of a special file")),
        }
        let access = Access::from_flags(flags);
        if access.write {
            self.writable()?;
        }
        let file = self.reopen(&node, access.write)?;
        // The header and the epoch are read together, so a re-key through another
        // handle is either already in the header or shows as a newer epoch.
        let (header, epoch) = {
            let g = read_guard(&node);
            let header = FileHeader::read_from(&file)?;
            node.set_envelope(header.version);
            (header, g.epoch)
        };
        let cipher = Arc::new(authz::unlock(
            self.keys.as_ref(),
            caller,
            &self.volume.volume_id,
            &header,
            access.actions(),
        )?);
        if flags & libc::O_TRUNC != 0 {
            let mut g = write_guard(&node);
            let current = current_cipher(&cipher, epoch, &g).clone();
            self.truncate_locked(caller, &node, &file, current, &mut g, 0)?;
            node.changed();
        }
        let keep_cache = node.unchanged_since_last_open();
        let fh = self.files.insert(OpenFile {
            node,
            file,
            cipher,
            epoch,
            access,
            append: flags & libc::O_APPEND != 0,
        });
        Ok((fh, keep_cache))
    }

    /// Reads plaintext and hands it to `reply` (no copy into an owned buffer).
    pub fn read<R>(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsError> {
        let h = self.files.get(fh)?;
        if !h.access.read {
            return Err(FsError::refused(libc::EBADF, "handle not open for reading"));
        }
        let g = read_guard(&h.node);
        content::read(&h.file, h.cipher(&g), offset, size, reply)
    }

    /// Writes through a handle. The first write into an empty file whose key this mount
    /// did not generate re-keys it first (as the caller, see [`Self::rekey`]).
    pub fn write(
        &self,
        caller: &Caller,
        fh: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<u32, FsError> {
        let h = self.files.get(fh)?;
        if !h.access.write {
            return Err(FsError::refused(libc::EBADF, "handle not open for writing"));
        }
        let written = u32::try_from(data.len())
            .map_err(|_| FsError::refused(libc::EINVAL, "write larger than 4 GiB"))?;
        let mut g = write_guard(&h.node);
        let mut cipher = h.cipher(&g).clone();
        if !data.is_empty() {
            cipher = self.cipher_for_sealing(caller, &h.node, &h.file, cipher, &mut g)?;
        }
        let offset = if h.append {
            content::size(&h.file, &cipher)?
        } else {
            offset
        };
        content::write(&h.file, &cipher, offset, data)?;
        h.node.changed();
        Ok(written)
    }

    /// `fallocate`: mode 0 grows the file (holes read as zeros); KEEP_SIZE is accepted
    /// as a no-op; punching holes is not supported (a hole must stay sealed-zero).
    pub fn fallocate(
        &self,
        caller: &Caller,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), FsError> {
        let h = self.files.get(fh)?;
        if !h.access.write {
            return Err(FsError::refused(libc::EBADF, "handle not open for writing"));
        }
        match mode {
            0 => {
                let end = offset
                    .checked_add(length)
                    .ok_or_else(|| FsError::refused(libc::EFBIG, "fallocate range"))?;
                let mut g = write_guard(&h.node);
                let cipher = h.cipher(&g).clone();
                if end > content::size(&h.file, &cipher)? {
                    self.truncate_locked(caller, &h.node, &h.file, cipher, &mut g, end)?;
                    h.node.changed();
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(FsError::refused(libc::EOPNOTSUPP, "fallocate mode")),
        }
    }

    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        // Writes reach the backing file before they are acknowledged; nothing to flush.
        self.files.get(fh).map(drop)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<(), FsError> {
        let h = self.files.get(fh)?;
        if datasync {
            h.file.sync_data()?;
        } else {
            h.file.sync_all()?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) {
        self.files.remove(fh);
    }

    // ---- other objects ----

    pub fn mknod(
        &self,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<FileAttr, FsError> {
        let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
        match kind {
            SFlag::S_IFREG => {
                let (attr, fh) = self.create(caller, parent, name, mode, umask, libc::O_WRONLY)?;
                self.release(fh);
                Ok(attr)
            }
            // Special files carry no content to encrypt: only their name is. Devices need
            // CAP_MKNOD, which the kernel checks for the caller before asking us.
            SFlag::S_IFIFO | SFlag::S_IFSOCK | SFlag::S_IFCHR | SFlag::S_IFBLK => {
                self.writable()?;
                let (dir, _, backing) = self.parent_and_name(parent, name)?;
                self.make_entry(&dir, &backing, || {
                    Ok(mknodat(
                        &dir.fd,
                        backing.name(),
                        kind,
                        Mode::from_bits_truncate(mode & !umask & 0o7777),
                        libc::dev_t::from(rdev),
                    )?)
                })?;
                self.exact_mode(&dir, backing.name(), mode & !umask)
                    .and_then(|()| self.chown_new(&dir, backing.name(), caller))
                    .inspect_err(|_| self.unmake_entry(&dir, &backing, false))?;
                Ok(self.remember_child(&dir, backing.name())?.1)
            }
            _ => Err(FsError::refused(libc::EINVAL, "unknown file type")),
        }
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

    fn readlink_node(&self, node: &Node) -> Result<Vec<u8>, FsError> {
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
    fn last_link_stored_target(&self, dir: &Node, name: &str) -> Option<String> {
        let st = fstatat(&dir.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK || st.st_nlink != 1 {
            return None;
        }
        let target = nix::fcntl::readlinkat(&dir.fd, name).ok()?;
        names::stored_target_name(&target).map(str::to_string)
    }

    /// Removes a stored symlink target nothing refers to any more (best effort: a
    /// leftover is an unreferenced reserved file, never harmful).
    fn remove_stored_target(&self, name: &str) {
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

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.writable()?;
        let (dir, _, backing) = self.parent_and_name(parent, name)?;
        let store = self.last_link_stored_target(&dir, backing.name());
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

    // ---- directories ----

    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
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
            let Some(backing_name) = backing.to_str().map(str::to_string) else {
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
        Ok(self.dirs.insert(OpenDir { entries }))
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
        let dots = [(ino, OsStr::new(".")), (ROOT_INO, OsStr::new(".."))];
        let mut index = usize::try_from(offset).unwrap_or(usize::MAX);
        while index < dots.len() + dir.entries.len() {
            let next = index as u64 + 1;
            let full = match dots.get(index) {
                Some((ino, name)) => add(*ino, next, FileType::Directory, name),
                None => match dir.entries.get(index - dots.len()) {
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

    /// Like [`Self::readdir`], with attributes: each entry passed to `add` counts as one
    /// kernel lookup, undone if the reply buffer was full. `.` and `..` carry no lookup
    /// (the kernel does not link them).
    pub fn readdirplus(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, &OsStr, &FileAttr) -> bool,
    ) -> Result<(), FsError> {
        let dir = self.dirs.get(fh)?;
        let node = self.inodes.get(ino)?;
        let own = self.getattr(ino)?;
        let mut index = usize::try_from(offset).unwrap_or(usize::MAX);
        while index < 2 + dir.entries.len() {
            let next = index as u64 + 1;
            let full = match index {
                0 => add(ino, next, OsStr::new("."), &own),
                1 => add(ROOT_INO, next, OsStr::new(".."), &own),
                _ => {
                    let Some(e) = dir.entries.get(index - 2) else {
                        break;
                    };
                    match self.remember_child(&node, &e.backing_name) {
                        Ok((child, attr)) => {
                            let full = add(child.ino, next, &e.name, &attr);
                            if full {
                                self.inodes.forget(child.ino, 1);
                            }
                            full
                        }
                        // Removed since opendir: leave it out.
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

    // ---- extended attributes ----

    fn xattr_node(&self, ino: u64) -> Result<Arc<Node>, FsError> {
        let node = self.inodes.get(ino)?;
        match node.kind {
            NodeKind::File | NodeKind::Directory => Ok(node),
            _ => Err(FsError::refused(
                libc::EOPNOTSUPP,
                "xattrs on special files",
            )),
        }
    }

    pub fn setxattr(
        &self,
        caller: &Caller,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        self.writable()?;
        let node = self.xattr_node(ino)?;
        if name == super::KEY_RULE_XATTR {
            self.may_change_key_rule(caller, &node)?;
            return self.set_key_rule(caller, &node, Some(value));
        }
        if VolumeSecrets::xattr_is_sealed(name) {
            let sealed = self.secrets.seal_xattr(name, value)?;
            sys::set_xattr(node.fd.as_fd(), name, &sealed, flags)
        } else {
            sys::set_xattr(node.fd.as_fd(), name, value, flags)
        }
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> Result<XattrReply, FsError> {
        let node = self.xattr_node(ino)?;
        if name == super::KEY_RULE_XATTR {
            let meta = self.key_rule_dir(&node)?;
            dir_rules::check(self.keys.as_ref(), &self.volume.volume_id, &node.fd, &meta)?;
            return match meta.key_rule {
                Some(rule) => sized_reply(rule.into_bytes(), size),
                None => Err(FsError::refused(libc::ENODATA, "no key rule")),
            };
        }
        let stored = sys::get_xattr(node.fd.as_fd(), name)?;
        let value = if VolumeSecrets::xattr_is_sealed(name) {
            self.secrets.open_xattr(name, &stored)?
        } else {
            stored
        };
        sized_reply(value, size)
    }

    pub fn listxattr(&self, ino: u64, size: u32) -> Result<XattrReply, FsError> {
        let node = self.xattr_node(ino)?;
        sized_reply(sys::list_xattr(node.fd.as_fd())?, size)
    }

    pub fn removexattr(&self, caller: &Caller, ino: u64, name: &OsStr) -> Result<(), FsError> {
        self.writable()?;
        let node = self.xattr_node(ino)?;
        if name == super::KEY_RULE_XATTR {
            self.may_change_key_rule(caller, &node)?;
            return self.set_key_rule(caller, &node, None);
        }
        sys::remove_xattr(node.fd.as_fd(), name)
    }

    /// A key rule decides which key protects other users' future files, so only the
    /// directory's owner (or root) changes it, whatever the mode bits and mount options
    /// say (write permission alone would let a writer redirect new files to a key they
    /// control).
    fn may_change_key_rule(&self, caller: &Caller, node: &Node) -> Result<(), FsError> {
        let st = stat_fd(&node.fd)?;
        if caller.uid == 0 || caller.uid == st.st_uid {
            Ok(())
        } else {
            Err(FsError::refused(
                libc::EPERM,
                "key rule change by non-owner",
            ))
        }
    }

    /// The directory metadata behind a key-rule request (directories only).
    fn key_rule_dir(&self, node: &Node) -> Result<crate::format::DirMeta, FsError> {
        if node.kind != NodeKind::Directory {
            return Err(FsError::refused(
                libc::ENOTSUP,
                "key rules apply to directories",
            ));
        }
        names::load_dir_meta(node.fd.as_fd(), &self.secrets.metadata)
    }

    /// Sets (or with `None` removes) the key that new files under `node` get. Existing
    /// files keep the key in their own envelopes. The rule is validated (non-empty
    /// UTF-8 key id, ARN or alias).
    ///
    /// The key service's record is written first, then `kmsfs.dir` (atomically, with
    /// its MAC) at the same, higher version: if the second step fails, the directory's
    /// rule is refused (EIO) until set or cleared again, never silently lost. The
    /// current rule is the record's when the file disagrees with it, so setting or
    /// clearing a rule is also how a rolled-back `kmsfs.dir` is repaired.
    fn set_key_rule(
        &self,
        caller: &Caller,
        node: &Node,
        value: Option<&[u8]>,
    ) -> Result<(), FsError> {
        let mut meta = self.key_rule_dir(node)?;
        let record = self
            .keys
            .dir_rule(&self.volume.volume_id, &meta.dir_id.0)?
            .unwrap_or(DirRule::NONE);
        let current = if dir_rules::disagreement(&meta, Some(&record)).is_none() {
            meta.key_rule.clone()
        } else {
            record.rule.clone()
        };
        let rule = match value {
            None => {
                if current.is_none() {
                    return Err(FsError::refused(libc::ENODATA, "no key rule"));
                }
                None
            }
            Some(v) => {
                let rule = std::str::from_utf8(v)
                    .map_err(|_| FsError::refused(libc::EINVAL, "key rule is not UTF-8"))?
                    .trim();
                if rule.is_empty() {
                    return Err(FsError::refused(libc::EINVAL, "empty key rule"));
                }
                crate::format::volume::validate_key_id(rule)
                    .map_err(|_| FsError::refused(libc::EINVAL, "invalid key rule"))?;
                Some(rule.to_string())
            }
        };
        let next = DirRule {
            version: meta.version.max(record.version) + 1,
            rule,
        };
        // Forget every cached choice, whatever happens from here: the record may change
        // even if the file write fails.
        self.rules_changed();
        self.keys
            .record_dir_rule(caller, &self.volume.volume_id, &meta.dir_id.0, &next)?;
        meta.key_rule = next.rule;
        meta.version = next.version;
        let path = sys::proc_path(node.fd.as_fd());
        let saved = meta.save(
            Path::new(OsStr::from_bytes(path.as_bytes())),
            &self.secrets.metadata,
        );
        self.rules_changed();
        saved?;
        Ok(())
    }
}

fn sized_reply(value: Vec<u8>, size: u32) -> Result<XattrReply, FsError> {
    let len = u32::try_from(value.len()).map_err(|_| FsError::refused(libc::E2BIG, "xattr"))?;
    if size == 0 {
        Ok(XattrReply::Size(len))
    } else if len > size {
        Err(FsError::refused(libc::ERANGE, "xattr buffer too small"))
    } else {
        Ok(XattrReply::Data(value))
    }
}
