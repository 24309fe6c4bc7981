//! Operations of asymmetric keys: Sign, Verify, GetPublicKey, and the RSA half of
//! Encrypt, Decrypt and ReEncrypt (RSAES-OAEP, raw RSA output as the ciphertext, as
//! AWS returns it). Each resolves the key, authorizes with the condition keys AWS
//! defines for it (kms:SigningAlgorithm, kms:MessageType, kms:EncryptionAlgorithm),
//! gates on key state and usage (`keyspec::usage_refusal`), then acts with the cached
//! private key. Never returns or audits the private key, the message or the plaintext.

use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::admission::admit;
use super::authz::Authz;
use super::keyspec::{self, EncryptionAlgorithm, KeySpec, SigningAlgorithm};
use super::model::KeyRecord;
use super::request::{b64, validation, Req};
use super::service::{err, Call, Service};
use super::{ErrorKind, KmsError};
use crate::crypto::asym::{AsymError, Hash, Message};
use crate::policy::actions as act;

/// AWS's bound on Sign's and Verify's Message.
const MAX_MESSAGE: usize = 4096;
/// AWS's bound on Verify's Signature.
const MAX_SIGNATURE: usize = 6144;

/// An encryption or signing algorithm member, parsed: unknown names are a
/// ValidationException with AWS's enum wording.
fn enum_error(member: &str, value: &str, all: &[&str]) -> KmsError {
    let mut field = member.to_string();
    if let Some(f) = field.get_mut(0..1) {
        f.make_ascii_lowercase();
    }
    validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        all.join(", ")
    ))
}

/// The EncryptionAlgorithm-like member `name`, if given.
pub(crate) fn parse_encryption_algorithm(
    r: &Req<'_>,
    name: &str,
) -> Result<Option<EncryptionAlgorithm>, KmsError> {
    match r.opt_str(name)? {
        None => Ok(None),
        Some(s) => EncryptionAlgorithm::parse(s).map(Some).ok_or_else(|| {
            let all: Vec<&str> = EncryptionAlgorithm::ALL
                .iter()
                .map(|a| a.as_str())
                .collect();
            enum_error(name, s, &all)
        }),
    }
}

/// What an encryption algorithm means for key `k`: None for a symmetric key (the
/// algorithm must be SYMMETRIC_DEFAULT or absent), the OAEP hash for an RSA key (an
/// RSAES_OAEP algorithm is required, and AWS allows no encryption context).
pub(crate) fn oaep_for(
    k: &KeyRecord,
    alg: Option<EncryptionAlgorithm>,
    member: &str,
    context_given: bool,
) -> Result<Option<Hash>, KmsError> {
    let name = alg.unwrap_or(EncryptionAlgorithm::SymmetricDefault);
    let valid = keyspec::encryption_algorithms(k.key_spec, k.key_usage);
    if !valid.contains(&name) {
        let list: Vec<&str> = valid.iter().map(|a| a.as_str()).collect();
        return Err(err(
            ErrorKind::InvalidKeyUsage,
            format!(
                "{} key spec is {}, which does not support {member} {}; use {}",
                k.arn,
                k.key_spec.as_str(),
                name.as_str(),
                list.join(" or ")
            ),
        ));
    }
    let hash = name.oaep_hash();
    if hash.is_some() && context_given {
        return Err(validation(format!(
            "{}: an encryption context is not supported with asymmetric KMS keys",
            k.arn
        )));
    }
    Ok(hash)
}

/// The kms:EncryptionAlgorithm value of a request (SYMMETRIC_DEFAULT when absent).
pub(crate) fn algorithm_condition(alg: Option<EncryptionAlgorithm>) -> &'static str {
    alg.unwrap_or(EncryptionAlgorithm::SymmetricDefault)
        .as_str()
}

/// Sign's and Verify's MessageType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageType {
    Raw,
    Digest,
}

impl MessageType {
    fn as_str(self) -> &'static str {
        match self {
            MessageType::Raw => "RAW",
            MessageType::Digest => "DIGEST",
        }
    }
}

/// The parts of a Sign or Verify request before the key is known.
struct SignRequest {
    message: Zeroizing<Vec<u8>>,
    message_type: MessageType,
    algorithm: SigningAlgorithm,
}

fn parse_sign_request(r: &Req<'_>) -> Result<SignRequest, KmsError> {
    let message = r.blob("Message")?;
    if message.is_empty() || message.len() > MAX_MESSAGE {
        return Err(validation(format!(
            "Message must be 1 to {MAX_MESSAGE} bytes (it is {}); to sign a larger message, give its digest with MessageType DIGEST",
            message.len()
        )));
    }
    let message_type = match r.opt_str("MessageType")? {
        None | Some("RAW") => MessageType::Raw,
        Some("DIGEST") => MessageType::Digest,
        Some("EXTERNAL_MU") => {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                "MessageType EXTERNAL_MU is for ML-DSA keys, which kmsfs does not have",
            ))
        }
        Some(s) => {
            return Err(enum_error(
                "MessageType",
                s,
                &["RAW", "DIGEST", "EXTERNAL_MU"],
            ))
        }
    };
    let alg = r.str("SigningAlgorithm")?;
    let algorithm = SigningAlgorithm::parse(alg).ok_or_else(|| {
        let all: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
        enum_error("SigningAlgorithm", alg, &all)
    })?;
    super::ops_grants::check_grant_tokens(r)?;
    Ok(SignRequest {
        message,
        message_type,
        algorithm,
    })
}

impl SignRequest {
    /// The signing algorithm must be one the key lists.
    fn check_key(&self, k: &KeyRecord) -> Result<crate::crypto::asym::SignScheme, KmsError> {
        let valid = keyspec::signing_algorithms(k.key_spec, k.key_usage);
        let scheme = self
            .algorithm
            .scheme()
            .filter(|_| valid.contains(&self.algorithm));
        let Some(scheme) = scheme else {
            let list: Vec<&str> = valid.iter().map(|a| a.as_str()).collect();
            return Err(err(
                ErrorKind::InvalidKeyUsage,
                format!(
                    "{} key spec is {}, which does not support SigningAlgorithm {}; use {}",
                    k.arn,
                    k.key_spec.as_str(),
                    self.algorithm.as_str(),
                    list.join(", ")
                ),
            ));
        };
        if self.message_type == MessageType::Digest && scheme.hash().is_none() {
            return Err(validation(format!(
                "SigningAlgorithm {} takes the message itself in kmsfs: use MessageType RAW",
                self.algorithm.as_str()
            )));
        }
        Ok(scheme)
    }

    fn message(&self) -> Message<'_> {
        match self.message_type {
            MessageType::Raw => Message::Raw(&self.message),
            MessageType::Digest => Message::Digest(&self.message),
        }
    }
}

/// A crypto error as AWS reports it for a request's input, or an internal error.
fn asym_error(alg: SigningAlgorithm, e: AsymError) -> KmsError {
    match e {
        AsymError::DigestLength { got, want } => validation(format!(
            "Digest is invalid length for algorithm {}: it is {got} bytes, the algorithm's digest is {want} bytes",
            alg.as_str()
        )),
        other => super::store::internal(other.to_string()),
    }
}

impl Service {
    /// Resolves the key of a Sign or Verify request and admits the call.
    fn admit_signing<'s>(
        &self,
        call: &mut Call,
        st: &'s super::model::StoreState,
        r: &Req<'_>,
        s: &SignRequest,
        op: &'static act::Action,
    ) -> Result<&'s KeyRecord, KmsError> {
        let key_id = r.str("KeyId")?;
        let (k, alias) = self.find_key(call, st, key_id, true)?;
        let a = Authz::new(op.iam, Some(k))
            .set("kms:SigningAlgorithm", s.algorithm.as_str())
            .set("kms:MessageType", s.message_type.as_str())
            .request_alias(alias);
        admit(self, call, st, vec![(op, a)], Some(r))?;
        Ok(k)
    }

    pub(crate) fn sign(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let s = parse_sign_request(&r)?;
        let snap = self.snapshot()?;
        let k = self.admit_signing(call, &snap.state, &r, &s, &act::SIGN)?;
        let scheme = s.check_key(k)?;
        let key = self.private_key(k)?;
        let sig = key
            .sign(scheme, s.message())
            .map_err(|e| asym_error(s.algorithm, e))?;
        Ok(json!({
            "KeyId": k.arn,
            "Signature": b64().encode(sig),
            "SigningAlgorithm": s.algorithm.as_str(),
        }))
    }

    pub(crate) fn verify(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let s = parse_sign_request(&r)?;
        let signature = r.blob("Signature")?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE {
            return Err(validation(format!(
                "Signature must be 1 to {MAX_SIGNATURE} bytes"
            )));
        }
        let snap = self.snapshot()?;
        let k = self.admit_signing(call, &snap.state, &r, &s, &act::VERIFY)?;
        let scheme = s.check_key(k)?;
        let key = self.private_key(k)?;
        let valid = key
            .verify(scheme, s.message(), &signature)
            .map_err(|e| asym_error(s.algorithm, e))?;
        if !valid {
            return Err(err(
                ErrorKind::KmsInvalidSignature,
                format!(
                    "the signature is not valid for this message, key ({}) and SigningAlgorithm {}",
                    k.arn,
                    s.algorithm.as_str()
                ),
            ));
        }
        Ok(json!({
            "KeyId": k.arn,
            "SignatureValid": true,
            "SigningAlgorithm": s.algorithm.as_str(),
        }))
    }

    pub(crate) fn get_public_key(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        super::ops_grants::check_grant_tokens(&r)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::GET_PUBLIC_KEY.iam, Some(k)).request_alias(alias);
        admit(
            self,
            call,
            &snap.state,
            vec![(&act::GET_PUBLIC_KEY, a)],
            None,
        )?;
        let der = self
            .private_key(k)?
            .public_der()
            .map_err(|e| super::store::internal(e.to_string()))?;
        let mut out = json!({
            "KeyId": k.arn,
            "PublicKey": b64().encode(der),
            "CustomerMasterKeySpec": k.key_spec.as_str(),
            "KeySpec": k.key_spec.as_str(),
            "KeyUsage": k.key_usage.as_str(),
        });
        if let Value::Object(o) = &mut out {
            keyspec::add_algorithms(o, k.key_spec, k.key_usage);
        }
        Ok(out)
    }

    /// RSAES-OAEP encryption under an RSA ENCRYPT_DECRYPT key, with AWS's plaintext
    /// bound for the key size and hash.
    pub(crate) fn rsa_encrypt(
        &self,
        k: &KeyRecord,
        hash: Hash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let key = self.private_key(k)?;
        let max = key.max_plaintext(hash).unwrap_or(0);
        if plaintext.len() > max {
            return Err(validation(format!(
                "Plaintext is {} bytes; {} with {} encrypts at most {max} bytes",
                plaintext.len(),
                k.key_spec.as_str(),
                if hash == Hash::Sha1 {
                    "RSAES_OAEP_SHA_1"
                } else {
                    "RSAES_OAEP_SHA_256"
                }
            )));
        }
        key.encrypt(hash, plaintext)
            .map_err(|e| super::store::internal(e.to_string()))
    }

    /// RSAES-OAEP decryption; every failure is InvalidCiphertextException.
    pub(crate) fn rsa_decrypt(
        &self,
        k: &KeyRecord,
        hash: Hash,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let key = self.private_key(k)?;
        key.decrypt(hash, ciphertext).map_err(|_| {
            err(
                ErrorKind::InvalidCiphertext,
                format!(
                    "the ciphertext is not an RSAES-OAEP ciphertext of {} with this EncryptionAlgorithm",
                    k.arn
                ),
            )
        })
    }
}

/// Whether a key is an RSA key (asymmetric encryption keys are RSA in kmsfs).
pub(crate) fn is_asymmetric(k: &KeyRecord) -> bool {
    !matches!(k.key_spec, KeySpec::SymmetricDefault) && k.key_spec.is_asymmetric()
}
