//! Behavioural events as a website or app reports them, validated: a browser on the public
//! `POST /events`, or a server with credentials on `POST /leads/{id}/events`. Who reports
//! decides what may name a lead: a browser only through a signed visitor token
//! ([`crate::visitor_token`]), a server through the route's lead id. A bare `lead_id` or `email`
//! from a browser names no one.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::fields::FieldErrors;
use crate::lead::LeadId;
use crate::scoring::BehaviourEvent;
use crate::tag::{Tag, TagError};
use crate::visitor_token::{VisitorToken, VisitorTokenKey, VISITOR_TOKEN_FIELD};

pub const MAX_EVENTS_PER_BATCH: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_PROPERTIES_BYTES: usize = 2048;
/// Clocks of browsers drift; an event may claim to be this far in the future.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Older events are not worth scoring (their points have decayed) and hint at a replay.
pub const MAX_EVENT_AGE: Duration = Duration::days(90);

/// Who did it, as queued for scoring: a lead (named by a checked visitor token or an authorised
/// server-side call), or an anonymous visitor (cookie id). `email` is what older queue messages
/// may still carry; neither route sets it any more.
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

/// Who reports the events, which decides what may identify a lead.
#[derive(Debug, Clone, Copy)]
pub enum Reporter<'a> {
    /// A browser on the public route: a lead only through a visitor token, checked with `key`
    /// (`None`: no key at hand, so a token cannot be checked and its event is refused).
    Page { key: Option<&'a VisitorTokenKey> },
    /// A server-side caller with credentials, on the route of this lead.
    Server { lead_id: LeadId },
}

/// On the public route, what used to name a lead and no longer may.
const UNPROVEN: &str = "names no lead on this public route: send the visitor_token of the capture answer (server side: POST /leads/{id}/events)";

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

    /// Validates one event of a batch as `reporter` sent it, at the time `now` it arrived.
    pub fn parse(
        value: &serde_json::Value,
        reporter: Reporter<'_>,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(obj) = value.as_object() else {
            errors.insert("event".into(), "must be an object".into());
            return Err(errors);
        };
        const KNOWN: [&str; 10] = [
            "event_id",
            "type",
            "occurred_at",
            "url",
            "tags",
            "properties",
            "lead_id",
            "email",
            "visitor_id",
            VISITOR_TOKEN_FIELD,
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
        let visitor_id = string("visitor_id", &mut errors);
        if let Some(v) = &visitor_id {
            if !token_ok(v, 128, "-_.:") {
                errors.insert(
                    "visitor_id".into(),
                    "may contain only A-Z, a-z, 0-9 and - _ . : (at most 128)".into(),
                );
            }
        }
        let token = string(VISITOR_TOKEN_FIELD, &mut errors);
        let lead_id = match reporter {
            Reporter::Server { lead_id } => {
                for name in ["lead_id", "email", "visitor_id", VISITOR_TOKEN_FIELD] {
                    if obj.get(name).is_some_and(|v| !v.is_null()) {
                        errors.insert(
                            name.into(),
                            "is not taken here: the lead is the one in the path".into(),
                        );
                    }
                }
                Some(lead_id)
            }
            Reporter::Page { key } => match (token, key) {
                (Some(token), Some(key)) => match VisitorToken::verify(key, &token, now) {
                    Ok(token) => Some(token.lead_id()),
                    Err(e) => {
                        errors.insert(VISITOR_TOKEN_FIELD.into(), e.to_string());
                        None
                    }
                },
                (Some(_), None) => {
                    errors.insert(
                        VISITOR_TOKEN_FIELD.into(),
                        "cannot be checked right now; retry later".into(),
                    );
                    None
                }
                (None, _) => {
                    let named = |name: &str| obj.get(name).is_some_and(|v| !v.is_null());
                    if visitor_id.is_none() && !errors.contains_key("visitor_id") {
                        // A bare lead id or e-mail alone: told plainly rather than kept
                        // under nobody.
                        let claimed: Vec<&str> = ["lead_id", "email"]
                            .into_iter()
                            .filter(|n| named(n))
                            .collect();
                        for name in &claimed {
                            errors.insert((*name).into(), UNPROVEN.into());
                        }
                        if claimed.is_empty() && !errors.contains_key(VISITOR_TOKEN_FIELD) {
                            errors.insert(
                                "visitor_id".into(),
                                "one of visitor_token or visitor_id is required".into(),
                            );
                        }
                    }
                    None
                }
            },
        };
        let visitor_id = match reporter {
            Reporter::Server { .. } => None,
            Reporter::Page { .. } => visitor_id,
        };
        match (event_id, event_type, occurred_at) {
            (Some(event_id), Some(event_type), Some(occurred_at)) if errors.is_empty() => {
                Ok(TrackedEvent {
                    event_id,
                    event_type,
                    occurred_at,
                    url,
                    tags,
                    properties,
                    // A bare lead_id or email beside a token or visitor id is not kept: it proves
                    // nothing, and an e-mail key would let anyone seed a future lead's history.
                    identity: Identity {
                        lead_id,
                        email: None,
                        visitor_id,
                    },
                })
            }
            _ => Err(errors),
        }
    }
}

/// A batch of events as one request reported it: the events to queue (each event id once) and
/// the fate of every item, as answered (`202`).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub accepted: Vec<TrackedEvent>,
    pub results: Vec<serde_json::Value>,
    pub rejected: usize,
}

impl Batch {
    /// Validates `{"events": [...]}` item by item; only the list itself can fail the batch.
    pub fn parse(
        body: &serde_json::Value,
        reporter: Reporter<'_>,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldErrors> {
        let items = Self::items(body).ok_or_else(|| {
            FieldErrors::from([(
                "events".into(),
                format!("must be a list of 1 to {MAX_EVENTS_PER_BATCH} events"),
            )])
        })?;
        let mut batch = Batch {
            accepted: Vec::new(),
            results: Vec::with_capacity(items.len()),
            rejected: 0,
        };
        for (index, item) in items.iter().enumerate() {
            let event_id = item.get("event_id").cloned().unwrap_or_default();
            match TrackedEvent::parse(item, reporter, now) {
                Ok(event) => {
                    // A repeated event_id within the batch is the same event.
                    if !batch.accepted.iter().any(|a| a.event_id == event.event_id) {
                        batch.accepted.push(event);
                    }
                    batch.results.push(
                        serde_json::json!({ "index": index, "event_id": event_id, "status": "accepted" }),
                    );
                }
                Err(errors) => {
                    batch.rejected += 1;
                    batch.results.push(serde_json::json!({ "index": index, "event_id": event_id, "status": "rejected", "errors": errors }));
                }
            }
        }
        Ok(batch)
    }

    fn items(body: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
        body.get("events")
            .and_then(|e| e.as_array())
            .filter(|items| !items.is_empty() && items.len() <= MAX_EVENTS_PER_BATCH)
    }

    /// Whether some event of the request carries a visitor token (the key is needed then).
    pub fn has_tokens(body: &serde_json::Value) -> bool {
        Self::items(body).is_some_and(|items| {
            items
                .iter()
                .any(|i| i.get(VISITOR_TOKEN_FIELD).is_some_and(|t| !t.is_null()))
        })
    }

    /// The answer to the reporter.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.results.len() - self.rejected,
            "rejected": self.rejected,
            "results": self.results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn key() -> VisitorTokenKey {
        VisitorTokenKey::parse("test-key-of-at-least-thirty-two-bytes-000").unwrap()
    }

    fn page(value: serde_json::Value) -> Result<TrackedEvent, FieldErrors> {
        TrackedEvent::parse(&value, Reporter::Page { key: Some(&key()) }, now())
    }

    fn event(identity: serde_json::Value) -> serde_json::Value {
        let mut e =
            json!({"event_id": "e-1", "type": "page_view", "occurred_at": "2026-11-22T11:00:00Z"});
        e.as_object_mut()
            .unwrap()
            .extend(identity.as_object().unwrap().clone());
        e
    }

    #[test]
    fn a_valid_event() {
        let e = page(
            json!({"event_id": "e-1", "type": "page_view", "occurred_at": "2026-11-22T11:59:00+01:00",
                    "url": "https://example.com/pricing", "tags": ["CRM", "crm", "pricing"], "visitor_id": "v-1",
                    "properties": {"referrer": "google"}}),
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
        let errs = page(
            json!({"type": "Page View", "occurred_at": "yesterday", "url": "ftp://x", "tags": "crm", "colour": 1}),
        )
        .unwrap_err();
        let names: Vec<_> = errs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "colour",
                "event_id",
                "occurred_at",
                "tags",
                "type",
                "url",
                "visitor_id"
            ]
        );
    }

    #[test]
    fn times_out_of_range() {
        let future = page(
            json!({"event_id": "a", "type": "x", "occurred_at": "2026-11-22T12:10:00Z", "visitor_id": "v"}),
        );
        assert_eq!(future.unwrap_err()["occurred_at"], "is in the future");
        let old = page(
            json!({"event_id": "a", "type": "x", "occurred_at": "2026-01-01T00:00:00Z", "visitor_id": "v"}),
        );
        assert!(old.unwrap_err()["occurred_at"].starts_with("is older than"));
    }

    #[test]
    fn a_page_names_a_lead_only_with_a_token() {
        let lead = LeadId::new_at(now());
        let token = VisitorToken::issue(&key(), lead, now());
        let e = page(event(json!({"visitor_token": token.as_str()}))).unwrap();
        assert_eq!(e.identity.lead_id, Some(lead));
        // The token decides, whatever lead_id or email the page adds.
        let other = LeadId::new_at(now());
        let e = page(event(json!({"visitor_token": token.as_str(), "lead_id": other.to_string(), "email": "x@example.com", "visitor_id": "v-1"}))).unwrap();
        assert_eq!(
            e.identity,
            Identity {
                lead_id: Some(lead),
                email: None,
                visitor_id: Some("v-1".into())
            }
        );
    }

    #[test]
    fn a_bare_lead_id_or_email_from_a_page_names_no_one() {
        let lead = LeadId::new_at(now()).to_string();
        // Beside a visitor id: kept as the visitor's, anonymous.
        let e = page(event(
            json!({"lead_id": lead, "email": "anna@example.com", "visitor_id": "v-1"}),
        ))
        .unwrap();
        assert_eq!(
            e.identity,
            Identity {
                lead_id: None,
                email: None,
                visitor_id: Some("v-1".into())
            }
        );
        assert_eq!(e.identity.anonymous_key().as_deref(), Some("visitor:v-1"));
        // Alone: refused, naming the field.
        let errs = page(event(json!({"lead_id": lead}))).unwrap_err();
        assert_eq!(errs.keys().collect::<Vec<_>>(), ["lead_id"]);
        assert!(errs["lead_id"].contains("visitor_token"));
        let errs = page(event(json!({"email": "anna@example.com"}))).unwrap_err();
        assert_eq!(errs.keys().collect::<Vec<_>>(), ["email"]);
    }

    #[test]
    fn forged_expired_or_uncheckable_tokens_refuse_the_event() {
        let lead = LeadId::new_at(now());
        let other = VisitorTokenKey::parse("someone-elses-key-of-thirty-two-bytes-00").unwrap();
        let forged = VisitorToken::issue(&other, lead, now());
        let errs = page(event(
            json!({"visitor_token": forged.as_str(), "visitor_id": "v-1"}),
        ))
        .unwrap_err();
        assert_eq!(errs["visitor_token"], "has an invalid signature");
        let old = VisitorToken::issue(
            &key(),
            lead,
            now() - crate::visitor_token::VISITOR_TOKEN_TTL - Duration::seconds(1),
        );
        let errs = page(event(json!({"visitor_token": old.as_str()}))).unwrap_err();
        assert!(errs["visitor_token"].starts_with("has expired"));
        let errs = page(event(json!({"visitor_token": "not-a-token"}))).unwrap_err();
        assert_eq!(errs.keys().collect::<Vec<_>>(), ["visitor_token"]);
        let fresh = VisitorToken::issue(&key(), lead, now());
        let errs = TrackedEvent::parse(
            &event(json!({"visitor_token": fresh.as_str()})),
            Reporter::Page { key: None },
            now(),
        )
        .unwrap_err();
        assert!(errs.contains_key("visitor_token"));
    }

    #[test]
    fn a_batch_answers_every_item_and_queues_each_event_once() {
        let lead = LeadId::new_at(now());
        let token = VisitorToken::issue(&key(), lead, now());
        let body = json!({"events": [
            event(json!({"visitor_token": token.as_str()})),
            event(json!({"visitor_id": "v-1"})),
            event(json!({"lead_id": lead.to_string()})),
            json!("not an event")
        ]});
        assert!(Batch::has_tokens(&body));
        let batch = Batch::parse(&body, Reporter::Page { key: Some(&key()) }, now()).unwrap();
        // e-1 twice: the first one counts.
        assert_eq!(batch.accepted.len(), 1);
        assert_eq!(batch.accepted[0].identity.lead_id, Some(lead));
        let answer = batch.answer();
        assert_eq!(
            (answer["accepted"].clone(), answer["rejected"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(answer["results"][2]["status"], "rejected");
        assert!(answer["results"][2]["errors"]["lead_id"].is_string());
        assert!(!Batch::has_tokens(
            &json!({"events": [event(json!({"visitor_id": "v"}))]})
        ));
        for bad in [
            json!({}),
            json!({"events": []}),
            json!({"events": vec![json!({}); 101]}),
        ] {
            assert!(Batch::parse(&bad, Reporter::Page { key: None }, now())
                .unwrap_err()
                .contains_key("events"));
        }
    }

    #[test]
    fn a_server_names_the_lead_of_its_route_and_nothing_else() {
        let lead = LeadId::new_at(now());
        let server = Reporter::Server { lead_id: lead };
        let e = TrackedEvent::parse(&event(json!({})), server, now()).unwrap();
        assert_eq!(
            e.identity,
            Identity {
                lead_id: Some(lead),
                email: None,
                visitor_id: None
            }
        );
        let errs = TrackedEvent::parse(
            &event(json!({"lead_id": LeadId::new_at(now()).to_string(), "email": "a@b.de"})),
            server,
            now(),
        )
        .unwrap_err();
        assert_eq!(errs.keys().collect::<Vec<_>>(), ["email", "lead_id"]);
    }
}
