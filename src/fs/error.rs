//! The filesystem's one error type and its one mapping to an errno.
//!
//! Every core operation returns `Result<T, FsError>`; the FUSE handlers reply with
//! [`FsError::errno`] and nothing else decides an errno. Messages never carry key bytes
//! or plaintext.

use crate::format::FormatError;
use crate::kms::KmsError;

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The key service refused or failed (its kind carries the errno: EACCES,
    /// EKEYREVOKED, ENOKEY, EIO).
    #[error("key service: {0}")]
    Kms(#[from] KmsError),
    /// Ciphertext, header or name failed to authenticate or parse: always EIO, so that a
    /// reader never receives bytes that were not written through kmsfs.
    #[error("on-disk data: {0}")]
    Format(#[from] FormatError),
    /// An operating-system call on the backing directory failed.
    #[error("backing file system: {0}")]
    Sys(#[from] nix::errno::Errno),
    /// A file-system level refusal with a fixed errno (ENOENT, ENOTEMPTY, EROFS, ...).
    #[error("{what}")]
    Refused { errno: i32, what: &'static str },
    /// Mounting or unmounting failed (never reaches a FUSE reply).
    #[error("mount: {0}")]
    Mount(String),
    /// A non-lazy unmount found files open or processes working in the mount.
    #[error("{} is busy (a file is open or a process works in it); close them, or unmount lazily", .0.display())]
    Busy(std::path::PathBuf),
}

/// The errno a filesystem user sees for a key service error (DESIGN.md "Errors a user
/// sees"). It lives here, not in kms, because errnos are the filesystem's vocabulary.
pub fn kms_errno(kind: crate::kms::ErrorKind) -> i32 {
    use crate::kms::ErrorKind;
    match kind {
        ErrorKind::AccessDenied => libc::EACCES,
        ErrorKind::Disabled | ErrorKind::KmsInvalidState => libc::EKEYREVOKED,
        ErrorKind::NotFound => libc::ENOKEY,
        _ => libc::EIO,
    }
}

impl FsError {
    /// A refusal with a fixed errno and a short reason for logs.
    pub fn refused(errno: i32, what: &'static str) -> Self {
        FsError::Refused { errno, what }
    }

    /// The errno the caller of the file system sees (DESIGN.md "Errors a user sees").
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Kms(e) => kms_errno(e.kind),
            // An I/O error keeps its own errno (ENOENT, ENOSPC, ...); everything else
            // about on-disk bytes is an integrity failure.
            FsError::Format(FormatError::Io { source, .. } | FormatError::IoNoPath(source)) => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            FsError::Format(_) => libc::EIO,
            FsError::Sys(e) => *e as i32,
            FsError::Refused { errno, .. } => *errno,
            FsError::Mount(_) => libc::EIO,
            FsError::Busy(_) => libc::EBUSY,
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) => FsError::Sys(nix::errno::Errno::from_raw(code)),
            // A write to a backing file that makes no progress: the disk is full.
            None if e.kind() == std::io::ErrorKind::WriteZero => {
                FsError::Sys(nix::errno::Errno::ENOSPC)
            }
            None => FsError::Sys(nix::errno::Errno::EIO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::ErrorKind;

    #[test]
    fn key_service_kinds_map_to_their_documented_errno() {
        let cases = [
            (ErrorKind::AccessDenied, libc::EACCES),
            (ErrorKind::Disabled, libc::EKEYREVOKED),
            (ErrorKind::KmsInvalidState, libc::EKEYREVOKED),
            (ErrorKind::NotFound, libc::ENOKEY),
            (ErrorKind::InvalidCiphertext, libc::EIO),
        ];
        for (kind, errno) in cases {
            assert_eq!(
                FsError::from(KmsError::new(kind, "x")).errno(),
                errno,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn os_errors_keep_their_code() {
        let e = FsError::from(std::io::Error::from_raw_os_error(libc::ENOTEMPTY));
        assert_eq!(e.errno(), libc::ENOTEMPTY);
        assert_eq!(
            FsError::refused(libc::EROFS, "read-only").errno(),
            libc::EROFS
        );
    }
}
