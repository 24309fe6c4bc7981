//! Imported key material: GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial, for keys created with Origin EXTERNAL (they start
//! PendingImport).
//!
//! Wrapping is AWS's (see [`crate::crypto::import_wrap`]), so AWS's openssl runbook works
//! unchanged: GetParametersForImport takes WrappingAlgorithm `RSAES_OAEP_SHA_1`,
//! `RSAES_OAEP_SHA_256`, `RSA_AES_KEY_WRAP_SHA_1` or `RSA_AES_KEY_WRAP_SHA_256` and
//! WrappingKeySpec `RSA_2048|3072|4096` (both required, as in AWS), makes a fresh RSA key
//! pair and returns its public half as DER SubjectPublicKeyInfo in `PublicKey`. The
//! private half lives only inside the `ImportToken`: the token is sealed (AES-256-GCM,
//! the store's secret key, label [`TOKEN_LABEL`]) over
//! `version(1)=2 || valid_to(i64 BE) || algorithm(1) || key spec(1) || len(u16 BE) ||
//! key id || PKCS#8 private key`, so the store keeps no per-call state, a token opens only
//! in the store that made it, names the one key it may import into and the one algorithm
//! the material was wrapped with, and is refused after `ParametersValidTo` (24 hours).
//! `RSAES_PKCS1_V1_5` (withdrawn by AWS in 2023) and `SM2PKE` (AWS China only) are
//! answered with UnsupportedOperationException; any other value is a ValidationException.
//!
//! The earlier local scheme (`KMSFS_LOCAL_AES_256_GCM`, a symmetric "public" key) is
//! gone: its only users were kmsfs's own `wrap-key-material` helper and tests, which now
//! use RSAES_OAEP_SHA_256; tokens lived 24 hours, so no store holds anything that
//! depended on it (an old token is refused as InvalidImportTokenException).
//!
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
use crate::crypto::import_wrap::{WrappingAlgorithm, WrappingKeyPair, WrappingKeySpec};
use crate::crypto::{self, KeyMaterial};

/// The sealing label of import tokens (a new label per token layout, so a token of an
/// older layout never opens as this one).
const TOKEN_LABEL: &str = "import-token-rsa";
const TOKEN_VERSION: u8 = 2;

/// Wraps key material for ImportKeyMaterial under a GetParametersForImport `PublicKey`
/// (DER SubjectPublicKeyInfo) with `algorithm`, as AWS's import guide does with openssl
/// (used by the CLI's `wrap-key-material`).
pub fn wrap_key_material(
    public_key_der: &[u8],
    algorithm: &str,
    material: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let alg = parse_algorithm(algorithm)?;
    crypto::import_wrap::wrap(public_key_der, alg, material).map_err(|e| validation(e.to_string()))
}

fn parse_algorithm(name: &str) -> Result<WrappingAlgorithm, KmsError> {
    if let Some(a) = WrappingAlgorithm::parse(name) {
        return Ok(a);
    }
    match name {
        "RSAES_PKCS1_V1_5" => Err(err(
            ErrorKind::UnsupportedOperation,
            "WrappingAlgorithm RSAES_PKCS1_V1_5 is no longer supported; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.",
        )),
        "SM2PKE" => Err(err(
            ErrorKind::UnsupportedOperation,
            "WrappingAlgorithm SM2PKE is only available in AWS China Regions.",
        )),
        _ => Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'wrappingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, RSAES_PKCS1_V1_5, SM2PKE]"
        ))),
    }
}

fn parse_key_spec(name: &str) -> Result<WrappingKeySpec, KmsError> {
    WrappingKeySpec::parse(name).ok_or_else(|| {
        if name == "SM2" {
            err(
                ErrorKind::UnsupportedOperation,
                "WrappingKeySpec SM2 is only available in AWS China Regions.",
            )
        } else {
            validation(format!(
                "1 validation error detected: Value '{name}' at 'wrappingKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]"
            ))
        }
    })
}

/// What an import token holds once opened.
struct ImportToken {
    key_id: String,
    valid_to: i64,
    algorithm: WrappingAlgorithm,
    spec: WrappingKeySpec,
    wrapping_key: WrappingKeyPair,
}

impl ImportToken {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let der = self
            .wrapping_key
            .to_pkcs8_der()
            .map_err(|e| internal(e.to_string()))?;
        let id_len = u16::try_from(self.key_id.len())
            .map_err(|_| internal("key id too long for an import token"))?;
        let mut out = Zeroizing::new(Vec::with_capacity(13 + self.key_id.len() + der.len()));
        out.push(TOKEN_VERSION);
        out.extend_from_slice(&self.valid_to.to_be_bytes());
        out.push(self.algorithm.code());
        out.push(self.spec.code());
        out.extend_from_slice(&id_len.to_be_bytes());
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&der);
        Ok(out)
    }

    /// Reads an opened token; `None` when the layout is not this one.
    fn decode(body: &[u8]) -> Option<ImportToken> {
        let (&version, rest) = body.split_first()?;
        if version != TOKEN_VERSION {
            return None;
        }
        let (valid_to, rest) = rest.split_first_chunk::<8>()?;
        let (&alg, rest) = rest.split_first()?;
        let (&spec, rest) = rest.split_first()?;
        let spec = WrappingKeySpec::from_code(spec)?;
        let (id_len, rest) = rest.split_first_chunk::<2>()?;
        let id_len = usize::from(u16::from_be_bytes(*id_len));
        let key_id = rest.get(..id_len)?;
        let der = rest.get(id_len..)?;
        let wrapping_key = WrappingKeyPair::from_pkcs8_der(der).ok()?;
        if wrapping_key.bits() != spec.bits() {
            return None;
        }
        Some(ImportToken {
            key_id: String::from_utf8(key_id.to_vec()).ok()?,
            valid_to: i64::from_be_bytes(*valid_to),
            algorithm: WrappingAlgorithm::from_code(alg)?,
            spec,
            wrapping_key,
        })
    }
}

impl Service {
    pub(crate) fn get_parameters_for_import(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let algorithm = parse_algorithm(r.str("WrappingAlgorithm")?)?;
        let spec = parse_key_spec(r.str("WrappingKeySpec")?)?;
        let snap = self.snapshot()?;
        let (k, _) = self.find_key(call, &snap.state, key_id, false)?;
        self.authorize(
            call,
            &snap.state,
            super::authz::Authz::new(act::GET_PARAMETERS_FOR_IMPORT.iam, Some(k))
                .set("kms:WrappingAlgorithm", algorithm.as_str())
                .set("kms:WrappingKeySpec", spec.as_str()),
        )?;
        self.gate(&act::GET_PARAMETERS_FOR_IMPORT, k, call.now)?;
        // After authorization: key generation is the expensive part of this call.
        let wrapping_key = WrappingKeyPair::generate(spec).map_err(|e| internal(e.to_string()))?;
        let public_key = wrapping_key
            .public_key_der()
            .map_err(|e| internal(e.to_string()))?;
        let valid_to = call.now + DAY;
        let body = ImportToken {
            key_id: k.key_id.clone(),
            valid_to,
            algorithm,
            spec,
            wrapping_key,
        }
        .encode()?;
        let token = self.store.seal_secret(TOKEN_LABEL, &body)?;
        Ok(json!({
            "KeyId": k.arn,
            "ImportToken": b64().encode(token),
            "PublicKey": b64().encode(public_key),
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
        let body = ImportToken::decode(&body).ok_or_else(|| {
            err(
                ErrorKind::InvalidImportToken,
                "The import token is damaged.",
            )
        })?;
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
            let plain = body.wrapping_key.unwrap(body.algorithm, &wrapped).map_err(|_| {
                err(ErrorKind::InvalidCiphertext, format!("The EncryptedKeyMaterial could not be unwrapped with this import token's wrapping key and algorithm ({}).", body.algorithm.as_str()))
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
