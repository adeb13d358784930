//! A CRM for the tests: a real HTTP server on loopback that records every request and answers
//! as scripted (a status, or no answer at all to force a timeout).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Answers only after this long (longer than the sender's timeout).
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct State {
    script: Vec<Reply>,
    otherwise: Option<Reply>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct CrmReceiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for CrmReceiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.server) == 1 {
            self.server.abort();
        }
    }
}

impl CrmReceiver {
    /// Answers `script` in order, then 200 to everything.
    pub async fn start(script: &[Reply]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            script: script.iter().rev().copied().collect(),
            ..Default::default()
        }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let reply = {
                                let mut s = state.lock().unwrap();
                                s.received.push(Received {
                                    headers,
                                    body,
                                    at: Instant::now(),
                                });
                                let otherwise = s.otherwise.unwrap_or(Reply::Status(200));
                                s.script.pop().unwrap_or(otherwise)
                            };
                            let status = match reply {
                                Reply::Status(s) => s,
                                Reply::Hang(d) => {
                                    tokio::time::sleep(d).await;
                                    200
                                }
                            };
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/crm/leads"),
            state,
            server: Arc::new(server),
        }
    }

    /// What to answer once the script is used up.
    pub fn answer_from_now_on(&self, reply: Reply) {
        let mut s = self.state.lock().unwrap();
        s.script.clear();
        s.otherwise = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests arrived (at most `secs`), and gives them.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.received().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received()
    }
}

/// Checks a delivery's signature with Python's own HMAC and base64 (not leadflow's code), as a
/// receiving CRM following the Standard Webhooks spec would.
pub fn verified_independently(secret: &str, r: &Received) -> bool {
    const CHECK: &str = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, sigs = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret.split("_", 1)[1])
expected = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(expected, s.split(",", 1)[1]) for s in sigs.split() if s.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            CHECK,
            secret,
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&r.body)
        .expect("body written");
    child.wait().expect("python3 exits").success()
}
