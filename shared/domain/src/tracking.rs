//! Behavioural events as a website or app reports them (`POST /events`), validated.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::fields::FieldErrors;
use crate::lead::LeadId;
use crate::scoring::BehaviourEvent;
use crate::tag::{Tag, TagError};

pub const MAX_EVENTS_PER_BATCH: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_PROPERTIES_BYTES: usize = 2048;
/// Clocks of browsers drift; an event may claim to be this far in the future.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Older events are not worth scoring (their points have decayed) and hint at a replay.
pub const MAX_EVENT_AGE: Duration = Duration::days(90);

/// Who did it: a known lead, an e-mail, or an anonymous visitor (cookie id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
}

impl Identity {
    /// The key anonymous history is kept under until a lead claims it: the visitor id, else
    /// the e-mail of a person who is not a lead yet.
    pub fn anonymous_key(&self) -> Option<String> {
        match (&self.visitor_id, &self.email) {
            (Some(v), _) => Some(format!("visitor:{v}")),
            (None, Some(e)) => Some(format!("email:{e}")),
            _ => None,
        }
    }
}

/// A validated behavioural event, as queued for scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
    #[serde(flatten)]
    pub identity: Identity,
}

fn token_ok(s: &str, max: usize, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

impl TrackedEvent {
    /// What scoring looks at of the event.
    pub fn behaviour(&self) -> BehaviourEvent {
        BehaviourEvent {
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            occurred_at: self.occurred_at,
            url: self.url.clone(),
            tags: self.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }

    /// Validates one event of a batch as the client sent it, at the time `now` it arrived.
    pub fn parse(value: &serde_json::Value, now: DateTime<Utc>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(obj) = value.as_object() else {
            errors.insert("event".into(), "must be an object".into());
            return Err(errors);
        };
        const KNOWN: [&str; 9] = [
            "event_id",
            "type",
            "occurred_at",
            "url",
            "tags",
            "properties",
            "lead_id",
            "email",
            "visitor_id",
        ];
        for key in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.insert(key.clone(), "unknown field".into());
        }
        let string = |name: &str, errors: &mut FieldErrors| -> Option<String> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Some(s.trim().to_owned())
                }
                Some(serde_json::Value::String(_)) => None,
                Some(_) => {
                    errors.insert(name.into(), "must be a string".into());
                    None
                }
            }
        };
        let event_id = string("event_id", &mut errors);
        match &event_id {
            None if !errors.contains_key("event_id") => {
                errors.insert(
                    "event_id".into(),
                    "is required (a client-generated id, used to drop duplicates)".into(),
                );
            }
            Some(id) if !token_ok(id, 128, "-_.:") => {
                errors.insert(
                    "event_id".into(),
                    "must be 1 to 128 characters of A-Z, a-z, 0-9 and - _ . :".into(),
                );
            }
            _ => {}
        }
        let event_type = string("type", &mut errors);
        match &event_type {
            None if !errors.contains_key("type") => {
                errors.insert(
                    "type".into(),
                    "is required (page_view, download, webinar_attended, ...)".into(),
                );
            }
            Some(t) if !token_ok(t, 64, "_") || t.chars().any(|c| c.is_ascii_uppercase()) => {
                errors.insert(
                    "type".into(),
                    "must be 1 to 64 characters of a-z, 0-9 and _".into(),
                );
            }
            _ => {}
        }
        let occurred_at =
            match string("occurred_at", &mut errors).map(|s| DateTime::parse_from_rfc3339(&s)) {
                None => {
                    errors.entry("occurred_at".into()).or_insert_with(|| {
                        "is required (RFC 3339, e.g. 2026-11-22T10:15:00Z)".into()
                    });
                    None
                }
                Some(Err(_)) => {
                    errors.insert(
                        "occurred_at".into(),
                        "must be an RFC 3339 timestamp such as 2026-11-22T10:15:00Z".into(),
                    );
                    None
                }
                Some(Ok(t)) => {
                    let t = t.with_timezone(&Utc);
                    if t > now + MAX_CLOCK_SKEW {
                        errors.insert("occurred_at".into(), "is in the future".into());
                        None
                    } else if t < now - MAX_EVENT_AGE {
                        errors.insert(
                            "occurred_at".into(),
                            format!("is older than {} days", MAX_EVENT_AGE.num_days()),
                        );
                        None
                    } else {
                        Some(t)
                    }
                }
            };
        let url = string("url", &mut errors);
        if let Some(u) = &url {
            let ok = u.len() <= 2048
                && url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"));
            if !ok {
                errors.insert(
                    "url".into(),
                    "must be an absolute http(s) URL of at most 2048 characters".into(),
                );
            }
        }
        let mut tags = Vec::new();
        match obj.get("tags") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) if items.len() <= MAX_TAGS => {
                for item in items {
                    match item.as_str().map(Tag::parse) {
                        Some(Ok(t)) => {
                            if !tags.contains(&t) {
                                tags.push(t);
                            }
                        }
                        _ => {
                            errors.insert(
                                "tags".into(),
                                format!("must be strings of {}", TagError::RULE),
                            );
                        }
                    }
                }
            }
            Some(_) => {
                errors.insert(
                    "tags".into(),
                    format!("must be a list of at most {MAX_TAGS} tags"),
                );
            }
        }
        let properties = match obj.get("properties") {
            None | Some(serde_json::Value::Null) => BTreeMap::new(),
            Some(serde_json::Value::Object(p))
                if serde_json::to_string(p).map_or(0, |s| s.len()) <= MAX_PROPERTIES_BYTES =>
            {
                p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Some(serde_json::Value::Object(_)) => {
                errors.insert(
                    "properties".into(),
                    format!("must be at most {MAX_PROPERTIES_BYTES} bytes as JSON"),
                );
                BTreeMap::new()
            }
            Some(_) => {
                errors.insert("properties".into(), "must be an object".into());
                BTreeMap::new()
            }
        };
        let lead_id = string("lead_id", &mut errors).and_then(|s| match s.parse::<LeadId>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.insert("lead_id".into(), "must be a lead id (UUID)".into());
                None
            }
        });
        let email = string("email", &mut errors).and_then(|s| match Email::parse(&s) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.insert("email".into(), e.to_string());
                None
            }
        });
        let visitor_id = string("visitor_id", &mut errors);
        if let Some(v) = &visitor_id {
            if !token_ok(v, 128, "-_.:") {
                errors.insert(
                    "visitor_id".into(),
                    "may contain only A-Z, a-z, 0-9 and - _ . : (at most 128)".into(),
                );
            }
        }
        if lead_id.is_none()
            && email.is_none()
            && visitor_id.is_none()
            && !errors
                .keys()
                .any(|k| ["lead_id", "email", "visitor_id"].contains(&k.as_str()))
        {
            errors.insert(
                "lead_id".into(),
                "one of lead_id, email or visitor_id is required".into(),
            );
        }
        match (event_id, event_type, occurred_at) {
            (Some(event_id), Some(event_type), Some(occurred_at)) if errors.is_empty() => {
                Ok(TrackedEvent {
                    event_id,
                    event_type,
                    occurred_at,
                    url,
                    tags,
                    properties,
                    identity: Identity {
                        lead_id,
                        email,
                        visitor_id,
                    },
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_valid_event() {
        let e = TrackedEvent::parse(
            &json!({"event_id": "e-1", "type": "page_view", "occurred_at": "2026-11-22T11:59:00+01:00",
                    "url": "https://example.com/pricing", "tags": ["CRM", "crm", "pricing"], "visitor_id": "v-1",
                    "properties": {"referrer": "google"}}),
            now(),
        )
        .unwrap();
        assert_eq!(e.tags, ["crm", "pricing"]);
        assert_eq!(
            e.occurred_at,
            "2026-11-22T10:59:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(e.identity.anonymous_key().as_deref(), Some("visitor:v-1"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "page_view");
        assert_eq!(serde_json::from_value::<TrackedEvent>(json).unwrap(), e);
    }

    #[test]
    fn every_problem_is_named() {
        let errs = TrackedEvent::parse(
            &json!({"type": "Page View", "occurred_at": "yesterday", "url": "ftp://x", "tags": "crm", "colour": 1}),
            now(),
        )
        .unwrap_err();
        let names: Vec<_> = errs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "colour",
                "event_id",
                "lead_id",
                "occurred_at",
                "tags",
                "type",
                "url"
            ]
        );
    }

    #[test]
    fn times_out_of_range() {
        let future = TrackedEvent::parse(
            &json!({"event_id": "a", "type": "x", "occurred_at": "2026-11-22T12:10:00Z", "visitor_id": "v"}),
            now(),
        );
        assert_eq!(future.unwrap_err()["occurred_at"], "is in the future");
        let old = TrackedEvent::parse(
            &json!({"event_id": "a", "type": "x", "occurred_at": "2026-01-01T00:00:00Z", "visitor_id": "v"}),
            now(),
        );
        assert!(old.unwrap_err()["occurred_at"].starts_with("is older than"));
    }
}
