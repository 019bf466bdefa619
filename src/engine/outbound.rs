//! Outbound WebSockets (feature `client`): the loop as a client.
//!
//! [`crate::app::Context::connect`] makes a *link*: an outbound WebSocket
//! that the loop opens, keeps and reopens on its own, known to the app by
//! one [`crate::app::ConnId`] for its whole life. Each attempt is an
//! ordinary connection of the loop under the link's token, so an open one is
//! read into the same scratch buffer, driven by the same
//! [`crate::ws::session::Session`] (in the client role: every frame masked
//! with a fresh key, RFC 6455 §5.3), written from the same outbox, and
//! delivered through the same `App` callbacks as the sockets browsers open.
//!
//! Reading list: RFC 6455 §4.1 (the client's handshake and its checks:
//! [`crate::ws::handshake_client`]), §5.3 (masking), §7.1.1 (the client
//! waits for the server to close TCP), §7.1.7 and §7.4.1 (failing, close
//! codes); the reconnect policy is the blocking client's
//! ([`crate::client::backoff`]), and so is the cursor a pushloop feed is
//! resumed from (`?after=ID`).
//!
//! One attempt, step by step:
//!
//! ```text
//!  name ──(helper thread: getaddrinfo)──┐       an IP address skips the thread
//!                                       ▼
//!  Resolving ──→ Dialing: connect (non-blocking, each address in turn)
//!                  │ WRITABLE: connected → our request (§4.1) queued
//!                  │ input: the answer's head scanned, then checked (§4.1)
//!                  ▼
//!                Open: Kind::WebSocket, client role ──→ App::open
//!                  │ the connection ends (App::close says how)
//!                  ▼
//!                Waiting (the backoff's delay) ──→ the next attempt
//! ```
//!
//! `connect_timeout` bounds each attempt: the lookup, the connects and the
//! handshake, until the `101` is checked. Every end — an attempt that
//! failed, an open connection that closed — is settled in one place at the
//! end of the turn (`Core::settle_links`): another attempt after the
//! policy's delay, or the end of the link, decided as the blocking
//! [`crate::client::ws::WsClient`] decides.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;
use std::vec::IntoIter;

use mio::{Interest, Token};

use crate::client::backoff::Backoff;
use crate::client::random::OsRandom;
use crate::client::url::{Scheme, Url};
use crate::client::ws::{
    check_setup, comes_back_after, fresh_key, retry_cause, retry_delay, Disconnect, FeedCursor,
    Lost, Offer, Settled, SetupError, WsConfig, WsError,
};
use crate::engine::connection::{Connection, Dialing, Kind, WsConn};
use crate::engine::handle::Command;
use crate::engine::stats::{Ending, TimeoutKind, Transport};
use crate::engine::timers::Wake;
use crate::engine::Core;
use crate::http::response_head::ResponseHeadScanner;
use crate::http::HttpSession;
use crate::time::Instant;
use crate::ws::close::CloseCode;
use crate::ws::frame::Role;
use crate::ws::handshake_client::AcceptError;
use crate::ws::session::SessionConfig;

/// The loop's links and what they share.
#[derive(Default)]
pub(crate) struct Outbound {
    links: HashMap<Token, Link>,
    /// The masking keys of every outbound socket of the loop (RFC 6455 §5.3:
    /// a fresh key per frame; [`OsRandom`] says why a pool of them stays
    /// unpredictable).
    keys: OsRandom,
    /// Links whose attempt or connection ended this turn, to be settled at
    /// its end ([`Core::settle_links`]).
    ended: Vec<Token>,
}

/// One outbound WebSocket, across its attempts.
struct Link {
    /// The URL as the app gave it (each attempt adds the feed cursor).
    url: Url,
    config: WsConfig,
    /// `config`'s session rules, lent to the session at every call.
    rules: SessionConfig,
    backoff: Backoff<OsRandom>,
    cursor: FeedCursor,
    phase: Phase,
    /// Counts attempts, so a lookup that answers after its attempt ended
    /// is recognised and dropped.
    attempt: u64,
    /// The time of the timer entry armed for the link (an attempt's
    /// deadline, or the end of a delay); an entry for any other time is
    /// stale.
    due: Option<Instant>,
    /// Why the attempt failed, when the loop knows more than the
    /// connection's ending says (a refused connect, a wrong accept key).
    failure: Option<WsError>,
    /// How the link's last connection ended, as the loop recorded it.
    ending: Option<Ending>,
    /// The app closed the link (or the server is shutting down): it is not
    /// reopened.
    stopped: bool,
    /// The subprotocol the server chose for the open connection (§4.1 item 6).
    protocol: Option<String>,
}

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its host's name is being looked up on a helper thread.
    Resolving,
    /// A connection of kind `Dialing`: connecting, or handshaking.
    Dialing,
    /// A connection of kind `WebSocket` (open, or closing).
    Open,
    /// Waiting out the reconnect delay (no connection).
    Waiting,
}

/// What the server's answer (so far) made of an attempt.
pub(crate) enum Answer {
    /// The head is not complete: keep the bytes and read more.
    NeedMore,
    /// The handshake passed every check of §4.1: the connection is a
    /// WebSocket now, and its frames start `used` bytes in.
    Opened {
        /// The length of the answer's head.
        used: usize,
    },
    /// The attempt failed (the connection is dropped, the link settles).
    Failed,
}

/// An attempt that failed, or a link that ended on a failure, as the app
/// hears of it (`App::connect_failed`).
pub(crate) struct LinkFailure {
    pub(crate) token: Token,
    pub(crate) error: WsError,
    /// When the next attempt starts; `None`: the link is over.
    pub(crate) retry: Option<Duration>,
}

impl Outbound {
    /// The rules and the keys a session is lent: a link's own, for an
    /// outbound socket; the server's rules and no keys otherwise.
    pub(crate) fn session_parts<'a>(
        &'a mut self,
        token: Token,
        role: Role,
        server: &'a SessionConfig,
    ) -> (&'a SessionConfig, Option<&'a mut OsRandom>) {
        match (role, self.links.get(&token)) {
            (Role::Client, Some(link)) => (&link.rules, Some(&mut self.keys)),
            _ => (server, None),
        }
    }

    /// The rules of a session (see [`Outbound::session_parts`]).
    pub(crate) fn rules<'a>(
        &'a self,
        token: Token,
        role: Role,
        server: &'a SessionConfig,
    ) -> &'a SessionConfig {
        match (role, self.links.get(&token)) {
            (Role::Client, Some(link)) => &link.rules,
            _ => server,
        }
    }

    /// Whether the OS failed to give a masking key since the last call: the
    /// frames just written carry a guessable key and must not leave (§5.3).
    /// The link then ends with [`WsError::Random`].
    pub(crate) fn key_failure(&mut self, token: Token) -> bool {
        let Some(kind) = self.keys.take_failure() else {
            return false;
        };
        if let Some(link) = self.links.get_mut(&token) {
            link.failure = Some(WsError::Random(kind));
        }
        true
    }
}

impl Core {
    /// Makes a link to a `ws://` URL and starts its first attempt; see
    /// [`crate::app::Context::connect`].
    pub(crate) fn connect_link(
        &mut self,
        url: &str,
        config: WsConfig,
    ) -> Result<Token, SetupError> {
        let url = Url::parse(url).map_err(SetupError::Url)?;
        check_setup(&url, &config)?;
        if url.scheme() == Scheme::Wss {
            return Err(SetupError::TlsNotInLoop);
        }
        let token = self.conns.reserve();
        let link = Link {
            rules: config.session(),
            backoff: Backoff::new(config.reconnect, OsRandom::new()),
            cursor: FeedCursor::new(&config),
            url,
            config,
            phase: Phase::Waiting,
            attempt: 0,
            due: None,
            failure: None,
            ending: None,
            stopped: false,
            protocol: None,
        };
        self.outbound.links.insert(token, link);
        self.start_attempt(token);
        Ok(token)
    }

    /// Starts a link's next attempt: its deadline, then the connect (an IP
    /// address) or the lookup of its name on a helper thread (a resolver
    /// may take seconds; the loop must not wait for it).
    fn start_attempt(&mut self, token: Token) {
        let (now, shutting_down) = (self.now, self.shutdown_deadline.is_some());
        let Some(link) = self.outbound.links.get_mut(&token) else {
            return;
        };
        link.attempt += 1;
        link.failure = None;
        link.ending = None;
        if shutting_down {
            // A link made while the server drains gets no connection.
            return self.fail_attempt(token, WsError::Connect(ErrorKind::ConnectionAborted));
        }
        let deadline = now + link.config.connect_timeout;
        link.due = Some(deadline);
        self.timers.arm(deadline, Wake::Link(token));
        let port = link.url.port();
        if let Ok(ip) = link.url.host().parse::<IpAddr>() {
            link.phase = Phase::Dialing;
            let addrs = vec![SocketAddr::new(ip, port)].into_iter();
            return self.dial(token, addrs, ErrorKind::NotFound);
        }
        link.phase = Phase::Resolving;
        let (host, attempt, handle) = (
            link.url.host().to_owned(),
            link.attempt,
            self.handle.clone(),
        );
        if self.tracing(token) {
            let what = format!("looking up {host}");
            self.trace(|tracer, now| tracer.note(now, token, "tcp", &what, ""));
        }
        let lookup = std::thread::Builder::new()
            .name("pushloop-resolve".into())
            .spawn(move || {
                let addrs = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect)
                    .map_err(|error| error.kind());
                // Once the loop has ended no one waits for the answer.
                let _ = handle.command_waiting(Command::Resolved {
                    link: token,
                    attempt,
                    addrs,
                });
            });
        if let Err(error) = lookup {
            self.fail_attempt(token, WsError::Connect(error.kind()));
        }
    }

    /// A lookup answered (see [`Command::Resolved`]); one that answers
    /// after its attempt ended is dropped.
    pub(crate) fn link_resolved(
        &mut self,
        token: Token,
        attempt: u64,
        addrs: Result<Vec<SocketAddr>, ErrorKind>,
    ) {
        let Some(link) = self.outbound.links.get_mut(&token) else {
            return;
        };
        if link.attempt != attempt || link.phase != Phase::Resolving {
            return;
        }
        match addrs {
            Ok(addrs) => {
                link.phase = Phase::Dialing;
                self.dial(token, addrs.into_iter(), ErrorKind::NotFound);
            }
            Err(kind) => self.fail_attempt(token, WsError::Connect(kind)),
        }
    }

    /// Connects to the first of `addrs` that takes a connect; the others are
    /// kept in case it fails. When none is left, the attempt fails with the
    /// last error (`last`, for a list that was empty).
    fn dial(&mut self, token: Token, mut addrs: IntoIter<SocketAddr>, mut last: ErrorKind) {
        while let Some(addr) = addrs.next() {
            match mio::net::TcpStream::connect(addr) {
                Ok(stream) => return self.place_socket(token, stream, addr, addrs),
                Err(error) => last = error.kind(),
            }
        }
        self.fail_attempt(token, WsError::Connect(last));
    }

    /// Puts a socket that is connecting under the link's token: in a new
    /// `Dialing` connection for the attempt's first address, in place of the
    /// one that failed for the next.
    fn place_socket(
        &mut self,
        token: Token,
        stream: mio::net::TcpStream,
        addr: SocketAddr,
        next_addrs: IntoIter<SocketAddr>,
    ) {
        if self.conns.get(token).is_none() {
            let key = match fresh_key() {
                Ok(key) => key,
                Err(error) => return self.fail_attempt(token, error),
            };
            let max_head_bytes = self.link_head_limit(token);
            let mut conn = Connection::new(stream, HttpSession::new(self.now));
            conn.kind = Kind::Dialing(Box::new(Dialing {
                connecting: true,
                next_addrs,
                key,
                scanner: ResponseHeadScanner::new(max_head_bytes),
            }));
            conn.transport = Transport::WebSocket;
            if self.conns.fill(token, conn).is_err() {
                return;
            }
            self.stats.websocket.connections += 1;
        } else if let Some(conn) = self.conns.get_mut(token) {
            // The socket that failed is closed here (and so leaves epoll).
            conn.stream = stream;
            if let Kind::Dialing(dialing) = &mut conn.kind {
                dialing.connecting = true;
                dialing.next_addrs = next_addrs;
            }
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // WRITABLE says the connect is done (or an error, that it failed).
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.registry.register(&mut conn.stream, token, interest) {
            return self.fail_attempt(token, WsError::Connect(error.kind()));
        }
        conn.wants_writable = true;
        if self.tracing(token) {
            let what = format!("connecting to {addr}");
            self.trace(|tracer, now| tracer.note(now, token, "tcp", &what, ""));
        }
    }

    /// The longest answer head a link takes: its `max_head_bytes`, within
    /// the loop's own (the read buffer holds one head and room to read more).
    fn link_head_limit(&self, token: Token) -> usize {
        let loop_limit = self.config.limits.max_head_bytes;
        self.outbound.links.get(&token).map_or(loop_limit, |link| {
            link.config.max_head_bytes.min(loop_limit)
        })
    }

    /// The connection is an outbound one whose TCP connect is under way:
    /// its readiness is the connect's outcome, not input.
    pub(crate) fn is_connecting(&self, token: Token) -> bool {
        self.conns
            .get(token)
            .is_some_and(|conn| matches!(&conn.kind, Kind::Dialing(dialing) if dialing.connecting))
    }

    /// A connecting socket is ready: connected (our request goes out), not
    /// yet (a spurious wake-up), or refused (the next address, if any).
    pub(crate) fn link_connect_ready(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // mio's way to learn how a non-blocking connect went: a pending
        // error, else a peer address once connected.
        let outcome = match conn.stream.take_error() {
            Ok(Some(error)) | Err(error) => Err(error.kind()),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(error) if error.kind() == ErrorKind::NotConnected => Ok(false),
                Err(error) => Err(error.kind()),
            },
        };
        match outcome {
            Ok(true) => self.send_request(token),
            Ok(false) => {}
            Err(kind) => {
                let next = match &mut conn.kind {
                    Kind::Dialing(dialing) => std::mem::take(&mut dialing.next_addrs),
                    _ => IntoIter::default(),
                };
                self.dial(token, next, kind);
            }
        }
    }

    /// Connected: queue the opening handshake's request (§4.1), with the
    /// feed cursor when the link resumes one.
    fn send_request(&mut self, token: Token) {
        let (Some(link), Some(conn)) = (self.outbound.links.get(&token), self.conns.get_mut(token))
        else {
            return;
        };
        let Kind::Dialing(dialing) = &mut conn.kind else {
            return;
        };
        dialing.connecting = false;
        // Small frames must not wait for Nagle's algorithm.
        let _ = conn.stream.set_nodelay(true);
        let url = link.cursor.url(&link.url);
        let head = Offer::new(&url, &link.config)
            .and_then(|offer| offer.head(&url, &link.config, &dialing.key));
        let head = match head {
            Ok(head) => head,
            // Checked when the link was made; a cursor cannot break it.
            Err(error) => return self.fail_attempt(token, WsError::Setup(error)),
        };
        self.trace(|tracer, now| tracer.note(now, token, "tcp", "connected", ""));
        self.push_protocol(token, &|out| out.extend_from_slice(&head));
        // What the server sent at once is read next turn: the edge that
        // announced it came with the connect, and no other will.
        self.make_ready(token);
    }

    /// Bytes of the server's answer (everything since our request, first
    /// byte first): finds the head's end, then runs §4.1's checks. On
    /// success the connection becomes a client-role WebSocket.
    pub(crate) fn link_answer(&mut self, token: Token, input: &[u8]) -> Answer {
        let Some(Kind::Dialing(dialing)) = self.conns.get_mut(token).map(|conn| &mut conn.kind)
        else {
            return Answer::Failed;
        };
        let head_len = match dialing.scanner.scan(input) {
            Ok(None) => return Answer::NeedMore,
            Ok(Some(head_len)) => head_len,
            Err(error) => {
                let error = WsError::Handshake(AcceptError::Response(error));
                self.fail_attempt(token, error);
                return Answer::Failed;
            }
        };
        let key = dialing.key;
        let Some(link) = self.outbound.links.get(&token) else {
            return Answer::Failed;
        };
        let head = input.get(..head_len).unwrap_or_default();
        let checked = Offer::new(&link.url, &link.config)
            .map_err(WsError::Setup)
            .and_then(|offer| offer.check_answer(&link.url, &link.config, &key, head));
        match checked {
            Ok(settled) => {
                self.open_link(token, settled);
                Answer::Opened { used: head_len }
            }
            Err(error) => {
                self.fail_attempt(token, error);
                Answer::Failed
            }
        }
    }

    /// The handshake passed: the connection is a WebSocket in the client
    /// role, under the link's limits and timeouts, compressed when
    /// permessage-deflate was agreed (the loop's shared compressor and
    /// inflater serve the directions without context takeover).
    fn open_link(&mut self, token: Token, settled: Settled) {
        let (now, opened_at) = (self.now, self.std_instant(self.now));
        let (Some(link), Some(conn)) = (
            self.outbound.links.get_mut(&token),
            self.conns.get_mut(token),
        ) else {
            return;
        };
        link.phase = Phase::Open;
        link.protocol = settled.protocol.clone();
        // The attempt's deadline is met (its timer entry goes stale).
        link.due = None;
        link.backoff.connected(opened_at);
        let (session, _) = settled.session(link.config.limits, now);
        conn.kind = Kind::WebSocket(Box::new(WsConn::new(session)));
        self.trace(|tracer, now| {
            tracer.note(now, token, "websocket", "open (client)", "RFC 6455 §4.1")
        });
        self.rearm(token);
    }

    /// The attempt failed with `error`: its connection (if it has one yet)
    /// is dropped without a word (§4.1: the WebSocket never opened), and the
    /// link settles at the end of the turn.
    fn fail_attempt(&mut self, token: Token, error: WsError) {
        if let Some(link) = self.outbound.links.get_mut(&token) {
            link.failure = Some(error);
        }
        if self.conns.get(token).is_some() {
            let ending = match error {
                WsError::Lost(Lost::HandshakeTimeout) | WsError::Connect(ErrorKind::TimedOut) => {
                    Ending::Timeout(TimeoutKind::Handshake)
                }
                // A browser reports a failed handshake as 1006 too.
                _ => Ending::Lost,
            };
            self.end(token, ending);
            self.dead.push(token);
        } else {
            self.outbound.ended.push(token);
        }
    }

    /// A link's timer entry for `when` popped: its attempt ran out of time,
    /// or its delay is over. A stale entry does nothing.
    pub(crate) fn link_timer(&mut self, token: Token, when: Instant) {
        let Some(link) = self.outbound.links.get_mut(&token) else {
            return;
        };
        if link.due != Some(when) {
            return;
        }
        link.due = None;
        match link.phase {
            Phase::Waiting => self.start_attempt(token),
            Phase::Resolving => self.fail_attempt(token, WsError::Connect(ErrorKind::TimedOut)),
            Phase::Dialing => {
                let error = if self.is_connecting(token) {
                    WsError::Connect(ErrorKind::TimedOut)
                } else {
                    WsError::Lost(Lost::HandshakeTimeout)
                };
                self.fail_attempt(token, error);
            }
            Phase::Open => {}
        }
    }

    /// The subprotocol the server chose for a link's open connection.
    pub(crate) fn link_protocol(&self, token: Token) -> Option<&str> {
        let link = self.outbound.links.get(&token)?;
        (link.phase == Phase::Open).then_some(link.protocol.as_deref())?
    }

    /// A text message arrived on a connection: on a link that resumes a
    /// feed, an event moves its cursor.
    pub(crate) fn link_saw_text(&mut self, token: Token, text: &str) {
        if self.outbound.links.is_empty() {
            return;
        }
        if let Some(link) = self.outbound.links.get_mut(&token) {
            link.cursor.saw(text);
        }
    }

    /// Takes a finished connection out of its slot if it is a link's: the
    /// token stays the link's, and the link settles at the end of the turn.
    /// `None` for any other connection (the caller removes it).
    pub(crate) fn take_link_conn(&mut self, token: Token) -> Option<Connection> {
        let link = self.outbound.links.get_mut(&token)?;
        let conn = self.conns.vacate(token)?;
        link.ending = conn.ending;
        self.outbound.ended.push(token);
        Some(conn)
    }

    /// The app closes a link ([`Core::close`]): it is not reopened. `None`
    /// for an open one, which closes as any WebSocket (the closing
    /// handshake); `Some(true)` for one that was connecting or waiting,
    /// which ends now, without a callback (`Some(false)` if it was closed
    /// already); `None` too if `token` is no link.
    pub(crate) fn stop_link(&mut self, token: Token) -> Option<bool> {
        let link = self.outbound.links.get_mut(&token)?;
        let already = std::mem::replace(&mut link.stopped, true);
        match link.phase {
            Phase::Open => None,
            // Closed before, and going away at the end of the turn.
            _ if already => Some(false),
            Phase::Dialing => {
                self.dead.push(token);
                Some(true)
            }
            Phase::Resolving | Phase::Waiting => {
                self.finish_link(token);
                Some(true)
            }
        }
    }

    /// At shutdown: no link is reopened; those without a connection end now
    /// (the open ones get `1001` with every WebSocket).
    pub(crate) fn stop_links(&mut self) {
        let tokens: Vec<Token> = self.outbound.links.keys().copied().collect();
        for token in tokens {
            let _ = self.stop_link(token);
        }
    }

    /// Decides what follows each attempt or connection that ended this turn:
    /// the next attempt after the policy's delay, or the end of the link.
    /// Returns what the app must hear (`App::connect_failed`).
    ///
    /// | what ended | then |
    /// |---|---|
    /// | an attempt: refused, no address, timed out, lost, a 5xx answer | `connect_failed` with the delay; retry |
    /// | an attempt: any other answer but a good `101`, an OS without randomness | `connect_failed`, end |
    /// | an open connection: lost, timed out, a Close to come back after | retry (its `App::close` said how) |
    /// | an open connection: a Close with 1000, 1002, 1003, 1007-1010; our own Close | end |
    /// | the policy gives up | `connect_failed` with [`WsError::GaveUp`], end |
    /// | the app closed the link, or the server shuts down | end, no callback |
    pub(crate) fn settle_links(&mut self) -> Vec<LinkFailure> {
        let mut failures = Vec::new();
        let ended = std::mem::take(&mut self.outbound.ended);
        for token in ended {
            if let Some(failure) = self.settle_link(token) {
                failures.push(failure);
            }
        }
        failures
    }

    fn settle_link(&mut self, token: Token) -> Option<LinkFailure> {
        let now = self.std_instant(self.now);
        let shutting_down = self.shutdown_deadline.is_some();
        let link = self.outbound.links.get_mut(&token)?;
        let was_open = match link.phase {
            Phase::Open => true,
            Phase::Resolving | Phase::Dialing => false,
            // Settled already (an end reported twice in one turn).
            Phase::Waiting => return None,
        };
        let (ending, failure) = (link.ending.take(), link.failure.take());
        // Ok(cause): come back; Err(Some(error)): the app hears it; Err(None): end quietly.
        let outcome = match (was_open, failure) {
            (_, Some(error)) => Err(Some(error)),
            (true, None) => open_end_cause(ending).ok_or(None),
            (false, None) => Err(Some(attempt_error(ending))),
        };
        let (error, cause) = match outcome {
            Ok(cause) => (None, Some(cause)),
            Err(Some(error)) => (Some(error), retry_cause(&error)),
            Err(None) => (None, None),
        };
        let quiet = link.stopped || (was_open && shutting_down);
        let retry = match cause {
            Some(cause) if !link.stopped && !shutting_down => {
                Some(retry_delay(&mut link.backoff, now, cause))
            }
            _ => None,
        };
        let report = match retry {
            Some(Ok(delay)) => {
                link.phase = Phase::Waiting;
                let due = self.now + delay;
                link.due = Some(due);
                self.timers.arm(due, Wake::Link(token));
                error.map(|error| (error, Some(delay)))
            }
            Some(Err(gave_up)) => {
                self.finish_link(token);
                Some((gave_up, None))
            }
            None => {
                self.finish_link(token);
                error.filter(|_| !quiet).map(|error| (error, None))
            }
        };
        report.map(|(error, retry)| LinkFailure {
            token,
            error,
            retry,
        })
    }

    /// The link is over: its token is freed (an old copy of its id reaches
    /// nothing).
    fn finish_link(&mut self, token: Token) {
        self.outbound.links.remove(&token);
        self.conns.release(token);
    }
}

/// What an attempt that ended before its `101` without a recorded error
/// met, by how its connection ended: the server closed TCP, a reset, the
/// server shutting down.
fn attempt_error(ending: Option<Ending>) -> WsError {
    match ending {
        Some(Ending::Timeout(_)) => WsError::Lost(Lost::HandshakeTimeout),
        Some(Ending::Reset) => WsError::Lost(Lost::Io(ErrorKind::ConnectionReset)),
        Some(Ending::Shutdown) => WsError::Connect(ErrorKind::ConnectionAborted),
        // The blocking client's `TlsConnector` says the same of a TLS
        // handshake that failed: it would fail again, so it is not retried.
        #[cfg(feature = "tls")]
        Some(Ending::TlsError) => WsError::Connect(ErrorKind::InvalidData),
        _ => WsError::Lost(Lost::Eof),
    }
}

/// Whether an open connection that ended is worth coming back after, and
/// as what cause (the blocking client's rules): a loss or a timeout is; a
/// server's Close is unless its code says done or blames us
/// ([`comes_back_after`]); a Close of ours (the app's, a protocol error's,
/// the slow-reader policy's) is not.
fn open_end_cause(ending: Option<Ending>) -> Option<Disconnect> {
    match ending {
        Some(Ending::CloseReceived(code)) => {
            let code = CloseCode(code);
            comes_back_after(code).then_some(Disconnect::Closed(code))
        }
        None | Some(Ending::Lost) | Some(Ending::PeerLeft) => Some(Disconnect::Lost(Lost::Eof)),
        Some(Ending::Reset) => Some(Disconnect::Lost(Lost::Io(ErrorKind::ConnectionReset))),
        // A broken record on an open connection, as the blocking client's
        // read reports it (rustls' errors are `InvalidData`).
        #[cfg(feature = "tls")]
        Some(Ending::TlsError) => Some(Disconnect::Lost(Lost::Io(ErrorKind::InvalidData))),
        Some(Ending::Timeout(TimeoutKind::Pong)) => Some(Disconnect::Lost(Lost::PongTimeout)),
        Some(Ending::Timeout(TimeoutKind::Close)) => Some(Disconnect::Lost(Lost::CloseTimeout)),
        // Our Close 1001 after the server's silence (`idle_timeout`).
        Some(Ending::Timeout(TimeoutKind::Idle)) => Some(Disconnect::Closed(CloseCode::GOING_AWAY)),
        Some(Ending::Timeout(TimeoutKind::Handshake | TimeoutKind::Body)) => {
            Some(Disconnect::Lost(Lost::Eof))
        }
        Some(
            Ending::CloseSent(_)
            | Ending::SlowReader
            | Ending::Shutdown
            | Ending::Refused(_)
            | Ending::Answered,
        ) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_link_comes_back_after_losses_and_closes_that_do_not_say_done() {
        let back = |ending| open_end_cause(Some(ending)).is_some();
        for ending in [
            Ending::Lost,
            Ending::PeerLeft,
            Ending::Reset,
            Ending::Timeout(TimeoutKind::Pong),
            Ending::Timeout(TimeoutKind::Close),
            Ending::Timeout(TimeoutKind::Idle),
            Ending::CloseReceived(1001),
            Ending::CloseReceived(1005),
            Ending::CloseReceived(1011),
            Ending::CloseReceived(1012),
            Ending::CloseReceived(4000),
        ] {
            assert!(back(ending), "{ending:?}");
        }
        for ending in [
            Ending::CloseReceived(1000),
            Ending::CloseReceived(1002),
            Ending::CloseReceived(1008),
            Ending::CloseReceived(1009),
            Ending::CloseSent(1000),
            Ending::CloseSent(1002),
            Ending::SlowReader,
            Ending::Shutdown,
        ] {
            assert!(!back(ending), "{ending:?}");
        }
        assert_eq!(
            open_end_cause(None),
            Some(Disconnect::Lost(Lost::Eof)),
            "an end with no reason recorded is a loss"
        );
    }

    #[test]
    fn an_attempt_that_ended_without_an_error_says_how_its_connection_ended() {
        assert_eq!(
            attempt_error(Some(Ending::Timeout(TimeoutKind::Handshake))),
            WsError::Lost(Lost::HandshakeTimeout)
        );
        assert_eq!(
            attempt_error(Some(Ending::PeerLeft)),
            WsError::Lost(Lost::Eof)
        );
        assert_eq!(
            attempt_error(Some(Ending::Reset)),
            WsError::Lost(Lost::Io(ErrorKind::ConnectionReset))
        );
        // Each is worth another attempt, as for the blocking client.
        for ending in [
            Ending::PeerLeft,
            Ending::Reset,
            Ending::Timeout(TimeoutKind::Handshake),
        ] {
            assert!(retry_cause(&attempt_error(Some(ending))).is_some());
        }
    }
}
