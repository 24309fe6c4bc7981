//! Objects without content work as on ext4: character and block devices (with their
//! device numbers), FIFOs and sockets, and symlinks up to PATH_MAX − 1 bytes; rename
//! and unlink answer with ext4's errnos. Real mounts. Needs root.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use support::fs::*;

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn stored_targets(backing: &Path) -> usize {
    names_in(backing)
        .iter()
        .filter(|n| n.starts_with("kmsfs.st."))
        .count()
}

#[test]
fn device_nodes_fifos_and_sockets_keep_their_type_mode_and_device_number() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    let perm = Mode::from_bits_truncate(0o640);
    mknod(&m.path("chr"), SFlag::S_IFCHR, perm, makedev(1, 3)).unwrap();
    mknod(&m.path("blk"), SFlag::S_IFBLK, perm, makedev(7, 300)).unwrap();
    mknod(&m.path("fifo"), SFlag::S_IFIFO, perm, 0).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(m.path("sock")).unwrap();
    drop(sock);
    // Only CAP_MKNOD makes devices, as on ext4.
    let out = sh_as(61001, &format!("mknod {}/nope c 1 3", q(&m.mnt)));
    assert_failed_with(&out, libc::EPERM);

    m.remount(MULTI_USER);
    assert_eq!(names_in(&m.mnt), ["blk", "chr", "fifo", "sock"]);
    let check = |name: &str| fs::symlink_metadata(m.path(name)).unwrap();
    let chr = check("chr");
    assert!(chr.file_type().is_char_device());
    assert_eq!(chr.rdev(), makedev(1, 3));
    assert_eq!(chr.mode() & 0o7777, 0o640);
    let blk = check("blk");
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), makedev(7, 300));
    assert!(check("fifo").file_type().is_fifo());
    assert!(check("sock").file_type().is_socket());
    // Names are encrypted like any other.
    for n in names_in(&m.backing) {
        assert!(!["chr", "blk", "fifo", "sock"].contains(&n.as_str()), "{n}");
    }
    for n in ["chr", "blk", "fifo", "sock"] {
        fs::remove_file(m.path(n)).unwrap();
    }
    assert!(names_in(&m.mnt).is_empty());
}

#[test]
fn symlinks_up_to_path_max_minus_one_bytes_work_and_clean_up_after_themselves() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let longest = format!("/{}", "d/".repeat(2047)); // 4095 bytes
    assert_eq!(longest.len(), 4095);
    std::os::unix::fs::symlink(&longest, m.path("long")).unwrap();
    std::os::unix::fs::symlink("short", m.path("short")).unwrap();
    assert_eq!(stored_targets(&m.backing), 1);
    let err = std::os::unix::fs::symlink(format!("{longest}x"), m.path("over")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));

    m.remount(&[]);
    assert_eq!(fs::read_link(m.path("long")).unwrap(), Path::new(&longest));
    assert_eq!(fs::symlink_metadata(m.path("long")).unwrap().len(), 4095);
    assert_eq!(fs::read_link(m.path("short")).unwrap(), Path::new("short"));
    // The stored target is sealed: the plaintext appears nowhere in the backing dir.
    let mut files = Vec::new();
    walk(&m.backing, &mut files);
    for f in files {
        let bytes = fs::read(&f).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"d/d/d/d/"),
            "{}",
            f.display()
        );
    }

    // Times of the symlink itself (lutimes), not of what it points to; stat does not
    // touch them (the size of an inline target follows from the backing length).
    let (atime, mtime) = (
        nix::sys::time::TimeSpec::new(1_960_000_000, 0),
        nix::sys::time::TimeSpec::new(1_970_000_000, 0),
    );
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &m.path("short"),
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    m.remount(&[]);
    let meta = fs::symlink_metadata(m.path("short")).unwrap();
    assert_eq!((meta.atime(), meta.mtime()), (1_960_000_000, 1_970_000_000));

    // The stored target is authenticated like an inline one.
    let store = m.backing.join(
        names_in(&m.backing)
            .into_iter()
            .find(|n| n.starts_with("kmsfs.st."))
            .unwrap(),
    );
    let original = fs::read(&store).unwrap();
    let mut bad = original.clone();
    bad[100] ^= 1;
    fs::write(&store, &bad).unwrap();
    m.remount(&[]);
    let err = fs::read_link(m.path("long")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    fs::write(&store, &original).unwrap();
    m.remount(&[]);

    // A hard link of the symlink shares it; the stored target goes with the last link.
    fs::hard_link(m.path("long"), m.path("long2")).unwrap();
    fs::remove_file(m.path("long")).unwrap();
    assert_eq!(fs::read_link(m.path("long2")).unwrap(), Path::new(&longest));
    assert_eq!(stored_targets(&m.backing), 1);
    fs::remove_file(m.path("long2")).unwrap();
    assert_eq!(stored_targets(&m.backing), 0);

    // Replaced by a rename: its stored target goes too.
    std::os::unix::fs::symlink(&longest, m.path("victim")).unwrap();
    fs::rename(m.path("short"), m.path("victim")).unwrap();
    assert_eq!(fs::read_link(m.path("victim")).unwrap(), Path::new("short"));
    assert_eq!(stored_targets(&m.backing), 0);
}

#[test]
fn rename_and_unlink_answer_like_ext4() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir_all(m.path("dir/sub")).unwrap();
    fs::create_dir(m.path("full")).unwrap();
    fs::write(m.path("full/f"), b"x").unwrap();
    fs::write(m.path("file"), b"x").unwrap();
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    assert_eq!(
        errno(fs::rename(m.path("dir"), m.path("file"))),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        errno(fs::rename(m.path("file"), m.path("dir"))),
        Some(libc::EISDIR)
    );
    assert_eq!(
        errno(fs::rename(m.path("dir"), m.path("full"))),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        errno(fs::rename(m.path("dir"), m.path("dir/sub/x"))),
        Some(libc::EINVAL)
    );
    assert_eq!(errno(fs::remove_file(m.path("dir"))), Some(libc::EISDIR));
    assert_eq!(errno(fs::remove_dir(m.path("file"))), Some(libc::ENOTDIR));
    assert_eq!(
        errno(fs::rename(m.path("file"), "/tmp/kmsfs-exdev-target")),
        Some(libc::EXDEV)
    );

    // Sticky directory: another user may not remove or rename root's entry.
    set_mode(&m.path("dir"), 0o1777);
    fs::create_dir(m.path("dir/roots")).unwrap();
    let mnt = q(&m.mnt);
    let out = sh_as(61001, &format!("rmdir {mnt}/dir/roots"));
    assert_failed_with(&out, libc::EPERM);
    let out = sh_as(61001, &format!("mv {mnt}/dir/roots {mnt}/dir/mine"));
    assert_failed_with(&out, libc::EPERM);
    assert!(m.path("dir/roots").is_dir());
}
