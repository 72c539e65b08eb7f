//! Shared test support: every test gets uniquely named indices, aliases,
//! queues, bucket and tables on the real local stack (started by
//! `infra/test.sh`), so tests run in parallel and never see each other's data.
#![allow(dead_code)]

pub mod admin;
pub mod docs;
pub mod metrics;
pub mod proxy;
pub mod rabbit;

use ferry::config::Settings;
use ferry::context::Ctx;
use ferry::queue::Broker;
use ferry::types::{DocId, IndexName};
pub use nix::sys::signal::Signal;
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The shipped topology with `x-expires` on every queue, so that the
/// queues of finished tests vanish from the shared broker by themselves
/// (ten minutes after their last use) instead of piling up run after run.
fn expiring_topology() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/queues/topology.json");
        let mut t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(shipped).expect("topology"))
                .expect("topology JSON");
        for q in t["queues"].as_array_mut().expect("queues") {
            q["arguments"]["x-expires"] = serde_json::json!(600_000);
        }
        let path = format!(
            "{}/topology-expiring-{}.json",
            env!("CARGO_TARGET_TMPDIR"),
            std::process::id()
        );
        std::fs::write(&path, t.to_string()).expect("write the test topology");
        path
    })
    .clone()
}

/// The value of environment variable `name`, or `default` when it is unset
/// or does not parse (knobs of the long, ignored tests).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback port nobody listens on right now (for a worker's admin server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

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
        s.topology = expiring_topology();
        s.mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/mapping.json").into();
        s.admin_bind = ferry::config::AdminBind::OFF;
        // Tests check what ferry does, not how fast: on a shared, loaded
        // stack the edit latency budget would slow their migrations down
        // at random. `tests/latency_budget.rs` turns it on.
        s.edit_latency_budget = ferry::config::LatencyBudget::OFF;
        s.retry_budget = Duration::from_secs(5);
        s.scan_interval = Duration::from_millis(300);
        s.lease_ttl = Duration::from_secs(3);
        s.state_ttl = Duration::from_millis(200);
        s.shutdown_deadline = Duration::from_secs(10);
        // The test's own reads and set-up writes share one osmem with the
        // tests running beside it; a merge there can hold its one lock for
        // many seconds, which must not fail this test's observations.
        // Worker and CLI processes keep the default (see `env`).
        s.index_timeout = Duration::from_secs(120);
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

    /// A fresh environment whose migrations go to another cluster: the
    /// second index server of the local stack (`FERRY_SECOND_INDEX_URL`).
    pub async fn across(tag: &str) -> TestEnv {
        let mut env = TestEnv::new(tag).await;
        let second = env_or(
            "FERRY_SECOND_INDEX_URL",
            "http://127.0.0.1:9201".to_string(),
        );
        env.settings.target_index_url = Some(second);
        env.settings.target_index_timeout = Duration::from_secs(120);
        env.ctx = Ctx::new(env.settings.clone()).await.expect("clients");
        env
    }

    /// The index behind this environment's Current alias.
    pub async fn current_index(&self) -> IndexName {
        let st = self.ctx.index.alias_state(&self.ctx.aliases).await;
        st.expect("alias state")
            .current_index()
            .expect("a Current index")
    }

    /// The index behind this environment's Migration alias.
    pub async fn migration_index(&self) -> IndexName {
        let st = self.ctx.index.alias_state(&self.ctx.aliases).await;
        st.expect("alias state")
            .migration_index()
            .expect("a Migration index")
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

    /// The settings as the `FERRY_*` environment of a worker process:
    /// `Settings::to_env` less the index credentials, timeout and store
    /// concurrency, which test workers have always left at their defaults
    /// (tests such as `faults.rs` set credentials only in the parent).
    pub fn env(&self) -> Vec<(String, String)> {
        const LEFT_AT_DEFAULT: [&str; 6] = [
            "FERRY_INDEX_USERNAME",
            "FERRY_INDEX_PASSWORD",
            "FERRY_INDEX_TIMEOUT",
            "FERRY_TARGET_INDEX_PASSWORD",
            "FERRY_TARGET_INDEX_TIMEOUT",
            "FERRY_STORE_CONCURRENCY",
        ];
        self.settings
            .to_env()
            .into_iter()
            .filter(|(k, _)| !LEFT_AT_DEFAULT.contains(&k.as_str()))
            .collect()
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
    /// Its process id (panics once the process has been waited for).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the worker has already exited")
    }

    /// Sends `sig` to the worker; nothing once it has been waited for.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.child.id() {
            signal(pid, sig);
        }
    }

    /// Waits for exit within `limit`; returns the exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }
}

/// Sends `sig` to the one process `pid` (a child of this test). The pid is
/// converted checked: 0 or a value that does not fit a positive `pid_t`
/// panics before any system call, since `kill(0, ..)` would signal this
/// test's process group and `kill(-1, ..)` every process the user owns. A
/// process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) {
    let raw = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("refusing to send {sig} to pid {pid}: not one process"));
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => panic!("cannot send {sig} to pid {pid}: {e}"),
    }
}

/// Deletes the queues and exchanges of `s`'s topology (quorum queues do
/// not expire, so tests that declare them clean up after themselves).
pub async fn delete_topology(s: &Settings) {
    let conn =
        lapin::Connection::connect(s.amqp_url.expose(), lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let t = ferry::queue::Topology::load(&s.topology, &s.queue_prefix).expect("topology");
    for q in &t.queues {
        let _ = ch
            .queue_delete(q.name.as_str().into(), Default::default())
            .await;
    }
    for e in &t.exchanges {
        let _ = ch
            .exchange_delete(e.name.as_str().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
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
