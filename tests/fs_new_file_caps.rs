//! A file this mount creates is known to have no `security.capability` (the daemon
//! answers the kernel's GETXATTR of it before the first write without reading the
//! backing file) until an extended attribute is set or removed through the mount: then
//! the backing file answers again, so capabilities set on a new file show, and go on
//! the next change as on any other file. Needs root, /dev/fuse and `setcap`/`getcap`.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use support::fs::*;

/// The file capabilities `getcap` shows for `p` (empty when none).
fn caps(p: &Path) -> String {
    let out = std::process::Command::new("getcap")
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "getcap {}", p.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).unwrap_or("").to_string()
}

fn setcap(args: &[&str], p: &Path) {
    let st = std::process::Command::new("setcap")
        .args(args)
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "setcap {args:?} {}", p.display());
}

/// The one backing file that holds content.
fn backing_file(m: &Mounted) -> std::path::PathBuf {
    let files = m.backing_files();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn capabilities_on_a_new_file_show_and_go_as_on_any_other() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    let p = m.path("new");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    // The first write: the kernel asks for security.capability first.
    f.write_all(b"first").unwrap();
    drop(f);
    assert_eq!(caps(&p), "");
    let backing = backing_file(&m);
    assert_eq!(caps(&backing), "");

    // Set through the mount: the mount and the backing file agree it is there.
    setcap(&["cap_net_raw+ep"], &p);
    assert_eq!(caps(&p), "cap_net_raw=ep");
    assert_eq!(caps(&backing), "cap_net_raw=ep");
    // A change (root's too) removes it, as the kernel asks.
    OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b" second")
        .unwrap();
    assert_eq!(caps(&p), "");
    assert_eq!(caps(&backing), "");

    // Removed explicitly, and set again on a second new file after an unrelated xattr.
    let p2 = m.path("new2");
    fs::write(&p2, b"x").unwrap();
    setcap(&["cap_net_raw+ep"], &p2);
    setcap(&["-r"], &p2);
    assert_eq!(caps(&p2), "");
    setcap(&["cap_chown+ep"], &p2);
    assert_eq!(caps(&p2), "cap_chown=ep");
    assert_eq!(fs::read(&p2).unwrap(), b"x");
}
