//! Secrets: generating tokens and passwords, hashing them with Argon2id and
//! checking a presented secret against a stored hash.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`),
//! so each carries its own parameters and 16-byte random salt: changing
//! [`params`] later affects new hashes only, and old ones still verify.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;

/// Bytes of randomness in a device token (256 bits: not guessable, so a
/// token needs no rate limiting of its own).
const TOKEN_BYTES: usize = 32;
/// Length of a generated owner password.
const PASSWORD_CHARS: usize = 24;
/// Alphabet of generated passwords: letters and digits only, so a password
/// survives copying from a terminal and quoting in a shell (~143 bits).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Argon2id parameters for new hashes: the `argon2` crate's defaults, which
/// are OWASP's recommendation — m = 19456 KiB (19 MiB), t = 2 passes,
/// p = 1 lane; about 20–50 ms per hash on a current x86-64 core in release.
#[cfg(not(test))]
fn params() -> Params {
    Params::default()
}

/// The unit tests hash dozens of secrets in a debug build, where the
/// default parameters take a second each; the cheapest valid set keeps the
/// suite fast. Verification reads the parameters from each hash, so nothing
/// else differs.
#[cfg(test)]
fn params() -> Params {
    Params::new(Params::MIN_M_COST, 1, 1, None).expect("the minimum Argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Hashes a secret with Argon2id and a fresh random salt (PHC string),
/// within the process-wide bound on concurrent hashing (`checks.rs`).
pub(crate) fn hash(secret: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    crate::checks::hashing(|| {
        argon2()
            .hash_password(secret, &salt)
            .expect("Argon2 hashes any secret shorter than 4 GiB with valid parameters")
            .to_string()
    })
}

/// True when `secret` matches the PHC string `phc` (with the parameters
/// stored in it). Takes tens of milliseconds by design.
pub(crate) fn verify(phc: &str, secret: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(secret, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Spends what [`verify`] of a wrong secret spends (Argon2id with the
/// current parameters, against a hash made once per process) and finds
/// nothing: a refusal of a name that does not exist then takes as long as
/// that of a wrong password. The first call also makes the hash.
pub(crate) fn decoy_verify(secret: &[u8]) {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DECOY.get_or_init(|| hash(b"no account has this secret"));
    let _ = verify(phc, secret);
}

/// Checks that a stored hash is an Argon2id PHC string, so a hand-edited
/// file cannot downgrade a secret to a weaker algorithm unnoticed.
pub(crate) fn check_phc(phc: &str) -> std::result::Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!("hash algorithm {} is not argon2id", hash.algorithm));
    }
    Params::try_from(&hash).map_err(|e| format!("bad Argon2 parameters ({e})"))?;
    if hash.hash.is_none() {
        return Err("hash string has no hash".to_owned());
    }
    Ok(())
}

/// A new device token: 32 bytes from the OS CSPRNG, base64url without
/// padding (43 characters).
pub(crate) fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new device id: `d` and 12 characters of lowercase RFC 4648 base32
/// (60 random bits), a valid account name and topic level that nobody has
/// to invent. Collisions are checked by the caller all the same.
pub(crate) fn generate_device_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    // 32 divides 256: masking keeps every character equally likely.
    std::iter::once('d')
        .chain(
            bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)])),
        )
        .collect()
}

/// A new owner password: 24 letters and digits from the OS CSPRNG.
pub(crate) fn generate_password() -> String {
    // Rejection sampling keeps every character equally likely: bytes at or
    // above the largest multiple of the alphabet size are drawn again.
    let limit = 256 - 256 % PASSWORD_ALPHABET.len();
    let mut password = String::with_capacity(PASSWORD_CHARS);
    let mut buf = [0u8; 64];
    while password.len() < PASSWORD_CHARS {
        OsRng.fill_bytes(&mut buf);
        for &b in buf.iter().filter(|&&b| usize::from(b) < limit) {
            if password.len() == PASSWORD_CHARS {
                break;
            }
            password.push(char::from(
                PASSWORD_ALPHABET[usize::from(b) % PASSWORD_ALPHABET.len()],
            ));
        }
    }
    password
}
