//! Tests of `crypto::asym` (a file of their own: they build keys with
//! `crypto::keypair`, which itself builds on `asym`).

use super::*;
use crate::crypto::keypair::{generate_key_pair, KeyPairError, KeyPairSpec};

/// A fresh private key from the one generator the key service uses.
fn generate(spec: PairSpec) -> Result<Zeroizing<Vec<u8>>, KeyPairError> {
    let kp = KeyPairSpec::ALL
        .into_iter()
        .find(|k| k.pair_spec() == spec)
        .ok_or(KeyPairError::Generation)?;
    Ok(Zeroizing::new(
        generate_key_pair(kp)?.private.expose().to_vec(),
    ))
}

fn round_trip(spec: PairSpec, scheme: SignScheme) {
    let der = generate(spec).unwrap();
    let k = PrivateKey::from_pkcs8(spec, &der).unwrap();
    let msg = b"kmsfs signs this";
    let sig = k.sign(scheme, Message::Raw(msg)).unwrap();
    assert!(
        k.verify(scheme, Message::Raw(msg), &sig).unwrap(),
        "{spec:?}"
    );
    assert!(!k.verify(scheme, Message::Raw(b"other"), &sig).unwrap());
    let mut bad = sig.clone();
    if let Some(b) = bad.last_mut() {
        *b ^= 1;
    }
    assert!(!k.verify(scheme, Message::Raw(msg), &bad).unwrap());
    assert!(!k.verify(scheme, Message::Raw(msg), b"garbage").unwrap());
    if let Some(h) = scheme.hash() {
        let d = h.digest(msg);
        assert!(k.verify(scheme, Message::Digest(&d), &sig).unwrap());
        let sig2 = k.sign(scheme, Message::Digest(&d)).unwrap();
        assert!(k.verify(scheme, Message::Raw(msg), &sig2).unwrap());
        assert!(matches!(
            k.sign(scheme, Message::Digest(&d[1..])),
            Err(AsymError::DigestLength { .. })
        ));
    }
    assert!(!k.public_der().unwrap().is_empty());
}

#[test]
fn every_curve_signs_and_verifies() {
    round_trip(PairSpec::Ec(Curve::P256), SignScheme::Ecdsa(Hash::Sha256));
    round_trip(PairSpec::Ec(Curve::P384), SignScheme::Ecdsa(Hash::Sha384));
    round_trip(PairSpec::Ec(Curve::P521), SignScheme::Ecdsa(Hash::Sha512));
    round_trip(
        PairSpec::Ec(Curve::Secp256k1),
        SignScheme::Ecdsa(Hash::Sha256),
    );
    round_trip(PairSpec::Ed25519, SignScheme::Ed25519);
    round_trip(PairSpec::Ed25519, SignScheme::Ed25519Ph);
}

/// Stores written before the generators were merged hold Ed25519 keys as PKCS#8
/// version 2 (with the public key); they must still sign.
#[test]
fn ed25519_keys_stored_as_pkcs8_v2_still_parse() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let v2 = sk.to_pkcs8_der().unwrap();
    assert_ne!(v2.as_bytes().len(), 48, "not the v1 encoding");
    let k = PrivateKey::from_pkcs8(PairSpec::Ed25519, v2.as_bytes()).unwrap();
    let sig = k.sign(SignScheme::Ed25519, Message::Raw(b"old")).unwrap();
    assert_eq!(
        sig,
        ed25519_dalek::Signer::sign(&sk, b"old").to_bytes().to_vec()
    );
}

/// RFC 8032 section 7.3, test vector "abc" of Ed25519ph: the key signs to the
/// published signature, and the two Ed25519 schemes do not accept each other's.
#[test]
fn ed25519ph_matches_rfc8032_test_vector() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let seed: [u8; 32] = hex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
        .try_into()
        .unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(
        sk.verifying_key().to_bytes().to_vec(),
        hex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
    );
    let want = hex(concat!(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41",
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
    ));
    let k = PrivateKey::Ed25519(Box::new(sk));
    let sig = k.sign(SignScheme::Ed25519Ph, Message::Raw(b"abc")).unwrap();
    assert_eq!(sig, want);
    assert!(k
        .verify(SignScheme::Ed25519Ph, Message::Raw(b"abc"), &want)
        .unwrap());
    assert!(!k
        .verify(SignScheme::Ed25519, Message::Raw(b"abc"), &want)
        .unwrap());
    let d = Hash::Sha512.digest(b"abc");
    assert_eq!(
        k.sign(SignScheme::Ed25519Ph, Message::Digest(&d)),
        Err(AsymError::Scheme)
    );
}

#[test]
fn rsa_signs_encrypts_and_refuses_other_schemes() {
    let spec = PairSpec::Rsa(2048);
    round_trip(spec, SignScheme::RsaPss(Hash::Sha256));
    round_trip(spec, SignScheme::RsaPkcs1(Hash::Sha512));
    let der = generate(spec).unwrap();
    let k = PrivateKey::from_pkcs8(spec, &der).unwrap();
    assert_eq!(k.max_plaintext(Hash::Sha1), Some(214));
    assert_eq!(k.max_plaintext(Hash::Sha256), Some(190));
    let ct = k.encrypt(Hash::Sha256, b"secret").unwrap();
    assert_eq!(&*k.decrypt(Hash::Sha256, &ct).unwrap(), b"secret");
    assert_eq!(k.decrypt(Hash::Sha1, &ct), Err(AsymError::Decrypt));
    assert_eq!(k.encrypt(Hash::Sha256, &[0; 191]), Err(AsymError::TooLong));
    assert_eq!(
        k.sign(SignScheme::Ecdsa(Hash::Sha256), Message::Raw(b"x")),
        Err(AsymError::Scheme)
    );
    assert!(PrivateKey::from_pkcs8(PairSpec::Rsa(3072), &der).is_err());
    assert!(PrivateKey::from_pkcs8(PairSpec::Ec(Curve::P256), &der).is_err());
    assert_eq!(format!("{k:?}"), "PrivateKey(RSA)");
}
