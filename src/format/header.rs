//! The envelope header at the start of every encrypted file: magic, version, file id,
//! the CMK's ARN, the wrapped data key and the key commitment (see docs/FORMAT.md).
//! Versions 1 and 2 share this layout; they differ in the magic's last byte, the
//! version field, and how blocks are sealed (see [`ContentCipher`](crate::format::ContentCipher)).
//! Owns encoding, strict decoding and the commitment; never unwraps a data key (that is
//! the key service's job) and never sees content.

use std::collections::BTreeMap;
use std::fs::File;

use std::os::unix::fs::FileExt;

use crate::crypto::{
    hkdf_sealing_key, hmac_sha256, hmac_sha256_verify, DataKey, SEAL_OVERHEAD, XSEAL_OVERHEAD,
};

use super::{FormatError, BLOCK_SIZE, HEADER_LEN};

const BLOCK: u64 = BLOCK_SIZE as u64;
const HEADER: u64 = HEADER_LEN as u64;

/// The version of a file's envelope (header field `version`): it fixes how blocks are
/// sealed and so the per-block overhead. Files keep the version they were written with
/// until they are re-keyed (truncated to zero or first written while empty), which
/// writes [`EnvelopeVersion::CURRENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeVersion {
    /// AES-256-GCM with a random 96-bit nonce per block: `nonce (12) || ct || tag (16)`.
    V1,
    /// XAES-256-GCM with a random 192-bit nonce per block: `nonce (24) || ct || tag (16)`.
    V2,
}

impl EnvelopeVersion {
    /// The version every new file (and every re-keyed file) gets.
    pub const CURRENT: EnvelopeVersion = EnvelopeVersion::V2;

    /// The header's `version` field.
    pub const fn number(self) -> u16 {
        match self {
            EnvelopeVersion::V1 => 1,
            EnvelopeVersion::V2 => 2,
        }
    }

    /// The version a header's `version` field names, if this code knows it.
    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            1 => Some(EnvelopeVersion::V1),
            2 => Some(EnvelopeVersion::V2),
            _ => None,
        }
    }

    /// Bytes a sealed block adds to its plaintext (nonce + tag): 28 (v1), 40 (v2).
    pub const fn block_overhead(self) -> usize {
        match self {
            EnvelopeVersion::V1 => SEAL_OVERHEAD,
            EnvelopeVersion::V2 => XSEAL_OVERHEAD,
        }
    }

    /// Backing bytes of a full sealed block: 4124 (v1), 4136 (v2).
    pub const fn sealed_block_size(self) -> usize {
        BLOCK_SIZE + self.block_overhead()
    }

    /// Sealed length of a block holding `plain_len` (1..=4096) plaintext bytes.
    pub const fn sealed_len(self, plain_len: usize) -> usize {
        plain_len + self.block_overhead()
    }

    /// Plaintext size of a file of this version whose backing file is `backing_len`
    /// bytes long (header included). [`FormatError::BadBackingLength`] for lengths no
    /// file can have (shorter than the header, or a last block no longer than the
    /// overhead).
    pub fn plaintext_size(self, backing_len: u64) -> Result<u64, FormatError> {
        let bad = FormatError::BadBackingLength { backing_len };
        let sealed = self.sealed_block_size() as u64;
        let overhead = self.block_overhead() as u64;
        let Some(content) = backing_len.checked_sub(HEADER) else {
            return Err(bad);
        };
        let (full, rest) = (content / sealed, content % sealed);
        if rest == 0 {
            Ok(full * BLOCK)
        } else if rest <= overhead {
            Err(bad)
        } else {
            Ok(full * BLOCK + rest - overhead)
        }
    }

    /// Backing length of a file of this version with `plaintext_len` plaintext bytes
    /// (header included).
    pub fn backing_len(self, plaintext_len: u64) -> u64 {
        let (full, rest) = (plaintext_len / BLOCK, plaintext_len % BLOCK);
        let last = if rest == 0 {
            0
        } else {
            rest + self.block_overhead() as u64
        };
        // Saturates for sizes no filesystem can hold rather than wrapping.
        HEADER
            .saturating_add(full.saturating_mul(self.sealed_block_size() as u64))
            .saturating_add(last)
    }

    /// Backing offset where sealed block `index` starts.
    pub fn block_offset(self, index: u64) -> u64 {
        HEADER.saturating_add(index.saturating_mul(self.sealed_block_size() as u64))
    }
}

/// Offsets of the fixed-position fields (docs/FORMAT.md, "Header").
const VERSION_AT: usize = 8;
const HEADER_LEN_AT: usize = 10;
const FILE_ID_AT: usize = 12;
const ARN_LEN_AT: usize = 28;
const ARN_AT: usize = 30;
/// The commitment is the header's last 32 bytes; it covers everything before it.
const COMMITMENT_AT: usize = HEADER_LEN - 32;
/// Room for ARN + wrapped key: header minus the fixed fields (64 bytes).
const VARIABLE_ROOM: usize = HEADER_LEN - 64;

/// A file's random 128-bit id (HKDF salt of its keys, part of every block's AAD).
pub type FileId = [u8; 16];

/// The first 8 bytes of a version-1 header.
pub const MAGIC: [u8; 8] = *b"KMSFS\0v1";
/// The first 8 bytes of a version-2 header.
pub const MAGIC_V2: [u8; 8] = *b"KMSFS\0v2";
/// What every version's magic starts with.
const MAGIC_FAMILY: &[u8] = b"KMSFS\0";

/// The magic of a header of `version`.
fn magic_of(version: EnvelopeVersion) -> [u8; 8] {
    match version {
        EnvelopeVersion::V1 => MAGIC,
        EnvelopeVersion::V2 => MAGIC_V2,
    }
}
/// HKDF info label of the key-commitment key (derived from the data key, salt = file id).
pub const COMMITMENT_KEY_INFO: &[u8] = b"kmsfs v1 key commitment";
/// Longest key ARN the header accepts (bytes).
pub const MAX_KEY_ARN_LEN: usize = 512;
/// Encryption-context key naming the volume.
pub const CONTEXT_VOLUME: &str = "kmsfs:volume";
/// Encryption-context key naming the file.
pub const CONTEXT_FILE: &str = "kmsfs:file";

/// The encryption context of every key-service call about a file:
/// `{"kmsfs:volume": volume_id, "kmsfs:file": hex(file_id)}`.
pub fn encryption_context(volume_id: &str, file_id: &FileId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CONTEXT_VOLUME.to_string(), volume_id.to_string()),
        (CONTEXT_FILE.to_string(), hex::encode(file_id)),
    ])
}

/// A decoded (or about-to-be-written) envelope header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// The envelope version: fixes the magic, and how blocks are sealed.
    pub version: EnvelopeVersion,
    pub file_id: FileId,
    /// ARN of the CMK that wrapped the data key.
    pub key_arn: String,
    /// The KMS ciphertext blob of the data key (opaque here).
    pub wrapped_key: Vec<u8>,
    /// HMAC-SHA256 under the commitment key over header bytes 0..992.
    pub commitment: [u8; 32],
}

impl FileHeader {
    /// A fresh random file id (for a new file, before asking the key service for a key,
    /// since the id is in the encryption context).
    pub fn generate_file_id() -> Result<FileId, FormatError> {
        let mut id = [0u8; 16];
        crate::crypto::random_fill(&mut id).map_err(|_| FormatError::Random)?;
        Ok(id)
    }

    /// Builds a header of the current envelope version ([`EnvelopeVersion::CURRENT`])
    /// and computes its commitment under `data_key`. Fails if the ARN or wrapped key is
    /// empty or does not fit ([`FormatError::BadHeaderField`]).
    pub fn new(
        file_id: FileId,
        key_arn: String,
        wrapped_key: Vec<u8>,
        data_key: &DataKey,
    ) -> Result<FileHeader, FormatError> {
        Self::with_version(
            EnvelopeVersion::CURRENT,
            file_id,
            key_arn,
            wrapped_key,
            data_key,
        )
    }

    /// Like [`Self::new`] for an explicit version (tests and fixtures of old versions;
    /// the filesystem writes only the current one).
    pub fn with_version(
        version: EnvelopeVersion,
        file_id: FileId,
        key_arn: String,
        wrapped_key: Vec<u8>,
        data_key: &DataKey,
    ) -> Result<FileHeader, FormatError> {
        check_field_lengths(key_arn.len(), wrapped_key.len())?;
        let mut header = FileHeader {
            version,
            file_id,
            key_arn,
            wrapped_key,
            commitment: [0; 32],
        };
        header.commitment = commitment(data_key, &file_id, &header.committed_bytes());
        Ok(header)
    }

    /// Exactly [`super::HEADER_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.committed_bytes();
        out.extend_from_slice(&self.commitment);
        out
    }

    /// Header bytes `0..992`: everything the commitment covers, padding included.
    /// Field lengths were checked by `new` or `decode` (the only constructors besides a
    /// struct literal); a struct literal with oversized fields still yields exactly 992
    /// bytes (truncated), which then fails its commitment instead of panicking.
    fn committed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&magic_of(self.version));
        out.extend_from_slice(&self.version.number().to_be_bytes());
        out.extend_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        out.extend_from_slice(&self.file_id);
        out.extend_from_slice(&(self.key_arn.len() as u16).to_be_bytes());
        out.extend_from_slice(self.key_arn.as_bytes());
        out.extend_from_slice(&(self.wrapped_key.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.resize(COMMITMENT_AT, 0);
        out
    }

    /// Strict decoding of exactly [`super::HEADER_LEN`] bytes: rejects short or long
    /// input, bad magic, unknown version, bad lengths, non-UTF-8 ARN and non-zero padding,
    /// each with its own error. Does not check the commitment (that needs the data key:
    /// see [`Self::verify_commitment`]).
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, FormatError> {
        let bytes: &[u8; HEADER_LEN] = bytes.try_into().map_err(|_| FormatError::HeaderSize {
            expected: HEADER_LEN,
            found: bytes.len(),
        })?;
        let version = check_magic_and_version(bytes)?;
        let header_len = read_u16(bytes, HEADER_LEN_AT);
        if usize::from(header_len) != HEADER_LEN {
            return Err(FormatError::BadHeaderLength {
                found: header_len.into(),
            });
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[FILE_ID_AT..ARN_LEN_AT]);

        let arn_len = usize::from(read_u16(bytes, ARN_LEN_AT));
        check_arn_len(arn_len)?;
        let arn_end = ARN_AT + arn_len;
        let key_arn = std::str::from_utf8(&bytes[ARN_AT..arn_end])
            .map_err(|_| FormatError::BadHeaderField {
                field: "key_arn",
                reason: "not UTF-8".into(),
            })?
            .to_string();

        let wrapped_len = usize::from(read_u16(bytes, arn_end));
        check_wrapped_len(arn_len, wrapped_len)?;
        let wrapped_at = arn_end + 2;
        let wrapped_end = wrapped_at + wrapped_len;
        let wrapped_key = bytes[wrapped_at..wrapped_end].to_vec();

        if bytes[wrapped_end..COMMITMENT_AT].iter().any(|&b| b != 0) {
            return Err(FormatError::NonZeroPadding);
        }
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&bytes[COMMITMENT_AT..]);
        Ok(FileHeader {
            version,
            file_id,
            key_arn,
            wrapped_key,
            commitment,
        })
    }

    /// Reads and decodes the header at offset 0 of `file` (positional read; the file's
    /// cursor is not used). A file shorter than the header is
    /// [`FormatError::HeaderSize`].
    pub fn read_from(file: &File) -> Result<FileHeader, FormatError> {
        let mut buf = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            match file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FormatError::IoNoPath(e)),
            }
        }
        Self::decode(&buf[..filled])
    }

    /// Reads only the magic and version of the header of `file` (12 bytes): enough for
    /// the size arithmetic of `stat`, without decoding the rest.
    pub fn read_version(file: &File) -> Result<EnvelopeVersion, FormatError> {
        let mut buf = [0u8; HEADER_LEN_AT];
        // One positional read of a regular file returns every byte up to the length.
        let found = loop {
            match file.read_at(&mut buf, 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FormatError::IoNoPath(e)),
            }
        };
        if found < buf.len() {
            return Err(FormatError::HeaderSize {
                expected: HEADER_LEN,
                found,
            });
        }
        check_magic_and_version(&buf)
    }

    /// Encoded length: [`super::HEADER_LEN`] for every version-1 and version-2 header.
    pub fn header_len(&self) -> usize {
        super::HEADER_LEN
    }

    /// Checks that `data_key` is the key this header commits to
    /// ([`FormatError::KeyCommitment`] otherwise), in constant time.
    pub fn verify_commitment(&self, data_key: &DataKey) -> Result<(), FormatError> {
        let key = hkdf_sealing_key(data_key, &self.file_id, COMMITMENT_KEY_INFO);
        if hmac_sha256_verify(&key, &self.committed_bytes(), &self.commitment) {
            Ok(())
        } else {
            Err(FormatError::KeyCommitment)
        }
    }
}

/// HMAC-SHA256 under HKDF(data key, salt = file id, info = [`COMMITMENT_KEY_INFO`]).
fn commitment(data_key: &DataKey, file_id: &FileId, committed: &[u8]) -> [u8; 32] {
    let key = hkdf_sealing_key(data_key, file_id, COMMITMENT_KEY_INFO);
    hmac_sha256(&key, committed)
}

/// The version named by the first 10 bytes of `bytes` (which holds at least that many),
/// checking that the magic belongs to kmsfs ([`FormatError::BadMagic`]), the version is
/// known ([`FormatError::UnsupportedVersion`]) and the magic is that version's.
fn check_magic_and_version(bytes: &[u8]) -> Result<EnvelopeVersion, FormatError> {
    let (Some(magic), Some(&[hi, lo])) = (
        bytes.get(..VERSION_AT),
        bytes.get(VERSION_AT..HEADER_LEN_AT),
    ) else {
        return Err(FormatError::BadMagic);
    };
    if !magic.starts_with(MAGIC_FAMILY) {
        return Err(FormatError::BadMagic);
    }
    let number = u16::from_be_bytes([hi, lo]);
    let version = EnvelopeVersion::from_number(number).ok_or(FormatError::UnsupportedVersion {
        found: number.into(),
    })?;
    if magic != magic_of(version) {
        return Err(FormatError::BadMagic);
    }
    Ok(version)
}

fn read_u16(bytes: &[u8; HEADER_LEN], at: usize) -> u16 {
    // Every caller passes at <= 30 + 512, far inside the 1024-byte array.
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn check_arn_len(len: usize) -> Result<(), FormatError> {
    if len == 0 || len > MAX_KEY_ARN_LEN {
        return Err(FormatError::BadHeaderField {
            field: "key_arn",
            reason: format!("length {len} is not in 1..={MAX_KEY_ARN_LEN}"),
        });
    }
    Ok(())
}

fn check_wrapped_len(arn_len: usize, len: usize) -> Result<(), FormatError> {
    let max = VARIABLE_ROOM - arn_len;
    if len == 0 || len > max {
        return Err(FormatError::BadHeaderField {
            field: "wrapped_key",
            reason: format!("length {len} is not in 1..={max} (with a {arn_len}-byte key ARN)"),
        });
    }
    Ok(())
}

fn check_field_lengths(arn_len: usize, wrapped_len: usize) -> Result<(), FormatError> {
    check_arn_len(arn_len)?;
    check_wrapped_len(arn_len, wrapped_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_from_reports_an_io_error_as_such() {
        // A descriptor that cannot be read (opened write-only): read_at fails with
        // EBADF, which must surface as an I/O error, not as a short header.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let key = DataKey::from_bytes([2; 32]);
        let h = FileHeader::new(
            [7; 16],
            "arn:aws:kms:local:1:key/k".into(),
            vec![1; 9],
            &key,
        )
        .unwrap();
        std::fs::write(&path, h.encode()).unwrap();
        let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match FileHeader::read_from(&write_only) {
            Err(FormatError::IoNoPath(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        // A directory: EISDIR.
        let d = File::open(dir.path()).unwrap();
        assert!(matches!(
            FileHeader::read_from(&d),
            Err(FormatError::IoNoPath(_))
        ));
        // The same file read normally decodes, and a short file is HeaderSize.
        let f = File::open(&path).unwrap();
        assert_eq!(FileHeader::read_from(&f).unwrap(), h);
        std::fs::write(&path, &h.encode()[..100]).unwrap();
        let f = File::open(&path).unwrap();
        assert!(matches!(
            FileHeader::read_from(&f),
            Err(FormatError::HeaderSize {
                expected: HEADER_LEN,
                found: 100
            })
        ));
    }

    /// The byte positions docs/FORMAT.md documents, checked on an encoded header.
    #[test]
    fn encoded_layout_matches_the_documented_offsets() {
        let key = DataKey::from_bytes([1; 32]);
        let arn = "arn:aws:kms:local:1:key/k";
        let h = FileHeader::with_version(
            EnvelopeVersion::V1,
            [0xEE; 16],
            arn.into(),
            vec![0xCC; 5],
            &key,
        )
        .unwrap();
        let b = h.encode();
        let a = arn.len();
        assert_eq!(&b[0..8], b"KMSFS\0v1");
        assert_eq!(&b[8..10], &[0, 1]);
        assert_eq!(&b[10..12], &1024u16.to_be_bytes());
        assert_eq!(&b[12..28], &[0xEE; 16]);
        assert_eq!(&b[28..30], &(a as u16).to_be_bytes());
        assert_eq!(&b[30..30 + a], arn.as_bytes());
        assert_eq!(&b[30 + a..32 + a], &[0, 5]);
        assert_eq!(&b[32 + a..37 + a], &[0xCC; 5]);
        assert!(b[37 + a..992].iter().all(|&x| x == 0));
        let commit_key = hkdf_sealing_key(&key, &[0xEE; 16], COMMITMENT_KEY_INFO);
        assert_eq!(&b[992..], &hmac_sha256(&commit_key, &b[..992]));

        // Version 2: same layout, its own magic and version; the commitment covers both.
        let h2 = FileHeader::new([0xEE; 16], arn.into(), vec![0xCC; 5], &key).unwrap();
        let b2 = h2.encode();
        assert_eq!(&b2[0..8], b"KMSFS\0v2");
        assert_eq!(&b2[8..10], &[0, 2]);
        assert_eq!(b2[10..992], b[10..992]);
        assert_eq!(&b2[992..], &hmac_sha256(&commit_key, &b2[..992]));
        assert_eq!(FileHeader::decode(&b2).unwrap(), h2);
        // A version field that disagrees with the magic is refused either way.
        let mut mixed = b2.clone();
        mixed[9] = 1;
        assert!(matches!(
            FileHeader::decode(&mixed),
            Err(FormatError::BadMagic)
        ));
        mixed[9] = 3;
        assert!(matches!(
            FileHeader::decode(&mixed),
            Err(FormatError::UnsupportedVersion { found: 3 })
        ));
    }
}
