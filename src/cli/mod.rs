//! The `kmsfs` command line: clap argument types and one module per command group.
//! `anyhow` lives only here.

pub mod audit;
pub mod kms;
pub mod output;
pub mod table;

pub use output::OutputFormat;

use std::path::PathBuf;

/// Options every command accepts (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalOpts {
    /// The key service's store directory.
    #[arg(long, global = true, env = "KMSFS_STORE")]
    pub store: Option<PathBuf>,
    /// The principals file (default: <store>/principals.toml).
    #[arg(long, global = true, env = "KMSFS_PRINCIPALS")]
    pub principals: Option<PathBuf>,
    /// The key service's control socket.
    #[arg(long, global = true, env = "KMSFS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Output format, as aws-cli's: json, text (tab-separated), table (boxed) or yaml.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
}

pub mod credentials;
pub mod daemon;
pub mod exec;
pub mod fsck;
pub mod keyrule;
pub mod listen;
pub mod logging;
pub mod manual;
pub mod mount_helper;
pub mod recovery;
pub mod secrets;
pub mod service;
pub mod simulate;
pub mod whoami;
pub mod whoami_remote;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// kmsfs: an encrypted directory whose every open is authorized like an AWS KMS request.
#[derive(Debug, Parser)]
#[command(name = "kmsfs", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(flatten)]
    pub root_key: service::RootKeyOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store if absent; with BACKING, also a volume there.
    Init(service::InitArgs),
    /// Run the key service alone on its control socket.
    Serve(service::ServeArgs),
    /// Mount a volume; the key service runs inside the mount process.
    Mount(service::MountArgs),
    /// Unmount a kmsfs mount point (refused while busy unless --lazy).
    Umount(service::UmountArgs),
    /// Mount a volume on a private mount point, run a command with KMSFS_MOUNTPOINT set,
    /// unmount, and exit with the command's status (for CI).
    Exec(exec::ExecArgs),
    /// Authenticate every header and block of a volume that you may read.
    Fsck(fsck::FsckArgs),
    /// Show which principal you are and what you may do with a key.
    Whoami(whoami::WhoamiArgs),
    /// Set or show the key that new files under a directory of a mount get.
    KeyRule(keyrule::KeyRuleArgs),
    /// The key service's API, mirroring `aws kms <verb>`.
    Kms(Box<kms::KmsArgs>),
    /// Evaluate a request against a key policy (and identity policies and grants) and
    /// explain the decision.
    Simulate(simulate::SimulateArgs),
    /// Read or verify the hash-chained audit log.
    Audit(audit::AuditArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(manual::CompletionsArgs),
    /// Write man pages into a directory (used by scripts/install).
    #[command(hide = true)]
    Man(manual::ManArgs),
    /// Change the store's passphrase, or switch between a root key file and a passphrase.
    Passwd(recovery::PasswdArgs),
    /// Back up the store to one sealed file, or restore it (docs/RECOVERY.md).
    Store(recovery::StoreArgs),
    /// Access keys of principals, for signed requests to `kmsfs serve --listen`.
    Credentials(credentials::CredentialsArgs),
}

/// The store directory: --store / KMSFS_STORE, else /var/lib/kmsfs for root, else
/// $XDG_DATA_HOME/kmsfs (~/.local/share/kmsfs).
pub fn store_dir(global: &GlobalOpts) -> PathBuf {
    if let Some(s) = &global.store {
        return s.clone();
    }
    if nix::unistd::getuid().is_root() {
        return PathBuf::from("/var/lib/kmsfs");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kmsfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/kmsfs")
}

/// aws-cli parameter convention: `file://path` reads the file as text; anything else is
/// the literal value.
pub fn read_param_text(value: &str, flag: &str) -> anyhow::Result<String> {
    if let Some(path) = value.strip_prefix("file://") {
        std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))
    } else {
        Ok(value.to_string())
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    let rk = &cli.root_key;
    match &cli.command {
        Command::Init(a) => service::run_init(a, g, rk),
        Command::Serve(a) => service::run_serve(a, g, rk),
        Command::Mount(a) => service::run_mount(a, g, rk),
        Command::Umount(a) => service::run_umount(a),
        Command::Exec(a) => exec::run(a, g, rk),
        Command::Fsck(a) => fsck::run(a, g, rk),
        Command::Whoami(a) => whoami::run(a, g, rk),
        Command::KeyRule(a) => keyrule::run(a, g, rk),
        Command::Kms(a) => {
            let backend = service::connect(g, rk)?;
            kms::run(a, g, backend.as_ref())
        }
        Command::Simulate(a) => {
            if a.key_id.is_some() {
                simulate::run_via_service(a, g, rk)
            } else {
                simulate::run_offline(a, g)
            }
        }
        Command::Audit(a) => audit::run(a, &store_dir(g).join(crate::kms::store::AUDIT_FILE), g),
        Command::Completions(a) => manual::run_completions(a),
        Command::Man(a) => manual::run_man(a),
        Command::Passwd(a) => recovery::run_passwd(a, g, rk),
        Command::Store(a) => recovery::run_store(a, g, rk),
        Command::Credentials(a) => credentials::run(a, g, rk),
    }
}
