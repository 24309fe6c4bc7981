//! Regular files: create, open, read, write, truncate, fallocate, flush, fsync,
//! release, mknod, and the re-key that gives a file a new data key.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

use fuser::FileAttr;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mknodat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::format::{ContentCipher, FileHeader, HEADER_LEN};
use crate::kms::provider::{Caller, DataAction};

use crate::fs::authz::{self, Access};
use crate::fs::error::FsError;
use crate::fs::handle::OpenFile;
use crate::fs::inode::{CipherPin, ContentKey, Node, NodeKind};
use crate::fs::names;
use crate::fs::rewrap::HeaderLock;
use crate::fs::{content, sys};

use super::killpriv::{self, KillPriv};
use super::{read_guard, write_guard, Core};

/// The cipher to use for a file, given one obtained at `epoch` (from the header on disk
/// or a create) and the node's key state now: the node's newer key if the file was
/// re-keyed since.
pub(super) fn current_cipher<'a>(
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
pub(super) fn generated_here(key: &ContentKey, cipher: &ContentCipher) -> bool {
    key.is_generated(cipher)
}

/// True when the backing file is its header alone (an empty file).
pub(super) fn header_only(file: &File) -> Result<bool, FsError> {
    Ok(file.metadata()?.len() == HEADER_LEN as u64)
}

impl Core {
    /// Creates regular file `dir/name` holding exactly `header`, owned by the caller.
    /// Preferably an unnamed `O_TMPFILE` that is linked into place only once complete,
    /// so no reader (and no crash) ever sees a file without its header; on file systems
    /// without `O_TMPFILE`, created in place and removed again if the header cannot be
    /// written.
    ///
    /// The mode: the kernel already applied the caller's umask to `perm`, and the
    /// daemon's own umask must not apply again. Set-id and sticky bits are set here,
    /// before the name appears. Plain permission bits are left to the `open`, which
    /// gives exactly `perm` unless the daemon's umask strips some of them; the caller
    /// checks the file's mode afterwards and sets it only then ([`Self::settle_mode`]):
    /// one `fchmod` fewer per create in the common case, and until then the file can
    /// only have fewer permissions than asked for, never more.
    fn create_with_header(
        &self,
        dir: &Node,
        name: &str,
        perm: Mode,
        header: &[u8],
        caller: &Caller,
    ) -> Result<File, FsError> {
        let special = perm.bits() & 0o7000 != 0;
        let owner = self.owner_for_new(dir, caller)?;
        let finish = |file: &File| -> Result<(), FsError> {
            file.write_all_at(header, 0)?;
            // Owner first: a `chown` clears set-id bits, so they are set after it.
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(file, Some(uid), Some(gid))?;
            }
            if special {
                nix::sys::stat::fchmod(file, perm)?;
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
        {
            // Excludes a `kmsfs rewrap` swapping this header from another process. A
            // backing filesystem without POSIX locks only loses that exclusion.
            let _lock = HeaderLock::exclusive(file).ok();
            if !header_only(file)? {
                file.set_len(HEADER_LEN as u64)?;
                file.sync_data()?;
            }
            file.write_all_at(&header.encode(), 0)?;
            file.sync_data()?;
        }
        let cipher = Arc::new(cipher);
        key.generated(cipher.clone());
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

    /// Truncation: through a writable handle it uses that open's authorization; without
    /// one it asks the key service for `kms:Encrypt` on the file's own key.
    /// Set-uid/set-gid go first as `kill_priv` says, once the truncation is authorized.
    pub(super) fn truncate(
        &self,
        caller: &Caller,
        node: &Node,
        fh: Option<u64>,
        size: u64,
        kill_priv: KillPriv,
    ) -> Result<(), FsError> {
        let handle = fh
            .and_then(|fh| self.files.get(fh).ok())
            .filter(|h| h.access.write && h.node.ino == node.ino);
        match handle {
            Some(h) => {
                let mut g = write_guard(node);
                let cipher = h.cipher(&g).clone();
                killpriv::drop_privs(h.file.as_fd(), kill_priv)?;
                self.truncate_locked(caller, node, &h.file, cipher, &mut g, size)?;
            }
            None => {
                // Declared before the guards below: its drop takes the write lock.
                let _pin = CipherPin::new(node);
                let file = self.reopen(node, true)?;
                let (header, epoch) = {
                    let g = read_guard(node);
                    let header = FileHeader::read_from(&file)?;
                    self.volume.check_envelope(header.version)?;
                    (header, g.epoch)
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
                killpriv::drop_privs(file.as_fd(), kill_priv)?;
                self.truncate_locked(caller, node, &file, cipher, &mut g, size)?;
            }
        }
        node.changed();
        Ok(())
    }

    /// Gives a file just made by [`Self::create_with_header`] without set-id or sticky
    /// bits exactly `perm` if its mode (in `attr`, from the `fstat` the create makes
    /// anyway) differs, and returns the attributes after that.
    fn settle_mode(
        &self,
        node: &Node,
        file: &File,
        attr: FileAttr,
        perm: Mode,
    ) -> Result<FileAttr, FsError> {
        // Set-id and sticky bits were set before the link (and a chown may have
        // cleared some since, as it does on any file): nothing to settle for those.
        if perm.bits() & 0o7000 != 0 || u32::from(attr.perm) == perm.bits() {
            return Ok(attr);
        }
        nix::sys::stat::fchmod(file, perm)?;
        Ok(self.attr(node, &super::stat_fd(&node.fd)?))
    }

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
        // A new inode: no node held it before, and nothing set an xattr on it yet.
        node.created_here();
        let attr = self.settle_mode(&node, &file, attr, perm)?;
        // The node remembers that this mount generated the key, so the first write
        // needs no re-key.
        let cipher = Arc::new(cipher);
        let pin = CipherPin::new(node.clone());
        let epoch = write_guard(&node).generated(cipher.clone());
        node.set_envelope(header.version);
        node.changed();
        let _ = node.unchanged_since_last_open();
        let fh = self.files.insert(OpenFile {
            node,
            file: Arc::new(file),
            cipher,
            epoch,
            access: Access::from_flags(flags),
            append: flags & libc::O_APPEND != 0 && !self.writeback(),
            opener: *caller,
            _pin: pin,
            direct: OnceLock::new(),
        });
        Ok((attr, fh))
    }

    /// Opens a regular file: asks the key service for the actions the flags need on the
    /// key in the file's own envelope. Returns the handle, whether the kernel may keep
    /// its cached pages, and whether set-uid/set-gid were dropped (by an `O_TRUNC` open,
    /// as `kill_priv` says), which leaves the kernel's cached mode stale.
    pub fn open(
        &self,
        caller: &Caller,
        ino: u64,
        flags: i32,
        kill_priv: KillPriv,
    ) -> Result<(u64, bool, bool), FsError> {
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
        // A read-only open uses the node's shared descriptor (kept across opens), any
        // other one a descriptor of its own.
        let reader = if access.write {
            None
        } else {
            node.shared_reader(|| self.reopen(&node, false))?
        };
        let file = match reader {
            Some(r) => r.file.clone(),
            None => Arc::new(self.reopen(&node, access.write)?),
        };
        // Before the epoch is read, and declared before the guards below.
        let pin = CipherPin::new(node.clone());
        // The header and the epoch are read together, so a re-key through another
        // handle is either already in the header or shows as a newer epoch.
        let (header, epoch) = {
            let g = read_guard(&node);
            // Never a header half-written by a `kmsfs rewrap` in another process (best
            // effort: a backing filesystem without POSIX locks only loses that). Read
            // from disk at every open, through a shared descriptor too.
            let header = {
                let _one_at_a_time = reader.map(|r| r.header_read());
                let _lock = HeaderLock::shared(&file).ok();
                FileHeader::read_from(&file)?
            };
            // A downgrade refused here: an older envelope in a volume that has none.
            self.volume.check_envelope(header.version)?;
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
        let mut dropped = false;
        if flags & libc::O_TRUNC != 0 {
            let mut g = write_guard(&node);
            let current = current_cipher(&cipher, epoch, &g).clone();
            dropped = killpriv::drop_privs(file.as_fd(), kill_priv)?;
            self.truncate_locked(caller, &node, &file, current, &mut g, 0)?;
            node.changed();
        } else if access.write && self.writeback() {
            // With the writeback cache the first write reaches this daemon only when the
            // kernel writes the page back: from its flusher, after write(2) returned,
            // and a refused re-key would surface only as EIO at close. So a writable
            // open of an empty file whose key this mount did not generate re-keys here,
            // as the opener, and a refusal is this open's EACCES.
            let mut g = write_guard(&node);
            let current = current_cipher(&cipher, epoch, &g).clone();
            self.cipher_for_sealing(caller, &node, &file, current, &mut g)?;
        }
        let keep_cache = node.unchanged_since_last_open();
        let fh = self.files.insert(OpenFile {
            node,
            file,
            cipher,
            epoch,
            access,
            append: flags & libc::O_APPEND != 0 && !self.writeback(),
            opener: *caller,
            _pin: pin,
            direct: OnceLock::new(),
        });
        Ok((fh, keep_cache, dropped))
    }

    /// Reads plaintext and hands it to `reply` (no copy into an owned buffer).
    ///
    /// With the writeback cache a write-only handle is read too: the kernel reads the
    /// rest of a page before a write that covers only part of it (its `write_begin`),
    /// through the writer's handle. The bytes go into the kernel's page cache, not to
    /// the writer: `read(2)`, `mmap` and `splice` on a write-only descriptor are refused
    /// by the kernel before any request. It is the read-modify-write this daemon does
    /// itself for a partial block without the cache, with the key the open unlocked.
    pub fn read<R>(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsError> {
        let h = self.files.get(fh)?;
        let readable = h.access.read || (h.access.write && self.writeback());
        if !readable {
            return Err(FsError::refused(libc::EBADF, "handle not open for reading"));
        }
        let direct = if size >= content::DIRECT_MIN {
            h.direct
                .get_or_init(|| {
                    content::DirectReader::open(|| self.reopen_with(&h.node, false, libc::O_DIRECT))
                })
                .as_ref()
                .map(content::DirectReader::file)
        } else {
            None
        };
        let g = read_guard(&h.node);
        content::read(&h.file, direct, h.cipher(&g), offset, size, reply)
    }

    /// Writes through a handle and gives the result to `answer` (the reply). The first
    /// write into an empty file whose key this mount did not generate re-keys it first
    /// (as the caller, see [`Self::rekey`]). Set-uid/set-gid go before the content
    /// changes, as `kill_priv` says; the answer is the count written and whether they
    /// went (the kernel's cached mode is then stale). With the writeback cache the
    /// re-key is asked as the handle's opener: the request then comes from the kernel's
    /// flusher (see [`OpenFile::opener`]). A large write's write-out
    /// ([`content::WriteOut`]) starts after the answer, still under the content lock:
    /// off the writer's round trip, and started before the next request on the file.
    pub fn write(
        &self,
        caller: &Caller,
        fh: u64,
        offset: u64,
        data: &[u8],
        kill_priv: KillPriv,
        answer: impl FnOnce(Result<(u32, bool), FsError>),
    ) {
        let h = match self.files.get(fh) {
            Ok(h) => h,
            Err(e) => return answer(Err(e)),
        };
        if !h.access.write {
            return answer(Err(FsError::refused(
                libc::EBADF,
                "handle not open for writing",
            )));
        }
        let Ok(written) = u32::try_from(data.len()) else {
            return answer(Err(FsError::refused(
                libc::EINVAL,
                "write larger than 4 GiB",
            )));
        };
        let mut g = write_guard(&h.node);
        // At most one write-out per file is left to start (as when each started before
        // its answer): a write-out that blocks holds back the next write, not the disk.
        if let Some(started) = g.write_out.take() {
            started.wait();
        }
        match self.write_locked(caller, &h, &mut g, offset, data, kill_priv) {
            Ok((dropped, write_out)) => {
                // Queued before the answer: the write-out thread then wakes on an idle
                // core, not on the one that the answer wakes the writer on.
                g.write_out = write_out.and_then(|w| w.start_later(h.file.clone()));
                answer(Ok((written, dropped)));
            }
            Err(e) => answer(Err(e)),
        }
    }

    /// [`Self::write`] under the content lock `g`: whether set-uid/set-gid went, and
    /// the write-out to start.
    fn write_locked(
        &self,
        caller: &Caller,
        h: &OpenFile,
        g: &mut ContentKey,
        offset: u64,
        data: &[u8],
        kill_priv: KillPriv,
    ) -> Result<(bool, Option<content::WriteOut>), FsError> {
        let caller = if self.writeback() { &h.opener } else { caller };
        let mut cipher = h.cipher(g).clone();
        if !data.is_empty() {
            cipher = self.cipher_for_sealing(caller, &h.node, &h.file, cipher, g)?;
        }
        let offset = if h.append {
            content::size(&h.file, &cipher)?
        } else {
            offset
        };
        // Before the content changes: a crash in between leaves the bits dropped, never
        // new content under them.
        let dropped = killpriv::drop_privs(h.file.as_fd(), kill_priv)?;
        // With the writeback cache the kernel owns mtime: it stamps it at write(2) and
        // sends it in a SETATTR of its own, which may be answered before this WRITE of
        // the same pages (the flusher sends both without waiting). The backing pwrite
        // must not move the time afterwards: it is put back, under the content lock
        // that the kernel's time updates also take (`Core::setattr`).
        let kept_mtime = if self.writeback() {
            Some(super::stat_fd(h.file.as_fd())?)
        } else {
            None
        };
        let res = content::write_then_write_out(&h.file, &cipher, offset, data);
        if let Some(st) = kept_mtime {
            nix::sys::stat::futimens(
                &h.file,
                &nix::sys::time::TimeSpec::UTIME_OMIT,
                &nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            )?;
        }
        let (_, write_out) = res?;
        h.node.changed();
        Ok((dropped, write_out))
    }

    /// `fallocate`: mode 0 grows the file (holes read as zeros); KEEP_SIZE is accepted
    /// as a no-op; punching holes is not supported (a hole must stay sealed-zero).
    /// Set-uid/set-gid go first as `kill_priv` says (the kernel drops them on any
    /// fallocate by a caller without CAP_FSETID); returns whether they went.
    pub fn fallocate(
        &self,
        caller: &Caller,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
        kill_priv: KillPriv,
    ) -> Result<bool, FsError> {
        let h = self.files.get(fh)?;
        if !h.access.write {
            return Err(FsError::refused(libc::EBADF, "handle not open for writing"));
        }
        if mode != 0 && mode != libc::FALLOC_FL_KEEP_SIZE {
            return Err(FsError::refused(libc::EOPNOTSUPP, "fallocate mode"));
        }
        let dropped = killpriv::drop_privs(h.file.as_fd(), kill_priv)?;
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
                Ok(dropped)
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(dropped),
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
                // Owner first: a `chown` clears set-id bits, so the mode is set after it.
                self.chown_new(&dir, backing.name(), caller)
                    .and_then(|()| self.exact_mode(&dir, backing.name(), mode & !umask))
                    .inspect_err(|_| self.unmake_entry(&dir, &backing, false))?;
                Ok(self.remember_child(&dir, backing.name())?.1)
            }
            _ => Err(FsError::refused(libc::EINVAL, "unknown file type")),
        }
    }
}
