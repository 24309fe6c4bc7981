//! How a failed SDK call becomes a [`RemoteError`]: the service's exception name when the
//! remote answered, the profile at fault when no credentials could be had, a timeout or
//! a network failure otherwise. The filesystem turns each kind into one errno, so the
//! mapping lives here once.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;

use super::{Profile, RemoteError, RemoteReceipt};
use crate::kms::{ErrorKind, KmsError};

/// AWS's answers to a request whose signature or identity it refused: the caller has no
/// usable identity there, which the filesystem shows as EACCES like a policy denial.
const IDENTITY_REFUSALS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// The error kind of a service exception name.
pub(crate) fn kind_of_code(code: &str) -> ErrorKind {
    if IDENTITY_REFUSALS.contains(&code) {
        return ErrorKind::AccessDenied;
    }
    match code {
        // Throttling is the remote being unable to answer now: the same as a timeout.
        "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            ErrorKind::DependencyTimeout
        }
        _ => ErrorKind::from_aws_name(code).unwrap_or(ErrorKind::KmsInternal),
    }
}

/// How the message of an identity failure starts (the client is rebuilt after one).
pub(crate) const NO_CREDENTIALS: &str = "no AWS credentials for profile";

/// A hard-timeout expiry (the SDK did not give up by itself in time).
pub(crate) fn timed_out(profile: &Profile, timeout: std::time::Duration) -> RemoteError {
    RemoteError {
        error: KmsError::new(
            ErrorKind::DependencyTimeout,
            format!(
                "the remote KMS did not answer within {:?} (profile \"{}\")",
                timeout, profile.name
            ),
        ),
        receipt: RemoteReceipt::default(),
    }
}

/// An error before any call was made (a malformed ARN, a setup failure).
pub(crate) fn local(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
    RemoteError {
        error: KmsError::new(kind, message),
        receipt: RemoteReceipt::default(),
    }
}

/// The files a profile is read from, for messages.
pub(crate) fn profile_files(profile: &Profile) -> String {
    let show = |p: &Option<std::path::PathBuf>, default: &str| {
        p.as_ref()
            .map_or_else(|| default.to_string(), |p| p.display().to_string())
    };
    format!(
        "config file {}, credentials file {}",
        show(&profile.config_file, "~/.aws/config"),
        show(&profile.credentials_file, "~/.aws/credentials")
    )
}

/// The credentials failure somewhere in `err`'s source chain, if identity resolution is
/// what failed (the SDK wraps it in a dispatch failure).
fn credentials_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        cur = e.source();
    }
    None
}

/// The whole source chain of `err` on one line (the SDK's own Display is terse).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Maps a failed SDK call made as `profile`.
pub(crate) fn from_sdk<E>(profile: &Profile, err: SdkError<E>) -> RemoteError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let receipt = RemoteReceipt {
        request_id: err.request_id().map(str::to_string),
    };
    if let SdkError::ServiceError(service) = &err {
        let code = service.err().code().unwrap_or("UnknownError");
        let message = service.err().message().unwrap_or_default();
        let kind = kind_of_code(code);
        let message = if kind.aws_name() == code {
            message.to_string()
        } else {
            format!("{code}: {message}")
        };
        return RemoteError {
            error: KmsError::new(kind, message),
            receipt,
        };
    }
    if let Some(c) = credentials_error(&err) {
        let kind = match c {
            CredentialsError::ProviderTimedOut(_) => ErrorKind::DependencyTimeout,
            // No usable identity for this profile: the uid may not act (EACCES), never
            // an I/O error that suggests retrying.
            _ => ErrorKind::AccessDenied,
        };
        return RemoteError {
            error: KmsError::new(
                kind,
                format!(
                    "{NO_CREDENTIALS} \"{}\" ({}): {}",
                    profile.name,
                    profile_files(profile),
                    chain(c)
                ),
            ),
            receipt,
        };
    }
    let kind = match &err {
        SdkError::TimeoutError(_) => ErrorKind::DependencyTimeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ErrorKind::DependencyTimeout,
        // Refused connections, TLS failures, unparseable answers: the remote is not
        // usable now (EIO in the filesystem).
        _ => ErrorKind::KmsInternal,
    };
    RemoteError {
        error: KmsError::new(kind, format!("remote KMS call failed: {}", chain(&err))),
        receipt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_map_to_the_kinds_the_filesystem_knows() {
        assert_eq!(
            kind_of_code("AccessDeniedException"),
            ErrorKind::AccessDenied
        );
        assert_eq!(kind_of_code("DisabledException"), ErrorKind::Disabled);
        assert_eq!(
            kind_of_code("KMSInvalidStateException"),
            ErrorKind::KmsInvalidState
        );
        assert_eq!(kind_of_code("NotFoundException"), ErrorKind::NotFound);
        assert_eq!(
            kind_of_code("UnrecognizedClientException"),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            kind_of_code("ThrottlingException"),
            ErrorKind::DependencyTimeout
        );
        assert_eq!(kind_of_code("SomethingNew"), ErrorKind::KmsInternal);
    }
}
