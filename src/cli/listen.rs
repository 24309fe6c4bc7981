//! `--listen HOST:PORT [--tls-cert FILE --tls-key FILE]` on `serve` and `mount`: the
//! key service also answers AWS KMS's HTTP API ([`crate::wire`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};

use crate::kms::Service;
use crate::wire::{TlsFiles, WireConfig, WireServer};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenOpts {
    /// Also answer AWS KMS's HTTP API (JSON 1.1, SigV4) on HOST:PORT, e.g.
    /// 127.0.0.1:4599 (port 0 picks a free port; the address is printed at start).
    /// Plain HTTP only on loopback addresses.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// TLS certificate chain (PEM) for --listen.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for --listen.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: expected HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("--listen {listen}: the host resolves to no address"))
}

impl ListenOpts {
    /// Binds and starts the endpoint if `--listen` was given, and says where it listens
    /// (on stderr, so that scripts can read the port when they asked for port 0).
    pub fn start(&self, service: &Arc<Service>) -> anyhow::Result<Option<crate::wire::Running>> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let mut config = WireConfig::new(resolve(listen)?);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        let backend: Arc<dyn crate::wire::WireBackend> = service.clone();
        let server = WireServer::bind(config, backend, service.clock.clone())
            .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
        let url = server.url();
        let running = server
            .spawn()
            .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
        eprintln!("kmsfs: listening on {url}");
        log::info!("AWS KMS HTTP API listening on {url}");
        Ok(Some(running))
    }
}
