//! A gateway on one thread: the loop follows an upstream feed through an
//! outbound WebSocket (`Context::connect`) and republishes it to its own
//! clients, by SSE and by WebSocket — no second runtime, no second thread.
//!
//! ```text
//! cargo run --release &                                     # the demo server on :6788
//! cargo run --features client --example gateway -- \
//!     --upstream 'ws://127.0.0.1:6788/chat?topics=demo' --addr 127.0.0.1:6790
//! curl -N http://127.0.0.1:6790/events                      # what the upstream publishes
//! ```
//!
//! - Each upstream message becomes an event of the local topic `upstream`:
//!   a JSON message (a pushloop feed event, `{"id":…,"topic":…,"data":…}`)
//!   as its JSON data, any other text as text, bytes as bytes. Local ids are
//!   the gateway's own: `GET /events` resumes with `Last-Event-ID` (or
//!   `?after=ID`), `GET /chat` (WebSocket) with `?after=ID`.
//! - What a local WebSocket client sends goes up the link (a pushloop `/chat`
//!   publishes it, and it comes back down as an event); while the link is
//!   down the client is told so.
//! - The link's life is published too, as events of type `link`: `open`,
//!   `closed CODE REASON`, `failed: WHY; retry in N ms` or `failed: WHY;
//!   given up`.
//! - The link reconnects with backoff when the upstream goes away, and
//!   resumes its feed with `?after=` the last upstream event it saw, so
//!   nothing the upstream published meanwhile is lost.

use std::time::Duration;

use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TopicId, Upgrading};
use pushloop::client::ws::{WsConfig, WsError};
use pushloop::feeds::{Payload, PublishError};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Server};
use pushloop::ws::close::CloseCode;
use pushloop::ws::handshake::Upgrade;

const DEFAULT_ADDR: &str = "127.0.0.1:6790";
const DEFAULT_UPSTREAM: &str = "ws://127.0.0.1:6788/chat?topics=demo";

struct Gateway {
    upstream_url: String,
    /// The link, once made (`None` if the URL was refused).
    upstream: Option<ConnId>,
    /// Where everything is republished.
    topic: TopicId,
}

impl Gateway {
    /// Publishes the link's news for the local clients (and the terminal).
    fn link_news(&self, ctx: &mut Context, news: &str) {
        println!("upstream: {news}");
        let _ = ctx.publish(self.topic, Some("link"), news);
    }

    /// The cursor a local client asked for with `?after=ID`, if any.
    fn after(req: &Request) -> Option<u64> {
        req.query_param("after")?.parse().ok()
    }
}

impl App for Gateway {
    fn start(&mut self, ctx: &mut Context) {
        let config = WsConfig {
            resume_feed: true,
            ..WsConfig::default()
        };
        match ctx.connect(&self.upstream_url, config) {
            Ok(link) => self.upstream = Some(link),
            Err(error) => eprintln!("{}: {error}", self.upstream_url),
        }
    }

    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &[u8]) -> Reply {
        match req.path() {
            "/events" => Reply::EventStream {
                topics: vec![self.topic],
                after: Gateway::after(req),
            },
            "/" => Reply::Response(Response::text(
                200,
                "GET /events (SSE) or /chat (WebSocket): the upstream, republished\n",
            )),
            _ => Reply::Response(Response::text(404, "not found\n")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/chat" => Upgrading::Accept(Accept::new().subscribe(self.topic, Gateway::after(req))),
            _ => Upgrading::Reject(Response::text(404, "not found\n")),
        }
    }

    fn open(&mut self, ctx: &mut Context, id: ConnId) {
        if Some(id) == self.upstream {
            self.link_news(ctx, "open");
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let Some(upstream) = self.upstream else {
            return;
        };
        if id != upstream {
            // A local client speaks: up the link it goes.
            if ctx.send(upstream, message).is_err() {
                let _ = ctx.send(id, Message::Text("the upstream is down; not sent"));
            }
            return;
        }
        let published = match message {
            // A JSON message stays JSON, so local clients parse it once.
            Message::Text(text) => {
                match ctx.publish_payload(self.topic, None, Payload::Json(text), None) {
                    Err(PublishError::BadJson) => ctx.publish(self.topic, None, text),
                    other => other,
                }
            }
            Message::Binary(bytes) => {
                ctx.publish_payload(self.topic, None, Payload::Binary(bytes), None)
            }
        };
        if let Err(error) = published {
            eprintln!("not republished: {error}");
        }
    }

    fn close(&mut self, ctx: &mut Context, id: ConnId, code: CloseCode, reason: &str) {
        if Some(id) == self.upstream {
            self.link_news(ctx, &format!("closed {} {reason}", code.0));
        }
    }

    fn connect_failed(
        &mut self,
        ctx: &mut Context,
        _: ConnId,
        error: &WsError,
        retry: Option<Duration>,
    ) {
        let then = match retry {
            Some(delay) => format!("retry in {} ms", delay.as_millis()),
            None => "given up".to_owned(),
        };
        self.link_news(ctx, &format!("failed: {error}; {then}"));
    }
}

/// The value after `--name`, or `default`.
fn arg(name: &str, default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != name).skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    if std::env::args().any(|arg| arg == "-h" || arg == "--help") {
        println!("usage: gateway [--addr {DEFAULT_ADDR}] [--upstream {DEFAULT_UPSTREAM}]");
        return Ok(());
    }
    let mut server = Server::bind(arg("--addr", DEFAULT_ADDR), Config::default())?;
    let topic = server
        .topic("upstream")
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    let upstream_url = arg("--upstream", DEFAULT_UPSTREAM);
    println!("following {upstream_url}: curl -N http://{addr}/events");
    server.run(Gateway {
        upstream_url,
        upstream: None,
        topic,
    })
}
