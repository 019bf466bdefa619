//! `--trace` output: every head, frame (with its fields), message, close step,
//! SSE event and long-poll hold/wake, one greppable line each.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::TraceOutput;
use pushloop::ws::handshake::Upgrade;

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Traced {
    topic: TopicId,
}

impl App for Traced {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, _: &[u8]) -> Reply {
        match req.path() {
            "/events" => Reply::EventStream {
                topics: vec![self.topic],
                after: None,
            },
            "/longpoll" => Reply::LongPoll {
                topics: vec![self.topic],
                after: req
                    .query_param("after")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
            },
            "/publish" => {
                let id = ctx
                    .publish(self.topic, Some("greet"), "hi\nthere")
                    .unwrap_or(0);
                Reply::Response(Response::text(200, &id.to_string()))
            }
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

#[test]
fn trace_annotates_heads_frames_closes_events_and_long_polls() {
    let captured = Captured::default();
    let mut config = quick_config();
    config.trace = Some(TraceOutput(Box::new(captured.clone())));
    let server = serve(config, |server| Traced {
        topic: server.topic("t").expect("a valid topic name"),
    });

    let mut socket = WsClient::connect(server.addr, "/echo");
    // RFC 6455 §5.7: the masked "Hello".
    socket.send_raw(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(socket.recv_data(), Received::Text("Hello".into()));
    socket.send_close(1000, "bye");
    socket.expect_close();

    let latest: u64 = get(server.addr, "/publish").text().parse().unwrap();
    let mut held = connect(server.addr);
    write!(
        held,
        "GET /longpoll?after={latest} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    get(server.addr, "/publish");
    read_response(&mut held, &mut Vec::new());
    drop(stream);
    server.stop().unwrap();

    let trace = captured.text();
    let expect = [
        "← http    GET /echo HTTP/1.1",
        "→ http    HTTP/1.1 101 Switching Protocols",
        "RFC 6455 §4.2.2",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "← frame   FIN=1 RSV=000 op=0x1 text   MASK=1 key=37fa213d len=5 (7-bit)",
        "← text    5 bytes \"Hello\"",
        "→ frame   FIN=1 RSV=000 op=0x1 text   MASK=0 len=5 (7-bit) \"Hello\"",
        "← close   1000 normal closure \"bye\"",
        "websocket open → closed",
        "code=1000 normal closure",
        "· hold    long-poll held after=",
        "· wake    long-poll answered",
        "→ sse     retry=2000",
        "event=greet data=hi data=there",
        "WHATWG HTML §9.2.6",
    ];
    for line in expect {
        assert!(trace.contains(line), "missing {line:?} in trace:\n{trace}");
    }
    assert!(
        trace.lines().all(|line| line.len() > 20),
        "one event per line"
    );
}

#[test]
fn length_encodings_are_named() {
    let captured = Captured::default();
    let mut config = quick_config();
    config.trace = Some(TraceOutput(Box::new(captured.clone())));
    let server = serve(config, |server| Traced {
        topic: server.topic("t").expect("a valid topic name"),
    });
    let mut socket = WsClient::connect(server.addr, "/echo");
    socket.send_binary(&[1; 256]);
    assert_eq!(socket.recv_data(), Received::Binary(vec![1; 256]));
    socket.send_binary(&vec![2; 65536]);
    assert_eq!(socket.recv_data(), Received::Binary(vec![2; 65536]));
    server.stop().unwrap();
    let trace = captured.text();
    assert!(trace.contains("len=256 (16-bit)"), "{trace}");
    assert!(trace.contains("len=65536 (64-bit)"), "{trace}");
}
