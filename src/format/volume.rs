//! The volume file `kmsfs.volume` (TOML, not secret, authenticated with a MAC under the
//! metadata key) and the metadata key itself. Owns creating a volume in an empty
//! directory and loading/saving the file atomically. Never holds data keys.

use std::path::{Path, PathBuf};

use crate::crypto::{hkdf_sealing_key, hmac_sha256, hmac_sha256_verify, SealingKey};

use super::EnvelopeVersion;
use super::{atomic, FormatError, BLOCK_SIZE, FORMAT_VERSION, VOLUME_FILE_NAME};

/// HKDF info label of the metadata MAC key (derived from the volume secret).
pub const METADATA_KEY_INFO: &[u8] = b"kmsfs v1 metadata mac";
/// Domain separator at the start of the volume file's MAC input.
const VOLUME_MAC_LABEL: &[u8] = b"kmsfs v1 volume\0";
/// Marks the optional `envelopes` field in the MAC input (after the default key, so the
/// MAC of a volume file without the field is unchanged).
const ENVELOPES_MAC_LABEL: &[u8] = b"envelopes\0";
/// Marks the optional `kms_endpoint` field in the MAC input (after `envelopes`, so the
/// MAC of a volume file without the field is unchanged).
const KMS_ENDPOINT_MAC_LABEL: &[u8] = b"kms_endpoint\0";
/// Longest `kms_endpoint` URL accepted (bytes).
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// Longest key id / ARN / alias accepted as a default key or key rule (bytes).
pub const MAX_KEY_ID_LEN: usize = 512;
/// The default key of `kmsfs init` when none is given.
pub const DEFAULT_KEY: &str = "alias/kmsfs/default";

/// The key that authenticates the volume file and every directory's `kmsfs.dir`.
/// Derived from the volume secret: someone who can write the backing directory but has
/// no access to the store cannot change a default key or a key rule undetected.
pub struct MetadataKey(SealingKey);

impl MetadataKey {
    /// HKDF-SHA256(ikm = volume secret, salt = "", info = [`METADATA_KEY_INFO`]).
    pub fn new(volume_secret: &SealingKey) -> Self {
        Self(hkdf_sealing_key(volume_secret, b"", METADATA_KEY_INFO))
    }

    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, data)
    }

    /// Whether `tag` is the MAC of `data` (constant time).
    pub(crate) fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac_sha256_verify(&self.0, data, tag)
    }
}

impl std::fmt::Debug for MetadataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetadataKey(..)")
    }
}

/// The parsed volume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    /// Format version of the volume (1).
    pub format: u32,
    /// Random 128-bit volume id, 32 lowercase hex digits. Used in every file's
    /// encryption context and to look up the volume secret.
    pub volume_id: String,
    /// Key for new files where no directory key rule applies: key id, key ARN, alias name
    /// or alias ARN.
    pub default_key: String,
    /// Plaintext block size ([`super::BLOCK_SIZE`] in version 1).
    pub block_size: u32,
    /// `Some(v)`: every file of this volume has envelope version `v` (only 2 is
    /// accepted), so a size needs no header read and a file of another version is
    /// refused (a downgrade). `None` (volumes made before the field existed): each
    /// file's header says its version, 1 or 2.
    pub envelopes: Option<EnvelopeVersion>,
    /// The endpoint of the remote KMS holding this volume's remote keys (an
    /// `http://` or `https://` URL of an AWS-compatible KMS, e.g. a central
    /// `kmsfs serve --listen`). `None`: AWS's regional endpoint of each key ARN's region.
    /// `-o kms_endpoint` at mount time overrides it.
    pub kms_endpoint: Option<String>,
    /// The MAC as read from disk (`None` between `create` and the first `save`).
    mac: Option<[u8; 32]>,
}

impl VolumeConfig {
    /// Path of the volume file inside `backing`.
    pub fn path(backing: &Path) -> PathBuf {
        backing.join(VOLUME_FILE_NAME)
    }

    /// Creates a new volume in `backing` (created if missing): a fresh random volume id,
    /// `default_key`, version 1, block size 4096, every envelope of the current version
    /// (`envelopes = 2`). Refuses a directory that already holds
    /// a volume ([`FormatError::AlreadyInitialized`]) or anything else
    /// ([`FormatError::NotEmpty`]). Writes the file without a MAC to claim the directory;
    /// the caller then gets the volume secret for `volume_id` and calls [`Self::save`]
    /// (which adds the MAC) and creates the root [`super::DirMeta`].
    pub fn create(backing: &Path, default_key: &str) -> Result<VolumeConfig, FormatError> {
        let path = Self::path(backing);
        validate_key_id(default_key).map_err(|reason| FormatError::BadMetadataField {
            path: path.clone(),
            field: "default_key",
            reason,
        })?;
        let io = |source| FormatError::Io {
            path: backing.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(backing).map_err(io)?;
        let mut entries = std::fs::read_dir(backing).map_err(io)?;
        if path.exists() {
            return Err(FormatError::AlreadyInitialized {
                path: backing.to_path_buf(),
            });
        }
        if entries.next().is_some() {
            return Err(FormatError::NotEmpty {
                path: backing.to_path_buf(),
            });
        }
        let mut id = [0u8; 16];
        crate::crypto::random_fill(&mut id).map_err(|_| FormatError::Random)?;
        let config = VolumeConfig {
            format: FORMAT_VERSION,
            volume_id: hex::encode(id),
            default_key: default_key.to_string(),
            block_size: BLOCK_SIZE as u32,
            envelopes: Some(EnvelopeVersion::CURRENT),
            kms_endpoint: None,
            mac: None,
        };
        match atomic::write_atomic(backing, VOLUME_FILE_NAME, &config.encode(), true) {
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(FormatError::AlreadyInitialized {
                    path: backing.to_path_buf(),
                })
            }
            other => other.map(|()| config),
        }
    }

    /// Reads and parses `backing/kmsfs.volume`. Checks every field's syntax (naming the
    /// file and field on error) and the version, but not the MAC: call [`Self::verify`]
    /// once the volume secret is known.
    pub fn load(backing: &Path) -> Result<VolumeConfig, FormatError> {
        let path = Self::path(backing);
        let bytes = match super::read_metadata(&path) {
            Ok(bytes) => bytes,
            Err(FormatError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(FormatError::NotAVolume {
                    path: backing.to_path_buf(),
                })
            }
            Err(e) => return Err(e),
        };
        Self::decode(&bytes, &path)
    }

    /// Parses the volume file's bytes; `path` is only used in error messages.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<VolumeConfig, FormatError> {
        let mut table = TomlFields::parse(bytes, path)?;
        let format = table.u32("format")?;
        if format != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: format });
        }
        let volume_id = table.string("volume_id")?;
        parse_id_hex(&volume_id).map_err(|reason| table.field_error("volume_id", reason))?;
        let default_key = table.string("default_key")?;
        validate_key_id(&default_key).map_err(|r| table.field_error("default_key", r))?;
        let block_size = table.u32("block_size")?;
        if block_size as usize != BLOCK_SIZE {
            return Err(table.field_error(
                "block_size",
                format!("{block_size} is not supported (version 1 uses {BLOCK_SIZE})"),
            ));
        }
        let envelopes = match table.optional_u64("envelopes")? {
            None => None,
            Some(2) => Some(EnvelopeVersion::V2),
            Some(n) => {
                return Err(table.field_error(
                    "envelopes",
                    format!("{n} is not supported (only 2: every file of envelope version 2)"),
                ))
            }
        };
        let kms_endpoint = table.optional_string("kms_endpoint")?;
        if let Some(url) = &kms_endpoint {
            validate_endpoint(url).map_err(|r| table.field_error("kms_endpoint", r))?;
        }
        let mac = table.optional_mac("mac")?;
        table.finish()?;
        Ok(VolumeConfig {
            format,
            volume_id,
            default_key,
            block_size,
            envelopes,
            kms_endpoint,
            mac,
        })
    }

    /// Verifies the MAC read from disk against the current fields.
    /// [`FormatError::MetadataAuthentication`] if it is absent or wrong; `backing` is
    /// only used in the error message.
    pub fn verify(&self, backing: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        match self.mac {
            Some(mac) if key.verify(&self.mac_input(), &mac) => Ok(()),
            _ => Err(FormatError::MetadataAuthentication {
                path: Self::path(backing),
            }),
        }
    }

    /// Writes the volume file atomically (temp file, fsync, rename, fsync directory) with
    /// a MAC over the current fields.
    pub fn save(&mut self, backing: &Path, key: &MetadataKey) -> Result<(), FormatError> {
        let path = Self::path(backing);
        validate_key_id(&self.default_key).map_err(|reason| FormatError::BadMetadataField {
            path,
            field: "default_key",
            reason,
        })?;
        if let Some(url) = &self.kms_endpoint {
            validate_endpoint(url).map_err(|reason| FormatError::BadMetadataField {
                path: Self::path(backing),
                field: "kms_endpoint",
                reason,
            })?;
        }
        self.mac = Some(self.compute_mac(key));
        atomic::write_atomic(backing, VOLUME_FILE_NAME, &self.encode(), false)
    }

    /// Refuses a file header of another envelope version than the volume's `envelopes`
    /// ([`FormatError::EnvelopeNotAllowed`]); any known version when the field is absent.
    pub fn check_envelope(&self, found: EnvelopeVersion) -> Result<(), FormatError> {
        match self.envelopes {
            Some(required) if required != found => Err(FormatError::EnvelopeNotAllowed {
                found: found.number(),
                required: required.number(),
            }),
            _ => Ok(()),
        }
    }

    /// True once the file carries a MAC (i.e. `save` ran after `create`).
    pub fn is_authenticated(&self) -> bool {
        self.mac.is_some()
    }

    fn compute_mac(&self, key: &MetadataKey) -> [u8; 32] {
        key.mac(&self.mac_input())
    }

    fn mac_input(&self) -> Vec<u8> {
        let mut input = Vec::with_capacity(64 + self.default_key.len());
        input.extend_from_slice(VOLUME_MAC_LABEL);
        input.extend_from_slice(&self.format.to_be_bytes());
        // An unparseable id cannot come from `load`; MAC its text so it still fails.
        match parse_id_hex(&self.volume_id) {
            Ok(id) => input.extend_from_slice(&id),
            Err(_) => input.extend_from_slice(self.volume_id.as_bytes()),
        }
        input.extend_from_slice(&self.block_size.to_be_bytes());
        push_len_prefixed(&mut input, self.default_key.as_bytes());
        // Removing the field (to have v1 files accepted again) changes the MAC input.
        if let Some(version) = self.envelopes {
            input.extend_from_slice(ENVELOPES_MAC_LABEL);
            input.extend_from_slice(&u32::from(version.number()).to_be_bytes());
        }
        if let Some(url) = &self.kms_endpoint {
            input.extend_from_slice(KMS_ENDPOINT_MAC_LABEL);
            push_len_prefixed(&mut input, url.as_bytes());
        }
        input
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = String::from(
            "# kmsfs volume file (docs/FORMAT.md). Not secret, but authenticated:\n\
             # edit it only with kmsfs, or the mount will refuse it.\n",
        );
        out.push_str(&format!("format = {}\n", self.format));
        out.push_str(&format!("volume_id = {}\n", toml_string(&self.volume_id)));
        out.push_str(&format!(
            "default_key = {}\n",
            toml_string(&self.default_key)
        ));
        out.push_str(&format!("block_size = {}\n", self.block_size));
        if let Some(version) = self.envelopes {
            out.push_str(&format!("envelopes = {}\n", version.number()));
        }
        if let Some(url) = &self.kms_endpoint {
            out.push_str(&format!("kms_endpoint = {}\n", toml_string(url)));
        }
        if let Some(mac) = self.mac {
            out.push_str(&format!("mac = \"{}\"\n", hex::encode(mac)));
        }
        out.into_bytes()
    }
}

/// A key id, key ARN, alias name or alias ARN as kmsfs stores it: non-empty, at most
/// [`MAX_KEY_ID_LEN`] bytes, no whitespace or control characters. Which of those forms
/// it is, and whether it exists, is the key service's business.
pub(crate) fn validate_key_id(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if key.len() > MAX_KEY_ID_LEN {
        return Err(format!(
            "{} bytes is longer than the {MAX_KEY_ID_LEN}-byte limit",
            key.len()
        ));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(())
}

/// A `kms_endpoint`: an `http://` or `https://` URL with a host, at most
/// [`MAX_ENDPOINT_LEN`] bytes, no whitespace or control characters.
pub fn validate_endpoint(url: &str) -> Result<(), String> {
    if url.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "{} bytes is longer than the {MAX_ENDPOINT_LEN}-byte limit",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must name a host".into());
    }
    Ok(())
}

/// 32 lowercase hex digits → 16 bytes.
pub(crate) fn parse_id_hex(s: &str) -> Result<[u8; 16], String> {
    if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{s:?} is not 32 lowercase hex digits"));
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

pub(crate) fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are bounded by MAX_KEY_ID_LEN before any MAC is computed.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A parsed TOML table whose fields are taken one by one, so that every error names the
/// file and the field, and leftovers (unknown fields) are rejected.
pub(crate) struct TomlFields<'p> {
    table: toml::Table,
    path: &'p Path,
}

impl<'p> TomlFields<'p> {
    pub(crate) fn parse(bytes: &[u8], path: &'p Path) -> Result<Self, FormatError> {
        let text = std::str::from_utf8(bytes).map_err(|_| FormatError::BadMetadataFile {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".into(),
        })?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| FormatError::BadMetadataFile {
                path: path.to_path_buf(),
                reason: format!("not valid TOML: {}", e.message()),
            })?;
        Ok(Self { table, path })
    }

    pub(crate) fn field_error(
        &self,
        field: &'static str,
        reason: impl Into<String>,
    ) -> FormatError {
        FormatError::BadMetadataField {
            path: self.path.to_path_buf(),
            field,
            reason: reason.into(),
        }
    }

    fn take(&mut self, field: &'static str) -> Result<toml::Value, FormatError> {
        self.table
            .remove(field)
            .ok_or_else(|| self.field_error(field, "missing"))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        match self.take(field)? {
            toml::Value::Integer(i) => u32::try_from(i)
                .map_err(|_| self.field_error(field, format!("{i} is out of range"))),
            other => Err(self.field_error(
                field,
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn optional_u64(&mut self, field: &'static str) -> Result<Option<u64>, FormatError> {
        if !self.table.contains_key(field) {
            return Ok(None);
        }
        match self.take(field)? {
            toml::Value::Integer(i) => u64::try_from(i)
                .map(Some)
                .map_err(|_| self.field_error(field, format!("{i} is out of range"))),
            other => Err(self.field_error(
                field,
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, FormatError> {
        match self.take(field)? {
            toml::Value::String(s) => Ok(s),
            other => Err(self.field_error(
                field,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, FormatError> {
        if self.table.contains_key(field) {
            self.string(field).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn optional_mac(
        &mut self,
        field: &'static str,
    ) -> Result<Option<[u8; 32]>, FormatError> {
        let Some(text) = self.optional_string(field)? else {
            return Ok(None);
        };
        let mut mac = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(&text, &mut mac).is_err() {
            return Err(self.field_error(field, "expected 64 hex digits"));
        }
        Ok(Some(mac))
    }

    /// Rejects fields nobody took: a typo must not be silently ignored.
    pub(crate) fn finish(self) -> Result<(), FormatError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(FormatError::BadMetadataFile {
                path: self.path.to_path_buf(),
                reason: format!("unknown field `{k}`"),
            }),
        }
    }
}
