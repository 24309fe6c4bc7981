//! The envelope header at the start of every encrypted file: magic, version, file id,
//! the CMK's ARN, the wrapped data key and the key commitment (see docs/FORMAT.md).
//! Owns encoding, strict decoding and the commitment; never unwraps a data key (that is
//! the key service's job) and never sees content.

use std::collections::BTreeMap;
use std::fs::File;

use crate::crypto::DataKey;

use super::FormatError;

/// A file's random 128-bit id (HKDF salt of its keys, part of every block's AAD).
pub type FileId = [u8; 16];

/// The header's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"KMSFS\0v1";
/// HKDF info label of the key-commitment key (derived from the data key, salt = file id).
pub const COMMITMENT_KEY_INFO: &[u8] = b"kmsfs v1 key commitment";
/// Longest key ARN the header accepts (bytes).
pub const MAX_KEY_ARN_LEN: usize = 512;
/// Encryption-context key naming the volume.
pub const CONTEXT_VOLUME: &str = "kmsfs:volume";
/// Encryption-context key naming the file.
pub const CONTEXT_FILE: &str = "kmsfs:file";

/// The encryption context of every key-service call about a file:
/// `{"kmsfs:volume": volume_id, "kmsfs:file": hex(file_id)}`.
pub fn encryption_context(volume_id: &str, file_id: &FileId) -> BTreeMap<String, String> {
    let _ = (volume_id, file_id);
    unimplemented!()
}

/// A decoded (or about-to-be-written) envelope header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub file_id: FileId,
    /// ARN of the CMK that wrapped the data key.
    pub key_arn: String,
    /// The KMS ciphertext blob of the data key (opaque here).
    pub wrapped_key: Vec<u8>,
    /// HMAC-SHA256 under the commitment key over header bytes 0..992.
    pub commitment: [u8; 32],
}

impl FileHeader {
    /// A fresh random file id (for a new file, before asking the key service for a key,
    /// since the id is in the encryption context).
    pub fn generate_file_id() -> Result<FileId, FormatError> {
        unimplemented!()
    }

    /// Builds a header and computes its commitment under `data_key`. Fails if the ARN or
    /// wrapped key is empty or does not fit ([`FormatError::BadHeaderField`]).
    pub fn new(
        file_id: FileId,
        key_arn: String,
        wrapped_key: Vec<u8>,
        data_key: &DataKey,
    ) -> Result<FileHeader, FormatError> {
        let _ = (file_id, key_arn, wrapped_key, data_key);
        unimplemented!()
    }

    /// Exactly [`super::HEADER_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        unimplemented!()
    }

    /// Strict decoding of exactly [`super::HEADER_LEN`] bytes: rejects short or long
    /// input, bad magic, unknown version, bad lengths, non-UTF-8 ARN and non-zero padding,
    /// each with its own error. Does not check the commitment (that needs the data key:
    /// see [`Self::verify_commitment`]).
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, FormatError> {
        let _ = bytes;
        unimplemented!()
    }

    /// Reads and decodes the header at offset 0 of `file` (positional read; the file's
    /// cursor is not used). A file shorter than the header is
    /// [`FormatError::HeaderSize`].
    pub fn read_from(file: &File) -> Result<FileHeader, FormatError> {
        let _ = file;
        unimplemented!()
    }

    /// Encoded length: [`super::HEADER_LEN`] for every version-1 header.
    pub fn header_len(&self) -> usize {
        super::HEADER_LEN
    }

    /// Checks that `data_key` is the key this header commits to
    /// ([`FormatError::KeyCommitment`] otherwise), in constant time.
    pub fn verify_commitment(&self, data_key: &DataKey) -> Result<(), FormatError> {
        let _ = data_key;
        unimplemented!()
    }
}
