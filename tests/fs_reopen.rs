//! Every open reopens the backing object the kernel's node stands for: by its file
//! handle where the daemon may (`open_by_handle_at`, CAP_DAC_READ_SEARCH), else through
//! `/proc/self/fd`. Either way never by name, so a name swapped in the backing directory
//! is not what an open reaches, a file unlinked while open reopens, and a daemon without
//! the capability still opens everything. Read-only opens of one file share one backing
//! descriptor, kept by its node; each open still reads the header from disk and asks the
//! key service. Real mounts; needs root and /dev/fuse.

mod support;

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use support::fs::*;

/// Writes `rel` through the mount and returns its backing file (the one that appeared).
fn write_new(m: &Mounted, rel: &str, content: &[u8]) -> PathBuf {
    m.assert_live();
    let before = m.backing_files();
    fs::write(m.path(rel), content).unwrap();
    let mut after = m.backing_files();
    after.retain(|p| !before.contains(p));
    assert_eq!(after.len(), 1, "{after:?}");
    after.remove(0)
}

#[test]
fn an_open_reaches_the_nodes_object_even_after_its_backing_name_was_swapped() {
    let m = Mounted::new(&[]);
    let a = write_new(&m, "a.txt", b"content of a");
    let b = write_new(&m, "b.txt", b"content of b, longer");
    // The kernel now holds both names (entry TTL); opening them reopens their nodes.
    assert_eq!(fs::read(m.path("a.txt")).unwrap(), b"content of a");
    // Someone with access to the backing directory swaps the two backing files.
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &a,
        nix::fcntl::AT_FDCWD,
        &b,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    // Still each node's own object: an open by name would now read the other file.
    for _ in 0..3 {
        assert_eq!(fs::read(m.path("a.txt")).unwrap(), b"content of a");
        assert_eq!(fs::read(m.path("b.txt")).unwrap(), b"content of b, longer");
    }
}

#[test]
fn a_file_unlinked_while_open_opens_again_through_its_descriptor() {
    let m = Mounted::new(&[]);
    write_new(&m, "gone.txt", b"still here");
    let held = File::open(m.path("gone.txt")).unwrap();
    fs::remove_file(m.path("gone.txt")).unwrap();
    assert!(m.backing_files().is_empty(), "{:?}", m.backing_files());
    // A new OPEN of the same node (its backing file has no name left).
    let again = format!("/proc/self/fd/{}", held.as_raw_fd());
    let mut text = String::new();
    File::open(again)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "still here");
}

/// Clears CAP_DAC_READ_SEARCH from this thread's effective and permitted sets (threads
/// it spawns inherit that). Root keeps CAP_DAC_OVERRIDE, so plain file access is unchanged;
/// `open_by_handle_at` (and `linkat` with `AT_EMPTY_PATH` of another's descriptor) is
/// refused.
fn drop_dac_read_search() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data elements, as the ABI
    // asks; both outlive the calls. pid 0 is the calling thread.
    unsafe {
        assert_eq!(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr()
            ),
            0
        );
        data[0].effective &= !(1 << CAP_DAC_READ_SEARCH);
        data[0].permitted &= !(1 << CAP_DAC_READ_SEARCH);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
            0
        );
    }
}

#[test]
fn a_daemon_without_cap_dac_read_search_opens_files_through_proc() {
    std::thread::spawn(|| {
        drop_dac_read_search();
        // The mount's worker threads start from this thread: they lack it too.
        let m = Mounted::new(&[]);
        let mut bodies = Vec::new();
        for i in 0..4 {
            let body = format!("file {i} ").repeat(1000 + i).into_bytes();
            fs::write(m.path(&format!("f{i}")), &body).unwrap();
            bodies.push(body);
        }
        m.assert_live();
        for _ in 0..2 {
            for (i, body) in bodies.iter().enumerate() {
                assert_eq!(&fs::read(m.path(&format!("f{i}"))).unwrap(), body);
            }
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.path("f0"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"more").unwrap();
        drop(f);
        assert!(fs::read(m.path("f0")).unwrap().ends_with(b"more"));
    })
    .join()
    .unwrap();
}

/// Descriptors of this process (the daemon runs in it) that name `backing`.
fn descriptors_of(backing: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == backing)
        .count()
}

/// Waits until every handle of the mount is released (RELEASE is sent asynchronously
/// after `close`): the descriptors counted afterwards are the nodes' own. Gives up only
/// after a minute (a stuck release), never as a measure of speed.
fn released(m: &Mounted) {
    for _ in 0..6000 {
        if m.session().open_files() == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} handles still open", m.session().open_files());
}

#[test]
fn read_only_opens_of_a_file_share_one_backing_descriptor() {
    let m = Mounted::new(&[]);
    let backing = write_new(&m, "shared.txt", b"one descriptor");
    assert_eq!(fs::read(m.path("shared.txt")).unwrap(), b"one descriptor");
    released(&m);
    // The node's O_PATH descriptor and the read-only one its first open kept.
    let kept = descriptors_of(&backing);
    let opens = m.keys.opens();
    let held: Vec<File> = (0..3)
        .map(|_| File::open(m.path("shared.txt")).unwrap())
        .collect();
    assert_eq!(m.session().open_files(), 3);
    assert_eq!(descriptors_of(&backing), kept, "no descriptor per open");
    // Each open asked the key service itself.
    assert_eq!(m.keys.opens(), opens + 3);
    for f in &held {
        let mut buf = [0u8; 14];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"one descriptor");
    }
    // A writable open gets a descriptor of its own.
    let writer = fs::OpenOptions::new()
        .write(true)
        .open(m.path("shared.txt"))
        .unwrap();
    assert_eq!(descriptors_of(&backing), kept + 1);
    drop(writer);
    drop(held);
}

#[test]
fn with_a_shared_descriptor_a_revocation_still_refuses_the_next_open() {
    let m = Mounted::new(&[]);
    write_new(&m, "r.txt", b"revocable");
    let held = File::open(m.path("r.txt")).unwrap();
    m.keys.set_state(DEFAULT_KEY, KeyState::Disabled);
    // The descriptor is shared, the permission is not: a new open asks again.
    let err = File::open(m.path("r.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EKEYREVOKED));
    m.keys.set_state(DEFAULT_KEY, KeyState::Enabled);
    assert_eq!(fs::read(m.path("r.txt")).unwrap(), b"revocable");
    drop(held);
}

#[test]
fn a_header_changed_behind_the_mount_is_read_at_the_next_open() {
    let m = Mounted::new(&[]);
    let backing = write_new(&m, "h.txt", b"header on disk");
    assert_eq!(fs::read(m.path("h.txt")).unwrap(), b"header on disk");
    // No remount: the node and its shared descriptor stay. One byte of the header's key
    // commitment flipped in place, in the backing file.
    let raw = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&backing)
        .unwrap();
    let mut byte = [0u8; 1];
    raw.read_exact_at(&mut byte, 1000).unwrap();
    raw.write_all_at(&[byte[0] ^ 1], 1000).unwrap();
    let err = fs::read(m.path("h.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    raw.write_all_at(&byte, 1000).unwrap();
    assert_eq!(fs::read(m.path("h.txt")).unwrap(), b"header on disk");
}
