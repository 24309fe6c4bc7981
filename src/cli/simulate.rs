//! `kmsfs simulate`: asks the policy engine a question and prints its answer with the
//! reasons. With `--key-policy` the policy is evaluated on its own (no service needed);
//! with `--key-id` the key service evaluates its stored policy and grants.

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::{output, read_param_text, GlobalOpts, OutputFormat};
use crate::kms::simulate::{evaluate_offline, OfflineQuestion};
use crate::policy::{EncryptionContext, PolicyDocument};
use crate::principals::{parse_principal_arn, Principals, ResolvedPrincipal};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// A stored key (key id, key ARN, alias name or alias ARN): evaluates its key policy
    /// and grants through the key service.
    #[arg(long, conflicts_with = "key_policy")]
    pub key_id: Option<String>,
    /// A key policy document to evaluate on its own: `file://policy.json` or inline JSON.
    #[arg(long, requires = "key_arn")]
    pub key_policy: Option<String>,
    /// The ARN of the key the policy is attached to (with --key-policy).
    #[arg(long)]
    pub key_arn: Option<String>,
    /// The calling principal's ARN.
    #[arg(long, conflicts_with = "uid", required_unless_present = "uid")]
    pub principal: Option<String>,
    /// The calling uid, mapped through the principals file.
    #[arg(long)]
    pub uid: Option<u32>,
    /// The calling gid (with --uid; default: same as uid).
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
    /// The action, e.g. kms:Decrypt.
    #[arg(long)]
    pub action: String,
    /// Encryption context: k=v,k2=v2 or a JSON object.
    #[arg(long)]
    pub encryption_context: Option<String>,
    /// kms:ViaService of the request (the filesystem's requests carry "kmsfs").
    #[arg(long)]
    pub via_service: Option<String>,
    /// Extra request condition keys: key=value (repeatable), e.g.
    /// --context kms:GrantIsForAWSResource=true.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

/// Parses `k=v,k2=v2` or a JSON object of strings into an encryption context.
pub fn parse_encryption_context(text: &str) -> anyhow::Result<EncryptionContext> {
    crate::kms::request::context_from_text("--encryption-context", text)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Evaluates a key policy on its own (no grants, through
/// [`crate::kms::simulate::evaluate_offline`]) and returns the simulator's JSON.
pub fn simulate_offline(
    args: &SimulateArgs,
    principals: &Principals,
) -> anyhow::Result<serde_json::Value> {
    let (Some(policy_param), Some(key_arn)) = (&args.key_policy, &args.key_arn) else {
        bail!("give --key-id, or --key-policy with --key-arn");
    };
    let text = read_param_text(policy_param, "--key-policy")?;
    let document = PolicyDocument::parse(&text)
        .map_err(|e| anyhow::anyhow!("MalformedPolicyDocumentException: --key-policy: {e}"))?;
    let caller: ResolvedPrincipal = match (&args.principal, args.uid) {
        (Some(arn), _) => {
            parse_principal_arn(arn).map_err(|m| anyhow::anyhow!("--principal: {m}"))?;
            principals
                .by_arn(arn)
                .map_err(|m| anyhow::anyhow!("--principal: {m}"))?
        }
        (None, Some(uid)) => principals.resolve(uid, args.gid.unwrap_or(uid)),
        (None, None) => bail!("give --principal ARN or --uid N"),
    };
    let ec = match &args.encryption_context {
        Some(t) => Some(parse_encryption_context(t)?),
        None => None,
    };
    let mut context = Vec::new();
    for kv in &args.context {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--context: \"{kv}\" is not KEY=VALUE");
        };
        context.push((k.to_string(), v.to_string()));
    }
    let action = normalize_action(&args.action)?;
    let eval = evaluate_offline(&OfflineQuestion {
        policy: &document,
        key_arn,
        caller: &caller,
        action: &action,
        encryption_context: ec.as_ref(),
        via_service: args.via_service.as_deref(),
        context: &context,
        now: now_epoch(),
    })
    .map_err(|e| anyhow::anyhow!("--key-arn: {}", e.message))?;
    Ok(eval.to_simulate_json())
}

/// `Decrypt` and `kms:decrypt` both mean `kms:Decrypt`.
pub fn normalize_action(action: &str) -> anyhow::Result<String> {
    let a = action.trim();
    if a.is_empty() || a.contains(char::is_whitespace) {
        bail!("--action: \"{action}\" is not an action name like kms:Decrypt");
    }
    Ok(if a.contains(':') {
        a.to_string()
    } else {
        format!("kms:{a}")
    })
}

/// Prints the simulator's answer: the JSON document, or one line for people.
pub fn print_answer(answer: &serde_json::Value, format: OutputFormat) -> anyhow::Result<()> {
    let decision = answer
        .get("EvalDecision")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    let mut reasons: Vec<String> = Vec::new();
    if let Some(list) = answer.get("MatchedStatements").and_then(|v| v.as_array()) {
        for m in list {
            let kind = m
                .get("SourcePolicyType")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let id = m
                .get("Sid")
                .and_then(|v| v.as_str())
                .or_else(|| m.get("SourcePolicyId").and_then(|v| v.as_str()))
                .unwrap_or("");
            reasons.push(format!("{kind} {id}").trim().to_string());
        }
    }
    if let Some(notes) = answer.get("Notes").and_then(|v| v.as_array()) {
        for n in notes.iter().filter_map(|n| n.as_str()) {
            reasons.push(n.to_string());
        }
    }
    let text = if reasons.is_empty() {
        format!("{decision}\n")
    } else {
        format!("{decision}: {}\n", reasons.join("; "))
    };
    output::print_own(answer, "Simulate", text, format)?;
    Ok(())
}

/// Runs `kmsfs simulate` offline (with --key-policy). `--key-id` goes through the key
/// service; see `cli::run`.
pub fn run_offline(args: &SimulateArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let principals = match &global.principals {
        Some(p) => Principals::load(p)?,
        None => {
            let store: PathBuf = crate::cli::store_dir(global);
            Principals::load_or_default(None, &store, nix::unistd::getuid().as_raw())?
        }
    };
    let answer = simulate_offline(args, &principals)?;
    print_answer(&answer, global.output)?;
    Ok(0)
}

/// Runs `kmsfs simulate --key-id K` through the key service (stored policy and grants).
pub fn run_via_service(
    args: &SimulateArgs,
    global: &GlobalOpts,
    keys: &crate::cli::service::RootKeyOpts,
) -> anyhow::Result<i32> {
    let Some(key_id) = &args.key_id else {
        bail!("--key-id is required here");
    };
    let mut req = serde_json::json!({
        "KeyId": key_id,
        "Action": normalize_action(&args.action)?,
    });
    match (&args.principal, args.uid) {
        (Some(arn), _) => req["PrincipalArn"] = serde_json::json!(arn),
        (None, Some(uid)) => {
            req["Uid"] = serde_json::json!(uid);
            req["Gid"] = serde_json::json!(args.gid.unwrap_or(uid));
        }
        (None, None) => bail!("give --principal ARN or --uid N"),
    }
    if let Some(t) = &args.encryption_context {
        req["EncryptionContext"] = serde_json::to_value(parse_encryption_context(t)?)?;
    }
    if let Some(v) = &args.via_service {
        req["ViaService"] = serde_json::json!(v);
    }
    if !args.context.is_empty() {
        bail!("--context is only supported with --key-policy");
    }
    let backend = crate::cli::service::connect(global, keys)?;
    let answer = backend
        .call("Simulate", req)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind.aws_name(), e.message))?;
    print_answer(&answer, global.output)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_context_accepts_pairs_and_json_and_rejects_garbage() {
        let a = parse_encryption_context("a=1,b=x=y").unwrap();
        assert_eq!(a.get("a").map(String::as_str), Some("1"));
        assert_eq!(a.get("b").map(String::as_str), Some("x=y"));
        let j = parse_encryption_context("{\"k\":\"v\"}").unwrap();
        assert_eq!(j.get("k").map(String::as_str), Some("v"));
        assert!(parse_encryption_context("novalue").is_err());
        assert!(parse_encryption_context("{\"k\":1}").is_err());
    }

    #[test]
    fn actions_are_prefixed() {
        assert_eq!(normalize_action("Decrypt").unwrap(), "kms:Decrypt");
        assert_eq!(normalize_action("kms:Encrypt").unwrap(), "kms:Encrypt");
        assert!(normalize_action("").is_err());
    }
}
