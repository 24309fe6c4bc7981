//! Directory listings through a real mount with the kernel's directory cache
//! (FOPEN_CACHE_DIR) and listings taken at the first READDIR of a handle: every change
//! through the mount shows at once, every user sees the same listing, and
//! telldir/seekdir stay consistent. Needs root and /dev/fuse.

mod support;

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use support::fs::*;

/// A libc directory stream (opendir/readdir/telldir/seekdir/rewinddir), closed on drop.
struct Stream(*mut libc::DIR);

impl Stream {
    fn open(path: &Path) -> Stream {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid C string; the result is checked.
        let d = unsafe { libc::opendir(c.as_ptr()) };
        assert!(
            !d.is_null(),
            "opendir {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Stream(d)
    }

    /// The next name, or None at the end (an error panics).
    fn next(&mut self) -> Option<String> {
        // SAFETY: errno is thread-local; reset it to tell the end from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: self.0 is an open stream.
        let e = unsafe { libc::readdir(self.0) };
        if e.is_null() {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(0), "readdir: {err}");
            return None;
        }
        // SAFETY: d_name is NUL-terminated inside the entry readdir returned.
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
        Some(name.to_str().unwrap().to_string())
    }

    fn tell(&mut self) -> libc::c_long {
        // SAFETY: self.0 is an open stream.
        unsafe { libc::telldir(self.0) }
    }

    fn seek(&mut self, pos: libc::c_long) {
        // SAFETY: self.0 is an open stream; `pos` came from telldir on the same directory.
        unsafe { libc::seekdir(self.0, pos) }
    }

    /// Every name from the start (rewinddir first), `.` and `..` left out.
    fn all(&mut self) -> BTreeSet<String> {
        // SAFETY: self.0 is an open stream.
        unsafe { libc::rewinddir(self.0) };
        let mut out = BTreeSet::new();
        while let Some(n) = self.next() {
            if n != "." && n != ".." {
                out.insert(n);
            }
        }
        out
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open stream, closed once.
        unsafe { libc::closedir(self.0) };
    }
}

/// A listing through a new handle, `.` and `..` left out.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The one backing object that appeared in backing directory `dir` while `make` ran.
fn backing_object_made(dir: &Path, make: impl FnOnce()) -> PathBuf {
    let names = |d: &Path| -> BTreeSet<PathBuf> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let before = names(dir);
    make();
    let new: Vec<PathBuf> = names(dir).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "expected one new backing object: {new:?}");
    new.into_iter().next().unwrap()
}

/// A live mount with a directory `d` made through it: (mount, `d`, its backing object).
fn live_mount_with_dir() -> (Mounted, PathBuf, PathBuf) {
    let m = Mounted::new(&[]);
    m.assert_live();
    let d = m.path("d");
    let backing_d = backing_object_made(&m.backing, || fs::create_dir(&d).unwrap());
    (m, d, backing_d)
}

/// Sets `path`'s mtime (its atime unchanged).
fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    let since = mtime.duration_since(std::time::UNIX_EPOCH).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: since.as_secs() as libc::time_t,
            tv_nsec: since.subsec_nanos() as libc::c_long,
        },
    ];
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", std::io::Error::last_os_error());
}

/// A second listing is served by the kernel's cache (a file removed behind the daemon's
/// back still shows), and the next change through the mount drops that cache.
#[test]
fn a_second_listing_comes_from_the_kernel_cache_until_a_change_through_the_mount() {
    let (_m, d, backing_d) = live_mount_with_dir();
    fs::write(d.join("a"), b"a").unwrap();
    let backing_b = backing_object_made(&backing_d, || fs::write(d.join("b"), b"b").unwrap());
    assert_eq!(listing(&d), set(&["a", "b"]));
    // Behind the daemon's back, and with the backing directory's mtime put back (a
    // listing that sees a new mtime, e.g. from glibc's fstat in opendir, drops the
    // cache): the kernel's cached listing does not know.
    let mtime = fs::metadata(&backing_d).unwrap().modified().unwrap();
    fs::remove_file(&backing_b).unwrap();
    set_mtime(&backing_d, mtime);
    assert_eq!(
        listing(&d),
        set(&["a", "b"]),
        "the second listing was not served from the kernel's directory cache"
    );
    // Any change through the mount drops the cache: the next listing is the daemon's.
    fs::write(d.join("c"), b"c").unwrap();
    assert_eq!(listing(&d), set(&["a", "c"]));
}

/// An open handle lists when it is first read, not at opendir.
#[test]
fn a_handle_lists_at_its_first_read_not_at_opendir() {
    let (_m, d, backing_d) = live_mount_with_dir();
    fs::write(d.join("a"), b"a").unwrap();
    let backing_b = backing_object_made(&backing_d, || fs::write(d.join("b"), b"b").unwrap());
    // Never listed, so the kernel has no cached listing: the first read asks the daemon.
    let mut s = Stream::open(&d);
    fs::remove_file(&backing_b).unwrap();
    let mut got = BTreeSet::new();
    while let Some(n) = s.next() {
        got.insert(n);
    }
    assert_eq!(got, set(&[".", "..", "a"]));
}

/// A step run on (`d`, `other`).
type Step = Box<dyn Fn(&Path, &Path)>;

/// One change through the mount, and the names it adds to and removes from `d` and
/// `other`.
struct Change {
    what: &'static str,
    run: Step,
    added: &'static [&'static str],
    removed: &'static [&'static str],
    added_other: &'static [&'static str],
    removed_other: &'static [&'static str],
}

fn change(
    what: &'static str,
    run: impl Fn(&Path, &Path) + 'static,
    added: &'static [&'static str],
    removed: &'static [&'static str],
    added_other: &'static [&'static str],
    removed_other: &'static [&'static str],
) -> Change {
    Change {
        what,
        run: Box::new(run),
        added,
        removed,
        added_other,
        removed_other,
    }
}

/// Each kind of change through the mount shows at once in a new listing and after a
/// rewind of a handle that listed the directory before the change and is still open.
#[test]
fn every_change_through_the_mount_shows_at_once() {
    let m = Mounted::new(&[]);
    m.assert_live();
    let d = m.path("d");
    let other = m.path("other");
    fs::create_dir(&d).unwrap();
    fs::create_dir(&other).unwrap();
    fs::write(d.join("keep"), b"k").unwrap();
    fs::write(other.join("elsewhere"), b"e").unwrap();
    let mut held = Stream::open(&d);
    let mut held_other = Stream::open(&other);
    let mut want = set(&["keep"]);
    let mut want_other = set(&["elsewhere"]);
    assert_eq!(held.all(), want);
    assert_eq!(held_other.all(), want_other);
    assert_eq!(listing(&d), want);
    assert_eq!(listing(&other), want_other);

    let long: &'static str = Box::leak("l".repeat(200).into_boxed_str());
    let long_set: &'static [&'static str] = Box::leak(Box::new([long]));
    let steps = vec![
        change(
            "create",
            |d: &Path, _| fs::write(d.join("new"), b"n").unwrap(),
            &["new"],
            &[],
            &[],
            &[],
        ),
        change(
            "rename within",
            |d: &Path, _| fs::rename(d.join("new"), d.join("renamed")).unwrap(),
            &["renamed"],
            &["new"],
            &[],
            &[],
        ),
        change(
            "rename over an existing name",
            |d: &Path, _| fs::rename(d.join("renamed"), d.join("keep")).unwrap(),
            &[],
            &["renamed"],
            &[],
            &[],
        ),
        change(
            "rename out",
            |d: &Path, o| fs::rename(d.join("keep"), o.join("moved")).unwrap(),
            &[],
            &["keep"],
            &["moved"],
            &[],
        ),
        change(
            "rename in",
            |d: &Path, o| fs::rename(o.join("elsewhere"), d.join("came")).unwrap(),
            &["came"],
            &[],
            &[],
            &["elsewhere"],
        ),
        change(
            "link",
            |d: &Path, o| fs::hard_link(o.join("moved"), d.join("linked")).unwrap(),
            &["linked"],
            &[],
            &[],
            &[],
        ),
        change(
            "symlink",
            |d: &Path, _| std::os::unix::fs::symlink("came", d.join("sym")).unwrap(),
            &["sym"],
            &[],
            &[],
            &[],
        ),
        change(
            "mknod",
            |d: &Path, _| {
                mknod(
                    &d.join("fifo"),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o644),
                    0,
                )
                .unwrap()
            },
            &["fifo"],
            &[],
            &[],
            &[],
        ),
        change(
            "mkdir",
            |d: &Path, _| fs::create_dir(d.join("sub")).unwrap(),
            &["sub"],
            &[],
            &[],
            &[],
        ),
        change(
            "unlink",
            |d: &Path, _| fs::remove_file(d.join("linked")).unwrap(),
            &[],
            &["linked"],
            &[],
            &[],
        ),
        change(
            "rmdir",
            |d: &Path, _| fs::remove_dir(d.join("sub")).unwrap(),
            &[],
            &["sub"],
            &[],
            &[],
        ),
        change(
            "create with a long name (sidecar)",
            move |d: &Path, _| fs::write(d.join(long), b"l").unwrap(),
            long_set,
            &[],
            &[],
            &[],
        ),
        change(
            "rename of a long name",
            move |d: &Path, _| fs::rename(d.join(long), d.join("short")).unwrap(),
            &["short"],
            long_set,
            &[],
            &[],
        ),
    ];
    for Change {
        what,
        run,
        added,
        removed,
        added_other,
        removed_other,
    } in steps
    {
        run(&d, &other);
        want.extend(added.iter().map(|s| s.to_string()));
        want.retain(|n| !removed.contains(&n.as_str()));
        want_other.extend(added_other.iter().map(|s| s.to_string()));
        want_other.retain(|n| !removed_other.contains(&n.as_str()));
        assert_eq!(listing(&d), want, "after {what}: a new listing of d");
        assert_eq!(
            held.all(),
            want,
            "after {what}: the held handle of d, rewound"
        );
        assert_eq!(listing(&other), want_other, "after {what}: other");
        assert_eq!(held_other.all(), want_other, "after {what}: held other");
    }
    // And after a remount (a cold kernel cache) the daemon lists the same.
    drop(held);
    drop(held_other);
    let mut m = m;
    m.remount(&[]);
    m.assert_live();
    assert_eq!(listing(&d), want);
    assert_eq!(listing(&other), want_other);
}

/// Root and two other uids list the same names, whoever listed first (and so filled the
/// kernel's cache), and a change by one shows to the others.
#[test]
fn every_user_sees_the_same_listing() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    let d = m.path("shared");
    fs::create_dir(&d).unwrap();
    set_mode(&d, 0o777);
    let mut want: Vec<String> = (0..40).map(|i| format!("file-{i:02}")).collect();
    for n in &want {
        fs::write(d.join(n), n.as_bytes()).unwrap();
    }
    want.sort();
    let list_as = |uid: u32| -> Vec<String> {
        let out = sh_as(uid, &format!("ls -1 {}", q(&d)));
        let text = assert_ok(&out);
        text.lines().map(str::to_string).collect()
    };
    for round in 0..2 {
        assert_eq!(list_as(61001), want, "uid 61001, round {round}");
        assert_eq!(list_as(61002), want, "uid 61002, round {round}");
        let mut root: Vec<String> = listing(&d).into_iter().collect();
        root.sort();
        assert_eq!(root, want, "root, round {round}");
    }
    let out = sh_as(61002, &format!("mkdir {}/by-61002", q(&d)));
    assert_ok(&out);
    want.push("by-61002".to_string());
    want.sort();
    assert_eq!(list_as(61001), want);
    assert_eq!(list_as(0), want);
}

/// telldir/seekdir over a directory of several READDIR pages: on the handle that fills
/// the cache, on a later handle served from the cache, and on a fresh handle whose
/// first read comes at a non-zero offset (the kernel then asks the daemon mid-listing).
#[test]
fn telldir_and_seekdir_stay_consistent() {
    let m = Mounted::new(&[]);
    m.assert_live();
    let d = m.path("many");
    fs::create_dir(&d).unwrap();
    for i in 0..300 {
        fs::write(d.join(format!("entry-with-a-longish-name-{i:04}")), b"x").unwrap();
    }
    let walk = |s: &mut Stream| -> Vec<(libc::c_long, String)> {
        let mut out = Vec::new();
        loop {
            let pos = s.tell();
            match s.next() {
                Some(n) => out.push((pos, n)),
                None => return out,
            }
        }
    };
    let check = |s: &mut Stream, reference: &[(libc::c_long, String)]| {
        for (i, (pos, name)) in reference.iter().enumerate().rev().step_by(7) {
            s.seek(*pos);
            assert_eq!(
                s.next().as_deref(),
                Some(name.as_str()),
                "seekdir to entry {i}"
            );
            // And the rest follows in order from there.
            if let Some((_, next)) = reference.get(i + 1) {
                assert_eq!(s.next().as_deref(), Some(next.as_str()), "after entry {i}");
            }
        }
    };
    // The first handle lists through the daemon (and fills the kernel's cache).
    let mut first = Stream::open(&d);
    let reference = walk(&mut first);
    assert_eq!(reference.len(), 302, "300 entries plus . and ..");
    let names: BTreeSet<&str> = reference.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 302, "no name twice");
    check(&mut first, &reference);
    // A later handle, from the kernel's cache: the same positions name the same entries.
    let mut second = Stream::open(&d);
    assert_eq!(walk(&mut second), reference);
    check(&mut second, &reference);
    drop((first, second));
    // A change through the mount and back drops the cache; a handle reads only its first
    // entries (the cache holds the first page only), then a fresh handle seeks past them
    // before reading anything: the daemon lists for it at that offset.
    fs::write(d.join("tmp"), b"t").unwrap();
    fs::remove_file(d.join("tmp")).unwrap();
    let mut partial = Stream::open(&d);
    assert_eq!(partial.next().as_deref(), Some(reference[0].1.as_str()));
    for (i, (pos, name)) in reference.iter().enumerate().skip(150).step_by(37) {
        let mut fresh = Stream::open(&d);
        fresh.seek(*pos);
        assert_eq!(
            fresh.next().as_deref(),
            Some(name.as_str()),
            "fresh seek to {i}"
        );
        let rest: Vec<String> = std::iter::from_fn(|| fresh.next()).collect();
        let want: Vec<String> = reference[i + 1..].iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(rest, want, "the rest after a fresh seek to {i}");
    }
    drop(partial);
    assert_eq!(walk(&mut Stream::open(&d)), reference);
}

/// Clears the immutable attribute on drop (also when the test fails), so the temporary
/// backing directory can be removed.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "chattr +i {} (the backing store must be ext4)",
            path.display()
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// An unlink that answers an error after its backing entry is already gone (a long
/// name's sidecar that cannot be removed) still drops the kernel's cached listing: the
/// kernel itself drops it only when the unlink succeeds.
#[test]
fn a_failed_unlink_that_removed_the_entry_still_drops_the_cached_listing() {
    let (_m, d, backing_d) = live_mount_with_dir();
    let long = "l".repeat(240);
    fs::write(d.join("a"), b"a").unwrap();
    fs::write(d.join(&long), b"long").unwrap();
    assert_eq!(listing(&d), set(&["a", &long]));
    let sidecar = fs::read_dir(&backing_d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".name"))
        .expect("the long name's sidecar in the backing directory");
    let _guard = Immutable::set(&sidecar);
    // The backing directory's mtime put back after the unlink: a new mtime seen on an
    // attribute refresh would drop the cached listing by itself.
    let mtime = fs::metadata(&backing_d).unwrap().modified().unwrap();
    let err = fs::remove_file(d.join(&long)).expect_err("the sidecar cannot be removed");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    set_mtime(&backing_d, mtime);
    assert_eq!(
        listing(&d),
        set(&["a"]),
        "the listing cached before the failed unlink was served"
    );
}
