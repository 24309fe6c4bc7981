//! Mount lifecycle used by the CLI: parse `-o` options, open the volume, start a
//! multithreaded FUSE session, and unmount (lazily, so open files keep working until
//! closed; every acknowledged write is already in the backing file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::format::{DirMeta, MetadataKey, VolumeConfig};
use crate::kms::provider::DataKeys;

use super::core::Core;
use super::error::FsError;
use super::fuse::KmsFs;

/// Default number of FUSE worker threads.
pub const DEFAULT_THREADS: usize = 4;

/// What to mount where, as the CLI received it.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The backing directory (holding `kmsfs.volume`).
    pub backing: PathBuf,
    /// Where the plaintext view appears.
    pub mountpoint: PathBuf,
    /// The `-o` options, one per element (`allow_other`, `default_permissions`, `ro`,
    /// `fsname=...`, `subtype=...`, `allow_root`, `auto_unmount`, `nosuid`, `nodev`,
    /// `noexec`, `noatime`, ...). A mount shared by several users wants
    /// `allow_other,default_permissions`: the key service gates every open, and the
    /// kernel's mode checks then also protect names (unlink, rename) and attributes.
    pub options: Vec<String>,
    /// FUSE worker threads (1..=16; 0 means [`DEFAULT_THREADS`]).
    pub threads: usize,
}

/// Mount options in fuser's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    pub mount_options: Vec<MountOption>,
    pub acl: SessionACL,
    pub read_only: bool,
    /// `key=KEY`: new files use KEY where no directory rule applies (this mount only).
    pub default_key: Option<String>,
}

/// Parses `-o` options (each element may itself be comma-separated). Unknown options are
/// refused with their name, so that a typo never silently weakens a mount.
pub fn parse_options(options: &[String]) -> Result<ParsedOptions, FsError> {
    let mut out = Vec::new();
    let mut acl = SessionACL::Owner;
    let mut read_only = false;
    let mut default_key = None;
    let mut fsname = None;
    let mut subtype = None;
    for opt in options.iter().flat_map(|o| o.split(',')).map(str::trim) {
        match opt {
            "" => {}
            "allow_other" => acl = SessionACL::All,
            "allow_root" => acl = SessionACL::RootAndOwner,
            "default_permissions" => out.push(MountOption::DefaultPermissions),
            "ro" => {
                read_only = true;
                out.push(MountOption::RO);
            }
            "rw" => out.push(MountOption::RW),
            "auto_unmount" => out.push(MountOption::AutoUnmount),
            "nosuid" => out.push(MountOption::NoSuid),
            "suid" => out.push(MountOption::Suid),
            "nodev" => out.push(MountOption::NoDev),
            "dev" => out.push(MountOption::Dev),
            "noexec" => out.push(MountOption::NoExec),
            "exec" => out.push(MountOption::Exec),
            "noatime" => out.push(MountOption::NoAtime),
            "atime" => out.push(MountOption::Atime),
            "sync" => out.push(MountOption::Sync),
            "async" => out.push(MountOption::Async),
            "dirsync" => out.push(MountOption::DirSync),
            o if o.starts_with("key=") && o.len() > 4 => default_key = Some(o[4..].to_string()),
            o if o.starts_with("fsname=") => fsname = Some(o["fsname=".len()..].to_string()),
            o if o.starts_with("subtype=") => subtype = Some(o["subtype=".len()..].to_string()),
            o => return Err(FsError::Mount(format!("unknown mount option `{o}`"))),
        }
    }
    out.push(MountOption::FSName(
        fsname.unwrap_or_else(|| "kmsfs".into()),
    ));
    out.push(MountOption::Subtype(
        subtype.unwrap_or_else(|| "kmsfs".into()),
    ));
    if out.contains(&MountOption::AutoUnmount) && acl == SessionACL::Owner {
        // fuser requires a non-owner ACL for auto_unmount; allow_root is the narrowest.
        acl = SessionACL::RootAndOwner;
    }
    Ok(ParsedOptions {
        mount_options: out,
        acl,
        read_only,
        default_key,
    })
}

/// A live mount. Unmounts (lazily) and waits for the session to end on [`Self::umount`]
/// or on drop.
pub struct MountSession {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    core: Arc<Core>,
}

impl std::fmt::Debug for MountSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountSession")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl MountSession {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Number of files currently open through this mount.
    pub fn open_files(&self) -> usize {
        self.core.open_files()
    }

    /// Detaches the mount (files still open keep working) and waits until the kernel
    /// ends the session, i.e. until the last open file is closed.
    pub fn umount(mut self) -> Result<(), FsError> {
        self.finish()
    }

    /// Waits until the mount is unmounted by someone else (`kmsfs umount`,
    /// `fusermount3 -u`) and the session ends.
    pub fn wait(mut self) -> Result<(), FsError> {
        match self.session.take() {
            Some(s) => s
                .join()
                .map_err(|e| FsError::Mount(format!("FUSE session ended with an error: {e}"))),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), FsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let detached = unmount(&self.mountpoint);
        let joined = session
            .join()
            .map_err(|e| FsError::Mount(format!("FUSE session ended with an error: {e}")));
        detached.and(joined)
    }
}

impl Drop for MountSession {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("unmounting {}: {e}", self.mountpoint.display());
        }
    }
}

/// Mounts the volume in `spec.backing` at `spec.mountpoint` and returns once the mount
/// is live. The volume's name key comes from `keys.volume_secret(volume id)`; every open
/// is authorized through `keys`.
pub fn mount(spec: &MountSpec, keys: Arc<dyn DataKeys>) -> Result<MountSession, FsError> {
    let parsed = parse_options(&spec.options)?;
    let threads = match spec.threads {
        0 => DEFAULT_THREADS,
        n => n.min(16),
    };
    let mut core = Core::open_volume(&spec.backing, keys, parsed.read_only)?;
    if let Some(key) = &parsed.default_key {
        core.override_default_key(key.clone());
    }
    let core = Arc::new(core);
    raise_fd_limit();
    let mut config = Config::default();
    config.mount_options = parsed.mount_options;
    config.acl = parsed.acl;
    config.n_threads = Some(threads);
    config.clone_fd = true;
    let session = fuser::spawn_mount(KmsFs::new(core.clone()), &spec.mountpoint, &config)
        .map_err(|e| FsError::Mount(format!("{}: {e}", spec.mountpoint.display())))?;
    Ok(MountSession {
        mountpoint: spec.mountpoint.clone(),
        session: Some(session),
        core,
    })
}

/// Creates a new volume in `backing` (which must be empty or absent) whose new files use
/// `default_key`: writes the volume file, authenticates it with the volume secret the key
/// service holds for the new volume id, and writes the root directory's metadata.
pub fn init_volume(
    backing: &Path,
    default_key: &str,
    keys: &dyn DataKeys,
) -> Result<VolumeConfig, FsError> {
    let mut volume = VolumeConfig::create(backing, default_key)?;
    let secret = keys.volume_secret(&volume.volume_id)?;
    let key = MetadataKey::new(&secret);
    volume.save(backing, &key)?;
    DirMeta::create(backing, None, &key)?;
    // A new volume has no format-1 key rules: nothing to import, no first-mount window.
    keys.import_dir_rules(&volume.volume_id, &[])?;
    Ok(volume)
}

/// Unmounts `mountpoint` lazily (MNT_DETACH; via `fusermount3 -u -z` when not root):
/// new accesses fail at once, open files keep working until closed.
pub fn unmount(mountpoint: &Path) -> Result<(), FsError> {
    match nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let out = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg("--")
                .arg(mountpoint)
                .output()
                .map_err(|e| FsError::Mount(format!("running fusermount3: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(FsError::Mount(format!(
                    "fusermount3 -u {}: {}",
                    mountpoint.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
        // Already unmounted (or never was): nothing to do.
        Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(FsError::Mount(format!(
            "umount {}: {e}",
            mountpoint.display()
        ))),
    }
}

/// Each inode the kernel holds costs one `O_PATH` descriptor: raise the soft limit to
/// the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_map_to_fuser_and_default_the_fsname() {
        let p = parse_options(&opts(&["allow_other,default_permissions", "ro"])).unwrap();
        assert_eq!(p.acl, SessionACL::All);
        assert!(p.read_only);
        assert!(p.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(p.mount_options.contains(&MountOption::RO));
        assert!(p
            .mount_options
            .contains(&MountOption::FSName("kmsfs".into())));
        let p = parse_options(&opts(&["fsname=mine"])).unwrap();
        assert!(p
            .mount_options
            .contains(&MountOption::FSName("mine".into())));
        assert_eq!(p.acl, SessionACL::Owner);
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let e = parse_options(&opts(&["allow_others"])).unwrap_err();
        assert!(e.to_string().contains("allow_others"), "{e}");
    }
}
