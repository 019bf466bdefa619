//! The loop itself: poll, accept, read, hand bytes to the sessions, call the
//! app, timers, write, reap.
//!
//! Read this file top to bottom as the life of one turn ([`EventLoop::run`]),
//! then the life of one connection: accepted ([`EventLoop::accept`]), read
//! ([`EventLoop::read`]), its bytes handed to its session
//! ([`EventLoop::process_http`], [`EventLoop::process_websocket`]), and
//! finally reaped ([`EventLoop::reap`]). Every protocol rule is in a session
//! of the protocol crate; what is here is moving bytes, time and callbacks.
//!
//! **Fairness.** A connection is read at most once per turn (one fill of the
//! loop's read buffer); if the read filled it, the connection is listed as
//! *ready* and read again next turn, after every other socket had its turn,
//! the answers were written, signals and `Handle` commands were served and
//! timers ran. A connection whose queue is past `max_queued_bytes`, or whose
//! request is being answered later, is not read at all until that changes.

use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::{Accept, App, ConnId, Context, Reply, Upgrading};
use crate::engine::config::Config;
use crate::engine::connection::{Closing, Connection, Kind, Transport, Waiting, WsConn};
use crate::engine::handle::{Command, Handle};
use crate::engine::outbox::{Kind as Chunk, Message};
use crate::engine::slab::{LISTENER, WAKER};
use crate::engine::timers::Wake;
use crate::engine::Core;
use crate::feeds::Payload;
use crate::http::{httparse, HttpSession, HttpStep, Request, Response};
use crate::ids::TopicId;
use crate::sse;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{accept_offer, AgreedParams};
use crate::ws::frame::Role;
use crate::ws::frame::{MessageDecoder, MessageLimits, Observed};
use crate::ws::handshake::{self, HandshakeError, Upgrade};
use crate::ws::session::{Event, Session, Step};

/// Header slots kept on the stack (the default limit); more come from the
/// heap. Every slot is written before parsing, and writing 256 for every
/// request cost about as much as parsing a small head.
const STACK_HEADER_SLOTS: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 1024;
/// Fan-out recipients written per turn before the loop looks for input again
/// (see [`crate::engine::outbox`]): small enough that a publisher waiting for
/// its answer is not kept behind a thousand writes, large enough that the
/// extra `epoll_wait` is noise.
const FANOUT_SLICE: usize = 64;
/// A placeholder decoder, put in a WebSocket's place while its real decoder
/// (which may hold the message being handled) is lent to a turn.
const NO_LIMITS: MessageLimits = MessageLimits {
    max_frame_bytes: 0,
    max_message_bytes: 0,
    max_fragments: 0,
};

pub(crate) struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// The loop-wide read buffer: every socket is read into it and parsed in place.
    scratch: Vec<u8>,
    pub(crate) core: Core,
    commands: Receiver<Command>,
    accept_paused: bool,
}

/// What the reply to a request asks the engine to do, once the request
/// (which borrows the session and the read buffer) is dropped.
enum Next {
    Respond(Response),
    Poll(Vec<TopicId>, u64),
    LongPoll(Vec<TopicId>, u64),
    EventStream(Vec<TopicId>, Option<u64>),
    Later,
    /// Switch to WebSocket: the 101 head, what the app asked for, and the
    /// extensions agreed.
    Upgrade(Vec<u8>, Accept, Extensions),
}

/// What the opening handshake agreed on beside the 101 (RFC 6455 §9.1).
#[derive(Default)]
struct Extensions {
    /// permessage-deflate's parameters (RFC 7692 §7.1), when it was offered
    /// and accepted.
    #[cfg(feature = "deflate")]
    deflate: Option<AgreedParams>,
}

impl EventLoop {
    pub(crate) fn bind(addr: SocketAddr, config: Config, id_seed: u64) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, commands) = sync_channel(config.handle_capacity.max(1));
        let handle = Handle::new(sender, waker, Arc::new(AtomicBool::new(false)));
        // The buffer must hold an unfinished head plus room to read more.
        let scratch_len = config
            .read_buffer_bytes
            .max(config.limits.max_head_bytes + 4096);
        let core = Core::new(
            config,
            poll.registry().try_clone()?,
            handle,
            id_seed,
            std::time::Instant::now(),
        );
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            local_addr,
            scratch: vec![0; scratch_len],
            core,
            commands,
            accept_paused: false,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn run(mut self, mut app: impl App) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.core.tick();
        guarded(&mut self.core, &mut app, |app, ctx| app.start(ctx));
        loop {
            // 5 and 6 of the previous turn (and of `start`): write answers,
            // then a slice of the fan-out line, then reap.
            self.core.flush_dirty();
            let fanout_left = self.core.flush_fanout(FANOUT_SLICE);
            self.reap(&mut app);
            if let Some(deadline) = self.core.shutdown_deadline {
                if self.core.conns.is_empty() || self.core.now >= deadline {
                    return Ok(());
                }
            }
            // Sleep until the earliest deadline, unless there is more to do.
            let timeout = if fanout_left || !self.core.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                let wake_at = match (self.core.timers.next(), self.core.shutdown_deadline) {
                    (Some(timer), Some(shutdown)) => Some(timer.min(shutdown)),
                    (timer, shutdown) => timer.or(shutdown),
                };
                self.core.tick();
                wake_at.map(|when| when.saturating_duration_since(self.core.now))
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            self.core.tick();
            // 1-3. Connections read last turn that may have more go first in
            // line behind the new events (each gets one read per turn).
            let ready = self.core.ready.len();
            for event in events.iter() {
                match event.token() {
                    // 1. New connections.
                    LISTENER => self.accept(),
                    // 2. Commands from other threads.
                    WAKER => self.run_commands(),
                    // 3. Socket readiness: read before write, so that answers
                    //    to this turn's input join what is already queued.
                    token => {
                        if event.is_read_closed() || event.is_error() {
                            // A paused connection is not read, so its FIN
                            // would go unseen: act on it now.
                            match self.core.conns.get_mut(token) {
                                Some(conn) if conn.paused => self.peer_closed(token),
                                Some(conn) => conn.peer_fin = true,
                                None => {}
                            }
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(&mut app, token);
                        }
                        if event.is_writable() {
                            self.core.flush(token);
                        }
                    }
                }
            }
            for _ in 0..ready {
                let Some(token) = self.core.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.core.conns.get_mut(token) {
                    conn.in_ready = false;
                    self.read(&mut app, token);
                }
            }
            // 4. Deadlines.
            self.run_timers(&mut app);
        }
    }

    /// Accepts until `WouldBlock`. Past `max_connections` a socket is closed at
    /// once; out of descriptors (EMFILE/ENFILE), accepting pauses briefly
    /// instead of spinning on a listener that stays readable.
    fn accept(&mut self) {
        if self.accept_paused {
            return;
        }
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if is_out_of_descriptors(&error) => {
                    self.accept_paused = true;
                    self.core
                        .timers
                        .arm(self.core.now + ACCEPT_PAUSE, Wake::Accept);
                    return;
                }
                // A connection reset before we took it, and the like.
                Err(_) => continue,
            };
            let core = &mut self.core;
            if core.conns.len() >= core.config.limits.max_connections
                || core.shutdown_deadline.is_some()
            {
                core.stats.refused_connections += 1;
                continue;
            }
            // Small frames must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let session = HttpSession::new(core.now);
            let token = core.conns.insert_with(|_| Connection::new(stream, session));
            let registered = match core.conns.get_mut(token) {
                Some(conn) => core
                    .registry
                    .register(&mut conn.stream, token, Interest::READABLE)
                    .is_ok(),
                None => false,
            };
            if !registered {
                core.conns.remove(token);
                continue;
            }
            core.stats.http.connections += 1;
            core.rearm(token);
            if core.tracer.is_some() {
                let from = format!("accepted from {peer}");
                core.trace(|tracer, now| tracer.note(now, token, "tcp", &from, ""));
            }
        }
    }

    /// One read of a connection (its budget for this turn), handed to its
    /// session. A read that filled the buffer lists the connection to be
    /// read again next turn; a short one drained the socket (epoll reports
    /// new data with a new edge). A connection that is paused is not read:
    /// it is listed again when it may go on.
    fn read(&mut self, app: &mut impl App, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        if conn.paused {
            return;
        }
        let kept = conn.leftover.len();
        self.scratch[..kept].copy_from_slice(&conn.leftover);
        conn.leftover = Vec::new();
        let room = self.scratch.len() - kept;
        let lingering = matches!(conn.kind, Kind::Closing(Closing::Lingering));
        let result = loop {
            match conn.stream.read(&mut self.scratch[kept..]) {
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        match result {
            // The rest of the peer's input is read only to see its FIN.
            Ok(n) if lingering && n > 0 => self.core.make_ready(token),
            Ok(0) => {
                if kept > 0 {
                    self.process(app, token, kept);
                }
                self.peer_closed(token);
            }
            Ok(n) => {
                self.process(app, token, kept + n);
                let peer_fin = self.core.conns.get(token).is_some_and(|c| c.peer_fin);
                // A full read may have left more; a FIN seen with data must
                // still be read as EOF (no later edge announces it again).
                if n == room || peer_fin {
                    self.core.make_ready(token);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if kept > 0 {
                    self.process(app, token, kept);
                }
            }
            Err(_) => self.peer_closed(token),
        }
    }

    /// The peer closed TCP (or reset it).
    fn peer_closed(&mut self, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        conn.peer_fin = true;
        match &mut conn.kind {
            // RFC 9112 §9.6: a client may half-close after its request; what
            // we owe it (a held answer included) still goes out, then close.
            // A held long-poll is answered at once with what there is: a FIN
            // is how most clients leave, and holding their sockets until the
            // poll's timeout would let clients that come and go pile them up.
            Kind::Http(http) if matches!(http.waiting, Waiting::LongPoll { .. }) => {
                self.core.answer_long_poll(token);
            }
            Kind::Http(http) if http.session.is_responding() || !conn.outbox.is_empty() => {
                if !http.session.is_responding() {
                    self.core.close_after_answer(token, false);
                }
            }
            // Still writing our last bytes: the close follows them.
            Kind::Closing(Closing::Flushing { .. }) => {}
            // A half-closed reader gets what is queued for it, then the end.
            Kind::EventStream => self.core.close_after_answer(token, false),
            // RFC 6455 §7.1.5: no Close frame was received: 1006 (reported
            // when the connection is reaped).
            Kind::WebSocket(ws) => {
                ws.session.on_eof();
                self.core.dead.push(token);
            }
            _ => self.core.dead.push(token),
        }
    }

    /// Hands `scratch[..len]` to the connection's session, as often as the
    /// connection changes kind (a head upgrades to a WebSocket and the rest
    /// are frames).
    fn process(&mut self, app: &mut impl App, token: Token, len: usize) {
        let mut pos = 0;
        while pos < len {
            let Some(conn) = self.core.conns.get(token) else {
                return;
            };
            pos = match conn.kind {
                Kind::Http(_) => match self.process_http(app, token, pos, len) {
                    Some(next) => next,
                    None => return,
                },
                Kind::WebSocket(_) => return self.process_websocket(app, token, pos, len),
                // A stream's client has nothing to say; a closing socket's input
                // is read only to see the peer's FIN.
                Kind::EventStream | Kind::Closing(_) => return,
            };
        }
    }

    /// Keeps unconsumed input for the next turn (at most one read's worth).
    fn keep(&mut self, token: Token, pos: usize, len: usize) {
        if let Some(conn) = self.core.conns.get_mut(token) {
            if pos < len {
                conn.leftover = self.scratch[pos..len].to_vec();
            }
        }
    }

    /// Stops reading a connection whose queue is past its bound, keeping the
    /// rest of this read; it goes on once the queue drains (see `Core::flush`).
    fn pause(&mut self, token: Token, pos: usize, len: usize) {
        self.keep(token, pos, len);
        if let Some(conn) = self.core.conns.get_mut(token) {
            conn.paused = true;
            self.core.stats.paused_reads += 1;
        }
    }

    /// Reads requests from `scratch[pos..len]`. Returns where the next kind
    /// (a WebSocket) should continue, or `None` when everything was consumed,
    /// kept, or the connection stopped reading.
    fn process_http(
        &mut self,
        app: &mut impl App,
        token: Token,
        mut pos: usize,
        len: usize,
    ) -> Option<usize> {
        let (now, http_config) = (self.core.now, self.core.http);
        loop {
            // The session leaves the connection while its request is handled:
            // the request borrows it (a body that spanned reads), and the
            // callback may act on this very connection.
            let http = self.core.conns.get_mut(token)?.http()?;
            let mut session = std::mem::replace(&mut http.session, HttpSession::new(now));
            let mut interim = Vec::new();
            let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; STACK_HEADER_SLOTS], Vec::new());
            let headers = header_slots(http_config.max_headers, &mut stack, &mut heap);
            let step = session.step(
                &self.scratch[pos..len],
                headers,
                now,
                &http_config,
                &mut interim,
            );
            let (next, used) = match step {
                Ok(HttpStep::Request {
                    request,
                    head,
                    body,
                    used,
                }) => {
                    self.core
                        .trace(|tracer, now| tracer.head_in(now, token, head));
                    (
                        Some(dispatch(&mut self.core, app, token, &request, body)),
                        used,
                    )
                }
                Ok(HttpStep::Progress { used }) => (None, used),
                Ok(HttpStep::NeedMore) => {
                    self.put_back(token, session);
                    self.keep(token, pos, len);
                    self.core.rearm(token);
                    return None;
                }
                Ok(HttpStep::Blocked) => {
                    // RFC 9112 §9.3.2: this request waits for the answer
                    // before it; it stays unread (here, then in the kernel).
                    self.put_back(token, session);
                    self.keep(token, pos, len);
                    if let Some(conn) = self.core.conns.get_mut(token) {
                        conn.paused = true;
                    }
                    return None;
                }
                Err(error) => {
                    self.put_back(token, session);
                    self.core
                        .push_protocol(token, &|out| error.write_response(out));
                    self.core.close_after_answer(token, true);
                    return None;
                }
            };
            self.put_back(token, session);
            if !interim.is_empty() {
                self.core
                    .push_protocol(token, &|out| out.extend_from_slice(&interim));
            }
            pos += used;
            if let Some(next) = next {
                if self.act(app, token, next) {
                    // Switched to WebSocket: the rest of the input is frames.
                    return Some(pos);
                }
            }
            self.core.rearm(token);
            let conn = self.core.conns.get(token)?;
            if !matches!(conn.kind, Kind::Http(_)) || conn.paused {
                self.keep(token, pos, len);
                return None;
            }
            if self.core.output_full(token) {
                self.pause(token, pos, len);
                return None;
            }
            if pos == len {
                return None;
            }
        }
    }

    /// Puts a session back into its connection, if it is still an HTTP one
    /// (a callback may have closed it).
    fn put_back(&mut self, token: Token, session: HttpSession) {
        if let Some(http) = self.core.conns.get_mut(token).and_then(Connection::http) {
            http.session = session;
        }
    }
}

/// Asks the app about a request and says what to do with its reply.
fn dispatch(core: &mut Core, app: &mut impl App, token: Token, req: &Request, body: &[u8]) -> Next {
    let id = ConnId(token);
    if handshake::is_upgrade_request(req) {
        return upgrade(core, app, token, req);
    }
    let Some(reply) = guarded(core, app, |app, ctx| app.request(ctx, id, req, body)) else {
        return Next::Respond(Response::text(500, "internal error"));
    };
    match reply {
        Reply::Response(response) => {
            core.stats.http.requests += 1;
            Next::Respond(response)
        }
        Reply::Poll { topics, after } => Next::Poll(topics, after),
        Reply::LongPoll { topics, after } => Next::LongPoll(topics, after),
        Reply::EventStream { topics, after } => {
            // WHATWG HTML §9.2.4: a reconnecting EventSource sends the last
            // id it saw as `Last-Event-ID`; it wins over the first cursor.
            match req.header("last-event-id").map(sse::parse_last_event_id) {
                Some(Ok(id)) => Next::EventStream(topics, Some(id)),
                Some(Err(_)) => Next::Respond(
                    Response::text(400, "Last-Event-ID must be a decimal event id")
                        .header("Connection", "close"),
                ),
                None => Next::EventStream(topics, after),
            }
        }
        Reply::Later => Next::Later,
    }
}

/// RFC 6455 §4.2: validate the handshake, apply the Origin policy, ask
/// the app; the 101 head is built here, while the request is at hand.
fn upgrade(core: &mut Core, app: &mut impl App, token: Token, req: &Request) -> Next {
    let refuse = |error: HandshakeError| {
        let mut out = Vec::new();
        error.write_response(&mut out);
        Next::Upgrade(out, Accept::new(), Extensions::default())
    };
    let offer = match handshake::check(req) {
        Ok(offer) => offer,
        Err(error) => return refuse(error),
    };
    if !core.config.origin_policy.allows(offer.origin()) {
        return refuse(HandshakeError::ForbiddenOrigin);
    }
    let id = ConnId(token);
    let accept = match guarded(core, app, |app, ctx| app.upgrade(ctx, id, req, &offer)) {
        Some(Upgrading::Accept(accept)) => accept,
        Some(Upgrading::Reject(response)) => {
            return Next::Respond(response.header("Connection", "close"))
        }
        None => return Next::Respond(Response::text(500, "internal error")),
    };
    let (extensions, agreed) = negotiate(core, &offer);
    let mut switching = Vec::with_capacity(160);
    if offer
        .write_accept(
            accept.protocol.as_deref(),
            extensions.as_deref(),
            &mut switching,
        )
        .is_err()
    {
        // The app chose a subprotocol the client did not offer: our bug.
        return Next::Respond(Response::text(500, "internal error"));
    }
    Next::Upgrade(switching, accept, agreed)
}

/// RFC 7692 §5: accepts the client's first permessage-deflate offer the
/// server's settings can honour; the `Sec-WebSocket-Extensions` value of the
/// 101 and what was agreed. No offer, none acceptable, or compression turned
/// off: neither (RFC 6455 §9.1: the 101 names no extension).
#[cfg(feature = "deflate")]
fn negotiate(core: &Core, offer: &Upgrade) -> (Option<String>, Extensions) {
    let Some(deflate) = core.config.deflate else {
        return (None, Extensions::default());
    };
    let mut value = Vec::new();
    let agreed = accept_offer(
        offer.offered_extensions(),
        deflate.negotiation(),
        &mut value,
    );
    // accept_offer writes tokens and digits only: ASCII.
    let value = agreed.and(String::from_utf8(value).ok());
    (value, Extensions { deflate: agreed })
}

/// Without the `deflate` feature every extension is declined (RFC 6455 §9.1).
#[cfg(not(feature = "deflate"))]
fn negotiate(_: &Core, _: &Upgrade) -> (Option<String>, Extensions) {
    (None, Extensions::default())
}

impl EventLoop {
    /// Carries out a reply. True when the connection switched to WebSocket.
    fn act(&mut self, app: &mut impl App, token: Token, next: Next) -> bool {
        match next {
            Next::Respond(response) => self.core.answer_with(token, &response),
            Next::Poll(topics, after) => self.core.answer_poll(token, &topics, after),
            Next::LongPoll(topics, after) => self.core.start_long_poll(token, topics, after),
            Next::EventStream(topics, cursor) => {
                self.core.start_event_stream(token, &topics, cursor)
            }
            Next::Later => self.core.hold_for_later(token),
            Next::Upgrade(head, accept, agreed) => {
                return self.open_websocket(app, token, head, accept, agreed)
            }
        }
        false
    }

    /// Writes the 101 (or the handshake's refusal) and, on success, turns
    /// the connection into a WebSocket and tells the app.
    fn open_websocket(
        &mut self,
        app: &mut impl App,
        token: Token,
        head: Vec<u8>,
        accept: Accept,
        agreed: Extensions,
    ) -> bool {
        let switching = head.starts_with(b"HTTP/1.1 101");
        let now = self.core.now;
        let Some(http) = self.core.conns.get_mut(token).and_then(Connection::http) else {
            return false;
        };
        http.session.answer(now, true);
        http.session.finish();
        self.core
            .push_protocol(token, &|out| out.extend_from_slice(&head));
        if !switching {
            self.core.close_after_answer(token, true);
            return false;
        }
        let limits = self.core.websocket.limits;
        let Some(conn) = self.core.conns.get_mut(token) else {
            return false;
        };
        let Extensions {
            #[cfg(feature = "deflate")]
            deflate,
        } = agreed;
        #[cfg(feature = "deflate")]
        let (session, decoder) = match deflate {
            Some(agreed) => Session::with_deflate(Role::Server, limits, now, agreed),
            None => Session::new(Role::Server, limits, now),
        };
        #[cfg(not(feature = "deflate"))]
        let (session, decoder) = Session::new(Role::Server, limits, now);
        conn.kind = Kind::WebSocket(Box::new(WsConn {
            session,
            decoder,
            reported: false,
        }));
        self.core
            .stats
            .switch(&mut conn.transport, Transport::WebSocket);
        self.core.rearm(token);
        for &topic in &accept.topics {
            let _ = self.core.subscribe(token, topic, None);
        }
        if let Some(after) = accept.after {
            self.core.replay_to(token, &accept.topics, after);
        }
        let id = ConnId(token);
        if guarded(&mut self.core, app, |app, ctx| app.open(ctx, id)).is_none() {
            self.core.close(token, CloseCode::INTERNAL_ERROR, "");
        }
        true
    }

    /// Feeds `scratch[pos..len]` to the WebSocket's session and acts on each
    /// event; keeps an unfinished frame header or control frame as leftover.
    fn process_websocket(&mut self, app: &mut impl App, token: Token, mut pos: usize, len: usize) {
        // The decoder leaves the connection while its messages are handled,
        // so callbacks can act on this very connection (send, close).
        let Some(ws) = self
            .core
            .conns
            .get_mut(token)
            .and_then(Connection::websocket)
        else {
            return;
        };
        let mut decoder = std::mem::replace(
            &mut ws.decoder,
            MessageDecoder::new(Role::Server, NO_LIMITS),
        );
        let mut before = ws.session.state();
        loop {
            let mut observed = Observed::default();
            let input = &mut self.scratch[pos..len];
            let decoder = &mut decoder;
            let observed_slot = &mut observed;
            let Some((step, written)) =
                self.core
                    .ws_do_untraced(token, Chunk::Protocol, move |session, env| {
                        session.step_observed(decoder, input, env, observed_slot)
                    })
            else {
                break;
            };
            if self.core.tracer.is_some() {
                // What came in, then what it made us write.
                trace_step(&mut self.core, token, observed, &step);
                self.core.trace_frames_out(token, written);
            }
            let (event, used) = match step {
                Step::NeedMore => {
                    self.keep(token, pos, len);
                    break;
                }
                Step::Progress { used } => {
                    pos += used;
                    continue;
                }
                Step::Event { event, used } => (event, used),
            };
            pos += used;
            if self.core.tracer.is_some() {
                if let Some(now_state) = ws_state(&self.core, token) {
                    self.core
                        .trace(|tracer, now| tracer.ws_state(now, token, before, now_state));
                    before = now_state;
                }
            }
            match event {
                Event::Text(text) => message(&mut self.core, app, token, Message::Text(text)),
                Event::Binary(bytes) => message(&mut self.core, app, token, Message::Binary(bytes)),
                // Answered by the session (a pong owed while the output is
                // backed up goes out after the batch, below).
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Closed { code, reason } => {
                    report_close(&mut self.core, app, token, code, reason);
                    self.core.finish_websocket(token);
                    break;
                }
                Event::Failed(error) => {
                    report_close(&mut self.core, app, token, error.close_code(), "");
                    self.core.finish_websocket(token);
                    break;
                }
            }
            let Some(conn) = self.core.conns.get(token) else {
                break;
            };
            if !matches!(conn.kind, Kind::WebSocket(_)) {
                break;
            }
            if self.core.output_full(token) {
                self.pause(token, pos, len);
                break;
            }
            if pos == len {
                break;
            }
        }
        // Put the decoder back (without the message it last handed out: an
        // idle socket holds no buffer), then owe what is owed: the pong for
        // the latest ping (RFC 6455 §5.5.3), once per batch.
        decoder.release();
        if let Some(ws) = self
            .core
            .conns
            .get_mut(token)
            .and_then(Connection::websocket)
        {
            ws.decoder = decoder;
        }
        let after = self.core.ws_do(token, Chunk::Protocol, |session, env| {
            session.poll_transmit(env);
            session.state()
        });
        if let Some(after) = after {
            self.core
                .trace(|tracer, now| tracer.ws_state(now, token, before, after));
            if self
                .core
                .conns
                .get(token)
                .is_some_and(|conn| match &conn.kind {
                    Kind::WebSocket(ws) => ws.session.wants_tcp_close(),
                    _ => false,
                })
            {
                self.core.finish_websocket(token);
            }
        }
    }

    fn run_commands(&mut self) {
        if self.core.handle.shutdown_requested() {
            self.begin_shutdown();
        }
        while let Ok(command) = self.commands.try_recv() {
            let core = &mut self.core;
            match command {
                Command::SendText(id, text) => {
                    let _ = core.send(id.0, Message::Text(&text));
                }
                Command::SendBinary(id, bytes) => {
                    let _ = core.send(id.0, Message::Binary(&bytes));
                }
                Command::BroadcastText(text) => {
                    let _ = core.broadcast(None, Message::Text(&text));
                }
                Command::BroadcastBinary(bytes) => {
                    let _ = core.broadcast(None, Message::Binary(&bytes));
                }
                Command::Publish { topic, event, data } => {
                    let _ = core.publish(topic, event.as_deref(), Payload::Text(&data), None);
                }
                Command::Close(id, code, reason) => {
                    let _ = core.close(id.0, code, &reason);
                }
                Command::Respond(id, response) => {
                    let _ = core.respond(id.0, &response);
                }
            }
        }
    }

    /// Stops accepting and closes everything (see [`Core::begin_shutdown`]).
    fn begin_shutdown(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.core.registry.deregister(&mut listener);
        }
        self.core.begin_shutdown();
    }

    fn run_timers(&mut self, app: &mut impl App) {
        let now = self.core.now;
        if self.core.shutdown_deadline.is_some() && self.listener.is_some() {
            self.begin_shutdown();
        }
        while let Some((when, wake)) = self.core.timers.pop_due(now) {
            match wake {
                Wake::Accept => {
                    self.accept_paused = false;
                    self.accept();
                }
                Wake::User(slot, generation) => {
                    if let Some(timer) = self.core.timers.user_fired(when, slot, generation) {
                        guarded(&mut self.core, app, |app, ctx| app.timer(ctx, timer));
                    }
                }
                Wake::Connection(token) => self.core.connection_timer(token, when),
            }
        }
    }

    /// Removes finished connections; an opened WebSocket's `App::close` is
    /// called first if it has not been (1006: it ended without a complete
    /// closing handshake, RFC 6455 §7.1.5).
    fn reap(&mut self, app: &mut impl App) {
        while let Some(token) = self.core.dead.pop() {
            report_close(&mut self.core, app, token, CloseCode::ABNORMAL, "");
            self.core.feeds.forget(token);
            self.core.catching_up.remove(&token);
            if let Some(conn) = self.core.conns.remove(token) {
                self.core
                    .trace(|tracer, now| tracer.note(now, token, "tcp", "closed", ""));
                self.core.stats.of(conn.transport).connections -= 1;
                // Dropping the stream closes the socket and removes it from epoll.
            }
        }
    }
}

/// Hands one message to the app.
fn message(core: &mut Core, app: &mut impl App, token: Token, message: Message) {
    let id = ConnId(token);
    if guarded(core, app, |app, ctx| app.message(ctx, id, message)).is_none() {
        core.close(token, CloseCode::INTERNAL_ERROR, "");
    }
}

/// Calls `App::close` once for an opened WebSocket.
fn report_close(core: &mut Core, app: &mut impl App, token: Token, code: CloseCode, reason: &str) {
    let Some(ws) = core.conns.get_mut(token).and_then(Connection::websocket) else {
        return;
    };
    if ws.reported {
        return;
    }
    ws.reported = true;
    let id = ConnId(token);
    guarded(core, app, |app, ctx| app.close(ctx, id, code, reason));
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE || code == libc::ENOBUFS || code == libc::ENOMEM)
}

/// Runs a callback with a context; a panic is caught and counted, and `None`
/// tells the caller to close the connection concerned.
fn guarded<A: App, R>(
    core: &mut Core,
    app: &mut A,
    call: impl FnOnce(&mut A, &mut Context) -> R,
) -> Option<R> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        call(app, &mut Context { core: &mut *core })
    }));
    if result.is_err() {
        core.stats.panics += 1;
    }
    result.ok()
}

/// Empty header slots, as many as `max_headers`: from `stack` for the usual
/// limit, else from `heap`.
fn header_slots<'s, 'h>(
    max_headers: usize,
    stack: &'s mut [httparse::Header<'h>; STACK_HEADER_SLOTS],
    heap: &'s mut Vec<httparse::Header<'h>>,
) -> &'s mut [httparse::Header<'h>] {
    if max_headers <= STACK_HEADER_SLOTS {
        &mut stack[..max_headers]
    } else {
        heap.resize(max_headers, httparse::EMPTY_HEADER);
        heap
    }
}

/// Where a WebSocket's session is, if the connection is one.
fn ws_state(core: &Core, token: Token) -> Option<crate::ws::session::State> {
    match &core.conns.get(token)?.kind {
        Kind::WebSocket(ws) => Some(ws.session.state()),
        _ => None,
    }
}

/// Traces the frame header a step decoded and the event it delivered (with
/// its compressed size, if it came compressed).
fn trace_step(core: &mut Core, token: Token, observed: Observed, step: &Step) {
    core.trace(|tracer, now| {
        if let Some((header, header_len)) = observed.header {
            tracer.frame_in(now, token, &header, header_len);
        }
        if let Step::Event { event, .. } = step {
            tracer.event_in(now, token, event, observed.inflated);
        }
    });
}
