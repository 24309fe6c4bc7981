//! Integrity checks behind `kmsfs fsck`, the same ones the filesystem makes when it
//! serves the volume: the volume file's and every directory's MAC, every name and
//! long-name sidecar, every symlink target, every sealed (`user.*`) extended attribute,
//! the kind of every backing object, and per regular file its header, size, key
//! commitment and every block. The data key comes
//! from the caller (a [`KeyLookup`]: the key service, asked exactly as the mount asks
//! it), so this module still knows nothing of KMS. Reports; never repairs, never
//! writes, never follows a symlink and never opens anything but regular files (with
//! `O_NOFOLLOW | O_NONBLOCK`, see [`super::metafile`]).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::{DataKey, SealingKey};

use super::content::{block_count, ContentCipher};
use super::dirmeta::{DirMeta, Resolved};
use super::header::FileHeader;
use super::keys::VolumeKeys;
use super::metafile::{describe_file_type, open_regular};
use super::names::{classify, EntryKind};
use super::symlink::{stored_target_name, SYMLINK_STORE_PREFIX};
use super::volume::{MetadataKey, VolumeConfig};
use super::xattr::{sealed_attributes, XattrCipher};
use super::{FormatError, BLOCK_SIZE, LONG_NAME_SIDECAR_SUFFIX, MAX_SEALED_BLOCK_SIZE};

/// What the caller's key service said about a file's wrapped data key.
#[derive(Debug)]
pub enum KeyLookup {
    /// The data key: the commitment and every block are checked with it.
    Key(DataKey),
    /// The key could not be used by this caller or in the key's current state (denied,
    /// disabled, deleted, service unavailable). Says nothing about the bytes: the
    /// header and size are checked, the content is not.
    Unavailable(String),
    /// The key service rejected the wrapped key or its encryption context as invalid
    /// ciphertext: the header was altered or comes from another file or volume.
    Rejected(String),
}

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
    /// The key service rejected the wrapped data key with this file's encryption context
    /// (see [`KeyLookup::Rejected`]).
    KeyRejected { reason: String },
    /// Header and size are fine; the data key could not be used, so the commitment and
    /// the blocks were not checked (see [`KeyLookup::Unavailable`]). Not damage.
    ContentNotChecked { plaintext_size: u64, reason: String },
}

impl FileOutcome {
    /// True when the file is damaged (reading it through the mount fails with EIO).
    /// [`FileOutcome::Ok`] and [`FileOutcome::ContentNotChecked`] are not.
    pub fn is_damaged(&self) -> bool {
        !matches!(
            self,
            FileOutcome::Ok { .. } | FileOutcome::ContentNotChecked { .. }
        )
    }
}

impl FileReport {
    /// True for [`FileOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, FileOutcome::Ok { .. })
    }
}

/// Where [`check`] gets the data key.
enum KeySource<'a> {
    Given(Option<&'a DataKey>),
    Lookup(&'a mut dyn FnMut(&FileHeader) -> KeyLookup),
}

/// Checks the encrypted file at `path`. Without `data_key`, checks the header and size
/// only; with it, also the commitment and every block.
pub fn verify_file(path: &Path, data_key: Option<&DataKey>) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        outcome: check(path, None, KeySource::Given(data_key)),
    }
}

/// Checks the encrypted file at `path`, asking `keys` for its data key once the header
/// decodes and the size is consistent (so a file damaged before that costs no key
/// service call).
pub fn verify_file_with(path: &Path, keys: &mut dyn FnMut(&FileHeader) -> KeyLookup) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        outcome: check(path, None, KeySource::Lookup(keys)),
    }
}

fn check(path: &Path, volume: Option<&VolumeConfig>, keys: KeySource<'_>) -> FileOutcome {
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
    if let Some(volume) = volume {
        if let Err(error) = volume.check_envelope(header.version) {
            return FileOutcome::HeaderDamaged { error };
        }
    }
    // The size arithmetic depends on the envelope version (its per-block overhead).
    let layout = header.version;
    let Ok(size) = layout.plaintext_size(backing_len) else {
        return FileOutcome::SizeInconsistent { backing_len };
    };
    let looked_up;
    let data_key = match keys {
        KeySource::Given(Some(key)) => key,
        KeySource::Given(None) => {
            return FileOutcome::Ok {
                plaintext_size: size,
                blocks_checked: 0,
                holes: 0,
            }
        }
        KeySource::Lookup(lookup) => match lookup(&header) {
            KeyLookup::Key(key) => {
                looked_up = key;
                &looked_up
            }
            KeyLookup::Unavailable(reason) => {
                return FileOutcome::ContentNotChecked {
                    plaintext_size: size,
                    reason,
                }
            }
            KeyLookup::Rejected(reason) => return FileOutcome::KeyRejected { reason },
        },
    };
    let cipher = match ContentCipher::new(data_key, &header) {
        Ok(c) => c,
        Err(_) => return FileOutcome::KeyMismatch,
    };

    let blocks = block_count(size);
    let mut sealed = vec![0u8; MAX_SEALED_BLOCK_SIZE];
    let mut plain = Vec::with_capacity(BLOCK_SIZE);
    let mut failed = Vec::new();
    let mut holes = 0;
    for index in 0..blocks {
        // Every block is full except possibly the last.
        let remaining = size - index * BLOCK_SIZE as u64;
        let plain_len = remaining.min(BLOCK_SIZE as u64) as usize;
        let region = &mut sealed[..layout.sealed_len(plain_len)];
        if let Err(e) = file.read_exact_at(region, layout.block_offset(index)) {
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
    /// A symlink whose sealed target authenticated.
    Symlink { backing: PathBuf, plain: PathBuf },
    /// A FIFO or socket: kmsfs stores them as they are (`mknod` through the mount), so
    /// there is nothing to authenticate; `what` says which. Never opened.
    Other {
        backing: PathBuf,
        plain: PathBuf,
        what: &'static str,
    },
    /// An entry or directory that is damaged; `plain` when its name was readable.
    Damaged {
        backing: PathBuf,
        plain: Option<PathBuf>,
        error: FormatError,
    },
    /// A directory whose `kmsfs.dir` a crash lost (missing, or a torn copy of the file
    /// `mkdir` wrote without fsync) while its id attribute survived: its names are
    /// checked under that id, and the next writable mount rewrites the file (version 0,
    /// no key rule). Not damage.
    Repairable {
        backing: PathBuf,
        plain: PathBuf,
        what: &'static str,
    },
    /// A name kmsfs did not write (foreign) or left behind (an orphan long-name sidecar,
    /// a stored symlink target no symlink refers to, a temporary file of an interrupted
    /// atomic write).
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

/// One thing found by [`check_volume`]: a regular file with the outcome of its check, or
/// any other entry as [`walk_volume`] reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum VolumeFinding {
    File {
        backing: PathBuf,
        plain: PathBuf,
        outcome: FileOutcome,
    },
    Entry(VolumeEntry),
}

impl VolumeFinding {
    /// True when what was found is damaged (the mount answers EIO for it).
    pub fn is_damaged(&self) -> bool {
        match self {
            VolumeFinding::File { outcome, .. } => outcome.is_damaged(),
            VolumeFinding::Entry(e) => e.is_damaged(),
        }
    }
}

/// Walks the volume in `backing`: authenticates the volume file, then every directory's
/// `kmsfs.dir`, decrypts every name (checking long-name sidecars), every symlink target
/// and every `user.*` attribute value of files and directories (a failing one is an
/// extra [`VolumeEntry::Damaged`] for that path), and calls `visit` once per entry,
/// directories before their contents; stored symlink targets no symlink refers to come
/// last, as [`VolumeEntry::Stray`] (only when every directory could be listed). Fails
/// only when the volume itself cannot be opened (volume file or root metadata); damage
/// below the root is reported through `visit` and the walk goes on. Does not follow
/// symlinks and opens only regular files.
pub fn walk_volume(
    backing: &Path,
    volume_secret: &SealingKey,
    visit: &mut dyn FnMut(VolumeEntry),
) -> Result<VolumeConfig, FormatError> {
    let config = VolumeConfig::load(backing)?;
    let meta_key = MetadataKey::new(volume_secret);
    config.verify(backing, &meta_key)?;
    let root = DirMeta::load_resolved(backing, &meta_key)?;
    note_repair(backing, Path::new(""), &root, visit);
    walk_tree(backing, volume_secret, &meta_key, root.meta, visit);
    Ok(config)
}

/// Everything `kmsfs fsck` checks, in one walk: [`walk_volume`]'s checks, and each
/// regular file checked with [`verify_file_with`], its data key from `keys`. Unlike
/// [`walk_volume`], a volume file or root metadata that fails to authenticate is
/// reported through `visit` (as [`VolumeEntry::Damaged`]) rather than returned: the walk
/// goes on past a bad volume file MAC, and stops only when the root's names cannot be
/// read. Fails only when the volume file cannot be read or parsed at all.
pub fn check_volume(
    backing: &Path,
    volume_secret: &SealingKey,
    keys: &mut dyn FnMut(&FileHeader) -> KeyLookup,
    visit: &mut dyn FnMut(VolumeFinding),
) -> Result<VolumeConfig, FormatError> {
    let config = VolumeConfig::load(backing)?;
    let meta_key = MetadataKey::new(volume_secret);
    if let Err(error) = config.verify(backing, &meta_key) {
        visit(VolumeFinding::Entry(VolumeEntry::Damaged {
            backing: VolumeConfig::path(backing),
            plain: None,
            error,
        }));
    }
    let root = match DirMeta::load_resolved(backing, &meta_key) {
        Ok(root) => {
            note_repair(backing, Path::new(""), &root, &mut |e| {
                visit(VolumeFinding::Entry(e))
            });
            root.meta
        }
        Err(error) => {
            visit(VolumeFinding::Entry(VolumeEntry::Damaged {
                backing: backing.to_path_buf(),
                plain: Some(PathBuf::new()),
                error,
            }));
            return Ok(config);
        }
    };
    walk_tree(
        backing,
        volume_secret,
        &meta_key,
        root,
        &mut |entry| match entry {
            VolumeEntry::File { backing, plain } => {
                // In a volume whose files are all of one envelope version, another
                // version is damage (the mount refuses it with EIO).
                let outcome = check(&backing, Some(&config), KeySource::Lookup(&mut *keys));
                visit(VolumeFinding::File {
                    backing,
                    plain,
                    outcome,
                })
            }
            other => visit(VolumeFinding::Entry(other)),
        },
    );
    Ok(config)
}

/// Reports a directory whose `kmsfs.dir` the mount will rebuild from its id attribute.
fn note_repair(dir: &Path, plain: &Path, resolved: &Resolved, visit: &mut dyn FnMut(VolumeEntry)) {
    if let Some(what) = resolved.repair {
        visit(VolumeEntry::Repairable {
            backing: DirMeta::path(dir),
            plain: plain.to_path_buf(),
            what,
        });
    }
}

/// The walk below an authenticated root (see [`walk_volume`]).
fn walk_tree(
    backing: &Path,
    volume_secret: &SealingKey,
    meta_key: &MetadataKey,
    root: DirMeta,
    visit: &mut dyn FnMut(VolumeEntry),
) {
    let keys = VolumeKeys::new(volume_secret);
    let (names, symlinks, xattrs) = (&keys.names, &keys.symlinks, &keys.xattrs);
    let check_xattrs = |path: &Path, plain: &Path, visit: &mut dyn FnMut(VolumeEntry)| {
        if let Err(error) = check_attributes(path, xattrs) {
            visit(VolumeEntry::Damaged {
                backing: path.to_path_buf(),
                plain: Some(plain.to_path_buf()),
                error,
            });
        }
    };
    check_xattrs(backing, Path::new(""), visit);

    // Stored symlink targets (`kmsfs.st.<H>`) found in the root, and those some backing
    // symlink names: the difference is reported as stray once the whole tree was seen.
    let mut stored_targets = Vec::new();
    let mut referenced = BTreeSet::new();
    // False once a directory could not be listed: its symlinks were not seen, so a
    // stored target that looks unreferenced may be theirs and is not reported.
    let mut walked_everything = true;
    // Directories whose metadata failed: not walked, but their symlinks still count.
    let mut unwalked = Vec::new();

    // Explicit stack: a deep tree must not overflow the thread's stack.
    let mut stack = vec![(backing.to_path_buf(), PathBuf::new(), root)];
    while let Some((dir, plain_dir, meta)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) => {
                walked_everything = false;
                visit(VolumeEntry::Damaged {
                    backing: dir.clone(),
                    plain: Some(plain_dir),
                    error: FormatError::Io { path: dir, source },
                });
                continue;
            }
        };
        let mut listed = BTreeSet::new();
        let mut listed_symlinks = BTreeSet::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    if e.file_type().is_ok_and(|t| t.is_symlink()) {
                        listed_symlinks.insert(e.file_name());
                    }
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
                    } else if name == super::REWRAP_JOURNAL_NAME && dir.as_path() == backing {
                        visit(VolumeEntry::Stray {
                            backing: path,
                            what: "the journal of an interrupted kmsfs rewrap (a rerun or the \
                                   next mount completes it)",
                        });
                    } else if name.starts_with(SYMLINK_STORE_PREFIX) {
                        if dir.as_path() == backing {
                            stored_targets.push((name.to_string(), path));
                        } else {
                            visit(VolumeEntry::Stray {
                                backing: path,
                                what: "a stored symlink target outside the backing root",
                            });
                        }
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
            // Read before the name is checked: a stored target stays referenced by a
            // symlink whose own name is damaged (a repair may still recover both).
            let mut link = listed_symlinks
                .contains(os_name)
                .then(|| std::fs::read_link(&path));
            if let Some(Ok(target)) = &link {
                if let Some(stored) = stored_target_name(target.as_os_str()) {
                    referenced.insert(stored.to_string());
                }
            }
            let read_sidecar =
                |s: &str| super::read_metadata(&dir.join(s)).map_err(std::io::Error::other);
            let plain_name = match names.decrypt(&meta.dir_id, name, read_sidecar) {
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
                match DirMeta::load_resolved(&path, meta_key) {
                    Ok(child) => {
                        visit(VolumeEntry::Directory {
                            backing: path.clone(),
                            plain: plain.clone(),
                        });
                        note_repair(&path, &plain, &child, visit);
                        check_xattrs(&path, &plain, visit);
                        stack.push((path, plain, child.meta));
                    }
                    Err(error) => {
                        unwalked.push(path.clone());
                        visit(VolumeEntry::Damaged {
                            backing: path,
                            plain: Some(plain),
                            error,
                        })
                    }
                }
            } else if file_type.is_file() {
                check_xattrs(&path, &plain, visit);
                visit(VolumeEntry::File {
                    backing: path,
                    plain,
                });
            } else if file_type.is_symlink() {
                // The mount's readlink opens the sealed target: so does fsck. A regular
                // file replaced by a symlink lands here and fails, never followed.
                let checked = link
                    .take()
                    .unwrap_or_else(|| std::fs::read_link(&path))
                    .map_err(|source| FormatError::Io {
                        path: path.clone(),
                        source,
                    })
                    .and_then(|t| {
                        symlinks.open(t.as_os_str(), |name| {
                            super::read_metadata(&backing.join(name))
                        })
                    });
                match checked {
                    Ok(_) => visit(VolumeEntry::Symlink {
                        backing: path,
                        plain,
                    }),
                    Err(error) => visit(VolumeEntry::Damaged {
                        backing: path,
                        plain: Some(plain),
                        error,
                    }),
                }
            } else {
                // FIFOs, sockets and device nodes: kmsfs keeps them as they are (mknod
                // through the mount), with nothing to authenticate. Never opened.
                visit(VolumeEntry::Other {
                    backing: path,
                    plain,
                    what: describe_file_type(file_type),
                });
            }
        }
    }
    walked_everything &= stored_targets.is_empty() || symlink_references(unwalked, &mut referenced);
    if walked_everything {
        for (name, path) in stored_targets {
            if !referenced.contains(&name) {
                visit(VolumeEntry::Stray {
                    backing: path,
                    what: "a stored symlink target no symlink refers to",
                });
            }
        }
    }
}

/// Adds to `referenced` the stored targets named by every backing symlink below `dirs`
/// (directories whose metadata failed, so their names were not checked: any symlink
/// counts). False if some directory could not be listed.
fn symlink_references(mut dirs: Vec<PathBuf>, referenced: &mut BTreeSet<String>) -> bool {
    let mut complete = true;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            complete = false;
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                complete = false;
                continue;
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_symlink() => {
                    if let Ok(target) = std::fs::read_link(entry.path()) {
                        if let Some(stored) = stored_target_name(target.as_os_str()) {
                            referenced.insert(stored.to_string());
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => complete = false,
            }
        }
    }
    complete
}

/// Opens every sealed (`user.*`) extended attribute of the regular file or directory
/// `path`, as the mount's getxattr does; the first that fails is the error.
fn check_attributes(path: &Path, xattrs: &XattrCipher) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let is_dir = std::fs::symlink_metadata(path).map_err(io)?.is_dir();
    let object = if is_dir {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?
    } else {
        open_regular(path)?
    };
    for (name, stored) in sealed_attributes(&object).map_err(io)? {
        xattrs.open(&name, &stored)?;
    }
    Ok(())
}
