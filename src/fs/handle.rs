//! Open file and directory handles: what an `open` authorized, kept until `release`.
//!
//! A file handle holds a backing file descriptor and the content cipher that the key
//! service's answer unlocked for this one open; the cipher is never shared with another
//! open, so a permission is never reused across opens. (The descriptor of a read-only
//! open is the node's shared one, see [`super::inode::SharedReader`]: a descriptor is
//! not a permission.) The one exception is a re-key of the file
//! through another handle (see [`super::inode::ContentKey`]): the file then has a new
//! key, generated for it under the directory's key rule by an authorized caller, and
//! open handles follow it, as POSIX handles survive another opener's truncation. A directory handle holds the decrypted
//! listing taken at its first read (and again at each read from offset 0), so offsets
//! stay stable while the directory changes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::format::ContentCipher;
use crate::kms::provider::Caller;

use super::authz::Access;
use super::content::DirectReader;
use super::error::FsError;
use super::inode::{CipherPin, ContentKey, Node, NodeKind};

/// One open regular file.
#[derive(Debug)]
pub struct OpenFile {
    pub node: Arc<Node>,
    /// Its own descriptor, or (read-only opens) the node's shared one.
    pub file: Arc<File>,
    /// The cipher this open unlocked (or, for a create, generated).
    pub cipher: Arc<ContentCipher>,
    /// The node's [`ContentKey::epoch`] when `cipher` was obtained.
    pub epoch: u64,
    pub access: Access,
    /// `O_APPEND`: every write goes to the current end of file. Always false with the
    /// writeback cache, where the kernel positions appends itself and its WRITEs carry
    /// the offsets to use (its size is ahead of the backing file's while pages are dirty).
    pub append: bool,
    /// Who opened (or created) the file. With the writeback cache, WRITEs come from the
    /// kernel's flusher, not from the writer; a re-key a write needs is then asked as
    /// the opener of the handle the kernel writes through.
    pub opener: Caller,
    /// Keeps the node's newer cipher (if the file is re-keyed) for as long as this open
    /// lives; taken before `epoch` was read.
    pub _pin: CipherPin<Arc<Node>>,
    /// The backing file opened read-only with `O_DIRECT`, for cold large reads (see
    /// `content::direct`): opened at this handle's first READ of that size, `None`
    /// inside where that open failed (a file system without `O_DIRECT`).
    pub direct: OnceLock<Option<DirectReader>>,
}

impl OpenFile {
    /// The cipher to use now, given the node's key state (read under the node's content
    /// lock): this open's own, unless the file was re-keyed since.
    pub fn cipher<'a>(&'a self, key: &'a ContentKey) -> &'a Arc<ContentCipher> {
        match &key.cipher {
            Some(newer) if key.epoch != self.epoch => newer,
            _ => &self.cipher,
        }
    }
}

/// One listing entry of a directory handle.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: NodeKind,
    /// The entry's name in the backing directory (for readdirplus's lookups).
    pub backing_name: String,
    /// The backing inode number (readdir's `d_ino`; lookups assign FUSE inodes).
    pub backing_ino: u64,
}

/// One open directory. The listing is taken on the handle's first `READDIR` (and again
/// on every read from offset 0, i.e. after `rewinddir`), not at `opendir`: an `opendir`
/// whose entries the kernel serves from its own cache then costs no listing at all.
#[derive(Debug, Default)]
pub struct OpenDir {
    pub listing: Mutex<Option<Arc<Vec<DirEntry>>>>,
}

/// Handle numbers → open files and directories.
pub struct HandleTable<T> {
    map: RwLock<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> HandleTable<T> {
    pub fn insert(&self, value: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(value));
        fh
    }

    /// The handle `fh`; `EBADF` if it is not open.
    pub fn get(&self, fh: u64) -> Result<Arc<T>, FsError> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::refused(libc::EBADF, "unknown file handle"))
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}
