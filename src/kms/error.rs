//! The one error type of the key service, named as AWS names its exceptions.

/// Declares [`ErrorKind`] with each variant's AWS exception name, once.
macro_rules! error_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// AWS KMS exception kinds that kmsfs can raise.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($variant,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            /// The exception name exactly as AWS spells it (`__type` in AWS's JSON
            /// protocol).
            pub fn aws_name(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    AccessDenied => "AccessDeniedException",
    NotFound => "NotFoundException",
    Disabled => "DisabledException",
    KmsInvalidState => "KMSInvalidStateException",
    MalformedPolicyDocument => "MalformedPolicyDocumentException",
    InvalidCiphertext => "InvalidCiphertextException",
    InvalidGrantToken => "InvalidGrantTokenException",
    InvalidGrantId => "InvalidGrantIdException",
    InvalidArn => "InvalidArnException",
    InvalidAliasName => "InvalidAliasNameException",
    InvalidKeyUsage => "InvalidKeyUsageException",
    LimitExceeded => "LimitExceededException",
    Validation => "ValidationException",
    AlreadyExists => "AlreadyExistsException",
    IncorrectKey => "IncorrectKeyException",
    IncorrectKeyMaterial => "IncorrectKeyMaterialException",
    InvalidImportToken => "InvalidImportTokenException",
    ExpiredImportToken => "ExpiredImportTokenException",
    UnsupportedOperation => "UnsupportedOperationException",
    Tag => "TagException",
    DependencyTimeout => "DependencyTimeoutException",
    KmsInternal => "KMSInternalException",
    InvalidMarker => "InvalidMarkerException",
    DryRunOperation => "DryRunOperationException",
    // Access keys (issue 13): an unknown, inactive or orphaned access key id, and IAM's
    // answer for a principal ARN the principals file does not list.
    UnrecognizedClient => "UnrecognizedClientException",
    NoSuchEntity => "NoSuchEntityException",
    // A member of the wrong JSON type (AWS's JSON protocol rejects it before validation).
    Serialization => "SerializationException",
}

impl ErrorKind {
    /// Parses an AWS exception name back (used by the control client).
    pub fn from_aws_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.aws_name() == name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_aws_name() {
        for kind in ErrorKind::ALL {
            assert!(kind.aws_name().ends_with("Exception"), "{kind:?}");
            assert_eq!(ErrorKind::from_aws_name(kind.aws_name()), Some(*kind));
        }
        assert_eq!(ErrorKind::from_aws_name("NoSuchException"), None);
    }
}
