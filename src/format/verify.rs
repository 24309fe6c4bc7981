//! Integrity check of one encrypted file for `kmsfs fsck`: header decoding, size
//! consistency and (given the data key) every block's authentication. Reports; never
//! repairs and never writes.

use std::path::{Path, PathBuf};

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::crypto::DataKey;

use super::content::{block_count, block_offset, plaintext_size, sealed_len, ContentCipher};
use super::header::FileHeader;
use super::{FormatError, BLOCK_SIZE, SEALED_BLOCK_SIZE};

/// The result of checking one file.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

/// What was found.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileOutcome {
    /// Everything checked is fine. `blocks_checked` is 0 when no data key was given
    /// (only the header and size were checked).
    Ok {
        plaintext_size: u64,
        blocks_checked: u64,
        holes: u64,
    },
    /// The file could not be read.
    Unreadable { error: FormatError },
    /// The header does not decode (bad magic, version, field, padding, truncated).
    HeaderDamaged { error: FormatError },
    /// The data key does not match the header's commitment.
    KeyMismatch,
    /// The backing length is impossible (e.g. a truncated last block).
    SizeInconsistent { backing_len: u64 },
    /// These blocks failed authentication (the rest are fine).
    BlocksFailed {
        indices: Vec<u64>,
        blocks_checked: u64,
    },
}

impl FileReport {
    /// True for [`FileOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, FileOutcome::Ok { .. })
    }
}

/// Checks the encrypted file at `path`. Without `data_key`, checks the header and size
/// only; with it, also the commitment and every block.
pub fn verify_file(path: &Path, data_key: Option<&DataKey>) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        outcome: check(path, data_key),
    }
}

fn check(path: &Path, data_key: Option<&DataKey>) -> FileOutcome {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return FileOutcome::Unreadable { error: io(e) },
    };
    let backing_len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return FileOutcome::Unreadable { error: io(e) },
    };
    let header = match FileHeader::read_from(&file) {
        Ok(h) => h,
        Err(FormatError::IoNoPath(e)) => return FileOutcome::Unreadable { error: io(e) },
        Err(error) => return FileOutcome::HeaderDamaged { error },
    };
    let Ok(size) = plaintext_size(backing_len) else {
        return FileOutcome::SizeInconsistent { backing_len };
    };
    let Some(data_key) = data_key else {
        return FileOutcome::Ok {
            plaintext_size: size,
            blocks_checked: 0,
            holes: 0,
        };
    };
    let cipher = match ContentCipher::new(data_key, &header) {
        Ok(c) => c,
        Err(_) => return FileOutcome::KeyMismatch,
    };

    let blocks = block_count(size);
    let mut sealed = vec![0u8; SEALED_BLOCK_SIZE];
    let mut plain = Vec::with_capacity(BLOCK_SIZE);
    let mut failed = Vec::new();
    let mut holes = 0;
    for index in 0..blocks {
        // Every block is full except possibly the last.
        let remaining = size - index * BLOCK_SIZE as u64;
        let plain_len = remaining.min(BLOCK_SIZE as u64) as usize;
        let region = &mut sealed[..sealed_len(plain_len)];
        if let Err(e) = file.read_exact_at(region, block_offset(index)) {
            return FileOutcome::Unreadable { error: io(e) };
        }
        if region.iter().all(|&b| b == 0) {
            holes += 1;
        }
        if cipher.open_block(index, region, &mut plain).is_err() {
            failed.push(index);
        }
    }
    if failed.is_empty() {
        FileOutcome::Ok {
            plaintext_size: size,
            blocks_checked: blocks,
            holes,
        }
    } else {
        FileOutcome::BlocksFailed {
            indices: failed,
            blocks_checked: blocks,
        }
    }
}
