//! The principals file: which principal ARN a local uid (or gid) acts as, and which
//! identity (IAM) policies that principal carries. Parsing only: it never decides an
//! authorization itself (that is `policy::evaluate`), and it never trusts anything a
//! client claims — it is given uids and gids the kernel vouched for.
//!
//! Here: loading the file (errors name file and line) and resolving uids and gids;
//! `arn` parses principal ARNs, `groups` reads a process's supplementary groups.
//!
//! ```toml
//! account = "111122223333"
//! region = "local"
//! [[principal]]
//! arn = "arn:aws:iam::111122223333:user/alice"
//! uid = 1001
//! policies = ["alice.json"]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::policy::{IdentityPolicy, PolicyDocument, Principal};
use crate::remote::Profile;

/// The account id used when there is no principals file.
pub const DEFAULT_ACCOUNT: &str = "111122223333";
/// The region part of key ARNs when the file does not say.
pub const DEFAULT_REGION: &str = "local";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// TOML syntax or a field of the wrong type; the message names line and column.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// One `[[principal]]` entry is wrong; `line` is where the offending field is.
    #[error("{path}:{line}: principal #{index} ({arn}): {message}")]
    Entry {
        path: String,
        line: usize,
        index: usize,
        arn: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

mod arn;
mod groups;

pub use arn::{parse_principal_arn, ParsedArn, PrincipalKind};
pub use groups::process_groups;

/// A caller as the key service sees it.
#[derive(Debug, Clone)]
pub struct ResolvedPrincipal {
    pub principal: Principal,
    /// Shared with the principals load it was resolved from: resolving (once per call,
    /// so once per open) copies no parsed policy, and the decision cache tells two
    /// callers' policies apart by address (see `kms::authz::cache`).
    pub identity_policies: Arc<[IdentityPolicy]>,
    pub kind: PrincipalKind,
    /// The AWS identity this principal uses toward a remote KMS (`aws_profile`), if any.
    /// Root and anonymous callers have none unless root is listed with one.
    pub aws_profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    account: Option<String>,
    region: Option<String>,
    /// Shared AWS config and credentials files for every `aws_profile` (relative to the
    /// principals file). Without them: `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`,
    /// else the mount's user's `~/.aws/config` and `~/.aws/credentials`.
    aws_config_file: Option<String>,
    aws_credentials_file: Option<String>,
    #[serde(default)]
    principal: Vec<EntryToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    // Spans let errors name the line of the field at fault, not only the entry.
    arn: Spanned<String>,
    uid: Option<u32>,
    #[serde(default)]
    uids: Vec<u32>,
    gid: Option<u32>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    policies: Vec<Spanned<String>>,
    policy: Option<Spanned<String>>,
    /// A profile name of the shared AWS config files: the identity this principal's
    /// calls to a remote KMS are signed as.
    aws_profile: Option<Spanned<String>>,
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let end = at.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        + 1
}

#[derive(Debug, Clone)]
struct Entry {
    arn: String,
    parsed: ParsedArn,
    uids: Vec<u32>,
    gids: Vec<u32>,
    policies: Arc<[IdentityPolicy]>,
    aws_profile: Option<Profile>,
}

/// The uid/gid → principal mapping in force.
#[derive(Debug, Clone)]
pub struct Principals {
    account: String,
    region: String,
    entries: Vec<Entry>,
    /// Without a file: this uid is the account root.
    owner_uid: Option<u32>,
    source: Option<PathBuf>,
    /// The identity policy files read while loading, resolved against the principals
    /// file's directory, in the order the file names them.
    policy_files: Vec<PathBuf>,
    /// The empty list every caller without identity policies gets (one allocation per
    /// load instead of one per resolve).
    no_policies: Arc<[IdentityPolicy]>,
}

/// Resolves `aws_config_file` / `aws_credentials_file` against the principals file's
/// directory, then the SDK's environment variables; `None` leaves the SDK's default
/// location (the mount's user's `~/.aws/...`).
fn aws_file(named: Option<&str>, base: &Path, env: &str) -> Option<PathBuf> {
    match named {
        Some(p) => Some(base.join(p)),
        None => std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    }
}

impl Principals {
    /// No principals file: the store owner is the account root, everyone else anonymous.
    pub fn single_user(owner_uid: u32) -> Principals {
        Principals {
            account: DEFAULT_ACCOUNT.to_string(),
            region: DEFAULT_REGION.to_string(),
            entries: Vec::new(),
            owner_uid: Some(owner_uid),
            source: None,
            policy_files: Vec::new(),
            no_policies: Vec::new().into(),
        }
    }

    /// The explicit file if given, else `<store>/principals.toml` if it exists, else
    /// [`Principals::single_user`].
    pub fn load_or_default(
        explicit: Option<&Path>,
        store_dir: &Path,
        owner_uid: u32,
    ) -> Result<Principals, PrincipalsError> {
        Self::load_or_default_with(explicit, store_dir, owner_uid, &mut |path| {
            std::fs::read_to_string(path)
        })
    }

    /// [`Principals::load_or_default`] with the identity policy files read through
    /// `read_policy` (a watcher stamps each file just before it is read).
    pub(crate) fn load_or_default_with(
        explicit: Option<&Path>,
        store_dir: &Path,
        owner_uid: u32,
        read_policy: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Principals, PrincipalsError> {
        if let Some(p) = explicit {
            return Principals::load_with(p, read_policy);
        }
        let default = store_dir.join("principals.toml");
        if default.exists() {
            Principals::load_with(&default, read_policy)
        } else {
            Ok(Principals::single_user(owner_uid))
        }
    }

    /// Reads and validates a principals file; identity policy paths are relative to it.
    pub fn load(path: &Path) -> Result<Principals, PrincipalsError> {
        Self::load_with(path, &mut |path| std::fs::read_to_string(path))
    }

    fn load_with(
        path: &Path,
        read_policy: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Principals, PrincipalsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PrincipalsError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut p = Principals::parse_with(&text, &shown, base, read_policy)?;
        p.source = Some(path.to_path_buf());
        Ok(p)
    }

    /// Parses the TOML text; `shown` names the file in errors, `base` resolves policy paths.
    pub fn parse(text: &str, shown: &str, base: &Path) -> Result<Principals, PrincipalsError> {
        Self::parse_with(text, shown, base, &mut |path| std::fs::read_to_string(path))
    }

    /// [`Self::parse`] with the identity policy files read through `read_policy`, so the
    /// parser can be fuzzed without touching the filesystem (a fuzzed `policies` entry
    /// could name `/dev/zero`).
    pub(crate) fn parse_with(
        text: &str,
        shown: &str,
        base: &Path,
        read_policy: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Principals, PrincipalsError> {
        let raw: FileToml = toml::from_str(text).map_err(|e| PrincipalsError::Syntax {
            path: shown.to_string(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let account = raw.account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrincipalsError::Invalid {
                path: shown.to_string(),
                message: format!("field `account`: expected 12 digits, found \"{account}\""),
            });
        }
        let region = raw.region.unwrap_or_else(|| DEFAULT_REGION.to_string());
        if region.is_empty() || region.contains(':') {
            return Err(PrincipalsError::Invalid {
                path: shown.to_string(),
                message: format!("field `region`: \"{region}\" is not a valid region name"),
            });
        }
        let config_file = aws_file(raw.aws_config_file.as_deref(), base, "AWS_CONFIG_FILE");
        let credentials_file = aws_file(
            raw.aws_credentials_file.as_deref(),
            base,
            "AWS_SHARED_CREDENTIALS_FILE",
        );
        let mut entries = Vec::new();
        let mut policy_files = Vec::new();
        for (i, e) in raw.principal.into_iter().enumerate() {
            let index = i + 1;
            let arn = e.arn.get_ref().clone();
            let arn_line = line_of(text, e.arn.span().start);
            let err = |line: usize, message: String| PrincipalsError::Entry {
                path: shown.to_string(),
                line,
                index,
                arn: arn.clone(),
                message,
            };
            let parsed = parse_principal_arn(&arn)
                .map_err(|m| err(arn_line, format!("field `arn`: {m}")))?;
            let mut uids = e.uids.clone();
            uids.extend(e.uid);
            let mut gids = e.gids.clone();
            gids.extend(e.gid);
            let mut policies = Vec::new();
            for file in &e.policies {
                let line = line_of(text, file.span().start);
                let full = base.join(file.get_ref());
                let policy_text = read_policy(&full).map_err(|io| {
                    err(
                        line,
                        format!(
                            "field `policies`: cannot read the identity policy {}: {io} \
                             (paths are relative to the principals file; a policy can also be \
                             written inline with `policy = '''{{ ... }}'''`)",
                            full.display()
                        ),
                    )
                })?;
                let document = PolicyDocument::parse_identity(&policy_text).map_err(|pe| {
                    err(
                        line,
                        format!("field `policies`: identity policy {}: {pe}", full.display()),
                    )
                })?;
                policies.push(IdentityPolicy {
                    name: file.get_ref().clone(),
                    document,
                });
                policy_files.push(full);
            }
            if let Some(inline) = &e.policy {
                let document = PolicyDocument::parse_identity(inline.get_ref()).map_err(|pe| {
                    err(
                        line_of(text, inline.span().start),
                        format!("field `policy` (inline): {pe}"),
                    )
                })?;
                policies.push(IdentityPolicy {
                    name: format!("inline:{index}"),
                    document,
                });
            }
            let aws_profile = match &e.aws_profile {
                None => None,
                Some(name) => {
                    let n = name.get_ref();
                    if n.is_empty() || n.contains(['[', ']', '\n', '\r']) || n.trim() != n {
                        return Err(err(
                            line_of(text, name.span().start),
                            format!(
                                "field `aws_profile`: \"{n}\" is not a profile name of the \
                                 shared AWS config files"
                            ),
                        ));
                    }
                    Some(Profile {
                        name: n.clone(),
                        config_file: config_file.clone(),
                        credentials_file: credentials_file.clone(),
                    })
                }
            };
            if entries.iter().any(|x: &Entry| x.arn == arn) {
                return Err(err(arn_line, "this ARN is listed twice".to_string()));
            }
            for u in &uids {
                if let Some(other) = entries.iter().find(|x: &&Entry| x.uids.contains(u)) {
                    return Err(err(
                        arn_line,
                        format!("uid {u} is already mapped to {}", other.arn),
                    ));
                }
            }
            for g in &gids {
                if let Some(other) = entries.iter().find(|x: &&Entry| x.gids.contains(g)) {
                    return Err(err(
                        arn_line,
                        format!("gid {g} is already mapped to {}", other.arn),
                    ));
                }
            }
            entries.push(Entry {
                arn,
                parsed,
                uids,
                gids,
                policies: policies.into(),
                aws_profile,
            });
        }
        Ok(Principals {
            account,
            region,
            entries,
            owner_uid: None,
            source: None,
            policy_files,
            no_policies: Vec::new().into(),
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The file this mapping was read from, if any (for reload checks).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The identity policy files this mapping was built from (paths resolved against
    /// the principals file), so a watcher can reload when one changes without parsing
    /// the principals file again.
    pub fn policy_files(&self) -> &[PathBuf] {
        &self.policy_files
    }

    /// The account root's ARN.
    pub fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account)
    }

    /// The principal a kernel-verified uid/gid acts as. A uid match wins over a gid
    /// match; uid 0 is the account root unless listed; anything else is anonymous.
    pub fn resolve(&self, uid: u32, gid: u32) -> ResolvedPrincipal {
        self.resolve_with_groups(uid, gid, Vec::new)
    }

    /// Whether any entry maps a gid, i.e. whether a caller's groups can matter.
    pub fn maps_groups(&self) -> bool {
        self.entries.iter().any(|e| !e.gids.is_empty())
    }

    /// Like [`Principals::resolve`], and then the caller's supplementary groups: the
    /// order is a uid entry, the primary gid, uid 0 or the store owner as the account
    /// root, and only then the first entry (in file order) that maps one of the
    /// supplementary groups. `supplementary` is called only when it can matter, so a
    /// file without gid mappings never costs a /proc read.
    pub fn resolve_with_groups(
        &self,
        uid: u32,
        gid: u32,
        supplementary: impl FnOnce() -> Vec<u32>,
    ) -> ResolvedPrincipal {
        let found = self
            .entries
            .iter()
            .find(|e| e.uids.contains(&uid))
            .or_else(|| self.entries.iter().find(|e| e.gids.contains(&gid)));
        if let Some(e) = found {
            return self.resolved(e, Some(uid), Some(gid));
        }
        let is_root = uid == 0 || self.owner_uid == Some(uid);
        if !is_root && self.maps_groups() {
            let groups = supplementary();
            if let Some(e) = self
                .entries
                .iter()
                .find(|e| e.gids.iter().any(|g| groups.contains(g)))
            {
                return self.resolved(e, Some(uid), Some(gid));
            }
        }
        if is_root {
            return ResolvedPrincipal {
                principal: Principal {
                    arn: Some(self.root_arn()),
                    account: self.account.clone(),
                    uid: Some(uid),
                    gid: Some(gid),
                },
                identity_policies: self.no_policies.clone(),
                kind: PrincipalKind::Root,
                aws_profile: None,
            };
        }
        ResolvedPrincipal {
            principal: Principal {
                arn: None,
                account: String::new(),
                uid: Some(uid),
                gid: Some(gid),
            },
            identity_policies: self.no_policies.clone(),
            kind: PrincipalKind::Anonymous,
            aws_profile: None,
        }
    }

    /// A principal named by ARN (for the simulator): its identity policies if it is
    /// listed, none otherwise.
    pub fn by_arn(&self, arn: &str) -> Result<ResolvedPrincipal, String> {
        if let Some(e) = self.entries.iter().find(|e| e.arn == arn) {
            let uid = e.uids.first().copied();
            let gid = e.gids.first().copied();
            return Ok(self.resolved(e, uid, gid));
        }
        let parsed = parse_principal_arn(arn)?;
        Ok(ResolvedPrincipal {
            principal: Principal {
                arn: Some(arn.to_string()),
                account: parsed.account,
                uid: None,
                gid: None,
            },
            identity_policies: self.no_policies.clone(),
            kind: parsed.kind,
            aws_profile: None,
        })
    }

    /// A principal that exists for access keys: a `[[principal]]` entry (with or without
    /// uids) or the account root (None for anything else). An entry carries its first
    /// uid and gid, as [`Self::by_arn`] does: an access key acts as the principal exactly
    /// as a uid mapped to it would, so `aws:userid` and `kmsfs:uid` conditions see the
    /// same values (none for a principal without uids, or the root).
    pub fn listed_by_arn(&self, arn: &str) -> Option<ResolvedPrincipal> {
        if let Some(e) = self.entries.iter().find(|e| e.arn == arn) {
            return Some(self.resolved(e, e.uids.first().copied(), e.gids.first().copied()));
        }
        (arn == self.root_arn()).then(|| ResolvedPrincipal {
            principal: Principal {
                arn: Some(arn.to_string()),
                account: self.account.clone(),
                uid: None,
                gid: None,
            },
            identity_policies: self.no_policies.clone(),
            kind: PrincipalKind::Root,
            aws_profile: None,
        })
    }

    /// Every listed principal ARN with its uids (for `kmsfs whoami` and docs).
    pub fn listed(&self) -> impl Iterator<Item = (&str, &[u32], &[u32])> {
        self.entries
            .iter()
            .map(|e| (e.arn.as_str(), e.uids.as_slice(), e.gids.as_slice()))
    }

    fn resolved(&self, e: &Entry, uid: Option<u32>, gid: Option<u32>) -> ResolvedPrincipal {
        ResolvedPrincipal {
            principal: Principal {
                arn: Some(e.arn.clone()),
                account: e.parsed.account.clone(),
                uid,
                gid,
            },
            identity_policies: e.policies.clone(),
            kind: e.parsed.kind,
            aws_profile: e.aws_profile.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
