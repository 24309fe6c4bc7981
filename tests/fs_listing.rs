//! Listings with attributes (READDIRPLUS) through a real mount: entries whose node the
//! daemon already holds are answered from that node (one `fstatat` of the name, checked
//! against the node's backing object), the others as lookups. Every entry must carry the
//! node its name leads to *now*, the inode number `stat` gives, attributes equal to a
//! cold `stat`, and a lookup the kernel later forgets. Needs root and /dev/fuse.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
use std::path::Path;

use support::fs::*;

/// One `getdents64` of at most `buf_len` bytes on `dir`: (name, d_ino) pairs, `.` and
/// `..` left out; empty at the end. A small buffer makes the kernel ask for the listing
/// in several READDIRPLUS requests (one per call), so later entries come from a later
/// request at a non-zero offset.
fn getdents(dir: &File, buf_len: usize) -> Option<Vec<(String, u64)>> {
    let mut buf = vec![0u8; buf_len];
    // SAFETY: a valid directory descriptor and a buffer of `buf_len` bytes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf_len,
        )
    };
    assert!(n >= 0, "getdents64: {}", std::io::Error::last_os_error());
    if n == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    let end = usize::try_from(n).unwrap();
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    while at < end {
        let ino = u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap());
        let reclen = usize::from(u16::from_ne_bytes(
            buf[at + 16..at + 18].try_into().unwrap(),
        ));
        let name = &buf[at + 19..at + reclen];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap()];
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name != "." && name != ".." {
            out.push((name, ino));
        }
        at += reclen;
    }
    Some(out)
}

/// Every entry of `dir` as `readdir` gives it: name → d_ino.
fn listed(dir: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_str().unwrap().to_string(), e.ino())
        })
        .collect()
}

/// What `ls -l` shows of a path, plus its inode number and times to the nanosecond.
fn shown(p: &Path) -> (u64, u32, u64, u32, u32, u64, i64, i64, i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (
        m.ino(),
        m.mode(),
        m.nlink(),
        m.uid(),
        m.gid(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// The kernel's dentries and inodes of this mount dropped (each sends its FORGET).
fn drop_kernel_inodes() {
    std::process::Command::new("sync").status().unwrap();
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

#[test]
fn a_listing_of_known_and_unknown_entries_gives_the_numbers_and_attributes_of_stat() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..60 {
        fs::write(m.path(&format!("d/f{i}")), vec![b'x'; i * 37]).unwrap();
    }
    fs::create_dir(m.path("d/sub")).unwrap();
    std::os::unix::fs::symlink("f1", m.path("d/sym")).unwrap();
    std::os::unix::fs::symlink("t".repeat(300), m.path("d/longsym")).unwrap();
    fs::write(m.path(&format!("d/{}", "n".repeat(250))), b"long name").unwrap();
    let names: BTreeSet<String> = fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 64);

    // A fresh daemon: nothing known. Half of the entries looked up, then listed.
    m.remount(MULTI_USER);
    m.assert_live();
    for name in names.iter().step_by(2) {
        fs::symlink_metadata(m.path(&format!("d/{name}"))).unwrap();
    }
    let first = listed(&m.path("d"));
    assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), names);
    let mut seen = BTreeMap::new();
    for (name, d_ino) in &first {
        let s = shown(&m.path(&format!("d/{name}")));
        assert_eq!(*d_ino, s.0, "{name}: d_ino against st_ino");
        seen.insert(name.clone(), s);
    }
    // `ls -l` through the mount shows the same as that `stat`.
    let out = std::process::Command::new("ls")
        .args(["-lin", "--time-style=+%s"])
        .arg(m.path("d"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let ls = String::from_utf8(out.stdout).unwrap();
    for line in ls.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let name = f[7];
        let s = &seen[name];
        assert_eq!(f[0].parse::<u64>().unwrap(), s.0, "{line}");
        assert_eq!(f[2].parse::<u64>().unwrap(), s.2, "{line}");
        assert_eq!(f[5].parse::<u64>().unwrap(), s.5, "{line}");
        assert_eq!(f[6].parse::<i64>().unwrap(), s.6, "{line}");
    }

    // Another fresh daemon: a cold `stat` of each gives the same.
    m.remount(MULTI_USER);
    m.assert_live();
    for (name, s) in &seen {
        assert_eq!(&shown(&m.path(&format!("d/{name}"))), s, "{name}");
    }
}

#[test]
fn attributes_changed_through_the_mount_show_in_the_next_listing_as_in_stat() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..10 {
        fs::write(m.path(&format!("d/f{i}")), b"0123456789").unwrap();
    }
    // Every entry known to the daemon and the kernel.
    let before = listed(&m.path("d"));
    assert_eq!(before.len(), 10);
    for name in before.keys() {
        fs::symlink_metadata(m.path(&format!("d/{name}"))).unwrap();
    }
    // Changes through the mount: size, mode, owner, times, a hard link.
    fs::write(m.path("d/f0"), vec![b'y'; 5000]).unwrap();
    fs::set_permissions(m.path("d/f1"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.path("d/f2"), Some(1234), Some(4321)).unwrap();
    let out = std::process::Command::new("touch")
        .args(["-m", "-d", "@1000000000.5"])
        .arg(m.path("d/f3"))
        .status()
        .unwrap();
    assert!(out.success());
    File::options()
        .write(true)
        .open(m.path("d/f4"))
        .unwrap()
        .set_len(3)
        .unwrap();
    fs::hard_link(m.path("d/f5"), m.path("d/link")).unwrap();

    // A new listing (the link dropped the cached one) answers every entry from its node.
    let after = listed(&m.path("d"));
    assert_eq!(after.len(), 11);
    let mut seen = BTreeMap::new();
    for (name, d_ino) in &after {
        let s = shown(&m.path(&format!("d/{name}")));
        assert_eq!(*d_ino, s.0, "{name}");
        seen.insert(name.clone(), s);
    }
    assert_eq!(seen["f0"].5, 5000);
    assert_eq!(seen["f1"].1 & 0o7777, 0o600);
    assert_eq!((seen["f2"].3, seen["f2"].4), (1234, 4321));
    assert_eq!((seen["f3"].6, seen["f3"].7), (1_000_000_000, 500_000_000));
    assert_eq!(seen["f4"].5, 3);
    assert_eq!(seen["f5"], seen["link"]);
    assert_eq!(seen["f5"].2, 2);
    assert_eq!(after["f5"], after["link"]);

    m.remount(MULTI_USER);
    m.assert_live();
    for (name, s) in &seen {
        assert_eq!(&shown(&m.path(&format!("d/{name}"))), s, "{name}");
    }
}

/// A handle keeps its listing for later offsets, so a later READDIRPLUS can see a name
/// whose listed inode is not the one the name leads to now: it must carry the new one.
#[test]
fn a_name_replaced_between_two_reads_of_a_handle_carries_its_new_node() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    let files: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    for (i, name) in files.iter().enumerate() {
        fs::write(m.path(&format!("d/{name}")), format!("content {i}")).unwrap();
    }
    // The files stay open, so their nodes stay held: the next listing answers them from
    // the node.
    let open: Vec<File> = files
        .iter()
        .map(|n| File::open(m.path(&format!("d/{n}"))).unwrap())
        .collect();
    let inos: BTreeMap<String, u64> = files
        .iter()
        .zip(&open)
        .map(|(n, f)| (n.clone(), f.metadata().unwrap().ino()))
        .collect();
    // A change drops the kernel's cached listing of "d", so the next one reaches the daemon.
    fs::write(m.path("d/bump"), b"").unwrap();
    fs::remove_file(m.path("d/bump")).unwrap();

    let dir = File::open(m.path("d")).unwrap();
    let first: Vec<(String, u64)> = getdents(&dir, 4096).unwrap();
    assert!(
        !first.is_empty() && first.len() < 150,
        "{} entries in the first request",
        first.len()
    );
    let seen: BTreeSet<String> = first.iter().map(|(n, _)| n.clone()).collect();
    let rest: Vec<&String> = files.iter().filter(|n| !seen.contains(*n)).collect();
    let (old, new) = (rest[0].clone(), rest[1].clone());
    fs::rename(m.path(&format!("d/{new}")), m.path(&format!("d/{old}"))).unwrap();

    // Past offset 0 the kernel (READDIRPLUS_AUTO) asks with attributes only when
    // advised since the directory's last read; a plain READDIR there gives the handle's
    // listing as it was (POSIX leaves entries changed since `opendir` unspecified). The
    // advice (fs/fuse/dir.c, fuse_dentry_revalidate): the first revalidation of an entry
    // a READDIRPLUS linked. So one `stat` of such an entry before each read.
    let mut linked: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
    linked.retain(|n| *n != old && *n != new);
    let mut later = BTreeMap::new();
    for round in 0.. {
        let probe = linked.get(round).expect("an entry linked before").clone();
        fs::symlink_metadata(m.path(&format!("d/{probe}"))).unwrap();
        match getdents(&dir, 4096) {
            Some(batch) => {
                linked.extend(
                    batch
                        .iter()
                        .map(|(n, _)| n.clone())
                        .filter(|n| *n != old && *n != new),
                );
                later.extend(batch);
            }
            None => break,
        }
    }
    assert!(!later.contains_key(&new), "{new} was renamed away");
    assert_eq!(
        later.get(&old),
        Some(&inos[&new]),
        "{old} now names {new}'s file"
    );
    assert_eq!(shown(&m.path(&format!("d/{old}"))).0, inos[&new]);
    let idx: usize = new[1..].parse().unwrap();
    assert_eq!(
        fs::read_to_string(m.path(&format!("d/{old}"))).unwrap(),
        format!("content {idx}")
    );
    assert!(fs::symlink_metadata(m.path(&format!("d/{new}"))).is_err());
    // The replaced file, still open, is intact.
    let held = &open[files.iter().position(|n| *n == old).unwrap()];
    let mut text = String::new();
    (&*held).read_to_string(&mut text).unwrap();
    let idx: usize = old[1..].parse().unwrap();
    assert_eq!(text, format!("content {idx}"));
    // A fresh listing agrees.
    let fresh = listed(&m.path("d"));
    assert_eq!(fresh.get(&old), Some(&inos[&new]));
    assert!(!fresh.contains_key(&new));
}

#[test]
fn listings_with_known_entries_keep_lookup_counts_balanced() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..80 {
        fs::write(m.path(&format!("d/f{i}")), b"x").unwrap();
    }
    fs::hard_link(m.path("d/f0"), m.path("d/h0")).unwrap();
    m.remount(MULTI_USER);
    m.assert_live();
    let baseline = m.session().known_nodes();

    let names: Vec<String> = listed(&m.path("d")).into_keys().collect();
    assert_eq!(names.len(), 81);
    // Listings (each after a change, so each reaches the daemon) over nodes the kernel
    // looked up before, some twice (hard links), some not at all.
    for round in 0..4 {
        for name in names.iter().skip(round).step_by(3) {
            fs::symlink_metadata(m.path(&format!("d/{name}"))).unwrap();
        }
        fs::write(m.path("d/bump"), b"").unwrap();
        let l = listed(&m.path("d"));
        assert_eq!(l.len(), 82);
        assert_eq!(l["f0"], l["h0"]);
        fs::remove_file(m.path("d/bump")).unwrap();
        // Plain readdir (no attributes) of the same directory too.
        let dir = File::open(m.path("d")).unwrap();
        while getdents(&dir, 1024).is_some() {}
    }
    assert!(m.session().known_nodes() > baseline);

    // Once the kernel drops its inodes, every lookup it was given comes back as a
    // FORGET. FORGETs are queued, so wait for them (no time limit is asserted: the
    // count must reach the baseline, however long the machine takes).
    drop_kernel_inodes();
    let mut tries = 0;
    while m.session().known_nodes() != baseline {
        tries += 1;
        assert!(
            tries < 6000,
            "lookup counts do not balance: {} nodes held, {baseline} at the start",
            m.session().known_nodes()
        );
        if tries % 500 == 0 {
            drop_kernel_inodes();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // And the mount still serves every entry.
    let again = listed(&m.path("d"));
    assert_eq!(again.len(), 81);
    for (name, d_ino) in &again {
        assert_eq!(shown(&m.path(&format!("d/{name}"))).0, *d_ino, "{name}");
    }
}

/// The backing entry of `dir` (a backing directory) whose inode number is `ino`.
fn backing_entry_with_ino(dir: &Path, ino: u64) -> std::path::PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.ino() == ino)
        .unwrap_or_else(|| panic!("no backing entry with inode {ino}"))
        .path()
}

#[test]
fn a_name_replaced_in_the_backing_directory_is_listed_and_linked_with_its_new_node() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/a"), b"first").unwrap();
    fs::write(m.path("d/b"), b"second, longer").unwrap();
    m.remount(MULTI_USER);
    m.assert_live();
    // Both names looked up: the kernel holds a dentry for each and the daemon a node.
    let (a, b) = (shown(&m.path("d/a")), shown(&m.path("d/b")));
    assert_ne!(a.0, b.0);
    // Behind the daemon's back, `b`'s backing file is renamed over `a`'s: the name `a`
    // now leads to the object the node of `b` holds (kmsfs's inode numbers are the
    // backing ones), and `b` is gone.
    let backing_d = backing_entry_with_ino(&m.backing, shown(&m.path("d")).0);
    let from = backing_entry_with_ino(&backing_d, b.0);
    let to = backing_entry_with_ino(&backing_d, a.0);
    fs::rename(&from, &to).unwrap();

    // A listing (the directory was never listed: it reaches the daemon) carries the
    // object the name leads to now, and links it: `stat` of `a` agrees at once, though
    // the kernel's dentry of `a` still named the old node.
    let l = listed(&m.path("d"));
    assert_eq!(l.keys().cloned().collect::<Vec<_>>(), vec!["a".to_string()]);
    assert_eq!(l["a"], b.0, "d_ino of the replaced name");
    let now = shown(&m.path("d/a"));
    // (the rename changed the object's ctime, nothing else)
    assert_eq!(
        (now.0, now.1, now.5),
        (b.0, b.1, b.5),
        "stat after the listing"
    );
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"second, longer");
}
