//! Opening the key service for a command, and reaching it: through the control socket
//! when a service runs, else (for the store's owner) by opening the store directly.
//! Also `init`, `serve`, `mount`, `umount`, `whoami` and `fsck`, which all need the
//! service one way or another.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

pub use crate::cli::secrets::RootKeyOpts;
use crate::cli::{daemon, logging, store_dir, GlobalOpts};
use crate::control::{self, Backend, SocketClient};
use crate::fs::mount::is_mounted;
use crate::kms::provider::{Caller, DataKeys};
use crate::kms::KmsError;
use crate::kms::RootKeySource;
use crate::kms::{init_store, Service, ServiceConfig};

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

/// This process as a caller.
pub fn self_caller() -> Caller {
    Caller {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        pid: std::process::id(),
    }
}

/// The key service a command reached, for `whoami` and for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A control socket (a `serve` or `mount` process answers).
    Socket(PathBuf),
    /// The store, opened in this process.
    Store(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Socket(p) => write!(f, "the key service on socket {}", p.display()),
            Endpoint::Store(p) => write!(f, "the store {} (opened directly)", p.display()),
        }
    }
}

/// Where a client without `--socket` looks for its key service, in order. A user's own
/// service and own store come before a service run by someone else, so that a desktop
/// user with a store of their own never silently talks to root's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Socket(PathBuf),
    /// The store directly, because this user owns it.
    OwnStore,
}

/// The resolution order without `--socket`: the caller's own runtime socket, then the
/// store when the caller owns it, then the other sockets (the system one).
pub fn resolution_order(sockets: &[PathBuf], owns_store: bool) -> Vec<Attempt> {
    let mut order = Vec::new();
    let mut rest = sockets.iter();
    if let Some(own) = rest.next() {
        order.push(Attempt::Socket(own.clone()));
    }
    if owns_store {
        order.push(Attempt::OwnStore);
    }
    order.extend(rest.map(|p| Attempt::Socket(p.clone())));
    order
}

fn owns(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).is_ok_and(|m| m.uid() == nix::unistd::getuid().as_raw())
}

fn open_direct(
    global: &GlobalOpts,
    keys: &RootKeyOpts,
    dir: &Path,
    context: &str,
) -> anyhow::Result<(Box<dyn Backend>, Endpoint)> {
    let service = open_service(global, keys).context(context.to_string())?;
    Ok((
        Box::new(control::LocalBackend::new(service, self_caller())),
        Endpoint::Store(dir.to_path_buf()),
    ))
}

/// Reaches the key service (see [`connect_described`]).
pub fn connect(global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<Box<dyn Backend>> {
    Ok(connect_described(global, keys)?.0)
}

/// Reaches the key service and says which one answered: `--socket` if given (or, when
/// nothing listens there yet, the store); else [`resolution_order`]; else the store
/// directly, which fails with the reason when another user owns it.
pub fn connect_described(
    global: &GlobalOpts,
    keys: &RootKeyOpts,
) -> anyhow::Result<(Box<dyn Backend>, Endpoint)> {
    let dir = store_dir(global);
    if let Some(path) = &global.socket {
        if path.exists() {
            let c = SocketClient::connect(path)
                .with_context(|| format!("connecting to the key service at {}", path.display()))?;
            return Ok((Box::new(c), Endpoint::Socket(path.clone())));
        }
        // A named socket that does not exist yet: fall back to the store, so that
        // `KMSFS_SOCKET` set for a later mount does not break setup steps.
        if !dir.exists() {
            bail!(
                "no key service listens on {} and there is no store at {}",
                path.display(),
                dir.display()
            );
        }
        return open_direct(
            global,
            keys,
            &dir,
            &format!(
                "no key service listens on {}, and the store {} cannot be opened directly",
                path.display(),
                dir.display()
            ),
        );
    }
    let uid = nix::unistd::getuid().as_raw();
    let sockets = control::default_socket_paths(uid);
    for attempt in resolution_order(&sockets, owns(&dir)) {
        match attempt {
            Attempt::Socket(path) => {
                if let Ok(c) = SocketClient::connect(&path) {
                    return Ok((Box::new(c), Endpoint::Socket(path)));
                }
            }
            // The user's own store: use it, and report why it cannot be opened rather
            // than falling through to someone else's service.
            Attempt::OwnStore => {
                return open_direct(
                    global,
                    keys,
                    &dir,
                    &format!(
                    "your own store {} cannot be opened (give --socket to use another key service)",
                    dir.display()
                ),
                )
            }
        }
    }
    if !dir.exists() {
        bail!(
            "no key service is running and there is no store at {} (run `kmsfs init` first, or give --socket)",
            dir.display()
        );
    }
    open_direct(
        global,
        keys,
        &dir,
        &format!(
            "no key service is running, and the store {} cannot be opened directly",
            dir.display()
        ),
    )
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Also create a volume in this (empty or absent) backing directory.
    pub backing: Option<PathBuf>,
    /// The default key of the new volume's files (key id, ARN, alias).
    #[arg(long, default_value = "alias/kmsfs/default", requires = "backing")]
    pub key: String,
    /// The remote KMS of the volume's remote keys (an AWS-compatible endpoint URL, e.g.
    /// a central `kmsfs serve --listen`), stored in the volume file. Default: AWS's
    /// regional endpoint of each key ARN's region.
    #[arg(long, requires = "backing")]
    pub kms_endpoint: Option<String>,
}

pub fn run_init(args: &InitArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    let cfg = service_config(global, keys)?;
    let created = init_store(&cfg).map_err(kms_err)?;
    let dir = store_dir(global);
    if created {
        // Once, when the store is created, and on stderr so `--output json` stays clean.
        eprintln!("{}", backup_advice(&dir, &cfg.root_key));
    }
    let mut out = serde_json::json!({
        "Store": dir.display().to_string(),
        "StoreCreated": created,
    });
    if let Some(backing) = &args.backing {
        let service = Service::open(cfg).map_err(kms_err)?;
        let volume = crate::fs::mount::init_volume_with(
            backing,
            &args.key,
            args.kms_endpoint.as_deref(),
            service.as_ref(),
        )
        .map_err(|e| anyhow!("{e}"))?;
        out["Volume"] = serde_json::json!({
            "Backing": backing.display().to_string(),
            "VolumeId": volume.volume_id,
            "DefaultKey": args.key,
        });
        if let Some(url) = &volume.kms_endpoint {
            out["Volume"]["KmsEndpoint"] = serde_json::json!(url);
        }
    }
    let mut text = format!(
        "store {} ({})\n",
        dir.display(),
        if created { "created" } else { "exists" }
    );
    if let Some(v) = out.get("Volume") {
        text.push_str(&format!(
            "volume {} in {} (default key {})\n",
            v["VolumeId"].as_str().unwrap_or(""),
            v["Backing"].as_str().unwrap_or(""),
            args.key
        ));
    }
    crate::cli::output::print_own(&out, "Init", text, global.output)?;
    Ok(0)
}

/// What `init` tells the person who just created a store: losing it loses the data,
/// and how to keep a copy.
pub fn backup_advice(dir: &Path, root_key: &RootKeySource) -> String {
    let secret = match root_key {
        RootKeySource::Passphrase(_) => {
            "Its keys are sealed by your passphrase, which neither the store nor a backup \
             contains: without the passphrase, a copy is useless, so keep it safe as well."
                .to_string()
        }
        RootKeySource::KeyFile(k) => format!(
            "Keep a copy of the root key {} apart from the backup: a backup never contains \
             it and opens only with it.",
            k.display()
        ),
    };
    format!(
        "kmsfs: created the store {}. Every file encrypted under its keys is gone for good if \
         the store is lost.\n  Back it up now, and again after creating or changing keys: \
         kmsfs store backup FILE (docs/RECOVERY.md)\n  {secret}",
        dir.display()
    )
}

/// How often a running service applies due rotations and deletions.
const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

fn spawn_ticker(service: Arc<Service>) {
    // The audit log's syncer too: every long-running service starts here.
    if let Err(e) = service.start_audit_syncer() {
        log::warn!("{e}; audit records are synced by the calls instead");
    }
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
    #[command(flatten)]
    pub log: logging::LogOpts,
    #[command(flatten)]
    pub listen: crate::cli::listen::ListenOpts,
}

pub fn run_serve(args: &ServeArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    // Before forking: a prompt needs the terminal, and the passphrase leaves the
    // environment before the daemon exists.
    let cfg = service_config(global, keys)?;
    let foreground = !args.daemon;
    args.log.warn_if_unlogged(foreground);
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
        let path = listen_path(global);
        logging::install(
            &args.log,
            args.log.sink(foreground),
            &format!("serve {}", path.display()),
            None,
        )?;
        let service = Service::open(cfg).map_err(kms_err)?;
        let server = control::Server::bind(&path, service.clone())
            .with_context(|| format!("listening on {}", path.display()))?
            .with_privileged_uid(service.store_owner_uid());
        let running = server.spawn()?;
        let wire = args.listen.start(&service)?;
        spawn_ticker(service.clone());
        Ok((running, wire, path, service))
    })();
    let (running, wire, path, service) = match started {
        Ok(x) => x,
        Err(e) => {
            ready.failed(&format!("{e:#}"));
            return Err(e);
        }
    };
    if !args.daemon {
        eprintln!("kmsfs: key service listening on {}", path.display());
    }
    log::info!("key service listening on {}", path.display());
    ready.ready();
    daemon::wait_for_signal_or(|| false);
    if let Some(w) = wire {
        w.stop();
    }
    running.stop()?;
    sync_audit_at_exit(&service);
    Ok(0)
}

/// The records of the last interval reach the disk before the process exits.
fn sync_audit_at_exit(service: &Service) {
    if let Err(e) = service.sync_audit() {
        log::error!("{e}");
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The backing directory (created by `kmsfs init BACKING`).
    pub backing: PathBuf,
    /// Where the plaintext view appears: an existing, empty directory.
    pub mountpoint: PathBuf,
    /// Use this key for new files instead of the volume's default key (this mount only).
    #[arg(long)]
    pub key: Option<String>,
    /// Mount options: allow_other, default_permissions, ro, allow_root, nonempty, ...
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
    #[command(flatten)]
    pub log: logging::LogOpts,
    #[command(flatten)]
    pub listen: crate::cli::listen::ListenOpts,
}

/// Checks the mount point before anything starts, so the reason reaches the terminal. A
/// dead kmsfs mount left by a crashed daemon (ENOTCONN) is detached, and said so.
pub(crate) fn prepare_mountpoint(path: &Path, nonempty: bool) -> anyhow::Result<()> {
    use crate::fs::mount::{check_mountpoint, clear_stale_mount, MountpointError};
    match check_mountpoint(path, nonempty) {
        Ok(()) => Ok(()),
        Err(MountpointError::Stale { ours: true, .. }) => {
            clear_stale_mount(path).map_err(|e| {
                anyhow!(
                    "{} is a dead kmsfs mount and detaching it failed ({e}); run `fusermount3 -u -z {}`",
                    path.display(),
                    path.display()
                )
            })?;
            eprintln!(
                "kmsfs: {} was still mounted by a kmsfs process that died; detached that dead mount",
                path.display()
            );
            check_mountpoint(path, nonempty).map_err(|e| anyhow!("{e}"))
        }
        Err(e) => bail!("{e}"),
    }
}

/// What a mount process runs: the mount, and (unless refused) the control socket.
pub(crate) struct Running {
    session: crate::fs::MountSession,
    server: Option<control::RunningServer>,
    wire: Option<crate::wire::Running>,
    hold: Option<MountpointHold>,
    service: Arc<Service>,
}

impl Running {
    pub(crate) fn stop(self) -> anyhow::Result<()> {
        let result = self.session.umount();
        if let Some(w) = self.wire {
            w.stop();
        }
        if let Some(s) = self.server {
            let _ = s.stop();
        }
        sync_audit_at_exit(&self.service);
        // Only now, with the socket closed, may a waiting `kmsfs umount` return.
        drop(self.hold);
        result.map_err(|e| anyhow!("{e}"))
    }
}

/// A shared `flock` on the directory under the mount point, taken before mounting and
/// held by the mount process until its key service has stopped. The kernel detaches a
/// mount before the process notices, so without it `kmsfs umount` returned while the
/// old service still answered on its socket, and a script's next `kmsfs kms ...` could
/// reach that service just as it went away. [`run_umount`] waits for this hold.
pub(crate) struct MountpointHold {
    _dir: std::fs::File,
}

impl MountpointHold {
    /// Best effort: a mount point that cannot be opened or locked only loses the wait.
    fn take(mountpoint: &Path) -> Option<MountpointHold> {
        let dir = open_dir(mountpoint).ok()?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        (rc == 0).then_some(MountpointHold { _dir: dir })
    }
}

fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

/// How long `kmsfs umount` waits, after the detach, for the mount process to let go of
/// the mount point (it flushes nothing then, so moments are the norm).
const MOUNT_EXIT_TRIES: u32 = 200;
const MOUNT_EXIT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits (bounded) until no mount process holds a [`MountpointHold`] on `path`.
fn wait_for_mount_process(path: &Path) {
    let Ok(dir) = open_dir(path) else {
        return;
    };
    for _ in 0..MOUNT_EXIT_TRIES {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return;
        }
        std::thread::sleep(MOUNT_EXIT_RETRY);
    }
}

/// Opens the store, serves the socket (unless `no_socket`), and mounts.
pub(crate) fn start_mount(
    spec: &crate::fs::mount::MountSpec,
    no_socket: bool,
    global: &GlobalOpts,
    cfg: ServiceConfig,
) -> anyhow::Result<Running> {
    start_mount_listening(spec, no_socket, None, global, cfg)
}

/// [`start_mount`], also serving AWS KMS's HTTP API when `listen` asks for it.
pub(crate) fn start_mount_listening(
    spec: &crate::fs::mount::MountSpec,
    no_socket: bool,
    listen: Option<&crate::cli::listen::ListenOpts>,
    global: &GlobalOpts,
    cfg: ServiceConfig,
) -> anyhow::Result<Running> {
    let service = Service::open(cfg).map_err(kms_err)?;
    crate::cli::recovery::ensure_volume_of_this_store(&service, &spec.backing)?;
    let server = if no_socket {
        None
    } else {
        let path = listen_path(global);
        match control::Server::bind(&path, service.clone()) {
            Ok(s) => Some(s.with_privileged_uid(service.store_owner_uid()).spawn()?),
            // Another service (e.g. `kmsfs serve` or another mount) already serves
            // this socket: the mount still works, the CLI reaches that one.
            Err(e) => {
                log::warn!("not serving {}: {e}", path.display());
                None
            }
        }
    };
    let wire = match listen {
        Some(l) => l.start(&service)?,
        None => None,
    };
    spawn_ticker(service.clone());
    // Every open goes through the key router: local keys to this service as before,
    // remote key ARNs to the remote KMS as the caller's own AWS profile.
    let parsed = crate::fs::mount::parse_options(&spec.options).map_err(|e| anyhow!("{e}"))?;
    let volume = crate::format::VolumeConfig::load(&spec.backing).map_err(|e| anyhow!("{e}"))?;
    let keys_provider: Arc<dyn DataKeys> =
        crate::remote::router::for_volume(service.clone(), &volume, &parsed.remote);
    let hold = MountpointHold::take(&spec.mountpoint);
    let session = crate::fs::mount::mount(spec, keys_provider)
        .map_err(|e| anyhow!("mounting {}: {e}", spec.mountpoint.display()))?;
    Ok(Running {
        session,
        server,
        wire,
        hold,
        service,
    })
}

pub(crate) fn mount_options(
    options: &[String],
    key: Option<&str>,
) -> anyhow::Result<(Vec<String>, bool)> {
    let mut options = options.to_vec();
    if let Some(k) = key {
        options.push(format!("key={k}"));
    }
    let parsed = crate::fs::mount::parse_options(&options).map_err(|e| anyhow!("{e}"))?;
    Ok((options, parsed.nonempty))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn run_mount(args: &MountArgs, global: &GlobalOpts, keys: &RootKeyOpts) -> anyhow::Result<i32> {
    // Validate what can be validated before forking, so errors reach the terminal.
    let (options, nonempty) = mount_options(&args.options, args.key.as_deref())?;
    prepare_mountpoint(&args.mountpoint, nonempty)?;
    crate::format::VolumeConfig::load(&args.backing).map_err(|e| anyhow!("{e}"))?;
    // Before forking: a prompt needs the terminal, and the passphrase leaves the
    // environment before the daemon exists.
    let cfg = service_config(global, keys)?;
    args.log.warn_if_unlogged(args.foreground);
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
    let mountpoint = absolute(&args.mountpoint);
    let started = (|| -> anyhow::Result<_> {
        logging::install(
            &args.log,
            args.log.sink(args.foreground),
            &format!("mount {}", mountpoint.display()),
            None,
        )?;
        let spec = crate::fs::mount::MountSpec {
            backing: args.backing.clone(),
            mountpoint: args.mountpoint.clone(),
            options,
            threads: args.threads,
        };
        start_mount_listening(&spec, args.no_socket, Some(&args.listen), global, cfg)
    })();
    let running = match started {
        Ok(x) => x,
        Err(e) => {
            log::error!("{e:#}");
            ready.failed(&format!("{e:#}"));
            return Err(e);
        }
    };
    ready.ready();
    // Ends on a signal (then we unmount), when someone unmounts us, or when the FUSE
    // session fails (then we unmount rather than leave a mount that hangs its users).
    daemon::wait_for_signal_or(|| !is_mounted(&mountpoint) || !running.session.is_serving());
    let result = running.stop();
    match &result {
        Ok(()) => log::info!("unmounted"),
        Err(e) => log::error!("{e:#}"),
    }
    result?;
    Ok(0)
}

#[derive(Debug, Clone, clap::Args)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
    /// Detach now even if files are open (they keep working until closed), as
    /// `umount -l` does. Without it a busy mount is refused.
    #[arg(long, short = 'l')]
    pub lazy: bool,
}

pub fn run_umount(args: &UmountArgs) -> anyhow::Result<i32> {
    if !is_mounted(&args.mountpoint) {
        bail!("{} is not mounted", args.mountpoint.display());
    }
    match crate::fs::mount::unmount_with(&args.mountpoint, args.lazy) {
        Ok(()) => {}
        Err(crate::fs::FsError::Busy(p)) => bail!(
            "{} is busy: a file is open or a process works in it (see `fuser -vm {}`); \
             close them, or detach anyway with `kmsfs umount --lazy {}`",
            p.display(),
            p.display(),
            p.display()
        ),
        Err(e) => bail!("{e}"),
    }
    // Wait (bounded) for the mount process to finish flushing and exit.
    for _ in 0..100 {
        if !is_mounted(&args.mountpoint) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A lazy detach leaves open files working, so their process lives on: no wait.
    if !args.lazy && !is_mounted(&args.mountpoint) {
        wait_for_mount_process(&args.mountpoint);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_socket_then_own_store_then_the_system_socket() {
        let own = PathBuf::from("/run/user/1000/kmsfs/kms.sock");
        let system = PathBuf::from("/run/kmsfs/kms.sock");
        let both = [own.clone(), system.clone()];
        assert_eq!(
            resolution_order(&both, true),
            vec![
                Attempt::Socket(own.clone()),
                Attempt::OwnStore,
                Attempt::Socket(system.clone())
            ]
        );
        assert_eq!(
            resolution_order(&both, false),
            vec![Attempt::Socket(own), Attempt::Socket(system.clone())]
        );
        // Root: its own socket is the system one.
        assert_eq!(
            resolution_order(std::slice::from_ref(&system), true),
            vec![Attempt::Socket(system), Attempt::OwnStore]
        );
    }
}
