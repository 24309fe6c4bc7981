//! Asymmetric data key pairs (AWS's GenerateDataKeyPair) and ECDH key agreement (AWS's
//! DeriveSharedSecret), with RustCrypto crates (`rsa`, `p256`, `p384`, `p521`, `k256`,
//! `ed25519-dalek`).
//!
//! Keys cross this module's boundary only as standard DER: private keys as PKCS#8
//! (RFC 5208, held in [`Pkcs8Der`], zeroized on drop), public keys as X.509
//! SubjectPublicKeyInfo (RFC 5280). Those are the encodings AWS returns, so that openssl
//! and every other library read them unchanged. Randomness comes from the operating
//! system (`OsRng`, getrandom).

use p256::elliptic_curve::ecdh::diffie_hellman;
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;
use spki::{DecodePublicKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::asym::{Curve, PairSpec};

/// Errors of this module. Carries no key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPairError {
    #[error("the private key is not a valid PKCS#8 key of the expected type")]
    PrivateKey,
    #[error("the public key is not a DER-encoded SubjectPublicKeyInfo on the key's curve")]
    PeerPublicKey,
    #[error("generating the key pair failed")]
    Generation,
    #[error("encoding the key as DER failed")]
    Encoding,
}

/// A private key as PKCS#8 DER. Not `Clone`; `Debug` prints only the name.
pub struct Pkcs8Der(Zeroizing<Vec<u8>>);

impl Pkcs8Der {
    /// Wraps DER bytes (opened from the store or from a ciphertext blob).
    pub fn from_bytes(der: Zeroizing<Vec<u8>>) -> Self {
        Self(der)
    }

    /// The DER bytes. Callers must not copy them into non-zeroizing storage.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Pkcs8Der {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkcs8Der(..)")
    }
}

/// A key pair: the private half as PKCS#8 DER, the public half as SPKI DER.
#[derive(Debug)]
pub struct KeyPair {
    pub private: Pkcs8Der,
    pub public: Vec<u8>,
}

/// The key pair specs GenerateDataKeyPair supports here (AWS's `DataKeyPairSpec` without
/// SM2, which AWS offers only in China Regions, and ML_KEM_*, for which no RustCrypto
/// crate is in this build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPairSpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    EccSecgP256k1,
    EccNistEdwards25519,
}

impl KeyPairSpec {
    /// Every supported spec, in AWS's order.
    pub const ALL: [KeyPairSpec; 8] = [
        KeyPairSpec::Rsa2048,
        KeyPairSpec::Rsa3072,
        KeyPairSpec::Rsa4096,
        KeyPairSpec::EccNistP256,
        KeyPairSpec::EccNistP384,
        KeyPairSpec::EccNistP521,
        KeyPairSpec::EccSecgP256k1,
        KeyPairSpec::EccNistEdwards25519,
    ];

    /// The spec AWS names `name`, if this build supports it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The mathematics of the spec, as the signing and encryption code names it.
    pub fn pair_spec(self) -> PairSpec {
        match self {
            Self::Rsa2048 => PairSpec::Rsa(2048),
            Self::Rsa3072 => PairSpec::Rsa(3072),
            Self::Rsa4096 => PairSpec::Rsa(4096),
            Self::EccNistP256 => PairSpec::Ec(Curve::P256),
            Self::EccNistP384 => PairSpec::Ec(Curve::P384),
            Self::EccNistP521 => PairSpec::Ec(Curve::P521),
            Self::EccSecgP256k1 => PairSpec::Ec(Curve::Secp256k1),
            Self::EccNistEdwards25519 => PairSpec::Ed25519,
        }
    }

    /// AWS's name of the spec (`DataKeyPairSpec`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
            Self::EccNistP256 => "ECC_NIST_P256",
            Self::EccNistP384 => "ECC_NIST_P384",
            Self::EccNistP521 => "ECC_NIST_P521",
            Self::EccSecgP256k1 => "ECC_SECG_P256K1",
            Self::EccNistEdwards25519 => "ECC_NIST_EDWARDS25519",
        }
    }
}

/// Encodes an elliptic-curve secret key and its public point.
macro_rules! ec_pair {
    ($curve:ident) => {{
        let sk = $curve::SecretKey::random(&mut OsRng);
        let private = sk.to_pkcs8_der().map_err(|_| KeyPairError::Encoding)?;
        let public = sk
            .public_key()
            .to_public_key_der()
            .map_err(|_| KeyPairError::Encoding)?;
        KeyPair {
            private: Pkcs8Der(Zeroizing::new(private.as_bytes().to_vec())),
            public: public.into_vec(),
        }
    }};
}

/// A fresh key pair of `spec`. RSA keys use the public exponent 65537. Slow for RSA
/// (hundreds of milliseconds for 4096 bits): callers must not hold a lock across it.
///
/// `OsRng` panics if the operating system's generator fails, which Linux's getrandom
/// does not do once the pool is initialised; the RustCrypto generators take no fallible
/// generator.
pub fn generate_key_pair(spec: KeyPairSpec) -> Result<KeyPair, KeyPairError> {
    Ok(match spec {
        KeyPairSpec::Rsa2048 => rsa_pair(2048)?,
        KeyPairSpec::Rsa3072 => rsa_pair(3072)?,
        KeyPairSpec::Rsa4096 => rsa_pair(4096)?,
        KeyPairSpec::EccNistP256 => ec_pair!(p256),
        KeyPairSpec::EccNistP384 => ec_pair!(p384),
        KeyPairSpec::EccNistP521 => ec_pair!(p521),
        KeyPairSpec::EccSecgP256k1 => ec_pair!(k256),
        KeyPairSpec::EccNistEdwards25519 => ed25519_pair()?,
    })
}

fn rsa_pair(bits: usize) -> Result<KeyPair, KeyPairError> {
    let sk = rsa::RsaPrivateKey::new(&mut OsRng, bits).map_err(|_| KeyPairError::Generation)?;
    let private = sk.to_pkcs8_der().map_err(|_| KeyPairError::Encoding)?;
    let public = sk
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| KeyPairError::Encoding)?;
    Ok(KeyPair {
        private: Pkcs8Der(Zeroizing::new(private.as_bytes().to_vec())),
        public: public.into_vec(),
    })
}

fn ed25519_pair() -> Result<KeyPair, KeyPairError> {
    let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
    // PKCS#8 version 1 (RFC 8410: the seed alone, no embedded public key), which every
    // reader accepts; the crate's own encoder writes version 2 with the public key.
    let bytes = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: sk.to_bytes(),
        public_key: None,
    };
    let private = bytes.to_pkcs8_der().map_err(|_| KeyPairError::Encoding)?;
    let public = sk
        .verifying_key()
        .to_public_key_der()
        .map_err(|_| KeyPairError::Encoding)?;
    Ok(KeyPair {
        private: Pkcs8Der(Zeroizing::new(private.as_bytes().to_vec())),
        public: public.into_vec(),
    })
}

/// The curves AWS allows for KEY_AGREEMENT keys (ECDH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcdhCurve {
    P256,
    P384,
    P521,
    Secp256k1,
}

impl EcdhCurve {
    /// The curve of a KMS key spec (`ECC_NIST_P256`, ...), if it is one ECDH works on.
    pub fn for_key_spec(spec: &str) -> Option<Self> {
        match spec {
            "ECC_NIST_P256" => Some(Self::P256),
            "ECC_NIST_P384" => Some(Self::P384),
            "ECC_NIST_P521" => Some(Self::P521),
            "ECC_SECG_P256K1" => Some(Self::Secp256k1),
            _ => None,
        }
    }

    /// Length of the shared secret in bytes (the curve's field size).
    pub fn secret_len(self) -> usize {
        match self {
            Self::P256 | Self::Secp256k1 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

/// A parsed private key on one of the ECDH curves (borrowed from wherever the caller
/// keeps it, e.g. a cache of parsed keys).
#[derive(Clone, Copy)]
pub enum EcdhSecret<'a> {
    P256(&'a p256::SecretKey),
    P384(&'a p384::SecretKey),
    P521(&'a p521::SecretKey),
    Secp256k1(&'a k256::SecretKey),
}

impl std::fmt::Debug for EcdhSecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdhSecret(..)")
    }
}

macro_rules! ecdh_on {
    ($curve:ident, $sk:expr, $peer:expr) => {{
        let pk = $curve::PublicKey::from_public_key_der($peer)
            .map_err(|_| KeyPairError::PeerPublicKey)?;
        let shared = diffie_hellman($sk.to_nonzero_scalar(), pk.as_affine());
        Zeroizing::new(shared.raw_secret_bytes().to_vec())
    }};
}

/// The ECDH shared secret of our private key and a peer's public key (SPKI DER on the
/// same curve): the raw x-coordinate of the shared point, unhashed, as AWS's
/// DeriveSharedSecret returns it (NIST SP 800-56A's Z; the curves here have cofactor 1,
/// so the cofactor and plain primitives agree). Callers must put it through a KDF
/// before using it as a key. A peer key on another curve, or not a point on it, is
/// [`KeyPairError::PeerPublicKey`].
pub fn ecdh(secret: EcdhSecret<'_>, peer_spki: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyPairError> {
    Ok(match secret {
        EcdhSecret::P256(sk) => ecdh_on!(p256, sk, peer_spki),
        EcdhSecret::P384(sk) => ecdh_on!(p384, sk, peer_spki),
        EcdhSecret::P521(sk) => ecdh_on!(p521, sk, peer_spki),
        EcdhSecret::Secp256k1(sk) => ecdh_on!(k256, sk, peer_spki),
    })
}

macro_rules! ecdh_pkcs8 {
    ($curve:ident, $variant:ident, $private:expr, $peer:expr) => {{
        let sk =
            $curve::SecretKey::from_pkcs8_der($private).map_err(|_| KeyPairError::PrivateKey)?;
        ecdh(EcdhSecret::$variant(&sk), $peer)?
    }};
}

/// [`ecdh`] with our private key given as PKCS#8 DER on `curve`.
pub fn ecdh_shared_secret(
    curve: EcdhCurve,
    private: &Pkcs8Der,
    peer_spki: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyPairError> {
    let private = private.expose();
    Ok(match curve {
        EcdhCurve::P256 => ecdh_pkcs8!(p256, P256, private, peer_spki),
        EcdhCurve::P384 => ecdh_pkcs8!(p384, P384, private, peer_spki),
        EcdhCurve::P521 => ecdh_pkcs8!(p521, P521, private, peer_spki),
        EcdhCurve::Secp256k1 => ecdh_pkcs8!(k256, Secp256k1, private, peer_spki),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;
    use rsa::pkcs1v15;
    use rsa::signature::{SignatureEncoding as _, Verifier as _};

    #[test]
    fn rsa_halves_match() {
        let pair = generate_key_pair(KeyPairSpec::Rsa2048).unwrap();
        let sk = rsa::RsaPrivateKey::from_pkcs8_der(pair.private.expose()).unwrap();
        let pk = rsa::RsaPublicKey::from_public_key_der(&pair.public).unwrap();
        let signer = pkcs1v15::SigningKey::<sha2::Sha256>::new(sk);
        let sig = signer.sign(b"message");
        let verifier = pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
        verifier
            .verify(
                b"message",
                &pkcs1v15::Signature::try_from(sig.to_bytes().as_ref()).unwrap(),
            )
            .unwrap();
        assert!(verifier.verify(b"messagE", &sig).is_err());
    }

    macro_rules! ec_halves_match {
        ($curve:ident, $spec:expr) => {{
            let pair = generate_key_pair($spec).unwrap();
            let sk = $curve::SecretKey::from_pkcs8_der(pair.private.expose()).unwrap();
            let pk = $curve::PublicKey::from_public_key_der(&pair.public).unwrap();
            assert_eq!(sk.public_key(), pk, "{}", $spec.name());
        }};
    }

    #[test]
    fn ec_halves_match() {
        ec_halves_match!(p256, KeyPairSpec::EccNistP256);
        ec_halves_match!(p384, KeyPairSpec::EccNistP384);
        ec_halves_match!(p521, KeyPairSpec::EccNistP521);
        ec_halves_match!(k256, KeyPairSpec::EccSecgP256k1);
    }

    #[test]
    fn ed25519_halves_match_and_private_key_is_pkcs8_v1() {
        let pair = generate_key_pair(KeyPairSpec::EccNistEdwards25519).unwrap();
        // RFC 8410's v1 encoding of an Ed25519 key is always 48 bytes.
        assert_eq!(pair.private.expose().len(), 48);
        let sk = ed25519_dalek::SigningKey::from_pkcs8_der(pair.private.expose()).unwrap();
        let pk = ed25519_dalek::VerifyingKey::from_public_key_der(&pair.public).unwrap();
        let sig = sk.sign(b"message");
        pk.verify_strict(b"message", &sig).unwrap();
        assert_eq!(pair.public.len(), 44);
    }

    #[test]
    fn spec_names_round_trip() {
        for s in KeyPairSpec::ALL {
            assert_eq!(KeyPairSpec::parse(s.name()), Some(s));
        }
        assert_eq!(KeyPairSpec::parse("SM2"), None);
        assert_eq!(KeyPairSpec::parse("ML_KEM_768"), None);
        assert_eq!(
            format!(
                "{:?}",
                generate_key_pair(KeyPairSpec::EccNistP256).unwrap().private
            ),
            "Pkcs8Der(..)"
        );
    }

    /// Both sides of an exchange agree, and the secret is the x-coordinate's length.
    #[test]
    fn ecdh_both_sides_agree() {
        let cases = [
            (EcdhCurve::P256, KeyPairSpec::EccNistP256),
            (EcdhCurve::P384, KeyPairSpec::EccNistP384),
            (EcdhCurve::P521, KeyPairSpec::EccNistP521),
            (EcdhCurve::Secp256k1, KeyPairSpec::EccSecgP256k1),
        ];
        for (curve, spec) in cases {
            assert_eq!(EcdhCurve::for_key_spec(spec.name()), Some(curve));
            let a = generate_key_pair(spec).unwrap();
            let b = generate_key_pair(spec).unwrap();
            let ab = ecdh_shared_secret(curve, &a.private, &b.public).unwrap();
            let ba = ecdh_shared_secret(curve, &b.private, &a.public).unwrap();
            assert_eq!(*ab, *ba);
            assert_eq!(ab.len(), curve.secret_len());
        }
    }

    /// RFC 5903 section 8.1 (ECDH on P-256): the initiator's private scalar i, the
    /// responder's public point (gr), and the shared x-coordinate.
    #[test]
    fn ecdh_p256_rfc5903_vector() {
        let i = hex::decode("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433")
            .unwrap();
        let gr = hex::decode(concat!(
            "04",
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
            "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
        ))
        .unwrap();
        let z = "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE";
        let sk = p256::SecretKey::from_slice(&i).unwrap();
        let private = Pkcs8Der(Zeroizing::new(
            sk.to_pkcs8_der().unwrap().as_bytes().to_vec(),
        ));
        let peer = p256::PublicKey::from_sec1_bytes(&gr).unwrap();
        let peer_spki = peer.to_public_key_der().unwrap();
        let got = ecdh_shared_secret(EcdhCurve::P256, &private, peer_spki.as_bytes()).unwrap();
        assert_eq!(hex::encode_upper(&*got), z);
    }

    #[test]
    fn ecdh_refuses_a_peer_on_another_curve_or_garbage() {
        let a = generate_key_pair(KeyPairSpec::EccNistP256).unwrap();
        let other = generate_key_pair(KeyPairSpec::EccNistP384).unwrap();
        let rsa = generate_key_pair(KeyPairSpec::Rsa2048).unwrap();
        for peer in [&other.public[..], &rsa.public[..], b"garbage", &[]] {
            assert_eq!(
                ecdh_shared_secret(EcdhCurve::P256, &a.private, peer),
                Err(KeyPairError::PeerPublicKey)
            );
        }
        // Our own key must be on the curve we were told.
        assert_eq!(
            ecdh_shared_secret(EcdhCurve::P384, &a.private, &other.public),
            Err(KeyPairError::PrivateKey)
        );
    }
}
