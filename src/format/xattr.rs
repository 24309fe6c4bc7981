//! Values of `user.*` extended attributes (docs/FORMAT.md, "Symlinks and extended
//! attributes"): stored on the backing object under the same name, sealed with a key
//! derived from the volume secret and the attribute name as associated data. Other
//! namespaces pass through unencrypted. The filesystem seals and opens values with this;
//! fsck checks them with it too. Also reads the attributes of an open backing object
//! (never by path, so never through a symlink).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::crypto::{hkdf_sealing_key, Sealer, SealingKey};

use super::{FormatError, DIR_ID_XATTR};

/// HKDF info label of the `user.*` xattr value key (derived from the volume secret).
pub const XATTR_KEY_INFO: &[u8] = b"kmsfs v1 xattr value";

/// Seals and opens `user.*` attribute values of one volume.
pub struct XattrCipher(Sealer);

impl XattrCipher {
    pub fn new(volume_secret: &SealingKey) -> Self {
        XattrCipher(Sealer::new(&hkdf_sealing_key(
            volume_secret,
            b"",
            XATTR_KEY_INFO,
        )))
    }

    /// Whether values of this attribute are stored sealed.
    pub fn is_sealed(name: &OsStr) -> bool {
        name.as_bytes().starts_with(b"user.")
    }

    pub fn seal(&self, name: &OsStr, value: &[u8]) -> Result<Vec<u8>, FormatError> {
        self.0
            .seal(name.as_bytes(), value)
            .map_err(|_| FormatError::Random)
    }

    /// The plaintext value; [`FormatError::XattrAuthentication`] if `stored` is not a
    /// value sealed for this attribute name in this volume.
    pub fn open(&self, name: &OsStr, stored: &[u8]) -> Result<Vec<u8>, FormatError> {
        self.0
            .open(name.as_bytes(), stored)
            .map(|p| p.to_vec())
            .map_err(|_| FormatError::XattrAuthentication {
                name: name.to_string_lossy().into_owned(),
            })
    }
}

/// The names and stored values of the sealed (`user.*`) attributes of `file`. A file
/// system without extended attributes has none.
pub fn sealed_attributes(file: &File) -> std::io::Result<Vec<(OsString, Vec<u8>)>> {
    let names = match read_sized(|buf, len| {
        // SAFETY: buf is NULL with len 0 (a size query) or valid for writes of len bytes.
        unsafe { libc::flistxattr(file.as_raw_fd(), buf.cast(), len) }
    }) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsString::from_vec(name.to_vec());
        // The directory id attribute is kmsfs's own, MAC'd, not a sealed user value.
        if !XattrCipher::is_sealed(&name) || name.as_bytes() == DIR_ID_XATTR.as_bytes() {
            continue;
        }
        let c_name = CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let value = match read_sized(|buf, len| {
            // SAFETY: c_name is NUL-terminated; buf is NULL with len 0 or valid for len
            // bytes.
            unsafe { libc::fgetxattr(file.as_raw_fd(), c_name.as_ptr(), buf.cast(), len) }
        }) {
            Ok(v) => v,
            // Removed between the listing and the read: nothing to check.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The value of directory `dir`'s [`DIR_ID_XATTR`] (opened without following a
/// symlink); `None` when it has none or its file system has no user attributes.
pub fn dir_id_attr(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    let name = CString::new(DIR_ID_XATTR).map_err(std::io::Error::other)?;
    match read_sized(|buf, len| {
        // SAFETY: name is NUL-terminated; buf is NULL with len 0 or valid for len bytes.
        unsafe { libc::fgetxattr(dir.as_raw_fd(), name.as_ptr(), buf.cast(), len) }
    }) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Calls a size-query-then-fill system call until the buffer was large enough.
fn read_sized(call: impl Fn(*mut u8, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len.unsigned_abs()];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n.unsigned_abs());
            return Ok(buf);
        }
        let e = std::io::Error::last_os_error();
        // The list or value grew between the two calls: ask again.
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_attributes_are_sealed() {
        for name in ["user.comment", "user.", "user.mime_type"] {
            assert!(XattrCipher::is_sealed(OsStr::new(name)), "{name}");
        }
        // The kernel and other tools read these namespaces' values as they are
        // (capabilities, ACLs, SELinux labels): sealing them would break them.
        for name in [
            "security.capability",
            "system.posix_acl_access",
            "trusted.overlay.opaque",
            "user",
            "User.comment",
            "",
        ] {
            assert!(!XattrCipher::is_sealed(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn values_open_only_under_their_own_name() {
        let cipher = XattrCipher::new(&SealingKey::from_bytes([5; 32]));
        let name = OsStr::new("user.a");
        let stored = cipher.seal(name, b"value").unwrap();
        assert_ne!(&stored[..], b"value");
        assert_eq!(cipher.open(name, &stored).unwrap(), b"value");
        assert!(matches!(
            cipher.open(OsStr::new("user.b"), &stored),
            Err(FormatError::XattrAuthentication { name }) if name == "user.b"
        ));
    }
}
