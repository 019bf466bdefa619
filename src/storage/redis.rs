//! The Redis Streams backend's link: two connections to one Redis, as a
//! sans-IO state machine (feature `redis`).
//!
//! Reading list — redis.io: the RESP spec (`pushloop_proto::resp`), the
//! pages of `AUTH`, `SELECT`, `SCRIPT LOAD`, `EVALSHA`, `XREAD` (`BLOCK`,
//! `COUNT`; "the command returns ... entries with an ID greater than the
//! one specified"), `XREVRANGE` and `XRANGE`; and the "Redis Streams" guide.
//!
//! # Two connections
//!
//! - The **reader** asks `XREAD BLOCK … STREAMS key <last id>` over and over:
//!   Redis answers as soon as an entry is added after the last id it read
//!   (or with a null when the block times out). Every node reads every
//!   event here, its own included, and only then fans it out: so the same
//!   event reaches every node with the same id and in the same order.
//!   After a lost connection it asks again from its last id: no gap.
//! - The **commands** connection carries publishes (`EVALSHA` of
//!   [`PUBLISH_SCRIPT`], which gives the id; see the id mapping there) and
//!   `XRANGE` pages for cursors older than a node's history. Replies come
//!   back in the order of the commands (RESP spec, "pipelining"), so each
//!   one is matched to what is waiting for it by a queue.
//!
//! A blocked `XREAD` holds its connection, hence two.
//!
//! # Driving it
//!
//! The engine owns the sockets (mio, on the loop); this type owns
//! everything else — what to send, what a reply means, when to give up,
//! when to try again. After every call, drain [`Link::poll_event`] to
//! `None` and write [`Link::transmit`] to each socket; wake at
//! [`Link::poll_timeout`] and call [`Link::handle_timeout`].
//!
//! ```text
//!  handle_timeout ─▶ Connect(role)   engine: TcpStream::connect, register
//!  socket writable ─▶ connected(role)   → AUTH, SELECT, then SCRIPT LOAD | XREVRANGE
//!  socket readable ─▶ receive(role, bytes) → Published, Fetched, Top, Events
//!  publish(..) / fetch(..)           → bytes in transmit(Commands)
//!  EOF, error ─▶ closed(role)         → Down until a backoff passes
//!  a bad reply, a timeout            → Disconnect(role): the engine drops the socket
//! ```
//!
//! # Faults
//!
//! A reply that is malformed, too large, of the wrong shape or not awaited
//! closes its connection (RESP cannot be resynchronised), as does an error
//! reply to a command of the connection's setup or to `XREAD` (`NOAUTH`,
//! `WRONGPASS`, `WRONGTYPE`…), and a reply later than `reply_timeout`. A
//! closed connection is opened again after a backoff: a window doubling
//! from `reconnect_first` to `reconnect_max`, of which a random second half
//! is waited (so nodes restarted together do not come back in step; the
//! client's `Backoff` in `src/client/backoff.rs` does the same, but lives
//! behind the `client` feature and the OS's random source). Whatever was
//! waiting for a reply on it fails at once: a publish then gets `503`
//! (its outcome is unknown — Redis may have run the script — but the
//! publisher was not told it succeeded, so nothing acknowledged is lost).
//! Problems are reported once per change ([`super::Health`]).
//!
//! Memory is bounded: a reply by [`RespLimits`], publishes waiting by
//! `max_in_flight`, bytes not yet written by `max_unsent_bytes`.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use pushloop_proto::resp::stream::{
    encode_publish, encode_script_load, published_id, range_entries, read_entries, Event,
    StoredEvent, StreamId,
};
use pushloop_proto::resp::{encode_command, Reply, ReplyParser, RespError, RespLimits};
use pushloop_proto::time::Instant;

pub use pushloop_proto::resp::stream::PUBLISH_SCRIPT;

use super::Health;

/// The stream every node reads, by default: one stream for the whole id
/// space, so a cursor is a position in all topics at once.
pub const DEFAULT_STREAM_KEY: &str = "pushloop:events";

/// The default Redis port (redis.io, "Redis configuration": `port 6379`).
pub const DEFAULT_PORT: u16 = 6379;

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// A name or an address, resolved when the server starts.
    pub host: String,
    /// Default [`DEFAULT_PORT`].
    pub port: u16,
    /// For `AUTH USER PASSWORD` (Redis 6 ACLs); `None` is `AUTH PASSWORD`.
    pub username: Option<String>,
    /// Sent with `AUTH` on each connection when given.
    pub password: Option<String>,
    /// Sent with `SELECT` on each connection when not 0.
    pub db: u32,
}

/// Why a Redis URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// It does not begin with `redis://` (TLS, `rediss://`, is not spoken).
    Scheme,
    /// No host.
    NoHost,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// The database is not a number.
    BadDb,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "a Redis URL begins with redis://",
            UrlError::NoHost => "a Redis URL names a host",
            UrlError::BadPort => "the port must be a number from 1 to 65535",
            UrlError::BadDb => "the database must be a number",
        })
    }
}

impl std::error::Error for UrlError {}

impl RedisUrl {
    /// Reads `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (the form of the
    /// IANA `redis` scheme's registration; no percent-decoding: a password
    /// with `@` or `/` must be set in [`RedisUrl::password`] directly).
    ///
    /// ```
    /// use pushloop::storage::redis::RedisUrl;
    /// let url = RedisUrl::parse("redis://:secret@127.0.0.1:6380/2").unwrap();
    /// assert_eq!((url.host.as_str(), url.port, url.db), ("127.0.0.1", 6380, 2));
    /// assert_eq!(url.password.as_deref(), Some("secret"));
    /// ```
    pub fn parse(text: &str) -> Result<RedisUrl, UrlError> {
        let rest = text.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (authority, db.parse().map_err(|_| UrlError::BadDb)?),
            None => (rest, 0),
        };
        let (credentials, address) = match authority.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, authority),
        };
        let (username, password) = match credentials.map(|c| c.split_once(':')) {
            None => (None, None),
            Some(None) => (None, credentials.map(str::to_owned)),
            Some(Some((user, password))) => (
                (!user.is_empty()).then(|| user.to_owned()),
                Some(password.to_owned()),
            ),
        };
        // An IPv6 address is bracketed: [::1]:6379.
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port: u16 = port.parse().map_err(|_| UrlError::BadPort)?;
                if port == 0 {
                    return Err(UrlError::BadPort);
                }
                (host, port)
            }
            _ => (address, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }
}

/// The Redis backend's settings. Start from [`RedisConfig::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Where Redis is.
    pub url: RedisUrl,
    /// The stream's key. Default [`DEFAULT_STREAM_KEY`].
    pub key: String,
    /// `XADD … MAXLEN ~` this many entries. Default 100 000: at a few hundred
    /// bytes an event, some tens of MB of Redis memory, and a client away
    /// for minutes on a busy feed (hours on a quiet one) still resumes
    /// without a resync.
    pub max_len: u64,
    /// How long one `XREAD` blocks. Default 5 s: an idle link sends a
    /// command that often, so a Redis that stopped answering is noticed
    /// within `read_block + reply_timeout` even when nothing is published.
    pub read_block: Duration,
    /// Entries asked for by one `XREAD` or `XRANGE` (`COUNT`). Default 256:
    /// a burst costs one round trip per 256 events. A reply too large for
    /// `limits` halves it for the next read (down to 1, which always fits),
    /// and each full read doubles it back.
    pub page: usize,
    /// How long a reply may take: a command's, or an `XREAD`'s beyond its
    /// block; also how long TCP may take to connect. Default 5 s: Redis
    /// answers in well under a millisecond, so this means it is stuck or
    /// unreachable, and a publisher hears `503` long before a browser or
    /// proxy gives up (30-60 s).
    pub reply_timeout: Duration,
    /// Publishes sent and not answered yet. Default 4096 (as
    /// `Limits::max_inbox_events`: at 100 000 a second, 40 ms of Redis
    /// latency). Past it a publish gets `503`.
    pub max_in_flight: usize,
    /// Bytes of commands not yet taken by the socket. Default 16 MiB: a few
    /// thousand events queued while Redis reads slowly. Past it a publish
    /// gets `503`.
    pub max_unsent_bytes: usize,
    /// The first reconnect window. Default 100 ms: a Redis restarting
    /// (`SHUTDOWN` then start) is back within a few windows.
    pub reconnect_first: Duration,
    /// The largest reconnect window. Default 5 s: a node notices its Redis is
    /// back within seconds, and a hundred nodes retrying cost Redis
    /// twenty connections a second.
    pub reconnect_max: Duration,
    /// Bounds of one reply (see [`RespLimits`]). The default's 8 MiB bulk
    /// and 64 MiB reply hold the largest default event (4 MiB encoded) with
    /// room; raise them with `HistoryLimits::max_event_bytes`.
    pub limits: RespLimits,
}

impl RedisConfig {
    /// The defaults, for the Redis at `url`.
    pub fn new(url: RedisUrl) -> RedisConfig {
        RedisConfig {
            url,
            key: DEFAULT_STREAM_KEY.to_owned(),
            max_len: 100_000,
            read_block: Duration::from_secs(5),
            page: 256,
            reply_timeout: Duration::from_secs(5),
            max_in_flight: 4096,
            max_unsent_bytes: 16 << 20,
            reconnect_first: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            limits: RespLimits::default(),
        }
    }
}

/// One of the link's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `XREAD BLOCK`, over and over.
    Reader,
    /// Publishes and `XRANGE` pages.
    Commands,
}

impl Role {
    /// Both, in the order of the link's table.
    pub const BOTH: [Role; 2] = [Role::Reader, Role::Commands];

    fn index(self) -> usize {
        match self {
            Role::Reader => 0,
            Role::Commands => 1,
        }
    }

    /// Its name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Commands => "commands",
        }
    }
}

/// Names a publish or a fetch, so its answer finds whoever waits for it.
pub type Ticket = u64;

/// Why a publish or a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The commands connection is not up (or was lost before the answer).
    Down,
    /// Too much is waiting already (`max_in_flight`, `max_unsent_bytes`).
    Busy,
    /// Redis answered with this error (`WRONGTYPE …`, `NOSCRIPT …`).
    Refused(String),
}

/// A page of entries from a cursor on, for a cursor older than history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Whether the stream still holds the cursor itself: then nothing after
    /// it was trimmed away, and `events` follow it exactly.
    pub holds_cursor: bool,
    /// The events after the cursor, oldest first (entries pushloop did not
    /// write are left out).
    pub events: Vec<StoredEvent>,
    /// Where the next page starts, if this one was full.
    pub more_after: Option<u64>,
}

/// What the link asks of the engine, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// Open a TCP connection to Redis for `role`, then call
    /// [`Link::connected`] (or [`Link::closed`] if it fails).
    Connect(Role),
    /// Drop `role`'s socket: the link gave up on it (a bad reply, a timeout).
    Disconnect(Role),
    /// Where the stream stood when the reader first connected (its newest
    /// id; 0 when empty): a node's history starts after it.
    Top(u64),
    /// Events read from the stream, oldest first.
    Events(Vec<StoredEvent>),
    /// A publish's answer: the event's id once Redis has it.
    Published(Ticket, Result<u64, Failure>),
    /// A fetch's answer.
    Fetched(Ticket, Result<Page, Failure>),
}

/// What a reply on a connection will be the answer to, and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    ScriptLoad,
    /// `XREVRANGE key + - COUNT 1`: the newest entry, if any.
    Top,
    Read,
    Publish(Ticket),
    /// `XRANGE key <cursor>-0 + COUNT n`.
    Fetch {
        ticket: Ticket,
        cursor: u64,
        count: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket; the next attempt at `retry_at`.
    Down { retry_at: Instant },
    /// TCP is connecting; given up at `deadline`.
    Connecting { deadline: Instant },
    /// Connected: the setup commands' replies are awaited.
    Opening,
    /// Set up.
    Ready,
}

#[derive(Debug)]
struct Conn {
    state: State,
    out: Vec<u8>,
    input: Vec<u8>,
    parser: ReplyParser,
    waiting: VecDeque<(Expect, Instant)>,
    /// Failed attempts since the connection was last ready.
    attempts: u32,
    /// It was ready once: being ready again is a reconnect.
    was_ready: bool,
}

impl Conn {
    fn new(limits: RespLimits) -> Conn {
        Conn {
            state: State::Down {
                retry_at: Instant::ZERO,
            },
            out: Vec::new(),
            input: Vec::new(),
            parser: ReplyParser::new(limits),
            waiting: VecDeque::new(),
            attempts: 0,
            was_ready: false,
        }
    }

    fn send(&mut self, args: &[&[u8]], expect: Expect, due: Instant) {
        encode_command(args, &mut self.out);
        self.waiting.push_back((expect, due));
    }
}

/// The link to Redis. See the module doc.
#[derive(Debug)]
pub struct Link {
    config: RedisConfig,
    conns: [Conn; 2],
    /// The stream id after which the reader reads; `None` until the
    /// stream's top is known.
    read_after: Option<StreamId>,
    /// The publish script's SHA-1, once `SCRIPT LOAD` answered it.
    sha: Option<Vec<u8>>,
    /// `COUNT` of the next read (see [`RedisConfig::page`]).
    count: usize,
    in_flight: usize,
    reconnects: u64,
    events: VecDeque<LinkEvent>,
    health: Health,
    /// xorshift64* state, for the backoff's jitter.
    random: u64,
}

impl Link {
    /// A link that connects both connections at its first
    /// [`Link::handle_timeout`]; `seed` varies the backoff's jitter.
    pub fn new(config: RedisConfig, seed: u64) -> Link {
        let limits = config.limits;
        Link {
            count: config.page.max(1),
            config,
            conns: [Conn::new(limits), Conn::new(limits)],
            read_after: None,
            sha: None,
            in_flight: 0,
            reconnects: 0,
            events: VecDeque::new(),
            health: Health::default(),
            random: seed | 1,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether both connections are set up.
    pub fn is_up(&self) -> bool {
        self.conns.iter().all(|conn| conn.state == State::Ready)
    }

    /// Publishes sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Times a connection was set up again after it had been.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Problems, reported once per change.
    pub fn health(&mut self) -> &mut Health {
        &mut self.health
    }

    /// How long a publisher refused now should wait: until the commands
    /// connection's next attempt (at least a second: `Retry-After` counts
    /// seconds, RFC 9110 §10.2.3).
    pub fn retry_after(&self, now: Instant) -> Duration {
        let wait = match self.conns[Role::Commands.index()].state {
            State::Down { retry_at } => retry_at.saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        wait.max(Duration::from_secs(1))
    }

    /// The next thing the link has to say, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to `role`'s socket; tell [`Link::consumed`] how many
    /// were written.
    pub fn transmit(&self, role: Role) -> &[u8] {
        &self.conns[role.index()].out
    }

    /// `n` bytes of [`Link::transmit`] were written.
    pub fn consumed(&mut self, role: Role, n: usize) {
        let out = &mut self.conns[role.index()].out;
        out.drain(..n.min(out.len()));
    }

    /// When [`Link::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter_map(|conn| match conn.state {
                State::Down { retry_at } => Some(retry_at),
                State::Connecting { deadline } => Some(deadline),
                State::Opening | State::Ready => conn.waiting.front().map(|(_, due)| *due),
            })
            .min()
    }

    /// Connects what is due to connect; gives up on a connection whose TCP
    /// connect or oldest reply is late.
    pub fn handle_timeout(&mut self, now: Instant) {
        for role in Role::BOTH {
            let conn = &mut self.conns[role.index()];
            match conn.state {
                State::Down { retry_at } if retry_at <= now => {
                    conn.state = State::Connecting {
                        deadline: now + self.config.reply_timeout,
                    };
                    self.events.push_back(LinkEvent::Connect(role));
                }
                State::Connecting { deadline } if deadline <= now => {
                    self.give_up(role, now, "connect timed out");
                }
                State::Opening | State::Ready
                    if conn.waiting.front().is_some_and(|(_, due)| *due <= now) =>
                {
                    self.give_up(role, now, "no reply in time");
                }
                _ => {}
            }
        }
    }

    /// `role`'s TCP connection is up: its setup commands go out.
    pub fn connected(&mut self, role: Role, now: Instant) {
        let due = now + self.config.reply_timeout;
        let url = &self.config.url;
        let key = self.config.key.as_bytes();
        let conn = &mut self.conns[role.index()];
        conn.state = State::Opening;
        conn.out.clear();
        conn.input.clear();
        conn.parser.reset();
        conn.waiting.clear();
        match (&url.username, &url.password) {
            (Some(user), Some(password)) => conn.send(
                &[b"AUTH", user.as_bytes(), password.as_bytes()],
                Expect::Auth,
                due,
            ),
            (None, Some(password)) => conn.send(&[b"AUTH", password.as_bytes()], Expect::Auth, due),
            _ => {}
        }
        if url.db != 0 {
            conn.send(
                &[b"SELECT", url.db.to_string().as_bytes()],
                Expect::Select,
                due,
            );
        }
        match (role, self.read_after) {
            (Role::Commands, _) => {
                encode_script_load(&mut conn.out);
                conn.waiting.push_back((Expect::ScriptLoad, due));
            }
            // Where the stream stands, the first time; later, on from the last id read.
            (Role::Reader, None) => conn.send(
                &[b"XREVRANGE", key, b"+", b"-", b"COUNT", b"1"],
                Expect::Top,
                due,
            ),
            (Role::Reader, Some(_)) => {
                let setting_up = !conn.waiting.is_empty();
                self.send_read(now);
                if !setting_up {
                    self.became_ready(role);
                }
            }
        }
    }

    /// `role`'s socket failed or closed (`why` for the log): what waited on
    /// it fails, and it is tried again after a backoff.
    pub fn closed(&mut self, role: Role, now: Instant, why: &str) {
        let conn = &mut self.conns[role.index()];
        if matches!(conn.state, State::Down { .. }) {
            return;
        }
        let waiting = std::mem::take(&mut conn.waiting);
        conn.out.clear();
        conn.input.clear();
        conn.parser.reset();
        let window = self
            .config
            .reconnect_first
            .saturating_mul(1 << conn.attempts.min(16))
            .min(self.config.reconnect_max);
        conn.attempts = conn.attempts.saturating_add(1);
        let wait = window / 2 + self.jitter(window / 2);
        self.conns[role.index()].state = State::Down {
            retry_at: now + wait,
        };
        if role == Role::Commands {
            self.sha = None;
        }
        // One text for both connections: Redis down is one problem, not two.
        self.health.failed(format_args!("redis connection: {why}"));
        for (expect, _) in waiting {
            self.fail(expect, Failure::Down);
        }
    }

    /// Bytes read from `role`'s socket.
    pub fn receive(&mut self, role: Role, bytes: &[u8], now: Instant) {
        let conn = &mut self.conns[role.index()];
        if !matches!(conn.state, State::Opening | State::Ready) {
            return;
        }
        conn.input.extend_from_slice(bytes);
        let mut used = 0;
        loop {
            let conn = &mut self.conns[role.index()];
            let reply = match conn.parser.parse(&conn.input[used..]) {
                Ok(Some((reply, length))) => {
                    used += length;
                    reply
                }
                Ok(None) => break,
                Err(error) => {
                    if error == RespError::ReplyTooLarge && role == Role::Reader {
                        // The next reads ask for fewer entries at a time.
                        self.count = (self.count / 2).max(1);
                    }
                    return self.give_up(role, now, &error.to_string());
                }
            };
            let Some((expect, _)) = conn.waiting.pop_front() else {
                return self.give_up(role, now, "a reply nothing was waiting for");
            };
            if let Err(why) = self.answer(role, expect, reply, now) {
                return self.give_up(role, now, &why);
            }
            if !matches!(
                self.conns[role.index()].state,
                State::Opening | State::Ready
            ) {
                return;
            }
        }
        let conn = &mut self.conns[role.index()];
        conn.input.drain(..used);
    }

    /// Publishes `event` with an id above `floor` (the newest id the node
    /// knows); the answer comes as [`LinkEvent::Published`] with `ticket`.
    pub fn publish(
        &mut self,
        ticket: Ticket,
        floor: u64,
        event: &Event<'_>,
        now: Instant,
    ) -> Result<(), Failure> {
        let conn = &mut self.conns[Role::Commands.index()];
        let Some(sha) = self.sha.as_deref().filter(|_| conn.state == State::Ready) else {
            return Err(Failure::Down);
        };
        if self.in_flight >= self.config.max_in_flight
            || conn.out.len() >= self.config.max_unsent_bytes
        {
            return Err(Failure::Busy);
        }
        let key = self.config.key.as_bytes();
        encode_publish(sha, key, self.config.max_len, floor, event, &mut conn.out);
        conn.waiting
            .push_back((Expect::Publish(ticket), now + self.config.reply_timeout));
        self.in_flight += 1;
        Ok(())
    }

    /// Asks for the events after `cursor` (whether the stream still holds
    /// the cursor itself, too); the answer comes as [`LinkEvent::Fetched`].
    pub fn fetch(&mut self, ticket: Ticket, cursor: u64, now: Instant) -> Result<(), Failure> {
        let conn = &mut self.conns[Role::Commands.index()];
        if conn.state != State::Ready {
            return Err(Failure::Down);
        }
        if conn.out.len() >= self.config.max_unsent_bytes {
            return Err(Failure::Busy);
        }
        // The cursor itself and a page after it.
        let count = self.count + 1;
        let start = format!("{cursor}-0");
        conn.send(
            &[
                b"XRANGE",
                self.config.key.as_bytes(),
                start.as_bytes(),
                b"+",
                b"COUNT",
                count.to_string().as_bytes(),
            ],
            Expect::Fetch {
                ticket,
                cursor,
                count,
            },
            now + self.config.reply_timeout,
        );
        Ok(())
    }

    /// Acts on one reply; `Err` gives up on the connection.
    fn answer(
        &mut self,
        role: Role,
        expect: Expect,
        reply: Reply,
        now: Instant,
    ) -> Result<(), String> {
        if let Reply::Error(message) = &reply {
            let message = String::from_utf8_lossy(message).into_owned();
            return match expect {
                Expect::Publish(ticket) => {
                    self.in_flight -= 1;
                    self.health.failed(format_args!("redis: {message}"));
                    self.events.push_back(LinkEvent::Published(
                        ticket,
                        Err(Failure::Refused(message.clone())),
                    ));
                    // Without the script (a SCRIPT FLUSH) no publish can
                    // succeed: a new connection loads it again.
                    match message.starts_with("NOSCRIPT") {
                        true => Err(message),
                        false => Ok(()),
                    }
                }
                Expect::Fetch { ticket, .. } => {
                    self.health.failed(format_args!("redis: {message}"));
                    self.events
                        .push_back(LinkEvent::Fetched(ticket, Err(Failure::Refused(message))));
                    Ok(())
                }
                // Setup and reads cannot go on past an error.
                _ => Err(message),
            };
        }
        let unexpected = |error: RespError| error.to_string();
        match expect {
            Expect::Auth | Expect::Select => match reply {
                Reply::Simple(ok) if ok == b"OK" => {
                    // A reader resuming from its last id is set up once
                    // these are answered (its XREAD may block for seconds).
                    let setting_up = self.conns[role.index()].waiting.iter().any(|(expect, _)| {
                        matches!(expect, Expect::Auth | Expect::Select | Expect::Top)
                    });
                    if role == Role::Reader && self.read_after.is_some() && !setting_up {
                        self.became_ready(role);
                    }
                    Ok(())
                }
                _ => Err(unexpected(RespError::UnexpectedReply)),
            },
            Expect::ScriptLoad => match reply {
                Reply::Bulk(sha) if sha.len() == 40 && sha.iter().all(u8::is_ascii_hexdigit) => {
                    self.sha = Some(sha);
                    self.became_ready(role);
                    Ok(())
                }
                _ => Err(unexpected(RespError::UnexpectedReply)),
            },
            Expect::Top => {
                let entries = range_entries(reply).map_err(unexpected)?;
                let top = entries
                    .first()
                    .map_or(StreamId::default(), |entry| entry.id);
                self.read_after = Some(top);
                self.events.push_back(LinkEvent::Top(top.ms));
                self.became_ready(role);
                self.send_read(now);
                Ok(())
            }
            Expect::Read => {
                let streams = read_entries(reply).map_err(unexpected)?;
                let entries: Vec<_> = streams
                    .into_iter()
                    .flat_map(|stream| stream.entries)
                    .collect();
                if let Some(last) = entries.last() {
                    self.read_after = Some(last.id);
                    if entries.len() >= self.count {
                        self.count = (self.count * 2).min(self.config.page.max(1));
                    }
                }
                // An entry pushloop did not write is passed over, not fatal.
                let events: Vec<_> = entries
                    .into_iter()
                    .filter_map(|entry| StoredEvent::from_entry(entry).ok())
                    .collect();
                if !events.is_empty() {
                    self.events.push_back(LinkEvent::Events(events));
                }
                self.send_read(now);
                Ok(())
            }
            Expect::Publish(ticket) => {
                self.in_flight -= 1;
                let id = published_id(reply).map_err(unexpected)?;
                self.events.push_back(LinkEvent::Published(ticket, Ok(id)));
                Ok(())
            }
            Expect::Fetch {
                ticket,
                cursor,
                count,
            } => {
                let entries = range_entries(reply).map_err(unexpected)?;
                let holds_cursor = entries
                    .first()
                    .is_some_and(|entry| entry.id == StreamId { ms: cursor, seq: 0 });
                let more_after = (entries.len() >= count)
                    .then(|| entries.last().map(|entry| entry.id.ms))
                    .flatten();
                let events = entries
                    .into_iter()
                    .filter(|entry| entry.id.ms > cursor)
                    .filter_map(|entry| StoredEvent::from_entry(entry).ok())
                    .collect();
                let page = Page {
                    holds_cursor,
                    events,
                    more_after,
                };
                self.events.push_back(LinkEvent::Fetched(ticket, Ok(page)));
                Ok(())
            }
        }
    }

    /// A connection finished its setup.
    fn became_ready(&mut self, role: Role) {
        let conn = &mut self.conns[role.index()];
        conn.state = State::Ready;
        conn.attempts = 0;
        if std::mem::replace(&mut conn.was_ready, true) {
            self.reconnects += 1;
        }
        if self.is_up() {
            self.health.ok();
        }
    }

    /// The reader's next `XREAD`, after the last id read.
    fn send_read(&mut self, now: Instant) {
        let Some(after) = self.read_after else {
            return;
        };
        let mut after_text = Vec::new();
        after.write(&mut after_text);
        let block = self.config.read_block;
        let due = now + block + self.config.reply_timeout;
        let conn = &mut self.conns[Role::Reader.index()];
        conn.send(
            &[
                b"XREAD",
                b"COUNT",
                self.count.to_string().as_bytes(),
                b"BLOCK",
                block.as_millis().to_string().as_bytes(),
                b"STREAMS",
                self.config.key.as_bytes(),
                &after_text,
            ],
            Expect::Read,
            due,
        );
    }

    /// Gives up on a connection: the engine drops its socket.
    fn give_up(&mut self, role: Role, now: Instant, why: &str) {
        self.closed(role, now, why);
        self.events.push_back(LinkEvent::Disconnect(role));
    }

    /// What waited for a reply that will not come.
    fn fail(&mut self, expect: Expect, failure: Failure) {
        match expect {
            Expect::Publish(ticket) => {
                self.in_flight -= 1;
                self.events
                    .push_back(LinkEvent::Published(ticket, Err(failure)));
            }
            Expect::Fetch { ticket, .. } => {
                self.events
                    .push_back(LinkEvent::Fetched(ticket, Err(failure)));
            }
            Expect::Auth | Expect::Select | Expect::ScriptLoad | Expect::Top | Expect::Read => {}
        }
    }

    /// A random duration in `[0, window)` (xorshift64*: spreading retries
    /// needs no better).
    fn jitter(&mut self, window: Duration) -> Duration {
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(x.wrapping_mul(0x2545_F491_4F6C_DD1D) % micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    fn config() -> RedisConfig {
        RedisConfig::new(RedisUrl::parse("redis://:pw@127.0.0.1:7000/2").unwrap())
    }

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        out
    }

    fn drain(link: &mut Link) -> Vec<LinkEvent> {
        std::iter::from_fn(|| link.poll_event()).collect()
    }

    /// Takes what the link wrote to `role`.
    fn sent(link: &mut Link, role: Role) -> Vec<u8> {
        let out = link.transmit(role).to_vec();
        link.consumed(role, out.len());
        out
    }

    /// A stream entry written by the publish script, as RESP.
    fn entry(id: u64, data: &str) -> Vec<u8> {
        let id_text = id.to_string();
        let mut wire = format!("*2\r\n${}\r\n{id}-0\r\n", id_text.len() + 2).into_bytes();
        wire.extend(command(&[
            b"id",
            id_text.as_bytes(),
            b"topic",
            b"news",
            b"event",
            b"message",
            b"kind",
            b"t",
            b"data",
            data.as_bytes(),
        ]));
        wire
    }

    fn xread_reply(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = format!(
            "*1\r\n*2\r\n$15\r\npushloop:events\r\n*{}\r\n",
            entries.len()
        )
        .into_bytes();
        for entry in entries {
            wire.extend_from_slice(entry);
        }
        wire
    }

    /// A link with both connections set up; the stream's top was `top`.
    fn up(top: u64) -> Link {
        let mut link = Link::new(config(), 7);
        link.handle_timeout(at(0));
        link.connected(Role::Reader, at(0));
        link.connected(Role::Commands, at(0));
        link.receive(Role::Commands, b"+OK\r\n+OK\r\n$40\r\n", at(1));
        link.receive(Role::Commands, SHA, at(1));
        link.receive(Role::Commands, b"\r\n", at(1));
        let mut reply = b"+OK\r\n+OK\r\n*1\r\n".to_vec();
        reply.extend(entry(top, "top"));
        link.receive(Role::Reader, &reply, at(1));
        assert!(link.is_up());
        drain(&mut link);
        sent(&mut link, Role::Reader);
        sent(&mut link, Role::Commands);
        link
    }

    fn publish(link: &mut Link, ticket: Ticket, now: Instant) -> Result<(), Failure> {
        let event = Event {
            topic: "news",
            event: "message",
            kind: b't',
            data: b"hi",
        };
        link.publish(ticket, 41, &event, now)
    }

    // ---- URLs ----

    #[test]
    fn urls_give_host_port_credentials_and_database() {
        let plain = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db),
            ("localhost", 6379, 0)
        );
        assert_eq!((plain.username, plain.password), (None, None));
        let full = RedisUrl::parse("redis://me:pa:ss@[::1]:6380/15").unwrap();
        assert_eq!((full.host.as_str(), full.port, full.db), ("::1", 6380, 15));
        assert_eq!(full.username.as_deref(), Some("me"));
        assert_eq!(full.password.as_deref(), Some("pa:ss"));
        assert_eq!(
            RedisUrl::parse("redis://:x@h/")
                .unwrap()
                .password
                .as_deref(),
            Some("x")
        );
        assert_eq!(RedisUrl::parse("http://h"), Err(UrlError::Scheme));
        assert_eq!(RedisUrl::parse("redis://:6379"), Err(UrlError::NoHost));
        assert_eq!(RedisUrl::parse("redis://h:0"), Err(UrlError::BadPort));
        assert_eq!(RedisUrl::parse("redis://h:99999"), Err(UrlError::BadPort));
        assert_eq!(RedisUrl::parse("redis://h/x"), Err(UrlError::BadDb));
    }

    // ---- Setting up ----

    #[test]
    fn both_connections_open_at_once_and_send_auth_select_then_their_first_command() {
        let mut link = Link::new(config(), 7);
        assert_eq!(link.poll_timeout(), Some(at(0)));
        link.handle_timeout(at(0));
        assert_eq!(
            drain(&mut link),
            [
                LinkEvent::Connect(Role::Reader),
                LinkEvent::Connect(Role::Commands)
            ]
        );
        link.connected(Role::Commands, at(0));
        let mut expected = command(&[b"AUTH", b"pw"]);
        expected.extend(command(&[b"SELECT", b"2"]));
        expected.extend(command(&[b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.as_bytes()]));
        assert_eq!(sent(&mut link, Role::Commands), expected);
        link.connected(Role::Reader, at(0));
        let mut expected = command(&[b"AUTH", b"pw"]);
        expected.extend(command(&[b"SELECT", b"2"]));
        expected.extend(command(&[
            b"XREVRANGE",
            b"pushloop:events",
            b"+",
            b"-",
            b"COUNT",
            b"1",
        ]));
        assert_eq!(sent(&mut link, Role::Reader), expected);
        assert!(!link.is_up());
    }

    #[test]
    fn the_streams_top_starts_the_reads_and_each_read_asks_again_after_the_last_id() {
        let mut link = Link::new(config(), 7);
        link.handle_timeout(at(0));
        link.connected(Role::Reader, at(0));
        sent(&mut link, Role::Reader);
        drain(&mut link);
        // An empty stream: XREVRANGE answers an empty array.
        link.receive(Role::Reader, b"+OK\r\n+OK\r\n*0\r\n", at(1));
        assert_eq!(drain(&mut link), [LinkEvent::Top(0)]);
        let read = |after: &[u8], count: &[u8]| {
            command(&[
                b"XREAD",
                b"COUNT",
                count,
                b"BLOCK",
                b"5000",
                b"STREAMS",
                b"pushloop:events",
                after,
            ])
        };
        assert_eq!(sent(&mut link, Role::Reader), read(b"0-0", b"256"));
        // A block that timed out: a null, and the same read again.
        link.receive(Role::Reader, b"*-1\r\n", at(5001));
        assert_eq!(drain(&mut link), []);
        assert_eq!(sent(&mut link, Role::Reader), read(b"0-0", b"256"));
        link.receive(
            Role::Reader,
            &xread_reply(&[entry(10, "a"), entry(12, "b")]),
            at(5002),
        );
        let Some(LinkEvent::Events(events)) = link.poll_event() else {
            panic!("events");
        };
        let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
        assert_eq!(ids, [10, 12]);
        assert_eq!(events[1].data, b"b");
        assert_eq!(sent(&mut link, Role::Reader), read(b"12-0", b"256"));
    }

    #[test]
    fn a_reply_split_anywhere_gives_the_same_events() {
        let whole = xread_reply(&[entry(10, "a\r\nb"), entry(11, "c")]);
        for split in 0..=whole.len() {
            let mut link = up(5);
            link.receive(Role::Reader, &whole[..split], at(2));
            link.receive(Role::Reader, &whole[split..], at(2));
            let events: Vec<_> = drain(&mut link);
            let [LinkEvent::Events(events)] = &events[..] else {
                panic!("split at {split}: {events:?}");
            };
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(events[0].data, b"a\r\nb");
        }
    }

    #[test]
    fn an_entry_pushloop_did_not_write_is_passed_over_but_read_past() {
        let mut link = up(5);
        let mut foreign = b"*2\r\n$4\r\n10-1\r\n".to_vec();
        foreign.extend(command(&[b"some", b"thing"]));
        link.receive(
            Role::Reader,
            &xread_reply(&[entry(9, "ok"), foreign]),
            at(2),
        );
        let Some(LinkEvent::Events(events)) = link.poll_event() else {
            panic!("events");
        };
        assert_eq!(events.len(), 1);
        let next = sent(&mut link, Role::Reader);
        assert!(
            next.ends_with(b"$4\r\n10-1\r\n"),
            "on after the foreign one"
        );
    }

    // ---- Publishing and fetching ----

    #[test]
    fn a_publish_waits_for_the_script_and_its_answer_finds_its_ticket() {
        let mut link = Link::new(config(), 7);
        assert_eq!(publish(&mut link, 1, at(0)), Err(Failure::Down));
        let mut link = up(5);
        publish(&mut link, 1, at(2)).unwrap();
        publish(&mut link, 2, at(2)).unwrap();
        assert_eq!(link.in_flight(), 2);
        let mut expected = Vec::new();
        let event = Event {
            topic: "news",
            event: "message",
            kind: b't',
            data: b"hi",
        };
        encode_publish(SHA, b"pushloop:events", 100_000, 41, &event, &mut expected);
        assert!(sent(&mut link, Role::Commands).starts_with(&expected));
        // Replies come back in order (pipelining): the first is ticket 1's.
        link.receive(Role::Commands, b"$2\r\n77\r\n$2\r\n78\r\n", at(3));
        assert_eq!(
            drain(&mut link),
            [
                LinkEvent::Published(1, Ok(77)),
                LinkEvent::Published(2, Ok(78))
            ]
        );
        assert_eq!(link.in_flight(), 0);
    }

    #[test]
    fn an_error_reply_refuses_that_publish_and_is_reported_once() {
        let mut link = up(5);
        for ticket in 1..=2 {
            publish(&mut link, ticket, at(2)).unwrap();
        }
        let wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        link.receive(Role::Commands, wrongtype, at(3));
        link.receive(Role::Commands, wrongtype, at(3));
        let events = drain(&mut link);
        assert!(
            matches!(&events[0], LinkEvent::Published(1, Err(Failure::Refused(m))) if m.starts_with("WRONGTYPE"))
        );
        assert_eq!(events.len(), 2, "the connection stays: {events:?}");
        assert!(link.is_up());
        let change = link.health().take_change();
        assert!(matches!(change, Some(Some(problem)) if problem.contains("WRONGTYPE")));
        assert_eq!(link.health().take_change(), None, "once per change");
    }

    #[test]
    fn noscript_closes_the_connection_so_that_the_next_one_loads_the_script() {
        let mut link = up(5);
        publish(&mut link, 1, at(2)).unwrap();
        link.receive(Role::Commands, b"-NOSCRIPT No matching script.\r\n", at(3));
        let events = drain(&mut link);
        assert!(events.contains(&LinkEvent::Disconnect(Role::Commands)));
        assert_eq!(publish(&mut link, 2, at(3)), Err(Failure::Down));
    }

    #[test]
    fn publishes_in_flight_are_bounded() {
        let mut link = up(5);
        for ticket in 0..4096 {
            publish(&mut link, ticket, at(2)).unwrap();
        }
        assert_eq!(publish(&mut link, 4096, at(2)), Err(Failure::Busy));
    }

    #[test]
    fn a_fetch_says_whether_the_stream_still_holds_the_cursor_and_where_more_begins() {
        let mut link = up(50);
        link.fetch(9, 10, at(2)).unwrap();
        assert_eq!(
            sent(&mut link, Role::Commands),
            command(&[
                b"XRANGE",
                b"pushloop:events",
                b"10-0",
                b"+",
                b"COUNT",
                b"257"
            ])
        );
        let mut reply = b"*2\r\n".to_vec();
        reply.extend(entry(10, "the cursor"));
        reply.extend(entry(11, "after it"));
        link.receive(Role::Commands, &reply, at(3));
        let Some(LinkEvent::Fetched(9, Ok(page))) = link.poll_event() else {
            panic!("a page");
        };
        assert!(page.holds_cursor && page.more_after.is_none());
        let ids: Vec<u64> = page.events.iter().map(|event| event.id).collect();
        assert_eq!(ids, [11]);
        // Trimmed past the cursor: the first entry is a later one.
        link.fetch(10, 3, at(4)).unwrap();
        link.receive(
            Role::Commands,
            &[b"*1\r\n".to_vec(), entry(11, "x")].concat(),
            at(5),
        );
        let Some(LinkEvent::Fetched(10, Ok(page))) = link.poll_event() else {
            panic!("a page");
        };
        assert!(!page.holds_cursor);
    }

    // ---- Faults ----

    #[test]
    fn a_malformed_or_unawaited_reply_closes_the_connection_and_fails_what_waited() {
        let mut link = up(5);
        publish(&mut link, 1, at(2)).unwrap();
        link.receive(Role::Commands, b"?what\r\n", at(3));
        assert_eq!(
            drain(&mut link),
            [
                LinkEvent::Published(1, Err(Failure::Down)),
                LinkEvent::Disconnect(Role::Commands)
            ]
        );
        assert_eq!(link.in_flight(), 0);
        let mut link = up(5);
        link.receive(Role::Commands, b"+OK\r\n", at(3));
        assert_eq!(drain(&mut link), [LinkEvent::Disconnect(Role::Commands)]);
        // A reply of the wrong shape for what waited.
        let mut link = up(5);
        link.receive(Role::Reader, b":1\r\n", at(3));
        assert_eq!(drain(&mut link), [LinkEvent::Disconnect(Role::Reader)]);
    }

    #[test]
    fn a_reply_too_large_closes_the_reader_and_halves_what_the_next_read_asks_for() {
        let mut link = Link::new(
            RedisConfig {
                limits: RespLimits {
                    max_reply_bytes: 64,
                    ..RespLimits::default()
                },
                ..config()
            },
            7,
        );
        link.handle_timeout(at(0));
        link.connected(Role::Reader, at(0));
        link.receive(Role::Reader, b"+OK\r\n+OK\r\n*0\r\n", at(1));
        drain(&mut link);
        link.receive(
            Role::Reader,
            &xread_reply(&[entry(10, &"x".repeat(100))]),
            at(2),
        );
        assert_eq!(drain(&mut link), [LinkEvent::Disconnect(Role::Reader)]);
        let retry = link.poll_timeout().expect("a retry");
        link.handle_timeout(retry);
        assert_eq!(drain(&mut link), [LinkEvent::Connect(Role::Reader)]);
        link.connected(Role::Reader, retry);
        let again = sent(&mut link, Role::Reader);
        let read = command(&[
            b"XREAD",
            b"COUNT",
            b"128",
            b"BLOCK",
            b"5000",
            b"STREAMS",
            b"pushloop:events",
            b"0-0",
        ]);
        assert!(again.ends_with(&read), "from the last id, half as many");
    }

    #[test]
    fn a_late_reply_gives_up_on_the_connection() {
        let mut link = up(5);
        publish(&mut link, 1, at(100)).unwrap();
        let due = at(100) + Duration::from_secs(5);
        link.handle_timeout(Instant::from_micros(due.as_micros() - 1));
        assert_eq!(drain(&mut link), []);
        link.handle_timeout(due);
        assert_eq!(
            drain(&mut link),
            [
                LinkEvent::Published(1, Err(Failure::Down)),
                LinkEvent::Disconnect(Role::Commands)
            ]
        );
        // An XREAD is due after its block and the reply timeout.
        let mut link = up(5);
        let due = at(1) + Duration::from_secs(10);
        link.handle_timeout(Instant::from_micros(due.as_micros() - 1));
        assert_eq!(drain(&mut link), []);
        link.handle_timeout(due);
        assert_eq!(drain(&mut link), [LinkEvent::Disconnect(Role::Reader)]);
    }

    #[test]
    fn a_setup_error_retries_after_a_window_that_doubles_and_is_reported_once() {
        let mut link = Link::new(config(), 7);
        let mut now = at(0);
        let mut windows = Vec::new();
        for _ in 0..8 {
            link.handle_timeout(now);
            assert!(drain(&mut link).contains(&LinkEvent::Connect(Role::Commands)));
            link.connected(Role::Commands, now);
            link.receive(Role::Commands, b"-NOAUTH Authentication required.\r\n", now);
            assert_eq!(drain(&mut link), [LinkEvent::Disconnect(Role::Commands)]);
            assert!(link.retry_after(now) >= Duration::from_secs(1));
            let retry = match link.conns[Role::Commands.index()].state {
                State::Down { retry_at } => retry_at,
                other => panic!("{other:?}"),
            };
            windows.push(retry.saturating_duration_since(now));
            now = retry;
        }
        // Half the window and a random half: 50-100 ms, 100-200 ms, ... 2.5-5 s.
        for (attempt, wait) in windows.iter().enumerate() {
            let window = (Duration::from_millis(100) * (1 << attempt)).min(Duration::from_secs(5));
            assert!(
                *wait >= window / 2 && *wait <= window,
                "attempt {attempt}: {wait:?}"
            );
        }
        assert!(matches!(link.health().take_change(), Some(Some(p)) if p.contains("NOAUTH")));
        assert_eq!(link.health().take_change(), None);
    }

    #[test]
    fn a_lost_reader_resumes_from_its_last_id_and_counts_a_reconnect() {
        let mut link = up(5);
        link.receive(Role::Reader, &xread_reply(&[entry(30, "a")]), at(2));
        drain(&mut link);
        link.closed(Role::Reader, at(3), "Connection reset by peer");
        assert!(!link.is_up());
        assert_eq!(
            link.health().take_change(),
            Some(Some("redis connection: Connection reset by peer".into()))
        );
        let retry = link.poll_timeout().expect("a retry");
        link.handle_timeout(retry);
        link.connected(Role::Reader, retry);
        assert!(sent(&mut link, Role::Reader).ends_with(b"$4\r\n30-0\r\n"));
        link.receive(Role::Reader, b"+OK\r\n+OK\r\n", retry);
        assert!(link.is_up());
        assert_eq!(link.reconnects(), 1);
        assert_eq!(link.health().take_change(), Some(None), "working again");
    }
}
