//! Imported key material: GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial, for keys created with Origin EXTERNAL (they start
//! PendingImport).
//!
//! kmsfs has no RSA, so AWS's RSAES_OAEP wrapping algorithms are refused with
//! UnsupportedOperationException. Instead it offers one documented local scheme,
//! WrappingAlgorithm [`LOCAL_WRAPPING_ALGORITHM`] (WrappingKeySpec
//! [`LOCAL_WRAPPING_KEY_SPEC`]): GetParametersForImport returns a fresh random 32-byte
//! wrapping key in `PublicKey` (it is symmetric, despite AWS's field name) and an
//! `ImportToken` sealed under the store's root key that binds that wrapping key to the
//! key id and a 24-hour validity. The client wraps the 32 bytes of material as
//! `nonce(12) || AES-256-GCM(wrapping key, aad = WRAP_AAD, material) || tag(16)` with
//! [`wrap_key_material`]. This binds material to one key and one token; its secrecy in
//! transit is the control socket's (local, peer-authenticated), not the wrapping's.
//! Material is never logged; reimports must bring the same bytes
//! (IncorrectKeyMaterialException otherwise); deleting or expiring it puts the key in
//! PendingImport at once and shreds the sealed copy.

use crate::policy::actions as act;
use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::clock::DAY;
use super::model::{ExpirationModel, ImportState, KeyState, MaterialVersion};
use super::request::{b64, validation, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::crypto::{self, KeyMaterial, SealingKey};

pub const LOCAL_WRAPPING_ALGORITHM: &str = "KMSFS_LOCAL_AES_256_GCM";
pub const LOCAL_WRAPPING_KEY_SPEC: &str = "KMSFS_LOCAL_SYMMETRIC_256";
const WRAP_AAD: &[u8] = b"kmsfs import key material v1";
const TOKEN_LABEL: &str = "import-token";

/// Wraps 32 bytes of key material for ImportKeyMaterial under the `PublicKey` that
/// GetParametersForImport returned (the local scheme; used by the CLI).
pub fn wrap_key_material(wrapping_key: &[u8], material: &[u8]) -> Result<Vec<u8>, KmsError> {
    let key = SealingKey::from_slice(wrapping_key)
        .ok_or_else(|| validation("the wrapping key must be 32 bytes"))?;
    if material.len() != 32 {
        return Err(validation(
            "symmetric key material must be exactly 32 bytes",
        ));
    }
    crypto::seal(&key, WRAP_AAD, material).map_err(|e| internal(e.to_string()))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenBody {
    key_id: String,
    wrapping_key: String,
    valid_to: i64,
}

impl Service {
    pub(crate) fn get_parameters_for_import(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        match r.opt_str("WrappingAlgorithm")? {
            None | Some(LOCAL_WRAPPING_ALGORITHM) => {}
            Some(a) => {
                return Err(err(
                    ErrorKind::UnsupportedOperation,
                    format!("WrappingAlgorithm {a}: kmsfs has no RSA; use {LOCAL_WRAPPING_ALGORITHM} (see the import documentation)"),
                ))
            }
        }
        match r.opt_str("WrappingKeySpec")? {
            None | Some(LOCAL_WRAPPING_KEY_SPEC) => {}
            Some(s) => {
                return Err(err(
                    ErrorKind::UnsupportedOperation,
                    format!("WrappingKeySpec {s}: kmsfs has no RSA; use {LOCAL_WRAPPING_KEY_SPEC}"),
                ))
            }
        }
        let snap = self.snapshot()?;
        let (k, _) = self.find_key(call, &snap.state, key_id, false)?;
        self.authorize(
            call,
            &snap.state,
            super::authz::Authz::new(act::GET_PARAMETERS_FOR_IMPORT.iam, Some(k))
                .set("kms:WrappingAlgorithm", LOCAL_WRAPPING_ALGORITHM)
                .set("kms:WrappingKeySpec", LOCAL_WRAPPING_KEY_SPEC),
        )?;
        self.gate(&act::GET_PARAMETERS_FOR_IMPORT, k, call.now)?;
        let wrapping =
            Zeroizing::new(crypto::random_bytes(32).map_err(|e| internal(e.to_string()))?);
        let valid_to = call.now + DAY;
        let body = Zeroizing::new(
            serde_json::to_vec(&TokenBody {
                key_id: k.key_id.clone(),
                wrapping_key: hex::encode(&*wrapping),
                valid_to,
            })
            .map_err(|e| internal(e.to_string()))?,
        );
        let token = self.store.seal_secret(TOKEN_LABEL, &body)?;
        Ok(json!({
            "KeyId": k.arn,
            "ImportToken": b64().encode(token),
            "PublicKey": b64().encode(&*wrapping),
            "ParametersValidTo": valid_to,
        }))
    }

    pub(crate) fn import_key_material(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let token = r.blob("ImportToken")?;
        let wrapped = r.blob("EncryptedKeyMaterial")?;
        let valid_to = r.opt_time("ValidTo")?;
        let model = match (r.opt_str("ExpirationModel")?, valid_to) {
            (None, None) | (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => {
                ExpirationModel::DoesNotExpire
            }
            (None, Some(_)) | (Some("KEY_MATERIAL_EXPIRES"), Some(_)) => ExpirationModel::Expires,
            (Some("KEY_MATERIAL_EXPIRES"), None) => {
                return Err(validation(
                    "ExpirationModel KEY_MATERIAL_EXPIRES needs ValidTo",
                ))
            }
            (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => {
                return Err(validation(
                    "ValidTo is not allowed with ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE",
                ))
            }
            (Some(m), _) => {
                return Err(validation(format!("ExpirationModel \"{m}\" is not valid")))
            }
        };
        if let Some(vt) = valid_to {
            if vt <= call.now {
                return Err(validation("ValidTo must be in the future"));
            }
        }
        let body = self.store.open_secret(TOKEN_LABEL, &token).ok_or_else(|| {
            err(
                ErrorKind::InvalidImportToken,
                "The import token is not valid for this store.",
            )
        })?;
        let body: TokenBody = serde_json::from_slice(&body).map_err(|_| {
            err(
                ErrorKind::InvalidImportToken,
                "The import token is damaged.",
            )
        })?;
        let wrapping_key = Zeroizing::new(hex::decode(&body.wrapping_key).map_err(|_| {
            err(
                ErrorKind::InvalidImportToken,
                "The import token is damaged.",
            )
        })?);
        let now = call.now;
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, key_id, false)?;
            let id = k.key_id.clone();
            self.authorize(
                call,
                st,
                super::authz::Authz::new(act::IMPORT_KEY_MATERIAL.iam, Some(k))
                    .set("kms:ExpirationModel", model.as_str())
                    .set("kms:ValidTo", valid_to.map(|v| v.to_string()).unwrap_or_default()),
            )?;
            self.gate(&act::IMPORT_KEY_MATERIAL, k, now)?;
            if body.key_id != k.key_id {
                return Err(err(ErrorKind::InvalidImportToken, format!("The import token was issued for another key, not {}", k.arn)));
            }
            if body.valid_to <= now {
                return Err(err(ErrorKind::ExpiredImportToken, "The import token has expired; call GetParametersForImport again."));
            }
            let wk = SealingKey::from_slice(&wrapping_key)
                .ok_or_else(|| err(ErrorKind::InvalidImportToken, "The import token is damaged."))?;
            let plain = crypto::open(&wk, WRAP_AAD, &wrapped).map_err(|_| {
                err(ErrorKind::InvalidCiphertext, "The EncryptedKeyMaterial could not be unwrapped with this import token's wrapping key.")
            })?;
            let material = KeyMaterial::from_slice(&plain).ok_or_else(|| {
                err(ErrorKind::IncorrectKeyMaterial, "symmetric key material must be exactly 32 bytes")
            })?;
            let commitment = self.store.commit_material(&id, &material);
            let imp = k.import.clone().unwrap_or_default();
            if let Some(c) = &imp.commitment {
                if !crypto::ct_eq(c.as_bytes(), commitment.as_bytes()) {
                    return Err(err(
                        ErrorKind::IncorrectKeyMaterial,
                        format!("The key material is not the material previously imported into {}", k.arn),
                    ));
                }
            }
            self.store.write_material(&id, 1, &material)?;
            let Some(rec) = st.keys.get_mut(&id) else {
                return Err(internal("the key vanished during the import"));
            };
            rec.import = Some(ImportState {
                commitment: Some(commitment),
                expiration_model: Some(model),
                valid_to,
            });
            if !rec.materials.iter().any(|m| m.version == 1) {
                rec.materials.push(MaterialVersion { version: 1, created: now });
            }
            rec.current_version = Some(1);
            if rec.state == KeyState::PendingImport {
                rec.state = KeyState::Enabled;
            }
            Ok((json!({}), true))
        })
    }

    pub(crate) fn delete_imported_key_material(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?.to_string();
        let id = self.update_key(
            call,
            &key_id,
            &act::DELETE_IMPORTED_KEY_MATERIAL,
            false,
            |a| a,
            |_, _, _, k| {
                k.materials.clear();
                k.current_version = None;
                if let Some(imp) = k.import.as_mut() {
                    imp.valid_to = None;
                    imp.expiration_model = None;
                }
                if k.state != KeyState::PendingDeletion {
                    k.state = KeyState::PendingImport;
                }
                Ok((k.key_id.clone(), true))
            },
        )?;
        // After the commit: no state names this material any more.
        self.forget_material(&id);
        self.store.shred_key(&id)?;
        Ok(json!({}))
    }
}
