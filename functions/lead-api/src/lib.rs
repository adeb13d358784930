//! The sales and read routes of the HTTP API, for sales tools, CRMs and ops (IAM-authorised in
//! template.yaml: callers sign with SigV4): `GET /leads/{id}` (a lead with its timeline),
//! `PATCH /leads/{id}/qualification` (BANT by inside sales) and `GET /segments/{tag}/leads`
//! (the leads interested in a tag), `PUT` / `DELETE /owners/{id}/away` (an owner's vacation:
//! no new leads, and their team's policy for their due leads), `POST /leads/{id}/events`
//! (server-side tracking: behavioural events of that lead, queued for scoring). What landing
//! pages call is capture-form's.

use chrono::{DateTime, NaiveDate, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::sqs::SqsEventQueue;
use leadflow_aws::Clients;
use leadflow_domain::ports::{
    Availability, Away, ConfigStore, LeadStore, ScoreStore, TrackedEventQueue,
};
use leadflow_domain::tag::{Tag, TagError};
use leadflow_domain::tracking::{Batch, Reporter};
use leadflow_domain::{Decision, FieldErrors, LeadId};
use leadflow_lambda::active_config::{ActiveConfig, ActiveConfigError};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::http::{json_request, Answer};
use leadflow_lambda::lead_update::update;
use leadflow_lambda::run::HttpFunction;
use leadflow_lambda::wiring;
use serde_json::json;

/// The largest `PATCH` body accepted (BANT with notes is well under a kilobyte).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The largest batch of events taken, as on the public `POST /events`.
pub const MAX_EVENTS_BODY_BYTES: usize = 128 * 1024;

pub struct LeadApi<S, Q> {
    store: S,
    /// The scoring model's settings the segment listing needs (interest half-life).
    config: ActiveConfig<S>,
    /// The scoring queue server-side tracking feeds.
    queue: Q,
}

impl LeadApi<DynamoStore, SqsEventQueue> {
    /// The table, the active configuration and the scoring queue (`SCORE_EVENT_QUEUE_URL`).
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let store = wiring::store(aws, env)?;
        let queue = SqsEventQueue::new(aws.sqs(), env.required("SCORE_EVENT_QUEUE_URL")?);
        Ok(Self::new(
            store.clone(),
            ActiveConfig::from_env(store, env),
            queue,
        ))
    }
}

/// The paths this function serves (template.yaml routes them here).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/leads/{id}`
    Lead(String),
    /// `/leads/{id}/qualification`
    Qualification(String),
    /// `/segments/{tag}/leads`
    Segment(String),
    /// `/owners/{id}/away`
    Away(String),
    /// `/leads/{id}/events`
    Events(String),
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "leads", id] => Some(Route::Lead((*id).to_owned())),
            ["", "leads", id, "qualification"] => Some(Route::Qualification((*id).to_owned())),
            ["", "segments", tag, "leads"] => Some(Route::Segment((*tag).to_owned())),
            ["", "owners", id, "away"] => Some(Route::Away((*id).to_owned())),
            ["", "leads", id, "events"] => Some(Route::Events((*id).to_owned())),
            _ => None,
        }
    }

    fn allowed_methods(&self) -> &'static [Method] {
        match self {
            Route::Qualification(_) => &[Method::PATCH],
            Route::Events(_) => &[Method::POST],
            Route::Lead(_) | Route::Segment(_) => &[Method::GET],
            Route::Away(_) => &[Method::PUT, Method::DELETE],
        }
    }
}

fn no_such_lead() -> Answer {
    Answer::error(StatusCode::NOT_FOUND, "no such lead")
}

impl<S, Q> HttpFunction for LeadApi<S, Q>
where
    S: LeadStore + ScoreStore + ConfigStore + Availability,
    Q: TrackedEventQueue,
{
    async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await.into_response()
    }
}

impl<S, Q> LeadApi<S, Q>
where
    S: LeadStore + ScoreStore + ConfigStore + Availability,
    Q: TrackedEventQueue,
{
    pub fn new(store: S, config: ActiveConfig<S>, queue: Q) -> Self {
        Self {
            store,
            config,
            queue,
        }
    }

    /// Handles one request as if it arrived at `now`.
    pub async fn handle_at(&self, req: Request, now: DateTime<Utc>) -> Answer {
        let Some(route) = Route::of(req.uri().path()) else {
            return Answer::error(StatusCode::NOT_FOUND, "no such route");
        };
        if !route.allowed_methods().contains(req.method()) {
            let allowed = route
                .allowed_methods()
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut a = Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("allowed: {allowed}"),
            );
            a.headers.push(("allow".into(), allowed));
            return a;
        }
        match &route {
            Route::Lead(id) => self.get_lead(id).await,
            Route::Qualification(id) => self.patch_qualification(id, &req, now).await,
            Route::Segment(tag) => self.segment(tag, &req, now).await,
            Route::Away(owner) if req.method() == Method::DELETE => self.back(owner).await,
            Route::Away(owner) => self.away(owner, &req, now).await,
            Route::Events(id) => self.post_events(id, &req, now).await,
        }
    }

    /// `POST /leads/{id}/events`: events of this lead, reported by a server with credentials
    /// (a marketing tool, the back end of a signed-in app). The batch and answer are the
    /// public `POST /events`'s; every event is the path's lead's, so events name no one else.
    async fn post_events(&self, id: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let body = match json_request(req, MAX_EVENTS_BODY_BYTES) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let Ok(lead_id) = id.parse::<LeadId>() else {
            return no_such_lead();
        };
        // Checked here, so the scorer never meets a lead id that names no lead.
        match self.store.get(lead_id).await {
            Ok(Some(_)) => {}
            Ok(None) => return no_such_lead(),
            Err(e) => return Answer::store_failed(&e),
        }
        let batch = match Batch::parse(&body, Reporter::Server { lead_id }, now) {
            Ok(batch) => batch,
            Err(errors) => return Answer::fields(errors),
        };
        if let Err(err) = self.queue.enqueue(&batch.accepted).await {
            return Answer::events_not_queued(&err);
        }
        tracing::info!(%lead_id, accepted = batch.results.len() - batch.rejected, rejected = batch.rejected, "server-side events received");
        Answer::json(StatusCode::ACCEPTED, batch.answer())
    }

    /// The owner, if the active routing configuration has one by this id.
    async fn owner_known(&self, owner: &str) -> Result<(), Answer> {
        match self.config.get().await {
            Ok(c)
                if c.config
                    .routing
                    .as_ref()
                    .is_some_and(|r| r.owner(owner).is_some()) =>
            {
                Ok(())
            }
            Ok(_) => Err(Answer::error(StatusCode::NOT_FOUND, "no such owner")),
            Err(ActiveConfigError::Store(e)) => Err(Answer::store_failed(&e)),
            Err(e) => Err(Answer::unavailable(&e)),
        }
    }

    /// `PUT /owners/{id}/away`: the owner is away from `from` to `to` (both days included,
    /// UTC dates): no new leads, and their due leads follow the team's `when_owner_away`.
    async fn away(&self, owner: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let body = match json_request(req, MAX_BODY_BYTES) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.owner_known(owner).await {
            return answer;
        }
        let mut errors = FieldErrors::new();
        let date = |name: &str, errors: &mut FieldErrors| match body
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::parse::<NaiveDate>)
        {
            Some(Ok(d)) => Some(d),
            _ => {
                errors.insert(name.into(), "is required: a date such as 2026-12-24".into());
                None
            }
        };
        let (from, to) = (date("from", &mut errors), date("to", &mut errors));
        let by = body
            .get("by")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|b| {
                !b.is_empty() && b.chars().count() <= 128 && !b.chars().any(char::is_control)
            });
        if by.is_none() {
            errors.insert(
                "by".into(),
                "is required: who marks the owner away (at most 128 characters)".into(),
            );
        }
        if let Some(key) = body.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["from", "to", "by"].contains(&k.as_str()))
        }) {
            errors.insert(key.clone(), "unknown field".into());
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                errors.insert("to".into(), "must not be before from".into());
            } else if (t - f).num_days() > 366 {
                errors.insert("to".into(), "must be within a year of from".into());
            }
        }
        let (Some(from), Some(to), Some(by), true) = (from, to, by, errors.is_empty()) else {
            return Answer::fields(errors);
        };
        let away = Away {
            owner: owner.to_owned(),
            from,
            to,
            by: by.to_owned(),
            at: now,
        };
        match self.store.set_away(&away).await {
            Ok(()) => Answer::json(StatusCode::OK, json!(away)),
            Err(e) => Answer::store_failed(&e),
        }
    }

    /// `DELETE /owners/{id}/away`: the owner is back.
    async fn back(&self, owner: &str) -> Answer {
        if let Err(answer) = self.owner_known(owner).await {
            return answer;
        }
        match self.store.clear_away(owner).await {
            Ok(true) => Answer::json(StatusCode::NO_CONTENT, serde_json::Value::Null),
            Ok(false) => Answer::error(StatusCode::NOT_FOUND, "the owner is not marked away"),
            Err(e) => Answer::store_failed(&e),
        }
    }

    /// `GET /leads/{id}`: the lead as stored, with its whole timeline (oldest first).
    async fn get_lead(&self, id: &str) -> Answer {
        let Ok(lead_id) = id.parse::<LeadId>() else {
            return no_such_lead();
        };
        let lead = match self.store.get(lead_id).await {
            Ok(Some(lead)) => lead,
            Ok(None) => return no_such_lead(),
            Err(e) => return Answer::store_failed(&e),
        };
        match self.store.timeline(lead_id).await {
            Ok(timeline) => Answer::json(
                StatusCode::OK,
                json!({ "lead": lead, "timeline": timeline }),
            ),
            Err(e) => Answer::store_failed(&e),
        }
    }

    /// `PATCH /leads/{id}/qualification`: inside sales records BANT.
    async fn patch_qualification(&self, id: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let patch = match json_request(req, MAX_BODY_BYTES) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let Ok(lead_id) = id.parse::<LeadId>() else {
            return no_such_lead();
        };
        let updated = update(&self.store, lead_id, now, |mut lead| {
            let change = lead.record_bant(&patch, now)?;
            Ok::<_, FieldErrors>(Decision::store(lead, change, ()))
        })
        .await;
        match updated {
            Ok(u) => {
                let Some(lead) = u.stored else {
                    return Answer::internal(&"a BANT update stored nothing");
                };
                let bant = lead.bant.as_ref();
                Answer::json(
                    StatusCode::OK,
                    json!({
                        "lead_id": lead_id,
                        "bant": bant,
                        "complete": bant.is_some_and(|b| b.is_complete()),
                        "stage": lead.stage,
                    }),
                )
            }
            Err(e) => Answer::update_failed(e, Answer::fields, no_such_lead),
        }
    }

    /// `GET /segments/{tag}/leads?min_weight=&limit=&cursor=`: leads whose decayed interest in
    /// the tag is at least `min_weight` (default 0.5; one fresh event tagged so weighs 1.0).
    async fn segment(&self, tag: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let mut errors = FieldErrors::new();
        let tag = match Tag::parse(tag) {
            Ok(t) => t.to_string(),
            Err(_) => {
                errors.insert("tag".into(), format!("must be {}", TagError::RULE));
                tag.to_lowercase()
            }
        };
        let params = req.query_string_parameters();
        let min_weight = match params.first("min_weight").map(str::parse::<f64>) {
            None => 0.5,
            Some(Ok(w)) if w.is_finite() && w >= 0.0 => w,
            Some(_) => {
                errors.insert("min_weight".into(), "must be a number of at least 0".into());
                0.0
            }
        };
        let limit = match params.first("limit").map(str::parse::<usize>) {
            None => 50,
            Some(Ok(l)) if (1..=100).contains(&l) => l,
            Some(_) => {
                errors.insert(
                    "limit".into(),
                    "must be a whole number from 1 to 100".into(),
                );
                0
            }
        };
        let cursor = params.first("cursor").map(str::to_owned);
        if cursor
            .as_deref()
            .is_some_and(|c| c.parse::<LeadId>().is_err())
        {
            errors.insert("cursor".into(), "is not a cursor this API returned".into());
        }
        if !errors.is_empty() {
            return Answer::fields(errors);
        }
        let half_life = match self.config.get().await {
            Ok(c) => c.config.scoring.interest_half_life(),
            Err(ActiveConfigError::Store(e)) => return Answer::store_failed(&e),
            Err(e) => {
                tracing::error!(error = %e, "no scoring model for the segment");
                return Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no scoring configuration is active",
                );
            }
        };
        let mut leads = Vec::new();
        let mut next = cursor;
        // Members below the threshold are skipped, so a page may take several reads; a full
        // page stops at its last lead, which is then the cursor.
        'pages: for _ in 0..10 {
            let (members, after) = match self.store.segment_page(&tag, next.as_deref(), limit).await
            {
                Ok(page) => page,
                Err(e) => return Answer::store_failed(&e),
            };
            next = after;
            for m in members {
                let weight = m.weight_at(half_life, now);
                if weight >= min_weight {
                    leads.push(json!({ "lead_id": m.lead_id, "weight": (weight * 1000.0).round() / 1000.0 }));
                    if leads.len() == limit {
                        next = Some(m.lead_id.to_string());
                        break 'pages;
                    }
                }
            }
            if next.is_none() {
                break;
            }
        }
        Answer::json(
            StatusCode::OK,
            json!({ "tag": tag, "min_weight": min_weight, "leads": leads, "next_cursor": next }),
        )
    }
}
