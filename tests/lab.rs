//! `GET /lab/events?session=S`: the trace lines of the connections that came
//! with `?session=S`, as an event stream of JSON — and nobody else's, within
//! the lab's limits.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Upgrading};
use pushloop::engine::lab::MAX_TAG_BYTES;
use pushloop::engine::trace::MAX_FIELD_CHARS;
use pushloop::http::Request;
use pushloop::server::{Config, LabConfig, TraceOutput};
use pushloop::sse::ParsedEvent;
use pushloop::ws::handshake::Upgrade;

/// RFC 6455 §5.7: a masked "Hello" (key 37 fa 21 3d).
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

/// WebSockets echo; every other request is the default 404.
struct Echo;

impl App for Echo {
    fn upgrade(&mut self, _: &mut Context, _: ConnId, _: &Request, _: &Upgrade) -> Upgrading {
        Upgrading::Accept(Accept::new())
    }
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let _ = ctx.send(id, message);
    }
}

fn with_lab(lab: LabConfig) -> Config {
    let mut config = quick_config();
    config.lab = Some(lab);
    config
}

/// Reads lab messages until one satisfies `done`; returns them all.
fn read_until(lab: &mut EventStream, done: impl Fn(&ParsedEvent) -> bool) -> Vec<ParsedEvent> {
    let mut seen = Vec::new();
    loop {
        let batch = lab.events(1);
        let found = batch.iter().any(&done);
        seen.extend(batch);
        if found {
            return seen;
        }
    }
}

/// The value of a string field of a lab line (no escapes in what is asked).
fn field<'a>(data: &'a str, name: &str) -> &'a str {
    let start = data.find(&format!("\"{name}\":\"")).expect("field") + name.len() + 4;
    let len = data[start..]
        .find("\",\"")
        .unwrap_or(data.len() - start - 2);
    &data[start..start + len]
}

/// Sends a lab request and reads its head only: the status and the socket
/// (a stream that was opened stays open while it is held).
fn open_lab(addr: SocketAddr, session: &str) -> (u16, TcpStream) {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET /lab/events?session={session} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("head"),
            1,
            "closed in the head"
        );
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("status");
    (status, stream)
}

#[test]
fn a_sessions_websocket_frames_show_with_their_fields_and_header_bytes_and_no_one_elses() {
    let server = serve(with_lab(LabConfig::default()), |_| Echo);
    let mut lab = EventStream::open(server.addr, "/lab/events?session=x", None);
    assert_eq!(lab.head.status, 200);
    assert_eq!(lab.head.header("content-type"), Some("text/event-stream"));

    // Another session's socket and an untagged one go first: had they been
    // shown, their lines would come before x's.
    let mut other = WsClient::connect(server.addr, "/echo?session=y");
    other.send_text("from y");
    assert_eq!(other.recv_data(), Received::Text("from y".into()));
    let mut untagged = WsClient::connect(server.addr, "/echo");
    untagged.send_text("untagged");
    assert_eq!(untagged.recv_data(), Received::Text("untagged".into()));

    let mut socket = WsClient::connect(server.addr, "/echo?session=x");
    socket.send_raw(&MASKED_HELLO);
    assert_eq!(socket.recv_data(), Received::Text("Hello".into()));
    let seen = read_until(&mut lab, |e| {
        e.data.contains("\"dir\":\"→\"") && e.data.contains("\\\"Hello\\\"")
    });
    let data: Vec<&str> = seen.iter().map(|e| e.data.as_str()).collect();

    assert!(
        data[0].contains("GET /echo?session=x HTTP/1.1"),
        "the head comes first: {data:#?}"
    );
    assert!(data
        .iter()
        .any(|d| d.contains("HTTP/1.1 101 Switching Protocols")));
    let frame_in = data
        .iter()
        .find(|d| d.contains("\"dir\":\"←\",\"what\":\"frame\""))
        .expect("the frame received");
    assert!(frame_in.contains("op=0x1 text"), "{frame_in}");
    assert!(
        frame_in.contains("MASK=1 key=37fa213d len=5 (7-bit)"),
        "{frame_in}"
    );
    assert_eq!(field(frame_in, "hex"), "81 85 37 fa 21 3d");
    assert!(
        frame_in.contains("\"bytes\":11"),
        "header and payload: {frame_in}"
    );
    assert_eq!(field(frame_in, "cite"), "RFC 6455 §5.2");
    let frame_out = data.last().unwrap();
    assert_eq!(
        field(frame_out, "hex"),
        "81 05",
        "a server's frame is not masked"
    );
    assert!(frame_out.contains("MASK=0 len=5 (7-bit)"), "{frame_out}");

    for d in &data {
        assert!(
            !d.contains("from y") && !d.contains("untagged") && !d.contains("session=y"),
            "{d}"
        );
    }
    assert!(seen.iter().all(|e| e.event_type == "message"));

    // The close handshake, to the connection's last line.
    socket.send_close(1000, "bye");
    socket.expect_close();
    let closing = read_until(&mut lab, |e| {
        e.data.contains("\"what\":\"tcp\",\"fields\":\"closed\"")
    });
    assert!(closing
        .iter()
        .any(|e| e.data.contains("code=1000 normal closure")));
}

#[test]
fn one_set_of_trace_calls_serves_both_sinks_and_the_lab_is_not_traced() {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let mut config = with_lab(LabConfig::default());
    config.trace = Some(TraceOutput(Box::new(captured.clone())));
    let server = serve(config, |_| Echo);
    let mut lab = EventStream::open(server.addr, "/lab/events?session=x", None);
    // A second stream of the same session: its request is not the session's.
    let mut second = EventStream::open(server.addr, "/lab/events?session=x", None);
    let mut socket = WsClient::connect(server.addr, "/echo?session=x");
    socket.send_raw(&MASKED_HELLO);
    assert_eq!(socket.recv_data(), Received::Text("Hello".into()));
    let seen = read_until(&mut lab, |e| e.data.contains("\\\"Hello\\\""));
    read_until(&mut second, |e| e.data.contains("\\\"Hello\\\""));
    server.stop().unwrap();

    let trace = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for event in &seen {
        assert!(!event.data.contains("/lab/events"), "{}", event.data);
    }
    let frame_in = seen
        .iter()
        .find(|e| e.data.contains("\"dir\":\"←\",\"what\":\"frame\""))
        .expect("the frame received");
    let line = field(&frame_in.data, "line");
    assert!(
        trace.contains(line),
        "{line:?} is not in the trace:\n{trace}"
    );
    assert!(
        !trace.contains("data={"),
        "the lab's own messages were traced:\n{trace}"
    );
}

#[test]
fn sessions_past_the_limit_get_503_until_one_closes() {
    let server = serve(
        with_lab(LabConfig {
            max_sessions: 2,
            ..LabConfig::default()
        }),
        |_| Echo,
    );
    let (first, held) = open_lab(server.addr, "a");
    let (second, _also_held) = open_lab(server.addr, "b");
    assert_eq!((first, second), (200, 200));
    let refused = get(server.addr, "/lab/events?session=c");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert!(
        refused.text().contains("max_sessions"),
        "{}",
        refused.text()
    );

    drop(held);
    let mut reopened = None;
    assert!(eventually(Duration::from_secs(5), || {
        let (status, stream) = open_lab(server.addr, "c");
        reopened = Some(stream);
        status == 200
    }));
}

#[test]
fn lines_past_the_rate_are_dropped_and_the_count_is_shown() {
    const RATE: u32 = 20;
    let server = serve(
        with_lab(LabConfig {
            lines_per_second: RATE,
            ..LabConfig::default()
        }),
        |_| Echo,
    );
    let mut lab = EventStream::open(server.addr, "/lab/events?session=x", None);
    let started = Instant::now();
    let mut socket = WsClient::connect(server.addr, "/echo?session=x");
    // Each echo is three lines (the frame in, the message, the frame out).
    for i in 0..40 {
        socket.send_text(&format!("burst {i}"));
        assert_eq!(socket.recv_data(), Received::Text(format!("burst {i}")));
    }
    let burst = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    socket.send_text("after");
    assert_eq!(socket.recv_data(), Received::Text("after".into()));

    let seen = read_until(&mut lab, |e| e.data.contains("\\\"after\\\""));
    let notice = seen
        .iter()
        .position(|e| e.event_type == "dropped")
        .expect("a dropped notice");
    let dropped: u64 = seen[notice].data["{\"dropped\":".len()..]
        .split(',')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(
        seen[notice]
            .data
            .contains(&format!("{dropped} lines dropped (over {RATE} lines/s)")),
        "{}",
        seen[notice].data
    );
    // What came before the notice is at most the bucket and what it refilled.
    let allowed = RATE as f64 * (1.0 + burst.as_secs_f64()) + 1.0;
    assert!(
        (notice as f64) <= allowed,
        "{notice} lines before the notice, {allowed} allowed"
    );
    // Every line was either shown or counted: the head lines, 120 for the burst.
    assert!(
        notice as u64 + dropped >= 120,
        "{notice} shown + {dropped} dropped"
    );
}

#[test]
fn fields_are_cut_at_the_limit() {
    let server = serve(with_lab(LabConfig::default()), |_| Echo);
    let mut lab = EventStream::open(server.addr, "/lab/events?session=x", None);
    let long = "a".repeat(MAX_FIELD_CHARS * 2);
    let answer = request(
        server.addr,
        &format!("GET /page?session=x HTTP/1.1\r\nHost: t\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(answer.status, 404);
    let seen = read_until(&mut lab, |e| e.data.contains("X-Long"));
    let line = seen.iter().find(|e| e.data.contains("X-Long")).unwrap();
    let fields = field(&line.data, "fields");
    assert_eq!(fields.chars().count(), MAX_FIELD_CHARS + 1, "{fields}");
    assert!(fields.ends_with('…'), "{fields}");
}

#[test]
fn a_bad_session_or_method_is_refused_and_without_the_lab_the_route_is_the_apps() {
    let server = serve(with_lab(LabConfig::default()), |_| Echo);
    let too_long = "a".repeat(MAX_TAG_BYTES + 1);
    for path in [
        "/lab/events".to_owned(),
        "/lab/events?session=".to_owned(),
        "/lab/events?session=a%20b".to_owned(),
        format!("/lab/events?session={too_long}"),
    ] {
        let answer = get(server.addr, &path);
        assert_eq!(answer.status, 400, "{path}");
        assert!(
            answer.text().contains("session must be"),
            "{}",
            answer.text()
        );
    }
    let (status, _held) = open_lab(server.addr, &"a".repeat(MAX_TAG_BYTES));
    assert_eq!(status, 200, "the longest tag");
    let post = post(server.addr, "/lab/events?session=x", "");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let off = serve(quick_config(), |_| Echo);
    assert_eq!(get(off.addr, "/lab/events?session=x").status, 404);
}
