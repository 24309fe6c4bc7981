//! Key material in memory: the AEAD cipher of each material version, derived once from
//! the unsealed material and cached with its key schedule (zeroized on drop), forgotten when the state stops
//! naming it; and new material versions (creation, rotation). Never returns material.

use std::sync::Arc;

use super::model::{KeyRecord, MaterialVersion, RotationRecord, RotationType};
use super::service::err;
use super::service::Service;
use super::store::{internal, Store};
use super::{ciphertext, ErrorKind, KmsError};
use crate::crypto::asym::PrivateKey;
use crate::crypto::keypair::{self, KeyPairSpec};
use crate::crypto::{self, KeyMaterial, Sealer};
use zeroize::Zeroizing;

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
    let spec = rec.key_spec;
    if let Some(pair) = KeyPairSpec::parse(spec.as_str()) {
        // The same generator as GenerateDataKeyPair: Ed25519 as PKCS#8 v1 (the reader
        // still accepts the v2 keys older stores hold).
        let pair = keypair::generate_key_pair(pair).map_err(|e| internal(e.to_string()))?;
        store.write_secret_material(&rec.key_id, v, spec.as_str(), pair.private.expose())?;
    } else if let Some(len) = spec.hmac_key_len() {
        let key = Zeroizing::new(crypto::random_bytes(len).map_err(|e| internal(e.to_string()))?);
        store.write_secret_material(&rec.key_id, v, spec.as_str(), &key)?;
    } else {
        let m = KeyMaterial::generate().map_err(|e| internal(e.to_string()))?;
        store.write_material(&rec.key_id, v, &m)?;
    }
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
    /// The ready AES-256-GCM cipher of one material version: HKDF of the unsealed
    /// material, its key schedule and GHASH key computed once and cached (zeroized on
    /// drop, forgotten when the state stops naming the version; see `Service::install`).
    /// Every Decrypt of a file's data key would otherwise expand the same key again.
    /// A hit allocates nothing: the map is keyed by key id, then version.
    pub(crate) fn cipher_key(&self, key_id: &str, version: u32) -> Result<Arc<Sealer>, KmsError> {
        if let Some(k) = self
            .cipher_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .and_then(|versions| versions.iter().find(|(v, _)| *v == version))
        {
            return Ok(k.1.clone());
        }
        let material = self.store.read_material(key_id, version)?;
        let mut salt = key_id.as_bytes().to_vec();
        salt.extend_from_slice(&version.to_be_bytes());
        let key = crypto::hkdf_sealing_key(&material, &salt, ciphertext::CIPHERTEXT_KEY_INFO);
        let sealer = Arc::new(Sealer::new(&key));
        let mut ck = self.cipher_keys.write().unwrap_or_else(|e| e.into_inner());
        let versions = ck.entry(key_id.to_string()).or_default();
        // Another thread may have derived it meanwhile: keep one per version.
        match versions.iter().find(|(v, _)| *v == version) {
            Some((_, existing)) => Ok(existing.clone()),
            None => {
                versions.push((version, sealer.clone()));
                Ok(sealer)
            }
        }
    }

    /// The parsed private key of an asymmetric key's current material (cached).
    pub(crate) fn private_key(&self, k: &KeyRecord) -> Result<Arc<PrivateKey>, KmsError> {
        let pair = k
            .key_spec
            .pair_spec()
            .ok_or_else(|| internal(format!("{} is not an asymmetric key", k.arn)))?;
        let version = k.current_version.ok_or_else(|| {
            err(
                ErrorKind::KmsInvalidState,
                format!("{} has no key material", k.arn),
            )
        })?;
        let id = (k.key_id.clone(), version);
        if let Some(p) = self
            .private_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(p.clone());
        }
        let der = self
            .store
            .read_secret_material(&k.key_id, version, k.key_spec.as_str())?;
        let key = Arc::new(
            PrivateKey::from_pkcs8(pair, &der).map_err(|e| internal(format!("{}: {e}", k.arn)))?,
        );
        self.private_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, key.clone());
        Ok(key)
    }

    /// An HMAC key's current key bytes (read and unsealed on each call).
    // For GenerateMac and VerifyMac, which build on this model (issue 15, part 2).
    #[allow(dead_code)]
    pub(crate) fn hmac_key(&self, k: &KeyRecord) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let version = k.current_version.ok_or_else(|| {
            err(
                ErrorKind::KmsInvalidState,
                format!("{} has no key material", k.arn),
            )
        })?;
        if !k.key_spec.is_hmac() {
            return Err(internal(format!("{} is not an HMAC key", k.arn)));
        }
        self.store
            .read_secret_material(&k.key_id, version, k.key_spec.as_str())
    }

    pub(crate) fn forget_material(&self, key_id: &str) {
        self.cipher_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_id);
        self.private_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| id != key_id);
    }
}
