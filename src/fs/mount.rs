//! Mount lifecycle used by the CLI: parse `-o` options, check the mount point, lock the
//! backing directory, open the volume, start a multithreaded FUSE session (directly, or
//! through the setuid `fusermount3` when this process may not open `/dev/fuse` or call
//! mount(2)), and unmount (lazily, so open files keep working until closed; every
//! acknowledged write is already in the backing file).
//!
//! Safety rules a mount follows, so that no plaintext ever lands beside ciphertext and no
//! two daemons interleave writes to one file:
//! - the mount point must be an empty directory unless `-o nonempty`;
//! - the backing directory is `flock`ed (exclusively) by the mount for its whole life:
//!   a second mount of it is refused, naming the process that holds it. The lock is on
//!   the directory itself, so no file is added to the backing directory (see
//!   docs/FORMAT.md, reserved names) and a crash releases it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::format::{DirMeta, MetadataKey, VolumeConfig};
use crate::kms::provider::DataKeys;

use super::core::Core;
use super::error::FsError;
use super::fuse::KmsFs;
pub use super::mountpoint::{
    check_mountpoint, clear_stale_mount, is_mounted, unescape_mountinfo, unmount, unmount_with,
    MountpointError,
};
use super::tuning::{raise_fd_limit, widen_readahead};
pub use super::tuning::{tune_allocator, READ_AHEAD_KB};

/// Default number of FUSE worker threads.
pub const DEFAULT_THREADS: usize = 4;

/// What to mount where, as the CLI received it.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The backing directory (holding `kmsfs.volume`).
    pub backing: PathBuf,
    /// Where the plaintext view appears.
    pub mountpoint: PathBuf,
    /// The `-o` options, one per element (`allow_other`, `default_permissions`, `ro`,
    /// `fsname=...`, `subtype=...`, `allow_root`, `auto_unmount`, `nosuid`, `nodev`,
    /// `noexec`, `noatime`, ...). A mount shared by several users wants
    /// `allow_other,default_permissions`: the key service gates every open, and the
    /// kernel's mode checks then also protect names (unlink, rename) and attributes.
    pub options: Vec<String>,
    /// FUSE worker threads (1..=16; 0 means [`DEFAULT_THREADS`]).
    pub threads: usize,
}

/// Mount options in fuser's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    pub mount_options: Vec<MountOption>,
    pub acl: SessionACL,
    pub read_only: bool,
    /// `key=KEY`: new files use KEY where no directory rule applies (this mount only).
    pub default_key: Option<String>,
    /// `nonempty`: mount over a directory that holds files (they are hidden meanwhile).
    pub nonempty: bool,
    /// `kms_endpoint=URL`, `kms_timeout=SECONDS`, `kms_cache_ttl=SECONDS`: how remote
    /// keys are reached (`None`: the volume's endpoint, or the defaults).
    pub remote: RemoteOptions,
    /// `writeback_cache`: the kernel's writeback cache (libfuse's option name); off by
    /// default. README.md (its paragraph on `-o writeback_cache`) says what it changes.
    pub writeback_cache: bool,
}

/// The remote-key mount options, as given (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteOptions {
    pub endpoint: Option<String>,
    pub timeout: Option<std::time::Duration>,
    pub cache_ttl: Option<std::time::Duration>,
}

/// Whole seconds of a `kms_timeout` / `kms_cache_ttl` option.
fn seconds_option(name: &str, value: &str, min: u64) -> Result<std::time::Duration, FsError> {
    match value.parse::<u64>() {
        Ok(n) if n >= min && n <= 86_400 => Ok(std::time::Duration::from_secs(n)),
        _ => Err(FsError::Mount(format!(
            "mount option `{name}={value}`: expected whole seconds from {min} to 86400"
        ))),
    }
}

/// Parses `-o` options (each element may itself be comma-separated). Unknown options are
/// refused with their name, so that a typo never silently weakens a mount.
pub fn parse_options(options: &[String]) -> Result<ParsedOptions, FsError> {
    let mut out = Vec::new();
    let mut acl = SessionACL::Owner;
    let mut read_only = false;
    let mut default_key = None;
    let mut nonempty = false;
    let mut fsname = None;
    let mut subtype = None;
    let mut remote = RemoteOptions::default();
    let mut writeback_cache = false;
    for opt in options.iter().flat_map(|o| o.split(',')).map(str::trim) {
        match opt {
            "" => {}
            "allow_other" => acl = SessionACL::All,
            "allow_root" => acl = SessionACL::RootAndOwner,
            "default_permissions" => out.push(MountOption::DefaultPermissions),
            "ro" => {
                read_only = true;
                out.push(MountOption::RO);
            }
            "rw" => out.push(MountOption::RW),
            "auto_unmount" => out.push(MountOption::AutoUnmount),
            "nosuid" => out.push(MountOption::NoSuid),
            "suid" => out.push(MountOption::Suid),
            "nodev" => out.push(MountOption::NoDev),
            "dev" => out.push(MountOption::Dev),
            "noexec" => out.push(MountOption::NoExec),
            "exec" => out.push(MountOption::Exec),
            "noatime" => out.push(MountOption::NoAtime),
            "atime" => out.push(MountOption::Atime),
            "sync" => out.push(MountOption::Sync),
            "async" => out.push(MountOption::Async),
            "dirsync" => out.push(MountOption::DirSync),
            "nonempty" => nonempty = true,
            "writeback_cache" => writeback_cache = true,
            "no_writeback_cache" => writeback_cache = false,
            o if o.starts_with("key=") && o.len() > 4 => default_key = Some(o[4..].to_string()),
            o if o.starts_with("fsname=") => fsname = Some(o["fsname=".len()..].to_string()),
            o if o.starts_with("subtype=") => subtype = Some(o["subtype=".len()..].to_string()),
            o if o.starts_with("kms_endpoint=") => {
                let url = &o["kms_endpoint=".len()..];
                crate::format::volume::validate_endpoint(url).map_err(|r| {
                    FsError::Mount(format!("mount option `kms_endpoint={url}`: {r}"))
                })?;
                remote.endpoint = Some(url.to_string());
            }
            o if o.starts_with("kms_timeout=") => {
                remote.timeout = Some(seconds_option("kms_timeout", &o[12..], 1)?);
            }
            o if o.starts_with("kms_cache_ttl=") => {
                remote.cache_ttl = Some(seconds_option("kms_cache_ttl", &o[14..], 0)?);
            }
            o => return Err(FsError::Mount(format!("unknown mount option `{o}`"))),
        }
    }
    out.push(MountOption::FSName(
        fsname.unwrap_or_else(|| "kmsfs".into()),
    ));
    out.push(MountOption::Subtype(
        subtype.unwrap_or_else(|| "kmsfs".into()),
    ));
    if out.contains(&MountOption::AutoUnmount) && acl == SessionACL::Owner {
        // fuser requires a non-owner ACL for auto_unmount; allow_root is the narrowest.
        acl = SessionACL::RootAndOwner;
    }
    Ok(ParsedOptions {
        mount_options: out,
        acl,
        read_only,
        default_key,
        nonempty,
        remote,
        writeback_cache,
    })
}

/// A live mount. Unmounts (lazily) and waits for the session to end on [`Self::umount`]
/// or on drop.
pub struct MountSession {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    core: Arc<Core>,
    /// fusermount3 in `auto_unmount` mode: it unmounts when this socket closes.
    auto_unmount: Option<(std::os::unix::net::UnixStream, std::process::Child)>,
    /// Held (flock) until the session ends: see [`BackingLock`].
    _lock: BackingLock,
}

impl std::fmt::Debug for MountSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountSession")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl MountSession {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the FUSE session still serves requests. It ends when the mount goes
    /// away, or on an error (then the mount, if still there, only hangs its callers:
    /// the owner should unmount).
    pub fn is_serving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Whether the kernel granted the writeback cache (`-o writeback_cache`) at INIT.
    pub fn writeback_cache(&self) -> bool {
        self.core.writeback()
    }

    /// Number of files currently open through this mount.
    pub fn open_files(&self) -> usize {
        self.core.open_files()
    }

    /// Number of inodes the kernel holds references to (see [`Core::known_nodes`]).
    pub fn known_nodes(&self) -> usize {
        self.core.known_nodes()
    }

    /// Detaches the mount (files still open keep working) and waits until the kernel
    /// ends the session, i.e. until the last open file is closed.
    pub fn umount(mut self) -> Result<(), FsError> {
        self.finish()
    }

    /// Waits until the mount is unmounted by someone else (`kmsfs umount`,
    /// `fusermount3 -u`) and the session ends.
    pub fn wait(mut self) -> Result<(), FsError> {
        match self.session.take() {
            Some(s) => s
                .join()
                .map_err(|e| FsError::Mount(format!("FUSE session ended with an error: {e}"))),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), FsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let detached = unmount(&self.mountpoint);
        let joined = match session.join() {
            // The connection was torn down while the session waited for the next
            // request (the kernel reports an aborted connection as ECONNABORTED, not
            // ENODEV): after our own detach succeeded this is how the session ends, and
            // every request was answered or failed by the kernel.
            Err(e) if detached.is_ok() && e.raw_os_error() == Some(libc::ECONNABORTED) => {
                log::info!(
                    "{}: the FUSE connection was aborted as it was unmounted",
                    self.mountpoint.display()
                );
                Ok(())
            }
            other => {
                other.map_err(|e| FsError::Mount(format!("FUSE session ended with an error: {e}")))
            }
        };
        if let Some((socket, mut child)) = self.auto_unmount.take() {
            drop(socket);
            let _ = child.wait();
        }
        detached.and(joined)
    }
}

impl Drop for MountSession {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("unmounting {}: {e}", self.mountpoint.display());
        }
    }
}

/// Mounts the volume in `spec.backing` at `spec.mountpoint` and returns once the mount
/// is live. The volume's name key comes from `keys.volume_secret(volume id)`; every open
/// is authorized through `keys`. Refuses a mount point that is missing, not a directory,
/// not empty (unless `nonempty`) or a dead mount, and a backing directory that is
/// already mounted.
pub fn mount(spec: &MountSpec, keys: Arc<dyn DataKeys>) -> Result<MountSession, FsError> {
    let parsed = parse_options(&spec.options)?;
    check_mountpoint(&spec.mountpoint, parsed.nonempty)
        .map_err(|e| FsError::Mount(e.to_string()))?;
    let threads = match spec.threads {
        0 => DEFAULT_THREADS,
        n => n.min(16),
    };
    let lock = BackingLock::acquire(&spec.backing)?;
    // A header torn by a power loss during `kmsfs rewrap` is completed before any open
    // can read it (a running rewrap keeps its own journal: then nothing is done).
    if !parsed.read_only {
        match super::rewrap::replay_journal(&spec.backing) {
            Ok(super::rewrap::Replay::Completed(path)) => log::warn!(
                "completed the header of {} from an interrupted kmsfs rewrap",
                path.display()
            ),
            Ok(_) => {}
            Err(e) => log::warn!("the journal of an interrupted kmsfs rewrap: {e}"),
        }
    }
    let mut core = Core::open_volume(&spec.backing, keys, parsed.read_only)?;
    if let Some(key) = &parsed.default_key {
        core.override_default_key(key.clone());
    }
    core.request_writeback(parsed.writeback_cache);
    let core = Arc::new(core);
    raise_fd_limit();
    tune_allocator();
    let mut config = Config::default();
    config.mount_options = parsed.mount_options;
    config.acl = parsed.acl;
    config.n_threads = Some(threads);
    // Each worker thread opens /dev/fuse again (one queue per thread); a process that
    // cannot open the device (it mounted through fusermount3) shares the one it got.
    let device_open = may_open_dev_fuse();
    config.clone_fd = device_open;
    let mounted = |e: std::io::Error| FsError::Mount(format!("{}: {e}", spec.mountpoint.display()));
    // As libfuse does: root mounts with mount(2) itself; anyone else through the
    // setuid fusermount3 (mount(2) would refuse them), and so does root where the
    // device or mount(2) is refused (a confined container).
    let direct = device_open && nix::unistd::geteuid().is_root();
    let (session, auto_unmount) = if direct {
        let slot = Arc::new(OnceLock::new());
        let fs = KmsFs::with_notifier(core.clone(), slot.clone());
        match fuser::Session::new(fs, &spec.mountpoint, &config).and_then(|s| serve(s, &slot)) {
            Ok(s) => (s, None),
            Err(e) if is_refusal(&e) => spawn_via_fusermount(&core, &spec.mountpoint, config)?,
            Err(e) => return Err(mounted(e)),
        }
    } else {
        spawn_via_fusermount(&core, &spec.mountpoint, config)?
    };
    widen_readahead(&spec.mountpoint);
    log::info!(
        "mounted {} at {}",
        spec.backing.display(),
        spec.mountpoint.display()
    );
    Ok(MountSession {
        mountpoint: spec.mountpoint.clone(),
        session: Some(session),
        core,
        auto_unmount,
        _lock: lock,
    })
}

/// Starts serving `session`, its notifier put in the filesystem's `slot` first: no
/// request is answered before the filesystem can tell the kernel about a stale cached
/// mode (see [`KmsFs`]).
fn serve(
    session: fuser::Session<KmsFs>,
    slot: &OnceLock<fuser::Notifier>,
) -> std::io::Result<BackgroundSession> {
    let _ = slot.set(session.notifier());
    session.spawn()
}

fn is_refusal(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
        || e.kind() == std::io::ErrorKind::PermissionDenied
}

fn may_open_dev_fuse() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => true,
        Err(e) => !is_refusal(&e),
    }
}

type AutoUnmount = Option<(std::os::unix::net::UnixStream, std::process::Child)>;

/// Mounts through the setuid `fusermount3` (it opens /dev/fuse, mounts, and hands the
/// descriptor back over a socket, as libfuse does), then serves that descriptor.
fn spawn_via_fusermount(
    core: &Arc<Core>,
    mountpoint: &Path,
    config: Config,
) -> Result<(BackgroundSession, AutoUnmount), FsError> {
    let (fd, auto_unmount) = fusermount_mount(mountpoint, &config.mount_options, config.acl)?;
    let acl = config.acl;
    let slot = Arc::new(OnceLock::new());
    let fs = KmsFs::with_notifier(core.clone(), slot.clone());
    let session = fuser::Session::from_fd(fs, fd, acl, config)
        .and_then(|s| serve(s, &slot))
        .map_err(|e| FsError::Mount(format!("{}: {e}", mountpoint.display())))?;
    Ok((session, auto_unmount))
}

/// The option string fusermount3 understands for `options`.
fn fusermount_options(options: &[MountOption], acl: SessionACL) -> String {
    let mut out: Vec<String> = options
        .iter()
        .map(|o| match o {
            MountOption::FSName(n) => format!("fsname={n}"),
            MountOption::Subtype(t) => format!("subtype={t}"),
            MountOption::CUSTOM(c) => c.clone(),
            MountOption::AutoUnmount => "auto_unmount".into(),
            MountOption::DefaultPermissions => "default_permissions".into(),
            MountOption::Dev => "dev".into(),
            MountOption::NoDev => "nodev".into(),
            MountOption::Suid => "suid".into(),
            MountOption::NoSuid => "nosuid".into(),
            MountOption::RO => "ro".into(),
            MountOption::RW => "rw".into(),
            MountOption::Exec => "exec".into(),
            MountOption::NoExec => "noexec".into(),
            MountOption::Atime => "atime".into(),
            MountOption::NoAtime => "noatime".into(),
            MountOption::DirSync => "dirsync".into(),
            MountOption::Sync => "sync".into(),
            MountOption::Async => "async".into(),
        })
        .collect();
    // As fuser does: the kernel knows only allow_other; fuser itself enforces allow_root.
    if acl != SessionACL::Owner {
        out.push("allow_other".into());
    }
    out.join(",")
}

fn fusermount_mount(
    mountpoint: &Path,
    options: &[MountOption],
    acl: SessionACL,
) -> Result<(OwnedFd, AutoUnmount), FsError> {
    use std::os::unix::process::CommandExt;
    let failed = |what: String| FsError::Mount(format!("{}: {what}", mountpoint.display()));
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| failed(format!("socketpair: {e}")))?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-o")
        .arg(fusermount_options(options, acl))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure only calls fcntl (async-signal-safe) on a descriptor that stays
    // open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        failed(format!(
            "cannot open /dev/fuse and cannot run fusermount3 ({e}); install fuse3"
        ))
    })?;
    drop(theirs);
    let received = receive_fd(&ours);
    let auto_unmount = options.contains(&MountOption::AutoUnmount);
    match received {
        Ok(fd) if auto_unmount => Ok((fd, Some((ours, child)))),
        Ok(fd) => {
            drop(ours);
            let _ = child.wait();
            Ok((fd, None))
        }
        Err(e) => {
            drop(ours);
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
            }
            let _ = child.wait();
            let why = stderr.trim();
            Err(failed(if why.is_empty() {
                format!("fusermount3 did not mount: {e}")
            } else if why.contains("/dev/fuse") {
                // fusermount3 opens the device as the calling user, so it cannot help
                // where the device is closed to users: say what can.
                format!(
                    "{why}: FUSE is closed to this user (/dev/fuse must be readable and \
                     writable by them: Debian's default is mode 0666, e.g. \
                     `sudo chmod 0666 /dev/fuse`); or mount as root"
                )
            } else {
                why.to_string()
            }))
        }
    }
}

/// Receives the /dev/fuse descriptor fusermount3 sends (SCM_RIGHTS).
fn receive_fd(socket: &std::os::unix::net::UnixStream) -> Result<OwnedFd, nix::errno::Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                if fd >= 0 {
                    // SAFETY: the kernel just installed this descriptor for us; nothing
                    // else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    Err(nix::errno::Errno::EPROTO)
}

/// How often, and how far apart, a busy backing-directory lock is tried (2 s in all).
const LOCK_TRIES: u32 = 20;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// An exclusive `flock` on the backing directory, held by the mount process for the
/// life of the mount (released by the kernel if the process dies).
#[derive(Debug)]
pub struct BackingLock {
    _dir: std::fs::File,
}

impl BackingLock {
    /// Locks `backing`, or explains which process already mounts it.
    pub fn acquire(backing: &Path) -> Result<BackingLock, FsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(backing)
            .map_err(|e| FsError::Mount(format!("backing directory {}: {e}", backing.display())))?;
        // A mount that is just ending (its `umount` returned, its process is still
        // closing down) lets go within moments: give it that long before refusing, so
        // that `kmsfs umount A && kmsfs mount B` works in scripts.
        let mut tries = LOCK_TRIES;
        let err = loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(BackingLock { _dir: dir });
            }
            let err = nix::errno::Errno::last();
            tries -= 1;
            if err != nix::errno::Errno::EWOULDBLOCK || tries == 0 {
                break err;
            }
            std::thread::sleep(LOCK_RETRY);
        };
        if err != nix::errno::Errno::EWOULDBLOCK {
            return Err(FsError::Mount(format!(
                "locking backing directory {}: {err}",
                backing.display()
            )));
        }
        let holder = std::os::unix::fs::MetadataExt::ino(&dir.metadata()?);
        let dev = std::os::unix::fs::MetadataExt::dev(&dir.metadata()?);
        let by = match lock_holder(dev, holder) {
            Some((pid, cmd)) if !cmd.is_empty() => format!(" by process {pid} (`{cmd}`)"),
            Some((pid, _)) => format!(" by process {pid}"),
            None => String::new(),
        };
        Err(FsError::Mount(format!(
            "backing directory {} is already mounted{by}; unmount that mount first \
             (two mounts of one volume would interleave writes to the same files)",
            backing.display()
        )))
    }
}

/// The process holding a `flock` on the file (`dev`, `ino`), and its command line, from
/// /proc/locks.
fn lock_holder(dev: u64, ino: u64) -> Option<(u32, String)> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let pid = locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "N: FLOCK ADVISORY WRITE PID MAJ:MIN:INO START END"; waiters have "->".
        if f.get(1) != Some(&"FLOCK") || f.get(5) != Some(&want.as_str()) {
            return None;
        }
        f.get(4)?.parse::<u32>().ok()
    })?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some((pid, cmd))
}

/// Creates a new volume in `backing` (which must be empty or absent) whose new files use
/// `default_key`: writes the volume file, authenticates it with the volume secret the key
/// service holds for the new volume id, and writes the root directory's metadata.
pub fn init_volume(
    backing: &Path,
    default_key: &str,
    keys: &dyn DataKeys,
) -> Result<VolumeConfig, FsError> {
    init_volume_with(backing, default_key, None, keys)
}

/// [`init_volume`], also recording `kms_endpoint` (the remote KMS of the volume's remote
/// keys) in the authenticated volume file. The default key is not looked up: it may be
/// a remote key ARN that the local store does not hold.
pub fn init_volume_with(
    backing: &Path,
    default_key: &str,
    kms_endpoint: Option<&str>,
    keys: &dyn DataKeys,
) -> Result<VolumeConfig, FsError> {
    if let Some(url) = kms_endpoint {
        crate::format::volume::validate_endpoint(url)
            .map_err(|r| FsError::Mount(format!("--kms-endpoint {url}: {r}")))?;
    }
    let mut volume = VolumeConfig::create(backing, default_key)?;
    volume.kms_endpoint = kms_endpoint.map(str::to_string);
    let secret = keys.volume_secret(&volume.volume_id)?;
    let key = MetadataKey::new(&secret);
    volume.save(backing, &key)?;
    DirMeta::create(backing, None, &key)?;
    // A new volume has no format-1 key rules: nothing to import, no first-mount window.
    keys.import_dir_rules(&volume.volume_id, &[])?;
    Ok(volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_map_to_fuser_and_default_the_fsname() {
        let p = parse_options(&opts(&["allow_other,default_permissions", "ro"])).unwrap();
        assert_eq!(p.acl, SessionACL::All);
        assert!(p.read_only);
        assert!(p.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(p.mount_options.contains(&MountOption::RO));
        assert!(p
            .mount_options
            .contains(&MountOption::FSName("kmsfs".into())));
        let p = parse_options(&opts(&["fsname=mine"])).unwrap();
        assert!(p
            .mount_options
            .contains(&MountOption::FSName("mine".into())));
        assert_eq!(p.acl, SessionACL::Owner);
    }

    #[test]
    fn nonempty_is_ours_and_allow_other_reaches_fusermount() {
        let p = parse_options(&opts(&["nonempty,default_permissions"])).unwrap();
        assert!(p.nonempty);
        assert!(!p
            .mount_options
            .iter()
            .any(|o| matches!(o, MountOption::CUSTOM(_))));
        let s = fusermount_options(&p.mount_options, SessionACL::All);
        assert_eq!(
            s,
            "default_permissions,fsname=kmsfs,subtype=kmsfs,allow_other"
        );
    }

    #[test]
    fn mount_points_that_are_missing_files_or_full_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing, false).unwrap_err().to_string();
        assert!(e.contains("does not exist") && e.contains("mkdir"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_mountpoint(&file, false).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = check_mountpoint(dir.path(), false).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("-o nonempty"), "{e}");
        check_mountpoint(dir.path(), true).unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mountpoint(&empty, false).unwrap();
    }

    #[test]
    fn a_locked_backing_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = BackingLock::acquire(dir.path()).unwrap();
        let e = BackingLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("already mounted"), "{e}");
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(first);
        BackingLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn writeback_cache_is_off_unless_asked_for() {
        assert!(
            !parse_options(&opts(&["allow_other"]))
                .unwrap()
                .writeback_cache
        );
        let p = parse_options(&opts(&["allow_other,writeback_cache"])).unwrap();
        assert!(p.writeback_cache);
        // The daemon's option, never passed to the kernel or fusermount3.
        assert!(!fusermount_options(&p.mount_options, p.acl).contains("writeback"));
        let p = parse_options(&opts(&["writeback_cache", "no_writeback_cache"])).unwrap();
        assert!(!p.writeback_cache);
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let e = parse_options(&opts(&["allow_others"])).unwrap_err();
        assert!(e.to_string().contains("allow_others"), "{e}");
    }
}
