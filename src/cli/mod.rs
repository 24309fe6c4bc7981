//! The `kmsfs` command line: clap argument types and one module per command group.
//! `anyhow` lives only here. OWNER: lead (mod.rs); kms.rs and audit.rs: control helper.

pub mod audit;
pub mod kms;

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
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}
