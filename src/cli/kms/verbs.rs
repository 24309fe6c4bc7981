//! The verbs of `kmsfs kms`, each declared once in [`verbs!`]: the verb's name is the
//! AWS operation's name (clap spells it `create-key`, the request goes out as
//! `CreateKey`), its Args type serializes straight to the AWS request members, and the
//! row lists the members AWS requires and the checks aws-cli makes before sending.
//!
//! Args fields are named after the AWS members (`key_id` → `KeyId`); a value that needs
//! reading (file://, base64, shorthand maps) is converted by member name in `params`.

use super::checks::Rule;

use super::args::*;

/// Declares the verbs: `Operation(Args) needs [required members] checks [rules]
/// returns [response members]`.
macro_rules! verbs {
    ($(
        $(#[doc = $doc:literal])*
        $verb:ident($args:ty)
            needs [$($req:ident),*]
            checks [$($rule:expr),*]
            returns [$($out:ident),*];
    )*) => {
        /// The verbs, named as aws-cli names them.
        #[derive(Debug, Clone, clap::Subcommand)]
        pub enum KmsVerb {
            $( $(#[doc = $doc])* $verb($args), )*
        }

        impl KmsVerb {
            /// The AWS operation this verb calls.
            pub fn operation(&self) -> &'static str {
                match self { $( KmsVerb::$verb(_) => stringify!($verb), )* }
            }

            /// The request members given as flags, before conversion.
            pub fn flag_members(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $( KmsVerb::$verb(a) => serde_json::to_value(a), )* }
            }

            /// The members AWS requires.
            pub fn required(&self) -> &'static [&'static str] {
                match self { $( KmsVerb::$verb(_) => &[$(stringify!($req)),*], )* }
            }

            /// The checks aws-cli makes before sending.
            pub fn rules(&self) -> &'static [Rule] {
                match self { $( KmsVerb::$verb(_) => &[$($rule),*], )* }
            }

            /// The response's members (for `--generate-cli-skeleton output`).
            pub fn returns(&self) -> &'static [&'static str] {
                match self { $( KmsVerb::$verb(_) => &[$(stringify!($out)),*], )* }
            }
        }
    };
}

use super::checks::consts::*;

verbs! {
    /// Create a customer managed key (symmetric AES-256 unless --key-spec says otherwise).
    CreateKey(CreateKeyArgs) needs [] checks [CMK_SPEC, CMK_SPEC_OLD, KEY_USAGE, ORIGIN] returns [KeyMetadata];
    /// Show a key's metadata (id, ARN, state, usage, dates).
    DescribeKey(DescribeKeyArgs) needs [KeyId] checks [] returns [KeyMetadata];
    /// List the keys in the store.
    ListKeys(PageArgs) needs [] checks [LIMIT] returns [Keys, NextMarker, Truncated];
    /// Replace a key's description.
    UpdateKeyDescription(UpdateKeyDescriptionArgs) needs [KeyId, Description] checks [] returns [];
    /// Enable a disabled key.
    EnableKey(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Disable a key: every cryptographic operation with it fails until enabled.
    DisableKey(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Schedule a key's deletion after a 7 to 30 day waiting period.
    ScheduleKeyDeletion(ScheduleKeyDeletionArgs) needs [KeyId] checks [PENDING_WINDOW]
        returns [KeyId, DeletionDate, KeyState, PendingWindowInDays];
    /// Cancel a scheduled deletion (the key is left disabled, as in AWS).
    CancelKeyDeletion(KeyIdArgs) needs [KeyId] checks [] returns [KeyId];
    /// Turn on automatic yearly (or --rotation-period-in-days) rotation.
    EnableKeyRotation(EnableKeyRotationArgs) needs [KeyId] checks [ROTATION_PERIOD] returns [];
    /// Turn off automatic rotation.
    DisableKeyRotation(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Show whether automatic rotation is on and when it next runs.
    GetKeyRotationStatus(KeyIdArgs) needs [KeyId] checks []
        returns [KeyRotationEnabled, KeyId, RotationPeriodInDays, NextRotationDate, OnDemandRotationStartDate];
    /// Rotate a key's material now.
    RotateKeyOnDemand(KeyIdArgs) needs [KeyId] checks [] returns [KeyId];
    /// List a key's completed rotations.
    ListKeyRotations(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [Rotations, NextMarker, Truncated];
    /// Print a key's policy document.
    GetKeyPolicy(GetKeyPolicyArgs) needs [KeyId] checks [] returns [Policy, PolicyName];
    /// Replace a key's policy (runs AWS's lockout safety check and kmsfs's escalation guard).
    PutKeyPolicy(PutKeyPolicyArgs) needs [KeyId, Policy] checks [] returns [];
    /// List a key's policy names (always "default").
    ListKeyPolicies(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [PolicyNames, NextMarker, Truncated];
    /// Create an alias (alias/NAME) for a key.
    CreateAlias(AliasArgs) needs [AliasName, TargetKeyId] checks [] returns [];
    /// Point an alias at another key.
    UpdateAlias(AliasArgs) needs [AliasName, TargetKeyId] checks [] returns [];
    /// Delete an alias (the key is untouched).
    DeleteAlias(DeleteAliasArgs) needs [AliasName] checks [] returns [];
    /// List aliases, all or those of one key.
    ListAliases(ListAliasesArgs) needs [] checks [LIMIT] returns [Aliases, NextMarker, Truncated];
    /// Add or overwrite tags on a key.
    TagResource(TagResourceArgs) needs [KeyId, Tags] checks [] returns [];
    /// Remove tags from a key.
    UntagResource(UntagResourceArgs) needs [KeyId, TagKeys] checks [] returns [];
    /// List a key's tags.
    ListResourceTags(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [Tags, NextMarker, Truncated];
    /// Allow a principal to use a key for the listed operations, optionally under encryption-context constraints.
    CreateGrant(CreateGrantArgs) needs [KeyId, GranteePrincipal, Operations] checks [] returns [GrantToken, GrantId];
    /// List the grants of a key.
    ListGrants(ListGrantsArgs) needs [KeyId] checks [LIMIT] returns [Grants, NextMarker, Truncated];
    /// List the grants a principal may retire.
    ListRetirableGrants(ListRetirableGrantsArgs) needs [RetiringPrincipal] checks [LIMIT]
        returns [Grants, NextMarker, Truncated];
    /// Delete a grant (key administrators).
    RevokeGrant(RevokeGrantArgs) needs [KeyId, GrantId] checks [] returns [];
    /// Delete a grant (its grantee or retiring principal).
    RetireGrant(RetireGrantArgs) needs [] checks [GRANT_TO_RETIRE] returns [];
    /// Encrypt up to 4 KiB of plaintext under a key.
    Encrypt(EncryptArgs) needs [KeyId, Plaintext] checks [ENCRYPTION_ALGORITHM]
        returns [CiphertextBlob, KeyId, EncryptionAlgorithm];
    /// Decrypt a ciphertext blob (the key is the one named inside the blob).
    Decrypt(DecryptArgs) needs [CiphertextBlob] checks [ENCRYPTION_ALGORITHM]
        returns [KeyId, Plaintext, EncryptionAlgorithm];
    /// Decrypt and re-encrypt under another key or context without exposing the plaintext.
    ReEncrypt(ReEncryptArgs) needs [CiphertextBlob, DestinationKeyId]
        checks [SOURCE_ENCRYPTION_ALGORITHM, DESTINATION_ENCRYPTION_ALGORITHM]
        returns [CiphertextBlob, SourceKeyId, KeyId, SourceEncryptionAlgorithm, DestinationEncryptionAlgorithm];
    /// Return a new data key in plaintext and encrypted under a key.
    GenerateDataKey(GenerateDataKeyArgs) needs [KeyId] checks [DATA_KEY_SPEC, DATA_KEY_BYTES]
        returns [CiphertextBlob, Plaintext, KeyId];
    /// Return a new data key encrypted under a key only.
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyArgs) needs [KeyId] checks [DATA_KEY_SPEC, DATA_KEY_BYTES]
        returns [CiphertextBlob, KeyId];
    /// Return random bytes.
    GenerateRandom(GenerateRandomArgs) needs [] checks [RANDOM_BYTES] returns [Plaintext];
    /// Get a wrapping public key and import token to import key material (Origin EXTERNAL keys).
    GetParametersForImport(GetParametersForImportArgs) needs [KeyId, WrappingAlgorithm, WrappingKeySpec] checks []
        returns [KeyId, ImportToken, PublicKey, ParametersValidTo];
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial(ImportKeyMaterialArgs) needs [KeyId, ImportToken, EncryptedKeyMaterial]
        checks [EXPIRATION_MODEL] returns [];
    /// Delete a key's imported material (the key becomes PendingImport).
    DeleteImportedKeyMaterial(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Sign a message (RAW, up to 4096 bytes) or a digest (DIGEST) with an asymmetric SIGN_VERIFY key.
    Sign(SignArgs) needs [KeyId, Message, SigningAlgorithm] checks [MESSAGE_TYPE, SIGNING_ALGORITHM]
        returns [KeyId, Signature, SigningAlgorithm];
    /// Verify a signature made with an asymmetric SIGN_VERIFY key.
    Verify(VerifyArgs) needs [KeyId, Message, Signature, SigningAlgorithm] checks [MESSAGE_TYPE, SIGNING_ALGORITHM]
        returns [KeyId, SignatureValid, SigningAlgorithm];
    /// Download the public key of an asymmetric key (DER SubjectPublicKeyInfo).
    GetPublicKey(DescribeKeyArgs) needs [KeyId] checks []
        returns [KeyId, PublicKey, CustomerMasterKeySpec, KeySpec, KeyUsage, EncryptionAlgorithms, SigningAlgorithms, KeyAgreementAlgorithms];
    /// kmsfs extension, runs locally: wrap key material under the PublicKey from
    /// get-parameters-for-import as AWS's import guide does with openssl (default
    /// RSAES_OAEP_SHA_256), giving the --encrypted-key-material for import-key-material.
    WrapKeyMaterial(WrapKeyMaterialArgs) needs [PublicKey, KeyMaterial] checks [] returns [EncryptedKeyMaterial];
    /// Compute the HMAC of up to 4 KiB with an HMAC key.
    GenerateMac(GenerateMacArgs) needs [Message, KeyId, MacAlgorithm] checks [MAC_ALGORITHM]
        returns [Mac, MacAlgorithm, KeyId];
    /// Check an HMAC against a message with an HMAC key (KMSInvalidMacException if it does not match).
    VerifyMac(VerifyMacArgs) needs [Message, KeyId, MacAlgorithm, Mac] checks [MAC_ALGORITHM]
        returns [KeyId, MacValid, MacAlgorithm];
    /// Return a new RSA or ECC key pair: the private key in plaintext (PKCS#8 DER) and
    /// encrypted under a symmetric key, and the public key (DER SubjectPublicKeyInfo).
    GenerateDataKeyPair(GenerateDataKeyPairArgs) needs [KeyId, KeyPairSpec] checks [KEY_PAIR_SPEC]
        returns [PrivateKeyCiphertextBlob, PrivateKeyPlaintext, PublicKey, KeyId, KeyPairSpec];
    /// Return a new key pair: the private key encrypted under a symmetric key only, and the public key.
    GenerateDataKeyPairWithoutPlaintext(GenerateDataKeyPairArgs) needs [KeyId, KeyPairSpec] checks [KEY_PAIR_SPEC]
        returns [PrivateKeyCiphertextBlob, PublicKey, KeyId, KeyPairSpec];
    /// ECDH between a KEY_AGREEMENT key's private key and a peer's public key; returns the raw shared secret.
    DeriveSharedSecret(DeriveSharedSecretArgs) needs [KeyId, KeyAgreementAlgorithm, PublicKey]
        checks [KEY_AGREEMENT_ALGORITHM] returns [KeyId, SharedSecret, KeyAgreementAlgorithm, KeyOrigin];
    /// The last successful cryptographic operation with a key (from the audit log).
    GetKeyLastUsage(KeyIdArgs) needs [KeyId] checks []
        returns [KeyId, KeyLastUsage, TrackingStartDate, KeyCreationDate];
}
