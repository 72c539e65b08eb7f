//! The two workers of a run, with their per-slot environment kept for
//! restarts: worker 0 may cache the alias state for seconds (a long
//! `FERRY_STATE_TTL`), worker 1 may reach the index and DynamoDB through
//! fault-injecting proxies. Kills, stops and faults act on them.

use super::schedule::Fault;
use super::Run;
use crate::support::proxy::{Mode, Proxy};
use crate::support::{Signal, Worker};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long an index or DynamoDB fault lasts.
const FAULT_FOR: Duration = Duration::from_secs(3);

struct Slot {
    worker: Worker,
    env: Vec<(String, String)>,
}

/// The two workers, with their per-slot environment (long state TTL,
/// proxied index and DynamoDB) kept for restarts.
pub struct Workers {
    slots: Arc<tokio::sync::Mutex<Vec<Slot>>>,
    proxies: Option<(Proxy, Proxy)>,
    later: Vec<tokio::task::JoinHandle<()>>,
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.trim_end_matches('/').to_string()
}

impl Workers {
    pub async fn spawn(run: &Run) -> Workers {
        let base: Vec<(String, String)> = run
            .plan
            .fault
            .iter()
            .map(|f| ("FERRY_FAULT".to_string(), f.clone()))
            .collect();
        let mut first = base.clone();
        if let Some(ttl) = run.schedule.stale_ttl {
            first.push(("FERRY_STATE_TTL".into(), format!("{}ms", ttl.as_millis())));
        }
        let mut second = base;
        let mut proxies = None;
        if run.schedule.fault.is_some() {
            let s = &run.env.settings;
            let index = Proxy::start(&host_port(&s.index_url)).await;
            let dynamo = s.dynamo_endpoint().expect("a DynamoDB endpoint in tests");
            let dynamo = Proxy::start(&host_port(dynamo)).await;
            second.push(("FERRY_INDEX_URL".into(), index.url.clone()));
            second.push(("FERRY_DYNAMO_ENDPOINT".into(), dynamo.url.clone()));
            proxies = Some((index, dynamo));
        }
        let slots = [first, second]
            .into_iter()
            .map(|env| Slot {
                worker: start(run, &env),
                env,
            })
            .collect();
        Workers {
            slots: Arc::new(tokio::sync::Mutex::new(slots)),
            proxies,
            later: Vec::new(),
        }
    }

    /// Ends every stop and fault, so that the queues can drain.
    pub async fn calm(&mut self, run: &Run) {
        for t in self.later.drain(..) {
            let _ = t.await;
        }
        for s in self.slots.lock().await.iter() {
            s.worker.signal(Signal::SIGCONT);
        }
        if let Some((a, b)) = &self.proxies {
            a.set(Mode::Pass);
            b.set(Mode::Pass);
        }
        run.event("every worker running, proxies passing".into());
    }

    /// SIGKILLs worker `victim` and starts it again with the same environment.
    pub async fn kill(&self, run: &Run, victim: usize) {
        let mut slots = self.slots.lock().await;
        let slot = &mut slots[victim];
        slot.worker.signal(Signal::SIGKILL);
        let _ = slot.worker.wait(Duration::from_secs(10)).await;
        slot.worker = start(run, &slot.env);
        run.count.kills.fetch_add(1, Ordering::SeqCst);
        run.event(format!("SIGKILL worker {victim} and restart it"));
    }

    /// SIGSTOPs the schedule's worker for longer than the lease TTL and its
    /// state TTL; a task sends SIGCONT later.
    pub async fn stop(&mut self, run: &Arc<Run>) {
        let victim = run.schedule.stop_slot;
        let ttl = Workers::ttl(run, victim);
        let hold = ttl.max(run.env.settings.lease_ttl) + Duration::from_secs(1);
        self.slots.lock().await[victim]
            .worker
            .signal(Signal::SIGSTOP);
        run.count.stops.fetch_add(1, Ordering::SeqCst);
        run.event(format!(
            "SIGSTOP worker {victim} (state TTL {ttl:?}) for {hold:?}"
        ));
        let (slots, run2) = (self.slots.clone(), run.clone());
        self.later.push(tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            slots.lock().await[victim].worker.signal(Signal::SIGCONT);
            run2.event(format!("SIGCONT worker {victim}"));
        }));
    }

    /// Starts the schedule's fault on worker 1's proxies; a task ends it.
    pub fn fault(&mut self, run: &Arc<Run>) {
        let (fault, Some((index, dynamo))) = (run.schedule.fault, &self.proxies) else {
            return;
        };
        let (proxy, mode) = match fault {
            Some(Fault::IndexDelay) => (index, Mode::Delay(Duration::from_millis(300))),
            Some(Fault::IndexUnavailable) => (index, Mode::Status(503)),
            _ => (dynamo, Mode::DynamoThrottle),
        };
        proxy.set(mode.clone());
        run.count.faults.fetch_add(1, Ordering::SeqCst);
        run.event(format!("worker 1: {mode:?} for {FAULT_FOR:?}"));
        let (proxy, run2) = (proxy.clone(), run.clone());
        self.later.push(tokio::spawn(async move {
            tokio::time::sleep(FAULT_FOR).await;
            proxy.set(Mode::Pass);
            run2.event("worker 1: proxies pass again".into());
        }));
    }

    fn ttl(run: &Run, slot: usize) -> Duration {
        match (slot, run.schedule.stale_ttl) {
            (0, Some(t)) => t,
            _ => run.env.settings.state_ttl,
        }
    }
}

fn start(run: &Run, env: &[(String, String)]) -> Worker {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run.env.spawn_worker_with(&env)
}
