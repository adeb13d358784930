//! Signed visitor identity. `POST /events` is public, so a `lead_id` or e-mail in an event proves
//! nothing: anyone could raise any lead's score. The capture answer (`POST /leads`) therefore
//! hands the page a visitor token instead: the lead the submission created and an expiry,
//! signed with HMAC-SHA256 under a key only capture-form holds. An event names a lead only
//! through such a token (or through the IAM-authorised server-side route).
//!
//! Format: `v1.<payload>.<signature>`, both parts base64url without padding; the payload is the
//! lead id's 16 bytes and the expiry (Unix seconds, big-endian i64); the signature covers the
//! version and the payload. The token is signed, not encrypted: it tells its holder the lead id
//! it was issued for, which is the lead their own submission created.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::lead::LeadId;

/// How long a token attributes events: as long as an event is worth scoring.
pub const VISITOR_TOKEN_TTL: Duration = Duration::days(90);

/// The field (of an event, and of the capture answer) that carries the token.
pub const VISITOR_TOKEN_FIELD: &str = "visitor_token";

const VERSION: &str = "v1";
const PAYLOAD_BYTES: usize = 16 + 8;
const SIGNATURE_BYTES: usize = 32;
/// Longer input is not a token; refused before any decoding.
const MAX_TOKEN_CHARS: usize = 128;
/// Separates these signatures from anything else the same key might ever sign.
const CONTEXT: &[u8] = b"leadflow visitor token\0";

/// The HMAC key tokens are signed with (a Secrets Manager secret in AWS).
#[derive(Clone, PartialEq, Eq)]
pub struct VisitorTokenKey(Vec<u8>);

impl fmt::Debug for VisitorTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VisitorTokenKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a visitor token key is at least {} bytes of text",
    VisitorTokenKey::MIN_BYTES
)]
pub struct VisitorTokenKeyError;

impl VisitorTokenKey {
    /// As many bytes as the HMAC-SHA256 output: a shorter key weakens the signature.
    pub const MIN_BYTES: usize = 32;

    /// The key's text (surrounding whitespace ignored) is the key, byte for byte.
    pub fn parse(s: &str) -> Result<Self, VisitorTokenKeyError> {
        let s = s.trim();
        if s.len() < Self::MIN_BYTES {
            return Err(VisitorTokenKeyError);
        }
        Ok(Self(s.as_bytes().to_vec()))
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(CONTEXT);
        mac.update(VERSION.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac
    }
}

/// Why a token was not accepted. The messages are told to the client as they are: they name no
/// input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VisitorTokenError {
    #[error("is not a visitor token issued by this API")]
    Malformed,
    #[error("has an invalid signature")]
    BadSignature,
    #[error("has expired: drop it and send visitor_id only until the next capture answer")]
    Expired,
}

/// A token whose signature and expiry were checked (or that was just issued): only
/// [`VisitorToken::issue`] and [`VisitorToken::verify`] make one.
#[derive(Clone, PartialEq, Eq)]
pub struct VisitorToken {
    encoded: String,
    lead_id: LeadId,
    expires_at: DateTime<Utc>,
}

impl fmt::Debug for VisitorToken {
    // The encoded token is a credential: it stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisitorToken")
            .field("lead_id", &self.lead_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl VisitorToken {
    /// A token for `lead_id`, valid for [`VISITOR_TOKEN_TTL`] from `now` (to the second).
    pub fn issue(key: &VisitorTokenKey, lead_id: LeadId, now: DateTime<Utc>) -> Self {
        let expires = (now + VISITOR_TOKEN_TTL).timestamp();
        let expires_at = DateTime::from_timestamp(expires, 0).unwrap_or(now + VISITOR_TOKEN_TTL);
        let mut bytes = [0u8; PAYLOAD_BYTES];
        bytes[..16].copy_from_slice(lead_id.as_uuid().as_bytes());
        bytes[16..].copy_from_slice(&expires.to_be_bytes());
        let payload = URL_SAFE_NO_PAD.encode(bytes);
        let signature = URL_SAFE_NO_PAD.encode(key.mac(&payload).finalize().into_bytes());
        Self {
            encoded: format!("{VERSION}.{payload}.{signature}"),
            lead_id,
            expires_at,
        }
    }

    /// Checks the signature (in constant time), then the expiry, at `now`.
    pub fn verify(
        key: &VisitorTokenKey,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, VisitorTokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(VisitorTokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(VERSION), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VisitorTokenError::Malformed);
        };
        let bytes: [u8; PAYLOAD_BYTES] = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(VisitorTokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .filter(|s| s.len() == SIGNATURE_BYTES)
            .ok_or(VisitorTokenError::Malformed)?;
        key.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| VisitorTokenError::BadSignature)?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[..16]);
        let lead_id: LeadId = uuid::Uuid::from_bytes(uuid)
            .to_string()
            .parse()
            .map_err(|_| VisitorTokenError::Malformed)?;
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&bytes[16..]);
        let expires_at = DateTime::from_timestamp(i64::from_be_bytes(expires), 0)
            .ok_or(VisitorTokenError::Malformed)?;
        if expires_at <= now {
            return Err(VisitorTokenError::Expired);
        }
        Ok(Self {
            encoded: token.to_owned(),
            lead_id,
            expires_at,
        })
    }

    /// The lead this token attributes events to.
    pub fn lead_id(&self) -> LeadId {
        self.lead_id
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The token as the page keeps and sends it.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> VisitorTokenKey {
        VisitorTokenKey::parse("test-key-of-at-least-thirty-two-bytes-000").unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let lead = LeadId::new_at(now());
        let issued = VisitorToken::issue(&key(), lead, now());
        assert_eq!(issued.lead_id(), lead);
        assert_eq!(issued.expires_at(), now() + VISITOR_TOKEN_TTL);
        let checked = VisitorToken::verify(&key(), issued.as_str(), now()).unwrap();
        assert_eq!(checked, issued);
        let last_second = issued.expires_at() - Duration::seconds(1);
        assert!(VisitorToken::verify(&key(), issued.as_str(), last_second).is_ok());
        assert_eq!(
            VisitorToken::verify(&key(), issued.as_str(), issued.expires_at()),
            Err(VisitorTokenError::Expired)
        );
    }

    #[test]
    fn another_key_or_a_forged_payload_is_a_bad_signature() {
        let issued = VisitorToken::issue(&key(), LeadId::new_at(now()), now());
        let other = VisitorTokenKey::parse("another-key-of-at-least-thirty-two-bytes").unwrap();
        assert_eq!(
            VisitorToken::verify(&other, issued.as_str(), now()),
            Err(VisitorTokenError::BadSignature)
        );
        // Someone else's lead id with the signature of one's own token.
        let victim = VisitorToken::issue(&other, LeadId::new_at(now()), now());
        let (_, signature) = issued.as_str().rsplit_once('.').unwrap();
        let (forged, _) = victim.as_str().rsplit_once('.').unwrap();
        assert_eq!(
            VisitorToken::verify(&key(), &format!("{forged}.{signature}"), now()),
            Err(VisitorTokenError::BadSignature)
        );
    }

    #[test]
    fn what_is_not_a_token_is_malformed() {
        let issued = VisitorToken::issue(&key(), LeadId::new_at(now()), now());
        for bad in [
            "",
            "v1",
            "v1..",
            "0190d2a4-0000-7000-8000-000000000001",
            &issued.as_str().replacen("v1", "v2", 1),
            &format!("{}.x", issued.as_str()),
            &format!("{}=", issued.as_str()),
            &"a".repeat(1000),
        ] {
            assert_eq!(
                VisitorToken::verify(&key(), bad, now()),
                Err(VisitorTokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_and_keys_stay_out_of_debug_output() {
        assert_eq!(
            VisitorTokenKey::parse("  short  "),
            Err(VisitorTokenKeyError)
        );
        assert_eq!(format!("{:?}", key()), "VisitorTokenKey(..)");
        let issued = VisitorToken::issue(&key(), LeadId::new_at(now()), now());
        assert!(!format!("{issued:?}").contains(issued.as_str()));
    }

    proptest! {
        #[test]
        fn any_lead_and_time_round_trip(secs in 0i64..4_000_000_000, age in 0i64..(90 * 86_400)) {
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            let lead = LeadId::new_at(at);
            let issued = VisitorToken::issue(&key(), lead, at);
            let checked = VisitorToken::verify(&key(), issued.as_str(), at + Duration::seconds(age));
            prop_assert_eq!(checked.map(|t| t.lead_id()), Ok(lead));
        }

        /// Changing any one character of a token makes it fail, never name another lead.
        #[test]
        fn any_tampered_token_is_rejected(index in 0usize..79, replacement in "[A-Za-z0-9_.-]") {
            let issued = VisitorToken::issue(&key(), LeadId::new_at(now()), now());
            let mut chars: Vec<char> = issued.as_str().chars().collect();
            prop_assume!(index < chars.len());
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(chars[index] != replacement);
            chars[index] = replacement;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(VisitorToken::verify(&key(), &tampered, now()).is_err());
        }

        #[test]
        fn expired_tokens_are_rejected(late in 0i64..10_000_000) {
            let issued = VisitorToken::issue(&key(), LeadId::new_at(now()), now());
            let at = issued.expires_at() + Duration::seconds(late);
            prop_assert_eq!(
                VisitorToken::verify(&key(), issued.as_str(), at),
                Err(VisitorTokenError::Expired)
            );
        }
    }
}
