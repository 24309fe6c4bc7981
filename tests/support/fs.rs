//! The filesystem tests' fixture (`fs_*.rs`): a `DataKeys` test double with a per-uid
//! allow table and key states that tests change at runtime, and a mount of a fresh volume
//! that always unmounts. No key service: the double decides.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kmsfs::crypto::{hkdf_sealing_key, DataKey, Sealer, SealingKey};
use kmsfs::fs::{MountSession, MountSpec};
use kmsfs::kms::provider::{Caller, DataAction, DataKeys, DirRule, NewDataKey, WrappedDataKey};
use kmsfs::kms::{ErrorKind, KmsError};
use kmsfs::policy::EncryptionContext;

pub use super::ext4::Ext4Image;
pub use super::{
    as_user, assert_failed_with, assert_ok, q, set_mode, sh_as, strerror, walk, Rng, Tmpfs,
};

pub const DEFAULT_ALIAS: &str = "alias/kmsfs/default";
pub const DEFAULT_KEY: &str = "arn:aws:kms:local:111122223333:key/default";

/// A new volume in `backing/` on `image`, made under [`DEFAULT_ALIAS`] with `keys`, and
/// the spec to mount it at `mnt/` beside the image (created here), with two threads.
pub fn image_volume(image: &Ext4Image, keys: &TestKeys) -> MountSpec {
    let backing = image.root().join("backing");
    let mnt = image.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    kmsfs::fs::init_volume(&backing, DEFAULT_ALIAS, keys).unwrap();
    MountSpec {
        backing,
        mountpoint: mnt,
        options: vec![],
        threads: 2,
    }
}

/// Mounts `spec` and checks that the mount is live, so that nothing after it writes into
/// the bare mountpoint.
pub fn mount_live(spec: &MountSpec, keys: &Arc<TestKeys>) -> MountSession {
    let session = kmsfs::fs::mount(spec, keys.clone()).unwrap();
    let mnt = &spec.mountpoint;
    assert!(crash::is_mounted(mnt), "not mounted at {}", mnt.display());
    session
}

/// Operations the double authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Generate,
    Decrypt,
    Encrypt,
}

/// Key states as the double models them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

#[derive(Default)]
struct Tables {
    /// Key ARN → state; absent = unknown/deleted key.
    keys: HashMap<String, KeyState>,
    /// Alias → key ARN.
    aliases: HashMap<String, String>,
    /// (uid, key ARN) → allowed operations.
    allow: HashMap<(u32, String), HashSet<Op>>,
}

/// One decision the double made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub uid: u32,
    pub key: String,
    pub op: Op,
    pub allowed: bool,
    pub context: EncryptionContext,
}

/// A `DataKeys` test double: wraps data keys under a fixed key (binding the key ARN and
/// the encryption context), decides by a per-(uid, key) allow table, and records every
/// decision.
pub struct TestKeys {
    wrapping: Sealer,
    secret_root: SealingKey,
    tables: Mutex<Tables>,
    pub decisions: Mutex<Vec<Decision>>,
    pub generate_calls: AtomicU64,
    pub open_calls: AtomicU64,
    /// The store's record of directory key rules, as the key service keeps it.
    dir_rules: Mutex<HashMap<(String, [u8; 16]), DirRule>>,
    /// Volumes whose format-1 key rules were imported.
    imported: Mutex<HashSet<String>>,
    /// Volume secrets given by the test (fixtures with fixed secrets).
    fixed_secrets: Mutex<HashMap<String, [u8; 32]>>,
}

impl TestKeys {
    /// A double with the default key (aliased as `alias/kmsfs/default`) enabled and root
    /// allowed everything on it.
    pub fn new() -> Arc<Self> {
        let keys = TestKeys {
            wrapping: Sealer::new(&SealingKey::from_bytes([7; 32])),
            secret_root: SealingKey::from_bytes([9; 32]),
            tables: Mutex::new(Tables::default()),
            decisions: Mutex::new(Vec::new()),
            generate_calls: AtomicU64::new(0),
            open_calls: AtomicU64::new(0),
            dir_rules: Mutex::new(HashMap::new()),
            imported: Mutex::new(HashSet::new()),
            fixed_secrets: Mutex::new(HashMap::new()),
        };
        keys.add_key(DEFAULT_KEY);
        keys.alias(DEFAULT_ALIAS, DEFAULT_KEY);
        keys.allow(0, DEFAULT_KEY, &[Op::Generate, Op::Decrypt, Op::Encrypt]);
        Arc::new(keys)
    }

    pub fn add_key(&self, arn: &str) {
        self.tables
            .lock()
            .unwrap()
            .keys
            .insert(arn.into(), KeyState::Enabled);
    }

    pub fn alias(&self, alias: &str, arn: &str) {
        self.tables
            .lock()
            .unwrap()
            .aliases
            .insert(alias.into(), arn.into());
    }

    pub fn set_state(&self, arn: &str, state: KeyState) {
        self.tables.lock().unwrap().keys.insert(arn.into(), state);
    }

    /// Deletes the key: every later use is NotFound.
    pub fn delete_key(&self, arn: &str) {
        self.tables.lock().unwrap().keys.remove(arn);
    }

    /// Replaces what `uid` may do with `arn`.
    pub fn allow(&self, uid: u32, arn: &str, ops: &[Op]) {
        self.tables
            .lock()
            .unwrap()
            .allow
            .insert((uid, arn.into()), ops.iter().copied().collect());
    }

    /// Volume `volume_id` gets this secret (e.g. a committed fixture's).
    pub fn set_volume_secret(&self, volume_id: &str, secret: [u8; 32]) {
        self.fixed_secrets
            .lock()
            .unwrap()
            .insert(volume_id.into(), secret);
    }

    /// The recorded key rule of a directory, as the key service would return it.
    pub fn recorded_dir_rule(&self, volume_id: &str, dir_id: &[u8; 16]) -> Option<DirRule> {
        self.dir_rules
            .lock()
            .unwrap()
            .get(&(volume_id.to_string(), *dir_id))
            .cloned()
    }

    pub fn opens(&self) -> u64 {
        self.open_calls.load(Ordering::SeqCst)
    }

    pub fn generates(&self) -> u64 {
        self.generate_calls.load(Ordering::SeqCst)
    }

    fn resolve(&self, key_id: &str) -> String {
        let t = self.tables.lock().unwrap();
        t.aliases
            .get(key_id)
            .cloned()
            .unwrap_or_else(|| key_id.to_string())
    }

    fn decide(
        &self,
        caller: &Caller,
        arn: &str,
        op: Op,
        context: &EncryptionContext,
    ) -> Result<(), KmsError> {
        let t = self.tables.lock().unwrap();
        let state = t.keys.get(arn).copied();
        let allowed = t
            .allow
            .get(&(caller.uid, arn.to_string()))
            .is_some_and(|ops| ops.contains(&op));
        drop(t);
        self.decisions.lock().unwrap().push(Decision {
            uid: caller.uid,
            key: arn.into(),
            op,
            allowed,
            context: context.clone(),
        });
        match state {
            None => {
                return Err(KmsError::new(
                    ErrorKind::NotFound,
                    format!("{arn} not found"),
                ))
            }
            Some(KeyState::Disabled) => {
                return Err(KmsError::new(
                    ErrorKind::Disabled,
                    format!("{arn} is disabled"),
                ))
            }
            Some(KeyState::PendingDeletion) => {
                return Err(KmsError::new(
                    ErrorKind::KmsInvalidState,
                    format!("{arn} is pending deletion"),
                ))
            }
            Some(KeyState::Enabled) => {}
        }
        if allowed {
            Ok(())
        } else {
            Err(KmsError::new(
                ErrorKind::AccessDenied,
                format!("uid {} may not {op:?} with {arn}", caller.uid),
            ))
        }
    }

    fn aad(arn: &str, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = arn.as_bytes().to_vec();
        for (k, v) in context {
            aad.push(0);
            aad.extend_from_slice(k.as_bytes());
            aad.push(0);
            aad.extend_from_slice(v.as_bytes());
        }
        aad
    }
}

impl DataKeys for TestKeys {
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, KmsError> {
        self.generate_calls.fetch_add(1, Ordering::SeqCst);
        let arn = self.resolve(key_id);
        self.decide(caller, &arn, Op::Generate, context)?;
        let key = DataKey::generate().unwrap();
        let sealed = self
            .wrapping
            .seal(&Self::aad(&arn, context), key.expose())
            .unwrap();
        let mut wrapped = (arn.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(arn.as_bytes());
        wrapped.extend_from_slice(&sealed);
        Ok(NewDataKey {
            key,
            wrapped,
            key_arn: arn,
        })
    }

    fn open_data_key(
        &self,
        caller: &Caller,
        _key_arn: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError> {
        self.open_calls.fetch_add(1, Ordering::SeqCst);
        let bad = || KmsError::new(ErrorKind::InvalidCiphertext, "bad blob");
        let len = u16::from_be_bytes([
            *wrapped.first().ok_or_else(bad)?,
            *wrapped.get(1).ok_or_else(bad)?,
        ]) as usize;
        let arn =
            std::str::from_utf8(wrapped.get(2..2 + len).ok_or_else(bad)?).map_err(|_| bad())?;
        for action in actions {
            let op = match action {
                DataAction::Decrypt => Op::Decrypt,
                DataAction::Encrypt => Op::Encrypt,
            };
            self.decide(caller, arn, op, context)?;
        }
        let plain = self
            .wrapping
            .open(&Self::aad(arn, context), &wrapped[2 + len..])
            .map_err(|_| bad())?;
        DataKey::from_slice(&plain).ok_or_else(bad)
    }

    fn wrap_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedDataKey, KmsError> {
        let arn = self.resolve(key_id);
        self.decide(caller, &arn, Op::Encrypt, context)?;
        let sealed = self
            .wrapping
            .seal(&Self::aad(&arn, context), key.expose())
            .unwrap();
        let mut wrapped = (arn.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(arn.as_bytes());
        wrapped.extend_from_slice(&sealed);
        Ok(WrappedDataKey {
            wrapped,
            key_arn: arn,
        })
    }

    fn dir_rule(&self, volume_id: &str, dir_id: &[u8; 16]) -> Result<Option<DirRule>, KmsError> {
        Ok(self.recorded_dir_rule(volume_id, dir_id))
    }

    fn record_dir_rule(
        &self,
        _caller: &Caller,
        volume_id: &str,
        dir_id: &[u8; 16],
        rule: &DirRule,
    ) -> Result<(), KmsError> {
        let mut rules = self.dir_rules.lock().unwrap();
        let key = (volume_id.to_string(), *dir_id);
        if !DirRule::may_replace(rules.get(&key), rule) {
            return Err(KmsError::new(
                ErrorKind::KmsInvalidState,
                "older directory key rule",
            ));
        }
        rules.insert(key, rule.clone());
        Ok(())
    }

    fn dir_rules_imported(&self, volume_id: &str) -> Result<bool, KmsError> {
        Ok(self.imported.lock().unwrap().contains(volume_id))
    }

    fn import_dir_rules(
        &self,
        volume_id: &str,
        rules: &[([u8; 16], String)],
    ) -> Result<(), KmsError> {
        if !self.imported.lock().unwrap().insert(volume_id.to_string()) {
            return Ok(());
        }
        let mut recorded = self.dir_rules.lock().unwrap();
        for (dir_id, rule) in rules {
            recorded
                .entry((volume_id.to_string(), *dir_id))
                .or_insert_with(|| DirRule {
                    version: 0,
                    rule: Some(rule.clone()),
                });
        }
        Ok(())
    }

    fn volume_secret(&self, volume_id: &str) -> Result<SealingKey, KmsError> {
        if let Some(secret) = self.fixed_secrets.lock().unwrap().get(volume_id) {
            return Ok(SealingKey::from_bytes(*secret));
        }
        Ok(hkdf_sealing_key(
            &self.secret_root,
            volume_id.as_bytes(),
            b"test volume secret",
        ))
    }
}

/// A mounted test volume in its own temp dirs. Unmounts on drop.
pub struct Mounted {
    pub keys: Arc<TestKeys>,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    session: Option<MountSession>,
    /// Dropped after the FUSE mount is gone (see `Drop`), before the temp dir.
    _tmpfs: Option<Tmpfs>,
    _dir: tempfile::TempDir,
}

/// The options most tests use: other uids may enter, the kernel checks modes.
pub const MULTI_USER: &[&str] = &["allow_other", "default_permissions"];

impl Mounted {
    /// A fresh volume (default key `alias/kmsfs/default`) mounted with `options`.
    pub fn new(options: &[&str]) -> Self {
        Self::with_keys(TestKeys::new(), options)
    }

    pub fn with_keys(keys: Arc<TestKeys>, options: &[&str]) -> Self {
        Self::build(keys, options, None)
    }

    /// A fresh volume whose backing directory is a tmpfs of `size` (e.g. "8m"), so that
    /// the disk really fills up. The tmpfs is unmounted after the FUSE mount, on drop.
    pub fn on_tmpfs(size: &str, options: &[&str]) -> Self {
        Self::build(TestKeys::new(), options, Some(size))
    }

    fn build(keys: Arc<TestKeys>, options: &[&str], tmpfs_size: Option<&str>) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "fs tests need root and /dev/fuse"
        );
        let dir = tempfile::Builder::new()
            .prefix("kmsfs-test-")
            .tempdir()
            .unwrap();
        // Other uids must traverse to the mountpoint.
        set_mode(dir.path(), 0o755);
        let backing = dir.path().join("backing");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let tmpfs = tmpfs_size.map(|size| Tmpfs::mount(&backing, size));
        kmsfs::fs::init_volume(&backing, DEFAULT_ALIAS, keys.as_ref()).unwrap();
        // The mount's root shows the backing root's mode: let every uid create files.
        set_mode(&backing, 0o1777);
        let mut m = Mounted {
            keys,
            backing,
            mnt,
            session: None,
            _tmpfs: tmpfs,
            _dir: dir,
        };
        m.mount(options);
        m
    }

    /// Panics unless a FUSE file system is mounted at the mountpoint (so a test never
    /// writes into the bare directory underneath by mistake).
    pub fn assert_live(&self) {
        let st = nix::sys::statfs::statfs(&self.mnt).unwrap();
        assert_eq!(
            st.filesystem_type(),
            nix::sys::statfs::FUSE_SUPER_MAGIC,
            "{} is not a live FUSE mount",
            self.mnt.display()
        );
    }

    pub fn mount(&mut self, options: &[&str]) {
        assert!(self.session.is_none());
        let spec = MountSpec {
            backing: self.backing.clone(),
            mountpoint: self.mnt.clone(),
            options: options.iter().map(|s| s.to_string()).collect(),
            threads: 3,
        };
        self.session = Some(kmsfs::fs::mount(&spec, self.keys.clone()).unwrap());
    }

    /// Unmounts (and waits for the session to end).
    pub fn unmount(&mut self) {
        if let Some(s) = self.session.take() {
            s.umount().unwrap();
        }
    }

    pub fn remount(&mut self, options: &[&str]) {
        self.unmount();
        self.mount(options);
    }

    pub fn session(&self) -> &MountSession {
        self.session.as_ref().unwrap()
    }

    pub fn take_session(&mut self) -> MountSession {
        self.session.take().unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Every regular file under the backing directory that holds content (not metadata).
    pub fn backing_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.backing, &mut out);
        out.retain(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            !name.contains('.') || (name.starts_with("kmsfs.ln.") && !name.ends_with(".name"))
        });
        out.sort();
        out
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount();
        }
    }
}

pub fn context_of(d: &Decision) -> BTreeMap<String, String> {
    d.context.clone()
}

/// Crash tests (`fs_*_crash.rs`): what a daemon killed with SIGKILL leaves behind.
pub mod crash {
    use std::path::{Path, PathBuf};

    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::waitpid;
    use nix::unistd::Pid;

    /// Detaches whatever a killed daemon left mounted, also when the test fails.
    pub struct Detach(pub PathBuf);

    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// Kills the daemon if the test fails before it does.
    pub struct Reap(pub Pid);

    impl Drop for Reap {
        fn drop(&mut self) {
            if kill(self.0, Signal::SIGKILL).is_ok() {
                let _ = waitpid(self.0, None);
            }
        }
    }

    /// Forks a child that mounts `backing` at `mnt` with `options` (a fresh test key
    /// service: the same wrapping key, so the parent can unwrap) and sleeps until it is
    /// killed; `accept` checks the session (else the child exits 3). Returns once the
    /// mount is live; the [`Reap`] kills the child if the test fails first.
    pub fn spawn_daemon(
        backing: &Path,
        mnt: &Path,
        options: &[&str],
        accept: fn(&kmsfs::fs::MountSession) -> bool,
    ) -> Reap {
        use nix::unistd::{fork, ForkResult};
        use std::time::{Duration, Instant};
        // SAFETY: the child runs only the mount (this crate's code) and sleeps until killed.
        let daemon = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let spec = kmsfs::fs::MountSpec {
                    backing: backing.to_path_buf(),
                    mountpoint: mnt.to_path_buf(),
                    options: options.iter().map(|o| o.to_string()).collect(),
                    threads: 2,
                };
                match kmsfs::fs::mount(&spec, super::TestKeys::new()) {
                    Ok(s) if accept(&s) => loop {
                        std::thread::sleep(Duration::from_secs(1));
                    },
                    _ => unsafe { libc::_exit(3) },
                }
            }
            ForkResult::Parent { child } => child,
        };
        let reap = Reap(daemon);
        let start = Instant::now();
        while !is_mounted(mnt) {
            // The bound only keeps a broken child from hanging the suite.
            assert!(start.elapsed() < Duration::from_secs(60), "no mount");
            std::thread::sleep(Duration::from_millis(5));
        }
        reap
    }

    /// Whether something is mounted at `mnt` (another device than its parent's): a
    /// killed daemon's mount answers ENOTCONN, which counts as not mounted.
    pub fn is_mounted(mnt: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(m), Ok(p)) = (std::fs::metadata(mnt), std::fs::metadata(mnt.join(".."))) else {
            return false;
        };
        m.dev() != p.dev()
    }
}
