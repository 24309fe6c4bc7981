//! The mount point before a mount: it must exist, be a directory, be empty (unless
//! `-o nonempty`) and not be mounted on already; a dead kmsfs mount left by a killed
//! daemon is recognized (from /proc/self/mountinfo) so the CLI can clear it.
//! After a mount: whether a path is mounted on, and unmounting it.

use std::path::{Path, PathBuf};

use super::error::FsError;

/// Why a directory cannot be mounted on (as found before mounting).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountpointError {
    #[error("mount point {0} does not exist (mkdir it first)")]
    Missing(PathBuf),
    #[error("mount point {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "mount point {0} is not empty: mounting would hide its files, and files written there \
         before the mount would stay unencrypted (empty it, or give -o nonempty)"
    )]
    NotEmpty(PathBuf),
    /// A FUSE mount whose daemon is gone (ENOTCONN): `ours` when it is a kmsfs mount.
    #[error("{}", stale_message(.path, .fstype, *.ours))]
    Stale {
        path: PathBuf,
        fstype: String,
        ours: bool,
    },
    #[error("mount point {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn stale_message(path: &Path, fstype: &str, ours: bool) -> String {
    let whose = if ours {
        "a kmsfs mount whose process died"
    } else {
        "a mount whose process died"
    };
    format!(
        "mount point {p} is a dead {fstype} mount (transport endpoint is not connected: {whose}); \
         clear it with `fusermount3 -u -z {p}` (as root: `umount -l {p}`)",
        p = path.display()
    )
}

/// Checks that `path` is an empty directory (or any directory with `nonempty`).
pub fn check_mountpoint(path: &Path, nonempty: bool) -> Result<(), MountpointError> {
    let io = |source| MountpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(MountpointError::NotADirectory(path.to_path_buf())),
        Ok(_) if nonempty => Ok(()),
        Ok(_) => {
            let mut entries = std::fs::read_dir(path).map_err(io)?;
            if entries.next().is_some() {
                Err(MountpointError::NotEmpty(path.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(MountpointError::Missing(path.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let (fstype, source) = mount_entry(path).unwrap_or_default();
            let ours = fstype == "fuse.kmsfs" || (fstype.starts_with("fuse") && source == "kmsfs");
            Err(MountpointError::Stale {
                path: path.to_path_buf(),
                fstype: if fstype.is_empty() {
                    "FUSE".into()
                } else {
                    fstype
                },
                ours,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// `path` made absolute without touching `path` itself (a dead mount cannot be
/// stat'ed, so `canonicalize` fails on it).
fn absolute_without_stat(path: &Path) -> PathBuf {
    let name = path.file_name();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = match parent {
        Some(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
        None => std::env::current_dir().unwrap_or_default(),
    };
    match name {
        Some(n) => parent.join(n),
        None => parent,
    }
}

/// The (file system type, source) of the mount at `path`, from /proc/self/mountinfo.
fn mount_entry(path: &Path) -> Option<(String, String)> {
    let want = absolute_without_stat(path);
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Later lines are newer mounts: the last one at a path is the visible one.
    info.lines().rev().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let mnt = head.split(' ').nth(4)?;
        if Path::new(&unescape_mountinfo(mnt)) != want {
            return None;
        }
        let mut t = tail.split(' ');
        let fstype = t.next()?.to_string();
        let source = unescape_mountinfo(t.next()?);
        Some((fstype, source))
    })
}

/// Undoes the octal escapes (`\040` for a space, ...) of /proc/self/mountinfo fields.
pub fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Detaches a dead mount found by [`check_mountpoint`] (lazily: nothing can be using a
/// mount whose daemon is gone).
pub fn clear_stale_mount(path: &Path) -> Result<(), FsError> {
    unmount(&absolute_without_stat(path))
}

/// Whether `path` is currently a mount point (from /proc/self/mountinfo); `path` is
/// canonicalized first when it can be.
pub fn is_mounted(path: &Path) -> bool {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| Path::new(&unescape_mountinfo(m)) == want)
    })
}

/// Unmounts `mountpoint` lazily (MNT_DETACH; via `fusermount3 -u -z` when not root):
/// new accesses fail at once, open files keep working until closed.
pub fn unmount(mountpoint: &Path) -> Result<(), FsError> {
    unmount_with(mountpoint, true)
}

/// Unmounts `mountpoint` as umount(8) does: refused with [`FsError::Busy`] while a file
/// is open or a process works inside it, unless `lazy` (then detached at once, and open
/// files keep working until closed). Not root: through `fusermount3 -u [-z]`.
pub fn unmount_with(mountpoint: &Path, lazy: bool) -> Result<(), FsError> {
    let flags = if lazy {
        nix::mount::MntFlags::MNT_DETACH
    } else {
        nix::mount::MntFlags::empty()
    };
    match nix::mount::umount2(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(FsError::Busy(mountpoint.to_path_buf())),
        Err(nix::errno::Errno::EPERM) => {
            let mut cmd = std::process::Command::new("fusermount3");
            cmd.arg("-u");
            if lazy {
                cmd.arg("-z");
            }
            let out = cmd
                .arg("--")
                .arg(mountpoint)
                .output()
                .map_err(|e| FsError::Mount(format!("running fusermount3: {e}")))?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                Ok(())
            } else if stderr.contains("busy") {
                Err(FsError::Busy(mountpoint.to_path_buf()))
            } else {
                Err(FsError::Mount(format!(
                    "fusermount3 -u {}: {}",
                    mountpoint.display(),
                    stderr.trim()
                )))
            }
        }
        // Already unmounted (or never was): nothing to do.
        Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(FsError::Mount(format!(
            "umount {}: {e}",
            mountpoint.display()
        ))),
    }
}
