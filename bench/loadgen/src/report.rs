//! `loadgen report RESULTS.jsonl [--baseline pushloop] [--before LABEL]`: the
//! median of every field over the rounds of each (scenario, server), as one
//! markdown table with each server's ratio to the baseline server; then the
//! key metric alone with one column per server; then, with `--before`, the
//! baseline against an earlier build of itself (LABEL → baseline).

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
            key: "rss_per_conn_kib",
            key_unit: "server RSS KiB / conn",
            rate: "opened",
            rate_unit: "conns open",
            loadgen: None,
        },
        "opens" => Columns {
            key: "server_cpu_us_per_open",
            key_unit: "server CPU-µs / open",
            rate: "opens_per_s",
            rate_unit: "opens/s",
            loadgen: Some("loadgen_cpu_us_per_open"),
        },
        "fanout" | "wsfanout" => Columns {
            key: "server_cpu_s_per_mdeliv",
            key_unit: "server CPU-s / 1M deliveries",
            rate: "deliveries_per_s",
            rate_unit: "deliveries/s",
            loadgen: Some("loadgen_cpu_s_per_mdeliv"),
        },
        "churn" => Columns {
            key: "server_cpu_us_per_cycle",
            key_unit: "server CPU-µs / cycle",
            rate: "cycles_per_s",
            rate_unit: "cycles/s",
            loadgen: Some("loadgen_cpu_us_per_cycle"),
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

/// Medians of a results file, grouped by (scenario, server).
struct Results {
    /// Scenarios, and the servers of each, in the order they were first run.
    order: Vec<(String, Vec<String>)>,
    groups: BTreeMap<(String, String), Group>,
}

impl Results {
    fn parse(text: &str) -> Results {
        let mut r = Results { order: Vec::new(), groups: BTreeMap::new() };
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Some(kv) = parse_flat(line) else { continue };
            let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let (Some(Value::Str(scenario)), Some(Value::Str(label)), Some(Value::Str(mode))) =
                (get("scenario"), get("label"), get("mode"))
            else {
                continue;
            };
            match r.order.iter_mut().find(|(s, _)| *s == scenario) {
                Some((_, labels)) if !labels.contains(&label) => labels.push(label.clone()),
                Some(_) => {}
                None => r.order.push((scenario.clone(), vec![label.clone()])),
            }
            let g = r.groups.entry((scenario, label)).or_default();
            g.mode = mode;
            g.runs += 1;
            for (k, v) in kv {
                if let Value::Num(x) = v {
                    g.nums.entry(k).or_default().push(x);
                }
            }
        }
        r
    }

    fn group(&self, scenario: &str, label: &str) -> Option<&Group> {
        self.groups.get(&(scenario.to_string(), label.to_string()))
    }

    /// Every server, in the order first run.
    fn labels(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for l in self.order.iter().flat_map(|(_, labels)| labels) {
            if !all.contains(&l.as_str()) {
                all.push(l);
            }
        }
        all
    }
}

/// `a ÷ b` as "1.23×", or "–".
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

pub fn run(argv: &[String]) -> Result<(), String> {
    const USAGE: &str = "usage: loadgen report RESULTS.jsonl [--baseline LABEL] [--before LABEL]";
    let file = argv.first().ok_or(USAGE)?;
    let mut baseline = "pushloop".to_string();
    let mut before = None;
    let mut it = argv[1..].iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a label"))?.clone();
        match k.as_str() {
            "--baseline" => baseline = v,
            "--before" => before = Some(v),
            _ => return Err(format!("unknown option {k}\n{USAGE}")),
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let r = Results::parse(&text);
    print!("{}", full_table(&r, &baseline));
    println!();
    print!("{}", key_table(&r, &baseline));
    if let Some(before) = before {
        println!();
        print!("{}", before_after(&r, &before, &baseline));
    }
    Ok(())
}

/// One row per (scenario, server): every figure, medians over the rounds.
fn full_table(r: &Results, baseline: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| scenario | server | key metric | median | × {baseline} | rate | × {baseline} | loadgen, same unit | server busy | loadgen busy | notes | runs |"
    );
    t.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for (scenario, labels) in &r.order {
        let base = r.group(scenario, baseline);
        for label in labels {
            let g = &r.groups[&(scenario.clone(), label.clone())];
            let Some(c) = columns(&g.mode) else { continue };
            let key = g.median(c.key);
            let rate = g.median(c.rate);
            let busy = |cpu: &str| match g.median_ratio(cpu, "secs") {
                Some(f) => format!("{:.0}%", f * 100.0),
                None => "–".into(),
            };
            let _ = writeln!(
                t,
                "| {scenario} | {label} | {} | {} | {} | {} {} | {} | {} | {} | {} | {} | {} |",
                c.key_unit,
                fmt(key),
                ratio(key, base.and_then(|b| b.median(c.key))),
                fmt(rate),
                c.rate_unit,
                ratio(rate, base.and_then(|b| b.median(c.rate))),
                c.loadgen.map_or("–".into(), |k| fmt(g.median(k))),
                if g.mode == "hold" { "–".into() } else { busy("server_cpu_s") },
                if g.mode == "hold" { "–".into() } else { busy("loadgen_cpu_s") },
                notes(g),
                g.runs,
            );
        }
    }
    t
}

/// The key metric alone, one row per scenario and one column per server,
/// each cell with its ratio to the baseline (lower is better everywhere).
fn key_table(r: &Results, baseline: &str) -> String {
    let labels = r.labels();
    let mut t = String::new();
    let _ = writeln!(t, "| key metric (median; × {baseline}) | {} |", labels.join(" | "));
    let _ = writeln!(t, "|---|{}", "---:|".repeat(labels.len()));
    for (scenario, _) in &r.order {
        let Some(unit) = labels.iter().find_map(|l| r.group(scenario, l)).and_then(|g| columns(&g.mode)) else {
            continue;
        };
        let base = r.group(scenario, baseline).and_then(|b| b.median(unit.key));
        let cells: Vec<String> = labels
            .iter()
            .map(|l| match r.group(scenario, l).and_then(|g| g.median(unit.key)) {
                None => "–".into(),
                Some(v) if *l == baseline => fmt(Some(v)),
                Some(v) => format!("{} ({})", fmt(Some(v)), ratio(Some(v), base)),
            })
            .collect();
        let _ = writeln!(t, "| {scenario}: {} | {} |", unit.key_unit, cells.join(" | "));
    }
    t
}

/// The baseline against an earlier build of itself, scenario by scenario.
fn before_after(r: &Results, before: &str, after: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "| scenario | key metric | {before} | {after} | after ÷ before | rate | {before} | {after} | after ÷ before |");
    t.push_str("|---|---|---:|---:|---:|---|---:|---:|---:|\n");
    for (scenario, _) in &r.order {
        let (Some(b), Some(a)) = (r.group(scenario, before), r.group(scenario, after)) else { continue };
        let Some(c) = columns(&a.mode) else { continue };
        let _ = writeln!(
            t,
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.key_unit,
            fmt(b.median(c.key)),
            fmt(a.median(c.key)),
            ratio(a.median(c.key), b.median(c.key)),
            c.rate_unit,
            fmt(b.median(c.rate)),
            fmt(a.median(c.rate)),
            ratio(a.median(c.rate), b.median(c.rate)),
        );
    }
    t
}

/// Whatever says a run was not clean, plus latency for fan-out.
fn notes(g: &Group) -> String {
    let mut n = Vec::new();
    let m = |k: &str| g.median(k).unwrap_or(0.0);
    let worst = |k: &str| g.nums.get(k).map_or(0.0, |v| v.iter().cloned().fold(0.0, f64::max));
    match g.mode.as_str() {
        "fanout" | "wsfanout" => {
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
    // With permessage-deflate offered: what the server agreed to, and used.
    if g.nums.contains_key("deflate_agreed") && g.mode != "opens" {
        let compressed = ["msgs_compressed", "compressed"].iter().map(|k| m(k)).fold(0.0, f64::max);
        n.push(format!("deflate agreed on {} conns, {} messages came compressed", m("deflate_agreed"), compressed));
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

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = r#"{"mode":"opens","server_cpu_us_per_open":10,"opens_per_s":100,"secs":1,"server_cpu_s":1,"label":"pushloop","scenario":"opens"}
{"mode":"opens","server_cpu_us_per_open":14,"opens_per_s":80,"secs":1,"server_cpu_s":1,"label":"pushloop","scenario":"opens"}
{"mode":"opens","server_cpu_us_per_open":20,"opens_per_s":50,"secs":1,"server_cpu_s":1,"label":"pushloop@v1","scenario":"opens"}
{"mode":"opens","server_cpu_us_per_open":6,"opens_per_s":150,"secs":1,"server_cpu_s":1,"label":"µWebSockets","scenario":"opens"}
{"mode":"hold","rss_per_conn_kib":0.5,"opened":10,"label":"pushloop","scenario":"hold"}"#;

    #[test]
    fn key_table_has_a_column_per_server_and_ratios() {
        let t = key_table(&Results::parse(LINES), "pushloop");
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows[0], "| key metric (median; × pushloop) | pushloop | pushloop@v1 | µWebSockets |");
        assert_eq!(rows[2], "| opens: server CPU-µs / open | 12.0 | 20.0 (1.67×) | 6.000 (0.50×) |");
        assert_eq!(rows[3], "| hold: server RSS KiB / conn | 0.500 | – | – |");
    }

    #[test]
    fn before_after_divides_after_by_before() {
        let t = before_after(&Results::parse(LINES), "pushloop@v1", "pushloop");
        let row = t.lines().nth(2).unwrap();
        assert_eq!(row, "| opens | server CPU-µs / open | 20.0 | 12.0 | 0.60× | opens/s | 50.0 | 90.0 | 1.80× |");
        assert_eq!(t.lines().count(), 3, "hold has no before: no row");
    }
}
