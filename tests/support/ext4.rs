//! A journaled ext4 on a loop device, for tests that need a real disk file system under
//! the volume: one that fills up, or one that loses power. Unmounted and detached on drop.

use std::fs;

/// An ext4 image file on a loop device, mounted at [`Ext4Image::root`].
pub struct Ext4Image {
    pub dir: tempfile::TempDir,
    loopdev: String,
    mounted: bool,
}

impl Ext4Image {
    /// A `mib` MiB image made by `mkfs.ext4 -q -F <mkfs_args>` and mounted; `None` when
    /// mkfs.ext4 or losetup is missing (the test then says so and does nothing).
    pub fn new(mib: u64, mkfs_args: &[&str]) -> Option<Ext4Image> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(mkfs_args)
            .arg(&img)
            .status()
            .ok()?;
        assert!(mkfs.success());
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .ok()?;
        assert!(out.status.success(), "{out:?}");
        let loopdev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        fs::create_dir(dir.path().join("fs")).unwrap();
        let mut image = Ext4Image {
            dir,
            loopdev,
            mounted: false,
        };
        image.mount();
        Some(image)
    }

    /// Where the file system is mounted.
    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("fs")
    }

    pub fn mount(&mut self) {
        nix::mount::mount(
            Some(self.loopdev.as_str()),
            &self.root(),
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        self.mounted = true;
    }

    /// Power loss as the disk sees it: the file system stops at once, neither the
    /// running journal transaction nor any dirty data is written (`EXT4_IOC_SHUTDOWN`
    /// with `EXT4_GOING_FLAGS_NOLOGFLUSH`, as xfstests' godown). Remounting replays the
    /// journal up to the last commit.
    pub fn crash(&mut self) {
        const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
        const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;
        let root = fs::File::open(self.root()).unwrap();
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: an ioctl on a valid descriptor with a pointer to a u32 it only reads.
        let r = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&root),
                EXT4_IOC_SHUTDOWN,
                &flags,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }

    /// Unmounts the file system, waiting until nothing holds it any more (a daemon
    /// that is still closing its descriptors after its unmount), so that a following
    /// [`Self::mount`] makes a new superblock: a lazy unmount would leave the old one
    /// alive, and mounting the same device again would then return it, still shut down
    /// after [`Self::crash`] (EIO on every access).
    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let start = std::time::Instant::now();
        loop {
            match nix::mount::umount2(&self.root(), nix::mount::MntFlags::empty()) {
                Ok(()) => break,
                // The bound only keeps a leaked descriptor from hanging the suite.
                Err(nix::errno::Errno::EBUSY)
                    if start.elapsed() < std::time::Duration::from_secs(60) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("umount {}: {e}", self.root().display()),
            }
        }
        self.mounted = false;
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.root(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.loopdev])
            .status();
    }
}
