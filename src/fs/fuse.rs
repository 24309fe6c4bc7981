//! The `fuser::Filesystem` implementation: each callback converts its arguments, calls
//! one [`Core`] function, and replies (the errno comes from [`FsError::errno`]). No
//! crypto, policy or I/O loops here.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::kms::provider::Caller;

use super::core::{Core, KillPriv, SetAttr, XattrReply};
use super::error::FsError;

/// How long the kernel may cache names (also the absence of a name) and attributes.
/// Every change goes through this daemon, and the kernel updates or drops its cached
/// entry and attributes on each such change (create, unlink, rename, write, setattr), so
/// the TTL only bounds staleness after edits of the backing directory behind the
/// mount's back, which kmsfs does not support anyway (DESIGN.md, key rules). Opens are
/// not cached by this: every open still reaches [`Core::open`] and its authorization.
const TTL: Duration = Duration::from_secs(60);
/// Largest write the kernel sends in one request.
pub const MAX_WRITE: u32 = 1 << 20;

/// The filesystem as the FUSE session sees it.
pub struct KmsFs {
    core: Arc<Core>,
    /// FUSE_HANDLE_KILLPRIV_V2 was negotiated: dropping set-uid/set-gid on writes,
    /// truncates and fallocate is this daemon's job (see `core::killpriv`).
    killpriv: bool,
    /// The session's channel for telling the kernel that a cached mode went stale; set
    /// by the mount before the first request is served.
    notifier: Arc<OnceLock<Notifier>>,
}

impl KmsFs {
    /// `notifier` is the slot the mount fills with the session's [`Notifier`].
    pub fn with_notifier(core: Arc<Core>, notifier: Arc<OnceLock<Notifier>>) -> Self {
        KmsFs {
            core,
            killpriv: false,
            notifier,
        }
    }

    /// Whether a truncate, a truncating open or a fallocate by the caller of `req`
    /// drops set-uid/set-gid here: the kernel's own answer is in fields fuser 0.18 does
    /// not pass on (or, for fallocate, nowhere), so it is asked again of the caller.
    fn kill_priv(&self, req: &Request) -> KillPriv {
        if self.killpriv {
            KillPriv::UnlessCallerHasFsetid {
                pid: req.pid(),
                uid: req.uid(),
            }
        } else {
            KillPriv::Keep
        }
    }

    /// After set-uid/set-gid were dropped: the kernel's cached mode still has them (a
    /// write, a truncating open and fallocate refresh only size and times), and exec
    /// reads the cached mode. Sent before the reply, so no later request sees it stale.
    fn mode_changed(&self, ino: INodeNo) {
        match self.notifier.get() {
            // Offset -1: the attributes only, no page of the cache.
            Some(n) => {
                if let Err(e) = n.inval_inode(ino, -1, 0) {
                    log::warn!("inode {}: cannot invalidate the cached mode: {e}", ino.0);
                }
            }
            None => log::warn!("inode {}: no notifier for the cached mode", ino.0),
        }
    }

    /// After an unlink, rmdir or rename that answers an error: the kernel drops a
    /// directory's cached listing (FOPEN_CACHE_DIR) only when such a request succeeds,
    /// but the backing change may have happened before the error (a long name whose
    /// sidecar could not be removed). Dropping the listing costs one relisting.
    fn listing_may_have_changed(&self, dirs: &[INodeNo]) {
        let Some(n) = self.notifier.get() else {
            return;
        };
        for &dir in dirs {
            // Offset 0, length 0: every cached page of the directory, and its attributes.
            if let Err(e) = n.inval_inode(dir, 0, 0) {
                log::debug!("directory {}: cannot drop the cached listing: {e}", dir.0);
            }
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn errno(e: &FsError) -> Errno {
    let code = e.errno();
    // EIO means damaged or tampered data (or a failing disk): someone must look at it.
    // Refusals (EACCES, ENOKEY, ...) are routine answers and already in the audit log.
    if code == libc::EIO {
        log::warn!("{e}");
    } else {
        log::debug!("{e}");
    }
    Errno::from_i32(code)
}

/// The attributes of a negative lookup reply: only the zero inode number matters.
fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn open_flags(keep_cache: bool) -> FopenFlags {
    if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

impl Filesystem for KmsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        // Read ahead as far as the kernel allows (up to a write's size): sequential
        // reads then arrive as large block ranges, one pread each.
        if let Err(nearest) = config.set_max_readahead(MAX_WRITE) {
            let _ = config.set_max_readahead(nearest);
        }
        // O_TRUNC must reach open() so that it is authorized as a write; the others are
        // optional speed-ups, taken when the kernel offers them.
        for flag in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(flag);
        }
        // Without it the kernel asks for `security.capability` before every write (a
        // FUSE superblock never keeps the "no privileges" mark), two round trips per
        // write; with it the kernel asks once per inode and leaves dropping
        // set-uid/set-gid to this daemon. Taken when offered.
        self.killpriv = config
            .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_ok();
        // `-o writeback_cache` only: write(2) then returns once the kernel's page cache
        // holds the data, and the kernel writes dirty pages back in large requests, at
        // the latest on close (its flush writes them back even though FLUSH is
        // answered ENOSYS) or fsync. Opens are still all authorized here; what changes
        // is that a write neither fsync'd nor closed can be lost with the daemon
        // (docs/THREAT_MODEL.md). A kernel that does not offer it leaves it off.
        if self.core.writeback_requested() {
            let granted = config
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok();
            if !granted {
                log::warn!("writeback_cache: not offered by the kernel, left off");
            }
            self.core.set_writeback(granted);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.core.lookup(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            // A negative entry (inode 0): the kernel remembers that the name is absent
            // and asks again only after the TTL or once a create, mkdir, link, symlink or
            // rename through this mount makes it exist (those replace the entry).
            Err(e) if e.errno() == libc::ENOENT => {
                reply.entry(&TTL, &negative_entry(), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        // With the writeback cache the kernel owns times and sends its mtime and ctime
        // when it writes them back; mtime is applied below, ctime cannot be set on the
        // backing file (which moves its own ctime) and is ignored.
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            // The kernel's FATTR_KILL_SUIDGID for a truncate, which fuser 0.18 drops.
            // (On a change of owner the backing fchown drops the bits itself.) The
            // reply carries the new mode.
            kill_priv: self.kill_priv(req),
        };
        match self
            .core
            .setattr(&caller(req), ino.0, fh.map(|f| f.0), change)
        {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match self
            .core
            .mknod(&caller(req), parent.0, name, mode, umask, rdev)
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.core.mkdir(&caller(req), parent.0, name, mode, umask) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => {
                self.listing_may_have_changed(&[parent]);
                reply.error(errno(&e))
            }
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => {
                self.listing_may_have_changed(&[parent]);
                reply.error(errno(&e))
            }
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self.core.symlink(&caller(req), parent.0, link_name, target) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .core
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => {
                self.listing_may_have_changed(&[parent, newparent]);
                reply.error(errno(&e))
            }
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.core.link(ino.0, newparent.0, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // For O_TRUNC: the kernel's FUSE_OPEN_KILL_SUIDGID, which fuser 0.18 drops.
        match self
            .core
            .open(&caller(req), ino.0, flags.0, self.kill_priv(req))
        {
            Ok((fh, keep, dropped)) => {
                if dropped {
                    self.mode_changed(ino);
                }
                reply.opened(FileHandle(fh), open_flags(keep))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // The reply is sent from inside the core's callback, straight from its buffer.
        let mut reply = Some(reply);
        let res = self.core.read(fh.0, offset, size, |bytes| {
            if let Some(r) = reply.take() {
                r.data(bytes);
            }
        });
        if let (Err(e), Some(r)) = (res, reply.take()) {
            r.error(errno(&e));
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The kernel's own answer (set only with FUSE_HANDLE_KILLPRIV_V2, for a caller
        // without CAP_FSETID).
        let kill_priv = if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            KillPriv::Drop
        } else {
            KillPriv::Keep
        };
        self.core.write(
            &caller(req),
            fh.0,
            offset,
            data,
            kill_priv,
            |res| match res {
                Ok((n, dropped)) => {
                    if dropped {
                        self.mode_changed(ino);
                    }
                    reply.written(n)
                }
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes reach the backing file before they are acknowledged, so a flush has
        // nothing to do and no error to report. ENOSYS tells the kernel so once: it then
        // treats every later close's flush as done without a round trip (no lock
        // requests are implemented here, so no lock owner needs the flush either).
        // With the writeback cache the kernel's flush still writes the file's dirty
        // pages back and waits for them before it looks at ENOSYS (fuse_flush), so
        // close(2) returns after the data reached the backing file, with its error.
        match self.core.flush(fh.0) {
            Ok(()) => reply.error(Errno::ENOSYS),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.core.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// The kernel keeps this directory's entries in its page cache (`FOPEN_CACHE_DIR`)
    /// and, with `FOPEN_KEEP_CACHE`, does not drop them at the next open, so a warm
    /// `opendir` + `readdir` costs this one round trip and no listing. The kernel's rules
    /// (fs/fuse/readdir.c, dir.c): the cache is filled only by reads from offset 0 onward
    /// in order, and served only once complete (a read reached the end); a read at
    /// offset 0 (a new open or `rewinddir`) drops it when the directory's change counter
    /// or mtime differs from when filling began. Every create, mknod, mkdir, symlink,
    /// link, unlink, rmdir and rename through this mount that succeeds bumps the counter
    /// of its directory (of both, for a rename; an answer with an error bumps nothing);
    /// the mtime compared is the one of the directory's cached attributes, refreshed
    /// after their `TTL`. So a change through the mount shows in the next listing at
    /// once, and a change made to the backing directory behind the daemon's back shows
    /// once the kernel refreshes the directory's attributes, as for lookups. The cached
    /// entries are names, inode numbers and types, the same for every caller
    /// (`Core::opendir`), and every open of a directory still reaches the daemon.
    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self
            .core
            .readdir(ino.0, fh.0, offset, |ino, next, kind, name| {
                reply.add(INodeNo(ino), next, kind, name)
            });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let res = self
            .core
            .readdirplus(ino.0, fh.0, offset, |ino, next, name, attr| {
                reply.add(INodeNo(ino), next, name, &TTL, attr, Generation(0))
            });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.core.fsyncdir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.core.setxattr(&caller(req), ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.core.getxattr(ino.0, name, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.core.listxattr(ino.0, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.removexattr(&caller(req), ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mode bits are the kernel's job (default_permissions); the key service decides
        // at open. access(2) therefore reports what the kernel already checked. ENOSYS
        // says exactly that to the kernel ("always allowed from now on") and spares it
        // the round trip on every later access(2).
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .core
            .create(&caller(req), parent.0, name, mode, umask, flags)
        {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // The kernel drops the bits before any fallocate by a caller without
        // CAP_FSETID, except with FUSE_HANDLE_KILLPRIV_V2, and then sends no flag for
        // it either (measured on 6.18: the bits stayed): decided here.
        match self.core.fallocate(
            &caller(req),
            fh.0,
            offset,
            length,
            mode,
            self.kill_priv(req),
        ) {
            Ok(dropped) => {
                if dropped {
                    self.mode_changed(ino);
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}
