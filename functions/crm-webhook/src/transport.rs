//! The outbound HTTP call to a CRM, behind a small trait so the handler can be tested without a
//! network and the real client is built once per execution environment.
//!
//! Outside local mode the client sends only to public addresses: the endpoint is checked as
//! configured (https, no local host name, no private IP literal), and the name is resolved by
//! [`PublicOnly`], which checks every address before the connection is made to one of exactly
//! those addresses: a DNS answer that changes between a check and the connect (rebinding)
//! cannot move the delivery into the private network.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use leadflow_domain::endpoint::{check_address, check_endpoint, EndpointError, EndpointMode};

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
    /// Not sent: the endpoint or an address it resolves to is not allowed (not https, not
    /// public). Trying again cannot help: the delivery is parked on the DLQ at once.
    Refused(EndpointError),
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
            PostOutcome::Refused(e) => format!("not sent: the endpoint {e}"),
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

/// Resolves a host name to its addresses (the system resolver; a table in tests).
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver (getaddrinfo, as reqwest's own default).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// reqwest's resolver outside local mode: every address a name resolves to must be public,
/// else the name is refused as a whole, and the connection goes to the addresses checked here.
pub struct PublicOnly {
    lookup: Lookup,
}

impl PublicOnly {
    pub fn new(lookup: Lookup) -> Self {
        Self { lookup }
    }
}

/// The resolver's refusal, found again in the error reqwest returns.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct RefusedAddress(EndpointError);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let addresses = lookup(host.clone()).await?;
            for ip in &addresses {
                check_address(&host, *ip, EndpointMode::Public).map_err(RefusedAddress)?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// reqwest on rustls: connection pooling across warm invocations, a 5 s total timeout.
///
/// The client is built on the first delivery, not at start: building it loads the root
/// certificates, which was most of crm-webhook's init time (docs/performance.md, "Cold start").
#[derive(Clone)]
pub struct HttpsTransport {
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    lookup: Lookup,
    mode: EndpointMode,
}

impl HttpsTransport {
    /// The transport for `mode`, resolving with the system resolver.
    pub fn new(mode: EndpointMode) -> Self {
        Self::with_lookup(mode, system_lookup())
    }

    pub fn with_lookup(mode: EndpointMode, lookup: Lookup) -> Self {
        Self {
            client: Arc::default(),
            lookup,
            mode,
        }
    }

    /// The client, built once (a failure to build is kept too: it would fail again).
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                build_client(self.mode, self.lookup.clone())
                    .map_err(|e| format!("the HTTPS client could not be built: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn build_client(mode: EndpointMode, lookup: Lookup) -> Result<reqwest::Client, reqwest::Error> {
    // The crypto the SDK's rustls uses already; reqwest wants it named (Err: set before).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .connect_timeout(DELIVERY_TIMEOUT)
        // A CRM endpoint answers itself; following redirects would re-send a signed body
        // somewhere nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")));
    if mode == EndpointMode::Public {
        // A proxy would resolve the name itself, past the check.
        builder = builder
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly::new(lookup)));
    }
    builder.build()
}

impl WebhookTransport for HttpsTransport {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> PostOutcome {
        // IP literals never reach the resolver: they are checked here, with the scheme.
        if let Err(e) = check_endpoint(url, self.mode) {
            return PostOutcome::Refused(e);
        }
        let client = match self.client() {
            Ok(client) => client,
            Err(reason) => return PostOutcome::Failed(reason),
        };
        let mut req = client.post(url).header("content-type", "application/json");
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
                    if let Some(RefusedAddress(refused)) = s.downcast_ref::<RefusedAddress>() {
                        return PostOutcome::Refused(refused.clone());
                    }
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    source = s.source();
                }
                PostOutcome::Failed(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_to(addresses: &'static [&'static str]) -> Lookup {
        Arc::new(move |_host: String| {
            Box::pin(async move { Ok(addresses.iter().map(|a| a.parse().unwrap()).collect()) })
        })
    }

    /// A listener on 127.0.0.1 and whether anything connected to it within a moment.
    async fn listener() -> (tokio::net::TcpListener, u16) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    async fn connected(l: &tokio::net::TcpListener) -> bool {
        tokio::time::timeout(Duration::from_millis(300), l.accept())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_private_address_is_refused_before_any_connection() {
        let (l, port) = listener().await;
        // A public name whose DNS answer points into this machine (rebinding, or a bad record).
        let t = HttpsTransport::with_lookup(EndpointMode::Public, lookup_to(&["127.0.0.1"]));
        let outcome = t
            .post(
                &format!("https://crm.example.com:{port}/in"),
                &[],
                b"{}".to_vec(),
            )
            .await;
        assert!(
            matches!(
                &outcome,
                PostOutcome::Refused(EndpointError::ResolvesNotPublic { host, .. }) if host == "crm.example.com"
            ),
            "{outcome:?}"
        );
        assert!(!outcome.delivered());
        assert!(
            !connected(&l).await,
            "nothing may reach the private address"
        );
        // One private address among public ones is enough to refuse the name.
        let t = HttpsTransport::with_lookup(
            EndpointMode::Public,
            lookup_to(&["93.184.215.14", "169.254.169.254"]),
        );
        let outcome = t
            .post(&format!("https://crm.example.com:{port}/in"), &[], vec![])
            .await;
        assert!(
            outcome.describe().contains("link-local"),
            "{}",
            outcome.describe()
        );
    }

    #[tokio::test]
    async fn ip_literals_and_plain_http_are_refused_outside_local_mode() {
        let (l, port) = listener().await;
        let t = HttpsTransport::with_lookup(EndpointMode::Public, lookup_to(&[]));
        for url in [
            format!("http://127.0.0.1:{port}/in"),
            format!("https://127.0.0.1:{port}/in"),
            format!("https://[::ffff:127.0.0.1]:{port}/in"),
            format!("https://localhost:{port}/in"),
        ] {
            let outcome = t.post(&url, &[], vec![]).await;
            assert!(
                matches!(outcome, PostOutcome::Refused(_)),
                "{url}: {outcome:?}"
            );
        }
        assert!(!connected(&l).await);
    }

    /// The client (and its root certificates) is built by the first delivery, not at start,
    /// and then kept: clones share it.
    #[tokio::test]
    async fn the_client_is_built_on_the_first_delivery_and_shared() {
        let t = HttpsTransport::with_lookup(EndpointMode::Local, lookup_to(&[]));
        let clone = t.clone();
        assert!(t.client.get().is_none(), "nothing built at start");
        let (l, port) = listener().await;
        drop(l);
        let _ = t
            .post(&format!("http://127.0.0.1:{port}/in"), &[], vec![])
            .await;
        assert!(
            matches!(t.client.get(), Some(Ok(_))),
            "built by the first post"
        );
        assert!(clone.client.get().is_some(), "and shared with clones");
    }

    #[tokio::test]
    async fn local_mode_sends_to_this_machine() {
        let (l, port) = listener().await;
        let t = HttpsTransport::with_lookup(EndpointMode::Local, lookup_to(&[]));
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let outcome = t
            .post(&format!("http://127.0.0.1:{port}/in"), &[], b"{}".to_vec())
            .await;
        assert_eq!(outcome, PostOutcome::Answered(204));
        server.await.unwrap();
    }
}
