//! The pushloop demo server: rooms (topics) on four transports, one port.
//!
//! ```text
//! cargo run --release -- [--addr 127.0.0.1:6788] [--no-tick] [--tick-ms 2000]
//!                        [--max-connections N] [--max-message-bytes N] [--trace]
//!                        [--threads N] [--no-lab] [--no-deflate | --deflate-takeover]
//!                        [--log-dir DIR] [--fsync always|never|<N>ms]
//!                        [--log-max-bytes N] [--log-max-age S] [--redis URL]
//!                        [--tls-cert FILE --tls-key FILE [--tls-addr HOST:PORT]]
//! ```
//!
//! WebSockets that offer permessage-deflate (browsers do) get it, in the
//! shared mode; `--no-deflate` turns it off, `--deflate-takeover` keeps a
//! compression context per socket instead (see `Config::deflate`).
//!
//! **TLS** (built with `--features tls`): `--tls-cert` (the chain, leaf
//! first, PEM) and `--tls-key` (PEM) serve https:// and wss://. With the TLS
//! flags alone, the demo's one port speaks TLS only (`--tls-addr`, default
//! 127.0.0.1:6788): nothing goes in clear by surprise once a certificate is
//! given. `--addr` adds a plain listener beside it; then `--tls-addr` must be
//! given too, so the two never fight over a port. `SIGHUP` reads the two
//! files again and serves the new pair to new handshakes; open connections
//! keep theirs, and a pair that does not load leaves the old one in place.
//!
//! | route                                   | what                                              |
//! |-----------------------------------------|---------------------------------------------------|
//! | `GET /`                                 | the demo page: the rooms through all four transports |
//! | `GET /echo`                             | WebSocket echo (text and binary), 16 MiB messages |
//! | `GET /chat?topics=a,b&after=ID`         | WebSocket: the rooms' events; what you send is published |
//! | `GET /events?topics=a,b&after=ID`       | SSE; `Last-Event-ID` replays what was missed      |
//! | `POST /publish?topic=a&event=NAME`      | body → one event (text; JSON with `&json=1`; bytes as `application/octet-stream`) |
//! | `GET /poll?topics=a,b&after=ID`         | short poll: events after ID as JSON, at once      |
//! | `GET /longpoll?topics=a,b&after=ID`     | long poll: held until an event after ID, or 25 s  |
//! | `GET /topics`, `DELETE /topics/NAME`    | the rooms; remove one                             |
//! | `GET /stats`, `GET /metrics`            | counters (compression's too) as JSON; Prometheus text |
//! | `GET /lab/events?session=S`             | the page's own connections on the wire, live (`--no-lab`: off) |
//!
//! No `topics` means the room `feed`, so the first version's URLs keep working.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushloop::prelude::*;
use pushloop::server::{LabConfig, TraceOutput};
use pushloop::storage::file_log::{FileLogConfig, FsyncPolicy};
use pushloop::storage::{FileStorage, Storage};

const PAGE: &str = include_str!("page.html");
/// The room of the old URLs, and of the ticks.
const DEFAULT_ROOM: &str = "feed";
/// Rooms that exist from the start (more are made by publishing to them).
const ROOMS: [&str; 3] = [DEFAULT_ROOM, "news", "chat"];

/// The flags, their value names, defaults and meaning: `--help` prints this.
const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--addr HOST:PORT",
        "127.0.0.1:6788 (none with TLS flags alone)",
        "where to listen for plain HTTP",
    ),
    (
        "--no-tick",
        "ticks on",
        "do not publish a tick every --tick-ms",
    ),
    (
        "--tick-ms MS",
        "2000",
        "period of the tick events on the feed room",
    ),
    (
        "--max-connections N",
        "10000",
        "open connections of all transports",
    ),
    (
        "--max-message-bytes N",
        "16777216",
        "largest WebSocket message (Autobahn sends 16 MiB)",
    ),
    (
        "--trace",
        "off",
        "print every head, frame and event with its spec section",
    ),
    (
        "--shutdown-ms MS",
        "5000",
        "on SIGTERM/SIGINT, how long the drain may take",
    ),
    (
        "--threads N",
        "1",
        "event loops, one per thread, on one port (0: one per CPU)",
    ),
    (
        "--no-lab",
        "lab on",
        "no /lab/events: the page shows no wire view, charts of bytes or table",
    ),
    (
        "--log-dir DIR",
        "memory only",
        "keep topic history in an append-only file log in DIR; it survives restarts",
    ),
    (
        "--fsync POLICY",
        "1000ms",
        "file log fsync: always (lose nothing acknowledged on a power cut), \
         <N>ms (lose up to N ms), never (lose what the kernel had not written, ~30 s)",
    ),
    (
        "--log-max-bytes N",
        "67108864",
        "file log retention: bytes of all segments (whole old segments go first)",
    ),
    (
        "--log-max-age S",
        "86400",
        "file log retention: seconds a segment is kept after its newest event (0: no limit)",
    ),
    (
        "--redis URL",
        "off",
        "keep topic history in Redis Streams, shared with every node on the same Redis: \
         redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (cargo feature redis)",
    ),
    ("--quiet", "off", "no operational log lines on stderr"),
    #[cfg(feature = "deflate")]
    (
        "--no-deflate",
        "shared mode",
        "decline permessage-deflate (RFC 7692): the 101 names no extension",
    ),
    #[cfg(feature = "deflate")]
    (
        "--deflate-takeover",
        "shared mode",
        "a compression context per socket: better ratios, ~360 KB per socket",
    ),
    (
        "--tls-cert FILE",
        "no TLS",
        "certificate chain, PEM, leaf first (build with --features tls)",
    ),
    (
        "--tls-key FILE",
        "no TLS",
        "its private key, PEM; SIGHUP reloads both",
    ),
    (
        "--tls-addr HOST:PORT",
        "127.0.0.1:6788 without --addr",
        "where to listen for TLS (https://, wss://)",
    ),
    ("-h, --help", "", "this text"),
];

/// Where the demo listens when no address is given.
const DEFAULT_ADDR: &str = "127.0.0.1:6788";

/// Command-line options.
struct Options {
    /// The plain listener, if any.
    addr: Option<String>,
    /// The TLS listener and its certificate files, if any.
    tls: Option<TlsOptions>,
    tick: Option<Duration>,
    max_connections: Option<usize>,
    max_message_bytes: usize,
    trace: bool,
    shutdown: Option<Duration>,
    quiet: bool,
    threads: usize,
    lab: bool,
    storage: Storage,
    /// permessage-deflate: off, or the mode.
    #[cfg(feature = "deflate")]
    deflate: Option<pushloop::ws::deflate::ServerMode>,
}

/// `--tls-addr`, `--tls-cert`, `--tls-key`.
struct TlsOptions {
    addr: String,
    cert: String,
    key: String,
}

/// What the command line asks for.
enum Command {
    Run(Box<Options>),
    Help,
}

fn usage() -> String {
    let mut text = String::from(
        "pushloop: push to browsers and devices by short poll, long poll, SSE and WebSocket\n\n\
         usage: pushloop [FLAGS]\n\n",
    );
    for (flag, default, what) in FLAGS {
        let default = if default.is_empty() {
            String::new()
        } else {
            format!(" (default: {default})")
        };
        text.push_str(&format!("  {flag:<24} {what}{default}\n"));
    }
    text
}

fn parse_options() -> Result<Command, String> {
    let (mut addr, mut tls_addr, mut tls_cert, mut tls_key) = (None, None, None, None);
    let mut options = Options {
        addr: None,
        tls: None,
        tick: Some(Duration::from_secs(2)),
        max_connections: None,
        max_message_bytes: 16 << 20,
        trace: false,
        shutdown: None,
        quiet: false,
        threads: 1,
        lab: true,
        storage: Storage::Memory,
        #[cfg(feature = "deflate")]
        deflate: Some(pushloop::ws::deflate::ServerMode::Shared),
    };
    let mut log = FileLogConfig::default();
    let mut log_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => addr = Some(value("--addr")?),
            "--tls-addr" => tls_addr = Some(value("--tls-addr")?),
            "--tls-cert" => tls_cert = Some(value("--tls-cert")?),
            "--tls-key" => tls_key = Some(value("--tls-key")?),
            "--no-tick" => options.tick = None,
            "--trace" => options.trace = true,
            "--quiet" => options.quiet = true,
            "--shutdown-ms" => {
                let ms = value("--shutdown-ms")?
                    .parse()
                    .map_err(|_| "--shutdown-ms takes milliseconds")?;
                options.shutdown = Some(Duration::from_millis(ms));
            }
            "--threads" => {
                options.threads = value("--threads")?
                    .parse()
                    .map_err(|_| "--threads takes a number (0: one per CPU)")?;
            }
            "--no-lab" => options.lab = false,
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
                options.max_message_bytes = value("--max-message-bytes")?
                    .parse()
                    .map_err(|_| "--max-message-bytes takes a number")?;
            }
            "--log-dir" => log_dir = Some(value("--log-dir")?),
            "--redis" => options.storage = redis_storage(&value("--redis")?)?,
            "--fsync" => log.fsync = fsync_policy(&value("--fsync")?)?,
            "--log-max-bytes" => {
                log.max_total_bytes = value("--log-max-bytes")?
                    .parse()
                    .map_err(|_| "--log-max-bytes takes a number of bytes")?;
            }
            "--log-max-age" => {
                let seconds: u64 = value("--log-max-age")?
                    .parse()
                    .map_err(|_| "--log-max-age takes seconds (0: no limit)")?;
                log.max_age = (seconds > 0).then(|| Duration::from_secs(seconds));
            }
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    match (log_dir, &options.storage) {
        (Some(dir), Storage::Memory) => {
            options.storage = Storage::File(FileStorage {
                log,
                ..FileStorage::new(dir)
            });
        }
        (Some(_), _) => return Err("--log-dir and --redis: choose one store".into()),
        (None, _) => {}
    }
    options.tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            let addr = match (tls_addr, &addr) {
                (Some(tls_addr), _) => tls_addr,
                // TLS alone: the demo's port speaks TLS.
                (None, None) => DEFAULT_ADDR.into(),
                (None, Some(_)) => {
                    return Err("with --addr and TLS, say where TLS listens: --tls-addr".into())
                }
            };
            Some(TlsOptions { addr, cert, key })
        }
        (None, None) if tls_addr.is_none() => None,
        _ => return Err("TLS needs both --tls-cert FILE and --tls-key FILE".into()),
    };
    options.addr = match (addr, &options.tls) {
        (Some(addr), _) => Some(addr),
        (None, None) => Some(DEFAULT_ADDR.into()),
        (None, Some(_)) => None,
    };
    Ok(Command::Run(Box::new(options)))
}

/// `--redis URL`: the Redis backend, when the binary has it.
fn redis_storage(url: &str) -> Result<Storage, String> {
    #[cfg(feature = "redis")]
    {
        use pushloop::storage::redis::{RedisConfig, RedisUrl};
        let url = RedisUrl::parse(url).map_err(|error| format!("--redis: {error}"))?;
        Ok(Storage::Redis(RedisConfig::new(url)))
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(format!(
            "--redis {url}: this build has no Redis backend (build with --features redis)"
        ))
    }
}

/// `--fsync always|never|<N>ms` (see `pushloop::storage::file_log` for the
/// loss window of each).
fn fsync_policy(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => text
            .strip_suffix("ms")
            .and_then(|ms| ms.parse().ok())
            .map(FsyncPolicy::EveryMillis)
            .ok_or_else(|| format!("--fsync takes always, never or <N>ms, not {text}")),
    }
}

/// The demo application.
struct Demo {
    feed: TopicId,
    tick: Option<Duration>,
    ticks: u64,
    started: Instant,
}

/// What a `/chat` socket keeps: the rooms it follows (the first is where its
/// messages go, unless one starts with `@room `).
struct Chatter {
    rooms: Vec<String>,
}

fn bad_request(reason: &str) -> Reply {
    Reply::Response(Response::text(400, reason))
}

/// `?after=ID`: absent is `None`; anything but a decimal u64 is a 400.
fn cursor(req: &Request) -> Result<Option<u64>, Reply> {
    match req.query_param("after") {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad_request("after must be a decimal event id")),
    }
}

/// `?topics=a,b`: existing rooms only; none given means the feed room.
fn rooms(ctx: &mut Context, req: &Request) -> Result<Vec<TopicId>, String> {
    match req.query_param("topics") {
        None => Ok(vec![ctx
            .find_topic(DEFAULT_ROOM)
            .ok_or("the feed room is gone")?]),
        Some(list) => ctx
            .topics(&list, false)
            .map_err(|error| format!("topics: {error}")),
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Demo {
    /// `POST /publish?topic=a&event=NAME`: the body as text, JSON (`&json=1`
    /// or `Content-Type: application/json`) or bytes
    /// (`Content-Type: application/octet-stream`).
    fn publish(&mut self, ctx: &mut Context, id: ConnId, req: &Request, body: &[u8]) -> Reply {
        let name = req.query_param("topic");
        let topic = match ctx.topic(name.as_deref().unwrap_or(DEFAULT_ROOM)) {
            Ok(topic) => topic,
            Err(error) => return bad_request(&format!("topic: {error}")),
        };
        let content_type = req.header_str("content-type").unwrap_or("");
        let json = req.query_param("json").is_some_and(|v| v == "1")
            || content_type.starts_with("application/json");
        let binary = content_type.starts_with("application/octet-stream");
        let payload = match std::str::from_utf8(body) {
            _ if binary => Payload::Binary(body),
            Ok(text) if json => Payload::Json(text),
            Ok(text) => Payload::Text(text),
            Err(_) => {
                return bad_request(
                    "a text body must be UTF-8 (send bytes as application/octet-stream)",
                )
            }
        };
        let event = req.query_param("event");
        // `{"id":N}` once the store has it (later with Redis), or why not.
        ctx.publish_for(id, topic, event.as_deref(), payload)
    }

    /// Every loop's counters added up, and how the connections are split
    /// over the loops (one number when one loop runs).
    fn stats(&self, ctx: &mut Context) -> Reply {
        let loops = ctx.every_loop_stats();
        let split: Vec<String> = loops
            .iter()
            .map(|stats| stats.connections().to_string())
            .collect();
        let json = format!(
            "{{\"uptime_ms\":{},\"loops\":[{}],\"transports\":{}}}",
            self.started.elapsed().as_millis(),
            split.join(","),
            Stats::sum(&loops).to_json()
        );
        Reply::Response(Response::json(200, json).header("Cache-Control", "no-store"))
    }

    fn topics(&self, ctx: &mut Context) -> Reply {
        let mut json = String::from("{\"topics\":[");
        for (i, name) in ctx.topic_names().iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            // Topic names need no escaping (see `pushloop::feeds::is_topic_name`).
            json.push_str(&format!("\"{name}\""));
        }
        json.push_str("]}");
        Reply::Response(Response::json(200, json).header("Cache-Control", "no-store"))
    }
}

impl App for Demo {
    fn start(&mut self, ctx: &mut Context) {
        // One loop ticks; the ticks reach the others' followers through the feed.
        if ctx.loop_index() == 0 {
            if let Some(period) = self.tick {
                ctx.set_interval(period);
            }
        }
    }

    fn request(&mut self, ctx: &mut Context, id: ConnId, req: &Request, body: &[u8]) -> Reply {
        let after = match cursor(req) {
            Ok(after) => after,
            Err(reply) => return reply,
        };
        // RFC 9110 §9.3.2: HEAD is GET without the body (the session drops it).
        let method = match req.method() {
            "HEAD" => "GET",
            method => method,
        };
        let segments: Vec<_> = req.path_segments().collect();
        let segments: Vec<&str> = segments.iter().map(|s| &**s).collect();
        let topics = |ctx: &mut Context| rooms(ctx, req);
        match (method, segments.as_slice()) {
            ("GET", [""]) => Reply::Response(Response::html(200, PAGE)),
            ("GET", ["echo" | "chat"]) => Reply::Response(
                Response::text(426, "this route speaks WebSocket").header("Upgrade", "websocket"),
            ),
            ("GET", ["events"]) => match topics(ctx) {
                Ok(topics) => Reply::EventStream { topics, after },
                Err(reason) => bad_request(&reason),
            },
            ("GET", ["poll"]) => match topics(ctx) {
                Ok(topics) => Reply::Poll {
                    topics,
                    after: after.unwrap_or(0),
                },
                Err(reason) => bad_request(&reason),
            },
            ("GET", ["longpoll"]) => match topics(ctx) {
                Ok(topics) => Reply::LongPoll {
                    topics,
                    after: after.unwrap_or(0),
                },
                Err(reason) => bad_request(&reason),
            },
            ("POST", ["publish"]) => self.publish(ctx, id, req, body),
            ("GET", ["topics"]) => self.topics(ctx),
            ("DELETE", ["topics", name]) => match ctx.find_topic(name) {
                Some(topic) if topic != self.feed => {
                    ctx.remove_topic(topic);
                    Reply::Response(Response::new(204))
                }
                Some(_) => bad_request("the feed room stays"),
                None => Reply::Response(Response::text(404, "no such topic")),
            },
            ("GET", ["stats"]) => self.stats(ctx),
            ("GET", ["metrics"]) => Reply::Response(
                Response::new(200)
                    // The Prometheus text exposition format, version 0.0.4.
                    .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                    .header("Cache-Control", "no-store")
                    .body(ctx.total_stats().to_prometheus()),
            ),
            // RFC 9110 §15.5.6: a 405 lists the methods the resource has.
            (_, ["" | "events" | "poll" | "longpoll" | "topics" | "stats" | "metrics"]) => {
                Reply::Response(
                    Response::text(405, "method not allowed").header("Allow", "GET, HEAD"),
                )
            }
            (_, ["publish"]) => {
                Reply::Response(Response::text(405, "method not allowed").header("Allow", "POST"))
            }
            (_, ["topics", _]) => {
                Reply::Response(Response::text(405, "method not allowed").header("Allow", "DELETE"))
            }
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, ctx: &mut Context, id: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/echo" => Upgrading::Accept(Accept::new()),
            "/chat" => {
                let after = match cursor(req) {
                    Ok(after) => after,
                    Err(_) => {
                        return Upgrading::Reject(Response::text(
                            400,
                            "after must be a decimal event id",
                        ))
                    }
                };
                let topics = match rooms(ctx, req) {
                    Ok(topics) => topics,
                    Err(reason) => return Upgrading::Reject(Response::text(400, &reason)),
                };
                let rooms = req.query_param("topics").map_or_else(
                    || vec![DEFAULT_ROOM.to_owned()],
                    |list| list.split(',').map(str::to_owned).collect(),
                );
                ctx.set_data(id, Chatter { rooms });
                let mut accept = Accept::new();
                for topic in topics {
                    accept = accept.subscribe(topic, after);
                }
                Upgrading::Accept(accept)
            }
            _ => Upgrading::Reject(Response::text(404, "not found")),
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let Some(chatter) = ctx.data::<Chatter>(id) else {
            // An /echo socket.
            let _ = ctx.send(id, message);
            return;
        };
        let default_room = chatter.rooms.first().cloned().unwrap_or_default();
        let (room, payload) = match message {
            // "@news hello" goes to the room "news"; anything else to the first room.
            Message::Text(text) => match text.strip_prefix('@').and_then(|t| t.split_once(' ')) {
                Some((room, rest)) => (room.to_owned(), Payload::Text(rest)),
                None => (default_room, Payload::Text(text)),
            },
            Message::Binary(bytes) => (default_room, Payload::Binary(bytes)),
        };
        let published = match ctx.find_topic(&room) {
            Some(topic) => ctx
                .publish_later(topic, Some("chat"), payload, None)
                .map_err(|error| error.to_string()),
            None => Err(format!("no room {room}")),
        };
        if let Err(reason) = published {
            // Too big once encoded, or no such room: say so, keep the socket.
            let mut error = b"{\"error\":".to_vec();
            pushloop::json::write_str(&mut error, &reason);
            error.push(b'}');
            let _ = ctx.send(id, Message::Text(&String::from_utf8_lossy(&error)));
        }
    }

    fn timer(&mut self, ctx: &mut Context, _: TimerId) {
        self.ticks += 1;
        let data = format!("{{\"tick\":{},\"time\":{}}}", self.ticks, unix_ms());
        let _ = ctx.publish_later(self.feed, Some("tick"), Payload::Text(&data), None);
    }
}

/// The certificate being served, kept for `SIGHUP` (its files are read again).
#[cfg(feature = "tls")]
type Certificate = Option<pushloop::tls::TlsConfig>;
#[cfg(not(feature = "tls"))]
type Certificate = ();

/// Binds what the options ask for: a plain listener, a TLS one, or both.
#[cfg(feature = "tls")]
fn listen(options: &Options, mut config: Config) -> Result<(Server, Certificate), String> {
    let cannot = |addr: &str, error: std::io::Error| format!("cannot listen on {addr}: {error}");
    let Some(tls) = &options.tls else {
        let addr = options.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        let server = Server::bind(addr, config).map_err(|error| cannot(addr, error))?;
        return Ok((server, None));
    };
    let certificate = pushloop::tls::TlsConfig::from_files(&tls.cert, &tls.key)
        .map_err(|error| format!("TLS certificate: {error}"))?;
    config.tls = Some(certificate.clone());
    let server = match &options.addr {
        Some(addr) => {
            let mut server = Server::bind(addr.as_str(), config).map_err(|e| cannot(addr, e))?;
            server
                .add_tls_listener(tls.addr.as_str())
                .map_err(|error| cannot(&tls.addr, error))?;
            server
        }
        None => Server::bind_tls(tls.addr.as_str(), config).map_err(|e| cannot(&tls.addr, e))?,
    };
    Ok((server, Some(certificate)))
}

/// Binds the plain listener; TLS flags need the `tls` feature.
#[cfg(not(feature = "tls"))]
fn listen(options: &Options, config: Config) -> Result<(Server, Certificate), String> {
    if let Some(tls) = &options.tls {
        return Err(format!(
            "cannot serve TLS on {} with {} and {}: this pushloop was built without TLS \
             (cargo build --release --features tls)",
            tls.addr, tls.cert, tls.key
        ));
    }
    let addr = options.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    let server =
        Server::bind(addr, config).map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    Ok((server, ()))
}

/// SIGINT/SIGTERM shut down gracefully; with TLS, SIGHUP reloads the
/// certificate files on the signal thread (off the loop) and hands the new
/// pair to the loop. A pair that does not load leaves the old one serving.
fn handle_signals(server: &Server, certificate: Certificate) -> std::io::Result<()> {
    #[cfg(feature = "tls")]
    if let Some(certificate) = certificate {
        let handle = server.handle();
        return signal::shutdown_on_signals_reload_on_hangup(server.handle(), move || {
            match certificate.reload_from_files() {
                Ok(reloaded) => match handle.reload_tls(reloaded) {
                    Ok(()) => eprintln!("pushloop: SIGHUP: certificate reloaded"),
                    Err(error) => eprintln!("pushloop: SIGHUP: {error}"),
                },
                Err(error) => {
                    eprintln!("pushloop: SIGHUP: keeping the old certificate: {error}")
                }
            }
        });
    }
    #[cfg(not(feature = "tls"))]
    let () = certificate;
    signal::shutdown_on_signals(server.handle())
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("pushloop: {message}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.limits.max_message_bytes = options.max_message_bytes;
    config.limits.max_frame_bytes = options.max_message_bytes;
    // An echo of a 16 MiB message queued behind the previous one is no slow
    // reader (Autobahn sends them back to back). HTTP input keeps pausing at
    // the default `max_queued_answer_bytes` (64 KiB), whatever this is.
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
    if let Some(shutdown) = options.shutdown {
        config.limits.shutdown_timeout = shutdown;
    }
    config.log = !options.quiet;
    config.storage = options.storage.clone();
    if options.lab {
        // The page's wire view: its own connections' trace lines (see
        // `pushloop::engine::lab`).
        config.lab = Some(LabConfig::default());
    }
    let (mut server, certificate) = match listen(&options, config) {
        Ok(listening) => listening,
        Err(message) => {
            eprintln!("pushloop: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = handle_signals(&server, certificate) {
        eprintln!("pushloop: cannot install signal handling: {error}");
    }
    let mut feed = None;
    for room in ROOMS {
        match server.topic(room) {
            Ok(topic) if room == DEFAULT_ROOM => feed = Some(topic),
            Ok(_) => {}
            Err(error) => {
                eprintln!("pushloop: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(feed) = feed else {
        return ExitCode::FAILURE;
    };
    if options.addr.is_some() {
        match server.local_addr() {
            Ok(addr) => println!(
                "pushloop: serving the demo on http://{addr}/ (WebSocket echo at ws://{addr}/echo)"
            ),
            Err(error) => eprintln!("pushloop: {error}"),
        }
    }
    #[cfg(feature = "tls")]
    if let Some(addr) = server.tls_addr() {
        println!(
            "pushloop: serving the demo on https://{addr}/ (WebSocket echo at wss://{addr}/echo)"
        );
    }
    let started = Instant::now();
    let demo = || Demo {
        feed,
        tick: options.tick,
        ticks: 0,
        started,
    };
    match server.run_threads(options.threads, demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushloop: {error}");
            ExitCode::FAILURE
        }
    }
}
