//! The on-disk bytes of a kmsfs volume, exactly as `docs/FORMAT.md` writes them down:
//! the volume file, per-directory metadata, encrypted names (with long-name sidecars),
//! the per-file envelope header and the sealed content blocks, plus the offset arithmetic
//! between plaintext and backing files and the integrity check behind `kmsfs fsck`.
//!
//! This module is the only code that encodes or decodes those bytes. It knows nothing of
//! KMS, policies or callers: it receives keys (a data key, the volume secret) already
//! unwrapped, and never decides who may have them. It never logs and never prints key
//! bytes or plaintext.

mod atomic;
pub mod content;
pub mod dirmeta;
pub mod header;
mod keys;
pub mod metafile;
pub mod names;
pub mod symlink;
pub mod verify;
pub mod volume;
pub mod xattr;

use std::path::PathBuf;

pub(crate) use atomic::{replace_file, write_atomic};
pub use content::{
    backing_len, block_count, block_offset, block_spans, plaintext_size, sealed_len, BlockSpan,
    ContentCipher,
};
pub use dirmeta::{DirId, DirMeta, Resolved, DIR_ID_XATTR, DIR_ID_XATTR_LEN};
pub use header::{encryption_context, EnvelopeVersion, FileHeader, FileId};
pub use keys::VolumeKeys;
pub use metafile::{
    open_regular, open_regular_at, read_metadata, read_metadata_at, METADATA_MAX_LEN,
};
pub use names::{classify, is_reserved, BackingName, EntryKind, NameCipher};
pub use symlink::{
    inline_target_len, stored_target_name, SealedTarget, SymlinkCipher, SYMLINK_AAD,
    SYMLINK_INLINE_MAX, SYMLINK_KEY_INFO, SYMLINK_STORE_PREFIX, SYMLINK_TARGET_MAX,
};
pub use verify::{
    check_volume, verify_file, verify_file_with, walk_volume, FileOutcome, FileReport, KeyLookup,
    VolumeEntry, VolumeFinding,
};
pub use volume::{MetadataKey, VolumeConfig};
pub use xattr::{XattrCipher, XATTR_KEY_INFO};

/// The volume format version (the `format` field of `kmsfs.volume`: volume file,
/// directory metadata, names). Envelopes carry their own version per file
/// ([`EnvelopeVersion`]); version-1 envelopes also have this number in their header.
pub const FORMAT_VERSION: u32 = 1;
/// Plaintext bytes per content block.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes a version-1 sealed block adds to its plaintext: nonce (12) + tag (16). For a
/// file of any version use [`EnvelopeVersion::block_overhead`].
pub const BLOCK_OVERHEAD: usize = crate::crypto::SEAL_OVERHEAD;
/// Backing bytes of a full version-1 sealed block. For a file of any version use
/// [`EnvelopeVersion::sealed_block_size`].
pub const SEALED_BLOCK_SIZE: usize = BLOCK_SIZE + BLOCK_OVERHEAD;
/// Backing bytes of the largest full sealed block of any version (a buffer this size
/// holds any block).
pub const MAX_SEALED_BLOCK_SIZE: usize = BLOCK_SIZE + crate::crypto::XSEAL_OVERHEAD;
/// Bytes of the fixed-size envelope header; content block 0 starts here.
pub const HEADER_LEN: usize = 1024;

/// Name of the volume file in the backing root.
pub const VOLUME_FILE_NAME: &str = "kmsfs.volume";
/// Name of the metadata file in every backing directory.
pub const DIR_META_NAME: &str = "kmsfs.dir";
/// Prefix of every name kmsfs reserves (all of them contain a `.`, which encrypted names
/// never do).
pub const RESERVED_PREFIX: &str = "kmsfs.";
/// Prefix of a long-name entry; `kmsfs.ln.<hash>`.
pub const LONG_NAME_PREFIX: &str = "kmsfs.ln.";
/// Suffix of a long-name sidecar; `kmsfs.ln.<hash>.name`.
pub const LONG_NAME_SIDECAR_SUFFIX: &str = ".name";
/// The journal of an interrupted `kmsfs rewrap` (backing root only; docs/FORMAT.md).
pub const REWRAP_JOURNAL_NAME: &str = "kmsfs.rewrap";
/// The lock file that keeps two `kmsfs rewrap` runs of a volume apart (backing root).
pub const REWRAP_LOCK_NAME: &str = "kmsfs.rewrap.lock";
/// Prefix of temporary files of atomic writes; `kmsfs.tmp.<hex>`.
pub const TEMP_PREFIX: &str = "kmsfs.tmp.";
/// Longest plaintext name (bytes), as on Linux.
pub const NAME_MAX: usize = 255;

/// Everything that can be wrong with on-disk bytes or with a request to write them.
/// Messages are specific (which file, which field) but never contain key bytes or
/// plaintext. The filesystem maps [`FormatError::is_integrity_failure`] errors to `EIO`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An I/O error where no path is known (e.g. on an already-open file).
    #[error("I/O error: {0}")]
    IoNoPath(#[from] std::io::Error),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,

    // ---- volume file and directory metadata ----
    /// `create` on a directory that already holds a volume.
    #[error("{path}: already a kmsfs volume (it holds {VOLUME_FILE_NAME})")]
    AlreadyInitialized { path: PathBuf },
    /// `create` on a directory that holds other files.
    #[error("{path}: directory is not empty; a new volume needs an empty directory")]
    NotEmpty { path: PathBuf },
    /// `load` where there is no volume file.
    #[error("{path}: not a kmsfs volume (no {VOLUME_FILE_NAME}; run `kmsfs init` first)")]
    NotAVolume { path: PathBuf },
    /// A volume or directory metadata file that does not parse or has a bad field.
    #[error("{path}: field `{field}`: {reason}")]
    BadMetadataField {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    /// A metadata file that is not valid TOML of the expected shape.
    #[error("{path}: {reason}")]
    BadMetadataFile { path: PathBuf, reason: String },
    /// A volume or directory metadata file whose MAC is absent or does not verify:
    /// it was changed by someone without the volume secret, or belongs to another volume.
    #[error(
        "{path}: metadata authentication failed (changed outside kmsfs, or from another volume)"
    )]
    MetadataAuthentication { path: PathBuf },
    /// A directory metadata file that should exist and does not.
    #[error("{path}: missing directory metadata {DIR_META_NAME}")]
    MissingDirMeta { path: PathBuf },
    /// A file kmsfs reads for itself (volume file, `kmsfs.dir`, sidecar, envelope) that
    /// is not a regular file: replaced by a FIFO, symlink, device or directory; or a
    /// backing object of a kind kmsfs never puts there (a device where a file belongs).
    #[error("{path}: expected a regular file, found {found}")]
    NotRegularFile { path: PathBuf, found: &'static str },
    /// A metadata file or sidecar larger than any kmsfs writes.
    #[error("{path}: larger than the {max}-byte limit of a kmsfs metadata file")]
    MetadataTooLarge { path: PathBuf, max: u64 },
    /// A directory whose `kmsfs.dir` and id attribute both authenticate but name
    /// different ids (one of them copied from another directory).
    #[error("{path}: directory id {file_id} disagrees with the id {attr_id} of the directory's attribute user.kmsfs.dir (copied from another directory?)")]
    DirIdMismatch {
        path: PathBuf,
        file_id: String,
        attr_id: String,
    },
    /// `DirMeta::create` where one exists already.
    #[error("{path}: directory metadata already exists")]
    DirMetaExists { path: PathBuf },

    // ---- names ----
    /// A plaintext name kmsfs cannot store (".", "..", empty, '/', NUL, too long).
    #[error("invalid file name: {reason}")]
    InvalidName { reason: &'static str },
    /// A backing name that is not an encrypted name (reserved, foreign, bad encoding).
    #[error("backing name is not a kmsfs encrypted name: {reason}")]
    NotEncryptedName { reason: &'static str },
    /// A long-name sidecar that is missing, unreadable or does not match its entry.
    #[error("long-name sidecar {name}: {reason}")]
    BadSidecar { name: String, reason: String },
    /// An encrypted name that fails authentication (altered, or from another directory).
    #[error("encrypted name failed authentication (altered, or moved from another directory)")]
    NameAuthentication,
    /// A `user.*` extended attribute value not sealed by kmsfs for this name and volume.
    #[error(
        "extended attribute {name}: value failed authentication (altered, or not written by kmsfs)"
    )]
    XattrAuthentication { name: String },
    /// A backing symlink whose target is not one kmsfs sealed for this volume.
    #[error("symlink target failed authentication (altered, or not written by kmsfs)")]
    SymlinkAuthentication,

    // ---- envelope header ----
    /// The header buffer is not exactly [`HEADER_LEN`] bytes.
    #[error("envelope header has {found} bytes, expected {expected}")]
    HeaderSize { expected: usize, found: usize },
    /// Not a kmsfs file.
    #[error("bad magic: not a kmsfs encrypted file")]
    BadMagic,
    /// A version this code does not know.
    #[error("unsupported format version {found} (this kmsfs reads volume format {FORMAT_VERSION} and envelope versions 1 and 2)")]
    UnsupportedVersion { found: u32 },
    /// A file whose envelope version is not the one its volume file requires
    /// (`envelopes`): an older envelope planted in a newer volume, i.e. a downgrade.
    #[error("envelope version {found} in a volume whose files are all version {required}")]
    EnvelopeNotAllowed { found: u16, required: u16 },
    /// A header length field other than the version's fixed length.
    #[error("header length field is {found}, expected {HEADER_LEN}")]
    BadHeaderLength { found: u32 },
    /// A header field that is out of range or malformed.
    #[error("envelope header field `{field}`: {reason}")]
    BadHeaderField { field: &'static str, reason: String },
    /// Non-zero bytes in the header's padding.
    #[error("envelope header padding is not zero")]
    NonZeroPadding,
    /// The data key does not match the header (wrong key, or header from another file).
    #[error("key commitment mismatch: the data key does not belong to this header")]
    KeyCommitment,

    // ---- content ----
    /// A sealed block that fails authentication: altered, moved, swapped or from another
    /// file. Never returns wrong plaintext.
    #[error("content block {block} failed authentication")]
    Authentication { block: u64 },
    /// A backing length no sequence of sealed blocks can have.
    #[error("backing file length {backing_len} is impossible for a kmsfs file")]
    BadBackingLength { backing_len: u64 },
    /// A sealed block region of an impossible length (empty, shorter than the overhead,
    /// or longer than a full sealed block).
    #[error("sealed block {block} has impossible length {len}")]
    BadBlockLength { block: u64, len: usize },
    /// A plaintext block longer than [`BLOCK_SIZE`] (or empty) passed to `seal_block`.
    #[error("plaintext block of {len} bytes (must be 1..={BLOCK_SIZE})")]
    BlockTooLarge { len: usize },
}

impl FormatError {
    /// True for errors meaning the on-disk bytes are damaged or were tampered with
    /// (the filesystem answers `EIO`), as opposed to bad requests or missing files.
    pub fn is_integrity_failure(&self) -> bool {
        use FormatError::*;
        match self {
            Io { .. } | IoNoPath(_) | Random => false,
            AlreadyInitialized { .. } | NotEmpty { .. } | NotAVolume { .. } => false,
            DirMetaExists { .. } | InvalidName { .. } | BlockTooLarge { .. } => false,
            // A backing name that is not ours is skipped, not a damaged file.
            NotEncryptedName { .. } => false,
            BadMetadataField { .. } | BadMetadataFile { .. } | MetadataAuthentication { .. } => {
                true
            }
            MissingDirMeta { .. } | BadSidecar { .. } | NameAuthentication => true,
            DirIdMismatch { .. } => true,
            NotRegularFile { .. } | MetadataTooLarge { .. } | SymlinkAuthentication => true,
            XattrAuthentication { .. } => true,
            HeaderSize { .. } | BadMagic | UnsupportedVersion { .. } | BadHeaderLength { .. } => {
                true
            }
            EnvelopeNotAllowed { .. } => true,
            BadHeaderField { .. } | NonZeroPadding | KeyCommitment => true,
            Authentication { .. } | BadBackingLength { .. } | BadBlockLength { .. } => true,
        }
    }
}
