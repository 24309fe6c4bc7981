//! The checks aws-cli makes before sending, as data: one [`Rule`] per request member,
//! named by the verb table's `checks [...]` column and applied by `rules`.

/// One check on a request member.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// An integer member's inclusive range.
    Range {
        member: &'static str,
        min: i64,
        max: i64,
    },
    /// A string member's enum.
    OneOf {
        member: &'static str,
        values: &'static [&'static str],
    },
    /// At least one of these groups of members must be given in full.
    AnyOf {
        groups: &'static [&'static [&'static str]],
    },
}

/// The rules the verb table names, from AWS KMS's API reference.
pub mod consts {
    use super::Rule;

    const fn range(member: &'static str, min: i64, max: i64) -> Rule {
        Rule::Range { member, min, max }
    }

    const CMK_SPECS: &[&str] = &[
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
        "SYMMETRIC_DEFAULT",
        "HMAC_224",
        "HMAC_256",
        "HMAC_384",
        "HMAC_512",
        "SM2",
        "ML_DSA_44",
        "ML_DSA_65",
        "ML_DSA_87",
        "ECC_NIST_EDWARDS25519",
    ];
    pub const CMK_SPEC: Rule = Rule::OneOf {
        member: "KeySpec",
        values: CMK_SPECS,
    };
    pub const CMK_SPEC_OLD: Rule = Rule::OneOf {
        member: "CustomerMasterKeySpec",
        values: CMK_SPECS,
    };
    pub const KEY_USAGE: Rule = Rule::OneOf {
        member: "KeyUsage",
        values: &[
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ],
    };
    pub const ORIGIN: Rule = Rule::OneOf {
        member: "Origin",
        values: &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
    };
    const ALGORITHMS: &[&str] = &[
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
        "SM2PKE",
    ];
    pub const ENCRYPTION_ALGORITHM: Rule = Rule::OneOf {
        member: "EncryptionAlgorithm",
        values: ALGORITHMS,
    };
    pub const SOURCE_ENCRYPTION_ALGORITHM: Rule = Rule::OneOf {
        member: "SourceEncryptionAlgorithm",
        values: ALGORITHMS,
    };
    pub const DESTINATION_ENCRYPTION_ALGORITHM: Rule = Rule::OneOf {
        member: "DestinationEncryptionAlgorithm",
        values: ALGORITHMS,
    };
    const SIGNING_ALGORITHMS: &[&str] = &[
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "ECDSA_SHA_256",
        "ECDSA_SHA_384",
        "ECDSA_SHA_512",
        "SM2DSA",
        "ML_DSA_SHAKE_256",
        "ED25519_SHA_512",
        "ED25519_PH_SHA_512",
    ];
    pub const SIGNING_ALGORITHM: Rule = Rule::OneOf {
        member: "SigningAlgorithm",
        values: SIGNING_ALGORITHMS,
    };
    pub const MESSAGE_TYPE: Rule = Rule::OneOf {
        member: "MessageType",
        values: &["RAW", "DIGEST", "EXTERNAL_MU"],
    };
    pub const DATA_KEY_SPEC: Rule = Rule::OneOf {
        member: "KeySpec",
        values: &["AES_256", "AES_128"],
    };
    pub const EXPIRATION_MODEL: Rule = Rule::OneOf {
        member: "ExpirationModel",
        values: &["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
    };
    // The bounds of the service model's shapes, which is what aws-cli checks: a value
    // inside them but outside what the operation accepts (a 3-day deletion window, a
    // ListAliases Limit of 500) reaches the service and is its ValidationException.
    pub const LIMIT: Rule = range("Limit", 1, 1000);
    pub const PENDING_WINDOW: Rule = range("PendingWindowInDays", 1, 365);
    pub const ROTATION_PERIOD: Rule = range("RotationPeriodInDays", 90, 2560);
    pub const DATA_KEY_BYTES: Rule = range("NumberOfBytes", 1, 1024);
    pub const RANDOM_BYTES: Rule = range("NumberOfBytes", 1, 1024);
    /// RetireGrant names its grant by token, or by key and grant id.
    pub const GRANT_TO_RETIRE: Rule = Rule::AnyOf {
        groups: &[&["GrantToken"], &["KeyId", "GrantId"]],
    };
    pub const MAC_ALGORITHM: Rule = Rule::OneOf {
        member: "MacAlgorithm",
        values: &[
            "HMAC_SHA_224",
            "HMAC_SHA_256",
            "HMAC_SHA_384",
            "HMAC_SHA_512",
        ],
    };
    pub const KEY_PAIR_SPEC: Rule = Rule::OneOf {
        member: "KeyPairSpec",
        values: &[
            "RSA_2048",
            "RSA_3072",
            "RSA_4096",
            "ECC_NIST_P256",
            "ECC_NIST_P384",
            "ECC_NIST_P521",
            "ECC_SECG_P256K1",
            "SM2",
            "ECC_NIST_EDWARDS25519",
            "ML_KEM_512",
            "ML_KEM_768",
            "ML_KEM_1024",
        ],
    };
    pub const KEY_AGREEMENT_ALGORITHM: Rule = Rule::OneOf {
        member: "KeyAgreementAlgorithm",
        values: &["ECDH"],
    };
}
