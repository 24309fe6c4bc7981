//! The one AES-256-GCM seam: every seal and open in kmsfs ([`super::Sealer`],
//! [`super::XSealer`], so file blocks, names' sidecars, xattrs, symlinks and the key
//! store) runs through [`Gcm256`], and only this file knows which implementation is
//! underneath. The default is RustCrypto's `aes-gcm` (0.11: GHASH by `polyval` 0.7, four
//! blocks per reduction with CLMUL detected at run time). The cargo feature `fast-aead`
//! swaps in `ring`'s AES-GCM (assembly from BoringSSL: AES-NI/VAES with an aggregated
//! CLMUL GHASH), which seals 4 KiB blocks several times faster on x86-64
//! (docs/PERFORMANCE.md, "Round 5"). Both compute the same function (NIST SP 800-38D,
//! 96-bit nonce, 128-bit tag): the same inputs give the same bytes, which the tests
//! below check against each other and against published vectors.
//!
//! Never draws nonces: callers pass them in (random, see their misuse rules).

use super::{CryptoError, KEY_LEN, NONCE_LEN, TAG_LEN};

/// AES-256-GCM under one key, with its key schedule (and GHASH key) computed once.
pub(crate) struct Gcm256(backend::Key);

impl Gcm256 {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(backend::Key::new(key))
    }

    /// Encrypts `buf` in place and returns the tag over `aad` and the ciphertext.
    /// Fails only for a message longer than GCM allows (about 64 GiB).
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        self.0.seal_in_place(nonce, aad, buf)
    }

    /// Checks `tag` and decrypts `buf` in place. On [`CryptoError::Authentication`]
    /// `buf` holds no plaintext the caller may use: it must be discarded.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.0.open_in_place(nonce, aad, buf, tag)
    }

    /// Which implementation this build uses ("aes-gcm" or "ring"), for reports.
    pub fn backend_name() -> &'static str {
        backend::NAME
    }
}

/// `nonce` as the fixed-size array the backends take; [`CryptoError::Truncated`] unless
/// it is 12 bytes long.
pub(crate) fn nonce_array(nonce: &[u8]) -> Result<&[u8; NONCE_LEN], CryptoError> {
    nonce.try_into().map_err(|_| CryptoError::Truncated)
}

/// `tag` as an array; [`CryptoError::Truncated`] unless it is 16 bytes long.
pub(crate) fn tag_array(tag: &[u8]) -> Result<&[u8; TAG_LEN], CryptoError> {
    tag.try_into().map_err(|_| CryptoError::Truncated)
}

#[cfg(not(feature = "fast-aead"))]
mod backend {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes256Gcm, Nonce, Tag};

    use super::super::{CryptoError, KEY_LEN, NONCE_LEN, TAG_LEN};

    pub(super) const NAME: &str = "aes-gcm";

    /// `Aes256Gcm` wipes its round keys and GHASH key on drop (the crates' `zeroize`
    /// features, Cargo.toml).
    pub(super) struct Key(Aes256Gcm);

    impl Key {
        pub(super) fn new(key: &[u8; KEY_LEN]) -> Self {
            Self(Aes256Gcm::new(key.into()))
        }

        pub(super) fn seal_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
        ) -> Result<[u8; TAG_LEN], CryptoError> {
            let nonce: &Nonce<_> = nonce.into();
            self.0
                .encrypt_inout_detached(nonce, aad, buf.into())
                .map(Into::into)
                .map_err(|_| CryptoError::Authentication)
        }

        pub(super) fn open_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), CryptoError> {
            let nonce: &Nonce<_> = nonce.into();
            let tag: &Tag = tag.into();
            self.0
                .decrypt_inout_detached(nonce, aad, buf.into(), tag)
                .map_err(|_| CryptoError::Authentication)
        }
    }
}

#[cfg(feature = "fast-aead")]
mod backend {
    use std::mem::ManuallyDrop;

    use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

    use super::super::{CryptoError, KEY_LEN, NONCE_LEN, TAG_LEN};

    pub(super) const NAME: &str = "ring";

    /// ring's key is opaque (round keys and GHASH powers, stored inline: no heap
    /// pointer) and does not wipe itself on drop, so [`Drop`] below overwrites its
    /// bytes, as the RustCrypto ciphers' `zeroize` features do for theirs.
    pub(super) struct Key(ManuallyDrop<LessSafeKey>);

    impl Key {
        pub(super) fn new(key: &[u8; KEY_LEN]) -> Self {
            // ring refuses only a key of the wrong length for the algorithm, and the
            // type fixes it at 32 bytes.
            #[allow(clippy::expect_used)]
            let unbound =
                UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key");
            Self(ManuallyDrop::new(LessSafeKey::new(unbound)))
        }

        pub(super) fn seal_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
        ) -> Result<[u8; TAG_LEN], CryptoError> {
            let tag = self
                .0
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    buf,
                )
                .map_err(|_| CryptoError::Authentication)?;
            tag.as_ref()
                .try_into()
                .map_err(|_| CryptoError::Authentication)
        }

        pub(super) fn open_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), CryptoError> {
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    Tag::from(*tag),
                    buf,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| CryptoError::Authentication)
        }
    }

    impl Drop for Key {
        fn drop(&mut self) {
            let key: *mut LessSafeKey = &mut *self.0;
            // SAFETY: `key` points to the `LessSafeKey` this value owns exclusively, a
            // flat value (arrays of round keys and GHASH powers, an enum tag, and a
            // `&'static` algorithm whose pointee is not touched) with no `Drop` of its
            // own and no heap data. After the wipe nothing reads it: this is its last
            // use, and `ManuallyDrop` runs no drop glue over the zeroed bytes.
            unsafe { zeroize::zeroize_flat_type(key) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AES-256 cases of the GCM specification's test vectors (McGrew and Viega, "The
    /// Galois/Counter Mode of Operation", test cases 13 to 16), as NIST's CAVP reuses them.
    /// (key, nonce, aad, plaintext, ciphertext, tag), hex.
    const SPEC_VECTORS: [(&str, &str, &str, &str, &str, &str); 4] = [
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000",
            "",
            "",
            "",
            "530f8afbc74536b9a963b4f1c4cb738b",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000",
            "",
            "00000000000000000000000000000000",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            "b094dac5d93471bdec1a502270e3cc6c",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn the_backend_matches_the_gcm_specification_vectors() {
        for (i, (k, n, a, p, c, t)) in SPEC_VECTORS.iter().enumerate() {
            let key: [u8; 32] = unhex(k).try_into().unwrap();
            let nonce: [u8; 12] = unhex(n).try_into().unwrap();
            let (aad, plain) = (unhex(a), unhex(p));
            let gcm = Gcm256::new(&key);
            let mut buf = plain.clone();
            let tag = gcm.seal_in_place(&nonce, &aad, &mut buf).unwrap();
            assert_eq!(hex::encode(&buf), *c, "case {i} ciphertext");
            assert_eq!(hex::encode(tag), *t, "case {i} tag");
            gcm.open_in_place(&nonce, &aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, plain, "case {i} opens");
        }
    }

    #[test]
    fn the_backend_rejects_any_changed_byte_of_tag_ciphertext_nonce_or_aad() {
        let gcm = Gcm256::new(&[9; 32]);
        let nonce = [3u8; 12];
        let mut ct = b"seventeen bytes!!".to_vec();
        let tag = gcm.seal_in_place(&nonce, b"aad", &mut ct).unwrap();
        for i in 0..TAG_LEN {
            let mut bad = tag;
            bad[i] ^= 0x01;
            let mut buf = ct.clone();
            assert_eq!(
                gcm.open_in_place(&nonce, b"aad", &mut buf, &bad),
                Err(CryptoError::Authentication)
            );
        }
        for i in 0..ct.len() {
            let mut buf = ct.clone();
            buf[i] ^= 0x80;
            assert_eq!(
                gcm.open_in_place(&nonce, b"aad", &mut buf, &tag),
                Err(CryptoError::Authentication)
            );
        }
        let mut other = nonce;
        other[11] ^= 1;
        let mut buf = ct.clone();
        assert!(gcm.open_in_place(&other, b"aad", &mut buf, &tag).is_err());
        let mut buf = ct.clone();
        assert!(gcm.open_in_place(&nonce, b"aaD", &mut buf, &tag).is_err());
        let mut buf = ct.clone();
        assert!(Gcm256::new(&[8; 32])
            .open_in_place(&nonce, b"aad", &mut buf, &tag)
            .is_err());
    }

    /// Runs only with `--features fast-aead` (which is when there are two): ring and
    /// aes-gcm give byte-identical ciphertexts and tags for the same key, nonce, aad
    /// and plaintext over every length class a block or record takes, and each opens
    /// what the other sealed.
    #[cfg(feature = "fast-aead")]
    #[test]
    fn ring_and_aes_gcm_produce_identical_bytes_and_open_each_other() {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let mut seed = [0u8; 32];
        crate::crypto::random_fill(&mut seed).unwrap();
        for (round, len) in [0usize, 1, 15, 16, 17, 255, 4095, 4096, 65_536 + 7]
            .into_iter()
            .enumerate()
        {
            let mut key = seed;
            key[0] ^= round as u8;
            let nonce = [round as u8 ^ 0x5a; 12];
            let aad = vec![round as u8; round * 5];
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + round) as u8).collect();

            let ours = Gcm256::new(&key);
            let mut ring_ct = plain.clone();
            let ring_tag = ours.seal_in_place(&nonce, &aad, &mut ring_ct).unwrap();

            let theirs = aes_gcm::Aes256Gcm::new((&key).into());
            let mut rc_ct = plain.clone();
            let rc_tag = theirs
                .encrypt_inout_detached((&nonce).into(), &aad, rc_ct.as_mut_slice().into())
                .unwrap();
            assert_eq!(ring_ct, rc_ct, "len {len}: same ciphertext");
            assert_eq!(ring_tag[..], rc_tag[..], "len {len}: same tag");

            let mut opened = ring_ct.clone();
            theirs
                .decrypt_inout_detached(
                    (&nonce).into(),
                    &aad,
                    opened.as_mut_slice().into(),
                    (&ring_tag).into(),
                )
                .unwrap();
            assert_eq!(opened, plain, "aes-gcm opens ring's");
            let mut opened = rc_ct.clone();
            ours.open_in_place(&nonce, &aad, &mut opened, &rc_tag.into())
                .unwrap();
            assert_eq!(opened, plain, "ring opens aes-gcm's");
        }
    }

    #[test]
    fn the_backend_name_says_which_feature_is_on() {
        let want = if cfg!(feature = "fast-aead") {
            "ring"
        } else {
            "aes-gcm"
        };
        assert_eq!(Gcm256::backend_name(), want);
    }
}
