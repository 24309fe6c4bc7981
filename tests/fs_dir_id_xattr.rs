//! A directory's id is also kept in a MAC'd backing attribute (`user.kmsfs.dir`), so a
//! new directory's `kmsfs.dir` is written without an fsync: after a crash that lost the
//! file's data, the attribute rebuilds it. Real FUSE mounts; needs root.

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kmsfs::format::{
    check_volume, walk_volume, DirId, DirMeta, KeyLookup, MetadataKey, VolumeConfig, VolumeEntry,
    VolumeFinding, DIR_ID_XATTR,
};
use kmsfs::kms::provider::DataKeys;
use support::fs::*;

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings; buf is valid for buf.len() bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings; value is valid for value.len() bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn remove_xattr(path: &Path, name: &str) -> std::io::Result<()> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings.
    if unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn list_xattr(path: &Path) -> Vec<String> {
    let p = c_path(path);
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid C string; buf is valid for buf.len() bytes.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "{}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn errno(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

/// The metadata key and volume secret of the volume in `backing`.
fn volume_keys(backing: &Path, keys: &TestKeys) -> (MetadataKey, kmsfs::crypto::SealingKey) {
    let volume = VolumeConfig::load(backing).unwrap();
    let secret = keys.volume_secret(&volume.volume_id).unwrap();
    (MetadataKey::new(&secret), secret)
}

/// The backing directory of the only directory directly under backing `dir`.
fn only_subdir(dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn walk(backing: &Path, secret: &kmsfs::crypto::SealingKey) -> Vec<VolumeEntry> {
    let mut found = Vec::new();
    walk_volume(backing, secret, &mut |e| found.push(e)).unwrap();
    found
}

/// A directory `d` with two files (one with a long name, so a sidecar is involved).
fn populate(m: &Mounted) -> String {
    m.assert_live();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/one"), b"one").unwrap();
    let long = "l".repeat(200);
    std::fs::write(m.path(&format!("d/{long}")), b"long").unwrap();
    long
}

#[test]
fn mkdir_sets_the_id_attribute_which_the_mount_never_shows() {
    let m = Mounted::new(&[]);
    let long = populate(&m);
    let (meta_key, _) = volume_keys(&m.backing, &m.keys);
    let backing_d = only_subdir(&m.backing);
    let attr = get_xattr(&backing_d, DIR_ID_XATTR).unwrap();
    let id = DirId::from_attr_value(&attr, &meta_key).expect("the attribute authenticates");
    let file = DirMeta::load(&backing_d, &meta_key).unwrap();
    assert_eq!(file.dir_id, id, "attribute and kmsfs.dir name the same id");
    assert_eq!(names(&m.path("d")), vec![long.clone(), "one".to_string()]);
    assert_eq!(std::fs::read(m.path("d/one")).unwrap(), b"one");

    // Through the mount the attribute does not exist and cannot be made to.
    let d = m.path("d");
    set_xattr(&d, "user.note", b"mine").unwrap();
    assert_eq!(list_xattr(&d), vec!["user.note".to_string()]);
    assert_eq!(errno(get_xattr(&d, DIR_ID_XATTR)), libc::ENODATA);
    assert_eq!(errno(set_xattr(&d, DIR_ID_XATTR, b"x")), libc::EPERM);
    assert_eq!(errno(remove_xattr(&d, DIR_ID_XATTR)), libc::ENODATA);
    assert_eq!(
        errno(set_xattr(&m.path("d/one"), DIR_ID_XATTR, b"x")),
        libc::EPERM
    );
    assert_eq!(get_xattr(&backing_d, DIR_ID_XATTR).unwrap(), attr);
    // A renamed directory keeps its attribute and its names.
    std::fs::create_dir(m.path("e")).unwrap();
    std::fs::rename(m.path("d"), m.path("e/d")).unwrap();
    assert_eq!(std::fs::read(m.path("e/d/one")).unwrap(), b"one");
    // The directory still removes cleanly once emptied.
    std::fs::remove_file(m.path("e/d/one")).unwrap();
    std::fs::remove_file(m.path(&format!("e/d/{long}"))).unwrap();
    std::fs::remove_dir(m.path("e/d")).unwrap();
    std::fs::remove_dir(m.path("e")).unwrap();
    assert!(names(&m.mnt).is_empty());
}

#[test]
fn a_kmsfs_dir_lost_in_a_crash_is_rebuilt_from_the_attribute() {
    type Damage = fn(&Path, &[u8]);
    let damages: [(&str, Damage); 4] = [
        ("truncated to 0", |p, _| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(0)
                .unwrap()
        }),
        ("deleted", |p, _| std::fs::remove_file(p).unwrap()),
        ("zero-filled", |p, was| {
            std::fs::write(p, vec![0u8; was.len()]).unwrap()
        }),
        ("a prefix", |p, was| {
            std::fs::write(p, &was[..was.len() / 2]).unwrap()
        }),
    ];
    for (what, damage) in damages {
        let mut m = Mounted::new(&[]);
        let long = populate(&m);
        let (meta_key, secret) = volume_keys(&m.backing, &m.keys);
        let backing_d = only_subdir(&m.backing);
        let file = backing_d.join("kmsfs.dir");
        let was = std::fs::read(&file).unwrap();
        m.unmount();
        damage(&file, &was);

        // fsck: recoverable, not damage, and the names below are checked.
        let found = walk(&m.backing, &secret);
        assert!(!found.iter().any(|e| e.is_damaged()), "{what}: {found:?}");
        assert!(
            found
                .iter()
                .any(|e| matches!(e, VolumeEntry::Repairable { backing, .. } if *backing == file)),
            "{what}: {found:?}"
        );
        assert_eq!(
            found
                .iter()
                .filter(|e| matches!(e, VolumeEntry::File { .. }))
                .count(),
            2,
            "{what}: {found:?}"
        );

        // `kmsfs fsck`'s walk says the same (its files unchecked here: no keys given).
        let mut findings = Vec::new();
        check_volume(
            &m.backing,
            &secret,
            &mut |_| KeyLookup::Unavailable("not asked".into()),
            &mut |f| findings.push(f),
        )
        .unwrap();
        assert!(
            !findings.iter().any(|f| f.is_damaged()),
            "{what}: {findings:?}"
        );
        assert!(
            findings
                .iter()
                .any(|f| matches!(f, VolumeFinding::Entry(VolumeEntry::Repairable { .. }))),
            "{what}: {findings:?}"
        );

        m.mount(&[]);
        m.assert_live();
        assert_eq!(
            names(&m.path("d")),
            vec![long.clone(), "one".to_string()],
            "{what}"
        );
        assert_eq!(std::fs::read(m.path("d/one")).unwrap(), b"one", "{what}");
        std::fs::write(m.path("d/two"), b"two").unwrap();
        // Repaired in place: exactly what mkdir wrote (version 0, no rule).
        assert_eq!(std::fs::read(&file).unwrap(), was, "{what}");
        m.remount(&[]);
        assert_eq!(std::fs::read(m.path("d/two")).unwrap(), b"two", "{what}");
        assert!(walk(&m.backing, &secret)
            .iter()
            .all(|e| !e.is_damaged() && !matches!(e, VolumeEntry::Repairable { .. })));
        assert_eq!(
            DirId::from_attr_value(&get_xattr(&backing_d, DIR_ID_XATTR).unwrap(), &meta_key),
            Some(DirMeta::load(&backing_d, &meta_key).unwrap().dir_id),
            "{what}"
        );
    }
}

#[test]
fn a_read_only_mount_uses_the_attribute_and_leaves_the_file_alone() {
    let mut m = Mounted::new(&[]);
    populate(&m);
    let backing_d = only_subdir(&m.backing);
    let file = backing_d.join("kmsfs.dir");
    m.unmount();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    m.mount(&["ro"]);
    m.assert_live();
    assert_eq!(std::fs::read(m.path("d/one")).unwrap(), b"one");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
}

#[test]
fn disagreeing_or_missing_ids_are_eio_and_fsck_damage() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    for d in ["a", "b", "c"] {
        std::fs::create_dir(m.path(d)).unwrap();
        std::fs::write(m.path(&format!("{d}/f")), d).unwrap();
    }
    let (_, secret) = volume_keys(&m.backing, &m.keys);
    let dirs: Vec<PathBuf> = std::fs::read_dir(&m.backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let found = walk(&m.backing, &secret);
    let plain_of = |backing: &Path| {
        found
            .iter()
            .find_map(|e| match e {
                VolumeEntry::Directory { backing: b, plain } if b == backing => Some(plain.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (x, y, z) = (&dirs[0], &dirs[1], &dirs[2]);
    let (px, py, pz) = (plain_of(x), plain_of(y), plain_of(z));
    m.unmount();
    // x gets y's (authentic) attribute: both valid, different ids.
    let y_attr = get_xattr(y, DIR_ID_XATTR).unwrap();
    set_xattr(x, DIR_ID_XATTR, &y_attr).unwrap();
    // z loses its attribute and its file's bytes.
    remove_xattr(z, DIR_ID_XATTR).unwrap();
    std::fs::write(z.join("kmsfs.dir"), b"").unwrap();

    let found = walk(&m.backing, &secret);
    let damaged = |dir: &Path| {
        found.iter().find_map(|e| match e {
            VolumeEntry::Damaged { backing, error, .. } if backing == dir => {
                Some(error.to_string())
            }
            _ => None,
        })
    };
    let mismatch = damaged(x).expect("x reported");
    assert!(mismatch.contains("disagrees"), "{mismatch}");
    assert!(damaged(z).is_some(), "{found:?}");
    assert!(damaged(y).is_none(), "{found:?}");

    m.mount(&[]);
    m.assert_live();
    for p in [&px, &pz] {
        let d = m.mnt.join(p);
        assert_eq!(errno(std::fs::read_dir(&d).map(drop)), libc::EIO, "{p:?}");
        assert_eq!(
            errno(std::fs::write(d.join("new"), b"n")),
            libc::EIO,
            "{p:?}"
        );
    }
    // The healthy one is untouched, and the damage was not "repaired" away.
    assert_eq!(
        std::fs::read(m.mnt.join(&py).join("f")).unwrap(),
        py.as_os_str().as_bytes()
    );
    assert_eq!(std::fs::read(z.join("kmsfs.dir")).unwrap(), b"");
}

#[test]
fn a_key_rule_survives_and_a_lost_rule_file_is_refused_by_the_record() {
    let second = "arn:aws:kms:local:111122223333:key/second";
    let keys = TestKeys::new();
    keys.add_key(second);
    keys.allow(0, second, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
    let mut m = Mounted::with_keys(keys, &[]);
    populate(&m);
    let d = m.path("d");
    set_xattr(&d, kmsfs::fs::KEY_RULE_XATTR, second.as_bytes()).unwrap();
    std::fs::write(d.join("ruled"), b"r").unwrap();
    m.remount(&[]);
    assert_eq!(
        get_xattr(&d, kmsfs::fs::KEY_RULE_XATTR).unwrap(),
        second.as_bytes()
    );
    std::fs::write(d.join("ruled2"), b"r2").unwrap();
    let backing_d = only_subdir(&m.backing);
    let generated = m.keys.generates();

    // The rule's file is lost (here: removed) while the attribute is intact.
    m.unmount();
    std::fs::remove_file(backing_d.join("kmsfs.dir")).unwrap();
    m.mount(&[]);
    m.assert_live();
    // Names need only the id: everything lists and opens.
    assert_eq!(names(&d).len(), 4);
    assert_eq!(std::fs::read(d.join("ruled2")).unwrap(), b"r2");
    // The rule is not silently dropped: new files and the rule itself are refused.
    assert_eq!(errno(std::fs::write(d.join("after"), b"a")), libc::EIO);
    assert_eq!(errno(get_xattr(&d, kmsfs::fs::KEY_RULE_XATTR)), libc::EIO);
    assert_eq!(
        m.keys.generates(),
        generated,
        "no data key under another key"
    );
    // Setting it again repairs it.
    set_xattr(&d, kmsfs::fs::KEY_RULE_XATTR, second.as_bytes()).unwrap();
    std::fs::write(d.join("after"), b"a").unwrap();
    assert_eq!(
        get_xattr(&d, kmsfs::fs::KEY_RULE_XATTR).unwrap(),
        second.as_bytes()
    );
}

/// Unmounts a FUSE mount by path when dropped (after the kmsfs session above it).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Unmounts a kmsfs session when dropped.
struct Session(Option<kmsfs::fs::MountSession>);

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.umount();
        }
    }
}

#[test]
fn a_backing_file_system_without_user_attributes_gets_the_fsynced_file_alone() {
    // bindfs --xattr-none: a real backing file system whose setxattr is EOPNOTSUPP.
    if std::process::Command::new("bindfs")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: bindfs is not installed (needed for a backing without xattrs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (raw, backing, mnt) = (
        dir.path().join("raw"),
        dir.path().join("backing"),
        dir.path().join("mnt"),
    );
    for d in [&raw, &backing, &mnt] {
        std::fs::create_dir(d).unwrap();
    }
    let st = std::process::Command::new("bindfs")
        .args(["--xattr-none", "-o", "dev,suid"])
        .arg(&raw)
        .arg(&backing)
        .status()
        .unwrap();
    assert!(st.success());
    let _bindfs = Unmount(backing.clone());
    assert_eq!(
        errno(set_xattr(&backing, "user.probe", b"1")),
        libc::EOPNOTSUPP,
        "the backing must refuse user attributes"
    );
    let keys = TestKeys::new();
    kmsfs::fs::init_volume(&backing, DEFAULT_ALIAS, keys.as_ref()).unwrap();
    let spec = kmsfs::fs::MountSpec {
        backing: backing.clone(),
        mountpoint: mnt.clone(),
        options: vec![],
        threads: 2,
    };
    let mut session = Session(Some(kmsfs::fs::mount(&spec, keys.clone()).unwrap()));
    assert_eq!(
        nix::sys::statfs::statfs(&mnt).unwrap().filesystem_type(),
        nix::sys::statfs::FUSE_SUPER_MAGIC
    );
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/one"), b"one").unwrap();
    let backing_d = only_subdir(&raw);
    assert_eq!(errno(get_xattr(&backing_d, DIR_ID_XATTR)), libc::ENODATA);
    let (meta_key, _) = volume_keys(&backing, &keys);
    DirMeta::load(&backing_d, &meta_key).unwrap();
    if let Some(s) = session.0.take() {
        s.umount().unwrap();
    }
    session.0 = Some(kmsfs::fs::mount(&spec, keys.clone()).unwrap());
    assert_eq!(std::fs::read(mnt.join("d/one")).unwrap(), b"one");
    drop(session);
}
