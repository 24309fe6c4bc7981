//! The ciphertext blob that Encrypt, GenerateDataKey and ReEncrypt return and Decrypt
//! reads. It names the CMK and the material version so that Decrypt needs no KeyId and
//! old ciphertexts keep decrypting after rotation. This module owns the byte layout and
//! its parsing; it never sees key material (sealing is the caller's, with the key the
//! header names).
//!
//! Layout, version 1 (all integers big-endian):
//!
//! ```text
//!  offset  size  field
//!  0       4     magic "KMC1" (kmsfs ciphertext, format 1)
//!  4       36    key id: the CMK's UUID in canonical lowercase text form
//!  40      4     material version (u32), 1 = the key's first material
//!  44      12    AES-GCM nonce (random)
//!  56      n     AES-256-GCM ciphertext of the plaintext (n = plaintext length)
//!  56+n    16    AES-GCM tag
//! ```
//!
//! The AEAD key is HKDF-SHA256(material, salt = key id || version, info =
//! [`CIPHERTEXT_KEY_INFO`]). The associated data is the 44-byte header followed by the
//! encryption context in canonical form: u32 pair count, then for each pair in key order
//! u32 key length, key bytes, u32 value length, value bytes. So the header cannot be
//! moved to another key or version, and the context must match exactly on Decrypt.
//! Random 96-bit nonces: at most 2^32 encryptions per material version, which rotation
//! keeps far away for a local service.

use crate::crypto::{NONCE_LEN, SEAL_OVERHEAD};
use crate::policy::EncryptionContext;

pub const MAGIC: &[u8; 4] = b"KMC1";
/// Length of a canonical UUID in text form.
pub const KEY_ID_LEN: usize = 36;
/// Bytes before the nonce.
pub const HEADER_LEN: usize = 4 + KEY_ID_LEN + 4;
/// The HKDF info label of the per-material-version ciphertext key.
pub const CIPHERTEXT_KEY_INFO: &[u8] = b"kmsfs cmk ciphertext key v1";

/// A parsed blob: which key and version, and the sealed part (nonce || ct || tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob<'a> {
    pub key_id: &'a str,
    pub version: u32,
    pub header: &'a [u8],
    pub sealed: &'a [u8],
}

/// Why a blob was refused (all map to InvalidCiphertextException).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the ciphertext is too short to be a kmsfs ciphertext blob")]
    Truncated,
    #[error("the ciphertext does not start with a kmsfs ciphertext header")]
    BadMagic,
    #[error("the ciphertext header names no valid key id")]
    BadKeyId,
}

/// Builds the 44-byte header for `key_id` (a canonical UUID) and `version`.
pub fn header(key_id: &str, version: u32) -> Result<[u8; HEADER_LEN], BlobError> {
    if !is_key_id(key_id) {
        return Err(BlobError::BadKeyId);
    }
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..4 + KEY_ID_LEN].copy_from_slice(key_id.as_bytes());
    h[4 + KEY_ID_LEN..].copy_from_slice(&version.to_be_bytes());
    Ok(h)
}

/// Splits a blob into its parts without opening it.
pub fn parse(blob: &[u8]) -> Result<Blob<'_>, BlobError> {
    if blob.len() < HEADER_LEN + SEAL_OVERHEAD {
        return Err(BlobError::Truncated);
    }
    let (header, sealed) = blob.split_at(HEADER_LEN);
    if &header[..4] != MAGIC {
        return Err(BlobError::BadMagic);
    }
    let key_id =
        std::str::from_utf8(&header[4..4 + KEY_ID_LEN]).map_err(|_| BlobError::BadKeyId)?;
    if !is_key_id(key_id) {
        return Err(BlobError::BadKeyId);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&header[4 + KEY_ID_LEN..]);
    debug_assert!(sealed.len() >= NONCE_LEN);
    Ok(Blob {
        key_id,
        version: u32::from_be_bytes(v),
        header,
        sealed,
    })
}

/// The associated data: header then the canonical encoding of the context.
pub fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    // The exact length, so that building it costs one allocation and no regrowth.
    let len = context
        .iter()
        .fold(header.len() + 4, |n, (k, v)| n + 8 + k.len() + v.len());
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(header);
    push_len(&mut out, context.len());
    for (k, v) in context {
        push_len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        push_len(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    // Contexts are bounded far below 4 GiB by request validation; saturate rather than wrap.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
}

/// True for a canonical lowercase UUID (8-4-4-4-12 hex).
pub fn is_key_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == KEY_ID_LEN
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A fresh random (version 4) UUID in canonical form (the audit log's event ids use the
/// same generator, [`crate::audit::uuid_v4`]).
pub fn new_key_id() -> Result<String, crate::crypto::CryptoError> {
    crate::audit::uuid_v4().map_err(|_| crate::crypto::CryptoError::Random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_bad_blobs() {
        let id = new_key_id().unwrap();
        assert!(is_key_id(&id));
        let h = header(&id, 7).unwrap();
        let mut blob = h.to_vec();
        blob.extend_from_slice(&[0u8; SEAL_OVERHEAD + 3]);
        let b = parse(&blob).unwrap();
        assert_eq!(b.key_id, id);
        assert_eq!(b.version, 7);
        assert_eq!(b.sealed.len(), SEAL_OVERHEAD + 3);
        assert_eq!(parse(&blob[..HEADER_LEN + 5]), Err(BlobError::Truncated));
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(BlobError::BadMagic));
        let mut bad = blob.clone();
        bad[10] = b'Z';
        assert_eq!(parse(&bad), Err(BlobError::BadKeyId));
        assert!(header("not-a-uuid", 1).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_what_header_builds(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(b) = parse(&bytes) {
                let rebuilt = header(b.key_id, b.version).unwrap();
                proptest::prop_assert_eq!(&rebuilt[..], b.header);
            }
        }
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        let mut a = EncryptionContext::new();
        a.insert("ab".into(), "c".into());
        let mut b = EncryptionContext::new();
        b.insert("a".into(), "bc".into());
        assert_ne!(aad(b"h", &a), aad(b"h", &b));
        assert_ne!(aad(b"h", &a), aad(b"h", &EncryptionContext::new()));
    }
}
