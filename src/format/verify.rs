//! Integrity checks for `kmsfs fsck`: one encrypted file (header decoding, size
//! consistency and, given the data key, every block's authentication), and a walk of a
//! whole volume (volume file, every directory's metadata, every name and sidecar) that
//! hands each regular file to the caller, who gets its data key from the key service.
//! Reports; never repairs and never writes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::crypto::{DataKey, SealingKey};

use super::content::{block_count, block_offset, plaintext_size, sealed_len, ContentCipher};
use super::dirmeta::DirMeta;
use super::header::FileHeader;
use super::names::{classify, EntryKind, NameCipher};
use super::volume::{MetadataKey, VolumeConfig};
use super::{FormatError, BLOCK_SIZE, LONG_NAME_SIDECAR_SUFFIX, SEALED_BLOCK_SIZE};

/// The result of checking one file.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

/// What was found.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileOutcome {
    /// Everything checked is fine. `blocks_checked` is 0 when no data key was given
    /// (only the header and size were checked).
    Ok {
        plaintext_size: u64,
        blocks_checked: u64,
        holes: u64,
    },
    /// The file could not be read.
    Unreadable { error: FormatError },
    /// The header does not decode (bad magic, version, field, padding, truncated).
    HeaderDamaged { error: FormatError },
    /// The data key does not match the header's commitment.
    KeyMismatch,
    /// The backing length is impossible (e.g. a truncated last block).
    SizeInconsistent { backing_len: u64 },
    /// These blocks failed authentication (the rest are fine).
    BlocksFailed {
        indices: Vec<u64>,
        blocks_checked: u64,
    },
}

impl FileReport {
    /// True for [`FileOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, FileOutcome::Ok { .. })
    }
}

/// Checks the encrypted file at `path`. Without `data_key`, checks the header and size
/// only; with it, also the commitment and every block.
pub fn verify_file(path: &Path, data_key: Option<&DataKey>) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        outcome: check(path, data_key),
    }
}

fn check(path: &Path, data_key: Option<&DataKey>) -> FileOutcome {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Never blocks on a FIFO planted in place of a file.
    let file = match super::open_regular(path) {
        Ok(f) => f,
        Err(error) => return FileOutcome::Unreadable { error },
    };
    let backing_len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return FileOutcome::Unreadable { error: io(e) },
    };
    let header = match FileHeader::read_from(&file) {
        Ok(h) => h,
        Err(FormatError::IoNoPath(e)) => return FileOutcome::Unreadable { error: io(e) },
        Err(error) => return FileOutcome::HeaderDamaged { error },
    };
    let Ok(size) = plaintext_size(backing_len) else {
        return FileOutcome::SizeInconsistent { backing_len };
    };
    let Some(data_key) = data_key else {
        return FileOutcome::Ok {
            plaintext_size: size,
            blocks_checked: 0,
            holes: 0,
        };
    };
    let cipher = match ContentCipher::new(data_key, &header) {
        Ok(c) => c,
        Err(_) => return FileOutcome::KeyMismatch,
    };

    let blocks = block_count(size);
    let mut sealed = vec![0u8; SEALED_BLOCK_SIZE];
    let mut plain = Vec::with_capacity(BLOCK_SIZE);
    let mut failed = Vec::new();
    let mut holes = 0;
    for index in 0..blocks {
        // Every block is full except possibly the last.
        let remaining = size - index * BLOCK_SIZE as u64;
        let plain_len = remaining.min(BLOCK_SIZE as u64) as usize;
        let region = &mut sealed[..sealed_len(plain_len)];
        if let Err(e) = file.read_exact_at(region, block_offset(index)) {
            return FileOutcome::Unreadable { error: io(e) };
        }
        if region.iter().all(|&b| b == 0) {
            holes += 1;
        }
        if cipher.open_block(index, region, &mut plain).is_err() {
            failed.push(index);
        }
    }
    if failed.is_empty() {
        FileOutcome::Ok {
            plaintext_size: size,
            blocks_checked: blocks,
            holes,
        }
    } else {
        FileOutcome::BlocksFailed {
            indices: failed,
            blocks_checked: blocks,
        }
    }
}

/// One thing found by [`walk_volume`]. Plaintext paths are relative to the volume root.
#[derive(Debug)]
#[non_exhaustive]
pub enum VolumeEntry {
    /// A directory whose metadata authenticated.
    Directory { backing: PathBuf, plain: PathBuf },
    /// A regular file: check it with [`verify_file`] (with its data key, if available).
    File { backing: PathBuf, plain: PathBuf },
    /// A symlink or special file (its encoding is the filesystem's; not checked here).
    Other { backing: PathBuf, plain: PathBuf },
    /// An entry or directory that is damaged; `plain` when its name was readable.
    Damaged {
        backing: PathBuf,
        plain: Option<PathBuf>,
        error: FormatError,
    },
    /// A name kmsfs did not write (foreign) or left behind (an orphan long-name sidecar,
    /// a temporary file of an interrupted atomic write).
    Stray {
        backing: PathBuf,
        what: &'static str,
    },
}

impl VolumeEntry {
    /// True for [`VolumeEntry::Damaged`].
    pub fn is_damaged(&self) -> bool {
        matches!(self, VolumeEntry::Damaged { .. })
    }
}

/// Walks the volume in `backing`: authenticates the volume file, then every directory's
/// `kmsfs.dir`, decrypts every name (checking long-name sidecars) and calls `visit` once
/// per entry, directories before their contents. Fails only when the volume itself
/// cannot be opened (volume file or root metadata); damage below the root is reported
/// through `visit` and the walk goes on. Does not follow symlinks.
pub fn walk_volume(
    backing: &Path,
    volume_secret: &SealingKey,
    visit: &mut dyn FnMut(VolumeEntry),
) -> Result<VolumeConfig, FormatError> {
    let config = VolumeConfig::load(backing)?;
    let meta_key = MetadataKey::new(volume_secret);
    config.verify(backing, &meta_key)?;
    let names = NameCipher::new(volume_secret);
    let root = DirMeta::load(backing, &meta_key)?;

    // Explicit stack: a deep tree must not overflow the thread's stack.
    let mut stack = vec![(backing.to_path_buf(), PathBuf::new(), root)];
    while let Some((dir, plain_dir, meta)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) => {
                visit(VolumeEntry::Damaged {
                    backing: dir.clone(),
                    plain: Some(plain_dir),
                    error: FormatError::Io { path: dir, source },
                });
                continue;
            }
        };
        let mut listed = BTreeSet::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    listed.insert(e.file_name());
                }
                Err(source) => visit(VolumeEntry::Damaged {
                    backing: dir.clone(),
                    plain: Some(plain_dir.clone()),
                    error: FormatError::Io {
                        path: dir.clone(),
                        source,
                    },
                }),
            }
        }
        for os_name in &listed {
            let path = dir.join(os_name);
            let Some(name) = os_name.to_str() else {
                visit(VolumeEntry::Stray {
                    backing: path,
                    what: "a name that is not UTF-8 (kmsfs never writes one)",
                });
                continue;
            };
            match classify(name) {
                EntryKind::Reserved => {
                    if name.starts_with(super::TEMP_PREFIX) {
                        visit(VolumeEntry::Stray {
                            backing: path,
                            what: "a temporary file left by an interrupted write",
                        });
                    }
                    continue;
                }
                EntryKind::Foreign => {
                    visit(VolumeEntry::Stray {
                        backing: path,
                        what: "a name kmsfs did not write",
                    });
                    continue;
                }
                EntryKind::Sidecar => {
                    let entry = name.strip_suffix(LONG_NAME_SIDECAR_SUFFIX).unwrap_or(name);
                    if !listed.contains(&OsString::from(entry)) {
                        visit(VolumeEntry::Stray {
                            backing: path,
                            what: "a long-name sidecar without its entry",
                        });
                    }
                    continue;
                }
                EntryKind::Encrypted | EntryKind::LongName => {}
            }
            let plain_name = match names.decrypt(&meta.dir_id, name, |s| {
                super::read_metadata(&dir.join(s)).map_err(std::io::Error::other)
            }) {
                Ok(p) => PathBuf::from(OsString::from_vec(p)),
                Err(error) => {
                    visit(VolumeEntry::Damaged {
                        backing: path,
                        plain: None,
                        error,
                    });
                    continue;
                }
            };
            let plain = plain_dir.join(plain_name);
            let file_type = match std::fs::symlink_metadata(&path) {
                Ok(m) => m.file_type(),
                Err(source) => {
                    visit(VolumeEntry::Damaged {
                        backing: path.clone(),
                        plain: Some(plain),
                        error: FormatError::Io { path, source },
                    });
                    continue;
                }
            };
            if file_type.is_dir() {
                match DirMeta::load(&path, &meta_key) {
                    Ok(child) => {
                        visit(VolumeEntry::Directory {
                            backing: path.clone(),
                            plain: plain.clone(),
                        });
                        stack.push((path, plain, child));
                    }
                    Err(error) => visit(VolumeEntry::Damaged {
                        backing: path,
                        plain: Some(plain),
                        error,
                    }),
                }
            } else if file_type.is_file() {
                visit(VolumeEntry::File {
                    backing: path,
                    plain,
                });
            } else {
                visit(VolumeEntry::Other {
                    backing: path,
                    plain,
                });
            }
        }
    }
    Ok(config)
}
