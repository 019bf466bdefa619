//! loadgen: a one-thread `mio` load generator for pushloop and its peers.
//!
//! Modes `echo`, `hold`, `opens`, `fanout`, `wsfanout` and `churn` each print one JSON line; mode
//! `report` turns a file of such lines into the markdown table of medians.
//! The client is kept cheap on purpose — masked frames are built once per
//! connection, payloads are counted and never copied, WRITABLE is registered
//! only while bytes wait — so the server is the bottleneck, and the JSON's
//! `loadgen_*` fields show that it was.
//! Every run is bounded by `--timeout` and stops by itself.

mod args;
mod conn;
mod deflate;
mod http;
mod json;
mod procfs;
mod report;
mod tls;
mod ws;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use args::Args;
use conn::{Conn, Got, Kind, Phase, SseSink};
use json::Json;
use procfs::CpuMeter;

/// One read buffer for the whole loop; payloads are parsed where they land.
const SCRATCH_BYTES: usize = 256 * 1024;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if matches!(argv.first().map(String::as_str), None | Some("-h" | "--help" | "help")) {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    if argv.first().map(String::as_str) == Some("report") {
        return match report::run(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match args.mode.as_str() {
        "echo" => echo(&args),
        "hold" => hold(&args, false),
        "opens" => hold(&args, true),
        "fanout" => fanout(&args, false),
        "wsfanout" => fanout(&args, true),
        "churn" => churn(&args),
        m => Err(format!("unknown mode {m}\n\n{}", args::USAGE)),
    };
    match result {
        Ok(mut j) => {
            j.str("label", &args.label).str("scenario", &args.scenario);
            println!("{}", j.finish());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen {}: {e}", args.mode);
            ExitCode::FAILURE
        }
    }
}

/// Connection slots indexed by token. A token also carries the slot's
/// generation, so an event for a connection that a slot has already replaced
/// (churn does that) is recognised and dropped.
struct Net {
    poll: Poll,
    events: Events,
    slots: Vec<Slot>,
    scratch: Vec<u8>,
    addr: std::net::SocketAddr,
    /// `--publish-addr`: where `Kind::Publish` connections go (else `addr`).
    publish_addr: std::net::SocketAddr,
    /// `--tls-ca`: every connection speaks TLS first.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// What happened on one slot during a poll.
struct Happening {
    slot: usize,
    /// The connection had its response head before this event.
    was_open: bool,
    result: Result<Got, &'static str>,
}

impl Net {
    fn new(args: &Args, slots: usize) -> Result<Net, String> {
        Ok(Net {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(1024),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            scratch: vec![0; SCRATCH_BYTES],
            addr: args.addr,
            publish_addr: args.publish_addr.unwrap_or(args.addr),
            tls: match &args.tls_ca {
                Some(ca) => Some(tls::client_config(ca)?),
                None => None,
            },
        })
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Start connection `slot` (closing whatever it held).
    fn open(&mut self, slot: usize, kind: Kind, request: Vec<u8>, key: [u8; 4]) -> Result<(), &'static str> {
        self.close(slot);
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        let token = Token(slot | (s.generation as usize) << 32);
        let addr = if kind == Kind::Publish { self.publish_addr } else { self.addr };
        let mut c = Conn::connect(addr, self.poll.registry(), token, kind, request, key, self.tls.as_ref())
            .map_err(|_| "connect failed")?;
        c.try_request()?;
        s.conn = Some(c);
        Ok(())
    }

    /// Drop the connection in `slot`; closing the socket also takes it out
    /// of the poll (no `epoll_ctl` needed).
    fn close(&mut self, slot: usize) {
        self.slots[slot].conn = None;
    }

    fn conn(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slots[slot].conn.as_mut()
    }

    /// Flush what a caller queued on `slot`; on failure the slot is closed.
    fn flush(&mut self, slot: usize) -> Result<(), &'static str> {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return Ok(());
        };
        let r = c.flush();
        if r.is_err() {
            self.close(slot);
        }
        r
    }

    /// Wait up to `timeout` and drive every ready connection; report what each
    /// brought. A failed connection is closed before it is reported.
    fn turn(&mut self, timeout: Duration, sink: &mut SseSink, out: &mut Vec<Happening>) {
        out.clear();
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                panic!("poll: {e}");
            }
        }
        for ev in self.events.iter() {
            let slot = ev.token().0 & 0xFFFF_FFFF;
            let generation = (ev.token().0 >> 32) as u32;
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.generation != generation {
                continue; // stale: the slot holds a newer connection
            }
            let Some(c) = s.conn.as_mut() else { continue };
            let was_open = matches!(c.phase, Phase::Open | Phase::Closing);
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_error();
            let result = c.on_event(readable, writable, ev.is_read_closed(), &mut self.scratch, sink);
            if result.is_err() {
                s.conn = None;
            }
            out.push(Happening { slot, was_open, result });
        }
    }
}

fn payload(size: usize, binary: bool) -> Vec<u8> {
    if binary {
        (0..size).map(|i| (i * 31 + 7) as u8).collect()
    } else {
        (0..size).map(|i| b'a' + (i % 26) as u8).collect()
    }
}

/// Message `n` of a chat-like stream, as JSON text of exactly `size` bytes:
/// records whose keys repeat and whose values vary, as an app's messages do
/// (they compress about 3:1 alone, better with a kept window).
fn json_message(n: usize, size: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "hello", "the", "build", "is", "green", "again", "after", "lunch", "who", "broke", "main", "today", "deploy",
        "at", "five", "ok",
    ];
    let mut text = String::from("[");
    let mut i = n.wrapping_mul(7919);
    while text.len() < size {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let words: Vec<&str> = (0..6).map(|k| WORDS[(i >> (k * 4 + 8)) % 16]).collect();
        text.push_str(&format!(
            "{{\"id\":{},\"user\":\"user-{}\",\"room\":\"lobby\",\"ts\":{},\"text\":\"{}\"}},",
            n * 1000 + text.len(),
            i % 97,
            1_700_000_000_000u64 + (i % 1_000_000) as u64,
            words.join(" ")
        ));
    }
    text.truncate(size);
    text.into_bytes()
}

/// The messages an echo or hold run sends: `distinct` of them, JSON-like text
/// with `--deflate` (compressed once each), else `payload`.
struct Messages {
    plain: Vec<Vec<u8>>,
    compressed: Vec<Vec<u8>>,
}

impl Messages {
    fn new(args: &Args, size: usize) -> Messages {
        let distinct = args.distinct.unwrap_or(if args.deflate { 64 } else { 1 });
        let plain: Vec<Vec<u8>> = if args.deflate && !args.binary {
            (0..distinct).map(|n| json_message(n, size)).collect()
        } else {
            vec![payload(size, args.binary); distinct]
        };
        let mut compressor = deflate::Compressor::new();
        let compressed = if args.deflate { plain.iter().map(|m| compressor.compress(m)).collect() } else { Vec::new() };
        Messages { plain, compressed }
    }

    /// A ring of `ring` masked frames, message after message, compressed when
    /// the server agreed; and where each frame starts.
    fn ring(&self, ring: usize, opcode: u8, key: [u8; 4], deflate: bool) -> (Vec<u8>, Vec<usize>) {
        let mut frames = Vec::new();
        let mut starts = vec![0];
        for i in 0..ring {
            let k = i % self.plain.len();
            if deflate {
                ws::push_compressed_frame(&mut frames, opcode, &self.compressed[k], key);
            } else {
                ws::push_client_frame(&mut frames, opcode, &self.plain[k], key);
            }
            starts.push(frames.len());
        }
        (frames, starts)
    }
}

fn millions(n: u64) -> f64 {
    n as f64 / 1e6
}

/// `echo`: N connections keep D messages of S bytes in flight each; every echo
/// received is answered by the next message at once.
fn echo(args: &Args) -> Result<Json, String> {
    let n = args.conns.unwrap_or(64);
    let size = args.size.unwrap_or(20);
    let opcode = if args.binary { ws::OP_BINARY } else { ws::OP_TEXT };
    let messages = Messages::new(args, size);
    let ring = messages.plain.len().max(args.depth);
    let meter = CpuMeter::new(args.pid.clone());
    let mut net = Net::new(args, n)?;
    let request = ws::upgrade_request(&net.host(), args.path(), args.deflate);
    let mut sink = SseSink::new(Instant::now());
    let mut happened = Vec::new();
    let deadline = Instant::now() + args.timeout;

    let (mut next, mut opening, mut open, mut failed, mut errors) = (0, 0, 0, 0usize, 0u64);
    let (mut total, mut wrong_len, mut compressed, mut agreed) = (0u64, 0u64, 0u64, 0u64);
    let mut all_open_at: Option<Instant> = None;
    let mut start: Option<(procfs::Sample, u64)> = None;
    let stop_reason;
    loop {
        while next < n && opening < args.connect_batch {
            match net.open(next, Kind::Ws, request.clone(), ws::mask_key(next)) {
                Ok(()) => opening += 1,
                Err(_) => failed += 1,
            }
            next += 1;
        }
        let now = Instant::now();
        if all_open_at.is_none() && next == n && opening == 0 {
            if open == 0 {
                return Err("no connection opened".into());
            }
            all_open_at = Some(now);
        }
        if let (None, Some(t)) = (start, all_open_at) {
            if now.duration_since(t).as_secs_f64() >= args.warmup {
                start = Some((meter.sample(), total));
            }
        }
        if let Some((s, base)) = start {
            if now.duration_since(s.at).as_secs_f64() >= args.secs {
                stop_reason = "time";
                break;
            }
            if total - base >= args.max_msgs {
                stop_reason = "count";
                break;
            }
        }
        if all_open_at.is_some() && open == 0 {
            stop_reason = "all connections lost";
            break;
        }
        if now >= deadline {
            stop_reason = "timeout";
            break;
        }
        net.turn(Duration::from_millis(50), &mut sink, &mut happened);
        for h in &happened {
            let got = match &h.result {
                Ok(g) => g,
                Err(_) => {
                    errors += 1;
                    if h.was_open {
                        open -= 1;
                    } else {
                        opening -= 1;
                        failed += 1;
                    }
                    continue;
                }
            };
            if got.opened {
                opening -= 1;
                open += 1;
                agreed += got.deflate as u64;
                let (frames, starts) = messages.ring(ring, opcode, ws::mask_key(h.slot), got.deflate);
                let c = net.conn(h.slot).unwrap();
                c.ws.expect_len = Some(size as u64);
                c.start_stream(frames, starts, args.depth);
            }
            total += got.msgs;
            wrong_len += got.wrong_len;
            if start.is_some() {
                compressed += got.compressed;
            }
            if got.eof || got.close {
                errors += 1;
                open -= 1;
                net.close(h.slot);
                continue;
            }
            if let Some(c) = net.conn(h.slot) {
                if got.msgs > 0 {
                    c.owe_frames(got.msgs);
                }
                if (got.opened || got.msgs > 0) && net.flush(h.slot).is_err() {
                    errors += 1;
                    open -= 1;
                }
            }
        }
    }
    let end = meter.sample();
    let mut j = Json::new("echo");
    j.int("conns", n as u64)
        .int("depth", args.depth as u64)
        .int("size", size as u64)
        .bool("binary", args.binary)
        .bool("deflate_offered", args.deflate)
        .int("deflate_agreed", agreed)
        .int("opened", open as u64)
        .int("failed", failed as u64)
        .int("errors", errors)
        .int("wrong_len", wrong_len)
        .str("stop", stop_reason);
    if let Some((s, base)) = start {
        let iv = meter.between(s, end);
        let msgs = total - base;
        j.num("secs", iv.secs)
            .int("msgs", msgs)
            .int("msgs_compressed", compressed)
            .num("msgs_per_s", msgs as f64 / iv.secs)
            .opt("server_cpu_s", iv.server_cpu)
            .opt("server_cpu_s_per_mmsg", iv.server_cpu.map(|c| c / millions(msgs)))
            .num("loadgen_cpu_s", iv.loadgen_cpu)
            .num("loadgen_cpu_s_per_mmsg", iv.loadgen_cpu / millions(msgs));
    }
    Ok(j)
}

/// `hold`: N idle WebSocket connections; the server's RSS before the first
/// and after the last (plus a settle) gives the memory one connection costs.
///
/// `opens` (`only_opens`): the same N opens, `--connect-batch` at a time, and
/// nothing else: no settle, no messages, no close. The server's CPU from just
/// before the first connect to the last 101 (its `Sec-WebSocket-Accept`
/// checked) is the CPU of accepting and upgrading N connections, apart from
/// the echo and the close handshake that churn adds. `hold` reports the same
/// figures for its own opens.
///
/// With `--warm-msgs W`, each connection first echoes W messages (compressed,
/// with `--deflate`, where the server agreed), so what the server keeps for a
/// connection that has spoken (a compression context, say) is counted too.
fn hold(args: &Args, only_opens: bool) -> Result<Json, String> {
    let n = args.conns.unwrap_or(1000);
    let settle = if only_opens { Duration::ZERO } else { Duration::from_millis(args.settle_ms.unwrap_or(1000)) };
    let warm = if only_opens { 0 } else { args.warm_msgs };
    let size = args.size.unwrap_or(1024);
    let messages = Messages::new(args, size);
    let opcode = if args.binary { ws::OP_BINARY } else { ws::OP_TEXT };
    let meter = CpuMeter::new(args.pid.clone());
    let mut net = Net::new(args, n)?;
    let request = ws::upgrade_request(&net.host(), args.path(), args.deflate);
    // Echoes each connection has had back, and how many are done warming.
    let mut echoed = vec![0u64; n];
    let (mut warmed, mut agreed, mut compressed) = (0usize, 0u64, 0u64);
    let mut sink = SseSink::new(Instant::now());
    let mut happened = Vec::new();
    let rss_before = meter.server_rss_kib();
    let start = meter.sample();
    let begin = start.at;
    let deadline = begin + args.timeout;

    let (mut next, mut opening, mut open, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut errors = 0u64;
    let mut all_open: Option<procfs::Sample> = None;
    let mut settled_at: Option<Instant> = None;
    let split;
    let stop_reason = loop {
        while next < n && opening < args.connect_batch {
            match net.open(next, Kind::Ws, request.clone(), ws::mask_key(next)) {
                Ok(()) => opening += 1,
                Err(_) => failed += 1,
            }
            next += 1;
        }
        if settled_at.is_none() && next == n && opening == 0 && warmed >= open {
            let s = meter.sample();
            settled_at = Some(s.at + settle);
            all_open = Some(s);
        }
        let now = Instant::now();
        if settled_at.is_some_and(|t| now >= t) {
            break if only_opens { "all open" } else { "settled" };
        }
        if now >= deadline {
            break "timeout";
        }
        net.turn(Duration::from_millis(50), &mut sink, &mut happened);
        for h in &happened {
            match &h.result {
                Ok(got) => {
                    if got.opened {
                        opening -= 1;
                        open += 1;
                        agreed += got.deflate as u64;
                        if warm == 0 {
                            warmed += 1;
                        }
                    }
                    compressed += got.compressed;
                    // Warming: the next message after each echo, W in all.
                    if warm > 0 && (got.opened || got.msgs > 0) {
                        echoed[h.slot] += got.msgs;
                        if echoed[h.slot] >= warm {
                            warmed += (echoed[h.slot] - got.msgs < warm) as usize;
                        } else if let Some(c) = net.conn(h.slot) {
                            let k = echoed[h.slot] as usize % messages.plain.len();
                            c.ws.expect_len = Some(size as u64);
                            if c.ws.deflate_agreed() {
                                c.queue_compressed(opcode, &messages.compressed[k]);
                            } else {
                                c.queue_frame(opcode, &messages.plain[k]);
                            }
                        }
                    }
                    if got.eof || got.close {
                        errors += 1;
                        open -= 1;
                        net.close(h.slot);
                    } else if net.conn(h.slot).is_some() {
                        let _ = net.flush(h.slot); // pongs, if the server pinged
                    }
                }
                Err(_) => {
                    errors += 1;
                    if h.was_open {
                        open -= 1;
                    } else {
                        opening -= 1;
                        failed += 1;
                    }
                }
            }
        }
    };
    let rss_after = meter.server_rss_kib();
    // After the RSS sample and the measured interval: the probe costs nothing measured.
    split = loop_split(args.addr);
    let mut j = Json::new(if only_opens { "opens" } else { "hold" });
    if let Some(split) = &split {
        j.str("loop_split", split);
    }
    j.int("conns", n as u64)
        .bool("deflate_offered", args.deflate)
        .int("deflate_agreed", agreed)
        .int("warm_msgs", warm)
        .int("warmed", warmed as u64)
        .int("msgs_compressed", compressed)
        .int("opened", open as u64)
        .int("failed", failed as u64)
        .int("errors", errors)
        .str("stop", stop_reason);
    if let Some(end) = all_open {
        // Opens that completed; failed ones cost the server too, but are flagged in `failed`.
        let iv = meter.between(start, end);
        let per = |cpu: f64| {
            if open > 0 {
                cpu * 1e6 / open as f64
            } else {
                0.0
            }
        };
        j.num("secs", iv.secs)
            .num("open_secs", iv.secs)
            .num("opens_per_s", open as f64 / iv.secs)
            .opt("server_cpu_s", iv.server_cpu)
            .opt("server_cpu_us_per_open", iv.server_cpu.map(per))
            .num("loadgen_cpu_s", iv.loadgen_cpu)
            .num("loadgen_cpu_us_per_open", per(iv.loadgen_cpu));
    }
    j.opt("rss_before_kib", rss_before.map(|v| v as f64)).opt("rss_after_kib", rss_after.map(|v| v as f64));
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        if open > 0 {
            let per_conn = (a as f64 - b as f64) * 1024.0 / open as f64;
            j.num("rss_per_conn_bytes", per_conn).num("rss_per_conn_kib", per_conn / 1024.0);
        }
    }
    Ok(j)
}

/// `fanout`: N SSE subscribers, then E events POSTed to /publish, each
/// carrying its send time. By default (`--interval-us 0`) the events go back
/// to back on one keep-alive connection, the next as soon as the server has
/// answered one (`--window` publishes in flight), so the run measures how
/// fast the server can fan out, not the publisher's pace. With an interval,
/// one event is sent every interval on a fresh connection each (a steady pace).
/// With `--publish-addr`, the events are published on another node than the
/// one the subscribers follow (the Redis backend's two-node path).
///
/// `wsfanout` (`over_ws`): the subscribers are WebSockets on `--path`, each
/// event one message; with `--deflate` they offer permessage-deflate and the
/// events are padded with words (text that compresses as prose does) rather
/// than `x` (which compresses 100:1). Every message is counted; every 10th
/// subscriber reads (and inflates) its messages for the latency: inflating
/// costs the client ~20 µs a message, which would otherwise set the pace.
fn fanout(args: &Args, over_ws: bool) -> Result<Json, String> {
    let n = args.conns.unwrap_or(100);
    let e = args.events;
    let size = args.size.unwrap_or(64);
    let settle = Duration::from_millis(args.settle_ms.unwrap_or(300));
    let paced = !args.interval.is_zero();
    let window = args.window.max(1);
    let meter = CpuMeter::new(args.pid.clone());
    // Paced: one slot per publish. Back to back: one keep-alive publisher in slot n.
    let mut net = Net::new(args, if paced { n + e } else { n + 1 })?;
    let host = net.host();
    let subscribe = if over_ws {
        ws::upgrade_request(&host, args.path(), args.deflate)
    } else {
        format!("GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
    };
    let kind = if over_ws { Kind::Ws } else { Kind::Sse };
    const WORDS: [&str; 8] = ["sensor", "reads", "degrees", "at", "station", "north", "ok", "humidity"];
    let base = Instant::now();
    let mut sink = SseSink::new(base);
    sink.latency_us.reserve(n * e);
    let mut happened = Vec::new();
    let deadline = base + args.timeout;
    // One POST whose data is `SEQ SENT_US xxx…`, padded to `size` bytes.
    let publish_request = |seq: usize, now: Instant, close: bool| {
        let sent_us = now.duration_since(base).as_micros();
        let mut body = format!("{seq} {sent_us} ");
        let mut k = seq;
        while body.len() < size {
            if args.deflate {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                body.push_str(WORDS[(k >> 8) % WORDS.len()]);
                body.push_str(&format!(" {} ", (k >> 12) % 1000));
            } else {
                body.push('x');
            }
        }
        body.truncate(size);
        format!(
            "POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes()
    };

    let (mut next, mut opening, mut open, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let (mut errors, mut publish_errors, mut published, mut answered) = (0u64, 0u64, 0usize, 0usize);
    let (mut agreed, mut compressed, mut delivered) = (0u64, 0u64, 0u64);
    let mut publish_from: Option<Instant> = None;
    let split;
    let mut start: Option<procfs::Sample> = None;
    let mut first_publish: Option<Instant> = None;
    let mut last_publish: Option<Instant> = None;
    let publisher = n;
    let stop_reason = loop {
        while next < n && opening < args.connect_batch {
            match net.open(next, kind, subscribe.clone(), ws::mask_key(next)) {
                Ok(()) => opening += 1,
                Err(_) => failed += 1,
            }
            next += 1;
        }
        let mut now = Instant::now();
        if publish_from.is_none() && next == n && opening == 0 {
            if open == 0 {
                return Err("no subscriber connected".into());
            }
            publish_from = Some(now + settle);
        }
        if let Some(t0) = publish_from {
            if paced {
                // Event k is due at publish_from + k × interval, on a connection of its own.
                while published < e && now >= t0 + args.interval * published as u32 {
                    if start.is_none() {
                        start = Some(meter.sample());
                        first_publish = Some(now);
                    }
                    if net.open(n + published, Kind::Publish, publish_request(published, now, true), [0; 4]).is_err() {
                        publish_errors += 1;
                    }
                    published += 1;
                    last_publish = Some(now);
                    now = Instant::now();
                }
            } else if now >= t0 && published == 0 {
                // The first request opens the keep-alive connection; the rest of
                // the window follows it at once (pipelined, RFC 9112 §9.3.2).
                start = Some(meter.sample());
                now = Instant::now();
                first_publish = Some(now);
                let mut burst = publish_request(0, now, false);
                published = 1;
                while published < e.min(window) {
                    burst.extend_from_slice(&publish_request(published, now, false));
                    published += 1;
                }
                if net.open(publisher, Kind::Publish, burst, [0; 4]).is_err() {
                    return Err("publisher could not connect".into());
                }
                last_publish = Some(now);
            }
        }
        let received = if over_ws { delivered } else { sink.received };
        if received >= (open * e) as u64 && published == e {
            break "all delivered";
        }
        // A slow server is given time: stop only once nothing has arrived
        // for `--drain-ms` after the last publish.
        let last_activity = last_publish.max(sink.last_rx);
        if published == e && last_activity.is_some_and(|t| now >= t + args.drain) {
            break "drain timeout";
        }
        if published > 0 && published < e && !paced && last_activity.is_some_and(|t| now >= t + args.drain) {
            break "publisher stalled";
        }
        if now >= deadline {
            break "timeout";
        }
        let wait = match publish_from {
            Some(t0) if paced && published < e => {
                (t0 + args.interval * published as u32).saturating_duration_since(now)
            }
            Some(t0) if published == 0 => t0.saturating_duration_since(now),
            _ => Duration::from_millis(50),
        };
        net.turn(wait.min(Duration::from_millis(50)), &mut sink, &mut happened);
        let mut more = 0;
        for h in &happened {
            match &h.result {
                Ok(got) if h.slot >= n && paced => {
                    if got.responses > 0 {
                        answered += 1;
                        net.close(h.slot); // the response is all we wait for
                    } else if got.eof {
                        publish_errors += 1;
                        net.close(h.slot);
                    }
                }
                Ok(got) if h.slot >= n => {
                    answered += got.responses as usize;
                    more += got.responses as usize;
                    if got.eof {
                        publish_errors += (published - answered) as u64;
                        net.close(h.slot);
                    }
                }
                Ok(got) => {
                    if got.opened {
                        opening -= 1;
                        open += 1;
                        agreed += got.deflate as u64;
                        if let Some(c) = net.conn(h.slot) {
                            c.ws.keep_payloads = h.slot % 10 == 0;
                        }
                    }
                    compressed += got.compressed;
                    if over_ws && got.msgs > 0 {
                        delivered += got.msgs;
                        sink.last_rx = Some(Instant::now());
                    }
                    if got.eof || got.close {
                        errors += 1;
                        open -= 1;
                        net.close(h.slot);
                    } else if over_ws && net.conn(h.slot).is_some() {
                        let _ = net.flush(h.slot); // pongs, if the server pinged
                    }
                }
                Err(_) if h.slot >= n => publish_errors += 1,
                Err(_) => {
                    errors += 1;
                    if h.was_open {
                        open -= 1;
                    } else {
                        opening -= 1;
                        failed += 1;
                    }
                }
            }
        }
        // Back to back: each answer lets the next publish go (window kept full).
        if more > 0 && published < e {
            let now = Instant::now();
            if let Some(c) = net.conn(publisher) {
                while more > 0 && published < e {
                    c.queue_bytes(&publish_request(published, now, false));
                    published += 1;
                    more -= 1;
                }
                last_publish = Some(now);
                if net.flush(publisher).is_err() {
                    publish_errors += 1;
                }
            }
        }
    };
    let end = meter.sample();
    // After the measured interval, with the subscribers still open.
    split = loop_split(args.addr);
    let expected = (n * e) as u64;
    let received = if over_ws { delivered } else { sink.received };
    let mut j = Json::new(if over_ws { "wsfanout" } else { "fanout" });
    if let Some(split) = &split {
        j.str("loop_split", split);
    }
    j.int("subscribers", n as u64)
        .bool("deflate_offered", args.deflate)
        .int("deflate_agreed", agreed)
        .int("compressed", compressed)
        .int("subscribed", open as u64)
        .int("failed", failed as u64)
        .int("events", e as u64)
        .int("size", size as u64)
        .int("interval_us", args.interval.as_micros() as u64)
        .int("window", if paced { 0 } else { window as u64 })
        .int("expected", expected)
        .int("received", received)
        .int("lost", expected.saturating_sub(received))
        .int("errors", errors)
        .int("publish_errors", publish_errors)
        .int("answered", answered as u64)
        .str("stop", stop_reason);
    if let (Some(s), Some(t0)) = (start, first_publish) {
        let iv = meter.between(s, end);
        let last = sink.last_rx.unwrap_or(t0);
        let span = last.saturating_duration_since(t0).as_secs_f64();
        let mut lat = std::mem::take(&mut sink.latency_us);
        lat.sort_unstable();
        let pct =
            |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map(|&v| v as f64);
        let publish_span = last_publish.unwrap_or(t0).saturating_duration_since(t0).as_secs_f64();
        j.num("secs", span)
            .num("deliveries_per_s", if span > 0.0 { received as f64 / span } else { 0.0 })
            .num("publishes_per_s", if publish_span > 0.0 { published as f64 / publish_span } else { 0.0 })
            .opt("latency_p50_us", pct(0.50))
            .opt("latency_p99_us", pct(0.99))
            .opt("latency_max_us", lat.last().map(|&v| v as f64))
            .opt("server_cpu_s", iv.server_cpu)
            .opt("server_cpu_s_per_mdeliv", iv.server_cpu.map(|c| c / millions(received.max(1))))
            .num("loadgen_cpu_s", iv.loadgen_cpu)
            .num("loadgen_cpu_s_per_mdeliv", iv.loadgen_cpu / millions(received.max(1)));
    }
    Ok(j)
}

/// How a pushloop with several loops has spread its connections: the
/// `"loops":[a,b,…]` of its `/stats` as `a/b/…` (the probe's own connection
/// counted on its loop). `None` for a server without it. Asked once, while
/// every connection of the scenario is open, on a connection of its own.
fn loop_split(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let start = answer.find("\"loops\":[")? + "\"loops\":[".len();
    let end = start + answer[start..].find(']')?;
    let loops: Vec<&str> = answer[start..end].split(',').collect();
    (loops.len() > 1).then(|| loops.join("/"))
}

/// `churn`: K slots, each looping open → upgrade → one message and its echo →
/// close handshake → server closes TCP. Counts whole loops ("cycles"); the
/// open alone is measured by `opens`.
fn churn(args: &Args) -> Result<Json, String> {
    let k = args.slots;
    let size = args.size.unwrap_or(20);
    let opcode = if args.binary { ws::OP_BINARY } else { ws::OP_TEXT };
    let message = payload(size, args.binary);
    let meter = CpuMeter::new(args.pid.clone());
    let mut net = Net::new(args, k)?;
    let request = ws::upgrade_request(&net.host(), args.path(), false);
    let mut sink = SseSink::new(Instant::now());
    let mut happened = Vec::new();
    let begin = Instant::now();
    let deadline = begin + args.timeout;
    // A loop that takes longer than this is abandoned and counted as an error.
    let stuck = Duration::from_secs(5);

    let (mut done, mut errors, mut stuck_count, mut no_server_close) = (0u64, 0u64, 0u64, 0u64);
    let mut start: Option<(procfs::Sample, u64)> = None;
    let mut last_scan = begin;
    for slot in 0..k {
        if net.open(slot, Kind::Ws, request.clone(), ws::mask_key(slot)).is_err() {
            return Err("connect failed".into());
        }
    }
    let stop_reason = loop {
        let now = Instant::now();
        if start.is_none() && now.duration_since(begin).as_secs_f64() >= args.warmup {
            start = Some((meter.sample(), done));
        }
        if let Some((s, base)) = start {
            if now.duration_since(s.at).as_secs_f64() >= args.secs {
                break "time";
            }
            if done - base >= args.max_msgs {
                break "count";
            }
        }
        if now >= deadline {
            break "timeout";
        }
        if now.duration_since(last_scan) >= Duration::from_millis(100) {
            last_scan = now;
            for slot in 0..k {
                let late = net.slots[slot].conn.as_ref().is_none_or(|c| now.duration_since(c.since) > stuck);
                if late {
                    if net.slots[slot].conn.as_ref().is_some_and(|c| c.phase == Phase::Closing) {
                        no_server_close += 1;
                        done += 1;
                    } else {
                        stuck_count += 1;
                    }
                    let _ = net.open(slot, Kind::Ws, request.clone(), ws::mask_key(slot));
                }
            }
        }
        net.turn(Duration::from_millis(50), &mut sink, &mut happened);
        for h in &happened {
            let got = match &h.result {
                Ok(g) => g,
                Err(_) => {
                    errors += 1;
                    let _ = net.open(h.slot, Kind::Ws, request.clone(), ws::mask_key(h.slot));
                    continue;
                }
            };
            let Some(c) = net.conn(h.slot) else { continue };
            match c.phase {
                _ if got.eof && c.phase == Phase::Closing => {
                    // RFC 6455 §7.1.1: the server closes TCP first; the loop is done.
                    done += 1;
                    let _ = net.open(h.slot, Kind::Ws, request.clone(), ws::mask_key(h.slot));
                    continue;
                }
                _ if got.eof => {
                    errors += 1;
                    let _ = net.open(h.slot, Kind::Ws, request.clone(), ws::mask_key(h.slot));
                    continue;
                }
                Phase::Open if got.opened => {
                    c.ws.expect_len = Some(size as u64);
                    c.queue_frame(opcode, &message);
                    if got.msgs == 0 {
                        let _ = net.flush(h.slot);
                        continue;
                    }
                }
                _ => {}
            }
            let Some(c) = net.conn(h.slot) else { continue };
            if c.phase == Phase::Open && got.msgs > 0 {
                // Echo received: start the closing handshake, code 1000 (§7.4.1).
                c.queue_frame(ws::OP_CLOSE, &1000u16.to_be_bytes());
                c.phase = Phase::Closing;
                c.since = Instant::now();
                let _ = net.flush(h.slot);
            } else if got.close || !c.ws.pongs_owed.is_empty() {
                let _ = net.flush(h.slot);
            }
        }
    };
    let end = meter.sample();
    let mut j = Json::new("churn");
    j.int("slots", k as u64)
        .int("size", size as u64)
        .int("errors", errors)
        .int("stuck", stuck_count)
        .int("no_server_close", no_server_close)
        .str("stop", stop_reason);
    if let Some((s, base)) = start {
        let iv = meter.between(s, end);
        let cycles = done - base;
        let per = |cpu: f64| {
            if cycles > 0 {
                cpu * 1e6 / cycles as f64
            } else {
                0.0
            }
        };
        j.num("secs", iv.secs)
            .int("cycles", cycles)
            .num("cycles_per_s", cycles as f64 / iv.secs)
            .opt("server_cpu_s", iv.server_cpu)
            .opt("server_cpu_us_per_cycle", iv.server_cpu.map(per))
            .num("loadgen_cpu_s", iv.loadgen_cpu)
            .num("loadgen_cpu_us_per_cycle", per(iv.loadgen_cpu));
    }
    Ok(j)
}
