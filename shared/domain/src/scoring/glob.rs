//! URL patterns of behaviour rules: `*` stands for any characters, everything else is literal,
//! case-insensitive, matched against the whole URL.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_GLOB_LEN: usize = 2048;

/// A URL pattern such as `*/pricing*`: `*` matches any run of characters (also none and also
/// `/`), every other character matches itself, ignoring case. The pattern must match the whole
/// URL, so `*/pricing` does not match `https://x.de/pricing/enterprise` but `*/pricing*` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct UrlGlob {
    /// As configured.
    pattern: String,
    /// Lower case, compared byte by byte against a lower-cased URL.
    lower: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {MAX_GLOB_LEN} characters")]
    TooLong,
}

impl UrlGlob {
    pub fn parse(pattern: &str) -> Result<Self, GlobError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.chars().count() > MAX_GLOB_LEN {
            return Err(GlobError::TooLong);
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            lower: pattern.to_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern matches `url` (any case).
    pub fn matches(&self, url: &str) -> bool {
        self.matches_lower(&lower(url))
    }

    /// Whether the pattern matches a URL that is already lower case (see [`lower`]).
    pub(crate) fn matches_lower(&self, url_lower: &str) -> bool {
        wildcard(self.lower.as_bytes(), url_lower.as_bytes())
    }
}

/// `s` in lower case, borrowed when it already is (the common case for URLs).
pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Linear-time-in-practice wildcard match with one backtracking point (the last `*`), which is
/// enough because `*` matches anything. Byte-wise comparison is sound for UTF-8: a literal that
/// starts with a lead byte can only match at a character boundary.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, si));
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((after_star, from)) = star {
            pi = after_star;
            si = from + 1;
            star = Some((after_star, from + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

impl<'de> Deserialize<'de> for UrlGlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::str_then(d, UrlGlob::parse)
    }
}

impl From<UrlGlob> for String {
    fn from(g: UrlGlob) -> String {
        g.pattern
    }
}

impl fmt::Display for UrlGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        UrlGlob::parse(p).unwrap().matches(s)
    }

    #[test]
    fn star_matches_any_run_and_the_whole_url_must_match() {
        assert!(m("*/pricing*", "https://acme.de/pricing"));
        assert!(m("*/pricing*", "https://acme.de/pricing?plan=pro"));
        assert!(m("*/pricing*", "https://acme.de/de/pricing/enterprise"));
        assert!(!m("*/pricing*", "https://acme.de/blog/what-pricing-means"));
        assert!(!m("*/pricing", "https://acme.de/pricing/enterprise"));
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("https://acme.de/*", "https://acme.de/"));
        assert!(!m("https://acme.de/*", "http://acme.de/"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("**/x", "/x"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(!m("exact", "inexact"));
    }

    #[test]
    fn case_is_ignored_on_both_sides() {
        assert!(m("*/PRICING*", "https://acme.de/Pricing"));
        assert!(m("*/Über-uns", "https://acme.de/ÜBER-UNS"));
    }

    #[test]
    fn rejects_empty_patterns() {
        assert_eq!(UrlGlob::parse("  "), Err(GlobError::Empty));
    }

    /// A plain recursive matcher as the reference.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| reference(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[ab*/]{0,8}", s in "[ab/]{0,12}") {
            prop_assert_eq!(wildcard(p.as_bytes(), s.as_bytes()), reference(p.as_bytes(), s.as_bytes()));
        }
    }
}
