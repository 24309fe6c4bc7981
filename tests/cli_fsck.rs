//! `kmsfs fsck` and the mount agree on damage: one row per kind of damage done to the
//! backing directory, each with what fsck must report (status, the file it names) and
//! what the mount answers for the same damage (EIO, or the documented behaviour).
//! Real store, real `kmsfs mount` (daemonized), real `kmsfs fsck`. Needs root.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::*;

const B: usize = 4096;
const HEADER: usize = 1024;
const SEALED: usize = B + 28;
/// A plain name whose encoding needs a long-name entry and sidecar.
const LONG: &str = "a-name-long-enough-to-need-a-sidecar-because-its-encrypted-form-is-longer-than-255-bytes-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// What is done to the backing directory.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flip one byte of the backing file at this offset.
    Flip(usize),
    /// Flip the byte at this offset, which must lie in the wrapped key's ciphertext.
    FlipWrappedKey(usize),
    /// Cut this many bytes off the end (the files hold 10000 bytes: the last sealed
    /// block is 1808 + 28 bytes).
    CutEnd(usize),
    /// Replace the header with another file's header (same volume).
    HeaderFrom(&'static str),
    /// Replace the whole file with a file of the second volume.
    EnvelopeFromOtherVolume,
    ReplaceBySymlink,
    ReplaceByFifo,
    ReplaceByDevice,
    /// Alter the sealed target of a kmsfs symlink.
    TamperSymlinkTarget,
    /// Delete the `kmsfs.st.*` file holding a long symlink target.
    RemoveStoredTarget,
    /// Flip a byte of the `kmsfs.st.*` file holding a long symlink target.
    FlipStoredTarget,
    /// Overwrite a long name's sidecar with another valid-looking encoded name.
    BreakSidecar,
    /// Flip one hex digit of a directory's `kmsfs.dir` MAC.
    BreakDirMeta,
    /// Flip a byte of the sealed value of the `user.note` attribute.
    TamperXattr,
}

/// What the mount answers for the damaged entry (after a fresh mount).
#[derive(Debug, Clone, Copy)]
enum Mount {
    /// Reading the file fails with this errno.
    Read(i32),
    /// readlink fails with this errno.
    Readlink(i32),
    /// Listing the directory fails with this errno.
    List(i32),
    /// getxattr of `user.note` fails with this errno.
    GetXattr(i32),
    /// The entry is a FIFO (kmsfs keeps FIFOs); never opened.
    IsFifo,
    /// The entry is a character device (kmsfs keeps device nodes); never opened.
    IsCharDevice,
    /// The entry is left out of its directory's listing (its name cannot be decoded).
    NotListed,
}

struct Row {
    /// The plaintext path of the damaged entry.
    plain: &'static str,
    damage: Damage,
    /// fsck's status for it, and a fragment of its detail.
    status: &'static str,
    detail: &'static str,
    /// fsck names the plaintext path (false when the name itself is what is damaged).
    names_plain: bool,
    mount: Mount,
}

fn rows() -> Vec<Row> {
    let row = |plain, damage, status, detail, mount| Row {
        plain,
        damage,
        status,
        detail,
        names_plain: true,
        mount,
    };
    let eio = libc::EIO;
    vec![
        row(
            "file-id",
            Damage::Flip(20),
            "damaged",
            "InvalidCiphertextException",
            Mount::Read(eio),
        ),
        row(
            "wrapped-key",
            Damage::FlipWrappedKey(200),
            "damaged",
            "InvalidCiphertextException",
            Mount::Read(eio),
        ),
        row(
            "other-volume",
            Damage::EnvelopeFromOtherVolume,
            "damaged",
            "another file or volume",
            Mount::Read(eio),
        ),
        row(
            "header-copied",
            Damage::HeaderFrom("good"),
            "damaged",
            "blocks failing authentication",
            Mount::Read(eio),
        ),
        row(
            "key-arn",
            Damage::Flip(40),
            "damaged",
            "commitment",
            Mount::Read(eio),
        ),
        row(
            "padding",
            Damage::Flip(900),
            "damaged",
            "padding",
            Mount::Read(eio),
        ),
        row(
            "commitment",
            Damage::Flip(1000),
            "damaged",
            "commitment",
            Mount::Read(eio),
        ),
        row(
            "cut-last-block",
            Damage::CutEnd(3),
            "damaged",
            "blocks failing authentication: [2]",
            Mount::Read(eio),
        ),
        row(
            "cut-into-overhead",
            Damage::CutEnd(10000 - 2 * B + 18),
            "damaged",
            "impossible backing length",
            Mount::Read(eio),
        ),
        row(
            "block-byte",
            Damage::Flip(HEADER + SEALED + 100),
            "damaged",
            "blocks failing authentication: [1]",
            Mount::Read(eio),
        ),
        row(
            "link",
            Damage::TamperSymlinkTarget,
            "damaged",
            "symlink target failed authentication",
            Mount::Readlink(eio),
        ),
        row(
            "long-link",
            Damage::RemoveStoredTarget,
            "damaged",
            "No such file",
            Mount::Readlink(eio),
        ),
        row(
            "long-link-altered",
            Damage::FlipStoredTarget,
            "damaged",
            "symlink target failed authentication",
            Mount::Readlink(eio),
        ),
        row(
            "became-symlink",
            Damage::ReplaceBySymlink,
            "damaged",
            "symlink target failed authentication",
            Mount::Readlink(eio),
        ),
        row(
            "xattr",
            Damage::TamperXattr,
            "damaged",
            "extended attribute user.note",
            Mount::GetXattr(eio),
        ),
        row(
            "sub",
            Damage::BreakDirMeta,
            "damaged",
            "metadata authentication failed",
            Mount::List(eio),
        ),
        Row {
            names_plain: false,
            ..row(
                LONG,
                Damage::BreakSidecar,
                "damaged",
                "sidecar",
                Mount::NotListed,
            )
        },
        // Not damage: kmsfs keeps FIFOs (mknod through the mount), and so does the mount.
        // fsck reports it without opening it (which would block).
        row(
            "became-fifo",
            Damage::ReplaceByFifo,
            "special",
            "a FIFO",
            Mount::IsFifo,
        ),
        // Not damage either: device nodes are made through the mount (mknod) too.
        row(
            "became-device",
            Damage::ReplaceByDevice,
            "special",
            "a character device",
            Mount::IsCharDevice,
        ),
    ]
}

/// Symlinks whose targets are too long for a backing symlink (stored in `kmsfs.st.*`).
const LONG_LINKS: [&str; 4] = [
    "long-link",
    "long-link-altered",
    "orphan-link",
    "shared-link",
];

/// Every plaintext file the volume starts with: one per row (but `sub` and the
/// symlinks), plus `good`, the source of copied headers that must itself stay ok.
fn initial_files() -> Vec<&'static str> {
    let mut files: Vec<&str> = rows()
        .iter()
        .map(|r| r.plain)
        .filter(|p| !matches!(*p, "sub" | "link") && !LONG_LINKS.contains(p))
        .collect();
    files.extend(["good", "sub/inner"]);
    files
}

fn content(name: &str) -> Vec<u8> {
    // 2.44 blocks: two full blocks and a short last one.
    name.bytes().cycle().take(10000).collect()
}

struct Volume<'a> {
    s: &'a Served,
    backing: PathBuf,
    mnt: PathBuf,
}

impl<'a> Volume<'a> {
    fn init(s: &'a Served, name: &str, key: Option<&str>) -> Volume<'a> {
        let backing = s.dir.join(format!("{name}-backing"));
        let mnt = s.dir.join(format!("{name}-mnt"));
        std::fs::create_dir(&mnt).unwrap();
        let b = backing.display().to_string();
        let mut args = vec!["init", &b];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        ok(&s.root(&args));
        Volume { s, backing, mnt }
    }

    fn mount(&self) -> Result<Mounted, Output> {
        let out = self.s.root(&[
            "mount",
            &self.backing.display().to_string(),
            &self.mnt.display().to_string(),
        ]);
        let guard = Mounted(self.mnt.clone());
        if !out.status.success() {
            return Err(out);
        }
        // The daemonized mount returns when ready; nothing is written into a mountpoint
        // that is not live.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            mounts.contains(&format!(" {} fuse", self.mnt.display())),
            "{} is not mounted",
            self.mnt.display()
        );
        Ok(guard)
    }

    fn umount(&self, guard: Mounted) {
        ok(&Command::new(KMSFS)
            .arg("umount")
            .arg(&self.mnt)
            .output()
            .unwrap());
        drop(guard);
    }

    fn fsck(&self, output: &str) -> Output {
        self.s.root(&[
            "--output",
            output,
            "fsck",
            &self.backing.display().to_string(),
        ])
    }

    /// fsck's JSON report and its exit code.
    fn fsck_json(&self) -> (Value, Option<i32>) {
        let out = self.fsck("json");
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "fsck printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, out.status.code())
    }
}

/// Plaintext path → backing path, from a report.
fn backing_paths(report: &Value) -> BTreeMap<String, PathBuf> {
    report["Files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            Some((
                f["Path"].as_str()?.to_string(),
                f["Backing"].as_str()?.into(),
            ))
        })
        .collect()
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// The `kmsfs.st.*` file of a long symlink at the volume root.
fn stored_target(symlink: &Path) -> PathBuf {
    let name = std::fs::read_link(symlink).unwrap();
    assert!(name.to_str().unwrap().starts_with("kmsfs.st."), "{name:?}");
    symlink.parent().unwrap().join(name)
}

fn replace_with(path: &Path, make: impl FnOnce(&Path)) {
    std::fs::remove_file(path).unwrap();
    make(path);
}

/// The range of the wrapped key's sealed part (after the 44-byte blob header naming the
/// key) in a header: a flip there is the key service's InvalidCiphertext, not NotFound.
fn wrapped_ciphertext(header: &[u8]) -> std::ops::Range<usize> {
    let arn_len = u16::from_be_bytes([header[28], header[29]]) as usize;
    let start = 32 + arn_len;
    let len = u16::from_be_bytes([header[30 + arn_len], header[31 + arn_len]]) as usize;
    start + 44..start + len
}

fn apply(damage: Damage, backing: &Path, paths: &BTreeMap<String, PathBuf>, other: &Path) {
    let mkfifo =
        |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    match damage {
        Damage::Flip(at) => flip(backing, at),
        Damage::FlipWrappedKey(at) => {
            let bytes = std::fs::read(backing).unwrap();
            let range = wrapped_ciphertext(&bytes);
            assert!(
                range.contains(&at),
                "{at} is not in the wrapped key {range:?}"
            );
            flip(backing, at);
        }
        Damage::CutEnd(n) => {
            let bytes = std::fs::read(backing).unwrap();
            std::fs::write(backing, &bytes[..bytes.len() - n]).unwrap();
        }
        Damage::HeaderFrom(source) => {
            let from = std::fs::read(&paths[source]).unwrap();
            let mut bytes = std::fs::read(backing).unwrap();
            bytes[..HEADER].copy_from_slice(&from[..HEADER]);
            std::fs::write(backing, bytes).unwrap();
        }
        Damage::EnvelopeFromOtherVolume => {
            std::fs::copy(other, backing).unwrap();
        }
        Damage::ReplaceBySymlink => replace_with(backing, |p| {
            std::os::unix::fs::symlink("/etc/passwd", p).unwrap()
        }),
        Damage::ReplaceByFifo => replace_with(backing, mkfifo),
        Damage::ReplaceByDevice => replace_with(backing, |p| {
            // The same device as /dev/null (1, 3): harmless if anything did open it.
            nix::sys::stat::mknod(
                p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o644),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap()
        }),
        Damage::TamperSymlinkTarget => {
            let mut stored = std::fs::read_link(backing)
                .unwrap()
                .into_os_string()
                .into_string()
                .unwrap();
            let last = stored.pop().unwrap();
            stored.push(if last == 'A' { 'B' } else { 'A' });
            replace_with(backing, |p| std::os::unix::fs::symlink(&stored, p).unwrap());
        }
        Damage::RemoveStoredTarget => std::fs::remove_file(stored_target(backing)).unwrap(),
        Damage::FlipStoredTarget => flip(&stored_target(backing), 40),
        Damage::BreakSidecar => {
            let mut sidecar = backing.as_os_str().to_owned();
            sidecar.push(".name");
            let encoded = std::fs::read_to_string(&sidecar).unwrap();
            std::fs::write(&sidecar, "A".repeat(encoded.len())).unwrap();
        }
        Damage::TamperXattr => {
            let mut value = get_xattr(backing, "user.note").unwrap();
            value[20] ^= 0x01;
            set_xattr(backing, "user.note", &value).unwrap();
        }
        Damage::BreakDirMeta => {
            let meta = backing.join("kmsfs.dir");
            let text = std::fs::read_to_string(&meta).unwrap();
            let at = text.find("mac = \"").unwrap() + 7;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            std::fs::write(&meta, bytes).unwrap();
        }
    }
}

fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (path, name) = (c_path(path), std::ffi::CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings and a buffer valid for value.len() bytes.
    let ret = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (path, name) = (c_path(path), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: NUL-terminated strings and a buffer valid for buf.len() bytes.
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

/// Checks what the mount answers for `row`'s entry; describes a mismatch.
fn probe(mnt: &Path, row: &Row) -> Result<(), String> {
    let path = mnt.join(row.plain);
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    let got = match row.mount {
        Mount::Read(want) => (std::fs::read(&path).map(|_| ()).map_err(errno), want),
        Mount::Readlink(want) => (std::fs::read_link(&path).map(|_| ()).map_err(errno), want),
        Mount::GetXattr(want) => (
            get_xattr(&path, "user.note").map(|_| ()).map_err(errno),
            want,
        ),
        Mount::List(want) => {
            let listed = std::fs::read_dir(&path).and_then(|d| d.collect::<Result<Vec<_>, _>>());
            (listed.map(|_| ()).map_err(errno), want)
        }
        Mount::IsCharDevice => {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            return if meta.file_type().is_char_device() {
                Ok(())
            } else {
                Err(format!("not a character device: {:?}", meta.file_type()))
            };
        }
        Mount::IsFifo => {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            return if meta.file_type().is_fifo() {
                Ok(())
            } else {
                Err(format!("not a FIFO: {:?}", meta.file_type()))
            };
        }
        Mount::NotListed => {
            let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .map_err(|e| e.to_string())?
                .map(|e| e.unwrap().file_name())
                .collect();
            return if names.iter().any(|n| n == row.plain) {
                Err("still listed".into())
            } else {
                Ok(())
            };
        }
    };
    match got {
        (Err(e), want) if e == want => Ok(()),
        (other, want) => Err(format!("expected errno {want}, got {other:?}")),
    }
}

#[test]
fn fsck_and_the_mount_agree_on_every_kind_of_damage() {
    let s = Served::init("fsck");
    // The second volume has its own customer key, so that it can be disabled below.
    let key = ok(&s.root(&[
        "kms",
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]));
    let v1 = Volume::init(&s, "v1", None);
    let v2 = Volume::init(&s, "v2", Some(&key));

    // Content, written through the mounts.
    let m = v2.mount().unwrap();
    std::fs::write(v2.mnt.join("elsewhere"), content("elsewhere")).unwrap();
    v2.umount(m);
    let m = v1.mount().unwrap();
    std::fs::create_dir(v1.mnt.join("sub")).unwrap();
    for name in initial_files() {
        std::fs::write(v1.mnt.join(name), content(name)).unwrap();
    }
    std::os::unix::fs::symlink("some/target", v1.mnt.join("link")).unwrap();
    // 4000 bytes: more than a backing symlink holds, so each is stored in `kmsfs.st.*`.
    let long_target = "d/".repeat(2000);
    for name in LONG_LINKS {
        std::os::unix::fs::symlink(&long_target, v1.mnt.join(name)).unwrap();
    }
    // A second link of the same symlink shares its stored target.
    std::fs::hard_link(v1.mnt.join("shared-link"), v1.mnt.join("shared-link-2")).unwrap();
    set_xattr(&v1.mnt.join("xattr"), "user.note", b"a note").unwrap();
    v1.umount(m);

    // Clean: every entry ok, exit 0, and the map from plaintext to backing paths.
    let (clean, code) = v1.fsck_json();
    assert_eq!(code, Some(0), "{clean:#}");
    assert_eq!(clean["Damaged"], 0, "{clean:#}");
    assert!(
        clean["Files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["Status"] == "ok"),
        "{clean:#}"
    );
    let paths = backing_paths(&clean);
    let (v2_clean, code) = v2.fsck_json();
    assert_eq!(code, Some(0), "{v2_clean:#}");
    let other = backing_paths(&v2_clean)["elsewhere"].clone();

    let sub_backing = paths["sub/inner"].parent().unwrap().to_path_buf();
    let backing_of = |plain: &str| match plain {
        "sub" => sub_backing.clone(),
        p => paths[p].clone(),
    };
    for row in rows() {
        apply(row.damage, &backing_of(row.plain), &paths, &other);
    }
    // Removed outside kmsfs: the stored target of `orphan-link` is left behind (a
    // stray), while that of `shared-link` is still used by `shared-link-2`.
    let orphan = stored_target(&paths["orphan-link"]);
    std::fs::remove_file(&paths["orphan-link"]).unwrap();
    assert_eq!(
        stored_target(&paths["shared-link"]),
        stored_target(&paths["shared-link-2"])
    );
    std::fs::remove_file(&paths["shared-link"]).unwrap();

    // fsck: exit 1, each row named with its status; `good` untouched and still ok.
    let (report, code) = v1.fsck_json();
    assert_eq!(code, Some(1), "{report:#}");
    let files = report["Files"].as_array().unwrap();
    let mut failures = Vec::new();
    for row in rows() {
        let backing = backing_of(row.plain);
        let found = files
            .iter()
            .find(|f| f["Backing"].as_str() == Some(backing.to_str().unwrap()));
        let Some(found) = found else {
            failures.push(format!("{}: not in the report", row.plain));
            continue;
        };
        let detail = found["Detail"].as_str().unwrap_or("");
        let plain_ok = !row.names_plain || found["Path"] == row.plain;
        if found["Status"] != row.status || !detail.contains(row.detail) || !plain_ok {
            failures.push(format!("{} ({:?}): {found}", row.plain, row.damage));
        }
    }
    assert!(failures.is_empty(), "fsck:\n{}", failures.join("\n"));
    let damaged_rows = rows().iter().filter(|r| r.status == "damaged").count();
    assert_eq!(report["Damaged"], damaged_rows, "{report:#}");
    let good = files.iter().find(|f| f["Path"] == "good").unwrap();
    assert_eq!(good["Status"], "ok", "{good}");
    let shared = files.iter().find(|f| f["Path"] == "shared-link-2").unwrap();
    assert_eq!(shared["Status"], "ok", "{shared}");
    let strays: Vec<_> = files.iter().filter(|f| f["Status"] == "stray").collect();
    assert_eq!(strays.len(), 1, "{report:#}");
    assert_eq!(strays[0]["Backing"], orphan.to_str().unwrap(), "{report:#}");
    assert!(
        strays[0]["Detail"]
            .as_str()
            .unwrap()
            .contains("stored symlink target no symlink refers to"),
        "{report:#}"
    );

    // Text output names the plaintext path and the backing path of damage.
    let text = v1.fsck("text");
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text.lines().find(|l| l.contains("/file-id:")).unwrap();
    assert!(
        line.starts_with("damaged") && line.contains(paths["file-id"].to_str().unwrap()),
        "{text}"
    );

    // The mount, on the same damage.
    let m = v1.mount().unwrap();
    let failures: Vec<String> = rows()
        .iter()
        .filter_map(|row| {
            probe(&v1.mnt, row)
                .err()
                .map(|e| format!("{}: {e}", row.plain))
        })
        .collect();
    assert_eq!(
        std::fs::read(v1.mnt.join("good")).unwrap(),
        content("good"),
        "an intact file reads back"
    );
    v1.umount(m);
    assert!(failures.is_empty(), "mount:\n{}", failures.join("\n"));

    // A key that cannot be used is reported, not counted as damage (exit 0).
    ok(&s.root(&["kms", "disable-key", "--key-id", &key]));
    let (report, code) = v2.fsck_json();
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ContentNotChecked"], 1, "{report:#}");
    let file = &report["Files"][0];
    assert_eq!(file["Status"], "unchecked", "{report:#}");
    assert!(
        file["Detail"]
            .as_str()
            .unwrap()
            .contains("DisabledException"),
        "{file}"
    );
    ok(&s.root(&["kms", "enable-key", "--key-id", &key]));

    // A volume file changed outside kmsfs: the mount refuses it, fsck names it.
    let volume_file = v2.backing.join("kmsfs.volume");
    let text = std::fs::read_to_string(&volume_file).unwrap();
    let altered: String = text
        .lines()
        .map(|l| match l.starts_with("default_key") {
            true => "default_key = \"alias/attacker\"\n".to_string(),
            false => format!("{l}\n"),
        })
        .collect();
    assert_ne!(text, altered);
    std::fs::write(&volume_file, altered).unwrap();
    let (report, code) = v2.fsck_json();
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["Damaged"], 1, "{report:#}");
    let damaged = report["Files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Status"] == "damaged")
        .unwrap();
    assert_eq!(
        damaged["Backing"],
        volume_file.to_str().unwrap(),
        "{report:#}"
    );
    let Err(refused) = v2.mount() else {
        panic!("a volume with an altered volume file mounted");
    };
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
