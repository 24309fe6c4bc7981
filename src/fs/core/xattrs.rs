//! Extended attributes: values sealed under the volume's metadata key where the name
//! says so; the key-rule attribute is handed to [`super::keyrules`]. The directory id
//! attribute ([`DIR_ID_XATTR`]) is kmsfs's own: never listed, read, set or removed
//! through the mount (it is absent to users: a set is `EPERM`).

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::format::{XattrCipher, DIR_ID_XATTR};
use crate::kms::provider::Caller;

use super::keyrules;
use crate::fs::error::FsError;
use crate::fs::inode::{Node, NodeKind};
use crate::fs::sys;

use super::{Core, XattrReply};

/// The extended attribute that holds a file's capabilities.
const FILE_CAPS_XATTR: &str = "security.capability";

impl Core {
    fn xattr_node(&self, ino: u64) -> Result<Arc<Node>, FsError> {
        let node = self.inodes.get(ino)?;
        match node.kind {
            NodeKind::File | NodeKind::Directory => Ok(node),
            _ => Err(FsError::refused(
                libc::EOPNOTSUPP,
                "xattrs on special files",
            )),
        }
    }

    pub fn setxattr(
        &self,
        caller: &Caller,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        self.writable()?;
        let node = self.xattr_node(ino)?;
        if name == DIR_ID_XATTR {
            return Err(FsError::refused(libc::EPERM, "reserved extended attribute"));
        }
        if name == crate::fs::KEY_RULE_XATTR {
            self.may_change_key_rule(caller, &node)?;
            return self.set_key_rule(caller, &node, Some(value));
        }
        // Before the backing change: a GETXATTR answered from the node meanwhile is
        // one answered before this SETXATTR.
        node.xattrs_changing();
        if XattrCipher::is_sealed(name) {
            let sealed = self.secrets.xattrs.seal(name, value)?;
            sys::set_xattr(node.fd.as_fd(), name, &sealed, flags)
        } else {
            sys::set_xattr(node.fd.as_fd(), name, value, flags)
        }
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> Result<XattrReply, FsError> {
        let node = self.xattr_node(ino)?;
        if name == DIR_ID_XATTR {
            return Err(FsError::refused(
                libc::ENODATA,
                "reserved extended attribute",
            ));
        }
        if name == crate::fs::KEY_RULE_XATTR {
            let meta = self.key_rule_dir(&node)?;
            keyrules::check(self.keys.as_ref(), &self.volume.volume_id, &node.fd, &meta)?;
            return match meta.key_rule {
                Some(rule) => sized_reply(rule.into_bytes(), size),
                None => Err(FsError::refused(libc::ENODATA, "no key rule")),
            };
        }
        // The kernel asks for this before the first write into every file; for a file
        // this mount created and whose xattrs it has not changed since, the answer is
        // known (see `Node::known_without_caps`).
        if name == FILE_CAPS_XATTR && node.known_without_caps() {
            return Err(FsError::refused(libc::ENODATA, "no file capabilities"));
        }
        let stored = sys::get_xattr(node.fd.as_fd(), name)?;
        let value = if XattrCipher::is_sealed(name) {
            self.secrets.xattrs.open(name, &stored)?
        } else {
            stored
        };
        sized_reply(value, size)
    }

    pub fn listxattr(&self, ino: u64, size: u32) -> Result<XattrReply, FsError> {
        let node = self.xattr_node(ino)?;
        let names = sys::list_xattr(node.fd.as_fd())?;
        sized_reply(without_name(&names, DIR_ID_XATTR.as_bytes()), size)
    }

    pub fn removexattr(&self, caller: &Caller, ino: u64, name: &OsStr) -> Result<(), FsError> {
        self.writable()?;
        let node = self.xattr_node(ino)?;
        if name == DIR_ID_XATTR {
            return Err(FsError::refused(
                libc::ENODATA,
                "reserved extended attribute",
            ));
        }
        if name == crate::fs::KEY_RULE_XATTR {
            self.may_change_key_rule(caller, &node)?;
            return self.set_key_rule(caller, &node, None);
        }
        node.xattrs_changing();
        sys::remove_xattr(node.fd.as_fd(), name)
    }
}

/// A NUL-separated list of names without `name`.
fn without_name(list: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for entry in list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty() && *n != name)
    {
        out.extend_from_slice(entry);
        out.push(0);
    }
    out
}

fn sized_reply(value: Vec<u8>, size: u32) -> Result<XattrReply, FsError> {
    let len = u32::try_from(value.len()).map_err(|_| FsError::refused(libc::E2BIG, "xattr"))?;
    if size == 0 {
        Ok(XattrReply::Size(len))
    } else if len > size {
        Err(FsError::refused(libc::ERANGE, "xattr buffer too small"))
    } else {
        Ok(XattrReply::Data(value))
    }
}
