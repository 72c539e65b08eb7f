//! A `ferry worker` with its admin server on a free loopback port, and an
//! HTTP client for it: probes, the JSON API, `/metrics`.

use super::{eventually, free_port, metrics, TestEnv, Worker};
use serde_json::Value;
use std::time::Duration;

/// A worker with its admin server, and an HTTP client for it.
pub struct Admin {
    /// The worker process.
    pub worker: Worker,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client with a timeout, never through a proxy.
    pub http: reqwest::Client,
}

impl Admin {
    /// Starts a worker with its admin server on a free port (and `extra`
    /// variables), without waiting for it.
    pub fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> Admin {
        let bind = format!("127.0.0.1:{}", free_port());
        let mut vars = vec![("FERRY_ADMIN_BIND", bind.as_str())];
        vars.extend_from_slice(extra);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Admin {
            worker: env.spawn_worker_with(&vars),
            base: format!("http://{bind}"),
            http,
        }
    }

    /// Starts a worker as [`Admin::spawn`] and waits until it answers `/healthz`.
    pub async fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Admin {
        let admin = Admin::spawn(env, extra);
        admin.wait_status("/healthz", 200).await;
        admin
    }

    /// The URL of `path` on this admin server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The status of `GET path`; None while nothing answers.
    pub async fn status(&self, path: &str) -> Option<u16> {
        let r = self.http.get(self.url(path)).send().await.ok()?;
        Some(r.status().as_u16())
    }

    /// Waits (up to a minute) until `GET path` answers `want`.
    pub async fn wait_status(&self, path: &str, want: u16) {
        eventually(
            Duration::from_secs(60),
            &format!("GET {path} = {want}"),
            || async { (self.status(path).await == Some(want)).then_some(()) },
        )
        .await
    }

    /// `GET path` with query pairs (encoded); returns status and JSON body.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut url = url::Url::parse(&self.url(path)).expect("url");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let r = self.http.get(url).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    /// `POST path` with an optional bearer token and a JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.post_raw(path, token, body).await
    }

    /// `POST path` with an optional bearer token and a body of any type;
    /// the answer as JSON, or as a JSON string when it is not JSON.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((content_type, b)) = body {
            req = req.header("content-type", content_type).body(b);
        }
        let r = req.send().await.expect("POST");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, headers)
    }

    /// `/metrics`, parsed; None while the server is not up (or once it is gone).
    pub async fn metrics(&self) -> Option<metrics::Scrape> {
        let r = self.http.get(self.url("/metrics")).send().await.ok()?;
        Some(metrics::parse(&r.text().await.ok()?))
    }

    /// The sum of the samples of `name` whose labels include all of
    /// `labels`; 0 while the server is not up, or once it is gone.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.metrics().await {
            Some(m) => metrics::sum(&m, name, labels) as u64,
            None => 0,
        }
    }
}
