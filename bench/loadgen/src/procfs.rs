//! What the kernel says about a process: CPU time from `/proc/PID/stat` and
//! resident memory from `/proc/PID/status`. Linux only, like the benchmark.

use std::fs;
use std::process::Command;
use std::time::Instant;

/// Clock ticks per second for `/proc/PID/stat`, from `getconf CLK_TCK`
/// (100 on every Linux we know of, and the fallback).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a whole process (every thread), in clock ticks.
/// Fields 14 and 15 of `/proc/PID/stat` (proc(5)); the command name in field 2
/// may hold spaces, so count from the last `)`.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of a whole process in nanoseconds: the sum over its threads of
/// the first field of `/proc/PID/task/TID/schedstat` (time on a CPU, user and
/// system together, kept by the scheduler in ns; it lags at most one scheduler
/// tick for a thread that is running). `None` when unavailable.
pub fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Resident set size in KiB: the `VmRSS:` line of `/proc/PID/status`.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU of the server under test (when `--pid` is given) and of this load
/// generator, sampled at the two ends of a measured interval.
pub struct CpuMeter {
    server: Option<String>,
    tck: f64,
}

/// One sample of a [`CpuMeter`].
#[derive(Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    server: Option<u64>,
    server_ns: Option<u64>,
    me: u64,
    me_ns: Option<u64>,
}

/// What happened between two samples.
pub struct Interval {
    pub secs: f64,
    /// Server CPU-seconds, if a server pid was given and readable.
    pub server_cpu: Option<f64>,
    /// This load generator's CPU-seconds.
    pub loadgen_cpu: f64,
}

impl CpuMeter {
    pub fn new(server: Option<String>) -> Self {
        CpuMeter { server, tck: clk_tck() }
    }

    pub fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            server: self.server.as_deref().and_then(cpu_ticks),
            server_ns: self.server.as_deref().and_then(cpu_ns),
            me: cpu_ticks("self").unwrap_or(0),
            me_ns: cpu_ns("self"),
        }
    }

    /// CPU-seconds between two samples: from the scheduler's nanoseconds when
    /// both samples have them, else from clock ticks. Ticks also win when they
    /// show clearly more (> 2 ticks): a thread that exited in between took its
    /// nanoseconds with it, while `/proc/PID/stat` keeps a dead thread's time.
    fn cpu(&self, ticks: (Option<u64>, Option<u64>), ns: (Option<u64>, Option<u64>)) -> Option<f64> {
        let by_ticks = match ticks {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / self.tck),
            _ => None,
        };
        let by_ns = match ns {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 1e9),
            _ => None,
        };
        match (by_ns, by_ticks) {
            (Some(n), Some(t)) if t > n + 2.0 / self.tck => Some(t),
            (Some(n), _) => Some(n),
            (None, t) => t,
        }
    }

    pub fn between(&self, a: Sample, b: Sample) -> Interval {
        Interval {
            secs: b.at.duration_since(a.at).as_secs_f64(),
            server_cpu: self.cpu((a.server, b.server), (a.server_ns, b.server_ns)),
            loadgen_cpu: self.cpu((Some(a.me), Some(b.me)), (a.me_ns, b.me_ns)).unwrap_or(0.0),
        }
    }

    pub fn server_rss_kib(&self) -> Option<u64> {
        self.server.as_deref().and_then(rss_kib)
    }
}
