//! Symlink targets (docs/FORMAT.md, "Symlinks and extended attributes"): a backing
//! symlink whose target is `base64url(nonce || AES-256-GCM(target) || tag)` under a key
//! derived from the volume secret, so the target is unreadable and tamper-evident. The
//! filesystem seals and opens targets with this; fsck checks them with it too, so both
//! judge a target by the same code. Not bound to the link or its directory.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::crypto::{hkdf_sealing_key, Sealer, SealingKey};

use super::FormatError;

/// HKDF info label of the symlink-target key (derived from the volume secret, salt "").
pub const SYMLINK_KEY_INFO: &[u8] = b"kmsfs v1 symlink target";
/// Associated data of every sealed symlink target.
pub const SYMLINK_AAD: &[u8] = b"kmsfs v1 symlink";
/// Longest plaintext symlink target: its sealed, base64url form must fit a backing
/// symlink (4095 bytes): 4 * (n + 28) / 3 <= 4095.
pub const SYMLINK_TARGET_MAX: usize = 3040;

/// Seals and opens symlink targets of one volume.
pub struct SymlinkCipher(Sealer);

impl SymlinkCipher {
    pub fn new(volume_secret: &SealingKey) -> Self {
        SymlinkCipher(Sealer::new(&hkdf_sealing_key(
            volume_secret,
            b"",
            SYMLINK_KEY_INFO,
        )))
    }

    /// The backing symlink target that stores `target` (1..=[`SYMLINK_TARGET_MAX`]
    /// bytes; the filesystem checks the length first, to answer with its own errno).
    pub fn seal(&self, target: &[u8]) -> Result<String, FormatError> {
        if target.is_empty() || target.len() > SYMLINK_TARGET_MAX {
            return Err(FormatError::InvalidName {
                reason: "a symlink target must be 1 to 3040 bytes",
            });
        }
        let sealed = self
            .0
            .seal(SYMLINK_AAD, target)
            .map_err(|_| FormatError::Random)?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext target stored in a backing symlink's target `stored`;
    /// [`FormatError::SymlinkAuthentication`] if it is not one kmsfs sealed for this
    /// volume (altered, foreign, or a symlink planted in the backing directory).
    pub fn open(&self, stored: &[u8]) -> Result<Vec<u8>, FormatError> {
        let sealed = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| FormatError::SymlinkAuthentication)?;
        self.0
            .open(SYMLINK_AAD, &sealed)
            .map(|p| p.to_vec())
            .map_err(|_| FormatError::SymlinkAuthentication)
    }
}
