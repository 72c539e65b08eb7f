//! Where the CPU went: per-process CPU time from `/proc` for the workers
//! and the local services, and the machine's load, so that a missed
//! target can be attributed to a process instead of guessed at. Linux
//! only; elsewhere every reading is empty.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on
/// every Linux architecture ferry runs on).
const TICKS: f64 = 100.0;

/// Services of the local stacks, by the file name of their program (or of
/// the script or jar an interpreter runs) and a label.
const SERVICES: &[(&str, &str)] = &[
    ("osmem-server", "osmem"),
    ("beam.smp", "rabbitmq"),
    ("moto_server", "moto"),
    ("garage", "garage"),
    ("dynoxide", "dynoxide"),
    ("DynamoDBLocal.jar", "dynamodb-local"),
    ("s3rver", "s3rver"),
];

/// Interpreters whose script or jar names the service.
const INTERPRETERS: &[&str] = &["python", "java", "node"];

/// The service a command line runs, if any. Only the program itself (or an
/// interpreter's script) counts, so that a compiler building `garage` is not
/// taken for the server.
fn service_of(cmdline: &str) -> Option<&'static str> {
    let base = |a: &str| a.rsplit('/').next().unwrap_or(a).to_string();
    let argv: Vec<String> = cmdline.split('\0').map(base).collect();
    let program = argv.first()?;
    let interpreted = INTERPRETERS.iter().any(|i| program.starts_with(i));
    SERVICES
        .iter()
        .find(|(needle, _)| {
            program == needle
                || (interpreted
                    && argv
                        .iter()
                        .skip(1)
                        .any(|a| a == needle || a.starts_with(&format!("{needle}."))))
        })
        .map(|(_, label)| *label)
}

/// The machine at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Cores.
    pub cores: usize,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// Memory, MB.
    pub memory_mb: u64,
}

impl Machine {
    /// Reads cores, load and memory.
    pub fn now() -> Self {
        let load = read("/proc/loadavg")
            .map(|s| {
                let mut it = s.split_whitespace().filter_map(|w| w.parse().ok());
                [0, 1, 2].map(|_| it.next().unwrap_or(0.0))
            })
            .unwrap_or_default();
        let memory_mb = read("/proc/meminfo")
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load,
            memory_mb,
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// CPU ticks of the whole machine: (busy, total), from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let Some(stat) = read("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// CPU ticks (user + system) a process has used so far.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 (11 and 12 after it).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Peak resident memory of a process (VmHWM), MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn service_pids() -> Vec<(String, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmd = read(&format!("/proc/{pid}/cmdline"))?;
            // With the pid: two servers of a kind may run (a shared index
            // server and a private one), and only one serves this run.
            Some((format!("{} {pid}", service_of(&cmd)?), pid))
        })
        .collect()
}

/// A snapshot of CPU counters.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: std::time::Instant,
    machine: (u64, u64),
    processes: Vec<(String, u32, u64)>,
}

/// Takes a snapshot of the machine, the local services, this process and
/// the given workers.
pub fn snapshot(workers: &[u32]) -> Snapshot {
    let mut named: Vec<(String, u32)> = service_pids();
    named.push(("bench".into(), std::process::id()));
    named.extend(workers.iter().map(|p| (format!("worker {p}"), *p)));
    Snapshot {
        at: std::time::Instant::now(),
        machine: machine_ticks(),
        processes: named
            .into_iter()
            .filter_map(|(n, p)| Some((n, p, process_ticks(p)?)))
            .collect(),
    }
}

/// CPU used between two snapshots, in cores (1.0 = one core busy all along).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    /// Every core's busy time, whoever used it.
    pub machine_busy_cores: f64,
    /// By process (workers, services, the bench itself).
    pub by_process: BTreeMap<String, f64>,
    /// Busy time no process above accounts for (other people's builds).
    pub other_cores: f64,
}

/// The CPU profile from `a` to `b`.
pub fn profile(a: &Snapshot, b: &Snapshot) -> Profile {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let cores = |ticks: u64| ticks as f64 / TICKS / secs;
    let mut by_process = BTreeMap::new();
    for (name, pid, after) in &b.processes {
        let before = a
            .processes
            .iter()
            .find(|(_, p, _)| p == pid)
            .map_or(0, |(_, _, t)| *t);
        *by_process.entry(name.clone()).or_insert(0.0) += cores(after.saturating_sub(before));
    }
    // /proc/stat counts every core's ticks, so busy/total * cores is the
    // number of busy cores.
    let (busy, total) = (
        b.machine.0.saturating_sub(a.machine.0),
        b.machine.1.saturating_sub(a.machine.1),
    );
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let machine_busy_cores = if total == 0 {
        0.0
    } else {
        busy as f64 / total as f64 * n
    };
    let accounted: f64 = by_process.values().sum();
    Profile {
        machine_busy_cores,
        other_cores: (machine_busy_cores - accounted).max(0.0),
        by_process,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_recognised_by_their_program_only() {
        assert_eq!(service_of("/x/bin/osmem-server\0-addr\0"), Some("osmem"));
        assert_eq!(
            service_of("/v/bin/python3\0/v/bin/moto_server\0-H\0"),
            Some("moto")
        );
        assert_eq!(
            service_of("java\0-jar\0DynamoDBLocal.jar\0-inMemory\0"),
            Some("dynamodb-local")
        );
        assert_eq!(service_of("/t/bin/garage\0server\0"), Some("garage"));
        assert_eq!(service_of("rustc\0--crate-name\0garage\0"), None);
        assert_eq!(service_of("cargo\0install\0garage@2.5.0\0"), None);
    }
}
