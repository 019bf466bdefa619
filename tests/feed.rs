//! One feed, four transports, over real sockets: SSE framing and replay,
//! resync, keep-alive, short and long polls, WebSocket subscribers, fan-out,
//! slow subscribers, cleanup. Event streams are read the way a browser reads
//! them, with `sse::StreamParser` (WHATWG HTML §9.2.6).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::Config;
use pushloop::ws::handshake::Upgrade;

/// The demo's routes, over one topic.
struct Feed {
    topic: TopicId,
}

fn after(req: &Request) -> Option<u64> {
    req.query_param("after").and_then(|a| a.parse().ok())
}

impl App for Feed {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        match req.path() {
            "/events" => Reply::EventStream {
                topics: vec![self.topic],
                after: after(req),
            },
            "/poll" => Reply::Poll {
                topics: vec![self.topic],
                after: after(req).unwrap_or(0),
            },
            "/longpoll" => Reply::LongPoll {
                topics: vec![self.topic],
                after: after(req).unwrap_or(0),
            },
            "/publish" => {
                let data = String::from_utf8_lossy(body);
                match ctx.publish(self.topic, req.query_param("event").as_deref(), &data) {
                    Ok(id) => Reply::Response(Response::json(200, format!("{{\"id\":{id}}}"))),
                    Err(_) => Reply::Response(Response::text(400, "bad event name")),
                }
            }
            "/stats" => Reply::Response(Response::json(200, ctx.stats().to_json())),
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        Upgrading::Accept(Accept::new().subscribe(self.topic, after(req)))
    }

    fn message(&mut self, ctx: &mut Context, _: ConnId, message: Message) {
        if let Message::Text(text) = message {
            let _ = ctx.publish(self.topic, Some("chat"), text);
        }
    }
}

fn start(config: Config) -> TestServer {
    serve(config, |server| Feed {
        topic: server.topic("feed").expect("a valid topic name"),
    })
}

fn publish(addr: SocketAddr, event: Option<&str>, data: &str) -> u64 {
    let path = match event {
        Some(name) => format!("/publish?event={name}"),
        None => "/publish".into(),
    };
    let response = post(addr, &path, data);
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    text.trim_start_matches("{\"id\":")
        .trim_end_matches('}')
        .parse()
        .expect("id")
}

// ---- SSE (WHATWG HTML §9.2) ---------------------------------------------------

#[test]
fn event_stream_headers_and_framing() {
    let server = start(quick_config());
    let mut sse = EventStream::open(server.addr, "/events", None);
    assert_eq!(sse.head.status, 200);
    assert_eq!(sse.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.head.header("cache-control"), Some("no-cache"));
    assert_eq!(sse.head.header("x-accel-buffering"), Some("no"));
    let id = publish(server.addr, Some("greet"), "line one\nline two");
    let events = sse.events(1);
    assert_eq!(events[0].event_type, "greet");
    assert_eq!(events[0].data, "line one\nline two");
    assert_eq!(events[0].last_event_id, id.to_string());
    assert_eq!(sse.parser.retry(), Some(2000), "retry: is sent once, first");
    assert!(sse.raw.starts_with(b"retry: 2000\n\n"));
}

#[test]
fn allow_origin_is_sent_when_configured() {
    let mut config = quick_config();
    config.allow_origin = Some("*".into());
    let server = start(config);
    let sse = EventStream::open(server.addr, "/events", None);
    assert_eq!(sse.head.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn a_publish_body_is_data_only_and_cannot_inject_fields() {
    let server = start(quick_config());
    let mut sse = EventStream::open(server.addr, "/events", None);
    let body = "x\nevent: evil\nid: 666\n\ndata: y\rretry: 1";
    let id = publish(server.addr, None, body);
    let events = sse.events(1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "message");
    assert_eq!(events[0].data, body.replace('\r', "\n"));
    assert_eq!(events[0].last_event_id, id.to_string());
    assert_eq!(sse.parser.retry(), Some(2000));
}

#[test]
fn an_event_name_with_a_line_break_is_refused() {
    let server = start(quick_config());
    assert_eq!(
        post(server.addr, "/publish?event=a%0Ab", "x").status,
        400,
        "the query is percent-decoded (RFC 3986 §2.1) before the name is checked"
    );
    let mut stream = connect(server.addr);
    let response = {
        stream
            .write_all(
                b"POST /publish?event=a\nb HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            )
            .unwrap();
        read_response(&mut stream, &mut Vec::new())
    };
    assert_eq!(response.status, 400);
}

#[test]
fn last_event_id_replays_what_was_missed() {
    let server = start(quick_config());
    let first = publish(server.addr, None, "one");
    publish(server.addr, None, "two");
    publish(server.addr, None, "three");
    let mut sse = EventStream::open(server.addr, "/events", Some(first));
    let data: Vec<String> = sse.events(2).into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["two", "three"]);
}

#[test]
fn the_header_wins_over_the_first_connect_cursor() {
    let server = start(quick_config());
    let first = publish(server.addr, None, "one");
    let second = publish(server.addr, None, "two");
    let mut by_query =
        EventStream::open(server.addr, &format!("/events?after={}", first - 1), None);
    assert_eq!(by_query.events(2)[0].data, "one");
    let mut by_header = EventStream::open(
        server.addr,
        &format!("/events?after={}", first - 1),
        Some(second - 1),
    );
    assert_eq!(by_header.events(1)[0].data, "two");
}

#[test]
fn a_cursor_from_an_earlier_run_gets_a_resync_then_history() {
    let server = start(quick_config());
    let id = publish(server.addr, None, "now");
    let mut sse = EventStream::open(server.addr, "/events", Some(12345));
    let events = sse.events(2);
    assert_eq!(events[0].event_type, "resync");
    assert!(events[0].data.contains("unknown id"), "{}", events[0].data);
    assert_eq!(
        events[0].last_event_id,
        (id - 1).to_string(),
        "the notice repairs the cursor"
    );
    assert_eq!(events[1].data, "now");
}

#[test]
fn a_cursor_that_fell_out_of_history_gets_a_resync() {
    let mut config = quick_config();
    config.history.max_events = 3;
    let server = start(config);
    let first = publish(server.addr, None, "0");
    for i in 1..6 {
        publish(server.addr, None, &i.to_string());
    }
    let mut sse = EventStream::open(server.addr, "/events", Some(first));
    let events = sse.events(4);
    assert_eq!(events[0].event_type, "resync");
    assert!(
        events[0].data.contains("fell out of history"),
        "{}",
        events[0].data
    );
    let data: Vec<&str> = events[1..].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["3", "4", "5"]);
}

#[test]
fn a_bad_last_event_id_is_400() {
    let server = start(quick_config());
    let response = request(
        server.addr,
        "GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: abc\r\n\r\n",
    );
    assert_eq!(response.status, 400);
}

#[test]
fn keep_alive_comments_flow_on_the_configured_interval() {
    let mut config = quick_config();
    config.limits.sse_keepalive = Duration::from_millis(40);
    let server = start(config);
    let mut sse = EventStream::open(server.addr, "/events", None);
    let start = Instant::now();
    let mut buf = [0; 1024];
    let mut comments = 0;
    while comments < 3 {
        let n = sse.stream.read(&mut buf).unwrap();
        assert!(n > 0);
        comments += buf[..n]
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(b":"))
            .count();
        assert!(
            sse.pending(&buf[..n]).is_empty(),
            "comments dispatch nothing"
        );
    }
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "three comments took {:?}",
        start.elapsed()
    );
}

#[test]
fn fan_out_reaches_every_subscriber_with_nothing_lost() {
    let server = start(quick_config());
    let mut streams: Vec<EventStream> = (0..100)
        .map(|_| EventStream::open(server.addr, "/events", None))
        .collect();
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "sse",
        "connections"
    ) == 100));
    let ids: Vec<String> = (0..20)
        .map(|i| publish(server.addr, None, &format!("event {i}")).to_string())
        .collect();
    for sse in &mut streams {
        let got: Vec<String> = sse
            .events(20)
            .into_iter()
            .map(|e| e.last_event_id)
            .collect();
        assert_eq!(got, ids);
    }
}

#[test]
fn a_never_reading_subscriber_does_not_hold_back_the_others() {
    let mut config = quick_config();
    config.limits.max_queued_bytes = 64 * 1024;
    let server = start(config);
    let stuck = EventStream::open(server.addr, "/events", None);
    let mut reader = EventStream::open(server.addr, "/events", None);
    let big = "y".repeat(32 * 1024);
    for round in 0..200 {
        publish(server.addr, None, &big);
        assert_eq!(reader.events(1)[0].data.len(), big.len(), "round {round}");
        if stat(server.addr, "http", "connections") <= 1
            && stat(server.addr, "sse", "connections") == 1
        {
            break;
        }
    }
    // The stuck stream was closed under the slow-reader policy; the reader kept up.
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "sse",
        "connections"
    ) == 1));
    drop(stuck);
}

#[test]
fn a_subscriber_that_disconnects_is_cleaned_up_at_once() {
    let server = start(quick_config());
    let sse = EventStream::open(server.addr, "/events", None);
    let mut held = connect(server.addr);
    held.write_all(b"GET /longpoll?after=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "sse",
        "connections"
    ) == 1
        && stat(server.addr, "longpoll", "connections") == 1));
    drop(sse);
    drop(held);
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "sse",
        "connections"
    ) == 0
        && stat(server.addr, "longpoll", "connections") == 0));
    // Publishing to the departed finds no one and breaks nothing.
    publish(server.addr, None, "to nobody");
}

// ---- Polling ---------------------------------------------------------------------

#[test]
fn poll_answers_at_once_with_the_events_after_the_cursor() {
    let server = start(quick_config());
    assert_eq!(get(server.addr, "/poll?after=0").text(), "[]");
    let first = publish(server.addr, Some("note"), "a");
    let second = publish(server.addr, None, "b");
    assert_eq!(
        get(server.addr, &format!("/poll?after={first}")).text(),
        format!("[{{\"id\":{second},\"topic\":\"feed\",\"event\":\"message\",\"data\":\"b\"}}]")
    );
    assert_eq!(
        get(server.addr, &format!("/poll?after={second}")).text(),
        "[]"
    );
    let all = get(server.addr, "/poll?after=0");
    assert_eq!(all.header("content-type"), Some("application/json"));
    assert!(all.text().contains("\"event\":\"note\""));
}

#[test]
fn the_same_poll_is_answered_alike_until_a_publish_changes_the_answer() {
    let server = start(quick_config());
    let first = publish(server.addr, None, "a");
    let second = publish(server.addr, None, "b");
    let poll = format!("/poll?after={first}");
    // Asked twice, answered from one shared encoding: the same bytes.
    let once = get(server.addr, &poll).text();
    assert_eq!(get(server.addr, &poll).text(), once);
    assert!(once.contains(&format!("\"id\":{second}")), "{once}");
    // A publish changes what the same question gets.
    let third = publish(server.addr, None, "c");
    let after = get(server.addr, &poll).text();
    assert!(
        after.contains(&format!("\"id\":{second}")) && after.contains(&format!("\"id\":{third}")),
        "{after}"
    );
}

#[test]
fn json_strings_are_escaped() {
    let server = start(quick_config());
    let id = publish(
        server.addr,
        None,
        "quote \" backslash \\ newline \n tab \t bell \u{7} line sep \u{2028}",
    );
    assert_eq!(
        get(server.addr, &format!("/poll?after={}", id - 1)).text(),
        format!(
            "[{{\"id\":{id},\"topic\":\"feed\",\"event\":\"message\",\"data\":\"quote \\\" backslash \\\\ newline \\n tab \\t bell \\u0007 line sep \\u2028\"}}]"
        )
    );
}

#[test]
fn long_poll_is_held_until_a_publish_wakes_it() {
    let server = start(quick_config());
    let latest = publish(server.addr, None, "before");
    let mut held = connect(server.addr);
    write!(
        held,
        "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    held.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut probe = [0; 1];
    let early = held.read(&mut probe);
    assert!(
        matches!(early, Err(ref e) if e.kind() == ErrorKind::WouldBlock),
        "answered before any publish"
    );
    held.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let id = publish(server.addr, None, "wake up");
    let response = read_response(&mut held, &mut Vec::new());
    assert_eq!(
        response.text(),
        format!("[{{\"id\":{id},\"topic\":\"feed\",\"event\":\"message\",\"data\":\"wake up\"}}]")
    );
    // Keep-alive: the same connection serves the next request.
    held.write_all(b"GET /poll?after=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut held, &mut Vec::new()).status, 200);
}

#[test]
fn long_poll_times_out_with_an_empty_array() {
    let mut config = quick_config();
    config.limits.long_poll_timeout = Duration::from_millis(100);
    let server = start(config);
    let start = Instant::now();
    let response = get(server.addr, "/longpoll?after=0");
    assert_eq!(response.text(), "[]");
    assert!(start.elapsed() >= Duration::from_millis(90));
}

#[test]
fn a_long_poll_with_connection_close_is_answered() {
    let server = start(quick_config());
    let latest = publish(server.addr, None, "x");
    let mut held = connect(server.addr);
    write!(
        held,
        "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let id = publish(server.addr, None, "y");
    let response = read_response(&mut held, &mut Vec::new());
    assert!(response.text().contains(&id.to_string()));
}

#[test]
fn one_publish_wakes_many_long_polls() {
    let server = start(quick_config());
    let latest = publish(server.addr, None, "start");
    let mut held: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = connect(server.addr);
            write!(
                stream,
                "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .unwrap();
            stream
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), || stat(
        server.addr,
        "longpoll",
        "connections"
    ) == 300));
    let id = publish(server.addr, None, "everyone");
    for stream in &mut held {
        assert!(read_response(stream, &mut Vec::new())
            .text()
            .contains(&format!("\"id\":{id}")));
    }
}

#[test]
fn requests_pipelined_behind_a_long_poll_wait_their_turn() {
    let server = start(quick_config());
    let latest = publish(server.addr, None, "start");
    let mut stream = connect(server.addr);
    write!(stream, "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\nGET /poll?after=0 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let id = publish(server.addr, None, "next");
    let mut buffered = Vec::new();
    let first = read_response(&mut stream, &mut buffered);
    assert_eq!(
        first.text(),
        format!("[{{\"id\":{id},\"topic\":\"feed\",\"event\":\"message\",\"data\":\"next\"}}]")
    );
    let second = read_response(&mut stream, &mut buffered);
    assert!(
        second.text().contains("\"data\":\"start\""),
        "{}",
        second.text()
    );
}

// ---- WebSocket subscribers and other threads -------------------------------------

#[test]
fn websocket_subscribers_get_json_events_and_replay_after_a_cursor() {
    let server = start(quick_config());
    let first = publish(server.addr, None, "old");
    let mut socket = WsClient::connect(server.addr, &format!("/chat?after={}", first - 1));
    assert_eq!(
        socket.recv_data(),
        Received::Text(format!(
            "{{\"id\":{first},\"topic\":\"feed\",\"event\":\"message\",\"data\":\"old\"}}"
        ))
    );
    socket.send_text("hi all");
    match socket.recv_data() {
        Received::Text(json) => assert!(
            json.contains("\"event\":\"chat\",\"data\":\"hi all\""),
            "{json}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_threads_publish_through_the_handle() {
    let (ready, topic_id) = std::sync::mpsc::channel();
    let server = serve(quick_config(), move |server| {
        let topic = server.topic("feed").expect("a valid topic name");
        ready.send(topic).unwrap();
        Feed { topic }
    });
    let topic = topic_id.recv().unwrap();
    let mut sse = EventStream::open(server.addr, "/events", None);
    let handle = server.handle.clone();
    std::thread::spawn(move || handle.publish(topic, Some("sensor"), "21.5 C").unwrap())
        .join()
        .unwrap();
    let events = sse.events(1);
    assert_eq!(
        (events[0].event_type.as_str(), events[0].data.as_str()),
        ("sensor", "21.5 C")
    );
}

#[test]
fn ids_of_a_later_run_are_above_every_id_of_an_earlier_one() {
    let first_run = start(quick_config());
    let old = publish(first_run.addr, None, "before restart");
    first_run.stop().unwrap();
    let second_run = start(quick_config());
    let new = publish(second_run.addr, None, "after restart");
    assert!(new > old, "{new} <= {old}");
    assert!(new < 1 << 53, "ids stay exact in JavaScript");
}
