//! https:// and wss:// on the loop (feature `tls`): every transport over
//! TLS beside a plain listener, bad input on the TLS port (each ends with its
//! alert or a close, and is counted), the handshake deadline, certificate
//! reload, `close_notify`. The client is rustls (ring), trusting a test CA
//! made at run time.
#![cfg(feature = "tls")]

mod common;
#[path = "../src/tls/test_support.rs"]
mod tls_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::limits::SlowReader;
use pushloop::server::{Config, Server, SharePort, TraceOutput};
use pushloop::tls::TlsConfig;
use pushloop::ws::handshake::Upgrade;
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tls_support::{client_hello, TestPki, TLS12_EXTENSIONS};

/// A blocking TLS client stream.
type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Every transport on one topic, and `/stats`.
struct Feed {
    topic: TopicId,
}

impl App for Feed {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        let after = req.query_param("after").and_then(|a| a.parse().ok());
        match req.path() {
            "/" => Reply::Response(Response::text(200, "hello over TLS")),
            "/events" => Reply::EventStream {
                topics: vec![self.topic],
                after,
            },
            "/poll" => Reply::Poll {
                topics: vec![self.topic],
                after: after.unwrap_or(0),
            },
            "/longpoll" => Reply::LongPoll {
                topics: vec![self.topic],
                after: after.unwrap_or(0),
            },
            "/publish" => {
                let data = String::from_utf8_lossy(body).into_owned();
                let id = ctx.publish(self.topic, None, &data).expect("publish");
                Reply::Response(Response::json(200, format!("{{\"id\":{id}}}")))
            }
            "/stats" => Reply::Response(Response::json(200, ctx.stats().to_json())),
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

/// A server with a plain and a TLS listener, serving `pki`'s certificate.
struct Both {
    server: TestServer,
    tls: SocketAddr,
}

fn start(pki: &TestPki, mut config: Config) -> Both {
    config.tls = Some(tls_config(pki));
    let (tell, told) = channel();
    let server = serve(config, move |server: &mut Server| {
        let addr = server
            .add_tls_listener("127.0.0.1:0")
            .expect("TLS listener");
        tell.send(addr).expect("test waits");
        Feed {
            topic: server.topic("feed").expect("topic"),
        }
    });
    let tls = told.recv().expect("TLS address");
    Both { server, tls }
}

fn tls_config(pki: &TestPki) -> TlsConfig {
    TlsConfig::from_pem(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).expect("config")
}

fn pki() -> TestPki {
    TestPki::new(&["localhost"])
}

fn client_config(pki: &TestPki) -> Arc<ClientConfig> {
    pki.client_config(&[&TLS13, &TLS12], &[b"http/1.1"])
}

/// Connects and completes the handshake (as the first write or read would).
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    try_tls_connect(addr, config).expect("TLS handshake with the server")
}

/// Connects and tries the handshake.
fn try_tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Tls, std::io::Error> {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client");
    let mut tls = StreamOwned::new(conn, connect(addr));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET path` over TLS on a fresh connection; the response.
fn tls_get(addr: SocketAddr, pki: &TestPki, path: &str) -> HttpResponse {
    let mut tls = tls_connect(addr, client_config(pki));
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).expect("request");
    read_response(&mut tls, &mut Vec::new())
}

/// How a TLS stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server said `close_notify` (RFC 8446 §6.1).
    CloseNotify,
    /// TCP closed without it.
    Cut,
}

/// Reads until the server ends the stream; what came, and how it ended.
fn tls_read_to_end(tls: &mut Tls) -> (Vec<u8>, End) {
    let mut all = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return (all, End::CloseNotify),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => return (all, End::Cut),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return (all, End::Cut),
            Err(error) => panic!("read: {error}"),
        }
    }
}

/// Raw bytes to the TLS port; everything the server sends back until it
/// closes.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], then_fin: bool) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write");
    if then_fin {
        stream.shutdown(Shutdown::Write).expect("FIN");
    }
    read_to_close(&mut stream)
}

/// The server's `/stats` JSON, fetched over the plain listener.
fn stats(server: &TestServer) -> String {
    get(server.addr, "/stats").text()
}

/// The count `name` inside the `"tls"` object of the stats JSON.
fn tls_count(stats: &str, name: &str) -> u64 {
    let tls = &stats[stats.find("\"tls\":").expect("tls stats")..];
    let at = tls
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {tls}"));
    tls[at + name.len() + 3..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {tls}"))
}

/// Waits until `/stats` shows `name` at `want`.
fn expect_count(server: &TestServer, name: &str, want: u64) {
    let mut last = String::new();
    let seen = eventually(Duration::from_secs(5), || {
        last = stats(server);
        tls_count(&last, name) == want
    });
    assert!(seen, "{name} should be {want}: {last}");
}

/// A plain-text fatal alert record (RFC 8446 §5.1, §6): type 21, version,
/// length 2, level fatal (2), the description.
fn is_fatal_alert(bytes: &[u8], description: u8) -> bool {
    matches!(bytes, [21, 3, _, 0, 2, 2, d] if *d == description)
}

/// A rustls client's first flight (its ClientHello).
fn rustls_client_hello(pki: &TestPki) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_config(pki), name).expect("client");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("hello");
    hello
}

/// An open wss:// echo, to show that bad input elsewhere leaves it alone.
fn wss(addr: SocketAddr, pki: &TestPki) -> WsClient<Tls> {
    let tls = tls_connect(addr, client_config(pki));
    let ws = WsClient::over(tls, upgrade_request("/echo", "").as_bytes());
    assert_eq!(ws.response.status, 101, "{}", ws.response.text());
    ws
}

fn echoes(ws: &mut WsClient<Tls>, text: &str) {
    ws.send_text(text);
    assert_eq!(ws.recv_data(), Received::Text(text.into()));
}

// ---- every transport over TLS ------------------------------------------------

#[test]
fn https_and_http_side_by_side_on_one_loop() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let over_tls = tls_get(both.tls, &pki, "/");
    assert_eq!(
        (over_tls.status, over_tls.text()),
        (200, "hello over TLS".into())
    );
    let plain = get(both.server.addr, "/");
    assert_eq!((plain.status, plain.text()), (200, "hello over TLS".into()));
    let stats = stats(&both.server);
    assert_eq!(tls_count(&stats, "handshakes"), 1, "{stats}");
}

/// permessage-deflate (RFC 7692) is a transform inside the session, below
/// TLS's: an offer over wss:// is agreed, and messages go compressed both
/// ways inside the records.
#[cfg(feature = "deflate")]
#[test]
fn wss_echoes_compressed_messages_both_ways() {
    use pushloop::ws::deflate::ClientConfig as Offer;
    use pushloop::ws::frame::OpCode;
    let browser = Offer {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: None,
        client_max_window_bits: None,
    };
    let pki = pki();
    let both = start(&pki, Config::default());
    let tls = tls_connect(both.tls, client_config(&pki));
    let head = deflate_upgrade_request("/echo", browser);
    let mut ws = WsClient::over(tls, head.as_bytes()).agree_deflate(browser);
    let agreed = ws.response.header("sec-websocket-extensions").unwrap_or("");
    assert!(agreed.starts_with("permessage-deflate"), "{agreed:?}");
    let text = "{\"id\":1,\"topic\":\"news\",\"data\":\"hello\"},".repeat(100);
    ws.send_compressed(OpCode::Text, text.as_bytes());
    assert_eq!(ws.recv_data(), Received::Text(text.clone()));
    let (received, inflated) = ws.inflated.expect("the echo came compressed");
    assert!(received * 4 < inflated, "{received} → {inflated}");
}

#[test]
fn the_server_ends_a_tls_connection_with_close_notify() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut tls = tls_connect(both.tls, client_config(&pki));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let (bytes, end) = tls_read_to_end(&mut tls);
    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"), "{bytes:?}");
    assert_eq!(
        end,
        End::CloseNotify,
        "RFC 8446 §6.1: close_notify before FIN"
    );
    expect_count(&both.server, "close_notify_sent", 1);
    expect_count(&both.server, "connections", 0);
}

#[test]
fn tls12_clients_are_served_too() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut tls = tls_connect(both.tls, pki.client_config(&[&TLS12], &[b"http/1.1"]));
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    assert_eq!(read_response(&mut tls, &mut Vec::new()).status, 200);
}

#[test]
fn server_sent_events_over_tls() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut tls = tls_connect(both.tls, client_config(&pki));
    tls.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .expect("request");
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    let mut published = false;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("data: over tls\n") {
        assert!(Instant::now() < deadline, "no event: {seen:?}");
        let n = tls.read(&mut buf).expect("stream");
        assert!(n > 0, "stream ended: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
        if !published && seen.windows(4).any(|w| w == b"\r\n\r\n") {
            published = true;
            assert_eq!(post(both.server.addr, "/publish", "over tls").status, 200);
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
}

#[test]
fn short_and_long_polls_over_tls() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let first = post(both.server.addr, "/publish", "one");
    let id: u64 = first.text()[6..first.text().len() - 1].parse().expect("id");
    let poll = tls_get(both.tls, &pki, "/poll?after=0");
    assert_eq!(poll.status, 200);
    assert!(poll.text().contains("one"), "{}", poll.text());

    // A long poll after the last id is held until the next event.
    let mut tls = tls_connect(both.tls, client_config(&pki));
    let head = format!(
        "GET /longpoll?after={id} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).expect("request");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(post(both.server.addr, "/publish", "two").status, 200);
    let held = read_response(&mut tls, &mut Vec::new());
    assert_eq!(held.status, 200);
    assert!(held.text().contains("two"), "{}", held.text());
}

#[test]
fn websocket_echo_over_tls_small_and_large() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut ws = wss(both.tls, &pki);
    echoes(&mut ws, "hello over wss");
    // Past one record and past the send slice: the echo is encrypted a
    // slice at a time while the socket takes it.
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    ws.send_binary(&big);
    assert_eq!(ws.recv_data(), Received::Binary(big));
    ws.send_close(1000, "bye");
    assert_eq!(ws.expect_close(), Some(1000));
    expect_count(&both.server, "close_notify_sent", 1);
}

#[test]
fn many_small_messages_in_one_turn_go_out_whole() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut ws = wss(both.tls, &pki);
    // 200 frames in one write: their echoes are gathered into records.
    let mut burst = Vec::new();
    for i in 0..200 {
        let text = format!("message {i}");
        let mut frame = Vec::new();
        pushloop::ws::frame::encode_frame(
            &mut frame,
            true,
            pushloop::ws::frame::OpCode::Text,
            Some([1, 2, 3, 4]),
            text.as_bytes(),
        );
        burst.extend(frame);
    }
    ws.send_raw(&burst);
    for i in 0..200 {
        assert_eq!(ws.recv_data(), Received::Text(format!("message {i}")));
    }
}

/// Broadcasts 16 KiB messages from another thread until the server has
/// seen a slow reader; the count sent.
fn flood_until_slow(both: &Both) -> usize {
    let payload = vec![b'x'; 16 * 1024];
    for sent in 1..=4000 {
        both.server
            .handle
            .broadcast_binary(payload.clone())
            .expect("broadcast");
        if sent % 32 == 0 && stats(&both.server).contains("\"slow_readers\":0,") {
            continue;
        }
        if sent % 32 == 0 {
            return sent;
        }
    }
    panic!("no slow reader after 4000 messages");
}

#[test]
fn a_slow_tls_reader_is_closed_with_1008() {
    let pki = pki();
    let mut config = quick_config();
    config.limits.max_queued_bytes = 64 * 1024;
    config.limits.slow_reader = SlowReader::Close;
    let both = start(&pki, config);
    let mut slow = wss(both.tls, &pki);
    flood_until_slow(&both);
    // What was queued before comes whole, then the Close, close_notify, FIN.
    assert_eq!(slow.expect_close(), Some(1008));
}

#[test]
fn a_slow_tls_reader_under_the_drop_policy_gets_whole_messages_in_order() {
    let pki = pki();
    let mut config = quick_config();
    config.limits.max_queued_bytes = 32 * 1024;
    config.limits.slow_reader = SlowReader::Drop;
    let both = start(&pki, config);
    let mut slow = wss(both.tls, &pki);
    flood_until_slow(&both);
    // A marker, offered until one gets past the full queue.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let marker = {
        let (handle, done) = (both.server.handle.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            for _ in 0..500 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let _ = handle.broadcast_text("the last one");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Every message that was not dropped arrives whole, in order; the
    // socket blocked and drained many times on the way.
    let mut whole = 0;
    loop {
        match slow.recv_data() {
            Received::Binary(bytes) => {
                assert_eq!(bytes, vec![b'x'; 16 * 1024]);
                whole += 1;
            }
            Received::Text(text) => {
                assert_eq!(text, "the last one");
                break;
            }
            other => panic!("after {whole} messages: {other:?}"),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    marker.join().expect("marker thread");
    assert!(whole > 0);
}

// ---- bad input on the TLS port ---------------------------------------------------

#[test]
fn garbage_instead_of_a_client_hello_gets_decode_error() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let mut bystander = wss(both.tls, &pki);
    let answer = raw_exchange(both.tls, &[0xff; 64], false);
    assert!(
        is_fatal_alert(&answer, 50),
        "decode_error expected: {answer:?}"
    );
    expect_count(&both.server, "not_tls", 1);
    expect_count(&both.server, "alerts_sent", 1);
    echoes(&mut bystander, "still here");
    // The connection's end is a TLS error; Prometheus sees the fault too.
    assert!(stats(&both.server).contains("\"reason\":\"tls_error\""));
    let metrics = get(both.server.addr, "/metrics").text();
    assert!(
        metrics.contains("pushloop_tls_faults_total{fault=\"not_tls\"} 1"),
        "{metrics}"
    );
}

#[test]
fn plain_http_to_the_tls_port_gets_a_plain_400() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let answer = raw_exchange(
        both.tls,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        false,
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("https://"), "{text}");
    expect_count(&both.server, "plain_http", 1);
}

#[test]
fn a_truncated_handshake_is_closed_and_counted() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let hello = rustls_client_hello(&pki);
    let answer = raw_exchange(both.tls, &hello[..hello.len() / 2], true);
    assert!(
        answer.is_empty(),
        "nothing to say to a cut hello: {answer:?}"
    );
    expect_count(&both.server, "truncated", 1);
}

#[test]
fn an_unsupported_version_gets_protocol_version() {
    let pki = pki();
    let both = start(&pki, Config::default());
    // TLS 1.0 without supported_versions (RFC 8996 retired it).
    let hello = client_hello(0x0301, &[0xc02b, 0xc013], TLS12_EXTENSIONS);
    let answer = raw_exchange(both.tls, &hello, false);
    assert!(is_fatal_alert(&answer, 70), "protocol_version: {answer:?}");
    expect_count(&both.server, "unsupported_version", 1);
}

#[test]
fn no_common_cipher_suite_gets_handshake_failure() {
    let pki = pki();
    let both = start(&pki, Config::default());
    // TLS_RSA_WITH_AES_128_CBC_SHA and TLS_RSA_WITH_3DES_EDE_CBC_SHA only.
    let hello = client_hello(0x0303, &[0x002f, 0x000a], TLS12_EXTENSIONS);
    let answer = raw_exchange(both.tls, &hello, false);
    assert!(is_fatal_alert(&answer, 40), "handshake_failure: {answer:?}");
    expect_count(&both.server, "no_common_parameters", 1);
}

#[test]
fn alpn_without_http11_gets_no_application_protocol() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let Err(error) = try_tls_connect(both.tls, pki.client_config(&[&TLS13], &[b"h2"])) else {
        panic!("the handshake should fail");
    };
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
    expect_count(&both.server, "no_common_alpn", 1);
}

#[test]
fn a_client_that_distrusts_the_certificate_is_counted() {
    let pki = pki();
    let both = start(&pki, Config::default());
    let stranger = TestPki::new(&["localhost"]);
    assert!(try_tls_connect(both.tls, client_config(&stranger)).is_err());
    expect_count(&both.server, "peer_alert", 1);
}

#[test]
fn a_silent_tls_client_is_closed_at_the_handshake_deadline() {
    let pki = pki();
    let mut config = Config::default();
    config.limits.handshake_timeout = Duration::from_millis(300);
    let both = start(&pki, config);
    let started = Instant::now();
    // One says nothing; one trickles its ClientHello a byte at a time.
    let mut silent = connect(both.tls);
    let mut trickler = connect(both.tls);
    let hello = rustls_client_hello(&pki);
    for byte in hello.iter().take(20) {
        if trickler.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(read_to_close(&mut silent).is_empty());
    assert!(read_to_close(&mut trickler).is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    expect_count(&both.server, "handshake_timeouts", 2);
    expect_count(&both.server, "connections", 0);
}

// ---- certificate reload --------------------------------------------------------

#[test]
fn reload_serves_the_new_certificate_and_keeps_open_connections() {
    let old = pki();
    let both = start(&old, Config::default());
    let mut before = wss(both.tls, &old);
    echoes(&mut before, "before");

    let new = pki();
    both.server
        .handle
        .reload_tls(tls_config(&new))
        .expect("reload");
    expect_count(&both.server, "reloads", 1);

    // The open connection keeps its keys; new handshakes get the new
    // certificate (a client trusting only the old CA refuses it).
    echoes(&mut before, "after");
    assert_eq!(tls_get(both.tls, &new, "/").status, 200);
    assert!(
        try_tls_connect(both.tls, client_config(&old)).is_err(),
        "the old CA must not vouch for the new certificate"
    );
    echoes(&mut before, "still");
}

#[test]
fn reload_from_files_serves_the_rewritten_pair() {
    let dir = std::env::temp_dir().join(format!("pushloop-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = pki();
    std::fs::write(&cert, &first.chain_pem).expect("cert");
    std::fs::write(&key, &first.key_pem).expect("key");
    let loaded = TlsConfig::from_files(&cert, &key).expect("files");
    let config = Config {
        tls: Some(loaded.clone()),
        ..Config::default()
    };
    let (tell, told) = channel();
    let server = serve(config, move |server: &mut Server| {
        tell.send(server.add_tls_listener("127.0.0.1:0").expect("TLS"))
            .expect("test waits");
        Feed {
            topic: server.topic("feed").expect("topic"),
        }
    });
    let addr = told.recv().expect("TLS address");
    let before = tls_connect(addr, client_config(&first));
    assert_eq!(
        before
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first()),
        Some(&first.server_cert)
    );

    // What SIGHUP does in the demo: read the files again, off the loop.
    let second = pki();
    std::fs::write(&cert, &second.chain_pem).expect("cert");
    std::fs::write(&key, &second.key_pem).expect("key");
    let reloaded = loaded.reload_from_files().expect("reload");
    server.handle.reload_tls(reloaded).expect("reload");
    let after = eventually(Duration::from_secs(5), || {
        try_tls_connect(addr, client_config(&second)).is_ok_and(|tls| {
            tls.conn.peer_certificates().and_then(|chain| chain.first())
                == Some(&second.server_cert)
        })
    });
    assert!(after, "new handshakes get the rewritten certificate");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- TLS alone, and the trace --------------------------------------------------

/// Trace lines, collected.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_tls_only_server_traces_the_handshake_and_the_alerts() {
    let pki = pki();
    let lines = Lines::default();
    let config = Config {
        tls: Some(tls_config(&pki)),
        trace: Some(TraceOutput(Box::new(lines.clone()))),
        ..Config::default()
    };
    let (tell, told) = channel();
    let thread = std::thread::spawn(move || {
        let mut server = Server::bind_tls("127.0.0.1:0", config).expect("bind");
        let topic = server.topic("feed").expect("topic");
        tell.send((
            server.local_addr().expect("addr"),
            server.tls_addr(),
            server.handle(),
        ))
        .expect("test waits");
        server.run(Feed { topic })
    });
    let (addr, tls_addr, handle) = told.recv().expect("started");
    assert_eq!(tls_addr, Some(addr), "the only listener is the TLS one");

    let response = tls_get(addr, &pki, "/");
    assert_eq!(response.status, 200);
    let answer = raw_exchange(addr, &[0xff; 8], false);
    assert!(is_fatal_alert(&answer, 50), "{answer:?}");
    handle.shutdown();
    thread.join().expect("loop").expect("run");

    let trace = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
    let has = |needle: &str| trace.lines().any(|line| line.contains(needle));
    assert!(has("(TLS)"), "{trace}");
    assert!(has("handshake done: TLSv1_3"), "{trace}");
    assert!(has("alpn=http/1.1 sni=localhost"), "{trace}");
    assert!(has("RFC 8446 §4.1.3"), "{trace}");
    assert!(
        has("GET / HTTP/1.1"),
        "the plaintext is traced as usual: {trace}"
    );
    assert!(has("close_notify") && has("RFC 8446 §6.1"), "{trace}");
    assert!(has("NotTls"), "{trace}");
    assert!(
        has("DecodeError (fatal)") && has("RFC 8446 §6.2"),
        "{trace}"
    );
}

#[test]
fn a_tls_listener_needs_a_certificate() {
    let error = Server::bind_tls("127.0.0.1:0", Config::default())
        .err()
        .expect("no certificate");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let mut plain = Server::bind("127.0.0.1:0", Config::default()).expect("bind");
    let error = plain
        .add_tls_listener("127.0.0.1:0")
        .expect_err("no certificate");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

// ---- the demo binary -------------------------------------------------------------

/// The demo binary with TLS flags; killed and reaped on drop.
struct Demo {
    child: std::process::Child,
    /// The address of each `serving` line, with its scheme.
    serving: Vec<(String, SocketAddr)>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `pushloop ARGS` and waits (bounded) for `lines` serving lines.
    fn start(args: &[&str], lines: usize) -> Demo {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
            .args(args)
            .arg("--no-tick")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tell, told) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tell.send(line).is_err() {
                    return;
                }
            }
        });
        let mut serving = Vec::new();
        while serving.len() < lines {
            let line = told
                .recv_timeout(READ_TIMEOUT)
                .expect("a serving line from the demo");
            let url = line
                .split_whitespace()
                .find(|word| word.contains("://"))
                .expect("a URL");
            let (scheme, rest) = url.split_once("://").expect("scheme");
            let addr = rest.trim_end_matches('/').parse().expect("address");
            serving.push((scheme.to_string(), addr));
        }
        Demo { child, serving }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// The certificate a fresh handshake with `addr` shows, if one completes.
fn served_certificate(addr: SocketAddr, trust: &TestPki) -> Option<Vec<u8>> {
    let tls = try_tls_connect(addr, client_config(trust)).ok()?;
    let chain = tls.conn.peer_certificates()?;
    Some(chain.first()?.to_vec())
}

#[test]
fn the_demo_reloads_its_certificate_on_sighup() {
    let dir = std::env::temp_dir().join(format!("pushloop-demo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = pki();
    std::fs::write(&cert, &first.chain_pem).expect("cert");
    std::fs::write(&key, &first.key_pem).expect("key");
    let (cert_arg, key_arg) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    // TLS flags alone: one listener, and it speaks TLS.
    let demo = Demo::start(
        &[
            "--tls-addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
        1,
    );
    let (scheme, addr) = demo.serving[0].clone();
    assert_eq!(scheme, "https");
    assert_eq!(
        served_certificate(addr, &first),
        Some(first.server_cert.to_vec())
    );
    let mut open = tls_connect(addr, client_config(&first));

    // New files and SIGHUP: new handshakes get the new pair.
    let second = pki();
    std::fs::write(&cert, &second.chain_pem).expect("cert");
    std::fs::write(&key, &second.key_pem).expect("key");
    demo.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || {
        served_certificate(addr, &second) == Some(second.server_cert.to_vec())
    });
    assert!(reloaded, "SIGHUP should serve the rewritten pair");

    // A broken pair: the old one keeps serving.
    std::fs::write(&key, "not a key").expect("key");
    demo.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        served_certificate(addr, &second),
        Some(second.server_cert.to_vec())
    );

    // The connection opened before both reloads still works.
    open.write_all(b"GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    assert_eq!(read_response(&mut open, &mut Vec::new()).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_serves_plain_and_tls_side_by_side() {
    let dir = std::env::temp_dir().join(format!("pushloop-demo-both-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pki = pki();
    std::fs::write(&cert, &pki.chain_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    let (cert_arg, key_arg) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    let demo = Demo::start(
        &[
            "--addr",
            "127.0.0.1:0",
            "--tls-addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
        2,
    );
    let schemes: Vec<&str> = demo.serving.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(schemes, ["http", "https"]);
    assert_eq!(get(demo.serving[0].1, "/poll").status, 200);
    assert_eq!(tls_get(demo.serving[1].1, &pki, "/poll").status, 200);
    let stats = tls_get(demo.serving[1].1, &pki, "/stats").text();
    assert!(tls_count(&stats, "handshakes") >= 1, "{stats}");

    // --addr with TLS but no --tls-addr is refused, not guessed.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tls-addr"));
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- several loops ------------------------------------------------------------------

#[test]
fn tls_on_several_loops_and_a_reload_reaches_every_loop() {
    // SO_REUSEPORT: the kernel spreads TLS connections over the loops' own
    // listeners; one acceptor: loop 0 hands every other one out in turn.
    for share_port in [SharePort::ReusePort, SharePort::OneAcceptor] {
        let old = pki();
        let config = Config {
            tls: Some(tls_config(&old)),
            share_port,
            ..Config::default()
        };
        let (tell, told) = channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::bind_tls("127.0.0.1:0", config)?;
            let topic = server.topic("feed").expect("topic");
            tell.send((server.local_addr()?, server.handle()))
                .expect("test waits");
            server.run_threads(3, || Feed { topic })
        });
        let (addr, handle) = told.recv().expect("started");
        let mut open: Vec<WsClient<Tls>> = (0..9).map(|_| wss(addr, &old)).collect();
        for (i, ws) in open.iter_mut().enumerate() {
            echoes(ws, &format!("{share_port:?} {i}"));
        }
        // Every loop takes the new certificate: nine handshakes in a row
        // (three per loop when handed out in turn) all get it.
        let new = pki();
        handle.reload_tls(tls_config(&new)).expect("reload");
        let every_loop = eventually(Duration::from_secs(5), || {
            (0..9).all(|_| served_certificate(addr, &new) == Some(new.server_cert.to_vec()))
        });
        assert!(
            every_loop,
            "{share_port:?}: a loop kept the old certificate"
        );
        for ws in &mut open {
            echoes(ws, "open connections keep their keys");
        }
        handle.shutdown();
        thread.join().expect("no panic").expect("every loop ends");
    }
}
