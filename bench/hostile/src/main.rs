//! hostile: one hostile client against a running pushloop demo server (`--no-tick`),
//! for project issue 11 ("One client must never stall the loop or grow memory
//! without bound"). Each mode runs one attack, bounded in count and in time,
//! against 127.0.0.1 only, and prints one line: `value<TAB>detail`.
//!
//! ```text
//! hostile flood     --addr A --kind ping|echo|http [--secs 10]
//!     a client floods (and reads everything) for SECS; a probe asks GET /stats
//!     every 100 ms on a fresh connection: value = the longest probe wait, s
//! hostile sigterm   --addr A --pid P [--secs 10]
//!     a ping flood; SIGTERM to P after 2 s: values = seconds until the flooder
//!     gets the server's Close frame, and until P exits (TAB-separated)
//! hostile pipeline  --addr A --pid P --path /poll|/ --bytes N [--fill]
//!     N bytes of pipelined `GET PATH` on one connection, never read (--fill:
//!     fill the feed's history first): value = growth of P's peak RSS, MB
//! hostile longpolls --addr A --pid P [--conns 500] [--depth 100] [--event 65536]
//!     CONNS connections × DEPTH pipelined long-polls, held; one EVENT-byte
//!     publish: value = growth of P's peak RSS, MB
//! hostile pings     --addr A --pid P [--count 1000000] [--payload 125]
//!     COUNT pings of PAYLOAD bytes on one WebSocket, pongs never read:
//!     value = RSS growth, MB
//! hostile slowread  --addr A [--requests 30] [--rate 600000]
//!     REQUESTS pipelined GET /poll (full history), the last `Connection: close`,
//!     read at RATE bytes/s: value = bytes received, of the answer's total
//! ```
//!
//! RSS is `VmHWM` (the peak) of `/proc/PID/status` minus `VmRSS` before the
//! attack, read once the server has settled (no growth for a second, at most
//! 20 s). If the server passes `--cap-mb` (default 12000) it is killed and the
//! value is reported as at least the cap.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: hostile flood|sigterm|pipeline|longpolls|pings|slowread --addr 127.0.0.1:PORT [--pid P] [options] (see src/main.rs)";

struct Args {
    mode: String,
    addr: SocketAddr,
    pid: Option<u32>,
    kind: String,
    secs: f64,
    path: String,
    bytes: usize,
    fill: bool,
    conns: usize,
    depth: usize,
    event: usize,
    count: u64,
    payload: usize,
    requests: usize,
    rate: usize,
    cap_mb: u64,
}

fn parse() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().ok_or(USAGE)?;
    let mut args = Args {
        mode,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        pid: None,
        kind: "ping".into(),
        secs: 10.0,
        path: "/poll".into(),
        bytes: 124_000,
        fill: false,
        conns: 500,
        depth: 100,
        event: 65536,
        count: 1_000_000,
        payload: 125,
        requests: 30,
        rate: 600_000,
        cap_mb: 12_000,
    };
    while let Some(flag) = argv.next() {
        if flag == "--fill" {
            args.fill = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--addr" => args.addr = value.parse().map_err(|_| "--addr takes HOST:PORT")?,
            "--pid" => args.pid = Some(number()? as u32),
            "--kind" => args.kind = value.clone(),
            "--secs" => args.secs = value.parse().map_err(|_| "--secs takes seconds")?,
            "--path" => args.path = value.clone(),
            "--bytes" => args.bytes = number()? as usize,
            "--conns" => args.conns = number()? as usize,
            "--depth" => args.depth = number()? as usize,
            "--event" => args.event = number()? as usize,
            "--count" => args.count = number()?,
            "--payload" => args.payload = (number()? as usize).min(125),
            "--requests" => args.requests = number()? as usize,
            "--rate" => args.rate = number()? as usize,
            "--cap-mb" => args.cap_mb = number()?,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if !args.addr.ip().is_loopback() {
        return Err("--addr must be 127.0.0.1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("hostile: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode.as_str() {
        "flood" => flood(&args),
        "sigterm" => sigterm(&args),
        "pipeline" => pipeline(&args),
        "longpolls" => longpolls(&args),
        "pings" => pings(&args),
        "slowread" => slowread(&args),
        other => Err(format!("unknown mode {other}\n{USAGE}")),
    };
    match result {
        Ok((value, detail)) => {
            println!("{value}\t{detail}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hostile {}: {error}", args.mode);
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<(String, String), String>;

// ---- Sockets and the two protocols ------------------------------------------------

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(30))))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

/// Reads one response with a `Content-Length` body; returns the status and body.
fn read_response(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let mut buf = [0; 65536];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or(format!("no status in {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffered.len() < total {
                let n = stream.read(&mut buf).map_err(|e| format!("body: {e}"))?;
                if n == 0 {
                    return Err("closed inside a body".into());
                }
                buffered.extend_from_slice(&buf[..n]);
            }
            let body = buffered[end + 4..total].to_vec();
            buffered.drain(..total);
            return Ok((status, body));
        }
        let n = stream.read(&mut buf).map_err(|e| format!("head: {e}"))?;
        if n == 0 {
            return Err("closed before a response".into());
        }
        buffered.extend_from_slice(&buf[..n]);
    }
}

/// One request on a fresh connection (`Connection: close`).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut stream = connect(addr)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("request: {e}"))?;
    read_response(&mut stream, &mut Vec::new())
}

/// Publishes `body` on the demo's feed; returns the event id.
fn publish(addr: SocketAddr, body: &[u8]) -> Result<u64, String> {
    let (status, answer) = request(addr, "POST", "/publish", body)?;
    let text = String::from_utf8_lossy(&answer);
    if status != 200 {
        return Err(format!("publish: {status} {text}"));
    }
    text.trim_start_matches("{\"id\":")
        .trim_end_matches('}')
        .parse()
        .map_err(|_| format!("publish: no id in {text}"))
}

/// Fills the feed's history (1 MiB of encodings by default: ~40 events of 8 KiB).
fn fill_history(addr: SocketAddr) -> Result<usize, String> {
    for _ in 0..48 {
        publish(addr, &[b'h'; 8 * 1024])?;
    }
    Ok(request(addr, "GET", "/poll", b"")?.1.len())
}

/// A number from `/stats`: `section` is a transport, `None` a top-level counter.
fn stat(addr: SocketAddr, section: Option<&str>, name: &str) -> Result<u64, String> {
    let json = String::from_utf8_lossy(&request(addr, "GET", "/stats", b"")?.1).into_owned();
    let from = match section {
        Some(s) => json
            .find(&format!("\"{s}\":{{"))
            .ok_or(format!("no {s} in {json}"))?,
        None => 0,
    };
    let key = format!("\"{name}\":");
    let at = json[from..]
        .find(&key)
        .ok_or(format!("no {name} in {json}"))?
        + from
        + key.len();
    let rest = &json[at..];
    rest[..rest.find([',', '}']).unwrap_or(rest.len())]
        .parse()
        .map_err(|_| format!("{name} is not a number in {json}"))
}

/// Opens a WebSocket on `/echo` (asserting 101).
fn websocket(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = connect(addr)?;
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: hostile\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .map_err(|e| format!("upgrade: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).map_err(|e| format!("101: {e}"))? == 0 {
            return Err("closed before 101".into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok(stream)
}

/// A masked client frame (RFC 6455 §5.2, §5.3), payload ≤ 125 bytes.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

// ---- Process measures ---------------------------------------------------------------

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The process is gone or a zombie (exited, not yet reaped by its parent).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// Peak RSS growth of `pid` since `before_kib`, once it has settled (no new
/// peak for a second; at most 20 s). Kills the server past the cap.
fn settled_growth_mb(pid: u32, before_kib: u64, cap_mb: u64) -> String {
    let start = Instant::now();
    let mut peak = 0;
    let mut since_peak = Instant::now();
    while start.elapsed() < Duration::from_secs(20) && since_peak.elapsed() < Duration::from_secs(1)
    {
        let Some(hwm) = status_kib(pid, "VmHWM:") else {
            return "server gone".into();
        };
        if hwm > peak {
            peak = hwm;
            since_peak = Instant::now();
        }
        if hwm / 1024 > cap_mb {
            signal(pid, "KILL");
            return format!(">{:.0}", cap_mb as f64 * 1.048_576);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    format!(
        "{:.1}",
        peak.saturating_sub(before_kib) as f64 * 1024.0 / 1e6
    )
}

fn need_pid(args: &Args) -> Result<u32, String> {
    args.pid.ok_or_else(|| format!("{} needs --pid", args.mode))
}

// ---- 1. Floods -------------------------------------------------------------------------

/// Server frames, followed across reads, for the moment a Close frame arrives
/// (RFC 6455 §5.2: a server's frames are unmasked).
#[derive(Default)]
struct Frames {
    head: Vec<u8>,
    skip: usize,
}

impl Frames {
    /// True when `bytes` hold (the start of) a Close frame.
    fn close_in(&mut self, mut bytes: &[u8]) -> bool {
        loop {
            let skipped = self.skip.min(bytes.len());
            self.skip -= skipped;
            bytes = &bytes[skipped..];
            let Some((&byte, rest)) = bytes.split_first() else {
                return false;
            };
            self.head.push(byte);
            bytes = rest;
            let need = match self.head.get(1).map(|b| b & 0x7f) {
                None => 2,
                Some(126) => 4,
                Some(127) => 10,
                Some(_) => 2,
            };
            if self.head.len() < need {
                continue;
            }
            if self.head[0] & 0x0f == 0x8 {
                return true;
            }
            self.skip = match self.head[1] & 0x7f {
                126 => u16::from_be_bytes([self.head[2], self.head[3]]) as usize,
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or_default()) as usize,
                len => len as usize,
            };
            self.head.clear();
        }
    }
}

/// Writes `unit` over and over while a reader drains everything, until
/// `stop`. For a WebSocket (`frames`), the reader notes when the server's
/// Close frame arrives, in the returned slot.
fn start_flood(
    stream: &TcpStream,
    unit: Vec<u8>,
    stop: &Arc<AtomicBool>,
    limit: Duration,
    frames: bool,
) -> (Vec<JoinHandle<()>>, Arc<Mutex<Option<Instant>>>) {
    let closed_at = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let (Ok(mut writer), Ok(mut reader)) = (stream.try_clone(), stream.try_clone()) else {
        return (Vec::new(), closed_at);
    };
    let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
    let (stop_w, stop_r, close_slot) = (Arc::clone(stop), Arc::clone(stop), Arc::clone(&closed_at));
    let threads = vec![
        std::thread::spawn(move || {
            while !stop_w.load(Ordering::Relaxed) && started.elapsed() < limit {
                if writer.write_all(&unit).is_err() {
                    return;
                }
            }
        }),
        std::thread::spawn(move || {
            let mut buf = vec![0; 1 << 16];
            let mut parser = frames.then(Frames::default);
            while !stop_r.load(Ordering::Relaxed)
                && started.elapsed() < limit + Duration::from_secs(60)
            {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if parser.as_mut().is_some_and(|p| p.close_in(&buf[..n])) {
                            *close_slot.lock().unwrap() = Some(Instant::now());
                            parser = None;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        }),
    ];
    (threads, closed_at)
}

/// The flooding client's connection and the bytes it repeats.
fn flood_client(addr: SocketAddr, kind: &str) -> Result<(TcpStream, Vec<u8>), String> {
    Ok(match kind {
        "ping" => (websocket(addr)?, frame(0x9, b"").repeat(10_000)),
        "echo" => (websocket(addr)?, frame(0x1, b"x").repeat(8_000)),
        "http" => (
            connect(addr)?,
            b"GET /stats HTTP/1.1\r\nHost: hostile\r\n\r\n".repeat(2_000),
        ),
        other => return Err(format!("--kind ping|echo|http, not {other}")),
    })
}

fn flood(args: &Args) -> Outcome {
    let addr = args.addr;
    let secs = Duration::from_secs_f64(args.secs);
    let (stream, unit) = flood_client(addr, &args.kind)?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (threads, _) = start_flood(&stream, unit, &stop, secs, false);
    // The probe: GET /stats on a fresh connection every 100 ms from 0.5 s on,
    // until one has been answered after the flood ended (at most 60 s more).
    std::thread::sleep(Duration::from_millis(500));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let probes = {
        let waits = Arc::clone(&waits);
        std::thread::spawn(move || loop {
            let asked = Instant::now();
            let answered = request(addr, "GET", "/stats", b"").map(|(status, _)| status == 200);
            waits.lock().unwrap().push(asked.elapsed());
            if answered.is_err() || started.elapsed() > secs + Duration::from_secs(60) {
                return answered.err();
            }
            if asked > started + secs {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        })
    };
    while started.elapsed() < secs {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(Shutdown::Write);
    let probe_error = probes.join().map_err(|_| "probe panicked")?;
    let _ = stream.shutdown(Shutdown::Both);
    for thread in threads {
        let _ = thread.join();
    }
    let waits = waits.lock().unwrap();
    let longest = waits.iter().max().copied().unwrap_or_default();
    let mut detail = format!("{} probes, longest wait {longest:.2?}", waits.len());
    if let Some(error) = probe_error {
        detail.push_str(&format!(", probe error: {error}"));
    }
    Ok((format!("{:.2}", longest.as_secs_f64()), detail))
}

fn sigterm(args: &Args) -> Outcome {
    let pid = need_pid(args)?;
    let secs = Duration::from_secs_f64(args.secs);
    let (stream, unit) = flood_client(args.addr, "ping")?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (threads, closed_at) = start_flood(&stream, unit, &stop, secs, true);
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    signal(pid, "TERM");
    // At most the flood's end plus 30 s; then the server is killed.
    while !exited(pid) && started.elapsed() < secs + Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = sent.elapsed();
    let gone = exited(pid);
    stop.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(Shutdown::Both);
    for thread in threads {
        let _ = thread.join();
    }
    if !gone {
        signal(pid, "KILL");
    }
    let exit = if gone {
        format!("{:.2}", took.as_secs_f64())
    } else {
        format!(">{:.1}", took.as_secs_f64())
    };
    let close = match *closed_at.lock().unwrap() {
        Some(at) => format!("{:.2}", (at - sent).as_secs_f64()),
        None => "never".into(),
    };
    Ok((
        format!("{close}\t{exit}"),
        format!(
            "SIGTERM {:.1} s into a {:.0} s ping flood: the flooder's Close frame after {close} s, exit after {exit} s",
            (sent - started).as_secs_f64(),
            secs.as_secs_f64()
        ),
    ))
}

// ---- 2. Unread answers --------------------------------------------------------------------

fn pipeline(args: &Args) -> Outcome {
    let pid = need_pid(args)?;
    let addr = args.addr;
    let answer = if args.fill { fill_history(addr)? } else { 0 };
    let request = format!("GET {} HTTP/1.1\r\nHost: hostile\r\n\r\n", args.path);
    let count = args.bytes.div_ceil(request.len());
    let all = request.repeat(count);
    let before = status_kib(pid, "VmRSS:").ok_or("no server")?;
    let mut stream = connect(addr)?;
    stream
        .write_all(all.as_bytes())
        .map_err(|e| format!("pipelining: {e}"))?;
    let growth = settled_growth_mb(pid, before, args.cap_mb);
    drop(stream);
    let mut detail = format!(
        "{count} × GET {} ({} KB), never read",
        args.path,
        all.len() / 1000
    );
    if answer > 0 {
        detail.push_str(&format!("; each answer {} KB", answer / 1000));
    }
    if let Ok(paused) = stat(addr, None, "paused_reads") {
        detail.push_str(&format!("; paused_reads {paused}"));
    }
    Ok((growth, detail))
}

fn longpolls(args: &Args) -> Outcome {
    let pid = need_pid(args)?;
    let addr = args.addr;
    let newest = publish(addr, b"first")?;
    let request = format!("GET /longpoll?after={newest} HTTP/1.1\r\nHost: hostile\r\n\r\n");
    let pipelined = request.repeat(args.depth);
    let before = status_kib(pid, "VmRSS:").ok_or("no server")?;
    let mut streams = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        let mut stream = connect(addr)?;
        stream
            .write_all(pipelined.as_bytes())
            .map_err(|e| format!("pipelining: {e}"))?;
        streams.push(stream);
    }
    let held_since = Instant::now();
    while stat(addr, Some("longpoll"), "connections")? < args.conns as u64 {
        if held_since.elapsed() > Duration::from_secs(20) {
            return Err("the long-polls were not all held".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    publish(addr, &vec![b'p'; args.event])?;
    let growth = settled_growth_mb(pid, before, args.cap_mb);
    let mut detail = format!(
        "{} connections × {} pipelined long-polls, one {} KiB publish, never read",
        args.conns,
        args.depth,
        args.event / 1024
    );
    if let Ok(paused) = stat(addr, None, "paused_reads") {
        detail.push_str(&format!("; paused_reads {paused}"));
    }
    drop(streams);
    Ok((growth, detail))
}

fn pings(args: &Args) -> Outcome {
    let pid = need_pid(args)?;
    let mut stream = websocket(args.addr)?;
    let before = status_kib(pid, "VmRSS:").ok_or("no server")?;
    let ping = frame(0x9, &vec![b'p'; args.payload]);
    let batch = ping.repeat(1_000);
    let mut sent = 0;
    let started = Instant::now();
    while sent < args.count && started.elapsed() < Duration::from_secs(60) {
        let n = (args.count - sent).min(1_000) as usize;
        if stream.write_all(&batch[..n * ping.len()]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let growth = settled_growth_mb(pid, before, args.cap_mb);
    drop(stream);
    Ok((
        growth,
        format!(
            "{sent} pings of {} B on one WebSocket, pongs never read",
            args.payload
        ),
    ))
}

// ---- 4. A slow reader ------------------------------------------------------------------------

/// Shrinks the socket's receive buffer, so the kernels hold only a few MB.
fn small_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor, and a pointer to a live c_int of that length.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn slowread(args: &Args) -> Outcome {
    let addr = args.addr;
    let answer = fill_history(addr)?;
    let mut requests = "GET /poll HTTP/1.1\r\nHost: hostile\r\n\r\n".repeat(args.requests - 1);
    requests.push_str("GET /poll HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\n\r\n");
    // The whole answer, read at full speed first.
    let mut fast = connect(addr)?;
    fast.write_all(requests.as_bytes())
        .map_err(|e| format!("requests: {e}"))?;
    let mut total = 0;
    let mut buf = vec![0; 1 << 16];
    loop {
        match fast.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => return Err(format!("fast read: {e}")),
        }
    }
    // Then slowly: RATE bytes per second, in ten sips a second.
    let mut slow = connect(addr)?;
    small_receive_buffer(&slow, 128 * 1024);
    slow.write_all(requests.as_bytes())
        .map_err(|e| format!("requests: {e}"))?;
    let sip = (args.rate / 10).max(1);
    let started = Instant::now();
    let mut received = 0;
    let mut end = "closed";
    'sips: while received < total {
        let sip_end = received + sip;
        while received < sip_end {
            match slow.read(&mut buf[..(sip_end - received).min(1 << 16)]) {
                Ok(0) => break 'sips,
                Ok(n) => received += n,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    end = "reset";
                    break 'sips;
                }
                Err(e) => return Err(format!("slow read: {e}")),
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            end = "stopped at 120 s";
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((
        format!("{:.1} of {:.1} MB", received as f64 / 1e6, total as f64 / 1e6),
        format!(
            "{} pipelined GET /poll ({} KB each), the last Connection: close, read at {} KB/s: {end} after {:.1} s",
            args.requests,
            answer / 1000,
            args.rate / 1000,
            started.elapsed().as_secs_f64()
        ),
    ))
}
