//! The AEAD sealer behind the reasoning state the proxy hands to clients (Responses
//! `encrypted_content`, other providers' state in Anthropic and Gemini signature slots):
//! ChaCha20-Poly1305 with a random 96-bit nonce per blob, keyed by the 32-byte key kept in the
//! data directory (`responses.key`). Sealed blobs are `nonce || ciphertext || tag`.

use llm_proxy_protocol::openai_responses::Sealer;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of a sealing key.
pub const KEY_LEN: usize = 32;

/// Binds sealed blobs to their purpose: a blob sealed for anything else does not open here.
const AAD: &[u8] = b"llm-proxy responses reasoning v1";

/// Seals and opens reasoning state with one key.
pub struct AeadSealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for AeadSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadSealer")
    }
}

impl AeadSealer {
    /// A sealer with `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Result<Self, String> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| "invalid sealing key".to_owned())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A sealer with a fresh random key that lives only in this process (tests, in-process
    /// servers without a data directory).
    pub fn ephemeral() -> Result<Self, String> {
        Self::new(&random_key()?)
    }
}

/// 32 random bytes from the operating system.
pub fn random_key() -> Result<[u8; KEY_LEN], String> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the operating system gave no random bytes".to_owned())?;
    Ok(key)
}

impl Sealer for AeadSealer {
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_fresh_nonce_each_time() {
        let sealer = AeadSealer::new(&[7; KEY_LEN]).unwrap();
        let a = sealer.seal(b"{\"signature\":\"s\"}").unwrap();
        let b = sealer.seal(b"{\"signature\":\"s\"}").unwrap();
        assert_ne!(a, b, "nonces differ");
        assert!(!String::from_utf8_lossy(&a).contains("signature"));
        assert_eq!(sealer.open(&a).unwrap(), b"{\"signature\":\"s\"}");
        assert_eq!(sealer.open(&b).unwrap(), b"{\"signature\":\"s\"}");
    }

    #[test]
    fn tampered_truncated_or_foreign_blobs_do_not_open() {
        let sealer = AeadSealer::new(&[7; KEY_LEN]).unwrap();
        let sealed = sealer.seal(b"state").unwrap();
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(sealer.open(&tampered), None, "byte {i} flipped");
        }
        assert_eq!(sealer.open(&sealed[..NONCE_LEN + 3]), None);
        assert_eq!(sealer.open(b"short"), None);
        let other = AeadSealer::new(&[8; KEY_LEN]).unwrap();
        assert_eq!(other.open(&sealed), None, "another key");
        let ephemeral = AeadSealer::ephemeral().unwrap();
        assert_eq!(ephemeral.open(&sealed), None);
    }
}
