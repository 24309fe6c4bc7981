//! Process and kernel tuning around a mount, none of which changes what the mount
//! answers: the kernel's read-ahead window for the mount, glibc's allocator settings
//! for a long-lived daemon, and the descriptor limit that live inodes need.

use std::path::{Path, PathBuf};

/// The kernel's read-ahead window for a kmsfs mount, in KiB: one request's worth
/// ([`super::fuse::MAX_WRITE`]), so a sequential read arrives as 1 MiB requests, each
/// opened on several cores with one backing `pread`; and a page fault on a mapped file
/// reads around it at most one request, not more.
pub const READ_AHEAD_KB: u64 = (super::fuse::MAX_WRITE as u64) / 1024;

/// Raises the mount's read-ahead window to [`READ_AHEAD_KB`].
///
/// A FUSE mount gets the kernel's default window (128 KiB), and the `max_readahead` of
/// FUSE_INIT may only lower it: a sequential read then reaches the daemon as 128 to
/// 256 KiB requests, each one `pread`, one reply and too few blocks to spread across
/// cores (docs/PERFORMANCE.md, round 3). Only the backing device info's
/// `read_ahead_kb` in sysfs raises it (root only); elsewhere the mount keeps the
/// default, which is slower, not wrong. INIT clamps the window when the kernel
/// processes the daemon's reply, so this waits for a request answered after INIT (a
/// forced `statx` of the mount's root) before writing.
pub(super) fn widen_readahead(mountpoint: &Path) {
    let Some((major, minor)) = mount_device(mountpoint) else {
        return;
    };
    let knob = PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"));
    let current = std::fs::read_to_string(&knob)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if current.is_some_and(|kb| kb >= READ_AHEAD_KB) {
        return;
    }
    match std::fs::write(&knob, format!("{READ_AHEAD_KB}\n")) {
        Ok(()) => log::debug!("{}: read-ahead {READ_AHEAD_KB} KiB", knob.display()),
        Err(e) => log::debug!("{}: read-ahead left at the default ({e})", knob.display()),
    }
}

/// The device number of the file system mounted at `mountpoint`, once its daemon has
/// answered a request (so INIT is done); None if the mount does not answer.
fn mount_device(mountpoint: &Path) -> Option<(u32, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data; all-zero is a valid value that the call overwrites.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stx` a valid out-pointer,
    // both outliving the call. AT_STATX_FORCE_SYNC makes the kernel ask the daemon
    // (a GETATTR, which the kernel holds back until INIT is processed).
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_STATX_FORCE_SYNC,
            libc::STATX_TYPE,
            &mut stx,
        )
    };
    if rc != 0 {
        log::debug!(
            "{}: statx after mounting: {}",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
        return None;
    }
    Some((stx.stx_dev_major, stx.stx_dev_minor))
}

/// Tunes glibc's allocator for a long-lived daemon's peak RSS (issue 11); the kmsfs
/// binary calls it first thing, before any thread starts, and [`super::mount::mount`] again.
///
/// - Request buffers (up to a megabyte each) are allocated and freed as requests come
///   and go; glibc's default mmap threshold rises to the largest block ever freed,
///   after which such buffers come from a heap and stay resident once freed. Fixed at
///   glibc's starting value (128 KiB), each is its own mapping, returned when freed.
/// - glibc gives threads up to 8 arenas per core, and each keeps what its threads
///   freed; the key service's per-connection threads (1 000 grants made through the
///   mount) left 2–3 MB behind that way. One arena per core, at least two.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    {
        let arenas = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 64);
        // SAFETY: mallopt only changes the allocator's tuning; a value it does not
        // accept is refused (returns 0), never undefined.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(arenas).unwrap_or(2));
        }
    }
}

/// Each inode the kernel holds costs one `O_PATH` descriptor: raise the soft limit to
/// the hard limit.
pub(super) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
