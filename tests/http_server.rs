//! Plain HTTP over real sockets: keep-alive, pipelining, bodies, every HTTP
//! limit, slowloris, the connection limit, and byte-split requests.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use pushloop::app::{App, ConnId, Context, Reply};
use pushloop::http::{Request, Response};
use pushloop::server::Config;

/// `/hello`, `/echo-body` (the body back), `/panic`, `/slow-json`.
struct Routes;

impl App for Routes {
    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        match req.path() {
            "/hello" => Reply::Response(Response::text(200, "hello")),
            "/echo-body" => Reply::Response(Response::new(200).body(body.to_vec())),
            "/panic" => panic!("test panic in a request callback"),
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }
}

fn start(config: Config) -> TestServer {
    serve(config, |_| Routes)
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = start(quick_config());
    let mut stream = connect(server.addr);
    let mut buffered = Vec::new();
    for _ in 0..3 {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut buffered);
        assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(quick_config());
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst\
              GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n",
        )
        .unwrap();
    let mut buffered = Vec::new();
    let statuses_and_bodies: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let r = read_response(&mut stream, &mut buffered);
            (r.status, r.text())
        })
        .collect();
    assert_eq!(
        statuses_and_bodies,
        [
            (200, "hello".into()),
            (200, "first".into()),
            (404, "not found".into()),
            (200, "second".into())
        ]
    );
    assert!(
        read_to_close(&mut stream).is_empty(),
        "Connection: close is honoured"
    );
}

#[test]
fn a_body_that_spans_many_reads_is_reassembled() {
    let server = start(quick_config());
    let mut stream = connect(server.addr);
    let body = vec![b'z'; 300_000];
    stream
        .write_all(
            format!(
                "POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    for chunk in body.chunks(7000) {
        stream.write_all(chunk).unwrap();
    }
    let response = read_response(&mut stream, &mut Vec::new());
    assert_eq!(response.body, body);
}

/// Each HTTP limit answers with its own status, then the connection closes.
#[test]
fn limits_answer_with_their_status() {
    let mut config = quick_config();
    config.limits.max_head_bytes = 1024;
    config.limits.max_headers = 8;
    config.limits.max_body_bytes = 100;
    let server = start(config);
    let many_headers: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(String, u16)> = vec![
        (format!("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(2000)), 431),
        (format!("GET /hello HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n"), 431),
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n".into(), 413),
        (format!("POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n{}\r\n0\r\n\r\n", "b".repeat(101)), 413),
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(), 400),
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400),
        // RFC 9112 §6.3: a coding we do not know, before the final chunked.
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501),
        // RFC 9112 §6.3: chunked must be the final coding of a request.
        ("POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 400),
        ("GET /hello HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("GET /hel lo HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
    ];
    for (raw, status) in cases {
        let mut stream = connect(server.addr);
        stream.write_all(raw.as_bytes()).unwrap();
        let mut buffered = Vec::new();
        let response = read_response(&mut stream, &mut buffered);
        assert_eq!(
            response.status,
            status,
            "for {:?}",
            &raw[..raw.len().min(80)]
        );
        assert_eq!(response.header("connection"), Some("close"));
        assert!(read_to_close(&mut stream).is_empty());
    }
}

#[test]
fn a_panicking_route_answers_500_and_the_server_carries_on() {
    let server = start(quick_config());
    assert_eq!(get(server.addr, "/panic").status, 500);
    assert_eq!(get(server.addr, "/hello").status, 200);
}

#[test]
fn a_trickled_head_is_cut_off_by_the_handshake_timeout_with_408() {
    let mut config = quick_config();
    config.limits.handshake_timeout = Duration::from_millis(200);
    let server = start(config);
    let mut stream = connect(server.addr);
    stream.write_all(b"GET /hello HTTP/1.1\r\nHo").unwrap();
    let response = read_response(&mut stream, &mut Vec::new());
    assert_eq!(response.status, 408);
}

#[test]
fn a_silent_connection_is_closed_by_the_handshake_timeout() {
    let mut config = quick_config();
    config.limits.handshake_timeout = Duration::from_millis(100);
    let server = start(config);
    let mut stream = connect(server.addr);
    assert!(read_to_close(&mut stream).is_empty());
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let mut config = quick_config();
    config.limits.idle_timeout = Duration::from_millis(150);
    let server = start(config);
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buffered = Vec::new();
    assert_eq!(read_response(&mut stream, &mut buffered).status, 200);
    assert!(read_to_close(&mut stream).is_empty());
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let mut config = quick_config();
    config.limits.max_connections = 2;
    let server = start(config);
    let mut first = connect(server.addr);
    first.write_all(b"GET /hel").unwrap();
    let mut held = connect(server.addr);
    held.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut held, &mut Vec::new()).status, 200);
    let mut refused = connect(server.addr);
    let _ = refused.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        read_to_close(&mut refused).is_empty(),
        "the third connection is closed unanswered"
    );
    drop(held);
    assert!(eventually(Duration::from_secs(5), || get_status(
        server.addr
    ) == Some(200)));
}

fn get_status(addr: std::net::SocketAddr) -> Option<u16> {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let bytes = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&bytes);
    text.get(9..12)?.parse().ok()
}

/// Every request split at every byte offset, written in two pieces with a
/// pause between them, gets the same response as when written whole (the
/// way uWebSockets tests its parser).
#[test]
fn requests_split_at_every_offset_get_identical_responses() {
    let server = start(quick_config());
    let requests: [&[u8]; 4] = [
        b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
        b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    ];
    for request in requests {
        let whole = exchange(server.addr, &[request]);
        for split in 1..request.len() {
            let (a, b) = request.split_at(split);
            assert_eq!(
                exchange(server.addr, &[a, b]),
                whole,
                "split at {split} of {:?}",
                String::from_utf8_lossy(request)
            );
        }
    }
}

/// Writes the pieces with a short pause between them and reads to close.
fn exchange(addr: std::net::SocketAddr, pieces: &[&[u8]]) -> Vec<u8> {
    let mut stream = connect(addr);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        stream.write_all(piece).unwrap();
    }
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

#[test]
fn a_half_closed_client_still_gets_every_byte_of_its_answer() {
    let mut config = quick_config();
    config.limits.max_body_bytes = 32 << 20;
    let server = start(config);
    let mut stream = connect(server.addr);
    let body = vec![b'q'; 24 << 20];
    let head = format!(
        "POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(head.as_bytes()).unwrap();
        writer.write_all(&body).unwrap();
        // The request is complete: half-close, as `nc -N` or an HTTP/1.0 client may.
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let response = read_response(&mut stream, &mut Vec::new());
    sender.join().unwrap();
    assert_eq!(
        response.body.len(),
        24 << 20,
        "a 24 MiB answer outlives the client's FIN"
    );
}

#[test]
fn expect_100_continue_gets_the_interim_answer_before_the_body_is_sent() {
    let server = start(quick_config());
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut buffered = Vec::new();
    // RFC 9110 §15.2.1: the interim response, then (after the body) the final one.
    assert_eq!(read_response(&mut stream, &mut buffered).status, 100);
    stream.write_all(b"hello").unwrap();
    let response = read_response(&mut stream, &mut buffered);
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
}

#[test]
fn expect_100_continue_with_a_body_over_the_limit_gets_413_at_once() {
    let mut config = quick_config();
    config.limits.max_body_bytes = 10;
    let server = start(config);
    let response = request(
        server.addr,
        "POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(response.status, 413);
}

#[test]
fn a_header_limit_above_the_stack_slots_is_honoured_exactly() {
    let mut config = quick_config();
    config.limits.max_headers = 300;
    let server = start(config);
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-{i}: v\r\n")).collect() };
    // 298 fields + Host + Connection = 300: allowed; 302 is a 431.
    let fits = request(
        server.addr,
        &format!(
            "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
            headers(298)
        ),
    );
    assert_eq!(fits.status, 200);
    let over = request(
        server.addr,
        &format!("GET /hello HTTP/1.1\r\nHost: t\r\n{}\r\n", headers(300)),
    );
    assert_eq!(over.status, 431);
}
