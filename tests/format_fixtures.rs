//! Fixture volumes of every envelope version, generated once and committed: today's code
//! must decode them forever. The keys are fixed test values documented in
//! tests/fixtures/format-v1/README.md (version 2 uses the same values,
//! tests/fixtures/format-v2/README.md).
//!
//! To generate (only when adding a new version's fixtures, never to "fix" this test):
//! `KMSFS_WRITE_FORMAT_FIXTURES=1 cargo test --test format_fixtures`; only versions
//! whose fixture directory is absent are written.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use kmsfs::crypto::{DataKey, SealingKey};
use kmsfs::format::{
    block_count, classify, verify_file, ContentCipher, DirId, DirMeta, EntryKind, EnvelopeVersion,
    FileHeader, MetadataKey, NameCipher, VolumeConfig, BLOCK_SIZE,
};

const VOLUME_SECRET: [u8; 32] = [0x11; 32];
const VOLUME_ID: &str = "000102030405060708090a0b0c0d0e0f";
const ROOT_DIR_ID: [u8; 16] = [0x21; 16];
const SUB_DIR_ID: [u8; 16] = [0x22; 16];
const SUB_KEY_RULE: &str = "alias/kmsfs/fixture-sub";
const KEY_ARN: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const WRAPPED: &[u8] = b"fixture: opaque wrapped data key (not a real KMS blob)";

/// One fixture file: where it lives, its plaintext name, data key, file id, content.
struct FixtureFile {
    dir: &'static str,
    name: String,
    key: [u8; 32],
    file_id: [u8; 16],
    content: Vec<u8>,
    /// Block indices written as all-zero holes instead of sealed blocks.
    holes: &'static [u64],
}

fn long_name() -> String {
    format!("{}-long-name", "ä".repeat(100)) // 210 bytes: needs a sidecar
}

fn files() -> Vec<FixtureFile> {
    let mut hello: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
    hello.extend(std::iter::repeat_n(0, BLOCK_SIZE)); // block 1: a hole
    hello.extend_from_slice(&[b'z'; 100]); // block 2: partial
    vec![
        FixtureFile {
            dir: "",
            name: "hello.txt".into(),
            key: [0x42; 32],
            file_id: [0x51; 16],
            content: hello,
            holes: &[1],
        },
        FixtureFile {
            dir: "",
            name: "empty".into(),
            key: [0x43; 32],
            file_id: [0x52; 16],
            content: Vec::new(),
            holes: &[],
        },
        FixtureFile {
            dir: "",
            name: long_name(),
            key: [0x44; 32],
            file_id: [0x53; 16],
            content: b"a file with a long name\n".to_vec(),
            holes: &[],
        },
        FixtureFile {
            dir: "sub",
            name: "inner.txt".into(),
            key: [0x45; 32],
            file_id: [0x54; 16],
            content: b"inside a subdirectory with a key rule\n".to_vec(),
            holes: &[],
        },
    ]
}

fn fixture_root(version: EnvelopeVersion) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/format-v{}/backing",
        version.number()
    ))
}

fn names() -> NameCipher {
    NameCipher::new(&SealingKey::from_bytes(VOLUME_SECRET))
}

fn meta_key() -> MetadataKey {
    MetadataKey::new(&SealingKey::from_bytes(VOLUME_SECRET))
}

fn dir_id_of(dir: &str) -> DirId {
    DirId(if dir.is_empty() {
        ROOT_DIR_ID
    } else {
        SUB_DIR_ID
    })
}

/// Backing path of `dir` ("" or "sub") inside the fixture.
fn backing_dir(root: &Path, dir: &str) -> PathBuf {
    if dir.is_empty() {
        return root.to_path_buf();
    }
    let b = names()
        .encrypt(&DirId(ROOT_DIR_ID), dir.as_bytes())
        .unwrap();
    root.join(b.name())
}

fn generate(root: &Path, version: EnvelopeVersion) {
    assert!(
        !root.exists(),
        "{} exists; refusing to overwrite fixtures",
        root.display()
    );
    let mut cfg = VolumeConfig::create(root, "alias/kmsfs/default").unwrap();
    cfg.volume_id = VOLUME_ID.into();
    cfg.save(root, &meta_key()).unwrap();
    DirMeta {
        dir_id: DirId(ROOT_DIR_ID),
        key_rule: None,
        version: 0,
    }
    .save(root, &meta_key())
    .unwrap();
    let sub = backing_dir(root, "sub");
    std::fs::create_dir(&sub).unwrap();
    DirMeta {
        dir_id: DirId(SUB_DIR_ID),
        key_rule: Some(SUB_KEY_RULE.into()),
        version: 0,
    }
    .save(&sub, &meta_key())
    .unwrap();
    for f in files() {
        let dir = backing_dir(root, f.dir);
        let bn = names()
            .encrypt(&dir_id_of(f.dir), f.name.as_bytes())
            .unwrap();
        if let Some((sidecar, content)) = bn.sidecar() {
            std::fs::write(dir.join(sidecar), content).unwrap();
        }
        let key = DataKey::from_bytes(f.key);
        let header =
            FileHeader::with_version(version, f.file_id, KEY_ARN.into(), WRAPPED.to_vec(), &key)
                .unwrap();
        let cipher = ContentCipher::new(&key, &header).unwrap();
        let mut bytes = header.encode();
        let mut sealed = Vec::new();
        for (i, chunk) in f.content.chunks(BLOCK_SIZE).enumerate() {
            if f.holes.contains(&(i as u64)) {
                bytes.resize(bytes.len() + version.sealed_len(chunk.len()), 0);
            } else {
                cipher.seal_block(i as u64, chunk, &mut sealed).unwrap();
                bytes.extend_from_slice(&sealed);
            }
        }
        std::fs::write(dir.join(bn.name()), bytes).unwrap();
    }
}

fn read_plaintext(path: &Path, key: &DataKey) -> Vec<u8> {
    let file = File::open(path).unwrap();
    let header = FileHeader::read_from(&file).unwrap();
    let cipher = ContentCipher::new(key, &header).unwrap();
    let v = header.version;
    let size = v.plaintext_size(file.metadata().unwrap().len()).unwrap();
    let mut out = Vec::new();
    let mut plain = Vec::new();
    for i in 0..block_count(size) {
        let n = (size - i * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        let mut sealed = vec![0u8; v.sealed_len(n)];
        file.read_exact_at(&mut sealed, v.block_offset(i)).unwrap();
        cipher.open_block(i, &sealed, &mut plain).unwrap();
        out.extend_from_slice(&plain);
    }
    out
}

/// Decrypts every entry of a backing directory: plaintext name → backing name.
fn list(dir: &Path, id: &DirId) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        match classify(&name) {
            EntryKind::Encrypted | EntryKind::LongName => {
                let plain = names()
                    .decrypt(id, &name, |s| std::fs::read(dir.join(s)))
                    .unwrap();
                out.insert(plain, name);
            }
            EntryKind::Sidecar | EntryKind::Reserved => {}
            EntryKind::Foreign => panic!("foreign entry {name} in fixture"),
        }
    }
    out
}

#[test]
fn version_1_fixtures_decode_with_todays_code() {
    check_fixture(EnvelopeVersion::V1);
}

#[test]
fn version_2_fixtures_decode_with_todays_code() {
    check_fixture(EnvelopeVersion::V2);
}

fn check_fixture(version: EnvelopeVersion) {
    let root = fixture_root(version);
    if std::env::var_os("KMSFS_WRITE_FORMAT_FIXTURES").is_some() && !root.exists() {
        generate(&root, version);
    }

    let cfg = VolumeConfig::load(&root).unwrap();
    cfg.verify(&root, &meta_key()).unwrap();
    assert_eq!(cfg.volume_id, VOLUME_ID);
    assert_eq!(cfg.default_key, "alias/kmsfs/default");
    assert_eq!((cfg.format, cfg.block_size), (1, 4096));

    let root_meta = DirMeta::load(&root, &meta_key()).unwrap();
    assert_eq!(
        root_meta,
        DirMeta {
            dir_id: DirId(ROOT_DIR_ID),
            key_rule: None,
            version: 0,
        }
    );
    let sub = backing_dir(&root, "sub");
    let sub_meta = DirMeta::load(&sub, &meta_key()).unwrap();
    assert_eq!(sub_meta.dir_id, DirId(SUB_DIR_ID));
    assert_eq!(sub_meta.key_rule.as_deref(), Some(SUB_KEY_RULE));
    // Format-1 directory metadata has no `version`: it reads as version 0.
    assert_eq!(sub_meta.version, 0);

    let root_listing = list(&root, &DirId(ROOT_DIR_ID));
    let expected: Vec<Vec<u8>> = vec![
        b"empty".to_vec(),
        b"hello.txt".to_vec(),
        b"sub".to_vec(),
        long_name().into_bytes(),
    ];
    let mut got: Vec<_> = root_listing.keys().cloned().collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        list(&sub, &DirId(SUB_DIR_ID)).keys().collect::<Vec<_>>(),
        vec![b"inner.txt"]
    );

    for f in files() {
        let dir = backing_dir(&root, f.dir);
        // Name encryption is deterministic, so today's code must produce the same name.
        let bn = names()
            .encrypt(&dir_id_of(f.dir), f.name.as_bytes())
            .unwrap();
        let path = dir.join(bn.name());
        let bytes = std::fs::read(&path).unwrap();

        // The header decodes to the fixed values and re-encodes to the same bytes.
        let header = FileHeader::decode(&bytes[..1024]).unwrap();
        assert_eq!(header.version, version);
        assert_eq!(header.file_id, f.file_id);
        assert_eq!(header.key_arn, KEY_ARN);
        assert_eq!(header.wrapped_key, WRAPPED);
        assert_eq!(header.encode(), &bytes[..1024]);

        let key = DataKey::from_bytes(f.key);
        assert_eq!(read_plaintext(&path, &key), f.content, "{}", f.name);
        let report = verify_file(&path, Some(&key));
        assert!(report.is_ok(), "{report:?}");
    }
}
