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
//! - `poll_answers`: poll answers shared by every poll that asks the same
//!   thing, until the next publish;
//! - [`timers`]: the deadline heap and user timers;
//! - [`connection`]: one connection's state; [`slab`]: their tokens;
//! - `outbound` (feature `client`): WebSockets the loop opens itself
//!   (`Context::connect`), their attempts and reconnects;
//! - [`handle`]: commands from other threads; [`trace`]: `--trace` and
//!   the lines the [`lab`] streams to a page (`/lab/events`);
//!   [`stats`]: counters; [`config`]: configuration; [`store`]: the
//!   loop's side of the store behind the history (timers, the Redis link,
//!   publishes answered later, cursors served from the stream);
//! - `tls` (feature `tls`): writing through TLS, `close_notify`, TLS faults;
//! - this file: the `Core` itself, deadlines, closing and shutdown.

pub mod config;
pub mod connection;
pub mod handle;
pub mod lab;
pub(crate) mod last_write;
#[cfg(feature = "client")]
pub mod outbound;
pub mod outbox;
pub(crate) mod poll_answers;
pub mod slab;
pub mod stats;
pub mod store;
pub mod streams;
pub mod timers;
#[cfg(feature = "tls")]
mod tls;
pub mod trace;

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::net::Shutdown;
use std::time::Duration;

use mio::{Registry, Token};

use crate::engine::config::Config;
use crate::engine::connection::{Closing, Connection, Kind, Waiting};
use crate::engine::handle::Handle;
use crate::engine::outbox::{FanoutLine, Flushed, Kind as Chunk, Spare};
use crate::engine::poll_answers::PollAnswers;
use crate::engine::slab::Slab;
use crate::engine::stats::Stats;
use crate::engine::stats::{Ending, TimeoutKind};
use crate::engine::store::StoreSide;
use crate::engine::timers::{Timers, Wake};
use crate::engine::trace::Tracer;
use crate::feeds::Feeds;
use crate::http::session::HttpTimeout;
use crate::http::{HttpConfig, Response};
use crate::ids::{ConnId, TimerId};
use crate::sse;
use crate::time::Instant;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{Shared, DEFAULT_THRESHOLD};
use crate::ws::frame::MessageDecoder;
#[cfg(feature = "client")]
use crate::ws::frame::Role;
#[cfg(feature = "client")]
use crate::ws::session::State;
use crate::ws::session::{SessionConfig, Timeout};

/// How often a loop publishes its counters for the others to add up (with
/// several loops): totals are at most this old.
pub const STATS_PERIOD: Duration = Duration::from_millis(50);

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
    /// Poll answers of the current history, shared by the polls that ask
    /// the same (forgotten at each publish).
    pub(crate) poll_answers: PollAnswers,
    /// Followers catching up on history: the id after which their replay
    /// goes on once their queue drains (see [`streams`]).
    pub(crate) catching_up: HashMap<Token, u64>,
    /// Connections to remove (the loop tells the `App` about WebSockets).
    pub(crate) dead: Vec<Token>,
    /// The app's own data per connection ([`crate::app::Context::set_data`]):
    /// a side table, so connections without any cost nothing.
    pub(crate) data: HashMap<Token, Box<dyn Any>>,
    pub(crate) handle: Handle,
    /// This loop's place among the loops of the server (0 when alone).
    pub(crate) loop_index: u16,
    /// How many loops the server runs (kept here so that one loop never
    /// asks the shared handle: no atomic on its hot path).
    pub(crate) loops: usize,
    /// When this loop next publishes its counters for the others (several
    /// loops only; see [`Core::share_stats`]).
    pub(crate) stats_due: Option<Instant>,
    /// Set while arrivals are being fanned out (see [`Core::deliver_arrivals`]).
    delivering: bool,
    /// Set when a graceful shutdown began; the loop ends when every
    /// connection is gone or this deadline passes.
    pub(crate) shutdown_deadline: Option<Instant>,
    /// The protocol trace and the lab, when either is asked for.
    pub(crate) tracer: Option<Tracer>,
    /// The state of the jitter generator (see [`Core::jitter`]).
    rng: u64,
    /// The WebSockets this loop opened itself (feature `client`).
    #[cfg(feature = "client")]
    pub(crate) outbound: outbound::Outbound,
    /// The loop's side of the store behind the history.
    pub(crate) store: StoreSide,
    /// The certificate new TLS connections get (feature `tls`); replaced by
    /// a reload, while open connections keep their own.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
    /// Plaintext of small chunks gathered into one TLS record (feature
    /// `tls`): loop-wide, empty until a TLS connection writes.
    #[cfg(feature = "tls")]
    pub(crate) tls_gather: Vec<u8>,
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
        mut feeds: Feeds,
        seed: u64,
        origin: std::time::Instant,
    ) -> Core {
        let tracer = Tracer::new(config.trace.take(), config.lab);
        let store = StoreSide::new(&mut feeds);
        let mut stats = Stats::default();
        stats.store.backend = feeds.store_name();
        stats.store.last_id = feeds.latest_id();
        stats.store.connected = !feeds.ids_from_elsewhere();
        #[cfg(feature = "tls")]
        let tls = config.tls.take();
        // The loop's links (`Context::connect`) compress with it too, at the
        // default threshold when the server's own compression is off.
        #[cfg(feature = "deflate")]
        let deflate = Shared::new(
            config
                .deflate
                .map_or(DEFAULT_THRESHOLD, |deflate| deflate.threshold),
        );
        Core {
            store,
            http: config.limits.http(),
            websocket: config.limits.websocket(),
            feeds,
            config,
            registry,
            conns: Slab::new(),
            timers: Timers::default(),
            stats,
            origin,
            now: Instant::ZERO,
            dirty: Vec::new(),
            fanout: FanoutLine::default(),
            ready: VecDeque::new(),
            spare: Spare::default(),
            recipients: Vec::new(),
            poll_answers: PollAnswers::default(),
            catching_up: HashMap::new(),
            dead: Vec::new(),
            data: HashMap::new(),
            handle,
            loop_index: 0,
            loops: 1,
            stats_due: None,
            delivering: false,
            shutdown_deadline: None,
            tracer,
            // Any non-zero seed; the ids' seed differs per run, so does this.
            rng: seed | 1,
            #[cfg(feature = "client")]
            outbound: outbound::Outbound::default(),
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            tls_gather: Vec::new(),
            #[cfg(feature = "deflate")]
            deflate,
        }
    }

    /// The id the app knows a connection of this loop by.
    pub(crate) fn conn_id(&self, token: Token) -> ConnId {
        ConnId::new(self.loop_index, token)
    }

    /// The token of a connection of this loop; `None` for one of another loop.
    pub(crate) fn local(&self, id: ConnId) -> Option<Token> {
        (id.loop_index == self.loop_index).then_some(id.token)
    }

    /// With several loops, at the end of a turn: publishes this loop's
    /// counters for the others if they changed, at most every
    /// [`STATS_PERIOD`] (a compare and a copy of a few hundred bytes under a
    /// lock). Publishing arms a timer for the end of the period, so the last
    /// change of a burst is published too; a loop whose counters stay put
    /// arms nothing and sleeps.
    pub(crate) fn share_stats(&mut self) {
        if self.loops < 2 || self.stats_due.is_some_and(|due| self.now < due) {
            return;
        }
        self.stats_due = None;
        #[cfg(feature = "deflate")]
        {
            self.stats.deflate = self.deflate.counters;
        }
        if self.handle.publish_stats(&self.stats) {
            let due = self.now + STATS_PERIOD;
            self.stats_due = Some(due);
            self.timers.arm(due, Wake::ShareStats);
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

    /// Runs `write` on the tracer, if there is one (the tracer's calls ask
    /// their sinks whether they want the connection before formatting).
    pub(crate) fn trace(&mut self, write: impl FnOnce(&mut Tracer, Instant)) {
        if let Some(tracer) = self.tracer.as_mut() {
            write(tracer, self.now);
        }
    }

    /// Whether a line about this connection would go anywhere: with the
    /// trace and the lab both off, one `Option` check. Callers ask before
    /// they copy or format anything for the tracer.
    #[inline]
    pub(crate) fn tracing(&self, token: Token) -> bool {
        self.tracer
            .as_ref()
            .is_some_and(|tracer| tracer.wants(token))
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
            // An outbound socket plays by its link's rules.
            #[cfg(feature = "client")]
            Kind::WebSocket(ws) => ws.session.poll_timeout(self.outbound.rules(
                token,
                ws.session.role(),
                &self.websocket,
            )),
            #[cfg(not(feature = "client"))]
            Kind::WebSocket(ws) => ws.session.poll_timeout(&self.websocket),
            Kind::EventStream | Kind::Closing(_) => None,
            // The link's own timer bounds an attempt (see `outbound`).
            #[cfg(feature = "client")]
            Kind::Dialing(_) => None,
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
            Kind::Closing(_) if own_due => {
                self.end(token, Ending::Timeout(TimeoutKind::Close));
                self.dead.push(token);
            }
            Kind::EventStream | Kind::Closing(_) => {}
            #[cfg(feature = "client")]
            Kind::Dialing(_) => {}
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
        // The head's deadline runs from accept, so it bounds a TLS handshake
        // too: a silent or trickling TLS client is closed by it.
        #[cfg(feature = "tls")]
        self.tls_handshake_timeout(token);
        let kind = match timeout {
            HttpTimeout::Idle => TimeoutKind::Idle,
            HttpTimeout::Head => TimeoutKind::Handshake,
            HttpTimeout::Body => TimeoutKind::Body,
        };
        self.end(token, Ending::Timeout(kind));
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
            let kind = match timeout {
                Timeout::Idle => TimeoutKind::Idle,
                Timeout::Pong => TimeoutKind::Pong,
                Timeout::Close => TimeoutKind::Close,
            };
            self.end(token, Ending::Timeout(kind));
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
        #[cfg(feature = "client")]
        if self.client_awaits_fin(token) {
            return;
        }
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

    /// RFC 6455 §7.1.1: after the closing handshake "the client SHOULD wait
    /// for the server to close the connection" — the server then holds
    /// TIME_WAIT. An outbound socket waits for the server's FIN until its
    /// session's `close_timeout` passes (then it closes TCP itself).
    #[cfg(feature = "client")]
    fn client_awaits_fin(&self, token: Token) -> bool {
        let Some(Kind::WebSocket(ws)) = self.conns.get(token).map(|conn| &conn.kind) else {
            return false;
        };
        if ws.session.role() != Role::Client || ws.session.state() != State::Closed {
            return false;
        }
        let rules = self
            .outbound
            .rules(token, ws.session.role(), &self.websocket);
        ws.session
            .poll_timeout(rules)
            .is_some_and(|deadline| deadline > self.now)
    }

    /// A fresh decoder for `token`'s WebSocket (see `WsConn::decoder`), with
    /// the limits its session was made with: the server's, or an outbound
    /// link's own (feature `client`).
    pub(crate) fn fresh_decoder(&self, token: Token) -> Option<Box<MessageDecoder>> {
        let Kind::WebSocket(ws) = &self.conns.get(token)?.kind else {
            return None;
        };
        #[cfg(feature = "client")]
        let rules = self
            .outbound
            .rules(token, ws.session.role(), &self.websocket);
        #[cfg(not(feature = "client"))]
        let rules = &self.websocket;
        Some(Box::new(ws.session.fresh_decoder(rules.limits)))
    }

    // ---- Closing -------------------------------------------------------------------

    /// Records why a connection is ending, unless a reason is known already
    /// (the first one is the cause; what follows is its consequence).
    pub(crate) fn end(&mut self, token: Token, ending: Ending) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.ending.get_or_insert(ending);
        }
    }

    /// After a write: a write that made progress gives a reader that takes
    /// what it is owed `idle_timeout` more; then a closing connection moves
    /// along (half-close and linger, or close), or a paused connection reads
    /// again once its queue has drained below half its bound.
    pub(crate) fn after_write(&mut self, token: Token, flushed: Flushed) {
        let now = self.now;
        let limits = self.config.limits;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if flushed.written > 0 {
            // A reader that still takes the bytes it is owed keeps its
            // connection, kept-alive or closing; one that takes nothing for
            // `idle_timeout` is gone.
            conn.on_write_progress(now, limits.idle_timeout);
            self.rearm(token);
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.kind {
            // Still writing: the close deadline proper starts once everything
            // is handed over.
            Kind::Closing(Closing::Flushing { .. }) if !flushed.drained => {}
            Kind::Closing(Closing::Flushing { linger, .. }) => {
                if linger && !conn.peer_fin {
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
                && conn.queued_bytes() <= conn.input_pause_bytes(&limits) / 2
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
        // An outbound WebSocket's link is not reopened once closed.
        #[cfg(feature = "client")]
        if let Some(stopped) = self.stop_link(token) {
            return stopped;
        }
        let Some(conn) = self.conns.get(token) else {
            return false;
        };
        match &conn.kind {
            Kind::WebSocket(_) => {
                self.end(token, Ending::CloseSent(code.0));
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
            // Stopped above.
            #[cfg(feature = "client")]
            Kind::Dialing(_) => true,
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
        conn.leftover = Box::default();
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
    ///
    /// The drain, for each kind of connection:
    /// - between requests (or never used): closed at once, nothing is owed;
    /// - a request being read or answered: it finishes, answered with
    ///   `Connection: close` (keep-alive is off from now on);
    /// - a held long-poll: `503` with a `Retry-After` spread over
    ///   `reconnect_spread` (RFC 9110 §10.2.3), so clients do not all come back in
    ///   the same second;
    /// - a request answered later (`Reply::Later`): it has until three
    ///   quarters of `shutdown_timeout`, then `504`;
    /// - an event stream: a last `retry:` spread the same way (WHATWG HTML
    ///   §9.2.6: the browser waits that long before reconnecting), then its end;
    /// - a WebSocket: close `1001 Going Away` (RFC 6455 §7.4.1) and its handshake.
    pub fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let limits = self.config.limits;
        self.shutdown_deadline = Some(self.now + limits.shutdown_timeout);
        let later_by = self.now + limits.shutdown_timeout * 3 / 4;
        self.log(&format!(
            "shutdown: stopped accepting; draining {} connections (deadline {} ms)",
            self.conns.len(),
            limits.shutdown_timeout.as_millis()
        ));
        for token in self.conns.tokens() {
            self.end(token, Ending::Shutdown);
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            match &conn.kind {
                Kind::Http(http) if http.waiting == Waiting::Later => {
                    conn.deadline = Some(conn.deadline.map_or(later_by, |d| d.min(later_by)));
                    self.rearm(token);
                }
                Kind::Http(http) if matches!(http.waiting, Waiting::LongPoll { .. }) => {
                    let seconds = 1 + self.jitter(limits.reconnect_spread).as_secs();
                    let busy = Response::text(503, "the server is restarting")
                        .header("Retry-After", &seconds.to_string());
                    self.answer_with(token, &busy);
                }
                Kind::Http(http) => {
                    if http.session.is_idle()
                        && conn.leftover.is_empty()
                        && conn.queued_bytes() == 0
                    {
                        // Between requests (or never used, like a browser's
                        // preconnected socket): nothing is owed, no lingering close.
                        self.dead.push(token);
                    }
                    // Otherwise the request under way finishes, answered with
                    // `Connection: close`.
                }
                Kind::EventStream => {
                    let retry = self.config.sse_retry_ms.saturating_add(
                        u32::try_from(self.jitter(limits.reconnect_spread).as_millis())
                            .unwrap_or(u32::MAX),
                    );
                    self.push_protocol(token, &|out| sse::encode_retry(retry, out));
                    self.close_after_answer(token, true);
                }
                Kind::WebSocket(_) => {
                    self.close(token, CloseCode::GOING_AWAY, "server shutting down");
                }
                Kind::Closing(_) => {}
                // An outbound attempt is given up: nothing was opened.
                #[cfg(feature = "client")]
                Kind::Dialing(_) => {
                    self.close(token, CloseCode::GOING_AWAY, "");
                }
            }
        }
        #[cfg(feature = "client")]
        self.stop_links();
    }

    /// A random duration in `[0, window)`, for spreading reconnections.
    /// xorshift64*: not cryptographic, and it need not be — it only keeps
    /// clients from coming back in lock step.
    pub(crate) fn jitter(&mut self, window: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let random = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(random % micros)
    }

    /// One line on stderr for an operator (when `Config::log` is on).
    pub(crate) fn log(&self, line: &str) {
        if !self.config.log {
            return;
        }
        match self.loops {
            1 => eprintln!("pushloop: {line}"),
            _ => eprintln!("pushloop[{}]: {line}", self.loop_index),
        }
    }

    // ---- User timers ---------------------------------------------------------------

    /// Schedules a user timer.
    pub(crate) fn set_timer(&mut self, delay: Duration, period: Option<Duration>) -> TimerId {
        self.timers.set_user(self.now, delay, period)
    }
}
