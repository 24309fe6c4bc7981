//! KMS ARNs (`arn:PARTITION:kms:REGION:ACCOUNT:RESOURCE`), read in one place: which key
//! references can name a remote key (the router) and which region signs a call (the
//! SDK clients) must agree on what an ARN is.

/// The parts of a KMS ARN; any may be empty (each reader says which it needs).
struct KmsArn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

/// Splits `arn` if it has the six parts of a KMS ARN.
fn parse(arn: &str) -> Option<KmsArn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(KmsArn {
        partition,
        region,
        account,
        resource,
    })
}

/// The region of a KMS key or alias ARN (`arn:PARTITION:kms:REGION:ACCOUNT:...`).
pub fn arn_region(arn: &str) -> Option<&str> {
    parse(arn).map(|a| a.region).filter(|r| !r.is_empty())
}

/// Whether `key_ref` is a full KMS key ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`
/// with every part present. Only such a reference can name a remote key (an alias or a
/// bare key id means nothing without an account and region).
pub fn is_key_arn(key_ref: &str) -> bool {
    let Some(arn) = parse(key_ref) else {
        return false;
    };
    let id = arn.resource.strip_prefix("key/").unwrap_or("");
    !arn.partition.is_empty()
        && !arn.region.is_empty()
        && !arn.account.is_empty()
        && !id.is_empty()
        && !id.contains(['/', ':'])
        && !key_ref.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_key_arn() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:kms:cn-north-1:111122223333:alias/x"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("arn:aws:kms::111122223333:key/abc"), None);
        assert_eq!(arn_region("alias/x"), None);
        assert_eq!(arn_region("arn:aws:s3:us-east-1:1:bucket"), None);
    }
}
