//! Consent receipts (Kantara Initiative Consent Receipt Specification
//! v1.1) signed by the installation as a JWS (RFC 7515, compact
//! serialisation, `alg` EdDSA with Ed25519, RFC 8037), and the public key
//! as a JWKS to verify them with.
//!
//! The installation's key is a 32-byte Ed25519 seed: generated once
//! ([`SigningKey::generate`]) and kept by the caller (the store keeps it, so
//! every node of a cluster signs with the same key; docs/consent.md). The
//! seed never leaves this type: its `Debug` prints only the key id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

/// The `version` of every receipt: Kantara CR v1.1.
pub const VERSION: &str = "KI-CR-v1.1.0";

/// The installation's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: [u8; 32],
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

/// Why a receipt did not verify, or a key could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the JWS header is not EdDSA with this installation's key")]
    WrongHeader,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the payload is not a consent receipt")]
    NotAReceipt,
    #[error("no random bytes from the system")]
    Random,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, Error> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Error::Random)?;
        Ok(SigningKey::from_seed(seed))
    }

    /// The key of a stored seed.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed");
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        // The key's id is its thumbprint's first 16 bytes: stable across
        // nodes and restarts, since it comes from the key alone.
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        SigningKey { pair, seed, kid }
    }

    /// The seed, for the store to keep. Never log it.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as a JSON Web Key Set (RFC 7517, OKP per RFC 8037).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(self.public_key()),
                "kid": self.kid,
                "use": "sig",
                "alg": "EdDSA",
            }]
        })
    }

    /// `receipt` as a compact JWS.
    pub fn sign(&self, receipt: &Receipt) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(receipt).expect("a receipt serializes"))
        );
        let signature = self.pair.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// The receipt inside `jws`, if this key signed it unchanged.
    pub fn verify(&self, jws: &str) -> Result<Receipt, Error> {
        let mut parts = jws.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Error::Malformed);
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| Error::Malformed)?;
        if header["alg"] != "EdDSA" || header["kid"] != self.kid.as_str() {
            return Err(Error::WrongHeader);
        }
        let signing_input = &jws[..jws.len() - signature.len() - 1];
        UnparsedPublicKey::new(&ED25519, self.public_key())
            .verify(signing_input.as_bytes(), &decode(signature)?)
            .map_err(|_| Error::BadSignature)?;
        serde_json::from_slice(&decode(payload)?).map_err(|_| Error::NotAReceipt)
    }
}

/// A consent receipt: the fields of Kantara CR v1.1, plus three of ours
/// (prefixed `tributary:`) tying it to the consent and the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub version: String,
    pub jurisdiction: String,
    /// Seconds since the Unix epoch, as the specification has it.
    pub consent_timestamp: i64,
    pub collection_method: String,
    #[serde(rename = "consentReceiptID")]
    pub consent_receipt_id: String,
    pub language: String,
    pub pii_principal_id: String,
    pub pii_controllers: Vec<PiiController>,
    pub policy_url: String,
    pub services: Vec<Service>,
    pub sensitive: bool,
    pub spi_cat: Vec<String>,
    /// The consent this receipt is about (one consent has a receipt per decision).
    #[serde(rename = "tributary:consentId")]
    pub consent_id: String,
    /// `granted`, `refused` or `revoked`.
    #[serde(rename = "tributary:status")]
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PiiController {
    pub pii_controller: String,
    pub contact: String,
    pub address: String,
    pub email: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub service: String,
    pub purposes: Vec<ReceiptPurpose>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPurpose {
    pub purpose: String,
    pub purpose_category: Vec<String>,
    pub consent_type: String,
    pub pii_category: Vec<String>,
    pub primary_purpose: bool,
    pub termination: String,
    pub third_party_disclosure: bool,
    pub third_party_name: String,
}

/// What the installation says of itself in every receipt (`[consent]`,
/// docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub jurisdiction: String,
    pub policy_url: String,
    pub language: String,
}

impl Default for Issuer {
    fn default() -> Issuer {
        Issuer {
            jurisdiction: "EU".into(),
            // The operator's to say (`[consent] policy_url`); none is
            // invented here.
            policy_url: String::new(),
            language: "en".into(),
        }
    }
}

/// The facts of one decision a receipt records.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub consent_id: &'a str,
    pub receipt_id: &'a str,
    pub owner: &'a str,
    pub service: &'a str,
    pub types: &'a [String],
    pub purpose: &'a crate::purpose::Purpose,
    pub retention_days: u32,
    pub third_parties: &'a [String],
    pub status: crate::consent::Status,
    pub at_ms: i64,
}

impl Issuer {
    /// The receipt of one decision.
    pub fn receipt(&self, d: &Decided<'_>) -> Receipt {
        Receipt {
            version: VERSION.into(),
            jurisdiction: self.jurisdiction.clone(),
            consent_timestamp: d.at_ms.div_euclid(1000),
            collection_method: "owner decision in the Tributary API".into(),
            consent_receipt_id: d.receipt_id.into(),
            language: self.language.clone(),
            pii_principal_id: d.owner.into(),
            pii_controllers: vec![PiiController {
                pii_controller: d.service.into(),
                contact: d.service.into(),
                address: String::new(),
                email: String::new(),
                phone: String::new(),
            }],
            policy_url: self.policy_url.clone(),
            services: vec![Service {
                service: d.service.into(),
                purposes: vec![ReceiptPurpose {
                    purpose: d.purpose.term.into(),
                    purpose_category: vec![d.purpose.category.into()],
                    consent_type: "EXPLICIT".into(),
                    pii_category: d.types.to_vec(),
                    primary_purpose: true,
                    termination: format!(
                        "the service deletes what it read {} days after reading it, and reads nothing more once consent is revoked",
                        d.retention_days
                    ),
                    third_party_disclosure: !d.third_parties.is_empty(),
                    third_party_name: d.third_parties.join(", "),
                }],
            }],
            // Readings of a person's body and movements: health data, a
            // special category (GDPR art. 9).
            sensitive: true,
            spi_cat: vec!["health".into()],
            consent_id: d.consent_id.into(),
            status: d.status.as_str().into(),
        }
    }
}

/// A random id in the form of a UUID version 4 (receipt and consent ids).
pub fn random_id() -> Result<String, Error> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Random)?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Status;

    fn receipt() -> Receipt {
        let types = vec!["steps".to_string()];
        let parties = vec!["Lab".to_string()];
        Issuer::default().receipt(&Decided {
            consent_id: "c1",
            receipt_id: "r1",
            owner: "ann",
            service: "study",
            types: &types,
            purpose: crate::purpose::purpose_of("dpv:AcademicResearch").unwrap(),
            retention_days: 30,
            third_parties: &parties,
            status: Status::Granted,
            at_ms: 1_700_000_000_123,
        })
    }

    #[test]
    fn a_signed_receipt_verifies_and_reads_back() {
        let key = SigningKey::generate().unwrap();
        let jws = key.sign(&receipt());
        assert_eq!(key.verify(&jws).unwrap(), receipt());
        let value: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jws.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(value["consentReceiptID"], "r1");
        assert_eq!(value["consentTimestamp"], 1_700_000_000);
        assert_eq!(value["services"][0]["purposes"][0]["thirdPartyName"], "Lab");
    }

    #[test]
    fn a_changed_receipt_or_another_key_fails() {
        let key = SigningKey::generate().unwrap();
        let jws = key.sign(&receipt());
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let mut other = receipt();
        other.pii_principal_id = "bob".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_eq!(key.verify(&parts.join(".")), Err(Error::BadSignature));
        let other_key = SigningKey::generate().unwrap();
        assert_eq!(other_key.verify(&jws), Err(Error::WrongHeader));
        assert_eq!(key.verify("a.b"), Err(Error::Malformed));
    }

    #[test]
    fn the_same_seed_is_the_same_key() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::from_seed(a.seed());
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.jwks(), b.jwks());
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.seed())));
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = random_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, random_id().unwrap());
    }
}
