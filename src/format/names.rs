//! Encrypted file names: AES-SIV per directory (associated data = directory id), padded
//! to 16 bytes, base64url without padding, with gocryptfs-style long-name entries and
//! sidecars for names whose encoding exceeds 255 bytes. Also the classification of
//! backing names (encrypted, long, sidecar, reserved, foreign). Never touches content
//! keys and never does directory I/O itself: sidecars are read through a caller closure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::crypto::{sha256, SealingKey, Siv, SIV_TAG_LEN};

use super::dirmeta::DirId;
use super::{FormatError, LONG_NAME_PREFIX, LONG_NAME_SIDECAR_SUFFIX, NAME_MAX, RESERVED_PREFIX};

/// Names are padded to a multiple of this many bytes before encryption, so only a
/// name's 16-byte length bucket is visible.
const NAME_PAD: usize = 16;
/// Length of base64url(SHA-256(..)) without padding: the hash part of a long name.
const LONG_HASH_CHARS: usize = 43;
/// Shortest encoded name: base64url of one padded block plus the SIV tag (32 bytes).
const MIN_ENCODED_CHARS: usize = 43;

/// HKDF info label of the AES-SIV name key (derived from the volume secret).
pub const NAME_KEY_INFO: &[u8] = b"kmsfs v1 name siv";

/// How one plaintext name is stored in its backing directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingName {
    /// The encoded name is the entry name (at most 255 bytes).
    Short(String),
    /// The entry is `kmsfs.ln.<hash>`; a sidecar file `kmsfs.ln.<hash>.name` must hold
    /// `encoded`. Create the sidecar before the entry and remove it after the entry.
    Long {
        name: String,
        sidecar_name: String,
        encoded: String,
    },
}

impl BackingName {
    /// The directory entry's name in the backing directory.
    pub fn name(&self) -> &str {
        match self {
            BackingName::Short(name) | BackingName::Long { name, .. } => name,
        }
    }

    /// The sidecar's name and required content, if this is a long name.
    pub fn sidecar(&self) -> Option<(&str, &str)> {
        match self {
            BackingName::Short(_) => None,
            BackingName::Long {
                sidecar_name,
                encoded,
                ..
            } => Some((sidecar_name, encoded)),
        }
    }
}

/// What a name found in a backing directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A short encrypted name: decrypt it.
    Encrypted,
    /// A long-name entry `kmsfs.ln.<hash>`: decrypt with its sidecar.
    LongName,
    /// A long-name sidecar: skip when listing.
    Sidecar,
    /// `kmsfs.volume`, `kmsfs.dir`, `kmsfs.tmp.*`: skip when listing.
    Reserved,
    /// Anything else (".", "..", other names with a '.', or bad encodings): not ours.
    Foreign,
}

/// What kind of backing entry `name` is. Pure string inspection, no crypto.
pub fn classify(name: &str) -> EntryKind {
    if let Some(rest) = name.strip_prefix(LONG_NAME_PREFIX) {
        if is_long_hash(rest) {
            return EntryKind::LongName;
        }
        if let Some(hash) = rest.strip_suffix(LONG_NAME_SIDECAR_SUFFIX) {
            if is_long_hash(hash) {
                return EntryKind::Sidecar;
            }
        }
        return EntryKind::Reserved;
    }
    if is_reserved(name) {
        return EntryKind::Reserved;
    }
    if name.len() >= MIN_ENCODED_CHARS && name.len() <= NAME_MAX && is_base64url(name) {
        EntryKind::Encrypted
    } else {
        EntryKind::Foreign
    }
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_long_hash(s: &str) -> bool {
    s.len() == LONG_HASH_CHARS && is_base64url(s)
}

fn long_name_hash(encoded: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(encoded.as_bytes()))
}

/// True for names kmsfs reserves for itself (`kmsfs.*`). No encrypted name is reserved.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Encrypts and decrypts names for one volume.
pub struct NameCipher {
    siv: Siv,
}

impl std::fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCipher(..)")
    }
}

impl NameCipher {
    /// Derives the 64-byte AES-SIV key: HKDF-SHA256(ikm = volume secret, salt = "",
    /// info = [`NAME_KEY_INFO`]).
    pub fn new(volume_secret: &SealingKey) -> NameCipher {
        NameCipher {
            siv: Siv::derive(volume_secret, b"", NAME_KEY_INFO),
        }
    }

    /// The backing name of `plain` in the directory `dir_id`. Deterministic: the same
    /// (dir id, name) always gives the same result. Rejects "", ".", "..", names with '/'
    /// or NUL, and names over 255 bytes ([`FormatError::InvalidName`]).
    pub fn encrypt(&self, dir_id: &DirId, plain: &[u8]) -> Result<BackingName, FormatError> {
        validate_plain_name(plain)?;
        let pad = NAME_PAD - plain.len() % NAME_PAD;
        let mut padded = zeroize::Zeroizing::new(Vec::with_capacity(plain.len() + pad));
        padded.extend_from_slice(plain);
        // PKCS#7: `pad` bytes of value `pad` (1..=16), so unpadding is unambiguous.
        padded.resize(plain.len() + pad, pad as u8);
        let sealed = self
            .siv
            .encrypt(&dir_id.0, &padded)
            .map_err(|_| FormatError::NameAuthentication)?;
        let encoded = URL_SAFE_NO_PAD.encode(sealed);
        if encoded.len() <= NAME_MAX {
            return Ok(BackingName::Short(encoded));
        }
        let hash = long_name_hash(&encoded);
        Ok(BackingName::Long {
            name: format!("{LONG_NAME_PREFIX}{hash}"),
            sidecar_name: format!("{LONG_NAME_PREFIX}{hash}{LONG_NAME_SIDECAR_SUFFIX}"),
            encoded,
        })
    }

    /// The plaintext name of backing entry `backing_name` in directory `dir_id`. For a
    /// long-name entry, calls `read_sidecar(sidecar_name)` to get the sidecar's bytes.
    /// Errors: [`FormatError::NotEncryptedName`] for reserved/foreign names,
    /// [`FormatError::BadSidecar`], [`FormatError::NameAuthentication`].
    pub fn decrypt<F>(
        &self,
        dir_id: &DirId,
        backing_name: &str,
        read_sidecar: F,
    ) -> Result<Vec<u8>, FormatError>
    where
        F: FnOnce(&str) -> std::io::Result<Vec<u8>>,
    {
        let sidecar_content;
        let encoded: &str = match classify(backing_name) {
            EntryKind::Encrypted => backing_name,
            EntryKind::LongName => {
                let sidecar_name = format!("{backing_name}{LONG_NAME_SIDECAR_SUFFIX}");
                let bad = |reason: String| FormatError::BadSidecar {
                    name: sidecar_name.clone(),
                    reason,
                };
                let bytes = read_sidecar(&sidecar_name).map_err(|e| bad(e.to_string()))?;
                sidecar_content =
                    String::from_utf8(bytes).map_err(|_| bad("not ASCII text".into()))?;
                if !is_base64url(&sidecar_content) {
                    return Err(bad("not a base64url encoded name".into()));
                }
                let expected = &backing_name[LONG_NAME_PREFIX.len()..];
                if long_name_hash(&sidecar_content) != expected {
                    return Err(bad("its hash does not match the entry name".into()));
                }
                &sidecar_content
            }
            EntryKind::Sidecar => {
                return Err(FormatError::NotEncryptedName {
                    reason: "a long-name sidecar",
                })
            }
            EntryKind::Reserved => {
                return Err(FormatError::NotEncryptedName {
                    reason: "a name reserved by kmsfs",
                })
            }
            EntryKind::Foreign => {
                return Err(FormatError::NotEncryptedName {
                    reason: "not base64url of the right length",
                })
            }
        };
        // The strict engine rejects non-canonical trailing bits, so exactly one backing
        // name maps to each ciphertext.
        let sealed =
            URL_SAFE_NO_PAD
                .decode(encoded)
                .map_err(|_| FormatError::NotEncryptedName {
                    reason: "not canonical base64url",
                })?;
        if sealed.len() < SIV_TAG_LEN + NAME_PAD
            || !(sealed.len() - SIV_TAG_LEN).is_multiple_of(NAME_PAD)
        {
            return Err(FormatError::NotEncryptedName {
                reason: "ciphertext length is not a padded name",
            });
        }
        let padded = self
            .siv
            .decrypt(&dir_id.0, &sealed)
            .map_err(|_| FormatError::NameAuthentication)?;
        // Authenticated bytes came from `encrypt`, so the padding is well formed; check
        // anyway rather than trust, and never panic on it.
        let pad = usize::from(padded.last().copied().unwrap_or(0));
        if pad == 0 || pad > NAME_PAD || pad > padded.len() {
            return Err(FormatError::NameAuthentication);
        }
        let (plain, padding) = padded.split_at(padded.len() - pad);
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(FormatError::NameAuthentication);
        }
        validate_plain_name(plain)?;
        Ok(plain.to_vec())
    }
}

/// The names a POSIX directory entry can have, minus what kmsfs cannot store.
fn validate_plain_name(plain: &[u8]) -> Result<(), FormatError> {
    let reason = if plain.is_empty() {
        "empty"
    } else if plain == b"." || plain == b".." {
        "\".\" and \"..\" are not stored names"
    } else if plain.contains(&b'/') {
        "contains '/'"
    } else if plain.contains(&0) {
        "contains NUL"
    } else if plain.len() > NAME_MAX {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(FormatError::InvalidName { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_end_at_159_bytes_because_of_padding() {
        let names = NameCipher::new(&SealingKey::from_bytes([1; 32]));
        let dir = DirId([2; 16]);
        // 159 bytes pad to 160, + 16 tag = 176 bytes = 235 base64url chars.
        let short = names.encrypt(&dir, &[b'a'; 159]).unwrap();
        assert!(matches!(&short, BackingName::Short(n) if n.len() == 235));
        // 160 bytes pad to 176, + 16 = 192 bytes = 256 chars: one too many.
        let long = names.encrypt(&dir, &[b'a'; 160]).unwrap();
        assert!(matches!(&long, BackingName::Long { encoded, .. } if encoded.len() == 256));
    }

    #[test]
    fn only_base64url_names_classify_as_encrypted_or_long() {
        // Long enough to be an encrypted name, but with characters base64url never
        // produces: another program's file, which listings must leave alone.
        let plain = "a-foreign-file-name-that-is-long-enough.txt";
        assert!(plain.len() >= MIN_ENCODED_CHARS);
        assert_eq!(classify(plain), EntryKind::Foreign);
        assert_eq!(classify(&"A".repeat(60)), EntryKind::Encrypted);
        for bad in ['+', '/', '=', ' ', '.', 'é'] {
            let name = format!("{}{bad}", "A".repeat(50));
            assert_eq!(classify(&name), EntryKind::Foreign, "{name}");
            // A long-name hash of the right length with one such character.
            let hash = format!("{}{bad}", "B".repeat(LONG_HASH_CHARS - 1));
            assert_eq!(hash.chars().count(), LONG_HASH_CHARS);
            if hash.len() == LONG_HASH_CHARS {
                let entry = format!("{LONG_NAME_PREFIX}{hash}");
                assert_eq!(classify(&entry), EntryKind::Reserved, "{entry}");
                let sidecar = format!("{entry}{LONG_NAME_SIDECAR_SUFFIX}");
                assert_eq!(classify(&sidecar), EntryKind::Reserved, "{sidecar}");
            }
        }
        let hash = "B".repeat(LONG_HASH_CHARS);
        assert_eq!(
            classify(&format!("{LONG_NAME_PREFIX}{hash}")),
            EntryKind::LongName
        );
        assert_eq!(
            classify(&format!(
                "{LONG_NAME_PREFIX}{hash}{LONG_NAME_SIDECAR_SUFFIX}"
            )),
            EntryKind::Sidecar
        );
    }

    #[test]
    fn non_canonical_base64_is_not_an_encrypted_name() {
        let names = NameCipher::new(&SealingKey::from_bytes([1; 32]));
        let dir = DirId([2; 16]);
        let name = names.encrypt(&dir, b"x").unwrap();
        // 32 bytes encode to 43 chars; the last char carries 2 unused bits.
        let mut bytes = name.name().as_bytes().to_vec();
        let last = bytes.len() - 1;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == bytes[last]).unwrap();
        bytes[last] = alphabet[pos ^ 1]; // flips only an unused bit
        let altered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            names.decrypt(&dir, &altered, |_| Ok(Vec::new())),
            Err(FormatError::NotEncryptedName { .. })
        ));
    }
}
