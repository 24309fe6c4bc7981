//! Directory key rules: which key a new file gets (the nearest rule up the tree, else
//! the volume's default key), changing a rule (owner or root only), and trusting a
//! `kmsfs.dir` for its rule only if it agrees with the key service's record.
//!
//! if it agrees with the key service's record of that directory ([`DirRule`]), and the
//! format-1 rules of a volume are imported into that record once, at its first mount.
//!
//! Whoever can write the backing directory can put back an older, authentic
//! `kmsfs.dir` (its MAC still verifies); only the record, kept in the store, says which
//! version is current. This module compares and walks; it never writes `kmsfs.dir`
//! (the core does, after the record) and never decides who may change a rule.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use crate::format::{classify, DirMeta, EntryKind, MetadataKey};
use crate::kms::provider::{Caller, DataKeys, DirRule};

use crate::fs::error::FsError;
use crate::fs::inode::{backing_id, Node, NodeKind};
use crate::fs::names;
use crate::fs::sys;

use super::{path_flags, stat_fd, Core};

/// Directories whose effective key rule is remembered at most; beyond that the cache
/// starts over (entries of forgotten inodes are never used again, only take room).
const RULE_CACHE_MAX: usize = 4096;

impl Core {
    /// The key for a new file in `dir`: the nearest enclosing directory's key rule, else
    /// the volume's default key.
    ///
    /// Remembered per directory inode and forgotten as soon as a rule is set or removed
    /// or anything is renamed through this mount (the generation check), so a rule set
    /// while mounted applies to the very next create. Only the *choice of key* is cached:
    /// every create still asks the key service for `GenerateDataKey` under it. Rules
    /// written into the backing directory behind the mount's back are not supported.
    pub(super) fn key_for_new_file(&self, dir: &Node) -> Result<String, FsError> {
        let generation = self.rules_generation.load(Ordering::Acquire);
        {
            let cache = self.rule_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((g, key)) = cache.get(&dir.ino) {
                if *g == generation {
                    return Ok(key.clone());
                }
            }
        }
        let key = self.walk_key_rule(&dir.fd)?;
        let mut cache = self.rule_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= RULE_CACHE_MAX {
            cache.clear();
        }
        // Stored under the generation read *before* the walk: a change that raced with
        // the walk has bumped it, so this entry is never used.
        cache.insert(dir.ino, (generation, key.clone()));
        Ok(key)
    }

    /// Any change through this mount that may alter effective key rules.
    pub(super) fn rules_changed(&self) {
        self.rules_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `kmsfs.dir` of backing directory `fd`, authenticated and checked against the key
    /// service's record of the directory (EIO if it was rolled back). For everything
    /// that reads a key rule; names need only the directory id, which no version of the
    /// file can change.
    fn checked_dir_meta(&self, fd: impl AsFd) -> Result<crate::format::DirMeta, FsError> {
        let meta = names::load_dir_meta(fd.as_fd(), &self.secrets.metadata, !self.read_only)?;
        check(self.keys.as_ref(), &self.volume.volume_id, fd, &meta)?;
        Ok(meta)
    }

    /// Walks the backing directories upwards from `dir` by descriptor, reading each
    /// one's metadata fresh (and checked against the key service's record), to the
    /// nearest key rule (else the volume's default key).
    fn walk_key_rule(&self, dir: &OwnedFd) -> Result<String, FsError> {
        let mut current: Option<OwnedFd> = None;
        loop {
            let fd = current.as_ref().unwrap_or(dir);
            let meta = self.checked_dir_meta(fd)?;
            if let Some(key) = meta.key_rule {
                return Ok(key);
            }
            if backing_id(&stat_fd(fd)?) == self.root_id {
                return Ok(self.volume.default_key.clone());
            }
            let up = openat(fd, "..", path_flags() | OFlag::O_DIRECTORY, Mode::empty())?;
            current = Some(up);
        }
    }

    /// The key a re-keyed file gets: the current key rule of the directory that holds
    /// it now. A file node has no parent pointer (hard links can give it several); the
    /// kernel's path of its descriptor names the directory it was last linked from.
    /// Uncached: re-keys are rare, and the walk reads every rule fresh.
    pub(super) fn key_for_rekey(&self, node: &Node) -> Result<String, FsError> {
        let link = nix::fcntl::readlink(sys::proc_path(node.fd.as_fd()).as_c_str())?;
        let Some(parent) = Path::new(&link).parent() else {
            return Ok(self.volume.default_key.clone());
        };
        match openat(
            nix::fcntl::AT_FDCWD,
            parent,
            path_flags() | OFlag::O_DIRECTORY,
            Mode::empty(),
        ) {
            Ok(dir) => self.walk_key_rule(&dir),
            // An unlinked file whose directory is gone too: no rule applies any more.
            Err(nix::errno::Errno::ENOENT) => Ok(self.volume.default_key.clone()),
            Err(e) => Err(e.into()),
        }
    }

    /// A key rule decides which key protects other users' future files, so only the
    /// directory's owner (or root) changes it, whatever the mode bits and mount options
    /// say (write permission alone would let a writer redirect new files to a key they
    /// control).
    pub(super) fn may_change_key_rule(&self, caller: &Caller, node: &Node) -> Result<(), FsError> {
        let st = stat_fd(&node.fd)?;
        if caller.uid == 0 || caller.uid == st.st_uid {
            Ok(())
        } else {
            Err(FsError::refused(
                libc::EPERM,
                "key rule change by non-owner",
            ))
        }
    }

    /// The directory metadata behind a key-rule request (directories only).
    pub(super) fn key_rule_dir(&self, node: &Node) -> Result<crate::format::DirMeta, FsError> {
        if node.kind != NodeKind::Directory {
            return Err(FsError::refused(
                libc::ENOTSUP,
                "key rules apply to directories",
            ));
        }
        names::load_dir_meta(node.fd.as_fd(), &self.secrets.metadata, !self.read_only)
    }

    /// Sets (or with `None` removes) the key that new files under `node` get. Existing
    /// files keep the key in their own envelopes. The rule is validated (non-empty
    /// UTF-8 key id, ARN or alias).
    ///
    /// The key service's record is written first, then `kmsfs.dir` (atomically, with
    /// its MAC) at the same, higher version: if the second step fails, the directory's
    /// rule is refused (EIO) until set or cleared again, never silently lost. The
    /// current rule is the record's when the file disagrees with it, so setting or
    /// clearing a rule is also how a rolled-back `kmsfs.dir` is repaired.
    pub(super) fn set_key_rule(
        &self,
        caller: &Caller,
        node: &Node,
        value: Option<&[u8]>,
    ) -> Result<(), FsError> {
        let mut meta = self.key_rule_dir(node)?;
        let record = self
            .keys
            .dir_rule(&self.volume.volume_id, &meta.dir_id.0)?
            .unwrap_or(DirRule::NONE);
        let current = if disagreement(&meta, Some(&record)).is_none() {
            meta.key_rule.clone()
        } else {
            record.rule.clone()
        };
        let rule = match value {
            None => {
                if current.is_none() {
                    return Err(FsError::refused(libc::ENODATA, "no key rule"));
                }
                None
            }
            Some(v) => {
                let rule = std::str::from_utf8(v)
                    .map_err(|_| FsError::refused(libc::EINVAL, "key rule is not UTF-8"))?
                    .trim();
                if rule.is_empty() {
                    return Err(FsError::refused(libc::EINVAL, "empty key rule"));
                }
                crate::format::volume::validate_key_id(rule)
                    .map_err(|_| FsError::refused(libc::EINVAL, "invalid key rule"))?;
                Some(rule.to_string())
            }
        };
        let next = DirRule {
            version: meta.version.max(record.version) + 1,
            rule,
        };
        // Forget every cached choice, whatever happens from here: the record may change
        // even if the file write fails.
        self.rules_changed();
        self.keys
            .record_dir_rule(caller, &self.volume.volume_id, &meta.dir_id.0, &next)?;
        meta.key_rule = next.rule;
        meta.version = next.version;
        let path = sys::proc_path(node.fd.as_fd());
        let saved = meta.save(
            Path::new(OsStr::from_bytes(path.as_bytes())),
            &self.secrets.metadata,
        );
        self.rules_changed();
        saved?;
        Ok(())
    }
}

/// Why a `kmsfs.dir` disagrees with the record, or `None` if it agrees.
pub(super) fn disagreement(meta: &DirMeta, record: Option<&DirRule>) -> Option<String> {
    let record = record.unwrap_or(&DirRule::NONE);
    if meta.version == record.version && meta.key_rule == record.rule {
        return None;
    }
    let why = if meta.version < record.version {
        format!(
            "is version {}, older than version {} in the key service's record: an older copy was put back",
            meta.version, record.version
        )
    } else if meta.version > record.version {
        format!(
            "is version {}, newer than version {} in the key service's record: the store was rolled back",
            meta.version, record.version
        )
    } else {
        format!(
            "has a key rule ({}) that the key service's record (version {}: {}) does not have",
            meta.key_rule.as_deref().unwrap_or("none"),
            record.version,
            record.rule.as_deref().unwrap_or("none")
        )
    };
    Some(why)
}

/// The backing path of a descriptor, for log messages only.
pub(super) fn backing_path(fd: impl AsFd) -> String {
    let proc = sys::proc_path(fd.as_fd());
    std::fs::read_link(Path::new(OsStr::from_bytes(proc.as_bytes())))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(unknown path)".into())
}

/// Refuses (EIO, logged naming the directory) a `kmsfs.dir` that disagrees with the
/// record. The fix the log names: set or clear the rule again through the mount,
/// which writes a version above both.
pub(super) fn check(
    keys: &dyn DataKeys,
    volume_id: &str,
    dir_fd: impl AsFd,
    meta: &DirMeta,
) -> Result<(), FsError> {
    let record = keys.dir_rule(volume_id, &meta.dir_id.0)?;
    match disagreement(meta, record.as_ref()) {
        None => Ok(()),
        Some(why) => {
            log::error!(
                "kmsfs: directory {} (id {}): its kmsfs.dir {why}; refusing its key rule (EIO) until the rule is set or cleared again through the mount",
                backing_path(dir_fd),
                meta.dir_id.to_hex()
            );
            Err(FsError::refused(
                libc::EIO,
                "directory metadata disagrees with the key service's record (rolled back?)",
            ))
        }
    }
}

/// Directory names among the entries of backing directory `dir` (encrypted and long
/// names only: kmsfs's own and foreign names are skipped).
fn child_dirs(dir: &OwnedFd) -> Result<Vec<OsString>, FsError> {
    let proc = sys::proc_path(dir.as_fd());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(Path::new(OsStr::from_bytes(proc.as_bytes())))? {
        let entry = entry?;
        let name = entry.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| matches!(classify(n), EntryKind::Encrypted | EntryKind::LongName));
        // The d_type of the entry itself: a symlink to a directory is not followed.
        if ours && entry.file_type()?.is_dir() {
            out.push(name);
        }
    }
    Ok(out)
}

fn open_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, FsError> {
    Ok(openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// The format-1 key rules of the volume under `root` (every `kmsfs.dir` of version 0
/// with a rule), by directory id. Depth first, holding one descriptor per level. A
/// directory whose metadata cannot be read is logged and skipped: it stays without a
/// record, so its rule (if any) is refused later rather than trusted.
pub(super) fn collect_v1_rules(
    root: &OwnedFd,
    key: &MetadataKey,
) -> Result<Vec<([u8; 16], String)>, FsError> {
    let mut rules = Vec::new();
    let mut note = |fd: &OwnedFd| match names::load_dir_meta(fd, key, false) {
        Ok(meta) => {
            if let (0, Some(rule)) = (meta.version, meta.key_rule) {
                rules.push((meta.dir_id.0, rule));
            }
        }
        Err(e) => log::warn!(
            "kmsfs: importing key rules: {}: {e}; skipped",
            backing_path(fd)
        ),
    };
    let root = openat(
        root,
        ".",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    note(&root);
    let children = child_dirs(&root)?;
    let mut stack: Vec<(OwnedFd, Vec<OsString>)> = vec![(root, children)];
    while let Some((fd, mut pending)) = stack.pop() {
        let Some(name) = pending.pop() else {
            continue;
        };
        let child = open_dir(&fd, &name);
        stack.push((fd, pending));
        match child {
            Ok(child) => {
                note(&child);
                match child_dirs(&child) {
                    Ok(grandchildren) => stack.push((child, grandchildren)),
                    Err(e) => log::warn!(
                        "kmsfs: importing key rules: cannot list {}: {e}; skipped",
                        backing_path(&child)
                    ),
                }
            }
            Err(e) => {
                log::warn!("kmsfs: importing key rules: cannot open a directory: {e}; skipped")
            }
        }
    }
    Ok(rules)
}

/// At mount: imports the volume's format-1 key rules into the key service's record,
/// once per volume (the walk is skipped once the record says it was done).
pub(super) fn import_once(
    keys: &dyn DataKeys,
    volume_id: &str,
    root: &OwnedFd,
    key: &MetadataKey,
) -> Result<(), FsError> {
    if keys.dir_rules_imported(volume_id)? {
        return Ok(());
    }
    let rules = collect_v1_rules(root, key)?;
    if !rules.is_empty() {
        log::info!(
            "kmsfs: volume {volume_id}: imported {} format-1 directory key rule(s) into the key service's record",
            rules.len()
        );
    }
    keys.import_dir_rules(volume_id, &rules)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DirId;

    fn meta(version: u64, rule: Option<&str>) -> DirMeta {
        DirMeta {
            dir_id: DirId([1; 16]),
            key_rule: rule.map(str::to_string),
            version,
        }
    }

    fn rec(version: u64, rule: Option<&str>) -> DirRule {
        DirRule {
            version,
            rule: rule.map(str::to_string),
        }
    }

    #[test]
    fn only_the_recorded_version_and_rule_agree() {
        // No record: version 0, no rule.
        assert!(disagreement(&meta(0, None), None).is_none());
        assert!(disagreement(&meta(0, Some("k")), None).is_some());
        assert!(disagreement(&meta(1, Some("k")), None).is_some());
        assert!(disagreement(&meta(2, Some("k")), Some(&rec(2, Some("k")))).is_none());
        assert!(disagreement(&meta(2, None), Some(&rec(2, None))).is_none());
        // Rolled back: older version, with or without the rule.
        let why = disagreement(&meta(1, None), Some(&rec(2, Some("k")))).unwrap();
        assert!(why.contains("older"), "{why}");
        assert!(disagreement(&meta(0, None), Some(&rec(1, Some("k")))).is_some());
        assert!(disagreement(&meta(1, Some("k")), Some(&rec(2, Some("k")))).is_some());
        // Ahead of the record, or a rule the record does not have.
        assert!(disagreement(&meta(3, Some("k")), Some(&rec(2, Some("k"))))
            .unwrap()
            .contains("newer"));
        assert!(disagreement(&meta(2, Some("x")), Some(&rec(2, Some("k"))))
            .unwrap()
            .contains("does not have"));
    }

    #[test]
    fn a_record_is_replaced_only_by_a_newer_version_or_the_same_one() {
        assert!(DirRule::may_replace(None, &rec(1, Some("k"))));
        assert!(DirRule::may_replace(None, &rec(0, None)));
        assert!(!DirRule::may_replace(None, &rec(0, Some("k"))));
        assert!(DirRule::may_replace(
            Some(&rec(1, Some("k"))),
            &rec(2, None)
        ));
        assert!(DirRule::may_replace(
            Some(&rec(1, Some("k"))),
            &rec(1, Some("k"))
        ));
        assert!(!DirRule::may_replace(
            Some(&rec(1, Some("k"))),
            &rec(1, Some("x"))
        ));
        assert!(!DirRule::may_replace(
            Some(&rec(2, Some("k"))),
            &rec(1, Some("k"))
        ));
    }
}
