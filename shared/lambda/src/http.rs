//! JSON answers of the HTTP functions: built as data first, so an answer can be stored and
//! replayed for an idempotency key, then turned into the API Gateway response.

use lambda_http::http::{header, HeaderMap, StatusCode};
use lambda_http::{Body, Response};
use leadflow_domain::ports::{StoreError, StoredResponse};
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

    /// 503 with retry-after: the caller may try again; nothing was changed.
    pub fn unavailable(err: &StoreError) -> Self {
        tracing::error!(error = %err, "store unavailable");
        let mut a = Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leads cannot be stored right now; please retry",
        );
        a.headers.push(("retry-after".into(), "1".into()));
        a
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
            let mut r = Response::new(Body::Text(r#"{"error":"internal error"}"#.into()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
