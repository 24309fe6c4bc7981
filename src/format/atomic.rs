//! Atomic replacement of small metadata files: write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. Never used for
//! content blocks (those are rewritten in place by the filesystem).

use std::path::Path;

use super::FormatError;

/// Replaces `dir/name` with `bytes` atomically. With `create_new`, fails with
/// `ErrorKind::AlreadyExists` (as [`FormatError::Io`]) if the target exists.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    create_new: bool,
) -> Result<(), FormatError> {
    let _ = (dir, name, bytes, create_new);
    unimplemented!()
}
