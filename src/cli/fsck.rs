//! `kmsfs fsck BACKING`: authenticates the volume file, every directory's metadata and
//! name, every file header and — for the files the calling user may decrypt — every
//! block. Reports per file; exits 1 when anything is damaged.

use std::io::Read;
use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::json;

use crate::cli::service::{open_service, self_caller, RootKeyOpts};
use crate::cli::{GlobalOpts, OutputFormat};
use crate::format::{
    encryption_context, verify_file, walk_volume, FileHeader, FileOutcome, VolumeConfig,
    VolumeEntry, HEADER_LEN,
};
use crate::kms::provider::{DataAction, DataKeys};

#[derive(Debug, Clone, clap::Args)]
pub struct FsckArgs {
    /// The volume's backing directory.
    pub backing: PathBuf,
}

pub fn run(args: &FsckArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let volume = VolumeConfig::load(&args.backing).map_err(|e| anyhow!("{e}"))?;
    let service = open_service(global, keys)?;
    let secret = service
        .volume_secret(&volume.volume_id)
        .map_err(|e| anyhow!("volume {}: {e}", volume.volume_id))?;
    let caller = self_caller();
    let mut reports = Vec::new();
    let mut damaged = 0usize;
    let mut unchecked = 0usize;
    walk_volume(&args.backing, &secret, &mut |entry| match entry {
        VolumeEntry::File { backing, plain } => {
            let key = read_header(&backing).and_then(|h| {
                let ctx = encryption_context(&volume.volume_id, &h.file_id);
                service
                    .open_data_key(&caller, &h.wrapped_key, &ctx, &[DataAction::Decrypt])
                    .map_err(|e| format!("content not checked: {}", e.kind.aws_name()))
            });
            let (report, note) = match &key {
                Ok(k) => (verify_file(&backing, Some(k)), None),
                Err(why) => (verify_file(&backing, None), Some(why.clone())),
            };
            let (status, detail) = describe(&report.outcome);
            if status == "damaged" {
                damaged += 1;
            } else if note.is_some() {
                unchecked += 1;
            }
            reports.push(json!({
                "Path": plain.display().to_string(),
                "Backing": backing.display().to_string(),
                "Status": status,
                "Detail": detail,
                "Note": note,
            }));
        }
        VolumeEntry::Damaged {
            backing,
            plain,
            error,
        } => {
            damaged += 1;
            reports.push(json!({
                "Path": plain.map(|p| p.display().to_string()),
                "Backing": backing.display().to_string(),
                "Status": "damaged",
                "Detail": error.to_string(),
            }));
        }
        VolumeEntry::Stray { backing, what } => reports.push(json!({
            "Backing": backing.display().to_string(),
            "Status": "stray",
            "Detail": what,
        })),
        _ => {}
    })
    .map_err(|e| anyhow!("{e}"))?;

    let summary = json!({
        "VolumeId": volume.volume_id,
        "Files": reports,
        "Damaged": damaged,
        "ContentNotChecked": unchecked,
    });
    match global.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        OutputFormat::Text => {
            for r in &reports {
                let path = r["Path"].as_str().or(r["Backing"].as_str()).unwrap_or("?");
                let mut line = format!("{:8} /{path}", r["Status"].as_str().unwrap_or(""));
                if let Some(d) = r["Detail"].as_str().filter(|d| !d.is_empty()) {
                    line.push_str(&format!(": {d}"));
                }
                if let Some(n) = r["Note"].as_str() {
                    line.push_str(&format!(" ({n})"));
                }
                println!("{line}");
            }
            println!(
                "{} entries, {damaged} damaged, {unchecked} with content not checked (no kms:Decrypt)",
                reports.len()
            );
        }
    }
    Ok(if damaged > 0 { 1 } else { 0 })
}

fn read_header(path: &std::path::Path) -> Result<FileHeader, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; HEADER_LEN];
    f.read_exact(&mut buf).map_err(|e| e.to_string())?;
    FileHeader::decode(&buf).map_err(|e| e.to_string())
}

fn describe(outcome: &FileOutcome) -> (&'static str, String) {
    match outcome {
        FileOutcome::Ok {
            plaintext_size,
            blocks_checked,
            holes,
        } => (
            "ok",
            format!("{plaintext_size} bytes, {blocks_checked} blocks authenticated, {holes} holes"),
        ),
        FileOutcome::Unreadable { error } => ("damaged", format!("unreadable: {error}")),
        FileOutcome::HeaderDamaged { error } => ("damaged", format!("header: {error}")),
        FileOutcome::KeyMismatch => (
            "damaged",
            "the data key does not match the header's commitment".to_string(),
        ),
        FileOutcome::SizeInconsistent { backing_len } => (
            "damaged",
            format!("impossible backing length {backing_len} (truncated?)"),
        ),
        FileOutcome::BlocksFailed { indices, .. } => (
            "damaged",
            format!("blocks failing authentication: {indices:?}"),
        ),
        #[allow(unreachable_patterns)]
        _ => ("damaged", format!("{outcome:?}")),
    }
}
