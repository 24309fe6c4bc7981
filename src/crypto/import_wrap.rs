//! AWS KMS's wrapping of imported key material: an RSA wrapping key pair made per
//! GetParametersForImport call, and the four wrapping algorithms AWS accepts today.
//!
//! - `RSAES_OAEP_SHA_1` / `RSAES_OAEP_SHA_256`: the material itself is RSA-OAEP
//!   encrypted under the wrapping public key, with MGF1 over the same hash as the OAEP
//!   label hash (openssl: `-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:H
//!   -pkeyopt rsa_mgf1_md:H`).
//! - `RSA_AES_KEY_WRAP_SHA_1` / `_SHA_256` (PKCS #11's CKM_RSA_AES_KEY_WRAP): the client
//!   makes a random 256-bit AES key, RSA-OAEP encrypts it as above, and appends the
//!   material wrapped under that AES key with AES key wrap with padding (RFC 5649,
//!   openssl `enc -id-aes256-wrap-pad`). The RSA part is exactly the modulus length, so
//!   the split needs no length field.
//!
//! The private key never leaves this module except as PKCS #8 DER in a zeroizing buffer
//! (for the caller to seal); `RsaPrivateKey` wipes itself on drop. Every unwrap failure is
//! one error without detail, so a caller cannot learn which step failed. Note: the `rsa`
//! crate's decryption is not hardened against timing (RUSTSEC-2023-0071); the wrapping
//! key is single-purpose, lives at most 24 hours and only unwraps material its holder
//! was authorized to import.

use aes_kw::KekAes256;
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

/// Length of the ephemeral AES key of the RSA_AES_KEY_WRAP algorithms (AES-256).
pub const EPHEMERAL_AES_KEY_LEN: usize = 32;

/// Errors of import wrapping. [`ImportWrapError::Unwrap`] deliberately carries no
/// detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportWrapError {
    #[error("the wrapped key material could not be unwrapped with this wrapping key")]
    Unwrap,
    #[error("the public key is not a DER SubjectPublicKeyInfo RSA key")]
    PublicKey,
    #[error("the wrapping key could not be encoded or decoded")]
    Encoding,
    #[error("the RSA wrapping key could not be generated")]
    Generate,
    #[error("the key material could not be wrapped: {0}")]
    Wrap(&'static str),
}

/// The `WrappingAlgorithm` values kmsfs accepts (AWS withdrew `RSAES_PKCS1_V1_5`;
/// `SM2PKE` exists only in AWS's China regions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    RsaesOaepSha1,
    RsaesOaepSha256,
    RsaAesKeyWrapSha1,
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    pub const ALL: [WrappingAlgorithm; 4] = [
        WrappingAlgorithm::RsaesOaepSha1,
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
        WrappingAlgorithm::RsaAesKeyWrapSha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// A stable one-byte code (for sealed import tokens).
    pub fn code(self) -> u8 {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => 1,
            WrappingAlgorithm::RsaesOaepSha256 => 2,
            WrappingAlgorithm::RsaAesKeyWrapSha1 => 3,
            WrappingAlgorithm::RsaAesKeyWrapSha256 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }

    fn oaep(self) -> Oaep {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
                Oaep::new::<sha1::Sha1>()
            }
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
                Oaep::new::<sha2::Sha256>()
            }
        }
    }

    fn uses_aes_key_wrap(self) -> bool {
        matches!(
            self,
            WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256
        )
    }
}

/// The `WrappingKeySpec` values: the RSA modulus size of the wrapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingKeySpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl WrappingKeySpec {
    pub const ALL: [WrappingKeySpec; 3] = [
        WrappingKeySpec::Rsa2048,
        WrappingKeySpec::Rsa3072,
        WrappingKeySpec::Rsa4096,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WrappingKeySpec::Rsa2048 => "RSA_2048",
            WrappingKeySpec::Rsa3072 => "RSA_3072",
            WrappingKeySpec::Rsa4096 => "RSA_4096",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn bits(self) -> usize {
        match self {
            WrappingKeySpec::Rsa2048 => 2048,
            WrappingKeySpec::Rsa3072 => 3072,
            WrappingKeySpec::Rsa4096 => 4096,
        }
    }

    /// A stable one-byte code (for sealed import tokens).
    pub fn code(self) -> u8 {
        match self {
            WrappingKeySpec::Rsa2048 => 1,
            WrappingKeySpec::Rsa3072 => 2,
            WrappingKeySpec::Rsa4096 => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// An RSA wrapping key pair. No `Clone`; `Debug` prints nothing of the key.
pub struct WrappingKeyPair(RsaPrivateKey);

impl std::fmt::Debug for WrappingKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappingKeyPair(..)")
    }
}

impl WrappingKeyPair {
    /// A fresh key pair from the operating system's random generator.
    pub fn generate(spec: WrappingKeySpec) -> Result<Self, ImportWrapError> {
        RsaPrivateKey::new(&mut OsRng, spec.bits())
            .map(WrappingKeyPair)
            .map_err(|_| ImportWrapError::Generate)
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.0.size() * 8
    }

    /// The public key as DER SubjectPublicKeyInfo (what AWS returns in `PublicKey`).
    pub fn public_key_der(&self) -> Result<Vec<u8>, ImportWrapError> {
        RsaPublicKey::from(&self.0)
            .to_public_key_der()
            .map(|d| d.into_vec())
            .map_err(|_| ImportWrapError::Encoding)
    }

    /// The private key as PKCS #8 DER, for sealing.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, ImportWrapError> {
        let doc = self
            .0
            .to_pkcs8_der()
            .map_err(|_| ImportWrapError::Encoding)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, ImportWrapError> {
        RsaPrivateKey::from_pkcs8_der(der)
            .map(WrappingKeyPair)
            .map_err(|_| ImportWrapError::Encoding)
    }

    /// Recovers key material wrapped with `algorithm` under this key pair's public key.
    pub fn unwrap(
        &self,
        algorithm: WrappingAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ImportWrapError> {
        if !algorithm.uses_aes_key_wrap() {
            return self
                .0
                .decrypt(algorithm.oaep(), wrapped)
                .map(Zeroizing::new)
                .map_err(|_| ImportWrapError::Unwrap);
        }
        let k = self.0.size();
        if wrapped.len() <= k {
            return Err(ImportWrapError::Unwrap);
        }
        let (rsa_part, kwp_part) = wrapped.split_at(k);
        let aes_key = Zeroizing::new(
            self.0
                .decrypt(algorithm.oaep(), rsa_part)
                .map_err(|_| ImportWrapError::Unwrap)?,
        );
        let kek = KekAes256::try_from(aes_key.as_slice()).map_err(|_| ImportWrapError::Unwrap)?;
        kek.unwrap_with_padding_vec(kwp_part)
            .map(Zeroizing::new)
            .map_err(|_| ImportWrapError::Unwrap)
    }
}

/// The client's side: wraps `material` under a DER SubjectPublicKeyInfo RSA public key
/// (a GetParametersForImport `PublicKey`) with `algorithm`. kmsfs's own CLI helper uses
/// it; anything else may use openssl as AWS's guide shows.
pub fn wrap(
    public_key_der: &[u8],
    algorithm: WrappingAlgorithm,
    material: &[u8],
) -> Result<Vec<u8>, ImportWrapError> {
    let public = RsaPublicKey::from_public_key_der(public_key_der)
        .map_err(|_| ImportWrapError::PublicKey)?;
    if !algorithm.uses_aes_key_wrap() {
        return public
            .encrypt(&mut OsRng, algorithm.oaep(), material)
            .map_err(|_| {
                ImportWrapError::Wrap("the material is too long for RSA-OAEP with this key")
            });
    }
    let mut aes_key = Zeroizing::new([0u8; EPHEMERAL_AES_KEY_LEN]);
    super::random_fill(aes_key.as_mut_slice())
        .map_err(|_| ImportWrapError::Wrap("no randomness"))?;
    let mut out = public
        .encrypt(&mut OsRng, algorithm.oaep(), aes_key.as_slice())
        .map_err(|_| ImportWrapError::Wrap("RSA-OAEP failed"))?;
    let kek = KekAes256::try_from(aes_key.as_slice())
        .map_err(|_| ImportWrapError::Wrap("AES key wrap failed"))?;
    let kwp = kek
        .wrap_with_padding_vec(material)
        .map_err(|_| ImportWrapError::Wrap("AES key wrap failed"))?;
    out.extend_from_slice(&kwp);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_and_rejects_tampering() {
        let pair = WrappingKeyPair::generate(WrappingKeySpec::Rsa2048).unwrap();
        let der = pair.public_key_der().unwrap();
        let material = [0x5au8; 32];
        for alg in WrappingAlgorithm::ALL {
            let wrapped = wrap(&der, alg, &material).unwrap();
            assert_eq!(pair.unwrap(alg, &wrapped).unwrap().as_slice(), &material);
            let mut bad = wrapped.clone();
            if let Some(b) = bad.last_mut() {
                *b ^= 1;
            }
            assert_eq!(pair.unwrap(alg, &bad).unwrap_err(), ImportWrapError::Unwrap);
            // The hash is part of the algorithm: SHA-1 wrapping never opens as SHA-256.
            let other = match alg {
                WrappingAlgorithm::RsaesOaepSha1 => WrappingAlgorithm::RsaesOaepSha256,
                WrappingAlgorithm::RsaesOaepSha256 => WrappingAlgorithm::RsaesOaepSha1,
                WrappingAlgorithm::RsaAesKeyWrapSha1 => WrappingAlgorithm::RsaAesKeyWrapSha256,
                WrappingAlgorithm::RsaAesKeyWrapSha256 => WrappingAlgorithm::RsaAesKeyWrapSha1,
            };
            assert!(pair.unwrap(other, &wrapped).is_err());
        }
        let again = WrappingKeyPair::from_pkcs8_der(&pair.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(again.public_key_der().unwrap(), der);
        assert!(pair
            .unwrap(WrappingAlgorithm::RsaAesKeyWrapSha256, &[0u8; 256])
            .is_err());
    }

    #[test]
    fn names_and_codes_round_trip() {
        for a in WrappingAlgorithm::ALL {
            assert_eq!(WrappingAlgorithm::parse(a.as_str()), Some(a));
            assert_eq!(WrappingAlgorithm::from_code(a.code()), Some(a));
        }
        for s in WrappingKeySpec::ALL {
            assert_eq!(WrappingKeySpec::parse(s.as_str()), Some(s));
            assert_eq!(WrappingKeySpec::from_code(s.code()), Some(s));
        }
        assert_eq!(WrappingAlgorithm::parse("RSAES_PKCS1_V1_5"), None);
    }
}
