//! Asymmetric key pairs, all from RustCrypto crates: generation (PKCS#8 DER private
//! key), the public half as DER SubjectPublicKeyInfo, signatures (RSASSA-PSS,
//! RSASSA-PKCS1-v1_5, ECDSA with DER-encoded signatures, Ed25519) over a message or a
//! digest, and RSAES-OAEP encryption. The key service names these with AWS's key
//! specs and algorithm names; this module knows only the mathematics.
//!
//! Never does I/O and never prints key bytes: [`PrivateKey`]'s `Debug` prints only
//! its kind, and every parsed private key type zeroizes itself on drop.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::signature::{Signer, Verifier};
use rsa::{Oaep, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;
use zeroize::Zeroizing;

/// Errors of this module; as in the rest of `crypto`, without detail that could help
/// an attacker (which byte of a signature was wrong).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsymError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the private key does not parse as a {0} PKCS#8 key")]
    PrivateKey(&'static str),
    #[error("the public key cannot be encoded")]
    PublicKey,
    #[error("the signature scheme does not fit this key")]
    Scheme,
    #[error("the digest is {got} bytes; the algorithm's hash is {want} bytes")]
    DigestLength { got: usize, want: usize },
    #[error("signing failed")]
    Sign,
    #[error("the plaintext is too long for this key and padding")]
    TooLong,
    #[error("decryption failed")]
    Decrypt,
}

/// The elliptic curves of ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

/// What kind of key pair to generate or parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSpec {
    /// RSA with this modulus size in bits.
    Rsa(usize),
    Ec(Curve),
    Ed25519,
}

/// The hash of a signature or encryption scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A signature scheme with its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScheme {
    /// RSASSA-PSS, MGF1 with the same hash, salt as long as the hash.
    RsaPss(Hash),
    RsaPkcs1(Hash),
    /// ECDSA; the signature is DER-encoded (as X9.62 and AWS KMS return it).
    Ecdsa(Hash),
    /// Pure Ed25519 (RFC 8032): signs the message itself, never a digest.
    Ed25519,
}

impl SignScheme {
    /// The hash a DIGEST message must come from (None: the scheme takes messages only).
    pub fn hash(self) -> Option<Hash> {
        match self {
            SignScheme::RsaPss(h) | SignScheme::RsaPkcs1(h) | SignScheme::Ecdsa(h) => Some(h),
            SignScheme::Ed25519 => None,
        }
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// The message; the scheme hashes it.
    Raw(&'a [u8]),
    /// The message's digest under the scheme's hash.
    Digest(&'a [u8]),
}

/// A parsed private key.
pub enum PrivateKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    P521(p521::SecretKey),
    Secp256k1(k256::SecretKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.kind())
    }
}

/// A fresh key pair's private key, as PKCS#8 DER.
pub fn generate(spec: PairSpec) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let der = match spec {
        PairSpec::Rsa(bits) => RsaPrivateKey::new(&mut OsRng, bits)
            .map_err(|_| AsymError::Random)?
            .to_pkcs8_der(),
        PairSpec::Ec(Curve::P256) => p256::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        PairSpec::Ec(Curve::P384) => p384::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        PairSpec::Ec(Curve::P521) => p521::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        PairSpec::Ec(Curve::Secp256k1) => k256::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        PairSpec::Ed25519 => ed25519_dalek::SigningKey::generate(&mut OsRng).to_pkcs8_der(),
    }
    .map_err(|_| AsymError::PublicKey)?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// ECDSA over a digest with one curve's types; the signature DER-encoded.
macro_rules! ecdsa_sign {
    ($signing:ty, $sk:expr, $digest:expr) => {{
        let signer = <$signing>::from_bytes(&$sk.to_bytes()).map_err(|_| AsymError::Sign)?;
        let sig: ecdsa::Signature<_> = signer.sign_prehash($digest).map_err(|_| AsymError::Sign)?;
        sig.to_der().as_bytes().to_vec()
    }};
}

/// ECDSA verification of a DER signature over a digest; false for any malformed input.
macro_rules! ecdsa_verify {
    ($verifying:ty, $pk:expr, $digest:expr, $sig:expr, $normalize:expr) => {{
        let point = $pk.to_encoded_point(false);
        match (
            <$verifying>::from_sec1_bytes(point.as_bytes()),
            ecdsa::Signature::from_der($sig),
        ) {
            (Ok(vk), Ok(sig)) => {
                // secp256k1 verifiers accept only low-S signatures (Bitcoin's rule);
                // a high-S signature made elsewhere is still a valid ECDSA signature.
                let sig: ecdsa::Signature<_> = if $normalize {
                    sig.normalize_s().unwrap_or(sig)
                } else {
                    sig
                };
                vk.verify_prehash($digest, &sig).is_ok()
            }
            _ => false,
        }
    }};
}

impl PrivateKey {
    /// Parses a PKCS#8 DER private key of the given kind.
    pub fn from_pkcs8(spec: PairSpec, der: &[u8]) -> Result<Self, AsymError> {
        let key = match spec {
            PairSpec::Rsa(bits) => {
                let k =
                    RsaPrivateKey::from_pkcs8_der(der).map_err(|_| AsymError::PrivateKey("RSA"))?;
                if rsa::traits::PublicKeyParts::size(&k) * 8 != bits {
                    return Err(AsymError::PrivateKey("RSA"));
                }
                PrivateKey::Rsa(Box::new(k))
            }
            PairSpec::Ec(Curve::P256) => PrivateKey::P256(
                p256::SecretKey::from_pkcs8_der(der).map_err(|_| AsymError::PrivateKey("P-256"))?,
            ),
            PairSpec::Ec(Curve::P384) => PrivateKey::P384(
                p384::SecretKey::from_pkcs8_der(der).map_err(|_| AsymError::PrivateKey("P-384"))?,
            ),
            PairSpec::Ec(Curve::P521) => PrivateKey::P521(
                p521::SecretKey::from_pkcs8_der(der).map_err(|_| AsymError::PrivateKey("P-521"))?,
            ),
            PairSpec::Ec(Curve::Secp256k1) => PrivateKey::Secp256k1(
                k256::SecretKey::from_pkcs8_der(der)
                    .map_err(|_| AsymError::PrivateKey("secp256k1"))?,
            ),
            PairSpec::Ed25519 => PrivateKey::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|_| AsymError::PrivateKey("Ed25519"))?,
            )),
        };
        Ok(key)
    }

    fn kind(&self) -> &'static str {
        match self {
            PrivateKey::Rsa(_) => "RSA",
            PrivateKey::P256(_) => "P-256",
            PrivateKey::P384(_) => "P-384",
            PrivateKey::P521(_) => "P-521",
            PrivateKey::Secp256k1(_) => "secp256k1",
            PrivateKey::Ed25519(_) => "Ed25519",
        }
    }

    /// The public key as DER SubjectPublicKeyInfo (what `openssl pkey -pubin` reads).
    pub fn public_der(&self) -> Result<Vec<u8>, AsymError> {
        let doc = match self {
            PrivateKey::Rsa(k) => RsaPublicKey::from(k.as_ref()).to_public_key_der(),
            PrivateKey::P256(k) => k.public_key().to_public_key_der(),
            PrivateKey::P384(k) => k.public_key().to_public_key_der(),
            PrivateKey::P521(k) => k.public_key().to_public_key_der(),
            PrivateKey::Secp256k1(k) => k.public_key().to_public_key_der(),
            PrivateKey::Ed25519(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|_| AsymError::PublicKey)?;
        Ok(doc.as_bytes().to_vec())
    }

    /// The digest the scheme signs: the message hashed, or the given digest after its
    /// length is checked.
    fn digest_of(scheme: SignScheme, msg: Message<'_>) -> Result<Vec<u8>, AsymError> {
        let h = scheme.hash().ok_or(AsymError::Scheme)?;
        match msg {
            Message::Raw(m) => Ok(h.digest(m)),
            Message::Digest(d) if d.len() == h.output_len() => Ok(d.to_vec()),
            Message::Digest(d) => Err(AsymError::DigestLength {
                got: d.len(),
                want: h.output_len(),
            }),
        }
    }

    /// Signs with `scheme`, which must fit the key.
    pub fn sign(&self, scheme: SignScheme, msg: Message<'_>) -> Result<Vec<u8>, AsymError> {
        if let (PrivateKey::Ed25519(k), SignScheme::Ed25519) = (self, scheme) {
            let Message::Raw(m) = msg else {
                return Err(AsymError::Scheme);
            };
            return Ok(k.sign(m).to_bytes().to_vec());
        }
        let digest = Self::digest_of(scheme, msg)?;
        let sig = match (self, scheme) {
            (PrivateKey::Rsa(k), SignScheme::RsaPss(h)) => k
                .sign_with_rng(&mut OsRng, pss(h)?, &digest)
                .map_err(|_| AsymError::Sign)?,
            (PrivateKey::Rsa(k), SignScheme::RsaPkcs1(h)) => {
                k.sign(pkcs1(h)?, &digest).map_err(|_| AsymError::Sign)?
            }
            (PrivateKey::P256(k), SignScheme::Ecdsa(_)) => {
                ecdsa_sign!(p256::ecdsa::SigningKey, k, &digest)
            }
            (PrivateKey::P384(k), SignScheme::Ecdsa(_)) => {
                ecdsa_sign!(p384::ecdsa::SigningKey, k, &digest)
            }
            (PrivateKey::P521(k), SignScheme::Ecdsa(_)) => {
                ecdsa_sign!(p521::ecdsa::SigningKey, k, &digest)
            }
            (PrivateKey::Secp256k1(k), SignScheme::Ecdsa(_)) => {
                ecdsa_sign!(k256::ecdsa::SigningKey, k, &digest)
            }
            _ => return Err(AsymError::Scheme),
        };
        Ok(sig)
    }

    /// Whether `sig` is a valid signature by this key. A malformed signature is simply
    /// invalid; only a scheme that does not fit the key or a wrong digest length is an
    /// error.
    pub fn verify(
        &self,
        scheme: SignScheme,
        msg: Message<'_>,
        sig: &[u8],
    ) -> Result<bool, AsymError> {
        if let (PrivateKey::Ed25519(k), SignScheme::Ed25519) = (self, scheme) {
            let Message::Raw(m) = msg else {
                return Err(AsymError::Scheme);
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                return Ok(false);
            };
            return Ok(k.verifying_key().verify(m, &sig).is_ok());
        }
        let digest = Self::digest_of(scheme, msg)?;
        let ok = match (self, scheme) {
            (PrivateKey::Rsa(k), SignScheme::RsaPss(h)) => RsaPublicKey::from(k.as_ref())
                .verify(pss(h)?, &digest, sig)
                .is_ok(),
            (PrivateKey::Rsa(k), SignScheme::RsaPkcs1(h)) => RsaPublicKey::from(k.as_ref())
                .verify(pkcs1(h)?, &digest, sig)
                .is_ok(),
            (PrivateKey::P256(k), SignScheme::Ecdsa(_)) => {
                ecdsa_verify!(
                    p256::ecdsa::VerifyingKey,
                    k.public_key(),
                    &digest,
                    sig,
                    false
                )
            }
            (PrivateKey::P384(k), SignScheme::Ecdsa(_)) => {
                ecdsa_verify!(
                    p384::ecdsa::VerifyingKey,
                    k.public_key(),
                    &digest,
                    sig,
                    false
                )
            }
            (PrivateKey::P521(k), SignScheme::Ecdsa(_)) => {
                ecdsa_verify!(
                    p521::ecdsa::VerifyingKey,
                    k.public_key(),
                    &digest,
                    sig,
                    false
                )
            }
            (PrivateKey::Secp256k1(k), SignScheme::Ecdsa(_)) => {
                ecdsa_verify!(
                    k256::ecdsa::VerifyingKey,
                    k.public_key(),
                    &digest,
                    sig,
                    true
                )
            }
            _ => return Err(AsymError::Scheme),
        };
        Ok(ok)
    }

    /// The longest plaintext RSAES-OAEP with `hash` encrypts under this key (RFC 8017:
    /// modulus bytes - 2 * hash length - 2); None for keys that do not encrypt.
    pub fn max_plaintext(&self, hash: Hash) -> Option<usize> {
        match self {
            PrivateKey::Rsa(k) => {
                let n = rsa::traits::PublicKeyParts::size(k.as_ref());
                n.checked_sub(2 * hash.output_len() + 2)
            }
            _ => None,
        }
    }

    /// RSAES-OAEP encryption with the public half (MGF1 with the same hash, empty label).
    pub fn encrypt(&self, hash: Hash, plaintext: &[u8]) -> Result<Vec<u8>, AsymError> {
        let PrivateKey::Rsa(k) = self else {
            return Err(AsymError::Scheme);
        };
        let fits = matches!(self.max_plaintext(hash), Some(max) if plaintext.len() <= max);
        if !fits {
            return Err(AsymError::TooLong);
        }
        RsaPublicKey::from(k.as_ref())
            .encrypt(&mut OsRng, oaep(hash), plaintext)
            .map_err(|_| AsymError::TooLong)
    }

    /// RSAES-OAEP decryption; any failure is the same error (no padding oracle detail).
    pub fn decrypt(&self, hash: Hash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, AsymError> {
        let PrivateKey::Rsa(k) = self else {
            return Err(AsymError::Scheme);
        };
        k.decrypt_blinded(&mut OsRng, oaep(hash), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| AsymError::Decrypt)
    }
}

fn oaep(h: Hash) -> Oaep {
    match h {
        Hash::Sha1 => Oaep::new::<sha1::Sha1>(),
        Hash::Sha256 => Oaep::new::<sha2::Sha256>(),
        Hash::Sha384 => Oaep::new::<sha2::Sha384>(),
        Hash::Sha512 => Oaep::new::<sha2::Sha512>(),
    }
}

fn pss(h: Hash) -> Result<Pss, AsymError> {
    match h {
        Hash::Sha256 => Ok(Pss::new::<sha2::Sha256>()),
        Hash::Sha384 => Ok(Pss::new::<sha2::Sha384>()),
        Hash::Sha512 => Ok(Pss::new::<sha2::Sha512>()),
        Hash::Sha1 => Err(AsymError::Scheme),
    }
}

fn pkcs1(h: Hash) -> Result<Pkcs1v15Sign, AsymError> {
    match h {
        Hash::Sha256 => Ok(Pkcs1v15Sign::new::<sha2::Sha256>()),
        Hash::Sha384 => Ok(Pkcs1v15Sign::new::<sha2::Sha384>()),
        Hash::Sha512 => Ok(Pkcs1v15Sign::new::<sha2::Sha512>()),
        Hash::Sha1 => Err(AsymError::Scheme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
