//! XAES-256-GCM (envelope version 2's block cipher): AES-256-GCM under a subkey derived
//! from a 192-bit random nonce, so one data key can seal far more blocks than the 2^32
//! that 96-bit random nonces allow. Built from RustCrypto's `cmac` and `aes` (the subkey
//! derivation) and the AES-256-GCM seam in `gcm.rs` (`aes-gcm`, or `ring` with the
//! `fast-aead` feature).

use zeroize::Zeroizing;

use super::gcm::{nonce_array, Gcm256};
use super::{random_fill, split_sealed, AeadKey, CryptoError, KEY_LEN, TAG_LEN};

/// Length of an XAES-256-GCM nonce in bytes (192 bits).
pub const XNONCE_LEN: usize = 24;
/// Bytes that [`XSealer`] adds to a plaintext: 24-byte nonce then 16-byte tag.
pub const XSEAL_OVERHEAD: usize = XNONCE_LEN + TAG_LEN;
/// The part of an XAES nonce that selects the derived subkey (the rest is the GCM nonce).
const XNONCE_KDF_LEN: usize = 12;

/// XAES-256-GCM as specified by C2SP (c2sp.org/XAES-256-GCM): every message gets a
/// random 192-bit nonce `N`; its first 96 bits select a subkey derived from the key
/// with NIST SP 800-108r1 counter-mode KDF over CMAC-AES-256
/// (`Kx = CMAC(K, 00 01 'X' 00 || N[..12]) || CMAC(K, 00 02 'X' 00 || N[..12])`), and the
/// message is AES-256-GCM under `Kx` with nonce `N[12..]`.
///
/// Misuse rule: nonces are random. A nonce repeats (same subkey and same GCM nonce) with
/// probability about q²/2^193 after q seals, so 2^80 seals under one key keep it below
/// 2^-33; counting conservatively with the KDF's PRP/PRF switching term (2q)²/2^129 as
/// well, 2^48 seals per key keep every term below 2^-31 (docs/FORMAT.md, "Bounds").
///
/// Costs two CMAC evaluations and one AES-GCM key setup per message more than
/// [`Sealer`] (about 0.2 µs each here, beside about 1 µs (ring) to 4 µs (aes-gcm) for
/// sealing a 4 KiB block); nothing is allocated per message (the derived key lives on
/// the stack and is zeroized, and so is the subkey's GCM state when it is dropped).
/// The subkey is new for every message (its nonce is random), so there is nothing to
/// cache beyond the CMAC key schedule, which is computed once here.
pub struct XSealer {
    /// CMAC-AES-256 keyed with the root key, cloned per derivation so that the AES key
    /// schedule is computed once.
    kdf: cmac::Cmac<aes::Aes256>,
}

impl XSealer {
    pub fn new(key: &impl AeadKey) -> Self {
        XSealer {
            kdf: <cmac::Cmac<aes::Aes256> as cmac::Mac>::new(key.key_bytes().into()),
        }
    }

    /// The AES-256-GCM instance of the subkey selected by `kdf_nonce` (`N[..12]`).
    fn subkey(&self, kdf_nonce: &[u8]) -> Gcm256 {
        use cmac::Mac as _;
        // SP 800-108r1 counter mode: [i]_2 (16-bit counter) || label "X" || 0x00 ||
        // context N[..12]; one 16-byte CMAC input per counter value, no length field
        // (as C2SP fixes it).
        let mut input = [0u8; 16];
        input[2] = b'X';
        input[4..].copy_from_slice(kdf_nonce);
        let mut derived = Zeroizing::new([0u8; KEY_LEN]);
        let mut mac = self.kdf.clone();
        for (counter, half) in (1u8..).zip(derived.chunks_exact_mut(16)) {
            input[1] = counter;
            mac.update(&input);
            half.copy_from_slice(&mac.finalize_reset().into_bytes());
        }
        Gcm256::new(&derived)
    }

    /// Appends `nonce || ciphertext || tag` of one message to `out`.
    fn seal_one(
        &self,
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if nonce.len() != XNONCE_LEN {
            return Err(CryptoError::Truncated);
        }
        let (kdf_nonce, gcm_nonce) = nonce.split_at(XNONCE_KDF_LEN);
        out.extend_from_slice(nonce);
        let at = out.len();
        out.extend_from_slice(plaintext);
        let sealed = out.get_mut(at..).ok_or(CryptoError::Truncated)?;
        let tag = self
            .subkey(kdf_nonce)
            .seal_in_place(nonce_array(gcm_nonce)?, aad, sealed)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Seals one message with a fresh random nonce into `out` (cleared first):
    /// `nonce (24) || ciphertext || tag (16)`.
    pub fn seal_into(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let mut nonce = [0u8; XNONCE_LEN];
        random_fill(&mut nonce)?;
        out.clear();
        out.reserve(plaintext.len() + XSEAL_OVERHEAD);
        self.seal_one(&nonce, aad, plaintext, out)
    }

    /// Like [`Sealer::seal_chunks_into`], with XAES-256-GCM: each chunk is appended to
    /// `out` as `nonce (24) || ciphertext || tag (16)`, all nonces drawn in one call.
    pub fn seal_chunks_into<A: AsRef<[u8]>>(
        &self,
        plaintext: &[u8],
        chunk: usize,
        aad: impl Fn(usize) -> A,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        super::seal_chunks_with(
            plaintext,
            chunk,
            XNONCE_LEN,
            XSEAL_OVERHEAD,
            out,
            |i, piece, nonce, out| self.seal_one(nonce, aad(i).as_ref(), piece, out),
        )
    }

    /// Opens one sealed message, appending the plaintext to `out`; on failure `out` is
    /// left as it was (no unauthenticated byte stays in it).
    pub fn open_append(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let (nonce, ct, tag) = split_sealed(sealed, XNONCE_LEN)?;
        let (kdf_nonce, gcm_nonce) = nonce.split_at(XNONCE_KDF_LEN);
        let at = out.len();
        out.extend_from_slice(ct);
        let res = match out.get_mut(at..) {
            Some(buf) => {
                self.subkey(kdf_nonce)
                    .open_in_place(nonce_array(gcm_nonce)?, aad, buf, tag)
            }
            None => Err(CryptoError::Truncated),
        };
        if res.is_err() {
            out.truncate(at);
        }
        res
    }

    /// Opens `sealed` (`nonce (24) || ciphertext || tag`) where it lies, without a
    /// copy: on success the plaintext is `sealed[XNONCE_LEN..sealed.len() - TAG_LEN]`.
    /// On failure that range holds no plaintext to rely on, and the caller must not
    /// return it.
    pub fn open_in_place(&self, aad: &[u8], sealed: &mut [u8]) -> Result<(), CryptoError> {
        if sealed.len() < XSEAL_OVERHEAD {
            return Err(CryptoError::Truncated);
        }
        let (nonce, rest) = sealed.split_at_mut(XNONCE_LEN);
        let (kdf_nonce, gcm_nonce) = nonce.split_at(XNONCE_KDF_LEN);
        let at = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(at);
        self.subkey(kdf_nonce).open_in_place(
            nonce_array(gcm_nonce)?,
            aad,
            ct,
            super::gcm::tag_array(tag)?,
        )
    }

    /// Opens into a caller buffer (cleared first).
    pub fn open_into(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        out.clear();
        self.open_append(aad, sealed, out)
    }

    /// Opens what [`XSealer::seal_into`] produced; fails unless key, aad and every byte
    /// match.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
        self.open_append(aad, sealed, &mut out)?;
        Ok(out)
    }
}

impl std::fmt::Debug for XSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XSealer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealingKey;

    #[test]
    fn xaes_matches_the_published_test_vectors() {
        let cases: [(u8, &[u8], &str); 2] = [
            (
                1,
                b"",
                "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            ),
            (
                3,
                b"c2sp.org/XAES-256-GCM",
                "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            ),
        ];
        for (key_byte, aad, expected) in cases {
            let x = XSealer::new(&SealingKey::from_bytes([key_byte; 32]));
            let mut sealed = b"ABCDEFGHIJKLMNOPQRSTUVWX".to_vec();
            sealed.extend_from_slice(&hex::decode(expected).unwrap());
            assert_eq!(&x.open(aad, &sealed).unwrap()[..], b"XAES-256-GCM");
            // Deterministic given the nonce: seal through the same path as every
            // block (whichever AES-GCM backend is built) and compare byte for byte.
            let mut buf = Vec::new();
            x.seal_one(b"ABCDEFGHIJKLMNOPQRSTUVWX", aad, b"XAES-256-GCM", &mut buf)
                .unwrap();
            assert_eq!(&buf[..XNONCE_LEN], b"ABCDEFGHIJKLMNOPQRSTUVWX");
            assert_eq!(hex::encode(&buf[XNONCE_LEN..]), expected);
        }
    }

    #[test]
    fn xaes_round_trips_rejects_any_change_and_chunks_like_single_seals() {
        let x = XSealer::new(&SealingKey::generate().unwrap());
        let mut sealed = Vec::new();
        x.seal_into(b"aad", b"hello", &mut sealed).unwrap();
        assert_eq!(sealed.len(), 5 + XSEAL_OVERHEAD);
        assert_eq!(&x.open(b"aad", &sealed).unwrap()[..], b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(x.open(b"aad", &bad), Err(CryptoError::Authentication));
        }
        assert_eq!(x.open(b"aaD", &sealed), Err(CryptoError::Authentication));
        assert_eq!(x.open(b"aad", &sealed[..39]), Err(CryptoError::Truncated));
        let other = XSealer::new(&SealingKey::generate().unwrap());
        assert_eq!(
            other.open(b"aad", &sealed),
            Err(CryptoError::Authentication)
        );

        let plain: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut chunks = vec![9u8];
        x.seal_chunks_into(&plain, 4096, |i| [i as u8], &mut chunks)
            .unwrap();
        let pieces: Vec<&[u8]> = chunks[1..].chunks(4096 + XSEAL_OVERHEAD).collect();
        assert_eq!(pieces.len(), 3);
        let mut out = vec![1u8];
        for (i, p) in pieces.iter().enumerate() {
            x.open_append(&[i as u8], p, &mut out).unwrap();
        }
        assert_eq!(out[1..], plain[..]);
        let before = out.len();
        assert!(x.open_append(&[0], pieces[1], &mut out).is_err());
        assert_eq!(out.len(), before, "failed opens leave nothing behind");
        x.seal_into(b"", b"", &mut sealed).unwrap();
        assert_eq!(sealed.len(), XSEAL_OVERHEAD);
        assert!(x.open(b"", &sealed).unwrap().is_empty());
    }
}
