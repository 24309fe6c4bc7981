//! The inode table: FUSE inode numbers ↔ backing objects.
//!
//! Each known inode holds an `O_PATH` descriptor of its backing file or directory (the
//! approach of libfuse's passthrough_hp): every operation on it goes through that
//! descriptor and `*at` calls, so renames of the node or of any ancestor, and hard links,
//! never leave a stale path behind. An `O_PATH` descriptor also pins the backing inode,
//! so its (st_dev, st_ino) cannot be reused while the node lives, which makes that pair a
//! safe key for finding an existing node (hard links share one FUSE inode).
//!
//! This module never sees plaintext or keys; it owns lookup counts and `forget`.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;

use nix::sys::stat::{FileStat, SFlag};

use crate::format::{ContentCipher, EnvelopeVersion, FileId};

use super::error::FsError;
use super::names::DirNames;
use super::sys::FileHandle;

/// The FUSE inode number of the mount's root.
pub const ROOT_INO: u64 = 1;

/// What a backing object is; kmsfs stores regular files, directories and symlinks
/// (plus FIFOs, sockets and device nodes, which carry no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl NodeKind {
    /// The kind of a backing object (`None` only for an unknown file type).
    pub fn from_stat(st: &FileStat) -> Option<Self> {
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        match fmt {
            SFlag::S_IFREG => Some(NodeKind::File),
            SFlag::S_IFDIR => Some(NodeKind::Directory),
            SFlag::S_IFLNK => Some(NodeKind::Symlink),
            SFlag::S_IFIFO => Some(NodeKind::Fifo),
            SFlag::S_IFSOCK => Some(NodeKind::Socket),
            SFlag::S_IFCHR => Some(NodeKind::CharDevice),
            SFlag::S_IFBLK => Some(NodeKind::BlockDevice),
            _ => None,
        }
    }
}

/// The content key a regular file's node has been given by this mount, guarded by the
/// node's content lock.
///
/// Each open handle holds the cipher its own open unlocked, tagged with the `epoch` it
/// saw. A re-key (truncation to zero, or the first write into an empty file whose key
/// this mount did not generate) writes a new header and bumps `epoch` under the write
/// lock; a handle whose epoch is older then uses `cipher` instead of its own, so every
/// handle seals and opens under the key in the header on disk.
///
/// `cipher` is only needed while something that read `epoch` may still use it: an open
/// handle, or an open or truncation in progress, each holding a [`CipherPin`]. When the
/// last pin goes, the cipher (over 500 bytes of key schedule) is dropped: the kernel keeps
/// the nodes of closed files for as long as it likes (every file an untar created), and
/// the next open reads the key from the header on disk anyway. Which key this mount
/// generated is kept as its file id alone.
#[derive(Debug, Default)]
pub struct ContentKey {
    /// Bumped by every key this mount generates for the file (create and re-key).
    pub epoch: u64,
    /// The cipher of the key this mount generated last for the file, while pinned;
    /// `None` if it generated none (the file's key came from its header on disk) or
    /// nothing pins it any more.
    pub cipher: Option<Arc<ContentCipher>>,
    /// The file id of the key this mount generated last for the file (kept after
    /// `cipher` is dropped).
    pub generated: Option<FileId>,
    /// The write-out the last large write left to the write-out thread; the next write
    /// waits until it started (`Core::write`).
    pub write_out: Option<super::content::Started>,
}

impl ContentKey {
    /// Records a key this mount just generated (and wrote into the header): bumps the
    /// epoch, which it returns. The caller holds a [`CipherPin`] of the node.
    pub fn generated(&mut self, cipher: Arc<ContentCipher>) -> u64 {
        self.epoch += 1;
        self.generated = Some(*cipher.file_id());
        self.cipher = Some(cipher);
        self.epoch
    }

    /// True when `cipher` holds the key this mount generated last for the file.
    pub fn is_generated(&self, cipher: &ContentCipher) -> bool {
        self.generated.as_ref() == Some(cipher.file_id())
    }
}

/// Keeps a node's [`ContentKey::cipher`] alive: taken before reading the epoch, held for
/// as long as the epoch read may be compared (an open handle holds one for its life).
#[derive(Debug)]
pub struct CipherPin<N: Deref<Target = Node>>(N);

impl<N: Deref<Target = Node>> CipherPin<N> {
    pub fn new(node: N) -> Self {
        node.pins.fetch_add(1, Ordering::AcqRel);
        CipherPin(node)
    }
}

impl<N: Deref<Target = Node>> Drop for CipherPin<N> {
    fn drop(&mut self) {
        // Under the write lock: no holder of the lock can be between reading `epoch`
        // and using `cipher` without a pin, so the last pin may drop the cipher. A pin
        // taken meanwhile (without the lock) reads the epoch only afterwards, together
        // with the header on disk, which already holds the newest key.
        let mut key = self.0.content.write().unwrap_or_else(|p| p.into_inner());
        if self.0.pins.fetch_sub(1, Ordering::AcqRel) == 1 {
            key.cipher = None;
        }
    }
}

/// One inode the kernel knows about.
#[derive(Debug)]
pub struct Node {
    pub ino: u64,
    pub kind: NodeKind,
    /// (st_dev, st_ino) of the backing object.
    backing: (u64, u64),
    /// `O_PATH | O_NOFOLLOW` descriptor of the backing object.
    pub fd: OwnedFd,
    /// Serializes content changes (write, truncate, fallocate, re-key) against each
    /// other and against reads, so that a read-modify-write of a block range is never
    /// interleaved with another and no reader sees a block half rewritten or a header
    /// being replaced. Reads share it. It guards the key this mount generated.
    pub content: RwLock<ContentKey>,
    /// Regular files: the envelope version last seen in the header (0 = not read yet),
    /// for the size arithmetic of `stat`, which does not open the file each time.
    envelope: AtomicU8,
    /// Bumped by every content change made through this mount.
    pub version: AtomicU64,
    /// The value of `version` when the file was last opened (for `keep_cache`).
    pub version_at_open: AtomicU64,
    /// Directories only: the directory's id and name cipher, read on first use.
    pub dir: OnceLock<Arc<DirNames>>,
    /// Live [`CipherPin`]s of this node.
    pins: AtomicU32,
    /// A regular file this mount created, with no extended attribute set or removed
    /// through the mount since: its backing file has no `security.capability` (a new
    /// inode never inherits one, unlike ACLs or security labels). Lets the GETXATTR the
    /// kernel sends for it before the first write into every new file be answered
    /// without a system call. Only ever goes from true to false.
    created_without_caps: AtomicBool,
    /// Regular files: the backing object's file handle, learnt at the first reopen
    /// (`None` inside: the object has none usable here), so later opens find the inode
    /// without walking `/proc/self/fd` (see `Core::reopen`). Boxed: most nodes are never
    /// opened, and a node stays small.
    pub handle: OnceLock<Option<Box<FileHandle>>>,
    /// Regular files: a read-only descriptor of the backing object, opened at the first
    /// read-only open and shared by every later one (see [`SharedReader`]).
    reader: OnceLock<Box<SharedReader>>,
}

/// A read-only descriptor of a regular file's backing object that the file's node keeps
/// from its first read-only open until the kernel forgets the node, so that later
/// read-only opens skip `open_by_handle_at` and their releases skip `close` (measured:
/// docs/PERFORMANCE.md, "Round 10: open() through the mount").
///
/// Only a descriptor is shared, never a permission: every open still reads the header
/// from disk through it and asks the key service, which authorizes and audits that open,
/// and each handle keeps the cipher its own open unlocked. The descriptor names the
/// node's own inode (opened like [`Core`](super::core::Core)'s reopen, by handle, which
/// the node's `O_PATH` descriptor already pins), so it reaches exactly what a fresh
/// descriptor would; reads are positional, so handles sharing it never move each other.
///
/// The header lock a read takes (`HeaderLock`, an OFD lock) belongs to the open file
/// description, which is now shared: two opens holding it at once would share one lock,
/// and the first to unlock would unlock the other's read too. `header_read` makes the
/// opens of one node take it one at a time.
#[derive(Debug)]
pub struct SharedReader {
    pub file: Arc<File>,
    header_read: Mutex<()>,
}

/// Shared readers alive, over all nodes of all mounts of this process.
static SHARED_READERS: AtomicUsize = AtomicUsize::new(0);

/// Shared readers kept at most: past it an open gets a descriptor of its own, closed at
/// its release, as before. The kernel keeps the nodes of closed files as long as it
/// likes; this bounds the descriptors they hold (each node also holds its `O_PATH` one).
pub const MAX_SHARED_READERS: usize = 4096;

/// The shared readers this process keeps at most: [`MAX_SHARED_READERS`], or an eighth
/// of the descriptor limit (read once, after the mount raised it) where that is lower,
/// so that a low `RLIMIT_NOFILE` is left to the nodes' own descriptors and to the opens
/// that need a descriptor of their own.
fn shared_readers_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| MAX_SHARED_READERS.min(super::sys::descriptor_limit() / 8))
}

/// One count of [`SHARED_READERS`] not yet owned by a [`SharedReader`]: given back
/// when dropped.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        SHARED_READERS.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SharedReader {
    /// Serializes a header read through the shared descriptor with every other one of
    /// the same node (see above).
    pub fn header_read(&self) -> MutexGuard<'_, ()> {
        self.header_read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SharedReader {
    fn drop(&mut self) {
        SHARED_READERS.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Node {
    fn new(ino: u64, kind: NodeKind, backing: (u64, u64), fd: OwnedFd) -> Self {
        Node {
            ino,
            kind,
            backing,
            fd,
            content: RwLock::new(ContentKey::default()),
            envelope: AtomicU8::new(0),
            version: AtomicU64::new(0),
            version_at_open: AtomicU64::new(u64::MAX),
            dir: OnceLock::new(),
            pins: AtomicU32::new(0),
            created_without_caps: AtomicBool::new(false),
            handle: OnceLock::new(),
            reader: OnceLock::new(),
        }
    }

    /// This regular file's [`SharedReader`]: the one it has, else one made from the
    /// descriptor `open` returns, unless [`MAX_SHARED_READERS`] (fewer under a low
    /// descriptor limit) are alive: then `None`, and the caller opens a descriptor of
    /// its own.
    pub fn shared_reader(
        &self,
        open: impl FnOnce() -> Result<File, FsError>,
    ) -> Result<Option<&SharedReader>, FsError> {
        if let Some(r) = self.reader.get() {
            return Ok(Some(r));
        }
        if SHARED_READERS.fetch_add(1, Ordering::AcqRel) >= shared_readers_cap() {
            SHARED_READERS.fetch_sub(1, Ordering::AcqRel);
            return Ok(None);
        }
        // Counted from here on: dropped (with the count) if `open` fails or another open
        // of the node set one first.
        let counted = Counted;
        let file = open()?;
        std::mem::forget(counted);
        let made = Box::new(SharedReader {
            file: Arc::new(file),
            header_read: Mutex::new(()),
        });
        // Another open of the node may have set one meanwhile: `made` is then dropped.
        let _ = self.reader.set(made);
        Ok(self.reader.get().map(|r| &**r))
    }

    /// Records that this mount just created the file (see `created_without_caps`).
    pub fn created_here(&self) {
        self.created_without_caps.store(true, Ordering::Release);
    }

    /// Called before any extended attribute of the backing object is set or removed:
    /// from then on `security.capability` is read from the backing file.
    pub fn xattrs_changing(&self) {
        self.created_without_caps.store(false, Ordering::Release);
    }

    /// True when the backing file is known to have no `security.capability`.
    pub fn known_without_caps(&self) -> bool {
        self.created_without_caps.load(Ordering::Acquire)
    }

    /// The envelope version last recorded for this file, if any.
    pub fn envelope(&self) -> Option<EnvelopeVersion> {
        let n = self.envelope.load(Ordering::Acquire);
        EnvelopeVersion::from_number(n.into())
    }

    /// Records the envelope version read from (or written into) the file's header.
    pub fn set_envelope(&self, version: EnvelopeVersion) {
        // Version numbers are small (1, 2); a number that does not fit is not cached.
        if let Ok(n) = u8::try_from(version.number()) {
            self.envelope.store(n, Ordering::Release);
        }
    }

    /// (st_dev, st_ino) of the backing object.
    pub fn backing(&self) -> (u64, u64) {
        self.backing
    }

    /// Records a content change (so the next open drops the kernel's page cache).
    pub fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// True when nothing changed the content since the previous open, so the kernel may
    /// keep its cached pages; records this open.
    pub fn unchanged_since_last_open(&self) -> bool {
        let now = self.version.load(Ordering::Acquire);
        self.version_at_open.swap(now, Ordering::AcqRel) == now
    }
}

struct Entry {
    node: Arc<Node>,
    lookups: u64,
}

struct Inner {
    nodes: HashMap<u64, Entry>,
    by_backing: HashMap<(u64, u64), u64>,
    /// The backing root's device: objects on it get their backing inode number.
    root_dev: u64,
    /// Next number for objects whose backing inode number cannot be used.
    next_ino: u64,
    /// How many of `nodes` are symlinks (see [`InodeTable::holds_symlinks`]).
    symlinks: usize,
}

/// First FUSE inode number handed out from the counter, for backing objects on another
/// device than the root (a mount inside the backing directory) or whose inode number is
/// 1 (the FUSE root's). Backing inode numbers below this are used as they are.
const COUNTER_INO_BASE: u64 = 1 << 63;

impl Inner {
    /// The FUSE inode number (also `st_ino`) of a backing object the table does not hold.
    /// Its backing inode number where possible, so that the number is the same every
    /// time the object is looked up again after the kernel forgot it: tools that
    /// compare `st_ino` (git's index, rsync, backup tools, `find -inum`) then see an
    /// unchanged file, and git does not reread every file after the kernel evicted its
    /// inodes. Unique among live nodes: the table holds an `O_PATH` descriptor to each
    /// object it knows, so no other object on that device can have the same number
    /// until the kernel has forgotten the node and the node is gone.
    fn number_for(&mut self, (dev, backing_ino): (u64, u64)) -> u64 {
        if dev == self.root_dev
            && backing_ino > ROOT_INO
            && backing_ino < COUNTER_INO_BASE
            && !self.nodes.contains_key(&backing_ino)
        {
            return backing_ino;
        }
        loop {
            let ino = self.next_ino;
            self.next_ino = self.next_ino.wrapping_add(1).max(COUNTER_INO_BASE);
            if !self.nodes.contains_key(&ino) {
                return ino;
            }
        }
    }
}

/// All inodes the kernel currently holds references to.
pub struct InodeTable {
    inner: Mutex<Inner>,
    /// Where `forget` sends the nodes it removed, for [`reaper`] to drop; `None` if
    /// the thread could not be started (then they are dropped in `forget`).
    reaper: Option<SyncSender<Arc<Node>>>,
    /// The reaper thread, joined on drop.
    reaper_thread: Option<JoinHandle<()>>,
}

impl Drop for InodeTable {
    /// Waits until the reaper has closed every node it was sent: whoever drops the
    /// table (the end of a mount) may then count on no descriptor of the backing
    /// directory being open any more (e.g. to unmount the file system under it).
    fn drop(&mut self) {
        drop(self.reaper.take());
        if let Some(thread) = self.reaper_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forgotten nodes waiting for the reaper; past this many, `forget` drops them itself.
const REAPER_QUEUE: usize = 8192;
/// How much nicer than the daemon the reaper runs.
const REAPER_NICE: libc::c_int = 10;

/// Starts the thread that drops forgotten nodes. The last reference to a node closes its
/// `O_PATH` descriptor, and for a file unlinked meanwhile that close is where the
/// backing file system frees the inode (on ext4: truncate, free the blocks, take it off
/// the orphan list, all journaled; about 30 µs). Done by the FUSE worker that read the
/// FORGET, it competed for the CPU with the workers answering the next UNLINKs (`rm
/// -rf`: one FORGET per file). The reaper runs at a lower priority, so the requests a
/// caller waits for come first; nothing waits for the close itself (the kernel sends
/// FORGET without expecting an answer, and the table no longer names the node). The
/// thread ends when the table is dropped, after closing what it was sent.
fn reaper() -> Option<(SyncSender<Arc<Node>>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel::<Arc<Node>>(REAPER_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("kmsfs-reaper".to_string())
        .spawn(move || {
            lower_own_priority(REAPER_NICE);
            for node in rx {
                drop(node);
            }
        });
    match spawned {
        Ok(thread) => Some((tx, thread)),
        Err(e) => {
            log::warn!("cannot start the reaper thread ({e}): forgotten nodes close inline");
            None
        }
    }
}

/// Raises the calling thread's nice value by `by` (Linux: `setpriority` of a thread id
/// acts on that thread alone). Best effort.
fn lower_own_priority(by: libc::c_int) {
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    // getpriority answers -1 for nice -1 as well as for an error: errno tells them apart.
    nix::errno::Errno::clear();
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if now == -1 && nix::errno::Errno::last_raw() != 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19)) };
}

impl InodeTable {
    /// A table holding only the root, whose lookup count never drops to zero.
    pub fn new(root_fd: OwnedFd, root_stat: &FileStat) -> Self {
        let mut nodes = HashMap::new();
        let mut by_backing = HashMap::new();
        let id = backing_id(root_stat);
        by_backing.insert(id, ROOT_INO);
        nodes.insert(
            ROOT_INO,
            Entry {
                node: Arc::new(Node::new(ROOT_INO, NodeKind::Directory, id, root_fd)),
                lookups: 1,
            },
        );
        let (tx, thread) = reaper().unzip();
        InodeTable {
            inner: Mutex::new(Inner {
                nodes,
                by_backing,
                root_dev: id.0,
                next_ino: COUNTER_INO_BASE,
                symlinks: 0,
            }),
            reaper: tx,
            reaper_thread: thread,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a handler panicked mid-update; the maps themselves are
        // still consistent (every update is a single insert/remove), so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node for `ino`; `ESTALE` if the kernel names an inode it already forgot.
    pub fn get(&self, ino: u64) -> Result<Arc<Node>, FsError> {
        self.lock()
            .nodes
            .get(&ino)
            .map(|e| e.node.clone())
            .ok_or_else(|| FsError::refused(libc::ESTALE, "unknown inode"))
    }

    /// Registers one kernel lookup of the backing object behind `fd` (whose `stat` is
    /// `st`): returns the existing node for that object (dropping `fd`) or a new one.
    pub fn remember(&self, fd: OwnedFd, st: &FileStat) -> Result<Arc<Node>, FsError> {
        let kind = NodeKind::from_stat(st)
            .ok_or_else(|| FsError::refused(libc::EIO, "unknown file type"))?;
        let id = backing_id(st);
        let mut inner = self.lock();
        if let Some(&ino) = inner.by_backing.get(&id) {
            if let Some(entry) = inner.nodes.get_mut(&ino) {
                entry.lookups += 1;
                return Ok(entry.node.clone());
            }
        }
        let ino = inner.number_for(id);
        let node = Arc::new(Node::new(ino, kind, id, fd));
        inner.nodes.insert(
            ino,
            Entry {
                node: node.clone(),
                lookups: 1,
            },
        );
        inner.by_backing.insert(id, ino);
        if kind == NodeKind::Symlink {
            inner.symlinks += 1;
        }
        Ok(node)
    }

    /// Whether the table holds any symlink node. The kernel holds the inode of every
    /// name it sends an UNLINK for (it looked the name up first, and a held inode is
    /// never forgotten), so while this is false the name being unlinked is known not to
    /// be a symlink (as far as this mount has seen its backing object: a kind never
    /// changes, and a backing name replaced behind the mount's back is not supported).
    pub fn holds_symlinks(&self) -> bool {
        self.lock().symlinks > 0
    }

    /// Whether the table holds a node for backing object `id`. A hint only (the node may
    /// be forgotten right after): [`Self::remember_known`] decides.
    pub fn holds(&self, id: (u64, u64)) -> bool {
        self.lock().by_backing.contains_key(&id)
    }

    /// Registers one more kernel lookup of the node already held for backing object `id`
    /// and returns it, or `None` if the table holds none (never held, or forgotten
    /// meanwhile). The caller knows a name leads to `id` now (an `fstatat` of the name,
    /// or a listing the kernel's directory lock keeps current), so it needs no
    /// descriptor of its own: the node's descriptor pins the object. The count is raised
    /// under the table's lock, so a `forget` cannot remove the node between the check
    /// and the count.
    pub fn remember_known(&self, id: (u64, u64)) -> Option<Arc<Node>> {
        let mut inner = self.lock();
        // Most nodes are numbered by their backing inode number (`number_for`): one
        // probe finds them; the others (another device, a number taken) by backing id.
        if let Some(entry) = inner.nodes.get_mut(&id.1) {
            if entry.node.backing == id {
                entry.lookups += 1;
                return Some(entry.node.clone());
            }
        }
        let ino = *inner.by_backing.get(&id)?;
        let entry = inner.nodes.get_mut(&ino)?;
        entry.lookups += 1;
        Some(entry.node.clone())
    }

    /// Number of nodes held, the root included (for tests: every lookup the kernel
    /// was given must be forgotten again, so this returns to its baseline once the
    /// kernel drops its inodes).
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    /// The kernel dropped `n` references; the node (and its descriptor) goes away when
    /// none remain and no open handle holds it.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let removed = {
            let mut inner = self.lock();
            let remove = match inner.nodes.get_mut(&ino) {
                Some(entry) => {
                    entry.lookups = entry.lookups.saturating_sub(n);
                    entry.lookups == 0
                }
                None => false,
            };
            let removed = if remove {
                inner.nodes.remove(&ino)
            } else {
                None
            };
            if let Some(entry) = &removed {
                inner.by_backing.remove(&entry.node.backing);
                if entry.node.kind == NodeKind::Symlink {
                    inner.symlinks = inner.symlinks.saturating_sub(1);
                }
            }
            removed
        };
        // Dropped after the table's lock is released, and by the reaper where it runs:
        // the last reference closes the node's descriptor, and the close of a file
        // unlinked meanwhile is where the backing file system frees its inode (on ext4,
        // evict, truncate and a journal update: tens of µs, and it may sleep). Every
        // lookup, create and unlink needs the table's lock, so under it that close
        // stalled them all (`rm -rf`: the workers then waited on each other,
        // docs/PERFORMANCE.md round 7); see `reaper` for why not in the worker either.
        if let (Some(entry), Some(reaper)) = (removed, &self.reaper) {
            // Full (or the thread gone): closed here, as without a reaper.
            let _ = reaper.try_send(entry.node);
        }
    }
}

/// The identity of a backing object.
pub fn backing_id(st: &FileStat) -> (u64, u64) {
    #[allow(clippy::unnecessary_cast)] // st_dev/st_ino are u64 on some targets only
    (st.st_dev as u64, st.st_ino as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode};

    fn path_fd(p: &std::path::Path) -> (OwnedFd, FileStat) {
        let fd = open(
            p,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let st = fstat(&fd).unwrap();
        (fd, st)
    }

    #[test]
    fn remember_known_counts_one_lookup_of_a_held_node_and_forget_balances_it() {
        let dir = tempfile::tempdir().unwrap();
        let (root_fd, root_st) = path_fd(dir.path());
        let table = InodeTable::new(root_fd, &root_st);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let (fd, st) = path_fd(&file);
        let id = backing_id(&st);
        assert!(!table.holds(id));
        assert!(table.remember_known(id).is_none(), "never held");

        let node = table.remember(fd, &st).unwrap();
        assert!(table.holds(id));
        let again = table.remember_known(id).unwrap();
        assert!(Arc::ptr_eq(&node, &again));
        assert_eq!(table.node_count(), 2);
        // Two lookups: the node stays until both are forgotten.
        table.forget(node.ino, 1);
        assert!(table.get(node.ino).is_ok());
        table.forget(node.ino, 1);
        assert!(table.get(node.ino).is_err());
        assert!(!table.holds(id));
        assert!(table.remember_known(id).is_none(), "forgotten");
        assert_eq!(table.node_count(), 1);
    }

    #[test]
    fn remember_known_finds_a_node_numbered_from_the_counter_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let (root_fd, root_st) = path_fd(dir.path());
        let table = InodeTable::new(root_fd, &root_st);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let (fd, st) = path_fd(&file);
        let id = backing_id(&st);
        // Another device's object with the same inode number: numbered from the counter.
        let (fd2, st2) = path_fd(&file);
        let mut other = st2;
        other.st_dev = other.st_dev.wrapping_add(1);
        let first = table.remember(fd, &st).unwrap();
        let second = table.remember(fd2, &other).unwrap();
        assert_eq!(first.ino, id.1);
        assert!(second.ino >= COUNTER_INO_BASE);
        let again = table.remember_known(backing_id(&other)).unwrap();
        assert!(Arc::ptr_eq(&again, &second));
        let again = table.remember_known(id).unwrap();
        assert!(Arc::ptr_eq(&again, &first));
        assert!(table.remember_known((id.0, id.1 + 1)).is_none());
        table.forget(second.ino, 2);
        assert!(table.remember_known(backing_id(&other)).is_none());
        assert!(Arc::ptr_eq(&table.remember_known(id).unwrap(), &first));
    }
}
