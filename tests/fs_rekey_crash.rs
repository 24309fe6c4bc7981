//! Crash safety of re-keying under kill -9: a child process mounts the volume and
//! rewrites one file in a loop the way a database or `>` does (open with O_TRUNC, which
//! re-keys, then write); the parent kills it at a random moment, then checks that the
//! file's header and key match its blocks and that it reads either as one complete
//! generation of content or as an empty file: never EIO. Needs root. Kept in its own
//! test binary because it forks.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use kmsfs::format::{encryption_context, verify_file, FileHeader, VolumeConfig, HEADER_LEN};
use kmsfs::fs::MountSpec;
use kmsfs::kms::provider::{Caller, DataAction, DataKeys};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use support::fs::crash::{is_mounted, Detach};
use support::fs::*;

/// Generation `i` of the file: 2000 bytes, one partial block. Sealed (2040 bytes at
/// offset 1024) it lies in the file's first page, like the header: the kernel completes
/// or skips a single-page write when the daemon is killed, but may cut a write spanning
/// several pages short at a page boundary. That is a torn *data* write, which the format
/// does not journal (an unacknowledged write may leave its last block failing, as in
/// gocryptfs); this test is about the re-key's own ordering, so each write is kept to
/// one page and any failing block can only come from the re-key.
fn generation(i: u64) -> Vec<u8> {
    format!("generation {i:08}\n").repeat(100).into_bytes()
}

fn file_id(backing: &Path) -> [u8; 16] {
    let bytes = fs::read(backing).unwrap();
    FileHeader::decode(&bytes[..HEADER_LEN]).unwrap().file_id
}

fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b) % max
}

/// Forks a child that runs `body` and never returns to the test harness (it ends by
/// SIGKILL, or `_exit`).
fn spawn(body: impl FnOnce()) -> Pid {
    // SAFETY: the child runs only `body` (this crate's code), then `_exit`s.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            body();
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Polls `done`; the bound only keeps a broken child from hanging the suite.
fn wait_for(round: u64, what: &str, done: impl Fn() -> bool, children: &[Pid]) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(60) {
            for &c in children {
                let _ = kill(c, Signal::SIGKILL);
                let _ = waitpid(c, None);
            }
            panic!("round {round}: no sign of {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_during_rekeys_leaves_old_content_or_an_empty_file_never_eio() {
    let mut m = Mounted::new(&[]);
    fs::write(m.path("db"), generation(0)).unwrap();
    let backing = m.backing_files().remove(0);
    let volume_id = VolumeConfig::load(&m.backing).unwrap().volume_id;
    m.unmount();
    let _detach = Detach(m.mnt.clone());
    let mut empty_seen = 0;
    for round in 0..8u64 {
        let before = file_id(&backing);
        // The daemon and the writer are separate processes: a process that is both
        // cannot be killed while its own request waits for its own (dead) daemon.
        let daemon = spawn(|| {
            let spec = MountSpec {
                backing: m.backing.clone(),
                mountpoint: m.mnt.clone(),
                options: Vec::new(),
                threads: 2,
            };
            // A fresh test key service: same wrapping key, so the parent can unwrap.
            let _session = kmsfs::fs::mount(&spec, TestKeys::new());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        wait_for(round, "the mount", || is_mounted(&m.mnt), &[daemon]);
        let path = m.mnt.join("db");
        let writer = spawn(|| {
            for i in (round * 1_000_000 + 1).. {
                if let Ok(mut f) = OpenOptions::new().write(true).truncate(true).open(&path) {
                    let _ = f.write_all(&generation(i));
                }
            }
        });
        // Kill the daemon only once it has re-keyed and written at least once, so the
        // kill lands in the loop of re-keys and writes.
        wait_for(
            round,
            "a re-key and a write",
            || {
                file_id(&backing) != before
                    && fs::metadata(&backing).is_ok_and(|md| md.len() > HEADER_LEN as u64)
            },
            &[daemon, writer],
        );
        std::thread::sleep(Duration::from_millis(jitter_ms(40)));
        kill(daemon, Signal::SIGKILL).unwrap();
        waitpid(daemon, None).unwrap();
        // The writer's requests end with the daemon's device (ECONNABORTED).
        kill(writer, Signal::SIGKILL).unwrap();
        waitpid(writer, None).unwrap();
        nix::mount::umount2(&m.mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();

        // The header decodes, its key unwraps and commits, every block authenticates.
        let bytes = fs::read(&backing).unwrap();
        let header = FileHeader::decode(&bytes[..HEADER_LEN]).unwrap();
        let caller = Caller {
            uid: 0,
            gid: 0,
            pid: 0,
        };
        let key = m
            .keys
            .open_data_key(
                &caller,
                &header.key_arn,
                &header.wrapped_key,
                &encryption_context(&volume_id, &header.file_id),
                &[DataAction::Decrypt],
            )
            .unwrap();
        let report = verify_file(&backing, Some(&key));
        assert!(report.is_ok(), "round {round}: {report:?}");
        // And through a fresh mount it is one whole generation, or empty.
        m.mount(&[]);
        let got = fs::read(m.path("db")).unwrap();
        m.unmount();
        if got.is_empty() {
            empty_seen += 1;
        } else {
            let text = String::from_utf8(got.clone()).unwrap();
            let first = text.lines().next().unwrap();
            let i: u64 = first.trim_start_matches("generation ").parse().unwrap();
            assert_eq!(got, generation(i), "round {round}: a torn generation");
        }
    }
    eprintln!("{empty_seen} of 8 rounds ended with an empty file");
}
