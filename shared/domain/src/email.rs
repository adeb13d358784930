use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest address SMTP can carry (RFC 5321: 254 octets in a path).
pub const MAX_EMAIL_LEN: usize = 254;

/// A syntactically valid, normalised e-mail address: the identity of a lead.
///
/// Normalisation trims surrounding white space and lowercases the whole address. Local parts are
/// case-sensitive in theory but not at any provider a lead uses, and two leads for `Anna@x.de` and
/// `anna@x.de` would be one person twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is required")]
    Empty,
    #[error("is longer than {MAX_EMAIL_LEN} characters")]
    TooLong,
    #[error("is not a valid e-mail address")]
    Invalid,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(EmailError::Empty);
        }
        if normalised.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        // The crate checks RFC 5322 syntax; a lead form also wants a routable domain, which
        // catches the common typo `anna@gmailcom` and rejects display-name forms.
        let parsed =
            email_address::EmailAddress::from_str(&normalised).map_err(|_| EmailError::Invalid)?;
        if parsed.as_str() != normalised {
            return Err(EmailError::Invalid);
        }
        let domain = parsed.domain();
        let domain_ok = domain.contains('.')
            && !domain.starts_with('[')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.chars().any(char::is_whitespace);
        if !domain_ok || normalised.contains(char::is_whitespace) {
            return Err(EmailError::Invalid);
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_space() {
        let e = Email::parse("  Anna.Müller@Example.DE \n").unwrap();
        assert_eq!(e.as_str(), "anna.müller@example.de");
        assert_eq!(e.domain(), "example.de");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "   ",
            "anna",
            "anna@",
            "@example.com",
            "anna@example",
            "anna@@x.de",
            "a b@x.de",
            "Anna <anna@x.de>",
            "anna@[127.0.0.1]",
            "anna@x..de",
            "anna@.x.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(Email::parse(" ").unwrap_err(), EmailError::Empty);
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err(), EmailError::TooLong);
    }

    #[test]
    fn accepts_common_addresses() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x_y-z@mail.example.travel",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok:?} must be accepted");
        }
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(raw in "[ \\t]{0,2}[A-Za-z0-9]{1,10}([._+-][A-Za-z0-9]{1,5}){0,2}@[A-Za-z0-9]{1,12}(\\.[A-Za-z]{2,6}){1,2}[ ]{0,2}") {
            let once = Email::parse(&raw).unwrap();
            let twice = Email::parse(once.as_str()).unwrap();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn any_input_parses_to_a_fixed_point_or_fails(raw in "\\PC{0,40}") {
            if let Ok(once) = Email::parse(&raw) {
                prop_assert_eq!(Email::parse(once.as_str()), Ok(once));
            }
        }
    }
}
