//! `kmsfs kms <verb>`: the `aws kms` command line, verb for verb and flag for flag, over
//! any [`Backend`] (the control socket, or the store opened directly).
//!
//! Follows aws-cli v2's conventions so scripts move over unchanged: `file://` reads a
//! parameter as text, `fileb://` as raw bytes; a literal blob argument is base64 (unless
//! `--cli-binary-format raw-in-base64-out`); maps take `k=v,k2=v2` or JSON; output is
//! JSON (4-space indent) or aws-cli's tab-separated text, optionally narrowed by
//! `--query`; a service error prints `An error occurred (Name) when calling the Op
//! operation: message` and exits 254; a bad parameter exits 252.
//!
//! Never prints a secret the response did not contain, and never sends anything but
//! the AWS request fields: the caller's identity comes from the socket, not from here.

use crate::cli::{GlobalOpts, OutputFormat};
use crate::control::Backend;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::io::Write;

/// aws-cli's exit code for a service error.
pub const EXIT_SERVICE_ERROR: i32 = 254;
/// aws-cli's exit code for a bad parameter.
pub const EXIT_BAD_PARAMETER: i32 = 252;

#[derive(Debug, Clone, clap::Args)]
pub struct KmsArgs {
    #[command(subcommand)]
    pub verb: KmsVerb,
    /// A JMESPath-style path selecting part of the response: `Plaintext`,
    /// `KeyMetadata.KeyId`, `Aliases[].AliasName`, `Keys[0].KeyId`.
    #[arg(long, global = true)]
    pub query: Option<String>,
    /// How literal blob arguments are read: base64 (aws-cli v2's default) or raw text.
    #[arg(long, global = true, value_enum, default_value_t = BinaryFormat::Base64)]
    pub cli_binary_format: BinaryFormat,
    /// Return only the first page of a list-* call (by default, as aws-cli does, every
    /// page is fetched and merged unless --limit or --marker is given).
    #[arg(long, global = true)]
    pub no_paginate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryFormat {
    Base64,
    RawInBase64Out,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KeyIdArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub marker: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateKeyArgs {
    /// The key policy (JSON text, or file://policy.json).
    #[arg(long)]
    pub policy: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// ENCRYPT_DECRYPT (default), GENERATE_VERIFY_MAC, ...
    #[arg(long)]
    pub key_usage: Option<String>,
    /// SYMMETRIC_DEFAULT (default), HMAC_256, ...
    #[arg(long)]
    pub key_spec: Option<String>,
    /// Deprecated alias of --key-spec, accepted as aws-cli does.
    #[arg(long)]
    pub customer_master_key_spec: Option<String>,
    /// AWS_KMS (default) or EXTERNAL (import your own material).
    #[arg(long)]
    pub origin: Option<String>,
    #[arg(long)]
    pub bypass_policy_lockout_safety_check: bool,
    #[arg(long, conflicts_with = "bypass_policy_lockout_safety_check")]
    pub no_bypass_policy_lockout_safety_check: bool,
    /// TagKey=k,TagValue=v ... or JSON.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
    #[arg(long)]
    pub multi_region: bool,
    #[arg(long, conflicts_with = "multi_region")]
    pub no_multi_region: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DescribeKeyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpdateKeyDescriptionArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub description: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ScheduleKeyDeletionArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    /// 7 to 30 (default 30).
    #[arg(long)]
    pub pending_window_in_days: Option<u32>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EnableKeyRotationArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    /// 90 to 2560 (default 365).
    #[arg(long)]
    pub rotation_period_in_days: Option<u32>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KeyPageArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GetKeyPolicyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long, default_value = "default")]
    pub policy_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PutKeyPolicyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long, default_value = "default")]
    pub policy_name: String,
    /// The policy (JSON text, or file://policy.json).
    #[arg(long)]
    pub policy: String,
    #[arg(long)]
    pub bypass_policy_lockout_safety_check: bool,
    #[arg(long, conflicts_with = "bypass_policy_lockout_safety_check")]
    pub no_bypass_policy_lockout_safety_check: bool,
    /// kmsfs extension: let a caller change the policy so that it grants itself more
    /// than it had (refused by default).
    #[arg(long)]
    pub allow_self_escalation: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AliasArgs {
    /// alias/...
    #[arg(long)]
    pub alias_name: String,
    #[arg(long)]
    pub target_key_id: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeleteAliasArgs {
    #[arg(long)]
    pub alias_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListAliasesArgs {
    #[arg(long)]
    pub key_id: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TagResourceArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    /// TagKey=k,TagValue=v ... or JSON.
    #[arg(long, num_args = 1.., required = true)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UntagResourceArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long, num_args = 1.., required = true)]
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateGrantArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub grantee_principal: String,
    #[arg(long)]
    pub retiring_principal: Option<String>,
    /// Decrypt Encrypt GenerateDataKey ... (space-separated).
    #[arg(long, num_args = 1.., required = true)]
    pub operations: Vec<String>,
    /// EncryptionContextSubset={k=v,...},EncryptionContextEquals={...} or JSON.
    #[arg(long)]
    pub constraints: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// kmsfs extension: let a caller grant itself operations it does not hold.
    #[arg(long)]
    pub allow_self_escalation: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListGrantsArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub grant_id: Option<String>,
    #[arg(long)]
    pub grantee_principal: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListRetirableGrantsArgs {
    #[arg(long)]
    pub retiring_principal: String,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RevokeGrantArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub grant_id: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetireGrantArgs {
    #[arg(long)]
    pub grant_token: Option<String>,
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub grant_id: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EncryptArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub plaintext: String,
    /// k=v,k2=v2 or JSON.
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DecryptArgs {
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub ciphertext_blob: String,
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReEncryptArgs {
    #[arg(long)]
    pub ciphertext_blob: String,
    #[arg(long)]
    pub source_encryption_context: Option<String>,
    #[arg(long)]
    pub source_key_id: Option<String>,
    #[arg(long)]
    pub destination_key_id: String,
    #[arg(long)]
    pub destination_encryption_context: Option<String>,
    #[arg(long)]
    pub source_encryption_algorithm: Option<String>,
    #[arg(long)]
    pub destination_encryption_algorithm: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateDataKeyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long)]
    pub number_of_bytes: Option<u32>,
    /// AES_256 or AES_128.
    #[arg(long)]
    pub key_spec: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateRandomArgs {
    #[arg(long)]
    pub number_of_bytes: Option<u32>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GetParametersForImportArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    #[arg(long)]
    pub wrapping_algorithm: String,
    #[arg(long)]
    pub wrapping_key_spec: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportKeyMaterialArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: String,
    /// Base64, or fileb://token.bin.
    #[arg(long)]
    pub import_token: String,
    /// Base64, or fileb://material.bin.
    #[arg(long)]
    pub encrypted_key_material: String,
    /// When the material expires: ISO 8601 or seconds since the epoch.
    #[arg(long)]
    pub valid_to: Option<String>,
    /// KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE.
    #[arg(long)]
    pub expiration_model: Option<String>,
}

/// The verbs, named as aws-cli names them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KmsVerb {
    /// Create a customer managed key (symmetric AES-256 unless --key-spec says otherwise).
    CreateKey(CreateKeyArgs),
    /// Show a key's metadata (id, ARN, state, usage, dates).
    DescribeKey(DescribeKeyArgs),
    /// List the keys in the store.
    ListKeys(PageArgs),
    /// Replace a key's description.
    UpdateKeyDescription(UpdateKeyDescriptionArgs),
    /// Enable a disabled key.
    EnableKey(KeyIdArgs),
    /// Disable a key: every cryptographic operation with it fails until enabled.
    DisableKey(KeyIdArgs),
    /// Schedule a key's deletion after a 7 to 30 day waiting period.
    ScheduleKeyDeletion(ScheduleKeyDeletionArgs),
    /// Cancel a scheduled deletion (the key is left disabled, as in AWS).
    CancelKeyDeletion(KeyIdArgs),
    /// Turn on automatic yearly (or --rotation-period-in-days) rotation.
    EnableKeyRotation(EnableKeyRotationArgs),
    /// Turn off automatic rotation.
    DisableKeyRotation(KeyIdArgs),
    /// Show whether automatic rotation is on and when it next runs.
    GetKeyRotationStatus(KeyIdArgs),
    /// Rotate a key's material now.
    RotateKeyOnDemand(KeyIdArgs),
    /// List a key's completed rotations.
    ListKeyRotations(KeyPageArgs),
    /// Print a key's policy document.
    GetKeyPolicy(GetKeyPolicyArgs),
    /// Replace a key's policy (runs AWS's lockout safety check and kmsfs's escalation guard).
    PutKeyPolicy(PutKeyPolicyArgs),
    /// List a key's policy names (always "default").
    ListKeyPolicies(KeyPageArgs),
    /// Create an alias (alias/NAME) for a key.
    CreateAlias(AliasArgs),
    /// Point an alias at another key.
    UpdateAlias(AliasArgs),
    /// Delete an alias (the key is untouched).
    DeleteAlias(DeleteAliasArgs),
    /// List aliases, all or those of one key.
    ListAliases(ListAliasesArgs),
    /// Add or overwrite tags on a key.
    TagResource(TagResourceArgs),
    /// Remove tags from a key.
    UntagResource(UntagResourceArgs),
    /// List a key's tags.
    ListResourceTags(KeyPageArgs),
    /// Allow a principal to use a key for the listed operations, optionally under encryption-context constraints.
    CreateGrant(CreateGrantArgs),
    /// List the grants of a key.
    ListGrants(ListGrantsArgs),
    /// List the grants a principal may retire.
    ListRetirableGrants(ListRetirableGrantsArgs),
    /// Delete a grant (key administrators).
    RevokeGrant(RevokeGrantArgs),
    /// Delete a grant (its grantee or retiring principal).
    RetireGrant(RetireGrantArgs),
    /// Encrypt up to 4 KiB of plaintext under a key.
    Encrypt(EncryptArgs),
    /// Decrypt a ciphertext blob (the key is the one named inside the blob).
    Decrypt(DecryptArgs),
    /// Decrypt and re-encrypt under another key or context without exposing the plaintext.
    ReEncrypt(ReEncryptArgs),
    /// Return a new data key in plaintext and encrypted under a key.
    GenerateDataKey(GenerateDataKeyArgs),
    /// Return a new data key encrypted under a key only.
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyArgs),
    /// Return random bytes.
    GenerateRandom(GenerateRandomArgs),
    /// Get a wrapping public key and import token to import key material (Origin EXTERNAL keys).
    GetParametersForImport(GetParametersForImportArgs),
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial(ImportKeyMaterialArgs),
    /// Delete a key's imported material (the key becomes PendingImport).
    DeleteImportedKeyMaterial(KeyIdArgs),
    /// kmsfs extension, runs locally: wrap 32 bytes of key material with the wrapping
    /// key from get-parameters-for-import (scheme KMSFS_LOCAL_AES_256_GCM), giving the
    /// --encrypted-key-material for import-key-material.
    WrapKeyMaterial(WrapKeyMaterialArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct WrapKeyMaterialArgs {
    /// The PublicKey returned by get-parameters-for-import (base64, or fileb://).
    #[arg(long)]
    pub public_key: String,
    /// The 32 bytes of key material (fileb://FILE, or base64).
    #[arg(long)]
    pub key_material: String,
}

/// `["Decrypt,Encrypt", "GenerateDataKey"]` → `["Decrypt", "Encrypt", "GenerateDataKey"]`.
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The pseudo-operation name of [`KmsVerb::WrapKeyMaterial`]; never sent to a service.
const LOCAL_WRAP_OPERATION: &str = "WrapKeyMaterial";

/// Runs a verb that needs no service.
fn run_local(operation: &str, request: &Value) -> Result<Value, crate::kms::KmsError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str| -> Result<Vec<u8>, crate::kms::KmsError> {
        let text = request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default();
        b64.decode(text).map_err(|e| {
            crate::kms::KmsError::new(crate::kms::ErrorKind::Validation, format!("{name}: {e}"))
        })
    };
    match operation {
        LOCAL_WRAP_OPERATION => {
            let key = zeroize::Zeroizing::new(field("PublicKey")?);
            let material = zeroize::Zeroizing::new(field("KeyMaterial")?);
            let wrapped = crate::kms::wrap_key_material(&key, &material)?;
            Ok(serde_json::json!({ "EncryptedKeyMaterial": b64.encode(wrapped) }))
        }
        _ => Err(crate::kms::KmsError::new(
            crate::kms::ErrorKind::UnsupportedOperation,
            format!("{operation} is not a local operation"),
        )),
    }
}

/// A parameter aws-cli would refuse, with the flag it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error parsing parameter '{flag}': {message}")]
pub struct ParamError {
    pub flag: String,
    pub message: String,
}

fn param_err(flag: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        flag: flag.to_string(),
        message: message.into(),
    }
}

/// Runs one verb: builds the request, calls the backend, prints the response. Returns
/// the process exit code (0, 252 or 254).
pub fn run(args: &KmsArgs, global: &GlobalOpts, backend: &dyn Backend) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        args,
        global.output,
        backend,
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// [`run`] with explicit output streams (what tests drive).
pub fn run_with(
    args: &KmsArgs,
    output: OutputFormat,
    backend: &dyn Backend,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    let (operation, request) = match build_request(&args.verb, args.cli_binary_format) {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "\n{e}")?;
            return Ok(EXIT_BAD_PARAMETER);
        }
    };
    let query = match args.query.as_deref().map(Query::parse).transpose() {
        Ok(q) => q,
        Err(e) => {
            writeln!(err, "\n{e}")?;
            return Ok(EXIT_BAD_PARAMETER);
        }
    };
    let paginate =
        !args.no_paginate && request.get("Limit").is_none() && request.get("Marker").is_none();
    let result = match pagination_of(operation) {
        _ if operation == LOCAL_WRAP_OPERATION => run_local(operation, &request),
        Some(result_key) if paginate => call_all_pages(backend, operation, request, result_key),
        _ => backend.call(operation, request),
    };
    match result {
        Ok(mut response) => {
            iso_timestamps(&mut response);
            let selected = match &query {
                Some(q) => q.apply(&response),
                None => response,
            };
            out.write_all(render(&selected, output, query.is_some()).as_bytes())?;
            out.flush()?;
            Ok(0)
        }
        Err(e) => {
            writeln!(
                err,
                "\nAn error occurred ({}) when calling the {operation} operation: {}",
                e.kind.aws_name(),
                e.message
            )?;
            Ok(EXIT_SERVICE_ERROR)
        }
    }
}

/// The list member of each paginated operation (aws-cli's paginator `result_key`).
fn pagination_of(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "ListKeys" => "Keys",
        "ListAliases" => "Aliases",
        "ListGrants" | "ListRetirableGrants" => "Grants",
        "ListKeyPolicies" => "PolicyNames",
        "ListResourceTags" => "Tags",
        "ListKeyRotations" => "Rotations",
        _ => return None,
    })
}

/// Upper bound on pages fetched for one command: a service that keeps answering
/// `Truncated` must not keep the CLI looping forever.
const MAX_PAGES: usize = 100_000;

/// Follows NextMarker while Truncated, merging the pages' `result_key` lists into the
/// first page and dropping the pagination members, as aws-cli's auto-pagination does.
fn call_all_pages(
    backend: &dyn Backend,
    operation: &str,
    request: Value,
    result_key: &str,
) -> Result<Value, crate::kms::KmsError> {
    let mut merged = backend.call(operation, request.clone())?;
    let mut pages = 1;
    loop {
        let truncated = merged
            .get("Truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let marker = merged
            .get("NextMarker")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Value::Object(m) = &mut merged {
            m.remove("Truncated");
            m.remove("NextMarker");
        }
        let (true, Some(marker)) = (truncated, marker) else {
            break;
        };
        if pages >= MAX_PAGES {
            return Err(crate::kms::KmsError::new(
                crate::kms::ErrorKind::KmsInternal,
                format!("{operation}: still truncated after {MAX_PAGES} pages; use --limit and --marker"),
            ));
        }
        let mut next_req = request.clone();
        if let Value::Object(r) = &mut next_req {
            r.insert("Marker".into(), Value::String(marker.clone()));
        }
        let mut page = backend.call(operation, next_req)?;
        pages += 1;
        let items = match page.get_mut(result_key) {
            Some(Value::Array(items)) => std::mem::take(items),
            _ => Vec::new(),
        };
        if let Some(Value::Array(all)) = merged.get_mut(result_key) {
            all.extend(items);
        }
        // Carry this page's continuation into the next round.
        if let (Value::Object(m), Value::Object(p)) = (&mut merged, &page) {
            for k in ["Truncated", "NextMarker"] {
                if let Some(v) = p.get(k) {
                    m.insert(k.to_string(), v.clone());
                }
            }
        }
        if page.get("NextMarker").and_then(Value::as_str) == Some(marker.as_str()) {
            // The same marker again would loop forever.
            return Err(crate::kms::KmsError::new(
                crate::kms::ErrorKind::KmsInternal,
                format!("{operation}: the service returned the same NextMarker twice"),
            ));
        }
    }
    Ok(merged)
}

/// Collects request members, leaving out the ones the user did not give (AWS treats an
/// absent member and a default differently, e.g. PolicyName).
struct RequestBuilder(Map<String, Value>);

impl RequestBuilder {
    fn new() -> Self {
        RequestBuilder(Map::new())
    }
    fn set(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.0.insert(name.to_string(), v.into());
        self
    }
    fn opt<T: Into<Value>>(self, name: &str, v: Option<T>) -> Self {
        match v {
            Some(v) => self.set(name, v),
            None => self,
        }
    }
    fn flag(self, name: &str, on: bool, off: bool) -> Self {
        match (on, off) {
            (true, _) => self.set(name, true),
            (_, true) => self.set(name, false),
            _ => self,
        }
    }
    fn list(self, name: &str, items: &[String]) -> Self {
        if items.is_empty() {
            self
        } else {
            self.set(
                name,
                Value::Array(items.iter().cloned().map(Value::String).collect()),
            )
        }
    }
    fn page(self, p: &PageArgs) -> Self {
        self.opt("Limit", p.limit).opt("Marker", p.marker.clone())
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// The AWS operation name and JSON request for a verb.
pub fn build_request(
    verb: &KmsVerb,
    binary: BinaryFormat,
) -> Result<(&'static str, Value), ParamError> {
    use KmsVerb as V;
    let r = RequestBuilder::new;
    let text =
        |flag: &str, v: &Option<String>| v.as_deref().map(|v| text_param(flag, v)).transpose();
    let context = |flag: &str, v: &Option<String>| {
        v.as_deref().map(|v| string_map_param(flag, v)).transpose()
    };
    Ok(match verb {
        V::CreateKey(a) => (
            "CreateKey",
            r().opt("Policy", text("--policy", &a.policy)?)
                .opt("Description", text("--description", &a.description)?)
                .opt("KeyUsage", a.key_usage.clone())
                .opt("KeySpec", a.key_spec.clone())
                .opt("CustomerMasterKeySpec", a.customer_master_key_spec.clone())
                .opt("Origin", a.origin.clone())
                .flag(
                    "BypassPolicyLockoutSafetyCheck",
                    a.bypass_policy_lockout_safety_check,
                    a.no_bypass_policy_lockout_safety_check,
                )
                .opt("Tags", tags_param("--tags", &a.tags)?)
                .flag("MultiRegion", a.multi_region, a.no_multi_region)
                .done(),
        ),
        V::DescribeKey(a) => (
            "DescribeKey",
            r().set("KeyId", a.key_id.clone())
                .list("GrantTokens", &a.grant_tokens)
                .done(),
        ),
        V::ListKeys(p) => ("ListKeys", r().page(p).done()),
        V::UpdateKeyDescription(a) => (
            "UpdateKeyDescription",
            r().set("KeyId", a.key_id.clone())
                .set("Description", text_param("--description", &a.description)?)
                .done(),
        ),
        V::EnableKey(a) => ("EnableKey", key_only(a)),
        V::DisableKey(a) => ("DisableKey", key_only(a)),
        V::ScheduleKeyDeletion(a) => (
            "ScheduleKeyDeletion",
            r().set("KeyId", a.key_id.clone())
                .opt("PendingWindowInDays", a.pending_window_in_days)
                .done(),
        ),
        V::CancelKeyDeletion(a) => ("CancelKeyDeletion", key_only(a)),
        V::EnableKeyRotation(a) => (
            "EnableKeyRotation",
            r().set("KeyId", a.key_id.clone())
                .opt("RotationPeriodInDays", a.rotation_period_in_days)
                .done(),
        ),
        V::DisableKeyRotation(a) => ("DisableKeyRotation", key_only(a)),
        V::GetKeyRotationStatus(a) => ("GetKeyRotationStatus", key_only(a)),
        V::RotateKeyOnDemand(a) => ("RotateKeyOnDemand", key_only(a)),
        V::ListKeyRotations(a) => (
            "ListKeyRotations",
            r().set("KeyId", a.key_id.clone()).page(&a.page).done(),
        ),
        V::GetKeyPolicy(a) => (
            "GetKeyPolicy",
            r().set("KeyId", a.key_id.clone())
                .set("PolicyName", a.policy_name.clone())
                .done(),
        ),
        V::PutKeyPolicy(a) => (
            "PutKeyPolicy",
            r().set("KeyId", a.key_id.clone())
                .set("PolicyName", a.policy_name.clone())
                .set("Policy", text_param("--policy", &a.policy)?)
                .flag(
                    "BypassPolicyLockoutSafetyCheck",
                    a.bypass_policy_lockout_safety_check,
                    a.no_bypass_policy_lockout_safety_check,
                )
                .flag("AllowSelfEscalation", a.allow_self_escalation, false)
                .done(),
        ),
        V::ListKeyPolicies(a) => (
            "ListKeyPolicies",
            r().set("KeyId", a.key_id.clone()).page(&a.page).done(),
        ),
        V::CreateAlias(a) => (
            "CreateAlias",
            r().set("AliasName", a.alias_name.clone())
                .set("TargetKeyId", a.target_key_id.clone())
                .done(),
        ),
        V::UpdateAlias(a) => (
            "UpdateAlias",
            r().set("AliasName", a.alias_name.clone())
                .set("TargetKeyId", a.target_key_id.clone())
                .done(),
        ),
        V::DeleteAlias(a) => (
            "DeleteAlias",
            r().set("AliasName", a.alias_name.clone()).done(),
        ),
        V::ListAliases(a) => (
            "ListAliases",
            r().opt("KeyId", a.key_id.clone()).page(&a.page).done(),
        ),
        V::TagResource(a) => (
            "TagResource",
            r().set("KeyId", a.key_id.clone())
                .opt("Tags", tags_param("--tags", &a.tags)?)
                .done(),
        ),
        V::UntagResource(a) => (
            "UntagResource",
            r().set("KeyId", a.key_id.clone())
                .list("TagKeys", &a.tag_keys)
                .done(),
        ),
        V::ListResourceTags(a) => (
            "ListResourceTags",
            r().set("KeyId", a.key_id.clone()).page(&a.page).done(),
        ),
        V::CreateGrant(a) => (
            "CreateGrant",
            r().set("KeyId", a.key_id.clone())
                .set("GranteePrincipal", a.grantee_principal.clone())
                .opt("RetiringPrincipal", a.retiring_principal.clone())
                // aws-cli takes a list as separate words or comma-separated.
                .list("Operations", &split_list(&a.operations))
                .opt(
                    "Constraints",
                    a.constraints
                        .as_deref()
                        .map(|c| constraints_param("--constraints", c))
                        .transpose()?,
                )
                .list("GrantTokens", &a.grant_tokens)
                .opt("Name", a.name.clone())
                .flag("AllowSelfEscalation", a.allow_self_escalation, false)
                .done(),
        ),
        V::ListGrants(a) => (
            "ListGrants",
            r().set("KeyId", a.key_id.clone())
                .opt("GrantId", a.grant_id.clone())
                .opt("GranteePrincipal", a.grantee_principal.clone())
                .page(&a.page)
                .done(),
        ),
        V::ListRetirableGrants(a) => (
            "ListRetirableGrants",
            r().set("RetiringPrincipal", a.retiring_principal.clone())
                .page(&a.page)
                .done(),
        ),
        V::RevokeGrant(a) => (
            "RevokeGrant",
            r().set("KeyId", a.key_id.clone())
                .set("GrantId", a.grant_id.clone())
                .done(),
        ),
        V::RetireGrant(a) => {
            if a.grant_token.is_none() && (a.key_id.is_none() || a.grant_id.is_none()) {
                return Err(param_err(
                    "--grant-token",
                    "give --grant-token, or both --key-id and --grant-id",
                ));
            }
            (
                "RetireGrant",
                r().opt("GrantToken", a.grant_token.clone())
                    .opt("KeyId", a.key_id.clone())
                    .opt("GrantId", a.grant_id.clone())
                    .done(),
            )
        }
        V::Encrypt(a) => (
            "Encrypt",
            r().set("KeyId", a.key_id.clone())
                .set(
                    "Plaintext",
                    blob_param("--plaintext", &a.plaintext, binary)?,
                )
                .opt(
                    "EncryptionContext",
                    context("--encryption-context", &a.encryption_context)?,
                )
                .list("GrantTokens", &a.grant_tokens)
                .opt("EncryptionAlgorithm", a.encryption_algorithm.clone())
                .done(),
        ),
        V::Decrypt(a) => (
            "Decrypt",
            r().set(
                "CiphertextBlob",
                blob_param("--ciphertext-blob", &a.ciphertext_blob, binary)?,
            )
            .opt(
                "EncryptionContext",
                context("--encryption-context", &a.encryption_context)?,
            )
            .list("GrantTokens", &a.grant_tokens)
            .opt("KeyId", a.key_id.clone())
            .opt("EncryptionAlgorithm", a.encryption_algorithm.clone())
            .done(),
        ),
        V::ReEncrypt(a) => (
            "ReEncrypt",
            r().set(
                "CiphertextBlob",
                blob_param("--ciphertext-blob", &a.ciphertext_blob, binary)?,
            )
            .opt(
                "SourceEncryptionContext",
                context("--source-encryption-context", &a.source_encryption_context)?,
            )
            .opt("SourceKeyId", a.source_key_id.clone())
            .set("DestinationKeyId", a.destination_key_id.clone())
            .opt(
                "DestinationEncryptionContext",
                context(
                    "--destination-encryption-context",
                    &a.destination_encryption_context,
                )?,
            )
            .opt(
                "SourceEncryptionAlgorithm",
                a.source_encryption_algorithm.clone(),
            )
            .opt(
                "DestinationEncryptionAlgorithm",
                a.destination_encryption_algorithm.clone(),
            )
            .list("GrantTokens", &a.grant_tokens)
            .done(),
        ),
        V::GenerateDataKey(a) => ("GenerateDataKey", data_key_request(a)?),
        V::GenerateDataKeyWithoutPlaintext(a) => {
            ("GenerateDataKeyWithoutPlaintext", data_key_request(a)?)
        }
        V::GenerateRandom(a) => (
            "GenerateRandom",
            r().opt("NumberOfBytes", a.number_of_bytes).done(),
        ),
        V::GetParametersForImport(a) => (
            "GetParametersForImport",
            r().set("KeyId", a.key_id.clone())
                .set("WrappingAlgorithm", a.wrapping_algorithm.clone())
                .set("WrappingKeySpec", a.wrapping_key_spec.clone())
                .done(),
        ),
        V::ImportKeyMaterial(a) => (
            "ImportKeyMaterial",
            r().set("KeyId", a.key_id.clone())
                .set(
                    "ImportToken",
                    blob_param("--import-token", &a.import_token, binary)?,
                )
                .set(
                    "EncryptedKeyMaterial",
                    blob_param(
                        "--encrypted-key-material",
                        &a.encrypted_key_material,
                        binary,
                    )?,
                )
                .opt(
                    "ValidTo",
                    a.valid_to
                        .as_deref()
                        .map(|v| timestamp_param("--valid-to", v))
                        .transpose()?,
                )
                .opt("ExpirationModel", a.expiration_model.clone())
                .done(),
        ),
        V::DeleteImportedKeyMaterial(a) => ("DeleteImportedKeyMaterial", key_only(a)),
        V::WrapKeyMaterial(a) => (
            LOCAL_WRAP_OPERATION,
            r().set(
                "PublicKey",
                blob_param("--public-key", &a.public_key, binary)?,
            )
            .set(
                "KeyMaterial",
                blob_param("--key-material", &a.key_material, binary)?,
            )
            .done(),
        ),
    })
}

fn key_only(a: &KeyIdArgs) -> Value {
    json!({ "KeyId": a.key_id })
}

fn data_key_request(a: &GenerateDataKeyArgs) -> Result<Value, ParamError> {
    Ok(RequestBuilder::new()
        .set("KeyId", a.key_id.clone())
        .opt(
            "EncryptionContext",
            a.encryption_context
                .as_deref()
                .map(|v| string_map_param("--encryption-context", v))
                .transpose()?,
        )
        .opt("NumberOfBytes", a.number_of_bytes)
        .opt("KeySpec", a.key_spec.clone())
        .list("GrantTokens", &a.grant_tokens)
        .done())
}

/// Where a parameter's value comes from (aws-cli's paramfile prefixes).
enum Source {
    Literal(String),
    /// file://: the file's text.
    Text(String),
    /// fileb://: the file's bytes.
    Bytes(Vec<u8>),
}

fn read_source(flag: &str, raw: &str) -> Result<Source, ParamError> {
    if let Some(path) = raw.strip_prefix("fileb://") {
        std::fs::read(path)
            .map(Source::Bytes)
            .map_err(|e| param_err(flag, format!("Unable to load paramfile {raw}: {e}")))
    } else if let Some(path) = raw.strip_prefix("file://") {
        std::fs::read_to_string(path)
            .map(Source::Text)
            .map_err(|e| param_err(flag, format!("Unable to load paramfile {raw}: {e}")))
    } else {
        Ok(Source::Literal(raw.to_string()))
    }
}

/// A text parameter: literal, file:// text, or fileb:// bytes that must be UTF-8.
fn text_param(flag: &str, raw: &str) -> Result<String, ParamError> {
    match read_source(flag, raw)? {
        Source::Literal(s) | Source::Text(s) => Ok(s),
        Source::Bytes(b) => {
            String::from_utf8(b).map_err(|_| param_err(flag, "the file is not UTF-8 text"))
        }
    }
}

/// A blob parameter, returned as the base64 the AWS JSON protocol carries. fileb:// is
/// raw bytes; a literal or file:// text is base64 (aws-cli v2), or raw text with
/// `--cli-binary-format raw-in-base64-out`.
fn blob_param(flag: &str, raw: &str, binary: BinaryFormat) -> Result<String, ParamError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = match read_source(flag, raw)? {
        Source::Bytes(bytes) => return Ok(b64.encode(bytes)),
        Source::Literal(s) | Source::Text(s) => s,
    };
    if binary == BinaryFormat::RawInBase64Out {
        return Ok(b64.encode(text.as_bytes()));
    }
    let trimmed = text.trim();
    let bytes = b64.decode(trimmed).map_err(|e| {
        param_err(
            flag,
            format!(
                "Invalid base64: {e}. Give base64, fileb://FILE for raw bytes, or \
                 --cli-binary-format raw-in-base64-out for literal text"
            ),
        )
    })?;
    // Re-encode so the request carries canonical base64 whatever padding was given.
    Ok(b64.encode(bytes))
}

/// A string→string map: `k=v,k2=v2` (aws-cli shorthand) or a JSON object, or either
/// from file://.
fn string_map_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    let text = text_param(flag, raw)?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| param_err(flag, format!("Invalid JSON: {e}\nJSON received: {trimmed}")))?;
        return match &v {
            Value::Object(m) if m.values().all(Value::is_string) => Ok(v),
            _ => Err(param_err(flag, "expected a JSON object of string values")),
        };
    }
    parse_shorthand_map(trimmed)
        .map(Value::Object)
        .map_err(|m| param_err(flag, m))
}

/// `k=v,k2=v2` → {"k":"v","k2":"v2"}. Values may be quoted to contain commas.
fn parse_shorthand_map(s: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    if s.is_empty() {
        return Ok(map);
    }
    for pair in split_top_level(s, ',') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("Expected: '=', received: end of input after {pair:?} (use key=value,key2=value2 or JSON)"));
        };
        let k = unquote(k.trim());
        if k.is_empty() {
            return Err(format!("empty key in {pair:?}"));
        }
        map.insert(k, Value::String(unquote(v.trim())));
    }
    Ok(map)
}

fn unquote(s: &str) -> String {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Splits on `sep` outside braces, brackets and quotes.
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `--tags TagKey=k,TagValue=v TagKey=k2,TagValue=v2` or `--tags '[{"TagKey":..}]'`.
fn tags_param(flag: &str, raw: &[String]) -> Result<Option<Value>, ParamError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for item in raw {
        let text = text_param(flag, item)?;
        let trimmed = text.trim();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            let v: Value = serde_json::from_str(trimmed)
                .map_err(|e| param_err(flag, format!("Invalid JSON: {e}")))?;
            let items = match v {
                Value::Array(items) => items,
                obj @ Value::Object(_) => vec![obj],
                _ => {
                    return Err(param_err(
                        flag,
                        "expected a JSON list of {\"TagKey\":..,\"TagValue\":..}",
                    ))
                }
            };
            for t in items {
                let ok = t.get("TagKey").is_some_and(Value::is_string)
                    && t.get("TagValue").is_some_and(Value::is_string);
                if !ok {
                    return Err(param_err(
                        flag,
                        format!("each tag needs string TagKey and TagValue, got {t}"),
                    ));
                }
                tags.push(t);
            }
        } else {
            let m = parse_shorthand_map(trimmed).map_err(|m| param_err(flag, m))?;
            let (Some(k), Some(v)) = (m.get("TagKey"), m.get("TagValue")) else {
                return Err(param_err(
                    flag,
                    format!("expected TagKey=key,TagValue=value, got {trimmed:?}"),
                ));
            };
            if let Some(extra) = m.keys().find(|k| *k != "TagKey" && *k != "TagValue") {
                return Err(param_err(
                    flag,
                    format!("Unknown key {extra:?}, valid choices are: TagKey, TagValue"),
                ));
            }
            tags.push(json!({"TagKey": k, "TagValue": v}));
        }
    }
    Ok(Some(Value::Array(tags)))
}

/// `EncryptionContextSubset={k=v,k2=v2},EncryptionContextEquals={k=v}` or JSON.
fn constraints_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    const NAMES: [&str; 2] = ["EncryptionContextSubset", "EncryptionContextEquals"];
    let text = text_param(flag, raw)?;
    let trimmed = text.trim();
    let value = if trimmed.starts_with('{') {
        serde_json::from_str::<Value>(trimmed)
            .map_err(|e| param_err(flag, format!("Invalid JSON: {e}")))?
    } else {
        let mut m = Map::new();
        for part in split_top_level(trimmed, ',') {
            let Some((name, inner)) = part.split_once('=') else {
                return Err(param_err(
                    flag,
                    format!("expected Name={{k=v,...}}, got {part:?}"),
                ));
            };
            let inner = inner.trim();
            let Some(body) = inner.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return Err(param_err(
                    flag,
                    format!("the value of {name} must be in braces: {name}={{k=v,...}}"),
                ));
            };
            m.insert(
                name.trim().to_string(),
                Value::Object(parse_shorthand_map(body.trim()).map_err(|e| param_err(flag, e))?),
            );
        }
        Value::Object(m)
    };
    let Value::Object(m) = &value else {
        return Err(param_err(flag, "expected an object"));
    };
    for (name, v) in m {
        if !NAMES.contains(&name.as_str()) {
            return Err(param_err(
                flag,
                format!(
                    "Unknown key {name:?}, valid choices are: {}",
                    NAMES.join(", ")
                ),
            ));
        }
        if !matches!(v, Value::Object(o) if o.values().all(Value::is_string)) {
            return Err(param_err(
                flag,
                format!("{name} must map strings to strings"),
            ));
        }
    }
    Ok(value)
}

/// A timestamp as aws-cli accepts it: ISO 8601 / RFC 3339, or seconds since the epoch.
/// Sent as epoch seconds, as AWS's JSON protocol encodes timestamps.
fn timestamp_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    if let Ok(secs) = raw.trim().parse::<i64>() {
        return Ok(json!(secs));
    }
    time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| json!(t.unix_timestamp()))
        .map_err(|e| param_err(flag, format!("Unable to parse timestamp {raw:?}: {e} (use 2027-01-31T00:00:00Z or epoch seconds)")))
}

/// The supported subset of JMESPath: dotted field names with `[]`/`[*]` projections and
/// `[N]` indexes, e.g. `KeyMetadata.KeyId`, `Aliases[].AliasName`, `Keys[0].KeyId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query(Vec<QueryStep>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryStep {
    Field(String),
    Index(i64),
    Project,
}

impl Query {
    pub fn parse(expr: &str) -> Result<Query, ParamError> {
        let bad = |why: &str| {
            param_err(
                "--query",
                format!("Bad value for --query {expr}: {why} (supported: Field.Sub, List[].Field, List[N])"),
            )
        };
        let mut steps = Vec::new();
        let mut rest = expr.trim();
        if rest.is_empty() {
            return Err(bad("empty expression"));
        }
        let mut expect_field = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let Some(end) = r.find(']') else {
                    return Err(bad("unclosed '['"));
                };
                let inside = r[..end].trim();
                steps.push(match inside {
                    "" | "*" => QueryStep::Project,
                    n => QueryStep::Index(
                        n.parse()
                            .map_err(|_| bad("only [], [*] and [N] are supported"))?,
                    ),
                });
                rest = &r[end + 1..];
                expect_field = false;
            } else if let Some(r) = rest.strip_prefix('.') {
                if expect_field {
                    return Err(bad("unexpected '.'"));
                }
                rest = r;
                expect_field = true;
            } else {
                if !expect_field {
                    return Err(bad("expected '.' or '['"));
                }
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let name = &rest[..end];
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad(&format!("unsupported identifier {name:?}")));
                }
                steps.push(QueryStep::Field(name.to_string()));
                rest = &rest[end..];
                expect_field = false;
            }
        }
        if expect_field {
            return Err(bad("ends with '.'"));
        }
        Ok(Query(steps))
    }

    pub fn apply(&self, v: &Value) -> Value {
        eval_steps(v, &self.0)
    }
}

fn eval_steps(v: &Value, steps: &[QueryStep]) -> Value {
    let Some((step, rest)) = steps.split_first() else {
        return v.clone();
    };
    match step {
        QueryStep::Field(name) => match v.get(name.as_str()) {
            Some(child) => eval_steps(child, rest),
            None => Value::Null,
        },
        QueryStep::Index(i) => {
            let Value::Array(items) = v else {
                return Value::Null;
            };
            let idx = if *i < 0 { items.len() as i64 + i } else { *i };
            match usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                Some(child) => eval_steps(child, rest),
                None => Value::Null,
            }
        }
        // A projection applies the rest to each element and drops nulls, as JMESPath does.
        QueryStep::Project => match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|e| eval_steps(e, rest))
                    .filter(|r| !r.is_null())
                    .collect(),
            ),
            _ => Value::Null,
        },
    }
}

/// Response members that AWS's JSON protocol sends as epoch seconds and aws-cli v2
/// prints (and lets `--query` see) as ISO 8601.
const TIMESTAMP_MEMBERS: &[&str] = &[
    "CreationDate",
    "DeletionDate",
    "LastUpdatedDate",
    "ValidTo",
    "ParametersValidTo",
    "RotationDate",
    "NextRotationDate",
    "OnDemandRotationStartDate",
];

/// Rewrites epoch-second timestamps, at any depth, the way aws-cli v2 prints them:
/// `2026-11-23T09:30:00+00:00`, with microseconds when the value has a fraction.
pub fn iso_timestamps(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (name, child) in m.iter_mut() {
                if TIMESTAMP_MEMBERS.contains(&name.as_str()) {
                    if let Some(text) = child.as_f64().and_then(iso8601) {
                        *child = Value::String(text);
                        continue;
                    }
                }
                iso_timestamps(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iso_timestamps),
        _ => {}
    }
}

fn iso8601(epoch: f64) -> Option<String> {
    if !epoch.is_finite() {
        return None;
    }
    let secs = epoch.floor();
    // Whole microseconds, as Python's isoformat prints them.
    let micros = ((epoch - secs) * 1e6).round() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).ok()?;
    let date = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = t.format(&date).ok()?;
    Some(if micros > 0 {
        format!("{base}.{micros:06}+00:00")
    } else {
        format!("{base}+00:00")
    })
}

/// Formats a response as aws-cli does: JSON with 4-space indentation, or its text format.
pub fn render(v: &Value, output: OutputFormat, queried: bool) -> String {
    match output {
        OutputFormat::Json => {
            // aws-cli prints nothing for an empty response ({}), e.g. EnableKey.
            if !queried && v.as_object().is_some_and(|m| m.is_empty()) {
                return String::new();
            }
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            // Serializing a Value into a Vec cannot fail.
            let _ = serde::Serialize::serialize(v, &mut ser);
            let mut s = String::from_utf8_lossy(&buf).into_owned();
            s.push('\n');
            s
        }
        OutputFormat::Text => {
            let mut s = String::new();
            text_format(v, None, &mut s);
            s
        }
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

/// aws-cli's text format: an object prints its scalar members (sorted by name) on one
/// tab-separated line headed by its upper-cased name, then each nested member; a list of
/// scalars prints on one line; a list of objects prints one line per element.
fn text_format(v: &Value, identifier: Option<&str>, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let mut line: Vec<String> = members
                .iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(_, v)| scalar_text(v))
                .collect();
            if !line.is_empty() {
                if let Some(id) = identifier {
                    line.insert(0, id.to_uppercase());
                }
                out.push_str(&line.join("\t"));
                out.push('\n');
            }
            for (name, child) in members.into_iter().filter(|(_, v)| !is_scalar(v)) {
                text_format(child, Some(name), out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                return;
            }
            if items.iter().all(is_scalar) {
                let mut line: Vec<String> = items.iter().map(scalar_text).collect();
                if let Some(id) = identifier {
                    line.insert(0, id.to_uppercase());
                }
                out.push_str(&line.join("\t"));
                out.push('\n');
            } else {
                for item in items {
                    text_format(item, identifier, out);
                }
            }
        }
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kms: KmsArgs,
    }

    fn parse(argv: &[&str]) -> KmsArgs {
        let mut full = vec!["kms"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
            .kms
    }

    fn request(argv: &[&str]) -> (&'static str, Value) {
        let a = parse(argv);
        build_request(&a.verb, a.cli_binary_format).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    #[test]
    fn flags_map_to_aws_requests() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("p.json");
        std::fs::write(&policy, r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
        let blob = dir.path().join("ct.bin");
        std::fs::write(&blob, [0u8, 1, 2, 255]).unwrap();
        let policy_arg = format!("file://{}", policy.display());
        let blob_arg = format!("fileb://{}", blob.display());
        let cases: Vec<(Vec<&str>, &str, Value)> = vec![
            (vec!["create-key"], "CreateKey", json!({})),
            (
                vec![
                    "create-key",
                    "--description",
                    "d",
                    "--key-usage",
                    "ENCRYPT_DECRYPT",
                    "--key-spec",
                    "SYMMETRIC_DEFAULT",
                    "--origin",
                    "EXTERNAL",
                    "--policy",
                    &policy_arg,
                    "--bypass-policy-lockout-safety-check",
                    "--tags",
                    "TagKey=team,TagValue=ops",
                    "TagKey=env,TagValue=prod",
                ],
                "CreateKey",
                json!({"Policy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}", "Description": "d",
                       "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT", "Origin": "EXTERNAL",
                       "BypassPolicyLockoutSafetyCheck": true,
                       "Tags": [{"TagKey": "team", "TagValue": "ops"}, {"TagKey": "env", "TagValue": "prod"}]}),
            ),
            (
                vec!["create-key", "--tags", r#"[{"TagKey":"a","TagValue":"b"}]"#],
                "CreateKey",
                json!({"Tags": [{"TagKey": "a", "TagValue": "b"}]}),
            ),
            (
                vec!["describe-key", "--key-id", "alias/x"],
                "DescribeKey",
                json!({"KeyId": "alias/x"}),
            ),
            (
                vec!["list-keys", "--limit", "10", "--marker", "m"],
                "ListKeys",
                json!({"Limit": 10, "Marker": "m"}),
            ),
            (
                vec!["enable-key", "--key-id", "k"],
                "EnableKey",
                json!({"KeyId": "k"}),
            ),
            (
                vec!["disable-key", "--key-id", "k"],
                "DisableKey",
                json!({"KeyId": "k"}),
            ),
            (
                vec![
                    "schedule-key-deletion",
                    "--key-id",
                    "k",
                    "--pending-window-in-days",
                    "7",
                ],
                "ScheduleKeyDeletion",
                json!({"KeyId": "k", "PendingWindowInDays": 7}),
            ),
            (
                vec!["cancel-key-deletion", "--key-id", "k"],
                "CancelKeyDeletion",
                json!({"KeyId": "k"}),
            ),
            (
                vec![
                    "enable-key-rotation",
                    "--key-id",
                    "k",
                    "--rotation-period-in-days",
                    "90",
                ],
                "EnableKeyRotation",
                json!({"KeyId": "k", "RotationPeriodInDays": 90}),
            ),
            (
                vec!["rotate-key-on-demand", "--key-id", "k"],
                "RotateKeyOnDemand",
                json!({"KeyId": "k"}),
            ),
            (
                vec!["list-key-rotations", "--key-id", "k"],
                "ListKeyRotations",
                json!({"KeyId": "k"}),
            ),
            (
                vec!["get-key-policy", "--key-id", "k"],
                "GetKeyPolicy",
                json!({"KeyId": "k", "PolicyName": "default"}),
            ),
            (
                vec![
                    "put-key-policy",
                    "--key-id",
                    "k",
                    "--policy",
                    "{}",
                    "--allow-self-escalation",
                ],
                "PutKeyPolicy",
                json!({"KeyId": "k", "PolicyName": "default", "Policy": "{}", "AllowSelfEscalation": true}),
            ),
            (
                vec![
                    "create-alias",
                    "--alias-name",
                    "alias/a",
                    "--target-key-id",
                    "k",
                ],
                "CreateAlias",
                json!({"AliasName": "alias/a", "TargetKeyId": "k"}),
            ),
            (
                vec!["delete-alias", "--alias-name", "alias/a"],
                "DeleteAlias",
                json!({"AliasName": "alias/a"}),
            ),
            (vec!["list-aliases"], "ListAliases", json!({})),
            (
                vec!["untag-resource", "--key-id", "k", "--tag-keys", "a", "b"],
                "UntagResource",
                json!({"KeyId": "k", "TagKeys": ["a", "b"]}),
            ),
            (
                vec![
                    "create-grant",
                    "--key-id",
                    "k",
                    "--grantee-principal",
                    "arn:aws:iam::1:role/r",
                    "--operations",
                    "Decrypt",
                    "Encrypt",
                    "--constraints",
                    "EncryptionContextSubset={dept=it,app=x}",
                    "--name",
                    "g",
                ],
                "CreateGrant",
                json!({"KeyId": "k", "GranteePrincipal": "arn:aws:iam::1:role/r", "Operations": ["Decrypt", "Encrypt"],
                       "Constraints": {"EncryptionContextSubset": {"dept": "it", "app": "x"}}, "Name": "g"}),
            ),
            (
                vec![
                    "create-grant",
                    "--key-id",
                    "k",
                    "--grantee-principal",
                    "p",
                    "--operations",
                    "Decrypt",
                    "--constraints",
                    r#"{"EncryptionContextEquals":{"a":"b"}}"#,
                    "--retiring-principal",
                    "q",
                ],
                "CreateGrant",
                json!({"KeyId": "k", "GranteePrincipal": "p", "RetiringPrincipal": "q", "Operations": ["Decrypt"],
                       "Constraints": {"EncryptionContextEquals": {"a": "b"}}}),
            ),
            (
                vec!["list-grants", "--key-id", "k", "--limit", "5"],
                "ListGrants",
                json!({"KeyId": "k", "Limit": 5}),
            ),
            (
                vec!["revoke-grant", "--key-id", "k", "--grant-id", "g"],
                "RevokeGrant",
                json!({"KeyId": "k", "GrantId": "g"}),
            ),
            (
                vec!["retire-grant", "--grant-token", "t"],
                "RetireGrant",
                json!({"GrantToken": "t"}),
            ),
            (
                vec![
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "aGVsbG8=",
                    "--encryption-context",
                    "a=1,b=2",
                ],
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "aGVsbG8=", "EncryptionContext": {"a": "1", "b": "2"}}),
            ),
            (
                vec![
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "hello",
                    "--cli-binary-format",
                    "raw-in-base64-out",
                ],
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "aGVsbG8="}),
            ),
            (
                vec![
                    "decrypt",
                    "--ciphertext-blob",
                    &blob_arg,
                    "--encryption-context",
                    r#"{"a":"1"}"#,
                ],
                "Decrypt",
                json!({"CiphertextBlob": "AAEC/w==", "EncryptionContext": {"a": "1"}}),
            ),
            (
                vec![
                    "re-encrypt",
                    "--ciphertext-blob",
                    "AAEC/w==",
                    "--destination-key-id",
                    "k2",
                    "--source-encryption-context",
                    "a=1",
                    "--destination-encryption-context",
                    "b=2",
                ],
                "ReEncrypt",
                json!({"CiphertextBlob": "AAEC/w==", "SourceEncryptionContext": {"a": "1"}, "DestinationKeyId": "k2",
                       "DestinationEncryptionContext": {"b": "2"}}),
            ),
            (
                vec![
                    "generate-data-key",
                    "--key-id",
                    "k",
                    "--key-spec",
                    "AES_256",
                    "--grant-tokens",
                    "t1",
                    "t2",
                ],
                "GenerateDataKey",
                json!({"KeyId": "k", "KeySpec": "AES_256", "GrantTokens": ["t1", "t2"]}),
            ),
            (
                vec![
                    "generate-data-key-without-plaintext",
                    "--key-id",
                    "k",
                    "--number-of-bytes",
                    "32",
                ],
                "GenerateDataKeyWithoutPlaintext",
                json!({"KeyId": "k", "NumberOfBytes": 32}),
            ),
            (
                vec!["generate-random", "--number-of-bytes", "16"],
                "GenerateRandom",
                json!({"NumberOfBytes": 16}),
            ),
            (
                vec![
                    "import-key-material",
                    "--key-id",
                    "k",
                    "--import-token",
                    "AAAA",
                    "--encrypted-key-material",
                    &blob_arg,
                    "--valid-to",
                    "2027-01-31T00:00:00Z",
                    "--expiration-model",
                    "KEY_MATERIAL_EXPIRES",
                ],
                "ImportKeyMaterial",
                json!({"KeyId": "k", "ImportToken": "AAAA", "EncryptedKeyMaterial": "AAEC/w==", "ValidTo": 1801353600,
                       "ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
            ),
            (
                vec!["delete-imported-key-material", "--key-id", "k"],
                "DeleteImportedKeyMaterial",
                json!({"KeyId": "k"}),
            ),
        ];
        for (argv, op, want) in cases {
            let (got_op, got) = request(&argv);
            assert_eq!((got_op, &got), (op, &want), "{argv:?}");
        }
    }

    #[test]
    fn bad_parameters_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["encrypt", "--key-id", "k", "--plaintext", "not base64!"],
                "--plaintext",
            ),
            (
                &["decrypt", "--ciphertext-blob", "fileb:///nonexistent/ct"],
                "--ciphertext-blob",
            ),
            (
                &[
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "AA==",
                    "--encryption-context",
                    "novalue",
                ],
                "--encryption-context",
            ),
            (
                &[
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "AA==",
                    "--encryption-context",
                    r#"{"a":1}"#,
                ],
                "--encryption-context",
            ),
            (&["create-key", "--tags", "Key=a,Value=b"], "--tags"),
            (
                &["create-key", "--policy", "file:///nonexistent/p.json"],
                "--policy",
            ),
            (
                &[
                    "create-grant",
                    "--key-id",
                    "k",
                    "--grantee-principal",
                    "p",
                    "--operations",
                    "Decrypt",
                    "--constraints",
                    "Foo={a=b}",
                ],
                "--constraints",
            ),
            (
                &[
                    "create-grant",
                    "--key-id",
                    "k",
                    "--grantee-principal",
                    "p",
                    "--operations",
                    "Decrypt",
                    "--constraints",
                    "EncryptionContextSubset=a=b",
                ],
                "--constraints",
            ),
            (&["retire-grant", "--key-id", "k"], "--grant-token"),
            (
                &[
                    "import-key-material",
                    "--key-id",
                    "k",
                    "--import-token",
                    "AA==",
                    "--encrypted-key-material",
                    "AA==",
                    "--valid-to",
                    "tomorrow",
                ],
                "--valid-to",
            ),
        ];
        for (argv, flag) in cases {
            let a = parse(argv);
            let err = build_request(&a.verb, a.cli_binary_format)
                .expect_err(&format!("{argv:?} must fail"));
            assert_eq!(err.flag, *flag, "{argv:?}: {err}");
        }
    }

    #[test]
    fn queries_select_fields_projections_and_indexes() {
        let v = json!({
            "KeyMetadata": {"KeyId": "k1", "Enabled": true},
            "Aliases": [{"AliasName": "alias/a"}, {"Other": 1}, {"AliasName": "alias/b"}],
            "Plaintext": "aGk="
        });
        let cases: &[(&str, Value)] = &[
            ("Plaintext", json!("aGk=")),
            ("KeyMetadata.KeyId", json!("k1")),
            ("KeyMetadata.Missing", Value::Null),
            ("Aliases[].AliasName", json!(["alias/a", "alias/b"])),
            ("Aliases[*].AliasName", json!(["alias/a", "alias/b"])),
            ("Aliases[0].AliasName", json!("alias/a")),
            ("Aliases[-1].AliasName", json!("alias/b")),
            ("Aliases[9]", Value::Null),
            ("Plaintext[]", Value::Null),
        ];
        for (q, want) in cases {
            assert_eq!(Query::parse(q).unwrap().apply(&v), *want, "{q}");
        }
        for bad in ["", "a.", ".a", "a..b", "a[?x==1]", "a[", "a b", "a]"] {
            assert!(Query::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn text_output_matches_aws_cli_layout() {
        let describe = json!({"KeyMetadata": {"KeyId": "k1", "Enabled": true, "Arn": "arn:k1",
                              "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "Description": ""}});
        assert_eq!(
            render(&describe, OutputFormat::Text, false),
            "KEYMETADATA\tarn:k1\t\tTrue\tk1\nENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n"
        );
        let list = json!({"Keys": [{"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b", "KeyArn": "arn:b"}], "Truncated": false});
        assert_eq!(
            render(&list, OutputFormat::Text, false),
            "False\nKEYS\tarn:a\ta\nKEYS\tarn:b\tb\n"
        );
        assert_eq!(render(&json!("aGk="), OutputFormat::Text, true), "aGk=\n");
        assert_eq!(
            render(&json!(["alias/a", "alias/b"]), OutputFormat::Text, true),
            "alias/a\talias/b\n"
        );
        assert_eq!(render(&Value::Null, OutputFormat::Text, true), "None\n");
    }

    #[test]
    fn epoch_timestamps_print_as_aws_cli_iso8601() {
        let mut v = json!({"KeyMetadata": {"CreationDate": 1795000000, "DeletionDate": 1795000000.25,
                                           "KeyId": "k", "Enabled": true},
                           "Rotations": [{"RotationDate": 0}], "NotATime": 5});
        iso_timestamps(&mut v);
        assert_eq!(
            v,
            json!({"KeyMetadata": {"CreationDate": "2026-11-18T11:06:40+00:00",
                                   "DeletionDate": "2026-11-18T11:06:40.250000+00:00", "KeyId": "k", "Enabled": true},
                   "Rotations": [{"RotationDate": "1970-01-01T00:00:00+00:00"}], "NotATime": 5})
        );
    }

    #[test]
    fn json_output_is_four_space_indented_and_empty_responses_print_nothing() {
        assert_eq!(
            render(&json!({"KeyId": "k"}), OutputFormat::Json, false),
            "{\n    \"KeyId\": \"k\"\n}\n"
        );
        assert_eq!(render(&json!({}), OutputFormat::Json, false), "");
        assert_eq!(render(&json!("x"), OutputFormat::Json, true), "\"x\"\n");
    }

    struct Canned(
        Result<Value, crate::kms::KmsError>,
        std::cell::RefCell<Vec<(String, Value)>>,
    );

    impl Backend for Canned {
        fn call(&self, operation: &str, request: Value) -> Result<Value, crate::kms::KmsError> {
            self.1.borrow_mut().push((operation.to_string(), request));
            self.0.clone()
        }
    }

    fn run_argv(argv: &[&str], output: OutputFormat, backend: &Canned) -> (i32, String, String) {
        let a = parse(argv);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(&a, output, backend, &mut out, &mut err).unwrap();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn service_errors_exit_254_with_aws_cli_message_and_bad_parameters_252() {
        use crate::kms::{ErrorKind, KmsError};
        let denied = Canned(
            Err(KmsError::new(
                ErrorKind::AccessDenied,
                "User: x is not authorized",
            )),
            Default::default(),
        );
        let (code, out, err) = run_argv(
            &["decrypt", "--ciphertext-blob", "AAAA"],
            OutputFormat::Json,
            &denied,
        );
        assert_eq!((code, out.as_str()), (254, ""));
        assert_eq!(
            err,
            "\nAn error occurred (AccessDeniedException) when calling the Decrypt operation: User: x is not authorized\n"
        );
        let (code, _, err) = run_argv(
            &["encrypt", "--key-id", "k", "--plaintext", "%%"],
            OutputFormat::Json,
            &denied,
        );
        assert_eq!(code, 252);
        assert!(err.contains("'--plaintext'"), "{err}");
        assert!(
            denied.1.borrow().len() == 1,
            "a bad parameter never reaches the service"
        );
        let (code, _, err) = run_argv(
            &["list-keys", "--query", "Keys[?x]"],
            OutputFormat::Json,
            &denied,
        );
        assert_eq!(code, 252);
        assert!(err.contains("--query"), "{err}");
    }

    /// Serves ListAliases in pages of two from five aliases.
    struct Pager(std::cell::RefCell<Vec<Value>>);

    impl Backend for Pager {
        fn call(&self, operation: &str, request: Value) -> Result<Value, crate::kms::KmsError> {
            self.0.borrow_mut().push(request.clone());
            assert_eq!(operation, "ListAliases");
            let start: usize = request
                .get("Marker")
                .and_then(Value::as_str)
                .map_or(0, |m| m.parse().unwrap());
            let limit = request.get("Limit").and_then(Value::as_u64).unwrap_or(2) as usize;
            let all: Vec<Value> = (0..5)
                .map(|i| json!({"AliasName": format!("alias/{i}")}))
                .collect();
            let end = (start + limit).min(all.len());
            let mut page =
                json!({"Aliases": all[start..end].to_vec(), "Truncated": end < all.len()});
            if end < all.len() {
                page["NextMarker"] = json!(end.to_string());
            }
            Ok(page)
        }
    }

    fn run_pager(argv: &[&str]) -> (String, usize) {
        let a = parse(argv);
        let pager = Pager(Default::default());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run_with(&a, OutputFormat::Text, &pager, &mut out, &mut err).unwrap(),
            0
        );
        let calls = pager.0.borrow().len();
        (String::from_utf8(out).unwrap(), calls)
    }

    #[test]
    fn list_calls_fetch_and_merge_every_page_unless_limit_marker_or_no_paginate() {
        assert_eq!(
            run_pager(&["list-aliases", "--query", "Aliases[].AliasName"]),
            (
                "alias/0\talias/1\talias/2\talias/3\talias/4\n".to_string(),
                3
            )
        );
        // Merged output carries no pagination members.
        let (out, _) = run_pager(&["list-aliases"]);
        assert!(!out.contains("True") && !out.contains("False"), "{out}");
        assert_eq!(
            run_pager(&[
                "list-aliases",
                "--limit",
                "3",
                "--query",
                "Aliases[].AliasName"
            ])
            .1,
            1
        );
        assert_eq!(
            run_pager(&[
                "list-aliases",
                "--marker",
                "4",
                "--query",
                "Aliases[].AliasName"
            ])
            .0,
            "alias/4\n"
        );
        assert_eq!(
            run_pager(&["list-aliases", "--no-paginate", "--query", "NextMarker"]).0,
            "2\n"
        );
    }

    #[test]
    fn decrypt_query_plaintext_text_prints_bare_base64() {
        let ok = Canned(
            Ok(
                json!({"KeyId": "arn:k", "Plaintext": "aGVsbG8=", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
            ),
            Default::default(),
        );
        let (code, out, _) = run_argv(
            &[
                "decrypt",
                "--ciphertext-blob",
                "AAAA",
                "--query",
                "Plaintext",
            ],
            OutputFormat::Text,
            &ok,
        );
        assert_eq!((code, out.as_str()), (0, "aGVsbG8=\n"));
        assert_eq!(
            ok.1.borrow()[0],
            ("Decrypt".to_string(), json!({"CiphertextBlob": "AAAA"}))
        );
    }
}
