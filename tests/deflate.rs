//! permessage-deflate over real sockets (RFC 7692): negotiation in the 101,
//! compressed echo both ways, the inflated-size limit, compress-once fan-out
//! of publishes and broadcasts, and the per-connection context mode.
#![cfg(feature = "deflate")]

mod common;

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Deflate, Server, SharePort};
use pushloop::ws::deflate::{ClientConfig, ServerMode, DEFAULT_THRESHOLD};
use pushloop::ws::frame::OpCode;
use pushloop::ws::handshake::Upgrade;

/// `/echo` echoes; `/feed` follows the topic `feed`; a text `all:X`
/// broadcasts X, `loop?` is answered with the loop's index; `POST /publish`
/// publishes its body on `feed`; `/stats` (this loop), `/total` (every loop).
struct DeflateApp {
    feed: TopicId,
}

impl App for DeflateApp {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        match req.path() {
            "/publish" => {
                let text = std::str::from_utf8(body).unwrap_or_default();
                let id = ctx.publish(self.feed, None, text).expect("published");
                Reply::Response(Response::text(200, &id.to_string()))
            }
            "/stats" => Reply::Response(Response::json(200, ctx.stats().to_json())),
            "/total" => Reply::Response(Response::json(200, ctx.total_stats().to_json())),
            _ => Reply::Response(Response::text(404, "no")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/echo" => Upgrading::Accept(Accept::new()),
            "/feed" => Upgrading::Accept(Accept::new().subscribe(self.feed, None)),
            _ => Upgrading::Reject(Response::text(404, "no")),
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        match message {
            Message::Text(text) if text.starts_with("all:") => {
                ctx.broadcast(Message::Text(&text[4..]));
            }
            Message::Text("loop?") => {
                let _ = ctx.send(id, Message::Text(&format!("loop {}", ctx.loop_index())));
            }
            other => {
                let _ = ctx.send(id, other);
            }
        }
    }
}

fn start(config: Config) -> TestServer {
    serve(config, |server| DeflateApp {
        feed: server.topic("feed").expect("topic"),
    })
}

/// What browsers offer: `permessage-deflate; client_max_window_bits`.
const BROWSER: ClientConfig = ClientConfig {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: None,
    client_max_window_bits: None,
};

/// JSON-like text that compresses well.
fn json(len: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < len {
        text.push_str(&format!(
            "{{\"id\":{n},\"topic\":\"news\",\"data\":\"hello\"}},"
        ));
        n += 1;
    }
    text.truncate(len);
    text
}

/// Text without characters JSON escapes, that compresses well: an event's
/// data shows as it is inside the event's JSON object.
fn words(len: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < len {
        text.push_str(&format!("reading {n} from sensor news at hello; "));
        n += 1;
    }
    text.truncate(len);
    text
}

/// A counter of the `deflate` object of `/stats`.
fn deflate_stat(addr: std::net::SocketAddr, name: &str) -> u64 {
    deflate_stat_at(addr, "/stats", name)
}

/// A counter of the `deflate` object of the counters at `path`.
fn deflate_stat_at(addr: std::net::SocketAddr, path: &str, name: &str) -> u64 {
    let json = get(addr, path).text();
    let deflate = &json[json.find("\"deflate\":").expect("deflate counters")..];
    let at = deflate.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
    deflate[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn a_browser_offer_is_accepted_in_the_shared_mode() {
    let server = start(Config::default());
    let client = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn no_offer_and_compression_off_name_no_extension() {
    let server = start(Config::default());
    let plain = WsClient::connect(server.addr, "/echo");
    assert_eq!(plain.response.header("sec-websocket-extensions"), None);
    let off = start(Config {
        deflate: None,
        ..Config::default()
    });
    let mut client = WsClient::connect_deflate(off.addr, "/echo", BROWSER);
    assert_eq!(client.response.header("sec-websocket-extensions"), None);
    let big = json(4096);
    client.send_text(&big);
    assert_eq!(client.recv_data(), Received::Text(big));
    assert_eq!(client.inflated, None, "nothing compressed");
}

#[test]
fn messages_echo_compressed_both_ways_from_the_threshold_on() {
    let server = start(Config::default());
    let mut client = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    let big = json(8000);
    client.send_compressed(OpCode::Text, big.as_bytes());
    assert_eq!(client.recv_data(), Received::Text(big.clone()));
    let (received, inflated) = client.inflated.expect("the echo came compressed");
    assert_eq!(inflated, 8000);
    assert!(received < 2000, "{received} bytes on the wire");
    // Under the threshold it goes as it is, whichever way it came.
    let small = json(DEFAULT_THRESHOLD - 1);
    client.send_compressed(OpCode::Text, small.as_bytes());
    assert_eq!(client.recv_data(), Received::Text(small));
    assert_eq!(client.inflated, None);
    // An uncompressed message on a negotiated connection is fine too.
    client.send_binary(&[9; 3000]);
    assert_eq!(client.recv_data(), Received::Binary(vec![9; 3000]));
    assert!(client.inflated.is_some());
    assert_eq!(deflate_stat(server.addr, "messages_received"), 2);
    assert_eq!(deflate_stat(server.addr, "messages_sent"), 2);
    assert_eq!(
        deflate_stat(server.addr, "received_bytes_after"),
        8000 + 1023
    );
}

#[test]
fn a_kib_frame_that_would_inflate_to_a_mib_closes_with_1009() {
    let mut config = quick_config();
    config.limits.max_message_bytes = 64 * 1024;
    config.limits.max_frame_bytes = 64 * 1024;
    let server = start(config);
    let mut bomb = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    let mut bystander = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    // 1 MiB of zeros compresses to ~1 KiB; inflating stops one byte past
    // the 64 KiB limit.
    bomb.send_compressed(OpCode::Binary, &vec![0; 1 << 20]);
    assert_eq!(bomb.expect_close(), Some(1009));
    bystander.send_text("still here");
    assert_eq!(bystander.recv_data(), Received::Text("still here".into()));
}

#[test]
fn rsv1_without_negotiation_closes_with_1002() {
    let server = start(quick_config());
    let mut client = WsClient::connect(server.addr, "/echo");
    let mut frame = Vec::new();
    pushloop::ws::frame::encode_frame(
        &mut frame,
        true,
        OpCode::Text,
        Some([1, 2, 3, 4]),
        b"\xf2\x48\xcd\xc9\xc9\x07\x00",
    );
    frame[0] |= pushloop::ws::frame::RSV1;
    client.send_raw(&frame);
    assert_eq!(client.expect_close(), Some(1002));
}

#[test]
fn rsv1_on_a_ping_closes_with_1002_even_when_negotiated() {
    let server = start(quick_config());
    let mut client = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    let mut frame = Vec::new();
    pushloop::ws::frame::encode_frame(&mut frame, true, OpCode::Ping, Some([1, 2, 3, 4]), b"");
    frame[0] |= pushloop::ws::frame::RSV1;
    client.send_raw(&frame);
    assert_eq!(client.expect_close(), Some(1002));
}

#[test]
fn a_publish_is_compressed_once_for_every_compressed_follower() {
    let server = start(Config::default());
    let mut followers: Vec<WsClient> = (0..20)
        .map(|_| WsClient::connect_deflate(server.addr, "/feed", BROWSER))
        .collect();
    let mut plain = WsClient::connect(server.addr, "/feed");
    // Every follower is subscribed once its echo comes back.
    for client in followers.iter_mut().chain([&mut plain]) {
        client.send_text("ready");
        assert_eq!(client.recv_data(), Received::Text("ready".into()));
    }
    let event = words(4096);
    assert_eq!(post(server.addr, "/publish", &event).status, 200);
    for client in &mut followers {
        let Received::Text(text) = client.recv_data() else {
            panic!("no event");
        };
        assert!(text.contains(&event[..100]));
        let (received, inflated) = client.inflated.expect("compressed");
        assert!(received * 4 < inflated, "{received} → {inflated}");
    }
    let Received::Text(text) = plain.recv_data() else {
        panic!("no event");
    };
    assert!(text.contains(&event[..100]));
    assert_eq!(
        plain.inflated, None,
        "the uncompressed follower gets the plain frame"
    );
    assert_eq!(deflate_stat(server.addr, "compressions"), 1);
    assert_eq!(deflate_stat(server.addr, "messages_sent"), 20);
}

#[test]
fn a_broadcast_is_compressed_once_too() {
    let server = start(Config::default());
    let mut clients: Vec<WsClient> = (0..5)
        .map(|_| WsClient::connect_deflate(server.addr, "/echo", BROWSER))
        .collect();
    let message = json(3000);
    clients[0].send_text(&format!("all:{message}"));
    for client in &mut clients {
        assert_eq!(client.recv_data(), Received::Text(message.clone()));
        assert!(client.inflated.is_some());
    }
    assert_eq!(deflate_stat(server.addr, "compressions"), 1);
    assert_eq!(deflate_stat(server.addr, "messages_sent"), 5);
}

#[test]
fn a_follower_that_asked_for_a_small_window_gets_it_compressed_alone() {
    let server = start(Config::default());
    let small_window = ClientConfig {
        server_max_window_bits: Some(10),
        ..BROWSER
    };
    let mut small = WsClient::connect_deflate(server.addr, "/feed", small_window);
    assert_eq!(
        small.response.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
    );
    let mut full = WsClient::connect_deflate(server.addr, "/feed", BROWSER);
    for client in [&mut small, &mut full] {
        client.send_text("ready");
        assert_eq!(client.recv_data(), Received::Text("ready".into()));
    }
    let event = words(5000);
    post(server.addr, "/publish", &event);
    for client in [&mut small, &mut full] {
        let Received::Text(text) = client.recv_data() else {
            panic!("no event");
        };
        assert!(text.contains(&event[..100]));
        assert!(client.inflated.is_some());
    }
    // One compression for the shared frame, one for the small window.
    assert_eq!(deflate_stat(server.addr, "compressions"), 2);
}

#[test]
fn context_takeover_mode_keeps_a_window_per_socket() {
    let server = start(Config {
        deflate: Some(Deflate {
            mode: ServerMode::ContextTakeover,
            ..Deflate::default()
        }),
        ..Config::default()
    });
    let mut client = WsClient::connect_deflate(server.addr, "/echo", BROWSER);
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let message = json(3000);
    let mut on_the_wire = Vec::new();
    for _ in 0..3 {
        client.send_compressed(OpCode::Text, message.as_bytes());
        assert_eq!(client.recv_data(), Received::Text(message.clone()));
        on_the_wire.push(client.inflated.expect("compressed").0);
    }
    // The later echoes refer back to the first.
    assert!(on_the_wire[1] * 2 < on_the_wire[0], "{on_the_wire:?}");
    assert!(on_the_wire[2] * 2 < on_the_wire[0], "{on_the_wire:?}");
}

#[test]
fn a_publish_reaches_context_takeover_followers_in_order() {
    let server = start(Config {
        deflate: Some(Deflate {
            mode: ServerMode::ContextTakeover,
            ..Deflate::default()
        }),
        ..Config::default()
    });
    let mut followers: Vec<WsClient> = (0..3)
        .map(|_| WsClient::connect_deflate(server.addr, "/feed", BROWSER))
        .collect();
    for client in &mut followers {
        client.send_text(&json(2000));
        assert!(matches!(client.recv_data(), Received::Text(_)));
    }
    for round in 0..3 {
        let event = format!("{round}{}", words(2000));
        post(server.addr, "/publish", &event);
        for client in &mut followers {
            let Received::Text(text) = client.recv_data() else {
                panic!("no event");
            };
            assert!(text.contains(&event[..100]), "round {round}");
        }
    }
    // Each socket compressed each message itself: 3 echoes + 9 events.
    assert_eq!(deflate_stat(server.addr, "compressions"), 12);
}

/// With several loops (`Server::run_threads`) every loop negotiates and
/// compresses: followers spread over both loops each get a publish
/// compressed, and the loops' compression counters add up.
#[test]
fn compressed_followers_on_every_loop_get_a_publish() {
    let config = Config {
        share_port: SharePort::OneAcceptor,
        ..Config::default()
    };
    let (tell, told) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config)?;
        let feed = server.topic("feed").expect("topic");
        tell.send((server.local_addr()?, server.handle()))
            .expect("test waits");
        server.run_threads(2, || DeflateApp { feed })
    });
    let (addr, handle) = told.recv().expect("started");
    let mut followers: Vec<WsClient> = (0..6)
        .map(|_| WsClient::connect_deflate(addr, "/feed", BROWSER))
        .collect();
    let mut loops = std::collections::BTreeSet::new();
    for client in &mut followers {
        client.send_text("loop?");
        let Received::Text(answer) = client.recv_data() else {
            panic!("no answer");
        };
        loops.insert(answer);
    }
    assert_eq!(loops.len(), 2, "the followers are on both loops: {loops:?}");
    let event = words(4096);
    assert_eq!(post(addr, "/publish", &event).status, 200);
    for client in &mut followers {
        let Received::Text(text) = client.recv_data() else {
            panic!("no event");
        };
        assert!(text.contains(&event[..100]));
        let (received, inflated) = client.inflated.expect("compressed");
        assert!(received * 4 < inflated, "{received} → {inflated}");
    }
    let counted = eventually(std::time::Duration::from_secs(5), || {
        deflate_stat_at(addr, "/total", "messages_sent") == 6
    });
    assert!(counted, "every loop's compressed sends add up to 6");
    handle.shutdown();
    thread.join().expect("no panic").expect("every loop ends");
}
