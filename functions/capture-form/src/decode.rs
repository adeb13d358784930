//! Request bodies → [`RawSubmission`]: JSON objects and urlencoded forms obey one set of rules.

use leadflow_domain::submission::{RawSubmission, CUSTOM_PREFIX};
use leadflow_domain::FieldErrors;
use leadflow_lambda::http::media_type;
use serde_json::Value;

/// The largest body accepted (a form is a few hundred bytes; 16 KiB leaves room for long consent texts).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported content type {0:?}; send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType(String),
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Well-formed, but fields have the wrong shape (a list where a string belongs).
    #[error("invalid fields")]
    Fields(FieldErrors),
}

/// The media type of a `Content-Type` header, if it is one this endpoint reads.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, DecodeError> {
    match media_type(content_type).as_deref() {
        Some("application/json") => Ok(BodyKind::Json),
        Some("application/x-www-form-urlencoded") => Ok(BodyKind::Form),
        _ => Err(DecodeError::UnsupportedMediaType(
            content_type.unwrap_or_default().to_owned(),
        )),
    }
}

pub fn decode(kind: BodyKind, body: &[u8]) -> Result<RawSubmission, DecodeError> {
    match kind {
        BodyKind::Form => decode_form(body),
        BodyKind::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| DecodeError::Malformed(format!("invalid JSON: {e}")))?;
            let Value::Object(object) = value else {
                return Err(DecodeError::Malformed(
                    "the JSON body must be an object".into(),
                ));
            };
            flatten_json(object)
        }
    }
}

/// `application/x-www-form-urlencoded` as browsers send it: `+` for space, percent-encoded UTF-8.
/// Decoded by hand rather than with a lossy decoder, so that bytes which are not UTF-8 are a 400
/// instead of U+FFFD stored in a lead.
fn decode_form(body: &[u8]) -> Result<RawSubmission, DecodeError> {
    let decode_part = |part: &[u8]| -> Result<String, DecodeError> {
        let spaced: Vec<u8> = part
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| DecodeError::Malformed("the form is not UTF-8".into()))
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            Ok((decode_part(name)?, decode_part(value)?))
        })
        .collect()
}

/// JSON allows nesting where a form cannot: `custom_fields`, `utm` and `consent` may be objects.
/// They become the flat names a form would use.
fn flatten_json(object: serde_json::Map<String, Value>) -> Result<RawSubmission, DecodeError> {
    let mut raw = RawSubmission::new();
    let mut errors = FieldErrors::new();
    for (name, value) in object {
        match (name.as_str(), value) {
            ("custom_fields", Value::Object(fields)) => {
                for (k, v) in fields {
                    push_scalar(&mut raw, &mut errors, format!("{CUSTOM_PREFIX}{k}"), v);
                }
            }
            ("utm", Value::Object(fields)) => {
                for (k, v) in fields {
                    push_scalar(&mut raw, &mut errors, format!("utm_{k}"), v);
                }
            }
            ("consent", Value::Object(fields)) => {
                for (k, v) in fields {
                    let flat = match k.as_str() {
                        "given" => "consent".to_owned(),
                        "text" => "consent_text".to_owned(),
                        "version" => "consent_version".to_owned(),
                        other => format!("consent.{other}"),
                    };
                    push_scalar(&mut raw, &mut errors, flat, v);
                }
            }
            (_, v) => push_scalar(&mut raw, &mut errors, name, v),
        }
    }
    if errors.is_empty() {
        Ok(raw)
    } else {
        Err(DecodeError::Fields(errors))
    }
}

fn push_scalar(raw: &mut RawSubmission, errors: &mut FieldErrors, name: String, value: Value) {
    match value {
        Value::Null => {}
        Value::String(s) => raw.push((name, s)),
        Value::Bool(b) => raw.push((name, b.to_string())),
        Value::Number(n) => raw.push((name, n.to_string())),
        Value::Array(_) | Value::Object(_) => {
            errors.insert(name, "must be a string".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(body_kind(Some("application/json")), Ok(BodyKind::Json));
        assert_eq!(
            body_kind(Some("Application/JSON; charset=UTF-8")),
            Ok(BodyKind::Json)
        );
        assert_eq!(
            body_kind(Some("application/x-www-form-urlencoded")),
            Ok(BodyKind::Form)
        );
        assert!(body_kind(Some(
            "application/x-www-form-urlencoded; charset=iso-8859-1"
        ))
        .is_err());
        assert!(body_kind(Some("text/plain")).is_err());
        assert!(body_kind(Some("multipart/form-data; boundary=x")).is_err());
        assert!(body_kind(None).is_err());
    }

    #[test]
    fn browser_form_with_umlauts() {
        // Exactly what Chromium sends for a plain <form method=post>: UTF-8, percent-encoded, + for space.
        let body = b"email=j%C3%B6rg%40example.de&first_name=J%C3%B6rg&company=M%C3%BCller+%26+S%C3%B6hne&consent=on";
        let raw = decode(BodyKind::Form, body).unwrap();
        assert_eq!(raw[0], ("email".to_owned(), "jörg@example.de".to_owned()));
        assert_eq!(raw[2], ("company".to_owned(), "Müller & Söhne".to_owned()));
    }

    #[test]
    fn json_nesting_flattens() {
        let body = br#"{"email":"a@b.de","utm":{"source":"google"},"custom_fields":{"seats":12},"consent":{"given":true,"text":"ok"},"phone":null}"#;
        let raw = decode(BodyKind::Json, body).unwrap();
        assert!(raw.contains(&("utm_source".into(), "google".into())));
        assert!(raw.contains(&("custom_fields.seats".into(), "12".into())));
        assert!(raw.contains(&("consent".into(), "true".into())));
        assert!(raw.contains(&("consent_text".into(), "ok".into())));
        assert!(!raw.iter().any(|(k, _)| k == "phone"));
    }

    #[test]
    fn malformed_and_misshapen_json() {
        assert!(matches!(
            decode(BodyKind::Json, b"{\"email\":"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(BodyKind::Json, b"[1,2]"),
            Err(DecodeError::Malformed(_))
        ));
        match decode(BodyKind::Json, br#"{"email":["a@b.de"]}"#) {
            Err(DecodeError::Fields(f)) => assert_eq!(f["email"], "must be a string"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(BodyKind::Form, b"email=%FF%FE"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
