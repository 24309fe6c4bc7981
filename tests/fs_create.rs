//! What a create answers through a real mount: the mode and owner the caller asked for,
//! also when the daemon's own umask would strip bits, and attributes in the create reply
//! that a later `stat` (after the kernel forgot them) confirms. Needs root and /dev/fuse.
//!
//! The only test in its binary: it sets the process umask, which the in-process daemon
//! shares.

mod support;

use std::os::unix::fs::chown;

use support::fs::*;

/// `mode uid gid ino size` of each path, as `stat` prints them, one line each.
fn stat_lines(m: &Mounted, names: &[&str]) -> String {
    let paths: Vec<String> = names.iter().map(|n| q(&m.path(n))).collect();
    assert_ok(&sh_as(
        0,
        &format!("stat -c '%n %a %u %g %i %s' {}", paths.join(" ")),
    ))
}

/// Restores the process umask when the test ends, also on failure.
struct Umask(libc::mode_t);

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: umask only swaps the process's file mode creation mask.
        unsafe { libc::umask(self.0) };
    }
}

#[test]
fn create_gives_the_asked_mode_and_owner_and_a_later_stat_agrees() {
    // The daemon (this process) strips group and other bits from what it creates; a
    // create must still give exactly the caller's mode.
    // SAFETY: see `Umask`.
    let _umask = Umask(unsafe { libc::umask(0o077) });
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    m.keys
        .allow(1001, DEFAULT_KEY, &[Op::Generate, Op::Encrypt, Op::Decrypt]);
    // A set-group-id directory: new files get its group, whoever creates them.
    std::fs::create_dir(m.path("g")).unwrap();
    chown(m.path("g"), None, Some(1234)).unwrap();
    set_mode(&m.path("g"), 0o2777);

    let root = format!(
        "umask 022 && : > {f} && umask 0 && : > {r} && umask 027 && : > {s}",
        f = q(&m.path("f")),
        r = q(&m.path("g/r")),
        s = q(&m.path("s")),
    );
    assert_ok(&sh_as(0, &root));
    let user = format!(
        "umask 022 && : > {u} && : > {v}",
        u = q(&m.path("g/u")),
        v = q(&m.path("v")),
    );
    assert_ok(&sh_as(1001, &user));

    let names = ["f", "g/r", "s", "g/u", "v"];
    // Right after the creates: what the create replies said (the kernel keeps them).
    let answered = stat_lines(&m, &names);
    let want: Vec<(&str, &str)> = vec![
        ("f", "644 0 0"),
        ("g/r", "666 0 1234"),
        ("s", "640 0 0"),
        ("g/u", "644 1001 1234"),
        ("v", "644 1001 1001"),
    ];
    for (line, (name, attrs)) in answered.lines().zip(&want) {
        let shown = format!("{} {attrs} ", m.path(name).display());
        assert!(
            line.starts_with(&shown),
            "{line:?} should start with {shown:?}"
        );
        assert!(line.ends_with(" 0"), "{line:?}: a new file is empty");
    }
    assert_eq!(answered.lines().count(), want.len(), "{answered}");

    // After a remount the kernel knows nothing: the same figures come from the backing
    // files themselves.
    m.remount(MULTI_USER);
    m.assert_live();
    assert_eq!(stat_lines(&m, &names), answered);
}
