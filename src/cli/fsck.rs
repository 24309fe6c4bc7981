//! `kmsfs fsck BACKING`: runs [`crate::format::check_volume`] with each file's data key
//! from [`crate::fs::authz::key_for_check`] (the mount's own unwrap, for kms:Decrypt as
//! the calling user) and prints the findings. Exits 1 when anything is damaged; a file
//! whose key could not be used is listed as `unchecked`, not damaged.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::cli::service::{open_service, self_caller, RootKeyOpts};
use crate::cli::{output, GlobalOpts};
use crate::format::{check_volume, FileOutcome, VolumeConfig, VolumeEntry, VolumeFinding};
use crate::fs::authz::key_for_check;
use crate::kms::provider::DataKeys;

#[derive(Debug, Clone, clap::Args)]
pub struct FsckArgs {
    /// The volume's backing directory.
    pub backing: PathBuf,
}

pub fn run(args: &FsckArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let volume = VolumeConfig::load(&args.backing).map_err(|e| anyhow!("{e}"))?;
    crate::cli::recovery::ensure_store_exists_for_volume(global, &args.backing)?;
    let service = open_service(global, keys)?;
    crate::cli::recovery::ensure_volume_of_this_store(&service, &args.backing)?;
    let secret = service
        .volume_secret(&volume.volume_id)
        .map_err(|e| anyhow!("volume {}: {e}", volume.volume_id))?;
    let caller = self_caller();
    // As the mount does: a remote-key file is checked as the caller's own AWS profile.
    let router = crate::remote::router::for_volume(
        service.clone(),
        &volume,
        &crate::fs::mount::RemoteOptions::default(),
    );
    let mut reports = Vec::new();
    let (mut damaged, mut unchecked) = (0usize, 0usize);
    check_volume(
        &args.backing,
        &secret,
        &mut |header| key_for_check(router.as_ref(), &caller, &volume.volume_id, header),
        &mut |finding| {
            if finding.is_damaged() {
                damaged += 1;
            }
            if matches!(
                finding,
                VolumeFinding::File {
                    outcome: FileOutcome::ContentNotChecked { .. },
                    ..
                }
            ) {
                unchecked += 1;
            }
            if let Some(r) = report(finding) {
                reports.push(r);
            }
        },
    )
    .map_err(|e| anyhow!("{e}"))?;

    let summary = json!({
        "VolumeId": volume.volume_id,
        "Files": reports,
        "Damaged": damaged,
        "ContentNotChecked": unchecked,
    });
    let mut text = String::new();
    for r in &reports {
        let path = match r["Path"].as_str() {
            Some(p) => format!("/{p}"),
            None => r["Backing"].as_str().unwrap_or("?").to_string(),
        };
        let mut line = format!("{:9} {path}", r["Status"].as_str().unwrap_or(""));
        if let Some(d) = r["Detail"].as_str().filter(|d| !d.is_empty()) {
            line.push_str(&format!(": {d}"));
        }
        if r["Status"] == "damaged" && r["Path"].is_string() {
            line.push_str(&format!(" [{}]", r["Backing"].as_str().unwrap_or("?")));
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&format!(
        "{} entries, {damaged} damaged, {unchecked} with content not checked \
         (key not usable by this user)\n",
        reports.len()
    ));
    output::print_own(&summary, "Fsck", text, global.output)?;
    Ok(if damaged > 0 { 1 } else { 0 })
}

/// One line of the report; `None` for what is not worth a line (healthy directories).
fn report(finding: VolumeFinding) -> Option<Value> {
    let line = |backing: &Path, plain: Option<&Path>, status: &str, detail: String| {
        json!({
            "Path": plain.map(|p| p.display().to_string()),
            "Backing": backing.display().to_string(),
            "Status": status,
            "Detail": detail,
        })
    };
    Some(match finding {
        VolumeFinding::File {
            backing,
            plain,
            outcome,
        } => {
            let (status, detail) = describe(&outcome);
            line(&backing, Some(&plain), status, detail)
        }
        VolumeFinding::Entry(entry) => match entry {
            VolumeEntry::Directory { .. } => return None,
            // check_volume reports regular files as VolumeFinding::File; kept for
            // completeness.
            VolumeEntry::File { backing, plain } => {
                line(&backing, Some(&plain), "unchecked", "not checked".into())
            }
            VolumeEntry::Symlink { backing, plain } => line(
                &backing,
                Some(&plain),
                "ok",
                "symlink target authenticated".into(),
            ),
            VolumeEntry::Other {
                backing,
                plain,
                what,
            } => line(
                &backing,
                Some(&plain),
                "special",
                format!("{what}, kept as is (not opened)"),
            ),
            VolumeEntry::Damaged {
                backing,
                plain,
                error,
            } => line(&backing, plain.as_deref(), "damaged", error.to_string()),
            VolumeEntry::Stray { backing, what } => line(&backing, None, "stray", what.into()),
            VolumeEntry::Repairable {
                backing,
                plain,
                what,
            } => line(
                &backing,
                Some(&plain),
                "repairable",
                format!("{what}; the directory id attribute is intact: the next writable mount rewrites it (no key rule)"),
            ),
        },
    })
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
        FileOutcome::ContentNotChecked {
            plaintext_size,
            reason,
        } => (
            "unchecked",
            format!("{plaintext_size} bytes, header ok; content not checked: {reason}"),
        ),
        FileOutcome::Unreadable { error } => ("damaged", format!("unreadable: {error}")),
        FileOutcome::HeaderDamaged { error } => ("damaged", format!("header: {error}")),
        FileOutcome::KeyRejected { reason } => ("damaged", format!("header: {reason}")),
        FileOutcome::KeyMismatch => (
            "damaged",
            "header: the data key does not match the header's commitment".to_string(),
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
