//! `kmsfs whoami`: which principal the calling uid acts as (decided by the key service
//! from the socket's peer credentials), and what it may do with a volume's keys.

use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::cli::service::{connect, RootKeyOpts};
use crate::cli::{GlobalOpts, OutputFormat};

/// The actions a filesystem user cares about, with ViaService = kmsfs.
const FS_ACTIONS: [&str; 3] = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"];

#[derive(Debug, Clone, clap::Args)]
pub struct WhoamiArgs {
    /// Also show what you may do with this volume's default key.
    #[arg(long)]
    pub volume: Option<PathBuf>,
    /// Also show what you may do with this key (repeatable).
    #[arg(long)]
    pub key_id: Vec<String>,
}

pub fn run(args: &WhoamiArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let backend = connect(global, keys)?;
    let me = backend
        .call("WhoAmI", json!({}))
        .map_err(|e| anyhow!("{}: {}", e.kind.aws_name(), e.message))?;
    let mut key_ids = args.key_id.clone();
    if let Some(v) = &args.volume {
        let volume = crate::format::VolumeConfig::load(v).map_err(|e| anyhow!("{e}"))?;
        key_ids.push(volume.default_key);
    }
    let mut keys_out = Vec::new();
    for key in &key_ids {
        let mut actions = serde_json::Map::new();
        for action in FS_ACTIONS {
            let mut req = json!({"KeyId": key, "Action": action, "ViaService": "kmsfs"});
            match me.get("Arn").and_then(Value::as_str) {
                Some(arn) => req["PrincipalArn"] = json!(arn),
                None => {
                    req["Uid"] = me.get("Uid").cloned().unwrap_or(json!(0));
                    req["Gid"] = me.get("Gid").cloned().unwrap_or(json!(0));
                }
            }
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
    let out = json!({"Principal": me, "Keys": keys_out});
    match global.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        OutputFormat::Text => {
            println!(
                "{}\t{}\tuid={}\tgid={}",
                me.get("Arn").and_then(Value::as_str).unwrap_or("anonymous"),
                me.get("Type").and_then(Value::as_str).unwrap_or(""),
                me.get("Uid").cloned().unwrap_or_default(),
                me.get("Gid").cloned().unwrap_or_default()
            );
            for k in &keys_out {
                let d = &k["Decisions"];
                let list: Vec<String> = FS_ACTIONS
                    .iter()
                    .map(|a| format!("{a}={}", d[*a].as_str().unwrap_or("?")))
                    .collect();
                println!("{}\t{}", k["KeyId"].as_str().unwrap_or(""), list.join(" "));
            }
        }
    }
    Ok(0)
}
