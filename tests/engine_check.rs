//! An index server ferry does not support is refused, with the engine and
//! version in the message, by `ferry worker` before it takes any work and
//! by `ferry start` before anything changes; `ferry status` shows what it
//! found. The server here answers every request with an Elasticsearch 6.8
//! `GET /` reply (from tests/engines/); real ones cover the rest.

mod support;

use std::time::Duration;
use support::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers anything with `body` (200, JSON); its URL.
async fn answering(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_unsupported_engine_is_refused_by_the_worker_and_by_start() {
    let mut env = TestEnv::new("eng").await;
    let root = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/engines/elasticsearch-6.8/root.json"
    ))
    .expect("fixture");
    env.settings.index_url = answering(root).await;
    let refused = "Elasticsearch 6.8.23 is not supported";

    let worker = tokio::time::timeout(Duration::from_secs(60), env.cli(&["worker"]))
        .await
        .expect("the worker exits instead of waiting");
    let (code, _, err) = worker;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(refused), "{err}");
    assert!(
        err.contains(&env.settings.index_url),
        "names the server: {err}"
    );

    let (code, _, err) = env.cli(&["start"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(refused), "{err}");
}
