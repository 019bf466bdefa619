//! `loadgen report RESULTS.jsonl [--baseline pushloop]`: the median of every
//! field over the rounds of each (scenario, server), as one markdown table,
//! with each server's ratio to the baseline server.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::json::{parse_flat, Value};

/// What a row of the table shows for one mode.
struct Columns {
    /// The scenario's key metric (lower is better) and its unit.
    key: &'static str,
    key_unit: &'static str,
    /// A rate (higher is better).
    rate: &'static str,
    rate_unit: &'static str,
    /// The load generator's share of the same work, in the key metric's unit.
    loadgen: Option<&'static str>,
}

fn columns(mode: &str) -> Option<Columns> {
    Some(match mode {
        "echo" => Columns {
            key: "server_cpu_s_per_mmsg",
            key_unit: "server CPU-s / 1M msgs",
            rate: "msgs_per_s",
            rate_unit: "msgs/s",
            loadgen: Some("loadgen_cpu_s_per_mmsg"),
        },
        "hold" => Columns {
            key: "rss_per_conn_bytes",
            key_unit: "server RSS B / conn",
            rate: "opened",
            rate_unit: "conns open",
            loadgen: None,
        },
        "fanout" => Columns {
            key: "server_cpu_s_per_mdeliv",
            key_unit: "server CPU-s / 1M deliveries",
            rate: "deliveries_per_s",
            rate_unit: "deliveries/s",
            loadgen: Some("loadgen_cpu_s_per_mdeliv"),
        },
        "churn" => Columns {
            key: "server_cpu_us_per_open",
            key_unit: "server CPU-µs / open",
            rate: "opens_per_s",
            rate_unit: "opens/s",
            loadgen: Some("loadgen_cpu_us_per_open"),
        },
        _ => return None,
    })
}

/// All runs of one server in one scenario.
#[derive(Default)]
struct Group {
    mode: String,
    runs: usize,
    nums: BTreeMap<String, Vec<f64>>,
}

impl Group {
    fn median(&self, k: &str) -> Option<f64> {
        let mut v = self.nums.get(k)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let m = v.len() / 2;
        Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
    }

    /// Median of a / b taken run by run (b ≠ 0).
    fn median_ratio(&self, a: &str, b: &str) -> Option<f64> {
        let (x, y) = (self.nums.get(a)?, self.nums.get(b)?);
        let mut g = Group::default();
        g.nums.insert("r".into(), x.iter().zip(y).filter(|(_, d)| **d > 0.0).map(|(n, d)| n / d).collect());
        g.median("r")
    }
}

pub fn run(argv: &[String]) -> Result<(), String> {
    let file = argv.first().ok_or("usage: loadgen report RESULTS.jsonl [--baseline LABEL]")?;
    let baseline = match argv.get(1).map(String::as_str) {
        Some("--baseline") => argv.get(2).ok_or("--baseline needs a label")?.clone(),
        _ => "pushloop".to_string(),
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;

    // Keep scenarios and servers in the order they were first run.
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Some(kv) = parse_flat(line) else { continue };
        let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(Value::Str(scenario)), Some(Value::Str(label)), Some(Value::Str(mode))) =
            (get("scenario"), get("label"), get("mode"))
        else {
            continue;
        };
        match order.iter_mut().find(|(s, _)| *s == scenario) {
            Some((_, labels)) if !labels.contains(&label) => labels.push(label.clone()),
            Some(_) => {}
            None => order.push((scenario.clone(), vec![label.clone()])),
        }
        let g = groups.entry((scenario, label)).or_default();
        g.mode = mode;
        g.runs += 1;
        for (k, v) in kv {
            if let Value::Num(x) = v {
                g.nums.entry(k).or_default().push(x);
            }
        }
    }

    let mut t = String::new();
    t.push_str("| scenario | server | key metric | median | × pushloop | rate | × pushloop | loadgen, same unit | server busy | loadgen busy | notes | runs |\n");
    t.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for (scenario, labels) in &order {
        let base = groups.get(&(scenario.clone(), baseline.clone()));
        for label in labels {
            let g = &groups[&(scenario.clone(), label.clone())];
            let Some(c) = columns(&g.mode) else { continue };
            let key = g.median(c.key);
            let rate = g.median(c.rate);
            let ratio = |v: Option<f64>, k: &str| match (v, base.and_then(|b| b.median(k))) {
                (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
                _ => "–".into(),
            };
            let busy = |cpu: &str| match g.median_ratio(cpu, "secs") {
                Some(f) => format!("{:.0}%", f * 100.0),
                None => "–".into(),
            };
            let _ = writeln!(
                t,
                "| {scenario} | {label} | {} | {} | {} | {} {} | {} | {} | {} | {} | {} | {} |",
                c.key_unit,
                fmt(key),
                ratio(key, c.key),
                fmt(rate),
                c.rate_unit,
                ratio(rate, c.rate),
                c.loadgen.map_or("–".into(), |k| fmt(g.median(k))),
                if g.mode == "hold" { "–".into() } else { busy("server_cpu_s") },
                if g.mode == "hold" { "–".into() } else { busy("loadgen_cpu_s") },
                notes(g),
                g.runs,
            );
        }
    }
    print!("{t}");
    Ok(())
}

/// Whatever says a run was not clean, plus latency for fan-out.
fn notes(g: &Group) -> String {
    let mut n = Vec::new();
    let m = |k: &str| g.median(k).unwrap_or(0.0);
    let worst = |k: &str| g.nums.get(k).map_or(0.0, |v| v.iter().cloned().fold(0.0, f64::max));
    match g.mode.as_str() {
        "fanout" => {
            n.push(format!("lost {} (worst {})", m("lost"), worst("lost")));
            n.push(format!("p50 {:.1} ms, p99 {:.1} ms", m("latency_p50_us") / 1e3, m("latency_p99_us") / 1e3));
        }
        "hold" => n.push(format!("RSS {:.1} → {:.1} MiB", m("rss_before_kib") / 1024.0, m("rss_after_kib") / 1024.0)),
        _ => {}
    }
    // On its own core the load generator should not limit the run; say so when it did.
    if g.median_ratio("loadgen_cpu_s", "secs").is_some_and(|b| b >= 0.9) {
        n.push("load generator ≥90% busy: it set the pace".into());
    }
    for k in ["failed", "errors", "wrong_len", "publish_errors", "stuck", "no_server_close"] {
        if worst(k) > 0.0 {
            n.push(format!("{k} ≤{}", worst(k)));
        }
    }
    n.join("; ")
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{:.0}", v),
        Some(v) if v.abs() >= 10.0 => format!("{:.1}", v),
        Some(v) => format!("{:.3}", v),
    }
}
