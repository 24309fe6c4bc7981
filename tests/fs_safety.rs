//! The filesystem stays safe when the backing disk is full or when a local user plants
//! things in the backing directory: error paths never remove anything they did not make,
//! a FIFO in place of metadata never blocks a worker, and a full disk reads as ENOSPC.
//! Real mounts (tmpfs-backed where the disk must fill up). Needs root.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use kmsfs::format::{verify_file, walk_volume, FileOutcome, VolumeConfig, VolumeEntry};
use kmsfs::kms::provider::DataKeys;
use support::fs::*;

const USER: u32 = 61001;

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// Writes through the mount until the backing tmpfs is full (the write fails with
/// ENOSPC, as it must). A write that fails part-way gives back what it had taken (the
/// file keeps its old size), so smaller and smaller writes take the rest, down to one
/// byte: then not a page is left.
fn fill(m: &Mounted, rel: &str) {
    m.assert_live();
    let mut f = fs::File::create(m.path(rel)).unwrap();
    let mut chunk = 256 * 1024;
    while chunk > 0 {
        let bytes = vec![0x5a_u8; chunk];
        let err = loop {
            if let Err(e) = f.write_all(&bytes) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{chunk}: {err}");
        chunk /= 4;
    }
}

/// What `kmsfs fsck` would report: damaged or stray entries and files whose header or
/// size is wrong. Empty for a healthy volume. Runs bounded (see [`within`]).
fn fsck_problems(m: &Mounted) -> Vec<String> {
    let backing = m.backing.clone();
    let keys = m.keys.clone();
    within("fsck", move || {
        let volume = VolumeConfig::load(&backing).unwrap();
        let secret = keys.volume_secret(&volume.volume_id).unwrap();
        let mut problems = Vec::new();
        let walked = walk_volume(&backing, &secret, &mut |e| match &e {
            VolumeEntry::Damaged { .. } | VolumeEntry::Stray { .. } => {
                problems.push(format!("{e:?}"))
            }
            VolumeEntry::File { backing, .. } => {
                let report = verify_file(backing, None);
                if !matches!(report.outcome, FileOutcome::Ok { .. }) {
                    problems.push(format!("{report:?}"));
                }
            }
            _ => {}
        });
        if let Err(e) = walked {
            problems.push(format!("volume: {e}"));
        }
        problems
    })
}

/// How long an operation that takes milliseconds may take before the test calls it hung.
const HUNG: Duration = Duration::from_secs(20);

/// Runs `f` on its own thread and returns its result, or panics if it has not finished
/// within [`HUNG`] (the caller's [`Fifos`] guard then releases the blocked thread).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HUNG)
        .unwrap_or_else(|_| panic!("{what} blocked on a planted FIFO"))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn mkdir_on_a_full_disk_is_enospc_and_keeps_its_parent_readable() {
    let mut m = Mounted::on_tmpfs("8m", &[]);
    m.assert_live();
    fs::create_dir(m.path("projects")).unwrap();
    fs::write(m.path("projects/notes"), b"keep me").unwrap();
    fill(&m, "projects/fill");

    // In a subdirectory and in the root (whose metadata holds the whole volume).
    for rel in ["projects/newdir", "newdir"] {
        assert_eq!(
            errno_of(fs::create_dir(m.path(rel))),
            Some(libc::ENOSPC),
            "{rel}"
        );
    }
    assert_eq!(listing(&m.path("projects")), ["fill", "notes"]);

    fs::remove_file(m.path("projects/fill")).unwrap();
    m.remount(&[]);
    m.assert_live();
    assert_eq!(listing(&m.mnt), ["projects"]);
    assert_eq!(listing(&m.path("projects")), ["notes"]);
    assert_eq!(fs::read(m.path("projects/notes")).unwrap(), b"keep me");
    assert_eq!(fsck_problems(&m), Vec::<String>::new());
    // And the space is usable again.
    fs::create_dir(m.path("projects/newdir")).unwrap();
}

#[test]
fn a_long_name_created_on_a_full_disk_is_enospc_and_leaves_no_sidecar() {
    let mut m = Mounted::on_tmpfs("8m", &[]);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path(&"x".repeat(200)), b"existing long name").unwrap();
    let sidecars_before = sidecars(&m.backing);
    fill(&m, "fill");

    let long = "l".repeat(200);
    let file = m.path(&long);
    assert_eq!(errno_of(fs::write(&file, b"new")), Some(libc::ENOSPC));
    assert_eq!(errno_of(fs::create_dir(&file)), Some(libc::ENOSPC));
    let fifo = nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o644));
    assert_eq!(fifo, Err(nix::errno::Errno::ENOSPC));
    // An existing long name created again on the full disk: EEXIST, and its sidecar is
    // left exactly as it was.
    let again = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path(&"x".repeat(200)));
    assert_eq!(errno_of(again), Some(libc::EEXIST));
    assert_eq!(sidecars(&m.backing), sidecars_before);

    fs::remove_file(m.path("fill")).unwrap();
    m.remount(&[]);
    assert_eq!(listing(&m.mnt), ["d".to_string(), "x".repeat(200)]);
    assert_eq!(
        fs::read(m.path(&"x".repeat(200))).unwrap(),
        b"existing long name"
    );
    assert_eq!(fsck_problems(&m), Vec::<String>::new());
    fs::write(&file, b"now it fits").unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"now it fits");
}

/// (name, content) of every long-name sidecar in the backing root.
fn sidecars(backing: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(backing)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().into_string().unwrap();
            n.starts_with("kmsfs.ln.") && n.ends_with(".name")
        })
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs `script` as `uid` in a child process and returns its output; if it has not
/// finished within [`HUNG`], releases the planted FIFOs (a FUSE client whose request a
/// worker is serving cannot be killed: it waits in D state until the worker answers)
/// and fails the test, so a regression fails instead of hanging the suite.
fn sh_bounded(uid: u32, script: &str, fifos: &Fifos) -> Output {
    let mut child = as_user(uid, uid, "sh")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HUNG;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            fifos.release();
            let out = child.wait_with_output();
            panic!("`{script}` hung on a planted FIFO: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The one backing directory entry in `after` that is not in `before`.
fn new_entry(backing: &Path, before: &[String]) -> PathBuf {
    let added: Vec<String> = listing(backing)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    backing.join(&added[0])
}

/// Planted FIFOs. On drop (also when an assertion failed) each is opened read-write,
/// which releases any worker blocked opening it, and replaced by a regular file, so
/// that the mount can always be unmounted.
struct Fifos(Vec<PathBuf>);

impl Drop for Fifos {
    fn drop(&mut self) {
        self.release();
    }
}

impl Fifos {
    fn release(&self) {
        for p in &self.0 {
            let is_fifo = fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo());
            if !is_fifo {
                continue;
            }
            let held = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p);
            let tmp = p.with_extension("unblocked");
            let _ = fs::write(&tmp, b"x");
            let _ = fs::rename(&tmp, p);
            drop(held);
        }
    }
}

#[test]
fn a_fifo_planted_as_metadata_or_sidecar_never_blocks_the_mount() {
    let mut m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::write(m.path("other"), b"root's file").unwrap();
    let mnt = q(&m.mnt);
    let before = listing(&m.backing);
    assert_ok(&sh_as(USER, &format!("mkdir {mnt}/d")));
    let d = new_entry(&m.backing, &before);
    let before = listing(&m.backing);
    assert_ok(&sh_as(USER, &format!("mkdir {mnt}/e")));
    let e = new_entry(&m.backing, &before);
    let long = "n".repeat(200);
    assert_ok(&sh_as(USER, &format!("mkfifo {mnt}/e/{long}")));
    let sidecar = fs::read_dir(&e)
        .unwrap()
        .map(|x| x.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with(".name"))
        .unwrap();

    // The directories' owner (not root) swaps the files for FIFOs.
    let metadata = d.join("kmsfs.dir");
    let fifos = Fifos(vec![metadata.clone(), sidecar.clone()]);
    for p in [&metadata, &sidecar] {
        assert_ok(&sh_as(USER, &format!("rm -f {0} && mkfifo {0}", q(p))));
    }
    m.remount(MULTI_USER);
    m.assert_live();

    for op in [
        format!("touch {mnt}/d/new"),
        format!("stat {mnt}/d/new"),
        format!("ls {mnt}/d"),
        format!("mkdir {mnt}/d/sub"),
    ] {
        let out = sh_bounded(USER, &op, &fifos);
        assert_failed_with(&out, libc::EIO);
    }
    // A damaged long name is left out of the listing; the rest still lists.
    assert_ok(&sh_bounded(USER, &format!("mkfifo {mnt}/e/short"), &fifos));
    let listed = assert_ok(&sh_bounded(USER, &format!("ls {mnt}/e"), &fifos));
    assert_eq!(listed.trim(), "short");
    // Nothing is stuck: root reads another file, and fsck finishes naming the damage.
    assert_eq!(fs::read(m.path("other")).unwrap(), b"root's file");
    let problems = fsck_problems(&m).join("\n");
    assert!(problems.contains("kmsfs.dir"), "{problems}");
    assert!(problems.contains("FIFO"), "{problems}");
}

#[test]
fn a_fifo_in_place_of_the_volume_file_fails_the_mount_naming_it() {
    let mut m = Mounted::new(&[]);
    fs::write(m.path("f"), b"x").unwrap();
    m.unmount();
    let volume = m.backing.join("kmsfs.volume");
    let _fifos = Fifos(vec![volume.clone()]);
    fs::remove_file(&volume).unwrap();
    nix::unistd::mkfifo(&volume, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let spec = kmsfs::fs::MountSpec {
        backing: m.backing.clone(),
        mountpoint: m.mnt.clone(),
        options: vec![],
        threads: 1,
    };
    let keys = m.keys.clone();
    let result = within("mount", move || kmsfs::fs::mount(&spec, keys).map(drop));
    let err = result.expect_err("mounted a volume whose volume file is a FIFO");
    let text = err.to_string();
    assert!(
        text.contains("kmsfs.volume") && text.contains("FIFO"),
        "{text}"
    );
}

#[test]
fn fsck_reports_a_file_replaced_by_a_fifo_without_blocking() {
    let m = Mounted::new(&[]);
    fs::write(m.path("f"), b"content").unwrap();
    let file = m.backing_files()[0].clone();
    fs::remove_file(&file).unwrap();
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let _fifos = Fifos(vec![file.clone()]);
    let path = file.clone();
    let report = within("fsck", move || verify_file(&path, None));
    let text = format!("{report:?}");
    assert!(
        matches!(report.outcome, FileOutcome::Unreadable { .. }) && text.contains("FIFO"),
        "{text}"
    );
}

#[test]
fn renaming_a_directory_over_another_keeps_every_directory_readable() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let long = "r".repeat(200);
    for d in ["src", "full", "empty", long.as_str()] {
        fs::create_dir(m.path(d)).unwrap();
    }
    fs::write(m.path("src/a"), b"A").unwrap();
    fs::write(m.path("full/b"), b"B").unwrap();
    // A non-empty target is refused and nothing of either directory is touched.
    let err = fs::rename(m.path("src"), m.path("full")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    // An empty target (also under a long name) is replaced.
    fs::rename(m.path("src"), m.path("empty")).unwrap();
    fs::rename(m.path("empty"), m.path(&long)).unwrap();
    m.remount(&[]);
    assert_eq!(listing(&m.mnt), ["full".to_string(), long.clone()]);
    assert_eq!(fs::read(m.path("full/b")).unwrap(), b"B");
    assert_eq!(fs::read(m.path(&format!("{long}/a"))).unwrap(), b"A");
    assert_eq!(fsck_problems(&m), Vec::<String>::new());
}
