//! Material files (`material/<key-id>/v<N>`, each sealed under the material subkey and
//! bound to its store, key and version), their removal and garbage collection, and the
//! other small values sealed or committed to under root-key subkeys.

use std::fs;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::files::{make_private_dir, read_file, remove_temps, shred_file, sync_dir, write_atomic};
use super::{check_private, internal, io_err, Store, MATERIAL_DIR};
use crate::crypto::{self, KeyMaterial};
use crate::kms::model::StoreState;
use crate::kms::KmsError;

const MATERIAL_MAGIC: &[u8; 4] = b"KMM1";
/// Variable-length material: an asymmetric key's PKCS#8 private key or an HMAC key.
const SECRET_MATERIAL_MAGIC: &[u8; 4] = b"KMV1";

impl Store {
    fn material_path(&self, key_id: &str, version: u32) -> PathBuf {
        self.dir
            .join(MATERIAL_DIR)
            .join(key_id)
            .join(format!("v{version}"))
    }

    fn material_aad(&self, key_id: &str, version: u32) -> Vec<u8> {
        format!("kmsfs material v1|{}|{key_id}|{version}", self.store_id).into_bytes()
    }

    /// The AAD of variable-length material also binds the key spec, so that material
    /// cannot be read back as another kind of key.
    fn secret_material_aad(&self, key_id: &str, version: u32, spec: &str) -> Vec<u8> {
        format!(
            "kmsfs material v2|{}|{key_id}|{version}|{spec}",
            self.store_id
        )
        .into_bytes()
    }

    /// Seals `plain` under the material subkey and writes it as one material version
    /// (before the state names it).
    fn write_sealed_material(
        &self,
        key_id: &str,
        version: u32,
        magic: &[u8; 4],
        aad: &[u8],
        plain: &[u8],
    ) -> Result<(), KmsError> {
        let kdir = self.dir.join(MATERIAL_DIR).join(key_id);
        if !kdir.exists() {
            make_private_dir(&kdir)?;
            sync_dir(&self.dir.join(MATERIAL_DIR))?;
        }
        let sealed =
            crypto::seal(&self.material_key, aad, plain).map_err(|e| internal(e.to_string()))?;
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&sealed);
        write_atomic(&self.material_path(key_id, version), &bytes)
    }

    /// Reads and unseals one material version written with `magic` and `aad`.
    fn read_sealed_material(
        &self,
        key_id: &str,
        version: u32,
        magic: &[u8; 4],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let p = self.material_path(key_id, version);
        check_private(&p, false)?;
        let bytes = read_file(&p)?;
        let sealed = bytes
            .strip_prefix(magic.as_slice())
            .ok_or_else(|| internal(format!("store: {} is not a material file", p.display())))?;
        crypto::open(&self.material_key, aad, sealed).map_err(|_| {
            internal(format!(
                "store: {} fails authentication (damaged or moved)",
                p.display()
            ))
        })
    }

    /// Seals and writes one material version (before the state names it).
    pub fn write_material(
        &self,
        key_id: &str,
        version: u32,
        material: &KeyMaterial,
    ) -> Result<(), KmsError> {
        let aad = self.material_aad(key_id, version);
        self.write_sealed_material(key_id, version, MATERIAL_MAGIC, &aad, material.expose())
    }

    /// Seals and writes variable-length material of a key of spec `spec` (a PKCS#8
    /// private key, an HMAC key), with the same sealing, binding and crash safety as
    /// [`Store::write_material`].
    pub fn write_secret_material(
        &self,
        key_id: &str,
        version: u32,
        spec: &str,
        plain: &[u8],
    ) -> Result<(), KmsError> {
        let aad = self.secret_material_aad(key_id, version, spec);
        self.write_sealed_material(key_id, version, SECRET_MATERIAL_MAGIC, &aad, plain)
    }

    /// Reads what [`Store::write_secret_material`] wrote for the same key, version and
    /// spec.
    pub fn read_secret_material(
        &self,
        key_id: &str,
        version: u32,
        spec: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let aad = self.secret_material_aad(key_id, version, spec);
        self.read_sealed_material(key_id, version, SECRET_MATERIAL_MAGIC, &aad)
    }

    /// Reads and unseals one material version.
    pub fn read_material(&self, key_id: &str, version: u32) -> Result<KeyMaterial, KmsError> {
        let aad = self.material_aad(key_id, version);
        let plain = self.read_sealed_material(key_id, version, MATERIAL_MAGIC, &aad)?;
        KeyMaterial::from_slice(&plain).ok_or_else(|| {
            internal(format!(
                "store: {} has the wrong length",
                self.material_path(key_id, version).display()
            ))
        })
    }

    /// Destroys every material version of a key and its directory.
    pub fn shred_key(&self, key_id: &str) -> Result<(), KmsError> {
        let kdir = self.dir.join(MATERIAL_DIR).join(key_id);
        if !kdir.exists() {
            return Ok(());
        }
        let entries = fs::read_dir(&kdir).map_err(|e| io_err(&kdir, "list", e))?;
        for e in entries {
            let e = e.map_err(|e| io_err(&kdir, "list", e))?;
            shred_file(&e.path())?;
        }
        fs::remove_dir(&kdir).map_err(|e| io_err(&kdir, "remove", e))?;
        sync_dir(&self.dir.join(MATERIAL_DIR))
    }

    /// Shreds material of keys the state no longer names, and material versions it
    /// does not list (left by a crash between the two steps of a write or a destroy).
    /// Also removes temp files of interrupted writes: the caller holds the lock, and
    /// every writer writes its temp files only while holding it.
    pub fn collect_garbage(&self, state: &StoreState) -> Result<(), KmsError> {
        remove_temps(&self.dir)?;
        let mdir = self.dir.join(MATERIAL_DIR);
        let entries = fs::read_dir(&mdir).map_err(|e| io_err(&mdir, "list", e))?;
        for e in entries {
            let e = e.map_err(|e| io_err(&mdir, "list", e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match state.keys.get(&name) {
                None => self.shred_key(&name)?,
                Some(rec) => {
                    let kdir = e.path();
                    remove_temps(&kdir)?;
                    let files = fs::read_dir(&kdir).map_err(|e| io_err(&kdir, "list", e))?;
                    for f in files {
                        let f = f.map_err(|e| io_err(&kdir, "list", e))?;
                        let fname = f.file_name().to_string_lossy().into_owned();
                        let live = fname
                            .strip_prefix('v')
                            .and_then(|v| v.parse::<u32>().ok())
                            .is_some_and(|v| rec.materials.iter().any(|m| m.version == v));
                        if !live {
                            shred_file(&f.path())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Seals a small secret (volume secrets, import tokens) under the root key.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, KmsError> {
        let aad = format!("kmsfs secret v1|{}|{label}", self.store_id);
        crypto::seal(&self.secret_key, aad.as_bytes(), plain).map_err(|e| internal(e.to_string()))
    }

    /// Opens what [`Store::seal_secret`] sealed with the same label.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let aad = format!("kmsfs secret v1|{}|{label}", self.store_id);
        crypto::open(&self.secret_key, aad.as_bytes(), sealed).ok()
    }

    /// A keyed commitment to imported material (reimports must match it).
    pub fn commit_material(&self, key_id: &str, material: &KeyMaterial) -> String {
        // Holds the material: wiped on drop (a hand-written zeroing loop before a free
        // may be optimized away).
        let mut data = Zeroizing::new(Vec::with_capacity(key_id.len() + crypto::KEY_LEN));
        data.extend_from_slice(key_id.as_bytes());
        data.extend_from_slice(material.expose());
        hex::encode(crypto::hmac_sha256(&self.commit_key, &data))
    }
}
