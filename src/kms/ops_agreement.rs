//! Key agreement: DeriveSharedSecret. ECDH between a KEY_AGREEMENT key's private half
//! (never leaving the service) and a peer's public key; the raw shared secret goes back
//! to the caller, as AWS returns it, and nothing is stored.

use base64::Engine as _;
use serde_json::{json, Value};

use super::admission::{admit, dry_run};
use super::authz::Authz;
use super::request::{b64, lower_first, validation, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::crypto::asym::PrivateKey;
use crate::crypto::keypair::{self, EcdhSecret, KeyPairError};
use crate::policy::actions as act;

/// The only key agreement algorithm AWS defines (`KeyAgreementAlgorithmSpec`).
const ECDH: &str = "ECDH";
/// AWS's bound of `PublicKey` (PublicKeyType).
const MAX_PUBLIC_KEY: usize = 8192;

impl Service {
    pub(crate) fn derive_shared_secret(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let algorithm = r.str("KeyAgreementAlgorithm")?;
        if algorithm != ECDH {
            return Err(validation(format!(
                "1 validation error detected: Value '{algorithm}' at 'keyAgreementAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [{ECDH}]"
            )));
        }
        let peer = r.blob("PublicKey")?;
        if peer.is_empty() || peer.len() > MAX_PUBLIC_KEY {
            return Err(validation(format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length between 1 and {MAX_PUBLIC_KEY}",
                lower_first("PublicKey")
            )));
        }
        super::ops_grants::check_grant_tokens(&r)?;
        r.refuse_recipient()?;
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::DERIVE_SHARED_SECRET.iam, Some(k))
            .set("kms:KeyAgreementAlgorithm", ECDH)
            .request_alias(alias);
        // The gate refuses keys whose usage is not KEY_AGREEMENT.
        admit(
            self,
            call,
            &snap.state,
            vec![(&act::DERIVE_SHARED_SECRET, a)],
            None,
        )?;
        let private = self.private_key(k)?;
        let secret = match &*private {
            PrivateKey::P256(sk) => EcdhSecret::P256(sk),
            PrivateKey::P384(sk) => EcdhSecret::P384(sk),
            PrivateKey::P521(sk) => EcdhSecret::P521(sk),
            PrivateKey::Secp256k1(sk) => EcdhSecret::Secp256k1(sk),
            _ => {
                return Err(err(
                    ErrorKind::InvalidKeyUsage,
                    format!(
                        "{} key spec is {} which is not valid for DeriveSharedSecret.",
                        k.arn,
                        k.key_spec.as_str()
                    ),
                ))
            }
        };
        // Checked before DryRun so that a dry run with a bad peer key fails as the real
        // call would.
        let shared = keypair::ecdh(secret, &peer).map_err(|e| match e {
            KeyPairError::PeerPublicKey => validation(format!(
                "PublicKey must be a DER-encoded SubjectPublicKeyInfo of a point on the curve of {} ({})",
                k.arn,
                k.key_spec.as_str()
            )),
            other => internal(other.to_string()),
        })?;
        if r.flag("DryRun")? {
            return Err(dry_run());
        }
        Ok(json!({
            "KeyId": k.arn,
            "SharedSecret": b64().encode(&*shared),
            "KeyAgreementAlgorithm": ECDH,
            "KeyOrigin": k.origin.as_str(),
        }))
    }
}
