//! `kmsfs whoami`: which principal the calling uid acts as (decided by the key service
//! from the socket's peer credentials, or from this process's ids when the store is
//! opened directly), which service answered, and what the caller may do with keys.

use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::cli::service::{connect_described, Endpoint, RootKeyOpts};
use crate::cli::{output, GlobalOpts};
use crate::policy::actions as act;
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
    if let Some(v) = &args.volume {
        let volume = crate::format::VolumeConfig::load(v).map_err(|e| anyhow!("{e}"))?;
        key_ids.push(volume.default_key);
    }
    let mut keys_out = Vec::new();
    for key in &key_ids {
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
