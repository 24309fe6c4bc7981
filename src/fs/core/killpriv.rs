//! Dropping set-user-ID and set-group-ID when a file's content changes, for mounts where
//! the kernel hands that job to the daemon (FUSE_HANDLE_KILLPRIV_V2).
//!
//! The daemon writes, truncates and allocates as root (with CAP_FSETID), so the backing
//! file system never drops the bits on its own: it must be done here. The kernel's rule
//! (`setattr_should_drop_suidgid`, and the FUSE protocol's statement of it): a change by
//! a caller without CAP_FSETID drops set-user-ID, and set-group-ID when group execute is
//! set (set-group-ID without group execute marks mandatory locking, not a privilege).
//! A change of owner or group drops them too; the backing `fchown` already does that.

use std::os::fd::BorrowedFd;

use crate::fs::error::FsError;
use crate::fs::sys;

use super::stat_fd;

/// Bit of CAP_FSETID in a capability set (linux/capability.h).
const CAP_FSETID: u32 = 4;

/// `readlink` of `/proc/PID/ns/user` for the initial user namespace, whose inode number
/// is fixed (PROC_USER_INIT_INO in include/linux/proc_ns.h). The kernel's
/// `capable(CAP_FSETID)` asks about that namespace.
const INIT_USER_NS: &str = "user:[4026531837]";

/// Whether the process behind a request may keep set-uid/set-gid bits on a file it
/// changes, as the kernel's `capable(CAP_FSETID)` would answer: root (`uid` is the
/// request's, the caller's fsuid) whose effective capabilities hold CAP_FSETID, in the
/// initial user namespace (a "root" inside a user namespace holds all capabilities only
/// there). `pid` is the calling thread. Anything that cannot be read or parsed answers
/// false, the safe side: the bits are dropped.
///
/// The kernel sends the answer itself on writes (FUSE_WRITE_KILL_SUIDGID, used as it
/// comes) but sets it on truncates and truncating opens in fields fuser 0.18 does not
/// pass on (`fuse_setattr_in.valid` bit 11, `fuse_open_in.open_flags`), so those ask
/// here. This can answer false where the kernel says capable (a non-root caller holding
/// CAP_FSETID, or credentials the kernel overrode for the call): the bits are then
/// dropped where ext4 would keep them, never kept where it would drop them.
fn caller_keeps_privs(pid: u32, uid: u32) -> bool {
    if uid != 0 || pid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let has_fsetid = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_FSETID) != 0);
    has_fsetid
        && std::fs::read_link(format!("/proc/{pid}/ns/user"))
            .is_ok_and(|ns| ns.as_os_str() == INIT_USER_NS)
}

/// The permission bits `mode` keeps after a change by an unprivileged caller, or `None`
/// when nothing is dropped.
pub fn without_privs(mode: u32) -> Option<u32> {
    let perm = mode & 0o7777;
    let mut kept = perm & !libc::S_ISUID;
    if perm & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        kept &= !libc::S_ISGID;
    }
    (kept != perm).then_some(kept)
}

/// Whether a change to a file's content drops its set-uid/set-gid bits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum KillPriv {
    /// Never (the kernel keeps that job, or said the caller holds CAP_FSETID).
    #[default]
    Keep,
    /// Yes (the kernel said so: FUSE_WRITE_KILL_SUIDGID).
    Drop,
    /// Unless the calling thread `pid` (request uid `uid`) holds CAP_FSETID
    /// ([`caller_keeps_privs`]), asked only of a file that has a bit to drop.
    UnlessCallerHasFsetid { pid: u32, uid: u32 },
}

/// Drops set-uid/set-gid of the regular file behind `fd` as `kill` and
/// [`without_privs`] say. Returns whether a bit was dropped (the kernel's cached mode is
/// then stale).
pub(super) fn drop_privs(fd: BorrowedFd<'_>, kill: KillPriv) -> Result<bool, FsError> {
    if kill == KillPriv::Keep {
        return Ok(false);
    }
    let st = stat_fd(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let Some(kept) = without_privs(st.st_mode) else {
        return Ok(false);
    };
    if let KillPriv::UnlessCallerHasFsetid { pid, uid } = kill {
        if caller_keeps_privs(pid, uid) {
            return Ok(false);
        }
    }
    // `fd` may be an O_PATH descriptor, which fchmod refuses.
    sys::chmod_fd(fd, kept)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_uid_always_goes_set_gid_only_with_group_execute() {
        assert_eq!(without_privs(0o104755), Some(0o755));
        assert_eq!(without_privs(0o2755), Some(0o755));
        assert_eq!(without_privs(0o6755), Some(0o755));
        // Set-group-ID without group execute is mandatory locking: kept.
        assert_eq!(without_privs(0o2745), None);
        assert_eq!(without_privs(0o6745), Some(0o2745));
        assert_eq!(without_privs(0o100644), None);
        assert_eq!(without_privs(0o1777), None);
    }

    #[test]
    fn drops_only_what_the_decision_says() {
        use std::os::fd::AsFd;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        let set = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m));
        set(0o6755).unwrap();
        assert!(!drop_privs(file.as_fd(), KillPriv::Keep).unwrap());
        assert_eq!(mode(), 0o6755);
        assert!(drop_privs(file.as_fd(), KillPriv::Drop).unwrap());
        assert_eq!(mode(), 0o755);
        assert!(!drop_privs(file.as_fd(), KillPriv::Drop).unwrap());
        set(0o4755).unwrap();
        let other = KillPriv::UnlessCallerHasFsetid {
            pid: std::process::id(),
            uid: 1000,
        };
        assert!(drop_privs(file.as_fd(), other).unwrap());
        assert_eq!(mode(), 0o755);
        // This process, as root with CAP_FSETID (as the tests run), keeps them.
        set(0o4755).unwrap();
        let me = KillPriv::UnlessCallerHasFsetid {
            pid: std::process::id(),
            uid: 0,
        };
        let root = nix::unistd::geteuid().is_root();
        assert_eq!(drop_privs(file.as_fd(), me).unwrap(), !root);
    }

    #[test]
    fn unreadable_or_foreign_callers_do_not_keep_privs() {
        // No such process (pid 0 is what the kernel sends for a caller it cannot name).
        assert!(!caller_keeps_privs(0, 0));
        // Not root: dropped even with the capability.
        assert!(!caller_keeps_privs(std::process::id(), 1000));
    }
}
