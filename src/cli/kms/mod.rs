//! `kmsfs kms <verb>`: the `aws kms` command line, verb for verb and flag for flag, over
//! any [`Backend`] (the control socket, or the store opened directly).
//!
//! Follows aws-cli v2's conventions so scripts move over unchanged: `file://` reads a
//! parameter as text, `fileb://` as raw bytes; a literal blob argument is base64 (unless
//! `--cli-binary-format raw-in-base64-out`); maps take `k=v,k2=v2` or JSON;
//! `--cli-input-json`/`--cli-input-yaml` supply members that flags override; output
//! goes through [`crate::cli::output`], optionally narrowed by a JMESPath `--query`; a
//! service error prints `An error occurred (Name) when calling the Op operation:
//! message` and exits 254; a bad parameter exits 252.
//!
//! Never prints a secret the response did not contain, and never sends anything but
//! the AWS request members: the caller's identity comes from the socket, not from here.
//!
//! - `verbs`: the verb table and each verb's Args type (serialized to the request);
//! - `params`: reading and converting flag values by member shape;
//! - `checks`: the checks each verb names, as data (`Rule`);
//! - `rules`: aws-cli's checks before sending, and the skeletons;
//! - `paging`: merging pages, `--max-items` / `--starting-token`.

mod args;
mod checks;
mod paging;
mod params;
mod rules;
mod verbs;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_run;

pub use args::*;
pub use params::ParamError;
pub use verbs::*;

use crate::cli::output::{self, Doc, OutputFormat, Query};
use crate::cli::GlobalOpts;
use crate::control::Backend;
use crate::kms::KmsError;
use serde_json::{Map, Value};
use std::io::Write;

/// aws-cli's exit code for a service error.
pub const EXIT_SERVICE_ERROR: i32 = 254;
/// aws-cli's exit code for a bad parameter.
pub const EXIT_BAD_PARAMETER: i32 = 252;
/// aws-cli's exit code for any other client-side failure (e.g. a `--query` runtime error).
pub const EXIT_CLIENT_ERROR: i32 = 255;

#[derive(Debug, Clone, clap::Args)]
pub struct KmsArgs {
    #[command(subcommand)]
    pub verb: KmsVerb,
    /// A JMESPath expression applied to the response: `KeyMetadata.KeyId`,
    /// `Aliases[?TargetKeyId=='k'].AliasName`, `length(Keys)`.
    #[arg(long, global = true)]
    pub query: Option<String>,
    /// How literal blob arguments are read: base64 (aws-cli v2's default) or raw text.
    #[arg(long, global = true, value_enum, default_value_t = BinaryFormat::Base64)]
    pub cli_binary_format: BinaryFormat,
    /// Return only the first page of a list-* call (by default, as aws-cli does, every
    /// page is fetched and merged unless --limit or --marker is given).
    #[arg(long, global = true)]
    pub no_paginate: bool,
    /// The request as JSON (text or file://), in the shape --generate-cli-skeleton
    /// prints; flags given as well override its members.
    #[arg(long, global = true, conflicts_with = "cli_input_yaml")]
    pub cli_input_json: Option<String>,
    /// The request as YAML (text or file://), like --cli-input-json.
    #[arg(long, global = true)]
    pub cli_input_yaml: Option<String>,
    /// Print a request skeleton (input, the default; yaml-input) or a sample response
    /// (output) and exit without calling the service.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "input",
          value_parser = ["input", "output", "yaml-input"])]
    pub generate_cli_skeleton: Option<String>,
    /// List verbs: stop after this many items and print a NextToken.
    #[arg(long, global = true)]
    pub max_items: Option<u64>,
    /// List verbs: the Limit of each call (every page is still fetched).
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub page_size: Option<i64>,
    /// List verbs: continue from a previous response's NextToken.
    #[arg(long, global = true)]
    pub starting_token: Option<String>,
    /// Print the request and response on stderr.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for aws-cli compatibility; no effect locally (keys live in the local
    /// service, whose region is the principals file's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Accepted for aws-cli compatibility; no effect locally (the caller is who the
    /// socket's peer credentials say).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Accepted for aws-cli compatibility; no effect locally (requests go to the
    /// control socket, see --socket).
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// Accepted for aws-cli compatibility; kmsfs never pages its output.
    #[arg(long, global = true)]
    pub no_cli_pager: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryFormat {
    Base64,
    RawInBase64Out,
}

/// Runs one verb: builds the request, calls the backend, prints the response. Returns
/// the process exit code (0, 252, 254 or 255).
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

/// The AWS operation name and request members for a verb's flags (without any
/// --cli-input-* document, and before validation).
pub fn build_request(
    verb: &KmsVerb,
    binary: BinaryFormat,
) -> Result<(&'static str, Map<String, Value>), ParamError> {
    let raw = verb
        .flag_members()
        .map_err(|e| params::param_err(verb.operation(), e.to_string()))?;
    Ok((verb.operation(), params::convert_flags(raw, binary)?))
}

/// The request: --cli-input-* members, overridden by the flags, then checked as aws-cli
/// checks it.
fn full_request(args: &KmsArgs) -> Result<Map<String, Value>, ParamError> {
    let (_, flags) = build_request(&args.verb, args.cli_binary_format)?;
    let input = match (&args.cli_input_json, &args.cli_input_yaml) {
        (Some(j), _) => Some(read_input("--cli-input-json", j, |t| {
            serde_json::from_str::<Value>(t).map_err(|e| e.to_string())
        })?),
        (None, Some(y)) => Some(read_input("--cli-input-yaml", y, |t| {
            serde_norway::from_str::<Value>(t).map_err(|e| e.to_string())
        })?),
        (None, None) => None,
    };
    let from_input = input.is_some();
    let mut request = input.unwrap_or_default();
    request.extend(flags);
    rules::validate(&args.verb, &request, from_input)?;
    Ok(request)
}

fn read_input(
    flag: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<Value, String>,
) -> Result<Map<String, Value>, ParamError> {
    let text = params::text_param(flag, raw)?;
    match parse(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(params::param_err(flag, "the input must be an object")),
        Err(e) => Err(params::param_err(flag, format!("Invalid input: {e}"))),
    }
}

/// [`run`] with explicit output streams (what tests drive).
pub fn run_with(
    args: &KmsArgs,
    output: OutputFormat,
    backend: &dyn Backend,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    let verb = &args.verb;
    let operation = verb.operation();
    if let Some(kind) = &args.generate_cli_skeleton {
        let (skeleton, format) = match kind.as_str() {
            "output" => (rules::output_skeleton(verb), OutputFormat::Json),
            "yaml-input" => (rules::input_skeleton(verb), OutputFormat::Yaml),
            _ => (rules::input_skeleton(verb), OutputFormat::Json),
        };
        out.write_all(output::render(&Doc::aws(&skeleton, operation), format, true).as_bytes())?;
        return Ok(0);
    }
    let request = match full_request(args) {
        Ok(r) => r,
        Err(e @ ParamError::Missing(_)) => {
            let name = params::flag_of(operation);
            let name = name.trim_start_matches("--");
            writeln!(
                err,
                "usage: kmsfs kms {name} [options]\nkmsfs kms {name}: error: {e}"
            )?;
            return Ok(EXIT_BAD_PARAMETER);
        }
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
    if args.debug {
        writeln!(
            err,
            "kmsfs kms: calling {operation} with {}",
            Value::Object(request.clone())
        )?;
    }
    match call(args, backend, request) {
        Ok(mut response) => {
            if args.debug {
                writeln!(err, "kmsfs kms: {operation} returned {response}")?;
            }
            output::iso_timestamps(&mut response);
            let selected = match &query {
                Some(q) => match q.apply(&response) {
                    Ok(v) => v,
                    Err(e) => {
                        writeln!(err, "\n{e}")?;
                        return Ok(EXIT_CLIENT_ERROR);
                    }
                },
                None => response,
            };
            let doc = Doc::aws(&selected, operation);
            out.write_all(output::render(&doc, output, query.is_some()).as_bytes())?;
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

/// Sends the request: locally for kmsfs's own local verb, page by page for list verbs
/// (unless the caller took charge of Limit/Marker), else as one call.
fn call(
    args: &KmsArgs,
    backend: &dyn Backend,
    request: Map<String, Value>,
) -> Result<Value, KmsError> {
    let operation = args.verb.operation();
    if let KmsVerb::WrapKeyMaterial(_) = args.verb {
        return run_local_wrap(&request);
    }
    match paging::pagination_of(operation) {
        // As in aws-cli, a caller who gives the marker or limit takes charge of paging.
        Some(p)
            if !args.no_paginate
                && !request.contains_key(p.input_token)
                && !request.contains_key(p.limit_key) =>
        {
            let opts = paging::PageOpts {
                max_items: args.max_items,
                page_size: args.page_size,
                starting_token: args.starting_token.clone(),
            };
            paging::call_pages(backend, operation, &request, p, &opts)
        }
        _ => backend.call(operation, Value::Object(request)),
    }
}

/// `wrap-key-material`: needs no service.
fn run_local_wrap(request: &Map<String, Value>) -> Result<Value, KmsError> {
    use crate::kms::ErrorKind;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str| -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
        let text = request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default();
        b64.decode(text)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| KmsError::new(ErrorKind::Validation, format!("{name}: {e}")))
    };
    let key = field("PublicKey")?;
    let material = field("KeyMaterial")?;
    let algorithm = request
        .get("WrappingAlgorithm")
        .and_then(Value::as_str)
        .unwrap_or("RSAES_OAEP_SHA_256");
    let wrapped = crate::kms::wrap_key_material(&key, algorithm, &material)?;
    Ok(serde_json::json!({ "EncryptedKeyMaterial": b64.encode(wrapped) }))
}
