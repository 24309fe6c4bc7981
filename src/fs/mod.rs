//! The FUSE filesystem: a plaintext view of an encrypted backing directory, where every
//! open of a file is authorized by the key service.
//!
//! - [`mount`]: mount lifecycle and options (used by the CLI)
//! - `fuse`: the thin `fuser::Filesystem` handlers
//! - `core`: one function per operation, `Result<T, FsError>`, one file per operation
//!   family (files, directories, links, attributes, xattrs, key rules)
//! - [`authz`]: which KMS actions an open needs, and the calls that get data keys
//! - `content`: plaintext offsets ↔ sealed blocks; read, write, truncate
//! - `names`: encrypted names, directory metadata, symlink targets, xattr values
//! - `inode`, `handle`: the inode and open-handle tables
//! - [`key_rule`]: a mounted directory's key rule from outside the daemon (the CLI)
//! - [`error`]: [`FsError`] and its one errno mapping
//!
//! This module talks to the key service only through [`crate::kms::provider::DataKeys`]
//! and to the on-disk format only through [`crate::format`]. It never caches a
//! permission across opens and never returns bytes that failed authentication.
//!
//! Behaviour worth knowing:
//! - Writes are write-through: a write is sealed and in the backing file before it is
//!   acknowledged, so a lazy unmount (or a crash of the daemon) loses no acknowledged
//!   write. Writes to one file are serialized per inode (reads share the lock), so a
//!   read-modify-write of a partial block is never interleaved with another.
//! - The kernel keeps a file's cached pages across opens (`keep_cache`) unless a write
//!   through this mount changed the file since the previous open; every open still asks
//!   the key service first, so cached pages never reach a caller who is refused.
//! - New regular files appear in the backing directory only with a complete header
//!   (`O_TMPFILE`, then `linkat`), owned by the caller when the daemon runs as root.
//! - Mode bits are the kernel's to check (`default_permissions`); without it, only opens
//!   (key service), chmod/chown (owner or root) and key rules (owner or root) are checked
//!   here. Multi-user mounts should use `allow_other,default_permissions`.

pub mod authz;
mod content;
mod core;
pub mod error;
mod fuse;
mod handle;
mod inode;
pub mod key_rule;
pub mod mount;
mod mountpoint;
mod names;
pub mod rewrap;
mod sys;
mod tuning;

pub use error::FsError;

/// The extended attribute through which a mounted directory's key rule (the key new
/// files under it get) is read, set and removed: `kmsfs key-rule` uses it. In the
/// `user.` namespace so that, with `default_permissions`, the kernel requires write
/// permission on the directory to change it; in any case only the directory's owner or
/// root may change it.
pub const KEY_RULE_XATTR: &str = "user.kmsfs.key_rule";
pub use mount::{init_volume, mount, unmount, MountSession, MountSpec};
pub use names::{
    SYMLINK_INLINE_MAX, SYMLINK_KEY_INFO, SYMLINK_STORE_PREFIX, SYMLINK_TARGET_MAX, XATTR_KEY_INFO,
};
