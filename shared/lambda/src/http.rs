//! JSON answers of the HTTP functions: built as data first, so an answer can be stored and
//! replayed for an idempotency key, then turned into the API Gateway response.

use lambda_http::http::{header, HeaderMap, StatusCode};
use lambda_http::{Body, Response};
use leadflow_domain::ports::{StoreError, StoredResponse};

use crate::lead_update::UpdateError;
use leadflow_domain::FieldErrors;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, json!({ "error": message.into() }))
    }

    /// 413: the body is over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )
    }

    /// 422 naming every invalid field.
    pub fn fields(errors: FieldErrors) -> Self {
        Self::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "the submission has invalid fields", "fields": errors }),
        )
    }

    /// 503 with Retry-After: a dependency is unavailable or busy and nothing was changed, so
    /// the caller may simply retry. `cause` is logged, never answered.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "a dependency is unavailable");
        let mut a = Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is unavailable right now; please retry",
        );
        a.headers.push(("retry-after".into(), "1".into()));
        a
    }

    /// 503 with Retry-After for a batch of tracked events the queue did not take: nothing was
    /// queued, and the event ids make sending the same batch again safe. `cause` is logged.
    pub fn events_not_queued(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "tracked events not queued");
        let mut a = Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "events cannot be queued right now; retry the batch (event ids make that safe)",
        );
        a.headers.push(("retry-after".into(), "1".into()));
        a
    }

    /// 500: something no retry mends (stored data that cannot be read, a bug). The caller
    /// gets an error id to report; the log has the cause under the same id.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let error_id = uuid::Uuid::now_v7();
        tracing::error!(error_id = %error_id, error = %cause, "internal error");
        Self::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": "internal error; report the error_id", "error_id": error_id }),
        )
    }

    /// The answer to a failed store call: 500 for corrupt data, else 503.
    pub fn store_failed(err: &StoreError) -> Self {
        match err {
            StoreError::Corrupt(_) => Self::internal(err),
            _ => Self::unavailable(err),
        }
    }

    /// The answer to a lead update that did not happen, but for the decision's own refusals
    /// (`refused`) and a missing lead, which the caller answers in its own words.
    pub fn update_failed<E>(
        err: UpdateError<E>,
        refused: impl FnOnce(E) -> Self,
        not_found: impl FnOnce() -> Self,
    ) -> Self {
        match err {
            UpdateError::Rejected(e) => refused(e),
            UpdateError::NotFound => not_found(),
            UpdateError::Store(e) => Self::store_failed(&e),
            e @ UpdateError::Contended => Self::unavailable(&e),
        }
    }

    pub fn stored(&self) -> StoredResponse {
        StoredResponse {
            status: self.status.as_u16(),
            headers: self.headers.clone(),
            body: self.body.to_string(),
        }
    }

    /// A stored answer replayed, marked with `replayed_header: true`.
    pub fn from_stored(stored: StoredResponse, replayed_header: &str) -> Self {
        let mut headers = stored.headers;
        headers.push((replayed_header.into(), "true".into()));
        Self {
            status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
            headers,
            body: serde_json::from_str(&stored.body).unwrap_or_default(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder().status(self.status);
        let has_body =
            self.status != StatusCode::SEE_OTHER && self.status != StatusCode::NO_CONTENT;
        if has_body {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = if has_body {
            Body::Text(self.body.to_string())
        } else {
            Body::Empty
        };
        builder.body(body).unwrap_or_else(|_| {
            // Only reachable with a header value that is not valid HTTP; never from client input.
            let a = Self::internal(&"a response header is not valid HTTP");
            let mut r = Response::new(Body::Text(a.body.to_string()));
            *r.status_mut() = a.status;
            r
        })
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of a `Content-Type` header in lower case, unless it names a charset other
/// than UTF-8 (every body leadflow reads is UTF-8).
pub fn media_type(content_type: Option<&str>) -> Option<String> {
    let mut parts = content_type?.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let utf8 = parts
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .all(|(_, v)| v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"));
    utf8.then_some(media)
}

/// A JSON request's body, or the answer that says why it is not one: 413 over `max_bytes`,
/// 415 unless declared as JSON, 400 when it does not parse.
pub fn json_request(
    req: &lambda_http::Request,
    max_bytes: usize,
) -> Result<serde_json::Value, Answer> {
    let body: &[u8] = req.body().as_ref();
    if body.len() > max_bytes {
        return Err(Answer::too_large(max_bytes));
    }
    require_json(req.headers())?;
    json_body(body)
}

/// The 415 for a request whose body is not declared as JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), Answer> {
    match media_type(header_str(headers, "content-type")).as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json",
        )),
    }
}

/// The body parsed as JSON, or the 400 that says why it is not.
pub fn json_body(body: &[u8]) -> Result<serde_json::Value, Answer> {
    serde_json::from_slice(body).map_err(|e| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            format!("malformed body: invalid JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_a_503_to_retry_and_never_blames_the_input() {
        let a = Answer::store_failed(&StoreError::unavailable("connection refused"));
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.headers.contains(&("retry-after".into(), "1".into())));
        let message = a.body["error"].as_str().unwrap();
        assert!(
            !message.contains("connection refused"),
            "the cause is logged, not answered"
        );
        for busy in [
            StoreError::Busy,
            StoreError::VersionConflict { expected: 3 },
        ] {
            assert_eq!(
                Answer::store_failed(&busy).status,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
    }

    #[test]
    fn corrupt_data_is_a_500_with_an_error_id() {
        let a = Answer::store_failed(&StoreError::Corrupt("unknown variant `Zombie`".into()));
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(a.body["error_id"].as_str().is_some_and(|id| id.len() == 36));
        assert!(!a.body.to_string().contains("Zombie"));
        assert!(
            a.headers.is_empty(),
            "no Retry-After: retrying does not mend it"
        );
    }

    #[test]
    fn an_update_that_lost_every_race_is_a_503() {
        let a = Answer::update_failed(
            UpdateError::<()>::Contended,
            |_| unreachable!(),
            || unreachable!(),
        );
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
