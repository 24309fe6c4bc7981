//! Small wrappers over system calls that nix does not cover (extended attributes,
//! `linkat` through `/proc/self/fd`), always on descriptors of the backing directory.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

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

/// Creates a hard link `dir/name` to the object behind `target` (an `O_PATH` fd),
/// without needing CAP_DAC_READ_SEARCH.
pub fn link_fd(target: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), FsError> {
    let from = proc_path(target);
    let to = cstr(name)?;
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
