//! HMAC keys as AWS KMS defines them (KeySpec HMAC_224/256/384/512, KeyUsage
//! GENERATE_VERIFY_MAC): the algorithm names, key lengths, and MAC generation and
//! constant-time verification (RFC 2104 over SHA-2, the `hmac` crate).
//!
//! Never compares a MAC with `==`: every check goes through `Mac::verify_slice`.

use hmac::{Hmac, Mac};
use sha2::{Sha224, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::{random_fill, CryptoError};

/// An HMAC algorithm, named as AWS's `MacAlgorithmSpec`. Each HMAC key spec allows
/// exactly one (HMAC_256 keys compute HMAC_SHA_256, and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl MacAlgorithm {
    /// Every algorithm, in AWS's order.
    pub const ALL: [MacAlgorithm; 4] = [
        MacAlgorithm::HmacSha224,
        MacAlgorithm::HmacSha256,
        MacAlgorithm::HmacSha384,
        MacAlgorithm::HmacSha512,
    ];

    /// The algorithm AWS names `name` (`HMAC_SHA_256`, ...), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// AWS's name of the algorithm (`MacAlgorithmSpec`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha224 => "HMAC_SHA_224",
            Self::HmacSha256 => "HMAC_SHA_256",
            Self::HmacSha384 => "HMAC_SHA_384",
            Self::HmacSha512 => "HMAC_SHA_512",
        }
    }

    /// The algorithm of an HMAC key spec (`HMAC_224` → `HMAC_SHA_224`), if `spec` is one.
    pub fn for_key_spec(spec: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.key_spec() == spec)
    }

    /// The key spec whose keys compute this algorithm (`HMAC_SHA_256` → `HMAC_256`).
    pub fn key_spec(self) -> &'static str {
        match self {
            Self::HmacSha224 => "HMAC_224",
            Self::HmacSha256 => "HMAC_256",
            Self::HmacSha384 => "HMAC_384",
            Self::HmacSha512 => "HMAC_512",
        }
    }

    /// Length of a generated key in bytes: AWS's HMAC key specs name the key length in
    /// bits, equal to the hash's output length.
    pub fn key_len(self) -> usize {
        self.mac_len()
    }

    /// Length of the MAC in bytes (the hash's output length; AWS does not truncate).
    pub fn mac_len(self) -> usize {
        match self {
            Self::HmacSha224 => 28,
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }
}

/// The secret of an HMAC key (any length the algorithm accepts; generated keys have
/// [`MacAlgorithm::key_len`] bytes). Not `Clone`; `Debug` prints only the name.
pub struct MacKey(Zeroizing<Vec<u8>>);

impl MacKey {
    /// Wraps existing key bytes (opened from the store).
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// A fresh key for `alg` from the operating system's CSPRNG.
    pub fn generate(alg: MacAlgorithm) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; alg.key_len()]);
        random_fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The raw key bytes. Callers must not copy them into non-zeroizing storage.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// Runs `$body` with `$mac` bound to a keyed HMAC of `$alg`'s hash. HMAC accepts keys
/// of any length (RFC 2104 hashes long keys), so keying cannot fail.
macro_rules! with_hmac {
    ($alg:expr, $key:expr, |$mac:ident| $body:expr) => {
        match $alg {
            MacAlgorithm::HmacSha224 => {
                #[allow(clippy::expect_used)]
                let $mac = <Hmac<Sha224> as Mac>::new_from_slice($key)
                    .expect("HMAC accepts keys of any length");
                $body
            }
            MacAlgorithm::HmacSha256 => {
                #[allow(clippy::expect_used)]
                let $mac = <Hmac<Sha256> as Mac>::new_from_slice($key)
                    .expect("HMAC accepts keys of any length");
                $body
            }
            MacAlgorithm::HmacSha384 => {
                #[allow(clippy::expect_used)]
                let $mac = <Hmac<Sha384> as Mac>::new_from_slice($key)
                    .expect("HMAC accepts keys of any length");
                $body
            }
            MacAlgorithm::HmacSha512 => {
                #[allow(clippy::expect_used)]
                let $mac = <Hmac<Sha512> as Mac>::new_from_slice($key)
                    .expect("HMAC accepts keys of any length");
                $body
            }
        }
    };
}

/// The HMAC of `message` under `key` with `alg` (full length, as GenerateMac returns it).
pub fn generate_mac(alg: MacAlgorithm, key: &MacKey, message: &[u8]) -> Vec<u8> {
    with_hmac!(alg, key.expose(), |m| {
        let mut m = m;
        m.update(message);
        m.finalize().into_bytes().to_vec()
    })
}

/// Whether `mac` is the HMAC of `message` under `key` with `alg`, compared in constant
/// time. A MAC of the wrong length is simply invalid (VerifyMac answers
/// KMSInvalidMacException for it, as for any other mismatch).
pub fn verify_mac(alg: MacAlgorithm, key: &MacKey, message: &[u8], mac: &[u8]) -> bool {
    if mac.len() != alg.mac_len() {
        return false;
    }
    with_hmac!(alg, key.expose(), |m| {
        let mut m = m;
        m.update(message);
        m.verify_slice(mac).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_key: &str) -> MacKey {
        MacKey::from_bytes(Zeroizing::new(hex::decode(hex_key).unwrap()))
    }

    /// RFC 4231 test cases 1, 2, 4 and 6 (the untruncated ones that cover short keys,
    /// a key shorter than the block, and a key longer than the block).
    #[test]
    fn rfc4231_vectors() {
        let long_key = "aa".repeat(131);
        let cases: [(&str, Vec<u8>, [&str; 4]); 4] = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                b"Hi There".to_vec(),
                [
                    "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
                    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                    "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
                    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                ],
            ),
            (
                "4a656665",
                b"what do ya want for nothing?".to_vec(),
                [
                    "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                ],
            ),
            (
                "0102030405060708090a0b0c0d0e0f10111213141516171819",
                vec![0xcd; 50],
                [
                    "6c11506874013cac6a2abc1bb382627cec6a90d86efc012de7afec5a",
                    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                    "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
                    "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
                ],
            ),
            (
                long_key.as_str(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                [
                    "95e9a0db962095adaebe9b2d6f0dbce2d499f112f2d2b7273fa6870e",
                    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                    "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
                    "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
                ],
            ),
        ];
        for (k, msg, expected) in cases {
            let k = key(k);
            for (alg, want) in MacAlgorithm::ALL.into_iter().zip(expected) {
                let mac = generate_mac(alg, &k, &msg);
                assert_eq!(hex::encode(&mac), want, "{}", alg.name());
                assert!(verify_mac(alg, &k, &msg, &mac));
            }
        }
    }

    #[test]
    fn verify_rejects_any_change_and_wrong_lengths() {
        for alg in MacAlgorithm::ALL {
            let k = MacKey::generate(alg).unwrap();
            assert_eq!(k.expose().len(), alg.key_len());
            let mac = generate_mac(alg, &k, b"message");
            assert_eq!(mac.len(), alg.mac_len());
            assert!(!verify_mac(alg, &k, b"messagE", &mac));
            for i in 0..mac.len() {
                let mut bad = mac.clone();
                bad[i] ^= 0x01;
                assert!(!verify_mac(alg, &k, b"message", &bad));
            }
            assert!(!verify_mac(alg, &k, b"message", &mac[..mac.len() - 1]));
            assert!(!verify_mac(alg, &k, b"message", &[]));
            let other = MacKey::generate(alg).unwrap();
            assert!(!verify_mac(alg, &other, b"message", &mac));
        }
    }

    #[test]
    fn names_round_trip() {
        for alg in MacAlgorithm::ALL {
            assert_eq!(MacAlgorithm::parse(alg.name()), Some(alg));
            assert_eq!(MacAlgorithm::for_key_spec(alg.key_spec()), Some(alg));
        }
        assert_eq!(MacAlgorithm::parse("HMAC_SHA_1"), None);
        assert_eq!(MacAlgorithm::for_key_spec("SYMMETRIC_DEFAULT"), None);
        assert_eq!(
            format!("{:?}", MacKey::generate(MacAlgorithm::HmacSha256).unwrap()),
            "MacKey(..)"
        );
    }
}
