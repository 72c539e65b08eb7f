//! One typed `Settings` struct, read from flags and `FERRY_*` variables.
//!
//! Every setting has a flag and an environment variable; secrets are wrapped
//! in [`Secret`] so that no log line, error or `status` output can print them.

use crate::retry::RetryPolicy;
use crate::types::{IndexName, InvalidValue, Secret};
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Where the admin server listens: an `ip:port`, or nowhere (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminBind(pub Option<SocketAddr>);

impl AdminBind {
    /// No admin server.
    pub const OFF: AdminBind = AdminBind(None);
}

impl FromStr for AdminBind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        or_off(s, |s| {
            s.parse()
                .map_err(|e| format!("{e}: expected ip:port (like 0.0.0.0:8080) or off"))
        })
        .map(AdminBind)
    }
}

impl fmt::Display for AdminBind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_or_off(f, self.0)
    }
}

/// An edit latency budget: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBudget(pub Option<Duration>);

impl LatencyBudget {
    /// The default budget (see `FERRY_EDIT_LATENCY_BUDGET`).
    pub const DEFAULT: LatencyBudget = LatencyBudget(Some(Duration::from_millis(500)));
    /// No budget.
    pub const OFF: LatencyBudget = LatencyBudget(None);
}

impl FromStr for LatencyBudget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        or_off(s, |s| match humantime::parse_duration(s) {
            Ok(d) if d >= Duration::from_millis(1) => Ok(d),
            Ok(_) => Err("a budget is at least 1ms (or off)".into()),
            Err(e) => Err(format!("{e}: expected a duration like 300ms, or off")),
        })
        .map(LatencyBudget)
    }
}

impl fmt::Display for LatencyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_or_off(f, self.0.map(|d| format!("{}ms", d.as_millis())))
    }
}

/// A setting that is a value or `off` (None).
fn or_off<T>(s: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if s == "off" {
        Ok(None)
    } else {
        parse(s).map(Some)
    }
}

/// Writes a value, or `off` for None.
fn show_or_off<T: fmt::Display>(f: &mut fmt::Formatter<'_>, v: Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, "{v}"),
        None => f.write_str("off"),
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Everything ferry needs to reach its services and shape its work.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Index server base URL (OpenSearch or Elasticsearch).
    #[arg(
        long,
        env = "FERRY_INDEX_URL",
        default_value = "http://127.0.0.1:9200",
        global = true,
        help_heading = "Index server"
    )]
    pub index_url: String,
    /// Index server user name (basic auth), if any.
    #[arg(
        long,
        env = "FERRY_INDEX_USERNAME",
        global = true,
        help_heading = "Index server"
    )]
    pub index_username: Option<String>,
    /// Index server password (basic auth), if any.
    #[arg(
        long,
        env = "FERRY_INDEX_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true,
        global = true,
        help_heading = "Index server"
    )]
    pub index_password: Secret,
    /// Timeout of one index request.
    #[arg(long, env = "FERRY_INDEX_TIMEOUT", value_parser = duration, default_value = "30s", global = true, help_heading = "Index server")]
    pub index_timeout: Duration,

    /// Index server of the cluster new indices are created on, when a
    /// migration goes to another cluster; unset: the source cluster.
    #[arg(
        long,
        env = "FERRY_TARGET_INDEX_URL",
        global = true,
        help_heading = "Target cluster"
    )]
    pub target_index_url: Option<String>,
    /// Target cluster user name (basic auth), if any.
    #[arg(
        long,
        env = "FERRY_TARGET_INDEX_USERNAME",
        global = true,
        help_heading = "Target cluster"
    )]
    pub target_index_username: Option<String>,
    /// Target cluster password (basic auth), if any.
    #[arg(
        long,
        env = "FERRY_TARGET_INDEX_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true,
        global = true,
        help_heading = "Target cluster"
    )]
    pub target_index_password: Secret,
    /// Timeout of one request to the target cluster.
    #[arg(long, env = "FERRY_TARGET_INDEX_TIMEOUT", value_parser = duration, default_value = "30s", global = true, help_heading = "Target cluster")]
    pub target_index_timeout: Duration,

    /// RabbitMQ URL (amqp:// or amqps://); its password is never printed.
    #[arg(
        long,
        env = "FERRY_AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true,
        help_heading = "Broker"
    )]
    pub amqp_url: Secret,
    /// Prefix of every exchange and queue name (isolates environments and tests).
    #[arg(
        long,
        env = "FERRY_QUEUE_PREFIX",
        default_value = "ferry",
        global = true,
        help_heading = "Broker"
    )]
    pub queue_prefix: String,
    /// Topology file (RabbitMQ definitions format).
    #[arg(
        long,
        env = "FERRY_TOPOLOGY",
        default_value = "queues/topology.json",
        global = true,
        help_heading = "Broker"
    )]
    pub topology: String,

    /// AWS endpoint override for S3 and DynamoDB (LocalStack, moto); unset for real AWS.
    #[arg(
        long,
        env = "FERRY_AWS_ENDPOINT",
        global = true,
        help_heading = "Stores"
    )]
    pub aws_endpoint: Option<String>,
    /// S3 endpoint override, when S3 is served apart from DynamoDB (the fast
    /// local stack); falls back to the AWS endpoint override.
    #[arg(
        long,
        env = "FERRY_S3_ENDPOINT",
        global = true,
        help_heading = "Stores"
    )]
    pub s3_endpoint: Option<String>,
    /// DynamoDB endpoint override, when DynamoDB is served apart from S3;
    /// falls back to the AWS endpoint override.
    #[arg(
        long,
        env = "FERRY_DYNAMO_ENDPOINT",
        global = true,
        help_heading = "Stores"
    )]
    pub dynamo_endpoint: Option<String>,
    /// AWS region.
    #[arg(
        long,
        env = "FERRY_AWS_REGION",
        default_value = "us-east-1",
        global = true,
        help_heading = "Stores"
    )]
    pub aws_region: String,
    /// S3 bucket holding one original JSON object per document id.
    #[arg(
        long,
        env = "FERRY_S3_BUCKET",
        default_value = "ferry-originals",
        global = true,
        help_heading = "Stores"
    )]
    pub s3_bucket: String,
    /// Key prefix of the originals in the bucket.
    #[arg(
        long,
        env = "FERRY_S3_PREFIX",
        default_value = "originals/",
        global = true,
        help_heading = "Stores"
    )]
    pub s3_prefix: String,
    /// DynamoDB table holding one edits item per document id.
    #[arg(
        long,
        env = "FERRY_DYNAMO_TABLE",
        default_value = "ferry-edits",
        global = true,
        help_heading = "Stores"
    )]
    pub dynamo_table: String,
    /// DynamoDB table holding the scan lease and completion records.
    #[arg(
        long,
        env = "FERRY_LEASE_TABLE",
        default_value = "ferry-leases",
        global = true,
        help_heading = "Stores"
    )]
    pub lease_table: String,

    /// Alias of the index readers use (the migration source).
    #[arg(
        long,
        env = "FERRY_CURRENT_ALIAS",
        default_value = "Images_Current",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub current_alias: IndexName,
    /// Alias of the migration target; present while a migration runs.
    #[arg(
        long,
        env = "FERRY_MIGRATION_ALIAS",
        default_value = "Images_Migration",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub migration_alias: IndexName,
    /// Alias of the index that was Current before the last completion.
    #[arg(
        long,
        env = "FERRY_HISTORICAL_ALIAS",
        default_value = "Images_Historical",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub historical_alias: IndexName,
    /// Alias that pauses the scanner when it is on the migration index.
    #[arg(
        long,
        env = "FERRY_PAUSED_ALIAS",
        default_value = "MIGRATION_PAUSED",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub paused_alias: IndexName,
    /// Alias that lets readers preview the migration index.
    #[arg(
        long,
        env = "FERRY_PREVIEW_ALIAS",
        default_value = "MIGRATION_COMPLETION_PREVIEW",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub preview_alias: IndexName,
    /// Prefix of the index names `start` creates (`<prefix>_<UTC timestamp>`).
    #[arg(
        long,
        env = "FERRY_INDEX_PREFIX",
        default_value = "images",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub index_prefix: String,
    /// Mapping and settings file used by `start` and `seed`.
    #[arg(
        long,
        env = "FERRY_MAPPING",
        default_value = "infra/mapping.json",
        global = true,
        help_heading = "Aliases and indices"
    )]
    pub mapping: String,

    /// After a completion, how long edits keep reaching the Historical index
    /// and `rollback` is allowed (0 turns both off).
    #[arg(long, env = "FERRY_ROLLBACK_WINDOW", value_parser = duration, default_value = "24h", global = true, help_heading = "Safety")]
    pub rollback_window: Duration,
    /// How far apart the clocks of workers and operators may be: workers
    /// keep writing the Historical index this long after the rollback
    /// window ends, and `rollback` is refused this long before it ends.
    #[arg(long, env = "FERRY_CLOCK_MARGIN", value_parser = duration, default_value = "1m", global = true, help_heading = "Safety")]
    pub clock_margin: Duration,
    /// How long `complete` waits for the new index to be green after it
    /// restored the settings a bulk-load profile changed (`start
    /// --backfill-replicas`); refused after that.
    #[arg(long, env = "FERRY_RESTORE_WAIT", value_parser = duration, default_value = "2m", global = true, help_heading = "Safety")]
    pub restore_wait: Duration,
    /// Shortest `index.gc_deletes` (how long the engine keeps delete
    /// tombstones) that `start` accepts for a new index; `start` sets it
    /// when the mapping file does not.
    #[arg(long, env = "FERRY_MIN_GC_DELETES", value_parser = duration, default_value = "1h", global = true, help_heading = "Safety")]
    pub min_gc_deletes: Duration,
    /// Messages processed at once by one worker.
    #[arg(
        long,
        env = "FERRY_CONCURRENCY",
        default_value_t = 16,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub concurrency: usize,
    /// Migration messages per batch (one bulk write).
    #[arg(
        long,
        env = "FERRY_BATCH_SIZE",
        default_value_t = 100,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub batch_size: usize,
    /// Most migration batches one worker runs at once; the pace starts at
    /// one and adds more while full batches stay within the batch time.
    /// 2: a real cluster serves bulks in parallel; osmem does not, and
    /// gains nothing from more (docs/benchmark.md).
    #[arg(
        long,
        env = "FERRY_MAX_BATCHES",
        default_value_t = 2,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub max_batches: usize,
    /// How long a migration batch should take: larger ones shrink, so that
    /// no single batch holds the index for long (pt-osc's --chunk-time).
    #[arg(long, env = "FERRY_BATCH_TIME", value_parser = duration, default_value = "500ms", global = true, help_heading = "Worker tuning")]
    pub batch_time: Duration,
    /// Edit latency (publish to visible, p99 over the last seconds) the
    /// migration yields to, or `off`. 500ms sits above the idle p99 of every
    /// measured edit rate (33 ms at 1/s, 483 ms at 20/s), so the migration
    /// yields only to latency it causes. Changeable at run time with
    /// `ferry throttle --edit-latency`.
    #[arg(
        long,
        env = "FERRY_EDIT_LATENCY_BUDGET",
        default_value_t = LatencyBudget::DEFAULT,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub edit_latency_budget: LatencyBudget,
    /// Longest a migration batch waits to fill before it is processed.
    #[arg(long, env = "FERRY_BATCH_WAIT", value_parser = duration, default_value = "50ms", global = true, help_heading = "Worker tuning")]
    pub batch_wait: Duration,
    /// Documents per scan page and per projection batch.
    #[arg(
        long,
        env = "FERRY_SCAN_PAGE",
        default_value_t = 500,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub scan_page: usize,
    /// S3 reads in flight during batched projection.
    #[arg(
        long,
        env = "FERRY_STORE_CONCURRENCY",
        default_value_t = 32,
        global = true,
        help_heading = "Worker tuning"
    )]
    pub store_concurrency: usize,
    /// Documents one scan pass queues (at most 10,000, the result window
    /// of one search); the next pass waits until the queue holds at most
    /// half that.
    #[arg(long, env = "FERRY_MAX_QUEUED", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true, help_heading = "Worker tuning")]
    pub max_queued: u32,
    /// Pause between two scan passes that found nothing new.
    #[arg(long, env = "FERRY_SCAN_INTERVAL", value_parser = duration, default_value = "5s", global = true, help_heading = "Worker tuning")]
    pub scan_interval: Duration,
    /// Lifetime of the scan lease; renewed at a third of it.
    #[arg(long, env = "FERRY_LEASE_TTL", value_parser = duration, default_value = "15s", global = true, help_heading = "Worker tuning")]
    pub lease_ttl: Duration,
    /// Total time a transient failure is retried before it counts as failed.
    #[arg(long, env = "FERRY_RETRY_BUDGET", value_parser = duration, default_value = "30s", global = true, help_heading = "Worker tuning")]
    pub retry_budget: Duration,
    /// Largest message accepted; larger ones are dead-lettered.
    #[arg(
        long,
        env = "FERRY_MAX_MESSAGE_BYTES",
        default_value_t = 1_048_576,
        global = true,
        help_heading = "Broker"
    )]
    pub max_message_bytes: usize,
    /// How long alias state is cached by a worker.
    #[arg(long, env = "FERRY_STATE_TTL", value_parser = duration, default_value = "1s", global = true, help_heading = "Safety")]
    pub state_ttl: Duration,
    /// Time a worker takes to finish in-flight work after SIGTERM.
    #[arg(long, env = "FERRY_SHUTDOWN_DEADLINE", value_parser = duration, default_value = "30s", global = true, help_heading = "Worker tuning")]
    pub shutdown_deadline: Duration,

    /// Webhook URLs (comma-separated) that receive a JSON POST for every
    /// operator action and for conditions operators must hear about; none:
    /// no notifications.
    #[arg(
        long,
        env = "FERRY_NOTIFY_URL",
        value_delimiter = ',',
        global = true,
        help_heading = "Notifications"
    )]
    pub notify_url: Vec<String>,
    /// Key of the HMAC-SHA256 signature of each notification
    /// (`X-Ferry-Signature`); unset: unsigned.
    #[arg(
        long,
        env = "FERRY_NOTIFY_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true,
        global = true,
        help_heading = "Notifications"
    )]
    pub notify_secret: Secret,
    /// Body of the notifications: `json` (ferry's own) or `slack` (a Slack
    /// incoming webhook).
    #[arg(
        long,
        env = "FERRY_NOTIFY_FORMAT",
        default_value_t = NotifyFormat::Json,
        global = true,
        help_heading = "Notifications"
    )]
    pub notify_format: NotifyFormat,
    /// Failed documents above which a migration is notified (once per
    /// crossing).
    #[arg(
        long,
        env = "FERRY_NOTIFY_FAILURES",
        default_value_t = 100,
        global = true,
        help_heading = "Notifications"
    )]
    pub notify_failures: u64,
    /// Time without progress, while documents remain, after which a
    /// migration is notified as stalled.
    #[arg(long, env = "FERRY_NOTIFY_STALL", value_parser = duration, default_value = "15m", global = true, help_heading = "Notifications")]
    pub notify_stall: Duration,

    /// Address of the admin HTTP server (loopback unless told otherwise),
    /// or `off`.
    #[arg(
        long,
        env = "FERRY_ADMIN_BIND",
        default_value = "127.0.0.1:8080",
        global = true,
        help_heading = "Admin server"
    )]
    pub admin_bind: AdminBind,
    /// Bearer token required by state-changing admin endpoints.
    #[arg(
        long,
        env = "FERRY_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true,
        global = true,
        help_heading = "Admin server"
    )]
    pub admin_token: Secret,
}

impl Settings {
    /// Settings from the environment alone (tests and library users).
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            s: Settings,
        }
        <Only as clap::Parser>::try_parse_from(["ferry"]).map(|o| o.s)
    }

    /// These settings with aliases, index prefix and queues of their own,
    /// named after `name`, no admin server and a half-second scan interval:
    /// how the demo and the benchmark keep their runs apart from each other
    /// and from a live system on the same services.
    pub fn isolated(&self, name: &str) -> Result<Settings, InvalidValue> {
        let alias = |suffix: &str| IndexName::parse(format!("{name}_{suffix}"));
        let mut s = self.clone();
        s.current_alias = alias("Current")?;
        s.migration_alias = alias("Migration")?;
        s.historical_alias = alias("Historical")?;
        s.paused_alias = alias("PAUSED")?;
        s.preview_alias = alias("PREVIEW")?;
        s.index_prefix = name.to_lowercase();
        s.queue_prefix = name.to_lowercase();
        s.admin_bind = AdminBind::OFF;
        s.scan_interval = Duration::from_millis(500);
        Ok(s)
    }

    /// The S3 endpoint override in force: `FERRY_S3_ENDPOINT`, else
    /// `FERRY_AWS_ENDPOINT`.
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.s3_endpoint.as_deref().or(self.aws_endpoint.as_deref())
    }

    /// The DynamoDB endpoint override in force: `FERRY_DYNAMO_ENDPOINT`,
    /// else `FERRY_AWS_ENDPOINT`.
    pub fn dynamo_endpoint(&self) -> Option<&str> {
        self.dynamo_endpoint
            .as_deref()
            .or(self.aws_endpoint.as_deref())
    }

    /// Every setting as the `FERRY_*` environment of a child process (a
    /// worker started by the benchmark or a test), so that the child sees
    /// exactly these settings. Secrets are included: the result is for a
    /// process environment, never for printing.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let mut v = vec![
            ("FERRY_INDEX_URL", self.index_url.clone()),
            (
                "FERRY_INDEX_PASSWORD",
                self.index_password.expose().to_string(),
            ),
            ("FERRY_INDEX_TIMEOUT", d(self.index_timeout)),
            (
                "FERRY_TARGET_INDEX_PASSWORD",
                self.target_index_password.expose().to_string(),
            ),
            ("FERRY_TARGET_INDEX_TIMEOUT", d(self.target_index_timeout)),
            ("FERRY_AMQP_URL", self.amqp_url.expose().to_string()),
            ("FERRY_QUEUE_PREFIX", self.queue_prefix.clone()),
            ("FERRY_TOPOLOGY", self.topology.clone()),
            ("FERRY_AWS_REGION", self.aws_region.clone()),
            ("FERRY_S3_BUCKET", self.s3_bucket.clone()),
            ("FERRY_S3_PREFIX", self.s3_prefix.clone()),
            ("FERRY_DYNAMO_TABLE", self.dynamo_table.clone()),
            ("FERRY_LEASE_TABLE", self.lease_table.clone()),
            ("FERRY_CURRENT_ALIAS", self.current_alias.to_string()),
            ("FERRY_MIGRATION_ALIAS", self.migration_alias.to_string()),
            ("FERRY_HISTORICAL_ALIAS", self.historical_alias.to_string()),
            ("FERRY_PAUSED_ALIAS", self.paused_alias.to_string()),
            ("FERRY_PREVIEW_ALIAS", self.preview_alias.to_string()),
            ("FERRY_INDEX_PREFIX", self.index_prefix.clone()),
            ("FERRY_MAPPING", self.mapping.clone()),
            ("FERRY_ROLLBACK_WINDOW", d(self.rollback_window)),
            ("FERRY_CLOCK_MARGIN", d(self.clock_margin)),
            ("FERRY_RESTORE_WAIT", d(self.restore_wait)),
            ("FERRY_MIN_GC_DELETES", d(self.min_gc_deletes)),
            ("FERRY_CONCURRENCY", self.concurrency.to_string()),
            ("FERRY_BATCH_SIZE", self.batch_size.to_string()),
            ("FERRY_BATCH_WAIT", d(self.batch_wait)),
            ("FERRY_BATCH_TIME", d(self.batch_time)),
            ("FERRY_MAX_BATCHES", self.max_batches.to_string()),
            (
                "FERRY_EDIT_LATENCY_BUDGET",
                self.edit_latency_budget.to_string(),
            ),
            ("FERRY_SCAN_PAGE", self.scan_page.to_string()),
            (
                "FERRY_STORE_CONCURRENCY",
                self.store_concurrency.to_string(),
            ),
            ("FERRY_MAX_QUEUED", self.max_queued.to_string()),
            ("FERRY_SCAN_INTERVAL", d(self.scan_interval)),
            ("FERRY_LEASE_TTL", d(self.lease_ttl)),
            ("FERRY_RETRY_BUDGET", d(self.retry_budget)),
            (
                "FERRY_MAX_MESSAGE_BYTES",
                self.max_message_bytes.to_string(),
            ),
            ("FERRY_STATE_TTL", d(self.state_ttl)),
            ("FERRY_SHUTDOWN_DEADLINE", d(self.shutdown_deadline)),
            ("FERRY_ADMIN_BIND", self.admin_bind.to_string()),
            ("FERRY_ADMIN_TOKEN", self.admin_token.expose().to_string()),
            (
                "FERRY_NOTIFY_SECRET",
                self.notify_secret.expose().to_string(),
            ),
            ("FERRY_NOTIFY_FORMAT", self.notify_format.to_string()),
            ("FERRY_NOTIFY_FAILURES", self.notify_failures.to_string()),
            ("FERRY_NOTIFY_STALL", d(self.notify_stall)),
        ];
        // Optional settings are passed only when set: an empty variable
        // would not mean "unset" to the child.
        for (k, val) in [
            ("FERRY_INDEX_USERNAME", &self.index_username),
            ("FERRY_TARGET_INDEX_URL", &self.target_index_url),
            ("FERRY_TARGET_INDEX_USERNAME", &self.target_index_username),
            ("FERRY_AWS_ENDPOINT", &self.aws_endpoint),
            ("FERRY_S3_ENDPOINT", &self.s3_endpoint),
            ("FERRY_DYNAMO_ENDPOINT", &self.dynamo_endpoint),
        ] {
            if let Some(e) = val {
                v.push((k, e.clone()));
            }
        }
        if !self.notify_url.is_empty() {
            v.push(("FERRY_NOTIFY_URL", self.notify_url.join(",")));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The retry policy for transient service failures.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::with_budget(self.retry_budget)
    }
}

/// The body format of the notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// ferry's own JSON body (event, at, deployment, text, detail).
    Json,
    /// A Slack incoming webhook body (`{"text": ...}`).
    Slack,
}

impl std::str::FromStr for NotifyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "slack" => Ok(Self::Slack),
            other => Err(format!("{other}: expected json or slack")),
        }
    }
}

impl std::fmt::Display for NotifyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Slack => "slack",
        })
    }
}
