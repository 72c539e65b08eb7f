//! A fault-injecting HTTP proxy for tests: sits between ferry and a real
//! service on loopback and, per request, passes it through, delays it,
//! answers with an error status, or cuts the connection. One request per
//! connection (`Connection: close` both ways) keeps the parsing trivial.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward unchanged.
    Pass,
    /// Forward after a delay.
    Delay(Duration),
    /// Answer every request with this status and an index-style error body.
    Status(u16),
    /// Answer requests whose path contains this text with this status;
    /// pass the others (e.g. only `_bulk`: migration writes, not edits).
    StatusOnPath(String, u16),
    /// Answer requests carrying an `X-Amz-Target` header (DynamoDB) with a
    /// throttling error; pass the others.
    DynamoThrottle,
    /// Close the connection without answering.
    Cut,
    /// Hold the request numbered this (counting every request the proxy
    /// has seen, from 1) and all later ones until the mode changes; pass
    /// the earlier ones. Places a request after some event, exactly.
    HoldFrom(u64),
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicU64>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let proxy = Proxy {
            url,
            mode: Arc::new(Mutex::new(Mode::Pass)),
            requests: Arc::new(AtomicU64::new(0)),
        };
        let (p, upstream) = (proxy.clone(), upstream.to_string());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, upstream) = (p.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = p.serve(client, &upstream).await;
                });
            }
        });
        proxy
    }

    /// Changes what the proxy does from now on.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    async fn serve(&self, mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
        let Some(request) = read_request(&mut client).await? else {
            return Ok(());
        };
        let number = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        while matches!(*self.mode.lock().unwrap(), Mode::HoldFrom(n) if number >= n) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Cut => return Ok(()),
            Mode::Status(code) => return client.write_all(&error_response(code)).await,
            Mode::DynamoThrottle if has_header(&request, "x-amz-target") => {
                let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected throttling"}"#;
                let head = format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                client.write_all(head.as_bytes()).await?;
                return client.write_all(body).await;
            }
            Mode::StatusOnPath(path, code) if request_line(&request).contains(&path) => {
                return client.write_all(&error_response(code)).await
            }
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass | Mode::DynamoThrottle | Mode::StatusOnPath(..) | Mode::HoldFrom(_) => {}
        }
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(&with_close(&request)).await?;
        let mut response = Vec::new();
        up.read_to_end(&mut response).await?;
        client.write_all(&with_close(&response)).await
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn request_line(msg: &[u8]) -> String {
    let end = msg.iter().position(|b| *b == b'\r').unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

fn has_header(msg: &[u8], name: &str) -> bool {
    let end = head_end(msg).unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end])
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
}

/// Reads one request: head, then a body of `content-length` bytes.
async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(Some(buf));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The message with its `Connection` header replaced by `close`.
fn with_close(msg: &[u8]) -> Vec<u8> {
    let Some(end) = head_end(msg) else {
        return msg.to_vec();
    };
    let head = String::from_utf8_lossy(&msg[..end - 4]);
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("connection: close");
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&msg[end..]);
    out
}

fn error_response(code: u16) -> Vec<u8> {
    let kind = if code == 429 {
        "es_rejected_execution_exception"
    } else {
        "unavailable_shards_exception"
    };
    let body = format!(
        r#"{{"error":{{"type":"{kind}","reason":"injected by the test proxy"}},"status":{code}}}"#
    );
    format!("HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

impl Proxy {
    /// Starts a proxy in front of a service URL (`http://host:port`).
    pub async fn before(url: &str) -> Proxy {
        let upstream = url.trim_start_matches("http://").trim_end_matches('/');
        Proxy::start(upstream).await
    }

    /// Passes the next `n` requests and holds the one after (and every
    /// later one) until [`Proxy::release`].
    pub fn hold_after(&self, n: u64) -> Held<'_> {
        let held = self.requests() + n + 1;
        self.set(Mode::HoldFrom(held));
        Held { proxy: self, held }
    }

    /// Lets held requests through.
    pub fn release(&self) {
        self.set(Mode::Pass);
    }
}

/// A hold set by [`Proxy::hold_after`].
pub struct Held<'a> {
    proxy: &'a Proxy,
    held: u64,
}

impl Held<'_> {
    /// Waits until the held request has arrived (panics after two minutes).
    pub async fn arrived(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.proxy.requests() < self.held {
            assert!(
                std::time::Instant::now() < deadline,
                "request {} never reached the proxy ({} did)",
                self.held,
                self.proxy.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
