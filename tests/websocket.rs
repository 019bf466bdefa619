//! WebSocket over real sockets: handshake, echo, fragments, control frames,
//! every close-code path, limits, heartbeat, backpressure.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::limits::SlowReader;
use pushloop::server::Config;
use pushloop::ws::close::CloseCode;
use pushloop::ws::frame::OpCode;
use pushloop::ws::handshake::{OriginPolicy, Upgrade};

/// Echo, plus a few commands a test can send as text.
struct TestApp {
    closes: std::sync::mpsc::Sender<(u16, String)>,
}

impl App for TestApp {
    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, offer: &Upgrade) -> Upgrading {
        match req.path() {
            "/echo" => Upgrading::Accept(Accept::new()),
            "/proto" => match offer.offered_protocols().find(|p| *p == "chat.v2") {
                Some(p) => Upgrading::Accept(Accept::new().protocol(p)),
                None => Upgrading::Accept(Accept::new()),
            },
            _ => Upgrading::Reject(Response::text(404, "no such socket")),
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        match message {
            Message::Text("panic") => panic!("test panic in a message callback"),
            Message::Text("close") => {
                ctx.close(id, CloseCode(4000), "asked to");
            }
            Message::Text("buffered") => {
                let amount = ctx.buffered_amount(id).unwrap_or(usize::MAX);
                let _ = ctx.send(id, Message::Text(&amount.to_string()));
            }
            Message::Text("slow?") => {
                let slow = ctx.stats().slow_readers;
                let _ = ctx.send(id, Message::Text(&slow.to_string()));
            }
            Message::Text(text) if text.starts_with("all:") => {
                ctx.broadcast(Message::Text(&text[4..]));
            }
            Message::Text(text) if text.starts_with("others:") => {
                ctx.broadcast_except(id, Message::Text(&text[7..]));
            }
            Message::Text(text) if text.starts_with("flood:") => {
                let count: usize = text[6..].parse().unwrap_or(0);
                let payload = vec![b'x'; 16 * 1024];
                for _ in 0..count {
                    ctx.broadcast(Message::Binary(&payload));
                }
            }
            other => {
                let _ = ctx.send(id, other);
            }
        }
    }

    fn close(&mut self, _: &mut Context, _: ConnId, code: CloseCode, reason: &str) {
        let _ = self.closes.send((code.0, reason.to_owned()));
    }
}

fn start(config: Config) -> (TestServer, std::sync::mpsc::Receiver<(u16, String)>) {
    let (closes, reported) = std::sync::mpsc::channel();
    (serve(config, move |_| TestApp { closes }), reported)
}

// ---- Opening handshake (RFC 6455 §4.2) ---------------------------------------

#[test]
fn handshake_answers_the_rfc_sample_key() {
    let (server, _) = start(quick_config());
    let client = WsClient::connect(server.addr, "/echo");
    assert_eq!(
        client.response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(client
        .response
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        None,
        "no extension is ever accepted"
    );
}

#[test]
fn handshake_refusals_carry_their_status() {
    let (server, _) = start(quick_config());
    let cases: [(&str, u16); 6] = [
        // Version 8: 426 with the version we speak (§4.2.2 step 4).
        ("GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
        // A key that is not 16 bytes of base64.
        ("GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        // No Connection: Upgrade.
        ("GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        // No Host.
        ("GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        // Not GET.
        ("POST /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", 405),
        // The app refuses the path.
        ("GET /nope HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 404),
    ];
    for (raw, status) in cases {
        let client = WsClient::try_connect(server.addr, raw);
        assert_eq!(client.response.status, status, "for {raw:?}");
        if status == 426 {
            assert_eq!(client.response.header("sec-websocket-version"), Some("13"));
        }
    }
}

#[test]
fn connection_token_list_is_matched_in_any_case() {
    let (server, _) = start(quick_config());
    let raw = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(WsClient::try_connect(server.addr, raw).response.status, 101);
}

#[test]
fn subprotocol_is_chosen_only_among_those_offered() {
    let (server, _) = start(quick_config());
    let offered = WsClient::try_connect(
        server.addr,
        &upgrade_request("/proto", "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"),
    );
    assert_eq!(
        offered.response.header("sec-websocket-protocol"),
        Some("chat.v2")
    );
    let not_offered = WsClient::try_connect(
        server.addr,
        &upgrade_request("/proto", "Sec-WebSocket-Protocol: other\r\n"),
    );
    assert_eq!(not_offered.response.status, 101);
    assert_eq!(not_offered.response.header("sec-websocket-protocol"), None);
}

#[test]
fn origin_policy_refuses_cross_site_sockets_with_403() {
    let mut config = quick_config();
    config.origin_policy = OriginPolicy::AllowList(vec!["https://good.example".into()]);
    let (server, _) = start(config);
    let bad = WsClient::try_connect(
        server.addr,
        &upgrade_request("/echo", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(bad.response.status, 403);
    let good = WsClient::try_connect(
        server.addr,
        &upgrade_request("/echo", "Origin: https://good.example\r\n"),
    );
    assert_eq!(good.response.status, 101);
}

#[test]
fn frames_right_behind_the_upgrade_head_are_not_lost() {
    let (server, _) = start(quick_config());
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    pushloop::ws::frame::encode_frame(&mut bytes, true, OpCode::Text, Some([1, 2, 3, 4]), b"eager");
    let mut client = WsClient::try_connect_bytes(server.addr, &bytes);
    assert_eq!(client.response.status, 101);
    assert_eq!(client.recv_data(), Received::Text("eager".into()));
}

#[test]
fn buffered_amount_reports_queued_bytes() {
    let (server, _) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_text("buffered");
    assert_eq!(client.recv_data(), Received::Text("0".into()));
}

// ---- Data (RFC 6455 §5.4, §5.6) ------------------------------------------------

#[test]
fn echoes_text_binary_and_fragmented_messages() {
    let (server, _) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_text("Hello");
    assert_eq!(client.recv_data(), Received::Text("Hello".into()));
    client.send_binary(&[0, 1, 2, 255]);
    assert_eq!(client.recv_data(), Received::Binary(vec![0, 1, 2, 255]));
    // §5.4: "Hel" + ping + "lo" — the ping is answered between the fragments.
    client.send_frame(false, OpCode::Text, b"Hel");
    client.send_frame(true, OpCode::Ping, b"mid");
    client.send_frame(true, OpCode::Continuation, b"lo");
    assert_eq!(client.recv(), Received::Pong(b"mid".to_vec()));
    assert_eq!(client.recv(), Received::Text("Hello".into()));
}

#[test]
fn echoes_a_16_mib_message() {
    let mut config = quick_config();
    config.limits.max_message_bytes = 16 << 20;
    config.limits.max_frame_bytes = 16 << 20;
    let (server, _) = start(config);
    let mut client = WsClient::connect(server.addr, "/echo");
    let payload: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut writer = client.stream.try_clone().unwrap();
    let sent = payload.clone();
    let sender = std::thread::spawn(move || {
        let mut frame = Vec::new();
        pushloop::ws::frame::encode_frame(
            &mut frame,
            true,
            OpCode::Binary,
            Some([9, 8, 7, 6]),
            &sent,
        );
        writer.write_all(&frame).unwrap();
    });
    assert_eq!(client.recv_data(), Received::Binary(payload));
    sender.join().unwrap();
}

#[test]
fn pings_are_answered_with_the_same_payload() {
    let (server, _) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_frame(true, OpCode::Ping, b"are you there");
    assert_eq!(client.recv(), Received::Pong(b"are you there".to_vec()));
}

#[test]
fn broadcast_reaches_everyone_and_broadcast_except_skips_the_sender() {
    let (server, _) = start(quick_config());
    let mut a = WsClient::connect(server.addr, "/echo");
    let mut b = WsClient::connect(server.addr, "/echo");
    a.send_text("all:hi");
    assert_eq!(a.recv_data(), Received::Text("hi".into()));
    assert_eq!(b.recv_data(), Received::Text("hi".into()));
    a.send_text("others:psst");
    assert_eq!(b.recv_data(), Received::Text("psst".into()));
    a.send_text("after");
    assert_eq!(
        a.recv_data(),
        Received::Text("after".into()),
        "the sender got nothing in between"
    );
}

// ---- Closing (RFC 6455 §5.5.1, §7) --------------------------------------------

#[test]
fn client_close_is_echoed_and_reported_to_the_app() {
    let (server, closes) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_close(1000, "done");
    assert_eq!(client.expect_close(), Some(1000));
    assert_eq!(
        closes.recv_timeout(READ_TIMEOUT).unwrap(),
        (1000, "done".into())
    );
}

#[test]
fn empty_close_is_answered_with_an_empty_close_and_reported_as_1005() {
    let (server, closes) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_frame(true, OpCode::Close, b"");
    assert_eq!(client.expect_close(), None);
    assert_eq!(closes.recv_timeout(READ_TIMEOUT).unwrap().0, 1005);
}

#[test]
fn server_initiated_close_completes_the_handshake() {
    let (server, closes) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_text("close");
    assert_eq!(
        client.recv(),
        Received::Close(Some(4000), "asked to".into())
    );
    client.send_close(4000, "");
    assert_eq!(client.recv(), Received::Eof);
    assert_eq!(closes.recv_timeout(READ_TIMEOUT).unwrap().0, 4000);
}

/// Each protocol violation gets its own close code, then TCP closes.
#[test]
fn protocol_violations_close_with_their_codes() {
    let (server, _) = start(quick_config());
    let masked = |fin: bool, opcode: u8, payload: &[u8]| {
        let mut frame = vec![
            if fin { 0x80 } else { 0 } | opcode,
            0x80 | payload.len() as u8,
            0,
            0,
            0,
            0,
        ];
        frame.extend_from_slice(payload);
        frame
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "unmasked client frame (§5.1)",
            vec![0x81, 0x02, b'h', b'i'],
            1002,
        ),
        (
            "RSV1 without an extension (§5.2)",
            vec![0xC1, 0x80, 0, 0, 0, 0],
            1002,
        ),
        ("reserved opcode 3 (§5.2)", masked(true, 0x3, b""), 1002),
        ("fragmented ping (§5.5)", masked(false, 0x9, b""), 1002),
        (
            "continuation without start (§5.4)",
            masked(true, 0x0, b"x"),
            1002,
        ),
        (
            "1-byte close payload (§5.5.1)",
            masked(true, 0x8, &[3]),
            1002,
        ),
        (
            "close code 1005 on the wire (§7.4.1)",
            masked(true, 0x8, &[0x03, 0xED]),
            1002,
        ),
        (
            "invalid UTF-8 text (§8.1)",
            masked(true, 0x1, &[0xCE, 0xBA, 0xE1, 0xBD]),
            1007,
        ),
        (
            "invalid UTF-8 close reason (§5.5.1)",
            masked(true, 0x8, &[0x03, 0xE8, 0xFF]),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut client = WsClient::connect(server.addr, "/echo");
        client.send_raw(&bytes);
        assert_eq!(client.expect_close(), Some(code), "{what}");
    }
}

#[test]
fn invalid_utf8_fails_in_the_fragment_where_it_appears() {
    let (server, _) = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_frame(false, OpCode::Text, b"ok so far");
    client.send_frame(false, OpCode::Continuation, &[0xF4, 0x90, 0x80, 0x80]);
    // No final fragment is ever sent: the close must come anyway.
    assert_eq!(client.expect_close(), Some(1007));
}

#[test]
fn messages_over_the_limit_close_with_1009_before_the_payload_arrives() {
    let mut config = quick_config();
    config.limits.max_message_bytes = 1024;
    config.limits.max_frame_bytes = 1024;
    let (server, _) = start(config);
    let mut client = WsClient::connect(server.addr, "/echo");
    // Only the header of a 1 MiB frame: the declared length decides.
    client.send_raw(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]);
    assert_eq!(client.expect_close(), Some(1009));
    // The same limit across fragments.
    let mut client = WsClient::connect(server.addr, "/echo");
    client.send_frame(false, OpCode::Binary, &[0; 1000]);
    client.send_frame(true, OpCode::Continuation, &[0; 100]);
    assert_eq!(client.expect_close(), Some(1009));
}

#[test]
fn a_panicking_callback_closes_only_its_connection_with_1011() {
    let (server, _) = start(quick_config());
    let mut bystander = WsClient::connect(server.addr, "/echo");
    let mut victim = WsClient::connect(server.addr, "/echo");
    victim.send_text("panic");
    assert_eq!(victim.expect_close(), Some(1011));
    bystander.send_text("still here");
    assert_eq!(bystander.recv_data(), Received::Text("still here".into()));
}

// ---- Time (heartbeat, idle) -----------------------------------------------------

#[test]
fn a_silent_peer_is_pinged_then_dropped() {
    let mut config = quick_config();
    config.limits.ping_interval = Duration::from_millis(50);
    config.limits.pong_timeout = Duration::from_millis(100);
    let (server, closes) = start(config);
    let mut client = WsClient::connect(server.addr, "/echo");
    assert_eq!(client.recv(), Received::Ping(Vec::new()));
    // Never answer: the server gives up and reports 1006 (no Close frame).
    assert_eq!(client.recv(), Received::Eof);
    assert_eq!(closes.recv_timeout(READ_TIMEOUT).unwrap().0, 1006);
}

#[test]
fn a_peer_that_answers_pings_stays_open() {
    let mut config = quick_config();
    config.limits.ping_interval = Duration::from_millis(30);
    config.limits.pong_timeout = Duration::from_millis(60);
    let (server, _) = start(config);
    let mut client = WsClient::connect(server.addr, "/echo");
    for _ in 0..5 {
        match client.recv() {
            Received::Ping(payload) => client.send_frame(true, OpCode::Pong, &payload),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    client.send_text("alive");
    assert_eq!(client.recv_data(), Received::Text("alive".into()));
}

#[test]
fn idle_websocket_is_closed_with_1001() {
    let mut config = quick_config();
    config.limits.idle_timeout = Duration::from_millis(100);
    let (server, _) = start(config);
    let mut client = WsClient::connect(server.addr, "/echo");
    assert_eq!(client.expect_close(), Some(1001));
}

// ---- Backpressure ---------------------------------------------------------------

/// Floods every socket from the fast client, a few messages per loop turn,
/// until the server has seen a slow reader; returns the messages sent.
fn flood_until_slow(fast: &mut WsClient) -> usize {
    let mut sent = 0;
    for _ in 0..2000 {
        fast.send_text("flood:4");
        for _ in 0..4 {
            assert_eq!(fast.recv_data(), Received::Binary(vec![b'x'; 16 * 1024]));
        }
        sent += 4;
        fast.send_text("slow?");
        if fast.recv_data() != Received::Text("0".into()) {
            return sent;
        }
    }
    panic!("no slow reader after {sent} messages");
}

#[test]
fn a_slow_reader_is_closed_with_1008_and_others_get_everything() {
    let mut config = quick_config();
    config.limits.max_queued_bytes = 256 * 1024;
    config.limits.slow_reader = SlowReader::Close;
    config.limits.close_timeout = Duration::from_secs(5);
    let (server, _) = start(config);
    let mut slow = WsClient::connect(server.addr, "/echo");
    let mut fast = WsClient::connect(server.addr, "/echo");
    flood_until_slow(&mut fast);
    // The slow reader's stream ends in a 1008 close after what was already written.
    assert_eq!(slow.expect_close(), Some(1008));
    fast.send_text("still fine");
    assert_eq!(fast.recv_data(), Received::Text("still fine".into()));
}

#[test]
fn slow_reader_drop_policy_keeps_the_connection_and_drops_messages() {
    let mut config = quick_config();
    config.limits.max_queued_bytes = 256 * 1024;
    config.limits.slow_reader = SlowReader::Drop;
    let (server, _) = start(config);
    let mut slow = WsClient::connect(server.addr, "/echo");
    let mut fast = WsClient::connect(server.addr, "/echo");
    let sent = flood_until_slow(&mut fast);
    // Ask the slow socket to echo once it has drained: everything before the
    // echo arrives first, minus what was dropped.
    slow.send_text("marker");
    let mut delivered = 0;
    loop {
        match slow.recv_data() {
            Received::Binary(_) => delivered += 1,
            Received::Text(text) => {
                assert_eq!(text, "marker");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        delivered < sent,
        "messages were dropped for the slow reader ({delivered} of {sent})"
    );
}
