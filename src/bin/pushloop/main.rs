//! The pushloop demo server: one feed, four transports, one port.
//!
//! ```text
//! cargo run --release -- [--addr 127.0.0.1:6788] [--no-tick] [--tick-ms 2000]
//!                        [--max-connections N] [--max-message-bytes N] [--trace]
//!                        [--no-deflate | --deflate-takeover]
//! ```
//!
//! WebSockets that offer permessage-deflate (browsers do) get it, in the
//! shared mode; `--no-deflate` turns it off, `--deflate-takeover` keeps a
//! compression context per socket instead (see `Config::deflate`).
//!
//! | route                    | what                                                    |
//! |--------------------------|---------------------------------------------------------|
//! | `GET /`                  | the demo page: the feed through all four transports     |
//! | `GET /echo`              | WebSocket echo (text and binary), 16 MiB messages       |
//! | `GET /chat?after=ID`     | WebSocket chat: feed events in, messages published out  |
//! | `GET /events?after=ID`   | SSE stream of the feed; `Last-Event-ID` replays         |
//! | `POST /publish?event=N`  | body → one event on the feed (1 MiB limit → 413)        |
//! | `GET /poll?after=ID`     | short poll: events after ID as JSON, at once            |
//! | `GET /longpoll?after=ID` | long poll: held until an event after ID, or 25 s        |
//! | `GET /stats`             | counters per transport, and compression's, as JSON      |

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TimerId, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::TraceOutput;
use pushloop::server::{signal, Config, Server};
use pushloop::ws::close::CloseCode;
use pushloop::ws::handshake::Upgrade;

const PAGE: &str = include_str!("page.html");
#[cfg(feature = "deflate")]
const USAGE: &str = "usage: pushloop [--addr HOST:PORT] [--no-tick] [--tick-ms MS] \
[--max-connections N] [--max-message-bytes N] [--trace] [--no-deflate | --deflate-takeover]";
#[cfg(not(feature = "deflate"))]
const USAGE: &str = "usage: pushloop [--addr HOST:PORT] [--no-tick] [--tick-ms MS] \
[--max-connections N] [--max-message-bytes N] [--trace]";

/// Command-line options.
struct Options {
    addr: String,
    tick: Option<Duration>,
    max_connections: Option<usize>,
    max_message_bytes: usize,
    trace: bool,
    /// permessage-deflate: off, or the mode.
    #[cfg(feature = "deflate")]
    deflate: Option<pushloop::ws::deflate::ServerMode>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:6788".into(),
        tick: Some(Duration::from_secs(2)),
        max_connections: None,
        // Autobahn's largest cases send 16 MiB messages to /echo.
        max_message_bytes: 16 << 20,
        trace: false,
        #[cfg(feature = "deflate")]
        deflate: Some(pushloop::ws::deflate::ServerMode::Shared),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => options.addr = value("--addr")?,
            "--no-tick" => options.tick = None,
            "--trace" => options.trace = true,
            #[cfg(feature = "deflate")]
            "--no-deflate" => options.deflate = None,
            #[cfg(feature = "deflate")]
            "--deflate-takeover" => {
                options.deflate = Some(pushloop::ws::deflate::ServerMode::ContextTakeover)
            }
            "--tick-ms" => {
                let ms = value("--tick-ms")?
                    .parse()
                    .map_err(|_| "--tick-ms takes milliseconds")?;
                options.tick = Some(Duration::from_millis(ms));
            }
            "--max-connections" => {
                let n = value("--max-connections")?
                    .parse()
                    .map_err(|_| "--max-connections takes a number")?;
                options.max_connections = Some(n);
            }
            "--max-message-bytes" => {
                let n = value("--max-message-bytes")?
                    .parse()
                    .map_err(|_| "--max-message-bytes takes a number")?;
                options.max_message_bytes = n;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The demo application.
struct Demo {
    feed: TopicId,
    /// Sockets on `/chat` (the others are on `/echo`).
    chatters: HashSet<ConnId>,
    tick: Option<Duration>,
    ticks: u64,
    started: Instant,
}

/// `?after=ID`: absent is `None`; anything but a decimal u64 is a 400.
fn cursor(req: &Request) -> Result<Option<u64>, Reply> {
    match req.query_param("after") {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| Reply::Response(Response::text(400, "after must be a decimal event id"))),
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Demo {
    fn publish(&mut self, req: &Request, body: &[u8], ctx: &mut Context) -> Reply {
        let Ok(data) = std::str::from_utf8(body) else {
            return Reply::Response(Response::text(400, "the body must be UTF-8 text"));
        };
        match ctx.publish(self.feed, req.query_param("event"), data) {
            Ok(id) => Reply::Response(Response::json(200, format!("{{\"id\":{id}}}"))),
            Err(_) => Reply::Response(Response::text(
                400,
                "the event name must not contain line breaks",
            )),
        }
    }

    fn stats(&self, ctx: &mut Context) -> Reply {
        let json = format!(
            "{{\"uptime_ms\":{},\"transports\":{}}}",
            self.started.elapsed().as_millis(),
            ctx.stats().to_json()
        );
        Reply::Response(Response::json(200, json).header("Cache-Control", "no-store"))
    }
}

impl App for Demo {
    fn start(&mut self, ctx: &mut Context) {
        if let Some(period) = self.tick {
            ctx.set_interval(period);
        }
    }

    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, body: &[u8]) -> Reply {
        let after = match cursor(req) {
            Ok(after) => after,
            Err(reply) => return reply,
        };
        match (req.method(), req.path()) {
            ("GET", "/") => Reply::Response(Response::html(200, PAGE)),
            ("GET", "/echo" | "/chat") => Reply::Response(
                Response::text(426, "this route speaks WebSocket").header("Upgrade", "websocket"),
            ),
            ("GET", "/events") => Reply::EventStream {
                topics: vec![self.feed],
                after,
            },
            ("POST", "/publish") => self.publish(req, body, ctx),
            ("GET", "/poll") => Reply::Poll {
                topics: vec![self.feed],
                after: after.unwrap_or(0),
            },
            ("GET", "/longpoll") => Reply::LongPoll {
                topics: vec![self.feed],
                after: after.unwrap_or(0),
            },
            ("GET", "/stats") => self.stats(ctx),
            (_, "/" | "/events" | "/publish" | "/poll" | "/longpoll" | "/stats") => {
                Reply::Response(Response::text(405, "method not allowed"))
            }
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, id: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/echo" => Upgrading::Accept(Accept::new()),
            "/chat" => match cursor(req) {
                Ok(after) => {
                    self.chatters.insert(id);
                    Upgrading::Accept(Accept::new().subscribe(self.feed, after))
                }
                Err(_) => {
                    Upgrading::Reject(Response::text(400, "after must be a decimal event id"))
                }
            },
            _ => Upgrading::Reject(Response::text(404, "not found")),
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        if !self.chatters.contains(&id) {
            let _ = ctx.send(id, message);
        } else if let Message::Text(text) = message {
            let _ = ctx.publish(self.feed, Some("chat"), text);
        }
    }

    fn close(&mut self, _: &mut Context, id: ConnId, _: CloseCode, _: &str) {
        self.chatters.remove(&id);
    }

    fn timer(&mut self, ctx: &mut Context, _: TimerId) {
        self.ticks += 1;
        let data = format!("{{\"tick\":{},\"time\":{}}}", self.ticks, unix_ms());
        let _ = ctx.publish(self.feed, Some("tick"), &data);
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.limits.max_message_bytes = options.max_message_bytes;
    config.limits.max_frame_bytes = options.max_message_bytes;
    config.limits.max_queued_bytes = options.max_message_bytes + (1 << 20);
    if let Some(max) = options.max_connections {
        config.limits.max_connections = max;
    }
    if options.trace {
        config.trace = Some(TraceOutput(Box::new(std::io::stdout())));
    }
    #[cfg(feature = "deflate")]
    {
        config.deflate = options.deflate.map(|mode| pushloop::server::Deflate {
            mode,
            ..Default::default()
        });
    }
    let mut server = match Server::bind(options.addr.as_str(), config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("pushloop: cannot listen on {}: {error}", options.addr);
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = signal::shutdown_on_signals(server.handle()) {
        eprintln!("pushloop: cannot install signal handling: {error}");
    }
    let feed = match server.topic("feed") {
        Ok(feed) => feed,
        Err(error) => {
            eprintln!("pushloop: {error}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => println!(
            "pushloop: serving the demo on http://{addr}/ (WebSocket echo at ws://{addr}/echo)"
        ),
        Err(error) => eprintln!("pushloop: {error}"),
    }
    let demo = Demo {
        feed,
        chatters: HashSet::new(),
        tick: options.tick,
        ticks: 0,
        started: Instant::now(),
    };
    match server.run(demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushloop: {error}");
            ExitCode::FAILURE
        }
    }
}
