//! Secrets and recovery: `kmsfs passwd` (change the passphrase, or switch between a
//! root key file and a passphrase), `kmsfs store backup FILE` and `kmsfs store restore
//! FILE`, and the check that a volume being mounted belongs to the store at hand.
//! docs/RECOVERY.md is the user's side of this module.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::secrets::RootKeyOpts;
use crate::cli::{output, store_dir, GlobalOpts};
use crate::kms::backup::{self, BackupInfo};
use crate::kms::store::{self, NewRootKeySecret, SecretChangeStep, Store};
use crate::kms::{RootKeySource, Service};

/// The environment variable holding the new passphrase for `passwd` (for CI).
pub const NEW_PASSPHRASE_ENV: &str = "KMSFS_NEW_PASSPHRASE";
/// Debug builds only: `passwd` kills itself (SIGKILL) right after the named durable
/// step (`state-migrated`, `key-file-written`, `header-written`), for crash tests.
pub const CRASH_AT_ENV: &str = "KMSFS_TEST_CRASH_AT";

#[derive(Debug, Clone, clap::Args)]
pub struct PasswdArgs {
    /// Read the new passphrase from this file (also KMSFS_NEW_PASSPHRASE, the passphrase
    /// itself). Without either, it is asked twice on the terminal, without echo.
    #[arg(long, conflicts_with = "to_key_file")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Switch from a passphrase to a root key file: write the root key to this new file
    /// (0600), then make the store use it.
    #[arg(long)]
    pub to_key_file: Option<PathBuf>,
    /// When switching from a key file to a passphrase, keep the old key file (it still
    /// holds the root key) instead of shredding it.
    #[arg(long)]
    pub keep_key_file: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StoreCommand {
    /// Write a sealed backup of the store (everything but the root key) to FILE.
    Backup(BackupArgs),
    /// Put a backup back, as the store named by --store (or the default store).
    Restore(RestoreArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (replaced atomically if it exists).
    pub file: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file written by `kmsfs store backup`.
    pub file: PathBuf,
    /// Replace an existing store (it is moved aside to <store>.replaced-<time>, not
    /// deleted).
    #[arg(long)]
    pub force: bool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The terminal, if this process has one to ask on.
fn terminal() -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
}

/// Asks on the terminal with echo off, restoring the terminal's settings afterwards.
/// (A private helper: `kmsfs` may gain a shared one; this one only serves `passwd` and
/// `restore`.)
fn prompt_hidden(tty: &std::fs::File, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let mut out = tty;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let saved = tcgetattr(tty).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(tty, SetArg::TCSAFLUSH, &quiet).context("turning off echo")?;
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufReader::new(tty).read_line(&mut line);
    let restored = tcsetattr(tty, SetArg::TCSAFLUSH, &saved);
    read.context("reading from the terminal")?;
    restored.context("restoring the terminal's settings")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

fn read_passphrase_file(path: &Path, flag: &str) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?,
    );
    let pass = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    if pass.is_empty() {
        bail!("{flag} {}: the file is empty", path.display());
    }
    Ok(pass)
}

/// The new passphrase: `--new-passphrase-file`, else KMSFS_NEW_PASSPHRASE, else asked
/// twice on the terminal.
fn new_passphrase(args: &PasswdArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = &args.new_passphrase_file {
        return read_passphrase_file(f, "--new-passphrase-file");
    }
    if let Some(p) = std::env::var_os(NEW_PASSPHRASE_ENV).filter(|p| !p.is_empty()) {
        let p = Zeroizing::new(
            p.into_string()
                .map_err(|_| anyhow!("{NEW_PASSPHRASE_ENV} is not valid UTF-8"))?,
        );
        return Ok(p);
    }
    let Some(tty) = terminal() else {
        bail!(
            "no new passphrase: give --new-passphrase-file FILE or {NEW_PASSPHRASE_ENV}, run on a terminal to be asked, or switch to a key file with --to-key-file FILE"
        );
    };
    let first = prompt_hidden(&tty, "New passphrase: ")?;
    if first.is_empty() {
        bail!("the new passphrase is empty");
    }
    let again = prompt_hidden(&tty, "New passphrase again: ")?;
    if *first != *again {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(first)
}

/// Kills this process after `step` when KMSFS_TEST_CRASH_AT names it (debug builds).
fn crash_point(step: SecretChangeStep) {
    #[cfg(debug_assertions)]
    if std::env::var(CRASH_AT_ENV).is_ok_and(|v| v == step.name()) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

pub fn run_passwd(
    args: &PasswdArgs,
    global: &GlobalOpts,
    keys: &RootKeyOpts,
) -> anyhow::Result<i32> {
    let dir = store_dir(global);
    let old = keys.source(&dir)?;
    let new = match &args.to_key_file {
        Some(path) => NewRootKeySecret::KeyFile(path.clone()),
        None => NewRootKeySecret::Passphrase(new_passphrase(args)?),
    };
    let changed = Store::change_secret(&dir, &old, &new, &mut crash_point)
        .map_err(|e| anyhow!("{}", e.message))?;
    let mut shredded = None;
    if let Some(k) = &changed.retired_key_file {
        if args.keep_key_file {
            eprintln!(
                "kmsfs: kept {} as asked; it still holds the root key and opens the store's keys without the passphrase",
                k.display()
            );
        } else {
            match store::shred_key_file(k) {
                Ok(()) => shredded = Some(k.clone()),
                Err(e) => eprintln!(
                    "kmsfs: warning: the store now uses the passphrase, but the old key file could not be shredded ({}); it still holds the root key: destroy it",
                    e.message
                ),
            }
        }
    }
    eprintln!(
        "kmsfs: backups made before this change still open with the old secret; make a new one (kmsfs store backup FILE) and destroy the old ones if the old secret leaked (docs/RECOVERY.md)"
    );
    let (protected_by, key_file) = match &new {
        NewRootKeySecret::Passphrase(_) => ("passphrase", None),
        NewRootKeySecret::KeyFile(p) => ("key-file", Some(p.display().to_string())),
    };
    let out = json!({
        "Store": dir.display().to_string(),
        "StoreId": changed.store_id,
        "ProtectedBy": protected_by,
        "RootKeyFile": key_file,
        "ShreddedKeyFile": shredded.map(|p| p.display().to_string()),
    });
    let mut text = format!(
        "store {} is now protected by a {protected_by}\n",
        dir.display()
    );
    if let Some(k) = &key_file {
        text.push_str(&format!("root key file {k}\n"));
    }
    output::print_own(&out, "Passwd", text, global.output)?;
    Ok(0)
}

pub fn run_store(args: &StoreArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    match &args.command {
        StoreCommand::Backup(a) => run_backup(a, global, keys),
        StoreCommand::Restore(a) => run_restore(a, global, keys),
    }
}

fn run_backup(args: &BackupArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let dir = store_dir(global);
    let source = keys.source(&dir)?;
    if let (Ok(file), Ok(store)) = (
        std::fs::canonicalize(args.file.parent().unwrap_or(Path::new("."))),
        std::fs::canonicalize(&dir),
    ) {
        if file.starts_with(&store) {
            bail!(
                "{}: a backup inside the store it backs up is lost with it; write it elsewhere",
                args.file.display()
            );
        }
    }
    let summary = backup::backup(&dir, &source, &args.file, now()).map_err(|e| anyhow!("{e}"))?;
    let secret = match source {
        RootKeySource::Passphrase(_) => "the store's passphrase".to_string(),
        RootKeySource::KeyFile(k) => format!("the root key file {}", k.display()),
    };
    eprintln!(
        "kmsfs: the backup opens only with {secret}, which it does not contain: keep that safe too, and apart from the backup"
    );
    let out = json!({
        "Backup": args.file.display().to_string(),
        "Store": dir.display().to_string(),
        "StoreId": summary.store_id,
        "Files": summary.files,
        "Skipped": summary.skipped,
        "Bytes": summary.bytes,
    });
    let text = format!(
        "backup {} of store {} ({} files, {} bytes)\n",
        args.file.display(),
        dir.display(),
        summary.files.len(),
        summary.bytes
    );
    output::print_own(&out, "Backup", text, global.output)?;
    Ok(0)
}

/// The secret a restore needs: what the backup's store was protected by, taken from
/// the usual options (a passphrase may also be asked on the terminal).
fn restore_source(
    info: &BackupInfo,
    file: &Path,
    global: &GlobalOpts,
    keys: &RootKeyOpts,
) -> anyhow::Result<RootKeySource> {
    let configured = keys.source(&store_dir(global))?;
    if info.passphrase {
        if let RootKeySource::Passphrase(_) = configured {
            return Ok(configured);
        }
        if let Some(tty) = terminal() {
            let prompt = format!("Passphrase of the store in {}: ", file.display());
            return Ok(RootKeySource::Passphrase(prompt_hidden(&tty, &prompt)?));
        }
        bail!(
            "{}: this is the backup of a passphrase-protected store: give its passphrase with --passphrase-file FILE or KMSFS_PASSPHRASE",
            file.display()
        );
    }
    match &keys.root_key_file {
        Some(k) => Ok(RootKeySource::KeyFile(k.clone())),
        None => {
            let default = store_dir(global).join(store::ROOT_KEY_FILE);
            if default.exists() {
                return Ok(RootKeySource::KeyFile(default));
            }
            bail!(
                "{}: this is the backup of a store protected by a root key file, which a backup never contains: give the key file you kept with --root-key-file FILE",
                file.display()
            )
        }
    }
}

fn run_restore(args: &RestoreArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let dir = store_dir(global);
    let info = backup::inspect(&args.file).map_err(|e| anyhow!("{e}"))?;
    let source = restore_source(&info, &args.file, global, keys)?;
    let summary = backup::restore(&args.file, &dir, &source, args.force, now())
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(old) = &summary.replaced_store_moved_to {
        eprintln!(
            "kmsfs: the store that was at {} is now at {}; delete it when you no longer need it",
            dir.display(),
            old.display()
        );
    }
    if let (RootKeySource::KeyFile(k), None) = (&source, &summary.root_key_file_written) {
        if !k.starts_with(&dir) {
            eprintln!(
                "kmsfs: the restored store is protected by the root key file {}: give it with --root-key-file (or KMSFS_ROOT_KEY) to every command",
                k.display()
            );
        }
    }
    let out = json!({
        "Store": dir.display().to_string(),
        "StoreId": summary.store_id,
        "Files": summary.files,
        "BackupCreated": info.created,
        "RootKeyFileWritten": summary.root_key_file_written.map(|p| p.display().to_string()),
        "ReplacedStoreMovedTo": summary.replaced_store_moved_to.map(|p| p.display().to_string()),
    });
    let text = format!(
        "restored store {} ({}) from {}\n",
        dir.display(),
        out["StoreId"].as_str().unwrap_or(""),
        args.file.display()
    );
    output::print_own(&out, "Restore", text, global.output)?;
    Ok(0)
}

/// Before opening a store for a volume: a missing store must not be "fixed" with
/// `kmsfs init`, which makes a new, empty store that cannot open the volume.
pub fn ensure_store_exists_for_volume(global: &GlobalOpts, backing: &Path) -> anyhow::Result<()> {
    let dir = store_dir(global);
    // Only a store that is surely absent: a store this user cannot look into gets the
    // store's own error when it is opened.
    match std::fs::symlink_metadata(dir.join("store.json")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Ok(()),
    }
    bail!(
        "there is no kmsfs store at {}, and the volume in {} can be opened only with the store it was made with. If that store is elsewhere, give it with --store; if it was lost, restore it from a backup (kmsfs store restore FILE --store {}; docs/RECOVERY.md). `kmsfs init` would make a new, empty store that cannot open this volume.",
        dir.display(),
        backing.display(),
        dir.display()
    )
}

/// Refuses a volume whose secret this store does not hold: it was made with another
/// store (or this store was restored from a backup older than the volume). Without the
/// check the mount fails later with "metadata authentication failed", which names no
/// cause, and the store gains a useless secret.
pub fn ensure_volume_of_this_store(service: &Service, backing: &Path) -> anyhow::Result<()> {
    let volume = crate::format::VolumeConfig::load(backing).map_err(|e| anyhow!("{e}"))?;
    let known = service
        .has_volume_secret(&volume.volume_id)
        .map_err(|e| anyhow!("{}", e.message))?;
    if known {
        return Ok(());
    }
    bail!(
        "the volume in {} (volume id {}) belongs to another store, not to the store {} (store id {}): this store holds no secret for it, so it cannot decrypt its names or files. Use the store it was made with (--store DIR); if that store was lost, restore it from a backup (kmsfs store restore FILE --store DIR; docs/RECOVERY.md). Without that store and its root key or passphrase, the data cannot be recovered.",
        backing.display(),
        volume.volume_id,
        service.store_dir().display(),
        service.store_id()
    )
}

/// One line for `kmsfs init`'s one-time notice (and anything else that tells a person
/// how not to lose their data): the command and the document.
pub const BACKUP_HINT: &str = "Back up the store with `kmsfs store backup FILE` and keep the root key file or passphrase apart from it; without both, the data is gone for good (docs/RECOVERY.md).";
