//! Key material in memory: the AEAD key of each material version, derived once from
//! the unsealed material and cached as a zeroizing key, forgotten when the state stops
//! naming it; and new material versions (creation, rotation). Never returns material.

use std::sync::Arc;

use super::model::{KeyRecord, MaterialVersion, RotationRecord, RotationType};
use super::service::Service;
use super::store::{internal, Store};
use super::{ciphertext, KmsError};
use crate::crypto::{self, KeyMaterial, SealingKey};

/// Generates a new material version of `rec` and makes it current; `rotation` says
/// which kind of rotation made it (None for a key's first material). Every old version
/// stays for Decrypt.
pub(crate) fn add_material(
    store: &Store,
    rec: &mut KeyRecord,
    now: i64,
    rotation: Option<RotationType>,
) -> Result<u32, KmsError> {
    let v = rec.next_version();
    let m = KeyMaterial::generate().map_err(|e| internal(e.to_string()))?;
    store.write_material(&rec.key_id, v, &m)?;
    rec.materials.push(MaterialVersion {
        version: v,
        created: now,
    });
    rec.current_version = Some(v);
    if let Some(kind) = rotation {
        rec.rotations.push(RotationRecord {
            date: now,
            kind,
            version: v,
        });
    }
    Ok(v)
}

impl Service {
    /// The AEAD key of one material version (HKDF of the unsealed material, cached).
    pub(crate) fn cipher_key(
        &self,
        key_id: &str,
        version: u32,
    ) -> Result<Arc<SealingKey>, KmsError> {
        let id = (key_id.to_string(), version);
        if let Some(k) = self
            .cipher_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(k.clone());
        }
        let material = self.store.read_material(key_id, version)?;
        let mut salt = key_id.as_bytes().to_vec();
        salt.extend_from_slice(&version.to_be_bytes());
        let key = Arc::new(crypto::hkdf_sealing_key(
            &material,
            &salt,
            ciphertext::CIPHERTEXT_KEY_INFO,
        ));
        self.cipher_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, key.clone());
        Ok(key)
    }

    pub(crate) fn forget_material(&self, key_id: &str) {
        self.cipher_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| id != key_id);
    }
}
