//! Running a long-lived command (mount, serve) in the background the way `mount(8)`
//! users expect: the command returns only once the mount is live (or prints why it
//! failed), and the daemon keeps running detached from the terminal.
//!
//! The fork happens before any thread exists (the service and FUSE threads start in the
//! child), so the child is a clean single-threaded copy.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context};
use nix::unistd::{fork, pipe, setsid, ForkResult};

/// Tells the waiting parent that the daemon is ready, or why it failed.
pub struct Readiness {
    pipe: Option<std::fs::File>,
}

impl Readiness {
    /// Foreground mode: nobody waits.
    pub fn none() -> Self {
        Readiness { pipe: None }
    }

    /// The daemon is ready: the parent exits 0. Also detaches stdio from the terminal.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"OK\n");
            detach_stdio();
        }
    }

    /// The daemon failed before being ready: the parent prints `message` and exits 1.
    /// In a daemon this ends the process (the parent already reported the error); in
    /// the foreground it returns so the caller reports it.
    pub fn failed(&mut self, message: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(format!("ERR {message}\n").as_bytes());
            drop(p);
            std::process::exit(1);
        }
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let fd = null.as_raw_fd();
        // SAFETY: dup2 onto the standard descriptors with a valid open descriptor.
        unsafe {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
    }
}

/// Forks. In the parent: waits for the child's readiness line and returns `Ok(None)`
/// with the exit code to use; in the child: returns `Ok(Some(readiness))` after
/// `setsid`. Must be called before any thread is started.
pub fn daemonize() -> anyhow::Result<Result<Readiness, i32>> {
    let (read_end, write_end): (OwnedFd, OwnedFd) = pipe().context("pipe")?;
    // SAFETY: called before this process starts any thread (documented contract), so
    // the child may run arbitrary code after fork.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            let mut r = std::fs::File::from(read_end);
            let mut msg = String::new();
            let _ = r.read_to_string(&mut msg);
            if msg.starts_with("OK") {
                Ok(Err(0))
            } else if let Some(err) = msg.strip_prefix("ERR ") {
                eprintln!("kmsfs: {}", err.trim_end());
                Ok(Err(1))
            } else {
                bail!("the background process exited before it was ready (see the system log)")
            }
        }
        ForkResult::Child => {
            drop(read_end);
            let _ = setsid();
            Ok(Ok(Readiness {
                pipe: Some(std::fs::File::from(write_end)),
            }))
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread; call before starting any thread so
/// that every thread inherits the mask and the signals queue for
/// [`wait_for_signal_or`] instead of killing the process mid-write.
pub fn block_termination_signals() {
    let _ = termination_signals().thread_block();
}

fn termination_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Blocks until SIGINT, SIGTERM or SIGHUP arrives, or `done` returns true (polled).
pub fn wait_for_signal_or(done: impl Fn() -> bool) {
    let set = termination_signals();
    loop {
        if done() {
            return;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: valid sigset and timespec pointers; siginfo may be null.
        let rc = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if rc > 0 {
            return;
        }
    }
}
