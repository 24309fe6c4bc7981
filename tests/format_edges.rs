//! Edges of the format code that mutation testing (scripts/mutants format) found no test
//! checking: each test here fails if the named condition is inverted or dropped.

use std::io::Write;
use std::path::Path;

use kmsfs::crypto::SealingKey;
use kmsfs::format::{
    block_offset, DirId, DirMeta, EnvelopeVersion, FileHeader, FormatError, MetadataKey,
    VolumeConfig,
};

fn meta_key() -> MetadataKey {
    MetadataKey::new(&SealingKey::from_bytes([7; 32]))
}

#[test]
fn a_directory_version_survives_encode_and_decode() {
    let key = meta_key();
    for version in [0u64, 1, 3, u64::from(u32::MAX) + 5] {
        let meta = DirMeta {
            dir_id: DirId([9; 16]),
            key_rule: Some("alias/finance".into()),
            version,
        };
        let bytes = meta.encode(&key);
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Version 0 is written as format 1 wrote it: no version line at all.
        assert_eq!(text.contains("version ="), version > 0, "{text}");
        let back = DirMeta::decode(&bytes, Path::new("kmsfs.dir"), &key).unwrap();
        assert_eq!(back, meta);
    }
}

#[test]
fn a_saved_volume_file_is_authenticated_and_a_created_one_is_not_yet() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = VolumeConfig::create(dir.path(), "alias/kmsfs/default").unwrap();
    assert!(!volume.is_authenticated());
    volume.save(dir.path(), &meta_key()).unwrap();
    assert!(volume.is_authenticated());
    let loaded = VolumeConfig::load(dir.path()).unwrap();
    assert!(loaded.is_authenticated());
}

#[test]
fn volume_ids_must_be_exactly_32_lowercase_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = VolumeConfig::create(dir.path(), "alias/kmsfs/default").unwrap();
    volume.save(dir.path(), &meta_key()).unwrap();
    let good = std::fs::read_to_string(dir.path().join("kmsfs.volume")).unwrap();
    let id = volume.volume_id.clone();
    assert_eq!(id.len(), 32);
    for bad in [
        id.to_uppercase(),
        id[..31].to_string(),
        format!("{}g", &id[..31]),
    ] {
        if bad == id {
            continue; // an id of digits only has no uppercase form
        }
        let text = good.replace(&id, &bad);
        let e = VolumeConfig::decode(text.as_bytes(), Path::new("kmsfs.volume")).unwrap_err();
        assert!(
            e.to_string().contains("32 lowercase hex digits"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_file_shorter_than_the_header_prefix_is_a_header_size_error() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0usize, 5, 9] {
        let path = dir.path().join(format!("short{len}"));
        let mut f = std::fs::File::create(&path).unwrap();
        // The right magic and version, cut short: only the length check refuses it.
        f.write_all(&b"KMSFS\0v2\0\x02"[..len]).unwrap();
        drop(f);
        let f = std::fs::File::open(&path).unwrap();
        let e = FileHeader::read_version(&f).unwrap_err();
        assert!(
            matches!(e, FormatError::HeaderSize { found, .. } if found == len),
            "{len}: {e:?}"
        );
    }
}

#[test]
fn version_1_block_offsets_follow_the_header_and_sealed_block_size() {
    // Documented in FORMAT.md: block i of a v1 file starts at 1024 + 4124 i.
    assert_eq!(block_offset(0), 1024);
    assert_eq!(block_offset(1), 1024 + 4124);
    assert_eq!(block_offset(7), 1024 + 7 * 4124);
    assert_eq!(EnvelopeVersion::V1.block_offset(3), block_offset(3));
    // v2 blocks carry a 24-byte nonce: 4096 + 24 + 16 bytes each.
    assert_eq!(EnvelopeVersion::V2.block_offset(2), 1024 + 2 * 4136);
}
