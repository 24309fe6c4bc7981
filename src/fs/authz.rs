//! The open-authorization flow (README.md, "What the filesystem checks").
//!
//! | operation | KMS action | key |
//! | --- | --- | --- |
//! | create a regular file | GenerateDataKey | the directory's key rule |
//! | open read-only | Decrypt | the key in the file's own envelope |
//! | open write-only | Encrypt | same |
//! | open read-write, or any open with O_TRUNC | Decrypt and/or Encrypt | same |
//! | truncate without an open handle | Encrypt | same |
//! | re-key: truncation to zero, or first write into a header-only file whose key this mount did not generate (with the writeback cache: a writable open of one) | GenerateDataKey (as [`new_file`]), after the open's or truncate's own check | the directory's key rule now |
//!
//! Every call goes to the [`DataKeys`] provider, which authorizes and audits: nothing is
//! cached here across opens, so a policy change takes effect on the next open. The
//! encryption context is always the volume id and the file id from the file's header.

use crate::crypto::DataKey;
use crate::format::{encryption_context, ContentCipher, FileHeader, KeyLookup};
use crate::kms::provider::{Caller, DataAction, DataKeys};
use crate::kms::{ErrorKind, KmsError};

use super::error::FsError;

/// What an open may do with its handle, from the open flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    /// Access requested by `open(2)` flags. `O_TRUNC` counts as writing even with
    /// `O_RDONLY` (Linux truncates in that case).
    pub fn from_flags(flags: i32) -> Self {
        let (read, write) = match flags & libc::O_ACCMODE {
            libc::O_WRONLY => (false, true),
            libc::O_RDWR => (true, true),
            _ => (true, false),
        };
        Access {
            read,
            write: write || flags & libc::O_TRUNC != 0,
        }
    }

    /// The KMS actions this access needs, in the order they are checked.
    pub fn actions(self) -> &'static [DataAction] {
        match (self.read, self.write) {
            (true, true) => &[DataAction::Decrypt, DataAction::Encrypt],
            (false, true) => &[DataAction::Encrypt],
            _ => &[DataAction::Decrypt],
        }
    }
}

/// Asks the key service for the data key of an existing file (whose header is `header`)
/// on behalf of `caller`, for `actions`, and builds its content cipher (which checks the
/// header's key commitment: a mismatch is EIO, never wrong bytes).
pub fn unlock(
    keys: &dyn DataKeys,
    caller: &Caller,
    volume_id: &str,
    header: &FileHeader,
    actions: &[DataAction],
) -> Result<ContentCipher, FsError> {
    let key = open_file_key(keys, caller, volume_id, header, actions)?;
    Ok(ContentCipher::new(&key, header)?)
}

/// The one way to unwrap an existing file's data key: the key named in its own wrapped
/// key, the encryption context of this volume and the header's file id. A wrapped key
/// from another volume or file fails here as `InvalidCiphertextException`.
pub fn open_file_key(
    keys: &dyn DataKeys,
    caller: &Caller,
    volume_id: &str,
    header: &FileHeader,
    actions: &[DataAction],
) -> Result<DataKey, KmsError> {
    let context = encryption_context(volume_id, &header.file_id);
    keys.open_data_key(
        caller,
        &header.key_arn,
        &header.wrapped_key,
        &context,
        actions,
    )
}

/// The data key of a file for `kmsfs fsck`: [`open_file_key`] for `kms:Decrypt`, exactly
/// as a read through the mount asks for it, sorted into what fsck reports. Only
/// `InvalidCiphertextException` says the bytes are wrong (the mount's EIO); a refusal,
/// a disabled or unknown key or a failing service says the key could not be used (the
/// mount's EACCES, EKEYREVOKED, ENOKEY), not that the file is damaged.
pub fn key_for_check(
    keys: &dyn DataKeys,
    caller: &Caller,
    volume_id: &str,
    header: &FileHeader,
) -> KeyLookup {
    match open_file_key(keys, caller, volume_id, header, &[DataAction::Decrypt]) {
        Ok(key) => KeyLookup::Key(key),
        Err(e) if e.kind == ErrorKind::InvalidCiphertext => KeyLookup::Rejected(format!(
            "the key service rejected the wrapped data key ({}): altered, or from another \
             file or volume",
            e.kind.aws_name()
        )),
        Err(e) => KeyLookup::Unavailable(format!("{}: {}", e.kind.aws_name(), e.message)),
    }
}

/// Asks the key service for a fresh data key under `key_id` for a new file, and returns
/// the new file's header (carrying the wrapped key) and its content cipher.
pub fn new_file(
    keys: &dyn DataKeys,
    caller: &Caller,
    volume_id: &str,
    key_id: &str,
) -> Result<(FileHeader, ContentCipher), FsError> {
    let file_id = FileHeader::generate_file_id()?;
    let context = encryption_context(volume_id, &file_id);
    let fresh = keys.generate_data_key(caller, key_id, &context)?;
    let header = FileHeader::new(file_id, fresh.key_arn, fresh.wrapped, &fresh.key)?;
    let cipher = ContentCipher::new(&fresh.key, &header)?;
    Ok((header, cipher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_map_to_the_documented_actions() {
        let cases: &[(i32, &[DataAction])] = &[
            (libc::O_RDONLY, &[DataAction::Decrypt]),
            (libc::O_WRONLY, &[DataAction::Encrypt]),
            (libc::O_RDWR, &[DataAction::Decrypt, DataAction::Encrypt]),
            (libc::O_WRONLY | libc::O_APPEND, &[DataAction::Encrypt]),
            (libc::O_WRONLY | libc::O_TRUNC, &[DataAction::Encrypt]),
            (
                libc::O_RDONLY | libc::O_TRUNC,
                &[DataAction::Decrypt, DataAction::Encrypt],
            ),
        ];
        for (flags, actions) in cases {
            assert_eq!(
                Access::from_flags(*flags).actions(),
                *actions,
                "flags {flags:#o}"
            );
        }
    }
}
