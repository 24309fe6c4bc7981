//! A directory's key rule cannot be rolled back by whoever writes the backing directory:
//! an older, authentic `kmsfs.dir` put back in place is refused (EIO) instead of letting
//! new files fall back to the default key, because the key service keeps the record of
//! every rule. Format-1 rules are imported into that record at the first mount. Real
//! FUSE mounts; needs root.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmsfs::crypto::SealingKey;
use kmsfs::format::{DirId, DirMeta, FileHeader, MetadataKey};
use kmsfs::kms::provider::DirRule;

fn set_key_rule(d: &Path, key: &str) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(d.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(kmsfs::fs::KEY_RULE_XATTR).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            key.as_ptr().cast(),
            key.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setting the key rule of {}: {}",
        d.display(),
        std::io::Error::last_os_error()
    );
}

fn get_key_rule(d: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(d.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(kmsfs::fs::KEY_RULE_XATTR).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid C strings; buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The one subdirectory of backing directory `dir`.
fn only_subdir(dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// The key ARN in the envelope of every regular file (content, not metadata) directly
/// in backing directory `dir`.
fn envelope_keys(dir: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if p.is_file() && !name.contains('.') {
            let f = std::fs::File::open(&p).unwrap();
            keys.push(FileHeader::read_from(&f).unwrap().key_arn);
        }
    }
    keys
}

#[test]
fn a_rolled_back_kmsfs_dir_never_lets_new_files_fall_back_to_the_default_key() {
    use support::e2e::*;
    let mut f = Fixture::new("dir-rollback");
    let second = f
        .kms(
            BOB,
            "CreateKey",
            serde_json::json!({"Description": "project key", "Policy": key_policy()}),
        )
        .unwrap();
    let second_arn = second["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    assert_ne!(second_arn, f.key_arn);
    let d = f.path("project");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let backing_d = only_subdir(&f.backing);
    let before_rule = std::fs::read(backing_d.join("kmsfs.dir")).unwrap();

    set_key_rule(&d, &second_arn);
    f.sh(ALICE, &format!("printf one > {}/one", d.display()))
        .expect_ok();
    assert_eq!(envelope_keys(&backing_d), vec![second_arn.clone()]);

    // Someone who can write the backing directory puts the old, authentic copy back.
    std::fs::write(backing_d.join("kmsfs.dir"), &before_rule).unwrap();
    // This mount may still remember the rule it resolved (then the file gets the right
    // key); it must never fall back to the default key.
    let _ = f.sh(ALICE, &format!("printf two > {}/two", d.display()));
    assert!(
        envelope_keys(&backing_d).iter().all(|k| *k == second_arn),
        "a file was created under another key than the rule's"
    );

    // A fresh mount reads kmsfs.dir again and refuses it: the store has the rule.
    f.unmount();
    f.mount();
    f.sh(ALICE, &format!("printf three > {}/three", d.display()))
        .expect_err(EIO);
    assert_eq!(
        get_key_rule(&d).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    assert!(
        envelope_keys(&backing_d).iter().all(|k| *k == second_arn),
        "a file was created under another key than the rule's"
    );
    // Files already there stay readable: names need only the directory id.
    assert_eq!(
        f.sh(ALICE, &format!("cat {}/one", d.display())).expect_ok(),
        "one"
    );

    // The owner repairs the directory by setting the rule again; it survives a remount.
    set_key_rule(&d, &second_arn);
    f.unmount();
    f.mount();
    f.sh(ALICE, &format!("printf four > {}/four", d.display()))
        .expect_ok();
    assert!(envelope_keys(&backing_d).iter().all(|k| *k == second_arn));
    assert_eq!(get_key_rule(&d).unwrap(), second_arn.as_bytes());
    assert_eq!(
        f.sh(ALICE, &format!("cat {}/four", d.display()))
            .expect_ok(),
        "four"
    );
    // The store's record, not the file, is the authority.
    let meta_text = std::fs::read_to_string(backing_d.join("kmsfs.dir")).unwrap();
    assert!(meta_text.contains("version = 2"), "{meta_text}");
    let audit = f.audit_lines();
    assert!(
        audit
            .iter()
            .filter(|r| r["eventName"] == "PutDirectoryKeyRule")
            .count()
            >= 2,
        "every recorded rule change is audited"
    );
}

/// Unmounts on drop.
struct Session(Option<kmsfs::fs::MountSession>);

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.umount();
        }
    }
}

fn mount_at(backing: &Path, mnt: &Path, keys: &Arc<support::fs::TestKeys>) -> Session {
    let spec = kmsfs::fs::MountSpec {
        backing: backing.to_path_buf(),
        mountpoint: mnt.to_path_buf(),
        options: vec![],
        threads: 2,
    };
    Session(Some(kmsfs::fs::mount(&spec, keys.clone()).unwrap()))
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn a_format_1_key_rule_is_imported_at_the_first_mount_and_its_rollback_refused() {
    use support::fs::*;
    // tests/fixtures/format-v1/README.md: fixed test values.
    const VOLUME_ID: &str = "000102030405060708090a0b0c0d0e0f";
    const SUB_RULE: &str = "alias/kmsfs/fixture-sub";
    let sub_key = "arn:aws:kms:local:111122223333:key/fixture-sub";
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/backing"),
        &backing,
    );
    let keys = TestKeys::new();
    keys.set_volume_secret(VOLUME_ID, [0x11; 32]);
    keys.add_key(sub_key);
    keys.alias(SUB_RULE, sub_key);
    keys.allow(0, sub_key, &[Op::Generate, Op::Decrypt, Op::Encrypt]);

    let session = mount_at(&backing, &mnt, &keys);
    assert_eq!(
        keys.recorded_dir_rule(VOLUME_ID, &[0x22; 16]),
        Some(DirRule {
            version: 0,
            rule: Some(SUB_RULE.into())
        }),
        "the format-1 rule of `sub` is imported at the first mount"
    );
    std::fs::write(mnt.join("sub/new.txt"), b"new").unwrap();
    assert_eq!(std::fs::read(mnt.join("sub/new.txt")).unwrap(), b"new");
    drop(session);

    // An authentic format-1 kmsfs.dir of `sub` without the rule (as it was before the
    // rule was set) put back in place.
    let meta_key = MetadataKey::new(&SealingKey::from_bytes([0x11; 32]));
    let rolled_back = DirMeta {
        dir_id: DirId([0x22; 16]),
        key_rule: None,
        version: 0,
    };
    let backing_sub = only_subdir(&backing);
    std::fs::write(backing_sub.join("kmsfs.dir"), rolled_back.encode(&meta_key)).unwrap();
    let generated_before = keys.generates();
    let _session = mount_at(&backing, &mnt, &keys);
    let err = std::fs::write(mnt.join("sub/after.txt"), b"after").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        keys.generates(),
        generated_before,
        "no data key was asked for under any other key"
    );
    assert!(!mnt.join("sub/after.txt").exists());
}
