//! Turning secrets into what is kept: HA1 for SIP digest, argon2id for the portal password.
//! Hashing is the RustCrypto crates' (`md-5`, `sha2`, `argon2`); only the formatting is ours.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::DigestAlgorithm;

/// A portal password that could not be hashed (argon2 refuses it, e.g. absurdly long).
#[derive(Debug, thiserror::Error)]
#[error("the password could not be hashed: {0}")]
pub struct SecretError(String);

/// `H(data)` in lowercase hex for a digest algorithm (RFC 7616 §3.4.1).
pub fn digest_hex(algorithm: DigestAlgorithm, data: &[u8]) -> String {
    match algorithm {
        DigestAlgorithm::Md5 => hex(&Md5::digest(data)),
        DigestAlgorithm::Sha256 => hex(&Sha256::digest(data)),
    }
}

/// HA1 = `H(username:realm:secret)` (RFC 7616 §3.4.2), what the store keeps instead of the
/// SIP secret.
pub fn ha1(algorithm: DigestAlgorithm, username: &str, realm: &str, secret: &str) -> String {
    digest_hex(algorithm, format!("{username}:{realm}:{secret}").as_bytes())
}

/// The portal password as an argon2id PHC string (`$argon2id$v=19$...`) with a random salt.
pub fn hash_portal_password(password: &str) -> Result<String, SecretError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| SecretError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretError(e.to_string()))
}

/// True when `password` matches a stored argon2id PHC string; a malformed hash never matches.
pub fn verify_portal_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_of_the_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa, "testrealm@host.com", "Circle Of Life".
        assert_eq!(
            ha1(
                DigestAlgorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn sha256_is_lowercase_hex_of_64_digits() {
        let h = ha1(DigestAlgorithm::Sha256, "1001", "starcode", "s3cret");
        assert_eq!(h.len(), 64);
        assert!(h
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // sha256("") is the well-known e3b0c442...
        assert_eq!(
            digest_hex(DigestAlgorithm::Sha256, b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn portal_passwords_are_argon2id_salted_and_verified() {
        let a = hash_portal_password("correct horse").unwrap();
        let b = hash_portal_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a random salt each time");
        assert!(verify_portal_password(&a, "correct horse"));
        assert!(!verify_portal_password(&a, "wrong"));
        assert!(!verify_portal_password("not a hash", "correct horse"));
    }
}
