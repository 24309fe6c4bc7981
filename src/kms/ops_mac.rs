//! HMAC keys' operations: GenerateMac and VerifyMac. The key must be an HMAC key
//! (KeyUsage GENERATE_VERIFY_MAC, checked by the key gate) and the request's
//! MacAlgorithm the one its key spec computes; the MAC itself comes from
//! [`crate::crypto::mac`], compared in constant time.

use base64::Engine as _;
use serde_json::{json, Value};

use super::admission::{admit, dry_run};
use super::authz::Authz;
use super::model::KeyRecord;
use super::request::{b64, lower_first, validation, Req};
use super::service::{err, Call, Service};
use super::{ErrorKind, KmsError};
use crate::crypto::mac::{self, MacAlgorithm, MacKey};
use crate::policy::actions::{self as act, Action};

/// AWS's bounds of `Message` (PlaintextType) and `Mac` (CiphertextType).
const MAX_MESSAGE: usize = 4096;
const MAX_MAC: usize = 6144;

fn mac_algorithm(r: &Req<'_>) -> Result<MacAlgorithm, KmsError> {
    let name = r.str("MacAlgorithm")?;
    MacAlgorithm::parse(name).ok_or_else(|| {
        let all: Vec<&str> = MacAlgorithm::ALL.iter().map(|a| a.name()).collect();
        validation(format!(
            "1 validation error detected: Value '{name}' at 'macAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            all.join(", ")
        ))
    })
}

fn bounded_blob(
    r: &Req<'_>,
    name: &str,
    max: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
    let b = r.blob(name)?;
    if b.is_empty() || b.len() > max {
        return Err(validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length between 1 and {max}",
            lower_first(name)
        )));
    }
    Ok(b)
}

impl Service {
    /// Resolves, authorizes and gates an HMAC key for `op`, checks that `alg` is its
    /// algorithm, honours DryRun, and returns the key record's ARN and secret.
    fn admit_mac(
        &self,
        call: &mut Call,
        r: &Req<'_>,
        op: &'static Action,
        alg: MacAlgorithm,
    ) -> Result<(String, MacKey), KmsError> {
        let key_id = r.str("KeyId")?;
        super::ops_grants::check_grant_tokens(r)?;
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(op.iam, Some(k))
            .set("kms:MacAlgorithm", alg.name())
            .request_alias(alias);
        // DryRun is answered only after the algorithm check: a dry run must fail as the
        // real call would.
        admit(self, call, &snap.state, vec![(op, a)], None)?;
        check_algorithm_fits(k, alg)?;
        if r.flag("DryRun")? {
            return Err(dry_run());
        }
        let key = MacKey::from_bytes(self.hmac_key(k)?);
        Ok((k.arn.clone(), key))
    }

    pub(crate) fn generate_mac(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let message = bounded_blob(&r, "Message", MAX_MESSAGE)?;
        let alg = mac_algorithm(&r)?;
        let (arn, key) = self.admit_mac(call, &r, &act::GENERATE_MAC, alg)?;
        let tag = mac::generate_mac(alg, &key, &message);
        Ok(json!({
            "Mac": b64().encode(tag),
            "MacAlgorithm": alg.name(),
            "KeyId": arn,
        }))
    }

    pub(crate) fn verify_mac(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let message = bounded_blob(&r, "Message", MAX_MESSAGE)?;
        let tag = bounded_blob(&r, "Mac", MAX_MAC)?;
        let alg = mac_algorithm(&r)?;
        let (arn, key) = self.admit_mac(call, &r, &act::VERIFY_MAC, alg)?;
        if !mac::verify_mac(alg, &key, &message, &tag) {
            return Err(err(
                ErrorKind::KmsInvalidMac,
                "The MAC does not match the message, the HMAC KMS key and the MAC algorithm.",
            ));
        }
        Ok(json!({
            "KeyId": arn,
            "MacValid": true,
            "MacAlgorithm": alg.name(),
        }))
    }
}

/// AWS refuses a MacAlgorithm the key's spec does not compute with
/// InvalidKeyUsageException (each HMAC key spec has exactly one algorithm).
fn check_algorithm_fits(k: &KeyRecord, alg: MacAlgorithm) -> Result<(), KmsError> {
    if MacAlgorithm::for_key_spec(k.key_spec.as_str()) == Some(alg) {
        return Ok(());
    }
    Err(err(
        ErrorKind::InvalidKeyUsage,
        format!(
            "{} key spec is {} which does not support MacAlgorithm {}.",
            k.arn,
            k.key_spec.as_str(),
            alg.name()
        ),
    ))
}
