use super::*;

/// AWS's published SigV4 example (IAM ListUsers, 2015-08-30, us-east-1).
const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn example_headers() -> Vec<(String, String)> {
    vec![
        (
            "Content-Type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        ),
        ("Host".into(), "iam.amazonaws.com".into()),
        ("X-Amz-Date".into(), "20150830T123600Z".into()),
    ]
}

#[test]
fn aws_published_example_signs_as_documented() {
    let headers = example_headers();
    let req = SignableRequest {
        method: "GET",
        path: "/",
        query: "Action=ListUsers&Version=2010-05-08",
        headers: &headers,
        body: b"",
    };
    let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
        .map(String::from)
        .to_vec();
    let canonical = canonical_request(&req, &signed, &sha256_hex(b""));
    assert_eq!(
        canonical,
        "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
         content-type:application/x-www-form-urlencoded; charset=utf-8\n\
         host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
         content-type;host;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(canonical.as_bytes()),
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    );
    let scope = "20150830/us-east-1/iam/aws4_request";
    let to_sign = string_to_sign("20150830T123600Z", scope, &canonical);
    assert_eq!(
        to_sign,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
         f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    );
    let key = signing_key(EXAMPLE_SECRET, "20150830", "us-east-1", "iam");
    assert_eq!(
        hex::encode(&key[..]),
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    );
    let auth = authorization_header(&req, "AKIDEXAMPLE", EXAMPLE_SECRET, "us-east-1", "iam");
    assert_eq!(
        auth,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

#[test]
fn canonical_uri_normalises_and_encodes_twice_for_non_s3() {
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("//a/./b/../c"), "/a/c");
    assert_eq!(canonical_uri("/a b/"), "/a%20b/");
    // Sent as %20: encoded again, as AWS's signers do for every service but S3.
    assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
}

#[test]
fn canonical_query_sorts_and_reencodes() {
    assert_eq!(canonical_query(""), "");
    assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    assert_eq!(canonical_query("k=a%20b&x"), "k=a%20b&x=");
    assert_eq!(canonical_query("k=a+b"), "k=a%2Bb");
}

struct OneKey;

impl SecretLookup for OneKey {
    type Error = std::convert::Infallible;
    fn secret(&self, id: &str) -> Result<Option<Zeroizing<String>>, Self::Error> {
        Ok((id == "AKIDKMSFS").then(|| Zeroizing::new("s3cr3t".to_string())))
    }
}

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const BODY: &[u8] = br#"{"KeyId":"alias/a"}"#;

fn signed_headers(at: i64, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        ("host".into(), "127.0.0.1:4599".into()),
        ("x-amz-date".into(), format_amz_date(at)),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
        ("x-amz-target".into(), "TrentService.DescribeKey".into()),
    ];
    for (k, v) in extra {
        h.push(((*k).into(), (*v).into()));
    }
    h
}

fn sign(headers: &mut Vec<(String, String)>, akid: &str, secret: &str, region: &str, body: &[u8]) {
    let req = SignableRequest {
        method: "POST",
        path: "/",
        query: "",
        headers,
        body,
    };
    let auth = authorization_header(&req, akid, secret, region, "kms");
    headers.push(("Authorization".into(), auth));
}

fn check(headers: &[(String, String)], body: &[u8]) -> Result<Verified, AuthError> {
    let req = SignableRequest {
        method: "POST",
        path: "/",
        query: "",
        headers,
        body,
    };
    verify(&req, "local", NOW, &OneKey).map_err(|e| match e {
        VerifyError::Auth(a) => a,
        VerifyError::Lookup(never) => match never {},
    })
}

#[test]
fn a_correctly_signed_request_verifies() {
    let mut h = signed_headers(NOW - 60, &[]);
    sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
    assert_eq!(
        check(&h, BODY),
        Ok(Verified {
            access_key_id: "AKIDKMSFS".into()
        })
    );
    // A declared payload hash that is the body's own is honoured.
    let hash = sha256_hex(BODY);
    let mut h = signed_headers(NOW, &[("x-amz-content-sha256", &hash)]);
    sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
    assert!(check(&h, BODY).is_ok());
}

#[test]
fn each_rejection_names_the_aws_exception() {
    let mismatch = AuthError::InvalidSignature(SIGNATURE_MISMATCH.into());
    type Case = (
        &'static str,
        Box<dyn Fn() -> (Vec<(String, String)>, Vec<u8>)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "no Authorization header",
            Box::new(|| (signed_headers(NOW, &[]), BODY.to_vec())),
            "MissingAuthenticationTokenException",
        ),
        (
            "unknown access key",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                sign(&mut h, "AKIDOTHER", "s3cr3t", "local", BODY);
                (h, BODY.to_vec())
            }),
            "UnrecognizedClientException",
        ),
        (
            "a session token (no STS here)",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[("x-amz-security-token", "tok")]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                (h, BODY.to_vec())
            }),
            "UnrecognizedClientException",
        ),
        (
            "wrong secret",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                sign(&mut h, "AKIDKMSFS", "wrong", "local", BODY);
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "body changed after signing",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                (h, br#"{"KeyId":"alias/b"}"#.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "declared payload hash is not the body's",
            Box::new(|| {
                let other = sha256_hex(b"{}");
                let mut h = signed_headers(NOW, &[("x-amz-content-sha256", &other)]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", b"{}");
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "unsigned payload",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "20 minutes old",
            Box::new(|| {
                let mut h = signed_headers(NOW - 20 * 60, &[]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "20 minutes ahead",
            Box::new(|| {
                let mut h = signed_headers(NOW + 20 * 60, &[]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "another region",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "us-east-1", BODY);
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "host not signed",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                h.retain(|(n, _)| n != "host");
                sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
                h.push(("host".into(), "127.0.0.1:4599".into()));
                (h, BODY.to_vec())
            }),
            "InvalidSignatureException",
        ),
        (
            "garbled header",
            Box::new(|| {
                let mut h = signed_headers(NOW, &[]);
                h.push((
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=x".into(),
                ));
                (h, BODY.to_vec())
            }),
            "IncompleteSignatureException",
        ),
    ];
    for (what, make, expected) in cases {
        let (h, body) = make();
        let got = check(&h, &body).expect_err(what);
        assert_eq!(got.aws_name(), expected, "{what}: {got}");
    }
    let mut h = signed_headers(NOW, &[]);
    sign(&mut h, "AKIDKMSFS", "wrong", "local", BODY);
    assert_eq!(check(&h, BODY), Err(mismatch));
}

#[test]
fn expired_message_is_worded_as_aws_words_it() {
    let mut h = signed_headers(NOW - 20 * 60, &[]);
    sign(&mut h, "AKIDKMSFS", "s3cr3t", "local", BODY);
    assert_eq!(
        check(&h, BODY).unwrap_err().to_string(),
        "Signature expired: 20251231T234000Z is now earlier than 20251231T234500Z (20260101T000000Z - 15 min.)"
    );
    assert_eq!(
        AuthError::MissingToken.to_string(),
        "Missing Authentication Token"
    );
    assert_eq!(AuthError::UnrecognizedClient.to_string(), INVALID_TOKEN);
}
