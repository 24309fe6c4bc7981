//! `kmsfs credentials`: access keys of principals, for signed network calls
//! (`kmsfs serve --listen`). Each verb is one call to the key service (its control
//! socket when one runs, so a running `kmsfs serve` sees a new key at once; else the
//! store directly), authorized and audited there like IAM's CreateAccessKey,
//! ListAccessKeys and DeleteAccessKey.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::cli::kms::EXIT_SERVICE_ERROR;
use crate::cli::service::{connect, RootKeyOpts};
use crate::cli::{output, GlobalOpts, OutputFormat};
use crate::control::Backend;
use crate::kms::credentials::{CREATE_ACCESS_KEY, DELETE_ACCESS_KEY, LIST_ACCESS_KEYS};

#[derive(Debug, Clone, clap::Args)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    pub verb: CredentialsVerb,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CredentialsVerb {
    /// Create an access key for a principal; prints its secret, once.
    Create {
        /// The principal ARN (listed in the principals file, or the account root).
        /// Default: yourself.
        #[arg(long)]
        principal: Option<String>,
    },
    /// List access keys (never their secrets): a principal's, or yours; the account root
    /// without --principal sees every key of the store.
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete an access key: requests signed with it are refused from then on.
    Delete {
        #[arg(long)]
        access_key_id: String,
        /// The key's principal (optional: it must match if given).
        #[arg(long)]
        principal: Option<String>,
    },
}

pub fn run(args: &CredentialsArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let backend = connect(global, keys)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        args,
        global.output,
        backend.as_ref(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

fn principal_request(principal: &Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(p) = principal {
        m.insert("PrincipalArn".into(), Value::String(p.clone()));
    }
    m
}

/// Runs a verb against `backend`, writing the answer to `out` and errors to `err`
/// (exit status 254 for a refusal, as `kmsfs kms` and aws-cli).
pub fn run_with(
    args: &CredentialsArgs,
    format: OutputFormat,
    backend: &dyn Backend,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    let (operation, request) = match &args.verb {
        CredentialsVerb::Create { principal } => (CREATE_ACCESS_KEY, principal_request(principal)),
        CredentialsVerb::List { principal } => (LIST_ACCESS_KEYS, principal_request(principal)),
        CredentialsVerb::Delete {
            access_key_id,
            principal,
        } => {
            let mut m = principal_request(principal);
            m.insert("AccessKeyId".into(), Value::String(access_key_id.clone()));
            (DELETE_ACCESS_KEY, m)
        }
    };
    let name = operation.trim_start_matches("iam:");
    let response = match backend.call(operation, Value::Object(request)) {
        Ok(v) => v,
        Err(e) => {
            writeln!(
                err,
                "\nAn error occurred ({}) when calling the {name} operation: {}",
                e.kind.aws_name(),
                e.message
            )?;
            return Ok(EXIT_SERVICE_ERROR);
        }
    };
    let (value, text) = match &args.verb {
        CredentialsVerb::Create { .. } => {
            // What a client configuration needs, and nothing else: the secret is
            // shown this once.
            let key = response.get("AccessKey").cloned().unwrap_or(Value::Null);
            let id = key.get("AccessKeyId").cloned().unwrap_or(Value::Null);
            let secret = key.get("SecretAccessKey").cloned().unwrap_or(Value::Null);
            let text = format!(
                "{}\t{}\n",
                id.as_str().unwrap_or(""),
                secret.as_str().unwrap_or("")
            );
            (json!({"AccessKeyId": id, "SecretAccessKey": secret}), text)
        }
        CredentialsVerb::List { .. } => {
            let mut text = String::new();
            if let Some(list) = response.get("AccessKeyMetadata").and_then(Value::as_array) {
                for k in list {
                    let f = |n: &str| k.get(n).and_then(Value::as_str).unwrap_or("-").to_string();
                    text.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        f("AccessKeyId"),
                        f("PrincipalArn"),
                        f("Status"),
                        f("CreateDate")
                    ));
                }
            }
            (response, text)
        }
        CredentialsVerb::Delete { .. } => (json!({}), String::new()),
    };
    if let CredentialsVerb::Delete { .. } = &args.verb {
        // Like aws-cli's delete verbs: nothing on success.
        return Ok(0);
    }
    let title = name;
    out.write_all(
        output::render(&output::Doc::own(&value, title, text), format, false).as_bytes(),
    )?;
    out.flush()?;
    Ok(0)
}
