//! Integrity check of one encrypted file for `kmsfs fsck`: header decoding, size
//! consistency and (given the data key) every block's authentication. Reports; never
//! repairs and never writes.

use std::path::{Path, PathBuf};

use crate::crypto::DataKey;

use super::FormatError;

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
    let _ = (path, data_key);
    unimplemented!()
}
