//! Plain file-system behaviour through a real mount: contents, sizes, holes, names,
//! directories, links, attributes, concurrency, unmount. Needs root and /dev/fuse.

mod support;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use support::fs::*;

const B: usize = 4096;

fn read_all(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

#[test]
fn small_write_read_round_trip() {
    let m = Mounted::new(&[]);
    let p = m.path("hello.txt");
    fs::write(&p, b"hello, world").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello, world");
    assert_eq!(fs::metadata(&p).unwrap().len(), 12);
}

#[test]
fn round_trips_of_many_sizes_and_offsets() {
    let m = Mounted::new(&[]);
    let mut rng = Rng(0x5eed_0001);
    let sizes = [
        0,
        1,
        27,
        28,
        29,
        B - 1,
        B,
        B + 1,
        2 * B - 1,
        2 * B,
        2 * B + 1,
        3 * B + 5,
        (1 << 20) + 3,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let p = m.path(&format!("f{i}"));
        let mut model = rng.bytes(size);
        fs::write(&p, &model).unwrap();
        assert_eq!(read_all(&p), model, "size {size}");
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let offsets = [
            0,
            1,
            B - 1,
            B,
            B + 1,
            size.saturating_sub(1),
            size + 10,
            size + 3 * B + 7,
        ];
        for &off in &offsets {
            for &len in &[1usize, 100, B, 5000] {
                let data = rng.bytes(len);
                f.write_all_at(&data, off as u64).unwrap();
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
                let mut got = vec![0u8; len + 50];
                let n = f.read_at(&mut got, off as u64).unwrap();
                assert_eq!(&got[..n], &model[off..(off + len + 50).min(model.len())]);
            }
        }
        drop(f);
        assert_eq!(fs::metadata(&p).unwrap().len(), model.len() as u64);
        assert_eq!(read_all(&p), model, "size {size} after overwrites");
    }
}

/// One step of the random sequence, applied to the mount and to a plain directory.
fn apply(root: &Path, op: u64, rng: &mut Rng, names: &[&str]) -> Result<Vec<u8>, i32> {
    let pick = |rng: &mut Rng| names[rng.below(names.len() as u64) as usize];
    let res = match op {
        0..=2 => {
            let p = root.join(pick(rng));
            let off = rng.below(5 * B as u64);
            let n = rng.below(3 * B as u64) as usize + 1;
            let data = rng.bytes(n);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .and_then(|f| f.write_all_at(&data, off))
                .map(|()| Vec::new())
        }
        3 => {
            let p = root.join(pick(rng));
            let len = rng.below(6 * B as u64);
            OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(len))
                .map(|()| Vec::new())
        }
        4 => {
            let (a, b) = (pick(rng), pick(rng));
            fs::rename(root.join(a), root.join(b)).map(|()| Vec::new())
        }
        5 => fs::remove_file(root.join(pick(rng))).map(|()| Vec::new()),
        6 => {
            let p = root.join(pick(rng));
            let off = rng.below(6 * B as u64);
            let len = rng.below(2 * B as u64) as usize;
            File::open(&p).and_then(|f| {
                let mut buf = vec![0u8; len];
                let n = f.read_at(&mut buf, off)?;
                buf.truncate(n);
                Ok(buf)
            })
        }
        _ => {
            let p = root.join(pick(rng));
            OpenOptions::new()
                .append(true)
                .open(&p)
                .and_then(|mut f| f.write_all(b"appended"))
                .map(|()| Vec::new())
        }
    };
    res.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn random_operations_match_a_plain_directory() {
    let mut m = Mounted::new(&[]);
    let model = tempfile::tempdir().unwrap();
    let names = ["a", "b", "sub/c", "sub/d", "e"];
    fs::create_dir(m.path("sub")).unwrap();
    fs::create_dir(model.path().join("sub")).unwrap();
    // Same seed for both sides: identical operation sequences.
    let mut ra = Rng(0xdecaf);
    let mut rb = Rng(0xdecaf);
    for step in 0..400 {
        let op = ra.below(8);
        let _ = rb.below(8);
        let got = apply(&m.mnt, op, &mut ra, &names);
        let want = apply(model.path(), op, &mut rb, &names);
        assert_eq!(got, want, "step {step}, op {op}");
    }
    let check = |m: &Mounted| {
        for name in names {
            let got = fs::read(m.path(name)).map_err(|e| e.raw_os_error());
            let want = fs::read(model.path().join(name)).map_err(|e| e.raw_os_error());
            assert_eq!(got, want, "{name}");
        }
    };
    check(&m);
    m.remount(&[]);
    check(&m);
}

#[test]
fn holes_read_as_zeros_and_stay_sparse() {
    let m = Mounted::new(&[]);
    let p = m.path("sparse");
    let mut f = File::create(&p).unwrap();
    f.write_all(b"head").unwrap();
    f.seek(SeekFrom::Start(64 * B as u64 + 3)).unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    let data = read_all(&p);
    assert_eq!(data.len(), 64 * B + 7);
    assert_eq!(&data[..4], b"head");
    assert!(data[4..64 * B + 3].iter().all(|&b| b == 0));
    assert_eq!(&data[64 * B + 3..], b"tail");
    // Holes stay holes in the backing file: far fewer blocks allocated than its length.
    let backing = &m.backing_files()[0];
    let meta = fs::metadata(backing).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "{} blocks",
        meta.blocks()
    );

    // Growing with truncate makes a hole too, shrinking keeps the prefix.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(10).unwrap();
    f.set_len(3 * B as u64 + 1).unwrap();
    drop(f);
    let data = read_all(&p);
    assert_eq!(data.len(), 3 * B + 1);
    assert_eq!(&data[..4], b"head");
    assert!(data[4..].iter().all(|&b| b == 0));
}

#[test]
fn append_mode_writes_at_the_end_of_file() {
    let m = Mounted::new(&[]);
    let p = m.path("log");
    fs::write(&p, b"0123").unwrap();
    let mut a = OpenOptions::new().append(true).open(&p).unwrap();
    let mut b = OpenOptions::new().append(true).open(&p).unwrap();
    a.write_all(b"aa").unwrap();
    b.write_all(b"bb").unwrap();
    a.write_all(&vec![b'x'; B]).unwrap();
    b.write_all(b"end").unwrap();
    let mut want = b"0123aabb".to_vec();
    want.extend(vec![b'x'; B]);
    want.extend(b"end");
    assert_eq!(read_all(&p), want);
}

#[test]
fn mmap_reads_and_writes_through_the_page_cache() {
    let m = Mounted::new(&[]);
    let p = m.path("mapped");
    let mut rng = Rng(77);
    let mut model = rng.bytes(3 * B + 100);
    fs::write(&p, &model).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = model.len();
    // SAFETY: mapping a file we own, used only within this scope.
    unsafe {
        use std::os::fd::AsRawFd;
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED);
        let map = std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len);
        assert_eq!(map, &model[..]);
        map[B + 10..B + 20].copy_from_slice(b"via mmap!!");
        model[B + 10..B + 20].copy_from_slice(b"via mmap!!");
        assert_eq!(libc::msync(ptr, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(ptr, len), 0);
    }
    drop(f);
    assert_eq!(read_all(&p), model);
}

#[test]
fn long_and_unicode_names_list_exactly() {
    let m = Mounted::new(&[]);
    let mut want = vec![
        "plain".to_string(),
        "ünïcødé ✓".to_string(),
        "x".repeat(160),
        "y".repeat(255),
        "with space and 'quote'".to_string(),
    ];
    for n in &want {
        fs::write(m.path(n), n.as_bytes()).unwrap();
    }
    fs::create_dir(m.path(&"d".repeat(200))).unwrap();
    want.push("d".repeat(200));
    let err = fs::write(m.path(&"z".repeat(256)), b"").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    let mut got: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for n in want.iter().filter(|n| !n.starts_with('d')) {
        assert_eq!(read_all(&m.path(n)), n.as_bytes());
    }
    // Renaming between short and long names moves the sidecar with it.
    fs::rename(m.path(&"y".repeat(255)), m.path("short")).unwrap();
    fs::rename(m.path("plain"), m.path(&"w".repeat(250))).unwrap();
    assert_eq!(read_all(&m.path("short")), "y".repeat(255).as_bytes());
    assert_eq!(read_all(&m.path(&"w".repeat(250))), b"plain");
    fs::remove_file(m.path(&"x".repeat(160))).unwrap();
    fs::remove_file(m.path(&"w".repeat(250))).unwrap();
    let sidecars = fs::read_dir(&m.backing)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".name")
        })
        .count();
    // Left: the 200-byte directory name only.
    assert_eq!(sidecars, 1);
}

#[test]
fn large_directories_list_every_entry() {
    let m = Mounted::new(&[]);
    fs::create_dir(m.path("many")).unwrap();
    for i in 0..600 {
        File::create(m.path(&format!("many/entry-{i:04}"))).unwrap();
    }
    let mut got: Vec<String> = fs::read_dir(m.path("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    let want: Vec<String> = (0..600).map(|i| format!("entry-{i:04}")).collect();
    assert_eq!(got, want);
}

#[test]
fn listings_carry_the_same_attributes_as_stat() {
    let m = Mounted::new(&[]);
    fs::create_dir(m.path("d")).unwrap();
    std::os::unix::fs::symlink("x", m.path("d/link")).unwrap();
    for (i, size) in [0usize, 5, B, 3 * B + 1].into_iter().enumerate() {
        fs::write(m.path(&format!("d/f{i}")), vec![1u8; size]).unwrap();
    }
    for pass in 0..2 {
        let mut seen = 0;
        for e in fs::read_dir(m.path("d")).unwrap() {
            let e = e.unwrap();
            let listed = e.metadata().unwrap();
            let stat = fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(listed.len(), stat.len(), "{:?} pass {pass}", e.file_name());
            assert_eq!(listed.ino(), stat.ino());
            assert_eq!(e.file_type().unwrap(), stat.file_type());
            seen += 1;
        }
        assert_eq!(seen, 5);
    }
    assert_eq!(
        fs::symlink_metadata(m.path("d/f3")).unwrap().len(),
        3 * B as u64 + 1
    );
}

#[test]
fn directories_nest_rename_and_refuse_rmdir_when_not_empty() {
    let m = Mounted::new(&[]);
    fs::create_dir_all(m.path("a/b/c")).unwrap();
    fs::write(m.path("a/b/c/file"), b"deep").unwrap();
    let err = fs::remove_dir(m.path("a/b")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    fs::create_dir(m.path("other")).unwrap();
    fs::rename(m.path("a/b"), m.path("other/moved")).unwrap();
    assert_eq!(read_all(&m.path("other/moved/c/file")), b"deep");
    assert!(!m.path("a/b").exists());
    // A directory replaces an empty directory.
    fs::create_dir(m.path("empty")).unwrap();
    fs::rename(m.path("other/moved"), m.path("empty")).unwrap();
    assert_eq!(read_all(&m.path("empty/c/file")), b"deep");
    fs::remove_file(m.path("empty/c/file")).unwrap();
    fs::remove_dir(m.path("empty/c")).unwrap();
    fs::remove_dir(m.path("empty")).unwrap();
    assert!(!m.path("empty").exists());
    let err = fs::remove_dir(m.path("nope")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    let a = CString::new(from.as_os_str().as_bytes()).unwrap();
    let b = CString::new(to.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

#[test]
fn rename_replaces_exchanges_and_respects_noreplace() {
    let m = Mounted::new(&[]);
    fs::create_dir(m.path("d1")).unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::write(m.path("d1/a"), b"A").unwrap();
    fs::write(m.path("d2/b"), b"B").unwrap();
    assert_eq!(
        renameat2(&m.path("d1/a"), &m.path("d2/b"), libc::RENAME_NOREPLACE),
        libc::EEXIST
    );
    assert_eq!(
        renameat2(&m.path("d1/a"), &m.path("d2/b"), libc::RENAME_EXCHANGE),
        0
    );
    assert_eq!(read_all(&m.path("d1/a")), b"B");
    assert_eq!(read_all(&m.path("d2/b")), b"A");
    // Plain rename over an existing file, across directories.
    fs::rename(m.path("d1/a"), m.path("d2/b")).unwrap();
    assert_eq!(read_all(&m.path("d2/b")), b"B");
    assert!(!m.path("d1/a").exists());
    assert_eq!(
        renameat2(&m.path("d2/b"), &m.path("d1/new"), libc::RENAME_NOREPLACE),
        0
    );
    assert_eq!(read_all(&m.path("d1/new")), b"B");
}

#[test]
fn symlinks_store_encrypted_targets() {
    let m = Mounted::new(&[]);
    fs::write(m.path("target-file"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target-file", m.path("link")).unwrap();
    std::os::unix::fs::symlink("/some/secret/absolute/path", m.path("abs")).unwrap();
    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        Path::new("target-file")
    );
    assert_eq!(read_all(&m.path("link")), b"pointed at");
    let meta = fs::symlink_metadata(m.path("abs")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), "/some/secret/absolute/path".len() as u64);
    for e in fs::read_dir(&m.backing).unwrap() {
        let p = e.unwrap().path();
        if let Ok(t) = fs::read_link(&p) {
            assert!(!t.to_string_lossy().contains("secret"), "{t:?}");
            assert!(!t.to_string_lossy().contains("target-file"), "{t:?}");
        }
    }
    // PATH_MAX − 1 bytes is the limit (tests/fs_special.rs covers the longest ones).
    let err = std::os::unix::fs::symlink("t".repeat(4096), m.path("toolong")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
}

#[test]
fn hard_links_share_content() {
    let m = Mounted::new(&[]);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("orig"), b"shared").unwrap();
    fs::hard_link(m.path("orig"), m.path("d/link")).unwrap();
    assert_eq!(fs::metadata(m.path("orig")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.path("orig")).unwrap().ino(),
        fs::metadata(m.path("d/link")).unwrap().ino()
    );
    OpenOptions::new()
        .write(true)
        .open(m.path("d/link"))
        .unwrap()
        .write_all_at(b"SH", 0)
        .unwrap();
    assert_eq!(read_all(&m.path("orig")), b"SHared");
    fs::remove_file(m.path("orig")).unwrap();
    assert_eq!(read_all(&m.path("d/link")), b"SHared");
}

#[test]
fn attributes_change_and_user_xattr_values_are_sealed() {
    let m = Mounted::new(&[]);
    let p = m.path("f");
    fs::write(&p, b"x").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(&p, Some(1234), Some(4321)).unwrap();
    let meta = fs::metadata(&p).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), t);

    let path = CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = CString::new("user.note").unwrap();
    let value = b"xattr-secret-value";
    // SAFETY: valid pointers and lengths.
    unsafe {
        assert_eq!(
            libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0
            ),
            0
        );
        let mut buf = [0u8; 64];
        let n = libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64);
        assert_eq!(&buf[..n as usize], value);
        let n = libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), 64);
        assert!(buf[..n as usize].windows(9).any(|w| w == b"user.note"));
        let backing = CString::new(m.backing_files()[0].as_os_str().as_bytes()).unwrap();
        let n = libc::getxattr(backing.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64);
        assert!(n > 0);
        assert!(!buf[..n as usize].windows(6).any(|w| w == b"secret"));
        assert_eq!(libc::removexattr(path.as_ptr(), name.as_ptr()), 0);
        assert_eq!(
            libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64),
            -1
        );
    }
}

#[test]
fn statfs_fsync_and_fallocate_work() {
    let m = Mounted::new(&[]);
    let st = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert!(st.blocks() > 0);
    assert_eq!(st.name_max(), 255);
    let mut f = File::create(m.path("f")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 3 * B as i64).unwrap();
    drop(f);
    let data = read_all(&m.path("f"));
    assert_eq!(data.len(), 3 * B);
    assert_eq!(&data[..7], b"durable");
    assert!(data[7..].iter().all(|&b| b == 0));
    File::open(&m.mnt).unwrap().sync_all().unwrap();
}

#[test]
fn concurrent_writers_of_one_block_never_lose_each_others_bytes() {
    let m = Mounted::new(&[]);
    let p = m.path("shared");
    fs::write(&p, vec![0u8; 4 * B]).unwrap();
    // Four writers each own a quarter of every block: a read-modify-write that is not
    // serialized would put back a stale quarter.
    std::thread::scope(|s| {
        for w in 0..4u8 {
            let p = &p;
            s.spawn(move || {
                let f = OpenOptions::new().write(true).open(p).unwrap();
                for round in 1..=40u8 {
                    for block in 0..4 {
                        let off = block * B + usize::from(w) * B / 4 + 7 * usize::from(w % 2);
                        let len = B / 4 - 7;
                        f.write_all_at(&vec![w * 50 + round; len], off as u64)
                            .unwrap();
                    }
                }
            });
        }
        let p = &p;
        s.spawn(move || {
            for _ in 0..40 {
                let data = read_all(p);
                assert_eq!(data.len(), 4 * B);
            }
        });
    });
    let data = read_all(&p);
    for block in 0..4 {
        for w in 0..4u8 {
            let off = block * B + usize::from(w) * B / 4 + 7 * usize::from(w % 2);
            let len = B / 4 - 7;
            assert!(
                data[off..off + len].iter().all(|&b| b == w * 50 + 40),
                "block {block} writer {w}"
            );
        }
    }
}

#[test]
fn readers_never_see_a_block_half_rewritten() {
    let m = Mounted::new(&[]);
    let p = m.path("rewritten");
    fs::write(&p, vec![1u8; 8 * B]).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (p, stop) = (&p, &stop);
        s.spawn(move || {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            for round in 0..150u32 {
                f.write_all_at(&vec![(round % 250) as u8 + 1; 8 * B], 0)
                    .unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for _ in 0..2 {
            s.spawn(move || {
                // O_DIRECT: every read goes to the daemon, none is served from cache.
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(p)
                    .unwrap();
                let mut buf = vec![0u8; 8 * B];
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let n = f.read_at(&mut buf, 0).expect("read during rewrite");
                    assert_eq!(n, 8 * B);
                    for block in buf.chunks(B) {
                        assert!(block.iter().all(|&b| b == block[0]), "torn block");
                    }
                }
            });
        }
    });
}

#[test]
fn unmount_with_open_files_keeps_acknowledged_writes() {
    let mut m = Mounted::new(&[]);
    let p = m.path("open-at-unmount");
    let mut f = File::create(&p).unwrap();
    f.write_all(b"before unmount;").unwrap();
    kmsfs::fs::unmount(&m.mnt).unwrap();
    // The mountpoint is detached at once, the open file still works.
    assert!(!p.exists());
    f.write_all(b" after unmount").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // The session ends once the last file is closed.
    m.take_session().umount().unwrap();
    m.mount(&[]);
    assert_eq!(read_all(&p), b"before unmount; after unmount");
}

#[test]
fn backing_directory_holds_neither_plaintext_names_nor_content() {
    let m = Mounted::new(&[]);
    fs::create_dir(m.path("PlainDirName")).unwrap();
    fs::write(
        m.path("PlainDirName/PlainFileName"),
        "PlainContent".repeat(1000),
    )
    .unwrap();
    fs::write(m.path("short"), b"PlainContent").unwrap();
    let mut all = Vec::new();
    walk(&m.backing, &mut all);
    for p in &all {
        let rel = p
            .strip_prefix(&m.backing)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!rel.contains("Plain") && !rel.contains("short"), "{rel}");
        let bytes = fs::read(p).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"PlainContent"), "{rel}");
    }
    // Sizes leak only to the block: a 12-byte file is header + one sealed block.
    let sizes: Vec<u64> = m
        .backing_files()
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    let overhead = kmsfs::format::EnvelopeVersion::CURRENT.block_overhead() as u64;
    assert!(sizes.contains(&(1024 + 12 + overhead)), "{sizes:?}");
}

#[test]
fn read_only_mount_refuses_changes() {
    let mut m = Mounted::new(&[]);
    fs::write(m.path("f"), b"kept").unwrap();
    m.remount(&["ro"]);
    assert_eq!(read_all(&m.path("f")), b"kept");
    let err = fs::write(m.path("f"), b"changed").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = fs::create_dir(m.path("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let mut buf = String::new();
    File::open(m.path("f"))
        .unwrap()
        .read_to_string(&mut buf)
        .unwrap();
    assert_eq!(buf, "kept");
}

#[test]
fn mounts_show_kmsfs_as_source_with_the_requested_options() {
    let m = Mounted::new(MULTI_USER);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(m.mnt.to_str().unwrap()))
        .expect("mount listed");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], "kmsfs");
    // Mounted directly by root the type is `fuse` (through fusermount3, `fuse.kmsfs`).
    assert!(fields[2].starts_with("fuse"), "{line}");
    assert!(fields[3].contains("allow_other"), "{line}");
    assert!(fields[3].contains("default_permissions"), "{line}");
    assert!(
        fields[3].contains("nosuid") && fields[3].contains("nodev"),
        "{line}"
    );
}

#[test]
fn unknown_mount_options_are_refused_before_mounting() {
    let keys = TestKeys::new();
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("b");
    kmsfs::fs::init_volume(&backing, DEFAULT_ALIAS, keys.as_ref()).unwrap();
    let spec = kmsfs::fs::MountSpec {
        backing,
        mountpoint: dir.path().to_path_buf(),
        options: vec!["allow_other,bogus_option".into()],
        threads: 2,
    };
    let err = kmsfs::fs::mount(&spec, keys).unwrap_err();
    assert!(err.to_string().contains("bogus_option"), "{err}");
}

#[test]
fn new_objects_get_the_callers_mode_and_ownership() {
    let m = Mounted::new(MULTI_USER);
    m.keys
        .allow(1001, DEFAULT_KEY, &[Op::Generate, Op::Encrypt]);
    let script = format!(
        "umask 000 && : > {f} && mkdir {d} && mkfifo {p} && umask 027 && : > {g}",
        f = q(&m.path("f")),
        d = q(&m.path("d")),
        p = q(&m.path("p")),
        g = q(&m.path("g")),
    );
    assert_ok(&sh_as(1001, &script));
    for (name, mode) in [("f", 0o666), ("d", 0o777), ("p", 0o666), ("g", 0o640)] {
        let meta = fs::symlink_metadata(m.path(name)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{name}");
        assert_eq!((meta.uid(), meta.gid()), (1001, 1001), "{name}");
    }
    assert!(fs::symlink_metadata(m.path("p"))
        .unwrap()
        .file_type()
        .is_fifo());
    // No temporary or half-made files are left in the backing directory.
    let names: Vec<String> = fs::read_dir(&m.backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("kmsfs.tmp")),
        "{names:?}"
    );
}

/// `st_ino` of everything under the mount, by path.
fn inode_numbers(root: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let st = fs::symlink_metadata(&path).unwrap();
            if st.is_dir() {
                todo.push(path.clone());
            }
            out.push((path, st.ino()));
        }
    }
    out.sort();
    out
}

#[test]
fn inode_numbers_stay_the_same_after_the_kernel_forgets_them() {
    // git's index, rsync and backup tools compare st_ino: a number that changes after
    // the kernel evicted its inode makes them treat every file as changed.
    let mut m = Mounted::new(&[]);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..20 {
        fs::write(m.path(&format!("d/f{i}")), format!("file {i}")).unwrap();
    }
    fs::hard_link(m.path("d/f0"), m.path("link")).unwrap();
    std::os::unix::fs::symlink("d/f1", m.path("sym")).unwrap();
    let before = inode_numbers(&m.mnt);
    assert_eq!(before.len(), 23);
    let mut numbers: Vec<u64> = before.iter().map(|(_, n)| *n).collect();
    numbers.sort();
    numbers.dedup();
    // Hard links share one number; everything else has its own, none the root's.
    assert_eq!(numbers.len(), 22);
    assert!(!numbers.contains(&fs::metadata(&m.mnt).unwrap().ino()));
    assert_eq!(
        fs::metadata(m.path("link")).unwrap().ino(),
        fs::metadata(m.path("d/f0")).unwrap().ino()
    );

    // Evicted from the kernel's caches (FORGET), then a new daemon altogether.
    std::process::Command::new("sync").status().unwrap();
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    assert_eq!(inode_numbers(&m.mnt), before);
    m.remount(&[]);
    m.assert_live();
    assert_eq!(inode_numbers(&m.mnt), before);
}

#[test]
fn the_mount_reads_ahead_one_whole_request_and_large_cold_reads_match() {
    let m = Mounted::new(&[]);
    m.assert_live();
    // The kernel's window for this mount (its backing device info), raised by the mount
    // from the 128 KiB default so that sequential reads arrive as 1 MiB requests.
    let dev = fs::metadata(&m.mnt).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let kb: u64 = fs::read_to_string(&knob).unwrap().trim().parse().unwrap();
    assert_eq!(kb, kmsfs::fs::mount::READ_AHEAD_KB, "{knob}");

    // A file read through that window after its pages were dropped: every 1 MiB
    // request is opened across cores and must give back exactly what was written.
    let p = m.path("big");
    let data = Rng(0x5eed_0ead).bytes(6 * (1 << 20) + 12345);
    fs::write(&p, &data).unwrap();
    let f = File::open(&p).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; fadvise only drops this file's cached pages.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut r = &f;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got == data,
        "cold sequential read differs from what was written"
    );
}
