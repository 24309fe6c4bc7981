//! Change notification for the files every decision depends on (`state.json`, the
//! principals file, the identity policy files it names), so that a decision with nothing
//! changed costs one `epoll_wait` instead of a path `statx` per file.
//!
//! Why it keeps "any change by any process is seen by the next decision": the kernel
//! queues an inotify event inside the writer's own system call (rename, write, chmod,
//! unlink), before that call returns. A decision that starts after the writer's call
//! returned therefore finds the event in the queue, or finds the generation counter
//! already bumped by the thread that read it (reading and bumping happen under one
//! lock, so no thread can see an empty queue while another holds an unpublished event).
//!
//! What is watched, per file of interest (paths taken as given, never through a symlink):
//! the file's inode (content and attribute changes, also through another hard link), its
//! directory (the name created, deleted, renamed away or renamed over: how `state.json`
//! and editors replace files) and every ancestor directory up to `/` (the next path
//! component renamed, or the directory itself moved: how `kmsfs restore` exchanges a store
//! directory). The mount table is polled too (`/proc/self/mountinfo`), since a mount over
//! a path component changes what the path names without any inotify event.
//!
//! Any event that may concern a file of interest, a queue overflow, a watch removed by
//! the kernel or a mount-table change counts as a change: the caller then runs the full
//! `statx` check (which stays the reference) and the watches are rebuilt from the paths.
//! Where inotify cannot be trusted the watch is off and every decision runs the full
//! check, as before: a relative path or one through a symlink (a link's target can change
//! without an event on the link), a file system outside [`local_fs_type`] (inotify does
//! not see other hosts' writes to NFS, SMB, FUSE, 9p, ...), or any failure to set up.
//!
//! This module never reads the files and never decides whether a change matters: it
//! only says "maybe changed", and callers must then check as if it had.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Events on a file of interest: all count.
const FILE_MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_DONT_FOLLOW;
/// Events on the directory holding a file of interest: name events count when they name
/// the file. Not IN_MODIFY: it would report every audit-log append in the store.
const LEAF_DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;
/// Events on an ancestor directory: the next component can only be replaced by a rename
/// (a directory that still holds our file cannot be removed), or the directory moved.
const ANCESTOR_MASK: u32 = libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// What one watch descriptor stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A file of interest: every event on it counts.
    File,
    /// A directory: events naming one of these entries count, and so does every event
    /// about the directory itself (moved, deleted, unmounted, watch removed).
    Dir(Vec<OsString>),
}

/// The watch set: each path with its mask and role. A path can be a leaf for one file
/// and an ancestor for another; masks and names are merged.
type Plan = BTreeMap<PathBuf, (u32, Role)>;

/// Why the watch is off (logged once; every decision then runs the full check).
#[derive(Debug, thiserror::Error)]
pub(super) enum WatchOff {
    #[error("{0} is not an absolute path without symlinks, `.` or `..`")]
    NotCanonical(PathBuf),
    #[error("{path} is on a file system of type {f_type:#x}, where inotify may miss other hosts' writes")]
    NotLocal { path: PathBuf, f_type: i64 },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WatchOff {
    let what = what.into();
    move |source| WatchOff::Sys { what, source }
}

/// Statfs magic numbers of local file systems, where every change goes through this
/// kernel's VFS and so raises inotify events. Network and user-space file systems (NFS,
/// SMB/CIFS, FUSE, 9p, Ceph, ...) and stacked ones (overlayfs: a change made to a lower
/// or upper directory directly is not reported on the overlay) are left out on purpose.
pub(super) fn local_fs_type(f_type: i64) -> bool {
    const LOCAL: &[i64] = &[
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // f2fs
        0x8584_58F6, // ramfs
        0x3153_464A, // jfs
        0x5265_4973, // reiserfs
        0xCA45_1A4E, // bcachefs
    ];
    LOCAL.contains(&f_type)
}

struct Active {
    inotify: OwnedFd,
    /// `/proc/self/mountinfo`: POLLPRI when the mount table changed since the last poll.
    /// None only in unit tests, which must not see other processes' mounts. Only held
    /// open here (closing it would take it out of `epoll`'s set); `epoll` reports it.
    _mounts: Option<File>,
    /// An epoll instance holding both descriptors above (level-triggered), so that a
    /// decision with nothing changed costs one `epoll_wait` that finds the ready list
    /// empty, instead of a `poll(2)` that asks both files (about 0.35 µs less per open).
    /// A writer's event is put on the ready list by the wake-up inside the writer's own
    /// system call (the inotify queue's and the mount namespace's wait queues call
    /// epoll's callback synchronously), so "a change is seen by the next decision" holds
    /// as with `poll(2)`; readiness is then confirmed by asking the file, as `poll` does.
    epoll: OwnedFd,
    roles: BTreeMap<i32, Role>,
}

/// The epoll tokens of [`Active`]'s two descriptors.
const TOKEN_INOTIFY: u64 = 0;
const TOKEN_MOUNTS: u64 = 1;

enum Mode {
    /// Not set up yet: done at the first poll, so that a one-shot command never pays.
    NotYet,
    Active(Active),
    Off,
}

struct Inner {
    mode: Mode,
    /// Files whose identity the store check compares (`state.json`).
    store_files: Vec<PathBuf>,
    /// The principals file and the identity policy files it names.
    principal_files: Vec<PathBuf>,
    watch_mounts: bool,
}

/// One per [`Service`](super::Service): the generation counter of "maybe changed".
pub(super) struct ChangeWatch {
    inner: Mutex<Inner>,
    /// Bumped (under `inner`'s lock) whenever something may have changed. Starts at 1,
    /// and every [`Checked`] at 0, so the first decision after the watches exist runs a
    /// full check: the identities compared later are taken after the watches were added.
    changes: AtomicU64,
    /// Full checks run by the callers (for tests and diagnostics).
    full_checks: AtomicU64,
}

/// The generation a caller's last full check covered.
#[derive(Default)]
pub(super) struct Checked(AtomicU64);

impl Checked {
    /// Whether a full check that started after the poll that returned `seen` already
    /// ran: generations only grow, and a full check is marked with the generation its
    /// caller polled before checking.
    pub(super) fn covers(&self, seen: Option<u64>) -> bool {
        seen.is_some_and(|g| self.0.load(Ordering::Acquire) >= g)
    }

    /// Marks a full check done after polling `seen`.
    pub(super) fn mark(&self, seen: Option<u64>) {
        if let Some(g) = seen {
            self.0.fetch_max(g, Ordering::AcqRel);
        }
    }
}

impl ChangeWatch {
    pub(super) fn new(store_files: Vec<PathBuf>, principal_files: Vec<PathBuf>) -> Self {
        ChangeWatch {
            inner: Mutex::new(Inner {
                mode: Mode::NotYet,
                store_files,
                principal_files,
                watch_mounts: true,
            }),
            changes: AtomicU64::new(1),
            full_checks: AtomicU64::new(0),
        }
    }

    /// Without the mount table: for unit tests that assert "no change" while other
    /// processes on the machine mount and unmount.
    #[cfg(test)]
    fn without_mount_table(store_files: Vec<PathBuf>, principal_files: Vec<PathBuf>) -> Self {
        let w = Self::new(store_files, principal_files);
        w.lock().watch_mounts = false;
        w
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is replaced whole, so a panic elsewhere cannot leave it torn.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current generation, after taking in every event queued so far; `None` when
    /// the watch is off (the caller must run its full check).
    pub(super) fn poll(&self) -> Option<u64> {
        let mut inner = self.lock();
        let changed = match &mut inner.mode {
            Mode::Off => return None,
            Mode::NotYet => true,
            Mode::Active(a) => a.take_events(),
        };
        if changed {
            if let Err(why) = inner.rearm() {
                log::info!("change checks by stat from now on: {why}");
                inner.mode = Mode::Off;
                return None;
            }
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        Some(self.changes.load(Ordering::Acquire))
    }

    /// Replaces the principals' files (after a reload named other identity policy
    /// files). If the set changed, the next decision runs a full check with the new
    /// watches in place, so an edit between the reload and the new watch is not missed.
    pub(super) fn set_principal_files(&self, files: Vec<PathBuf>) {
        let mut inner = self.lock();
        if inner.principal_files == files {
            return;
        }
        inner.principal_files = files;
        if matches!(inner.mode, Mode::Active(_)) {
            if let Err(why) = inner.rearm() {
                log::info!("change checks by stat from now on: {why}");
                inner.mode = Mode::Off;
            }
        }
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn count_full_check(&self) {
        self.full_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether inotify is in use (set up and not fallen back), and the full checks run.
    pub(super) fn stats(&self) -> (bool, u64) {
        let active = matches!(self.lock().mode, Mode::Active(_));
        (active, self.full_checks.load(Ordering::Relaxed))
    }
}

impl Inner {
    /// (Re)builds the watches from the paths. Watches are added from `/` down, then the
    /// paths are verified: a component swapped after its parent's watch exists raises an
    /// event, one swapped before is caught by the verification.
    fn rearm(&mut self) -> Result<(), WatchOff> {
        let files: Vec<PathBuf> = self
            .store_files
            .iter()
            .chain(self.principal_files.iter())
            .cloned()
            .collect();
        let plan = plan(&files)?;
        let mut active = match std::mem::replace(&mut self.mode, Mode::Off) {
            Mode::Active(a) => a,
            Mode::NotYet | Mode::Off => Active::new(self.watch_mounts)?,
        };
        let mut roles: BTreeMap<i32, Role> = BTreeMap::new();
        for (path, (mask, role)) in &plan {
            let wd = match add_watch(&active.inotify, path, *mask) {
                Ok(wd) => wd,
                // An absent file: its directory's watch reports its creation.
                Err(e) if *role == Role::File && e.raw_os_error() == Some(libc::ENOENT) => {
                    continue;
                }
                Err(e) => return Err(sys(format!("inotify watch on {}", path.display()))(e)),
            };
            merge(&mut roles, wd, role.clone());
        }
        for (path, (_, role)) in &plan {
            verify(path, role)?;
        }
        for old in active.roles.keys() {
            if !roles.contains_key(old) {
                // Its IN_IGNORED event names a descriptor no longer known: skipped.
                // SAFETY: plain system call on a descriptor this struct owns.
                unsafe { libc::inotify_rm_watch(active.inotify.as_raw_fd(), *old) };
            }
        }
        active.roles = roles;
        self.mode = Mode::Active(active);
        Ok(())
    }
}

impl Active {
    fn new(watch_mounts: bool) -> Result<Self, WatchOff> {
        // SAFETY: plain system call; the descriptor is owned at once.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(sys("inotify_init1")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let mounts = if watch_mounts {
            Some(File::open("/proc/self/mountinfo").map_err(sys("open /proc/self/mountinfo"))?)
        } else {
            None
        };
        // SAFETY: plain system call; the descriptor is owned at once.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(sys("epoll_create1")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        epoll_add(&epoll, inotify.as_raw_fd(), libc::EPOLLIN, TOKEN_INOTIFY)
            .map_err(sys("epoll_ctl (inotify)"))?;
        if let Some(m) = &mounts {
            epoll_add(&epoll, m.as_raw_fd(), libc::EPOLLPRI, TOKEN_MOUNTS)
                .map_err(sys("epoll_ctl (/proc/self/mountinfo)"))?;
        }
        Ok(Active {
            inotify,
            _mounts: mounts,
            epoll,
            roles: BTreeMap::new(),
        })
    }

    /// Whether anything that may concern a file of interest happened since the last
    /// call: one `epoll_wait` (no timeout) when nothing did.
    fn take_events(&mut self) -> bool {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // SAFETY: `ready` is a valid, writable array of two events for the call.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), ready.as_mut_ptr(), 2, 0) };
        if n == 0 {
            return false;
        }
        // An error (even EINTR): count as changed.
        let Ok(n) = usize::try_from(n) else {
            self.drain();
            return true;
        };
        for ev in ready.iter().take(n) {
            // Copied out: the struct is packed on x86-64.
            let (token, events) = (ev.u64, ev.events);
            if token == TOKEN_MOUNTS {
                // A mount-table change.
                self.drain();
                return true;
            }
            // An error or hang-up of the inotify descriptor.
            if events & !(libc::EPOLLIN as u32) != 0 {
                return true;
            }
        }
        // The inotify queue has events: whether one may concern a file of interest.
        self.drain()
    }

    /// Reads the whole queue; whether an event may concern a file of interest.
    fn drain(&mut self) -> bool {
        // Room for many events; one event is at most 16 + NAME_MAX + 1 bytes.
        let mut buf = [0u8; 8192];
        let mut changed = false;
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n =
                unsafe { libc::read(self.inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => changed,
                    Some(libc::EINTR) => continue,
                    _ => true,
                };
            }
            let Ok(n) = usize::try_from(n) else {
                return true;
            };
            if n == 0 {
                return true;
            }
            changed |= events_concern(buf.get(..n).unwrap_or_default(), &self.roles);
        }
    }
}

/// Adds `fd` to the epoll instance, level-triggered, for `events`, tagged with `token`.
fn epoll_add(epoll: &OwnedFd, fd: i32, events: i32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open; `ev` is read during the call only.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether any event in `buf` (what one `read` of an inotify descriptor returned) may
/// concern a file of interest, given what each watch descriptor stands for.
fn events_concern(buf: &[u8], roles: &BTreeMap<i32, Role>) -> bool {
    const HEADER: usize = 16; // wd, mask, cookie, len
    let mut rest = buf;
    let mut changed = false;
    while !rest.is_empty() {
        let field = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
        let (Some(wd), Some(mask), Some(len)) = (field(0), field(4), field(12)) else {
            return true; // a torn event cannot be trusted: count it
        };
        let wd = i32::from_ne_bytes(wd);
        let mask = u32::from_ne_bytes(mask);
        let len = usize::try_from(u32::from_ne_bytes(len)).unwrap_or(usize::MAX);
        let Some(name) = HEADER
            .checked_add(len)
            .and_then(|end| rest.get(HEADER..end))
        else {
            return true;
        };
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        changed |= event_concerns(wd, mask, name, roles);
        rest = rest.get(HEADER + len..).unwrap_or_default();
    }
    changed
}

fn event_concerns(wd: i32, mask: u32, name: &[u8], roles: &BTreeMap<i32, Role>) -> bool {
    if mask & libc::IN_Q_OVERFLOW != 0 {
        return true;
    }
    match roles.get(&wd) {
        // A descriptor removed by a rebuild: its inode is no longer on our paths.
        None => false,
        Some(Role::File) => true,
        // An event about the directory itself (moved, deleted, unmounted, watch gone).
        Some(Role::Dir(_)) if name.is_empty() => true,
        Some(Role::Dir(names)) => names.iter().any(|n| n.as_bytes() == name),
    }
}

fn merge(roles: &mut BTreeMap<i32, Role>, wd: i32, role: Role) {
    match (roles.get_mut(&wd), role) {
        (Some(Role::Dir(have)), Role::Dir(more)) => {
            for n in more {
                if !have.contains(&n) {
                    have.push(n);
                }
            }
        }
        // Two paths on one inode in different roles (bind mounts): every event counts.
        (Some(existing), _) => *existing = Role::File,
        (None, role) => {
            roles.insert(wd, role);
        }
    }
}

/// The watches for `files`: each file, its directory, and every ancestor up to `/`.
fn plan(files: &[PathBuf]) -> Result<Plan, WatchOff> {
    let mut plan = Plan::new();
    let mut add = |path: &Path, mask: u32, role: Role| match plan.get_mut(path) {
        Some((m, existing)) => {
            *m |= mask;
            match (existing, role) {
                (Role::Dir(have), Role::Dir(more)) => {
                    for n in more {
                        if !have.contains(&n) {
                            have.push(n);
                        }
                    }
                }
                (existing, _) => *existing = Role::File,
            }
        }
        None => {
            plan.insert(path.to_path_buf(), (mask, role));
        }
    };
    for file in files {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err(WatchOff::NotCanonical(file.clone()));
        };
        if !file.is_absolute() {
            return Err(WatchOff::NotCanonical(file.clone()));
        }
        add(file, FILE_MASK, Role::File);
        add(dir, LEAF_DIR_MASK, Role::Dir(vec![name.to_os_string()]));
        let mut child = dir;
        while let (Some(parent), Some(name)) = (child.parent(), child.file_name()) {
            add(parent, ANCESTOR_MASK, Role::Dir(vec![name.to_os_string()]));
            child = parent;
        }
    }
    Ok(plan)
}

/// After the watches exist: the path has no symlink, `.` or `..` (so the watched inodes
/// are the ones the path names) and is on a local file system.
fn verify(path: &Path, role: &Role) -> Result<(), WatchOff> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // An absent file of interest: the full check sees it absent too.
        Err(e) if *role == Role::File && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(sys(format!("inspect {}", path.display()))(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(WatchOff::NotCanonical(path.to_path_buf()));
    }
    if *role != Role::File {
        let canonical =
            std::fs::canonicalize(path).map_err(sys(format!("resolve {}", path.display())))?;
        if canonical != path {
            return Err(WatchOff::NotCanonical(path.to_path_buf()));
        }
    }
    let f_type = statfs_type(path)?;
    if !local_fs_type(f_type) {
        return Err(WatchOff::NotLocal {
            path: path.to_path_buf(),
            f_type,
        });
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, WatchOff> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| WatchOff::NotCanonical(path.into()))
}

fn add_watch(fd: &OwnedFd, path: &Path, mask: u32) -> std::io::Result<i32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // IN_MASK_ADD: two paths can name one inode (bind mounts); the second must not
    // narrow the first's mask. A mask that only grows costs spurious checks, never a
    // missed change.
    // SAFETY: `c` is a NUL-terminated path alive for the call.
    let wd =
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask | libc::IN_MASK_ADD) };
    if wd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(wd)
    }
}

fn statfs_type(path: &Path) -> Result<i64, WatchOff> {
    let c = c_path(path)?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is writable for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(sys(format!("statfs {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::useless_conversion)] // f_type's width differs between targets
    Ok(i64::from(st.f_type))
}

#[cfg(test)]
#[path = "change_watch_tests.rs"]
mod tests;
