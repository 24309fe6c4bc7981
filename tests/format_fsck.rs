//! `walk_volume` + `verify_file`, the two halves of `kmsfs fsck`, on a copy of the
//! version-1 fixture volume, before and after damaging it in the ways a backing
//! directory gets damaged.

use std::path::{Path, PathBuf};

use kmsfs::crypto::{DataKey, SealingKey};
use kmsfs::format::{verify_file, walk_volume, FormatError, VolumeEntry};

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
    // 4. Strays: a foreign file, an orphan sidecar, a leftover temp file.
    std::fs::write(root.join("notes.txt"), b"").unwrap();
    std::fs::write(
        root.join("kmsfs.ln.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.name"),
        b"x",
    )
    .unwrap();
    std::fs::write(root.join("kmsfs.tmp.0011223344556677"), b"").unwrap();

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
    assert_eq!(strays, 3, "{found:?}");
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
