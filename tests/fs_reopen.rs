//! Every open reopens the backing object the kernel's node stands for: by its file
//! handle where the daemon may (`open_by_handle_at`, CAP_DAC_READ_SEARCH), else through
//! `/proc/self/fd`. Either way never by name, so a name swapped in the backing directory
//! is not what an open reaches, a file unlinked while open reopens, and a daemon without
//! the capability still opens everything. Real mounts; needs root and /dev/fuse.

mod support;

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

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
