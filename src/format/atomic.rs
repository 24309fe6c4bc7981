//! Atomic replacement of small metadata files: write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. Never used for
//! content blocks (those are rewritten in place by the filesystem).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
    let temp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(suffix)));
    let target = dir.join(name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FormatError::Io { path, source }
    };

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(METADATA_MODE)
            .open(&temp)
            .map_err(io(&temp))?;
        file.write_all(bytes).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        drop(file);
        if create_new {
            // link(2) fails if the target exists: the no-clobber form of rename.
            std::fs::hard_link(&temp, &target).map_err(io(&target))?;
            std::fs::remove_file(&temp).map_err(io(&temp))
        } else {
            std::fs::rename(&temp, &target).map_err(io(&target))
        }
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is reserved and ignored, never harmful.
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
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
