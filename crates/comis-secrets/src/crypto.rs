//! The cryptographic core of the vault (format `comis-secrets-v1`).
//!
//! Defends: confidentiality and integrity of each value, and the binding of a value to its name.
//!
//! Guarantees:
//! - every encryption draws a fresh 32-byte salt and 12-byte nonce from the OS, derives its own
//!   AES-256 key with HKDF-SHA256(ikm = master key, salt, info = `comis-secrets-v1`), and seals
//!   with AES-256-GCM (16-byte tag); a key is therefore used for exactly one message, so nonce
//!   reuse cannot happen even across billions of writes;
//! - the associated data names the purpose and, for entries, the entry name: a ciphertext moved
//!   to another name, or the key check moved into an entry, fails authentication;
//! - the vault-wide MAC is HMAC-SHA256 under its own HKDF-derived key (distinct `info`), and is
//!   compared in constant time;
//! - derived keys and decrypted plaintexts are zeroized when dropped.
//!
//! Does not: hide the length of values (GCM ciphertext length = plaintext length + 16).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::SecretsError;
use crate::master_key::MasterKey;

/// The format tag, also the HKDF `info` of entry keys (as in the original comis).
pub(crate) const FORMAT: &str = "comis-secrets-v1";
pub(crate) const SALT_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const MAC_LEN: usize = 32;
const MAC_INFO: &[u8] = b"comis-secrets-v1/vault-mac";

/// One sealed message: the salt of its key, its nonce, and ciphertext with the GCM tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Associated data of an entry: binds the ciphertext to its name.
pub(crate) fn entry_aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FORMAT.len() + 7 + name.len());
    aad.extend_from_slice(FORMAT.as_bytes());
    aad.extend_from_slice(b"\0entry\0");
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Associated data of the key check value.
pub(crate) const KEY_CHECK_AAD: &[u8] = b"comis-secrets-v1\0key-check";
/// The plaintext of the key check value.
pub(crate) const KEY_CHECK_PLAINTEXT: &[u8] = b"comis-secrets-key-check-v1";

/// `N` bytes from the operating system's random source.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], SecretsError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| SecretsError::Random(e.to_string()))?;
    Ok(out)
}

fn derive(
    master: &MasterKey,
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, SecretsError> {
    let hk = Hkdf::<Sha256>::new(Some(salt), master.bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so this never fails in practice;
    // if it did, we refuse instead of continuing with an unset key.
    hk.expand(info, okm.as_mut())
        .map_err(|_| SecretsError::Crypto {
            what: "key derivation".into(),
        })?;
    Ok(okm)
}

/// Encrypts `plaintext` under a fresh key derived from `master`, bound to `aad`.
pub(crate) fn seal(
    master: &MasterKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SecretsError> {
    let salt = random::<SALT_LEN>()?;
    let nonce = random::<NONCE_LEN>()?;
    let key = derive(master, &salt, FORMAT.as_bytes())?;
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SecretsError::Crypto {
            what: String::from_utf8_lossy(aad).replace('\0', "/"),
        })?;
    Ok(Sealed {
        salt,
        nonce,
        ciphertext,
    })
}

/// Decrypts `sealed`; `None` when authentication fails (wrong key, wrong name, altered bytes).
pub(crate) fn open(master: &MasterKey, aad: &[u8], sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    let key = derive(master, &sealed.salt, FORMAT.as_bytes()).ok()?;
    let cipher = Aes256Gcm::new(key.as_ref().into());
    cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// HMAC-SHA256 of `data` under the vault MAC key derived from `master` and `salt`.
pub(crate) fn mac(
    master: &MasterKey,
    salt: &[u8],
    data: &[u8],
) -> Result<[u8; MAC_LEN], SecretsError> {
    let key = derive(master, salt, MAC_INFO)?;
    // HMAC accepts keys of any length, so this never fails in practice.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).map_err(|_| SecretsError::Crypto {
            what: "vault MAC".into(),
        })?;
    m.update(data);
    Ok(m.finalize().into_bytes().into())
}

/// Constant-time verification of a vault MAC.
pub(crate) fn mac_verify(master: &MasterKey, salt: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Ok(key) = derive(master, salt, MAC_INFO) else {
        return false;
    };
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()) else {
        return false;
    };
    m.update(data);
    m.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_fresh_randomness() {
        let k = key(1);
        let a = seal(&k, &entry_aad("X"), b"hello").unwrap();
        let b = seal(&k, &entry_aad("X"), b"hello").unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(a.ciphertext.len(), 5 + TAG_LEN);
        assert_eq!(&open(&k, &entry_aad("X"), &a).unwrap()[..], b"hello");
    }

    #[test]
    fn wrong_key_name_or_bytes_fail() {
        let k = key(1);
        let s = seal(&k, &entry_aad("X"), b"hello").unwrap();
        assert!(open(&key(2), &entry_aad("X"), &s).is_none());
        assert!(open(&k, &entry_aad("Y"), &s).is_none());
        assert!(open(&k, KEY_CHECK_AAD, &s).is_none());
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 1;
            assert!(open(&k, &entry_aad("X"), &t).is_none());
        }
        let mut t = s.clone();
        t.salt[0] ^= 1;
        assert!(open(&k, &entry_aad("X"), &t).is_none());
        let mut t = s;
        t.nonce[0] ^= 1;
        assert!(open(&k, &entry_aad("X"), &t).is_none());
    }

    #[test]
    fn mac_verifies_only_same_key_salt_data() {
        let k = key(3);
        let t = mac(&k, b"salt", b"data").unwrap();
        assert!(mac_verify(&k, b"salt", b"data", &t));
        assert!(!mac_verify(&key(4), b"salt", b"data", &t));
        assert!(!mac_verify(&k, b"salt2", b"data", &t));
        assert!(!mac_verify(&k, b"salt", b"datb", &t));
        assert!(!mac_verify(&k, b"salt", b"data", &t[..31]));
    }
}
