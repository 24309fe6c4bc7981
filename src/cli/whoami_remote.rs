//! `kmsfs whoami` for a key held by a remote KMS (AWS KMS or a central
//! `kmsfs serve --listen`): for each principal of principals.toml, the AWS profile its
//! calls are signed as, and what the remote answers for that identity: DescribeKey and
//! a Decrypt dry run of a real wrapped key of the volume. Nothing here opens a file:
//! the dry run unwraps nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::format::{encryption_context, FileHeader, VolumeConfig};
use crate::principals::Principals;
use crate::remote::{Context, Profile, RemoteError, RemoteKeys, RemoteSettings, SdkRemote, Target};

/// How many directory entries the search for a file under the key visits at most: a
/// large volume is not walked to the end for one sample.
const MAX_VISITED: usize = 10_000;

/// Whether `key` names a key by full KMS ARN (the only way a remote key is named), as
/// the mount's key router decides it.
pub use crate::remote::router::is_key_arn;

/// A file of the volume whose envelope names `key_arn`: its wrapped key and the
/// context it was wrapped with.
pub struct Sample {
    pub path: PathBuf,
    pub wrapped: Vec<u8>,
    pub context: Context,
}

/// The first file under `backing` whose header names `key_arn` (files that are not
/// envelopes, such as the volume's own metadata, fail to decode and are skipped).
pub fn find_sample(backing: &Path, volume: &VolumeConfig, key_arn: &str) -> Option<Sample> {
    let mut stack = vec![backing.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_VISITED {
                return None;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let Ok(file) = std::fs::File::open(&path) else {
                    continue;
                };
                let Ok(header) = FileHeader::read_from(&file) else {
                    continue;
                };
                if header.key_arn == key_arn {
                    return Some(Sample {
                        path,
                        context: encryption_context(&volume.volume_id, &header.file_id),
                        wrapped: header.wrapped_key,
                    });
                }
            }
        }
    }
    None
}

fn error_json(e: &RemoteError) -> Value {
    json!({
        "Error": e.error.kind.aws_name(),
        "Message": e.error.message,
        "RequestId": e.receipt.request_id,
    })
}

/// What to ask the remote about one key.
pub struct RemoteQuery<'a> {
    pub key_arn: &'a str,
    pub endpoint: Option<&'a str>,
    pub timeout: Duration,
    /// A file of the volume under this key, for the Decrypt dry run.
    pub sample: Option<&'a Sample>,
}

/// The remote part of whoami for one key: one entry per listed principal.
pub fn remote_key(principals: &Principals, q: &RemoteQuery<'_>) -> Value {
    let remote = match SdkRemote::new(RemoteSettings {
        timeout: q.timeout,
        ..RemoteSettings::default()
    }) {
        Ok(r) => r,
        Err(e) => return json!({"KeyId": q.key_arn, "Remote": error_json(&e)}),
    };
    let target = Target {
        key_arn: q.key_arn.to_string(),
        endpoint: q.endpoint.map(str::to_string),
    };
    let mut rows = Vec::new();
    for (arn, uids, gids) in principals.listed() {
        let profile: Option<Profile> = principals.listed_by_arn(arn).and_then(|p| p.aws_profile);
        let mut row = json!({
            "Arn": arn,
            "Uids": uids,
            "Gids": gids,
            "AwsProfile": profile.as_ref().map(|p| p.name.clone()),
        });
        match &profile {
            None => {
                // No identity toward the remote: the filesystem refuses (EACCES).
                row["DescribeKey"] = json!({"Error": "no aws_profile (EACCES on remote keys)"});
                row["DecryptDryRun"] = row["DescribeKey"].clone();
            }
            Some(p) => {
                row["DescribeKey"] = match remote.describe_key(p, &target) {
                    Ok((meta, r)) => json!({"KeyMetadata": meta, "RequestId": r.request_id}),
                    Err(e) => error_json(&e),
                };
                row["DecryptDryRun"] = match q.sample {
                    None => json!({"Skipped": "no file to test"}),
                    Some(s) => match remote.decrypt_dry_run(p, &target, &s.wrapped, &s.context) {
                        Ok(r) => json!({
                            "Allowed": true,
                            "File": s.path.display().to_string(),
                            "RequestId": r.request_id,
                        }),
                        Err(e) => {
                            let mut v = error_json(&e);
                            v["File"] = json!(s.path.display().to_string());
                            v
                        }
                    },
                };
            }
        }
        rows.push(row);
    }
    json!({
        "KeyId": q.key_arn,
        "Remote": {
            "Endpoint": q.endpoint,
            "Principals": rows,
        }
    })
}

/// One line per principal for the text output.
pub fn text_lines(key: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let endpoint = key["Remote"]["Endpoint"]
        .as_str()
        .unwrap_or("AWS regional endpoint");
    let _ = writeln!(
        out,
        "{}\tremote ({endpoint})",
        key["KeyId"].as_str().unwrap_or("")
    );
    let outcome = |v: &Value| -> String {
        if let Some(e) = v["Error"].as_str() {
            match v["RequestId"].as_str() {
                Some(id) => format!("{e} (request {id})"),
                None => e.to_string(),
            }
        } else if let Some(s) = v["KeyMetadata"]["KeyState"].as_str() {
            s.to_string()
        } else if v["Allowed"] == json!(true) {
            "allowed".to_string()
        } else if let Some(s) = v["Skipped"].as_str() {
            s.to_string()
        } else {
            "?".to_string()
        }
    };
    for p in key["Remote"]["Principals"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {}\tuids={}\tprofile={}\tDescribeKey={}\tDecrypt(dry run)={}",
            p["Arn"].as_str().unwrap_or(""),
            p["Uids"],
            p["AwsProfile"].as_str().unwrap_or("none"),
            outcome(&p["DescribeKey"]),
            outcome(&p["DecryptDryRun"])
        );
    }
}
