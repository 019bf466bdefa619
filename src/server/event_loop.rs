//! The loop itself: poll, accept, read, dispatch, timers, flush, reap.
//!
//! Read this file top to bottom as the life of one batch of events
//! ([`EventLoop::run`]), then the life of one connection: accepted
//! ([`EventLoop::accept`]), read ([`EventLoop::read`]), its bytes handed to the
//! state it is in ([`process`]: [`process_http`], [`process_websocket`]), and
//! finally reaped ([`EventLoop::reap`]).

use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::{App, ConnId, Context, Message as AppMessage, Reply, Upgrading};
use crate::http::{
    httparse, parse_request, BodyDecoder, BodyFraming, HeadScanner, Request, Response,
};
use crate::server::connection::{
    ClosingStage, Connection, HttpState, PendingBody, State, Transport, WsState,
};
use crate::server::core::{write_close_frame, Core};
use crate::server::handle::{Command, Handle};
use crate::server::timers::{Deadline, Deadlines, Wake};
use crate::server::token::{LISTENER, WAKER};
use crate::server::write_queue::WriteQueue;
use crate::server::Config;
use crate::sse;
use crate::ws::close::{CloseCode, CloseState};
use crate::ws::frame::{encode_frame, FrameHeader, OpCode, Role};
use crate::ws::handshake::{self, HandshakeError};
use crate::ws::message::{Message, MessageDecoder, MessageError, MessageLimits, Step};

/// Header slots kept on the stack (the default limit); more come from the
/// heap. Every slot is written before parsing, and writing 256 for every
/// request cost about as much as parsing a small head.
const STACK_HEADER_SLOTS: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 1024;
/// Fan-out recipients written per turn before the loop looks for input again
/// (see [`crate::server::core`]): small enough that a publisher waiting for
/// its answer is not kept behind a thousand writes, large enough that the
/// extra `epoll_wait` is noise.
const FANOUT_SLICE: usize = 64;

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
        let core = Core::new(config, poll.registry().try_clone()?, handle, id_seed);
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

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    pub(crate) fn run(mut self, mut app: impl App) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.core.now = Instant::now();
        guarded(&mut self.core, &mut app, |app, ctx| app.start(ctx));
        loop {
            // 5 and 6 of the previous turn (and of `start`): write answers,
            // then a slice of the fan-out line, then reap.
            self.core.flush_dirty();
            let fanout_left = self.core.flush_fanout(FANOUT_SLICE);
            self.reap(&mut app);
            if let Some(deadline) = self.core.shutdown_deadline {
                if self.core.conns.len() == 0 || Instant::now() >= deadline {
                    return Ok(());
                }
            }
            // Sleep until the earliest deadline (or the shutdown's).
            let wake_at = match (self.core.timers.next(), self.core.shutdown_deadline) {
                (Some(timer), Some(shutdown)) => Some(timer.min(shutdown)),
                (timer, shutdown) => timer.or(shutdown),
            };
            let timeout = if fanout_left {
                // More to write: only look for input, do not sleep.
                Some(Duration::ZERO)
            } else {
                wake_at.map(|when| when.saturating_duration_since(Instant::now()))
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            self.core.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    // 1. New connections.
                    LISTENER => self.accept(),
                    // 2. Commands from other threads.
                    WAKER => self.run_commands(),
                    // 3. Socket readiness: read before write, so that answers
                    //    to this batch's input join what is already queued.
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let fin_seen = event.is_read_closed() || event.is_error();
                            self.read(&mut app, token, fin_seen);
                        }
                        if event.is_writable() {
                            self.core.flush(token);
                        }
                    }
                }
            }
            self.resume(&mut app);
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
            let (stream, _) = match listener.accept() {
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
            let now = core.now;
            let limits = &core.config.limits;
            let mut deadlines = Deadlines::default();
            deadlines.set(Deadline::Handshake, Some(now + limits.handshake_timeout));
            deadlines.set(Deadline::Idle, Some(now + limits.idle_timeout));
            let max_head = limits.max_head_bytes;
            let token = core.conns.insert_with(|_| Connection {
                stream,
                state: State::Http(HttpState {
                    scanner: HeadScanner::new(max_head),
                    pending: None,
                }),
                queue: WriteQueue::default(),
                leftover: Vec::new(),
                deadlines,
                wants_writable: false,
                in_fanout: false,
                in_dirty: false,
                transport: Transport::Http,
            });
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
                let peer = core
                    .conns
                    .get(token)
                    .and_then(|conn| conn.stream.peer_addr().ok());
                let from = peer.map_or_else(
                    || "accepted".to_owned(),
                    |peer| format!("accepted from {peer}"),
                );
                core.trace(|tracer, now| tracer.note(now, token, "tcp", &from, ""));
            }
        }
    }

    /// Reads until `WouldBlock` (edge-triggered), handing each read to the
    /// connection's state. A short read means the socket was drained: epoll
    /// reports new data with a new edge, so no second `read` is needed to see
    /// `WouldBlock` (the same shortcut tokio takes) — unless the event also
    /// reported the peer's FIN, which no later edge would announce again.
    fn read(&mut self, app: &mut impl App, token: Token, fin_seen: bool) {
        loop {
            let Some(conn) = self.core.conns.get_mut(token) else {
                return;
            };
            let kept = conn.leftover.len();
            self.scratch[..kept].copy_from_slice(&conn.leftover);
            let room = self.scratch.len() - kept;
            match conn.stream.read(&mut self.scratch[kept..]) {
                Ok(0) => {
                    self.peer_closed(token);
                    return;
                }
                Ok(n) => {
                    conn.leftover = Vec::new();
                    note_activity(&mut self.core, token);
                    process(&mut self.core, app, &mut self.scratch, token, kept + n);
                    if n < room && !fin_seen {
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.peer_closed(token);
                    return;
                }
            }
        }
    }

    /// The peer closed TCP (or reset it).
    fn peer_closed(&mut self, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        match &mut conn.state {
            // RFC 9112 §9.6: a client may half-close after its last request;
            // what we owe it still goes out (then the lingering close).
            State::Http(_) if conn.queue.len() > 0 => self.core.start_closing(token),
            // Still writing our last bytes: the lingering close ends it later
            // (EOF is reported again on every later event).
            State::Closing(ClosingStage::Flushing { .. }) => {}
            // RFC 6455 §7.1.5: no Close frame was received, so the code is 1006.
            State::WebSocket(ws) => {
                ws.close_code.get_or_insert(CloseCode::ABNORMAL);
                self.core.dead.push(token);
            }
            _ => self.core.dead.push(token),
        }
    }

    /// Handles input left waiting by a long-poll that has just been answered.
    fn resume(&mut self, app: &mut impl App) {
        while let Some(token) = self.core.resume.pop() {
            let Some(conn) = self.core.conns.get_mut(token) else {
                continue;
            };
            let leftover = std::mem::take(&mut conn.leftover);
            if leftover.is_empty() {
                continue;
            }
            self.scratch[..leftover.len()].copy_from_slice(&leftover);
            process(
                &mut self.core,
                app,
                &mut self.scratch,
                token,
                leftover.len(),
            );
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
                    let _ = core.send(id.0, AppMessage::Text(&text));
                }
                Command::SendBinary(id, bytes) => {
                    let _ = core.send(id.0, AppMessage::Binary(&bytes));
                }
                Command::BroadcastText(text) => {
                    let _ = core.broadcast(None, AppMessage::Text(&text));
                }
                Command::BroadcastBinary(bytes) => {
                    let _ = core.broadcast(None, AppMessage::Binary(&bytes));
                }
                Command::Publish { topic, event, data } => {
                    let _ = core.publish(topic, event.as_deref(), &data);
                }
                Command::Close(id, code, reason) => {
                    let _ = core.close(id.0, code, &reason);
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
                    if let Some(timer) = self.core.user_timer_fired(when, slot, generation) {
                        guarded(&mut self.core, app, |app, ctx| app.timer(ctx, timer));
                    }
                }
                Wake::Connection(token) => {
                    let Some(conn) = self.core.conns.get_mut(token) else {
                        continue;
                    };
                    if !conn.deadlines.fired(when) {
                        continue;
                    }
                    let due: Vec<Deadline> = conn.deadlines.due(now).collect();
                    for deadline in due {
                        deadline_passed(&mut self.core, token, deadline);
                    }
                    self.core.rearm(token);
                }
            }
        }
    }

    /// Removes finished connections; an opened WebSocket's `App::close` is
    /// called first if it has not been.
    fn reap(&mut self, app: &mut impl App) {
        while let Some(token) = self.core.dead.pop() {
            report_close(&mut self.core, app, token);
            self.core.unsubscribe(token);
            if let Some(conn) = self.core.conns.remove(token) {
                self.core
                    .trace(|tracer, now| tracer.note(now, token, "tcp", "closed", ""));
                self.core.stats.of(conn.transport).connections -= 1;
                // Dropping the stream closes the socket and removes it from epoll.
            }
        }
    }
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

/// Any byte from the peer proves it alive: push the idle deadline out, and for
/// a WebSocket count it as the heartbeat's answer too.
fn note_activity(core: &mut Core, token: Token) {
    let now = core.now;
    let limits = &core.config.limits;
    let Some(conn) = core.conns.get_mut(token) else {
        return;
    };
    match &mut conn.state {
        State::Http(_) => conn
            .deadlines
            .set(Deadline::Idle, Some(now + limits.idle_timeout)),
        State::WebSocket(ws) if ws.close == CloseState::Open => {
            ws.awaiting_pong = false;
            conn.deadlines
                .set(Deadline::Idle, Some(now + limits.idle_timeout));
            conn.deadlines
                .set(Deadline::Heartbeat, Some(now + limits.ping_interval));
        }
        _ => {}
    }
}

/// Hands `scratch[..len]` to the connection's state, as often as the state
/// changes (a head upgrades to a WebSocket and the rest are frames).
fn process(core: &mut Core, app: &mut impl App, scratch: &mut [u8], token: Token, len: usize) {
    let mut pos = 0;
    loop {
        let Some(conn) = core.conns.get_mut(token) else {
            return;
        };
        match &conn.state {
            State::Http(_) => match process_http(core, app, scratch, token, pos, len) {
                Some(next) => pos = next,
                None => return,
            },
            State::WebSocket(_) => return process_websocket(core, app, scratch, token, pos, len),
            State::LongPoll(_) => {
                // HTTP/1.1 answers in order (RFC 9112 §9.3.2): keep pipelined
                // requests until the held one is answered, within the head limit.
                let keep = &scratch[pos..len];
                if conn.leftover.len() + keep.len() > core.config.limits.max_head_bytes {
                    core.dead.push(token);
                } else {
                    conn.leftover.extend_from_slice(keep);
                }
                return;
            }
            // A stream's client has nothing to say; a closing socket's input is
            // read only to see the peer's FIN.
            State::EventStream(_) | State::Closing(_) => return,
        }
    }
}

/// Reads requests from `scratch[pos..len]`. Returns where the next state
/// should continue, or `None` when everything was consumed or kept.
fn process_http(
    core: &mut Core,
    app: &mut impl App,
    scratch: &mut [u8],
    token: Token,
    mut pos: usize,
    len: usize,
) -> Option<usize> {
    let limits = core.config.limits;
    loop {
        let conn = core.conns.get_mut(token)?;
        let State::Http(http) = &mut conn.state else {
            return Some(pos);
        };
        let input = &scratch[pos..len];
        if input.is_empty() {
            return None;
        }
        // A body in progress takes the bytes first.
        if let Some(pending) = http.pending.as_mut() {
            match pending.decoder.decode(input, &mut pending.body) {
                Ok(progress) => {
                    pos += progress.used;
                    if !progress.done {
                        // The decoder keeps no partial lines: what it did not
                        // use (part of a chunk-size line) waits for more bytes.
                        conn.leftover = scratch[pos..len].to_vec();
                        return None;
                    }
                    let pending = http.pending.take()?;
                    let (mut stack, mut heap) =
                        ([httparse::EMPTY_HEADER; STACK_HEADER_SLOTS], Vec::new());
                    let headers = header_slots(limits.max_headers, &mut stack, &mut heap);
                    match parse_request(&pending.head, headers) {
                        Ok(req) => dispatch(core, app, token, &req, &pending.body),
                        Err(error) => respond_error(core, token, &|out| error.write_response(out)),
                    }
                    continue;
                }
                Err(error) => {
                    respond_error(core, token, &|out| error.write_response(out));
                    return None;
                }
            }
        }
        let head_len = match http.scanner.scan(input) {
            Ok(Some(head_len)) => head_len,
            Ok(None) => {
                conn.leftover = input.to_vec();
                // Slowloris bound: a started head must end by the handshake deadline.
                if conn.deadlines.get(Deadline::Handshake).is_none() {
                    conn.deadlines.set(
                        Deadline::Handshake,
                        Some(core.now + limits.handshake_timeout),
                    );
                    core.rearm(token);
                }
                return None;
            }
            Err(error) => {
                respond_error(core, token, &|out| error.write_response(out));
                return None;
            }
        };
        http.scanner.reset();
        conn.deadlines.set(Deadline::Handshake, None);
        let head_end = pos + head_len;
        core.trace(|tracer, now| tracer.head_in(now, token, &scratch[pos..head_end]));
        let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; STACK_HEADER_SLOTS], Vec::new());
        let headers = header_slots(limits.max_headers, &mut stack, &mut heap);
        let req = match parse_request(&scratch[pos..head_end], headers) {
            Ok(req) => req,
            Err(error) => {
                respond_error(core, token, &|out| error.write_response(out));
                return None;
            }
        };
        if handshake::is_upgrade_request(&req) {
            upgrade(core, app, token, &req);
            return Some(head_end);
        }
        let framing = match req.body_framing(limits.max_body_bytes) {
            Ok(framing) => framing,
            Err(error) => {
                respond_error(core, token, &|out| error.write_response(out));
                return None;
            }
        };
        match framing {
            BodyFraming::None => {
                dispatch(core, app, token, &req, &[]);
                pos = head_end;
            }
            BodyFraming::Length(body_len) if head_end + body_len <= len => {
                dispatch(
                    core,
                    app,
                    token,
                    &req,
                    &scratch[head_end..head_end + body_len],
                );
                pos = head_end + body_len;
            }
            framing => {
                // The body spans reads: keep the head (parsed again when the
                // body is complete) and decode the body as it comes.
                let pending = PendingBody {
                    head: scratch[pos..head_end].to_vec(),
                    decoder: BodyDecoder::new(framing, limits.max_body_bytes),
                    body: Vec::new(),
                };
                if let Some(State::Http(http)) =
                    core.conns.get_mut(token).map(|conn| &mut conn.state)
                {
                    http.pending = Some(Box::new(pending));
                }
                // RFC 9110 §10.1.1: a client that asked `Expect: 100-continue`
                // waits for this interim answer before sending the body (a
                // body over the limit was already refused with 413 above).
                if head_end == len
                    && req.minor_version() == 1
                    && req.has_token("expect", "100-continue")
                {
                    core.append(token, &|out| {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n")
                    });
                }
                pos = head_end;
            }
        }
    }
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

/// Writes an error response and closes after it.
fn respond_error(core: &mut Core, token: Token, write: &dyn Fn(&mut Vec<u8>)) {
    core.append(token, write);
    core.start_closing(token);
}

/// Calls the app for a plain request and acts on its reply.
fn dispatch(core: &mut Core, app: &mut impl App, token: Token, req: &Request, body: &[u8]) {
    let keep_alive = req.keep_alive() && core.shutdown_deadline.is_none();
    let Some(reply) = guarded(core, app, |app, ctx| app.request(ctx, req, body)) else {
        return respond_error(core, token, &|out| {
            Response::text(500, "internal error").write(out, false)
        });
    };
    match reply {
        Reply::Response(response) => {
            core.stats.http.requests += 1;
            core.append(token, &|out| response.write(out, keep_alive));
        }
        Reply::Poll { topic, after } => {
            let response = core.poll_response(topic, after, keep_alive);
            core.stats.poll.requests += 1;
            core.stats.poll.bytes_written += response.len() as u64;
            core.stats.poll.events_delivered += core.events_after(topic, after);
            core.append(token, &|out| out.extend_from_slice(&response));
            // Counted under `poll` above, not again under the connection's `http`.
            core.stats.http.bytes_written -= response.len() as u64;
        }
        // A long-poll and a stream decide about the connection themselves.
        Reply::LongPoll { topic, after } => {
            return core.start_long_poll(token, topic, after, keep_alive)
        }
        Reply::EventStream { topic, after } => {
            // WHATWG HTML §9.2.4: a reconnecting EventSource sends the last id it
            // saw as `Last-Event-ID`; it wins over the first-connect cursor.
            let cursor = match req.header("last-event-id").map(sse::parse_last_event_id) {
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => {
                    return respond_error(core, token, &|out| {
                        Response::text(400, "Last-Event-ID must be a decimal event id")
                            .write(out, false)
                    })
                }
                None => after,
            };
            return core.start_event_stream(token, topic, cursor);
        }
    }
    if !keep_alive {
        core.start_closing(token);
    }
}

/// RFC 6455 §4.2: validate the handshake, apply the Origin policy, ask the
/// app, and switch the connection to WebSocket.
fn upgrade(core: &mut Core, app: &mut impl App, token: Token, req: &Request) {
    let offer = match handshake::check(req) {
        Ok(offer) => offer,
        Err(error) => return respond_error(core, token, &|out| error.write_response(out)),
    };
    if !core.config.origin_policy.allows(offer.origin()) {
        return respond_error(core, token, &|out| {
            HandshakeError::ForbiddenOrigin.write_response(out)
        });
    }
    let id = ConnId(token);
    let accept = match guarded(core, app, |app, ctx| app.upgrade(ctx, id, req, &offer)) {
        Some(Upgrading::Accept(accept)) => accept,
        Some(Upgrading::Reject(response)) => {
            return respond_error(core, token, &|out| response.write(out, false))
        }
        None => {
            return respond_error(core, token, &|out| {
                Response::text(500, "internal error").write(out, false)
            })
        }
    };
    let mut switching = Vec::with_capacity(160);
    if offer
        .write_accept(accept.protocol.as_deref(), &mut switching)
        .is_err()
    {
        // The app chose a subprotocol the client did not offer: our bug.
        return respond_error(core, token, &|out| {
            Response::text(500, "internal error").write(out, false)
        });
    }
    core.append(token, &|out| out.extend_from_slice(&switching));
    let limits = &core.config.limits;
    let message_limits = MessageLimits {
        max_frame_bytes: limits.max_frame_bytes,
        max_message_bytes: limits.max_message_bytes,
        max_fragments: limits.max_fragments,
    };
    let (idle, ping) = (
        core.now + limits.idle_timeout,
        core.now + limits.ping_interval,
    );
    let Some(conn) = core.conns.get_mut(token) else {
        return;
    };
    conn.state = State::WebSocket(Box::new(WsState {
        decoder: MessageDecoder::new(Role::Server, message_limits),
        close: CloseState::Open,
        awaiting_pong: false,
        topic: None,
        close_code: None,
        close_reason: Box::from(""),
        reported: false,
    }));
    core.stats.switch(conn, Transport::WebSocket);
    conn.deadlines.set(Deadline::Handshake, None);
    conn.deadlines.set(Deadline::Idle, Some(idle));
    conn.deadlines.set(Deadline::Heartbeat, Some(ping));
    core.rearm(token);
    if let Some((topic, after)) = accept.subscribe {
        let _ = core.subscribe_socket(token, topic, after);
    }
    if guarded(core, app, |app, ctx| app.open(ctx, id)).is_none() {
        core.close(token, CloseCode::INTERNAL_ERROR, "");
    }
}

/// Feeds `scratch[pos..len]` to the WebSocket's decoder and acts on each
/// message; keeps an unfinished frame header or control frame as leftover.
fn process_websocket(
    core: &mut Core,
    app: &mut impl App,
    scratch: &mut [u8],
    token: Token,
    mut pos: usize,
    len: usize,
) {
    let placeholder = MessageDecoder::new(
        Role::Server,
        MessageLimits {
            max_frame_bytes: 0,
            max_message_bytes: 0,
            max_fragments: 0,
        },
    );
    // The decoder leaves the connection while its messages are handled, so
    // callbacks can act on this very connection (send, close).
    let Some(ws) = core.conns.get_mut(token).and_then(Connection::websocket) else {
        return;
    };
    let mut decoder = std::mem::replace(&mut ws.decoder, placeholder);
    let outcome = loop {
        let mut header = None;
        let step = decoder.step_observed(&mut scratch[pos..len], &mut header);
        if core.tracer.is_some() {
            trace_step(core, token, header, &step);
        }
        match step {
            Ok(Step::NeedMore) => break Ok(true),
            Ok(Step::Progress { used }) => pos += used,
            Ok(Step::Message { message, used }) => {
                pos += used;
                if !on_message(core, app, token, message) {
                    break Ok(false);
                }
            }
            Err(error) => break Err(error),
        }
    };
    let Some(conn) = core.conns.get_mut(token) else {
        return;
    };
    if let State::WebSocket(ws) = &mut conn.state {
        ws.decoder = decoder;
    }
    match outcome {
        Ok(true) => {
            if pos < len {
                conn.leftover = scratch[pos..len].to_vec();
            }
        }
        Ok(false) => {}
        Err(error) => {
            // RFC 6455 §7.1.7: fail the connection — send a Close frame with
            // the error's code (§7.4.1) and close without waiting for a reply.
            let code = error.close_code();
            if let Some(ws) = conn.websocket() {
                if ws.close == CloseState::Open {
                    let from = ws.close;
                    ws.close = from.on_send();
                    let to = ws.close;
                    ws.close_code.get_or_insert(code);
                    core.trace(|tracer, now| tracer.close_state(now, token, from, to));
                    core.append(token, &|out| write_close_frame(out, code, ""));
                }
            }
            report_close(core, app, token);
            core.start_closing(token);
        }
    }
}

/// Traces the frame header a step decoded and the message it delivered.
fn trace_step(
    core: &mut Core,
    token: Token,
    header: Option<(FrameHeader, usize)>,
    step: &Result<Step, MessageError>,
) {
    core.trace(|tracer, now| {
        if let Some((header, header_len)) = header {
            tracer.frame_in(now, token, &header, header_len);
        }
        match step {
            Ok(Step::Message { message, .. }) => tracer.message_in(now, token, message),
            Err(error) => tracer.note(
                now,
                token,
                "error",
                &format!("{error} → close {}", error.close_code().0),
                "RFC 6455 §7.4.1",
            ),
            _ => {}
        }
    });
}

/// Acts on one message; false when the connection stops reading frames.
fn on_message(core: &mut Core, app: &mut impl App, token: Token, message: Message) -> bool {
    let Some(ws) = core.conns.get_mut(token).and_then(Connection::websocket) else {
        return false;
    };
    let open = ws.close == CloseState::Open;
    let id = ConnId(token);
    let data = match message {
        Message::Text(text) => AppMessage::Text(text),
        Message::Binary(bytes) => AppMessage::Binary(bytes),
        Message::Ping(payload) => {
            // RFC 6455 §5.5.2–5.5.3: answer a ping with a pong carrying the same
            // payload — unless our Close frame has gone out (§5.5.1).
            if open {
                core.append(token, &|out| {
                    encode_frame(out, true, OpCode::Pong, None, payload)
                });
            }
            return true;
        }
        // A pong only proves liveness, which every read already recorded.
        Message::Pong(_) => return true,
        Message::Close(payload) => {
            // RFC 6455 §5.5.1: answer a Close with a Close, echoing the code;
            // then the server closes TCP first (§7.1.1).
            let (code, reason) = payload.unwrap_or((CloseCode::NO_STATUS, ""));
            ws.close_code = Some(code);
            ws.close_reason = Box::from(reason);
            let from = ws.close;
            ws.close = if open {
                from.on_receive().on_send()
            } else {
                from.on_receive()
            };
            let to = ws.close;
            core.trace(|tracer, now| tracer.close_state(now, token, from, to));
            if open {
                let echo = payload.map(|(code, _)| code);
                core.append(token, &|out| match echo {
                    Some(code) => write_close_frame(out, code, ""),
                    None => encode_frame(out, true, OpCode::Close, None, &[]),
                });
            }
            report_close(core, app, token);
            // RFC 6455 §5.5.1: the peer sends nothing after its Close frame,
            // so once our bytes are out the socket can close without lingering
            // (and the server closes TCP first, §7.1.1).
            core.close_after_flush(token);
            return false;
        }
    };
    // RFC 6455 §5.5.1: after our Close frame, data from the peer is dropped.
    if !open {
        return true;
    }
    if guarded(core, app, |app, ctx| app.message(ctx, id, data)).is_none() {
        core.close(token, CloseCode::INTERNAL_ERROR, "");
    }
    core.conns
        .get(token)
        .is_some_and(|conn| matches!(conn.state, State::WebSocket(_)))
}

/// Calls `App::close` once for an opened WebSocket.
fn report_close(core: &mut Core, app: &mut impl App, token: Token) {
    let Some(ws) = core.conns.get_mut(token).and_then(Connection::websocket) else {
        return;
    };
    if ws.reported {
        return;
    }
    ws.reported = true;
    let code = ws.close_code.unwrap_or(CloseCode::ABNORMAL);
    let reason = std::mem::take(&mut ws.close_reason);
    guarded(core, app, |app, ctx| {
        app.close(ctx, ConnId(token), code, &reason)
    });
}

/// One of a connection's deadlines passed.
fn deadline_passed(core: &mut Core, token: Token, deadline: Deadline) {
    let now = core.now;
    let limits = core.config.limits;
    let Some(conn) = core.conns.get_mut(token) else {
        return;
    };
    conn.deadlines.set(deadline, None);
    match (deadline, &mut conn.state) {
        // A head started but did not finish in time (slowloris): RFC 9110 §15.5.9.
        (Deadline::Handshake, State::Http(_)) if !conn.leftover.is_empty() => {
            respond_error(core, token, &|out| {
                Response::text(408, "request head took too long").write(out, false)
            });
        }
        // Nothing was asked: just close (RFC 9112 §9.5 lets either side close an idle connection).
        (Deadline::Handshake | Deadline::Idle, State::Http(_)) => core.dead.push(token),
        (Deadline::Idle, State::WebSocket(_)) => {
            core.close(token, CloseCode::GOING_AWAY, "idle timeout");
        }
        (Deadline::Heartbeat, State::WebSocket(ws)) => {
            if ws.awaiting_pong {
                // The peer did not answer our ping in time: it is gone, and a
                // close handshake with it would only wait again.
                ws.close_code.get_or_insert(CloseCode::ABNORMAL);
                core.dead.push(token);
            } else {
                ws.awaiting_pong = true;
                conn.deadlines
                    .set(Deadline::Heartbeat, Some(now + limits.pong_timeout));
                core.append(token, &|out| {
                    encode_frame(out, true, OpCode::Ping, None, b"")
                });
            }
        }
        (Deadline::Close, _) => core.dead.push(token),
        (Deadline::Stream, State::EventStream(_)) => {
            // WHATWG HTML §9.2.7: a comment line every ~15 s keeps proxies
            // from closing an idle stream.
            conn.deadlines
                .set(Deadline::Stream, Some(now + limits.sse_keepalive));
            core.append(token, &|out| sse::encode_comment("", out));
        }
        (Deadline::Stream, State::LongPoll(poll)) => {
            let (topic, after, keep_alive) = (poll.topic, poll.after, poll.keep_alive);
            let response: Rc<[u8]> = core.poll_response(topic, after, keep_alive);
            core.answer_long_poll(token, &response, keep_alive, 0);
        }
        // A deadline of a state the connection has left.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream as StdStream;

    /// A bound loop and `n` clients it has accepted (the tokens in order).
    fn loop_with_clients(n: usize) -> (EventLoop, Vec<StdStream>, Vec<Token>) {
        let mut event_loop =
            EventLoop::bind("127.0.0.1:0".parse().unwrap(), Config::default(), 1).unwrap();
        let addr = event_loop.local_addr().unwrap();
        let clients: Vec<StdStream> = (0..n).map(|_| StdStream::connect(addr).unwrap()).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while event_loop.core.conns.len() < n && Instant::now() < deadline {
            event_loop.accept();
            std::thread::sleep(Duration::from_millis(1));
        }
        let tokens = event_loop.core.conns.tokens();
        assert_eq!(tokens.len(), n);
        (event_loop, clients, tokens)
    }

    /// Reads from `client` until `want` has been seen (or a second passes).
    fn read_until(client: &mut StdStream, want: &str) -> String {
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !String::from_utf8_lossy(&got).contains(want) {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn publishes_join_the_fanout_line_once_per_subscriber_and_leave_in_slices() {
        let (mut event_loop, mut clients, tokens) = loop_with_clients(3);
        let core = &mut event_loop.core;
        let topic = core.topic("feed");
        for &token in &tokens {
            core.start_event_stream(token, topic, None);
        }
        core.flush_dirty();
        core.publish(topic, None, "one").unwrap();
        core.publish(topic, None, "two").unwrap();
        assert_eq!(core.fanout.len(), 3, "each subscriber is in the line once");
        assert!(core.flush_fanout(2), "a slice of 2 leaves one waiting");
        assert!(!core.flush_fanout(2));
        assert!(core.fanout.is_empty());
        for client in &mut clients {
            let text = read_until(client, "data: two");
            let (one, two) = (text.find("data: one"), text.find("data: two"));
            assert!(
                one.is_some() && one < two,
                "both events, in order: {text:?}"
            );
        }
    }

    #[test]
    fn a_deep_queue_in_the_fanout_line_gets_the_whole_line_written_at_once() {
        let (mut event_loop, _clients, tokens) = loop_with_clients(3);
        let core = &mut event_loop.core;
        let topic = core.topic("feed");
        for &token in &tokens {
            core.start_event_stream(token, topic, None);
        }
        core.flush_dirty();
        let small = "x".repeat(1000);
        core.publish(topic, None, &small).unwrap();
        assert!(
            core.flush_fanout(1),
            "shallow queues: one slice, the rest waits"
        );
        let big = "x".repeat(crate::server::core::FANOUT_DEEP_QUEUE / 2);
        for _ in 0..3 {
            core.publish(topic, None, &big).unwrap();
        }
        assert!(
            !core.flush_fanout(1),
            "a deep queue: the whole line at once"
        );
        assert!(core.fanout.is_empty());
    }

    #[test]
    fn a_publish_skips_a_websocket_that_has_sent_its_close_frame() {
        let (mut event_loop, _clients, tokens) = loop_with_clients(1);
        let core = &mut event_loop.core;
        let token = tokens[0];
        let topic = core.topic("feed");
        let limits = MessageLimits {
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
            max_fragments: 16,
        };
        let conn = core.conns.get_mut(token).unwrap();
        conn.state = State::WebSocket(Box::new(WsState {
            decoder: MessageDecoder::new(Role::Server, limits),
            close: CloseState::Open,
            awaiting_pong: false,
            topic: None,
            close_code: None,
            close_reason: Box::from(""),
            reported: false,
        }));
        core.subscribe_socket(token, topic, None).unwrap();
        core.publish(topic, None, "before").unwrap();
        let before = core.buffered_amount(token).unwrap();
        assert!(before > 0);
        assert!(core.close(token, CloseCode::GOING_AWAY, "bye"));
        let with_close = core.buffered_amount(token).unwrap();
        core.publish(topic, None, "after").unwrap();
        // RFC 6455 §5.5.1: no data frame after our Close frame.
        assert_eq!(core.buffered_amount(token), Some(with_close));
    }
}
