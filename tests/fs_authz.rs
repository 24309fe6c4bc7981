//! Every open is authorized by the key service, per the README's table ("What the
//! filesystem checks"), for the FUSE request's uid: allowed and denied uids, key states,
//! changes that take effect on the next open, a write-only drop box, key rules, and
//! protection that moves with a file.
//! Other uids are real processes (setpriv) going through the mount. Needs root.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use kmsfs::format::VolumeConfig;
use support::fs::*;

const ALICE: u32 = 1001;
const BOB: u32 = 1002;

fn shared_file(m: &Mounted, name: &str, content: &[u8]) -> std::path::PathBuf {
    let p = m.path(name);
    fs::write(&p, content).unwrap();
    set_mode(&p, 0o666);
    p
}

#[test]
fn allowed_uid_reads_and_other_uids_get_eacces() {
    let m = Mounted::new(MULTI_USER);
    let p = shared_file(&m, "report", b"quarterly numbers");
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Decrypt]);
    assert_eq!(
        assert_ok(&sh_as(ALICE, &format!("cat {}", q(&p)))),
        "quarterly numbers"
    );
    assert_failed_with(&sh_as(BOB, &format!("cat {}", q(&p))), libc::EACCES);
    // Decrypt alone does not allow writing, nor truncating.
    assert_failed_with(&sh_as(ALICE, &format!("echo x >> {}", q(&p))), libc::EACCES);
    assert_failed_with(
        &sh_as(ALICE, &format!("truncate -s 0 {}", q(&p))),
        libc::EACCES,
    );
    assert_eq!(fs::read(&p).unwrap(), b"quarterly numbers");
    // Names stay listable for everyone: only opens are gated.
    assert!(assert_ok(&sh_as(BOB, &format!("ls {}", q(&m.mnt)))).contains("report"));
}

#[test]
fn each_open_mode_asks_for_exactly_its_actions() {
    let m = Mounted::new(MULTI_USER);
    let p = shared_file(&m, "f", b"data");
    let cases: &[(&[Op], &str, bool)] = &[
        (&[Op::Decrypt], "exec 3< F", true),
        (&[Op::Decrypt], "exec 3> F", false),
        (&[Op::Decrypt], "exec 3<> F", false),
        (&[Op::Encrypt], "exec 3>> F", true),
        (&[Op::Encrypt], "exec 3< F", false),
        (&[Op::Encrypt], "exec 3<> F", false),
        (&[Op::Decrypt, Op::Encrypt], "exec 3<> F", true),
        (&[Op::Encrypt], "truncate -s 2 F", true),
        (&[], "exec 3< F", false),
    ];
    for (ops, script, allowed) in cases {
        m.keys.allow(ALICE, DEFAULT_KEY, ops);
        let out = sh_as(ALICE, &script.replace('F', &q(&p)));
        if *allowed {
            assert_ok(&out);
        } else {
            assert_failed_with(&out, libc::EACCES);
        }
    }
    // O_TRUNC counts as a write even with O_RDONLY.
    m.keys.allow(0, DEFAULT_KEY, &[Op::Decrypt]);
    let err = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_TRUNC)
        .open(&p)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
}

#[test]
fn every_open_asks_the_key_service_with_the_files_context() {
    let m = Mounted::new(&[]);
    let p = m.path("counted");
    let generated = m.keys.generates();
    fs::write(&p, b"x").unwrap();
    assert_eq!(m.keys.generates(), generated + 1);
    let before = m.keys.opens();
    for _ in 0..5 {
        fs::read(&p).unwrap();
    }
    assert_eq!(m.keys.opens(), before + 5);
    let volume = VolumeConfig::load(&m.backing).unwrap();
    let decisions = m.keys.decisions.lock().unwrap();
    let last = decisions.last().unwrap();
    assert_eq!(last.context.get("kmsfs:volume"), Some(&volume.volume_id));
    assert_eq!(last.context.get("kmsfs:file").map(String::len), Some(32));
    // The context names this file: the same id the creation used.
    let created = decisions.iter().find(|d| d.op == Op::Generate).unwrap();
    assert_eq!(created.context, last.context);
}

#[test]
fn key_states_map_to_ekeyrevoked_and_enokey() {
    let m = Mounted::new(&[]);
    let p = m.path("f");
    fs::write(&p, b"x").unwrap();
    let cases = [
        (Some(KeyState::Disabled), libc::EKEYREVOKED),
        (Some(KeyState::PendingDeletion), libc::EKEYREVOKED),
        (None, libc::ENOKEY),
    ];
    for (state, errno) in cases {
        match state {
            Some(s) => m.keys.set_state(DEFAULT_KEY, s),
            None => m.keys.delete_key(DEFAULT_KEY),
        }
        let err = fs::read(&p).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(errno), "{state:?}");
        let err = fs::write(m.path("new"), b"y").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(errno), "create with {state:?}");
        assert!(
            !m.path("new").exists(),
            "a refused create leaves nothing behind"
        );
    }
    m.keys.set_state(DEFAULT_KEY, KeyState::Enabled);
    assert_eq!(fs::read(&p).unwrap(), b"x");
}

#[test]
fn a_change_in_the_allow_table_applies_to_the_next_open_without_remount() {
    let m = Mounted::new(MULTI_USER);
    let p = shared_file(&m, "flip", b"flip");
    let read = || sh_as(ALICE, &format!("cat {}", q(&p)));
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Decrypt]);
    assert_eq!(assert_ok(&read()), "flip");
    m.keys.allow(ALICE, DEFAULT_KEY, &[]);
    assert_failed_with(&read(), libc::EACCES);
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Decrypt]);
    assert_eq!(assert_ok(&read()), "flip");
    m.keys.set_state(DEFAULT_KEY, KeyState::Disabled);
    assert_failed_with(&read(), libc::EKEYREVOKED);
}

/// Sets the key rule of plaintext directory `d` through the mount, as `kmsfs key-rule
/// set` does (a rule written into the backing directory behind the mount's back is
/// refused: the key service keeps the record of every rule).
fn set_key_rule(d: &std::path::Path, key: &str) {
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
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

fn mkdir_with_rule(m: &Mounted, name: &str, key: &str) -> std::path::PathBuf {
    let d = m.path(name);
    fs::create_dir(&d).unwrap();
    set_mode(&d, 0o1777);
    set_key_rule(&d, key);
    d
}

#[test]
fn write_only_drop_box_accepts_files_its_writers_cannot_read() {
    let m = Mounted::new(MULTI_USER);
    let drop_key = "arn:aws:kms:local:111122223333:key/dropbox";
    m.keys.add_key(drop_key);
    m.keys.allow(ALICE, drop_key, &[Op::Generate, Op::Encrypt]);
    m.keys.allow(0, drop_key, &[Op::Decrypt]);
    let d = mkdir_with_rule(&m, "inbox", drop_key);
    let f = d.join("submission.txt");
    assert_ok(&sh_as(ALICE, &format!("printf 'my report' > {}", q(&f))));
    assert_ok(&sh_as(ALICE, &format!("printf ' v2' >> {}", q(&f))));
    // Even the file's owner cannot read it back, in any read mode.
    assert_failed_with(&sh_as(ALICE, &format!("cat {}", q(&f))), libc::EACCES);
    assert_failed_with(&sh_as(ALICE, &format!("exec 3<> {}", q(&f))), libc::EACCES);
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&f).unwrap());
    assert_eq!(owner, ALICE, "files belong to their creator");
    // The reader the key policy names reads it.
    assert_eq!(fs::read(&f).unwrap(), b"my report v2");
    let decisions = m.keys.decisions.lock().unwrap();
    assert!(decisions
        .iter()
        .any(|d| d.uid == ALICE && d.op == Op::Generate && d.key == drop_key));
}

#[test]
fn key_rules_apply_to_new_files_in_nested_directories() {
    let m = Mounted::new(&[]);
    let team = "arn:aws:kms:local:111122223333:key/team";
    m.keys.add_key(team);
    m.keys
        .allow(0, team, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
    let d = mkdir_with_rule(&m, "team", team);
    fs::create_dir_all(d.join("a/b")).unwrap();
    fs::write(d.join("a/b/deep"), b"deep").unwrap();
    fs::write(m.path("top"), b"top").unwrap();
    let decisions = m.keys.decisions.lock().unwrap();
    let generated: Vec<&str> = decisions
        .iter()
        .filter(|d| d.op == Op::Generate)
        .map(|d| d.key.as_str())
        .collect();
    assert_eq!(generated, vec![team, DEFAULT_KEY]);
}

#[test]
fn renamed_files_keep_the_key_of_their_envelope() {
    let m = Mounted::new(MULTI_USER);
    let secret_key = "arn:aws:kms:local:111122223333:key/secret";
    m.keys.add_key(secret_key);
    m.keys
        .allow(0, secret_key, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
    let secret_dir = mkdir_with_rule(&m, "secret", secret_key);
    let public_dir = m.path("public");
    fs::create_dir(&public_dir).unwrap();
    set_mode(&public_dir, 0o1777);
    let f = secret_dir.join("plans");
    fs::write(&f, b"the plans").unwrap();
    set_mode(&f, 0o644);
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Decrypt]);
    let moved = public_dir.join("plans");
    fs::rename(&f, &moved).unwrap();
    // Moving into a directory whose files use the default key changes nothing: the
    // file's own envelope names the secret key.
    assert_failed_with(&sh_as(ALICE, &format!("cat {}", q(&moved))), libc::EACCES);
    m.keys.allow(ALICE, secret_key, &[Op::Decrypt]);
    assert_eq!(
        assert_ok(&sh_as(ALICE, &format!("cat {}", q(&moved)))),
        "the plans"
    );
}

#[test]
fn root_without_decrypt_cannot_read_a_byte() {
    let m = Mounted::new(&[]);
    let p = m.path("f");
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(b"private").unwrap();
    drop(f);
    // A key administrator: may create and write, not decrypt.
    m.keys.allow(0, DEFAULT_KEY, &[Op::Generate, Op::Encrypt]);
    let err = fs::read(&p).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    // Nor through a read-write open.
    let err = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
}

/// Runs `f` on a thread whose credentials are `uid`/`uid` (raw syscalls change only the
/// calling thread, unlike glibc's wrappers), so FUSE requests carry that uid.
fn on_thread_as<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: plain syscalls on this thread's credentials.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_setresgid, uid, uid, uid), 0);
                assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
            }
            f()
        })
        .join()
        .unwrap()
    })
}

fn set_xattr(p: &std::path::Path, name: &str, value: Option<&str>) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        match value {
            Some(v) => libc::setxattr(path.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            None => libc::removexattr(path.as_ptr(), name.as_ptr()),
        }
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

#[test]
fn key_rule_xattr_sets_the_key_of_new_files_and_only_the_owner_changes_it() {
    let m = Mounted::new(MULTI_USER);
    let team = "arn:aws:kms:local:111122223333:key/team";
    m.keys.add_key(team);
    m.keys
        .allow(0, team, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
    let d = m.path("proj");
    fs::create_dir(&d).unwrap();
    set_mode(&d, 0o777);
    let rule = kmsfs::fs::KEY_RULE_XATTR;
    // Write permission on the directory is not enough to redirect its new files.
    assert_eq!(
        on_thread_as(ALICE, || set_xattr(&d, rule, Some(team))),
        Err(libc::EPERM)
    );
    set_xattr(&d, rule, Some(team)).unwrap();
    let mut buf = [0u8; 128];
    let path = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
    let name = std::ffi::CString::new(rule).unwrap();
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 128) };
    assert_eq!(&buf[..n as usize], team.as_bytes());
    fs::write(d.join("a"), b"a").unwrap();
    assert_eq!(
        on_thread_as(ALICE, || set_xattr(&d, rule, None)),
        Err(libc::EPERM)
    );
    set_xattr(&d, rule, None).unwrap();
    fs::write(d.join("b"), b"b").unwrap();
    // An owner sets the rule of their own directory.
    let mine = m.path("mine");
    on_thread_as(ALICE, || {
        fs::create_dir(&mine).unwrap();
        set_xattr(&mine, rule, Some(team)).unwrap();
    });
    let decisions = m.keys.decisions.lock().unwrap();
    let generated: Vec<&str> = decisions
        .iter()
        .filter(|d| d.op == Op::Generate)
        .map(|d| d.key.as_str())
        .collect();
    assert_eq!(generated, vec![team, DEFAULT_KEY]);
}
