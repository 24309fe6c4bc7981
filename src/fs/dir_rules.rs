//! Directory key rules against rollback: a `kmsfs.dir` is trusted for its key rule only
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

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use crate::format::{classify, DirMeta, EntryKind, MetadataKey};
use crate::kms::provider::{DataKeys, DirRule};

use super::error::FsError;
use super::names;
use super::sys;

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
    let mut note = |fd: &OwnedFd| match names::load_dir_meta(fd, key) {
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
