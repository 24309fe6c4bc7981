//! Principals watching: the principals file and the identity policy files it names are
//! re-read when they change (stamps of mtime, ctime, inode and size), and a file that
//! another user could edit, or that no longer parses, fails every call closed. Owns the
//! cache of the parsed [`Principals`]; never decides who may do what.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::change_watch::{ChangeWatch, Checked};
use super::store::{internal, Store};
use super::KmsError;
use crate::policy::PolicyDocument;
use crate::principals::Principals;

/// (mtime, mtime ns, ctime, ctime ns, inode, size) of the principals file, None when
/// absent. ctime catches chmod/chown, so a mode change is checked at once.
type FileStamp = (i64, i64, i64, i64, u64, u64);

/// Without change notification (see [`ChangeWatch`]), identity policy files are
/// re-checked at most this often (the principals file itself on every call), so editing
/// a policy file takes effect within this delay. With it, they are re-checked after any
/// event, so an edit takes effect at the next call.
const POLICY_FILES_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

struct PrincipalsCache {
    principals: Arc<Principals>,
    root_policy: Arc<PolicyDocument>,
    stamp: Option<FileStamp>,
    /// The identity policy files the principals file names, with their stamps.
    policy_stamps: Vec<(PathBuf, Option<FileStamp>)>,
    policies_checked: std::time::Instant,
    /// The last reload failure logged, so a broken file is logged once, not per call.
    last_error: Option<String>,
    /// The change generation the last full check covered.
    checked: Checked,
}

/// The principals of a store, re-read when their files change.
pub(super) struct PrincipalsWatch {
    explicit: Option<PathBuf>,
    cache: Mutex<PrincipalsCache>,
}

impl PrincipalsWatch {
    /// Loads the principals (from `explicit`, else the store's principals.toml).
    pub(super) fn open(explicit: Option<PathBuf>, store: &Store) -> Result<Self, KmsError> {
        let (principals, stamp, policy_stamps) = load_principals(explicit.as_deref(), store)?;
        let root_policy = Arc::new(parse_stored_policy(&root_delegation_policy(
            principals.account(),
        ))?);
        Ok(PrincipalsWatch {
            explicit,
            cache: Mutex::new(PrincipalsCache {
                principals: Arc::new(principals),
                root_policy,
                stamp,
                policy_stamps,
                policies_checked: std::time::Instant::now(),
                last_error: None,
                checked: Checked::default(),
            }),
        })
    }

    /// The files a change of which may change who is whom: the principals file and the
    /// identity policy files it names.
    pub(super) fn watched_files(&self, store: &Store) -> Vec<PathBuf> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut files = vec![self.path(store)];
        files.extend(cache.policy_stamps.iter().map(|(p, _)| p.clone()));
        files
    }

    fn path(&self, store: &Store) -> PathBuf {
        self.explicit
            .clone()
            .unwrap_or_else(|| store.dir().join("principals.toml"))
    }

    /// The current principals and the account root's default policy as of change
    /// generation `seen` (polled at the start of the call), reloaded first if a file
    /// changed.
    pub(super) fn current(
        &self,
        store: &Store,
        watch: &ChangeWatch,
        seen: Option<u64>,
    ) -> Result<(Arc<Principals>, Arc<PolicyDocument>), KmsError> {
        // A panic elsewhere cannot leave the cache half-updated (each field is one
        // assignment), so a poisoned lock is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing changed since a full check that started after this call began.
        if cache.last_error.is_none() && cache.checked.covers(seen) {
            return Ok((cache.principals.clone(), cache.root_policy.clone()));
        }
        watch.count_full_check();
        let path = self.path(store);
        let stamp = file_stamp(&path);
        // After a failed reload, keep failing (closed) until a reload succeeds.
        let mut reload = cache.stamp != stamp || cache.last_error.is_some();
        // With change notification this check runs only after an event, which may have
        // been an identity policy file's: compare them all now.
        if !reload && (seen.is_some() || cache.policies_checked.elapsed() >= POLICY_FILES_RECHECK) {
            reload = cache.policy_stamps.iter().any(|(p, s)| file_stamp(p) != *s);
            cache.policies_checked = std::time::Instant::now();
        }
        if reload {
            // Changed, appeared or disappeared: reload. A broken file fails closed
            // (every call errors, naming the file) rather than keeping stale grants.
            let loaded = load_principals(self.explicit.as_deref(), store);
            let (p, stamp, policy_stamps) = match loaded {
                Ok(l) => {
                    cache.last_error = None;
                    l
                }
                Err(e) => {
                    // A mount's callers only see EIO; the log says why, once per
                    // distinct failure rather than once per call.
                    if cache.last_error.as_deref() != Some(e.message.as_str()) {
                        log::error!(
                            "key service for store {}: every request fails until the principals file is fixed: {}",
                            store.dir().display(),
                            e.message
                        );
                        cache.last_error = Some(e.message.clone());
                    }
                    return Err(e);
                }
            };
            cache.root_policy =
                Arc::new(parse_stored_policy(&root_delegation_policy(p.account()))?);
            cache.principals = Arc::new(p);
            cache.stamp = stamp;
            cache.policy_stamps = policy_stamps;
            // Watch the policy files the new load names; if they differ from before,
            // this bumps the generation, so the next call checks again with the new
            // watches in place (an edit made before they existed is not missed).
            let mut files = vec![path];
            files.extend(cache.policy_stamps.iter().map(|(p, _)| p.clone()));
            watch.set_principal_files(files);
        }
        cache.checked.mark(seen);
        Ok((cache.principals.clone(), cache.root_policy.clone()))
    }
}

fn file_stamp(p: &Path) -> Option<FileStamp> {
    std::fs::metadata(p).ok().map(|m| {
        (
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.size(),
        )
    })
}

type LoadedPrincipals = (
    Principals,
    Option<FileStamp>,
    Vec<(PathBuf, Option<FileStamp>)>,
);

fn load_principals(explicit: Option<&Path>, store: &Store) -> Result<LoadedPrincipals, KmsError> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store.dir().join("principals.toml"));
    let stamp = file_stamp(&path);
    if stamp.is_some() {
        check_principals_file(&path)?;
    }
    // Each identity policy file is stamped just before it is read, so an edit during
    // the load is seen by the next call.
    let mut read_stamps: Vec<(PathBuf, Option<FileStamp>)> = Vec::new();
    let p = Principals::load_or_default_with(explicit, store.dir(), store.owner_uid(), &mut |f| {
        read_stamps.push((f.to_path_buf(), file_stamp(f)));
        std::fs::read_to_string(f)
    })
    .map_err(|e| internal(format!("principals file: {e}")))?;
    let policy_stamps = p
        .policy_files()
        .iter()
        .map(|f| {
            let stamp = read_stamps
                .iter()
                .find(|(r, _)| r == f)
                .and_then(|(_, s)| *s);
            (f.clone(), stamp)
        })
        .collect();
    Ok((p, stamp, policy_stamps))
}

/// The principals file decides who is whom: refuse one that another user could edit
/// (owned by someone other than this process's user or root, or group/other-writable).
fn check_principals_file(path: &Path) -> Result<(), KmsError> {
    let m = std::fs::metadata(path)
        .map_err(|e| internal(format!("principals file {}: {e}", path.display())))?;
    let euid = nix::unistd::geteuid().as_raw();
    if m.uid() != euid && m.uid() != 0 {
        return Err(internal(format!(
            "principals file {} is owned by uid {}; it must be owned by uid {euid} or root, since it decides who is whom",
            path.display(),
            m.uid()
        )));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(internal(format!(
            "principals file {} has mode {mode:04o}: other users could edit it and become any principal; make it 0644 or stricter (chmod go-w {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// AWS's default key policy: the account root may do everything, which delegates
/// access to the account's identity policies.
pub fn root_delegation_policy(account: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {{
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {{ "AWS": "arn:aws:iam::{account}:root" }},
      "Action": "kms:*",
      "Resource": "*"
    }}
  ]
}}"#
    )
}

/// Parses a policy the store already accepted once; failure means a damaged store.
pub(crate) fn parse_stored_policy(text: &str) -> Result<PolicyDocument, KmsError> {
    PolicyDocument::parse(text)
        .map_err(|e| internal(format!("a stored key policy no longer parses: {e}")))
}
