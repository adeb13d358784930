//! The emulator's DynamoDB process speaks enough HTTP/1.1 for SDK clients and keeps their
//! connections open (infra/local/py/emulator.py, `KeepAliveServer`). These tests talk to it
//! with raw HTTP, so that they see what the SDK's connection pool relies on.

use std::time::Duration;

use leadflow_local::endpoints::ServiceEndpoints;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::emulator_endpoint;

/// The DynamoDB process's address, or `None` when one endpoint serves everything (LocalStack,
/// or `--single-process`): then there is no server of ours to test.
async fn dynamodb_process() -> Option<String> {
    let main = emulator_endpoint();
    let endpoints = ServiceEndpoints::discover(main).await;
    let dynamodb = endpoints.of("DynamoDB");
    (dynamodb != endpoints.main()).then(|| {
        dynamodb
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    })
}

fn list_tables(host: &str, extra_headers: &str) -> String {
    let body = "{}";
    format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20261202/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0\r\n\
         {extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One answer from `stream`: status line, headers (lower-cased names) and body.
async fn read_answer(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> (String, Vec<(String, String)>, Vec<u8>) {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap_or_default().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if status.contains(" 100 ") {
                buffer.drain(..end + 4);
                return (status, headers, Vec::new());
            }
            if buffer.len() >= end + 4 + length {
                let body = buffer[end + 4..end + 4 + length].to_vec();
                buffer.drain(..end + 4 + length);
                return (status, headers, body);
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "the server closed the connection before answering");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dynamodb_process_answers_several_requests_on_one_connection() {
    let Some(host) = dynamodb_process().await else {
        return;
    };
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let mut buffer = Vec::new();
    // Two requests sent back to back (pipelined), then a third after the answers.
    let two = format!("{}{}", list_tables(&host, ""), list_tables(&host, ""));
    stream.write_all(two.as_bytes()).await.unwrap();
    for _ in 0..2 {
        let (status, headers, body) = read_answer(&mut stream, &mut buffer).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(headers.contains(&("connection".into(), "keep-alive".into())));
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(answer["TableNames"].is_array(), "{answer}");
    }
    stream
        .write_all(list_tables(&host, "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (status, headers, _) = read_answer(&mut stream, &mut buffer).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains(&("connection".into(), "close".into())));
    assert!(closed_by_server(&mut stream).await, "closed as asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dynamodb_process_honours_expect_continue_and_refuses_chunked_bodies() {
    let Some(host) = dynamodb_process().await else {
        return;
    };
    // Expect: 100-continue: the server says continue before the body is sent.
    let request = list_tables(&host, "Expect: 100-continue\r\n");
    let (head, body) = request.split_at(request.find("\r\n\r\n").unwrap() + 4);
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let mut buffer = Vec::new();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut buffer).await;
    assert!(status.starts_with("HTTP/1.1 100"), "{status}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut buffer).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // A chunked body is refused, and the connection closed, rather than misread.
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let mut buffer = Vec::new();
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut buffer).await;
    assert!(status.starts_with("HTTP/1.1 411"), "{status}");
    assert!(closed_by_server(&mut stream).await);
}

/// A client that connects and says nothing holds up nobody: the server answers the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_does_not_block_the_dynamodb_process() {
    let Some(host) = dynamodb_process().await else {
        return;
    };
    let mut silent = TcpStream::connect(&host).await.expect("connect");
    silent
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let mut buffer = Vec::new();
    stream
        .write_all(list_tables(&host, "").as_bytes())
        .await
        .unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut buffer).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    drop(silent);
}
