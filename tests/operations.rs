//! Operations: exact counters after a scripted session (one client of each
//! transport, one protocol error, one idle timeout, one slow reader), and a
//! graceful drain of 600 clients of three transports.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pushloop::prelude::*;
use pushloop::ws::frame::{encode_frame, OpCode};

struct Counted {
    feed: TopicId,
}

impl App for Counted {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        let topics = vec![self.feed];
        match req.path() {
            "/events" => Reply::EventStream {
                topics,
                after: None,
            },
            "/poll" => Reply::Poll { topics, after: 0 },
            "/longpoll" => Reply::LongPoll {
                topics,
                after: req
                    .query_param("after")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
            },
            "/publish" => {
                let data = String::from_utf8_lossy(body);
                let id = ctx.publish(self.feed, None, &data).expect("valid");
                Reply::Response(Response::json(200, format!("{{\"id\":{id}}}")))
            }
            "/metrics" => Reply::Response(Response::text(200, &ctx.stats().to_prometheus())),
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, _: ConnId, _: &Request, _: &Upgrade) -> Upgrading {
        Upgrading::Accept(Accept::new())
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let _ = ctx.send(id, message);
    }
}

/// One sample of `/metrics`, by its full name with labels (`0` if absent).
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn closes(metrics: &str, transport: &str, reason: &str, detail: &str) -> u64 {
    sample(
        metrics,
        &format!("pushloop_closes_total{{transport=\"{transport}\",reason=\"{reason}\",detail=\"{detail}\"}}"),
    )
}

#[test]
fn a_scripted_session_gives_exact_counters() {
    let mut config = quick_config();
    config.limits.handshake_timeout = Duration::from_millis(200);
    config.limits.max_queued_bytes = 8 * 1024;
    let server = serve(config, |server| Counted {
        feed: server.topic("feed").expect("a valid topic name"),
    });
    let addr = server.addr;
    let close_request = |path: &str| {
        request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    };

    // 1. A short poll, answered and closed (Connection: close).
    assert_eq!(close_request("/poll").status, 200);
    // 2. A long-poll, held (nothing published yet), woken by the publish below.
    let mut held = connect(addr);
    held.write_all(b"GET /longpoll?after=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // 3. An event stream that receives one event, then its reader leaves.
    let mut sse = EventStream::open(addr, "/events", None);
    // 4. A WebSocket that echoes once and closes with 1000.
    let mut socket = WsClient::connect(addr, "/echo");
    socket.send_text("hi");
    assert_eq!(socket.recv_data(), Received::Text("hi".into()));
    let published = post(addr, "/publish", "one event");
    assert_eq!(published.status, 200);
    assert_eq!(sse.events(1)[0].data, "one event");
    assert!(read_response(&mut held, &mut Vec::new())
        .text()
        .contains("one event"));
    drop(sse);
    socket.send_close(1000, "done");
    assert_eq!(socket.expect_close(), Some(1000));
    // 5. A protocol error: an unmasked client frame (RFC 6455 §5.1) → 1002.
    let mut rude = WsClient::connect(addr, "/echo");
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, true, OpCode::Text, None, b"x");
    rude.send_raw(&unmasked);
    assert_eq!(rude.expect_close(), Some(1002));
    // 6. An idle timeout: a connection that never sends a byte.
    let mut silent = connect(addr);
    let mut nothing = Vec::new();
    silent
        .read_to_end(&mut nothing)
        .expect("closed by the server");
    assert!(nothing.is_empty(), "closed without a word");
    // 7. A slow reader: an event stream that never reads, sent more than
    //    max_queued_bytes.
    let stuck = EventStream::open(addr, "/events", None);
    // The kernel's socket buffers take a few MiB first: publish until the
    // server's own queue passes its bound (at most 2000 × 16 KiB).
    let big = "x".repeat(16 * 1024);
    let mut published_big = 0;
    while published_big < 2000 {
        assert_eq!(post(addr, "/publish", &big).status, 200);
        published_big += 1;
        if published_big % 20 == 0
            && sample(
                &close_request("/metrics").text(),
                "pushloop_slow_readers_total",
            ) > 0
        {
            break;
        }
    }
    let mut metrics = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            metrics = close_request("/metrics").text();
            closes(&metrics, "sse", "slow_reader", "") == 1
                && closes(&metrics, "sse", "peer_left", "") == 1
        }),
        "{metrics}"
    );
    drop(stuck);

    assert_eq!(
        sample(&metrics, "pushloop_events_published_total"),
        1 + published_big
    );
    assert_eq!(
        sample(&metrics, "pushloop_requests_total{transport=\"poll\"}"),
        1
    );
    assert_eq!(
        sample(&metrics, "pushloop_requests_total{transport=\"longpoll\"}"),
        1
    );
    assert_eq!(
        sample(&metrics, "pushloop_requests_total{transport=\"sse\"}"),
        2
    );
    assert_eq!(
        sample(&metrics, "pushloop_requests_total{transport=\"websocket\"}"),
        2
    );
    assert!(
        sample(
            &metrics,
            "pushloop_events_delivered_total{transport=\"sse\"}"
        ) >= 1
    );
    assert_eq!(closes(&metrics, "websocket", "close_received", "1000"), 1);
    assert_eq!(closes(&metrics, "websocket", "close_sent", "1002"), 1);
    assert_eq!(closes(&metrics, "http", "timeout", "idle"), 1);
    assert_eq!(closes(&metrics, "sse", "slow_reader", ""), 1);
    assert_eq!(closes(&metrics, "sse", "peer_left", ""), 1);
    assert!(sample(&metrics, "pushloop_slow_readers_total") >= 1);
    // Every plain request above was sent with Connection: close.
    assert!(closes(&metrics, "http", "answered", "") >= 3);
    assert_eq!(
        sample(&metrics, "pushloop_connections{transport=\"websocket\"}"),
        0
    );
    assert_eq!(sample(&metrics, "pushloop_panics_total"), 0);
}

// ---- The drain ----------------------------------------------------------------------

/// Clients of each kind held open while the server drains.
const CLIENTS: usize = 200;

/// The demo binary on an OS-assigned port; its address from its first line.
fn start_demo(extra: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .args(["--addr", "127.0.0.1:0", "--no-tick", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn stat_of(addr: SocketAddr, transport: &str) -> u64 {
    let json = get(addr, "/stats").text();
    let section = &json[json
        .find(&format!("\"{transport}\":{{"))
        .expect("transport")..];
    let value = &section[section.find("\"connections\":").expect("field") + 14..];
    value[..value.find([',', '}']).expect("end")]
        .parse()
        .expect("number")
}

#[test]
fn a_drain_ends_every_client_as_documented_and_spreads_their_return() {
    let (mut server, addr) = start_demo(&["--shutdown-ms", "5000"]);
    let latest = {
        let text = post(addr, "/publish", "before the drain").text();
        text.trim_start_matches("{\"id\":")
            .trim_end_matches('}')
            .parse::<u64>()
            .expect("id")
    };
    let streams: Vec<EventStream> = (0..CLIENTS)
        .map(|_| EventStream::open(addr, "/events", None))
        .collect();
    let sockets: Vec<WsClient> = (0..CLIENTS)
        .map(|_| WsClient::connect(addr, "/echo"))
        .collect();
    let polls: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut poll = connect(addr);
            write!(
                poll,
                "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .unwrap();
            poll
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || stat_of(
        addr, "longpoll"
    ) == CLIENTS as u64
        && stat_of(addr, "sse") == CLIENTS as u64
        && stat_of(addr, "websocket") == CLIENTS as u64));

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    // Event streams: a last retry (WHATWG HTML §9.2.6) within the spread
    // window above the usual 2000 ms, then the end.
    let mut retries = Vec::new();
    for mut stream in streams {
        let mut rest = Vec::new();
        stream
            .stream
            .read_to_end(&mut rest)
            .expect("the stream ends");
        stream.raw.extend_from_slice(&rest);
        let text = String::from_utf8_lossy(&stream.raw);
        let last = text
            .rsplit("retry: ")
            .next()
            .and_then(|tail| tail.split('\n').next())
            .and_then(|ms| ms.parse::<u64>().ok())
            .expect("a last retry");
        assert!((2000..12_000).contains(&last), "retry {last}");
        retries.push(last);
    }
    // WebSockets: close 1001 Going Away (RFC 6455 §7.4.1), answered as a
    // browser does (§5.5.1), so the server can close at once.
    for mut socket in sockets {
        let code = loop {
            match socket.recv() {
                Received::Close(code, _) => break code,
                Received::Eof => panic!("TCP closed without a Close frame"),
                _ => continue,
            }
        };
        assert_eq!(code, Some(1001));
        socket.send_close(1001, "");
    }
    // Long-polls: 503 with a Retry-After within the window (RFC 9110 §10.2.3).
    let mut retry_afters = Vec::new();
    for mut poll in polls {
        let answer = read_response(&mut poll, &mut Vec::new());
        assert_eq!(answer.status, 503);
        let seconds: u64 = answer
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .expect("Retry-After");
        assert!((1..=11).contains(&seconds), "Retry-After {seconds}");
        retry_afters.push(seconds);
    }
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the drain ends"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "within the deadline"
    );
    // Spread, not lock step: the clients come back over the window.
    retries.sort_unstable();
    retries.dedup();
    assert!(
        retries.len() > CLIENTS / 2,
        "{} distinct retries",
        retries.len()
    );
    let (low, high) = (retries[0], retries[retries.len() - 1]);
    assert!(high - low > 5_000, "spread over {low}..{high} ms");
    retry_afters.sort_unstable();
    retry_afters.dedup();
    assert!(
        retry_afters.len() >= 5,
        "Retry-After values {retry_afters:?}"
    );
}
