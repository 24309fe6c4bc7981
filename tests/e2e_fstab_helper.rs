//! `mount.kmsfs` (the helper mount(8) runs for fstab entries) mounts a real volume
//! through the real binary, taking kmsfs settings from the options.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn mount_helper_mounts_with_settings_from_fstab_options() {
    let kmsfs = env!("CARGO_BIN_EXE_kmsfs");
    let dir = std::env::temp_dir().join(format!("kmsfs-fstab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let store = dir.join("store");
    let backing = dir.join("backing");
    let mnt = dir.join("mnt");
    let sock = dir.join("kms.sock");
    let init = Command::new(kmsfs)
        .arg("--store")
        .arg(&store)
        .arg("init")
        .arg(&backing)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let helper = dir.join("mount.kmsfs");
    std::os::unix::fs::symlink(kmsfs, &helper).unwrap();
    let opts = format!(
        "rw,nofail,x-systemd.automount,store={},socket={},threads=2",
        store.display(),
        sock.display()
    );
    let out = Command::new(&helper)
        .arg(&backing)
        .arg(&mnt)
        .args(["-o", &opts])
        .env_remove("KMSFS_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::write(mnt.join("hello.txt"), b"through fstab");
    let read = std::fs::read(mnt.join("hello.txt"));
    let umount = Command::new(kmsfs)
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap();
    written.unwrap();
    assert_eq!(read.unwrap(), b"through fstab");
    assert!(
        umount.status.success(),
        "{}",
        String::from_utf8_lossy(&umount.stderr)
    );
    // After unmounting, only ciphertext remains.
    assert!(!mnt.join("hello.txt").exists());
    let names: Vec<_> = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("hello")), "{names:?}");

    // fsck authenticates every block: clean now, damaged after one flipped byte.
    let fsck = |args: &[&str]| {
        Command::new(kmsfs)
            .arg("--store")
            .arg(&store)
            .args(args)
            .arg("fsck")
            .arg(&backing)
            .env_remove("KMSFS_SOCKET")
            .output()
            .unwrap()
    };
    let clean = fsck(&["--output", "text"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let file = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kmsfs.")
        })
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let damaged = fsck(&["--output", "text"]);
    assert_eq!(damaged.status.code(), Some(1));
    let report = String::from_utf8_lossy(&damaged.stdout);
    assert!(
        report.contains("damaged") && report.contains("hello.txt"),
        "{report}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
