//! The engine: everything a loop owns apart from the user's `App` and the
//! `mio::Poll` — connections, feeds, timers, counters — and every action a
//! [`crate::app::Context`] can take on them.
//!
//! It sits between the protocol crate and the application: below it are the
//! sans-IO sessions it holds for each connection, above it the `App` and the
//! loop that calls it ([`crate::server`]). Actions only queue bytes and change
//! states; sockets are written by [`Core::flush`] at the end of each turn,
//! and connections are removed by the loop (which can then tell the `App`).
//!
//! One job per file:
//! - [`outbox`]: queues, admission and the slow-reader policy, the fan-out
//!   line, writes (unit-tested against a fake writer);
//! - [`streams`]: what a feed does on a connection — event streams, polls,
//!   long-polls, subscriptions, publishing, replay and catch-up;
//! - [`timers`]: the deadline heap and user timers;
//! - [`connection`]: one connection's state; [`slab`]: their tokens;
//! - [`handle`]: commands from other threads; [`trace`]: `--trace`;
//!   [`stats`]: counters; [`config`]: configuration;
//! - this file: the `Core` itself, deadlines, closing and shutdown.

pub mod config;
pub mod connection;
pub mod handle;
pub(crate) mod last_write;
pub mod outbox;
pub mod slab;
pub mod stats;
pub mod streams;
pub mod timers;
pub mod trace;

use std::collections::{HashMap, VecDeque};
use std::net::Shutdown;
use std::time::Duration;

use mio::{Registry, Token};

use crate::engine::config::Config;
use crate::engine::connection::{Closing, Connection, Kind, Waiting};
use crate::engine::handle::Handle;
use crate::engine::outbox::{FanoutLine, Flushed, Kind as Chunk, Spare};
use crate::engine::slab::Slab;
use crate::engine::stats::Stats;
use crate::engine::timers::{Timers, Wake};
use crate::engine::trace::Tracer;
use crate::feeds::Feeds;
use crate::http::HttpConfig;
use crate::ids::TimerId;
use crate::time::Instant;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::Shared;
use crate::ws::session::{SessionConfig, Timeout};

/// Everything a loop owns except the `App`, the poll and the read buffer.
pub struct Core {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) conns: Slab<Connection>,
    pub(crate) feeds: Feeds,
    pub(crate) timers: Timers,
    pub(crate) stats: Stats,
    /// The loop's clock origin: `now` is measured from it.
    pub(crate) origin: std::time::Instant,
    /// The clock for the current turn (read once per `poll` return).
    pub(crate) now: Instant,
    /// The HTTP sessions' rules (from `config.limits`).
    pub(crate) http: HttpConfig,
    /// The WebSocket sessions' rules (from `config.limits`).
    pub(crate) websocket: SessionConfig,
    /// Connections with bytes to write at the end of the turn.
    pub(crate) dirty: Vec<Token>,
    /// Connections with shared bytes (events, broadcasts) to write.
    pub(crate) fanout: FanoutLine,
    /// Connections to read (or whose leftover to process) next turn: their
    /// read budget ran out, or they were paused and may go on.
    pub(crate) ready: VecDeque<Token>,
    /// Written queue buffers kept for the next writes (see [`outbox`]).
    pub(crate) spare: Spare,
    /// Reused by `publish` and `broadcast` for the recipients of one message.
    pub(crate) recipients: Vec<Token>,
    /// Followers catching up on history: the id after which their replay
    /// goes on once their queue drains (see [`streams`]).
    pub(crate) catching_up: HashMap<Token, u64>,
    /// Connections to remove (the loop tells the `App` about WebSockets).
    pub(crate) dead: Vec<Token>,
    pub(crate) handle: Handle,
    /// Set when a graceful shutdown began; the loop ends when every
    /// connection is gone or this deadline passes.
    pub(crate) shutdown_deadline: Option<Instant>,
    /// The protocol trace, when asked for.
    pub(crate) tracer: Option<Tracer>,
    /// permessage-deflate: the compressors and inflater every WebSocket of
    /// the loop shares (made on first use), lent to each session call.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Shared,
}

impl Core {
    pub(crate) fn new(
        mut config: Config,
        registry: Registry,
        handle: Handle,
        id_seed: u64,
        origin: std::time::Instant,
    ) -> Core {
        let tracer = config.trace.take().map(Tracer::new);
        #[cfg(feature = "deflate")]
        let deflate = Shared::new(config.deflate.map_or(0, |deflate| deflate.threshold));
        Core {
            http: config.limits.http(),
            websocket: config.limits.websocket(),
            feeds: Feeds::new(config.history, config.limits.max_topics, id_seed),
            config,
            registry,
            conns: Slab::new(),
            timers: Timers::default(),
            stats: Stats::default(),
            origin,
            now: Instant::ZERO,
            dirty: Vec::new(),
            fanout: FanoutLine::default(),
            ready: VecDeque::new(),
            spare: Spare::default(),
            recipients: Vec::new(),
            catching_up: HashMap::new(),
            dead: Vec::new(),
            handle,
            shutdown_deadline: None,
            tracer,
            #[cfg(feature = "deflate")]
            deflate,
        }
    }

    /// The loop's counters, as of now.
    pub fn stats(&self) -> Stats {
        #[cfg(feature = "deflate")]
        return Stats {
            deflate: self.deflate.counters,
            ..self.stats.clone()
        };
        #[cfg(not(feature = "deflate"))]
        self.stats.clone()
    }

    /// Reads the clock for this turn.
    pub(crate) fn tick(&mut self) {
        self.now = Instant::from_duration(self.origin.elapsed());
    }

    /// A loop instant as a `std` instant.
    pub(crate) fn std_instant(&self, at: Instant) -> std::time::Instant {
        self.origin + Duration::from_micros(at.as_micros())
    }

    /// Runs `write` on the tracer, if tracing.
    pub(crate) fn trace(&mut self, write: impl FnOnce(&mut Tracer, Instant)) {
        if let Some(tracer) = self.tracer.as_mut() {
            write(tracer, self.now);
        }
    }

    // ---- Deadlines ---------------------------------------------------------------

    /// Arms the connection's earliest deadline (its session's or its own) in
    /// the timer heap, unless an entry at or before it is armed already.
    pub(crate) fn rearm(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let session = match &conn.kind {
            Kind::Http(http) => http.session.poll_timeout(&self.http),
            Kind::WebSocket(ws) => ws.session.poll_timeout(&self.websocket),
            Kind::EventStream | Kind::Closing(_) => None,
        };
        let next = match (session, conn.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(next) = next {
            if conn.armed.is_none_or(|armed| next < armed) {
                conn.armed = Some(next);
                self.timers.arm(next, Wake::Connection(token));
            }
        }
    }

    /// A connection's timer entry armed for `when` popped: act on what is
    /// due, then arm the next deadline. A superseded entry does nothing.
    pub(crate) fn connection_timer(&mut self, token: Token, when: Instant) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.armed != Some(when) {
            return;
        }
        conn.armed = None;
        let own_due = conn.deadline.is_some_and(|deadline| deadline <= now);
        if own_due {
            conn.deadline = None;
        }
        match &mut conn.kind {
            Kind::Http(http) => {
                if own_due {
                    // A held answer's time is up.
                    match http.waiting {
                        Waiting::LongPoll { .. } => self.answer_long_poll(token),
                        Waiting::Later => self.respond_late(token),
                        Waiting::Nothing => {}
                    }
                }
                self.http_timeout(token);
            }
            Kind::WebSocket(_) => self.websocket_timeout(token),
            Kind::EventStream if own_due => {
                // WHATWG HTML §9.2.7: a comment line every ~15 s keeps proxies
                // from closing an idle stream.
                conn.deadline = Some(now + self.config.limits.sse_keepalive);
                self.push_protocol(token, &|out| crate::sse::encode_comment("", out));
            }
            Kind::Closing(_) if own_due => self.dead.push(token),
            Kind::EventStream | Kind::Closing(_) => {}
        }
        self.rearm(token);
    }

    /// An HTTP session's deadline: `408` if a request was under way, then
    /// close; a silent connection is closed without a word.
    fn http_timeout(&mut self, token: Token) {
        let (now, http_config) = (self.now, self.http);
        let Some(http) = self.conns.get_mut(token).and_then(Connection::http) else {
            return;
        };
        let mut out = Vec::new();
        let Some(timeout) = http.session.handle_timeout(now, &http_config, &mut out) else {
            return;
        };
        let what = format!("{} timeout", timeout.name());
        self.trace(|tracer, now| tracer.note(now, token, "timeout", &what, "RFC 9112 §9.5"));
        if out.is_empty() {
            self.dead.push(token);
        } else {
            self.push_protocol(token, &|buf| buf.extend_from_slice(&out));
            self.close_after_answer(token, true);
        }
    }

    /// A WebSocket session's deadline: a ping, a Close for an idle peer, or
    /// the end of a peer that stopped answering.
    fn websocket_timeout(&mut self, token: Token) {
        let timeout = self.ws_do(token, Chunk::Protocol, |session, env| {
            session.handle_timeout(env)
        });
        if let Some(Some(timeout)) = timeout {
            let what = format!("{} timeout", timeout.name());
            self.trace(|tracer, now| tracer.note(now, token, "timeout", &what, "RFC 6455 §7.1"));
            if matches!(timeout, Timeout::Pong | Timeout::Close) {
                self.finish_websocket(token);
            }
        }
    }

    // ---- WebSockets ----------------------------------------------------------------

    /// A WebSocket whose session is over: close TCP once its last frames are
    /// out (RFC 6455 §7.1.1: the server closes first; no lingering is
    /// needed, the peer has nothing more to say) — or at once, when the peer
    /// stopped answering (there is no one to write to).
    pub(crate) fn finish_websocket(&mut self, token: Token) {
        let gone = self
            .conns
            .get_mut(token)
            .and_then(Connection::websocket)
            .is_some_and(|ws| ws.session.state() == crate::ws::session::State::Gone);
        if gone {
            self.dead.push(token);
        } else {
            self.start_closing(token, false);
        }
    }

    // ---- Closing -------------------------------------------------------------------

    /// After a write: moves a closing connection along (half-close and
    /// linger, or close), or lets a paused connection read again once its
    /// queue has drained below half its bound.
    pub(crate) fn after_write(&mut self, token: Token, flushed: Flushed) {
        let now = self.now;
        let limits = self.config.limits;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.kind {
            Kind::Closing(Closing::Flushing { linger, patient }) => {
                if !flushed.drained {
                    // A reader that still takes the bytes it is owed keeps its
                    // connection; one that takes nothing for `idle_timeout` is
                    // gone. The close deadline proper starts once everything
                    // is handed over.
                    if patient && flushed.written > 0 {
                        conn.deadline = Some(now + limits.idle_timeout);
                        self.rearm(token);
                    }
                } else if linger && !conn.peer_fin {
                    // Half-close, then read until the peer's FIN (see Closing).
                    match conn.stream.shutdown(Shutdown::Write) {
                        Ok(()) => {
                            conn.kind = Kind::Closing(Closing::Lingering);
                            conn.deadline = Some(now + limits.close_timeout);
                            self.rearm(token);
                        }
                        Err(_) => self.dead.push(token),
                    }
                } else {
                    // The peer has nothing more to send: close now. The kernel
                    // still delivers what it holds, then its FIN.
                    self.dead.push(token);
                }
            }
            _ if conn.paused
                && conn.outbox.len() <= limits.max_queued_bytes / 2
                && !matches!(&conn.kind, Kind::Http(http) if http.session.is_responding()) =>
            {
                // Drained enough: read (and process what was left) again.
                conn.paused = false;
                self.make_ready(token);
            }
            _ => {}
        }
    }

    /// Starts closing a connection: a WebSocket gets a Close frame (RFC 6455
    /// §7.1.2) and waits for the peer's; anything else flushes and closes.
    /// False when no such connection is open (or it is closing already).
    pub fn close(&mut self, token: Token, code: CloseCode, reason: &str) -> bool {
        let Some(conn) = self.conns.get(token) else {
            return false;
        };
        match &conn.kind {
            Kind::WebSocket(_) => {
                let sent = self.ws_do(token, Chunk::Protocol, |session, env| {
                    session.close(code, reason, env)
                });
                sent == Some(true)
            }
            Kind::Closing(_) => false,
            Kind::Http(_) | Kind::EventStream => {
                self.close_after_answer(token, true);
                true
            }
        }
    }

    /// Flush what is queued, then close: with `linger`, half-close and wait
    /// (bounded) for the peer's FIN first, so unread input cannot turn our
    /// last bytes into a reset (RFC 9112 §9.6). The bytes must be taken
    /// within `close_timeout`.
    pub(crate) fn start_closing(&mut self, token: Token, linger: bool) {
        self.close_after_flush(token, linger, false);
    }

    /// Like [`Core::start_closing`], for a connection owed what is queued (an
    /// answer): a reader that keeps taking bytes gets all of them, however
    /// slowly (each write that makes progress gives it `idle_timeout` more).
    pub(crate) fn close_after_answer(&mut self, token: Token, linger: bool) {
        self.close_after_flush(token, linger, true);
    }

    fn close_after_flush(&mut self, token: Token, linger: bool, patient: bool) {
        let now = self.now;
        let limits = self.config.limits;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        conn.kind = Kind::Closing(Closing::Flushing { linger, patient });
        conn.leftover = Vec::new();
        conn.paused = false;
        conn.deadline = Some(
            now + if patient {
                limits.idle_timeout
            } else {
                limits.close_timeout
            },
        );
        self.feeds.forget(token);
        self.catching_up.remove(&token);
        self.rearm(token);
        self.mark_dirty(token);
    }

    // ---- Shutdown ------------------------------------------------------------------

    /// Closes every connection (WebSockets with `1001 Going Away`) and sets
    /// the deadline by which the loop ends.
    pub fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + self.config.limits.shutdown_timeout);
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let idle_http = match &conn.kind {
                Kind::Http(http) => {
                    http.session.is_idle() && conn.leftover.is_empty() && conn.outbox.is_empty()
                }
                _ => false,
            };
            let held = matches!(&conn.kind, Kind::Http(http) if http.waiting != Waiting::Nothing);
            if idle_http {
                // Between requests (or never used, like a browser's
                // preconnected socket): nothing is owed, so no lingering close.
                self.dead.push(token);
            } else if held {
                // A held answer is given now (what there is), then the
                // connection closes.
                match conn.http().map(|http| &http.waiting) {
                    Some(Waiting::LongPoll { .. }) => self.answer_long_poll(token),
                    _ => self.respond_late(token),
                }
            } else {
                self.close(token, CloseCode::GOING_AWAY, "server shutting down");
            }
        }
    }

    // ---- User timers ---------------------------------------------------------------

    /// Schedules a user timer.
    pub(crate) fn set_timer(&mut self, delay: Duration, period: Option<Duration>) -> TimerId {
        self.timers.set_user(self.now, delay, period)
    }
}
