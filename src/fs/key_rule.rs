//! A mounted directory's key rule, read and changed from outside the daemon (by
//! `kmsfs key-rule`) through the mount's [`KEY_RULE_XATTR`], so the mount's own checks
//! apply (owner or root; see `core::keyrules`). Errors carry the errno the mount gave:
//! `ENOTSUP` means the directory is not in a kmsfs mount.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use super::error::FsError;
use super::{sys, KEY_RULE_XATTR};

/// An `O_PATH` descriptor of `dir` (symlinks followed, as a path-based xattr call
/// would), through which the attribute calls go.
fn open_path(dir: &Path) -> Result<OwnedFd, FsError> {
    Ok(openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// `dir`'s own rule, or `None` when it has none (it inherits).
pub fn show(dir: &Path) -> Result<Option<String>, FsError> {
    let fd = open_path(dir)?;
    match sys::get_xattr(fd.as_fd(), OsStr::new(KEY_RULE_XATTR)) {
        Ok(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
        Err(FsError::Sys(Errno::ENODATA)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// New files under `dir` get `key`.
pub fn set(dir: &Path, key: &str) -> Result<(), FsError> {
    let fd = open_path(dir)?;
    sys::set_xattr(fd.as_fd(), OsStr::new(KEY_RULE_XATTR), key.as_bytes(), 0)
}

/// Removes `dir`'s rule; a directory without one is left as it is.
pub fn clear(dir: &Path) -> Result<(), FsError> {
    let fd = open_path(dir)?;
    match sys::remove_xattr(fd.as_fd(), OsStr::new(KEY_RULE_XATTR)) {
        Err(FsError::Sys(Errno::ENODATA)) => Ok(()),
        other => other,
    }
}
