//! Smoke tests for `examples/`: start each example binary on `127.0.0.1:0`,
//! read the address from its first line, exchange one message, kill it.
//!
//! `cargo test` builds the examples before it runs integration tests, so the
//! binaries sit next to this test's own: `target/debug/deps/examples-HASH` →
//! `target/debug/examples/NAME`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{connect, get, read_response, Received, WsClient, READ_TIMEOUT};
use pushloop::sse::StreamParser;

/// A running example; killed (and reaped) on drop, so no test leaks a process.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `examples/NAME.rs`'s binary and waits for `listening on http://HOST:PORT`.
fn start(name: &str) -> Example {
    let test_exe = std::env::current_exe().expect("the test's own path");
    let path = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/PROFILE/deps")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example binary {} not found: run these tests with `cargo test` (which \
         builds examples first) or run `cargo build --examples`",
        path.display()
    );
    let mut child = Command::new(&path)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut example = Example {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    // Read the first line on a thread, so the wait is bounded; the thread then
    // drains stdout until the child exits, so the child never blocks on a full pipe.
    let (first_line, line) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = first_line.send(line);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let line = line
        .recv_timeout(READ_TIMEOUT)
        .unwrap_or_else(|_| panic!("{name} printed no line within {READ_TIMEOUT:?}"));
    example.addr = line
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| {
            panic!("{name}: first line is not `listening on http://HOST:PORT`: {line:?}")
        });
    example
}

#[test]
fn echo_returns_a_text_message() {
    let echo = start("echo");
    assert!(
        get(echo.addr, "/").text().contains("ws://"),
        "GET / hints at WebSocket"
    );
    let mut socket = WsClient::connect(echo.addr, "/");
    socket.send_text("hello, pushloop");
    assert_eq!(socket.recv_data(), Received::Text("hello, pushloop".into()));
}

#[test]
fn sse_clock_sends_my_eve_with_an_id_and_retry() {
    let clock = start("sse_clock");
    let mut stream = connect(clock.addr);
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write");
    let mut received = read_some(&mut stream);
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        received.extend(read_some(&mut stream));
    };
    assert!(received.starts_with(b"HTTP/1.1 200"), "{received:?}");
    let mut parser = StreamParser::new(4096);
    let mut events = parser.feed(&received[head_end..]).expect("a valid stream");
    while !events.iter().any(|e| e.event_type == "myEve") {
        events = parser
            .feed(&read_some(&mut stream))
            .expect("a valid stream");
    }
    let my_eve = events
        .iter()
        .find(|e| e.event_type == "myEve")
        .expect("found");
    assert!(
        my_eve.last_event_id.parse::<u64>().is_ok(),
        "id: {my_eve:?}"
    );
    assert_eq!(
        parser.retry(),
        Some(10_000),
        "retry: from Config::sse_retry_ms"
    );
}

/// One read (bounded by the socket's read timeout); the peer must not close.
fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = [0; 4096];
    let n = stream.read(&mut buf).expect("read within the timeout");
    assert!(n > 0, "the server closed the connection");
    buf[..n].to_vec()
}

#[test]
fn chat_broadcasts_to_the_other_socket() {
    let chat = start("chat");
    let mut alice = WsClient::connect(chat.addr, "/chat");
    let mut bob = WsClient::connect(chat.addr, "/chat");
    alice.send_text("hello, room");
    expect_text(&mut bob, ": hello, room");
    // Bob joined second, so he is user 2; a whisper reaches only him.
    alice.send_text("/to 2 psst");
    expect_text(&mut bob, "whispers: psst");
}

/// Reads text messages (welcomes, "joined" notices, ...) until one ends with `suffix`.
fn expect_text(socket: &mut WsClient, suffix: &str) {
    for _ in 0..10 {
        match socket.recv_data() {
            Received::Text(text) if text.ends_with(suffix) => return,
            Received::Text(_) => continue,
            other => panic!("expected text ending {suffix:?}, got {other:?}"),
        }
    }
    panic!("no message ending {suffix:?} among the next 10");
}

#[test]
fn long_poll_is_answered_by_the_timer() {
    let long_poll = start("long_poll");
    let started = Instant::now();
    // Keep-alive, as a browser's fetch sends it. (With `Connection: close` the
    // held request is closed unanswered: a library bug, see the report.)
    let mut stream = connect(long_poll.addr);
    stream
        .write_all(b"GET /poll?after=0 HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write");
    let response = read_response(&mut stream, &mut Vec::new());
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains(r#""event":"message""#),
        "{}",
        response.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timer publishes every 3 s"
    );
}

#[test]
fn from_thread_publishes_readings_and_shuts_down_on_sigterm() {
    let mut sensor = start("from_thread");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !get(sensor.addr, "/poll?after=0")
        .text()
        .contains(r#""event":"reading""#)
    {
        assert!(Instant::now() < deadline, "no reading within 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM → graceful shutdown → exit status 0.
    let pid = sensor.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        if let Some(status) = sensor.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {READ_TIMEOUT:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rooms_carries_a_room_to_its_other_followers_on_every_transport() {
    let example = start("rooms");
    let mut speaker = WsClient::connect(example.addr, "/talk?rooms=lobby,dev");
    let mut listener = WsClient::connect(example.addr, "/talk?rooms=dev");
    let mut poll = connect(example.addr);
    poll.write_all(b"GET /poll?rooms=dev&after=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    speaker.send_text("@dev hello dev");
    match listener.recv_data() {
        Received::Text(text) => assert!(
            text.contains(r#""topic":"dev","event":"chat","data":"hello dev""#),
            "{text}"
        ),
        other => panic!("expected the chat event, got {other:?}"),
    }
    let answer = read_response(&mut poll, &mut Vec::new());
    assert!(answer.text().contains("hello dev"), "{}", answer.text());
    assert_eq!(
        get(example.addr, "/events?rooms=a,,b").status,
        400,
        "a malformed list is refused"
    );
}
