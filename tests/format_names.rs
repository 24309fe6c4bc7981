//! Encrypted names: round trips for every length, long names with real sidecar files,
//! determinism per directory, and the reserved-name namespace.

use std::collections::HashSet;
use std::path::Path;

use kmsfs::crypto::SealingKey;
use kmsfs::format::{
    classify, is_reserved, BackingName, DirId, EntryKind, FormatError, NameCipher, DIR_META_NAME,
    VOLUME_FILE_NAME,
};
use proptest::prelude::*;

fn cipher() -> NameCipher {
    NameCipher::new(&SealingKey::from_bytes([0x5A; 32]))
}

const DIR_A: DirId = DirId([0xA0; 16]);
const DIR_B: DirId = DirId([0xB0; 16]);

fn no_sidecar(name: &str) -> std::io::Result<Vec<u8>> {
    panic!("unexpected sidecar read for {name}")
}

/// Stores `plain` in backing directory `dir` as the filesystem would (sidecar first),
/// then lists the directory and decrypts every entry.
fn store_and_list(names: &NameCipher, dir: &Path, id: &DirId, plain: &[u8]) -> Vec<Vec<u8>> {
    let backing = names.encrypt(id, plain).unwrap();
    if let Some((sidecar, content)) = backing.sidecar() {
        std::fs::write(dir.join(sidecar), content).unwrap();
    }
    std::fs::write(dir.join(backing.name()), b"").unwrap();
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        match classify(&name) {
            EntryKind::Encrypted | EntryKind::LongName => listed.push(
                names
                    .decrypt(id, &name, |s| std::fs::read(dir.join(s)))
                    .unwrap(),
            ),
            EntryKind::Sidecar | EntryKind::Reserved | EntryKind::Foreign => {}
        }
    }
    listed
}

#[test]
fn every_name_length_from_1_to_255_round_trips() {
    let names = cipher();
    for len in 1..=255 {
        let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let backing = names.encrypt(&DIR_A, &plain).unwrap();
        assert!(backing.name().len() <= 255, "len {len}");
        assert!(!backing.name().contains('/'));
        let sidecar = backing.sidecar().map(|(_, c)| c.to_string());
        let got = names
            .decrypt(&DIR_A, backing.name(), |_| {
                Ok(sidecar.clone().unwrap().into_bytes())
            })
            .unwrap();
        assert_eq!(got, plain, "len {len}");
        // Padding to 16 bytes: up to 159 bytes fit in a short name, longer need a sidecar.
        assert_eq!(
            matches!(backing, BackingName::Long { .. }),
            len > 159,
            "len {len}"
        );
    }
}

#[test]
fn unicode_and_binary_names_round_trip() {
    let names = cipher();
    for plain in [
        "résumé.pdf".as_bytes(),
        "日本語のファイル名.txt".as_bytes(),
        "🦀".as_bytes(),
        b"\xff\xfe not utf-8",
        b" leading and trailing spaces ",
        b".hidden",
        b"...",
        b"kmsfs.volume", // a user may name a file like a reserved backing name
        b"kmsfs.dir",
    ] {
        let backing = names.encrypt(&DIR_A, plain).unwrap();
        assert_eq!(
            names.decrypt(&DIR_A, backing.name(), no_sidecar).unwrap(),
            plain
        );
    }
}

#[test]
fn long_names_live_in_a_sidecar_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let names = cipher();
    let long = "ü".repeat(127); // 254 bytes
    let listed = store_and_list(&names, dir.path(), &DIR_A, long.as_bytes());
    assert_eq!(listed, vec![long.as_bytes().to_vec()]);
    let backing = names.encrypt(&DIR_A, long.as_bytes()).unwrap();
    let BackingName::Long {
        name,
        sidecar_name,
        encoded,
    } = &backing
    else {
        panic!("expected a long name, got {backing:?}");
    };
    assert!(name.starts_with("kmsfs.ln.") && name.len() == 52);
    assert_eq!(sidecar_name, &format!("{name}.name"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(sidecar_name)).unwrap(),
        *encoded
    );
    assert_eq!(classify(name), EntryKind::LongName);
    assert_eq!(classify(sidecar_name), EntryKind::Sidecar);
}

#[test]
fn a_missing_or_altered_sidecar_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let names = cipher();
    let backing = names.encrypt(&DIR_A, &[b'x'; 200]).unwrap();
    let (sidecar, content) = backing.sidecar().unwrap();
    let path = dir.path().join(sidecar);
    let read = |s: &str| std::fs::read(dir.path().join(s));

    assert!(matches!(
        names.decrypt(&DIR_A, backing.name(), read),
        Err(FormatError::BadSidecar { .. })
    ));
    // A sidecar of another long name does not match this entry's hash.
    let other = names.encrypt(&DIR_A, &[b'y'; 200]).unwrap();
    std::fs::write(&path, other.sidecar().unwrap().1).unwrap();
    assert!(matches!(
        names.decrypt(&DIR_A, backing.name(), read),
        Err(FormatError::BadSidecar { .. })
    ));
    std::fs::write(&path, format!("{content}\n")).unwrap();
    assert!(matches!(
        names.decrypt(&DIR_A, backing.name(), read),
        Err(FormatError::BadSidecar { .. })
    ));
    std::fs::write(&path, content).unwrap();
    assert_eq!(
        names.decrypt(&DIR_A, backing.name(), read).unwrap(),
        vec![b'x'; 200]
    );
}

#[test]
fn names_are_deterministic_per_directory_and_differ_across_directories() {
    let names = cipher();
    let a1 = names.encrypt(&DIR_A, b"report.txt").unwrap();
    let a2 = names.encrypt(&DIR_A, b"report.txt").unwrap();
    let b = names.encrypt(&DIR_B, b"report.txt").unwrap();
    assert_eq!(a1, a2);
    assert_ne!(a1, b);
    // A name moved to another directory does not decrypt there.
    assert!(matches!(
        names.decrypt(&DIR_B, a1.name(), no_sidecar),
        Err(FormatError::NameAuthentication)
    ));
    // Another volume's secret gives other names.
    let other = NameCipher::new(&SealingKey::from_bytes([0x5B; 32]));
    assert_ne!(other.encrypt(&DIR_A, b"report.txt").unwrap(), a1);
    assert!(other.decrypt(&DIR_A, a1.name(), no_sidecar).is_err());
}

#[test]
fn names_hide_exact_length_within_a_16_byte_bucket() {
    let names = cipher();
    let short = names.encrypt(&DIR_A, b"a").unwrap();
    let longer = names.encrypt(&DIR_A, b"fifteen-bytes!!").unwrap();
    assert_eq!(short.name().len(), longer.name().len());
}

#[test]
fn invalid_plain_names_are_rejected() {
    let names = cipher();
    for bad in [
        &b""[..],
        b".",
        b"..",
        b"a/b",
        b"/",
        b"nul\0byte",
        &[b'x'; 256],
    ] {
        assert!(
            matches!(
                names.encrypt(&DIR_A, bad),
                Err(FormatError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn reserved_and_foreign_backing_names_never_decrypt_and_never_collide() {
    let names = cipher();
    for reserved in [
        VOLUME_FILE_NAME,
        DIR_META_NAME,
        "kmsfs.tmp.0011223344556677",
        "kmsfs.ln.short",
    ] {
        assert!(is_reserved(reserved));
        assert_eq!(classify(reserved), EntryKind::Reserved, "{reserved}");
        assert!(matches!(
            names.decrypt(&DIR_A, reserved, no_sidecar),
            Err(FormatError::NotEncryptedName { .. })
        ));
    }
    for foreign in [
        ".",
        "..",
        "notes.txt",
        "short",
        "has space",
        "x".repeat(256).as_str(),
    ] {
        assert_eq!(classify(foreign), EntryKind::Foreign, "{foreign}");
        assert!(!is_reserved(foreign));
    }
    // Every short encrypted name is base64url: no '.', so never a reserved name.
    let mut seen = HashSet::new();
    for i in 0..2000u32 {
        let b = names
            .encrypt(&DIR_A, format!("file-{i}").as_bytes())
            .unwrap();
        assert!(!b.name().contains('.'));
        assert!(!is_reserved(b.name()));
        assert_eq!(classify(b.name()), EntryKind::Encrypted);
        assert!(seen.insert(b.name().to_string()));
    }
}

#[test]
fn altered_encrypted_names_fail_authentication() {
    let names = cipher();
    let backing = names.encrypt(&DIR_A, b"secret-plans.odt").unwrap();
    let name = backing.name();
    for i in 0..name.len() {
        let mut bytes = name.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        let r = names.decrypt(&DIR_A, &altered, no_sidecar);
        assert!(
            matches!(
                r,
                Err(FormatError::NameAuthentication | FormatError::NotEncryptedName { .. })
            ),
            "position {i}: {r:?}"
        );
    }
    // Too short or not a padded length.
    assert!(names
        .decrypt(&DIR_A, &name[..name.len() - 4], no_sidecar)
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_names_round_trip(
        plain in proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..=255),
        dir in any::<[u8; 16]>(),
    ) {
        prop_assume!(plain != b"." && plain != b"..");
        let names = cipher();
        let dir = DirId(dir);
        let backing = names.encrypt(&dir, &plain).unwrap();
        prop_assert!(backing.name().len() <= 255);
        let sidecar = backing.sidecar().map(|(_, c)| c.as_bytes().to_vec());
        let got = names.decrypt(&dir, backing.name(), |_| Ok(sidecar.clone().unwrap_or_default())).unwrap();
        prop_assert_eq!(got, plain);
    }

    #[test]
    fn classify_and_decrypt_never_panic(name in "\\PC{0,300}") {
        let _ = classify(&name);
        let _ = cipher().decrypt(&DIR_A, &name, |_| Ok(Vec::new()));
    }
}
