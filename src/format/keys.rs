//! The keys of one volume that come from its volume secret: names, directory metadata,
//! symlink targets and `user.*` extended-attribute values. Derived here only, so the
//! filesystem, fsck and the fuzz targets seal and open those bytes with the same keys.
//! Content keys are not among them: each file's data key comes from the key service.

use crate::crypto::SealingKey;

use super::{MetadataKey, NameCipher, SymlinkCipher, XattrCipher};

/// Everything sealed under keys derived from the volume secret.
pub struct VolumeKeys {
    pub names: NameCipher,
    pub metadata: MetadataKey,
    pub symlinks: SymlinkCipher,
    pub xattrs: XattrCipher,
}

impl VolumeKeys {
    pub fn new(volume_secret: &SealingKey) -> Self {
        VolumeKeys {
            names: NameCipher::new(volume_secret),
            metadata: MetadataKey::new(volume_secret),
            symlinks: SymlinkCipher::new(volume_secret),
            xattrs: XattrCipher::new(volume_secret),
        }
    }
}
