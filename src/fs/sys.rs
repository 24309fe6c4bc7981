//! Small wrappers over system calls that nix does not cover (extended attributes,
//! `linkat` of a descriptor), always on descriptors of the backing directory.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use nix::errno::Errno;

use super::error::FsError;

/// The `/proc/self/fd/N` path that reopens or addresses the object behind an `O_PATH`
/// descriptor (the kernel follows this magic link to the object itself).
pub fn proc_path(fd: BorrowedFd<'_>) -> CString {
    // Digits only: cannot contain NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

fn cstr(s: &OsStr) -> Result<CString, FsError> {
    CString::new(s.as_bytes()).map_err(|_| FsError::refused(libc::EINVAL, "NUL in name"))
}

fn check(ret: isize) -> Result<usize, FsError> {
    if ret < 0 {
        Err(FsError::Sys(Errno::last()))
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// Whether `linkat(fd, "", ..., AT_EMPTY_PATH)` links for this daemon: unknown until
/// the first create, then learnt once (the daemon's credentials do not change).
static EMPTY_PATH_LINK: AtomicU8 = AtomicU8::new(EMPTY_PATH_UNKNOWN);
const EMPTY_PATH_UNKNOWN: u8 = 0;
const EMPTY_PATH_WORKS: u8 = 1;
const EMPTY_PATH_REFUSED: u8 = 2;

/// Creates a hard link `dir/name` to the object behind `target` (an `O_TMPFILE` or
/// `O_PATH` descriptor). Never replaces an existing name (`EEXIST`).
///
/// Directly on the descriptor (`AT_EMPTY_PATH`) where the kernel allows it: with
/// CAP_DAC_READ_SEARCH (a daemon running as root), or, since Linux 6.10, for a
/// descriptor opened with the caller's own credentials. That spares the kernel the walk
/// of `/proc/self/fd/N` (a path lookup through procfs on every create). Where the kernel
/// refuses it (`ENOENT`), the `/proc/self/fd/N` link is used, which needs no capability;
/// once that has worked after a refusal, the direct call is not tried again.
pub fn link_fd(target: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), FsError> {
    link_learning(&EMPTY_PATH_LINK, target, dir, name)
}

/// [`link_fd`] with the learnt way kept in `way` (a seam for tests).
fn link_learning(
    way: &AtomicU8,
    target: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Result<(), FsError> {
    let to = cstr(name)?;
    if way.load(Ordering::Relaxed) == EMPTY_PATH_REFUSED {
        return link_proc_path(target, dir, &to);
    }
    match link_empty_path(target, dir, &to) {
        Ok(()) => {
            way.store(EMPTY_PATH_WORKS, Ordering::Relaxed);
            return Ok(());
        }
        // A refusal of AT_EMPTY_PATH, or a directory or file removed meanwhile: the
        // fallback tells them apart (it fails too in the second case).
        Err(FsError::Sys(Errno::ENOENT)) => {}
        Err(e) => return Err(e),
    }
    link_proc_path(target, dir, &to)?;
    way.store(EMPTY_PATH_REFUSED, Ordering::Relaxed);
    Ok(())
}

/// `linkat(target, "", dir, to, AT_EMPTY_PATH)`.
fn link_empty_path(target: BorrowedFd<'_>, dir: BorrowedFd<'_>, to: &CStr) -> Result<(), FsError> {
    // SAFETY: both strings are valid NUL-terminated C strings that outlive the call.
    let ret = unsafe {
        libc::linkat(
            target.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    check(ret as isize).map(drop)
}

/// `linkat` of `/proc/self/fd/N` (the magic link followed to the object), which needs
/// no capability.
fn link_proc_path(target: BorrowedFd<'_>, dir: BorrowedFd<'_>, to: &CStr) -> Result<(), FsError> {
    let from = proc_path(target);
    // SAFETY: both strings are valid NUL-terminated C strings that outlive the call.
    let ret = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    check(ret as isize).map(drop)
}

/// A file handle of a backing object (`name_to_handle_at(2)`): what the backing file
/// system needs to find the inode again without a path, for [`open_by_handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    kind: i32,
    bytes: Vec<u8>,
}

/// Longest handle asked for: ext4 gives 8 bytes, XFS and btrfs up to 24 (a
/// `MAX_HANDLE_SZ` of 128 is the kernel's own limit).
const HANDLE_MAX: usize = 128;

/// `struct file_handle` with room for [`HANDLE_MAX`] bytes.
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; HANDLE_MAX],
}

/// The handle of the object behind `fd` (any descriptor, `O_PATH` included) and the id
/// of the mount it was reached through. `None` where the file system has no handles
/// (`EOPNOTSUPP`) or gives one longer than [`HANDLE_MAX`].
pub fn file_handle(fd: BorrowedFd<'_>) -> Result<Option<(FileHandle, i32)>, FsError> {
    let mut raw = RawHandle {
        handle_bytes: HANDLE_MAX as u32,
        handle_type: 0,
        f_handle: [0; HANDLE_MAX],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a `struct file_handle` whose `handle_bytes` says how much room
    // follows; the path is an empty C string; both pointers outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut raw as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    match check(ret as isize) {
        Ok(_) => {}
        Err(FsError::Sys(Errno::EOPNOTSUPP | Errno::EOVERFLOW)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::try_from(raw.handle_bytes).unwrap_or(usize::MAX);
    let Some(bytes) = raw.f_handle.get(..len) else {
        return Ok(None);
    };
    Ok(Some((
        FileHandle {
            kind: raw.handle_type,
            bytes: bytes.to_vec(),
        },
        mount_id,
    )))
}

/// The soft descriptor limit (`RLIMIT_NOFILE`) as it is now; 1 024 where unknown.
pub fn descriptor_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

/// `cachestat(2)`'s number (Linux 6.5): the same in every architecture's table that
/// kmsfs builds for (alpha's differs). Not in the `libc` crate for x86_64 yet.
const SYS_CACHESTAT: libc::c_long = 451;

/// `struct cachestat_range` of linux/mman.h.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of linux/mman.h.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Set once `cachestat(2)` answered ENOSYS (a kernel before 6.5, or a filter that
/// refuses it): not asked again.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Whether the `len` bytes at `offset` of the file behind `fd` are cold: fewer than half
/// of their pages are in the page cache, and none of those is dirty or being written
/// back (`cachestat(2)`, which only looks: it starts no read). `false` wherever the
/// answer is not known, so that a caller keeps to the page cache.
pub fn range_is_cold(fd: BorrowedFd<'_>, offset: u64, len: u64) -> bool {
    if len == 0 || NO_CACHESTAT.load(Ordering::Relaxed) {
        return false;
    }
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers are to live `#[repr(C)]` values of the layouts the kernel
    // reads and writes (linux/mman.h); flags must be 0.
    let ret = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if ret != 0 {
        if Errno::last() == Errno::ENOSYS {
            NO_CACHESTAT.store(true, Ordering::Relaxed);
        }
        return false;
    }
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let page = *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a constant of the process; no pointers.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    });
    let pages = (offset % page + len).div_ceil(page);
    stat.nr_dirty == 0 && stat.nr_writeback == 0 && stat.nr_cache.saturating_mul(2) < pages
}

/// Opens the object `handle` names on the file system of `mount` (a descriptor of that
/// mount, not `O_PATH`) with `flags` (`open_by_handle_at(2)`): no path is walked, so no
/// name in the backing directory plays any part. Needs CAP_DAC_READ_SEARCH (`EPERM`
/// without).
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> Result<std::fs::File, FsError> {
    let mut raw = RawHandle {
        handle_bytes: 0,
        handle_type: handle.kind,
        f_handle: [0; HANDLE_MAX],
    };
    let dst = raw
        .f_handle
        .get_mut(..handle.bytes.len())
        .ok_or_else(|| FsError::refused(libc::EINVAL, "file handle too long"))?;
    dst.copy_from_slice(&handle.bytes);
    raw.handle_bytes = handle.bytes.len() as u32;
    // SAFETY: `raw` is a valid `struct file_handle` for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            &mut raw as *mut RawHandle,
            flags,
        )
    };
    let fd = check(ret as isize)?;
    let fd = libc::c_int::try_from(fd)
        .map_err(|_| FsError::refused(libc::EIO, "descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to this call alone.
    Ok(std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    }))
}

/// Whether `fchmodat2(fd, "", mode, AT_EMPTY_PATH)` works (Linux 6.6+), learnt at the
/// first chmod; likewise whether `utimensat` takes `AT_EMPTY_PATH` on an `O_PATH`
/// descriptor. Where not, the object is reached through `/proc/self/fd/N`, as before.
static EMPTY_PATH_CHMOD: AtomicU8 = AtomicU8::new(EMPTY_PATH_UNKNOWN);
static EMPTY_PATH_UTIMENS: AtomicU8 = AtomicU8::new(EMPTY_PATH_UNKNOWN);

/// Runs `direct` unless `way` says it is refused here; on a refusal that `fallback`
/// then gets past, learns that. `refusal` tells the errors an old kernel gives for the
/// call it does not know.
fn empty_path_or_proc(
    way: &AtomicU8,
    refusal: fn(&FsError) -> bool,
    direct: impl FnOnce() -> Result<(), FsError>,
    fallback: impl FnOnce() -> Result<(), FsError>,
) -> Result<(), FsError> {
    if way.load(Ordering::Relaxed) != EMPTY_PATH_REFUSED {
        match direct() {
            Ok(()) => {
                way.store(EMPTY_PATH_WORKS, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if !refusal(&e) => return Err(e),
            Err(_) => {
                fallback()?;
                way.store(EMPTY_PATH_REFUSED, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
    fallback()
}

/// Sets the mode of the object behind `fd` (an `O_PATH` descriptor of anything but a
/// symlink): `fchmodat2` with `AT_EMPTY_PATH` on the descriptor itself, which walks no
/// path, where the kernel has it; else `chmod` of `/proc/self/fd/N`, which walks procfs
/// and makes its per-descriptor entry on every call (fchmod refuses `O_PATH`).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> Result<(), FsError> {
    let mode = mode & 0o7777;
    empty_path_or_proc(
        &EMPTY_PATH_CHMOD,
        |e| matches!(e, FsError::Sys(Errno::ENOSYS | Errno::EINVAL)),
        || {
            // SAFETY: an empty C string that outlives the call.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    mode,
                    libc::AT_EMPTY_PATH,
                )
            };
            check(ret as isize).map(drop)
        },
        || {
            let path = proc_path(fd);
            // SAFETY: a valid NUL-terminated C string that outlives the call.
            check(unsafe { libc::chmod(path.as_ptr(), mode) } as isize).map(drop)
        },
    )
}

/// Sets the access and modification times of the object behind `fd` (an `O_PATH`
/// descriptor of anything but a symlink): [`utimens_fd`] on the descriptor where the
/// kernel takes `AT_EMPTY_PATH` there, else through `/proc/self/fd/N` (see [`chmod_fd`]).
pub fn utimens_object(
    fd: BorrowedFd<'_>,
    atime: nix::sys::time::TimeSpec,
    mtime: nix::sys::time::TimeSpec,
) -> Result<(), FsError> {
    empty_path_or_proc(
        &EMPTY_PATH_UTIMENS,
        |e| matches!(e, FsError::Sys(Errno::EINVAL | Errno::ENOENT)),
        || utimens_fd(fd, atime, mtime),
        || {
            let path = proc_path(fd);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                path.as_c_str(),
                &atime,
                &mtime,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )?;
            Ok(())
        },
    )
}

/// Sets the access and modification times of the object behind the `O_PATH` descriptor
/// `fd` itself, never following a symlink (`utimensat` with `AT_EMPTY_PATH`).
pub fn utimens_fd(
    fd: BorrowedFd<'_>,
    atime: nix::sys::time::TimeSpec,
    mtime: nix::sys::time::TimeSpec,
) -> Result<(), FsError> {
    let times = [*atime.as_ref(), *mtime.as_ref()];
    // SAFETY: an empty C string and a two-element timespec array, both valid for the call.
    let ret = unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(ret as isize).map(drop)
}

/// Reads an extended attribute of the object behind `fd`.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &OsStr) -> Result<Vec<u8>, FsError> {
    let path = proc_path(fd);
    let name = cstr(name)?;
    loop {
        // SAFETY: a NULL buffer of size 0 asks only for the length.
        let len = check(unsafe {
            libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0)
        })?;
        let mut buf = vec![0u8; len];
        // SAFETY: buf is valid for writes of buf.len() bytes.
        match check(unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // The value grew between the two calls: ask again.
            Err(FsError::Sys(Errno::ERANGE)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads an extended attribute of the object behind `fd` that kmsfs itself writes with
/// at most `max` bytes, in one system call; `None` when the object has none or its file
/// system has no extended attributes. A longer value is read in full (it will not
/// authenticate).
pub fn get_small_xattr(
    fd: BorrowedFd<'_>,
    name: &OsStr,
    max: usize,
) -> Result<Option<Vec<u8>>, FsError> {
    let path = proc_path(fd);
    let c_name = cstr(name)?;
    let mut buf = vec![0u8; max];
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let got = check(unsafe {
        libc::getxattr(
            path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    });
    match got {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(FsError::Sys(Errno::ENODATA | Errno::EOPNOTSUPP)) => Ok(None),
        Err(FsError::Sys(Errno::ERANGE)) => match get_xattr(fd, name) {
            Ok(v) => Ok(Some(v)),
            Err(FsError::Sys(Errno::ENODATA)) => Ok(None),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Sets an extended attribute of the object behind `fd` (`flags`: XATTR_CREATE/REPLACE).
pub fn set_xattr(
    fd: BorrowedFd<'_>,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> Result<(), FsError> {
    let path = proc_path(fd);
    let name = cstr(name)?;
    // SAFETY: value is valid for reads of value.len() bytes.
    let ret = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(ret as isize).map(drop)
}

/// The NUL-separated list of extended attribute names of the object behind `fd`.
pub fn list_xattr(fd: BorrowedFd<'_>) -> Result<Vec<u8>, FsError> {
    let path = proc_path(fd);
    loop {
        // SAFETY: a NULL buffer of size 0 asks only for the length.
        let len = check(unsafe { libc::listxattr(path.as_ptr(), std::ptr::null_mut(), 0) })?;
        let mut buf = vec![0u8; len];
        // SAFETY: buf is valid for writes of buf.len() bytes.
        match check(unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(FsError::Sys(Errno::ERANGE)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes an extended attribute of the object behind `fd`.
pub fn remove_xattr(fd: BorrowedFd<'_>, name: &OsStr) -> Result<(), FsError> {
    let path = proc_path(fd);
    let name = cstr(name)?;
    // SAFETY: both strings are valid NUL-terminated C strings.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) } as isize).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::PermissionsExt;

    fn tmpfile_in(dir: &std::path::Path) -> OwnedFd {
        open(
            dir,
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap()
    }

    fn dir_fd(dir: &std::path::Path) -> OwnedFd {
        open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn link_by_descriptor_is_used_and_learnt_when_the_kernel_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let way = AtomicU8::new(EMPTY_PATH_UNKNOWN);
        let (file, d) = (tmpfile_in(dir.path()), dir_fd(dir.path()));
        link_learning(&way, file.as_fd(), d.as_fd(), OsStr::new("a")).unwrap();
        assert!(dir.path().join("a").is_file());
        // The daemon's own descriptor: allowed as root (CAP_DAC_READ_SEARCH) and, since
        // Linux 6.10, for the opener's own credentials.
        assert_eq!(way.load(Ordering::Relaxed), EMPTY_PATH_WORKS);
        // Never replaces a name.
        let err = link_learning(&way, file.as_fd(), d.as_fd(), OsStr::new("a")).unwrap_err();
        assert!(matches!(err, FsError::Sys(Errno::EEXIST)), "{err:?}");
        assert_eq!(way.load(Ordering::Relaxed), EMPTY_PATH_WORKS);
    }

    /// A descriptor opened by root, linked by a thread that is no longer root (no
    /// CAP_DAC_READ_SEARCH, other credentials than the opener's): the kernel refuses
    /// AT_EMPTY_PATH with ENOENT, and the `/proc/self/fd` link makes the file anyway.
    #[test]
    fn link_falls_back_to_the_proc_path_when_the_kernel_refuses_the_descriptor() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to open as one user and link as another");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (file, d) = (tmpfile_in(dir.path()), dir_fd(dir.path()));
        // The linking user's own file, as a daemon's new files are (otherwise
        // `fs.protected_hardlinks` refuses the link for another reason).
        nix::unistd::fchown(
            &file,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
        let way = AtomicU8::new(EMPTY_PATH_UNKNOWN);
        let (direct, linked, second) = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: raw syscalls change this thread's credentials only (and drop
                // its capabilities), unlike glibc's process-wide wrappers.
                unsafe {
                    assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
                    assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
                }
                let direct = link_empty_path(file.as_fd(), d.as_fd(), c"direct");
                let linked = link_learning(&way, file.as_fd(), d.as_fd(), OsStr::new("b"));
                let learnt = way.load(Ordering::Relaxed);
                let second = link_learning(&way, file.as_fd(), d.as_fd(), OsStr::new("c"));
                (direct, linked.map(|()| learnt), second)
            })
            .join()
            .unwrap()
        });
        assert!(
            matches!(direct, Err(FsError::Sys(Errno::ENOENT))),
            "AT_EMPTY_PATH without the capability: {direct:?}"
        );
        assert_eq!(linked.unwrap(), EMPTY_PATH_REFUSED);
        second.unwrap();
        assert!(dir.path().join("b").is_file());
        assert!(dir.path().join("c").is_file());
        assert!(!dir.path().join("direct").exists());
    }

    #[test]
    fn mode_and_times_are_set_through_an_o_path_descriptor() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let fd = open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        chmod_fd(fd.as_fd(), 0o100_640).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let (a, m) = (
            nix::sys::time::TimeSpec::new(1_000_000, 5),
            nix::sys::time::TimeSpec::new(2_000_000, 7),
        );
        utimens_object(fd.as_fd(), a, m).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000, 5));
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (2_000_000, 7));
        // The kernel this runs on (6.6+) does both on the descriptor: learnt once.
        assert_ne!(EMPTY_PATH_CHMOD.load(Ordering::Relaxed), EMPTY_PATH_UNKNOWN);
        assert_ne!(
            EMPTY_PATH_UTIMENS.load(Ordering::Relaxed),
            EMPTY_PATH_UNKNOWN
        );
    }

    #[test]
    fn a_refused_empty_path_call_falls_back_once_and_is_not_tried_again() {
        let way = AtomicU8::new(EMPTY_PATH_UNKNOWN);
        let refusal = |e: &FsError| matches!(e, FsError::Sys(Errno::ENOSYS));
        let (mut direct, mut fallback) = (0, 0);
        for _ in 0..3 {
            empty_path_or_proc(
                &way,
                refusal,
                || {
                    direct += 1;
                    Err(FsError::Sys(Errno::ENOSYS))
                },
                || {
                    fallback += 1;
                    Ok(())
                },
            )
            .unwrap();
        }
        assert_eq!((direct, fallback), (1, 3));
        assert_eq!(way.load(Ordering::Relaxed), EMPTY_PATH_REFUSED);
        // Any other error of the direct call is the answer: no second attempt.
        let way = AtomicU8::new(EMPTY_PATH_UNKNOWN);
        let err = empty_path_or_proc(
            &way,
            refusal,
            || Err(FsError::Sys(Errno::EPERM)),
            || panic!("no fallback after EPERM"),
        )
        .unwrap_err();
        assert!(matches!(err, FsError::Sys(Errno::EPERM)), "{err:?}");
        assert_eq!(way.load(Ordering::Relaxed), EMPTY_PATH_UNKNOWN);
    }

    #[test]
    fn a_file_handle_opens_the_same_object_without_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"by handle").unwrap();
        let fd = open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let Some((handle, _mount_id)) = file_handle(fd.as_fd()).unwrap() else {
            eprintln!("skipped: the temp directory's file system has no file handles");
            return;
        };
        // Renamed away: the handle still finds the object, not whatever has the name.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        std::fs::write(&path, b"an impostor").unwrap();
        let mount = std::fs::File::open(dir.path()).unwrap();
        let opened = open_by_handle(mount.as_fd(), &handle, libc::O_RDONLY | libc::O_CLOEXEC);
        match opened {
            Ok(file) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut &file, &mut text).unwrap();
                assert_eq!(text, "by handle");
            }
            // Without CAP_DAC_READ_SEARCH the kernel refuses handles altogether.
            Err(FsError::Sys(Errno::EPERM)) => assert!(!nix::unistd::geteuid().is_root()),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn link_of_a_file_with_no_name_left_fails_both_ways_and_learns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        std::fs::write(&path, b"x").unwrap();
        let file = open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        let d = dir_fd(dir.path());
        let way = AtomicU8::new(EMPTY_PATH_UNKNOWN);
        let err = link_learning(&way, file.as_fd(), d.as_fd(), OsStr::new("again")).unwrap_err();
        assert!(matches!(err, FsError::Sys(Errno::ENOENT)), "{err:?}");
        assert_eq!(way.load(Ordering::Relaxed), EMPTY_PATH_UNKNOWN);
    }
}
