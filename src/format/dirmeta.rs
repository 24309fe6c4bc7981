//! Per-directory metadata `kmsfs.dir`: the directory id (the tweak of every name in the
//! directory), an optional key rule and the rule's version, authenticated with the
//! [`MetadataKey`]. Never decides which key rule applies to a path (that walk belongs to
//! the filesystem), and never decides whether a version is current (the key service's
//! record of the directory is the authority; see docs/FORMAT.md).

use std::path::{Path, PathBuf};

use super::volume::{
    parse_id_hex, push_len_prefixed, toml_string, validate_key_id, MetadataKey, TomlFields,
};
use super::{atomic, FormatError, DIR_META_NAME};

/// Domain separator at the start of a version-0 (format 1) directory metadata MAC input.
const DIR_MAC_LABEL: &[u8] = b"kmsfs v1 dir\0";
/// Domain separator of the MAC input of a file with a `version` (1 and above).
const DIR_MAC_LABEL_V2: &[u8] = b"kmsfs v2 dir\0";

/// A directory's random 128-bit id; the associated data of its entries' names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirId(pub [u8; 16]);

impl DirId {
    /// A fresh random id.
    pub fn generate() -> Result<DirId, FormatError> {
        let mut id = [0u8; 16];
        crate::crypto::random_fill(&mut id).map_err(|_| FormatError::Random)?;
        Ok(DirId(id))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
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
    /// How many times the key rule was set or cleared through kmsfs: 0 for a new
    /// directory and for every format-1 file (which has no `version` field). Compared
    /// with the key service's record to refuse a rolled-back file.
    pub version: u64,
}

impl DirMeta {
    /// Path of the metadata file inside backing directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(DIR_META_NAME)
    }

    /// A new directory's metadata with a fresh random id (not yet written).
    pub fn generate(key_rule: Option<String>) -> Result<DirMeta, FormatError> {
        Ok(DirMeta {
            dir_id: DirId::generate()?,
            key_rule,
            version: 0,
        })
    }

    /// Writes a fresh `kmsfs.dir` into `dir`, failing with [`FormatError::DirMetaExists`]
    /// if one is there. Use right after `mkdir` of a backing directory.
    pub fn create(
        dir: &Path,
        key_rule: Option<String>,
        key: &MetadataKey,
    ) -> Result<DirMeta, FormatError> {
        let meta = Self::generate(key_rule)?;
        let bytes = meta.checked_encode(dir, key)?;
        match atomic::write_atomic(dir, DIR_META_NAME, &bytes, true) {
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(FormatError::DirMetaExists {
                    path: Self::path(dir),
                })
            }
            other => other.map(|()| meta),
        }
    }

    /// Reads and authenticates `dir/kmsfs.dir` (only a regular file: never through a
    /// symlink, never blocking on a FIFO). [`FormatError::MissingDirMeta`] if absent,
    /// [`FormatError::MetadataAuthentication`] if altered or from another volume.
    pub fn load(dir: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let path = Self::path(dir);
        match super::read_metadata(&path) {
            Ok(bytes) => Self::decode(&bytes, &path, key),
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(FormatError::MissingDirMeta { path })
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces `dir/kmsfs.dir` atomically (e.g. after `key-rule set`).
    pub fn save(&self, dir: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let bytes = self.checked_encode(dir, key)?;
        atomic::write_atomic(dir, DIR_META_NAME, &bytes, false)
    }

    /// The file's bytes (TOML with MAC), for callers that write through their own handle.
    /// The key rule is not validated here; [`Self::save`] and [`Self::create`] do.
    pub fn encode(&self, key: &MetadataKey) -> Vec<u8> {
        let mut out = String::from(
            "# kmsfs directory metadata (docs/FORMAT.md). Authenticated: edit only with kmsfs.\n",
        );
        out.push_str(&format!("dir_id = \"{}\"\n", self.dir_id.to_hex()));
        if let Some(rule) = &self.key_rule {
            out.push_str(&format!("key = {}\n", toml_string(rule)));
        }
        // Version 0 keeps the format-1 encoding, byte for byte.
        if self.version > 0 {
            out.push_str(&format!("version = {}\n", self.version));
        }
        out.push_str(&format!(
            "mac = \"{}\"\n",
            hex::encode(self.compute_mac(key))
        ));
        out.into_bytes()
    }

    /// Parses and authenticates bytes produced by [`Self::encode`]; `path` is only used
    /// in error messages.
    pub fn decode(bytes: &[u8], path: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let mut table = TomlFields::parse(bytes, path)?;
        let id_text = table.string("dir_id")?;
        let dir_id = DirId(parse_id_hex(&id_text).map_err(|r| table.field_error("dir_id", r))?);
        let key_rule = table.optional_string("key")?;
        if let Some(rule) = &key_rule {
            validate_key_id(rule).map_err(|r| table.field_error("key", r))?;
        }
        let version = match table.optional_u64("version")? {
            None => 0,
            Some(0) => return Err(table.field_error("version", "must be at least 1 when present")),
            Some(v) => v,
        };
        let mac = table.optional_mac("mac")?;
        table.finish()?;
        let meta = DirMeta {
            dir_id,
            key_rule,
            version,
        };
        match mac {
            Some(mac) if key.verify(&meta.mac_input(), &mac) => Ok(meta),
            _ => Err(FormatError::MetadataAuthentication {
                path: path.to_path_buf(),
            }),
        }
    }

    fn checked_encode(&self, dir: &Path, key: &MetadataKey) -> Result<Vec<u8>, FormatError> {
        if let Some(rule) = &self.key_rule {
            validate_key_id(rule).map_err(|reason| FormatError::BadMetadataField {
                path: Self::path(dir),
                field: "key",
                reason,
            })?;
        }
        Ok(self.encode(key))
    }

    fn compute_mac(&self, key: &MetadataKey) -> [u8; 32] {
        key.mac(&self.mac_input())
    }

    /// Version 0: `"kmsfs v1 dir\0" | dir id | has_key | [len | key]` (format 1).
    /// Version n >= 1: `"kmsfs v2 dir\0" | dir id | u64 n | has_key | [len | key]`: a
    /// different label, so no file of one kind authenticates as the other.
    fn mac_input(&self) -> Vec<u8> {
        let mut input = Vec::with_capacity(48);
        if self.version == 0 {
            input.extend_from_slice(DIR_MAC_LABEL);
            input.extend_from_slice(&self.dir_id.0);
        } else {
            input.extend_from_slice(DIR_MAC_LABEL_V2);
            input.extend_from_slice(&self.dir_id.0);
            input.extend_from_slice(&self.version.to_be_bytes());
        }
        match &self.key_rule {
            None => input.push(0),
            Some(rule) => {
                input.push(1);
                push_len_prefixed(&mut input, rule.as_bytes());
            }
        }
        input
    }
}
