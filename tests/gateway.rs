//! `examples/gateway.rs` end to end: the example's binary follows an
//! in-process pushloop upstream through its outbound WebSocket and
//! republishes it to its own clients — an SSE reader and a WebSocket client
//! (pushloop's blocking one) — then outlives a restart of the upstream.
//!
//! Every wait is bounded: the example prints its address within
//! `READ_TIMEOUT`, and every read of its clients times out.
#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use common::example::{self, Example};
use common::upstream::{pushloop, pushloop_on, Pushloop};
use common::EventStream;
use pushloop::client::ws::{Message, WebSocket, WsConfig};
use pushloop::sse::ParsedEvent;
use pushloop::ws::close::CloseCode;

/// The gateway's stream, and the events read but not yet looked at.
struct Reader {
    stream: EventStream,
    unread: Vec<ParsedEvent>,
}

impl Reader {
    /// Everything the gateway republished since it started (`?after=0`).
    fn open(gateway: &Example) -> Reader {
        let stream = EventStream::open(gateway.addr, "/events?after=0", None);
        assert_eq!(stream.head.status, 200);
        Reader {
            stream,
            unread: Vec::new(),
        }
    }

    /// Reads on until an event of type `event_type` whose data holds
    /// `needle` (each read times out, so this is bounded).
    fn until(&mut self, event_type: &str, needle: &str) -> ParsedEvent {
        loop {
            let found = self
                .unread
                .iter()
                .position(|event| event.event_type == event_type && event.data.contains(needle));
            if let Some(at) = found {
                return self.unread.drain(..=at).next_back().expect("found");
            }
            let more = self.stream.events(1);
            self.unread.extend(more);
        }
    }
}

fn gateway_for(upstream: &Pushloop) -> Example {
    let url = format!("ws://{}/chat", upstream.server.addr);
    example::start("gateway", &["--addr", "127.0.0.1:0", "--upstream", &url])
}

#[test]
fn the_gateway_republishes_its_upstream_and_outlives_a_restart() {
    let upstream = pushloop();
    let gateway = gateway_for(&upstream);
    let mut events = Reader::open(&gateway);
    events.until("link", "open");
    // An upstream event reaches the gateway's SSE reader, its JSON whole.
    let feed = upstream.server.handle.topic("feed").unwrap();
    upstream
        .server
        .handle
        .publish(feed, None, "hello from upstream")
        .unwrap();
    let hello = events.until("message", "hello from upstream");
    assert!(hello.data.starts_with("{\"id\":"), "{}", hello.data);
    assert!(!hello.last_event_id.is_empty(), "the gateway's own id");
    // A local WebSocket client's text goes up, is published there, and
    // comes down to every local client.
    let url = format!("ws://{}/chat", gateway.addr);
    let mut local = WebSocket::connect_with(&url, &WsConfig::default()).unwrap();
    local.send_text("say from below").unwrap();
    let down = events.until("message", "from below");
    assert!(down.data.contains("\"event\":\"chat\""), "{}", down.data);
    let to_socket = loop {
        match local.recv_timeout(common::READ_TIMEOUT).unwrap() {
            Some(Message::Text(json)) if json.contains("from below") => break json,
            Some(_) => continue,
            None => panic!("the local socket got nothing"),
        }
    };
    assert!(to_socket.starts_with("{\"id\":"), "{to_socket}");
    // The upstream restarts: the link is closed with 1001, comes back, and
    // what the new upstream publishes arrives as before.
    let addr = upstream.server.addr;
    upstream.server.stop().unwrap();
    events.until("link", "closed 1001");
    let restarted = pushloop_on(addr);
    events.until("link", "open");
    // The new upstream was asked to resume after the last event seen.
    let cursors = restarted.cursors.lock().unwrap().clone();
    assert!(matches!(cursors.as_slice(), [Some(_)]), "{cursors:?}");
    let feed = restarted.server.handle.topic("feed").unwrap();
    restarted
        .server
        .handle
        .publish(feed, None, "after the restart")
        .unwrap();
    events.until("message", "after the restart");
    local.close(CloseCode::NORMAL, "").unwrap();
}

#[test]
fn a_local_client_is_told_when_the_upstream_is_down() {
    let upstream = pushloop();
    let gateway = gateway_for(&upstream);
    let mut events = Reader::open(&gateway);
    events.until("link", "open");
    upstream.server.stop().unwrap();
    events.until("link", "closed 1001");
    // Refused attempts are published with their delay.
    let failed = events.until("link", "failed");
    assert!(failed.data.contains("retry in"), "{}", failed.data);
    let url = format!("ws://{}/chat", gateway.addr);
    let mut local = WebSocket::connect_with(&url, &WsConfig::default()).unwrap();
    local.send_text("anyone?").unwrap();
    // /chat follows the link's events too: a retry that fails meanwhile may
    // be published before the answer.
    let answer = (0..10).find_map(
        |_| match local.recv_timeout(Duration::from_secs(10)).unwrap() {
            Some(Message::Text(text)) if text.contains(r#""event":"link""#) => None,
            other => Some(other),
        },
    );
    assert_eq!(
        answer,
        Some(Some(Message::Text("the upstream is down; not sent".into())))
    );
}
