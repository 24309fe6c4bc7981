//! `kmsfs mount` (daemonized: it returns once the mount is ready) and `kmsfs umount`
//! through the real binary; a key user writes and reads through an allow_other mount,
//! others are refused at open; `kmsfs fsck` passes an intact volume and fails a damaged one.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::cli::*;

/// key_policy() plus Decrypt for the account's root user (uid 0), so that root's
/// `kmsfs fsck` can authenticate every block, as a backup operator's would.
fn policy_with_root_decrypt() -> String {
    let mut p: serde_json::Value = serde_json::from_str(&key_policy()).unwrap();
    p["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "RootChecks", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:Decrypt", "Resource": "*"
        }));
    p.to_string()
}

#[test]
fn key_user_writes_and_reads_through_a_daemonized_mount_and_fsck_catches_a_flipped_byte() {
    let mut s = Served::start("mount");
    let policy = s.public_file("mount-policy.json", policy_with_root_decrypt().as_bytes());
    let key = ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "create-key",
            "--policy",
            &format!("file://{}", policy.display()),
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    ));
    // The mount process serves the key service itself: stop the standalone one.
    s.kill9();
    let backing = s.dir.join("backing");
    let mnt = s.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let init = json(&s.root(&["init", &backing.display().to_string(), "--key", &key]));
    assert_eq!(init["Volume"]["DefaultKey"], key.as_str(), "{init}");

    let out = s.root(&[
        "mount",
        "-o",
        "allow_other,default_permissions",
        &backing.display().to_string(),
        &mnt.display().to_string(),
    ]);
    let guard = Mounted(mnt.clone());
    ok(&out);
    // Daemonized mount returns only when ready: the mount is there at once.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.contains(&mnt.display().to_string()), "not mounted");
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o777)).unwrap();

    let file = mnt.join("notes.txt");
    let write = sh_as(
        ALICE,
        &format!(
            "printf 'alice was here\\n' > {0} && cat {0}",
            file.display()
        ),
    );
    assert_eq!(ok(&write), "alice was here");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), ALICE);
    // Bob administers the key but may not read; carol is in no policy at all.
    for uid in [BOB, CAROL] {
        let o = sh_as(uid, &format!("cat {}", file.display()));
        assert!(!o.status.success(), "uid {uid} read the file");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Permission denied"), "uid {uid}: {err}");
    }
    // The mount process also serves the socket: users reach the key service through it.
    let me = ok(&s.as_uid(ALICE, &["whoami"]));
    assert!(me.contains(&arn("alice")), "{me}");

    ok(&Command::new(KMSFS)
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap());
    drop(guard);
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(&mnt.display().to_string()));
    assert!(!mnt.join("notes.txt").exists());

    let fsck = |s: &Served| s.root(&["fsck", &backing.display().to_string()]);
    let clean = fsck(&s);
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(clean.status.code(), Some(0), "{report}");
    assert_eq!(report["Damaged"], 0);
    assert_eq!(report["ContentNotChecked"], 0, "{report}");
    assert_eq!(report["Files"][0]["Path"], "notes.txt");

    // One flipped byte in the ciphertext of the file's only block.
    let backing_file = report["Files"][0]["Backing"].as_str().unwrap();
    let mut bytes = std::fs::read(backing_file).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x01;
    std::fs::write(backing_file, &bytes).unwrap();
    let damaged = fsck(&s);
    let report: serde_json::Value = serde_json::from_slice(&damaged.stdout).unwrap();
    assert_eq!(damaged.status.code(), Some(1), "{report}");
    assert_eq!(report["Damaged"], 1);
    assert_eq!(report["Files"][0]["Status"], "damaged", "{report}");
    assert_eq!(report["Files"][0]["Path"], "notes.txt");
}
