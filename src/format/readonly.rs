//! Opening files of the backing directory for reading, as code that must not be steered
//! by whoever can write that directory: never through a symlink, never blocking (a FIFO
//! put where a metadata file belongs must not hang the reader), never opening a device
//! (opening one can have side effects), and never reading more than a caller's bound.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::FormatError;

/// What a non-regular backing object is, in words for a report.
pub fn describe_file_type(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Opens `path` read-only if, and only if, it is a regular file. Anything else is
/// [`FormatError::UnexpectedFileType`] without being opened; OS errors are
/// [`FormatError::Io`] (so callers can tell `NotFound` apart).
pub fn open_regular(path: &Path) -> Result<File, FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let unexpected = |t: std::fs::FileType| FormatError::UnexpectedFileType {
        path: path.to_path_buf(),
        found: describe_file_type(t),
    };
    // lstat first, so that a device or FIFO is reported without ever being opened.
    let before = std::fs::symlink_metadata(path).map_err(io)?;
    if !before.file_type().is_file() {
        return Err(unexpected(before.file_type()));
    }
    // The entry may be swapped between the lstat and the open: O_NOFOLLOW and
    // O_NONBLOCK keep that harmless (a symlink fails, a FIFO does not block), and the
    // fstat below judges what was actually opened.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => FormatError::UnexpectedFileType {
                path: path.to_path_buf(),
                found: "a symbolic link",
            },
            _ => io(e),
        })?;
    let after = file.metadata().map_err(io)?;
    if !after.file_type().is_file() {
        return Err(unexpected(after.file_type()));
    }
    Ok(file)
}

/// Reads the regular file `path` whole, refusing one longer than `max_len` bytes
/// ([`FormatError::BadMetadataFile`]): metadata and sidecars are small, and a huge file
/// in their place must not exhaust memory.
pub fn read_regular(path: &Path, max_len: u64) -> Result<Vec<u8>, FormatError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max_len + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max_len {
        return Err(FormatError::BadMetadataFile {
            path: path.to_path_buf(),
            reason: format!("longer than {max_len} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(read_regular(&file, 3).unwrap(), b"abc");
        assert!(matches!(
            read_regular(&file, 2),
            Err(FormatError::BadMetadataFile { .. })
        ));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (path, found) in [
            (&link, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            match open_regular(path) {
                Err(FormatError::UnexpectedFileType { found: f, .. }) => assert_eq!(f, found),
                other => panic!("{path:?}: {other:?}"),
            }
        }
        assert!(matches!(
            open_regular(&dir.path().join("missing")),
            Err(FormatError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
        ));
    }
}
