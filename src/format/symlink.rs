//! Symlink targets (docs/FORMAT.md, "Symlinks and extended attributes"): a target is
//! sealed as `nonce || AES-256-GCM(target) || tag` under a key derived from the volume
//! secret, so it is unreadable and tamper-evident. Targets up to [`SYMLINK_INLINE_MAX`]
//! bytes live base64url-encoded in the backing symlink itself; longer ones (up to
//! PATH_MAX − 1) in a file `kmsfs.st.<H>` of the backing root, which the backing symlink
//! names. The filesystem seals and opens targets with this; fsck checks them with it
//! too, so both judge a target by the same code. Not bound to the link or its directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::crypto::{hkdf_sealing_key, Sealer, SealingKey, SEAL_OVERHEAD};

use super::FormatError;

/// HKDF info label of the symlink-target key (derived from the volume secret, salt "").
pub const SYMLINK_KEY_INFO: &[u8] = b"kmsfs v1 symlink target";
/// Associated data of every sealed symlink target.
pub const SYMLINK_AAD: &[u8] = b"kmsfs v1 symlink";
/// Longest plaintext target kept in the backing symlink itself: its sealed, base64url
/// form must fit a backing symlink (4095 bytes): 4 * (n + 28) / 3 <= 4095.
pub const SYMLINK_INLINE_MAX: usize = 3040;
/// Longest plaintext symlink target: PATH_MAX − 1, as on Linux file systems.
pub const SYMLINK_TARGET_MAX: usize = 4095;
/// Prefix of a stored long symlink target in the backing root: `kmsfs.st.<H>`, with
/// `H` = base64url(SHA-256(sealed bytes)), 43 characters.
pub const SYMLINK_STORE_PREFIX: &str = "kmsfs.st.";

/// How a sealed symlink target is kept.
#[derive(Debug)]
pub enum SealedTarget {
    /// base64url of the sealed target: the backing symlink's own target.
    Inline(String),
    /// The backing symlink's target is `name`, a file in the backing root holding
    /// `sealed`.
    Stored { name: String, sealed: Vec<u8> },
}

/// The plaintext length of an inline symlink target whose backing symlink is
/// `stored_len` bytes long (base64url without padding of target + 28 bytes), or `None`
/// when that length could also be a stored-target reference (then read the link).
pub fn inline_target_len(stored_len: u64) -> Option<u64> {
    if stored_len == (SYMLINK_STORE_PREFIX.len() + 43) as u64 || stored_len % 4 == 1 {
        return None;
    }
    (stored_len * 3 / 4).checked_sub(SEAL_OVERHEAD as u64)
}

/// The name of the stored-target file a backing symlink target refers to, if it is one.
pub fn stored_target_name(stored: &OsStr) -> Option<&str> {
    let name = stored.to_str()?;
    let hash = name.strip_prefix(SYMLINK_STORE_PREFIX)?;
    let ok = hash.len() == 43
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(name)
}

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

    /// Seals `target` (1..=[`SYMLINK_TARGET_MAX`] bytes), inline or stored by length.
    pub fn seal(&self, target: &[u8]) -> Result<SealedTarget, FormatError> {
        if target.is_empty() || target.len() > SYMLINK_TARGET_MAX {
            return Err(FormatError::InvalidName {
                reason: "a symlink target must be 1 to 4095 bytes",
            });
        }
        let sealed = self
            .0
            .seal(SYMLINK_AAD, target)
            .map_err(|_| FormatError::Random)?;
        if target.len() <= SYMLINK_INLINE_MAX {
            return Ok(SealedTarget::Inline(URL_SAFE_NO_PAD.encode(sealed)));
        }
        let hash = URL_SAFE_NO_PAD.encode(crate::crypto::sha256(&sealed));
        Ok(SealedTarget::Stored {
            name: format!("{SYMLINK_STORE_PREFIX}{hash}"),
            sealed,
        })
    }

    /// The plaintext target of a backing symlink whose own target is `stored`;
    /// [`FormatError::SymlinkAuthentication`] if it was altered. A stored-target
    /// reference is read with `read_stored(name)` (from the backing root).
    pub fn open<E: From<FormatError>>(
        &self,
        stored: &OsStr,
        read_stored: impl FnOnce(&str) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let sealed = match stored_target_name(stored) {
            Some(name) => read_stored(name)?,
            None => URL_SAFE_NO_PAD
                .decode(stored.as_bytes())
                .map_err(|_| FormatError::SymlinkAuthentication)?,
        };
        Ok(self.open_sealed(&sealed)?)
    }

    /// Opens the raw sealed bytes of a target (decoded inline, or a stored file's bytes).
    pub fn open_sealed(&self, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
        self.0
            .open(SYMLINK_AAD, sealed)
            .map(|p| p.to_vec())
            .map_err(|_| FormatError::SymlinkAuthentication)
    }
}
