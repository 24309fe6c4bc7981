//! Crash safety with the writeback cache (`-o writeback_cache`): data that was fsync'd,
//! or written and closed, is in the backing store when the daemon is killed with
//! SIGKILL right after; only writes neither fsync'd nor closed may be lost (as on power
//! loss), and the writer then sees an error. A child process is the daemon; the test
//! process writes through the mount. Needs root. Kept in its own test binary because
//! it forks.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use support::fs::crash::{spawn_daemon, Detach};
use support::fs::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(13)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

#[test]
fn fsynced_and_closed_data_survive_kill_9_of_the_daemon() {
    let mut m = Mounted::new(&[]);
    m.unmount();
    let _detach = Detach(m.mnt.clone());
    let reap = spawn_daemon(&m.backing, &m.mnt, &["writeback_cache"], |s| {
        s.writeback_cache()
    });
    let daemon = reap.0;
    let synced = pattern(2 * 1024 * 1024 + 77, 1);
    let closed = pattern(300_000, 2);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.mnt.join("synced"))
        .unwrap();
    f.write_all(&synced).unwrap();
    f.sync_all().unwrap();
    fs::write(m.mnt.join("closed"), &closed).unwrap();
    // Written, neither fsync'd nor closed: may be lost with the daemon.
    let mut open = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.mnt.join("open"))
        .unwrap();
    open.write_all(&pattern(100_000, 3)).unwrap();

    kill(daemon, Signal::SIGKILL).unwrap();
    waitpid(daemon, None).unwrap();
    std::mem::forget(reap);
    // The connection is gone: the close of the unsynced file cannot write it back and
    // reports that, never success.
    assert!(open.sync_all().is_err());
    drop(open);
    drop(f);
    nix::mount::umount2(&m.mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();

    m.mount(&[]);
    m.assert_live();
    assert_eq!(fs::read(m.path("synced")).unwrap(), synced);
    assert_eq!(fs::read(m.path("closed")).unwrap(), closed);
    // Whatever reached the backing file of the unsynced one reads back, or is EIO
    // for a block torn by the kill: never wrong bytes.
    match fs::read(m.path("open")) {
        Ok(got) => {
            let full = pattern(100_000, 3);
            assert!(got.len() <= full.len());
            for (i, (a, b)) in got.iter().zip(&full).enumerate() {
                assert!(a == b || *a == 0, "byte {i} of the unsynced file");
            }
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
    }
    m.unmount();
}
