//! Rooms and addressable connections, over real sockets: several topics per
//! connection on every transport, one id space, publish-except, removing a
//! topic, pushing to one event stream or long-poll, answering later from
//! another thread, payload kinds, percent-decoding, and a reply head that a
//! replay can never push out.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use pushloop::prelude::*;
use pushloop::server::OwnedPayload;

/// An app that serves rooms the way the demo does, with a few extra routes
/// for the tests.
struct Rooms {
    /// Where deferred requests are announced (the test answers them from
    /// its own thread).
    later: Option<mpsc::Sender<ConnId>>,
}

fn topics(ctx: &mut Context, req: &Request) -> Result<Vec<TopicId>, Reply> {
    let list = req.query_param("topics");
    ctx.topics(list.as_deref().unwrap_or("a"), false)
        .map_err(|error| Reply::Response(Response::text(400, &error.to_string())))
}

fn after(req: &Request) -> Option<u64> {
    req.query_param("after")
        .and_then(|after| after.parse().ok())
}

impl App for Rooms {
    fn request(&mut self, ctx: &mut Context, id: ConnId, req: &Request, body: &[u8]) -> Reply {
        match req.path() {
            "/events" => match topics(ctx, req) {
                Ok(topics) => Reply::EventStream {
                    topics,
                    after: after(req),
                },
                Err(reply) => reply,
            },
            "/poll" | "/longpoll" => match topics(ctx, req) {
                Ok(topics) if req.path() == "/poll" => Reply::Poll {
                    topics,
                    after: after(req).unwrap_or(0),
                },
                Ok(topics) => Reply::LongPoll {
                    topics,
                    after: after(req).unwrap_or(0),
                },
                Err(reply) => reply,
            },
            "/publish" => {
                let Ok(topic) = ctx.topic(req.query_param("topic").as_deref().unwrap_or("a"))
                else {
                    return Reply::Response(Response::text(400, "bad topic"));
                };
                let payload = match req.query_param("kind").as_deref() {
                    Some("binary") => Payload::Binary(body),
                    Some("json") => Payload::Json(std::str::from_utf8(body).unwrap_or("")),
                    _ => Payload::Text(std::str::from_utf8(body).unwrap_or("")),
                };
                match ctx.publish_payload(topic, None, payload, None) {
                    Ok(id) => Reply::Response(Response::json(200, format!("{{\"id\":{id}}}"))),
                    Err(error) => Reply::Response(Response::text(error.status(), "refused")),
                }
            }
            "/whoami" => Reply::Response(Response::text(200, &id.to_string())),
            "/stats" => Reply::Response(Response::json(200, ctx.stats().to_json())),
            "/later" => match &self.later {
                Some(later) => {
                    let _ = later.send(id);
                    Reply::Later
                }
                None => Reply::Response(Response::text(404, "no later here")),
            },
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, ctx: &mut Context, id: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match topics(ctx, req) {
            Ok(topics) => {
                let mut accept = Accept::new();
                for topic in topics {
                    accept = accept.subscribe(topic, after(req));
                }
                ctx.set_data(id, req.path().to_owned());
                Upgrading::Accept(accept)
            }
            Err(_) => Upgrading::Reject(Response::text(400, "unknown topic")),
        }
    }

    /// Commands from a test's WebSocket: `say ROOM TEXT` publishes to every
    /// follower but the sender; `leave ROOM` unsubscribes; `tell ID TEXT` and
    /// `close ID` reach any connection by its id (the id as `#n` or `#n.g`,
    /// as `ConnId`'s Display writes it).
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("say"), Some(room), Some(text)) => {
                if let Some(topic) = ctx.find_topic(room) {
                    let _ = ctx.publish_payload(topic, Some("chat"), Payload::Text(text), Some(id));
                }
            }
            (Some("leave"), Some(room), None) => {
                if let Some(topic) = ctx.find_topic(room) {
                    ctx.unsubscribe(id, topic);
                    let _ = ctx.send(id, Message::Text("left"));
                }
            }
            (Some("tell"), Some(target), Some(text)) => {
                if let Some(target) = ConnIds::find(ctx, target) {
                    let _ = ctx.send(target, Message::Text(text));
                }
            }
            (Some("close"), Some(target), None) => {
                if let Some(target) = ConnIds::find(ctx, target) {
                    ctx.close(target, CloseCode::NORMAL, "bye");
                }
            }
            (Some("remove"), Some(room), None) => {
                if let Some(topic) = ctx.find_topic(room) {
                    ctx.remove_topic(topic);
                }
            }
            (Some("whoami"), None, None) => {
                let peer = ctx.peer_addr(id).map(|addr| addr.ip().to_string());
                let path = ctx.data::<String>(id).cloned().unwrap_or_default();
                let _ = ctx.send(
                    id,
                    Message::Text(&format!("{id} {path} {}", peer.unwrap_or_default())),
                );
            }
            _ => {}
        }
    }
}

/// Connection ids as the tests pass them around (their `Display` form).
struct ConnIds;

impl ConnIds {
    /// The id whose `Display` is `text`, among the connections the app has
    /// seen (an id is only ever made by the loop, so the tests learn it from
    /// `/whoami` and find it back here).
    fn find(_ctx: &Context, text: &str) -> Option<ConnId> {
        KNOWN.with(|known| {
            known
                .borrow()
                .iter()
                .find(|id| id.to_string() == text)
                .copied()
        })
    }
}

thread_local! {
    /// Ids the test app has handed out through `/whoami`, on the loop's thread.
    static KNOWN: std::cell::RefCell<Vec<ConnId>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The app above, remembering every id it answers `/whoami` with.
struct Tracking(Rooms);

impl App for Tracking {
    fn request(&mut self, ctx: &mut Context, id: ConnId, req: &Request, body: &[u8]) -> Reply {
        KNOWN.with(|known| known.borrow_mut().push(id));
        self.0.request(ctx, id, req, body)
    }
    fn upgrade(
        &mut self,
        ctx: &mut Context,
        id: ConnId,
        req: &Request,
        offer: &Upgrade,
    ) -> Upgrading {
        KNOWN.with(|known| known.borrow_mut().push(id));
        self.0.upgrade(ctx, id, req, offer)
    }
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        self.0.message(ctx, id, message)
    }
}

fn start_with(config: Config, later: Option<mpsc::Sender<ConnId>>) -> TestServer {
    serve(config, move |server| {
        for room in ["a", "b"] {
            server.topic(room).expect("a valid topic name");
        }
        Tracking(Rooms { later })
    })
}

fn start() -> TestServer {
    start_with(quick_config(), None)
}

fn publish_to(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    let response = post(addr, &format!("/publish?topic={topic}"), data);
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    text.trim_start_matches("{\"id\":")
        .trim_end_matches('}')
        .parse()
        .expect("id")
}

fn json_ids(text: &str) -> Vec<u64> {
    text.match_indices("\"id\":")
        .filter_map(|(at, key)| {
            let rest = &text[at + key.len()..];
            rest[..rest.find([',', '}']).unwrap_or(rest.len())]
                .parse()
                .ok()
        })
        .collect()
}

fn text_of(received: Received) -> String {
    match received {
        Received::Text(text) => text,
        other => panic!("expected text, got {other:?}"),
    }
}

// ---- Several topics, one id space ----------------------------------------------

#[test]
fn websocket_and_sse_clients_following_two_topics_get_both_in_id_order() {
    let server = start();
    let mut socket = WsClient::connect(server.addr, "/chat?topics=a,b");
    let mut sse = EventStream::open(server.addr, "/events?topics=a,b", None);
    let ids = [
        publish_to(server.addr, "a", "1"),
        publish_to(server.addr, "b", "2"),
        publish_to(server.addr, "a", "3"),
    ];
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "one id space: {ids:?}");
    let got: Vec<u64> = (0..3)
        .flat_map(|_| json_ids(&text_of(socket.recv_data())))
        .collect();
    assert_eq!(got, ids);
    let sse_ids: Vec<String> = sse.events(3).into_iter().map(|e| e.last_event_id).collect();
    assert_eq!(sse_ids, ids.map(|id| id.to_string()));
}

#[test]
fn one_cursor_resumes_two_topics_with_no_loss_and_no_duplicate() {
    let server = start();
    let first = publish_to(server.addr, "a", "a1");
    let b1 = publish_to(server.addr, "b", "b1");
    let a2 = publish_to(server.addr, "a", "a2");
    let poll = get(server.addr, &format!("/poll?topics=a,b&after={first}")).text();
    assert_eq!(json_ids(&poll), [b1, a2]);
    let mut sse = EventStream::open(server.addr, "/events?topics=b,a", Some(b1));
    assert_eq!(sse.events(1)[0].last_event_id, a2.to_string());
}

#[test]
fn a_cursor_from_another_topic_or_server_resyncs() {
    let server = start();
    let from_a = publish_to(server.addr, "a", "x");
    publish_to(server.addr, "b", "y");
    let poll = get(server.addr, &format!("/poll?topics=b&after={from_a}")).text();
    assert!(poll.starts_with("[{\"id\":"), "{poll}");
    assert!(
        poll.contains("\"event\":\"resync\""),
        "another topic's id: {poll}"
    );
    let stranger = get(server.addr, "/poll?topics=a&after=42").text();
    assert!(
        stranger.contains("\"reason\":\"unknown id\""),
        "another server's id: {stranger}"
    );
}

#[test]
fn percent_encoded_cursors_and_lists_are_decoded() {
    let server = start();
    let id = publish_to(server.addr, "a", "x");
    let digits: String = (id - 1)
        .to_string()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let poll = get(server.addr, &format!("/poll?topics=a%2Cb&after={digits}")).text();
    assert_eq!(json_ids(&poll), [id], "{poll}");
}

#[test]
fn an_unknown_topic_or_a_malformed_list_is_a_400_with_its_reason() {
    let server = start();
    for path in [
        "/poll?topics=nope",
        "/events?topics=a,,b",
        "/longpoll?topics=a,b,",
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 400, "{path}");
        assert!(!response.text().is_empty(), "a one-line reason");
    }
    let refused = WsClient::try_connect(server.addr, &upgrade_request("/chat?topics=nope", ""));
    assert_eq!(
        refused.response.status, 400,
        "a WebSocket is refused at the upgrade"
    );
}

// ---- Subscribing, publishing to others, removing -----------------------------------

#[test]
fn unsubscribe_stops_delivery_and_publish_except_skips_the_sender() {
    let server = start();
    let mut alice = WsClient::connect(server.addr, "/chat?topics=a,b");
    let mut bob = WsClient::connect(server.addr, "/chat?topics=a");
    alice.send_text("say a hello");
    let heard = text_of(bob.recv_data());
    assert!(heard.contains("\"data\":\"hello\""), "{heard}");
    alice.send_text("leave a");
    assert_eq!(text_of(alice.recv_data()), "left");
    publish_to(server.addr, "a", "for a");
    publish_to(server.addr, "b", "for b");
    // Alice said hello (not sent back to her) and left a: only b's event reaches her.
    let next = text_of(alice.recv_data());
    assert!(next.contains("\"data\":\"for b\""), "{next}");
    assert!(text_of(bob.recv_data()).contains("\"data\":\"for a\""));
}

#[test]
fn a_removed_topic_tells_its_followers_and_is_gone() {
    let server = start();
    let mut follower = WsClient::connect(server.addr, "/chat?topics=b");
    let mut admin = WsClient::connect(server.addr, "/chat?topics=a");
    admin.send_text("remove b");
    let last = text_of(follower.recv_data());
    assert!(last.contains("\"event\":\"removed\""), "{last}");
    assert_eq!(get(server.addr, "/poll?topics=b").status, 400, "gone");
}

// ---- Every connection addressable --------------------------------------------------

#[test]
fn an_event_stream_is_sent_to_alone_and_closed_by_id() {
    let server = start();
    let mut sse_one = EventStream::open(server.addr, "/events?topics=a", None);
    let mut sse_two = EventStream::open(server.addr, "/events?topics=a", None);
    // Learn the streams' ids the way an app would: it saw them in `request`.
    let ids: Vec<String> = KNOWN_IDS(server.addr);
    let mut admin = WsClient::connect(server.addr, "/chat?topics=a");
    admin.send_text(&format!("tell {} only you", ids[0]));
    let direct = sse_one.events(1);
    assert_eq!(
        (direct[0].event_type.as_str(), direct[0].data.as_str()),
        ("message", "only you")
    );
    admin.send_text(&format!("close {}", ids[0]));
    let mut rest = Vec::new();
    sse_one
        .stream
        .read_to_end(&mut rest)
        .expect("the stream ends");
    publish_to(server.addr, "a", "to the others");
    assert_eq!(
        sse_two.events(1)[0].data,
        "to the others",
        "only its stream was told and closed"
    );
}

/// The ids of the connections opened so far (in order), as the app saw them.
#[allow(non_snake_case)]
fn KNOWN_IDS(addr: SocketAddr) -> Vec<String> {
    let mut probe = WsClient::connect(addr, "/chat?topics=a");
    probe.send_text("whoami");
    let me = text_of(probe.recv_data());
    // "#3 /chat 127.0.0.1": the slots below the probe's own were taken
    // earlier, by connections still open (a closed one's slot would have
    // been reused first). A reused slot reads "#3.1": its index is before
    // the dot.
    let own = me.split(' ').next().unwrap_or_default();
    let slot: usize = own
        .trim_start_matches('#')
        .split(['.', '@'])
        .next()
        .and_then(|index| index.parse().ok())
        .unwrap_or_else(|| panic!("a connection id, not {me:?}"));
    (0..slot).map(|slot| format!("#{slot}")).collect()
}

#[test]
fn a_held_long_poll_is_answered_alone() {
    let server = start();
    let mut held = connect(server.addr);
    held.write_all(b"GET /longpoll?topics=a&after=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "longpoll",
        "connections"
    ) == 1));
    let ids = KNOWN_IDS(server.addr);
    let mut admin = WsClient::connect(server.addr, "/chat?topics=a");
    admin.send_text(&format!("tell {} just for you", ids[0]));
    let answer = read_response(&mut held, &mut Vec::new());
    assert_eq!(
        answer.text(),
        r#"[{"event":"message","data":"just for you"}]"#
    );
}

#[test]
fn a_deferred_request_is_answered_from_another_thread() {
    let (later, deferred) = mpsc::channel();
    let server = start_with(quick_config(), Some(later));
    let handle = server.handle.clone();
    let answerer = std::thread::spawn(move || {
        let id = deferred
            .recv_timeout(Duration::from_secs(5))
            .expect("deferred");
        handle
            .respond(id, Response::text(200, "worth the wait"))
            .expect("queued");
    });
    assert_eq!(get(server.addr, "/later").text(), "worth the wait");
    answerer.join().unwrap();
}

#[test]
fn a_deferred_request_not_answered_in_time_gets_504() {
    let (later, _deferred) = mpsc::channel();
    let mut config = quick_config();
    config.limits.later_timeout = Duration::from_millis(200);
    let server = start_with(config, Some(later));
    assert_eq!(get(server.addr, "/later").status, 504);
}

#[test]
fn per_connection_data_and_the_peer_address_are_there_in_callbacks() {
    let server = start();
    let mut socket = WsClient::connect(server.addr, "/chat?topics=a");
    socket.send_text("whoami");
    let answer = text_of(socket.recv_data());
    assert!(answer.ends_with(" /chat 127.0.0.1"), "{answer}");
}

// ---- Payloads --------------------------------------------------------------------

#[test]
fn binary_events_reach_a_websocket_as_binary_and_a_poller_as_base64() {
    let server = start();
    let mut socket = WsClient::connect(server.addr, "/chat?topics=a");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /publish?topic=a&kind=binary HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n\x00\xff\x01")
        .unwrap();
    assert_eq!(read_response(&mut stream, &mut Vec::new()).status, 200);
    assert_eq!(socket.recv_data(), Received::Binary(vec![0, 255, 1]));
    let poll = get(server.addr, "/poll?topics=a").text();
    assert!(
        poll.contains(r#""data":"AP8B","encoding":"base64""#),
        "{poll}"
    );
}

#[test]
fn raw_json_goes_out_unescaped_and_broken_json_is_refused() {
    let server = start();
    let response = post(
        server.addr,
        "/publish?topic=a&kind=json",
        r#"{"temp":21.5}"#,
    );
    assert_eq!(response.status, 200);
    let poll = get(server.addr, "/poll?topics=a").text();
    assert!(poll.contains(r#""data":{"temp":21.5}"#), "{poll}");
    assert_eq!(
        post(server.addr, "/publish?topic=a&kind=json", "{oops").status,
        400
    );
}

#[test]
fn the_handle_refuses_bad_arguments_at_once_and_can_return_the_id() {
    let server = start();
    let handle = server.handle.clone();
    let topic = handle.topic("sensors").expect("made by the loop");
    assert_eq!(
        handle.publish(topic, Some("a\nb"), "x"),
        Err(HandleError::Refused(PublishError::BadEventName))
    );
    assert_eq!(
        handle.publish_payload(topic, None, OwnedPayload::Json("{".into())),
        Err(HandleError::Refused(PublishError::BadJson))
    );
    assert_eq!(
        handle.topic("no spaces allowed"),
        Err(HandleError::BadTopic(TopicError::BadName))
    );
    let id = handle
        .publish_and_wait(topic, None, OwnedPayload::Text("21.5".into()))
        .expect("an id");
    let poll = get(server.addr, "/poll?topics=sensors").text();
    assert_eq!(json_ids(&poll), [id]);
}

// ---- A replay larger than the queue: the head first, then everything -------------------

/// RFC 6455 §4.2.2 / WHATWG HTML §9.2: the `101` or `200` head is never
/// dropped, however much history a cursor asks for.
#[test]
fn a_replay_larger_than_the_queue_never_drops_the_head_and_loses_nothing() {
    let mut config = quick_config();
    config.limits.max_queued_bytes = 2048;
    let server = start_with(config, None);
    let data = "x".repeat(300);
    let ids: Vec<u64> = (0..20)
        .map(|_| publish_to(server.addr, "a", &data))
        .collect();
    // WebSocket: the 101 comes first, then all twenty events, in order.
    let mut socket = WsClient::connect(server.addr, "/chat?topics=a&after=0");
    let got: Vec<u64> = (0..20)
        .flat_map(|_| json_ids(&text_of(socket.recv_data())))
        .collect();
    assert_eq!(got, ids);
    // An event stream: the 200 head, then all twenty.
    let mut sse = EventStream::open(server.addr, "/events?topics=a&after=0", None);
    assert_eq!(sse.head.status, 200);
    let sse_ids: Vec<u64> = sse
        .events(20)
        .iter()
        .map(|e| e.last_event_id.parse().unwrap())
        .collect();
    assert_eq!(sse_ids, ids);
}

// ---- HTTP niceties ---------------------------------------------------------------

#[test]
fn head_gets_no_body_and_keeps_the_connection() {
    let server = start();
    let mut stream = connect(server.addr);
    stream
        .write_all(b"HEAD /poll?topics=a HTTP/1.1\r\nHost: t\r\n\r\nGET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buffered = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buf).expect("head");
        assert!(n > 0, "closed before the head");
        buffered.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&buffered[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Length: 2\r\n"),
        "the GET's length: {head}"
    );
    // RFC 9110 §9.3.2: no body — the next bytes are the next answer.
    buffered.drain(..head_end);
    let next = read_response(&mut stream, &mut buffered);
    assert_eq!(next.status, 200, "the connection was kept and framed right");
}
