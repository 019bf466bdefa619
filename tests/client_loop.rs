//! Outbound WebSockets from inside the loop (`Context::connect`): an app
//! whose loop opens a WebSocket to an upstream and hears of it through the
//! same callbacks as of the sockets clients open to it. Upstreams: pushloop's
//! own server, and small hostile servers (one `std::net` thread each, see
//! `common::upstream`) that break one rule each — the handshake's checks
//! (RFC 6455 §4.1), frames that get 1002 / 1007 / 1009 (§7.1.7), a silent
//! upstream — then reconnects and resuming a feed across a restart, and
//! several loops.
//!
//! Nothing waits without a bound: every wait for the app's news is at most
//! [`NEWS`], servers accept within `WAIT` or panic, and the deadlines the
//! tests cross are short.
#![cfg(feature = "client")]

mod common;

use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use pushloop::app::{App, ConnId, Context, Message};
use pushloop::client::backoff::ReconnectPolicy;
use pushloop::client::ws::{Disconnect, Lost, SetupError, WsConfig, WsError};
use pushloop::http::response_head::ResponseError;
use pushloop::server::{Config, Server};
use pushloop::ws::close::CloseCode;
use pushloop::ws::frame::{encode_frame, FrameError, MessageError, MessageLimits, OpCode};
use pushloop::ws::handshake_client::AcceptError;

use common::upstream::{
    close_payload, pushloop, pushloop_on, switching_head, Peer, Server as Hostile, MS, WAIT,
};
use common::TestServer;

/// The longest wait for the app under test to report something.
const NEWS: Duration = Duration::from_secs(10);

// ---- The app under test ------------------------------------------------------

/// What the app under test heard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// `Context::connect` answered.
    Linked(Result<ConnId, SetupError>),
    /// `App::open`, with the subprotocol the upstream chose.
    Open(ConnId, Option<String>),
    Text(ConnId, String),
    Binary(ConnId, Vec<u8>),
    Close(ConnId, u16, String),
    Failed(ConnId, WsError, Option<Duration>),
    /// What a test's hook reported.
    Note(String),
}

/// A hook run on each piece of news, before it is reported: a test acts
/// through the `Context` there, and may report a note of its own after it.
type Hook = Box<dyn FnMut(&mut Context, &Seen) -> Option<String> + Send>;

/// Opens one outbound WebSocket when its loop starts, and reports
/// everything the loop tells it.
struct Probe {
    url: String,
    config: WsConfig,
    seen: Sender<Seen>,
    hook: Option<Hook>,
}

impl Probe {
    fn report(&mut self, ctx: &mut Context, seen: Seen) {
        let note = self.hook.as_mut().and_then(|hook| hook(ctx, &seen));
        let _ = self.seen.send(seen);
        if let Some(note) = note {
            let _ = self.seen.send(Seen::Note(note));
        }
    }
}

impl App for Probe {
    fn start(&mut self, ctx: &mut Context) {
        let linked = ctx.connect(&self.url, self.config.clone());
        self.report(ctx, Seen::Linked(linked));
    }

    fn open(&mut self, ctx: &mut Context, id: ConnId) {
        let protocol = ctx.protocol(id).map(str::to_owned);
        self.report(ctx, Seen::Open(id, protocol));
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let seen = match message {
            Message::Text(text) => Seen::Text(id, text.to_owned()),
            Message::Binary(bytes) => Seen::Binary(id, bytes.to_vec()),
        };
        self.report(ctx, seen);
    }

    fn close(&mut self, ctx: &mut Context, id: ConnId, code: CloseCode, reason: &str) {
        self.report(ctx, Seen::Close(id, code.0, reason.to_owned()));
    }

    fn connect_failed(
        &mut self,
        ctx: &mut Context,
        id: ConnId,
        error: &WsError,
        retry: Option<Duration>,
    ) {
        self.report(ctx, Seen::Failed(id, *error, retry));
    }
}

/// A pushloop server running a [`Probe`], and what it hears.
struct Local {
    server: TestServer,
    seen: Receiver<Seen>,
    link: ConnId,
}

impl Local {
    /// Starts a probe linked to `url`; its link must be made.
    fn start(url: &str, config: WsConfig) -> Local {
        Local::with_hook(url, config, None)
    }

    fn with_hook(url: &str, config: WsConfig, hook: Option<Hook>) -> Local {
        let (tx, seen) = channel();
        let url = url.to_owned();
        let server = common::serve(Config::default(), move |_| Probe {
            url,
            config,
            seen: tx,
            hook,
        });
        let link = match seen.recv_timeout(NEWS) {
            Ok(Seen::Linked(Ok(link))) => link,
            other => panic!("no link: {other:?}"),
        };
        Local { server, seen, link }
    }

    /// The next piece of news, within [`NEWS`].
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(NEWS)
            .unwrap_or_else(|_| panic!("the app heard nothing within {NEWS:?}"))
    }

    /// The news up to the loop's end: stops the server.
    fn rest(self) -> Vec<Seen> {
        let Local { server, seen, .. } = self;
        server.stop().expect("the loop ends cleanly");
        seen.try_iter().collect()
    }
}

/// Options for the tests: short deadlines, quick retries.
fn quick() -> WsConfig {
    WsConfig {
        connect_timeout: WAIT,
        close_timeout: 500 * MS,
        reconnect: ReconnectPolicy {
            initial_delay: 10 * MS,
            max_delay: 50 * MS,
            ..ReconnectPolicy::default()
        },
        ..WsConfig::default()
    }
}

/// [`quick`], with one attempt and no reconnect.
fn once() -> WsConfig {
    WsConfig {
        reconnect: ReconnectPolicy {
            max_attempts: Some(0),
            ..ReconnectPolicy::default()
        },
        ..quick()
    }
}

// ---- Open, echo, close --------------------------------------------------------

#[test]
fn an_outbound_websocket_opens_echoes_and_closes_through_the_app_callbacks() {
    let upstream = pushloop();
    let config = WsConfig {
        protocols: vec!["echo.v1".into()],
        ..once()
    };
    let local = Local::start(&format!("ws://{}/echo", upstream.server.addr), config);
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, Some("echo.v1".into())));
    // The upstream answers our frames: they were masked (§5.3), or it would
    // have failed the connection with 1002.
    let handle = &local.server.handle;
    handle.send_text(link, "hello").unwrap();
    assert_eq!(local.next(), Seen::Text(link, "hello".into()));
    handle.send_binary(link, vec![0, 1, 2, 255]).unwrap();
    assert_eq!(local.next(), Seen::Binary(link, vec![0, 1, 2, 255]));
    let big = "x".repeat(70_000);
    handle.send_text(link, big.clone()).unwrap();
    assert_eq!(local.next(), Seen::Text(link, big));
    // The closing handshake, started by the app (§7.1.2).
    handle.close(link, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(local.next(), Seen::Close(link, 1000, String::new()));
    assert!(common::eventually(NEWS, || upstream
        .closes
        .lock()
        .unwrap()
        .contains(&(1000, "bye".into()))));
    // Closed by the app: not reopened, no more news.
    assert_eq!(local.rest(), []);
}

#[test]
fn a_name_is_looked_up_without_blocking_the_loop() {
    let upstream = pushloop();
    let url = format!("ws://localhost:{}/echo", upstream.server.addr.port());
    let local = Local::start(&url, once());
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    local.server.handle.send_text(link, "by name").unwrap();
    assert_eq!(local.next(), Seen::Text(link, "by name".into()));
}

#[test]
fn what_connect_refuses_is_refused_before_anything_is_sent() {
    let (tx, seen) = channel();
    let server = common::serve(Config::default(), move |_| Refusals { seen: tx });
    let answers: Vec<String> = seen.iter().take(6).collect();
    assert_eq!(
        answers,
        [
            "Err(TlsNotInLoop)",
            "Err(NotWebSocket)",
            "Err(Url(NotAbsolute))",
            "Err(Request(BadProtocol))",
            "closed while connecting: true, again: false",
            "closed while looking up: true",
        ]
    );
    server.stop().unwrap();
    assert_eq!(seen.try_iter().collect::<Vec<_>>(), Vec::<String>::new());
}

/// Tries `Context::connect` with what it must refuse, and closes links
/// before they open: reports each answer, and anything else it hears.
struct Refusals {
    seen: Sender<String>,
}

impl App for Refusals {
    fn start(&mut self, ctx: &mut Context) {
        let bad_protocol = WsConfig {
            protocols: vec!["a b".into()],
            ..once()
        };
        for (url, config) in [
            ("wss://127.0.0.1:9/", once()),
            ("http://127.0.0.1:9/", once()),
            ("127.0.0.1:9", once()),
            ("ws://127.0.0.1:9/", bad_protocol),
        ] {
            let answer = ctx.connect(url, config).map(|_| ());
            let _ = self.seen.send(format!("{answer:?}"));
        }
        // Links closed before they open end without a callback.
        let link = ctx.connect("ws://127.0.0.1:9/", once()).expect("a link");
        let first = ctx.close(link, CloseCode::NORMAL, "");
        let again = ctx.close(link, CloseCode::NORMAL, "");
        let _ = self
            .seen
            .send(format!("closed while connecting: {first}, again: {again}"));
        let link = ctx.connect("ws://localhost:9/", once()).expect("a link");
        let closed = ctx.close(link, CloseCode::NORMAL, "");
        let _ = self.seen.send(format!("closed while looking up: {closed}"));
    }

    fn open(&mut self, _: &mut Context, id: ConnId) {
        let _ = self.seen.send(format!("open {id}"));
    }

    fn connect_failed(
        &mut self,
        _: &mut Context,
        id: ConnId,
        error: &WsError,
        _: Option<Duration>,
    ) {
        let _ = self.seen.send(format!("failed {id}: {error}"));
    }
}

#[test]
fn frames_that_come_with_the_101_fragmented_or_between_pings_arrive_whole() {
    let (server, addr) = Hostile::one(|mut peer| {
        // The 101 and the first frames in one write.
        let mut burst = switching_head(&peer.accept_value(), "");
        encode_frame(&mut burst, true, OpCode::Text, None, b"first");
        encode_frame(&mut burst, false, OpCode::Text, None, b"frag");
        encode_frame(&mut burst, true, OpCode::Ping, None, b"are you there");
        encode_frame(&mut burst, true, OpCode::Continuation, None, b"mented");
        peer.write(&burst);
        // §5.5.2: the ping is answered with its payload, masked (§5.3).
        let pong = peer.frame().expect("a pong");
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (OpCode::Pong, &b"are you there"[..])
        );
        assert!(pong.mask.is_some(), "a client's frame is masked");
        let echo = peer.frame().expect("the app's echo");
        assert_eq!(
            (echo.opcode, echo.payload.as_slice()),
            (OpCode::Text, &b"fragmented"[..])
        );
        assert!(echo.mask.is_some());
        // The server closes: the client echoes the code and waits for our FIN.
        peer.send(true, OpCode::Close, &close_payload(1000, "done"));
        assert_eq!(peer.expect_close(), Some(1000));
    });
    let echo: Hook = Box::new(|ctx, seen| {
        if let Seen::Text(id, text) = seen {
            if text == "fragmented" {
                let _ = ctx.send(*id, Message::Text(text));
            }
        }
        None
    });
    let local = Local::with_hook(&format!("ws://{addr}/"), once(), Some(echo));
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    assert_eq!(local.next(), Seen::Text(link, "first".into()));
    assert_eq!(local.next(), Seen::Text(link, "fragmented".into()));
    assert_eq!(local.next(), Seen::Close(link, 1000, "done".into()));
    server.join();
    // 1000 says done: not reopened.
    assert_eq!(local.rest(), []);
}

// ---- The opening handshake's checks (§4.1) ------------------------------------

/// A link to a server that answers the request with `answer` (given the
/// correct accept value) and then expects TCP to close without a word;
/// returns the one failure the app heard, after which the link is over.
fn refused_by(answer: impl FnOnce(&str) -> String + Send + 'static, config: WsConfig) -> WsError {
    let (server, addr) = Hostile::one(move |mut peer| {
        let reply = answer(&peer.accept_value());
        peer.write(reply.as_bytes());
        // §4.1: the WebSocket never opened, so no Close frame: TCP just ends.
        assert!(peer.frame().is_none(), "nothing but the end of TCP");
    });
    let local = Local::start(&format!("ws://{addr}/"), config);
    let error = match local.next() {
        Seen::Failed(id, error, None) if id == local.link => error,
        other => panic!("{other:?}"),
    };
    server.join();
    assert_eq!(local.rest(), [], "one report, then the link is over");
    error
}

/// A `101` with `accept` and the extra field lines `extra`.
fn switching(accept: &str, extra: &str) -> String {
    String::from_utf8(switching_head(accept, extra)).expect("ASCII")
}

#[test]
fn a_wrong_accept_key_fails_the_attempt() {
    let error = refused_by(|_| switching("dGhlIHNhbXBsZSBub25jZQ==", ""), quick());
    assert_eq!(error, WsError::Handshake(AcceptError::BadAccept));
}

#[test]
fn a_subprotocol_or_extension_we_did_not_offer_fails_the_attempt() {
    let chat = |accept: &str| switching(accept, "Sec-WebSocket-Protocol: chat\r\n");
    let not_offered = WsError::Handshake(AcceptError::ProtocolNotOffered);
    assert_eq!(refused_by(chat, quick()), not_offered);
    let offered_other = WsConfig {
        protocols: vec!["echo.v1".into()],
        ..quick()
    };
    assert_eq!(refused_by(chat, offered_other), not_offered);
    let unknown = |accept: &str| {
        switching(
            accept,
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
        )
    };
    assert_eq!(
        refused_by(unknown, quick()),
        WsError::Handshake(AcceptError::ExtensionNotOffered)
    );
    let deflate =
        |accept: &str| switching(accept, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let offering_nothing = WsConfig {
        #[cfg(feature = "deflate")]
        deflate: None,
        ..quick()
    };
    assert_eq!(
        refused_by(deflate, offering_nothing),
        WsError::Handshake(AcceptError::ExtensionNotOffered)
    );
}

#[test]
fn garbage_or_a_refusal_instead_of_101_fails_the_attempt() {
    let error = refused_by(|_| "SSH-2.0-OpenSSH_9.6\r\n\r\n".into(), quick());
    assert!(
        matches!(error, WsError::Handshake(AcceptError::Response(_))),
        "{error:?}"
    );
    let not_found = |_: &str| "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into();
    assert_eq!(
        refused_by(not_found, quick()),
        WsError::Handshake(AcceptError::Status(404))
    );
    // A head that never ends is cut at `max_head_bytes`.
    let small = WsConfig {
        max_head_bytes: 512,
        ..quick()
    };
    let endless = |_: &str| format!("HTTP/1.1 101 Switching\r\nX: {}\r\n", "y".repeat(4096));
    assert_eq!(
        refused_by(endless, small),
        WsError::Handshake(AcceptError::Response(ResponseError::HeadTooLarge))
    );
    // More fields than `max_headers` (64 by default).
    let crowded = |accept: &str| switching(accept, &"X-Field: 1\r\n".repeat(64));
    assert_eq!(
        refused_by(crowded, quick()),
        WsError::Handshake(AcceptError::Response(ResponseError::TooManyHeaders))
    );
}

#[test]
fn a_5xx_answer_is_retried_until_the_policy_gives_up() {
    let (server, addr) = Hostile::start(|listener| {
        for _ in 0..2 {
            let mut peer = Peer::accept(&listener);
            peer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            assert!(peer.frame().is_none());
        }
    });
    let config = WsConfig {
        reconnect: ReconnectPolicy {
            max_attempts: Some(1),
            ..quick().reconnect
        },
        ..quick()
    };
    let local = Local::start(&format!("ws://{addr}/"), config);
    let link = local.link;
    match local.next() {
        Seen::Failed(id, WsError::Handshake(AcceptError::Status(503)), Some(delay)) => {
            assert_eq!(id, link);
            assert!(
                delay <= 10 * MS,
                "the first window is initial_delay: {delay:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        local.next(),
        Seen::Failed(
            link,
            WsError::GaveUp {
                attempts: 1,
                last: Disconnect::Status(503)
            },
            None
        )
    );
    server.join();
    assert_eq!(local.rest(), []);
}

#[test]
fn a_refused_connect_is_retried_and_a_link_closed_while_waiting_ends_quietly() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // The first failure is reported with its delay; the app then closes
    // the link, which ends without another word.
    let close_it: Hook = Box::new(|ctx, seen| match seen {
        Seen::Failed(id, _, Some(_)) => {
            let first = ctx.close(*id, CloseCode::NORMAL, "");
            let again = ctx.close(*id, CloseCode::NORMAL, "");
            Some(format!("closed: {first}, again: {again}"))
        }
        _ => None,
    });
    let local = Local::with_hook(&format!("ws://{addr}/"), quick(), Some(close_it));
    let link = local.link;
    match local.next() {
        Seen::Failed(id, WsError::Connect(kind), Some(_)) => {
            assert_eq!((id, kind), (link, std::io::ErrorKind::ConnectionRefused));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        local.next(),
        Seen::Note("closed: true, again: false".into())
    );
    assert_eq!(local.rest(), []);
}

#[test]
fn a_name_that_does_not_resolve_fails_the_attempt() {
    // RFC 6761 §6.4: `.invalid` names never resolve. (A resolver that cannot
    // be reached fails too, or lets the attempt time out: also `Connect`.)
    let config = WsConfig {
        connect_timeout: 2 * WAIT,
        ..once()
    };
    let local = Local::start("ws://no-such-host.invalid/", config);
    match local.next() {
        Seen::Failed(
            id,
            WsError::GaveUp {
                attempts: 0,
                last: Disconnect::Connect(_),
            },
            None,
        ) => assert_eq!(id, local.link),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_upstream_that_never_answers_times_out_and_one_that_hangs_up_is_lost() {
    let (server, addr) = Hostile::one(|mut peer| {
        // Reads the request, says nothing; the client gives up and closes.
        assert!(peer.eof_within(WAIT), "the client closes at its deadline");
    });
    let silent = WsConfig {
        connect_timeout: 300 * MS,
        ..once()
    };
    let local = Local::start(&format!("ws://{addr}/"), silent);
    assert_eq!(
        local.next(),
        Seen::Failed(
            local.link,
            WsError::GaveUp {
                attempts: 0,
                last: Disconnect::Lost(Lost::HandshakeTimeout)
            },
            None
        )
    );
    server.join();
    drop(local);
    let (server, addr) = Hostile::one(drop);
    let local = Local::start(&format!("ws://{addr}/"), once());
    assert_eq!(
        local.next(),
        Seen::Failed(
            local.link,
            WsError::GaveUp {
                attempts: 0,
                last: Disconnect::Lost(Lost::Eof)
            },
            None
        )
    );
    server.join();
}

// ---- Deadlines of an open link ------------------------------------------------

#[test]
fn after_the_closing_handshake_the_link_waits_for_the_servers_fin_until_close_timeout() {
    let (server, addr) = Hostile::one(|mut peer| {
        peer.switch("");
        peer.send(true, OpCode::Close, &close_payload(1000, ""));
        assert_eq!(peer.expect_close(), Some(1000));
        // §7.1.1: the client leaves closing TCP to the server...
        assert!(!peer.eof_within(100 * MS), "the client closed TCP first");
        // ...until `close_timeout` (500 ms) says the server is not doing it.
        assert!(peer.eof_within(WAIT), "the client waited for ever");
    });
    let local = Local::start(&format!("ws://{addr}/"), quick());
    assert!(matches!(local.next(), Seen::Open(..)));
    assert!(matches!(local.next(), Seen::Close(_, 1000, _)));
    server.join();
    assert_eq!(local.rest(), []);
}

#[test]
fn a_silent_upstream_is_pinged_then_given_up_on_and_the_link_comes_back() {
    let (server, addr) = Hostile::start(|listener| {
        let mut peer = Peer::accept(&listener);
        peer.switch("");
        // The heartbeat: a masked ping after `ping_interval` of silence...
        let ping = peer.frame().expect("a ping");
        assert_eq!((ping.opcode, ping.mask.is_some()), (OpCode::Ping, true));
        // ...unanswered: after `pong_timeout` the client drops TCP (1006).
        assert!(peer.eof_within(WAIT));
        // And comes back.
        let mut again = Peer::accept(&listener);
        again.switch("");
        again.send(true, OpCode::Close, &close_payload(1000, "bye"));
        assert_eq!(again.expect_close(), Some(1000));
    });
    let heartbeat = WsConfig {
        ping_interval: Some(100 * MS),
        pong_timeout: 200 * MS,
        ..quick()
    };
    let local = Local::start(&format!("ws://{addr}/"), heartbeat);
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    assert_eq!(local.next(), Seen::Close(link, 1006, String::new()));
    assert_eq!(local.next(), Seen::Open(link, None));
    assert_eq!(local.next(), Seen::Close(link, 1000, "bye".into()));
    server.join();
    assert_eq!(local.rest(), []);
}

// ---- permessage-deflate (RFC 7692) ---------------------------------------------

/// RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" compressed, then "Hello" again
/// referring back to the first (context takeover), each a frame with RSV1.
#[cfg(feature = "deflate")]
const TWO_HELLOS: [u8; 16] = [
    0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, //
    0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00,
];

#[cfg(feature = "deflate")]
#[test]
fn a_link_offers_permessage_deflate_and_compresses_both_ways() {
    use pushloop::ws::deflate::{Direction, Inflater};
    let long = "a link, compressed. ".repeat(100);
    let expected = long.clone();
    let (server, addr) = Hostile::one(move |mut peer| {
        assert_eq!(
            peer.field("Sec-WebSocket-Extensions"),
            Some("permessage-deflate; client_max_window_bits")
        );
        // Accepted with context takeover both ways (RFC 7692 §7.1.1).
        peer.deflate = true;
        peer.switch("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        peer.write(&TWO_HELLOS);
        // The app answers each Hello with the long text: compressed (at
        // least the loop's 1 KiB threshold), RSV1 set (§6), and the second
        // refers back to the first, in one window kept across them.
        let mut inflater = Inflater::new(Direction {
            window_bits: 15,
            context_takeover: true,
        });
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let frame = peer.frame().expect("the answer");
            assert!(frame.rsv1 && frame.mask.is_some(), "{frame:?}");
            let mut text = Vec::new();
            inflater
                .inflate_message(&frame.payload, 1 << 20, &mut text)
                .expect("valid");
            assert_eq!(text, expected.as_bytes());
            sizes.push(frame.payload.len());
        }
        assert!(sizes[1] < sizes[0], "the second refers back: {sizes:?}");
        peer.send(true, OpCode::Close, &close_payload(1000, "done"));
        assert_eq!(peer.expect_close(), Some(1000));
    });
    let answer: Hook = Box::new(move |ctx, seen| {
        if let Seen::Text(id, text) = seen {
            if text == "Hello" {
                let _ = ctx.send(*id, Message::Text(&long));
            }
        }
        None
    });
    let local = Local::with_hook(&format!("ws://{addr}/"), once(), Some(answer));
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    assert_eq!(local.next(), Seen::Text(link, "Hello".into()));
    assert_eq!(local.next(), Seen::Text(link, "Hello".into()));
    assert_eq!(local.next(), Seen::Close(link, 1000, "done".into()));
    server.join();
    assert_eq!(local.rest(), []);
}

#[cfg(feature = "deflate")]
#[test]
fn a_link_to_pushloop_echoes_compressed_and_counts_it() {
    let upstream = pushloop();
    let stats: Hook = Box::new(|ctx, seen| {
        let deflate = ctx.stats().deflate;
        matches!(seen, Seen::Text(..))
            .then(|| format!("{} {}", deflate.messages_sent, deflate.messages_received))
    });
    let local = Local::with_hook(
        &format!("ws://{}/echo", upstream.server.addr),
        once(),
        Some(stats),
    );
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    let big = "echo ".repeat(10_000);
    local.server.handle.send_text(link, big.clone()).unwrap();
    assert_eq!(local.next(), Seen::Text(link, big));
    // Ours went compressed, and the upstream's echo came compressed.
    assert_eq!(local.next(), Seen::Note("1 1".into()));
    local.server.handle.send_text(link, "short").unwrap();
    assert_eq!(local.next(), Seen::Text(link, "short".into()));
    assert_eq!(
        local.next(),
        Seen::Note("1 1".into()),
        "under the threshold"
    );
    local
        .server
        .handle
        .close(link, CloseCode::NORMAL, "")
        .unwrap();
    assert_eq!(local.next(), Seen::Close(link, 1000, String::new()));
    assert_eq!(local.rest(), []);
}

#[cfg(feature = "deflate")]
#[test]
fn a_deflate_answer_the_link_cannot_honour_fails_the_attempt() {
    use pushloop::ws::deflate::NegotiationError;
    let cases = [
        (
            "permessage-deflate; x-level=9",
            NegotiationError::UnknownParameter,
        ),
        (
            "permessage-deflate; client_max_window_bits",
            NegotiationError::InvalidValue,
        ),
    ];
    for (value, expected) in cases {
        let answer = move |accept: &str| {
            switching(accept, &format!("Sec-WebSocket-Extensions: {value}\r\n"))
        };
        assert_eq!(refused_by(answer, once()), WsError::Negotiation(expected));
    }
}

// ---- Bad frames from the upstream (§7.1.7) -----------------------------------

/// A link to a server that opens, sends `bytes`, and expects our Close:
/// returns the code the app heard and the code our Close carried.
fn failed_by(bytes: Vec<u8>, config: WsConfig) -> (Seen, Option<u16>) {
    let (code_tx, code_rx) = channel();
    let (server, addr) = Hostile::one(move |mut peer| {
        peer.switch("");
        peer.write(&bytes);
        let _ = code_tx.send(peer.expect_close());
        // After failing, the client closes TCP (§7.1.7).
        assert!(peer.frame().is_none());
    });
    let local = Local::start(&format!("ws://{addr}/"), config);
    assert!(matches!(local.next(), Seen::Open(..)));
    let seen = local.next();
    let sent = code_rx
        .recv_timeout(NEWS)
        .expect("the server got our Close");
    server.join();
    // Our own Close ends the link: no reconnect.
    assert_eq!(local.rest(), []);
    (seen, sent)
}

fn frame(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, mask, payload);
    out
}

#[test]
fn a_masked_frame_from_the_upstream_is_answered_with_1002() {
    let masked = frame(true, OpCode::Text, Some([1, 2, 3, 4]), b"hidden");
    let (seen, sent) = failed_by(masked, quick());
    assert!(matches!(seen, Seen::Close(_, 1002, _)), "{seen:?}");
    assert_eq!(sent, Some(1002));
}

#[test]
fn invalid_utf8_is_answered_with_1007() {
    let (seen, sent) = failed_by(frame(true, OpCode::Text, None, &[b'a', 0xff]), quick());
    assert!(matches!(seen, Seen::Close(_, 1007, _)), "{seen:?}");
    assert_eq!(sent, Some(1007));
}

#[test]
fn a_message_past_max_message_bytes_is_answered_with_1009_before_it_is_buffered() {
    let small = WsConfig {
        limits: MessageLimits {
            max_frame_bytes: 1024,
            max_message_bytes: 1024,
            max_fragments: 16,
        },
        ..quick()
    };
    // A header that declares 1 GiB, and none of it: the length alone is refused.
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    let (seen, sent) = failed_by(header, small.clone());
    assert!(matches!(seen, Seen::Close(_, 1009, _)), "{seen:?}");
    assert_eq!(sent, Some(1009));
    // Fragments that add up past the limit.
    let mut fragments = frame(false, OpCode::Binary, None, &[0; 1000]);
    fragments.extend(frame(true, OpCode::Continuation, None, &[0; 100]));
    let (seen, sent) = failed_by(fragments, small);
    assert!(matches!(seen, Seen::Close(_, 1009, _)), "{seen:?}");
    assert_eq!(sent, Some(1009));
}

#[test]
fn a_close_code_that_may_not_be_sent_is_answered_with_1002() {
    let (seen, sent) = failed_by(
        frame(true, OpCode::Close, None, &1005u16.to_be_bytes()),
        quick(),
    );
    assert!(matches!(seen, Seen::Close(_, 1002, _)), "{seen:?}");
    assert_eq!(sent, Some(1002));
    assert_eq!(
        MessageError::Frame(FrameError::MaskedServerFrame)
            .close_code()
            .0,
        1002
    );
}

// ---- Reconnect and resume -----------------------------------------------------

/// The feed id of a text message, or the test fails.
fn feed_id(seen: &Seen) -> u64 {
    match seen {
        Seen::Text(_, json) => pushloop::client::ws::feed_event_id(json).expect("a feed event"),
        other => panic!("not a feed event: {other:?}"),
    }
}

#[test]
fn a_link_kicked_by_the_upstream_reconnects_and_resumes_after_its_last_event() {
    let upstream = pushloop();
    let config = WsConfig {
        resume_feed: true,
        ..quick()
    };
    let local = Local::start(&format!("ws://{}/chat", upstream.server.addr), config);
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    let handle = &local.server.handle;
    handle.send_text(link, "say one").unwrap();
    let one = local.next();
    assert!(
        matches!(&one, Seen::Text(_, json) if json.contains("\"one\"")),
        "{one:?}"
    );
    // 1012 says "come back": the same id opens again, and the event
    // published while it was away is replayed from `?after=`.
    handle.send_text(link, "kick").unwrap();
    assert_eq!(local.next(), Seen::Close(link, 1012, "restart".into()));
    assert_eq!(local.next(), Seen::Open(link, None));
    let missed = local.next();
    assert!(
        matches!(&missed, Seen::Text(_, json) if json.contains("while you were away")),
        "{missed:?}"
    );
    assert!(feed_id(&missed) > feed_id(&one));
    assert_eq!(
        *upstream.cursors.lock().unwrap(),
        [None, Some(feed_id(&one).to_string())]
    );
}

#[test]
fn a_link_outlives_an_upstream_restart_and_asks_the_new_one_for_its_cursor() {
    let first = pushloop();
    let addr = first.server.addr;
    let config = WsConfig {
        resume_feed: true,
        ..quick()
    };
    let local = Local::start(&format!("ws://{addr}/chat"), config);
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    local.server.handle.send_text(link, "say before").unwrap();
    let before = feed_id(&local.next());
    // The upstream goes away (1001) and is down for a while: each refused
    // attempt is reported with the delay before the next.
    first.server.stop().unwrap();
    assert_eq!(
        local.next(),
        Seen::Close(link, 1001, "server shutting down".into())
    );
    // While it is down, the first attempt is refused and reported.
    match local.next() {
        Seen::Failed(id, WsError::Connect(_), Some(_)) => assert_eq!(id, link),
        other => panic!("{other:?}"),
    }
    let restarted = pushloop_on(addr);
    let reopened = loop {
        match local.next() {
            Seen::Failed(_, WsError::Connect(_), Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(reopened, Seen::Open(link, None));
    // The new server does not know the old cursor: its `resync` says where
    // it can serve from, and what it publishes arrives.
    let resync = local.next();
    assert!(
        matches!(&resync, Seen::Text(_, json) if json.contains("\"resync\"")),
        "{resync:?}"
    );
    assert_eq!(
        *restarted.cursors.lock().unwrap(),
        [Some(before.to_string())]
    );
    local.server.handle.send_text(link, "say after").unwrap();
    let after = local.next();
    assert!(
        matches!(&after, Seen::Text(_, json) if json.contains("\"after\"")),
        "{after:?}"
    );
}

// ---- Several loops ------------------------------------------------------------

#[test]
fn each_of_several_loops_opens_its_own_links() {
    let upstream = pushloop();
    let url = format!("ws://{}/echo", upstream.server.addr);
    let (tx, seen) = channel();
    let (ready, started) = channel();
    let thread = std::thread::spawn(move || {
        let server = Server::bind("127.0.0.1:0", Config::default())?;
        ready.send(server.handle()).expect("the test waits");
        let tx = Mutex::new(tx);
        server.run_threads(2, || Probe {
            url: url.clone(),
            config: once(),
            seen: tx.lock().unwrap().clone(),
            hook: None,
        })
    });
    let handle = started.recv().unwrap();
    let mut links = Vec::new();
    let mut opened = Vec::new();
    while opened.len() < 2 {
        match seen.recv_timeout(NEWS).expect("news from both loops") {
            Seen::Linked(link) => links.push(link.expect("a link")),
            Seen::Open(id, _) => opened.push(id),
            other => panic!("{other:?}"),
        }
    }
    links.sort();
    opened.sort();
    assert_eq!(links, opened);
    let loops: Vec<usize> = links.iter().map(|id| id.loop_index()).collect();
    assert_eq!(loops, [0, 1], "each loop's link lives on that loop");
    // A handle reaches each link on its own loop.
    for (n, link) in links.iter().enumerate() {
        handle.send_text(*link, format!("loop {n}")).unwrap();
        assert_eq!(
            seen.recv_timeout(NEWS).unwrap(),
            Seen::Text(*link, format!("loop {n}"))
        );
    }
    handle.shutdown();
    thread.join().unwrap().unwrap();
    // At shutdown each link is closed with 1001 and not reopened.
    let rest: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(
        rest.iter()
            .all(|seen| matches!(seen, Seen::Close(_, 1001, _))),
        "{rest:?}"
    );
}

// ---- What an outbound socket does not take ------------------------------------

#[test]
fn an_outbound_socket_takes_no_broadcast_and_no_subscription() {
    let upstream = pushloop();
    let check: Hook = Box::new(|ctx, seen| {
        let Seen::Open(id, _) = seen else {
            return None;
        };
        let topic = ctx.topic("local").unwrap();
        let subscribed = ctx.subscribe(*id, topic, None);
        let reached = ctx.broadcast(Message::Text("to every client"));
        let _ = ctx.publish(topic, None, "not for the upstream");
        let sent = ctx.send(*id, Message::Text("to the upstream"));
        Some(format!(
            "subscribe {subscribed:?}, broadcast to {reached}, send {sent:?}"
        ))
    });
    let local = Local::with_hook(
        &format!("ws://{}/echo", upstream.server.addr),
        once(),
        Some(check),
    );
    let link = local.link;
    assert_eq!(local.next(), Seen::Open(link, None));
    assert_eq!(
        local.next(),
        Seen::Note("subscribe Err(NotOpen), broadcast to 0, send Ok(())".into())
    );
    // Only the app's own send went up, and came back.
    assert_eq!(local.next(), Seen::Text(link, "to the upstream".into()));
    local.server.handle.send_text(link, "probe").unwrap();
    assert_eq!(local.next(), Seen::Text(link, "probe".into()));
    let _ = local.rest();
}
