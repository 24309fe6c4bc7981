//! File helpers of the store: refusing paths other users could read or replace,
//! atomic replacement (temp, fsync, rename, fsync directory), and shredding.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use super::{internal, io_err};
use crate::crypto;
use crate::kms::KmsError;

/// Refuses a store path that other users could read or replace.
pub(crate) fn check_private(path: &Path, want_dir: bool) -> Result<(), KmsError> {
    let m = fs::symlink_metadata(path).map_err(|e| io_err(path, "inspect", e))?;
    let euid = nix::unistd::geteuid().as_raw();
    if m.file_type().is_symlink() {
        return Err(internal(format!(
            "store: {} is a symbolic link; the store and its files must be real files owned by uid {euid}",
            path.display()
        )));
    }
    if want_dir != m.is_dir() {
        let what = if want_dir {
            "a directory"
        } else {
            "a regular file"
        };
        return Err(internal(format!("store: {} is not {what}", path.display())));
    }
    if m.uid() != euid {
        return Err(internal(format!(
            "store: {} is owned by uid {}, not by this process's uid {euid}; refusing to use a store another user controls",
            path.display(),
            m.uid()
        )));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let want = if want_dir { "0700" } else { "0600" };
        return Err(internal(format!(
            "store: {} has mode {mode:04o}, which lets other users in; it must be {want} (chmod {} {})",
            path.display(),
            &want[1..],
            path.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (through [`crate::format::replace_file`]): a
/// temp file `.<name>.tmp.<hex>` (0600, which store cleanup recognizes), fsync, rename,
/// fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KmsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut rnd = [0u8; 6];
    crypto::random_fill(&mut rnd).map_err(|e| internal(e.to_string()))?;
    let temp = format!(".{name}.tmp.{}", hex::encode(rnd));
    crate::format::replace_file(dir, name, bytes, 0o600, &temp, false)
        .map_err(|e| io_err(&e.path, e.step, e.source))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), KmsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "fsync directory", e))
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, KmsError> {
    let mut f = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(|e| io_err(path, "read", e))?;
    Ok(v)
}

pub(super) fn make_private_dir(path: &Path) -> Result<(), KmsError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path, "create directory", e)),
    }
}

/// Removes `.NAME.tmp.*` files left in `dir` by a write that was interrupted. Shreds
/// them: a temp file may hold a sealed material version.
pub(super) fn remove_temps(dir: &Path) -> Result<(), KmsError> {
    let entries = fs::read_dir(dir).map_err(|e| io_err(dir, "list", e))?;
    for e in entries {
        let e = e.map_err(|e| io_err(dir, "list", e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp.") {
            shred_file(&e.path())?;
        }
    }
    Ok(())
}

pub(super) fn shred_file(p: &Path) -> Result<(), KmsError> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(p, "inspect", e)),
        Ok(m) if m.is_file() => {
            let len = usize::try_from(m.len()).unwrap_or(0);
            let mut f = OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| io_err(p, "open for shredding", e))?;
            f.write_all(&vec![0u8; len])
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err(p, "overwrite", e))?;
        }
        Ok(_) => {}
    }
    fs::remove_file(p).map_err(|e| io_err(p, "remove", e))
}

/// Destroys a root key file that no longer protects a store (overwrite with zeros,
/// fsync, unlink, fsync its directory).
pub fn shred_key_file(path: &Path) -> Result<(), KmsError> {
    shred_file(path)?;
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}
