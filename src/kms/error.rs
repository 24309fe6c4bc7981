//! The one error type of the key service, named as AWS names its exceptions.

/// AWS KMS exception kinds that kmsfs can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    AccessDenied,
    NotFound,
    Disabled,
    KmsInvalidState,
    MalformedPolicyDocument,
    InvalidCiphertext,
    InvalidGrantToken,
    InvalidGrantId,
    InvalidArn,
    InvalidAliasName,
    InvalidKeyUsage,
    LimitExceeded,
    Validation,
    AlreadyExists,
    IncorrectKey,
    IncorrectKeyMaterial,
    InvalidImportToken,
    ExpiredImportToken,
    UnsupportedOperation,
    Tag,
    DependencyTimeout,
    KmsInternal,
    InvalidMarker,
    DryRunOperation,
}

impl ErrorKind {
    /// The exception name exactly as AWS spells it (`__type` in AWS's JSON protocol).
    pub fn aws_name(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::NotFound => "NotFoundException",
            ErrorKind::Disabled => "DisabledException",
            ErrorKind::KmsInvalidState => "KMSInvalidStateException",
            ErrorKind::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            ErrorKind::InvalidCiphertext => "InvalidCiphertextException",
            ErrorKind::InvalidGrantToken => "InvalidGrantTokenException",
            ErrorKind::InvalidGrantId => "InvalidGrantIdException",
            ErrorKind::InvalidArn => "InvalidArnException",
            ErrorKind::InvalidAliasName => "InvalidAliasNameException",
            ErrorKind::InvalidKeyUsage => "InvalidKeyUsageException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::AlreadyExists => "AlreadyExistsException",
            ErrorKind::IncorrectKey => "IncorrectKeyException",
            ErrorKind::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
            ErrorKind::InvalidImportToken => "InvalidImportTokenException",
            ErrorKind::ExpiredImportToken => "ExpiredImportTokenException",
            ErrorKind::UnsupportedOperation => "UnsupportedOperationException",
            ErrorKind::Tag => "TagException",
            ErrorKind::DependencyTimeout => "DependencyTimeoutException",
            ErrorKind::KmsInternal => "KMSInternalException",
            ErrorKind::InvalidMarker => "InvalidMarkerException",
            ErrorKind::DryRunOperation => "DryRunOperationException",
        }
    }

    /// Parses an AWS exception name back (used by the control client).
    pub fn from_aws_name(name: &str) -> Option<Self> {
        use ErrorKind::*;
        [
            AccessDenied,
            NotFound,
            Disabled,
            KmsInvalidState,
            MalformedPolicyDocument,
            InvalidCiphertext,
            InvalidGrantToken,
            InvalidGrantId,
            InvalidArn,
            InvalidAliasName,
            InvalidKeyUsage,
            LimitExceeded,
            Validation,
            AlreadyExists,
            IncorrectKey,
            IncorrectKeyMaterial,
            InvalidImportToken,
            ExpiredImportToken,
            UnsupportedOperation,
            Tag,
            DependencyTimeout,
            KmsInternal,
            InvalidMarker,
            DryRunOperation,
        ]
        .into_iter()
        .find(|k| k.aws_name() == name)
    }

    /// The errno a filesystem user sees for this error (DESIGN.md "Errors a user sees").
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::AccessDenied => libc::EACCES,
            ErrorKind::Disabled | ErrorKind::KmsInvalidState => libc::EKEYREVOKED,
            ErrorKind::NotFound => libc::ENOKEY,
            _ => libc::EIO,
        }
    }
}

/// An error of the key service: an AWS exception kind and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} : {message}", kind.aws_name())]
pub struct KmsError {
    pub kind: ErrorKind,
    pub message: String,
}

impl KmsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
