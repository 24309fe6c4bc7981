//! Content blocks: one AEAD message per 4096-byte block under a per-file content key,
//! with the file id and block index as associated data; holes (all-zero regions) read
//! as zeros; and the arithmetic between plaintext offsets/sizes and backing
//! offsets/sizes, which depends on the envelope version (its per-block overhead).
//! Never does I/O: the filesystem reads and writes the bytes, this module seals and
//! opens them.

use crate::crypto::{hkdf_sealing_key, CryptoError, DataKey, Sealer, XSealer, TAG_LEN};

use super::header::{FileHeader, FileId};
// The version is a header field and lives there; re-exported so the path
// `format::content::EnvelopeVersion` keeps working.
pub use super::header::EnvelopeVersion;
use super::{FormatError, BLOCK_SIZE};

const BLOCK: u64 = BLOCK_SIZE as u64;

/// HKDF info label of the version-1 content key (derived from the data key, salt =
/// file id): the AES-256-GCM key of every block.
pub const CONTENT_KEY_INFO: &[u8] = b"kmsfs v1 content key";
/// HKDF info label of the version-2 content key (same inputs): the XAES-256-GCM key
/// from which each block's subkey is derived. A separate label keeps the two versions'
/// keys independent even for the same data key and file id.
pub const CONTENT_KEY_INFO_V2: &[u8] = b"kmsfs v2 content key";

/// [`EnvelopeVersion::plaintext_size`] of a version-1 file.
pub fn plaintext_size(backing_len: u64) -> Result<u64, FormatError> {
    EnvelopeVersion::V1.plaintext_size(backing_len)
}

/// [`EnvelopeVersion::backing_len`] of a version-1 file.
pub fn backing_len(plaintext_len: u64) -> u64 {
    EnvelopeVersion::V1.backing_len(plaintext_len)
}

/// [`EnvelopeVersion::block_offset`] of a version-1 file.
pub fn block_offset(index: u64) -> u64 {
    EnvelopeVersion::V1.block_offset(index)
}

/// Number of blocks holding `plaintext_len` bytes (0 for an empty file; any version).
pub fn block_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(BLOCK)
}

/// [`EnvelopeVersion::sealed_len`] of a version-1 block.
pub fn sealed_len(plain_len: usize) -> usize {
    EnvelopeVersion::V1.sealed_len(plain_len)
}

/// The part of one block that a plaintext byte range touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// Block index.
    pub index: u64,
    /// First touched byte, relative to the block's plaintext start.
    pub start: usize,
    /// One past the last touched byte, relative to the block's plaintext start
    /// (`start < end <= BLOCK_SIZE`).
    pub end: usize,
}

impl BlockSpan {
    /// True if the span covers the whole 4096-byte block (no read-modify-write needed
    /// when writing it, provided the block is not the file's last partial block).
    pub fn is_full_block(&self) -> bool {
        self.start == 0 && self.end == super::BLOCK_SIZE
    }

    /// Plaintext offset of the span's first byte.
    pub fn plaintext_offset(&self) -> u64 {
        self.index * super::BLOCK_SIZE as u64 + self.start as u64
    }
}

/// The blocks touched by plaintext bytes `[offset, offset + len)`, in order. Empty for
/// `len == 0`. Saturates instead of overflowing near `u64::MAX`.
pub fn block_spans(offset: u64, len: u64) -> impl Iterator<Item = BlockSpan> {
    let end = offset.saturating_add(len);
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let index = pos / BLOCK;
        let block_start = index * BLOCK;
        let start = pos - block_start;
        let stop = (end - block_start).min(BLOCK);
        pos = block_start + stop;
        // start < stop <= BLOCK_SIZE, so both fit in usize.
        Some(BlockSpan {
            index,
            start: start as usize,
            end: stop as usize,
        })
    })
}

/// The block AEAD of one file, by envelope version.
// One per open file, never moved in the block path; the variants' sizes depend on the
// AES-GCM backend (ring's key is smaller than aes-gcm's), and boxing the larger would
// add an allocation per open and a pointer chase per block for nothing.
#[allow(clippy::large_enum_variant)]
enum BlockSealer {
    V1(Sealer),
    V2(XSealer),
}

/// Seals and opens the blocks of one file. Built once per open file: the commitment is
/// checked and the content key derived here, so the per-block path derives nothing
/// from the data key and allocates nothing (it writes into caller buffers).
pub struct ContentCipher {
    file_id: FileId,
    version: EnvelopeVersion,
    sealer: BlockSealer,
}

impl std::fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentCipher(..)")
    }
}

impl ContentCipher {
    /// Verifies `header`'s commitment to `data_key` ([`FormatError::KeyCommitment`]),
    /// then derives the content key HKDF-SHA256(data key, salt = file id, info =
    /// [`CONTENT_KEY_INFO`] (v1) or [`CONTENT_KEY_INFO_V2`] (v2)) for the header's
    /// version.
    pub fn new(data_key: &DataKey, header: &FileHeader) -> Result<ContentCipher, FormatError> {
        header.verify_commitment(data_key)?;
        let sealer = match header.version {
            EnvelopeVersion::V1 => BlockSealer::V1(Sealer::new(&hkdf_sealing_key(
                data_key,
                &header.file_id,
                CONTENT_KEY_INFO,
            ))),
            EnvelopeVersion::V2 => BlockSealer::V2(XSealer::new(&hkdf_sealing_key(
                data_key,
                &header.file_id,
                CONTENT_KEY_INFO_V2,
            ))),
        };
        Ok(ContentCipher {
            file_id: header.file_id,
            version: header.version,
            sealer,
        })
    }

    /// `file id (16) || block index (u64 BE)`, on the stack.
    fn aad(&self, index: u64) -> [u8; 24] {
        let mut aad = [0u8; 24];
        let (id, idx) = aad.split_at_mut(16);
        id.copy_from_slice(&self.file_id);
        idx.copy_from_slice(&index.to_be_bytes());
        aad
    }

    /// The file id this cipher binds blocks to.
    pub fn file_id(&self) -> &FileId {
        &self.file_id
    }

    /// The envelope version of the file (it fixes the block layout and size arithmetic).
    pub fn version(&self) -> EnvelopeVersion {
        self.version
    }

    /// Seals block `index` (1..=4096 plaintext bytes) into `out` (cleared first):
    /// `nonce || ciphertext || tag (16)` with a fresh random nonce (12 bytes in v1, 24
    /// in v2).
    pub fn seal_block(
        &self,
        index: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        if plaintext.is_empty() || plaintext.len() > BLOCK_SIZE {
            return Err(FormatError::BlockTooLarge {
                len: plaintext.len(),
            });
        }
        let aad = self.aad(index);
        match &self.sealer {
            BlockSealer::V1(s) => s.seal_into(&aad, plaintext, out),
            BlockSealer::V2(s) => s.seal_into(&aad, plaintext, out),
        }
        // Encryption itself cannot fail for a block this size; only drawing the nonce
        // from the OS can.
        .map_err(|_: CryptoError| FormatError::Random)
    }

    /// Seals consecutive blocks `first, first + 1, ...` from `plaintext` (every block
    /// [`BLOCK_SIZE`] bytes but the last, which holds the rest) and appends their sealed
    /// forms to `out`, back to back as they lie in the file. Same bytes as
    /// [`Self::seal_block`] per block, with one draw from the OS for all nonces.
    pub fn seal_blocks(
        &self,
        first: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        if plaintext.is_empty() {
            return Err(FormatError::BlockTooLarge { len: 0 });
        }
        let aad = |i: usize| self.aad(first + i as u64);
        match &self.sealer {
            BlockSealer::V1(s) => s.seal_chunks_into(plaintext, BLOCK_SIZE, aad, out),
            BlockSealer::V2(s) => s.seal_chunks_into(plaintext, BLOCK_SIZE, aad, out),
        }
        .map_err(|_: CryptoError| FormatError::Random)
    }

    /// The length check every open does first.
    fn check_sealed_len(&self, index: u64, sealed: &[u8]) -> Result<(), FormatError> {
        let overhead = self.version.block_overhead();
        if sealed.len() <= overhead || sealed.len() > BLOCK_SIZE + overhead {
            return Err(FormatError::BadBlockLength {
                block: index,
                len: sealed.len(),
            });
        }
        Ok(())
    }

    /// Like [`Self::open_block`], but appends the plaintext to `out`; on failure `out`
    /// keeps exactly what it held before.
    pub fn open_block_append(
        &self,
        index: u64,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.check_sealed_len(index, sealed)?;
        if sealed.iter().all(|&b| b == 0) {
            out.resize(out.len() + sealed.len() - self.version.block_overhead(), 0);
            return Ok(());
        }
        let aad = self.aad(index);
        match &self.sealer {
            BlockSealer::V1(s) => s.open_append(&aad, sealed, out),
            BlockSealer::V2(s) => s.open_append(&aad, sealed, out),
        }
        .map_err(|_| FormatError::Authentication { block: index })
    }

    /// Opens sealed block `index` where it lies in `sealed` (the read path's buffer),
    /// returning the range of `sealed` that then holds its plaintext (after the nonce,
    /// before the tag). A hole (all zeros) is already its zero plaintext. On
    /// [`FormatError::Authentication`] the caller must discard the buffer.
    pub fn open_block_in_place(
        &self,
        index: u64,
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, FormatError> {
        self.check_sealed_len(index, sealed)?;
        let nonce_len = self.version.block_overhead() - TAG_LEN;
        let plain = nonce_len..sealed.len() - TAG_LEN;
        if sealed.iter().all(|&b| b == 0) {
            return Ok(plain);
        }
        let aad = self.aad(index);
        match &self.sealer {
            BlockSealer::V1(s) => s.open_in_place(&aad, sealed),
            BlockSealer::V2(s) => s.open_in_place(&aad, sealed),
        }
        .map_err(|_| FormatError::Authentication { block: index })?;
        Ok(plain)
    }

    /// Opens sealed block `index` into `out` (cleared first). An all-zero region is a
    /// hole and yields `sealed.len() - overhead` zero bytes. Anything that fails
    /// authentication is [`FormatError::Authentication`] and leaves `out` empty: never
    /// wrong data.
    pub fn open_block(
        &self,
        index: u64,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        out.clear();
        // A hole is detected inside: `all` stops at the first non-zero byte, so for a
        // real block (random nonce) this costs one comparison.
        self.open_block_append(index, sealed, out)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::*;

    /// The committed fixture volumes must open with whichever AES-GCM implementation
    /// this build seals with (CI runs this with `--features fast-aead` too):
    /// `hello.txt` of tests/fixtures/format-v1 and format-v2 (data key 0x42 × 32, file
    /// id 0x51 × 16, see their README) decrypts to its known bytes, hole and partial
    /// last block included, and a flipped bit in a block is an authentication error.
    #[test]
    fn fixture_volumes_open_with_this_builds_aead_backend() {
        let mut want: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        want.extend(std::iter::repeat_n(0, BLOCK_SIZE));
        want.extend_from_slice(&[b'z'; 100]);
        let key = DataKey::from_bytes([0x42; 32]);
        for fixture in ["format-v1", "format-v2"] {
            let backing = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(fixture)
                .join("backing");
            let mut opened = 0;
            for entry in std::fs::read_dir(&backing).unwrap() {
                let path = entry.unwrap().path();
                let Ok(file) = std::fs::File::open(&path) else {
                    continue;
                };
                if !file.metadata().unwrap().is_file() {
                    continue;
                }
                // Volume, directory and long-name files are not content files.
                let Ok(header) = FileHeader::read_from(&file) else {
                    continue;
                };
                if header.file_id != [0x51; 16] {
                    continue;
                }
                let cipher = ContentCipher::new(&key, &header).unwrap();
                let v = header.version;
                let size = v.plaintext_size(file.metadata().unwrap().len()).unwrap();
                assert_eq!(size, want.len() as u64, "{fixture}");
                let mut got = Vec::new();
                let mut block = Vec::new();
                for i in 0..block_count(size) {
                    let n = (size - i * BLOCK).min(BLOCK) as usize;
                    let mut sealed = vec![0u8; v.sealed_len(n)];
                    file.read_exact_at(&mut sealed, v.block_offset(i)).unwrap();
                    cipher.open_block(i, &sealed, &mut block).unwrap();
                    got.extend_from_slice(&block);
                    if i != 1 {
                        // Block 1 is a hole (all zeros on disk); the others are sealed.
                        sealed[n / 2] ^= 0x10;
                        let res = cipher.open_block(i, &sealed, &mut block);
                        assert!(
                            matches!(res, Err(FormatError::Authentication { block }) if block == i),
                            "{fixture} block {i}: {res:?}"
                        );
                    }
                }
                assert_eq!(got, want, "{fixture}");
                opened += 1;
            }
            assert_eq!(opened, 1, "{fixture}: hello.txt found once");
        }
    }
}
