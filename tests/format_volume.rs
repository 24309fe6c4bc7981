//! The volume file and per-directory metadata: creation rules, atomic saves, field
//! errors that name the file and field, and MACs that catch edits made without the
//! volume secret.

use std::path::Path;

use kmsfs::crypto::SealingKey;
use kmsfs::format::{DirMeta, EnvelopeVersion, FormatError, MetadataKey, VolumeConfig, BLOCK_SIZE};

fn meta_key(seed: u8) -> MetadataKey {
    MetadataKey::new(&SealingKey::from_bytes([seed; 32]))
}

fn init(backing: &Path) -> VolumeConfig {
    let mut cfg = VolumeConfig::create(backing, "alias/kmsfs/default").unwrap();
    cfg.save(backing, &meta_key(1)).unwrap();
    cfg
}

fn leftover_temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("kmsfs.tmp."))
        .collect()
}

#[test]
fn create_then_save_then_load_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("vol");
    let mut cfg = VolumeConfig::create(&backing, "alias/team").unwrap();
    assert_eq!(cfg.format, 1);
    assert_eq!(cfg.block_size as usize, BLOCK_SIZE);
    assert_eq!(cfg.volume_id.len(), 32);
    assert!(!cfg.is_authenticated());

    // Claimed but not yet authenticated: a mount must refuse it.
    let loaded = VolumeConfig::load(&backing).unwrap();
    assert_eq!(loaded, cfg);
    assert!(matches!(
        loaded.verify(&backing, &meta_key(1)),
        Err(FormatError::MetadataAuthentication { .. })
    ));

    cfg.save(&backing, &meta_key(1)).unwrap();
    let loaded = VolumeConfig::load(&backing).unwrap();
    assert_eq!(loaded, cfg);
    loaded.verify(&backing, &meta_key(1)).unwrap();
    assert!(matches!(
        loaded.verify(&backing, &meta_key(2)),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    assert!(leftover_temp_files(&backing).is_empty());
}

#[test]
fn two_volumes_get_different_ids() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_ne!(init(a.path()).volume_id, init(b.path()).volume_id);
}

#[test]
fn create_refuses_an_initialized_or_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let err = VolumeConfig::create(dir.path(), "alias/x").unwrap_err();
    assert!(
        matches!(err, FormatError::AlreadyInitialized { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("already a kmsfs volume"));

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("precious.txt"), b"data").unwrap();
    let err = VolumeConfig::create(other.path(), "alias/x").unwrap_err();
    assert!(matches!(err, FormatError::NotEmpty { .. }), "{err}");
    assert_eq!(
        std::fs::read(other.path().join("precious.txt")).unwrap(),
        b"data"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        VolumeConfig::create(empty.path(), "has space"),
        Err(FormatError::BadMetadataField {
            field: "default_key",
            ..
        })
    ));
}

#[test]
fn load_of_a_plain_directory_says_it_is_not_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    let err = VolumeConfig::load(dir.path()).unwrap_err();
    assert!(matches!(err, FormatError::NotAVolume { .. }));
    assert!(err.to_string().contains("kmsfs init"), "{err}");
}

#[test]
fn bad_volume_files_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = init(dir.path());
    let path = VolumeConfig::path(dir.path());
    let good = std::fs::read_to_string(&path).unwrap();
    let id_line = format!("volume_id = \"{}\"", cfg.volume_id);

    // (replace this, with this, expected field or None for file-level errors)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("format = 1", "format = \"1\"", Some("format")),
        ("format = 1", "", Some("format")),
        (&id_line, "volume_id = \"XYZ\"", Some("volume_id")),
        (&id_line, "volume_id = 5", Some("volume_id")),
        (
            "default_key = \"alias/kmsfs/default\"",
            "default_key = \"\"",
            Some("default_key"),
        ),
        ("block_size = 4096", "block_size = 8192", Some("block_size")),
        ("block_size = 4096", "block_size = -1", Some("block_size")),
        ("mac = \"", "mac = \"zz", Some("mac")),
        ("format = 1", "format = 1\nextra = true", None),
        ("format = 1", "format = [", None),
    ];
    for (from, to, field) in cases {
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let err = VolumeConfig::load(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kmsfs.volume"), "{msg}");
        match field {
            Some(f) => assert!(
                matches!(&err, FormatError::BadMetadataField { field, .. } if field == f),
                "{to}: {msg}"
            ),
            None => assert!(
                matches!(err, FormatError::BadMetadataFile { .. }),
                "{to}: {msg}"
            ),
        }
    }

    std::fs::write(&path, good.replacen("format = 1", "format = 2", 1)).unwrap();
    assert!(matches!(
        VolumeConfig::load(dir.path()),
        Err(FormatError::UnsupportedVersion { found: 2 })
    ));
}

#[test]
fn editing_the_default_key_outside_kmsfs_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let path = VolumeConfig::path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("alias/kmsfs/default", "alias/attacker")).unwrap();
    let cfg = VolumeConfig::load(dir.path()).unwrap();
    assert_eq!(cfg.default_key, "alias/attacker");
    assert!(matches!(
        cfg.verify(dir.path(), &meta_key(1)),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    // Changing it through kmsfs re-authenticates.
    let mut cfg = cfg;
    cfg.default_key = "alias/new".into();
    cfg.save(dir.path(), &meta_key(1)).unwrap();
    VolumeConfig::load(dir.path())
        .unwrap()
        .verify(dir.path(), &meta_key(1))
        .unwrap();
}

#[test]
fn dir_meta_create_load_save_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = meta_key(3);
    let meta = DirMeta::create(dir.path(), None, &key).unwrap();
    assert_eq!(DirMeta::load(dir.path(), &key).unwrap(), meta);
    assert!(matches!(
        DirMeta::create(dir.path(), None, &key),
        Err(FormatError::DirMetaExists { .. })
    ));

    // `kmsfs key-rule set DIR --key alias/x` keeps the id and adds the rule.
    let mut updated = meta.clone();
    updated.key_rule = Some("alias/x".into());
    updated.save(dir.path(), &key).unwrap();
    let loaded = DirMeta::load(dir.path(), &key).unwrap();
    assert_eq!(loaded.dir_id, meta.dir_id);
    assert_eq!(loaded.key_rule.as_deref(), Some("alias/x"));
    assert!(leftover_temp_files(dir.path()).is_empty());

    let encoded = loaded.encode(&key);
    assert_eq!(
        DirMeta::decode(&encoded, Path::new("x"), &key).unwrap(),
        loaded
    );
}

#[test]
fn dir_ids_are_random_per_directory() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let key = meta_key(3);
    assert_ne!(
        DirMeta::create(a.path(), None, &key).unwrap().dir_id,
        DirMeta::create(b.path(), None, &key).unwrap().dir_id
    );
}

#[test]
fn dir_meta_edits_without_the_secret_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let key = meta_key(4);
    DirMeta::create(dir.path(), Some("alias/finance".into()), &key).unwrap();
    let path = DirMeta::path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();

    for edited in [
        text.replace("alias/finance", "alias/attacker"),
        text.lines()
            .filter(|l| !l.starts_with("key"))
            .collect::<Vec<_>>()
            .join("\n"),
        text.lines()
            .filter(|l| !l.starts_with("mac"))
            .collect::<Vec<_>>()
            .join("\n"),
    ] {
        std::fs::write(&path, &edited).unwrap();
        assert!(
            matches!(
                DirMeta::load(dir.path(), &key),
                Err(FormatError::MetadataAuthentication { .. })
            ),
            "{edited}"
        );
    }
    std::fs::write(&path, &text).unwrap();
    assert!(matches!(
        DirMeta::load(dir.path(), &meta_key(5)),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    DirMeta::load(dir.path(), &key).unwrap();

    std::fs::write(&path, text.replace("dir_id = \"", "dir_id = \"g")).unwrap();
    assert!(matches!(
        DirMeta::load(dir.path(), &key),
        Err(FormatError::BadMetadataField {
            field: "dir_id",
            ..
        })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        DirMeta::load(dir.path(), &key),
        Err(FormatError::MissingDirMeta { .. })
    ));
}

#[test]
fn dir_meta_rejects_bad_key_rules_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let key = meta_key(6);
    for bad in ["", "alias/with space", &"a".repeat(513)] {
        assert!(matches!(
            DirMeta::create(dir.path(), Some(bad.to_string()), &key),
            Err(FormatError::BadMetadataField { field: "key", .. })
        ));
    }
    assert!(!DirMeta::path(dir.path()).exists());
}

#[test]
fn new_volumes_say_every_envelope_is_version_2_and_the_field_is_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = init(dir.path());
    assert_eq!(cfg.envelopes, Some(EnvelopeVersion::V2));
    let path = VolumeConfig::path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nenvelopes = 2\n"), "{text}");
    let loaded = VolumeConfig::load(dir.path()).unwrap();
    assert_eq!(loaded, cfg);
    loaded.verify(dir.path(), &meta_key(1)).unwrap();
    assert!(loaded.check_envelope(EnvelopeVersion::V2).is_ok());
    assert!(matches!(
        loaded.check_envelope(EnvelopeVersion::V1),
        Err(FormatError::EnvelopeNotAllowed {
            found: 1,
            required: 2
        })
    ));

    // Dropping the line (to have version-1 files accepted again) breaks the MAC.
    std::fs::write(&path, text.replace("envelopes = 2\n", "")).unwrap();
    let stripped = VolumeConfig::load(dir.path()).unwrap();
    assert_eq!(stripped.envelopes, None);
    assert!(stripped.check_envelope(EnvelopeVersion::V1).is_ok());
    assert!(matches!(
        stripped.verify(dir.path(), &meta_key(1)),
        Err(FormatError::MetadataAuthentication { .. })
    ));

    // Only version 2 may be named.
    for value in ["1", "3", "\"2\""] {
        std::fs::write(
            &path,
            text.replace("envelopes = 2", &format!("envelopes = {value}")),
        )
        .unwrap();
        assert!(
            matches!(
                VolumeConfig::load(dir.path()),
                Err(FormatError::BadMetadataField {
                    field: "envelopes",
                    ..
                })
            ),
            "{value}"
        );
    }
}

#[test]
fn kms_endpoint_is_optional_authenticated_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("vol");
    let mut cfg = init(&backing);
    let without = std::fs::read_to_string(VolumeConfig::path(&backing)).unwrap();
    assert!(
        !without.contains("kms_endpoint"),
        "old volumes stay as they were"
    );
    cfg.kms_endpoint = Some("http://127.0.0.1:4566".into());
    cfg.save(&backing, &meta_key(1)).unwrap();
    let loaded = VolumeConfig::load(&backing).unwrap();
    assert_eq!(
        loaded.kms_endpoint.as_deref(),
        Some("http://127.0.0.1:4566")
    );
    loaded.verify(&backing, &meta_key(1)).unwrap();
    // Pointing the volume at another KMS without the volume secret is caught...
    let path = VolumeConfig::path(&backing);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("127.0.0.1:4566", "evil.example:443")).unwrap();
    assert!(matches!(
        VolumeConfig::load(&backing)
            .unwrap()
            .verify(&backing, &meta_key(1)),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    // ...and so is removing the field.
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("kms_endpoint"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, stripped).unwrap();
    assert!(matches!(
        VolumeConfig::load(&backing)
            .unwrap()
            .verify(&backing, &meta_key(1)),
        Err(FormatError::MetadataAuthentication { .. })
    ));
    // Not a URL: refused by name.
    std::fs::write(&path, text.replace("http://127.0.0.1:4566", "ftp://x")).unwrap();
    let e = VolumeConfig::load(&backing).unwrap_err().to_string();
    assert!(e.contains("kms_endpoint"), "{e}");
}
