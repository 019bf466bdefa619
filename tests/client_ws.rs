//! The blocking WebSocket client against small hostile servers on
//! `127.0.0.1:0` (one `std::net` thread each) and against pushloop's own
//! server: the handshake's checks (RFC 6455 §4.1), the protocol's answers to
//! bad frames (close 1002 / 1007 / 1009), masking (§5.3), pings, both
//! closing handshakes and their deadlines (§7.1), a transport that cuts every
//! read and write short, reconnecting with the backoff policy on an injected
//! clock, and resuming a feed with `?after=`.
//!
//! Nothing here waits without a bound: servers accept within [`WAIT`] or
//! panic, their reads time out after [`WAIT`], the clients' deadlines are
//! short, and every loop takes a bounded count.
#![cfg(feature = "client")]

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushloop::client::backoff::{Clock, ReconnectPolicy};
use pushloop::client::transport::{Connect, ReadTimeout, TcpConnector};
use pushloop::client::url::Url;
use pushloop::client::ws::{
    ClientEvent, CloseFrame, Disconnect, Lost, Message, WebSocket, WsClient, WsConfig, WsError,
};
use pushloop::http::response_head::ResponseError;
use pushloop::ws::close::CloseCode;
use pushloop::ws::frame::{encode_frame, FrameError, MessageError, MessageLimits, OpCode};
use pushloop::ws::handshake_client::AcceptError;

#[cfg(feature = "tls")]
use common::upstream::accept_tcp;
use common::upstream::{close_payload, pushloop, switching_head, Peer, Server, MS, WAIT};

/// Short deadlines, so the tests that cross them are quick.
fn quick() -> WsConfig {
    WsConfig {
        connect_timeout: 2 * WAIT,
        write_timeout: WAIT,
        close_timeout: 500 * MS,
        ..WsConfig::default()
    }
}

/// `config` without the permessage-deflate offer: no extension is offered.
fn offering_no_extension(config: WsConfig) -> WsConfig {
    WsConfig {
        #[cfg(feature = "deflate")]
        deflate: None,
        ..config
    }
}

fn connect(
    addr: SocketAddr,
    path: &str,
    config: &WsConfig,
) -> Result<WebSocket<TcpStream>, WsError> {
    WebSocket::connect_with(&format!("ws://{addr}{path}"), config)
}

// ---- The opening handshake (§4.1) -------------------------------------------

#[test]
fn the_request_is_rfc_6455s_and_the_chosen_subprotocol_is_reported() {
    let (server, addr) = Server::one(|mut peer| {
        let head = peer.head.clone();
        assert!(
            head.starts_with("GET /chat?topics=a HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(
            peer.field("Host"),
            Some(&*peer.stream.local_addr().unwrap().to_string())
        );
        assert_eq!(peer.field("Upgrade"), Some("websocket"));
        assert_eq!(peer.field("Connection"), Some("Upgrade"));
        assert_eq!(peer.field("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(
            peer.field("Sec-WebSocket-Protocol"),
            Some("v2.chat, v1.chat")
        );
        assert_eq!(peer.field("Origin"), Some("https://example.com"));
        assert_eq!(peer.field("Authorization"), Some("Bearer t"));
        // §4.1 item 11, RFC 7692 §5: permessage-deflate, offered as browsers do.
        #[cfg(feature = "deflate")]
        let offer = Some("permessage-deflate; client_max_window_bits");
        #[cfg(not(feature = "deflate"))]
        let offer = None;
        assert_eq!(peer.field("Sec-WebSocket-Extensions"), offer);
        // §4.1 item 7: 16 random bytes, base64.
        let key = peer.field("Sec-WebSocket-Key").unwrap();
        assert_eq!(key.len(), 24);
        peer.switch("Sec-WebSocket-Protocol: v1.chat\r\n");
        peer.send(true, OpCode::Text, b"welcome");
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, &close_payload(1000, ""));
    });
    let config = WsConfig {
        protocols: vec!["v2.chat".into(), "v1.chat".into()],
        origin: Some("https://example.com".into()),
        headers: vec![("Authorization".into(), "Bearer t".into())],
        ..quick()
    };
    let mut ws = connect(addr, "/chat?topics=a", &config).unwrap();
    assert_eq!(ws.protocol(), Some("v1.chat"));
    assert_eq!(ws.recv(), Ok(Message::Text("welcome".into())));
    let answer = ws.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(answer.code, CloseCode::NORMAL);
    server.join();
}

/// Connects to a server that answers the handshake with `answer` (the key
/// substituted for `{accept}`) and returns the client's error; the server
/// checks that no frame followed.
fn refused(answer: &'static str, config: WsConfig) -> WsError {
    let (server, addr) = Server::one(move |mut peer| {
        let answer = answer.replace("{accept}", &peer.accept_value());
        peer.write(answer.as_bytes());
        // §4.1: the connection failed before it opened: no Close frame, TCP closed.
        assert_eq!(
            peer.frame(),
            None,
            "the client sent a frame after a refused handshake"
        );
    });
    let error = connect(addr, "/", &config).expect_err("the handshake must fail");
    server.join();
    error
}

#[test]
fn a_wrong_accept_key_fails_the_handshake() {
    let error = refused(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        quick(),
    );
    assert_eq!(error, WsError::Handshake(AcceptError::BadAccept));
    assert_eq!(error.close_code(), Some(CloseCode::ABNORMAL));
}

#[test]
fn a_subprotocol_or_extension_we_did_not_offer_fails_the_handshake() {
    let offered = WsConfig {
        protocols: vec!["v1".into()],
        ..quick()
    };
    let cases = [
        (
            "Sec-WebSocket-Protocol: v2\r\n",
            offered.clone(),
            AcceptError::ProtocolNotOffered,
        ),
        // RFC 7936 §2: subprotocols match case-sensitively.
        (
            "Sec-WebSocket-Protocol: V1\r\n",
            offered.clone(),
            AcceptError::ProtocolNotOffered,
        ),
        (
            "Sec-WebSocket-Protocol: v1\r\n",
            quick(),
            AcceptError::ProtocolNotOffered,
        ),
        (
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
            quick(),
            AcceptError::ExtensionNotOffered,
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            offering_no_extension(quick()),
            AcceptError::ExtensionNotOffered,
        ),
    ];
    for (field, config, expected) in cases {
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {{accept}}\r\n{field}\r\n"
            )
            .into_boxed_str(),
        );
        assert_eq!(
            refused(answer, config),
            WsError::Handshake(expected),
            "{field}"
        );
    }
}

#[test]
fn garbage_or_a_refusal_instead_of_101_is_a_handshake_error() {
    let cases = [
        (
            "<!doctype html><title>hi</title>\r\n\r\n",
            AcceptError::Response(ResponseError::NotHttp1),
        ),
        (
            "\x16\x03\x01\x00\x05hello\r\n\r\n",
            AcceptError::Response(ResponseError::NotHttp1),
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            AcceptError::Status(404),
        ),
        (
            "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n",
            AcceptError::Status(200),
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n",
            AcceptError::MissingUpgrade,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n",
            AcceptError::MissingConnectionUpgrade,
        ),
    ];
    for (answer, expected) in cases {
        assert_eq!(
            refused(answer, quick()),
            WsError::Handshake(expected),
            "{answer:?}"
        );
    }
}

#[test]
fn a_head_past_max_head_bytes_or_max_headers_is_refused() {
    let config = WsConfig {
        max_head_bytes: 256,
        max_headers: 4,
        ..quick()
    };
    let long = "HTTP/1.1 101 Switching Protocols\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(
        refused(long, config.clone()),
        WsError::Handshake(AcceptError::Response(ResponseError::HeadTooLarge))
    );
    let many = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: {accept}\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    assert_eq!(
        refused(many, config.clone()),
        WsError::Handshake(AcceptError::Response(ResponseError::TooManyHeaders))
    );
    // At the limit, it passes.
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("X-A: 1\r\n");
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, b"");
    });
    let mut ws = connect(addr, "/", &config).unwrap();
    assert_eq!(
        ws.close(CloseCode::NORMAL, "").unwrap().code,
        CloseCode::NO_STATUS
    );
    server.join();
}

#[test]
fn a_server_that_does_not_answer_or_hangs_up_is_lost() {
    // Silent past connect_timeout.
    let (server, addr) = Server::one(|mut peer| {
        assert!(peer.eof_within(WAIT), "the client gave up and closed");
    });
    let started = Instant::now();
    let config = WsConfig {
        connect_timeout: 200 * MS,
        ..quick()
    };
    assert_eq!(
        connect(addr, "/", &config).unwrap_err(),
        WsError::Lost(Lost::HandshakeTimeout)
    );
    assert!(started.elapsed() < WAIT);
    server.join();
    // EOF halfway through the head.
    let (server, addr) = Server::one(|mut peer| peer.write(b"HTTP/1.1 101 Switching"));
    assert_eq!(
        connect(addr, "/", &quick()).unwrap_err(),
        WsError::Lost(Lost::Eof)
    );
    server.join();
    // Nobody listening.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    assert_eq!(
        connect(addr, "/", &quick()).unwrap_err(),
        WsError::Connect(ErrorKind::ConnectionRefused)
    );
}

// ---- Bad frames: the protocol's answer (§7.1.7, §7.4.1) ---------------------

/// A server that opens the WebSocket, writes `bytes`, and returns the code of
/// the client's Close; the client's error is returned beside it.
fn fail_with(bytes: Vec<u8>, config: WsConfig) -> (WsError, Option<u16>) {
    let (code, seen) = std::sync::mpsc::channel();
    let (server, addr) = Server::one(move |mut peer| {
        peer.switch("");
        peer.write(&bytes);
        let close = peer.expect_close();
        // §7.1.1: the server closes TCP; the client waited for it.
        code.send(close).unwrap();
    });
    let mut ws = connect(addr, "/", &config).unwrap();
    let error = loop {
        match ws.recv() {
            Ok(Message::Close(frame)) => panic!("a clean close: {frame:?}"),
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    server.join();
    assert_eq!(ws.recv(), Err(WsError::NotOpen), "the connection is over");
    (error, seen.recv().unwrap())
}

fn frame(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, mask, payload);
    out
}

#[test]
fn a_masked_frame_from_the_server_is_answered_with_1002() {
    // §5.1: "A client MUST close a connection if it detects a masked frame."
    let (error, code) = fail_with(
        frame(true, OpCode::Text, Some([1, 2, 3, 4]), b"hi"),
        quick(),
    );
    assert_eq!(
        error,
        WsError::Protocol(MessageError::Frame(FrameError::MaskedServerFrame))
    );
    assert_eq!(code, Some(1002));
    assert_eq!(error.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn protocol_violations_get_1002_1007_or_1009() {
    let limits = MessageLimits {
        max_frame_bytes: 1024,
        max_message_bytes: 2048,
        max_fragments: 4,
    };
    let config = WsConfig { limits, ..quick() };
    let mut fragments = Vec::new();
    for i in 0..5 {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        fragments.extend(frame(false, opcode, None, b"x"));
    }
    // Three fragments of 1000 bytes: each under max_frame_bytes, together
    // over max_message_bytes.
    let mut over_message = frame(false, OpCode::Text, None, &[b'a'; 1000]);
    over_message.extend(frame(false, OpCode::Continuation, None, &[b'a'; 1000]));
    over_message.extend(frame(true, OpCode::Continuation, None, &[b'a'; 1000]));
    // A header that declares 2^40 bytes and sends none of them: refused from
    // the header alone, nothing is allocated for it.
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved opcode", vec![0x83, 0x00], 1002),
        ("RSV1 without an extension", vec![0xC1, 0x00], 1002),
        (
            "continuation first",
            frame(true, OpCode::Continuation, None, b"x"),
            1002,
        ),
        ("fragmented ping", vec![0x09, 0x00], 1002),
        (
            "close code 1005 on the wire",
            frame(true, OpCode::Close, None, &close_payload(1005, "")),
            1002,
        ),
        (
            "close code 999",
            frame(true, OpCode::Close, None, &close_payload(999, "")),
            1002,
        ),
        (
            "close code 1016",
            frame(true, OpCode::Close, None, &close_payload(1016, "")),
            1002,
        ),
        (
            "one-byte close payload",
            frame(true, OpCode::Close, None, &[3]),
            1002,
        ),
        (
            "invalid UTF-8 text",
            frame(true, OpCode::Text, None, &[b'a', 0xff]),
            1007,
        ),
        (
            "invalid UTF-8 close reason",
            frame(true, OpCode::Close, None, &[0x03, 0xe8, 0xc0]),
            1007,
        ),
        (
            "a frame over max_frame_bytes",
            frame(true, OpCode::Binary, None, &[0; 1025]),
            1009,
        ),
        ("a 2^40-byte frame header", huge, 1009),
        ("a message over max_message_bytes", over_message, 1009),
        ("fragments past max_fragments", fragments, 1009),
    ];
    for (what, bytes, expected) in cases {
        let (error, code) = fail_with(bytes, config.clone());
        assert_eq!(code, Some(expected), "{what}");
        assert_eq!(
            error.close_code(),
            Some(CloseCode(expected)),
            "{what}: {error}"
        );
        assert!(matches!(error, WsError::Protocol(_)), "{what}: {error:?}");
    }
}

#[test]
fn invalid_utf8_fails_in_the_fragment_that_holds_it() {
    // §8.1 fail fast: the client answers 1007 before the message is complete
    // (the server never sends the rest).
    let mut bytes = frame(false, OpCode::Text, None, "caf".as_bytes());
    bytes.extend(frame(false, OpCode::Continuation, None, &[0xc3, 0x28]));
    let (error, code) = fail_with(bytes, quick());
    assert_eq!(error, WsError::Protocol(MessageError::InvalidUtf8));
    assert_eq!(code, Some(1007));
}

// ---- Messages, masking, pings ------------------------------------------------

#[test]
fn frames_that_come_with_the_101_or_byte_by_byte_arrive_whole() {
    let (server, addr) = Server::one(|mut peer| {
        // The first frame in the same write as the head.
        let mut first = switching_head(&peer.accept_value(), "");
        first.extend(frame(true, OpCode::Text, None, b"early"));
        peer.write(&first);
        // A fragmented message with a ping inside, a byte at a time.
        let mut rest = frame(false, OpCode::Text, None, "h\u{e9}".as_bytes());
        rest.extend(frame(true, OpCode::Ping, None, b"?"));
        rest.extend(frame(true, OpCode::Continuation, None, "llo".as_bytes()));
        rest.extend(frame(true, OpCode::Binary, None, &[0; 300]));
        for byte in rest {
            peer.write(&[byte]);
            peer.stream.flush().unwrap();
        }
        let pong = peer.frame().unwrap();
        assert_eq!((pong.opcode, pong.payload), (OpCode::Pong, b"?".to_vec()));
        peer.send(true, OpCode::Close, &close_payload(1001, "bye"));
        assert_eq!(peer.expect_close(), Some(1001), "§5.5.1: the code echoed");
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    let messages: Vec<_> = ws.messages().take(10).collect();
    assert_eq!(
        messages,
        [
            Ok(Message::Text("early".into())),
            Ok(Message::Ping(b"?".to_vec())),
            Ok(Message::Text("h\u{e9}llo".into())),
            Ok(Message::Binary(vec![0; 300])),
            Ok(Message::Close(CloseFrame {
                code: CloseCode::GOING_AWAY,
                reason: "bye".into()
            })),
        ]
    );
    server.join();
}

#[test]
fn every_frame_is_masked_with_a_fresh_key() {
    const FRAMES: usize = 200;
    let (keys, seen) = std::sync::mpsc::channel();
    let (server, addr) = Server::one(move |mut peer| {
        peer.switch("");
        let mut frames = Vec::new();
        for _ in 0..FRAMES {
            frames.push(peer.frame().expect("a frame"));
        }
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, &close_payload(1000, ""));
        keys.send(frames).unwrap();
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    for i in 0..FRAMES {
        match i % 3 {
            0 => ws.send_text(&format!("message {i}")).unwrap(),
            1 => ws.send_binary(&[i as u8; 20]).unwrap(),
            _ => ws.ping(b"p").unwrap(),
        }
    }
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.join();
    let frames = seen.recv().unwrap();
    assert_eq!(frames[0].payload, b"message 0");
    assert_eq!(frames[1].payload, [1; 20]);
    assert_eq!(
        (frames[2].opcode, &frames[2].payload[..]),
        (OpCode::Ping, &b"p"[..])
    );
    // §5.3: every frame masked, each with its own key. 200 random 32-bit keys
    // collide by chance with probability < 2^-16; allow one collision.
    let mut keys: Vec<[u8; 4]> = frames
        .iter()
        .map(|frame| frame.mask.expect("masked"))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.len() >= FRAMES - 1, "{} distinct keys", keys.len());
}

#[test]
fn a_ping_payload_over_125_bytes_is_refused_and_nothing_is_sent() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        let ping = peer.frame().unwrap();
        assert_eq!((ping.opcode, ping.payload.len()), (OpCode::Ping, 125));
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, b"");
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    assert_eq!(ws.ping(&[0; 126]), Err(WsError::PingTooLong));
    ws.ping(&[0; 125]).unwrap();
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.join();
}

// ---- Deadlines: heartbeat, close (§7.1) --------------------------------------

#[test]
fn a_silent_server_is_pinged_then_given_up_on() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        let ping = peer.frame().expect("the heartbeat ping");
        assert_eq!((ping.opcode, ping.payload.len()), (OpCode::Ping, 0));
        // No pong: the client gives up without a closing handshake.
        assert!(peer.eof_within(WAIT));
    });
    let config = WsConfig {
        ping_interval: Some(100 * MS),
        pong_timeout: 150 * MS,
        ..quick()
    };
    let mut ws = connect(addr, "/", &config).unwrap();
    let started = Instant::now();
    assert_eq!(ws.recv(), Err(WsError::Lost(Lost::PongTimeout)));
    let took = started.elapsed();
    assert!(took >= 250 * MS && took < WAIT, "{took:?}");
    assert_eq!(ws.recv(), Err(WsError::NotOpen));
    server.join();
}

#[test]
fn any_byte_answers_the_heartbeat() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        // A message every 30 ms: the client never needs to ping.
        for i in 0..6u8 {
            thread::sleep(30 * MS);
            peer.send(true, OpCode::Binary, &[i]);
        }
        assert_eq!(peer.expect_close(), Some(1000), "no ping came first");
        peer.send(true, OpCode::Close, b"");
    });
    let config = WsConfig {
        ping_interval: Some(300 * MS),
        pong_timeout: 300 * MS,
        ..quick()
    };
    let mut ws = connect(addr, "/", &config).unwrap();
    for i in 0..6u8 {
        assert_eq!(ws.recv(), Ok(Message::Binary(vec![i])));
    }
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.join();
}

#[test]
fn a_server_that_stops_reading_is_lost_after_write_timeout() {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let (server, addr) = Server::one(move |mut peer| {
        peer.switch("");
        // Reads nothing: the client's writes fill both socket buffers.
        let _ = finished.recv_timeout(WAIT);
    });
    let config = WsConfig {
        write_timeout: 200 * MS,
        ..quick()
    };
    let mut ws = connect(addr, "/", &config).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0;
    let error = loop {
        match ws.send_binary(&chunk) {
            Ok(()) => sent += 1,
            Err(error) => break error,
        }
        assert!(sent < 256, "256 MiB went into a socket nobody reads");
    };
    done.send(()).unwrap();
    assert_eq!(error, WsError::Lost(Lost::WriteTimeout));
    assert_eq!(ws.send_text("x"), Err(WsError::NotOpen));
    server.join();
}

#[test]
fn an_idle_server_gets_1001_when_idle_timeout_is_set() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        let close = peer.frame().expect("the client's Close");
        assert_eq!(close.opcode, OpCode::Close);
        assert_eq!(close.payload, close_payload(1001, "idle timeout"));
        peer.send(true, OpCode::Close, &close_payload(1001, ""));
    });
    let config = WsConfig {
        idle_timeout: Some(150 * MS),
        ping_interval: None,
        ..quick()
    };
    let mut ws = connect(addr, "/", &config).unwrap();
    let started = Instant::now();
    assert_eq!(
        ws.recv(),
        Ok(Message::Close(CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: String::new()
        }))
    );
    assert!(started.elapsed() >= 150 * MS);
    server.join();
}

#[test]
fn an_unanswered_close_times_out_and_tcp_is_closed() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        assert_eq!(peer.expect_close(), Some(1000));
        // Data after the client's Close is dropped by it (§5.5.1); no Close.
        peer.send(true, OpCode::Text, b"late");
        assert!(peer.eof_within(WAIT));
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    let started = Instant::now();
    assert_eq!(
        ws.close(CloseCode::NORMAL, "bye"),
        Err(WsError::Lost(Lost::CloseTimeout))
    );
    assert!(started.elapsed() >= 500 * MS);
    server.join();
}

#[test]
fn after_the_closing_handshake_the_client_waits_for_the_servers_fin() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        peer.send(true, OpCode::Close, &close_payload(1000, "done"));
        assert_eq!(peer.expect_close(), Some(1000));
        // §7.1.1: "the server MUST close the underlying TCP connection
        // immediately"; the client waits for it. Here the server is slow:
        // the client must not have closed first.
        assert!(!peer.eof_within(200 * MS), "the client closed TCP first");
        drop(peer);
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    let started = Instant::now();
    assert_eq!(
        ws.recv(),
        Ok(Message::Close(CloseFrame {
            code: CloseCode::NORMAL,
            reason: "done".into()
        }))
    );
    assert!(
        started.elapsed() >= 200 * MS,
        "returned before the server's FIN"
    );
    assert!(!ws.is_open());
    assert_eq!(ws.send_text("x"), Err(WsError::NotOpen));
    server.join();
}

#[test]
fn eof_without_a_close_frame_is_1006() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        peer.send(true, OpCode::Text, b"last words");
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    assert_eq!(ws.recv(), Ok(Message::Text("last words".into())));
    let error = ws.recv().unwrap_err();
    assert_eq!(error, WsError::Lost(Lost::Eof));
    assert_eq!(error.close_code(), Some(CloseCode::ABNORMAL));
    server.join();
}

#[test]
fn recv_timeout_returns_none_and_the_connection_stays_usable() {
    let (server, addr) = Server::one(|mut peer| {
        peer.switch("");
        thread::sleep(150 * MS);
        peer.send(true, OpCode::Text, b"later");
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, b"");
    });
    let mut ws = connect(addr, "/", &quick()).unwrap();
    assert_eq!(ws.recv_timeout(20 * MS), Ok(None));
    assert!(ws.is_open());
    assert_eq!(
        ws.recv_timeout(WAIT),
        Ok(Some(Message::Text("later".into())))
    );
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.join();
}

// ---- Against pushloop's own server -------------------------------------------

#[test]
fn echo_round_trips_at_every_length_edge() {
    let pushloop = pushloop();
    let mut ws = connect(pushloop.server.addr, "/echo", &quick()).unwrap();
    for len in [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20] {
        let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
        ws.send_text(&text).unwrap();
        assert_eq!(ws.recv(), Ok(Message::Text(text)), "text of {len} bytes");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        ws.send_binary(&bytes).unwrap();
        assert_eq!(
            ws.recv(),
            Ok(Message::Binary(bytes)),
            "binary of {len} bytes"
        );
    }
    ws.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn the_closing_handshake_started_by_the_client() {
    let pushloop = pushloop();
    let mut ws = connect(pushloop.server.addr, "/echo", &quick()).unwrap();
    ws.send_text("one").unwrap();
    let started = Instant::now();
    // The echo of "one" is dropped: after our Close, data is read and ignored.
    let answer = ws.close(CloseCode(4001), "leaving").unwrap();
    assert_eq!(answer.code, CloseCode(4001), "the server echoes our code");
    // The server closed TCP at once (§7.1.1): no wait for close_timeout.
    assert!(started.elapsed() < 400 * MS, "{:?}", started.elapsed());
    assert!(common::eventually(WAIT, || !pushloop
        .closes
        .lock()
        .unwrap()
        .is_empty()));
    assert_eq!(pushloop.closes.lock().unwrap()[0], (4001, "leaving".into()));
    assert_eq!(ws.close(CloseCode::NORMAL, ""), Err(WsError::NotOpen));
}

#[test]
fn the_closing_handshake_started_by_the_server() {
    let pushloop = pushloop();
    let mut ws = connect(pushloop.server.addr, "/echo", &quick()).unwrap();
    ws.send_text("close me").unwrap();
    let started = Instant::now();
    assert_eq!(
        ws.recv(),
        Ok(Message::Close(CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: "as you wish".into()
        }))
    );
    assert!(
        started.elapsed() < 400 * MS,
        "the server's FIN came at once"
    );
    assert!(common::eventually(WAIT, || !pushloop
        .closes
        .lock()
        .unwrap()
        .is_empty()));
    // The server's side saw its own code completed by our echo.
    assert_eq!(pushloop.closes.lock().unwrap()[0].0, 1001);
}

#[test]
fn ping_pong_and_the_subprotocol_through_the_server() {
    let pushloop = pushloop();
    let config = WsConfig {
        protocols: vec!["other".into(), "echo.v1".into()],
        ..quick()
    };
    let mut ws = connect(pushloop.server.addr, "/echo", &config).unwrap();
    assert_eq!(ws.protocol(), Some("echo.v1"));
    ws.ping(b"are you there").unwrap();
    assert_eq!(ws.recv(), Ok(Message::Pong(b"are you there".to_vec())));
    ws.close(CloseCode::NORMAL, "").unwrap();
}

/// A transport that cuts every read and write short and answers
/// `WouldBlock` (as a read timeout does) at odd moments.
struct Choppy {
    inner: TcpStream,
    calls: usize,
}

impl Read for Choppy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        match self.calls % 5 {
            0 => Err(ErrorKind::WouldBlock.into()),
            3 => Err(ErrorKind::Interrupted.into()),
            n => {
                let len = buf.len().min(n * 7);
                self.inner.read(&mut buf[..len])
            }
        }
    }
}

impl Write for Choppy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 4 == 0 {
            return Err(ErrorKind::Interrupted.into());
        }
        self.inner.write(&buf[..buf.len().min(1 + self.calls % 11)])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ReadTimeout for Choppy {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }
}

struct ChoppyConnector(TcpConnector);

impl Connect for ChoppyConnector {
    type Stream = Choppy;

    fn connect(&mut self, url: &Url) -> io::Result<Choppy> {
        Ok(Choppy {
            inner: self.0.connect(url)?,
            calls: 0,
        })
    }
}

#[test]
fn short_reads_short_writes_and_timeouts_change_nothing() {
    let pushloop = pushloop();
    let url = Url::parse(&format!("ws://{}/echo", pushloop.server.addr)).unwrap();
    let config = quick();
    let mut connector = ChoppyConnector(config.tcp_connector());
    let mut ws = WebSocket::connect_via(&url, &config, &mut connector).unwrap();
    for len in [0, 5, 126, 3000, 70_000] {
        let text = "ab".repeat(len / 2);
        ws.send_text(&text).unwrap();
        assert_eq!(ws.recv(), Ok(Message::Text(text)), "{len}");
    }
    ws.ping(b"x").unwrap();
    assert_eq!(ws.recv(), Ok(Message::Pong(b"x".to_vec())));
    assert_eq!(
        ws.close(CloseCode::NORMAL, "").unwrap().code,
        CloseCode::NORMAL
    );
}

// ---- permessage-deflate (RFC 7692) ----------------------------------------------

#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use common::upstream::{pushloop_with, Frame};
    use pushloop::client::ws::DeflateOffer;
    use pushloop::server::Deflate;
    use pushloop::ws::deflate::{
        AgreedParams, ClientConfig, Deflater, Direction, Inflater, NegotiationError, ServerMode,
    };

    /// RFC 7692 §7.2.3.1: "Hello" compressed, one frame with RSV1 set.
    const HELLO_COMPRESSED: [u8; 9] = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    /// A field line accepting permessage-deflate without context either way.
    const NO_CONTEXT: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                              server_no_context_takeover; client_no_context_takeover\r\n";

    /// [`quick`] compressing every message, however short.
    fn compressing_all() -> WsConfig {
        WsConfig {
            deflate: Some(DeflateOffer {
                threshold: 0,
                ..DeflateOffer::default()
            }),
            ..quick()
        }
    }

    /// The payload of a compressed client frame, inflated (RFC 7692 §7.2.2).
    fn inflated(frame: &Frame) -> Vec<u8> {
        let mut inflater = Inflater::new(Direction {
            window_bits: 15,
            context_takeover: false,
        });
        let mut out = Vec::new();
        inflater
            .inflate_message(&frame.payload, 1 << 20, &mut out)
            .expect("a valid compressed message");
        out
    }

    #[test]
    fn the_offer_is_a_browsers_and_rsv1_marks_what_goes_compressed() {
        let long = "pushloop, compressed. ".repeat(100);
        let expected = long.clone();
        let (server, addr) = Server::one(move |mut peer| {
            // RFC 7692 §5, §7.1.2.2: the offer, as browsers make it.
            assert_eq!(
                peer.field("Sec-WebSocket-Extensions"),
                Some("permessage-deflate; client_max_window_bits")
            );
            peer.deflate = true;
            peer.switch(NO_CONTEXT);
            peer.write(&HELLO_COMPRESSED);
            // At least the threshold (1 KiB): compressed, RSV1 on the wire (§6).
            let frame = peer.frame().expect("the long message");
            assert!(frame.rsv1 && frame.fin && frame.mask.is_some(), "{frame:?}");
            assert_eq!(frame.opcode, OpCode::Text);
            assert!(frame.payload.len() < expected.len() / 4);
            assert_eq!(inflated(&frame), expected.as_bytes());
            // Under the threshold: as it is, RSV1 clear (§7.2.1 leaves it to us).
            let frame = peer.frame().expect("the short message");
            assert!(!frame.rsv1);
            assert_eq!(frame.payload, b"hi");
            // §6: control frames are never compressed.
            let frame = peer.frame().expect("the ping");
            assert_eq!((frame.rsv1, frame.opcode), (false, OpCode::Ping));
            assert_eq!(peer.expect_close(), Some(1000));
            peer.send(true, OpCode::Close, &close_payload(1000, ""));
        });
        let mut ws = connect(addr, "/", &quick()).unwrap();
        assert_eq!(
            ws.deflate(),
            Some(AgreedParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            })
        );
        assert_eq!(ws.recv(), Ok(Message::Text("Hello".into())));
        ws.send_text(&long).unwrap();
        ws.send_text("hi").unwrap();
        ws.ping(b"p").unwrap();
        ws.close(CloseCode::NORMAL, "").unwrap();
        server.join();
        let counters = ws.deflate_counters();
        assert_eq!((counters.messages_received, counters.messages_sent), (1, 1));
        assert_eq!(counters.received_bytes_after, 5);
    }

    #[test]
    fn a_compressed_echo_goes_both_ways_with_pushloops_server() {
        let small_windows = ClientConfig {
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(9),
            ..ClientConfig::default()
        };
        let cases = [
            (ServerMode::Shared, ClientConfig::default(), (true, 15, 15)),
            (
                ServerMode::ContextTakeover,
                ClientConfig::default(),
                (false, 15, 15),
            ),
            (ServerMode::ContextTakeover, small_windows, (false, 10, 9)),
        ];
        for (mode, params, (no_context, server_bits, client_bits)) in cases {
            let mut config = common::quick_config();
            config.deflate = Some(Deflate {
                mode,
                ..Deflate::default()
            });
            let pushloop = pushloop_with(SocketAddr::from(([127, 0, 0, 1], 0)), config);
            let client = WsConfig {
                deflate: Some(DeflateOffer {
                    params,
                    threshold: 0,
                }),
                ..quick()
            };
            let mut ws = connect(pushloop.server.addr, "/echo", &client).unwrap();
            let agreed = ws.deflate().expect("accepted");
            assert_eq!(agreed.server_no_context_takeover, no_context, "{mode:?}");
            assert_eq!(
                (agreed.server_max_window_bits, agreed.client_max_window_bits),
                (server_bits, client_bits),
                "{mode:?} {params:?}"
            );
            // Alike messages, so a kept context refers back across them; one
            // past 64 KiB, so a small window is crossed many times.
            let mut sent = 0;
            for len in [0, 1, 100, 1024, 5000, 5000, 70_000] {
                let text: String = (0..len).map(|i| ["ab", "é", "cd"][i % 3]).collect();
                ws.send_text(&text).unwrap();
                assert_eq!(ws.recv(), Ok(Message::Text(text)), "{mode:?} {len}");
                let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                ws.send_binary(&bytes).unwrap();
                assert_eq!(ws.recv(), Ok(Message::Binary(bytes)), "{mode:?} {len}");
                sent += 2;
            }
            let counters = ws.deflate_counters();
            // Threshold 0: ours went compressed, but for those that would
            // not shrink when no context is kept (§7.2.1: they go as they
            // are). The server compressed its echoes of at least 1 KiB (its
            // default threshold).
            match no_context {
                true => assert!(counters.messages_sent >= 8, "{counters:?}"),
                false => assert_eq!(counters.messages_sent, sent, "{mode:?}"),
            }
            assert!(counters.messages_received >= 8, "{mode:?} {counters:?}");
            assert!(counters.received_bytes_before < counters.received_bytes_after);
            ws.close(CloseCode::NORMAL, "").unwrap();
        }
    }

    #[test]
    fn turned_off_nothing_is_offered_and_nothing_compressed() {
        let pushloop = pushloop();
        let off = offering_no_extension(quick());
        let mut ws = connect(pushloop.server.addr, "/echo", &off).unwrap();
        assert_eq!(ws.deflate(), None);
        let long = "x".repeat(10_000);
        ws.send_text(&long).unwrap();
        assert_eq!(ws.recv(), Ok(Message::Text(long)));
        assert_eq!(ws.deflate_counters().messages_sent, 0);
        assert_eq!(ws.deflate_counters().messages_received, 0);
        ws.close(CloseCode::NORMAL, "").unwrap();
    }

    #[test]
    fn a_server_that_declines_gets_uncompressed_frames() {
        let (server, addr) = Server::one(|mut peer| {
            // No Sec-WebSocket-Extensions: declined (RFC 7692 §5). A frame with
            // RSV1 would now fail the script's decoding.
            peer.switch("");
            let frame = peer.frame().expect("the message");
            assert_eq!(frame.payload.len(), 4096);
            assert_eq!(peer.expect_close(), Some(1000));
            peer.send(true, OpCode::Close, &close_payload(1000, ""));
        });
        let mut ws = connect(addr, "/", &compressing_all()).unwrap();
        assert_eq!(ws.deflate(), None);
        ws.send_binary(&[0; 4096]).unwrap();
        ws.close(CloseCode::NORMAL, "").unwrap();
        server.join();
    }

    #[test]
    fn a_compressed_message_that_inflates_past_the_limit_is_answered_with_1009() {
        // 1 MiB of zeros compresses to about 1 KiB: under every limit as it
        // arrives, 16 times the message limit once inflated.
        let mut payload = Vec::new();
        Deflater::new(Direction {
            window_bits: 15,
            context_takeover: false,
        })
        .compress_message(&vec![0; 1 << 20], &mut payload);
        assert!(payload.len() < 4096, "{}", payload.len());
        let mut bomb = Vec::new();
        encode_frame(&mut bomb, true, OpCode::Binary, None, &payload);
        bomb[0] |= 0x40; // RSV1 (RFC 7692 §6)
        let (server, addr) = Server::one(move |mut peer| {
            peer.deflate = true;
            peer.switch(NO_CONTEXT);
            peer.write(&bomb);
            // §7.4.1: 1009, "a message that is too big for it to process".
            assert_eq!(peer.expect_close(), Some(1009));
        });
        let limits = MessageLimits {
            max_frame_bytes: 64 << 10,
            max_message_bytes: 64 << 10,
            max_fragments: 16,
        };
        let config = WsConfig { limits, ..quick() };
        let mut ws = connect(addr, "/", &config).unwrap();
        let error = ws.recv().unwrap_err();
        assert_eq!(error, WsError::Protocol(MessageError::InflatesTooBig));
        assert_eq!(error.close_code(), Some(CloseCode(1009)));
        server.join();
    }

    #[test]
    fn an_answer_with_what_we_did_not_offer_or_cannot_honour_fails_the_handshake() {
        let asking = WsConfig {
            deflate: Some(DeflateOffer {
                params: ClientConfig {
                    server_no_context_takeover: true,
                    server_max_window_bits: Some(10),
                    ..ClientConfig::default()
                },
                ..DeflateOffer::default()
            }),
            ..quick()
        };
        let negotiation = |error| WsError::Negotiation(error);
        let cases = [
            // RFC 6455 §4.1 item 5: an extension we did not offer.
            (
                "x-webkit-deflate-frame",
                quick(),
                WsError::Handshake(AcceptError::ExtensionNotOffered),
            ),
            (
                "permessage-deflate, x-custom",
                quick(),
                WsError::Handshake(AcceptError::ExtensionNotOffered),
            ),
            // RFC 7692 §7.1: a parameter it does not define.
            (
                "permessage-deflate; x-level=9",
                quick(),
                negotiation(NegotiationError::UnknownParameter),
            ),
            // §7.1.2.1: window bits are 8 to 15.
            (
                "permessage-deflate; server_max_window_bits=7",
                quick(),
                negotiation(NegotiationError::InvalidValue),
            ),
            // §7.1.2.2: in a response, client_max_window_bits has a value.
            (
                "permessage-deflate; client_max_window_bits",
                quick(),
                negotiation(NegotiationError::InvalidValue),
            ),
            // §7.1.1.1: no value belongs here.
            (
                "permessage-deflate; server_no_context_takeover=1",
                quick(),
                negotiation(NegotiationError::InvalidValue),
            ),
            // §5: a parameter twice.
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                quick(),
                negotiation(NegotiationError::DuplicateParameter),
            ),
            // RFC 6455 §9.1: accepted once.
            (
                "permessage-deflate, permessage-deflate",
                quick(),
                negotiation(NegotiationError::Repeated),
            ),
            // §7.1.1.1 and §7.1.2.1: what we asked of the server, left out.
            (
                "permessage-deflate; server_max_window_bits=10",
                asking.clone(),
                negotiation(NegotiationError::ServerContextKept),
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
                asking,
                negotiation(NegotiationError::ServerWindowTooLarge),
            ),
        ];
        for (value, config, expected) in cases {
            let answer: &'static str = Box::leak(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {{accept}}\r\n\
                     Sec-WebSocket-Extensions: {value}\r\n\r\n"
                )
                .into_boxed_str(),
            );
            let error = refused(answer, config);
            assert_eq!(error, expected, "{value}");
            assert_eq!(error.close_code(), Some(CloseCode::ABNORMAL));
            // A clear error: what the server did, and that no WebSocket opened.
            let text = error.to_string();
            assert!(text.starts_with("no WebSocket: the server "), "{text}");
        }
    }
}

// ---- Reconnecting: backoff on an injected clock, resuming a feed -------------

/// A clock that runs with real time plus every wait it was asked for, which
/// it records and returns from at once.
#[derive(Clone, Default)]
struct TestClock(Arc<Mutex<(Duration, Vec<Duration>)>>);

impl TestClock {
    fn waits(&self) -> Vec<Duration> {
        self.0.lock().unwrap().1.clone()
    }

    fn advance(&self, by: Duration) {
        self.0.lock().unwrap().0 += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        Instant::now() + self.0.lock().unwrap().0
    }

    fn sleep(&mut self, duration: Duration) {
        let mut state = self.0.lock().unwrap();
        state.0 += duration;
        state.1.push(duration);
    }
}

/// Windows of 20 ms doubling to 100 ms; with the random source fixed at one
/// half, the waits are exactly 10, 20, 40, 50, 50, ... ms.
fn policy(max_attempts: u32) -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: 20 * MS,
        max_delay: 100 * MS,
        max_attempts: Some(max_attempts),
        max_elapsed: None,
        stable_after: Duration::from_secs(10),
    }
}

fn reconnecting_client(
    url: &str,
    config: WsConfig,
    clock: &TestClock,
) -> WsClient<TcpConnector, impl pushloop::client::random::Random, TestClock> {
    let connector = config.tcp_connector();
    WsClient::with_parts(Url::parse(url).unwrap(), config, connector, || 1u64 << 63)
        .unwrap()
        .with_clock(clock.clone())
}

#[test]
fn backoff_waits_follow_the_policy_and_giving_up_ends_the_client() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let clock = TestClock::default();
    let config = WsConfig {
        reconnect: policy(4),
        ..quick()
    };
    let mut client = reconnecting_client(&format!("ws://{addr}/"), config, &clock);
    let items: Vec<_> = client.events().take(10).collect();
    let refused = Disconnect::Connect(ErrorKind::ConnectionRefused);
    let reconnecting = |delay, attempt| {
        Ok(ClientEvent::Reconnecting {
            delay,
            attempt,
            cause: refused,
        })
    };
    assert_eq!(
        items,
        [
            reconnecting(10 * MS, 1),
            reconnecting(20 * MS, 2),
            reconnecting(40 * MS, 3),
            reconnecting(50 * MS, 4),
            Err(WsError::GaveUp {
                attempts: 4,
                last: refused
            }),
        ]
    );
    // The first attempt starts at once; each later one after its delay, less
    // the (real) time the client spent since it decided on it.
    let waits = clock.waits();
    assert_eq!(waits.len(), 5, "{waits:?}");
    for (wait, delay) in waits.iter().zip([0, 10, 20, 40, 50].map(|ms| ms * MS)) {
        assert!(*wait <= delay && *wait + 5 * MS >= delay, "{waits:?}");
    }
    assert!(client.next_event().is_none());
}

#[test]
fn a_stable_connection_starts_the_backoff_over() {
    // Accepts and drops three times (no handshake), then serves one that
    // lives long on the test clock, drops it too, then refuses.
    let (server, addr) = Server::start(|listener| {
        for _ in 0..3 {
            drop(Peer::accept(&listener));
        }
        let mut peer = Peer::accept(&listener);
        peer.switch("");
        peer.send(true, OpCode::Text, b"stable");
        assert_eq!(peer.frame().unwrap().payload, b"ok");
    });
    let clock = TestClock::default();
    let config = WsConfig {
        reconnect: policy(20),
        ..quick()
    };
    let mut client = reconnecting_client(&format!("ws://{addr}/"), config, &clock);
    let mut delays = Vec::new();
    for _ in 0..20 {
        match client.next_event().unwrap().unwrap() {
            ClientEvent::Reconnecting { delay, cause, .. } => {
                delays.push(delay);
                if matches!(cause, Disconnect::Lost(Lost::Eof)) && delays.len() > 3 {
                    break;
                }
            }
            ClientEvent::Connected { .. } => {}
            ClientEvent::Message(Message::Text(text)) => {
                assert_eq!(text, "stable");
                // Ten seconds pass on the client's clock: the connection
                // counts as stable when it ends.
                clock.advance(Duration::from_secs(10));
                client.send_text("ok").unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    server.join();
    // Three failed attempts grow the window; the drop after the stable
    // connection starts it over.
    assert_eq!(delays, [10, 20, 40, 10].map(|ms| ms * MS));
}

#[test]
fn a_feed_resumes_after_the_last_event_id() {
    let pushloop = pushloop();
    let clock = TestClock::default();
    let config = WsConfig {
        resume_feed: true,
        reconnect: policy(5),
        ..quick()
    };
    let url = format!("ws://{}/chat?topics=feed", pushloop.server.addr);
    let mut client = reconnecting_client(&url, config, &clock);
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    let mut causes = Vec::new();
    for _ in 0..20 {
        match client.next_event().unwrap().unwrap() {
            ClientEvent::Connected { .. } if causes.is_empty() => {
                client.send_text("say one").unwrap();
                client.send_text("say two").unwrap();
            }
            ClientEvent::Connected { .. } => {}
            ClientEvent::Message(Message::Text(json)) => {
                ids.push(pushloop::client::ws::feed_event_id(&json).expect("a feed event"));
                texts.push(json);
                assert_eq!(client.last_event_id(), ids.last().copied());
                if texts.len() == 2 {
                    client.send_text("kick").unwrap();
                }
                if texts.len() == 3 {
                    break;
                }
            }
            ClientEvent::Reconnecting { cause, .. } => causes.push(cause),
            other => panic!("{other:?}"),
        }
    }
    assert!(texts[0].contains("\"data\":\"one\""), "{}", texts[0]);
    assert!(texts[1].contains("\"data\":\"two\""), "{}", texts[1]);
    assert!(
        texts[2].contains("\"data\":\"while you were away\""),
        "{}",
        texts[2]
    );
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(causes, [Disconnect::Closed(CloseCode::SERVICE_RESTART)]);
    // The second connection asked for what came after the last id it saw.
    assert_eq!(
        *pushloop.cursors.lock().unwrap(),
        [None, Some(ids[1].to_string())]
    );
    // A Close with 1000 says "done": no reconnect.
    client.send_text("done").unwrap();
    let rest: Vec<_> = client.events().take(5).collect();
    assert_eq!(
        rest,
        [Ok(ClientEvent::Closed(CloseFrame {
            code: CloseCode::NORMAL,
            reason: "that is all".into()
        }))]
    );
}

#[test]
fn the_cursor_of_an_earlier_run_is_sent_from_the_first_connect() {
    let pushloop = pushloop();
    let clock = TestClock::default();
    let config = WsConfig {
        resume_feed: true,
        after: Some(17),
        ..quick()
    };
    let url = format!("ws://{}/chat?after=3", pushloop.server.addr);
    let mut client = reconnecting_client(&url, config, &clock);
    assert!(matches!(
        client.next_event(),
        Some(Ok(ClientEvent::Connected { .. }))
    ));
    // An unknown cursor gets pushloop's `resync` notice, whose id moves ours.
    match client.next_event() {
        Some(Ok(ClientEvent::Message(Message::Text(json)))) => {
            assert!(json.contains("\"event\":\"resync\""), "{json}");
            assert_eq!(
                client.last_event_id(),
                pushloop::client::ws::feed_event_id(&json)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*pushloop.cursors.lock().unwrap(), [Some("17".to_string())]);
    client.close(CloseCode::NORMAL, "").unwrap();
    assert!(client.next_event().is_none());
}

// ---- wss:// through the TLS connector ----------------------------------------

// Shared with the server's TLS tests, of which these use a part.
#[cfg(feature = "tls")]
#[allow(dead_code)]
#[path = "../src/tls/test_support.rs"]
mod tls_support;

/// A TLS server configuration with the test PKI's server certificate.
#[cfg(feature = "tls")]
fn tls_server_config(pki: &tls_support::TestPki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer> = CertificateDer::pem_slice_iter(pki.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the test chain");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("the test key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(feature = "tls")]
fn tls_connector(
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> pushloop::client::tls::TlsConnector {
    let mut roots = pushloop::client::tls::RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA into the trust store");
    pushloop::client::tls::TlsConnector::new(roots)
        .expect("TLS 1.3 and 1.2 with ring")
        .with_tcp(quick().tcp_connector())
}

#[cfg(feature = "tls")]
#[test]
fn wss_echoes_and_closes_through_the_tls_connector() {
    let pki = tls_support::TestPki::new(&["127.0.0.1"]);
    let server_config = tls_server_config(&pki);
    let (alpn_tx, alpn) = std::sync::mpsc::channel();
    let (server, addr) = Server::start(move |listener| {
        let connection = rustls::ServerConnection::new(server_config).expect("a TLS server");
        let mut peer = Peer::read_head(rustls::StreamOwned::new(connection, accept_tcp(&listener)));
        alpn_tx
            .send(peer.stream.conn.alpn_protocol().map(<[u8]>::to_vec))
            .unwrap();
        assert_eq!(peer.field("Host"), Some(&*addr_of(&peer.stream.sock)));
        peer.switch("");
        let frame = peer.frame().expect("a frame");
        peer.send(true, OpCode::Text, &frame.payload);
        assert_eq!(peer.expect_close(), Some(1000));
        peer.send(true, OpCode::Close, &close_payload(1000, ""));
        peer.stream.conn.send_close_notify();
        let _ = peer.stream.flush();
    });
    let url = Url::parse(&format!("wss://{addr}/secure")).unwrap();
    let mut ws = WebSocket::connect_via(&url, &quick(), &mut tls_connector(&pki.ca)).unwrap();
    ws.send_text("over TLS").unwrap();
    assert_eq!(ws.recv(), Ok(Message::Text("over TLS".into())));
    assert_eq!(
        ws.close(CloseCode::NORMAL, "").unwrap().code,
        CloseCode::NORMAL
    );
    server.join();
    assert_eq!(alpn.recv().unwrap(), Some(b"http/1.1".to_vec()));
}

/// The `Host` a client of this local socket sends (the URL's authority).
#[cfg(feature = "tls")]
fn addr_of(stream: &TcpStream) -> String {
    stream.local_addr().expect("local addr").to_string()
}

#[cfg(feature = "tls")]
#[test]
fn an_untrusted_certificate_is_a_connect_error_and_is_not_retried() {
    let pki = tls_support::TestPki::new(&["127.0.0.1"]);
    let stranger = tls_support::TestPki::new(&["127.0.0.1"]);
    let server_config = tls_server_config(&pki);
    let (server, addr) = Server::start(move |listener| {
        let mut tcp = accept_tcp(&listener);
        let mut connection = rustls::ServerConnection::new(server_config).expect("a TLS server");
        let mut failed = false;
        for _ in 0..20 {
            match connection.complete_io(&mut tcp) {
                Ok(_) if !connection.is_handshaking() => break,
                Ok(_) => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        // The client's alert (unknown CA) ended the handshake.
        assert!(failed, "the handshake should have failed");
        // A reconnecting client must not come back.
        listener.set_nonblocking(true).unwrap();
        thread::sleep(300 * MS);
        assert!(listener.accept().is_err(), "the client retried");
    });
    let config = WsConfig {
        reconnect: policy(5),
        ..quick()
    };
    let url = Url::parse(&format!("wss://{addr}/")).unwrap();
    let mut client =
        WsClient::with_parts(url, config, tls_connector(&stranger.ca), || 1u64 << 63).unwrap();
    assert_eq!(
        client.next_event(),
        Some(Err(WsError::Connect(ErrorKind::InvalidData)))
    );
    assert_eq!(client.next_event(), None);
    server.join();
}

// ---- The example ---------------------------------------------------------------

#[test]
fn the_client_ws_example_echoes_stdin_lines_and_closes_at_eof() {
    use std::process::{Command, Stdio};
    // `cargo test --features client` builds the examples next to the tests:
    // target/PROFILE/deps/client_ws-HASH → target/PROFILE/examples/client_ws.
    let exe = std::env::current_exe().expect("the test's own path");
    let example = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/PROFILE/deps")
        .join("examples")
        .join(format!("client_ws{}", std::env::consts::EXE_SUFFIX));
    assert!(example.exists(), "{} not built", example.display());
    let pushloop = pushloop();
    let mut child = Command::new(&example)
        .arg(format!("ws://{}/echo", pushloop.server.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (line_tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let next_line = || lines.recv_timeout(WAIT).expect("a line from the example");
    seen.push(next_line());
    stdin.write_all("hello\nh\u{e9}llo\n".as_bytes()).unwrap();
    seen.push(next_line());
    seen.push(next_line());
    // End of input: the example closes with 1000 and waits for the answer.
    drop(stdin);
    seen.push(next_line());
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the example did not exit");
        thread::sleep(10 * MS);
    }
    assert!(child.wait().unwrap().success(), "{seen:?}");
    assert_eq!(
        seen,
        [
            format!("connected to ws://{}/echo", pushloop.server.addr),
            "< hello".into(),
            "< h\u{e9}llo".into(),
            "closed: 1000 \"\"".into(),
        ]
    );
    assert!(common::eventually(WAIT, || !pushloop
        .closes
        .lock()
        .unwrap()
        .is_empty()));
    assert_eq!(pushloop.closes.lock().unwrap()[0], (1000, String::new()));
}
