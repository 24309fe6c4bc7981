//! Content blocks: AES-256-GCM per 4096-byte block under a per-file content key, with
//! the file id and block index as associated data; holes (all-zero regions) read as
//! zeros; and the arithmetic between plaintext offsets/sizes and backing offsets/sizes.
//! Never does I/O: the filesystem reads and writes the bytes, this module seals and
//! opens them.

use crate::crypto::{DataKey, Sealer};

use super::header::{FileHeader, FileId};
use super::FormatError;

/// HKDF info label of the content key (derived from the data key, salt = file id).
pub const CONTENT_KEY_INFO: &[u8] = b"kmsfs v1 content key";

/// Plaintext size of a file whose backing file is `backing_len` bytes long (header
/// included). [`FormatError::BadBackingLength`] for lengths no file can have (shorter
/// than the header, or a last block of 1..=28 bytes).
pub fn plaintext_size(backing_len: u64) -> Result<u64, FormatError> {
    let _ = backing_len;
    unimplemented!()
}

/// Backing length of a file with `plaintext_len` plaintext bytes (header included).
pub fn backing_len(plaintext_len: u64) -> u64 {
    let _ = plaintext_len;
    unimplemented!()
}

/// Backing offset where sealed block `index` starts.
pub fn block_offset(index: u64) -> u64 {
    let _ = index;
    unimplemented!()
}

/// Number of blocks holding `plaintext_len` bytes (0 for an empty file).
pub fn block_count(plaintext_len: u64) -> u64 {
    let _ = plaintext_len;
    unimplemented!()
}

/// Sealed length of a block holding `plain_len` (1..=4096) plaintext bytes.
pub fn sealed_len(plain_len: usize) -> usize {
    plain_len + super::BLOCK_OVERHEAD
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
    let _ = (offset, len);
    std::iter::empty::<BlockSpan>()
}

/// Seals and opens the blocks of one file. Built once per open file: the commitment is
/// checked and the content key derived here, so the per-block path derives nothing and
/// allocates nothing (it writes into caller buffers).
pub struct ContentCipher {
    file_id: FileId,
    sealer: Sealer,
}

impl std::fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentCipher(..)")
    }
}

impl ContentCipher {
    /// Verifies `header`'s commitment to `data_key` ([`FormatError::KeyCommitment`]),
    /// then derives the content key HKDF-SHA256(data key, salt = file id,
    /// info = [`CONTENT_KEY_INFO`]).
    pub fn new(data_key: &DataKey, header: &FileHeader) -> Result<ContentCipher, FormatError> {
        let _ = (data_key, header);
        unimplemented!()
    }

    /// The file id this cipher binds blocks to.
    pub fn file_id(&self) -> &FileId {
        &self.file_id
    }

    /// Seals block `index` (1..=4096 plaintext bytes) into `out` (cleared first):
    /// `nonce (12) || ciphertext || tag (16)` with a fresh random nonce.
    pub fn seal_block(
        &self,
        index: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let _ = (index, plaintext, out, &self.sealer);
        unimplemented!()
    }

    /// Opens sealed block `index` into `out` (cleared first). An all-zero region is a
    /// hole and yields `sealed.len() - 28` zero bytes. Anything that fails authentication
    /// is [`FormatError::Authentication`] and leaves `out` empty: never wrong data.
    pub fn open_block(
        &self,
        index: u64,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let _ = (index, sealed, out);
        unimplemented!()
    }
}
