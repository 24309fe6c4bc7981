//! New directories (whose `kmsfs.dir` is no longer fsynced where the directory id
//! attribute is set) and the files in them survive kill -9 of the daemon right after
//! they were made: nothing the daemon answered is lost with it. A child process is the
//! daemon; the test process works through the mount. Needs root. Kept in its own test
//! binary because it forks.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kmsfs::fs::MountSpec;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use support::fs::*;

/// Detaches whatever a killed daemon left mounted, also when the test fails.
struct Detach(std::path::PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Kills the daemon if the test fails before it does.
struct Reap(Pid);

impl Drop for Reap {
    fn drop(&mut self) {
        if kill(self.0, Signal::SIGKILL).is_ok() {
            let _ = waitpid(self.0, None);
        }
    }
}

fn is_mounted(mnt: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Ok(p)) = (fs::metadata(mnt), fs::metadata(mnt.join(".."))) else {
        return false;
    };
    m.dev() != p.dev()
}

#[test]
fn new_directories_and_their_files_survive_kill_9_of_the_daemon() {
    let mut m = Mounted::new(&[]);
    m.unmount();
    let _detach = Detach(m.mnt.clone());
    // SAFETY: the child runs only the mount (this crate's code) and sleeps until killed.
    let daemon = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let spec = MountSpec {
                backing: m.backing.clone(),
                mountpoint: m.mnt.clone(),
                options: vec![],
                threads: 2,
            };
            // A fresh test key service: same wrapping key, so the parent can unwrap.
            match kmsfs::fs::mount(&spec, TestKeys::new()) {
                Ok(_session) => loop {
                    std::thread::sleep(Duration::from_secs(1));
                },
                Err(_) => unsafe { libc::_exit(3) },
            }
        }
        ForkResult::Parent { child } => child,
    };
    let reap = Reap(daemon);
    let start = Instant::now();
    while !is_mounted(&m.mnt) {
        // The bound only keeps a broken child from hanging the suite.
        assert!(start.elapsed() < Duration::from_secs(60), "no mount");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut made = Vec::new();
    for i in 0..20 {
        let d = format!("d{i}/sub{i}");
        fs::create_dir_all(m.path(&d)).unwrap();
        let f = format!("{d}/f{i}");
        fs::write(m.path(&f), format!("file {i}")).unwrap();
        made.push(f);
    }
    kill(daemon, Signal::SIGKILL).unwrap();
    waitpid(daemon, None).unwrap();
    std::mem::forget(reap);
    nix::mount::umount2(&m.mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();

    m.mount(&[]);
    m.assert_live();
    for (i, f) in made.iter().enumerate() {
        assert_eq!(fs::read_to_string(m.path(f)).unwrap(), format!("file {i}"));
    }
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 20);
    m.unmount();
}
