//! New directories (whose `kmsfs.dir` is no longer fsynced where the directory id
//! attribute is set) and the files in them survive kill -9 of the daemon right after
//! they were made: nothing the daemon answered is lost with it. A child process is the
//! daemon; the test process works through the mount. Needs root. Kept in its own test
//! binary because it forks.

mod support;

use std::fs;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use support::fs::crash::{is_mounted, spawn_daemon, Detach};
use support::fs::*;

#[test]
fn new_directories_and_their_files_survive_kill_9_of_the_daemon() {
    let mut m = Mounted::new(&[]);
    m.unmount();
    let _detach = Detach(m.mnt.clone());
    let reap = spawn_daemon(&m.backing, &m.mnt, &[], |_| true);
    let daemon = reap.0;
    let mut made = Vec::new();
    for i in 0..20 {
        let d = format!("d{i}/sub{i}");
        fs::create_dir_all(m.path(&d)).unwrap();
        let f = format!("{d}/f{i}");
        fs::write(m.path(&f), format!("file {i}")).unwrap();
        made.push(f);
    }
    kill(daemon, Signal::SIGKILL).unwrap();
    waitpid(daemon, None).unwrap();
    std::mem::forget(reap);
    nix::mount::umount2(&m.mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();

    m.mount(&[]);
    m.assert_live();
    for (i, f) in made.iter().enumerate() {
        assert_eq!(fs::read_to_string(m.path(f)).unwrap(), format!("file {i}"));
    }
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 20);
    m.unmount();
}

#[test]
fn an_fsynced_file_in_a_new_directory_survives_a_power_loss_on_journaled_ext4() {
    let Some(mut image) = Ext4Image::new(64, &[]) else {
        eprintln!("SKIPPED: mkfs.ext4 or losetup missing");
        return;
    };
    let keys = TestKeys::new();
    let spec = image_volume(&image, &keys);
    let (backing, mnt) = (spec.backing.clone(), spec.mountpoint.clone());
    // Everything so far is committed; what follows is only in the running transaction
    // and the page cache until the fsync below.
    nix::unistd::sync();
    let session = kmsfs::fs::mount(&spec, keys.clone()).unwrap();
    let _detach = Detach(mnt.clone());
    assert!(is_mounted(&mnt));
    fs::create_dir_all(mnt.join("a/b")).unwrap();
    fs::write(mnt.join("a/b/other"), b"not synced").unwrap();
    let mut synced = fs::File::create(mnt.join("a/b/synced")).unwrap();
    std::io::Write::write_all(&mut synced, b"fsynced data").unwrap();
    synced.sync_all().unwrap();
    drop(synced);
    image.crash();
    let _ = session.umount();
    image.unmount();
    image.mount();

    // What the crash left of the two new directories' kmsfs.dir (written without
    // fsync): typically empty, their data never reached the disk.
    let mut torn = 0;
    let mut stack = vec![backing.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                torn +=
                    usize::from(fs::metadata(p.join("kmsfs.dir")).map_or(true, |m| m.len() == 0));
                stack.push(p);
            }
        }
    }
    eprintln!("{torn} of 2 new kmsfs.dir files lost their content in the crash");

    let session = mount_live(&spec, &keys);
    assert_eq!(fs::read(mnt.join("a/b/synced")).unwrap(), b"fsynced data");
    let mut listed: Vec<String> = fs::read_dir(mnt.join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert!(listed.contains(&"synced".to_string()), "{listed:?}");
    session.umount().unwrap();
}
