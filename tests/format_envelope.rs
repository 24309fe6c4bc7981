//! The envelope: header codec, key commitment, content blocks, holes, size arithmetic
//! and the fsck verifier, exercised on real files. Files are written in the current
//! envelope version (what the filesystem writes); version 1 is covered by the size
//! table below, the fixtures (tests/format_fixtures.rs) and `version_1_files_...`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use kmsfs::crypto::DataKey;
use kmsfs::format::{
    block_count, block_spans, encryption_context, verify_file, BlockSpan, ContentCipher,
    EnvelopeVersion, FileHeader, FileOutcome, FormatError, BLOCK_SIZE, HEADER_LEN,
};
use proptest::prelude::*;

/// The version these tests write: the one every new file gets.
const V: EnvelopeVersion = EnvelopeVersion::CURRENT;
const SEALED_BLOCK_SIZE: usize = V.sealed_block_size();
const OVERHEAD: usize = V.block_overhead();

fn plaintext_size(backing: u64) -> Result<u64, FormatError> {
    V.plaintext_size(backing)
}
fn backing_len(plain: u64) -> u64 {
    V.backing_len(plain)
}
fn block_offset(index: u64) -> u64 {
    V.block_offset(index)
}
fn sealed_len(plain: usize) -> usize {
    V.sealed_len(plain)
}

const ARN: &str = "arn:aws:kms:local:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn new_file_key(seed: u8) -> (FileHeader, DataKey) {
    let key = DataKey::from_bytes([seed; 32]);
    let id = FileHeader::generate_file_id().unwrap();
    let header = FileHeader::new(id, ARN.into(), vec![seed, 1, 2, 3, 4], &key).unwrap();
    (header, key)
}

/// Writes a complete encrypted file (header + sealed blocks) the way the filesystem does.
fn write_file(path: &Path, header: &FileHeader, key: &DataKey, plain: &[u8]) {
    let cipher = ContentCipher::new(key, header).unwrap();
    let mut f = File::create(path).unwrap();
    f.write_all(&header.encode()).unwrap();
    let mut sealed = Vec::new();
    for (i, chunk) in plain.chunks(BLOCK_SIZE).enumerate() {
        cipher.seal_block(i as u64, chunk, &mut sealed).unwrap();
        f.write_all(&sealed).unwrap();
    }
    f.sync_all().unwrap();
}

/// Reads a whole file back, failing on the first bad block.
fn read_file(path: &Path, key: &DataKey) -> Result<Vec<u8>, FormatError> {
    let f = File::open(path).unwrap();
    let header = FileHeader::read_from(&f)?;
    let cipher = ContentCipher::new(key, &header)?;
    // The header's version fixes the layout.
    let v = header.version;
    let size = v.plaintext_size(f.metadata().unwrap().len())?;
    let mut out = Vec::new();
    let mut sealed = vec![0u8; kmsfs::format::MAX_SEALED_BLOCK_SIZE];
    let mut plain = Vec::new();
    for i in 0..block_count(size) {
        let n = (size - i * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        let region = &mut sealed[..v.sealed_len(n)];
        f.read_exact_at(region, v.block_offset(i)).unwrap();
        cipher.open_block(i, region, &mut plain)?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn header_round_trips_and_is_exactly_header_len() {
    let (header, key) = new_file_key(7);
    let bytes = header.encode();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(header.header_len(), HEADER_LEN);
    assert_eq!(&bytes[..8], b"KMSFS\0v2");
    assert_eq!(&bytes[8..10], &[0, 2]);
    let decoded = FileHeader::decode(&bytes).unwrap();
    assert_eq!(decoded, header);
    decoded.verify_commitment(&key).unwrap();
}

#[test]
fn header_decode_rejects_short_long_and_malformed_input_specifically() {
    let (header, _) = new_file_key(1);
    let bytes = header.encode();
    assert!(matches!(
        FileHeader::decode(&bytes[..HEADER_LEN - 1]),
        Err(FormatError::HeaderSize { expected: HEADER_LEN, found }) if found == HEADER_LEN - 1
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        FileHeader::decode(&long),
        Err(FormatError::HeaderSize { found, .. }) if found == HEADER_LEN + 1
    ));
    assert!(matches!(
        FileHeader::decode(&[]),
        Err(FormatError::HeaderSize { found: 0, .. })
    ));

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadMagic)
    ));

    let mut bad = bytes.clone();
    bad[8..10].copy_from_slice(&3u16.to_be_bytes());
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::UnsupportedVersion { found: 3 })
    ));
    // A known version under the other version's magic.
    let mut bad = bytes.clone();
    bad[8..10].copy_from_slice(&1u16.to_be_bytes());
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadMagic)
    ));

    let mut bad = bytes.clone();
    bad[10..12].copy_from_slice(&2048u16.to_be_bytes());
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadHeaderLength { found: 2048 })
    ));

    let mut bad = bytes.clone();
    bad[28..30].copy_from_slice(&0u16.to_be_bytes());
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadHeaderField {
            field: "key_arn",
            ..
        })
    ));

    let mut bad = bytes.clone();
    bad[30] = 0xFF; // not UTF-8
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadHeaderField {
            field: "key_arn",
            ..
        })
    ));

    let wrapped_len_at = 30 + ARN.len();
    let mut bad = bytes.clone();
    bad[wrapped_len_at..wrapped_len_at + 2].copy_from_slice(&2000u16.to_be_bytes());
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::BadHeaderField {
            field: "wrapped_key",
            ..
        })
    ));

    let mut bad = bytes.clone();
    bad[900] = 1;
    assert!(matches!(
        FileHeader::decode(&bad),
        Err(FormatError::NonZeroPadding)
    ));
}

#[test]
fn header_new_rejects_fields_that_do_not_fit() {
    let key = DataKey::from_bytes([1; 32]);
    let id = [9; 16];
    for (arn, wrapped) in [
        (String::new(), vec![1]),
        ("a".repeat(513), vec![1]),
        (ARN.to_string(), vec![]),
        (ARN.to_string(), vec![1; 961 - ARN.len()]),
    ] {
        assert!(matches!(
            FileHeader::new(id, arn, wrapped, &key),
            Err(FormatError::BadHeaderField { .. })
        ));
    }
    // The largest fields that fit: a 512-byte ARN and a wrapped key filling the rest.
    let h = FileHeader::new(id, "a".repeat(512), vec![7; 448], &key).unwrap();
    assert_eq!(FileHeader::decode(&h.encode()).unwrap(), h);
}

#[test]
fn every_flipped_header_byte_is_detected() {
    let (header, key) = new_file_key(3);
    let bytes = header.encode();
    for i in 0..HEADER_LEN {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            let outcome = FileHeader::decode(&bad).and_then(|h| ContentCipher::new(&key, &h));
            assert!(
                outcome.is_err(),
                "flipping bit {bit:#x} of header byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn wrong_data_key_fails_the_commitment() {
    let (header, _) = new_file_key(3);
    let other = DataKey::from_bytes([4; 32]);
    assert!(matches!(
        ContentCipher::new(&other, &header),
        Err(FormatError::KeyCommitment)
    ));
    assert!(matches!(
        header.verify_commitment(&other),
        Err(FormatError::KeyCommitment)
    ));
}

#[test]
fn header_copied_from_another_file_fails_the_commitment() {
    let dir = tempfile::tempdir().unwrap();
    let (ha, ka) = new_file_key(1);
    let (hb, kb) = new_file_key(2);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write_file(&a, &ha, &ka, &pattern(5000, 1));
    write_file(&b, &hb, &kb, &pattern(5000, 2));
    // B's header on A's blocks, opened with A's key (what a reader holding A's key gets).
    let f = OpenOptions::new().write(true).open(&a).unwrap();
    f.write_all_at(&hb.encode(), 0).unwrap();
    assert!(matches!(
        read_file(&a, &ka),
        Err(FormatError::KeyCommitment)
    ));
    // And with B's key the header passes but A's blocks do not.
    assert!(matches!(
        read_file(&a, &kb),
        Err(FormatError::Authentication { block: 0 })
    ));
    // A header with the same key but another file id is another header.
    let forged = FileHeader {
        file_id: hb.file_id,
        ..ha.clone()
    };
    assert!(matches!(
        ContentCipher::new(&ka, &forged),
        Err(FormatError::KeyCommitment)
    ));
}

#[test]
fn content_round_trips_for_sizes_around_block_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (header, key) = new_file_key(5);
    for len in [0, 1, 27, 28, 29, 4095, 4096, 4097, 8192, 3 * 4096 + 100] {
        let path = dir.path().join(format!("f{len}"));
        let plain = pattern(len, len as u8);
        write_file(&path, &header, &key, &plain);
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert_eq!(on_disk, backing_len(len as u64), "backing length of {len}");
        assert_eq!(plaintext_size(on_disk).unwrap(), len as u64);
        assert_eq!(
            read_file(&path, &key).unwrap(),
            plain,
            "round trip of {len}"
        );
    }
}

#[test]
fn version_1_files_still_round_trip_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes([21; 32]);
    let id = FileHeader::generate_file_id().unwrap();
    let header =
        FileHeader::with_version(EnvelopeVersion::V1, id, ARN.into(), vec![1, 2], &key).unwrap();
    assert_eq!(&header.encode()[..10], b"KMSFS\0v1\0\x01");
    let cipher = ContentCipher::new(&key, &header).unwrap();
    assert_eq!(cipher.version(), EnvelopeVersion::V1);
    for len in [1, 4096, 3 * 4096 + 100] {
        let path = dir.path().join(format!("v1-{len}"));
        let plain = pattern(len, 3);
        write_file(&path, &header, &key, &plain);
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert_eq!(on_disk, kmsfs::format::backing_len(len as u64));
        assert_eq!(read_file(&path, &key).unwrap(), plain);
        assert!(verify_file(&path, Some(&key)).is_ok());
    }
    // Version-2 blocks are 12 bytes longer: the same plaintext never has the same
    // backing length in both versions, and one version's block never opens in the other.
    let v2 = FileHeader::new(id, ARN.into(), vec![1, 2], &key).unwrap();
    let c2 = ContentCipher::new(&key, &v2).unwrap();
    let mut sealed = Vec::new();
    c2.seal_block(0, b"abc", &mut sealed).unwrap();
    assert_eq!(sealed.len(), 3 + 40);
    assert!(cipher.open_block(0, &sealed, &mut Vec::new()).is_err());
    cipher
        .seal_block(0, b"abcdefghijklmnop", &mut sealed)
        .unwrap();
    assert!(c2.open_block(0, &sealed, &mut Vec::new()).is_err());
}

#[test]
fn every_flipped_block_byte_is_an_authentication_error_never_wrong_data() {
    let (header, key) = new_file_key(6);
    let cipher = ContentCipher::new(&key, &header).unwrap();
    for plain in [pattern(4096, 1), pattern(100, 2)] {
        let mut sealed = Vec::new();
        cipher.seal_block(2, &plain, &mut sealed).unwrap();
        let mut out = Vec::new();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x04;
            let r = cipher.open_block(2, &bad, &mut out);
            assert!(
                matches!(r, Err(FormatError::Authentication { block: 2 })),
                "byte {i}: {r:?}"
            );
            assert!(out.is_empty(), "no plaintext may escape a failed block");
        }
        cipher.open_block(2, &sealed, &mut out).unwrap();
        assert_eq!(out, plain);
    }
}

#[test]
fn blocks_swapped_within_a_file_fail_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let (header, key) = new_file_key(8);
    let path = dir.path().join("f");
    write_file(&path, &header, &key, &pattern(3 * 4096, 8));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut b0 = vec![0u8; SEALED_BLOCK_SIZE];
    let mut b1 = vec![0u8; SEALED_BLOCK_SIZE];
    f.read_exact_at(&mut b0, block_offset(0)).unwrap();
    f.read_exact_at(&mut b1, block_offset(1)).unwrap();
    f.write_all_at(&b1, block_offset(0)).unwrap();
    f.write_all_at(&b0, block_offset(1)).unwrap();
    assert!(matches!(
        read_file(&path, &key),
        Err(FormatError::Authentication { block: 0 })
    ));
    // A block replayed at another index (its own content, one position later).
    let cipher = ContentCipher::new(&key, &header).unwrap();
    let mut out = Vec::new();
    assert!(cipher.open_block(0, &b1, &mut out).is_err());
    assert!(cipher.open_block(1, &b1, &mut out).is_ok());
}

#[test]
fn block_copied_from_another_file_fails_authentication_even_with_the_same_key() {
    let key = DataKey::from_bytes([9; 32]);
    let ha = FileHeader::new([1; 16], ARN.into(), vec![1], &key).unwrap();
    let hb = FileHeader::new([2; 16], ARN.into(), vec![1], &key).unwrap();
    let ca = ContentCipher::new(&key, &ha).unwrap();
    let cb = ContentCipher::new(&key, &hb).unwrap();
    let mut sealed = Vec::new();
    ca.seal_block(0, &pattern(4096, 0), &mut sealed).unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        cb.open_block(0, &sealed, &mut out),
        Err(FormatError::Authentication { block: 0 })
    ));
}

#[test]
fn holes_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (header, key) = new_file_key(10);
    let path = dir.path().join("sparse");
    // 100 bytes of data, then extend to 3 blocks + 10 bytes the way truncate does:
    // rewrite block 0 as a full block, leave the rest as a sparse (all-zero) region.
    let cipher = ContentCipher::new(&key, &header).unwrap();
    let mut block0 = pattern(100, 1);
    block0.resize(BLOCK_SIZE, 0);
    let mut sealed = Vec::new();
    cipher.seal_block(0, &block0, &mut sealed).unwrap();
    let f = File::create(&path).unwrap();
    f.write_all_at(&header.encode(), 0).unwrap();
    f.write_all_at(&sealed, block_offset(0)).unwrap();
    let size = 3 * 4096 + 10;
    f.set_len(backing_len(size)).unwrap();
    let mut expected = block0.clone();
    expected.resize(size as usize, 0);
    assert_eq!(read_file(&path, &key).unwrap(), expected);

    let mut out = vec![1u8; 3];
    cipher
        .open_block(5, &[0u8; SEALED_BLOCK_SIZE], &mut out)
        .unwrap();
    assert_eq!(out, vec![0u8; BLOCK_SIZE]);
    cipher
        .open_block(5, &[0u8; OVERHEAD + 1], &mut out)
        .unwrap();
    assert_eq!(out, vec![0u8; 1]);

    let report = verify_file(&path, Some(&key));
    assert!(
        matches!(report.outcome, FileOutcome::Ok { plaintext_size, blocks_checked: 4, holes: 3 } if plaintext_size == size),
        "{report:?}"
    );
}

#[test]
fn impossible_block_lengths_are_rejected() {
    let (header, key) = new_file_key(11);
    let cipher = ContentCipher::new(&key, &header).unwrap();
    let mut out = Vec::new();
    for len in [0, 1, OVERHEAD, SEALED_BLOCK_SIZE + 1] {
        assert!(matches!(
            cipher.open_block(0, &vec![1u8; len], &mut out),
            Err(FormatError::BadBlockLength { .. })
        ));
    }
    for len in [0, BLOCK_SIZE + 1] {
        assert!(matches!(
            cipher.seal_block(0, &vec![1u8; len], &mut out),
            Err(FormatError::BlockTooLarge { .. })
        ));
    }
}

#[test]
fn plaintext_size_table() {
    let h = HEADER_LEN as u64;
    for (v, o) in [(EnvelopeVersion::V1, 28), (EnvelopeVersion::V2, 40)] {
        let s = 4096 + o;
        assert_eq!(v.sealed_block_size() as u64, s);
        // (backing length, plaintext size or None for impossible)
        let table: &[(u64, Option<u64>)] = &[
            (0, None),
            (h - 1, None),
            (h, Some(0)),
            (h + 1, None),
            (h + o, None),
            (h + o + 1, Some(1)),
            (h + s - 1, Some(4095)),
            (h + s, Some(4096)),
            (h + s + o, None),
            (h + s + o + 1, Some(4097)),
            (h + 10 * s, Some(40960)),
        ];
        for &(len, want) in table {
            let got = v.plaintext_size(len).ok();
            assert_eq!(got, want, "{v:?} plaintext_size({len})");
            if let Some(p) = want {
                assert_eq!(v.backing_len(p), len, "{v:?} backing_len({p})");
            }
        }
        assert_eq!(v.block_offset(0), h);
        assert_eq!(v.block_offset(2), h + 2 * s);
        assert_eq!(v.block_offset(u64::MAX), u64::MAX);
        assert_eq!(v.backing_len(u64::MAX), u64::MAX);
    }
    // The free functions are version 1's arithmetic, unchanged.
    for len in [0, h, h + 29, h + 4124, h + 5000, 1 << 40] {
        assert_eq!(
            kmsfs::format::plaintext_size(len).ok(),
            EnvelopeVersion::V1.plaintext_size(len).ok()
        );
        assert_eq!(
            kmsfs::format::backing_len(len),
            EnvelopeVersion::V1.backing_len(len)
        );
    }
    assert_eq!(kmsfs::format::SEALED_BLOCK_SIZE, 4124);
    assert_eq!(block_count(0), 0);
    assert_eq!(block_count(1), 1);
    assert_eq!(block_count(4096), 1);
    assert_eq!(block_count(4097), 2);
    // No panic near the top of the range.
    assert_eq!(block_offset(u64::MAX), u64::MAX);
    assert_eq!(backing_len(u64::MAX), u64::MAX);
    assert!(block_spans(u64::MAX - 1, 10).count() <= 1);
}

#[test]
fn truncated_files_error_or_read_short_consistently_with_plaintext_size() {
    let dir = tempfile::tempdir().unwrap();
    let (header, key) = new_file_key(12);
    let plain = pattern(2 * 4096 + 500, 12);
    let full = dir.path().join("full");
    write_file(&full, &header, &key, &plain);
    let bytes = std::fs::read(&full).unwrap();
    for cut in (0..bytes.len())
        .step_by(37)
        .chain([HEADER_LEN, HEADER_LEN + SEALED_BLOCK_SIZE])
    {
        let path = dir.path().join("cut");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match read_file(&path, &key) {
            Ok(got) => {
                // Only a cut at a block boundary can read; it yields a prefix.
                assert_eq!(got.len() as u64, plaintext_size(cut as u64).unwrap());
                assert_eq!(&plain[..got.len()], &got[..], "cut at {cut}");
                assert!(cut == HEADER_LEN || (cut - HEADER_LEN).is_multiple_of(SEALED_BLOCK_SIZE));
            }
            Err(e) => assert!(e.is_integrity_failure(), "cut at {cut}: {e}"),
        }
    }
}

#[test]
fn block_spans_map_ranges_to_blocks() {
    let spans: Vec<_> = block_spans(4000, 5000).collect();
    assert_eq!(
        spans,
        vec![
            BlockSpan {
                index: 0,
                start: 4000,
                end: 4096
            },
            BlockSpan {
                index: 1,
                start: 0,
                end: 4096
            },
            BlockSpan {
                index: 2,
                start: 0,
                end: 808
            },
        ]
    );
    assert!(spans[1].is_full_block() && !spans[0].is_full_block());
    assert_eq!(spans[2].plaintext_offset(), 8192);
    assert_eq!(block_spans(10, 0).count(), 0);
    assert_eq!(
        block_spans(8192, 4096).collect::<Vec<_>>(),
        vec![BlockSpan {
            index: 2,
            start: 0,
            end: 4096
        }]
    );
}

#[test]
fn encryption_context_names_volume_and_file() {
    let ctx = encryption_context("00112233445566778899aabbccddeeff", &[0xAB; 16]);
    assert_eq!(ctx.len(), 2);
    assert_eq!(ctx["kmsfs:volume"], "00112233445566778899aabbccddeeff");
    assert_eq!(ctx["kmsfs:file"], "ab".repeat(16));
}

#[test]
fn verify_file_reports_header_size_key_and_block_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (header, key) = new_file_key(13);
    let path = dir.path().join("f");
    write_file(&path, &header, &key, &pattern(3 * 4096, 13));

    let ok = verify_file(&path, Some(&key));
    assert!(ok.is_ok(), "{ok:?}");
    assert!(matches!(
        verify_file(&path, None).outcome,
        FileOutcome::Ok {
            blocks_checked: 0,
            ..
        }
    ));
    assert!(matches!(
        verify_file(&path, Some(&DataKey::from_bytes([0; 32]))).outcome,
        FileOutcome::KeyMismatch
    ));

    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xEE], block_offset(1) + 100).unwrap();
    match verify_file(&path, Some(&key)).outcome {
        FileOutcome::BlocksFailed {
            indices,
            blocks_checked,
        } => {
            assert_eq!(indices, vec![1]);
            assert_eq!(blocks_checked, 3);
        }
        other => panic!("{other:?}"),
    }

    f.set_len(backing_len(3 * 4096) - 4096).unwrap(); // leaves a tail of only the overhead
    assert!(matches!(
        verify_file(&path, None).outcome,
        FileOutcome::SizeInconsistent { .. }
    ));

    f.write_all_at(b"NOTKMSFS", 0).unwrap();
    assert!(matches!(
        verify_file(&path, None).outcome,
        FileOutcome::HeaderDamaged {
            error: FormatError::BadMagic
        }
    ));
    assert!(matches!(
        verify_file(&dir.path().join("missing"), None).outcome,
        FileOutcome::Unreadable { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_blocks_round_trip(
        plain in proptest::collection::vec(any::<u8>(), 1..=BLOCK_SIZE),
        index in any::<u64>(),
        key in any::<[u8; 32]>(),
        id in any::<[u8; 16]>(),
    ) {
        let key = DataKey::from_bytes(key);
        let header = FileHeader::new(id, ARN.into(), vec![1], &key).unwrap();
        let cipher = ContentCipher::new(&key, &header).unwrap();
        let mut sealed = Vec::new();
        cipher.seal_block(index, &plain, &mut sealed).unwrap();
        prop_assert_eq!(sealed.len(), sealed_len(plain.len()));
        let mut out = Vec::new();
        cipher.open_block(index, &sealed, &mut out).unwrap();
        prop_assert_eq!(out, plain);
        prop_assert!(cipher.open_block(index ^ 1, &sealed, &mut Vec::new()).is_err());
    }

    #[test]
    fn random_headers_round_trip(
        arn in "[a-zA-Z0-9:/_-]{1,200}",
        wrapped in proptest::collection::vec(any::<u8>(), 1..=700),
        id in any::<[u8; 16]>(),
    ) {
        let key = DataKey::from_bytes([1; 32]);
        let h = FileHeader::new(id, arn, wrapped, &key).unwrap();
        let decoded = FileHeader::decode(&h.encode()).unwrap();
        decoded.verify_commitment(&key).unwrap();
        prop_assert_eq!(decoded, h);
    }

    #[test]
    fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let _ = FileHeader::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_header_sized_garbage_behind_a_valid_prefix(
        mut bytes in proptest::collection::vec(any::<u8>(), HEADER_LEN),
        arn_len in any::<u16>(),
    ) {
        bytes[..8].copy_from_slice(b"KMSFS\0v1");
        bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
        bytes[10..12].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        bytes[28..30].copy_from_slice(&(arn_len % 600).to_be_bytes());
        let _ = FileHeader::decode(&bytes);
    }
}

#[test]
fn batched_sealing_and_appending_opens_match_the_per_block_format() {
    let (header, key) = new_file_key(12);
    let cipher = ContentCipher::new(&key, &header).unwrap();
    for len in [1usize, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 17] {
        let plain = pattern(len, 12);
        let mut sealed = Vec::new();
        cipher.seal_blocks(5, &plain, &mut sealed).unwrap();
        assert_eq!(
            sealed.len(),
            len + len.div_ceil(BLOCK_SIZE) * (sealed_len(0)),
            "len {len}"
        );
        let mut out = Vec::new();
        let mut one = Vec::new();
        for (i, block) in sealed.chunks(SEALED_BLOCK_SIZE).enumerate() {
            // Each block opens alone, at its own index only.
            cipher.open_block(5 + i as u64, block, &mut one).unwrap();
            assert!(cipher.open_block(4 + i as u64, block, &mut one).is_err());
            cipher
                .open_block_append(5 + i as u64, block, &mut out)
                .unwrap();
        }
        assert_eq!(out, plain, "len {len}");
        let before = out.clone();
        let mut bad = sealed[..SEALED_BLOCK_SIZE.min(sealed.len())].to_vec();
        bad[NONCE_LEN_FOR_TEST] ^= 1;
        assert!(matches!(
            cipher.open_block_append(5, &bad, &mut out),
            Err(FormatError::Authentication { block: 5 })
        ));
        assert_eq!(out, before, "a failed open appends nothing");
    }
    // Holes append zeros.
    let mut out = vec![7u8];
    cipher
        .open_block_append(0, &vec![0u8; sealed_len(100)], &mut out)
        .unwrap();
    assert_eq!(out, [&[7u8][..], &[0u8; 100][..]].concat());
}

const NONCE_LEN_FOR_TEST: usize = 12;

#[test]
fn opening_in_place_gives_the_same_plaintext_and_refuses_every_flipped_byte() {
    for version in [EnvelopeVersion::V1, EnvelopeVersion::V2] {
        let key = DataKey::from_bytes([13; 32]);
        let id = FileHeader::generate_file_id().unwrap();
        let header = FileHeader::with_version(version, id, ARN.into(), vec![1, 2], &key).unwrap();
        let cipher = ContentCipher::new(&key, &header).unwrap();
        for plain in [pattern(4096, 3), pattern(1, 4), pattern(777, 5)] {
            let mut sealed = Vec::new();
            cipher.seal_block(9, &plain, &mut sealed).unwrap();
            let mut buf = sealed.clone();
            let range = cipher.open_block_in_place(9, &mut buf).unwrap();
            assert_eq!(&buf[range], &plain[..], "{version:?}");
            for i in (0..sealed.len()).step_by(7) {
                let mut bad = sealed.clone();
                bad[i] ^= 0x10;
                assert!(
                    matches!(
                        cipher.open_block_in_place(9, &mut bad),
                        Err(FormatError::Authentication { block: 9 })
                    ),
                    "{version:?} byte {i}"
                );
            }
            // At another index: the same bytes do not open.
            let mut moved = sealed.clone();
            assert!(cipher.open_block_in_place(10, &mut moved).is_err());
        }
        // A hole is its own (zero) plaintext.
        let mut hole = vec![0u8; version.sealed_len(100)];
        let range = cipher.open_block_in_place(0, &mut hole).unwrap();
        assert_eq!(&hole[range], &[0u8; 100][..]);
    }
}
