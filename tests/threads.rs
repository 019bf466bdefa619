//! Several loops on one port, over real sockets: connections spread over
//! the loops, one feed across them (every transport, same ids, same order),
//! a send and a close to a connection of another loop, a loop that falls
//! behind and catches up, a panic that closes one connection, and a
//! shutdown that ends every loop.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use pushloop::prelude::*;
use pushloop::server::{Handle, OwnedPayload, SharePort};
use pushloop::sse::{ParsedEvent, StreamParser};

/// What the loops' apps share (tests only: a real app shares through topics
/// or a `Handle`).
#[derive(Default)]
struct Shared {
    /// Every WebSocket that opened, in order: the tests address them by index.
    sockets: Mutex<Vec<ConnId>>,
    /// Set by a loop parked in a callback; cleared to let it go.
    parked: AtomicBool,
    release: AtomicBool,
}

/// One app per loop.
struct Probe {
    shared: Arc<Shared>,
}

fn room(ctx: &mut Context) -> TopicId {
    ctx.topic("room").expect("a topic name")
}

impl App for Probe {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, _: &[u8]) -> Reply {
        let after = req
            .query_param("after")
            .and_then(|after| after.parse().ok());
        match req.path() {
            "/whoami" => Reply::Response(Response::text(200, &ctx.loop_index().to_string())),
            "/events" => Reply::EventStream {
                topics: vec![room(ctx)],
                after,
            },
            "/longpoll" => Reply::LongPoll {
                topics: vec![room(ctx)],
                after: after.unwrap_or(0),
            },
            "/loops" => {
                let split: Vec<String> = ctx
                    .every_loop_stats()
                    .iter()
                    .map(|stats| stats.connections().to_string())
                    .collect();
                Reply::Response(Response::text(200, &split.join(",")))
            }
            "/total" => Reply::Response(Response::json(200, ctx.total_stats().to_json())),
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, ctx: &mut Context, _: ConnId, _: &Request, _: &Upgrade) -> Upgrading {
        Upgrading::Accept(Accept::new().subscribe(room(ctx), None))
    }

    /// Says which loop the socket is on and its index among all sockets.
    fn open(&mut self, ctx: &mut Context, id: ConnId) {
        let index = {
            let mut sockets = self.shared.sockets.lock().unwrap();
            sockets.push(id);
            sockets.len() - 1
        };
        let hello = format!("hello {} {index}", ctx.loop_index());
        let _ = ctx.send(id, Message::Text(&hello));
    }

    /// `pub N`: publish N events in this callback; `tell I TEXT`, `kick I`:
    /// send to or close socket I wherever it is; `park`: hold this loop in
    /// the callback until released; `panic`; `stop`: shut every loop down.
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let Message::Text(text) = message else {
            return;
        };
        let words: Vec<&str> = text.splitn(3, ' ').collect();
        let socket = |index: &str| -> ConnId {
            self.shared.sockets.lock().unwrap()[index.parse::<usize>().unwrap()]
        };
        match words[..] {
            ["pub", count] => {
                let topic = room(ctx);
                let mut last = 0;
                for i in 0..count.parse::<u32>().unwrap() {
                    let payload = format!("e{i} from {}", ctx.loop_index());
                    last = ctx.publish(topic, None, &payload).unwrap();
                }
                let _ = ctx.send(id, Message::Text(&format!("published {last}")));
            }
            ["tell", index, text] => {
                let sent = ctx.send(socket(index), Message::Text(text));
                let _ = ctx.send(id, Message::Text(&format!("told {sent:?}")));
            }
            ["kick", index] => {
                ctx.close(socket(index), CloseCode(4000), "kicked");
            }
            ["park"] => {
                self.shared.parked.store(true, Ordering::SeqCst);
                // Bounded: a test that forgets to release does not hang.
                let start = std::time::Instant::now();
                while !self.shared.release.load(Ordering::SeqCst)
                    && start.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.shared.parked.store(false, Ordering::SeqCst);
            }
            ["panic"] => panic!("a bug in one loop's app"),
            ["stop"] => ctx.shutdown(),
            _ => {
                let _ = ctx.send(id, Message::Text(text));
            }
        }
    }
}

/// A server running `loops` loops in a thread; stopped and joined on drop.
struct Loops {
    addr: SocketAddr,
    handle: Handle,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Loops {
    fn start(loops: usize, config: Config) -> Loops {
        let shared = Arc::new(Shared::default());
        let for_apps = Arc::clone(&shared);
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::bind("127.0.0.1:0", config)?;
            server.topic("room").expect("a topic name");
            ready
                .send((server.local_addr()?, server.handle()))
                .expect("test waits");
            server.run_threads(loops, || Probe {
                shared: Arc::clone(&for_apps),
            })
        });
        let (addr, handle) = started.recv().expect("server started");
        Loops {
            addr,
            handle,
            shared,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("no panic")
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

fn config(share_port: SharePort) -> Config {
    let mut config = quick_config();
    config.share_port = share_port;
    config
}

/// A kept-alive connection that asked which loop it is on.
struct Probed {
    stream: TcpStream,
    buffered: Vec<u8>,
    loop_index: usize,
}

fn probe(addr: SocketAddr) -> Probed {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buffered = Vec::new();
    let answer = read_response(&mut stream, &mut buffered);
    Probed {
        loop_index: answer.text().parse().expect("a loop index"),
        stream,
        buffered,
    }
}

/// A WebSocket and where it is: (socket, loop, index among all sockets).
fn socket(addr: SocketAddr) -> (WsClient, usize, usize) {
    let mut ws = WsClient::connect(addr, "/ws");
    let Received::Text(hello) = ws.recv_data() else {
        panic!("no hello");
    };
    let words: Vec<&str> = hello.split(' ').collect();
    assert_eq!(words[0], "hello");
    (ws, words[1].parse().unwrap(), words[2].parse().unwrap())
}

/// Opens connections with `open` until every one of `loops` loops has one
/// (the kernel picks the loop; a bounded number of tries), keeping the
/// first of each loop.
fn one_per_loop<T>(loops: usize, mut open: impl FnMut() -> (T, usize)) -> Vec<T> {
    let mut found: Vec<Option<T>> = (0..loops).map(|_| None).collect();
    for _ in 0..400 {
        let (made, index) = open();
        if found[index].is_none() {
            found[index] = Some(made);
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
    }
    panic!("400 connections never reached every loop");
}

/// A WebSocket on each of `loops` loops, in loop order.
fn sockets_on_every_loop(addr: SocketAddr, loops: usize) -> Vec<WsClient> {
    one_per_loop(loops, || {
        let (ws, loop_index, _) = socket(addr);
        (ws, loop_index)
    })
}

/// An event stream on each of `loops` loops, in loop order.
fn streams_on_every_loop(addr: SocketAddr, loops: usize) -> Vec<(Probed, StreamParser)> {
    one_per_loop(loops, || {
        let mut probed = probe(addr);
        let parser = start_stream(&mut probed);
        let loop_index = probed.loop_index;
        ((probed, parser), loop_index)
    })
}

/// A kept-alive HTTP connection on each of `loops` loops, in loop order.
fn connections_on_every_loop(addr: SocketAddr, loops: usize) -> Vec<Probed> {
    one_per_loop(loops, || {
        let probed = probe(addr);
        let loop_index = probed.loop_index;
        (probed, loop_index)
    })
}

/// Reads SSE events from a kept-alive connection that switched to a stream.
fn sse_events(stream: &mut TcpStream, parser: &mut StreamParser, count: usize) -> Vec<ParsedEvent> {
    let mut events = Vec::new();
    let mut buf = [0; 65536];
    while events.len() < count {
        let n = stream.read(&mut buf).expect("stream read");
        assert!(n > 0, "stream ended after {} events", events.len());
        events.extend(parser.feed(&buf[..n]).expect("a valid stream"));
    }
    events
}

/// Starts an event stream on a probed connection; skips its head.
fn start_stream(probed: &mut Probed) -> StreamParser {
    probed
        .stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0; 4096];
    let mut head = std::mem::take(&mut probed.buffered);
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = probed.stream.read(&mut buf).unwrap();
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    };
    let mut parser = StreamParser::new(1 << 20);
    let early = parser.feed(&head[end..]).unwrap();
    assert!(early.is_empty(), "no event before the first publish");
    parser
}

fn id_of(json: &str) -> u64 {
    let start = json.find("\"id\":").expect("an id") + 5;
    let end = start + json[start..].find(',').expect("more fields");
    json[start..end].parse().expect("a number")
}

#[test]
fn the_kernel_spreads_connections_over_the_loops_and_stats_add_up() {
    let server = Loops::start(4, config(SharePort::ReusePort));
    let conns: Vec<Probed> = (0..200).map(|_| probe(server.addr)).collect();
    let mut split = [0; 4];
    for conn in &conns {
        split[conn.loop_index] += 1;
    }
    assert!(
        split.iter().all(|&n| n > 0),
        "every loop serves some: {split:?}"
    );
    // Each loop's counters reach the others within STATS_PERIOD.
    assert!(eventually(Duration::from_secs(5), || {
        let counted = get(server.addr, "/loops").text();
        let per_loop: Vec<u64> = counted.split(',').map(|n| n.parse().unwrap()).collect();
        per_loop.iter().sum::<u64>() >= 200
            && per_loop
                .iter()
                .zip(split)
                .all(|(&counted, opened)| counted >= opened)
    }));
    let total = get(server.addr, "/total").text();
    assert!(total.contains("\"requests\":"), "{total}");
    drop(conns);
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn one_acceptor_hands_connections_out_in_turn() {
    let server = Loops::start(4, config(SharePort::OneAcceptor));
    let mut split = [0; 4];
    let conns: Vec<Probed> = (0..200).map(|_| probe(server.addr)).collect();
    for conn in &conns {
        split[conn.loop_index] += 1;
    }
    assert_eq!(split, [50, 50, 50, 50]);
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn a_publish_on_one_loop_reaches_every_transport_on_every_loop_in_one_order() {
    const EVENTS: usize = 30;
    let server = Loops::start(3, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut sockets = sockets_on_every_loop(addr, 3);
    let mut streams = streams_on_every_loop(addr, 3);
    let mut polls = connections_on_every_loop(addr, 3);
    let mut publishers = sockets_on_every_loop(addr, 3);
    // Publish from two loops, interleaved: the order is the ids' order.
    let mut expected = Vec::new();
    for round in 0..(EVENTS / 2) {
        let publisher = round % 2;
        publishers[publisher].send_text("pub 2");
        loop {
            match publishers[publisher].recv_data() {
                Received::Text(text) if text.starts_with("published ") => {
                    let last: u64 = text["published ".len()..].parse().unwrap();
                    expected.extend([last - 1, last]);
                    break;
                }
                Received::Text(_) => continue,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(expected.windows(2).all(|w| w[0] < w[1]), "{expected:?}");
    for (index, ws) in sockets.iter_mut().enumerate() {
        let mut ids = Vec::new();
        while ids.len() < EVENTS {
            match ws.recv_data() {
                Received::Text(text) if text.starts_with('{') => ids.push(id_of(&text)),
                Received::Text(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ids, expected, "WebSocket on loop {index}");
    }
    for (index, (probed, parser)) in streams.iter_mut().enumerate() {
        let ids: Vec<u64> = sse_events(&mut probed.stream, parser, EVENTS)
            .iter()
            .map(|event| event.last_event_id.parse().unwrap())
            .collect();
        assert_eq!(ids, expected, "event stream on loop {index}");
    }
    // Long-polls from the position before the first event, on every loop,
    // walk the same ids.
    for (index, probed) in polls.iter_mut().enumerate() {
        let mut ids = Vec::new();
        let mut after = expected[0] - 1;
        while ids.len() < EVENTS {
            write!(
                probed.stream,
                "GET /longpoll?after={after} HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .unwrap();
            let answer = read_response(&mut probed.stream, &mut probed.buffered).text();
            let page: Vec<u64> = answer
                .split("{\"id\":")
                .skip(1)
                .map(|rest| rest[..rest.find(',').unwrap()].parse().unwrap())
                .collect();
            assert!(!page.is_empty(), "a long-poll with news answers at once");
            after = *page.last().unwrap();
            ids.extend(page);
        }
        assert_eq!(ids, expected, "long-polls on loop {index}");
    }
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn a_held_long_poll_on_another_loop_is_answered_by_a_publish() {
    let server = Loops::start(2, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut polls = connections_on_every_loop(addr, 2);
    let latest = server
        .handle
        .publish_and_wait(
            server.handle.topic("room").unwrap(),
            None,
            OwnedPayload::Text("before".into()),
        )
        .unwrap();
    for probed in &mut polls {
        write!(
            probed.stream,
            "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .unwrap();
    }
    let (mut publisher, _, _) = socket(addr);
    // Held on both loops (no answer yet), then one publish answers both.
    std::thread::sleep(Duration::from_millis(100));
    publisher.send_text("pub 1");
    for probed in &mut polls {
        let answer = read_response(&mut probed.stream, &mut probed.buffered).text();
        assert!(
            answer.contains(&format!("\"id\":{}", latest + 1)),
            "{answer}"
        );
    }
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn send_and_close_reach_a_connection_on_another_loop() {
    let server = Loops::start(2, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut sockets = one_per_loop(2, || {
        let (ws, loop_index, index) = socket(addr);
        ((ws, index), loop_index)
    });
    let target = sockets[1].1;
    sockets[0].0.send_text(&format!("tell {target} across"));
    assert_eq!(
        sockets[0].0.recv_data(),
        Received::Text("told Ok(())".into())
    );
    assert_eq!(sockets[1].0.recv_data(), Received::Text("across".into()));
    sockets[0].0.send_text(&format!("kick {target}"));
    assert_eq!(sockets[1].0.expect_close(), Some(4000));
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn handle_publishes_and_broadcasts_reach_every_loop() {
    let server = Loops::start(3, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut sockets = sockets_on_every_loop(addr, 3);
    let topic = server.handle.topic("room").unwrap();
    let id = server
        .handle
        .publish_and_wait(topic, None, OwnedPayload::Text("from a thread".into()))
        .unwrap();
    server.handle.broadcast_text("to all").unwrap();
    for ws in &mut sockets {
        let Received::Text(event) = ws.recv_data() else {
            panic!("an event");
        };
        assert_eq!(id_of(&event), id);
        assert_eq!(ws.recv_data(), Received::Text("to all".into()));
    }
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn a_loop_that_falls_behind_catches_up_from_history_with_no_loss_and_no_duplicate() {
    const EVENTS: usize = 200;
    let mut config = config(SharePort::ReusePort);
    // An inbox of two events: parked for the whole burst, loop 1 must overflow.
    config.limits.max_inbox_events = 2;
    let server = Loops::start(2, config);
    let addr = server.addr;
    let mut sockets = sockets_on_every_loop(addr, 2);
    let mut stream = loop {
        let mut probed = probe(addr);
        if probed.loop_index == 1 {
            let parser = start_stream(&mut probed);
            break (probed, parser);
        }
    };
    // Hold loop 1 in a callback, publish a burst on loop 0, let loop 1 go.
    sockets[1].send_text("park");
    assert!(eventually(Duration::from_secs(5), || server
        .shared
        .parked
        .load(Ordering::SeqCst)));
    sockets[0].send_text(&format!("pub {EVENTS}"));
    let last = loop {
        match sockets[0].recv_data() {
            Received::Text(text) if text.starts_with("published ") => {
                break text["published ".len()..].parse::<u64>().unwrap()
            }
            Received::Text(_) => {}
            other => panic!("{other:?}"),
        }
    };
    server.shared.release.store(true, Ordering::SeqCst);
    let expected: Vec<u64> = (last + 1 - EVENTS as u64..=last).collect();
    let ids: Vec<u64> = sse_events(&mut stream.0.stream, &mut stream.1, EVENTS)
        .iter()
        .map(|event| event.last_event_id.parse().unwrap())
        .collect();
    assert_eq!(
        ids, expected,
        "every event once, in order, on the loop that fell behind"
    );
    let mut on_loop_1 = Vec::new();
    while on_loop_1.len() < EVENTS {
        if let Received::Text(text) = sockets[1].recv_data() {
            if text.starts_with('{') {
                on_loop_1.push(id_of(&text));
            }
        }
    }
    assert_eq!(on_loop_1, expected);
    assert!(eventually(Duration::from_secs(5), || {
        get(addr, "/total").text().contains("\"inbox_overflows\":1")
    }));
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn a_panic_in_one_loops_app_closes_only_that_connection() {
    let server = Loops::start(2, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut first = sockets_on_every_loop(addr, 2);
    let (mut neighbour, _, _) = loop {
        let opened = socket(addr);
        if opened.1 == 1 {
            break opened;
        }
    };
    first[1].send_text("panic");
    assert_eq!(first[1].expect_close(), Some(1011));
    for ws in [&mut neighbour, &mut first[0]] {
        ws.send_text("still here");
        assert_eq!(ws.recv_data(), Received::Text("still here".into()));
    }
    server.stop().expect("every loop ends cleanly");
}

#[test]
fn a_shutdown_closes_every_loops_connections_and_run_threads_returns() {
    let server = Loops::start(3, config(SharePort::ReusePort));
    let addr = server.addr;
    let mut sockets = sockets_on_every_loop(addr, 3);
    let mut streams = streams_on_every_loop(addr, 3);
    // A shutdown asked by the last loop's app stops them all.
    sockets[2].send_text("stop");
    for ws in &mut sockets {
        assert_eq!(ws.expect_close(), Some(1001));
    }
    for (probed, _) in &mut streams {
        let rest = read_to_close(&mut probed.stream);
        assert!(String::from_utf8_lossy(&rest).contains("retry:"));
    }
    server.stop().expect("every loop ends cleanly");
}
