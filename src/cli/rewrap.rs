//! `kmsfs rewrap BACKING [--to-key KEY] [--path SUBDIR]`: re-wraps each file's data key
//! (kms:Decrypt on the file's key, then kms:Encrypt on the destination, as the calling
//! user) and replaces only its header ([`crate::fs::rewrap`]); content is never touched.
//!
//! The volume's names are read with its secret from the store (like fsck: the store's
//! owner or root), and the key decisions are made by the key service this command
//! reaches: a running mount's or `serve`'s control socket (as the calling user, by its
//! peer credentials), else the store opened here. Neither carries `kms:ViaService`: a
//! rewrap is the user's own request, not the filesystem's. A remote key (a full key ARN
//! the store does not hold) goes through the key router, signed as the user's own
//! `aws_profile` from principals.toml.

use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::cli::service::{connect_described, open_service, RootKeyOpts};
use crate::cli::{output, GlobalOpts};
use crate::control::Backend;
use crate::crypto::DataKey;
use crate::format::{walk_volume, FileHeader, MetadataKey, VolumeConfig, VolumeEntry};
use crate::fs::rewrap::{Destination, Outcome, Rewrap, RewrapKeys, Step, Wrapped};
use crate::kms::provider::{Caller, DataAction, DataKeys};
use crate::kms::{ErrorKind, KmsError, Service};
use crate::policy::EncryptionContext;
use crate::remote::router::is_key_arn;

#[derive(Debug, Clone, clap::Args)]
pub struct RewrapArgs {
    /// The volume's backing directory (mounted or not).
    pub backing: PathBuf,
    /// Wrap under this key instead of the current material of each file's own key (key
    /// id, ARN, alias; a remote key's full ARN). Without --path, it also becomes the
    /// volume's default key once every file was re-wrapped.
    #[arg(long)]
    pub to_key: Option<String>,
    /// Only files under this plaintext path inside the volume (a directory or a file).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The endpoint of the remote KMS (an AWS-compatible URL, e.g. a central
    /// `kmsfs serve --listen`) instead of the volume's `kms_endpoint` or AWS's regional
    /// one. Moving the whole volume to a remote key also stores it in the volume file.
    #[arg(long)]
    pub kms_endpoint: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Decrypt and Encrypt as the calling user: a key the local store holds through a key
/// service's AWS API (the mount's socket, or the store), a remote key (a full key ARN
/// the store does not hold) through the key router, signed as the user's `aws_profile`.
struct CliKeys<'a> {
    backend: &'a dyn Backend,
    router: &'a dyn DataKeys,
    service: &'a Service,
    caller: Caller,
}

fn bad_answer(what: &str) -> KmsError {
    KmsError::new(
        ErrorKind::KmsInternal,
        format!("the key service's {what} answer has no usable {what} field"),
    )
}

impl CliKeys<'_> {
    fn is_remote(&self, key_ref: &str) -> Result<bool, KmsError> {
        Ok(is_key_arn(key_ref) && !self.service.holds_key(key_ref)?)
    }
}

impl RewrapKeys for CliKeys<'_> {
    fn unwrap(
        &self,
        header: &FileHeader,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        if self.is_remote(&header.key_arn)? {
            return self.router.open_data_key(
                &self.caller,
                &header.key_arn,
                &header.wrapped_key,
                context,
                &[DataAction::Decrypt],
            );
        }
        let answer = self.backend.call(
            "Decrypt",
            json!({
                "CiphertextBlob": b64().encode(&header.wrapped_key),
                "KeyId": header.key_arn,
                "EncryptionContext": context,
            }),
        )?;
        // The base64 text in the JSON answer is not zeroized; the decoded key is.
        let plain = answer["Plaintext"]
            .as_str()
            .and_then(|s| b64().decode(s).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| bad_answer("Plaintext"))?;
        DataKey::from_slice(&plain).ok_or_else(|| {
            KmsError::new(
                ErrorKind::InvalidCiphertext,
                "the wrapped data key is not 32 bytes long",
            )
        })
    }

    fn wrap(
        &self,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<Wrapped, KmsError> {
        if self.is_remote(key_id)? {
            let w = self
                .router
                .wrap_data_key(&self.caller, key_id, key, context)?;
            return Ok(Wrapped {
                blob: w.wrapped,
                key_arn: w.key_arn,
            });
        }
        let answer = self.backend.call(
            "Encrypt",
            json!({
                "KeyId": key_id,
                "Plaintext": b64().encode(key.expose()),
                "EncryptionContext": context,
            }),
        )?;
        let blob = answer["CiphertextBlob"]
            .as_str()
            .and_then(|s| b64().decode(s).ok())
            .ok_or_else(|| bad_answer("CiphertextBlob"))?;
        let key_arn = answer["KeyId"]
            .as_str()
            .ok_or_else(|| bad_answer("KeyId"))?
            .to_string();
        Ok(Wrapped { blob, key_arn })
    }
}

/// `--path` as a relative plaintext path of normal components.
fn subdir(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => bail!(
                "--path {}: give a path inside the volume without '..'",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// Kills this process after `step` when KMSFS_TEST_CRASH_AT names it (debug builds).
fn crash_point(step: Step) {
    #[cfg(debug_assertions)]
    if std::env::var(crate::cli::recovery::CRASH_AT_ENV).is_ok_and(|v| v == step.name()) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "rewrap {bar:40} {pos}/{len} files ({eta} left) {wide_msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

pub fn run(args: &RewrapArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let backing = &args.backing;
    let mut volume = VolumeConfig::load(backing).map_err(|e| anyhow!("{e}"))?;
    crate::cli::recovery::ensure_store_exists_for_volume(global, backing)?;
    // The volume's names need its secret, which only the store holds.
    let service = open_service(global, keys).map_err(|e| {
        anyhow!("{e:#} (rewrap reads the volume's names with its secret from the store, like fsck)")
    })?;
    crate::cli::recovery::ensure_volume_of_this_store(&service, backing)?;
    let secret = service
        .volume_secret(&volume.volume_id)
        .map_err(|e| anyhow!("volume {}: {e}", volume.volume_id))?;
    let only = args.path.as_deref().map(subdir).transpose()?;

    // Every regular file under --path, once per inode (hard links share a header).
    let mut files = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut path_found = only.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    walk_volume(backing, &secret, &mut |entry| {
        let (plain, file) = match &entry {
            VolumeEntry::File { backing, plain } => (plain, Some(backing)),
            VolumeEntry::Directory { plain, .. }
            | VolumeEntry::Symlink { plain, .. }
            | VolumeEntry::Other { plain, .. } => (plain, None),
            _ => return,
        };
        if let Some(p) = &only {
            if plain == p {
                path_found = true;
            }
            if !plain.starts_with(p) {
                return;
            }
        }
        if let Some(b) = file {
            use std::os::unix::fs::MetadataExt;
            let id = std::fs::symlink_metadata(b)
                .ok()
                .map(|m| (m.dev(), m.ino()));
            if id.is_none_or(|id| seen.insert(id)) {
                files.push((b.clone(), plain.clone()));
            }
        }
    })
    .map_err(|e| anyhow!("{e}"))?;
    if !path_found {
        bail!(
            "--path {}: no such file or directory in the volume",
            args.path.as_deref().unwrap_or(Path::new("")).display()
        );
    }

    // The key decisions: the service a running mount (or serve) answers on, as this
    // user; else the store opened above.
    let (backend, endpoint) = match connect_described(global, keys) {
        Ok((b, e)) if matches!(e, crate::cli::service::Endpoint::Socket(_)) => (b, e),
        _ => (
            Box::new(crate::control::LocalBackend::new(
                Arc::clone(&service),
                crate::cli::service::self_caller(),
            )) as Box<dyn Backend>,
            crate::cli::service::Endpoint::Store(crate::cli::store_dir(global)),
        ),
    };
    log::debug!("rewrap: key decisions by {endpoint}");
    if let Some(url) = &args.kms_endpoint {
        crate::format::volume::validate_endpoint(url)
            .map_err(|r| anyhow!("--kms-endpoint {url}: {r}"))?;
    }
    // One call per file: a cache would only keep keys in memory longer.
    let router = crate::remote::router::for_volume(
        Arc::clone(&service),
        &volume,
        &crate::fs::mount::RemoteOptions {
            endpoint: args.kms_endpoint.clone(),
            cache_ttl: Some(std::time::Duration::ZERO),
            ..Default::default()
        },
    );
    let rewrap_keys = CliKeys {
        backend: backend.as_ref(),
        router: router.as_ref(),
        service: service.as_ref(),
        caller: crate::cli::service::self_caller(),
    };
    let rewrap = Rewrap::begin(backing, &volume.volume_id, &rewrap_keys)
        .map_err(|e| anyhow!("{}: {e}", backing.display()))?
        .with_step_hook(crash_point);
    let dest = match &args.to_key {
        Some(k) => Destination::Key(k),
        None => Destination::OwnKey,
    };

    let bar = progress_bar(files.len());
    let (mut rewrapped, mut unchanged, mut failed) = (0usize, 0usize, Vec::<Value>::new());
    for (backing_path, plain) in &files {
        bar.set_message(plain.display().to_string());
        match rewrap.file(backing_path, dest) {
            Ok(Outcome::Rewrapped) => rewrapped += 1,
            Ok(Outcome::Unchanged) => unchanged += 1,
            Err(e) => failed.push(json!({
                "Path": plain.display().to_string(),
                "Error": e.to_string(),
            })),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(rewrap);

    // Moving the whole volume also moves its default key, once every file moved: a
    // partial run leaves the volume file as it was, and a rerun finishes the job.
    if let (Some(key), None) = (&args.to_key, &args.path) {
        if failed.is_empty() && volume.default_key != *key {
            let meta = MetadataKey::new(&secret);
            volume.verify(backing, &meta).map_err(|e| anyhow!("{e}"))?;
            volume.default_key = key.clone();
            // The remote KMS the volume's files now need, for the mounts to come.
            if args.kms_endpoint.is_some() && rewrap_keys.is_remote(key).unwrap_or(false) {
                volume.kms_endpoint = args.kms_endpoint.clone();
            }
            volume.save(backing, &meta).map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "kmsfs: the volume's default key is now {key} (a running mount uses it once remounted)"
            );
        }
    }

    let summary = json!({
        "Rewrapped": rewrapped,
        "Unchanged": unchanged,
        "Failed": failed,
    });
    let mut text = String::new();
    for f in &failed {
        text.push_str(&format!(
            "failed /{}: {}\n",
            f["Path"].as_str().unwrap_or(""),
            f["Error"].as_str().unwrap_or("")
        ));
    }
    text.push_str(&format!(
        "{rewrapped} rewrapped, {unchanged} unchanged, {} failed\n",
        failed.len()
    ));
    output::print_own(&summary, "Rewrap", text, global.output)?;
    Ok(if failed.is_empty() { 0 } else { 1 })
}
