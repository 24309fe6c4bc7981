//! Content blocks: AES-256-GCM per 4096-byte block under a per-file content key, with
//! the file id and block index as associated data; holes (all-zero regions) read as
//! zeros; and the arithmetic between plaintext offsets/sizes and backing offsets/sizes.
//! Never does I/O: the filesystem reads and writes the bytes, this module seals and
//! opens them.

use crate::crypto::{hkdf_sealing_key, CryptoError, DataKey, Sealer};

use super::header::{FileHeader, FileId};
use super::{FormatError, BLOCK_OVERHEAD, BLOCK_SIZE, HEADER_LEN, SEALED_BLOCK_SIZE};

const BLOCK: u64 = BLOCK_SIZE as u64;
const SEALED: u64 = SEALED_BLOCK_SIZE as u64;
const OVERHEAD: u64 = BLOCK_OVERHEAD as u64;
const HEADER: u64 = HEADER_LEN as u64;

/// HKDF info label of the content key (derived from the data key, salt = file id).
pub const CONTENT_KEY_INFO: &[u8] = b"kmsfs v1 content key";

/// Plaintext size of a file whose backing file is `backing_len` bytes long (header
/// included). [`FormatError::BadBackingLength`] for lengths no file can have (shorter
/// than the header, or a last block of 1..=28 bytes).
pub fn plaintext_size(backing_len: u64) -> Result<u64, FormatError> {
    let bad = FormatError::BadBackingLength { backing_len };
    let Some(content) = backing_len.checked_sub(HEADER) else {
        return Err(bad);
    };
    let (full, rest) = (content / SEALED, content % SEALED);
    match rest {
        0 => Ok(full * BLOCK),
        1..=OVERHEAD => Err(bad),
        _ => Ok(full * BLOCK + rest - OVERHEAD),
    }
}

/// Backing length of a file with `plaintext_len` plaintext bytes (header included).
pub fn backing_len(plaintext_len: u64) -> u64 {
    let (full, rest) = (plaintext_len / BLOCK, plaintext_len % BLOCK);
    let last = if rest == 0 { 0 } else { rest + OVERHEAD };
    // Saturates for sizes no filesystem can hold rather than wrapping.
    HEADER
        .saturating_add(full.saturating_mul(SEALED))
        .saturating_add(last)
}

/// Backing offset where sealed block `index` starts.
pub fn block_offset(index: u64) -> u64 {
    HEADER.saturating_add(index.saturating_mul(SEALED))
}

/// Number of blocks holding `plaintext_len` bytes (0 for an empty file).
pub fn block_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(BLOCK)
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
        header.verify_commitment(data_key)?;
        let content_key = hkdf_sealing_key(data_key, &header.file_id, CONTENT_KEY_INFO);
        Ok(ContentCipher {
            file_id: header.file_id,
            sealer: Sealer::new(&content_key),
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

    /// Seals block `index` (1..=4096 plaintext bytes) into `out` (cleared first):
    /// `nonce (12) || ciphertext || tag (16)` with a fresh random nonce.
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
        self.sealer
            .seal_into(&self.aad(index), plaintext, out)
            // Encryption itself cannot fail for a block this size; only drawing the
            // nonce from the OS can.
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
        self.sealer
            .seal_chunks_into(plaintext, BLOCK_SIZE, |i| self.aad(first + i as u64), out)
            .map_err(|_: CryptoError| FormatError::Random)
    }

    /// Like [`Self::open_block`], but appends the plaintext to `out`; on failure `out`
    /// keeps exactly what it held before.
    pub fn open_block_append(
        &self,
        index: u64,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        if sealed.len() <= BLOCK_OVERHEAD || sealed.len() > SEALED_BLOCK_SIZE {
            return Err(FormatError::BadBlockLength {
                block: index,
                len: sealed.len(),
            });
        }
        if sealed.iter().all(|&b| b == 0) {
            out.resize(out.len() + sealed.len() - BLOCK_OVERHEAD, 0);
            return Ok(());
        }
        self.sealer
            .open_append(&self.aad(index), sealed, out)
            .map_err(|_| FormatError::Authentication { block: index })
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
        if sealed.len() <= BLOCK_OVERHEAD || sealed.len() > SEALED_BLOCK_SIZE {
            out.clear();
            return Err(FormatError::BadBlockLength {
                block: index,
                len: sealed.len(),
            });
        }
        // A hole. `all` stops at the first non-zero byte, so for a real block (random
        // nonce) this costs one comparison.
        if sealed.iter().all(|&b| b == 0) {
            out.clear();
            out.resize(sealed.len() - BLOCK_OVERHEAD, 0);
            return Ok(());
        }
        self.sealer
            .open_into(&self.aad(index), sealed, out)
            .map_err(|_| FormatError::Authentication { block: index })
    }
}
