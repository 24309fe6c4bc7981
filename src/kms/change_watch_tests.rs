//! Tests of the change watch: the event parser, the file-system allow-list, the plan of
//! watches, and real renames, writes, exchanges and mounts bumping the generation.

use super::*;

fn event(wd: i32, mask: u32, name: &str) -> Vec<u8> {
    let mut padded = name.as_bytes().to_vec();
    if !padded.is_empty() {
        padded.resize((padded.len() / 16 + 1) * 16, 0);
    }
    let mut v = Vec::new();
    v.extend_from_slice(&wd.to_ne_bytes());
    v.extend_from_slice(&mask.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&u32::try_from(padded.len()).unwrap().to_ne_bytes());
    v.extend_from_slice(&padded);
    v
}

fn roles() -> BTreeMap<i32, Role> {
    BTreeMap::from([
        (1, Role::Dir(vec!["state.json".into()])),
        (2, Role::File),
        (3, Role::Dir(vec!["store".into()])),
    ])
}

#[test]
fn events_on_other_names_and_forgotten_watches_do_not_count() {
    let mut buf = event(1, libc::IN_CREATE, "state.json.tmp-123");
    buf.extend(event(1, libc::IN_MOVED_FROM, "audit.log.1"));
    buf.extend(event(3, libc::IN_MOVED_TO, "other"));
    buf.extend(event(9, libc::IN_MODIFY, "")); // removed by a rebuild
    buf.extend(event(9, libc::IN_IGNORED, ""));
    assert!(!events_concern(&buf, &roles()));
}

#[test]
fn events_on_the_files_names_and_directories_themselves_count() {
    for ev in [
        event(1, libc::IN_MOVED_TO, "state.json"),
        event(1, libc::IN_DELETE, "state.json"),
        event(2, libc::IN_MODIFY, ""),
        event(2, libc::IN_ATTRIB, ""),
        event(3, libc::IN_MOVED_FROM, "store"),
        event(3, libc::IN_MOVE_SELF, ""),
        event(1, libc::IN_DELETE_SELF, ""),
        event(1, libc::IN_IGNORED, ""),
        event(1, libc::IN_UNMOUNT, ""),
    ] {
        let mut buf = event(1, libc::IN_CREATE, "unrelated");
        buf.extend(ev);
        assert!(events_concern(&buf, &roles()));
    }
}

#[test]
fn a_queue_overflow_counts_as_a_change() {
    // The kernel reports an overflow with wd -1 and no name.
    let buf = event(-1, libc::IN_Q_OVERFLOW, "");
    assert!(events_concern(&buf, &roles()));
    assert!(events_concern(&buf, &BTreeMap::new()));
}

#[test]
fn a_torn_event_counts_as_a_change() {
    let buf = event(1, libc::IN_CREATE, "unrelated");
    assert!(events_concern(buf.get(..buf.len() - 4).unwrap(), &roles()));
    assert!(events_concern(buf.get(..10).unwrap(), &roles()));
}

#[test]
fn only_local_file_systems_are_trusted_for_inotify() {
    for local in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0xF2F5_2010] {
        assert!(local_fs_type(local), "{local:#x}");
    }
    // nfs, smb2, cifs, fuse, 9p, ceph, overlayfs, afs
    for remote in [
        0x6969,
        0xFE53_4D42,
        0xFF53_4D42,
        0x6573_5546,
        0x0102_1997,
        0x00C3_6400,
        0x794C_7630,
        0x5346_414F,
    ] {
        assert!(!local_fs_type(remote), "{remote:#x}");
    }
}

#[test]
fn the_plan_watches_each_file_its_directory_and_every_ancestor() {
    let plan = plan(&[
        PathBuf::from("/srv/store/state.json"),
        PathBuf::from("/srv/store/principals.toml"),
        PathBuf::from("/etc/kmsfs/ops.json"),
    ])
    .unwrap();
    let role = |p: &str| plan.get(Path::new(p)).map(|(_, r)| r.clone());
    assert_eq!(role("/srv/store/state.json"), Some(Role::File));
    assert_eq!(
        role("/srv/store"),
        Some(Role::Dir(vec![
            "state.json".into(),
            "principals.toml".into()
        ]))
    );
    assert_eq!(role("/srv"), Some(Role::Dir(vec!["store".into()])));
    assert_eq!(role("/etc"), Some(Role::Dir(vec!["kmsfs".into()])));
    assert_eq!(role("/"), Some(Role::Dir(vec!["srv".into(), "etc".into()])));
    let mask = |p: &str| plan.get(Path::new(p)).map(|(m, _)| *m).unwrap();
    assert_eq!(
        mask("/srv/store") & libc::IN_MODIFY,
        0,
        "no audit-log noise"
    );
    assert_ne!(mask("/srv/store") & libc::IN_CREATE, 0);
    assert_ne!(mask("/srv") & libc::IN_MOVED_TO, 0);
    assert!(matches!(
        super::plan(&[PathBuf::from("store/state.json")]),
        Err(WatchOff::NotCanonical(_))
    ));
}

fn tmp() -> tempfile::TempDir {
    // /dev/shm and /tmp are local here; the test is about the mechanism.
    tempfile::tempdir().unwrap()
}

#[test]
fn a_change_by_rename_or_in_place_bumps_the_generation_and_nothing_else_does() {
    let d = tmp();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    let f = dir.join("state.json");
    std::fs::write(&f, "1").unwrap();
    let w = ChangeWatch::without_mount_table(vec![f.clone()], Vec::new());
    let g0 = w.poll().expect("inotify on a local directory");
    assert_eq!(w.poll(), Some(g0));
    // Noise beside the file: no change.
    std::fs::write(dir.join("audit.log"), "x").unwrap();
    std::fs::write(dir.join("audit.log"), "xy").unwrap();
    assert_eq!(w.poll(), Some(g0));
    // Replaced by rename.
    std::fs::write(dir.join("tmp"), "2").unwrap();
    std::fs::rename(dir.join("tmp"), &f).unwrap();
    let g1 = w.poll().unwrap();
    assert!(g1 > g0);
    assert_eq!(w.poll(), Some(g1));
    // Written in place (the new inode is watched after the rebuild).
    std::fs::write(&f, "3").unwrap();
    let g2 = w.poll().unwrap();
    assert!(g2 > g1);
    // chmod.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let g3 = w.poll().unwrap();
    assert!(g3 > g2);
    // Removed, then created again.
    std::fs::remove_file(&f).unwrap();
    let g4 = w.poll().unwrap();
    assert!(g4 > g3);
    std::fs::write(&f, "4").unwrap();
    assert!(w.poll().unwrap() > g4);
}

#[test]
fn the_directory_exchanged_with_another_bumps_the_generation() {
    let d = tmp();
    let top = std::fs::canonicalize(d.path()).unwrap();
    let store = top.join("store");
    let other = top.join("store.new");
    std::fs::create_dir(&store).unwrap();
    std::fs::create_dir(&other).unwrap();
    std::fs::write(store.join("state.json"), "old").unwrap();
    std::fs::write(other.join("state.json"), "new").unwrap();
    let w = ChangeWatch::without_mount_table(vec![store.join("state.json")], Vec::new());
    let g0 = w.poll().unwrap();
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &other,
        nix::fcntl::AT_FDCWD,
        &store,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    let g1 = w.poll().unwrap();
    assert!(g1 > g0);
    // The rebuilt watches follow the new directory, not the old one.
    std::fs::write(other.join("state.json"), "old, elsewhere").unwrap();
    assert_eq!(w.poll(), Some(g1));
    std::fs::write(store.join("state.json"), "newer").unwrap();
    assert!(w.poll().unwrap() > g1);
}

#[test]
fn a_path_through_a_symlink_turns_the_watch_off() {
    let d = tmp();
    let top = std::fs::canonicalize(d.path()).unwrap();
    std::fs::create_dir(top.join("real")).unwrap();
    std::os::unix::fs::symlink(top.join("real"), top.join("link")).unwrap();
    std::fs::write(top.join("real/principals.toml"), "").unwrap();
    let w = ChangeWatch::new(Vec::new(), vec![top.join("link/principals.toml")]);
    assert_eq!(w.poll(), None);
    assert!(!w.stats().0);
    // A symlinked file itself too.
    std::os::unix::fs::symlink(top.join("real/principals.toml"), top.join("p.toml")).unwrap();
    let w = ChangeWatch::new(Vec::new(), vec![top.join("p.toml")]);
    assert_eq!(w.poll(), None);
}

#[test]
fn new_principal_files_force_one_full_check() {
    let d = tmp();
    let top = std::fs::canonicalize(d.path()).unwrap();
    std::fs::write(top.join("principals.toml"), "").unwrap();
    let w = ChangeWatch::without_mount_table(Vec::new(), vec![top.join("principals.toml")]);
    let g0 = w.poll().unwrap();
    w.set_principal_files(vec![top.join("principals.toml")]);
    assert_eq!(w.poll(), Some(g0));
    w.set_principal_files(vec![top.join("principals.toml"), top.join("ops.json")]);
    let g1 = w.poll().unwrap();
    assert!(g1 > g0);
    std::fs::write(top.join("ops.json"), "{}").unwrap();
    assert!(w.poll().unwrap() > g1);
}

#[test]
fn a_mount_over_a_watched_path_bumps_the_generation() {
    let d = tmp();
    let top = std::fs::canonicalize(d.path()).unwrap();
    std::fs::create_dir(top.join("store")).unwrap();
    std::fs::write(top.join("store/state.json"), "1").unwrap();
    let w = ChangeWatch::new(vec![top.join("store/state.json")], Vec::new());
    let g0 = w.poll().unwrap();
    // No inotify event: the path now names another directory's (absent) file.
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(top.join("store"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let g1 = w.poll();
    let umount = std::process::Command::new("umount")
        .arg(top.join("store"))
        .output()
        .unwrap();
    assert!(umount.status.success(), "{umount:?}");
    assert!(g1.unwrap() > g0);
    // A second change after the first was taken in is seen too (the mount table's
    // readiness is reported again, not only once per descriptor).
    assert!(w.poll().unwrap() > g1.unwrap());
}

#[test]
fn checked_covers_only_generations_a_full_check_started_after() {
    let c = Checked::default();
    assert!(!c.covers(Some(1)));
    assert!(!c.covers(None));
    c.mark(Some(3));
    assert!(c.covers(Some(3)));
    assert!(c.covers(Some(2)));
    assert!(!c.covers(Some(4)));
    c.mark(Some(2)); // a slow thread finishing late never lowers it
    assert!(c.covers(Some(3)));
    c.mark(None);
    assert!(!c.covers(None));
}
