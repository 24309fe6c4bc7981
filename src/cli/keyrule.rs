//! `kmsfs key-rule set|show|clear DIR`: which key new files under a directory of a
//! mounted volume get. The rule lives in the directory's own (authenticated) metadata,
//! moves with the directory, and is set through the mount with the extended attribute
//! [`KEY_RULE_XATTR`], so the filesystem's permission checks apply: only a user who may
//! write the directory may change it. Existing files keep their key.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use crate::cli::{GlobalOpts, OutputFormat};

/// The extended attribute through which a mount exposes a directory's key rule.
pub const KEY_RULE_XATTR: &str = "user.kmsfs.key_rule";

#[derive(Debug, Clone, clap::Args)]
pub struct KeyRuleArgs {
    #[command(subcommand)]
    pub command: KeyRuleCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeyRuleCommand {
    /// New files under DIR get KEY (key id, key ARN, alias name or alias ARN).
    Set {
        dir: PathBuf,
        #[arg(long)]
        key: String,
    },
    /// Shows DIR's own rule (and nothing if it inherits).
    Show { dir: PathBuf },
    /// Removes DIR's rule: new files inherit from the parent again.
    Clear { dir: PathBuf },
}

fn cpath(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("{}: path contains NUL", p.display()))
}

fn os_err(what: &str, dir: &Path) -> anyhow::Error {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => anyhow!(
            "{what} {}: not a directory of a kmsfs mount (extended attribute {KEY_RULE_XATTR} unsupported)",
            dir.display()
        ),
        _ => anyhow!("{what} {}: {e}", dir.display()),
    }
}

pub fn run(args: &KeyRuleArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let name = CString::new(KEY_RULE_XATTR).map_err(|_| anyhow!("xattr name"))?;
    match &args.command {
        KeyRuleCommand::Set { dir, key } => {
            if key.trim().is_empty() {
                bail!("--key: empty key id");
            }
            let p = cpath(dir)?;
            // SAFETY: valid NUL-terminated strings and a buffer of the given length.
            let rc = unsafe {
                libc::setxattr(p.as_ptr(), name.as_ptr(), key.as_ptr().cast(), key.len(), 0)
            };
            if rc != 0 {
                return Err(os_err("key-rule set", dir));
            }
            Ok(0)
        }
        KeyRuleCommand::Clear { dir } => {
            let p = cpath(dir)?;
            // SAFETY: valid NUL-terminated strings.
            let rc = unsafe { libc::removexattr(p.as_ptr(), name.as_ptr()) };
            if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENODATA) {
                return Err(os_err("key-rule clear", dir));
            }
            Ok(0)
        }
        KeyRuleCommand::Show { dir } => {
            let p = cpath(dir)?;
            let mut buf = vec![0u8; 2048];
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::getxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            let rule = if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENODATA) {
                    None
                } else {
                    return Err(os_err("key-rule show", dir));
                }
            } else {
                buf.truncate(n as usize);
                Some(String::from_utf8_lossy(&buf).into_owned())
            };
            match global.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "Directory": dir.display().to_string(),
                        "KeyId": rule,
                    }))?
                ),
                OutputFormat::Text => println!("{}", rule.unwrap_or_else(|| "(inherited)".into())),
            }
            Ok(0)
        }
    }
}
