//! `walk_volume` + `verify_file`, the two halves of `kmsfs fsck`, on a copy of the
//! version-1 fixture volume, before and after damaging it in the ways a backing
//! directory gets damaged.

use std::path::{Path, PathBuf};

use kmsfs::crypto::{DataKey, SealingKey};
use kmsfs::format::{
    check_volume, verify_file, walk_volume, FileOutcome, FormatError, KeyLookup, VolumeEntry,
    VolumeFinding,
};

const VOLUME_SECRET: [u8; 32] = [0x11; 32];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backing");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/backing");
    copy_tree(&src, &root);
    (tmp, root)
}

fn walk(root: &Path) -> Vec<VolumeEntry> {
    let mut found = Vec::new();
    walk_volume(root, &SealingKey::from_bytes(VOLUME_SECRET), &mut |e| {
        found.push(e)
    })
    .unwrap();
    found
}

fn plain_files(found: &[VolumeEntry]) -> Vec<(PathBuf, PathBuf)> {
    let mut files: Vec<_> = found
        .iter()
        .filter_map(|e| match e {
            VolumeEntry::File { backing, plain } => Some((plain.clone(), backing.clone())),
            _ => None,
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_healthy_volume_lists_every_file_with_its_plaintext_path() {
    let (_tmp, root) = fixture_copy();
    let found = walk(&root);
    assert!(found.iter().all(|e| !e.is_damaged()), "{found:?}");
    assert!(
        !found.iter().any(|e| matches!(e, VolumeEntry::Stray { .. })),
        "{found:?}"
    );
    let dirs: Vec<_> = found
        .iter()
        .filter_map(|e| match e {
            VolumeEntry::Directory { plain, .. } => Some(plain.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dirs, vec![PathBuf::from("sub")]);
    let files = plain_files(&found);
    let names: Vec<_> = files
        .iter()
        .map(|(p, _)| p.to_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(names.contains(&"hello.txt".to_string()));
    assert!(names.contains(&"empty".to_string()));
    assert!(names.contains(&"sub/inner.txt".to_string()));
    assert!(names.iter().any(|n| n.ends_with("-long-name")));

    // fsck's second half: each file verified with its data key (fixed in the fixture).
    let hello = files
        .iter()
        .find(|(p, _)| p == Path::new("hello.txt"))
        .unwrap();
    assert!(verify_file(&hello.1, Some(&DataKey::from_bytes([0x42; 32]))).is_ok());
}

#[test]
fn damage_below_the_root_is_reported_and_the_walk_goes_on() {
    let (_tmp, root) = fixture_copy();
    let found = walk(&root);
    let files = plain_files(&found);
    let backing_of = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p.to_str().unwrap().ends_with(name))
            .unwrap()
            .1
            .clone()
    };
    let sub = found
        .iter()
        .find_map(|e| match e {
            VolumeEntry::Directory { backing, .. } => Some(backing.clone()),
            _ => None,
        })
        .unwrap();

    // 1. The subdirectory's metadata disappears.
    std::fs::remove_file(sub.join("kmsfs.dir")).unwrap();
    // 2. The long name's sidecar disappears.
    let long = backing_of("-long-name");
    let mut sidecar = long.clone().into_os_string();
    sidecar.push(".name");
    std::fs::remove_file(&sidecar).unwrap();
    // 3. An encrypted name is altered (renamed to a different valid-looking name).
    let hello = backing_of("hello.txt");
    let name = hello.file_name().unwrap().to_str().unwrap().to_string();
    let altered = format!(
        "{}{}",
        if name.starts_with('A') { "B" } else { "A" },
        &name[1..]
    );
    std::fs::rename(&hello, root.join(&altered)).unwrap();
    // 4. Strays: a foreign file, an orphan sidecar, a leftover temp file, a stored
    // symlink target no symlink refers to (still found although `sub` is damaged).
    std::fs::write(root.join("notes.txt"), b"").unwrap();
    std::fs::write(
        root.join("kmsfs.ln.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.name"),
        b"x",
    )
    .unwrap();
    std::fs::write(root.join("kmsfs.tmp.0011223344556677"), b"").unwrap();
    let orphan = root.join(format!("kmsfs.st.{}", "B".repeat(43)));
    std::fs::write(&orphan, b"sealed").unwrap();

    let found = walk(&root);
    let damaged: Vec<_> = found
        .iter()
        .filter_map(|e| match e {
            VolumeEntry::Damaged { backing, error, .. } => Some((backing.clone(), error)),
            _ => None,
        })
        .collect();
    assert_eq!(damaged.len(), 3, "{found:?}");
    assert!(damaged
        .iter()
        .any(|(b, e)| *b == sub && matches!(e, FormatError::MissingDirMeta { .. })));
    assert!(damaged
        .iter()
        .any(|(b, e)| *b == long && matches!(e, FormatError::BadSidecar { .. })));
    assert!(damaged.iter().any(|(b, e)| *b == root.join(&altered)
        && matches!(
            e,
            FormatError::NameAuthentication | FormatError::NotEncryptedName { .. }
        )));
    let strays = found
        .iter()
        .filter(|e| matches!(e, VolumeEntry::Stray { .. }))
        .count();
    assert_eq!(strays, 4, "{found:?}");
    assert!(found
        .iter()
        .any(|e| matches!(e, VolumeEntry::Stray { backing, .. } if *backing == orphan)));
    // The healthy file is still listed.
    assert!(plain_files(&found)
        .iter()
        .any(|(p, _)| p == Path::new("empty")));
}

#[test]
fn a_volume_that_cannot_be_opened_is_an_error() {
    let (_tmp, root) = fixture_copy();
    let wrong = SealingKey::from_bytes([0x12; 32]);
    assert!(matches!(
        walk_volume(&root, &wrong, &mut |_| {}),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    std::fs::remove_file(root.join("kmsfs.dir")).unwrap();
    assert!(matches!(
        walk_volume(&root, &SealingKey::from_bytes(VOLUME_SECRET), &mut |_| {}),
        Err(FormatError::MissingDirMeta { .. })
    ));
}

/// The data keys of the fixture's files (tests/fixtures/format-v1/README.md), by file id.
fn fixture_keys(header: &kmsfs::format::FileHeader) -> KeyLookup {
    match header.file_id[0] {
        0x51 => KeyLookup::Key(DataKey::from_bytes([0x42; 32])),
        0x52 => KeyLookup::Key(DataKey::from_bytes([0x43; 32])),
        0x53 => KeyLookup::Key(DataKey::from_bytes([0x44; 32])),
        0x54 => KeyLookup::Key(DataKey::from_bytes([0x45; 32])),
        _ => KeyLookup::Rejected("not a fixture file id".into()),
    }
}

fn check(
    root: &Path,
    keys: &mut dyn FnMut(&kmsfs::format::FileHeader) -> KeyLookup,
) -> Vec<VolumeFinding> {
    let mut found = Vec::new();
    check_volume(
        root,
        &SealingKey::from_bytes(VOLUME_SECRET),
        keys,
        &mut |f| found.push(f),
    )
    .unwrap();
    found
}

fn file_outcome<'a>(found: &'a [VolumeFinding], name: &str) -> &'a FileOutcome {
    found
        .iter()
        .find_map(|f| match f {
            VolumeFinding::File { plain, outcome, .. } if plain.ends_with(name) => Some(outcome),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} not found in {found:?}"))
}

#[test]
fn check_volume_authenticates_every_block_of_the_version_1_fixture() {
    let (_tmp, root) = fixture_copy();
    let found = check(&root, &mut fixture_keys);
    assert!(found.iter().all(|f| !f.is_damaged()), "{found:?}");
    assert!(matches!(
        file_outcome(&found, "hello.txt"),
        FileOutcome::Ok {
            blocks_checked: 3,
            holes: 1,
            ..
        }
    ));
}

#[test]
fn the_key_service_decides_between_damage_and_a_key_that_cannot_be_used() {
    let (_tmp, root) = fixture_copy();
    // Rejected (InvalidCiphertext: altered header, or from another volume) is damage;
    // unavailable (denied, disabled, unknown) is reported, not damage.
    let found = check(&root, &mut |h| match h.file_id[0] {
        0x51 => KeyLookup::Rejected("InvalidCiphertextException".into()),
        0x52 => KeyLookup::Unavailable("AccessDeniedException".into()),
        _ => fixture_keys(h),
    });
    assert!(matches!(
        file_outcome(&found, "hello.txt"),
        FileOutcome::KeyRejected { .. }
    ));
    let empty = file_outcome(&found, "empty");
    assert!(
        matches!(empty, FileOutcome::ContentNotChecked { .. }) && !empty.is_damaged(),
        "{empty:?}"
    );
    assert_eq!(
        found.iter().filter(|f| f.is_damaged()).count(),
        1,
        "{found:?}"
    );
}

#[test]
fn fifos_and_symlinks_in_place_of_kmsfs_files_are_reported_never_opened() {
    let fifo = |p: &Path| {
        std::fs::remove_file(p).unwrap();
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    };
    let (_tmp, root) = fixture_copy();
    let files = plain_files(&walk(&root));
    let backing_of = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p.to_str().unwrap().ends_with(name))
            .unwrap()
            .1
            .clone()
    };
    let sub = backing_of("inner.txt").parent().unwrap().to_path_buf();
    let long = backing_of("-long-name");
    let hello = backing_of("hello.txt");
    let empty = backing_of("empty");
    // Opening any of these FIFOs for reading without O_NONBLOCK would hang fsck.
    fifo(&sub.join("kmsfs.dir"));
    let mut sidecar = long.clone().into_os_string();
    sidecar.push(".name");
    fifo(Path::new(&sidecar));
    fifo(&hello);
    std::fs::remove_file(&empty).unwrap();
    std::os::unix::fs::symlink(root.join("kmsfs.volume"), &empty).unwrap();

    let found = check(&root, &mut fixture_keys);
    let damaged = |backing: &Path| {
        found.iter().find_map(|f| match f {
            VolumeFinding::Entry(VolumeEntry::Damaged {
                backing: b, error, ..
            }) if b == backing => Some(error),
            _ => None,
        })
    };
    assert!(
        matches!(
            damaged(&sub),
            Some(FormatError::NotRegularFile {
                found: "a FIFO",
                ..
            })
        ),
        "{found:?}"
    );
    assert!(
        matches!(damaged(&long), Some(FormatError::BadSidecar { .. })),
        "{found:?}"
    );
    assert!(
        matches!(damaged(&empty), Some(FormatError::SymlinkAuthentication)),
        "{found:?}"
    );
    // A FIFO with a valid name is a FIFO kmsfs keeps (mknod through the mount).
    assert!(found.iter().any(|f| matches!(
        f,
        VolumeFinding::Entry(VolumeEntry::Other { backing, what: "a FIFO", .. }) if *backing == hello
    )));
}
