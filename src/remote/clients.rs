//! The SDK client of one (profile, endpoint, region): its credentials come from that
//! shared-config profile only, its bounds from [`RemoteSettings`]. Building one does no
//! I/O (the profile files are read at the first call).

use std::path::PathBuf;
use std::time::Duration;

use aws_config::provider_config::ProviderConfig;
use aws_sdk_kms::config::{
    BehaviorVersion, IdentityCache, Region, SharedCredentialsProvider, SharedHttpClient,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use super::Profile;

/// How [`super::SdkRemote`] calls a remote KMS.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The longest one call takes, retries and credential resolution included
    /// (`-o kms_timeout`).
    pub timeout: Duration,
    /// Attempts per call (standard retry mode), within `timeout`.
    pub max_attempts: u32,
    /// Worker threads of the runtime that drives the calls (they only wait on sockets).
    pub worker_threads: usize,
    /// PEM certificates trusted besides the system's roots, for an `https://` endpoint
    /// with a private CA (a central `kmsfs serve --listen --tls-cert`). `None`: the
    /// `AWS_CA_BUNDLE` environment variable if set, else the system's roots only.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            timeout: super::DEFAULT_TIMEOUT,
            max_attempts: 3,
            worker_threads: 2,
            ca_bundle: None,
        }
    }
}

/// The `credential_source` values of a profile that would sign with an identity of the
/// machine (its environment, instance or container role) rather than the user's own.
const MACHINE_SOURCES: [&str; 3] = ["Environment", "Ec2InstanceMetadata", "EcsContainer"];

/// Stands in for a machine-wide credential source: always refuses, naming it.
#[derive(Debug)]
struct MachineSourceRefused(&'static str);

impl aws_credential_types::provider::ProvideCredentials for MachineSourceRefused {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            CredentialsError::invalid_configuration(format!(
                "credential_source = {} is an identity of the machine, not of a user; \
                 kmsfs signs only with a profile's own credentials",
                self.0
            )),
        ))
    }
}

pub(crate) fn timeouts(settings: &RemoteSettings) -> TimeoutConfig {
    let t = settings.timeout;
    TimeoutConfig::builder()
        .operation_timeout(t)
        // Shorter attempts leave room for a retry within the operation's bound.
        .operation_attempt_timeout((t / 2).max(Duration::from_millis(200)))
        .connect_timeout(t)
        .build()
}

pub(crate) fn build_client(
    settings: &RemoteSettings,
    http: &SharedHttpClient,
    profile: &Profile,
    endpoint: Option<&str>,
    region: &str,
) -> aws_sdk_kms::Client {
    let region = Region::new(region.to_string());
    let retry = RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1));
    // What STS / SSO clients of the profile's chain use (assume role, SSO): the
    // same HTTP client, region and bounds; their endpoints may come from the
    // profile's own `endpoint_url` / `services` section.
    let provider_config = ProviderConfig::without_region()
        .with_region(Some(region.clone()))
        .with_http_client(http.clone())
        .with_retry_config(retry.clone())
        .with_timeout_config(timeouts(settings));
    #[allow(deprecated)] // the replacement type lives in aws-runtime, not a dependency
    let files = {
        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
        let mut b = ProfileFiles::builder();
        b = match &profile.config_file {
            Some(p) => b.with_file(ProfileFileKind::Config, p),
            None => b.include_default_config_file(true),
        };
        b = match &profile.credentials_file {
            Some(p) => b.with_file(ProfileFileKind::Credentials, p),
            None => b.include_default_credentials_file(true),
        };
        b.build()
    };
    let mut credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .configure(&provider_config)
        .profile_name(&profile.name)
        .profile_files(files);
    // There is never a machine-wide identity that opens files for users: a profile
    // may not borrow the mount process's environment keys or instance role.
    for source in MACHINE_SOURCES {
        credentials = credentials.with_custom_provider(source, MachineSourceRefused(source));
    }
    let credentials = credentials.build();
    let mut config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .http_client(http.clone())
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(IdentityCache::lazy().load_timeout(settings.timeout).build())
        .retry_config(retry)
        .timeout_config(timeouts(settings));
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    aws_sdk_kms::Client::from_conf(config.build())
}
