//! Unlink through a real mount after the daemon stopped asking the backing directory
//! about every name it unlinks: a symlink's stored target still goes with its last
//! link however the kernel came to know the symlink (a lookup by the unlink itself, a
//! listing, a hard link), and the nodes the kernel forgets are closed by the reaper
//! thread, exactly once. Needs root and /dev/fuse.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;

use support::fs::*;

fn stored_targets(backing: &Path) -> usize {
    fs::read_dir(backing)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("kmsfs.st.")
        })
        .count()
}

/// A target too long to be stored in the backing link itself.
fn long_target() -> String {
    format!("/{}", "t/".repeat(1800))
}

fn drop_kernel_inodes() {
    assert!(std::process::Command::new("sync")
        .status()
        .unwrap()
        .success());
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

/// Descriptors open in this process (the daemon runs in it) on objects under `backing`
/// (other tests of this file run their own mounts at the same time).
fn fds_under(backing: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(backing))
        .count()
}

#[test]
fn a_stored_symlink_target_goes_with_the_last_link_however_the_kernel_knows_the_link() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let target = long_target();

    // Known to the kernel only through the unlink's own lookup: after a remount the
    // daemon holds no symlink node until that lookup.
    symlink(&target, m.path("looked-up")).unwrap();
    fs::write(m.path("file"), b"x").unwrap();
    assert_eq!(stored_targets(&m.backing), 1);
    m.remount(&[]);
    fs::remove_file(m.path("file")).unwrap();
    fs::remove_file(m.path("looked-up")).unwrap();
    assert_eq!(stored_targets(&m.backing), 0);

    // Known through a listing (READDIRPLUS) only.
    symlink(&target, m.path("listed")).unwrap();
    m.remount(&[]);
    let names: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["listed"]);
    fs::remove_file(m.path("listed")).unwrap();
    assert_eq!(stored_targets(&m.backing), 0);

    // Two links: the first unlink keeps the stored target, the last removes it, also
    // when the kernel had forgotten the node in between.
    symlink(&target, m.path("a")).unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    m.remount(&[]);
    fs::remove_file(m.path("a")).unwrap();
    assert_eq!(stored_targets(&m.backing), 1);
    assert_eq!(fs::read_link(m.path("b")).unwrap(), Path::new(&target));
    drop_kernel_inodes();
    fs::remove_file(m.path("b")).unwrap();
    assert_eq!(stored_targets(&m.backing), 0);

    // A symlink in a subdirectory, its directory known, the link itself not.
    fs::create_dir(m.path("d")).unwrap();
    symlink(&target, m.path("d/l")).unwrap();
    m.remount(&[]);
    fs::metadata(m.path("d")).unwrap();
    fs::remove_file(m.path("d/l")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    assert_eq!(stored_targets(&m.backing), 0);
}

#[test]
fn unlink_of_open_files_hard_links_and_symlinks_answers_as_before() {
    let m = Mounted::new(&[]);
    m.assert_live();
    // An open file stays readable and writable after its last name is gone.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("open"))
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(m.path("open")).unwrap();
    assert!(!m.path("open").exists());
    let mut back = String::new();
    let mut again = fs::File::open(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        f.as_raw_fd()
    }))
    .unwrap();
    again.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still here");
    assert_eq!(f.metadata().unwrap().len(), 10);
    drop((f, again));

    // A hard link keeps the content; the link count follows.
    fs::write(m.path("h1"), b"linked").unwrap();
    fs::hard_link(m.path("h1"), m.path("h2")).unwrap();
    fs::remove_file(m.path("h1")).unwrap();
    assert_eq!(fs::read(m.path("h2")).unwrap(), b"linked");
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(m.path("h2")).unwrap().nlink(), 1);
    }

    // A short symlink (target inline) and a dangling one go; what they point to stays.
    symlink("h2", m.path("s")).unwrap();
    symlink("nowhere", m.path("dangling")).unwrap();
    fs::remove_file(m.path("s")).unwrap();
    fs::remove_file(m.path("dangling")).unwrap();
    assert_eq!(fs::read(m.path("h2")).unwrap(), b"linked");

    // Errors as ext4 gives them.
    let err = fs::remove_file(m.path("missing")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/x"), b"").unwrap();
    let err = fs::remove_file(m.path("dir")).unwrap_err();
    assert!(matches!(
        err.raw_os_error(),
        Some(libc::EISDIR) | Some(libc::EPERM)
    ));
    let err = fs::remove_dir(m.path("dir")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(m.path("dir/x")).unwrap();
    fs::remove_dir(m.path("dir")).unwrap();
    fs::remove_file(m.path("h2")).unwrap();
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0);
}

/// The nice value of thread `tid` of this process (field 19 of its `stat`).
fn nice_of(tid: &str) -> i64 {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(16).unwrap().parse().unwrap()
}

fn reaper_threads() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|tid| {
            fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .map(|c| c.trim() == "kmsfs-reaper")
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn forgotten_nodes_are_closed_by_a_lower_priority_reaper_exactly_once() {
    let m = Mounted::new(&[]);
    m.assert_live();
    let reapers = reaper_threads();
    assert!(!reapers.is_empty(), "no kmsfs-reaper thread");
    let own = nice_of(&nix::unistd::gettid().to_string());
    for tid in &reapers {
        assert!(
            nice_of(tid) > own,
            "the reaper runs at the daemon's priority"
        );
    }

    let nodes_before = m.session().known_nodes();
    let fds_before = fds_under(&m.backing);
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..200 {
        fs::write(m.path(&format!("d/f{i}")), b"x").unwrap();
    }
    for i in 0..200 {
        assert_eq!(fs::read(m.path(&format!("d/f{i}"))).unwrap(), b"x");
    }
    // Each unlink's FORGET hands the node to the reaper, which closes its descriptor
    // (the backing inode's final release). Wait for the counts, no time limit asserted.
    fs::remove_dir_all(m.path("d")).unwrap();
    drop_kernel_inodes();
    let mut tries = 0;
    while m.session().known_nodes() != nodes_before || fds_under(&m.backing) != fds_before {
        tries += 1;
        assert!(
            tries < 6000,
            "not back to the baseline: {} nodes (before {nodes_before}), {} descriptors \
             (before {fds_before})",
            m.session().known_nodes(),
            fds_under(&m.backing)
        );
        if tries % 500 == 0 {
            drop_kernel_inodes();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    m.assert_live();
    fs::write(m.path("after"), b"y").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"y");
}
