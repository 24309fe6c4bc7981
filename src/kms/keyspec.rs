//! Key specs, key usages and algorithms as AWS KMS names them ("Key spec reference" in
//! the AWS KMS Developer Guide): which usages each spec allows, the algorithm lists
//! DescribeKey and GetPublicKey show, the grant operations each kind of key accepts,
//! and the usage rule of each operation ([`usage_refusal`]), asked beside the key-state
//! gate. Pure data and functions: no store, no crypto (the mathematics is in
//! `crypto::asym`, reached through [`KeySpec::pair_spec`]).

use serde::{Deserialize, Serialize};

use super::ErrorKind;
use crate::crypto::asym::{Hash, PairSpec, SignScheme};
use crate::crypto::keypair::KeyPairSpec;
use crate::crypto::mac::MacAlgorithm;
use crate::policy::actions as act;

/// Declares an enum whose variants carry AWS's spelling once (serde, `as_str`, `parse`).
macro_rules! aws_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant,)*
        }

        impl $name {
            /// Every value, in AWS's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// AWS's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s,)* }
            }

            /// The value AWS spells `s` (exact, as AWS's enums are case-sensitive).
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

aws_enum!(
    /// What a key is (`KeySpec`; `CustomerMasterKeySpec` is its deprecated alias).
    KeySpec {
        SymmetricDefault => "SYMMETRIC_DEFAULT",
        Rsa2048 => "RSA_2048",
        Rsa3072 => "RSA_3072",
        Rsa4096 => "RSA_4096",
        EccNistP256 => "ECC_NIST_P256",
        EccNistP384 => "ECC_NIST_P384",
        EccNistP521 => "ECC_NIST_P521",
        EccSecgP256k1 => "ECC_SECG_P256K1",
        EccNistEdwards25519 => "ECC_NIST_EDWARDS25519",
        Hmac224 => "HMAC_224",
        Hmac256 => "HMAC_256",
        Hmac384 => "HMAC_384",
        Hmac512 => "HMAC_512",
    }
);

aws_enum!(
    /// What a key is for (`KeyUsage`).
    KeyUsage {
        EncryptDecrypt => "ENCRYPT_DECRYPT",
        SignVerify => "SIGN_VERIFY",
        GenerateVerifyMac => "GENERATE_VERIFY_MAC",
        KeyAgreement => "KEY_AGREEMENT",
    }
);

aws_enum!(
    /// Signing algorithms (`SigningAlgorithm`).
    SigningAlgorithm {
        RsaPssSha256 => "RSASSA_PSS_SHA_256",
        RsaPssSha384 => "RSASSA_PSS_SHA_384",
        RsaPssSha512 => "RSASSA_PSS_SHA_512",
        RsaPkcs1Sha256 => "RSASSA_PKCS1_V1_5_SHA_256",
        RsaPkcs1Sha384 => "RSASSA_PKCS1_V1_5_SHA_384",
        RsaPkcs1Sha512 => "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 => "ECDSA_SHA_256",
        EcdsaSha384 => "ECDSA_SHA_384",
        EcdsaSha512 => "ECDSA_SHA_512",
        Ed25519Sha512 => "ED25519_SHA_512",
        Ed25519PhSha512 => "ED25519_PH_SHA_512",
        MlDsaShake256 => "ML_DSA_SHAKE_256",
        Sm2Dsa => "SM2DSA",
    }
);

aws_enum!(
    /// Encryption algorithms (`EncryptionAlgorithm`).
    EncryptionAlgorithm {
        SymmetricDefault => "SYMMETRIC_DEFAULT",
        RsaOaepSha1 => "RSAES_OAEP_SHA_1",
        RsaOaepSha256 => "RSAES_OAEP_SHA_256",
        Sm2Pke => "SM2PKE",
    }
);

#[allow(clippy::derivable_impls)]
impl Default for KeySpec {
    /// Keys recorded before key specs existed are symmetric encryption keys.
    fn default() -> Self {
        KeySpec::SymmetricDefault
    }
}

// aws_enum! declares the enum; a manual impl keeps the macro free of per-enum defaults.
#[allow(clippy::derivable_impls)]
impl Default for KeyUsage {
    fn default() -> Self {
        KeyUsage::EncryptDecrypt
    }
}

/// Key specs AWS has and kmsfs refuses, with why (UnsupportedOperationException).
pub fn unsupported_spec(s: &str) -> Option<&'static str> {
    match s {
        "ML_DSA_44" | "ML_DSA_65" | "ML_DSA_87" => Some(
            "kmsfs has no ML-DSA keys: no stable, well-maintained Rust ML-DSA implementation is available to it yet",
        ),
        "SM2" => Some("SM2 keys exist only in AWS's China Regions"),
        _ => None,
    }
}

impl KeySpec {
    pub fn is_symmetric(self) -> bool {
        self == KeySpec::SymmetricDefault
    }

    /// The usages AWS allows for this spec (CreateKey's KeyUsage).
    pub fn usages(self) -> &'static [KeyUsage] {
        use KeySpec::*;
        use KeyUsage::*;
        match self {
            SymmetricDefault => &[EncryptDecrypt],
            Rsa2048 | Rsa3072 | Rsa4096 => &[EncryptDecrypt, SignVerify],
            EccNistP256 | EccNistP384 | EccNistP521 => &[SignVerify, KeyAgreement],
            EccSecgP256k1 | EccNistEdwards25519 => &[SignVerify],
            Hmac224 | Hmac256 | Hmac384 | Hmac512 => &[GenerateVerifyMac],
        }
    }

    /// The key pair kind of an asymmetric spec.
    pub fn pair_spec(self) -> Option<PairSpec> {
        // One table: the generator's spec list decides which key specs are pairs.
        KeyPairSpec::parse(self.as_str()).map(KeyPairSpec::pair_spec)
    }

    /// An HMAC key's length in bytes (AWS: as long as the hash's output).
    pub fn hmac_key_len(self) -> Option<usize> {
        // The MAC algorithm owns the length, so the key spec and MacKey::generate agree.
        MacAlgorithm::for_key_spec(self.as_str()).map(MacAlgorithm::key_len)
    }

    pub fn is_hmac(self) -> bool {
        self.hmac_key_len().is_some()
    }

    pub fn is_asymmetric(self) -> bool {
        self.pair_spec().is_some()
    }
}

impl SigningAlgorithm {
    /// The scheme, or None for algorithms kmsfs does not implement.
    pub fn scheme(self) -> Option<SignScheme> {
        use SigningAlgorithm::*;
        Some(match self {
            RsaPssSha256 => SignScheme::RsaPss(Hash::Sha256),
            RsaPssSha384 => SignScheme::RsaPss(Hash::Sha384),
            RsaPssSha512 => SignScheme::RsaPss(Hash::Sha512),
            RsaPkcs1Sha256 => SignScheme::RsaPkcs1(Hash::Sha256),
            RsaPkcs1Sha384 => SignScheme::RsaPkcs1(Hash::Sha384),
            RsaPkcs1Sha512 => SignScheme::RsaPkcs1(Hash::Sha512),
            EcdsaSha256 => SignScheme::Ecdsa(Hash::Sha256),
            EcdsaSha384 => SignScheme::Ecdsa(Hash::Sha384),
            EcdsaSha512 => SignScheme::Ecdsa(Hash::Sha512),
            Ed25519Sha512 => SignScheme::Ed25519,
            Ed25519PhSha512 => SignScheme::Ed25519Ph,
            MlDsaShake256 | Sm2Dsa => return None,
        })
    }
}

impl EncryptionAlgorithm {
    /// The OAEP hash of an RSA algorithm.
    pub fn oaep_hash(self) -> Option<Hash> {
        match self {
            EncryptionAlgorithm::RsaOaepSha1 => Some(Hash::Sha1),
            EncryptionAlgorithm::RsaOaepSha256 => Some(Hash::Sha256),
            _ => None,
        }
    }
}

/// The signing algorithms of a key, in the order DescribeKey lists them (empty unless
/// SIGN_VERIFY).
pub fn signing_algorithms(spec: KeySpec, usage: KeyUsage) -> &'static [SigningAlgorithm] {
    use KeySpec::*;
    use SigningAlgorithm::*;
    if usage != KeyUsage::SignVerify {
        return &[];
    }
    match spec {
        Rsa2048 | Rsa3072 | Rsa4096 => &[
            RsaPkcs1Sha256,
            RsaPkcs1Sha384,
            RsaPkcs1Sha512,
            RsaPssSha256,
            RsaPssSha384,
            RsaPssSha512,
        ],
        EccNistP256 | EccSecgP256k1 => &[EcdsaSha256],
        EccNistP384 => &[EcdsaSha384],
        EccNistP521 => &[EcdsaSha512],
        EccNistEdwards25519 => &[Ed25519Sha512, Ed25519PhSha512],
        _ => &[],
    }
}

/// The encryption algorithms of a key (empty unless ENCRYPT_DECRYPT).
pub fn encryption_algorithms(spec: KeySpec, usage: KeyUsage) -> &'static [EncryptionAlgorithm] {
    use EncryptionAlgorithm::*;
    match (spec, usage) {
        (KeySpec::SymmetricDefault, _) => &[SymmetricDefault],
        (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, KeyUsage::EncryptDecrypt) => {
            &[RsaOaepSha1, RsaOaepSha256]
        }
        _ => &[],
    }
}

/// The MAC algorithms of an HMAC key (`MacAlgorithms`).
pub fn mac_algorithms(spec: KeySpec) -> &'static [&'static str] {
    match spec {
        KeySpec::Hmac224 => &["HMAC_SHA_224"],
        KeySpec::Hmac256 => &["HMAC_SHA_256"],
        KeySpec::Hmac384 => &["HMAC_SHA_384"],
        KeySpec::Hmac512 => &["HMAC_SHA_512"],
        _ => &[],
    }
}

/// The key agreement algorithms of a KEY_AGREEMENT key.
pub fn key_agreement_algorithms(usage: KeyUsage) -> &'static [&'static str] {
    match usage {
        KeyUsage::KeyAgreement => &["ECDH"],
        _ => &[],
    }
}

/// Adds the algorithm lists AWS shows for this key to a DescribeKey or GetPublicKey
/// object: each list only where AWS includes it (non-empty).
pub fn add_algorithms(
    o: &mut serde_json::Map<String, serde_json::Value>,
    spec: KeySpec,
    usage: KeyUsage,
) {
    use serde_json::json;
    let enc: Vec<&str> = encryption_algorithms(spec, usage)
        .iter()
        .map(|a| a.as_str())
        .collect();
    let sig: Vec<&str> = signing_algorithms(spec, usage)
        .iter()
        .map(|a| a.as_str())
        .collect();
    for (name, list) in [
        ("EncryptionAlgorithms", enc),
        ("SigningAlgorithms", sig),
        ("MacAlgorithms", mac_algorithms(spec).to_vec()),
        (
            "KeyAgreementAlgorithms",
            key_agreement_algorithms(usage).to_vec(),
        ),
    ] {
        if !list.is_empty() {
            o.insert(name.into(), json!(list));
        }
    }
}

/// The grant operations AWS accepts for a key of this spec and usage ("Grant
/// operations" in the AWS KMS Developer Guide).
pub fn grant_operations(spec: KeySpec, usage: KeyUsage) -> &'static [&'static str] {
    const COMMON: [&str; 3] = ["CreateGrant", "DescribeKey", "RetireGrant"];
    const SYMMETRIC: &[&str] = &[
        "CreateGrant",
        "Decrypt",
        "DescribeKey",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
        "RetireGrant",
    ];
    const ASYMMETRIC_ENCRYPTION: &[&str] = &[
        COMMON[0],
        COMMON[1],
        COMMON[2],
        "Decrypt",
        "Encrypt",
        "GetPublicKey",
        "ReEncryptFrom",
        "ReEncryptTo",
    ];
    const SIGNING: &[&str] = &[
        COMMON[0],
        COMMON[1],
        COMMON[2],
        "GetPublicKey",
        "Sign",
        "Verify",
    ];
    const HMAC: &[&str] = &[COMMON[0], COMMON[1], COMMON[2], "GenerateMac", "VerifyMac"];
    const AGREEMENT: &[&str] = &[
        COMMON[0],
        COMMON[1],
        COMMON[2],
        "DeriveSharedSecret",
        "GetPublicKey",
    ];
    match (spec.is_symmetric(), usage) {
        (true, _) => SYMMETRIC,
        (false, KeyUsage::EncryptDecrypt) => ASYMMETRIC_ENCRYPTION,
        (false, KeyUsage::SignVerify) => SIGNING,
        (false, KeyUsage::GenerateVerifyMac) => HMAC,
        (false, KeyUsage::KeyAgreement) => AGREEMENT,
    }
}

/// Why an operation refuses a key of this spec and usage, or None: the exception and
/// AWS's message after the key ARN (as the key-state gate's messages are).
pub fn usage_refusal(op: &str, spec: KeySpec, usage: KeyUsage) -> Option<(ErrorKind, String)> {
    let needs_usage = |u: KeyUsage| {
        (usage != u).then(|| {
            (
                ErrorKind::InvalidKeyUsage,
                format!(
                    "key usage is {} which is not valid for {op}.",
                    usage.as_str()
                ),
            )
        })
    };
    let spec_refusal = |kind: ErrorKind| {
        Some((
            kind,
            format!("key spec is {} which is not valid for {op}.", spec.as_str()),
        ))
    };
    match op {
        n if n == act::ENCRYPT.name
            || n == act::DECRYPT.name
            || n == act::RE_ENCRYPT_FROM.name
            || n == act::RE_ENCRYPT_TO.name =>
        {
            needs_usage(KeyUsage::EncryptDecrypt)
        }
        n if n == act::GENERATE_DATA_KEY.name
            || n == act::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT.name
            || n == act::GENERATE_DATA_KEY_PAIR.name
            || n == act::GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT.name =>
        {
            if spec.is_symmetric() {
                None
            } else if usage != KeyUsage::EncryptDecrypt {
                needs_usage(KeyUsage::EncryptDecrypt)
            } else {
                spec_refusal(ErrorKind::InvalidKeyUsage)
            }
        }
        n if n == act::SIGN.name || n == act::VERIFY.name => needs_usage(KeyUsage::SignVerify),
        n if n == act::GENERATE_MAC.name || n == act::VERIFY_MAC.name => {
            needs_usage(KeyUsage::GenerateVerifyMac)
        }
        n if n == act::DERIVE_SHARED_SECRET.name => needs_usage(KeyUsage::KeyAgreement),
        n if n == act::GET_PUBLIC_KEY.name => {
            if spec.is_asymmetric() {
                None
            } else {
                spec_refusal(ErrorKind::UnsupportedOperation)
            }
        }
        n if n == act::ENABLE_KEY_ROTATION.name
            || n == act::DISABLE_KEY_ROTATION.name
            || n == act::ROTATE_KEY_ON_DEMAND.name
            || n == act::GET_KEY_ROTATION_STATUS.name
            || n == act::LIST_KEY_ROTATIONS.name
            || n == act::GET_PARAMETERS_FOR_IMPORT.name
            || n == act::IMPORT_KEY_MATERIAL.name
            || n == act::DELETE_IMPORTED_KEY_MATERIAL.name =>
        {
            if spec.is_symmetric() {
                None
            } else {
                spec_refusal(ErrorKind::UnsupportedOperation)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_old_records_default_to_symmetric() {
        for s in KeySpec::ALL {
            assert_eq!(KeySpec::parse(s.as_str()), Some(*s));
            assert!(!s.usages().is_empty());
            assert_eq!(
                s.is_symmetric() as u8 + s.is_hmac() as u8 + s.is_asymmetric() as u8,
                1,
                "{s:?}"
            );
        }
        for a in SigningAlgorithm::ALL {
            assert_eq!(SigningAlgorithm::parse(a.as_str()), Some(*a));
        }
        assert_eq!(KeySpec::default(), KeySpec::SymmetricDefault);
        assert_eq!(KeyUsage::default(), KeyUsage::EncryptDecrypt);
        assert_eq!(
            serde_json::to_string(&KeySpec::EccSecgP256k1).unwrap(),
            "\"ECC_SECG_P256K1\""
        );
        assert!(unsupported_spec("ML_DSA_65").is_some());
    }

    #[test]
    fn every_listed_algorithm_is_implemented() {
        for s in KeySpec::ALL {
            for u in s.usages() {
                for a in signing_algorithms(*s, *u) {
                    assert!(a.scheme().is_some(), "{a:?}");
                }
                for a in encryption_algorithms(*s, *u) {
                    assert!(s.is_symmetric() || a.oaep_hash().is_some(), "{s:?} {a:?}");
                }
            }
        }
    }

    #[test]
    fn usage_rules_follow_aws() {
        use KeySpec::*;
        use KeyUsage::*;
        assert!(usage_refusal("Encrypt", Rsa2048, EncryptDecrypt).is_none());
        assert_eq!(
            usage_refusal("Encrypt", Rsa2048, SignVerify).map(|r| r.0),
            Some(ErrorKind::InvalidKeyUsage)
        );
        assert_eq!(
            usage_refusal("GenerateDataKey", Rsa2048, EncryptDecrypt).map(|r| r.0),
            Some(ErrorKind::InvalidKeyUsage)
        );
        assert!(usage_refusal("Sign", EccNistP256, SignVerify).is_none());
        assert_eq!(
            usage_refusal("Sign", SymmetricDefault, EncryptDecrypt),
            Some((
                ErrorKind::InvalidKeyUsage,
                "key usage is ENCRYPT_DECRYPT which is not valid for Sign.".into()
            ))
        );
        assert_eq!(
            usage_refusal("EnableKeyRotation", EccNistP256, SignVerify).map(|r| r.0),
            Some(ErrorKind::UnsupportedOperation)
        );
        assert_eq!(
            usage_refusal("GetPublicKey", Hmac256, GenerateVerifyMac).map(|r| r.0),
            Some(ErrorKind::UnsupportedOperation)
        );
        assert!(grant_operations(EccNistP256, SignVerify).contains(&"Sign"));
        assert!(!grant_operations(EccNistP256, SignVerify).contains(&"Encrypt"));
        assert!(!grant_operations(SymmetricDefault, EncryptDecrypt).contains(&"Sign"));
    }
}
