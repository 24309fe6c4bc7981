//! Per-directory metadata `kmsfs.dir`: the directory id (the tweak of every name in the
//! directory), an optional key rule and the rule's version, authenticated with the
//! [`MetadataKey`]. Never decides which key rule applies to a path (that walk belongs to
//! the filesystem), and never decides whether a version is current (the key service's
//! record of the directory is the authority; see docs/FORMAT.md).

use std::path::{Path, PathBuf};

use super::volume::{
    parse_id_hex, push_len_prefixed, toml_string, validate_key_id, MetadataKey, TomlFields,
};
use super::{atomic, FormatError, DIR_META_NAME};

/// Domain separator at the start of a version-0 (format 1) directory metadata MAC input.
const DIR_MAC_LABEL: &[u8] = b"kmsfs v1 dir\0";
/// Domain separator of the MAC input of a file with a `version` (1 and above).
const DIR_MAC_LABEL_V2: &[u8] = b"kmsfs v2 dir\0";

/// The backing extended attribute that holds a directory's id besides `kmsfs.dir`
/// (docs/FORMAT.md, "The directory id attribute"). Metadata, so on a journaling backing
/// file system it is committed no later than any name created in the directory, which
/// lets a new directory's `kmsfs.dir` be written without an fsync. Reserved: the mount
/// neither lists nor lets users get, set or remove it.
pub const DIR_ID_XATTR: &str = "user.kmsfs.dir";
/// Domain separator of the attribute's MAC input (no other MAC input starts with it).
const DIR_ID_XATTR_LABEL: &[u8] = b"kmsfs v1 dir id xattr\0";
/// First byte of the attribute's value.
const DIR_ID_XATTR_VERSION: u8 = 1;
/// Length of the attribute's value: version, id, MAC.
pub const DIR_ID_XATTR_LEN: usize = 1 + 16 + 32;

/// A directory's random 128-bit id; the associated data of its entries' names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirId(pub [u8; 16]);

impl DirId {
    /// A fresh random id.
    pub fn generate() -> Result<DirId, FormatError> {
        let mut id = [0u8; 16];
        crate::crypto::random_fill(&mut id).map_err(|_| FormatError::Random)?;
        Ok(DirId(id))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The value of [`DIR_ID_XATTR`]: `1 | id (16) | HMAC(label | id) (32)`.
    pub fn attr_value(&self, key: &MetadataKey) -> Vec<u8> {
        let mut value = Vec::with_capacity(DIR_ID_XATTR_LEN);
        value.push(DIR_ID_XATTR_VERSION);
        value.extend_from_slice(&self.0);
        value.extend_from_slice(&key.mac(&Self::attr_mac_input(&self.0)));
        value
    }

    /// The id in a [`DIR_ID_XATTR`] value, or `None` if the value is not one kmsfs
    /// wrote for this volume (wrong length or version, MAC fails).
    pub fn from_attr_value(value: &[u8], key: &MetadataKey) -> Option<DirId> {
        let (&version, rest) = value.split_first()?;
        if version != DIR_ID_XATTR_VERSION || rest.len() != DIR_ID_XATTR_LEN - 1 {
            return None;
        }
        let (id, mac) = rest.split_at(16);
        let id: [u8; 16] = id.try_into().ok()?;
        let mac: [u8; 32] = mac.try_into().ok()?;
        key.verify(&Self::attr_mac_input(&id), &mac)
            .then_some(DirId(id))
    }

    fn attr_mac_input(id: &[u8; 16]) -> Vec<u8> {
        let mut input = Vec::with_capacity(DIR_ID_XATTR_LABEL.len() + 16);
        input.extend_from_slice(DIR_ID_XATTR_LABEL);
        input.extend_from_slice(id);
        input
    }
}

/// What [`resolve`] made of a directory's `kmsfs.dir` and [`DIR_ID_XATTR`].
#[derive(Debug)]
pub struct Resolved {
    pub meta: DirMeta,
    /// `Some(why)` when the file was lost to a crash and `meta` comes from the
    /// attribute: the file should be rewritten from `meta` (version 0, no rule).
    pub repair: Option<&'static str>,
    /// The attribute was there but is not one kmsfs wrote (the valid file was used).
    pub attr_ignored: bool,
}

/// Decides a directory's metadata from its `kmsfs.dir` bytes (`None`: no such file)
/// and the value of its [`DIR_ID_XATTR`] (`None`: none, or the backing file system has
/// no user attributes). `path` (the file's) is for errors only.
///
/// - A file that decodes is used; if a valid attribute names another id, that is
///   damage ([`FormatError::DirIdMismatch`]).
/// - A valid attribute with the file missing, or with the file a torn copy of what
///   `mkdir` writes (empty, zero-filled, or a zero-padded prefix of the version-0
///   file without a rule for that id: the states a crash leaves of a write that was
///   not fsynced), gives that version-0 metadata and asks for a repair. Any other file
///   content is damage, as without the attribute.
/// - An attribute that does not authenticate is ignored when the file is valid (a
///   pre-existing user attribute of that name, written by an older kmsfs, must not make
///   the directory unreadable; removing or altering the attribute gains nothing while
///   the file is valid).
pub fn resolve(
    file: Option<&[u8]>,
    attr: Option<&[u8]>,
    path: &Path,
    key: &MetadataKey,
) -> Result<Resolved, FormatError> {
    let attr_id = attr.map(|v| DirId::from_attr_value(v, key));
    let attr_ignored = matches!(attr_id, Some(None));
    let attr_id = attr_id.flatten();
    let recovered = |id: DirId, why| {
        Ok(Resolved {
            meta: DirMeta {
                dir_id: id,
                key_rule: None,
                version: 0,
            },
            repair: Some(why),
            attr_ignored: false,
        })
    };
    let Some(bytes) = file else {
        return match attr_id {
            Some(id) => recovered(id, "missing"),
            None => Err(FormatError::MissingDirMeta {
                path: path.to_path_buf(),
            }),
        };
    };
    if let Some(id) = attr_id {
        let written = DirMeta {
            dir_id: id,
            key_rule: None,
            version: 0,
        }
        .encode(key);
        if bytes != written.as_slice() && is_torn_copy(bytes, &written) {
            return recovered(id, "torn (written without fsync, lost in a crash)");
        }
    }
    let meta = DirMeta::decode(bytes, path, key)?;
    match attr_id {
        Some(id) if id != meta.dir_id => Err(FormatError::DirIdMismatch {
            path: path.to_path_buf(),
            file_id: meta.dir_id.to_hex(),
            attr_id: id.to_hex(),
        }),
        _ => Ok(Resolved {
            meta,
            repair: None,
            attr_ignored,
        }),
    }
}

/// Whether `bytes` is what a crash can leave of a non-fsynced write of `written` into a
/// new file: a prefix of it (possibly empty) followed by zero bytes, no longer than it.
fn is_torn_copy(bytes: &[u8], written: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.len() <= written.len()
        && bytes
            .get(..end)
            .is_some_and(|prefix| written.starts_with(prefix))
}

impl std::fmt::Debug for DirId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirId({})", self.to_hex())
    }
}

/// The contents of one `kmsfs.dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub dir_id: DirId,
    /// Key for new files created in this directory and below (until a nearer rule).
    pub key_rule: Option<String>,
    /// How many times the key rule was set or cleared through kmsfs: 0 for a new
    /// directory and for every format-1 file (which has no `version` field). Compared
    /// with the key service's record to refuse a rolled-back file.
    pub version: u64,
}

impl DirMeta {
    /// Path of the metadata file inside backing directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(DIR_META_NAME)
    }

    /// A new directory's metadata with a fresh random id (not yet written).
    pub fn generate(key_rule: Option<String>) -> Result<DirMeta, FormatError> {
        Ok(DirMeta {
            dir_id: DirId::generate()?,
            key_rule,
            version: 0,
        })
    }

    /// Writes a fresh `kmsfs.dir` into `dir`, failing with [`FormatError::DirMetaExists`]
    /// if one is there. Use right after `mkdir` of a backing directory.
    pub fn create(
        dir: &Path,
        key_rule: Option<String>,
        key: &MetadataKey,
    ) -> Result<DirMeta, FormatError> {
        let meta = Self::generate(key_rule)?;
        let bytes = meta.checked_encode(dir, key)?;
        match atomic::write_atomic(dir, DIR_META_NAME, &bytes, true) {
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(FormatError::DirMetaExists {
                    path: Self::path(dir),
                })
            }
            other => other.map(|()| meta),
        }
    }

    /// Reads and authenticates `dir/kmsfs.dir` (only a regular file: never through a
    /// symlink, never blocking on a FIFO). [`FormatError::MissingDirMeta`] if absent,
    /// [`FormatError::MetadataAuthentication`] if altered or from another volume.
    pub fn load(dir: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let path = Self::path(dir);
        match super::read_metadata(&path) {
            Ok(bytes) => Self::decode(&bytes, &path, key),
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(FormatError::MissingDirMeta { path })
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`Self::load`], but also reads the directory's [`DIR_ID_XATTR`] and decides
    /// with [`resolve`] (for fsck: nothing is repaired here).
    pub fn load_resolved(dir: &Path, key: &MetadataKey) -> Result<Resolved, FormatError> {
        let path = Self::path(dir);
        let file = match super::read_metadata(&path) {
            Ok(bytes) => Some(bytes),
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let attr = super::xattr::dir_id_attr(dir).map_err(|source| FormatError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        resolve(file.as_deref(), attr.as_deref(), &path, key)
    }

    /// Replaces `dir/kmsfs.dir` atomically (e.g. after `key-rule set`).
    pub fn save(&self, dir: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let bytes = self.checked_encode(dir, key)?;
        atomic::write_atomic(dir, DIR_META_NAME, &bytes, false)
    }

    /// The file's bytes (TOML with MAC), for callers that write through their own handle.
    /// The key rule is not validated here; [`Self::save`] and [`Self::create`] do.
    pub fn encode(&self, key: &MetadataKey) -> Vec<u8> {
        let mut out = String::from(
            "# kmsfs directory metadata (docs/FORMAT.md). Authenticated: edit only with kmsfs.\n",
        );
        out.push_str(&format!("dir_id = \"{}\"\n", self.dir_id.to_hex()));
        if let Some(rule) = &self.key_rule {
            out.push_str(&format!("key = {}\n", toml_string(rule)));
        }
        // Version 0 keeps the format-1 encoding, byte for byte.
        if self.version > 0 {
            out.push_str(&format!("version = {}\n", self.version));
        }
        out.push_str(&format!(
            "mac = \"{}\"\n",
            hex::encode(self.compute_mac(key))
        ));
        out.into_bytes()
    }

    /// Parses and authenticates bytes produced by [`Self::encode`]; `path` is only used
    /// in error messages.
    pub fn decode(bytes: &[u8], path: &Path, key: &MetadataKey) -> Result<DirMeta, FormatError> {
        let mut table = TomlFields::parse(bytes, path)?;
        let id_text = table.string("dir_id")?;
        let dir_id = DirId(parse_id_hex(&id_text).map_err(|r| table.field_error("dir_id", r))?);
        let key_rule = table.optional_string("key")?;
        if let Some(rule) = &key_rule {
            validate_key_id(rule).map_err(|r| table.field_error("key", r))?;
        }
        let version = match table.optional_u64("version")? {
            None => 0,
            Some(0) => return Err(table.field_error("version", "must be at least 1 when present")),
            Some(v) => v,
        };
        let mac = table.optional_mac("mac")?;
        table.finish()?;
        let meta = DirMeta {
            dir_id,
            key_rule,
            version,
        };
        match mac {
            Some(mac) if key.verify(&meta.mac_input(), &mac) => Ok(meta),
            _ => Err(FormatError::MetadataAuthentication {
                path: path.to_path_buf(),
            }),
        }
    }

    fn checked_encode(&self, dir: &Path, key: &MetadataKey) -> Result<Vec<u8>, FormatError> {
        if let Some(rule) = &self.key_rule {
            validate_key_id(rule).map_err(|reason| FormatError::BadMetadataField {
                path: Self::path(dir),
                field: "key",
                reason,
            })?;
        }
        Ok(self.encode(key))
    }

    fn compute_mac(&self, key: &MetadataKey) -> [u8; 32] {
        key.mac(&self.mac_input())
    }

    /// Version 0: `"kmsfs v1 dir\0" | dir id | has_key | [len | key]` (format 1).
    /// Version n >= 1: `"kmsfs v2 dir\0" | dir id | u64 n | has_key | [len | key]`: a
    /// different label, so no file of one kind authenticates as the other.
    fn mac_input(&self) -> Vec<u8> {
        let mut input = Vec::with_capacity(48);
        if self.version == 0 {
            input.extend_from_slice(DIR_MAC_LABEL);
            input.extend_from_slice(&self.dir_id.0);
        } else {
            input.extend_from_slice(DIR_MAC_LABEL_V2);
            input.extend_from_slice(&self.dir_id.0);
            input.extend_from_slice(&self.version.to_be_bytes());
        }
        match &self.key_rule {
            None => input.push(0),
            Some(rule) => {
                input.push(1);
                push_len_prefixed(&mut input, rule.as_bytes());
            }
        }
        input
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealingKey;

    fn key() -> MetadataKey {
        MetadataKey::new(&SealingKey::from_bytes([3; 32]))
    }

    fn meta(id: u8, rule: Option<&str>, version: u64) -> DirMeta {
        DirMeta {
            dir_id: DirId([id; 16]),
            key_rule: rule.map(String::from),
            version,
        }
    }

    fn run(file: Option<&[u8]>, attr: Option<&[u8]>) -> Result<Resolved, FormatError> {
        resolve(file, attr, Path::new("d/kmsfs.dir"), &key())
    }

    #[test]
    fn the_attribute_authenticates_only_its_own_id_under_its_own_key() {
        let value = DirId([7; 16]).attr_value(&key());
        assert_eq!(value.len(), DIR_ID_XATTR_LEN);
        assert_eq!(DirId::from_attr_value(&value, &key()), Some(DirId([7; 16])));
        let other = MetadataKey::new(&SealingKey::from_bytes([4; 32]));
        assert_eq!(DirId::from_attr_value(&value, &other), None);
        let mut flipped = value.clone();
        flipped[5] ^= 1;
        assert_eq!(DirId::from_attr_value(&flipped, &key()), None);
        assert_eq!(DirId::from_attr_value(&value[..48], &key()), None);
        let mut version = value;
        version[0] = 2;
        assert_eq!(DirId::from_attr_value(&version, &key()), None);
        // Not a file MAC either: the labels differ.
        assert_eq!(DirId::from_attr_value(&[], &key()), None);
    }

    #[test]
    fn a_valid_file_wins_and_agrees_with_the_attribute() {
        let attr = DirId([1; 16]).attr_value(&key());
        let file = meta(1, Some("alias/x"), 3).encode(&key());
        for attr in [Some(attr.as_slice()), None] {
            let r = run(Some(&file), attr).unwrap();
            assert_eq!(r.meta, meta(1, Some("alias/x"), 3));
            assert_eq!(r.repair, None);
            assert!(!r.attr_ignored);
        }
    }

    #[test]
    fn crash_torn_files_are_rebuilt_from_the_attribute() {
        let attr = DirId([1; 16]).attr_value(&key());
        let written = meta(1, None, 0).encode(&key());
        let mut zero_padded = written[..40].to_vec();
        zero_padded.resize(written.len(), 0);
        let torn: [&[u8]; 5] = [
            b"",
            &vec![0; written.len()],
            &written[..40],
            &zero_padded,
            &written[..written.len() - 1],
        ];
        for bytes in torn {
            let r = run(Some(bytes), Some(&attr)).unwrap();
            assert_eq!(r.meta, meta(1, None, 0));
            assert!(r.repair.is_some());
        }
        let r = run(None, Some(&attr)).unwrap();
        assert_eq!((r.meta, r.repair), (meta(1, None, 0), Some("missing")));
    }

    #[test]
    fn anything_else_is_damage() {
        let attr = DirId([1; 16]).attr_value(&key());
        // Another directory's valid file.
        let other = meta(2, None, 0).encode(&key());
        assert!(matches!(
            run(Some(&other), Some(&attr)),
            Err(FormatError::DirIdMismatch { .. })
        ));
        // A torn copy of another id's file, or a longer file, or garbage.
        let mut longer = meta(1, None, 0).encode(&key());
        longer.push(0);
        longer.push(b'x');
        for bytes in [&other[..other.len() - 3], &longer[..], b"garbage"] {
            let e = run(Some(bytes), Some(&attr)).unwrap_err();
            assert!(e.is_integrity_failure(), "{e}");
        }
        // Neither: as before the attribute existed.
        assert!(matches!(
            run(None, None),
            Err(FormatError::MissingDirMeta { .. })
        ));
        assert!(run(Some(b""), None).unwrap_err().is_integrity_failure());
        // An attribute that does not authenticate cannot stand in for the file.
        let mut bad = attr.clone();
        bad[3] ^= 1;
        assert!(run(Some(b""), Some(&bad)).is_err());
        assert!(run(None, Some(&bad)).is_err());
    }

    #[test]
    fn an_attribute_that_does_not_authenticate_is_ignored_beside_a_valid_file() {
        let file = meta(1, None, 0).encode(&key());
        let r = run(Some(&file), Some(b"an old user value")).unwrap();
        assert_eq!(r.meta, meta(1, None, 0));
        assert!(r.attr_ignored);
    }
}
