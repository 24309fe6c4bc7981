//! Atomic replacement of small metadata files: write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. Never used for
//! content blocks (those are rewritten in place by the filesystem). The key store uses
//! the same code for its files ([`replace_file`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{FormatError, TEMP_PREFIX};

/// Metadata files are not secret (they hold ids, key names and MACs); 0644 before umask
/// lets a mount with `allow_other` and tools like fsck read them.
const METADATA_MODE: u32 = 0o644;

/// Replaces `dir/name` with `bytes` atomically. With `create_new`, fails with an
/// `ErrorKind::AlreadyExists` I/O error (as [`FormatError::Io`]) if the target exists,
/// and never replaces it, even when racing another writer.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    create_new: bool,
) -> Result<(), FormatError> {
    let mut suffix = [0u8; 8];
    crate::crypto::random_fill(&mut suffix).map_err(|_| FormatError::Random)?;
    let temp = format!("{TEMP_PREFIX}{}", hex::encode(suffix));
    replace_file(dir, name, bytes, METADATA_MODE, &temp, create_new).map_err(|e| FormatError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Where and at which step [`replace_file`] failed.
#[derive(Debug)]
pub(crate) struct ReplaceError {
    pub path: PathBuf,
    /// What was being done: "create", "write", "fsync", "replace", "fsync directory".
    pub step: &'static str,
    pub source: std::io::Error,
}

/// The one atomic replacement of a small file, shared by the volume's metadata files
/// and the key store's files (which use their own mode and temp-file names): writes
/// `dir/temp_name` (mode `mode` before umask), fsyncs it, renames it over (or, with
/// `create_new`, links it to) `dir/name`, and fsyncs `dir`. A failure removes the temp
/// file (best effort: a leftover is ignored by its owner, never harmful).
pub(crate) fn replace_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    temp_name: &str,
    create_new: bool,
) -> Result<(), ReplaceError> {
    let temp = dir.join(temp_name);
    let target = dir.join(name);
    let io = |path: &Path, step: &'static str| {
        let path = path.to_path_buf();
        move |source| ReplaceError { path, step, source }
    };

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(io(&temp, "create"))?;
        file.write_all(bytes).map_err(io(&temp, "write"))?;
        file.sync_all().map_err(io(&temp, "fsync"))?;
        drop(file);
        if create_new {
            // link(2) fails if the target exists: the no-clobber form of rename.
            std::fs::hard_link(&temp, &target).map_err(io(&target, "replace"))?;
            std::fs::remove_file(&temp).map_err(io(&temp, "remove"))
        } else {
            std::fs::rename(&temp, &target).map_err(io(&target, "replace"))
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one", false).unwrap();
        write_atomic(dir.path(), "f", b"two", false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn create_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one", true).unwrap();
        let err = write_atomic(dir.path(), "f", b"two", true).unwrap_err();
        assert!(
            matches!(&err, FormatError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
