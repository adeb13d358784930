//! The outbound HTTP call to a CRM, behind a small trait so the handler can be tested without a
//! network and the real client is built once per execution environment.

use std::future::Future;
use std::time::Duration;

/// How long a CRM gets to answer one delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The CRM answered with this status (2xx: delivered).
    Answered(u16),
    /// No answer within the timeout.
    TimedOut,
    /// No connection (refused, DNS, TLS): the reason, without the body.
    Failed(String),
}

impl PostOutcome {
    pub fn delivered(&self) -> bool {
        matches!(self, PostOutcome::Answered(s) if (200..300).contains(s))
    }

    pub fn describe(&self) -> String {
        match self {
            PostOutcome::Answered(s) => format!("HTTP {s}"),
            PostOutcome::TimedOut => format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()),
            PostOutcome::Failed(e) => e.clone(),
        }
    }
}

pub trait WebhookTransport: Send + Sync {
    fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> impl Future<Output = PostOutcome> + Send;
}

/// reqwest on rustls: connection pooling across warm invocations, a 5 s total timeout.
#[derive(Clone)]
pub struct HttpsTransport {
    client: reqwest::Client,
}

impl HttpsTransport {
    pub fn new() -> Result<Self, reqwest::Error> {
        // The crypto the SDK's rustls uses already; reqwest wants it named (Err: set before).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            // A CRM endpoint answers itself; following redirects would re-send a signed body
            // somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

impl WebhookTransport for HttpsTransport {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> PostOutcome {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.body(body).send().await {
            Ok(resp) => PostOutcome::Answered(resp.status().as_u16()),
            Err(e) if e.is_timeout() => PostOutcome::TimedOut,
            Err(e) => {
                // The chain of causes without the URL's query (it may carry a token).
                let e = e.without_url();
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    source = s.source();
                }
                PostOutcome::Failed(reason)
            }
        }
    }
}
