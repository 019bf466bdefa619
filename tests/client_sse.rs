//! The blocking SSE client against small hand-written servers on
//! `127.0.0.1:0`, one `std::net` thread each: every transport shape (plain,
//! `Content-Length`, chunked), `retry:`, `Last-Event-ID` on reconnect, 204,
//! refusals, limits, timeouts, a server restart, giving up.
//!
//! Nothing here waits without a bound: servers accept within [`WAIT`] or
//! panic, the client's reads time out after [`READ_TIMEOUT`], its policy gives
//! up after a few attempts, and every iteration takes a bounded count.
#![cfg(feature = "client")]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pushloop::client::backoff::ReconnectPolicy;
use pushloop::client::random::Random;
use pushloop::client::sse::{ClientEvent, Disconnect, SseClient, SseConfig, SseError};
use pushloop::client::transport::{Connect, TcpConnector};
use pushloop::client::url::Url;
use pushloop::http::response_head::ResponseError;
use pushloop::sse::{ParsedEvent, StreamError};

/// How long a test server waits for the client to connect or send.
const WAIT: Duration = Duration::from_secs(5);

/// The client's read timeout in these tests.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

const MS: Duration = Duration::from_millis(1);

/// The head of a plain event stream, without its blank line.
const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";

type Item = Result<ClientEvent, SseError>;

/// A test server's thread; joined (and its panic raised) by [`Server::join`].
struct Server(JoinHandle<()>);

impl Server {
    fn start(listener: TcpListener, script: impl FnOnce(TcpListener) + Send + 'static) -> Server {
        Server(thread::spawn(move || script(listener)))
    }

    fn join(self) {
        if let Err(panic) = self.0.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Accepts one connection within [`WAIT`] and reads its request head.
fn accept(listener: &TcpListener) -> (TcpStream, String) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(5 * MS)
            }
            Err(e) => panic!("no connection within {WAIT:?}: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        (&stream).read_exact(&mut byte).expect("the request head");
        head.push(byte[0]);
        assert!(head.len() < 8192, "request head too long");
    }
    (stream, String::from_utf8(head).expect("UTF-8 request head"))
}

/// True when nobody connects within `time`.
fn no_connection_within(listener: &TcpListener, time: Duration) -> bool {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + time;
    while Instant::now() < deadline {
        if listener.accept().is_ok() {
            return false;
        }
        thread::sleep(5 * MS);
    }
    true
}

/// Writes `parts` one by one, each flushed and a little apart, so the client
/// reads them in separate reads.
fn send(mut stream: &TcpStream, parts: &[&str]) {
    for part in parts {
        stream.write_all(part.as_bytes()).expect("write to client");
        stream.flush().expect("flush");
        thread::sleep(5 * MS);
    }
}

/// A reconnect policy fast enough for tests: windows of 20 ms doubling to
/// 100 ms; with the random source fixed at one half, delays are exactly
/// `retry + 10, 20, 40, 50, 50, ... ms`.
fn quick() -> SseConfig {
    SseConfig {
        max_line_bytes: 1024,
        reconnect: ReconnectPolicy {
            initial_delay: 20 * MS,
            max_delay: 100 * MS,
            max_attempts: Some(20),
            max_elapsed: Some(Duration::from_secs(20)),
            stable_after: Duration::from_secs(10),
        },
        ..SseConfig::default()
    }
}

fn connector() -> TcpConnector {
    TcpConnector {
        connect_timeout: READ_TIMEOUT,
        read_timeout: READ_TIMEOUT,
        write_timeout: READ_TIMEOUT,
    }
}

/// A client of `http://{addr}{path}` with the middle of every jitter window.
fn client_with<C: Connect>(
    addr: SocketAddr,
    path: &str,
    config: SseConfig,
    connector: C,
) -> SseClient<C, impl Random> {
    let url = Url::parse(&format!("http://{addr}{path}")).expect("test URL");
    SseClient::with_parts(url, config, connector, || 1u64 << 63).expect("client setup")
}

fn client(addr: SocketAddr, config: SseConfig) -> SseClient<TcpConnector, impl Random> {
    client_with(addr, "/events?topics=a", config, connector())
}

/// Items until one matches `last` (included), at most `max` of them.
fn until<C: Connect, R: Random>(
    client: &mut SseClient<C, R>,
    max: usize,
    last: impl Fn(&Item) -> bool,
) -> Vec<Item> {
    let mut items = Vec::new();
    for item in client.events().take(max) {
        let done = last(&item);
        items.push(item);
        if done {
            break;
        }
    }
    items
}

fn is_reconnecting(item: &Item) -> bool {
    matches!(item, Ok(ClientEvent::Reconnecting { .. }))
}

fn event(event_type: &str, data: &str, id: &str) -> Item {
    Ok(ClientEvent::Event(ParsedEvent {
        event_type: event_type.into(),
        data: data.into(),
        last_event_id: id.into(),
    }))
}

fn reconnecting(delay: Duration, attempt: u32, cause: Disconnect) -> Item {
    Ok(ClientEvent::Reconnecting {
        delay,
        attempt,
        cause,
    })
}

#[test]
fn reads_a_plain_stream_until_the_server_closes() {
    let (listener, addr) = listen();
    let server = Server::start(listener, |listener| {
        let (stream, head) = accept(&listener);
        assert!(
            head.starts_with("GET /events?topics=a HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nHost: {}\r\n", listener.local_addr().unwrap())));
        assert!(head.contains("\r\nAccept: text/event-stream\r\n"), "{head}");
        assert!(head.contains("\r\nCache-Control: no-cache\r\n"), "{head}");
        assert!(!head.contains("Last-Event-ID"), "{head}");
        send(
            &stream,
            &[
                STREAM_HEAD,
                "\r\n: hi\n\ndata: one",
                "\n\nevent: tick\nda",
                "ta: two\n\n",
            ],
        );
    });
    let mut client = client(addr, quick());
    let items = until(&mut client, 10, is_reconnecting);
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "one", ""),
            event("tick", "two", ""),
            reconnecting(10 * MS, 1, Disconnect::Closed),
        ]
    );
    server.join();
}

#[test]
fn reads_a_chunked_stream_and_reconnects_at_its_last_chunk() {
    let (listener, addr) = listen();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = Server::start(listener, move |listener| {
        let (stream, _) = accept(&listener);
        send(
            &stream,
            &[
                STREAM_HEAD,
                "Transfer-Encoding: chunked\r\n\r\n",
                "d\r\nid: 1\ndata",
                ": a\r\n",
                "f\r\n\n\nid: 2\ndata: b\r",
                "\n3;note=x\r\n\n\n\n\r\n",
                "0\r\n\r\n",
            ],
        );
        // The connection stays open until the test has its items: the last
        // chunk alone must end the stream (an EOF, or the client's read
        // timeout, would give another cause).
        let _ = finished.recv_timeout(WAIT);
        drop(stream);
    });
    let mut client = client(addr, quick());
    let items = until(&mut client, 10, is_reconnecting);
    done.send(()).expect("server alive");
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "a", "1"),
            event("message", "b", "2"),
            reconnecting(10 * MS, 1, Disconnect::Closed),
        ]
    );
    assert_eq!(client.last_event_id(), "2");
    server.join();
}

#[test]
fn reads_a_content_length_stream_up_to_its_length() {
    let (listener, addr) = listen();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = Server::start(listener, move |listener| {
        let (stream, _) = accept(&listener);
        let body = "data: only\n\n";
        let head = format!("{STREAM_HEAD}Content-Length: {}\r\n\r\n", body.len());
        send(&stream, &[&head, body]);
        // Open until the test has its items: the length alone ends the stream.
        let _ = finished.recv_timeout(WAIT);
        drop(stream);
    });
    let mut client = client(addr, quick());
    let items = until(&mut client, 10, is_reconnecting);
    done.send(()).expect("server alive");
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "only", ""),
            reconnecting(10 * MS, 1, Disconnect::Closed),
        ]
    );
    server.join();
}

#[test]
fn honours_retry_and_sends_last_event_id_on_reconnect() {
    let (listener, addr) = listen();
    let server = Server::start(listener, |listener| {
        let (stream, first) = accept(&listener);
        assert!(first.contains("\r\nLast-Event-ID: 5\r\n"), "{first}");
        send(
            &stream,
            &[STREAM_HEAD, "\r\nretry: 300\nid: 7\ndata: a\n\n"],
        );
        drop(stream);
        let dropped = Instant::now();
        let (stream, second) = accept(&listener);
        assert!(
            dropped.elapsed() >= 300 * MS,
            "reconnected after {:?}",
            dropped.elapsed()
        );
        assert!(second.contains("\r\nLast-Event-ID: 7\r\n"), "{second}");
        send(&stream, &[STREAM_HEAD, "\r\ndata: b\n\n"]);
    });
    let config = SseConfig {
        last_event_id: "5".into(),
        ..quick()
    };
    let mut client = client(addr, config);
    let items = until(&mut client, 10, |item| item == &event("message", "b", "7"));
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "a", "7"),
            // retry: 300, plus half the first 20 ms window.
            reconnecting(310 * MS, 1, Disconnect::Closed),
            Ok(ClientEvent::Connected),
            event("message", "b", "7"),
        ]
    );
    assert_eq!(client.retry(), Some(300 * MS));
    server.join();
}

#[test]
fn no_content_stops_for_good() {
    let (listener, addr) = listen();
    let server = Server::start(listener, |listener| {
        let (stream, _) = accept(&listener);
        send(&stream, &["HTTP/1.1 204 No Content\r\n\r\n"]);
        drop(stream);
        assert!(
            no_connection_within(&listener, 300 * MS),
            "reconnected after 204"
        );
    });
    let mut client = client(addr, quick());
    let items: Vec<Item> = client.events().take(10).collect();
    assert_eq!(items, [Ok(ClientEvent::Stopped)]);
    assert_eq!(client.events().next(), None);
    server.join();
}

#[test]
fn refusals_and_garbage_fail_with_a_clear_error_and_no_reconnect() {
    let cases = [
        (
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found",
            SseError::Status(404),
            "404",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<!doctype html><p>a page</p>",
            SseError::NotEventStream,
            "text/event-stream",
        ),
        (
            "<!doctype html>\n<p>no status line at all</p>\n\n",
            SseError::Response(ResponseError::NotHttp1),
            "HTTP/1.x",
        ),
        (
            "\u{0}\u{1}binary garbage\r\n\r\n",
            SseError::Response(ResponseError::NotHttp1),
            "HTTP/1.x",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            SseError::Response(ResponseError::BadChunkedBody),
            "chunked",
        ),
    ];
    for (response, expected, says) in cases {
        let (listener, addr) = listen();
        let server = Server::start(listener, move |listener| {
            let (stream, _) = accept(&listener);
            send(&stream, &[response]);
            assert!(no_connection_within(&listener, 200 * MS), "reconnected");
        });
        let mut client = client(addr, quick());
        let items: Vec<Item> = client.events().take(10).collect();
        let error = items
            .last()
            .cloned()
            .expect("an item")
            .expect_err("an error");
        assert_eq!(error, expected, "{response:?}");
        assert!(error.to_string().contains(says), "{error}");
        assert!(items.len() <= 2, "{items:?}");
        server.join();
    }
}

/// A connector that counts the bytes its streams read.
struct Counting {
    inner: TcpConnector,
    read: Arc<AtomicUsize>,
}

struct CountingStream {
    inner: TcpStream,
    read: Arc<AtomicUsize>,
}

impl Connect for Counting {
    type Stream = CountingStream;

    fn connect(&mut self, url: &Url) -> io::Result<CountingStream> {
        Ok(CountingStream {
            inner: self.inner.connect(url)?,
            read: Arc::clone(&self.read),
        })
    }
}

impl Read for CountingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for CountingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn an_over_long_line_is_an_error_not_unbounded_memory() {
    let (listener, addr) = listen();
    let server = Server::start(listener, |listener| {
        let (mut stream, _) = accept(&listener);
        send(&stream, &[STREAM_HEAD, "\r\ndata: fine\n\ndata: "]);
        // 16 MiB of one line; the client stops reading long before the end,
        // so the writes fail or block until it has gone.
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..256 {
            if stream.write_all(&line).is_err() {
                break;
            }
        }
    });
    let read = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: connector(),
        read: Arc::clone(&read),
    };
    let mut client = client_with(addr, "/events", quick(), counting);
    let items: Vec<Item> = client.events().take(10).collect();
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "fine", ""),
            Err(SseError::Stream(StreamError::LineTooLong)),
        ]
    );
    // The limit is 1 KiB; the client read at most a few reads past it.
    let total = read.load(Ordering::Relaxed);
    assert!(total < 64 * 1024, "read {total} bytes");
    drop(client);
    server.join();
}

#[test]
fn a_silent_server_times_out_and_is_reconnected() {
    let (listener, addr) = listen();
    let server = Server::start(listener, |listener| {
        let (stream, _) = accept(&listener);
        send(&stream, &[STREAM_HEAD, "\r\ndata: then silence\n\n"]);
        let (stream2, _) = accept(&listener);
        send(&stream2, &["HTTP/1.1 204 No Content\r\n\r\n"]);
        drop(stream);
    });
    let impatient = TcpConnector {
        read_timeout: 200 * MS,
        ..connector()
    };
    let mut client = client_with(addr, "/events", quick(), impatient);
    let started = Instant::now();
    let items: Vec<Item> = client.events().take(10).collect();
    assert_eq!(
        items,
        [
            Ok(ClientEvent::Connected),
            event("message", "then silence", ""),
            reconnecting(10 * MS, 1, Disconnect::TimedOut),
            Ok(ClientEvent::Stopped),
        ]
    );
    assert!(started.elapsed() >= 200 * MS);
    server.join();
}

#[test]
fn resumes_after_a_server_restart_on_the_same_port() {
    let (listener, addr) = listen();
    let (restarted, restart) = std::sync::mpsc::channel();
    let server = Server::start(listener, move |listener| {
        // The first server: two events, then it goes away, listener first,
        // so the client's reconnects are refused until the second one is up.
        let (stream, _) = accept(&listener);
        send(
            &stream,
            &[STREAM_HEAD, "\r\nid: 1\ndata: a\n\nid: 2\ndata: b\n\n"],
        );
        drop(listener);
        drop(stream);
        thread::sleep(150 * MS);
        // The second server, on the same port (std sets SO_REUSEADDR).
        let listener = TcpListener::bind(addr).expect("rebind the same port");
        restarted.send(()).expect("test alive");
        let (stream, head) = accept(&listener);
        assert!(head.contains("\r\nLast-Event-ID: 2\r\n"), "{head}");
        send(&stream, &[STREAM_HEAD, "\r\nid: 3\ndata: c\n\n"]);
    });
    let mut client = client(addr, quick());
    let items = until(&mut client, 40, |item| item == &event("message", "c", "3"));
    restart.recv_timeout(WAIT).expect("the server restarted");
    assert_eq!(
        &items[..4],
        [
            Ok(ClientEvent::Connected),
            event("message", "a", "1"),
            event("message", "b", "2"),
            reconnecting(10 * MS, 1, Disconnect::Closed),
        ]
    );
    let refused = items
        .iter()
        .filter(|item| {
            matches!(
                item,
                Ok(ClientEvent::Reconnecting {
                    cause: Disconnect::Connect(ErrorKind::ConnectionRefused),
                    ..
                })
            )
        })
        .count();
    assert!(refused >= 1, "{items:?}");
    assert_eq!(
        &items[items.len() - 2..],
        [Ok(ClientEvent::Connected), event("message", "c", "3")]
    );
    server.join();
}

#[test]
fn gives_up_as_the_policy_says() {
    // A port nobody listens on: bound, then closed.
    let (listener, addr) = listen();
    drop(listener);
    let config = SseConfig {
        reconnect: ReconnectPolicy {
            max_attempts: Some(2),
            ..quick().reconnect
        },
        ..quick()
    };
    let mut client = client(addr, config);
    let refused = Disconnect::Connect(ErrorKind::ConnectionRefused);
    let items: Vec<Item> = client.events().take(10).collect();
    assert_eq!(
        items,
        [
            reconnecting(10 * MS, 1, refused),
            reconnecting(20 * MS, 2, refused),
            Err(SseError::GaveUp {
                attempts: 2,
                last: refused
            }),
        ]
    );
}
