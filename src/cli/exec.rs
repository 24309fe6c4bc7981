//! `kmsfs exec BACKING [--key KEY] [--mountpoint DIR] -- CMD [ARGS...]`: for CI and
//! scripts. Mounts the volume (on a private temporary directory unless `--mountpoint`),
//! runs CMD with `KMSFS_MOUNTPOINT` set, unmounts, and exits with CMD's status (128 +
//! the signal if CMD was killed), like `timeout` or `flock` do.
//!
//! The mount is always undone: when CMD fails, and when SIGINT, SIGTERM or SIGHUP
//! arrive (they are forwarded to CMD, and kmsfs waits for it to exit first, so CMD can
//! finish its writes). The control socket is not served: CMD reaches the store
//! directly, as its owner, and a key service already running on the machine is left
//! alone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{anyhow, Context};
use nix::sys::signal::{SigSet, Signal};

use crate::cli::service::{self, RootKeyOpts};
use crate::cli::{logging, GlobalOpts};

#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The backing directory (created by `kmsfs init BACKING`).
    pub backing: PathBuf,
    /// Use this key for new files instead of the volume's default key.
    #[arg(long)]
    pub key: Option<String>,
    /// Mount here (an existing, empty directory) instead of a private temporary one.
    #[arg(long, value_name = "DIR")]
    pub mountpoint: Option<PathBuf>,
    /// Mount options, as for `kmsfs mount`.
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub log: logging::LogOpts,
    /// The command to run, and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Removes the temporary mount point it was given (after the unmount).
struct TempMountpoint(Option<PathBuf>);

impl Drop for TempMountpoint {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A fresh 0700 directory in $XDG_RUNTIME_DIR (else the temp directory): nobody else
/// can reach the plaintext view, even on a mount with allow_other.
fn private_mountpoint() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut tag = [0u8; 6];
    getrandom::getrandom(&mut tag).map_err(|e| anyhow!("random mount point name: {e}"))?;
    let dir = base.join(format!(
        "kmsfs-exec-{}-{}",
        std::process::id(),
        hex::encode(tag)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating the mount point {}", dir.display()))?;
    Ok(dir)
}

fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

pub fn run(args: &ExecArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let (options, nonempty) = service::mount_options(&args.options, args.key.as_deref())?;
    crate::format::VolumeConfig::load(&args.backing).map_err(|e| anyhow!("{e}"))?;
    crate::cli::recovery::ensure_store_exists_for_volume(global, &args.backing)?;
    let temp = match &args.mountpoint {
        Some(m) => {
            service::prepare_mountpoint(m, nonempty)?;
            TempMountpoint(None)
        }
        None => TempMountpoint(Some(private_mountpoint()?)),
    };
    let mountpoint = match (&args.mountpoint, &temp.0) {
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) => return Err(anyhow!("no mount point")),
    };
    // Before any thread starts, so that every thread inherits the mask: the signals
    // then wait for us (to forward them) instead of killing kmsfs with the mount up.
    // SIGCHLD is blocked too so that the wait below wakes when CMD exits.
    let mut waited = forwarded_signals();
    waited.add(Signal::SIGCHLD);
    waited
        .thread_block()
        .map_err(|e| anyhow!("blocking signals: {e}"))?;
    logging::install(
        &args.log,
        args.log.sink(true),
        &format!("exec {}", mountpoint.display()),
        Some("warn,fuser::mnt=error"),
    )?;
    let spec = crate::fs::mount::MountSpec {
        backing: args.backing.clone(),
        mountpoint: mountpoint.clone(),
        options,
        threads: args.threads,
    };
    let running =
        service::start_mount(&spec, true, global, service::service_config(global, keys)?)?;
    let status = run_command(&args.command, &mountpoint, &waited);
    let stopped = running.stop();
    drop(temp);
    let code = status?;
    stopped.context("unmounting after the command")?;
    Ok(code)
}

/// Runs CMD with `KMSFS_MOUNTPOINT`, forwarding SIGINT/SIGTERM/SIGHUP, and returns its
/// exit code (127 if it cannot be found, 126 if it cannot be run, as shells do).
fn run_command(command: &[OsString], mountpoint: &Path, waited: &SigSet) -> anyhow::Result<i32> {
    let Some((program, rest)) = command.split_first() else {
        return Err(anyhow!("no command given after --"));
    };
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest).env("KMSFS_MOUNTPOINT", mountpoint);
    // CMD must not inherit our blocked signals (it would never see the SIGTERM we
    // forward): start it with an empty mask, as a shell would.
    // SAFETY: only sigprocmask, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsfs exec: {}: {e}", program.to_string_lossy());
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let forwarded = forwarded_signals();
    loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            return Ok(exit_code(status));
        }
        // Bounded wait: SIGCHLD normally wakes us at once; the timeout only guards
        // against a SIGCHLD consumed before the try_wait above.
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: valid sigset and timespec pointers; siginfo may be null.
        let sig = unsafe { libc::sigtimedwait(waited.as_ref(), std::ptr::null_mut(), &ts) };
        if let Ok(signal) = Signal::try_from(sig) {
            if forwarded.contains(signal) {
                log::info!("forwarding {signal} to the command (pid {pid})");
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
