//! Topic tags (docs/domain.md, "Tracking and scoring"): the labels events carry, that scoring
//! rules and routing rules name, and that segments are listed by. One rule for all of them, so
//! a tag the model names is a tag an event can carry and a segment URL can ask for.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest tag, in bytes (tags are ASCII); [`TagError::RULE`] says it in words.
pub const MAX_TAG_LEN: usize = 64;

/// A topic tag, normalised: trimmed, lower case, 1 to 64 characters of `a-z`, `0-9`, `-`, `_`
/// and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Tag(String);

/// A text that is not a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid tag: use {rule}", rule = TagError::RULE)]
pub struct TagError(pub String);

impl TagError {
    /// What a tag is made of, for the messages that name a field.
    pub const RULE: &'static str = "1 to 64 characters of a-z, 0-9 and - _ .";
}

impl Tag {
    pub fn parse(s: &str) -> Result<Self, TagError> {
        Self::normalise(s)
            .map(|t| Self(t.into_owned()))
            .ok_or_else(|| TagError(s.to_owned()))
    }

    /// `s` trimmed and in lower case, if it is a valid tag (borrowed where it already is).
    pub fn normalise(s: &str) -> Option<Cow<'_, str>> {
        let t = s.trim();
        let valid = !t.is_empty()
            && t.len() <= MAX_TAG_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            None
        } else if t.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(Cow::Owned(t.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(t))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Tag::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> String {
        t.0
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_and_lower_case() {
        assert_eq!(Tag::parse(" CRM ").unwrap().as_str(), "crm");
        assert_eq!(Tag::parse("web-2.0_beta").unwrap().as_str(), "web-2.0_beta");
        assert!(matches!(Tag::normalise("crm"), Some(Cow::Borrowed("crm"))));
    }

    #[test]
    fn one_rule_refuses_what_no_event_can_carry() {
        for bad in [
            "",
            "  ",
            "crm erp",
            "crm/erp",
            "müller",
            "#crm",
            &"x".repeat(65),
        ] {
            let err = Tag::parse(bad).unwrap_err();
            assert_eq!(err.0, bad);
            assert!(err.to_string().contains("a-z, 0-9"), "{err}");
        }
        assert!(Tag::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn serde_validates_and_round_trips() {
        let t: Tag = serde_json::from_str("\"Pricing\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"pricing\"");
        assert!(serde_json::from_str::<Tag>("\"a b\"").is_err());
    }
}
