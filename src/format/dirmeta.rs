//! Per-directory metadata `kmsfs.dir`: the directory id (the tweak of every name in the
//! directory) and an optional key rule, authenticated with the [`MetadataKey`]. Never
//! decides which key rule applies to a path (that walk belongs to the filesystem).

use std::path::{Path, PathBuf};

use super::volume::MetadataKey;
use super::FormatError;

/// A directory's random 128-bit id; the associated data of its entries' names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirId(pub [u8; 16]);

impl DirId {
    /// A fresh random id.
    pub fn generate() -> Result<DirId, FormatError> {
        unimplemented!()
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        unimplemented!()
    }
}

impl std::fmt::Debug for DirId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirId({})", self.to_hex())
    }
}

/// The contents of one `kmsfs.dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub dir_id: DirId,
    /// Key for new files created in this directory and below (until a nearer rule).
    pub key_rule: Option<String>,
}

impl DirMeta {
    /// Path of the metadata file inside backing directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(super::DIR_META_NAME)
    }

    /// A new directory's metadata with a fresh random id (not yet written).
    pub fn generate(key_rule: Option<String>) -> Result<DirMeta, FormatError> {
        let _ = key_rule;
        unimplemented!()
    }

    /// Writes a fresh `kmsfs.dir` into `dir`, failing with [`FormatError::DirMetaExists`]
    /// if one is there. Use right after `mkdir` of a backing directory.
    pub fn create(
        dir: &Path,
        key_rule: Option<String>,
        key: &MetadataKey,
    ) -> Result<DirMeta, FormatError> {
        let _ = (dir, key_rule, key);
        unimplemented!()
    }

    /// Reads and authenticates `dir/kmsfs.dir`. [`FormatError::MissingDirMeta`] if absent,
    /// [`FormatError::MetadataAuthentication`] if altered or from another volume.
    pub fn load(dir: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let _ = (dir, key);
        unimplemented!()
    }

    /// Replaces `dir/kmsfs.dir` atomically (e.g. after `key-rule set`).
    pub fn save(&self, dir: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let _ = (dir, key);
        unimplemented!()
    }

    /// The file's bytes (TOML with MAC), for callers that write through their own handle.
    pub fn encode(&self, key: &MetadataKey) -> Vec<u8> {
        let _ = key;
        unimplemented!()
    }

    /// Parses and authenticates bytes produced by [`Self::encode`]; `path` is only used
    /// in error messages.
    pub fn decode(bytes: &[u8], path: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let _ = (bytes, path, key);
        unimplemented!()
    }
}
