//! Shared test support: every test gets uniquely named indices, aliases,
//! queues, bucket and tables on the real local stack (started by
//! `infra/test.sh`), so tests run in parallel and never see each other's data.
#![allow(dead_code)]

pub mod proxy;

use ferry::config::Settings;
use ferry::queue::Broker;
use ferry::types::{DocId, IndexName};
use ferry::worker::Ctx;
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One isolated environment on the local stack.
pub struct TestEnv {
    /// Settings with unique names.
    pub settings: Settings,
    /// Clients built from them.
    pub ctx: Ctx,
    /// The unique name stem.
    pub name: String,
}

/// A short unique name stem: `<tag><8 hex>`, lower case.
pub fn unique(tag: &str) -> String {
    format!(
        "{}{}",
        tag.to_lowercase(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

impl TestEnv {
    /// A fresh environment: its own aliases, index prefix, queue prefix,
    /// bucket and tables (created here), with quick timings for tests.
    pub async fn new(tag: &str) -> TestEnv {
        let name = unique(tag);
        let mut s = Settings::from_env().expect("settings from the environment");
        let n =
            |suffix: &str| IndexName::parse(format!("{name}_{suffix}")).expect("valid alias name");
        s.current_alias = n("Current");
        s.migration_alias = n("Migration");
        s.historical_alias = n("Historical");
        s.paused_alias = n("PAUSED");
        s.preview_alias = n("PREVIEW");
        s.index_prefix = name.clone();
        s.queue_prefix = name.clone();
        s.s3_bucket = format!("ferry-{name}");
        s.dynamo_table = format!("ferry-{name}-edits");
        s.lease_table = format!("ferry-{name}-leases");
        s.topology = concat!(env!("CARGO_MANIFEST_DIR"), "/queues/topology.json").into();
        s.mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/mapping.json").into();
        s.admin_bind = "off".into();
        s.retry_budget = Duration::from_secs(5);
        s.scan_interval = Duration::from_millis(300);
        s.lease_ttl = Duration::from_secs(3);
        s.state_ttl = Duration::from_millis(200);
        s.shutdown_deadline = Duration::from_secs(10);
        ferry::stores::setup::ensure_all(&s)
            .await
            .expect("bucket and tables");
        let ctx = Ctx::new(s.clone()).await.expect("clients");
        TestEnv {
            settings: s,
            ctx,
            name,
        }
    }

    /// A broker connection (declares this environment's topology).
    pub async fn broker(&self) -> Broker {
        Broker::connect(&self.settings).await.expect("broker")
    }

    /// Seeds `count` documents (none broken) and returns their ids.
    pub async fn seed(&self, count: usize, broken: usize) -> Vec<DocId> {
        let opts = ferry::seed::SeedOptions {
            count,
            seed: 7,
            broken,
            id_prefix: format!("{}-", self.name),
        };
        ferry::seed::seed(&self.ctx, &opts).await.expect("seed");
        (0..count)
            .map(|i| ferry::seed::data::id_of(&opts.id_prefix, i))
            .collect()
    }

    /// Every setting as the `FERRY_*` environment of a worker process.
    pub fn env(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let mut v = vec![
            ("FERRY_INDEX_URL", s.index_url.clone()),
            ("FERRY_AMQP_URL", s.amqp_url.expose().to_string()),
            ("FERRY_QUEUE_PREFIX", s.queue_prefix.clone()),
            ("FERRY_TOPOLOGY", s.topology.clone()),
            ("FERRY_AWS_REGION", s.aws_region.clone()),
            ("FERRY_S3_BUCKET", s.s3_bucket.clone()),
            ("FERRY_S3_PREFIX", s.s3_prefix.clone()),
            ("FERRY_DYNAMO_TABLE", s.dynamo_table.clone()),
            ("FERRY_LEASE_TABLE", s.lease_table.clone()),
            ("FERRY_CURRENT_ALIAS", s.current_alias.to_string()),
            ("FERRY_MIGRATION_ALIAS", s.migration_alias.to_string()),
            ("FERRY_HISTORICAL_ALIAS", s.historical_alias.to_string()),
            ("FERRY_PAUSED_ALIAS", s.paused_alias.to_string()),
            ("FERRY_PREVIEW_ALIAS", s.preview_alias.to_string()),
            ("FERRY_INDEX_PREFIX", s.index_prefix.clone()),
            ("FERRY_MAPPING", s.mapping.clone()),
            ("FERRY_ROLLBACK_WINDOW", d(s.rollback_window)),
            ("FERRY_CONCURRENCY", s.concurrency.to_string()),
            ("FERRY_BATCH_SIZE", s.batch_size.to_string()),
            ("FERRY_BATCH_WAIT", d(s.batch_wait)),
            ("FERRY_SCAN_PAGE", s.scan_page.to_string()),
            ("FERRY_MAX_QUEUED", s.max_queued.to_string()),
            ("FERRY_SCAN_INTERVAL", d(s.scan_interval)),
            ("FERRY_LEASE_TTL", d(s.lease_ttl)),
            ("FERRY_RETRY_BUDGET", d(s.retry_budget)),
            ("FERRY_MAX_MESSAGE_BYTES", s.max_message_bytes.to_string()),
            ("FERRY_STATE_TTL", d(s.state_ttl)),
            ("FERRY_SHUTDOWN_DEADLINE", d(s.shutdown_deadline)),
            ("FERRY_ADMIN_BIND", s.admin_bind.clone()),
            ("FERRY_ADMIN_TOKEN", s.admin_token.expose().to_string()),
        ];
        if let Some(e) = &s.aws_endpoint {
            v.push(("FERRY_AWS_ENDPOINT", e.clone()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Runs `ferry <args>` with this environment and returns (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| !k.starts_with("FERRY_")))
            .envs(self.env())
            .env("FERRY_LOG", "warn")
            .output()
            .await
            .expect("run ferry");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a `ferry worker` process with this environment (killed when dropped).
    pub fn spawn_worker(&self) -> Worker {
        self.spawn_worker_with(&[])
    }

    /// Starts a worker with extra environment variables.
    pub fn spawn_worker_with(&self, extra: &[(&str, &str)]) -> Worker {
        let log = std::env::var("FERRY_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("worker")
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| !k.starts_with("FERRY_")))
            .envs(self.env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .env("FERRY_LOG", log)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ferry worker");
        Worker { child }
    }
}

/// A running `ferry worker` process.
pub struct Worker {
    /// The process.
    pub child: tokio::process::Child,
}

impl Worker {
    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).unwrap_or(-1)
    }

    /// Sends a signal (`SIGTERM`, `SIGKILL`, ...).
    pub fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits for exit within `limit`; returns the exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
