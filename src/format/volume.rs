//! The volume file `kmsfs.volume` (TOML, not secret, authenticated with a MAC under the
//! metadata key) and the metadata key itself. Owns creating a volume in an empty
//! directory and loading/saving the file atomically. Never holds data keys.

use std::path::{Path, PathBuf};

use crate::crypto::SealingKey;

use super::FormatError;

/// HKDF info label of the metadata MAC key (derived from the volume secret).
pub const METADATA_KEY_INFO: &[u8] = b"kmsfs v1 metadata mac";

/// The key that authenticates the volume file and every directory's `kmsfs.dir`.
/// Derived from the volume secret: someone who can write the backing directory but has
/// no access to the store cannot change a default key or a key rule undetected.
pub struct MetadataKey(SealingKey);

impl MetadataKey {
    /// HKDF-SHA256(ikm = volume secret, salt = "", info = [`METADATA_KEY_INFO`]).
    pub fn new(volume_secret: &SealingKey) -> Self {
        let _ = volume_secret;
        unimplemented!()
    }
}

impl std::fmt::Debug for MetadataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetadataKey(..)")
    }
}

/// The parsed volume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    /// Format version of the volume (1).
    pub format: u32,
    /// Random 128-bit volume id, 32 lowercase hex digits. Used in every file's
    /// encryption context and to look up the volume secret.
    pub volume_id: String,
    /// Key for new files where no directory key rule applies: key id, key ARN, alias name
    /// or alias ARN.
    pub default_key: String,
    /// Plaintext block size ([`super::BLOCK_SIZE`] in version 1).
    pub block_size: u32,
    /// The MAC as read from disk (`None` between `create` and the first `save`).
    mac: Option<[u8; 32]>,
}

impl VolumeConfig {
    /// Path of the volume file inside `backing`.
    pub fn path(backing: &Path) -> PathBuf {
        backing.join(super::VOLUME_FILE_NAME)
    }

    /// Creates a new volume in `backing` (created if missing): a fresh random volume id,
    /// `default_key`, version 1, block size 4096. Refuses a directory that already holds
    /// a volume ([`FormatError::AlreadyInitialized`]) or anything else
    /// ([`FormatError::NotEmpty`]). Writes the file without a MAC to claim the directory;
    /// the caller then gets the volume secret for `volume_id` and calls [`Self::save`]
    /// (which adds the MAC) and creates the root [`super::DirMeta`].
    pub fn create(backing: &Path, default_key: &str) -> Result<VolumeConfig, FormatError> {
        let _ = (backing, default_key);
        unimplemented!()
    }

    /// Reads and parses `backing/kmsfs.volume`. Checks every field's syntax (naming the
    /// file and field on error) and the version, but not the MAC: call [`Self::verify`]
    /// once the volume secret is known.
    pub fn load(backing: &Path) -> Result<VolumeConfig, FormatError> {
        let _ = backing;
        unimplemented!()
    }

    /// Verifies the MAC read from disk against the current fields.
    /// [`FormatError::MetadataAuthentication`] if it is absent or wrong.
    pub fn verify(&self, backing: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let _ = (backing, key);
        unimplemented!()
    }

    /// Writes the volume file atomically (temp file, fsync, rename, fsync directory) with
    /// a MAC over the current fields.
    pub fn save(&mut self, backing: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let _ = (backing, key);
        unimplemented!()
    }

    /// True once the file carries a MAC (i.e. `save` ran after `create`).
    pub fn is_authenticated(&self) -> bool {
        self.mac.is_some()
    }
}
