//! `kmsfs key-rule set|show|clear DIR`: which key new files under a directory of a
//! mounted volume get. The rule lives in the directory's own (authenticated) metadata,
//! moves with the directory, and is set through the mount with the extended attribute
//! [`KEY_RULE_XATTR`], so the filesystem's permission checks apply: only a user who may
//! write the directory may change it. Existing files keep their key.
//!
//! `set` first asks the key service whether the key exists, is enabled, and may be used
//! by the caller for `kms:GenerateDataKey` through kmsfs, so a typo does not turn every
//! later create under DIR into "Required key not available".

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use serde_json::{json, Value};

use crate::cli::service::{connect_described, RootKeyOpts};
use crate::cli::{output, GlobalOpts};
use crate::fs::{key_rule, FsError, KEY_RULE_XATTR};
use crate::kms::ErrorKind;
use crate::policy::actions as act;

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
        /// Set the rule without asking the key service whether you may use the key
        /// (e.g. a key only the directory's other users may use, or one whose policy
        /// depends on the encryption context).
        #[arg(long)]
        force: bool,
    },
    /// Shows DIR's own rule (and nothing if it inherits).
    Show { dir: PathBuf },
    /// Removes DIR's rule: new files inherit from the parent again.
    Clear { dir: PathBuf },
}

fn os_err(what: &str, dir: &Path, e: &FsError) -> anyhow::Error {
    match e.errno() {
        libc::ENOTSUP => anyhow!(
            "{what} {}: not a directory of a kmsfs mount (extended attribute {KEY_RULE_XATTR} unsupported)",
            dir.display()
        ),
        errno => anyhow!(
            "{what} {}: {}",
            dir.display(),
            std::io::Error::from_raw_os_error(errno)
        ),
    }
}

/// Refuses a key that new files could not get: unknown, not Enabled, or one the caller
/// may not use for kms:GenerateDataKey with kms:ViaService = kmsfs.
fn check_key_usable(
    dir: &Path,
    key: &str,
    global: &GlobalOpts,
    keys: &RootKeyOpts,
) -> anyhow::Result<()> {
    let (backend, endpoint) = connect_described(global, keys).map_err(|e| {
        anyhow!(
            "key-rule set {}: cannot check the key {key} ({e:#}); give --force to set it unchecked",
            dir.display()
        )
    })?;
    let refuse = |why: String| {
        anyhow!(
            "key-rule set {}: refused: {why} (asked {endpoint}). New files under it would fail; \
             nothing was changed.",
            dir.display()
        )
    };
    match backend.call(act::DESCRIBE_KEY.name, json!({"KeyId": key})) {
        // A full key ARN the local store does not hold is a remote key: its KMS decides
        // at each create, as each user's own AWS identity, so there is nothing to ask here.
        Err(e) if e.kind == ErrorKind::NotFound && crate::remote::router::is_key_arn(key) => {
            eprintln!(
                "kmsfs: {key} is not in the local store: a remote key, used through the \
                 remote KMS as each user's own aws_profile (not checked here)"
            );
            return Ok(());
        }
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(refuse(format!(
                "the key {key} does not exist: {}",
                e.message
            )))
        }
        Ok(v) => {
            let state = v["KeyMetadata"]["KeyState"].as_str().unwrap_or("Enabled");
            if state != "Enabled" {
                return Err(refuse(format!("the key {key} is {state}")));
            }
        }
        // DescribeKey needs its own permission, which a key user may lack: the
        // simulated GenerateDataKey below still decides.
        Err(_) => {}
    }
    let req = json!({"KeyId": key, "Action": act::GENERATE_DATA_KEY.iam, "ViaService": "kmsfs", "ForCaller": true});
    let answer = match backend.call("Simulate", req) {
        Ok(v) => v,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(refuse(format!(
                "the key {key} does not exist: {}",
                e.message
            )))
        }
        Err(e) => bail!(
            "key-rule set {}: cannot check the key {key}: {}: {}; give --force to set it unchecked",
            dir.display(),
            e.kind.aws_name(),
            e.message
        ),
    };
    let decision = answer["EvalDecision"].as_str().unwrap_or("unknown");
    if decision != "allowed" {
        let who = backend
            .call("WhoAmI", json!({}))
            .ok()
            .and_then(|w| w.get("Arn").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "anonymous".into());
        return Err(refuse(format!(
            "you ({who}) may not use {key} for kms:GenerateDataKey through kmsfs ({decision}); \
             give --force if the rule is meant for other users of the directory"
        )));
    }
    Ok(())
}

pub fn run(args: &KeyRuleArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    match &args.command {
        KeyRuleCommand::Set { dir, key, force } => {
            if key.trim().is_empty() {
                bail!("--key: empty key id");
            }
            if !*force {
                check_key_usable(dir, key.trim(), global, keys)?;
            }
            key_rule::set(dir, key).map_err(|e| os_err("key-rule set", dir, &e))?;
            Ok(0)
        }
        KeyRuleCommand::Clear { dir } => {
            key_rule::clear(dir).map_err(|e| os_err("key-rule clear", dir, &e))?;
            Ok(0)
        }
        KeyRuleCommand::Show { dir } => {
            let rule = key_rule::show(dir).map_err(|e| os_err("key-rule show", dir, &e))?;
            let answer = serde_json::json!({
                "Directory": dir.display().to_string(),
                "KeyId": rule,
            });
            let text = format!("{}\n", rule.unwrap_or_else(|| "(inherited)".into()));
            output::print_own(&answer, "KeyRule", text, global.output)?;
            Ok(0)
        }
    }
}
