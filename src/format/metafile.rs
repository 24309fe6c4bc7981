//! Opening the files kmsfs reads for itself — the volume file, directory metadata,
//! long-name sidecars, envelope headers — so that nothing placed in the backing directory
//! can block the reader or make it read without bound.
//!
//! Anyone who owns a backing directory can replace `kmsfs.dir` or a sidecar with a FIFO
//! (whose open blocks until a writer appears), a symlink, a device or a huge file. Every
//! open here is `O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC`, is preceded by an `lstat` so that
//! a device or FIFO is never opened at all, and is followed by an `fstat` that must show
//! a regular file (the name may have been swapped between the two). Metadata reads stop
//! at [`METADATA_MAX_LEN`] bytes. Never writes.

use std::fs::File;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode};

use super::FormatError;

/// Largest volume file, `kmsfs.dir` or sidecar kmsfs reads. The real ones are well under
/// 1 KiB; anything bigger was not written by kmsfs.
pub const METADATA_MAX_LEN: u64 = 64 * 1024;

/// What a non-regular file is, for error messages.
fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFLNK => "a symlink",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        libc::S_IFREG => "a regular file",
        _ => "an unknown file type",
    }
}

/// What a backing object of type `t` is, in words for a report.
pub fn describe_file_type(t: std::fs::FileType) -> &'static str {
    kind_of(file_mode(t))
}

fn not_regular(path: PathBuf, mode: u32) -> FormatError {
    FormatError::NotRegularFile {
        path,
        found: kind_of(mode),
    }
}

fn file_mode(file_type: std::fs::FileType) -> u32 {
    if file_type.is_file() {
        libc::S_IFREG
    } else if file_type.is_dir() {
        libc::S_IFDIR
    } else if file_type.is_symlink() {
        libc::S_IFLNK
    } else if file_type.is_fifo() {
        libc::S_IFIFO
    } else if file_type.is_socket() {
        libc::S_IFSOCK
    } else if file_type.is_char_device() {
        libc::S_IFCHR
    } else if file_type.is_block_device() {
        libc::S_IFBLK
    } else {
        0
    }
}

/// Requires `file` (just opened) to be a regular file.
fn checked(file: File, path: impl Fn() -> PathBuf) -> Result<File, FormatError> {
    let file_type = file
        .metadata()
        .map_err(|source| FormatError::Io {
            path: path(),
            source,
        })?
        .file_type();
    if file_type.is_file() {
        Ok(file)
    } else {
        Err(not_regular(path(), file_mode(file_type)))
    }
}

/// Opens `path` read-only if it is a regular file, without blocking and without
/// following a final symlink. A missing file is [`FormatError::Io`] with
/// `ErrorKind::NotFound`; anything but a regular file is [`FormatError::NotRegularFile`].
pub fn open_regular(path: &Path) -> Result<File, FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let st = std::fs::symlink_metadata(path).map_err(io)?;
    if !st.file_type().is_file() {
        return Err(not_regular(path.to_path_buf(), file_mode(st.file_type())));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // Swapped for a symlink since the lstat.
            Some(libc::ELOOP) => not_regular(path.to_path_buf(), libc::S_IFLNK),
            _ => io(e),
        })?;
    checked(file, || path.to_path_buf())
}

/// [`open_regular`] for `name` in the directory behind `dir`; `shown` names the file in
/// errors (called only on error, so callers may resolve a descriptor's path lazily).
pub fn open_regular_at(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &dyn Fn() -> PathBuf,
) -> Result<File, FormatError> {
    let io = |e: nix::errno::Errno| FormatError::Io {
        path: shown(),
        source: std::io::Error::from_raw_os_error(e as i32),
    };
    let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(not_regular(shown(), st.st_mode));
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP => not_regular(shown(), libc::S_IFLNK),
        e => io(e),
    })?;
    checked(File::from(fd), shown)
}

/// Reads all of `file`, refusing more than [`METADATA_MAX_LEN`] bytes.
fn read_bounded(file: File, path: impl Fn() -> PathBuf) -> Result<Vec<u8>, FormatError> {
    let mut bytes = Vec::new();
    file.take(METADATA_MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FormatError::Io {
            path: path(),
            source,
        })?;
    if bytes.len() as u64 > METADATA_MAX_LEN {
        return Err(FormatError::MetadataTooLarge {
            path: path(),
            max: METADATA_MAX_LEN,
        });
    }
    Ok(bytes)
}

/// The bytes of the metadata file `path` (see [`open_regular`]), at most
/// [`METADATA_MAX_LEN`].
pub fn read_metadata(path: &Path) -> Result<Vec<u8>, FormatError> {
    read_bounded(open_regular(path)?, || path.to_path_buf())
}

/// The bytes of metadata file `name` in the directory behind `dir` (see
/// [`open_regular_at`]), at most [`METADATA_MAX_LEN`].
pub fn read_metadata_at(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &dyn Fn() -> PathBuf,
) -> Result<Vec<u8>, FormatError> {
    read_bounded(open_regular_at(dir, name, shown)?, shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn fifos_symlinks_and_oversized_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        nix::unistd::mkfifo(&p.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::write(p.join("ok"), b"small").unwrap();
        std::os::unix::fs::symlink("ok", p.join("link")).unwrap();
        std::fs::write(p.join("big"), vec![b'x'; METADATA_MAX_LEN as usize + 1]).unwrap();
        let d = File::open(p).unwrap();
        let shown = || PathBuf::from("shown");
        for (name, found) in [("fifo", "a FIFO"), ("link", "a symlink")] {
            let e = read_metadata(&p.join(name)).unwrap_err();
            assert!(
                matches!(&e, FormatError::NotRegularFile { found: f, .. } if *f == found),
                "{e}"
            );
            let e = read_metadata_at(d.as_fd(), name, &shown).unwrap_err();
            assert!(e.to_string().starts_with("shown: "), "{e}");
            assert!(e.is_integrity_failure());
        }
        let e = read_metadata(&p.join("big")).unwrap_err();
        assert!(matches!(e, FormatError::MetadataTooLarge { .. }), "{e}");
        assert_eq!(read_metadata(&p.join("ok")).unwrap(), b"small");
        assert_eq!(read_metadata_at(d.as_fd(), "ok", &shown).unwrap(), b"small");
        let e = read_metadata(&p.join("absent")).unwrap_err();
        assert!(
            matches!(&e, FormatError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
    }
}
