//! The filesystem remembers which key new files in a directory get (so a create does not
//! re-read every ancestor's metadata), but a key rule set or removed through the mount,
//! or a rename that moves a directory under another ancestor, applies to the very next
//! create. Every create still asks the key service. Needs root (FUSE).

mod support;

use std::fs;

use support::fs::*;

fn set_xattr(p: &std::path::Path, name: &str, value: Option<&str>) {
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
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// The keys of every GenerateDataKey so far, in order.
fn generated(m: &Mounted) -> Vec<String> {
    m.keys
        .decisions
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.op == Op::Generate)
        .map(|d| d.key.clone())
        .collect()
}

#[test]
fn rule_changes_and_directory_moves_apply_to_the_next_create_in_a_subdirectory() {
    let m = Mounted::new(&[]);
    let team = "arn:aws:kms:local:111122223333:key/team";
    m.keys.add_key(team);
    m.keys
        .allow(0, team, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
    let rule = kmsfs::fs::KEY_RULE_XATTR;
    let top = m.path("top");
    let sub = top.join("sub");
    fs::create_dir_all(&sub).unwrap();
    // Remembered: the default key, for `sub`.
    fs::write(sub.join("1"), b"1").unwrap();
    fs::write(sub.join("2"), b"2").unwrap();
    // A rule on an ancestor reaches the subdirectory at once.
    set_xattr(&top, rule, Some(team));
    fs::write(sub.join("3"), b"3").unwrap();
    // Moving the subdirectory out from under the rule: default key again.
    let moved = m.path("moved");
    fs::rename(&sub, &moved).unwrap();
    fs::write(moved.join("4"), b"4").unwrap();
    // And back under it.
    fs::rename(&moved, &sub).unwrap();
    fs::write(sub.join("5"), b"5").unwrap();
    // Removing the rule: default key.
    set_xattr(&top, rule, None);
    fs::write(sub.join("6"), b"6").unwrap();
    let d = DEFAULT_KEY.to_string();
    let t = team.to_string();
    assert_eq!(
        generated(&m),
        vec![d.clone(), d.clone(), t.clone(), d.clone(), t, d],
        "one GenerateDataKey per create, under the rule in force"
    );
    for (name, dir) in [("1", &sub), ("3", &sub), ("4", &sub), ("6", &sub)] {
        assert_eq!(fs::read(dir.join(name)).unwrap(), name.as_bytes());
    }
}
