//! Asymmetric data key pairs (GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext):
//! a fresh key pair whose private half comes back sealed under a symmetric KMS key, in
//! the ciphertext format Decrypt opens, with the request's encryption context. The pair
//! itself comes from [`crate::crypto::keypair`]; nothing about it is stored.

use base64::Engine as _;
use serde_json::{json, Value};

use super::admission::admit;
use super::authz::Authz;
use super::request::{b64, validation, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::crypto::keypair::{self, KeyPairSpec};
use crate::policy::actions as act;

/// AWS's `DataKeyPairSpec` values this build cannot generate: SM2 exists only in AWS's
/// China Regions, and ML-KEM has no RustCrypto crate in this build.
const UNSUPPORTED_PAIR_SPECS: &[&str] = &["SM2", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"];

/// The KeyPairSpec member, checked as AWS checks it: an unknown value is a
/// ValidationException listing the enum, a value AWS knows but kmsfs cannot generate is
/// UnsupportedOperationException.
fn key_pair_spec(r: &Req<'_>) -> Result<KeyPairSpec, KmsError> {
    let name = r.str("KeyPairSpec")?;
    if let Some(spec) = KeyPairSpec::parse(name) {
        return Ok(spec);
    }
    if UNSUPPORTED_PAIR_SPECS.contains(&name) {
        return Err(err(
            ErrorKind::UnsupportedOperation,
            format!("KeyPairSpec {name} is not supported by kmsfs (SM2 is offered only in AWS China Regions; ML-KEM has no implementation here)"),
        ));
    }
    let all: Vec<&str> = KeyPairSpec::ALL
        .iter()
        .map(|s| s.name())
        .chain(UNSUPPORTED_PAIR_SPECS.iter().copied())
        .collect();
    Err(validation(format!(
        "1 validation error detected: Value '{name}' at 'keyPairSpec' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        all.join(", ")
    )))
}

impl Service {
    pub(crate) fn generate_data_key_pair_op(
        &self,
        call: &mut Call,
        req: &Value,
        with_plaintext: bool,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let spec = key_pair_spec(&r)?;
        let ctx = r.opt_context("EncryptionContext")?;
        super::ops_grants::check_grant_tokens(&r)?;
        if with_plaintext {
            r.refuse_recipient()?;
        }
        let op = if with_plaintext {
            &act::GENERATE_DATA_KEY_PAIR
        } else {
            &act::GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT
        };
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(op.iam, Some(k))
            .context(ctx.as_ref())
            .set("kms:DataKeyPairSpec", spec.name())
            .request_alias(alias);
        admit(self, call, &snap.state, vec![(op, a)], Some(&r))?;
        // Generated only once the caller is admitted: an RSA_4096 pair costs real CPU.
        let pair = keypair::generate_key_pair(spec).map_err(|e| internal(e.to_string()))?;
        let blob = self.seal_with(k, pair.private.expose(), ctx.as_ref())?;
        let mut out = json!({
            "PrivateKeyCiphertextBlob": b64().encode(blob),
            "PublicKey": b64().encode(&pair.public),
            "KeyId": k.arn,
            "KeyPairSpec": spec.name(),
        });
        if with_plaintext {
            if let Value::Object(o) = &mut out {
                o.insert(
                    "PrivateKeyPlaintext".into(),
                    Value::String(b64().encode(pair.private.expose())),
                );
            }
        }
        Ok(out)
    }
}
