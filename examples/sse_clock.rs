//! Server-Sent Events: a plain message, a named event, then the time every 2 s.
//!
//! The Node original writes three kinds of event to each response:
//!
//! ```js
//! res.writeHead(200, { 'Content-Type': 'text/event-stream' });
//! res.write('data: a plain message\n\n');
//! res.write('event: myEve\nretry: 10000\nid: 1\ndata: a named event\n\n');
//! setInterval(() => res.write(`data: ${new Date()}\n\n`), 2000);
//! ```
//!
//! What you will see on the wire (`curl -N http://127.0.0.1:8081/events`):
//!
//! ```text
//! retry: 10000                   ← once, at the start: the reconnection delay
//!
//! id: 1718000000000001           ← every event has an id: its place in the topic
//! data: hello, reader 1          ← no event: line, so the type is "message"
//!
//! id: 1718000000000002
//! event: myEve                   ← a named event: only addEventListener('myEve') sees it
//! data: {"reader":1,"note":"a named event"}
//!
//! id: 1718000000000003
//! data: tick 1: 1718000002 s since 1970
//! ```
//!
//! Two things differ from Node, both because a pushloop stream is a view of a
//! *topic* that every reader shares, not a response you write to:
//! - `retry:` is a stream setting, sent once from `Config::sse_retry_ms`
//!   (WHATWG HTML §9.2.6: the browser's reconnection time in ms).
//! - `id:` is set by the topic on every event, so after a dropped connection
//!   the browser sends `Last-Event-ID` and pushloop replays what it missed.
//!
//! And what Node writes to one response is published here, so every open
//! page also sees the greeting of each new reader.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushloop::app::{App, ConnId, Context, Reply, TimerId, TopicId};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Server};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>sse_clock</title>
<pre id="log"></pre>
<script>
const log = line => document.getElementById('log').textContent += line + '\n';
const source = new EventSource('/events');
source.onopen = () => log('open');
source.onmessage = e => log(`message id=${e.lastEventId} ${e.data}`);
source.addEventListener('myEve', e => log(`myEve   id=${e.lastEventId} ${e.data}`));
source.onerror = () => log('error: the browser reconnects after the retry delay');
</script>"#;

struct Clock {
    clock: TopicId,
    readers: u64,
    ticks: u64,
}

impl App for Clock {
    /// `setInterval(..., 2000)`, one timer for all readers.
    fn start(&mut self, ctx: &mut Context) {
        ctx.set_interval(Duration::from_secs(2));
    }

    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
        match req.path() {
            "/" => Reply::Response(Response::html(200, PAGE)),
            "/events" => {
                self.readers += 1;
                let reader = self.readers;
                let hello = format!("hello, reader {reader}");
                let named = format!("{{\"reader\":{reader},\"note\":\"a named event\"}}");
                // Publishing fails only for an event name with a line break.
                let first = ctx
                    .publish(self.clock, None, &hello)
                    .expect("no event name");
                let _ = ctx.publish(self.clock, Some("myEve"), &named);
                // Stream from just before the greeting: this reader gets both
                // events, then every tick. A reconnecting browser sends the
                // `Last-Event-ID` header (WHATWG HTML §9.2.4), and pushloop
                // resumes from it instead of `after`.
                Reply::EventStream {
                    topics: vec![self.clock],
                    after: Some(first - 1),
                }
            }
            _ => Reply::Response(Response::text(404, "not found\n")),
        }
    }

    /// The timed message: an unnamed event, so `onmessage` gets it.
    fn timer(&mut self, ctx: &mut Context, _: TimerId) {
        self.ticks += 1;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!("tick {}: {secs} s since 1970", self.ticks);
        let _ = ctx.publish(self.clock, None, &text);
    }
}

/// `--addr HOST:PORT` from the command line, else this example's fixed port.
fn addr_from_args(default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != "--addr").skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    // Node's `retry: 10000`: ask browsers to wait 10 s before reconnecting.
    let config = Config {
        sse_retry_ms: 10_000,
        ..Config::default()
    };
    let mut server = Server::bind(addr_from_args("127.0.0.1:8081"), config)?;
    let clock = server.topic("clock").expect("a valid topic name");
    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    println!("open http://{addr}/ or run: curl -N http://{addr}/events");
    server.run(Clock {
        clock,
        readers: 0,
        ticks: 0,
    })
}
