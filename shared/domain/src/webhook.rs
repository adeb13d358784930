//! Standard Webhooks (https://www.standardwebhooks.com/): how leadflow signs what it sends to a
//! CRM and checks what a CRM sends back. The signed content is `{id}.{timestamp}.{body}`, the
//! signature HMAC-SHA256 with the endpoint's secret, sent as `v1,<base64>`; the timestamp keeps
//! a captured request from being replayed later.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::endpoint::{check_endpoint, CheckedEndpoint, EndpointError, EndpointMode};

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The longest `webhook-id` taken (the spec's ids are short; it becomes part of a key).
pub const MAX_ID_BYTES: usize = 256;

/// How far a signed timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing key: `whsec_` followed by base64 (as the spec's libraries print it).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by base64 of 24 to 64 bytes (or 32 or more letters and digits, as Secrets Manager generates it)")]
pub struct SecretFormatError;

impl WebhookSecret {
    /// `whsec_<base64>`, or the base64 alone when it is at least 32 characters: what Secrets
    /// Manager generates for the template's signing secret (48 letters and digits), read as
    /// the Standard Webhooks libraries read a secret without its prefix.
    pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
        let s = s.trim();
        let encoded = match s.strip_prefix(SECRET_PREFIX) {
            Some(b) => b,
            None if s.len() >= 32 && s.chars().all(|c| c.is_ascii_alphanumeric()) => s,
            None => return Err(SecretFormatError),
        };
        let key = STANDARD.decode(encoded).map_err(|_| SecretFormatError)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretFormatError);
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for one delivery attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether one of the space-separated `v1,<base64>` signatures is this key's, compared in
    /// constant time.
    pub fn matches(&self, id: &str, timestamp: i64, body: &[u8], signatures: &str) -> bool {
        let mac = self.mac(id, timestamp, body);
        signatures
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| STANDARD.decode(b).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok())
    }
}

/// The headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub signatures: &'a str,
}

/// Why a request's signature was not accepted (each answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing: calls must be signed (Standard Webhooks)")]
    Missing(&'static str),
    #[error("the webhook-timestamp header is not a Unix time in seconds")]
    BadTimestamp,
    #[error("the webhook-id header is longer than 256 bytes")]
    LongId,
    #[error("the webhook-timestamp is more than 5 minutes from now")]
    Stale,
    #[error("no signature in webhook-signature matches this endpoint's secret")]
    BadSignature,
}

/// Reads the three headers (by their lower-case names) and checks the timestamp's tolerance;
/// the signature is then checked against the candidate secrets with [`WebhookSecret::matches`].
pub fn signed_headers<'a>(
    header: impl Fn(&'static str) -> Option<&'a str>,
    now: DateTime<Utc>,
) -> Result<SignedHeaders<'a>, VerifyError> {
    let id = header(ID_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::Missing(ID_HEADER))?;
    if id.len() > MAX_ID_BYTES {
        return Err(VerifyError::LongId);
    }
    let timestamp = header(TIMESTAMP_HEADER).ok_or(VerifyError::Missing(TIMESTAMP_HEADER))?;
    let signatures = header(SIGNATURE_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now.timestamp().abs_diff(timestamp) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    Ok(SignedHeaders {
        id,
        timestamp,
        signatures,
    })
}

/// Where a target's CRM receives leads: an https endpoint on a public host (http and local
/// addresses only in local mode) and the reference of its signing secret (`env:NAME` or a
/// Secrets Manager ARN), never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmTarget {
    pub endpoint: String,
    pub secret: String,
}

impl CrmTarget {
    /// What is wrong with the target whatever the deployment, if anything: the endpoint must
    /// be an https URL (http only to a local host), the secret a reference (`env:NAME` or a Secrets Manager
    /// ARN). Whether the endpoint is https and public depends on where the configuration runs:
    /// [`CrmTarget::check_endpoint`], at `leadflow config check`/`push` and at send time.
    pub fn check(&self) -> Result<(), String> {
        self.check_endpoint(EndpointMode::Local)
            .map_err(|e| format!("endpoint {e}"))?;
        // Plain http to a public host is wrong wherever the configuration runs; http is only
        // for a CRM receiver on this machine or network in local mode.
        if let Err(e @ EndpointError::NotHttps) = self.check_endpoint(EndpointMode::Public) {
            return Err(format!("endpoint {e}"));
        }
        if !(self.secret.starts_with("env:") || self.secret.starts_with("arn:aws:secretsmanager:"))
        {
            return Err("secret must be a reference: env:NAME or a Secrets Manager ARN".into());
        }
        Ok(())
    }

    /// The endpoint checked for `mode`: outside local mode https on a public host (see
    /// [`crate::endpoint`]).
    pub fn check_endpoint(&self, mode: EndpointMode) -> Result<CheckedEndpoint, EndpointError> {
        check_endpoint(&self.endpoint, mode)
    }

    /// The secret's name when it is a Secrets Manager ARN.
    pub fn secret_name(&self) -> Option<&str> {
        secret_name(&self.secret)
    }
}

/// The secret's name in a Secrets Manager ARN (`arn:aws:secretsmanager:<region>:<account>:
/// secret:<name>`, the name with the random suffix AWS adds); `None` for other references.
fn secret_name(reference: &str) -> Option<&str> {
    let rest = reference.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let (_partition, service) = (parts.next()?, parts.next()?);
    let (_region, _account, kind, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (service == "secretsmanager" && kind == "secret").then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The example of the Standard Webhooks reference libraries (webhooks/python tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_like_the_reference_implementation() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY), EXPECTED);
        assert!(secret.matches(ID, TS, BODY, &format!("v1,bm90IHRoaXM= {EXPECTED}")));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert!(!secret.matches("msg_other", TS, BODY, EXPECTED));
        assert!(!secret.matches(ID, TS + 1, BODY, EXPECTED));
        assert!(!secret.matches(ID, TS, br#"{"test": 2432232315}"#, EXPECTED));
        assert!(!secret.matches(
            ID,
            TS,
            BODY,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!secret.matches(ID, TS, BODY, ""));
        let other = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert!(!other.matches(ID, TS, BODY, EXPECTED));
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        // Without the prefix only a long run of letters and digits (a generated secret).
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjU+D8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaL").is_err());
        let generated = "Ab3dEf7hIj1lMn5pQr9tUv2xYz4bCd6fGh8jKl0nOp2rSt4v";
        assert_eq!(
            WebhookSecret::parse(generated).unwrap(),
            WebhookSecret::parse(&format!("whsec_{generated}")).unwrap()
        );
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        assert!(format!("{:?}", WebhookSecret::parse(SECRET).unwrap()).contains(".."));
    }

    #[test]
    fn headers_are_required_and_the_timestamp_fresh() {
        let now = DateTime::from_timestamp(TS, 0).unwrap();
        let all = |name: &'static str| match name {
            ID_HEADER => Some(ID),
            TIMESTAMP_HEADER => Some("1614265330"),
            SIGNATURE_HEADER => Some(EXPECTED),
            _ => None,
        };
        let h = signed_headers(all, now).unwrap();
        assert_eq!((h.id, h.timestamp), (ID, TS));
        for missing in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let without = |name: &'static str| if name == missing { None } else { all(name) };
            assert_eq!(
                signed_headers(without, now),
                Err(VerifyError::Missing(missing))
            );
        }
        let late = now + chrono::Duration::seconds(TOLERANCE_SECONDS + 1);
        assert_eq!(signed_headers(all, late), Err(VerifyError::Stale));
        let early = now - chrono::Duration::seconds(TOLERANCE_SECONDS + 1);
        assert_eq!(signed_headers(all, early), Err(VerifyError::Stale));
        let edge = now + chrono::Duration::seconds(TOLERANCE_SECONDS);
        assert!(signed_headers(all, edge).is_ok());
        let garbled = |name: &'static str| {
            if name == TIMESTAMP_HEADER {
                Some("soon")
            } else {
                all(name)
            }
        };
        assert_eq!(signed_headers(garbled, now), Err(VerifyError::BadTimestamp));
        for extreme in ["-9223372036854775808", "9223372036854775807"] {
            let far = |name: &'static str| {
                if name == TIMESTAMP_HEADER {
                    Some(extreme)
                } else {
                    all(name)
                }
            };
            assert_eq!(
                signed_headers(far, now),
                Err(VerifyError::Stale),
                "{extreme}"
            );
        }
        let long = "m".repeat(MAX_ID_BYTES + 1);
        let long_id = |name: &'static str| {
            if name == ID_HEADER {
                Some(long.as_str())
            } else {
                all(name)
            }
        };
        assert_eq!(signed_headers(long_id, now), Err(VerifyError::LongId));
    }

    proptest! {
        #[test]
        fn a_signature_verifies_exactly_its_message(id in "msg_[a-zA-Z0-9]{1,30}", ts in 0i64..4_000_000_000, body in proptest::collection::vec(any::<u8>(), 0..200), flip in 0usize..200) {
            let secret = WebhookSecret::parse(SECRET).unwrap();
            let sig = secret.sign(&id, ts, &body);
            prop_assert!(secret.matches(&id, ts, &body, &sig));
            if !body.is_empty() {
                let mut changed = body.clone();
                changed[flip % body.len()] ^= 1;
                prop_assert!(!secret.matches(&id, ts, &changed, &sig));
            }
        }
    }
}
