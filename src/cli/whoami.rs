//! `kmsfs whoami`: which principal the calling uid acts as (decided by the key service
//! from the socket's peer credentials, or from this process's ids when the store is
//! opened directly), which service answered, and what the caller may do with keys.

use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::cli::service::{connect_described, Endpoint, RootKeyOpts};
use crate::cli::whoami_remote;
use crate::cli::{output, GlobalOpts};
use crate::policy::actions as act;
use crate::principals::Principals;
use std::fmt::Write as _;

/// The actions a filesystem user cares about, with ViaService = kmsfs.
const FS_ACTIONS: [&str; 3] = [
    act::GENERATE_DATA_KEY.iam,
    act::DECRYPT.iam,
    act::ENCRYPT.iam,
];

#[derive(Debug, Clone, clap::Args)]
pub struct WhoamiArgs {
    /// Also show what you may do with this volume's default key.
    #[arg(long)]
    pub volume: Option<PathBuf>,
    /// Also show what you may do with this key (repeatable).
    #[arg(long)]
    pub key_id: Vec<String>,
    /// The remote KMS endpoint for remote keys (default: the volume's `kms_endpoint`,
    /// else AWS's regional endpoint of the key's region).
    #[arg(long, value_name = "URL")]
    pub kms_endpoint: Option<String>,
    /// The longest each remote call may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::remote::DEFAULT_TIMEOUT.as_secs())]
    pub kms_timeout: u64,
}

/// Whether the key service answers that it does not hold `key` while `key` is a full
/// KMS key ARN: a key of a remote KMS.
fn is_remote(backend: &dyn crate::control::Backend, key: &str) -> bool {
    use crate::kms::ErrorKind;
    whoami_remote::is_key_arn(key)
        && matches!(
            backend.call("DescribeKey", json!({"KeyId": key})),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidArn)
        )
}

/// The principals file as the mount would read it (for each principal's aws_profile).
fn load_principals(global: &GlobalOpts) -> anyhow::Result<Principals> {
    let store = crate::cli::store_dir(global);
    let owner = nix::unistd::getuid().as_raw();
    Principals::load_or_default(global.principals.as_deref(), &store, owner)
        .map_err(|e| anyhow!("{e}"))
}

fn endpoint_json(endpoint: &Endpoint, served_store: Option<&str>) -> Value {
    match endpoint {
        Endpoint::Socket(p) => json!({"Socket": p.display().to_string(), "Store": served_store}),
        Endpoint::Store(p) => json!({"Socket": Value::Null, "Store": p.display().to_string()}),
    }
}

pub fn run(args: &WhoamiArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let (backend, endpoint) = connect_described(global, keys)?;
    let me = backend
        .call("WhoAmI", json!({}))
        .map_err(|e| anyhow!("{} answered {}: {}", endpoint, e.kind.aws_name(), e.message))?;
    let mut key_ids = args.key_id.clone();
    let mut volume = None;
    if let Some(v) = &args.volume {
        let config = crate::format::VolumeConfig::load(v).map_err(|e| anyhow!("{e}"))?;
        key_ids.push(config.default_key.clone());
        volume = Some((v.clone(), config));
    }
    let mut keys_out = Vec::new();
    let mut principals = None;
    for key in &key_ids {
        if is_remote(backend.as_ref(), key) {
            if principals.is_none() {
                principals = Some(load_principals(global)?);
            }
            let Some(principals) = &principals else {
                continue;
            };
            let sample = volume
                .as_ref()
                .and_then(|(dir, config)| whoami_remote::find_sample(dir, config, key));
            // The flag, else the volume's own endpoint (as a mount without -o would).
            let endpoint = args.kms_endpoint.clone().or_else(|| {
                volume
                    .as_ref()
                    .and_then(|(_, config)| config.kms_endpoint.clone())
            });
            let query = whoami_remote::RemoteQuery {
                key_arn: key,
                endpoint: endpoint.as_deref(),
                timeout: std::time::Duration::from_secs(args.kms_timeout.max(1)),
                sample: sample.as_ref(),
            };
            keys_out.push(whoami_remote::remote_key(principals, &query));
            continue;
        }
        let mut actions = serde_json::Map::new();
        for action in FS_ACTIONS {
            // ForCaller: the service evaluates for the caller exactly as it identified
            // it (groups included), without needing the right to read the key policy.
            let req =
                json!({"KeyId": key, "Action": action, "ViaService": "kmsfs", "ForCaller": true});
            let answer = match backend.call("Simulate", req) {
                Ok(v) => v
                    .get("EvalDecision")
                    .cloned()
                    .unwrap_or(Value::String("unknown".into())),
                Err(e) => Value::String(format!("unknown ({})", e.kind.aws_name())),
            };
            actions.insert(action.to_string(), answer);
        }
        keys_out.push(json!({"KeyId": key, "Decisions": actions}));
    }
    let answered_by = endpoint_json(&endpoint, me.get("Store").and_then(Value::as_str));
    let out = json!({"Principal": me, "AnsweredBy": answered_by, "Keys": keys_out});
    // Writing into a String cannot fail.
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}\t{}\tuid={}\tgid={}",
        me.get("Arn").and_then(Value::as_str).unwrap_or("anonymous"),
        me.get("Type").and_then(Value::as_str).unwrap_or(""),
        me.get("Uid").cloned().unwrap_or_default(),
        me.get("Gid").cloned().unwrap_or_default()
    );
    let _ = match &endpoint {
        Endpoint::Socket(p) => writeln!(
            text,
            "answered by socket {} (store {})",
            p.display(),
            me.get("Store").and_then(Value::as_str).unwrap_or("?")
        ),
        Endpoint::Store(p) => writeln!(text, "answered by store {} (direct)", p.display()),
    };
    for k in &keys_out {
        if k.get("Remote").is_some() {
            whoami_remote::text_lines(k, &mut text);
            continue;
        }
        let d = &k["Decisions"];
        let list: Vec<String> = FS_ACTIONS
            .iter()
            .map(|a| format!("{a}={}", d[*a].as_str().unwrap_or("?")))
            .collect();
        let _ = writeln!(
            text,
            "{}\t{}",
            k["KeyId"].as_str().unwrap_or(""),
            list.join(" ")
        );
    }
    output::print_own(&out, "Whoami", text, global.output)?;
    Ok(0)
}
