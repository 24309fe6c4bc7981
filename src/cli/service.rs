//! Opening the key service for a command, and reaching it: through the control socket
//! when a service runs, else (for the store's owner) by opening the store directly.
//! Also `init`, `serve`, `mount`, `umount`, `whoami` and `fsck`, which all need the
//! service one way or another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use zeroize::Zeroizing;

use crate::cli::{daemon, store_dir, GlobalOpts, OutputFormat};
use crate::control::{self, Backend, Handler, SocketClient};
use crate::kms::provider::{Caller, DataKeys};
use crate::kms::KmsError;
use crate::kms::RootKeySource;
use crate::kms::{init_store, Service, ServiceConfig};

/// Where the root key comes from, as every store-opening command accepts it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RootKeyOpts {
    /// Unlock the store with the passphrase in this file (Argon2id) instead of the root
    /// key file. Also KMSFS_PASSPHRASE (the passphrase itself) for CI.
    #[arg(long, global = true, env = "KMSFS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The root key file (default <store>/root.key).
    #[arg(long, global = true, env = "KMSFS_ROOT_KEY")]
    pub root_key_file: Option<PathBuf>,
}

impl RootKeyOpts {
    fn source(&self, store: &Path) -> anyhow::Result<RootKeySource> {
        if let Some(f) = &self.passphrase_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--passphrase-file {}", f.display()))?,
            );
            let pass = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
            if pass.is_empty() {
                bail!("--passphrase-file {}: the file is empty", f.display());
            }
            return Ok(RootKeySource::Passphrase(pass));
        }
        if let Ok(p) = std::env::var("KMSFS_PASSPHRASE") {
            if !p.is_empty() {
                return Ok(RootKeySource::Passphrase(Zeroizing::new(p)));
            }
        }
        Ok(RootKeySource::KeyFile(
            self.root_key_file
                .clone()
                .unwrap_or_else(|| store.join("root.key")),
        ))
    }
}

/// The configuration to open the store named by the global options.
pub fn service_config(global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<ServiceConfig> {
    let dir = store_dir(global);
    let mut cfg = ServiceConfig::new(&dir);
    cfg.principals_path = global.principals.clone();
    cfg.root_key = keys.source(&dir)?;
    Ok(cfg)
}

fn kms_err(e: KmsError) -> anyhow::Error {
    anyhow!("{}: {}", e.kind.aws_name(), e.message)
}

/// Opens the store in this process.
pub fn open_service(global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<Arc<Service>> {
    let cfg = service_config(global, keys)?;
    Service::open(cfg).map_err(kms_err)
}

/// The socket server's view of the service.
pub struct ServiceHandler(pub Arc<Service>);

impl Handler for ServiceHandler {
    fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        self.0.call(caller, operation, request)
    }
}

/// The CLI calling a service in its own process, as its own uid.
pub struct DirectBackend {
    service: Arc<Service>,
    caller: Caller,
}

impl Backend for DirectBackend {
    fn call(
        &self,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        self.service.call(&self.caller, operation, request)
    }
}

/// This process as a caller.
pub fn self_caller() -> Caller {
    Caller {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        pid: std::process::id(),
    }
}

/// Reaches the key service: `--socket` if given; else the caller's runtime socket, then
/// the system one; else, when this user may open the store, the store directly.
pub fn connect(global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<Box<dyn Backend>> {
    if let Some(path) = &global.socket {
        if path.exists() {
            let c = SocketClient::connect(path)
                .with_context(|| format!("connecting to the key service at {}", path.display()))?;
            return Ok(Box::new(c));
        }
        // A named socket that does not exist yet: fall back to the store only if we own
        // it, so that `KMSFS_SOCKET` set for a later mount does not break setup steps.
        if !store_dir(global).exists() {
            bail!(
                "no key service listens on {} and there is no store at {}",
                path.display(),
                store_dir(global).display()
            );
        }
    } else {
        let uid = nix::unistd::getuid().as_raw();
        let paths = control::default_socket_paths(uid);
        if let Ok(c) = SocketClient::connect_first(&paths) {
            return Ok(Box::new(c));
        }
    }
    let dir = store_dir(global);
    if !dir.exists() {
        bail!(
            "no key service is running and there is no store at {} (run `kmsfs init` first, or give --socket)",
            dir.display()
        );
    }
    let service = open_service(global, keys).with_context(|| {
        format!(
            "no key service is running, and the store {} cannot be opened directly",
            dir.display()
        )
    })?;
    Ok(Box::new(DirectBackend {
        service,
        caller: self_caller(),
    }))
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Also create a volume in this (empty or absent) backing directory.
    pub backing: Option<PathBuf>,
    /// The default key of the new volume's files (key id, ARN, alias).
    #[arg(long, default_value = "alias/kmsfs/default", requires = "backing")]
    pub key: String,
}

pub fn run_init(args: &InitArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let cfg = service_config(global, keys)?;
    let created = init_store(&cfg).map_err(kms_err)?;
    let dir = store_dir(global);
    let mut out = serde_json::json!({
        "Store": dir.display().to_string(),
        "StoreCreated": created,
    });
    if let Some(backing) = &args.backing {
        let service = Service::open(cfg).map_err(kms_err)?;
        let volume = crate::fs::mount::init_volume(backing, &args.key, service.as_ref())
            .map_err(|e| anyhow!("{e}"))?;
        out["Volume"] = serde_json::json!({
            "Backing": backing.display().to_string(),
            "VolumeId": volume.volume_id,
            "DefaultKey": args.key,
        });
    }
    match global.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        OutputFormat::Text => {
            println!(
                "store {} ({})",
                dir.display(),
                if created { "created" } else { "exists" }
            );
            if let Some(v) = out.get("Volume") {
                println!(
                    "volume {} in {} (default key {})",
                    v["VolumeId"].as_str().unwrap_or(""),
                    v["Backing"].as_str().unwrap_or(""),
                    args.key
                );
            }
        }
    }
    Ok(0)
}

/// How often a running service applies due rotations and deletions.
const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

fn spawn_ticker(service: Arc<Service>) {
    let spawned = std::thread::Builder::new()
        .name("kmsfs-tick".into())
        .spawn(move || loop {
            if let Err(e) = service.tick() {
                log::warn!("applying due rotations/deletions: {e}");
            }
            std::thread::sleep(TICK_INTERVAL);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the rotation/deletion thread: {e}");
    }
}

fn listen_path(global: &GlobalOpts) -> PathBuf {
    global
        .socket
        .clone()
        .unwrap_or_else(|| control::default_listen_path(nix::unistd::getuid().as_raw()))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Detach and return once the socket is listening.
    #[arg(long)]
    pub daemon: bool,
}

pub fn run_serve(args: &ServeArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let mut ready = if args.daemon {
        match daemon::daemonize()? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    } else {
        daemon::Readiness::none()
    };
    daemon::block_termination_signals();
    let started = (|| -> anyhow::Result<_> {
        let service = open_service(global, keys)?;
        let path = listen_path(global);
        let server = control::Server::bind(&path, Arc::new(ServiceHandler(service.clone())))
            .with_context(|| format!("listening on {}", path.display()))?;
        let running = server.spawn()?;
        spawn_ticker(service);
        Ok((running, path))
    })();
    let (running, path) = match started {
        Ok(x) => x,
        Err(e) => {
            ready.failed(&format!("{e:#}"));
            return Err(e);
        }
    };
    if !args.daemon {
        eprintln!("kmsfs: key service listening on {}", path.display());
    }
    ready.ready();
    daemon::wait_for_signal_or(|| false);
    running.stop()?;
    Ok(0)
}

#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The backing directory (created by `kmsfs init BACKING`).
    pub backing: PathBuf,
    /// Where the plaintext view appears.
    pub mountpoint: PathBuf,
    /// Use this key for new files instead of the volume's default key (this mount only).
    #[arg(long)]
    pub key: Option<String>,
    /// Mount options: allow_other, default_permissions, ro, allow_root, ...
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,
    /// Stay in the foreground (default: return once the mount is ready).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not serve the control socket from the mount process.
    #[arg(long)]
    pub no_socket: bool,
}

pub fn run_mount(args: &MountArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    // Validate what can be validated before forking, so errors reach the terminal.
    if !args.mountpoint.is_dir() {
        bail!(
            "mount point {} is not a directory",
            args.mountpoint.display()
        );
    }
    crate::format::VolumeConfig::load(&args.backing).map_err(|e| anyhow!("{e}"))?;
    crate::cli::recovery::ensure_store_exists_for_volume(global, &args.backing)?;
    let mut ready = if args.foreground {
        daemon::Readiness::none()
    } else {
        match daemon::daemonize()? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    };
    daemon::block_termination_signals();
    let started = (|| -> anyhow::Result<_> {
        let service = open_service(global, keys)?;
        crate::cli::recovery::ensure_volume_of_this_store(&service, &args.backing)?;
        let server = if args.no_socket {
            None
        } else {
            let path = listen_path(global);
            match control::Server::bind(&path, Arc::new(ServiceHandler(service.clone()))) {
                Ok(s) => Some(s.spawn()?),
                // Another service (e.g. `kmsfs serve` or another mount) already serves
                // this socket: the mount still works, the CLI reaches that one.
                Err(e) => {
                    log::warn!("not serving {}: {e}", path.display());
                    None
                }
            }
        };
        spawn_ticker(service.clone());
        let mut options = args.options.clone();
        if let Some(k) = &args.key {
            options.push(format!("key={k}"));
        }
        let spec = crate::fs::mount::MountSpec {
            backing: args.backing.clone(),
            mountpoint: args.mountpoint.clone(),
            options,
            threads: args.threads,
        };
        let keys_provider: Arc<dyn DataKeys> = service;
        let session = crate::fs::mount::mount(&spec, keys_provider)
            .map_err(|e| anyhow!("mounting {}: {e}", args.mountpoint.display()))?;
        Ok((session, server))
    })();
    let (session, server) = match started {
        Ok(x) => x,
        Err(e) => {
            ready.failed(&format!("{e:#}"));
            return Err(e);
        }
    };
    ready.ready();
    let mountpoint = args.mountpoint.clone();
    // Ends on a signal (then we unmount) or when someone unmounts us.
    daemon::wait_for_signal_or(|| !is_mounted(&mountpoint));
    let result = session.umount();
    if let Some(s) = server {
        let _ = s.stop();
    }
    result.map_err(|e| anyhow!("{e}"))?;
    Ok(0)
}

/// Whether `path` is currently a FUSE mount point of kmsfs (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(path).or_else(|_| Ok::<_, ()>(path.to_path_buf())) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().to_string();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4).map(|m| unescape_mount(m)) == Some(want.clone())
    })
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[derive(Debug, Clone, clap::Args)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
}

pub fn run_umount(args: &UmountArgs) -> anyhow::Result<i32> {
    if !is_mounted(&args.mountpoint) {
        bail!("{} is not mounted", args.mountpoint.display());
    }
    crate::fs::mount::unmount(&args.mountpoint).map_err(|e| anyhow!("{e}"))?;
    // Wait (bounded) for the mount process to finish flushing and exit.
    for _ in 0..100 {
        if !is_mounted(&args.mountpoint) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(0)
}
